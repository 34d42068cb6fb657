package libvirt

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"
)

// TestKVMDomain runs a VM on a simulated host of its own that offers KVM
// whenever /dev/kvm opens here (POOLKEEPER_LIBVIRT_KVM=yes: the host does
// not first try to boot Linux with it, which some nested KVMs cannot,
// whereas SeaBIOS with no boot device runs on them). The VM is diskless: its
// guest is SeaBIOS finding nothing to boot. With KVM the driver must choose
// type kvm, the domain run on KVM, and Running, Stop and StopAll see and
// end it. Where /dev/kvm does not open, the same host offers no kvm: the
// driver must choose qemu (TCG) for the same VM, and refuse a required kvm.
func TestKVMDomain(t *testing.T) {
	kvm := devKVMOpens()
	start := time.Now()
	h, err := upHost(fmt.Sprintf("lvkvm%d", os.Getpid()), "POOLKEEPER_LIBVIRT_KVM=yes")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.down)
	t.Logf("host %s up in %v", h.name, time.Since(start).Round(time.Millisecond))
	raw := rawConn(t, h.uri)
	ns := testNamespace(t, raw)
	ctx := context.Background()

	offered := offeredTypes(t, raw)
	want := "qemu"
	if kvm {
		want = "kvm"
		t.Logf("/dev/kvm opens: testing the KVM path (host %s's KVM verdict %q, domain types offered %v)", h.name, h.kvm, offered)
		if h.kvm != "yes" || !slices.Contains(offered, "kvm") {
			t.Fatalf("/dev/kvm opens and POOLKEEPER_LIBVIRT_KVM=yes, but host %s's KVM verdict is %q and it offers %v, want yes and kvm",
				h.name, h.kvm, offered)
		}
	} else {
		t.Logf("/dev/kvm does not open: testing the TCG path (host %s's KVM verdict %q, domain types offered %v)", h.name, h.kvm, offered)
		if slices.Contains(offered, "kvm") || !slices.Contains(offered, "qemu") {
			t.Fatalf("without /dev/kvm host %s offers %v, want qemu and no kvm", h.name, offered)
		}
		_, err := New(ctx, Options{URI: h.uri, Namespace: ns, Host: "h1", DomainType: "kvm"})
		if err == nil || !strings.Contains(err.Error(), "offers no kvm domain") {
			t.Errorf("New requiring kvm where none is offered: %v, want a refusal saying so", err)
		}
	}

	d := newDriver(t, h.uri, ns, "h1", "boot-1")
	if d.guest.Type != want {
		t.Fatalf("the driver chose domain type %q, want %q", d.guest.Type, want)
	}
	vm := testVM(ns, "vm1")
	start = time.Now()
	if err := d.Start(ctx, vm); err != nil {
		t.Fatal(err)
	}
	t.Logf("Start of a diskless %s domain: %v", want, time.Since(start).Round(time.Millisecond))
	name := DomainName(ns, "vm1")
	if x := liveXML(t, raw, name); x.Type != want || x.UUID != vm.UUID {
		t.Errorf("domain type %q uuid %s, want %q and %s", x.Type, x.UUID, want, vm.UUID)
	}
	if accel := qemuAccel(t, name); accel != map[string]string{"kvm": "kvm", "qemu": "tcg"}[want] {
		t.Errorf("QEMU of %s runs with accelerator %q, want %s's", name, accel, want)
	}
	wantRunning(t, d, "vm1")
	// The guest runs, and keeps running: a vCPU KVM cannot run would stop
	// the domain (paused on an internal error, or crashed).
	dom, err := raw.DomainLookupByName(name)
	if err != nil {
		t.Fatal(err)
	}
	var cpuTime uint64
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		var state uint8
		state, _, _, _, cpuTime, err = raw.DomainGetInfo(dom)
		if err != nil {
			t.Fatal(err)
		}
		if golibvirt.DomainState(state) != golibvirt.DomainRunning {
			t.Fatalf("domain %s is in state %d, want running (%d)", name, state, golibvirt.DomainRunning)
		}
	}
	if cpuTime == 0 {
		t.Errorf("domain %s used no CPU time in 2s: its vCPU never ran", name)
	}
	if states, err := d.PowerStates(ctx); err != nil || len(states) != 0 {
		t.Errorf("PowerStates = %v, %v; want none (running)", states, err)
	}
	t.Logf("domain %s ran 2s on %s, %v of CPU time", name, want, time.Duration(cpuTime).Round(time.Millisecond))

	if err := d.Stop(ctx, "vm1"); err != nil {
		t.Fatal(err)
	}
	wantRunning(t, d)
	if isActive(t, raw, name) {
		t.Errorf("domain %s still active after Stop", name)
	}
	for _, n := range []string{"vm2", "vm3"} {
		if err := d.Start(ctx, testVM(ns, n)); err != nil {
			t.Fatal(err)
		}
		if x := liveXML(t, raw, DomainName(ns, n)); x.Type != want {
			t.Errorf("domain %s type %q, want %q", DomainName(ns, n), x.Type, want)
		}
	}
	wantRunning(t, d, "vm2", "vm3")
	if err := d.StopAll(ctx); err != nil {
		t.Fatal(err)
	}
	wantRunning(t, d)
	for _, n := range []string{"vm2", "vm3"} {
		if isActive(t, raw, DomainName(ns, n)) {
			t.Errorf("domain %s still active after StopAll", DomainName(ns, n))
		}
	}
}

// offeredTypes are the domain types the daemon's capabilities offer for its
// hvm guests.
func offeredTypes(t *testing.T, raw *golibvirt.Libvirt) []string {
	t.Helper()
	s, err := raw.ConnectGetCapabilities()
	if err != nil {
		t.Fatal(err)
	}
	caps := &libvirtxml.Caps{}
	if err := caps.Unmarshal(s); err != nil {
		t.Fatal(err)
	}
	var out []string
	for i := range caps.Guests {
		if caps.Guests[i].OSType != "hvm" {
			continue
		}
		for _, ty := range domainTypes(&caps.Guests[i]) {
			if !slices.Contains(out, ty) {
				out = append(out, ty)
			}
		}
	}
	slices.Sort(out)
	return out
}

// qemuAccel is the accelerator the QEMU process of domain name was started
// with (-accel NAME, or accel= of -machine).
func qemuAccel(t *testing.T, name string) string {
	t.Helper()
	pid := qemuPID(t, name)
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		t.Fatal(err)
	}
	args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
	for i, a := range args {
		if a == "-accel" && i+1 < len(args) {
			return strings.Split(args[i+1], ",")[0]
		}
		if a == "-machine" && i+1 < len(args) {
			for _, opt := range strings.Split(args[i+1], ",") {
				if v, ok := strings.CutPrefix(opt, "accel="); ok {
					return v
				}
			}
		}
	}
	t.Fatalf("QEMU of %s (pid %d) names no accelerator: %q", name, pid, args)
	return ""
}
