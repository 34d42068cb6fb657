package controllers_test

import (
	"net"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/controllers"
	"github.com/poolkeeper/poolkeeper/internal/agent"
	"github.com/poolkeeper/poolkeeper/internal/watchdog"
)

// emulatedWatchdog serves a watchdog emulator for one host (its resets do
// nothing) and returns a client of it.
func emulatedWatchdog(t *testing.T) *watchdog.Emulated {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "wd.sock")
	emu := watchdog.NewEmulator("", time.Minute, func(string, string) error { return nil }, nil)
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = emu.Serve(l) }()
	t.Cleanup(func() { _ = l.Close() })
	wd, err := watchdog.DialEmulated(sock, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = wd.Close() })
	return wd
}

// The evidence of an Agent fence says what the safe time rests on: for a
// host whose agent armed a watchdog, that watchdog (as the Host reports it,
// for the boot counted fenced) and the latest moment it resets the host; for
// a host without one, the agent process alone.
func TestFencedHostEvidenceNamesItsWatchdog(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ns := newNamespace(t)
	createPool(t, ns, "p", poolOpts{ha: true, timeout: timeout})
	for _, h := range []string{"h1", "h2", "h3"} {
		createHost(t, ns, "p", h)
	}
	startManager(t, ns, controllers.Options{})
	startAgent(t, ns, "h1", interval, nil)
	wd := emulatedWatchdog(t)
	a2 := startAgentConfig(t, agent.Config{Namespace: ns, Host: "h2", Interval: interval, BootID: wd.BootID(), Watchdog: wd})
	a3 := startAgent(t, ns, "h3", interval, nil)
	for _, h := range []string{"h1", "h2", "h3"} {
		g.Eventually(phaseOf(ns, h), wait, poll).Should(Equal(vpoolv1alpha1.HostPhaseLive))
	}
	g.Eventually(func(g Gomega) *vpoolv1alpha1.WatchdogStatus { return getHost(g, ns, "h2").Status.Watchdog }, wait, poll).Should(
		Equal(&vpoolv1alpha1.WatchdogStatus{Kind: vpoolv1alpha1.WatchdogEmulated, Device: wd.String(), BootID: wd.BootID(),
			Timeout: &metav1.Duration{Duration: timeout / 4}}))

	a2.Kill()
	g.Eventually(phaseOf(ns, "h2"), wait, poll).Should(Equal(vpoolv1alpha1.HostPhaseFenced))
	h2 := getHost(g, ns, "h2")
	g.Expect(h2.Status.Fencing.BootID).To(Equal(wd.BootID()))
	g.Expect(h2.Status.Fencing.Evidence).To(And(
		ContainSubstring("lease last renewed at X = "),
		ContainSubstring("the safe time rests on its emulated watchdog "+wd.String()+" (timeout 500ms, boot "+wd.BootID()+
			"), which resets the host by "),
		ContainSubstring("(X + 2s + 5W/4), 375ms before the safe time"),
		Not(ContainSubstring("agent process alone"))))
	g.Expect(meta.FindStatusCondition(h2.Status.Conditions, vpoolv1alpha1.HostFencedCondition).Message).To(
		Equal(h2.Status.Fencing.Evidence))

	// h3 runs the sim driver without a watchdog: its agent says so, and so
	// does the evidence. (One of the two hosts still watched is stale: the
	// storm guard allows it.)
	bootID := a3.BootID()
	g.Expect(getHost(g, ns, "h3").Status.Watchdog).To(Equal(&vpoolv1alpha1.WatchdogStatus{Kind: vpoolv1alpha1.WatchdogNone,
		BootID: bootID}))
	a3.Kill()
	g.Eventually(phaseOf(ns, "h3"), wait, poll).Should(Equal(vpoolv1alpha1.HostPhaseFenced))
	g.Expect(getHost(g, ns, "h3").Status.Fencing.Evidence).To(ContainSubstring(
		"its agent armed no watchdog for boot " + bootID + " (--watchdog none): the safe time rests on the agent process alone"))
}
