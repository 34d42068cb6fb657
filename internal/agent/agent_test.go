package agent_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/internal/agent"
	"github.com/poolkeeper/poolkeeper/internal/testutil"
)

var (
	restConfig *rest.Config
	k8s        client.Client
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	var stop func()
	var err error
	restConfig, stop, err = testutil.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer stop()
	k8s, err = client.New(restConfig, client.Options{Scheme: testutil.Scheme})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// setup creates a namespace with a pool and one host.
func setup(t *testing.T, timeout time.Duration) string {
	t.Helper()
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "agent-"}}
	if err := k8s.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	pool := &vpoolv1alpha1.Pool{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "p"}}
	pool.Spec.HA.Enabled = true
	pool.Spec.HeartbeatTimeout = &metav1.Duration{Duration: timeout}
	pool.Spec.Fencing.MaxConcurrent, pool.Spec.Fencing.MaxUnhealthyPercent = 1, 50
	if err := k8s.Create(ctx, pool); err != nil {
		t.Fatal(err)
	}
	pool.Status.Epoch = 7
	if err := k8s.Status().Update(ctx, pool); err != nil {
		t.Fatal(err)
	}
	host := &vpoolv1alpha1.Host{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "h1"}}
	host.Spec.PoolRef.Name = "p"
	host.Spec.Address = "h1"
	host.Spec.Capacity.CPU.Set(4)
	host.Spec.Capacity.Memory.Set(8 << 30)
	if err := k8s.Create(ctx, host); err != nil {
		t.Fatal(err)
	}
	return ns.Name
}

// placeVM creates a VM placed on h1 with its disks locked, as the operator
// would, and marks h1 Live.
func placeVM(t *testing.T, ns, name string) {
	t.Helper()
	ctx := context.Background()
	vm := &vpoolv1alpha1.VirtualMachine{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	vm.Spec.PoolRef.Name = "p"
	vm.Spec.PowerState = vpoolv1alpha1.DesiredRunning
	if err := k8s.Create(ctx, vm); err != nil {
		t.Fatal(err)
	}
	vm.Status.ResidentOn = "h1"
	vm.Status.PowerState = vpoolv1alpha1.PowerHalted
	meta.SetStatusCondition(&vm.Status.Conditions, metav1.Condition{Type: vpoolv1alpha1.VMDisksLocked, Status: metav1.ConditionTrue, Reason: "Test"})
	if err := k8s.Status().Update(ctx, vm); err != nil {
		t.Fatal(err)
	}
	host := &vpoolv1alpha1.Host{}
	if err := k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: "h1"}, host); err != nil {
		t.Fatal(err)
	}
	host.Status.Phase = vpoolv1alpha1.HostPhaseLive
	if err := k8s.Status().Update(ctx, host); err != nil {
		t.Fatal(err)
	}
}

// writeCounter counts the API writes a client makes, by resource.
type writeCounter struct {
	mu     sync.Mutex
	counts map[string]int
	next   http.RoundTripper
}

func (w *writeCounter) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method != http.MethodGet {
		// /apis/<group>/<version>/namespaces/<ns>/<resource>/<name>[/<sub>]
		path := req.URL.Path
		if i := strings.Index(path, "/namespaces/"); i >= 0 {
			rest := strings.SplitN(path[i+len("/namespaces/"):], "/", 2)
			path = rest[len(rest)-1]
		}
		resource := req.Method + " " + path
		w.mu.Lock()
		w.counts[resource]++
		w.mu.Unlock()
	}
	return w.next.RoundTrip(req)
}

func (w *writeCounter) snapshot() map[string]int {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[string]int{}
	for k, v := range w.counts {
		out[k] = v
	}
	return out
}

func runAgent(t *testing.T, cfg agent.Config) (stop func() error) {
	t.Helper()
	a, err := agent.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var once sync.Once
	var result error
	stop = func() error {
		once.Do(func() {
			cancel()
			result = <-done
		})
		return result
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

// The agent reports its boot ID, the pool epoch it follows and its VMs, and
// in the steady state makes exactly one API write per heartbeat: the Lease.
func TestOneWritePerHeartbeat(t *testing.T) {
	g := NewWithT(t)
	ns := setup(t, 4*time.Second)
	counter := &writeCounter{counts: map[string]int{}}
	cfg := rest.CopyConfig(restConfig)
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper { counter.next = rt; return counter })
	driver := agent.NewSimDriver()
	placeVM(t, ns, "vm-a")
	runAgent(t, agent.Config{RESTConfig: cfg, Namespace: ns, Host: "h1", Interval: 200 * time.Millisecond, Driver: driver, BootID: "boot-1"})

	host := &vpoolv1alpha1.Host{}
	g.Eventually(func(g Gomega) {
		g.Expect(k8s.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: "h1"}, host)).To(Succeed())
		g.Expect(host.Status.BootID).To(Equal("boot-1"))
		g.Expect(host.Status.MasterEpoch).To(BeEquivalentTo(7))
		g.Expect(host.Status.RunningVMs).To(Equal([]string{"vm-a"}))
	}, 20*time.Second, 50*time.Millisecond).Should(Succeed())
	lease := &coordinationv1.Lease{}
	g.Expect(k8s.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: "h1"}, lease)).To(Succeed())
	g.Expect(lease.Labels).To(HaveKeyWithValue(vpoolv1alpha1.LabelHost, "h1"))
	g.Expect(*lease.Spec.HolderIdentity).To(Equal("h1/boot-1"))
	g.Expect(*lease.Spec.LeaseDurationSeconds).To(BeEquivalentTo(4), "the agent declares its self-fence deadline")

	before := counter.snapshot()
	rvBefore := lease.ResourceVersion
	time.Sleep(2 * time.Second)
	after := counter.snapshot()
	writes := map[string]int{}
	for k, v := range after {
		if d := v - before[k]; d > 0 {
			writes[k] = d
		}
	}
	g.Expect(writes).To(HaveLen(1), "only the Lease is written in the steady state: %v", writes)
	g.Expect(writes).To(HaveKey("PUT leases/h1"))
	g.Expect(writes["PUT leases/h1"]).To(BeNumerically(">=", 3))
	g.Expect(k8s.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: "h1"}, lease)).To(Succeed())
	g.Expect(lease.ResourceVersion).NotTo(Equal(rvBefore))
}

// Cut off from the API server, the agent stops every VM and exits at its
// watchdog deadline.
func TestWatchdogSelfFencesWhenCutOff(t *testing.T) {
	g := NewWithT(t)
	ns := setup(t, 2*time.Second)
	u, err := url.Parse(restConfig.Host)
	g.Expect(err).NotTo(HaveOccurred())
	proxy := testutil.NewProxy(t, u.Host)
	cfg := rest.CopyConfig(restConfig)
	cfg.Host = "https://" + proxy.Addr()
	cfg.Timeout = time.Second
	driver := agent.NewSimDriver()
	placeVM(t, ns, "vm-a")
	placeVM(t, ns, "vm-b")
	stop := runAgent(t, agent.Config{RESTConfig: cfg, Namespace: ns, Host: "h1", Interval: 200 * time.Millisecond, Driver: driver})

	lease := &coordinationv1.Lease{}
	g.Eventually(func() error {
		return k8s.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: "h1"}, lease)
	}, 20*time.Second, 50*time.Millisecond).Should(Succeed())
	g.Eventually(func() []string { r, _ := driver.Running(context.Background()); return r }, 20*time.Second, 50*time.Millisecond).
		Should(HaveLen(2), "the agent starts the VMs placed on it")
	g.Consistently(func() []string { r, _ := driver.Running(context.Background()); return r }, time.Second, 100*time.Millisecond).
		Should(HaveLen(2), "connected: VMs keep running")

	proxy.Cut()
	var runErr error
	g.Eventually(func() bool {
		r, _ := driver.Running(context.Background())
		return len(r) == 0
	}, 20*time.Second, 50*time.Millisecond).Should(BeTrue(), "the watchdog stops every VM")
	runErr = stop()
	g.Expect(errors.Is(runErr, agent.ErrSelfFenced)).To(BeTrue(), "Run returns ErrSelfFenced, got %v", runErr)
}

// An interval longer than a quarter of the pool's heartbeat timeout is
// shortened to that quarter, and follows the timeout while the agent runs:
// a shorter timeout at once, a longer one once declared in the Lease.
func TestIntervalFollowsTheTimeout(t *testing.T) {
	g := NewWithT(t)
	ns := setup(t, 2*time.Second)
	runAgent(t, agent.Config{RESTConfig: restConfig, Namespace: ns, Host: "h1", Interval: time.Second, Driver: agent.NewSimDriver()})
	reported := func(g Gomega) (time.Duration, int32) {
		host := &vpoolv1alpha1.Host{}
		g.Expect(k8s.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: "h1"}, host)).To(Succeed())
		lease := &coordinationv1.Lease{}
		g.Expect(k8s.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: "h1"}, lease)).To(Succeed())
		g.Expect(host.Status.HeartbeatInterval).NotTo(BeNil())
		return host.Status.HeartbeatInterval.Duration, *lease.Spec.LeaseDurationSeconds
	}
	expect := func(interval time.Duration, declared int32) {
		t.Helper()
		g.Eventually(func(g Gomega) {
			i, d := reported(g)
			g.Expect(i).To(Equal(interval))
			g.Expect(d).To(Equal(declared))
		}, 20*time.Second, 50*time.Millisecond).Should(Succeed())
	}
	expect(500*time.Millisecond, 2)

	setTimeout := func(d time.Duration) {
		pool := &vpoolv1alpha1.Pool{}
		g.Expect(k8s.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: "p"}, pool)).To(Succeed())
		pool.Spec.HeartbeatTimeout = &metav1.Duration{Duration: d}
		g.Expect(k8s.Update(context.Background(), pool)).To(Succeed())
	}
	setTimeout(time.Second)
	expect(250*time.Millisecond, 1)
	setTimeout(8 * time.Second)
	expect(time.Second, 8)
}

// A second agent for a host whose agent runs (another boot: a cloned host,
// or a second process) runs no VM while the first one renews the Lease, says
// so in a standby Lease, and takes over only once the first has stopped
// renewing for its self-fence deadline and a margin. At no moment do both
// run the VM.
func TestSecondAgentWaitsForTheFirst(t *testing.T) {
	g := NewWithT(t)
	const timeout = 2 * time.Second
	ns := setup(t, timeout)
	placeVM(t, ns, "vm-a")
	first, second := agent.NewSimDriver(), agent.NewSimDriver()
	running := func(d *agent.SimDriver) []string { r, _ := d.Running(context.Background()); return r }
	stopFirst := runAgent(t, agent.Config{RESTConfig: restConfig, Namespace: ns, Host: "h1", Interval: 200 * time.Millisecond,
		Driver: first, BootID: "boot-1"})
	g.Eventually(func() []string { return running(first) }, 20*time.Second, 20*time.Millisecond).Should(Equal([]string{"vm-a"}))

	both := make(chan string, 1)
	watching, stopWatching := context.WithCancel(context.Background())
	defer stopWatching()
	go func() {
		for watching.Err() == nil {
			if a, b := running(first), running(second); len(a) > 0 && len(b) > 0 {
				both <- fmt.Sprintf("first runs %v while second runs %v", a, b)
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	runAgent(t, agent.Config{RESTConfig: restConfig, Namespace: ns, Host: "h1", Interval: 200 * time.Millisecond,
		Driver: second, BootID: "boot-2"})
	standby := &coordinationv1.Lease{}
	g.Eventually(func() error {
		return k8s.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: agent.StandbyLeaseName("h1", "boot-2")}, standby)
	}, 20*time.Second, 50*time.Millisecond).Should(Succeed(), "the waiting agent announces itself")
	g.Expect(standby.Labels).To(HaveKeyWithValue(vpoolv1alpha1.LabelStandby, "true"))
	g.Expect(*standby.Spec.HolderIdentity).To(Equal("h1/boot-2"))
	g.Consistently(func(g Gomega) {
		g.Expect(running(second)).To(BeEmpty())
		g.Expect(running(first)).To(Equal([]string{"vm-a"}))
		lease := &coordinationv1.Lease{}
		g.Expect(k8s.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: "h1"}, lease)).To(Succeed())
		g.Expect(*lease.Spec.HolderIdentity).To(Equal("h1/boot-1"))
		host := &vpoolv1alpha1.Host{}
		g.Expect(k8s.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: "h1"}, host)).To(Succeed())
		g.Expect(host.Status.BootID).To(Equal("boot-1"), "the waiting agent reports nothing")
	}, 2*timeout, 100*time.Millisecond).Should(Succeed())

	g.Expect(stopFirst()).To(Succeed())
	_ = first.StopAll(context.Background()) // its VMs die with it
	stopped := time.Now()
	g.Eventually(func() []string { return running(second) }, 20*time.Second, 20*time.Millisecond).Should(Equal([]string{"vm-a"}))
	g.Expect(time.Since(stopped)).To(BeNumerically(">=", timeout), "the second waits out the first's deadline")
	g.Eventually(func() error {
		return k8s.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: agent.StandbyLeaseName("h1", "boot-2")}, standby)
	}, 20*time.Second, 50*time.Millisecond).Should(MatchError(ContainSubstring("not found")), "the standby Lease goes once it holds")
	stopWatching()
	select {
	case msg := <-both:
		t.Fatal(msg)
	default:
	}
}
