package agent_test

import (
	"context"
	"errors"
	"net"
	"net/url"
	"path/filepath"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/internal/agent"
	"github.com/poolkeeper/poolkeeper/internal/testutil"
	"github.com/poolkeeper/poolkeeper/internal/watchdog"
)

// emulatedHost is an emulated watchdog whose resets are recorded.
type emulatedHost struct {
	emu  *watchdog.Emulator
	sock string
	mu   sync.Mutex
	at   []time.Time
}

func startEmulatedHost(t *testing.T) *emulatedHost {
	t.Helper()
	h := &emulatedHost{sock: filepath.Join(t.TempDir(), "watchdog.sock")}
	h.emu = watchdog.NewEmulator("", time.Minute, func(string, string) error {
		h.mu.Lock()
		h.at = append(h.at, time.Now())
		h.mu.Unlock()
		return nil
	}, nil)
	l, err := net.Listen("unix", h.sock)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = h.emu.Serve(l) }()
	t.Cleanup(func() { _ = l.Close() })
	return h
}

func (h *emulatedHost) client(t *testing.T) *watchdog.Emulated {
	t.Helper()
	w, err := watchdog.DialEmulated(h.sock, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Close() })
	return w
}

func (h *emulatedHost) status(g Gomega) string {
	w, err := watchdog.DialEmulated(h.sock, 0)
	g.Expect(err).NotTo(HaveOccurred())
	defer func() { _ = w.Close() }()
	st, err := w.Status()
	g.Expect(err).NotTo(HaveOccurred())
	return st
}

func (h *emulatedHost) resets() []time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]time.Time(nil), h.at...)
}

// With a watchdog, the agent arms it at its first renewal with a quarter of
// the heartbeat timeout, pets it while it renews, reports the watchdog's
// boot ID, and once cut off from the API server self-fences first; the
// watchdog then resets the host before the operator's safe time.
func TestWatchdogResetsACutOffHostBeforeTheSafeTime(t *testing.T) {
	g := NewWithT(t)
	const timeout = 2 * time.Second
	ns := setup(t, timeout)
	u, err := url.Parse(restConfig.Host)
	g.Expect(err).NotTo(HaveOccurred())
	proxy := testutil.NewProxy(t, u.Host)
	cfg := rest.CopyConfig(restConfig)
	cfg.Host = "https://" + proxy.Addr()
	cfg.Timeout = time.Second
	h := startEmulatedHost(t)
	wd := h.client(t)
	driver := agent.NewSimDriver()
	placeVM(t, ns, "vm-a")
	stop := runAgent(t, agent.Config{RESTConfig: cfg, Namespace: ns, Host: "h1", Interval: 200 * time.Millisecond, Driver: driver,
		BootID: wd.BootID(), Watchdog: wd, RequireWatchdog: true})

	g.Eventually(h.status, 20*time.Second, 20*time.Millisecond).Should(ContainSubstring("armed=1 timeout=500 "),
		"armed with W = T/4 at the first renewal")
	g.Eventually(func() []string { r, _ := driver.Running(context.Background()); return r }, 20*time.Second).Should(HaveLen(1))
	g.Eventually(func(g Gomega) string {
		host := &vpoolv1alpha1.Host{}
		g.Expect(k8s.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: "h1"}, host)).To(Succeed())
		return host.Status.BootID
	}, 20*time.Second, 20*time.Millisecond).Should(Equal(h.emu.Boot()), "the emulated host's boot")
	g.Consistently(h.resets, 2*timeout, 100*time.Millisecond).Should(BeEmpty(), "renewing: petted in time")

	cut := time.Now()
	proxy.Cut()
	var fenced time.Time
	g.Eventually(func() bool {
		r, _ := driver.Running(context.Background())
		fenced = time.Now()
		return len(r) == 0
	}, 20*time.Second, 5*time.Millisecond).Should(BeTrue(), "the in-process self-fence stops the VMs")
	g.Eventually(h.resets, 20*time.Second, 5*time.Millisecond).Should(HaveLen(1), "the watchdog resets the host")
	reset := h.resets()[0]
	plan, err := watchdog.PlanFor(timeout, time.Millisecond)
	g.Expect(err).NotTo(HaveOccurred())
	t.Logf("cut at 0, VMs stopped by the agent at %s, host reset at %s (latest allowed %s, safe time %s)",
		fenced.Sub(cut), reset.Sub(cut), plan.LatestExpiry, plan.SafeAfter)
	// The last renewal started before the cut and at most an interval or
	// two (a renewal in flight) before it.
	g.Expect(reset.Sub(cut)).To(BeNumerically("<=", plan.LatestExpiry), "reset by S + T + 5W/4 <= L + T + T/2 - budget")
	g.Expect(reset.Sub(cut)).To(BeNumerically(">=", timeout-400*time.Millisecond), "not before S + T")
	g.Expect(errors.Is(stop(), agent.ErrSelfFenced)).To(BeTrue())
}

// A pet answered "host was reset" ends the agent as self-fenced at once.
func TestHostResetEndsTheAgent(t *testing.T) {
	g := NewWithT(t)
	ns := setup(t, 4*time.Second)
	h := startEmulatedHost(t)
	wd := h.client(t)
	driver := agent.NewSimDriver()
	placeVM(t, ns, "vm-a")
	a, err := agent.New(agent.Config{RESTConfig: restConfig, Namespace: ns, Host: "h1", Interval: 200 * time.Millisecond,
		Driver: driver, BootID: wd.BootID(), Watchdog: wd, RequireWatchdog: true})
	g.Expect(err).NotTo(HaveOccurred())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	g.Eventually(h.status, 20*time.Second, 20*time.Millisecond).Should(ContainSubstring("armed=1"))
	g.Eventually(func() []string { r, _ := driver.Running(context.Background()); return r }, 20*time.Second).Should(HaveLen(1))

	g.Expect(h.emu.Handle("POWERCYCLE")).To(HavePrefix("OK "))
	var runErr error
	g.Eventually(done, 2*time.Second).Should(Receive(&runErr), "the agent learns at its next pet (every W/4 = 250ms)")
	g.Expect(errors.Is(runErr, agent.ErrSelfFenced)).To(BeTrue(), "%v", runErr)
	g.Expect(errors.Is(runErr, watchdog.ErrHostReset)).To(BeTrue(), "%v", runErr)
	r, _ := driver.Running(context.Background())
	g.Expect(r).To(BeEmpty())
}

// A clean stop disarms the watchdog only when no VM runs.
func TestCleanStopDisarmsOnlyWithoutVMs(t *testing.T) {
	g := NewWithT(t)
	ns := setup(t, 4*time.Second)
	h := startEmulatedHost(t)
	wd := h.client(t)
	stop := runAgent(t, agent.Config{RESTConfig: restConfig, Namespace: ns, Host: "h1", Interval: 200 * time.Millisecond,
		Driver: agent.NewSimDriver(), BootID: wd.BootID(), Watchdog: wd, RequireWatchdog: true})
	g.Eventually(h.status, 20*time.Second, 20*time.Millisecond).Should(ContainSubstring("armed=1"))
	g.Expect(stop()).To(Succeed())
	g.Expect(h.status(g)).To(ContainSubstring("armed=0"), "no VM running: disarmed")

	// The same boot again (the agent restarted), now with a VM running.
	wd = h.client(t)
	driver := agent.NewSimDriver()
	placeVM(t, ns, "vm-a")
	stop = runAgent(t, agent.Config{RESTConfig: restConfig, Namespace: ns, Host: "h1", Interval: 200 * time.Millisecond,
		Driver: driver, BootID: wd.BootID(), Watchdog: wd, RequireWatchdog: true})
	g.Eventually(func() []string { r, _ := driver.Running(context.Background()); return r }, 20*time.Second).Should(HaveLen(1))
	g.Expect(stop()).To(Succeed())
	g.Expect(h.status(g)).To(ContainSubstring("armed=1"), "a VM running: the watchdog stays armed")
	g.Eventually(h.resets, 5*time.Second, 10*time.Millisecond).Should(HaveLen(1), "and resets the host, nobody petting it")
}

// --watchdog none with a driver whose VMs outlive the agent is refused for
// an Agent-fenced host, and accepted for a host fenced otherwise.
func TestNoWatchdogRefusedForAgentFencing(t *testing.T) {
	g := NewWithT(t)
	ns := setup(t, 4*time.Second)
	a, err := agent.New(agent.Config{RESTConfig: restConfig, Namespace: ns, Host: "h1", Driver: agent.NewSimDriver(),
		Watchdog: watchdog.None{}, RequireWatchdog: true})
	g.Expect(err).NotTo(HaveOccurred())
	err = a.Run(context.Background())
	g.Expect(errors.Is(err, agent.ErrNoSafeWatchdog)).To(BeTrue(), "%v", err)
	g.Expect(err.Error()).To(ContainSubstring("spec.fencing.method Agent"))
	g.Expect(err.Error()).To(ContainSubstring("--watchdog /dev/watchdog"))

	host := &vpoolv1alpha1.Host{}
	g.Expect(k8s.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: "h1"}, host)).To(Succeed())
	host.Spec.Fencing.Method = vpoolv1alpha1.FencingManual
	g.Expect(k8s.Update(context.Background(), host)).To(Succeed())
	runAgent(t, agent.Config{RESTConfig: restConfig, Namespace: ns, Host: "h1", Interval: 200 * time.Millisecond,
		Driver: agent.NewSimDriver(), BootID: "boot-m", RequireWatchdog: true})
	g.Eventually(func(g Gomega) {
		g.Expect(k8s.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: "h1"}, host)).To(Succeed())
		g.Expect(host.Status.BootID).To(Equal("boot-m"))
	}, 20*time.Second, 50*time.Millisecond).Should(Succeed(), "a Manual host runs without a watchdog")
}

// The agent records in its Host which watchdog guards it, for which boot and
// with which timeout, once it has armed it: again when a shorter pool
// timeout shortens the watchdog's, and with kind None when it has none.
func TestAgentReportsItsWatchdog(t *testing.T) {
	g := NewWithT(t)
	ns := setup(t, 2*time.Second)
	h := startEmulatedHost(t)
	wd := h.client(t)
	runAgent(t, agent.Config{RESTConfig: restConfig, Namespace: ns, Host: "h1", Interval: 200 * time.Millisecond,
		Driver: agent.NewSimDriver(), BootID: wd.BootID(), Watchdog: wd, RequireWatchdog: true})
	reported := func(g Gomega) *vpoolv1alpha1.WatchdogStatus {
		host := &vpoolv1alpha1.Host{}
		g.Expect(k8s.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: "h1"}, host)).To(Succeed())
		return host.Status.Watchdog
	}
	g.Eventually(reported, 20*time.Second, 20*time.Millisecond).Should(Equal(&vpoolv1alpha1.WatchdogStatus{
		Kind: vpoolv1alpha1.WatchdogEmulated, Device: "unix:" + h.sock, BootID: h.emu.Boot(),
		Timeout: &metav1.Duration{Duration: 500 * time.Millisecond}}), "W = T/4, armed for the emulated host's boot")
	g.Expect(h.status(g)).To(ContainSubstring("armed=1 timeout=500 "), "what the emulator was armed with")

	pool := &vpoolv1alpha1.Pool{}
	g.Expect(k8s.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: "p"}, pool)).To(Succeed())
	pool.Spec.HeartbeatTimeout = &metav1.Duration{Duration: time.Second}
	g.Expect(k8s.Update(context.Background(), pool)).To(Succeed())
	g.Eventually(reported, 20*time.Second, 20*time.Millisecond).Should(HaveField("Timeout.Duration", 250*time.Millisecond),
		"a shorter timeout shortens the watchdog's at once, and the Host says so")

	ns = setup(t, 2*time.Second)
	runAgent(t, agent.Config{RESTConfig: restConfig, Namespace: ns, Host: "h1", Interval: 200 * time.Millisecond,
		Driver: agent.NewSimDriver(), BootID: "boot-sim", Watchdog: watchdog.None{}})
	g.Eventually(reported, 20*time.Second, 20*time.Millisecond).Should(Equal(&vpoolv1alpha1.WatchdogStatus{
		Kind: vpoolv1alpha1.WatchdogNone, BootID: "boot-sim"}), "--watchdog none with the sim driver")
}
