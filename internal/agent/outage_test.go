package agent_test

import (
	"bytes"
	"context"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/internal/agent"
	"github.com/poolkeeper/poolkeeper/internal/agent/statefile"
	"github.com/poolkeeper/poolkeeper/internal/testutil"
)

// outageHost is one in-process agent of the outage tests, behind its own
// proxy to the API server.
type outageHost struct {
	name string
	// storage stands for the pool's shared storage (--sim-storage-dir).
	storage string
	proxy   *testutil.Proxy
	driver  *agent.SimDriver
	stop    func() error
}

func (h *outageHost) running() []string {
	r, _ := h.driver.Running(context.Background())
	return r
}

// setupOutagePool creates a namespace with an HA pool whose heartbeat SR is
// "hb", and the given hosts, Live, each with one VM placed on it.
func setupOutagePool(t *testing.T, timeout time.Duration, hosts ...string) string {
	t.Helper()
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "outage-"}}
	if err := k8s.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	pool := &vpoolv1alpha1.Pool{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "p"}}
	pool.Spec.HA.Enabled = true
	pool.Spec.HA.HeartbeatStorageRepository = "hb"
	pool.Spec.HeartbeatTimeout = &metav1.Duration{Duration: timeout}
	pool.Spec.Fencing.MaxConcurrent, pool.Spec.Fencing.MaxUnhealthyPercent = 1, 50
	if err := k8s.Create(ctx, pool); err != nil {
		t.Fatal(err)
	}
	pool.Status.Epoch = 7
	pool.Status.Hosts.Total = int32(len(hosts))
	if err := k8s.Status().Update(ctx, pool); err != nil {
		t.Fatal(err)
	}
	for _, name := range hosts {
		host := &vpoolv1alpha1.Host{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: name}}
		host.Spec.PoolRef.Name = "p"
		host.Spec.Address = name
		host.Spec.Capacity.CPU.Set(4)
		host.Spec.Capacity.Memory.Set(8 << 30)
		if err := k8s.Create(ctx, host); err != nil {
			t.Fatal(err)
		}
		host.Status.Phase = vpoolv1alpha1.HostPhaseLive
		if err := k8s.Status().Update(ctx, host); err != nil {
			t.Fatal(err)
		}
		vm := &vpoolv1alpha1.VirtualMachine{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "vm-" + name}}
		vm.Spec.PoolRef.Name = "p"
		vm.Spec.PowerState = vpoolv1alpha1.DesiredRunning
		if err := k8s.Create(ctx, vm); err != nil {
			t.Fatal(err)
		}
		vm.Status.ResidentOn = name
		vm.Status.PowerState = vpoolv1alpha1.PowerHalted
		meta.SetStatusCondition(&vm.Status.Conditions, metav1.Condition{Type: vpoolv1alpha1.VMDisksLocked,
			Status: metav1.ConditionTrue, Reason: "Test"})
		if err := k8s.Status().Update(ctx, vm); err != nil {
			t.Fatal(err)
		}
	}
	return ns.Name
}

// startOutageHosts runs one agent per host, each through its own proxy,
// all with their statefile on the heartbeat SR under one shared directory
// (as --sim-storage-dir gives them), and waits until each runs its VM.
func startOutageHosts(t *testing.T, ns string, hosts ...string) []*outageHost {
	t.Helper()
	u, err := url.Parse(restConfig.Host)
	if err != nil {
		t.Fatal(err)
	}
	storage := t.TempDir()
	statefileDir := agent.SimStatefileDir(storage)
	var out []*outageHost
	for _, name := range hosts {
		h := &outageHost{name: name, storage: storage, proxy: testutil.NewProxy(t, u.Host), driver: agent.NewSimDriver()}
		cfg := rest.CopyConfig(restConfig)
		cfg.Host = "https://" + h.proxy.Addr()
		cfg.Timeout = time.Second
		h.stop = runAgent(t, agent.Config{RESTConfig: cfg, Namespace: ns, Host: name, Interval: 200 * time.Millisecond,
			Driver: h.driver, BootID: "boot-" + name, StatefileDir: statefileDir})
		out = append(out, h)
	}
	for _, h := range out {
		NewWithT(t).Eventually(h.running, 20*time.Second, 50*time.Millisecond).Should(ConsistOf("vm-"+h.name),
			"%s starts the VM placed on it", h.name)
	}
	return out
}

// rideOut cuts every host off for d, during which each keeps running its
// VM vm-<host> (why says what that shows), then connects them again and
// waits until each has renewed its Lease.
func rideOut(g Gomega, ns string, hosts []*outageHost, d time.Duration, why string) {
	want := make([][]string, 0, len(hosts))
	for _, h := range hosts {
		want = append(want, []string{"vm-" + h.name})
		h.proxy.Cut()
	}
	g.Consistently(func() [][]string {
		var r [][]string
		for _, h := range hosts {
			r = append(r, h.running())
		}
		return r
	}, d, 50*time.Millisecond).Should(Equal(want), why)
	restored := make(map[string]time.Time, len(hosts))
	for _, h := range hosts {
		restored[h.name] = renewTime(ns, h.name)
		h.proxy.Restore()
	}
	for _, h := range hosts {
		g.Eventually(func() bool { return renewTime(ns, h.name).After(restored[h.name]) }, 20*time.Second,
			50*time.Millisecond).Should(BeTrue(), "%s renews once connected again", h.name)
	}
}

// renewTime is the heartbeat Lease's renewTime of a host (zero if none).
func renewTime(ns, host string) time.Time {
	lease := &coordinationv1.Lease{}
	if k8s.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: host}, lease) != nil ||
		lease.Spec.RenewTime == nil {
		return time.Time{}
	}
	return lease.Spec.RenewTime.Time
}

// With a heartbeat SR, a pool whose every host is cut off from the API
// server for longer than the heartbeat timeout keeps every VM running (the
// operator's storm guard fences nobody, so neither does any agent); once
// connected again, a host then cut off alone self-fences while the others
// keep running.
func TestOutageRiddenOutWithStatefile(t *testing.T) {
	g := NewWithT(t)
	const timeout = 2 * time.Second
	names := []string{"h1", "h2", "h3"}
	ns := setupOutagePool(t, timeout, names...)
	hosts := startOutageHosts(t, ns, names...)

	// The whole pool cut off (as in an API server outage) for three timeouts.
	rideOut(g, ns, hosts, 3*timeout, "the whole pool cut off: no host self-fences, every VM keeps running")
	for _, h := range hosts {
		g.Expect(h.running()).To(ConsistOf("vm-"+h.name), "%s still runs its VM after the outage", h.name)
	}

	// h1 cut off alone: it stops its VM and Run returns ErrSelfFenced; the
	// others keep theirs.
	hosts[0].proxy.Cut()
	g.Eventually(hosts[0].running, 20*time.Second, 50*time.Millisecond).Should(BeEmpty(),
		"h1 cut off alone self-fences")
	err := hosts[0].stop()
	g.Expect(errors.Is(err, agent.ErrSelfFenced)).To(BeTrue(), "h1's Run returns ErrSelfFenced, got %v", err)
	g.Consistently(func() [][]string { return [][]string{hosts[1].running(), hosts[2].running()} },
		2*timeout, 50*time.Millisecond).Should(Equal([][]string{{"vm-h2"}, {"vm-h3"}}),
		"h2 and h3, connected, keep their VMs")
	for _, h := range hosts[1:] {
		g.Expect(h.stop()).To(Succeed(), "%s's Run ends without a self-fence", h.name)
	}
}

// slot is the raw block of a host's slot in the statefile of heartbeat SR
// sr (nil when there is none).
func (h *outageHost) slot(sr string) []byte {
	b, _ := os.ReadFile(filepath.Join(h.storage, sr, "statefile", h.name+".slot"))
	return b
}

// setHeartbeatSR sets (or with "" clears) the pool's heartbeat SR.
func setHeartbeatSR(t *testing.T, ns, sr string) {
	t.Helper()
	pool := &vpoolv1alpha1.Pool{}
	if err := k8s.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: "p"}, pool); err != nil {
		t.Fatal(err)
	}
	pool.Spec.HA.HeartbeatStorageRepository = sr
	if err := k8s.Update(context.Background(), pool); err != nil {
		t.Fatal(err)
	}
}

// The agents follow the pool's heartbeat SR while they run: set on a pool
// whose agents started without one, it is written at once and carries them
// through a whole-pool cut-off; cleared, it is no longer written, and a
// whole-pool cut-off then stops every VM, as without a heartbeat SR.
func TestHeartbeatSRFollowedWhileRunning(t *testing.T) {
	g := NewWithT(t)
	const timeout = 2 * time.Second
	names := []string{"h1", "h2", "h3"}
	ns := setupOutagePool(t, timeout, names...)
	setHeartbeatSR(t, ns, "")
	hosts := startOutageHosts(t, ns, names...)
	g.Consistently(func() []byte { return hosts[0].slot("hb") }, timeout, 50*time.Millisecond).Should(BeNil(),
		"no heartbeat SR: no statefile is written")

	setHeartbeatSR(t, ns, "hb")
	for _, h := range hosts {
		g.Eventually(func() int { return len(h.slot("hb")) }, 10*time.Second, 50*time.Millisecond).
			Should(Equal(statefile.BlockSize), "%s writes its slot once the pool names a heartbeat SR", h.name)
	}
	rideOut(g, ns, hosts, 3*timeout, "the heartbeat SR set while the agents ran carries them through a whole-pool cut-off")

	setHeartbeatSR(t, ns, "")
	for _, h := range hosts {
		g.Eventually(func() bool {
			before := h.slot("hb")
			time.Sleep(timeout / 2) // two statefile periods at the 200 ms interval, and more
			return bytes.Equal(before, h.slot("hb"))
		}, 10*time.Second, 10*time.Millisecond).Should(BeTrue(), "%s stops writing its slot once the heartbeat SR is cleared", h.name)
		g.Expect(h.running()).To(ConsistOf("vm-"+h.name), "%s keeps its VM meanwhile", h.name)
	}
	for _, h := range hosts {
		h.proxy.Cut()
	}
	for _, h := range hosts {
		g.Eventually(h.running, 20*time.Second, 50*time.Millisecond).Should(BeEmpty(),
			"without the heartbeat SR %s self-fences in a whole-pool cut-off", h.name)
		err := h.stop()
		g.Expect(errors.Is(err, agent.ErrSelfFenced)).To(BeTrue(), "%s's Run returns ErrSelfFenced, got %v", h.name, err)
	}
}
