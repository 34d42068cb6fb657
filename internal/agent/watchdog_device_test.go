package agent_test

import (
	"context"
	"errors"
	"net/url"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/client-go/rest"

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
	u, err := url.Parse(restConfig.Host)
	g.Expect(err).NotTo(HaveOccurred())
	proxy := testutil.NewProxy(t, u.Host)
	cfg := rest.CopyConfig(restConfig)
	cfg.Host = "https://" + proxy.Addr()
	cfg.Timeout = time.Second
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
