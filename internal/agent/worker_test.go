package agent_test

import (
	"context"
	"errors"
	"net/url"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/internal/agent"
	"github.com/poolkeeper/poolkeeper/internal/testutil"
)

// stallingDriver is a sim driver whose start of one VM stalls, as a libvirt
// call does while libvirtd is slow or hung: it returns after stall, or,
// with no stall, once released, and then starts the VM. It counts its
// StopAll calls.
type stallingDriver struct {
	*agent.SimDriver
	vm    string
	stall time.Duration
	// entered is closed when the stalling start begins, returned once it
	// has started the VM; close release to end a stall without a timeout.
	entered, returned, release chan struct{}

	releaseOnce sync.Once

	mu sync.Mutex
	// stalled: the first start of vm, the one that stalls, began.
	stalled      bool
	stopAlls     int
	firstStopAll time.Time
}

// unstall ends the stall (at most once).
func (d *stallingDriver) unstall() { d.releaseOnce.Do(func() { close(d.release) }) }

func newStallingDriver(vm string, stall time.Duration) *stallingDriver {
	return &stallingDriver{SimDriver: agent.NewSimDriver(), vm: vm, stall: stall,
		entered: make(chan struct{}), returned: make(chan struct{}), release: make(chan struct{})}
}

func (d *stallingDriver) Start(ctx context.Context, vm agent.VM) error {
	d.mu.Lock()
	stalls := vm.Name == d.vm && !d.stalled
	d.stalled = d.stalled || stalls
	d.mu.Unlock()
	if !stalls {
		return d.SimDriver.Start(ctx, vm)
	}
	close(d.entered)
	var timeout <-chan time.Time
	if d.stall > 0 {
		t := time.NewTimer(d.stall)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-d.release:
	case <-timeout:
	}
	defer close(d.returned)
	return d.SimDriver.Start(ctx, vm)
}

func (d *stallingDriver) StopAll(ctx context.Context) error {
	d.mu.Lock()
	d.stopAlls++
	if d.firstStopAll.IsZero() {
		d.firstStopAll = time.Now()
	}
	d.mu.Unlock()
	return d.SimDriver.StopAll(ctx)
}

func (d *stallingDriver) stopAllCalls() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.stopAlls
}

// stoppedAllAt is when StopAll was first called (zero: never).
func (d *stallingDriver) stoppedAllAt() time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.firstStopAll
}

func (d *stallingDriver) running() []string {
	r, _ := d.Running(context.Background())
	return r
}

// throughProxy is the API server's config through a proxy of its own, for
// cutting an agent off (with requests that time out within a second).
func throughProxy(t *testing.T) (*testutil.Proxy, *rest.Config) {
	t.Helper()
	u, err := url.Parse(restConfig.Host)
	if err != nil {
		t.Fatal(err)
	}
	proxy := testutil.NewProxy(t, u.Host)
	cfg := rest.CopyConfig(restConfig)
	cfg.Host = "https://" + proxy.Addr()
	cfg.Timeout = time.Second
	return proxy, cfg
}

// A VM whose start takes three heartbeat timeouts (libvirtd slow or hung)
// delays no renewal while the API server is fine: the agent renews its
// Lease every interval meanwhile, does not self-fence, and starts the other
// VMs; once that start returns, the VM runs and the Host's status says so.
func TestSlowStartDelaysNoRenewal(t *testing.T) {
	g := NewWithT(t)
	const timeout, interval = 2 * time.Second, 200 * time.Millisecond
	ns := setup(t, timeout)
	for _, name := range []string{"vm-a", "vm-b", "vm-slow"} {
		placeVM(t, ns, name)
	}
	driver := newStallingDriver("vm-slow", 3*timeout)
	stop := runAgent(t, agent.Config{RESTConfig: restConfig, Namespace: ns, Host: "h1", Interval: interval,
		Driver: driver, BootID: "boot-1"})
	g.Eventually(driver.entered, 20*time.Second).Should(BeClosed(), "the agent starts vm-slow")
	stalled := time.Now()
	g.Eventually(driver.running, timeout, 20*time.Millisecond).Should(Equal([]string{"vm-a", "vm-b"}),
		"the other VMs start while vm-slow's start stalls")

	var renewals []time.Time
	for time.Since(stalled) < 3*timeout-2*interval {
		if r := renewTime(ns, "h1"); len(renewals) == 0 || r.After(renewals[len(renewals)-1]) {
			renewals = append(renewals, r)
		}
		g.Expect(driver.running()).To(Equal([]string{"vm-a", "vm-b"}), "no self-fence while vm-slow's start stalls")
		time.Sleep(20 * time.Millisecond)
	}
	var longest time.Duration
	for i := 1; i < len(renewals); i++ {
		longest = max(longest, renewals[i].Sub(renewals[i-1]))
	}
	// (Renewals every interval, 30 over the stall; the bounds leave room
	// for a loaded machine: a renewal held up by the stalled start would
	// leave none for the whole 3T.)
	g.Expect(len(renewals)).To(BeNumerically(">=", int(3*timeout/interval)/4),
		"the Lease is renewed every interval while a start stalls for %s: %v", 3*timeout, renewals)
	g.Expect(longest).To(BeNumerically("<", timeout), "no renewal waits for the stalled start")

	g.Eventually(driver.returned, 2*timeout).Should(BeClosed())
	g.Eventually(func(g Gomega) {
		g.Expect(driver.running()).To(Equal([]string{"vm-a", "vm-b", "vm-slow"}))
		vm := &vpoolv1alpha1.VirtualMachine{}
		g.Expect(k8s.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: "vm-slow"}, vm)).To(Succeed())
		g.Expect(vm.Status.PowerState).To(Equal(vpoolv1alpha1.PowerRunning))
		host := &vpoolv1alpha1.Host{}
		g.Expect(k8s.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: "h1"}, host)).To(Succeed())
		g.Expect(host.Status.RunningVMs).To(Equal([]string{"vm-a", "vm-b", "vm-slow"}))
	}, 20*time.Second, 50*time.Millisecond).Should(Succeed(), "once its start returns, vm-slow runs and is reported")
	g.Expect(stop()).To(Succeed(), "the agent did not self-fence")
}

// Cut off from the API server while a VM's start hangs, the agent
// self-fences on time, without waiting for that start; when the start
// returns at last, after Run returned, the VM it brought up is stopped:
// no VM runs.
func TestStartReturningAfterTheSelfFenceIsStopped(t *testing.T) {
	g := NewWithT(t)
	const timeout = 2 * time.Second
	ns := setup(t, timeout)
	proxy, cfg := throughProxy(t)
	placeVM(t, ns, "vm-a")
	placeVM(t, ns, "vm-slow")
	driver := newStallingDriver("vm-slow", 0)
	stop := runAgent(t, agent.Config{RESTConfig: cfg, Namespace: ns, Host: "h1", Interval: 200 * time.Millisecond,
		Driver: driver, BootID: "boot-1"})
	t.Cleanup(driver.unstall) // before the agent is stopped, should the test fail first
	g.Eventually(driver.entered, 20*time.Second).Should(BeClosed(), "the agent starts vm-slow")
	g.Eventually(driver.running, 20*time.Second, 20*time.Millisecond).Should(Equal([]string{"vm-a"}))

	proxy.Cut()
	cut := time.Now()
	g.Eventually(func() bool { return driver.stopAllCalls() > 0 && len(driver.running()) == 0 }, 3*timeout,
		20*time.Millisecond).Should(BeTrue(), "the agent self-fences although vm-slow's start hangs")
	// The self-fence stops the VMs by S + T, S the last renewal's start,
	// before the cut: well before the operator's safe time S + T + T/2.
	g.Expect(driver.stoppedAllAt().Sub(cut)).To(BeNumerically("<", timeout+timeout/2), "before the operator's safe time")
	err := stop()
	g.Expect(errors.Is(err, agent.ErrSelfFenced)).To(BeTrue(), "Run returns ErrSelfFenced, got %v", err)

	driver.unstall() // the hung start returns, and brings vm-slow up
	g.Eventually(driver.returned, 5*time.Second).Should(BeClosed())
	g.Eventually(driver.running, 5*time.Second, 10*time.Millisecond).Should(BeEmpty(),
		"the VM a start brought up after the self-fence is stopped")
	g.Consistently(driver.running, 2*time.Second, 50*time.Millisecond).Should(BeEmpty(), "and stays stopped")
}

// staleDriver is a sim driver whose list of running VMs can be out of date,
// as a hypervisor's is while a start is in flight: a Running called while
// the start of vm is held lets that start return, and then answers with
// the list read before it. It counts the starts of vm.
type staleDriver struct {
	*agent.SimDriver
	vm string
	// held is closed when a start of vm begins; let ends it.
	held, let chan struct{}

	mu       sync.Mutex
	starts   int
	inFlight bool
	stale    int // the stale answers given
}

func (d *staleDriver) Start(ctx context.Context, vm agent.VM) error {
	if vm.Name != d.vm {
		return d.SimDriver.Start(ctx, vm)
	}
	d.mu.Lock()
	d.starts++
	first := d.starts == 1
	d.inFlight = first
	d.mu.Unlock()
	if first {
		close(d.held)
		<-d.let
	}
	err := d.SimDriver.Start(ctx, vm)
	d.mu.Lock()
	d.inFlight = false
	d.mu.Unlock()
	return err
}

func (d *staleDriver) Running(ctx context.Context) ([]string, error) {
	before, err := d.SimDriver.Running(ctx)
	d.mu.Lock()
	release := d.inFlight && d.stale == 0
	if release {
		d.stale++
	}
	d.mu.Unlock()
	if release {
		close(d.let)
		// The start returns and its operation ends before this list, read
		// before it, reaches the pass.
		time.Sleep(300 * time.Millisecond)
	}
	return before, err
}

func (d *staleDriver) counts() (starts, stale int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.starts, d.stale
}

// A pass that read the running VMs while a VM's start was in flight, and
// sees that start return before it gets to the VM, does not start it again
// from its out-of-date list: the VM is started once, and reported Running.
func TestStartReturningDuringAPassIsNotRepeated(t *testing.T) {
	g := NewWithT(t)
	ns := setup(t, 2*time.Second)
	placeVM(t, ns, "vm-a")
	driver := &staleDriver{SimDriver: agent.NewSimDriver(), vm: "vm-a", held: make(chan struct{}), let: make(chan struct{})}
	stop := runAgent(t, agent.Config{RESTConfig: restConfig, Namespace: ns, Host: "h1", Interval: 200 * time.Millisecond,
		Driver: driver, BootID: "boot-1"})
	g.Eventually(driver.held, 20*time.Second).Should(BeClosed(), "the agent starts vm-a")
	g.Eventually(func() int { _, stale := driver.counts(); return stale }, 20*time.Second, 20*time.Millisecond).
		Should(Equal(1), "a pass reads the running VMs while vm-a's start is in flight")
	g.Eventually(func(g Gomega) {
		vm := &vpoolv1alpha1.VirtualMachine{}
		g.Expect(k8s.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: "vm-a"}, vm)).To(Succeed())
		g.Expect(vm.Status.PowerState).To(Equal(vpoolv1alpha1.PowerRunning))
	}, 20*time.Second, 50*time.Millisecond).Should(Succeed())
	g.Consistently(func() int { starts, _ := driver.counts(); return starts }, time.Second, 50*time.Millisecond).
		Should(Equal(1), "vm-a is started once")
	g.Expect(stop()).To(Succeed())
}

// refusingDriver is a sim driver that refuses to start one VM, as a
// hypervisor does for a spec it cannot run (a kernel that is not there),
// until allowed.
type refusingDriver struct {
	*agent.SimDriver
	vm    string
	mu    sync.Mutex
	allow bool
	tries int
}

func (d *refusingDriver) Start(ctx context.Context, vm agent.VM) error {
	d.mu.Lock()
	refuse := vm.Name == d.vm && !d.allow
	if vm.Name == d.vm {
		d.tries++
	}
	d.mu.Unlock()
	if refuse {
		return errors.New("Cannot access storage file '/var/lib/kernels/missing': No such file or directory")
	}
	return d.SimDriver.Start(ctx, vm)
}

// What the agent says of a VM it does not start, in the VM's Started
// condition: the hypervisor's error of a refused start (tried again at every
// heartbeat, not in a loop), what it waits for (an interface without a MAC
// address), and Running once the VM runs.
func TestAgentSaysWhyAVMDoesNotStart(t *testing.T) {
	g := NewWithT(t)
	ns := setup(t, 4*time.Second)
	placeVM(t, ns, "vm-a")
	placeVM(t, ns, "vm-nic")
	ctx := context.Background()
	vm := &vpoolv1alpha1.VirtualMachine{}
	g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: "vm-nic"}, vm)).To(Succeed())
	vm.Spec.Interfaces = []vpoolv1alpha1.VMInterface{{Name: "eth0", Network: "default"}}
	g.Expect(k8s.Update(ctx, vm)).To(Succeed())
	driver := &refusingDriver{SimDriver: agent.NewSimDriver(), vm: "vm-a"}
	driver.SetNetworks("default")
	const interval = 200 * time.Millisecond
	stop := runAgent(t, agent.Config{RESTConfig: restConfig, Namespace: ns, Host: "h1", Interval: interval,
		Driver: driver, BootID: "boot-1"})

	started := func(g Gomega, name string) metav1.Condition {
		vm := &vpoolv1alpha1.VirtualMachine{}
		g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, vm)).To(Succeed())
		c := meta.FindStatusCondition(vm.Status.Conditions, vpoolv1alpha1.VMStarted)
		g.Expect(c).NotTo(BeNil(), "VM %s has no Started condition", name)
		return *c
	}
	g.Eventually(func(g Gomega) {
		c := started(g, "vm-a")
		g.Expect(c.Status).To(Equal(metav1.ConditionFalse))
		g.Expect(c.Reason).To(Equal(vpoolv1alpha1.ReasonVMStartFailed))
		g.Expect(c.Message).To(HavePrefix(vpoolv1alpha1.StartedMessagePrefix("h1")))
		g.Expect(c.Message).To(ContainSubstring("Cannot access storage file '/var/lib/kernels/missing'"))
		c = started(g, "vm-nic")
		g.Expect(c.Status).To(Equal(metav1.ConditionFalse))
		g.Expect(c.Reason).To(Equal(vpoolv1alpha1.ReasonVMWaitingOnHost))
		g.Expect(c.Message).To(Equal("host h1: interface eth0 has no MAC address yet (the operator assigns one)"))
	}, 20*time.Second, 50*time.Millisecond).Should(Succeed())

	// Tried again at each renewal's pass, not in a loop.
	driver.mu.Lock()
	before := driver.tries
	driver.mu.Unlock()
	time.Sleep(10 * interval)
	driver.mu.Lock()
	tries := driver.tries - before
	driver.allow = true
	driver.mu.Unlock()
	g.Expect(tries).To(BeNumerically(">=", 1), "the refused start is tried again")
	// (One per renewal: ten in ten intervals, one more at either end.)
	g.Expect(tries).To(BeNumerically("<=", 12), "a refused start is tried again once per renewal: %d tries in 10 intervals", tries)

	g.Eventually(func(g Gomega) {
		c := started(g, "vm-a")
		g.Expect(c.Status).To(Equal(metav1.ConditionTrue))
		g.Expect(c.Reason).To(Equal(vpoolv1alpha1.ReasonVMRunningOnHost))
		g.Expect(c.Message).To(Equal("host h1: running"))
	}, 20*time.Second, 50*time.Millisecond).Should(Succeed(), "once the start succeeds, the VM runs and says so")
	g.Expect(stop()).To(Succeed())
}

// transientDriver lists a VM while its start is in flight, as libvirt lists
// a domain it is creating, and then fails that start (QEMU exited).
type transientDriver struct {
	*agent.SimDriver
	vm     string
	mu     sync.Mutex
	listed bool
	tries  int
	// quick: the start fails at once (so that none is in flight when the
	// test stops the agent).
	quick bool
}

func (d *transientDriver) Start(ctx context.Context, vm agent.VM) error {
	if vm.Name != d.vm {
		return d.SimDriver.Start(ctx, vm)
	}
	d.mu.Lock()
	d.tries++
	if d.quick {
		d.mu.Unlock()
		return errors.New("internal error: qemu unexpectedly closed the monitor")
	}
	d.listed = true
	d.mu.Unlock()
	time.Sleep(600 * time.Millisecond)
	d.mu.Lock()
	d.listed = false
	d.mu.Unlock()
	return errors.New("internal error: qemu unexpectedly closed the monitor")
}

func (d *transientDriver) Running(ctx context.Context) ([]string, error) {
	r, err := d.SimDriver.Running(ctx)
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.listed {
		r = append(r, d.vm)
	}
	return r, err
}

// A VM the driver lists while its start is in flight, a start that then
// fails, is never reported Running: its report waits for the start's return.
func TestVMListedWhileStartingIsNotReportedRunning(t *testing.T) {
	g := NewWithT(t)
	ns := setup(t, 4*time.Second)
	placeVM(t, ns, "vm-a")
	driver := &transientDriver{SimDriver: agent.NewSimDriver(), vm: "vm-a"}
	stop := runAgent(t, agent.Config{RESTConfig: restConfig, Namespace: ns, Host: "h1", Interval: 200 * time.Millisecond,
		Driver: driver, BootID: "boot-1"})
	ctx := context.Background()
	seen := map[string]bool{}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		vm := &vpoolv1alpha1.VirtualMachine{}
		g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: "vm-a"}, vm)).To(Succeed())
		seen[string(vm.Status.PowerState)] = true
		if c := meta.FindStatusCondition(vm.Status.Conditions, vpoolv1alpha1.VMStarted); c != nil {
			seen["Started "+c.Reason] = true
		}
		time.Sleep(20 * time.Millisecond)
	}
	driver.mu.Lock()
	tries := driver.tries
	driver.mu.Unlock()
	g.Expect(tries).To(BeNumerically(">=", 2), "the agent tried the start")
	g.Expect(seen).NotTo(HaveKey(string(vpoolv1alpha1.PowerRunning)), "never reported Running: %v", seen)
	g.Expect(seen).NotTo(HaveKey("Started "+vpoolv1alpha1.ReasonVMRunningOnHost), "never said running: %v", seen)
	g.Expect(seen).To(HaveKey("Started "+vpoolv1alpha1.ReasonVMStartFailed), "says why it does not run: %v", seen)
	driver.mu.Lock()
	driver.quick = true
	driver.mu.Unlock()
	time.Sleep(time.Second) // the slow start in flight returns
	g.Expect(stop()).To(Succeed())
}
