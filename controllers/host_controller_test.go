package controllers_test

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/controllers"
	"github.com/poolkeeper/poolkeeper/internal/agent"
	"github.com/poolkeeper/poolkeeper/internal/fencing"
	"github.com/poolkeeper/poolkeeper/internal/testutil"
	"github.com/poolkeeper/poolkeeper/internal/testutil/bmcsim"
)

const (
	timeout  = 2 * time.Second
	interval = 250 * time.Millisecond
	wait     = 30 * time.Second
	poll     = 100 * time.Millisecond
)

// threeLiveHosts starts an HA pool p of three hosts with heartbeatTimeout,
// a manager and an agent per host, waits until all are Live, and returns
// the agents by host.
func threeLiveHosts(t *testing.T, g Gomega, ns string, heartbeatTimeout time.Duration) map[string]*runningAgent {
	t.Helper()
	createPool(t, ns, "p", poolOpts{ha: true, timeout: heartbeatTimeout})
	agents := map[string]*runningAgent{}
	for _, h := range []string{"h1", "h2", "h3"} {
		createHost(t, ns, "p", h)
	}
	startManager(t, ns, controllers.Options{})
	for _, h := range []string{"h1", "h2", "h3"} {
		agents[h] = startAgent(t, ns, h, interval, nil)
	}
	for _, h := range []string{"h1", "h2", "h3"} {
		g.Eventually(phaseOf(ns, h), wait, poll).Should(Equal(vpoolv1alpha1.HostPhaseLive))
	}
	return agents
}

// A member whose agent dies is Unreachable after the timeout, then Fencing,
// then Fenced once the Agent method's safe time has passed.
func TestMemberDiesAgentFencing(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ns := newNamespace(t)
	agents := threeLiveHosts(t, g, ns, timeout)
	bootID := getHost(g, ns, "h2").Status.BootID
	g.Expect(bootID).To(Equal(agents["h2"].BootID()))

	agents["h2"].Kill()
	killed := time.Now()
	g.Eventually(phaseOf(ns, "h2"), wait, poll).Should(Equal(vpoolv1alpha1.HostPhaseFenced))
	g.Expect(time.Since(killed)).To(BeNumerically(">=", timeout), "never fenced before the heartbeat timeout")

	h2 := getHost(g, ns, "h2")
	g.Expect(h2.Status.Fencing).NotTo(BeNil())
	g.Expect(h2.Status.Fencing.Method).To(Equal(vpoolv1alpha1.FencingAgent))
	g.Expect(h2.Status.Fencing.BootID).To(Equal(bootID))
	g.Expect(h2.Status.Fencing.SafeAt).NotTo(BeNil())
	g.Expect(h2.Status.Fencing.CompletedAt.Time).NotTo(BeTemporally("<", h2.Status.Fencing.SafeAt.Time))
	g.Expect(h2.Status.Fencing.Evidence).To(ContainSubstring("watchdog"))
	g.Expect(meta.IsStatusConditionTrue(h2.Status.Conditions, vpoolv1alpha1.HostFencedCondition)).To(BeTrue())
	g.Expect(meta.IsStatusConditionFalse(h2.Status.Conditions, vpoolv1alpha1.HostHeartbeat)).To(BeTrue())
	g.Eventually(eventsOf(ns, "h2"), wait, poll).Should(
		ContainElements(fencing.ReasonHeartbeatStale, fencing.ReasonFencingStarted, fencing.ReasonAgentWatchdog))
	g.Eventually(func(g Gomega) vpoolv1alpha1.HostCounts { return getPool(g, ns, "p").Status.Hosts }, wait, poll).Should(
		Equal(vpoolv1alpha1.HostCounts{Total: 3, Live: 2, Fenced: 1}))
	g.Expect(phaseOf(ns, "h1")(g)).To(Equal(vpoolv1alpha1.HostPhaseLive))
}

// A heartbeat pause shorter than the timeout never takes a host out of Live.
func TestShortPauseStaysLive(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ns := newNamespace(t)
	createPool(t, ns, "p", poolOpts{ha: true, timeout: 3 * time.Second})
	createHost(t, ns, "p", "h1")
	createHost(t, ns, "p", "h2")
	startManager(t, ns, controllers.Options{})
	a := startAgent(t, ns, "h1", interval, nil)
	startAgent(t, ns, "h2", interval, nil)
	g.Eventually(phaseOf(ns, "h1"), wait, poll).Should(Equal(vpoolv1alpha1.HostPhaseLive))

	a.Freeze(1500 * time.Millisecond)
	g.Consistently(phaseOf(ns, "h1"), 4*time.Second, poll).Should(Equal(vpoolv1alpha1.HostPhaseLive))
	g.Expect(eventReasons(g, ns, "h1")).NotTo(ContainElement(fencing.ReasonHeartbeatStale))
}

// Two of three hosts going silent at once trips the default storm guard:
// nobody is fenced and the Pool says why.
func TestStormGuardFencesNobody(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ns := newNamespace(t)
	agents := threeLiveHosts(t, g, ns, timeout)
	agents["h2"].Kill()
	agents["h3"].Kill()
	bothStale := func(g Gomega) []vpoolv1alpha1.HostPhase {
		return []vpoolv1alpha1.HostPhase{phaseOf(ns, "h2")(g), phaseOf(ns, "h3")(g)}
	}
	g.Eventually(bothStale, wait, poll).Should(HaveEach(vpoolv1alpha1.HostPhaseUnreachable))
	g.Eventually(func(g Gomega) *metav1.Condition {
		return meta.FindStatusCondition(getPool(g, ns, "p").Status.Conditions, vpoolv1alpha1.PoolFencingAllowed)
	}, wait, poll).Should(And(
		HaveField("Status", metav1.ConditionFalse),
		HaveField("Reason", fencing.ReasonStormGuard),
		HaveField("Message", ContainSubstring("2 of 3 hosts are stale"))))
	g.Consistently(bothStale, 2*timeout, poll).Should(HaveEach(vpoolv1alpha1.HostPhaseUnreachable))
	h2 := getHost(g, ns, "h2")
	g.Expect(meta.FindStatusCondition(h2.Status.Conditions, vpoolv1alpha1.ConditionReady).Reason).To(Equal(fencing.ReasonStormGuard))

	// One host comes back: one of three stale is within the guard again.
	startAgent(t, ns, "h3", interval, nil)
	g.Eventually(phaseOf(ns, "h3"), wait, poll).Should(Equal(vpoolv1alpha1.HostPhaseLive))
	g.Eventually(phaseOf(ns, "h2"), wait, poll).Should(Equal(vpoolv1alpha1.HostPhaseFenced))

	// The silence of h2 was counted afresh from the guard's lift, not from
	// before the storm: its safe time is a full T + T/2 after h3 was seen back.
	h2 = getHost(g, ns, "h2")
	h3 := getHost(g, ns, "h3")
	g.Expect(h2.Status.Fencing.SafeAt.Time).To(BeTemporally(">=", h3.Status.LastHeartbeatTime.Add(timeout+timeout/2)))
	g.Eventually(func(g Gomega) []string {
		return append(eventReasons(g, ns, "h2"), eventReasons(g, ns, "h3")...)
	}, wait, poll).Should(ContainElement(controllers.ReasonOutageRiddenOut))
}

func redfishHost(bmc *bmcsim.BMC, system string) func(*vpoolv1alpha1.Host) {
	return func(h *vpoolv1alpha1.Host) {
		h.Spec.Fencing.Method = vpoolv1alpha1.FencingRedfish
		h.Spec.Fencing.Redfish = &vpoolv1alpha1.RedfishFencing{Endpoint: bmc.URL(), SystemID: system,
			CredentialsSecretRef: vpoolv1alpha1.LocalObjectReference{Name: "bmc"}, InsecureSkipVerify: true}
	}
}

func createBMCSecret(t *testing.T, ns string) {
	t.Helper()
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "bmc"}, Type: corev1.SecretTypeBasicAuth,
		StringData: map[string]string{"username": bmcsim.DefaultUsername, "password": bmcsim.DefaultPassword}}
	if err := k8s.Create(context.Background(), s); err != nil {
		t.Fatal(err)
	}
}

// redfishPool starts an HA pool of three live hosts whose h2 is fenced
// through a BMC emulator, and returns the BMC and h2's agent.
func redfishPool(t *testing.T, g Gomega, ns string) (*bmcsim.BMC, *runningAgent) {
	t.Helper()
	bmc := bmcsim.New(t, bmcsim.WithSystem("h2", bmcsim.PowerOn))
	createBMCSecret(t, ns)
	createPool(t, ns, "p", poolOpts{ha: true, timeout: timeout})
	createHost(t, ns, "p", "h1")
	createHost(t, ns, "p", "h2", redfishHost(bmc, "h2"))
	createHost(t, ns, "p", "h3")
	startManager(t, ns, controllers.Options{})
	startAgent(t, ns, "h1", interval, nil)
	a2 := startAgent(t, ns, "h2", interval, nil)
	startAgent(t, ns, "h3", interval, nil)
	g.Eventually(phaseOf(ns, "h2"), wait, poll).Should(Equal(vpoolv1alpha1.HostPhaseLive))
	return bmc, a2
}

// Redfish fencing powers the host off through its BMC and completes once the
// BMC reports PowerState Off; a BMC that fails keeps the host in Fencing with
// Warning events until it recovers.
func TestRedfishFencingWithFailingBMC(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ns := newNamespace(t)
	bmc, a2 := redfishPool(t, g, ns)
	bmc.SetPowerOffDelay(500 * time.Millisecond)

	bmc.SetFailing(http.StatusInternalServerError)
	a2.Kill()
	g.Eventually(func(g Gomega) int32 {
		h := getHost(g, ns, "h2")
		g.Expect(h.Status.Phase).To(Equal(vpoolv1alpha1.HostPhaseFencing))
		g.Expect(h.Status.Fencing.LastError).To(ContainSubstring("500"))
		return h.Status.Fencing.Attempts
	}, wait, poll).Should(BeNumerically(">=", 2))
	g.Eventually(eventsOf(ns, "h2"), wait, poll).Should(ContainElement(controllers.ReasonFencingFailed))
	g.Expect(bmc.PowerState("h2")).To(Equal(bmcsim.PowerOn))
	g.Consistently(phaseOf(ns, "h2"), time.Second, poll).Should(Equal(vpoolv1alpha1.HostPhaseFencing),
		"a failing BMC never lets the fence complete")

	bmc.ClearFailing()
	g.Eventually(phaseOf(ns, "h2"), wait, poll).Should(Equal(vpoolv1alpha1.HostPhaseFenced))
	h2 := getHost(g, ns, "h2")
	g.Expect(h2.Status.Fencing.Method).To(Equal(vpoolv1alpha1.FencingRedfish))
	g.Expect(h2.Status.Fencing.Evidence).To(ContainSubstring("PowerState Off"))
	g.Expect(h2.Status.Fencing.PowerOffRequestedAt).NotTo(BeNil())
	g.Expect(bmc.PowerState("h2")).To(Equal(bmcsim.PowerOff))
	g.Expect(bmc.ForceOffCount("h2")).To(Equal(1))
	g.Expect(bmc.AuthFailures()).To(BeZero())
}

// A manager stopped in the middle of a Redfish fence finishes it once it is
// started again, without a second power-off.
func TestRedfishFenceResumesAfterManagerRestart(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ns := newNamespace(t)
	bmc := bmcsim.New(t, bmcsim.WithSystem("h2", bmcsim.PowerOn))
	bmc.SetPowerOffDelay(4 * time.Second)
	createBMCSecret(t, ns)
	createPool(t, ns, "p", poolOpts{ha: true, timeout: timeout})
	createHost(t, ns, "p", "h1")
	createHost(t, ns, "p", "h2", redfishHost(bmc, "h2"))
	createHost(t, ns, "p", "h3")
	mgr := startManager(t, ns, controllers.Options{})
	startAgent(t, ns, "h1", interval, nil)
	a2 := startAgent(t, ns, "h2", interval, nil)
	startAgent(t, ns, "h3", interval, nil)
	g.Eventually(phaseOf(ns, "h2"), wait, poll).Should(Equal(vpoolv1alpha1.HostPhaseLive))

	a2.Kill()
	g.Eventually(func() int { return bmc.ForceOffCount("h2") }, wait, poll).Should(Equal(1))
	mgr.Stop()
	g.Expect(phaseOf(ns, "h2")(g)).To(Equal(vpoolv1alpha1.HostPhaseFencing))

	startManager(t, ns, controllers.Options{})
	g.Eventually(phaseOf(ns, "h2"), wait, poll).Should(Equal(vpoolv1alpha1.HostPhaseFenced))
	g.Expect(bmc.ForceOffCount("h2")).To(Equal(1), "no second power-off")
}

// With HA off a dead member waits for a person; forgetting it fences it on the
// person's word (Manual) and removes it from the pool.
func TestHAOffWaitsForPersonThenForgets(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ns := newNamespace(t)
	createPool(t, ns, "p", poolOpts{timeout: timeout, master: "h1"})
	createHost(t, ns, "p", "h1")
	createHost(t, ns, "p", "h2", func(h *vpoolv1alpha1.Host) { h.Spec.Fencing.Method = vpoolv1alpha1.FencingManual })
	startManager(t, ns, controllers.Options{})
	startAgent(t, ns, "h1", interval, nil)
	a2 := startAgent(t, ns, "h2", interval, nil)
	g.Eventually(phaseOf(ns, "h2"), wait, poll).Should(Equal(vpoolv1alpha1.HostPhaseLive))
	g.Eventually(func(g Gomega) string { return getPool(g, ns, "p").Status.Master }, wait, poll).Should(Equal("h1"))

	// Forgetting a host that heartbeats is refused, and says why.
	h2 := getHost(g, ns, "h2")
	patch := client.MergeFrom(h2.DeepCopy())
	h2.Spec.State = vpoolv1alpha1.HostForgotten
	g.Expect(k8s.Patch(context.Background(), h2, patch)).To(Succeed())
	g.Eventually(func(g Gomega) *metav1.Condition {
		return meta.FindStatusCondition(getHost(g, ns, "h2").Status.Conditions, vpoolv1alpha1.ConditionReady)
	}, wait, poll).Should(And(HaveField("Reason", fencing.ReasonForgetRefused), HaveField("Message", ContainSubstring("still heartbeating"))))
	g.Expect(phaseOf(ns, "h2")(g)).To(Equal(vpoolv1alpha1.HostPhaseLive))

	// Once it stops, the standing intent goes through: fenced on the person's word, forgotten.
	a2.Kill()
	g.Eventually(phaseOf(ns, "h2"), wait, poll).Should(Equal(vpoolv1alpha1.HostPhaseForgotten))
	h2 = getHost(g, ns, "h2")
	g.Expect(h2.Status.Fencing.Method).To(Equal(vpoolv1alpha1.FencingManual))
	g.Expect(h2.Status.Fencing.Evidence).To(ContainSubstring("a person confirmed"))
	g.Eventually(eventsOf(ns, "h2"), wait, poll).Should(ContainElements(fencing.ReasonForgetRefused, fencing.ReasonPersonConfirmed, fencing.ReasonForgotten))
}

// With HA off, a silent member stays Unreachable: nobody fences it.
func TestHAOffMemberStaysUnreachable(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ns := newNamespace(t)
	createPool(t, ns, "p", poolOpts{timeout: timeout})
	createHost(t, ns, "p", "h1")
	createHost(t, ns, "p", "h2")
	startManager(t, ns, controllers.Options{})
	startAgent(t, ns, "h1", interval, nil)
	a2 := startAgent(t, ns, "h2", interval, nil)
	g.Eventually(phaseOf(ns, "h2"), wait, poll).Should(Equal(vpoolv1alpha1.HostPhaseLive))
	a2.Kill()
	g.Eventually(phaseOf(ns, "h2"), wait, poll).Should(Equal(vpoolv1alpha1.HostPhaseUnreachable))
	g.Consistently(phaseOf(ns, "h2"), 2*timeout, poll).Should(Equal(vpoolv1alpha1.HostPhaseUnreachable))
	c := meta.FindStatusCondition(getHost(g, ns, "h2").Status.Conditions, vpoolv1alpha1.ConditionReady)
	g.Expect(c.Reason).To(Equal(fencing.ReasonAwaitingPerson))
	g.Expect(c.Message).To(ContainSubstring("spec.state: Forgotten"))

	// Repair path: the host comes back before anyone fenced it.
	startAgent(t, ns, "h2", interval, nil)
	g.Eventually(phaseOf(ns, "h2"), wait, poll).Should(Equal(vpoolv1alpha1.HostPhaseLive))
	g.Eventually(eventsOf(ns, "h2"), wait, poll).Should(ContainElement(fencing.ReasonHeartbeatResumed))
}

// A fenced host rejoins only after a new boot with no VM running; a host that
// heartbeats again under the same boot stays fenced.
func TestFencedHostRejoinsOnlyAfterNewBoot(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ns := newNamespace(t)
	createPool(t, ns, "p", poolOpts{ha: true, timeout: timeout, master: "h1"})
	for _, h := range []string{"h1", "h2", "h3"} {
		createHost(t, ns, "p", h)
	}
	startManager(t, ns, controllers.Options{})
	startAgent(t, ns, "h1", interval, nil)
	startAgent(t, ns, "h3", interval, nil)
	a2 := startAgent(t, ns, "h2", interval, nil)
	g.Eventually(phaseOf(ns, "h2"), wait, poll).Should(Equal(vpoolv1alpha1.HostPhaseLive))
	g.Eventually(func(g Gomega) string { return getPool(g, ns, "p").Status.Master }, wait, poll).Should(Equal("h1"))
	boot := a2.BootID()
	a2.Kill()
	g.Eventually(phaseOf(ns, "h2"), wait, poll).Should(Equal(vpoolv1alpha1.HostPhaseFenced))

	// Same boot ID: the host never rebooted, so it stays fenced.
	same := startAgentWithBoot(t, ns, "h2", boot)
	g.Eventually(func(g Gomega) string {
		return meta.FindStatusCondition(getHost(g, ns, "h2").Status.Conditions, vpoolv1alpha1.ConditionReady).Reason
	}, wait, poll).Should(Equal(fencing.ReasonRejoinPending))
	g.Expect(phaseOf(ns, "h2")(g)).To(Equal(vpoolv1alpha1.HostPhaseFenced))
	same.Kill()

	// A new boot with nothing running rejoins as a member.
	startAgent(t, ns, "h2", interval, nil)
	g.Eventually(phaseOf(ns, "h2"), wait, poll).Should(Equal(vpoolv1alpha1.HostPhaseLive))
	g.Eventually(eventsOf(ns, "h2"), wait, poll).Should(ContainElement(fencing.ReasonRejoined))
	g.Expect(getHost(g, ns, "h2").Status.Role).To(Equal(vpoolv1alpha1.RoleMember))
}

// An agent cut off from the API server (but whose host keeps running) stops
// its VMs through the watchdog before the operator's safe time passes: by the
// time the host is Fenced, nothing runs on it any more.
func TestWatchdogStopsVMsBeforeSafeTime(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ns := newNamespace(t)
	createPool(t, ns, "p", poolOpts{ha: true, timeout: timeout})
	for _, h := range []string{"h1", "h2", "h3"} {
		createHost(t, ns, "p", h)
	}
	startManager(t, ns, controllers.Options{})
	startAgent(t, ns, "h1", interval, nil)
	startAgent(t, ns, "h3", interval, nil)
	u, err := url.Parse(restConfig.Host)
	g.Expect(err).NotTo(HaveOccurred())
	proxy := testutil.NewProxy(t, u.Host)
	cfg := rest.CopyConfig(restConfig)
	cfg.Host = "https://" + proxy.Addr()
	cfg.Timeout = time.Second
	driver := agent.NewSimDriver()
	g.Expect(driver.Start(context.Background(), agent.VM{Name: "vm-1"})).To(Succeed())
	a2, err := agent.New(agent.Config{RESTConfig: cfg, Namespace: ns, Host: "h2", Interval: interval, Driver: driver})
	g.Expect(err).NotTo(HaveOccurred())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a2.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	g.Eventually(phaseOf(ns, "h2"), wait, poll).Should(Equal(vpoolv1alpha1.HostPhaseLive))

	proxy.Cut()
	g.Eventually(func(g Gomega) vpoolv1alpha1.HostPhase {
		phase := phaseOf(ns, "h2")(g)
		if phase == vpoolv1alpha1.HostPhaseFenced {
			running, _ := driver.Running(context.Background())
			g.Expect(running).To(BeEmpty(), "the host was counted fenced while a VM still ran on it")
		}
		return phase
	}, wait, 20*time.Millisecond).Should(Equal(vpoolv1alpha1.HostPhaseFenced))
	g.Expect(errors.Is(<-done, agent.ErrSelfFenced)).To(BeTrue())
	done <- nil
}
