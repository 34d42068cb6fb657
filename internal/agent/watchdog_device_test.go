package agent_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/poolkeeper/poolkeeper/internal/agent"
	"github.com/poolkeeper/poolkeeper/internal/testutil"
	"github.com/poolkeeper/poolkeeper/internal/testutil/fusewatchdog"
	"github.com/poolkeeper/poolkeeper/internal/watchdog"
)

// The agent on a Linux watchdog device (one served through FUSE: the
// kernel's open, write, ioctl and release paths to a model of the watchdog
// core) arms it at its first renewal with W = T/4 in whole seconds, keeps it
// from firing while it renews, and once cut off from the API server stops
// petting: its in-process self-fence stops the VMs at S + T, and the device
// fires (the host is reset) by S + T + 5W/4, before the operator's safe time.
func TestDeviceWatchdogResetsACutOffHost(t *testing.T) {
	g := NewWithT(t)
	const timeout = 8 * time.Second // W = 2s, a device's whole seconds
	dev, err := fusewatchdog.Mount(t.TempDir(), time.Minute)
	g.Expect(err).NotTo(HaveOccurred(), "the device path needs a watchdog device to run against")
	t.Cleanup(func() { _ = dev.Unmount() })
	ns := setup(t, timeout)
	proxy, cfg := throughProxy(t)
	driver := agent.NewSimDriver()
	placeVM(t, ns, "vm-a")
	stop := runAgent(t, agent.Config{RESTConfig: cfg, Namespace: ns, Host: "h1", Interval: 500 * time.Millisecond,
		Driver: driver, BootID: "boot-1", Watchdog: watchdog.OpenDevice(dev.Path), RequireWatchdog: true})

	g.Eventually(func() fusewatchdog.State { return dev.State() }, 20*time.Second, 20*time.Millisecond).Should(
		And(HaveField("Running", true), HaveField("Timeout", 2*time.Second)), "armed with W = T/4 at the first renewal")
	g.Eventually(func() []string { r, _ := driver.Running(context.Background()); return r }, 20*time.Second).Should(HaveLen(1))
	pings := dev.State().Pings
	g.Consistently(func() []time.Time { return dev.State().Fired }, timeout, 100*time.Millisecond).Should(BeEmpty(),
		"renewing: petted in time")
	g.Expect(dev.State().Pings).To(BeNumerically(">", pings), "petted through WDIOC_KEEPALIVE")

	cut := time.Now()
	proxy.Cut()
	g.Eventually(func() []string { r, _ := driver.Running(context.Background()); return r }, 20*time.Second, 5*time.Millisecond).
		Should(BeEmpty(), "the in-process self-fence stops the VMs")
	g.Eventually(func() []time.Time { return dev.State().Fired }, 20*time.Second, 5*time.Millisecond).Should(HaveLen(1),
		"the device fires: the host is reset")
	fired := dev.State().Fired[0]
	plan, err := watchdog.PlanFor(timeout, time.Second)
	g.Expect(err).NotTo(HaveOccurred())
	t.Logf("cut at 0, device fired at %s (latest allowed %s after the last renewal, safe time %s)",
		fired.Sub(cut), plan.LatestExpiry, plan.SafeAfter)
	g.Expect(fired.Sub(cut)).To(BeNumerically("<=", plan.LatestExpiry), "reset by S + T + 5W/4, S before the cut")
	g.Expect(fired.Sub(cut)).To(BeNumerically(">=", timeout-time.Second), "not before S + T (S at most an interval or two before the cut)")
	g.Expect(errors.Is(stop(), agent.ErrSelfFenced)).To(BeTrue())
	g.Expect(dev.State().MagicCloses).To(BeZero(), "a self-fenced agent leaves its watchdog armed")
}

// runOnDevice runs an agent on a FUSE watchdog device for a pool of timeout
// T, with one VM placed on it, through a proxy the test can cut; it returns
// the device, the driver, the proxy and the agent's stop.
func runOnDevice(t *testing.T, timeout, interval time.Duration) (*fusewatchdog.Watchdog, *startCounter, *testutil.Proxy, func() error) {
	t.Helper()
	dev, err := fusewatchdog.Mount(t.TempDir(), time.Minute)
	if err != nil {
		t.Fatalf("the device path needs a watchdog device to run against: %v", err)
	}
	t.Cleanup(func() { _ = dev.Unmount() })
	ns := setup(t, timeout)
	proxy, cfg := throughProxy(t)
	driver := &startCounter{SimDriver: agent.NewSimDriver()}
	placeVM(t, ns, "vm-a")
	stop := runAgent(t, agent.Config{RESTConfig: cfg, Namespace: ns, Host: "h1", Interval: interval,
		Driver: driver, BootID: "boot-1", Watchdog: watchdog.OpenDevice(dev.Path), RequireWatchdog: true})
	return dev, driver, proxy, stop
}

// A device whose driver sets a longer timeout than the one asked (the model
// rounds to even seconds: 4s for W = T/4 = 3s) is petted on a plan of its
// own: the pets stop at S + T + W/4 - 4s instead of S + T - W + W/4, so the
// host is still reset by S + T + W/4 + 4s, before the operator's safe time.
func TestDeviceWithALongerTimeoutIsPettedLessLong(t *testing.T) {
	g := NewWithT(t)
	const timeout = 12 * time.Second
	dev, driver, proxy, stop := runOnDevice(t, timeout, 100*time.Millisecond)
	g.Eventually(func() fusewatchdog.State { return dev.State() }, 20*time.Second, 20*time.Millisecond).Should(
		And(HaveField("Running", true), HaveField("Timeout", 4*time.Second)), "armed; the driver set 4s for the 3s asked")
	g.Eventually(func() []string { r, _ := driver.Running(context.Background()); return r }, 20*time.Second).Should(HaveLen(1))
	plan, err := watchdog.PlanFor(timeout, time.Second)
	g.Expect(err).NotTo(HaveOccurred())
	adjusted, err := plan.WithTimeout(4 * time.Second)
	g.Expect(err).NotTo(HaveOccurred())

	cut := time.Now()
	proxy.Cut()
	g.Eventually(func() []time.Time { return dev.State().Fired }, 30*time.Second, 5*time.Millisecond).Should(HaveLen(1),
		"the device fires: the host is reset")
	s := dev.State()
	t.Logf("cut at 0: last pet at %s (allowed until %s after the last renewal; %s with the 3s asked), fired at %s "+
		"(latest %s, safe time %s)", s.LastPet.Sub(cut), adjusted.PetUntil, plan.PetUntil, s.Fired[0].Sub(cut),
		adjusted.LatestExpiry, adjusted.SafeAfter)
	// (a pet reaches the device through FUSE a little after the agent checked its bound)
	g.Expect(s.LastPet.Sub(cut)).To(BeNumerically("<=", adjusted.PetUntil+50*time.Millisecond), "no pet after S + T + W/4 - 4s, S before the cut")
	g.Expect(s.Fired[0].Sub(cut)).To(BeNumerically("<=", adjusted.LatestExpiry), "reset by S + T + W/4 + 4s")
	g.Expect(errors.Is(stop(), agent.ErrSelfFenced)).To(BeTrue())
}

// A device whose driver sets a timeout that cannot reset the host before the
// operator's safe time (2s for W = T/4 = 1s, T = 4s: it could expire 6.25s
// after the last renewal, past the safe time 6s) ends the agent before any
// VM starts: Run returns ErrNoSafeWatchdog and the watchdog is disarmed.
func TestDeviceThatCannotResetInTimeEndsTheAgent(t *testing.T) {
	g := NewWithT(t)
	dev, driver, _, stop := runOnDevice(t, 4*time.Second, 200*time.Millisecond)
	g.Eventually(func() int { return dev.State().MagicCloses }, 20*time.Second, 20*time.Millisecond).Should(Equal(1),
		"opened, set to 2s by its driver, then disarmed")
	g.Expect(dev.State().Timeout).To(Equal(2 * time.Second))
	g.Expect(dev.State().Running).To(BeFalse())
	err := stop()
	g.Expect(errors.Is(err, agent.ErrNoSafeWatchdog)).To(BeTrue(), "Run returns ErrNoSafeWatchdog, got %v", err)
	g.Expect(err.Error()).To(ContainSubstring("cannot reset the host in time"))
	g.Expect(driver.starts()).To(BeZero(), "no VM ever started on a host its watchdog cannot guard")
}

// startCounter counts the VM starts of a sim driver.
type startCounter struct {
	*agent.SimDriver
	n atomic.Int32
}

func (d *startCounter) Start(ctx context.Context, vm agent.VM) error {
	d.n.Add(1)
	return d.SimDriver.Start(ctx, vm)
}

func (d *startCounter) starts() int32 { return d.n.Load() }
