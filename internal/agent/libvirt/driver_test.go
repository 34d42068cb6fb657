package libvirt

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	"github.com/go-logr/logr/testr"
	"github.com/google/uuid"
	"libvirt.org/go/libvirtxml"

	"github.com/poolkeeper/poolkeeper/internal/agent"
)

// testNamespace is a namespace of the test's own, so that tests sharing a
// daemon never see each other's domains; its domains are destroyed when the
// test ends, whatever happened.
func testNamespace(t *testing.T, raw *golibvirt.Libvirt) string {
	t.Helper()
	ns := strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()))
	cleanupNamespace(t, raw, ns)
	return ns
}

// cleanupNamespace destroys the domains of namespace ns when the test ends,
// whatever happened.
func cleanupNamespace(t *testing.T, raw *golibvirt.Libvirt, ns string) {
	t.Helper()
	t.Cleanup(func() {
		doms, _, err := raw.ConnectListAllDomains(1, 0)
		if daemonDied(err) {
			return // nothing of the test survived its daemon
		}
		if err != nil {
			t.Errorf("listing domains: %v", err)
			return
		}
		for _, d := range doms {
			if strings.HasPrefix(d.Name, ns+"_") {
				_ = raw.DomainDestroy(d)
				_ = raw.DomainUndefine(d)
			}
		}
	})
}

// fixture is a test's daemon, its own connection to it and its namespace.
type fixture struct {
	uri string
	raw *golibvirt.Libvirt
	ns  string
}

func newFixture(t *testing.T) fixture {
	t.Helper()
	uri := daemonURI(t)
	if c, err := dial(uri); err != nil {
		reviveDaemon(t) // it died under an earlier test
	} else {
		_ = c.Disconnect()
	}
	raw := rawConn(t, uri)
	return fixture{uri: uri, raw: raw, ns: testNamespace(t, raw)}
}

// driver is a driver of host in the fixture's namespace.
func (f fixture) driver(t *testing.T, host, bootID string) *Driver {
	t.Helper()
	return newDriver(t, f.uri, f.ns, host, bootID)
}

func newDriver(t *testing.T, uri, ns, host, bootID string) *Driver {
	t.Helper()
	d, err := New(context.Background(), Options{URI: uri, Namespace: ns, Host: host, BootID: bootID,
		Log: testr.New(t), StopTimeout: time.Second, ReconnectInterval: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	return d
}

func testVM(ns, name string) agent.VM {
	return agent.VM{Name: name, Namespace: ns, Pool: "pool1", UUID: uuid.NewString(), CPU: 1, MemoryMiB: 64}
}

func running(t *testing.T, d *Driver) []string {
	t.Helper()
	names, err := d.Running(context.Background())
	if err != nil {
		t.Fatalf("Running: %v", err)
	}
	return names
}

func wantRunning(t *testing.T, d *Driver, want ...string) {
	t.Helper()
	if got := running(t, d); !slices.Equal(got, want) {
		t.Fatalf("Running = %v, want %v", got, want)
	}
}

func liveXML(t *testing.T, raw *golibvirt.Libvirt, name string) *libvirtxml.Domain {
	t.Helper()
	dom, err := raw.DomainLookupByName(name)
	if err != nil {
		t.Fatalf("looking up %s: %v", name, err)
	}
	x, err := raw.DomainGetXMLDesc(dom, 0)
	if err != nil {
		t.Fatal(err)
	}
	d := &libvirtxml.Domain{}
	if err := d.Unmarshal(x); err != nil {
		t.Fatal(err)
	}
	return d
}

func domainID(t *testing.T, raw *golibvirt.Libvirt, name string) int32 {
	t.Helper()
	dom, err := raw.DomainLookupByName(name)
	if err != nil {
		t.Fatalf("looking up %s: %v", name, err)
	}
	return dom.ID
}

func isActive(t *testing.T, raw *golibvirt.Libvirt, name string) bool {
	t.Helper()
	dom, err := raw.DomainLookupByName(name)
	if isCode(err, golibvirt.ErrNoDomain) {
		return false
	}
	if err != nil {
		t.Fatal(err)
	}
	a, err := raw.DomainIsActive(dom)
	if err != nil && !isCode(err, golibvirt.ErrNoDomain) {
		t.Fatal(err)
	}
	return a == 1
}

func TestStartStop(t *testing.T) {
	f := newFixture(t)
	raw, ns := f.raw, f.ns
	d := f.driver(t, "h1", "boot-1")
	ctx := context.Background()
	vm := testVM(ns, "vm1")

	start := time.Now()
	if err := d.Start(ctx, vm); err != nil {
		t.Fatal(err)
	}
	t.Logf("Start of a diskless 64 MiB %s domain: %v", d.guest.Type, time.Since(start).Round(time.Millisecond))
	wantRunning(t, d, "vm1")
	x := liveXML(t, raw, DomainName(ns, "vm1"))
	if x.UUID != vm.UUID || x.Memory.Value != 64<<10 || x.VCPU.Value != 1 {
		t.Errorf("domain uuid %s memory %d %s vcpus %d, want %s, 64 MiB, 1", x.UUID, x.Memory.Value, x.Memory.Unit, x.VCPU.Value, vm.UUID)
	}
	wantType := "qemu"
	if kvmWorks() {
		wantType = "kvm"
	}
	if x.Type != wantType {
		t.Errorf("domain type %s, want %s", x.Type, wantType)
	}
	if !isActive(t, raw, DomainName(ns, "vm1")) {
		t.Fatal("domain not active")
	}
	dom, err := raw.DomainLookupByName(DomainName(ns, "vm1"))
	if err != nil {
		t.Fatal(err)
	}
	persistent, err := raw.DomainIsPersistent(dom)
	if err != nil || persistent != 0 {
		t.Errorf("domain persistent = %d (%v), want a transient domain", persistent, err)
	}

	id := domainID(t, raw, DomainName(ns, "vm1"))
	if err := d.Start(ctx, vm); err != nil {
		t.Fatalf("second Start: %v", err)
	}
	if got := domainID(t, raw, DomainName(ns, "vm1")); got != id {
		t.Errorf("second Start restarted the domain: id %d, was %d", got, id)
	}

	// A guest with no OS ignores the ACPI button: Stop waits, then destroys.
	start = time.Now()
	if err := d.Stop(ctx, "vm1"); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	t.Logf("Stop (ACPI ignored, %v timeout, then destroy): %v", d.opts.StopTimeout, took.Round(time.Millisecond))
	if took < d.opts.StopTimeout {
		t.Errorf("Stop took %v, less than its %v graceful wait", took, d.opts.StopTimeout)
	}
	wantRunning(t, d)
	if isActive(t, raw, DomainName(ns, "vm1")) {
		t.Error("domain still active after Stop")
	}
	if err := d.Stop(ctx, "vm1"); err != nil {
		t.Errorf("Stop of a halted VM: %v", err)
	}
}

// kvmWorks says whether the test daemon's domains should be KVM ones: the
// simulated host's verdict (it offers KVM only where QEMU boots Linux with
// it), else whether /dev/kvm opens.
func kvmWorks() bool {
	if daemon.kvm != "" {
		return daemon.kvm == "yes"
	}
	return devKVMOpens()
}

// devKVMOpens says whether this process can open /dev/kvm.
func devKVMOpens() bool {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return false
	}
	_ = f.Close()
	return true
}

func TestStopAllAndOtherHosts(t *testing.T) {
	f := newFixture(t)
	uri, raw, ns := f.uri, f.raw, f.ns
	ctx := context.Background()
	h1 := f.driver(t, "h1", "boot-1")
	h2 := f.driver(t, "h2", "boot-2")
	for _, name := range []string{"a", "b"} {
		if err := h1.Start(ctx, testVM(ns, name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := h2.Start(ctx, testVM(ns, "c")); err != nil {
		t.Fatal(err)
	}
	wantRunning(t, h1, "a", "b")
	wantRunning(t, h2, "c")

	// Another host's driver on the same daemon neither starts over, nor
	// stops, this host's domains.
	err := h2.Start(ctx, testVM(ns, "a"))
	if err == nil || !strings.Contains(err.Error(), "belongs to host h1") {
		t.Errorf("h2 Start of h1's VM: %v, want a refusal naming h1", err)
	}
	if err := h2.Stop(ctx, "a"); err != nil {
		t.Errorf("h2 Stop of h1's VM: %v", err)
	}
	if !isActive(t, raw, DomainName(ns, "a")) {
		t.Fatal("h2's Stop stopped h1's domain")
	}
	// Nor does a driver of another namespace.
	other := newDriver(t, uri, ns+"x", "h1", "boot-1")
	wantRunning(t, other)

	start := time.Now()
	if err := h1.StopAll(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("StopAll of 2 domains: %v", time.Since(start).Round(time.Millisecond))
	wantRunning(t, h1)
	wantRunning(t, h2, "c")
	if err := other.StopAll(ctx); err != nil {
		t.Fatal(err)
	}
	wantRunning(t, h2, "c")
}

func TestUntaggedDomainUntouched(t *testing.T) {
	f := newFixture(t)
	raw, ns := f.raw, f.ns
	ctx := context.Background()
	d := f.driver(t, "h1", "boot-1")
	name := DomainName(ns, "vm1")
	g := d.guest
	dom := buildDomain(spec{Name: name, Type: g.Type, Arch: g.Arch, Machine: g.Machine})
	dom.Metadata = nil
	x, err := dom.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := raw.DomainCreateXML(x, 0); err != nil {
		t.Fatal(err)
	}
	err = d.Start(ctx, testVM(ns, "vm1"))
	if err == nil || !strings.Contains(err.Error(), "not started by poolkeeper") {
		t.Errorf("Start over an untagged domain: %v, want a refusal", err)
	}
	wantRunning(t, d)
	if err := d.Stop(ctx, "vm1"); err != nil {
		t.Errorf("Stop: %v", err)
	}
	if err := d.StopAll(ctx); err != nil {
		t.Errorf("StopAll: %v", err)
	}
	if !isActive(t, raw, name) {
		t.Error("the untagged domain was stopped")
	}
}

func TestAdoptionAfterAgentRestart(t *testing.T) {
	f := newFixture(t)
	raw, ns := f.raw, f.ns
	ctx := context.Background()
	first := f.driver(t, "h1", "boot-1")
	if err := first.Start(ctx, testVM(ns, "vm1")); err != nil {
		t.Fatal(err)
	}
	id := domainID(t, raw, DomainName(ns, "vm1"))
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	if !isActive(t, raw, DomainName(ns, "vm1")) {
		t.Fatal("Close stopped the domain")
	}
	start := time.Now()
	second := f.driver(t, "h1", "boot-2")
	wantRunning(t, second, "vm1")
	t.Logf("Adoption (New + Running): %v", time.Since(start).Round(time.Millisecond))
	if got := domainID(t, raw, DomainName(ns, "vm1")); got != id {
		t.Errorf("domain id %d, was %d: restarted", got, id)
	}
	if err := second.Start(ctx, testVM(ns, "vm1")); err != nil {
		t.Errorf("Start of the adopted VM: %v", err)
	}
	if got := domainID(t, raw, DomainName(ns, "vm1")); got != id {
		t.Errorf("Start of the adopted VM restarted it")
	}
}

// waitChange waits for a value on d's Changes.
func waitChange(t *testing.T, d *Driver, what string) {
	t.Helper()
	select {
	case <-d.Changes():
	case <-time.After(10 * time.Second):
		t.Fatalf("no change signalled after %s", what)
	}
}

func drain(d *Driver) {
	for {
		select {
		case <-d.Changes():
		default:
			return
		}
	}
}

// settle waits until d has signalled nothing for half a second.
func settle(d *Driver) {
	for {
		select {
		case <-d.Changes():
		case <-time.After(500 * time.Millisecond):
			return
		}
	}
}

func TestChangesAndPowerStates(t *testing.T) {
	f := newFixture(t)
	raw, ns := f.raw, f.ns
	ctx := context.Background()
	d := f.driver(t, "h1", "boot-1")
	vm := testVM(ns, "vm1")
	if err := d.Start(ctx, vm); err != nil {
		t.Fatal(err)
	}
	dom, err := raw.DomainLookupByName(DomainName(ns, "vm1"))
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // the start's own events
	drain(d)

	if err := raw.DomainSuspend(dom); err != nil {
		t.Fatal(err)
	}
	waitChange(t, d, "a pause behind the driver's back")
	states, err := d.PowerStates(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if states["vm1"] != "Paused" {
		t.Errorf("PowerStates = %v, want vm1 Paused", states)
	}
	wantRunning(t, d, "vm1")
	if err := raw.DomainResume(dom); err != nil {
		t.Fatal(err)
	}
	waitChange(t, d, "a resume")
	if states, err := d.PowerStates(ctx); err != nil || len(states) != 0 {
		t.Errorf("PowerStates after resume = %v, %v; want none (running)", states, err)
	}

	drain(d)
	start := time.Now()
	if err := raw.DomainDestroy(dom); err != nil {
		t.Fatal(err)
	}
	waitChange(t, d, "a destroy behind the driver's back")
	t.Logf("Destroy behind the driver's back signalled in %v", time.Since(start).Round(time.Millisecond))
	wantRunning(t, d)

	// Another host's domain's events are not this driver's. The destroy may
	// still be followed by events of this driver's own domain: wait for
	// quiet first.
	settle(d)
	other := f.driver(t, "h2", "boot-2")
	if err := other.Start(ctx, testVM(ns, "vm2")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-d.Changes():
		t.Error("h1's driver signalled the start of h2's domain")
	case <-time.After(time.Second):
	}
}

// proxy forwards unix connections to a daemon socket until cut.
type proxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	down   bool
	conns  []net.Conn
}

func newProxy(t *testing.T, target string) *proxy {
	t.Helper()
	dir, err := os.MkdirTemp("", "pk-lv-proxy")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	ln, err := net.Listen("unix", filepath.Join(dir, "sock"))
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target}
	t.Cleanup(func() { _ = ln.Close(); p.cut() })
	go p.serve()
	return p
}

func (p *proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.down {
			_ = c.Close()
			p.mu.Unlock()
			continue
		}
		up, err := net.Dial("unix", p.target)
		if err != nil {
			_ = c.Close()
			p.mu.Unlock()
			continue
		}
		p.conns = append(p.conns, c, up)
		p.mu.Unlock()
		go func() { _, _ = io.Copy(up, c); _ = up.Close() }()
		go func() { _, _ = io.Copy(c, up); _ = c.Close() }()
	}
}

func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.conns = nil
}

func (p *proxy) restore() {
	p.mu.Lock()
	p.down = false
	p.mu.Unlock()
}

// TestReconnect loses the daemon (its socket cut, as by a libvirtd
// restart): the VM keeps running, the driver reports nothing rather than
// Halted, and finds it again once the daemon is back. A daemon that dies
// under the test (libvirtd crashing as its client's socket is cut, which the
// driver can only survive) is logged with its host's logs, brought up again
// and the test tried once more.
func TestReconnect(t *testing.T) {
	for attempt := 1; ; attempt++ {
		err := reconnect(t, newFixture(t), fmt.Sprintf("vm%d", attempt))
		if err == nil {
			return
		}
		if attempt == 2 {
			t.Fatalf("the test daemon died under the test twice: %v", err)
		}
		t.Logf("attempt %d: %v", attempt, err)
		reviveDaemon(t)
	}
}

// reconnect is one attempt of TestReconnect; it returns an error only when
// the daemon itself died.
func reconnect(t *testing.T, f fixture, vm string) error {
	uri, raw, ns := f.uri, f.raw, f.ns
	ctx := context.Background()
	p := newProxy(t, socketOf(t, uri))
	d := newDriver(t, withSocket(t, uri, p.ln.Addr().String()), ns, "h1", "boot-1")
	if err := d.Start(ctx, testVM(ns, vm)); err != nil {
		t.Fatal(err)
	}
	id := domainID(t, raw, DomainName(ns, vm))
	// The start's events are delivered before the cut.
	settle(d)

	p.cut()
	// The driver knows at once: every call fails with ErrDisconnected, the
	// first ones by their failed write, the later ones because the driver
	// has seen the socket close; and it signals the loss.
	for _, call := range []func() error{
		func() error { _, err := d.Running(ctx); return err },
		func() error { _, err := d.PowerStates(ctx); return err },
		func() error { return d.Stop(ctx, vm) },
		func() error { return d.StopAll(ctx) },
		func() error { return d.Start(ctx, testVM(ns, "other")) },
		func() error { _, err := d.Networks(ctx); return err },
	} {
		if err := call(); !errors.Is(err, ErrDisconnected) {
			t.Errorf("while disconnected: %v, want ErrDisconnected", err)
		}
	}
	waitChange(t, d, "the loss of the daemon")
	if _, err := raw.DomainLookupByName(DomainName(ns, vm)); daemonDied(err) {
		return fmt.Errorf("after the cut: %w", err)
	}
	if !isActive(t, raw, DomainName(ns, vm)) {
		t.Fatal("the domain stopped with the connection")
	}

	p.restore()
	deadline := time.Now().Add(10 * time.Second)
	for {
		names, err := d.Running(ctx)
		if err == nil {
			if !slices.Equal(names, []string{vm}) {
				t.Fatalf("Running after reconnect = %v, want [%s]", names, vm)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not reconnected: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := domainID(t, raw, DomainName(ns, vm)); got != id {
		t.Errorf("domain restarted across the reconnection")
	}
	// Events flow on the new connection.
	settle(d)
	dom, err := raw.DomainLookupByName(DomainName(ns, vm))
	if err != nil {
		t.Fatal(err)
	}
	if err := raw.DomainDestroy(dom); err != nil {
		t.Fatal(err)
	}
	waitChange(t, d, "a destroy after the reconnection")
	return nil
}

// testPool is the daemon's first active dir storage pool, and its target
// directory.
func testPool(t *testing.T, raw *golibvirt.Libvirt) (string, string) {
	t.Helper()
	pools, _, err := raw.ConnectListAllStoragePools(1, golibvirt.ConnectListStoragePoolsActive|golibvirt.ConnectListStoragePoolsDir)
	if err != nil {
		t.Fatal(err)
	}
	if len(pools) == 0 {
		t.Fatal("the test daemon has no active dir storage pool")
	}
	x, err := raw.StoragePoolGetXMLDesc(pools[0], 0)
	if err != nil {
		t.Fatal(err)
	}
	sp := &libvirtxml.StoragePool{}
	if err := sp.Unmarshal(x); err != nil {
		t.Fatal(err)
	}
	return pools[0].Name, sp.Target.Path
}

func deleteVolume(t *testing.T, raw *golibvirt.Libvirt, key string) {
	t.Cleanup(func() {
		if v, err := raw.StorageVolLookupByKey(key); err == nil {
			_ = raw.StorageVolDelete(v, 0)
		}
	})
}

func TestStorage(t *testing.T) {
	f := newFixture(t)
	raw, ns := f.raw, f.ns
	ctx := context.Background()
	d := f.driver(t, "h1", "boot-1")
	pool, poolDir := testPool(t, raw)

	if err := d.Plug(ctx, pool); err != nil {
		t.Fatalf("Plug(%s): %v", pool, err)
	}
	err := d.Plug(ctx, "no-such-pool")
	if err == nil || !strings.Contains(err.Error(), `"no-such-pool" is not defined`) {
		t.Errorf("Plug of a missing pool: %v, want an error saying it is not defined", err)
	}

	// Plug starts an inactive pool.
	inactive := ns + "-pool"
	sp := &libvirtxml.StoragePool{Type: "dir", Name: inactive, Target: &libvirtxml.StoragePoolTarget{Path: poolDir + "/" + inactive}}
	spXML, err := sp.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	p, err := raw.StoragePoolDefineXML(spXML, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = raw.StoragePoolDestroy(p)
		_ = raw.StoragePoolDelete(p, 0)
		_ = raw.StoragePoolUndefine(p)
	})
	if err := raw.StoragePoolBuild(p, 0); err != nil {
		t.Fatal(err)
	}
	if err := d.Plug(ctx, inactive); err != nil {
		t.Fatalf("Plug of an inactive pool: %v", err)
	}
	if a, err := raw.StoragePoolIsActive(p); err != nil || a != 1 {
		t.Errorf("pool active = %d (%v) after Plug", a, err)
	}

	name := ns + "-vdi"
	key, err := d.EnsureVolume(ctx, pool, name, 3<<20)
	if err != nil {
		t.Fatal(err)
	}
	deleteVolume(t, raw, key)
	again, err := d.EnsureVolume(ctx, pool, name, 5<<20)
	if err != nil || again != key {
		t.Errorf("second EnsureVolume = %q, %v; want %q", again, err, key)
	}
	v, err := raw.StorageVolLookupByKey(key)
	if err != nil {
		t.Fatal(err)
	}
	_, capacity, _, err := raw.StorageVolGetInfo(v)
	if err != nil || capacity != 3<<20 {
		t.Errorf("volume capacity %d (%v), want %d", capacity, err, 3<<20)
	}
	if _, err := d.EnsureVolume(ctx, "no-such-pool", name, 1<<20); err == nil {
		t.Error("EnsureVolume in a missing pool succeeded")
	}
}

// sharedPool is the daemon's storage pool shared (hack/libvirt-host.sh's
// storage shared by every host) when it is active, else its first dir pool.
func sharedPool(t *testing.T, raw *golibvirt.Libvirt) string {
	t.Helper()
	if p, err := raw.StoragePoolLookupByName("shared"); err == nil {
		if a, err := raw.StoragePoolIsActive(p); err == nil && a == 1 {
			return p.Name
		}
	}
	pool, _ := testPool(t, raw)
	return pool
}

// TestVolumesOfTwoNamespaces has two namespaces' agents on one host, whose
// SRs share a storage pool: their VDIs of one name get two volumes, and
// each VM's QEMU opens its own. FindVolume finds a recorded volume by its
// key, else by its name, and creates none.
func TestVolumesOfTwoNamespaces(t *testing.T) {
	f := newFixture(t)
	raw, ns1 := f.raw, f.ns
	ns2 := ns1 + "-b"
	cleanupNamespace(t, raw, ns2)
	ctx := context.Background()
	pool := sharedPool(t, raw)
	drivers := map[string]*Driver{ns1: f.driver(t, "h1", "boot-1"), ns2: newDriver(t, f.uri, ns2, "h1", "boot-1")}
	keys := map[string]string{}
	for _, ns := range []string{ns1, ns2} {
		key, err := drivers[ns].EnsureVolume(ctx, pool, agent.VolumeName(ns, "root"), 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		deleteVolume(t, raw, key)
		keys[ns] = key
		vm := testVM(ns, "vm1")
		vm.Disks = []agent.Disk{{Name: "root", VirtualDisk: "root", Mode: "RW", StoragePool: pool, Volume: key}}
		if err := drivers[ns].Start(ctx, vm); err != nil {
			t.Fatal(err)
		}
		x := liveXML(t, raw, DomainName(ns, "vm1"))
		if len(x.Devices.Disks) != 1 || x.Devices.Disks[0].Source.Volume == nil ||
			x.Devices.Disks[0].Source.Volume.Pool != pool || x.Devices.Disks[0].Source.Volume.Volume != agent.VolumeName(ns, "root") {
			t.Errorf("domain %s's disks %+v, want volume %s of pool %s", DomainName(ns, "vm1"), x.Devices.Disks,
				agent.VolumeName(ns, "root"), pool)
		}
	}
	t.Logf("VDI root of namespaces %s and %s in storage pool %s: volumes %s and %s", ns1, ns2, pool, keys[ns1], keys[ns2])
	if keys[ns1] == keys[ns2] {
		t.Fatalf("both namespaces' VDI root have volume %s", keys[ns1])
	}
	if strings.HasPrefix(keys[ns1], "/") { // a file: each QEMU opens its own
		for ns, other := range map[string]string{ns1: ns2, ns2: ns1} {
			cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", qemuPID(t, DomainName(ns, "vm1"))))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(cmdline), keys[ns]) || strings.Contains(string(cmdline), keys[other]) {
				t.Errorf("QEMU of %s opens %q, want %s and not %s", DomainName(ns, "vm1"), cmdline, keys[ns], keys[other])
			}
		}
	}

	d := drivers[ns1]
	for _, tc := range []struct {
		what, key string
		names     []string
		want      string
	}{
		{"by its recorded key", keys[ns1], []string{agent.VolumeName(ns1, "other")}, keys[ns1]},
		{"by name, its key gone", "/old-storage/" + agent.VolumeName(ns1, "root"),
			[]string{agent.VolumeName(ns1, "none"), agent.VolumeName(ns1, "root")}, keys[ns1]},
		{"nowhere", "/old-storage/" + agent.VolumeName(ns1, "lost"), []string{agent.VolumeName(ns1, "lost")}, ""},
	} {
		got, ok, err := d.FindVolume(ctx, pool, tc.key, tc.names...)
		if err != nil || got != tc.want || ok != (tc.want != "") {
			t.Errorf("FindVolume %s = %q, %v, %v; want %q", tc.what, got, ok, err, tc.want)
		}
	}
	// The key of a volume of another pool (the SR's pool changed) is not
	// this pool's volume: found by name.
	pools, _, err := raw.ConnectListAllStoragePools(1, golibvirt.ConnectListStoragePoolsActive|golibvirt.ConnectListStoragePoolsDir)
	if err != nil {
		t.Fatal(err)
	}
	if i := slices.IndexFunc(pools, func(p golibvirt.StoragePool) bool { return p.Name != pool }); i >= 0 {
		elsewhere, err := d.EnsureVolume(ctx, pools[i].Name, agent.VolumeName(ns1, "root"), 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		deleteVolume(t, raw, elsewhere)
		if got, ok, err := d.FindVolume(ctx, pool, elsewhere, agent.VolumeName(ns1, "root")); err != nil || !ok || got != keys[ns1] {
			t.Errorf("FindVolume in %s by the key of a volume of %s = %q, %v, %v; want %s", pool, pools[i].Name, got, ok, err, keys[ns1])
		}
	}
	p, err := raw.StoragePoolLookupByName(pool)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := raw.StorageVolLookupByName(p, agent.VolumeName(ns1, "lost")); !isCode(err, golibvirt.ErrNoStorageVol) {
		deleteVolume(t, raw, v.Key)
		t.Errorf("FindVolume of a volume that is nowhere created %s (%v)", v.Key, err)
	}
	if _, _, err := d.FindVolume(ctx, "no-such-pool", "", agent.VolumeName(ns1, "root")); err == nil ||
		!strings.Contains(err.Error(), "is not defined") {
		t.Errorf("FindVolume in a missing pool: %v, want an error saying it is not defined", err)
	}
}

func TestNetworks(t *testing.T) {
	f := newFixture(t)
	raw := f.raw
	d := f.driver(t, "h1", "boot-1")
	nets, _, err := raw.ConnectListAllNetworks(1, golibvirt.ConnectListNetworksActive)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, n := range nets {
		want = append(want, n.Name)
	}
	slices.Sort(want)
	got, err := d.Networks(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Errorf("Networks = %v, want %v", got, want)
	}
	if len(got) == 0 {
		t.Error("the test daemon has no active network")
	}
}

func TestDisksAndInterfaces(t *testing.T) {
	f := newFixture(t)
	raw, ns := f.raw, f.ns
	ctx := context.Background()
	d := f.driver(t, "h1", "boot-1")
	pool, _ := testPool(t, raw)
	nets, err := d.Networks(ctx)
	if err != nil || len(nets) == 0 {
		t.Fatalf("Networks = %v, %v: the test daemon needs a network", nets, err)
	}
	keys := map[string]string{}
	for _, n := range []string{"root", "iso"} {
		key, err := d.EnsureVolume(ctx, pool, agent.VolumeName(ns, n), 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		deleteVolume(t, raw, key)
		keys[n] = key
	}
	vm := testVM(ns, "vm1")
	vm.Disks = []agent.Disk{
		{Name: "root", VirtualDisk: "root", Mode: "RW", StoragePool: pool, Volume: keys["root"]},
		// No key yet: found by its VDI's volume name in the pool.
		{Name: "iso", VirtualDisk: "iso", Mode: "RO", StoragePool: pool},
	}
	const mac = "52:54:00:12:34:56"
	vm.Interfaces = []agent.Interface{{Name: "eth0", Network: nets[0], MACAddress: mac}}
	if err := d.Start(ctx, vm); err != nil {
		t.Fatal(err)
	}
	x := liveXML(t, raw, DomainName(ns, "vm1"))
	if len(x.Devices.Disks) != 2 {
		t.Fatalf("live domain has %d disks, want 2", len(x.Devices.Disks))
	}
	for i, want := range []struct {
		dev, vol string
		ro       bool
	}{{"vda", agent.VolumeName(ns, "root"), false}, {"vdb", agent.VolumeName(ns, "iso"), true}} {
		disk := x.Devices.Disks[i]
		if disk.Target.Dev != want.dev || disk.Source.Volume == nil || disk.Source.Volume.Volume != want.vol ||
			disk.Source.Volume.Pool != pool {
			t.Errorf("disk %d: %s %+v, want %s on %s/%s", i, disk.Target.Dev, disk.Source.Volume, want.dev, pool, want.vol)
		}
		if (disk.ReadOnly != nil) != want.ro || disk.Shareable != nil {
			t.Errorf("disk %s: readonly %v shareable %v, want readonly %v, not shareable", want.dev, disk.ReadOnly != nil, disk.Shareable != nil, want.ro)
		}
	}
	if len(x.Devices.Interfaces) != 1 || x.Devices.Interfaces[0].MAC == nil || x.Devices.Interfaces[0].MAC.Address != mac {
		t.Errorf("interfaces %+v, want one with MAC %s", x.Devices.Interfaces, mac)
	}
	if x.UUID != vm.UUID {
		t.Errorf("uuid %s, want %s", x.UUID, vm.UUID)
	}

	// A disk whose volume is in no pool of this host is refused, clearly.
	bad := testVM(ns, "vm2")
	bad.Disks = []agent.Disk{{Name: "root", VirtualDisk: "missing", Mode: "RW", StoragePool: pool, Volume: "/nowhere"}}
	if err := d.Start(ctx, bad); err == nil || !strings.Contains(err.Error(), "is not in storage pool") {
		t.Errorf("Start with a missing volume: %v", err)
	}
	bad.Disks = []agent.Disk{{Name: "root", VirtualDisk: "x", Mode: "RW"}}
	if err := d.Start(ctx, bad); err == nil || !strings.Contains(err.Error(), "spec.libvirt.storagePool") {
		t.Errorf("Start with a disk without storage: %v", err)
	}
	wantRunning(t, d, "vm1")
}

// qemuPID is the pid of the QEMU process of domain name, on this machine.
func qemuPID(t *testing.T, name string) int {
	t.Helper()
	procs, err := filepath.Glob("/proc/[0-9]*/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		if strings.Contains(string(b), "guest="+name+",") || strings.Contains(string(b), "guest="+name+"\x00") {
			var pid int
			if _, err := fmt.Sscanf(p, "/proc/%d/cmdline", &pid); err == nil {
				return pid
			}
		}
	}
	t.Fatalf("no QEMU process of domain %s on this machine", name)
	return 0
}

// TestHostResetLeavesNothing kills a domain's QEMU as a host reset does:
// the driver hears of it, and libvirt keeps no definition it could start
// again.
func TestHostResetLeavesNothing(t *testing.T) {
	f := newFixture(t)
	raw, ns := f.raw, f.ns
	ctx := context.Background()
	d := f.driver(t, "h1", "boot-1")
	if err := d.Start(ctx, testVM(ns, "vm1")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	drain(d)
	if err := syscall.Kill(qemuPID(t, DomainName(ns, "vm1")), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitChange(t, d, "the QEMU process killed")
	wantRunning(t, d)
	doms, _, err := raw.ConnectListAllDomains(1, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, dom := range doms {
		if strings.HasPrefix(dom.Name, ns+"_") {
			t.Errorf("domain %s is still known to libvirt after its QEMU died", dom.Name)
		}
	}
}

// TestTestDriver runs a VM's life on libvirt's test hypervisor, through the
// same daemon (test+unix:///default?socket=...): the driver needs nothing
// of QEMU.
func TestTestDriver(t *testing.T) {
	uri := daemonURI(t)
	testURI := withSocket(t, "test:///default", socketOf(t, uri))
	raw := rawConn(t, testURI)
	ns := testNamespace(t, raw)
	ctx := context.Background()
	d := newDriver(t, testURI, ns, "h1", "boot-1")
	if d.guest.Type != "test" {
		t.Errorf("domain type %q on the test hypervisor, want test", d.guest.Type)
	}
	// The test hypervisor's own domain "test" is not poolkeeper's.
	wantRunning(t, d)
	drain(d)
	if err := d.Start(ctx, testVM(ns, "vm1")); err != nil {
		t.Fatal(err)
	}
	waitChange(t, d, "a start")
	wantRunning(t, d, "vm1")
	if err := d.Stop(ctx, "vm1"); err != nil {
		t.Fatal(err)
	}
	wantRunning(t, d)
	if err := d.Start(ctx, testVM(ns, "vm2")); err != nil {
		t.Fatal(err)
	}
	if err := d.StopAll(ctx); err != nil {
		t.Fatal(err)
	}
	wantRunning(t, d)
	if !isActive(t, raw, "test") {
		t.Error("StopAll stopped the test hypervisor's own domain")
	}
}
