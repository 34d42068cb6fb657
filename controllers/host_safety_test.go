package controllers_test

import (
	"context"
	"testing"

	. "github.com/onsi/gomega"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/controllers"
	"github.com/poolkeeper/poolkeeper/internal/agent"
	"github.com/poolkeeper/poolkeeper/internal/fencing"
	"github.com/poolkeeper/poolkeeper/internal/testutil/bmcsim"
)

// A second agent started for a live host (a cloned host, or a host's
// identity reused while the original runs) runs none of its VMs; the Host
// says so, naming both boots, is not Ready and takes no new VM until the
// second agent is gone.
func TestSecondAgentMakesTheHostUnsafe(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ns := newNamespace(t)
	createPool(t, ns, "p", poolOpts{ha: true, timeout: timeout})
	createHost(t, ns, "p", "h1")
	createSR(t, ns, "p", "nfs", "")
	createVM(t, ns, "p", "vm-1")
	startManager(t, ns, controllers.Options{})
	first := startAgentWithBoot(t, ns, "h1", "boot-first")
	g.Eventually(runningOn(ns, "vm-1"), wait, poll).Should(Equal("h1"))

	second := startAgentConfig(t, agent.Config{Namespace: ns, Host: "h1", Interval: interval, BootID: "boot-second"})
	conflict := func(g Gomega) *metav1.Condition {
		return meta.FindStatusCondition(getHost(g, ns, "h1").Status.Conditions, vpoolv1alpha1.HostAgentConflict)
	}
	g.Eventually(conflict, wait, poll).Should(And(HaveField("Status", metav1.ConditionTrue),
		HaveField("Reason", controllers.ReasonDuplicateAgent),
		HaveField("Message", And(ContainSubstring("boot-first"), ContainSubstring("boot-second")))))
	h1 := getHost(g, ns, "h1")
	g.Expect(meta.FindStatusCondition(h1.Status.Conditions, vpoolv1alpha1.ConditionReady)).To(And(
		HaveField("Status", metav1.ConditionFalse), HaveField("Reason", controllers.ReasonDuplicateAgent)))
	g.Expect(h1.Status.Phase).To(Equal(vpoolv1alpha1.HostPhaseLive))
	g.Eventually(func(g Gomega) []string {
		return eventMessages(g, ns, "h1", controllers.ReasonDuplicateAgent)
	}, wait, poll).Should(ContainElement(And(HavePrefix(corev1.EventTypeWarning+": "), ContainSubstring("boot-first"),
		ContainSubstring("boot-second"))))

	// No new VM goes to a host two agents claim; the running one stays put
	// and the second agent runs nothing.
	createVM(t, ns, "p", "vm-2")
	g.Consistently(func(g Gomega) {
		g.Expect(getVM(g, ns, "vm-2").Status.ResidentOn).To(BeEmpty())
		g.Expect(runningOn(ns, "vm-1")(g)).To(Equal("h1"))
		g.Expect(second.Driver.Running(context.Background())).To(BeEmpty())
		g.Expect(first.Driver.Running(context.Background())).To(Equal([]string{"vm-1"}))
	}, 2*timeout, poll).Should(Succeed())

	// The second agent goes: the conflict ends once it has been silent for
	// the timeout, and the host takes VMs again.
	second.Kill()
	g.Eventually(conflict, wait, poll).Should(HaveField("Status", metav1.ConditionFalse))
	g.Eventually(phaseOf(ns, "h1"), wait, poll).Should(Equal(vpoolv1alpha1.HostPhaseLive))
	g.Eventually(runningOn(ns, "vm-2"), wait, poll).Should(Equal("h1"))
	g.Eventually(eventsOf(ns, "h1"), wait, poll).Should(ContainElement(controllers.ReasonAgentConflictResolved))
	g.Expect(first.Err()).NotTo(HaveOccurred())
}

// A Host whose agent heartbeats is never forgotten, with or without its
// Pool: deleting it once the Pool is gone is refused while it heartbeats,
// and goes through once it is down.
func TestHeartbeatingHostWithoutPoolIsNotForgotten(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ns := newNamespace(t)
	createPool(t, ns, "p", poolOpts{timeout: timeout})
	createHost(t, ns, "p", "h1")
	startManager(t, ns, controllers.Options{})
	a := startAgent(t, ns, "h1", interval, nil)
	g.Eventually(phaseOf(ns, "h1"), wait, poll).Should(Equal(vpoolv1alpha1.HostPhaseLive))

	deleteForGood(t, g, &vpoolv1alpha1.Pool{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "p"}})
	g.Expect(k8s.Delete(context.Background(), &vpoolv1alpha1.Host{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "h1"}})).To(Succeed())
	g.Eventually(func(g Gomega) *metav1.Condition {
		return meta.FindStatusCondition(getHost(g, ns, "h1").Status.Conditions, vpoolv1alpha1.ConditionReady)
	}, wait, poll).Should(HaveField("Reason", fencing.ReasonForgetRefused))
	g.Consistently(func(g Gomega) vpoolv1alpha1.HostPhase { return getHost(g, ns, "h1").Status.Phase }, 3*timeout, poll).
		Should(Equal(vpoolv1alpha1.HostPhaseLive), "a heartbeating host is never forgotten")

	a.Kill()
	g.Eventually(func() bool {
		return apierrors.IsNotFound(k8s.Get(context.Background(), key(ns, "h1"), &vpoolv1alpha1.Host{}))
	}, wait, poll).Should(BeTrue(), "once down, the deleted host is forgotten and goes")
	// Its Lease goes with it: an agent of a host added again under the name
	// takes a fresh Lease instead of waiting out the dead boot's deadline.
	g.Expect(apierrors.IsNotFound(k8s.Get(context.Background(), key(ns, "h1"), &coordinationv1.Lease{}))).To(BeTrue())
}

// deleteForGood deletes obj and, as a person might, removes whatever
// finalizer holds it, until it is gone.
func deleteForGood(t *testing.T, g Gomega, obj client.Object) {
	t.Helper()
	ctx := context.Background()
	g.Expect(k8s.Delete(ctx, obj)).To(Succeed())
	g.Eventually(func(g Gomega) {
		err := k8s.Get(ctx, client.ObjectKeyFromObject(obj), obj)
		if apierrors.IsNotFound(err) {
			return
		}
		g.Expect(err).NotTo(HaveOccurred())
		obj.SetFinalizers(nil)
		_ = k8s.Update(ctx, obj)
		g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(obj), obj)).To(Satisfy(apierrors.IsNotFound))
	}, wait, poll).Should(Succeed())
}

// A refused forget can be withdrawn until the forget begins: set back to
// Active, the host is never forgotten when it later goes silent. Once the
// forget has begun (status.forgetStartedAt), the API refuses the withdrawal.
func TestForgetIntentCanBeWithdrawn(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ns := newNamespace(t)
	createPool(t, ns, "p", poolOpts{timeout: timeout, master: "h1"})
	createHost(t, ns, "p", "h1")
	createHost(t, ns, "p", "h2", func(h *vpoolv1alpha1.Host) { h.Spec.Fencing.Method = vpoolv1alpha1.FencingManual })
	createHost(t, ns, "p", "h3", func(h *vpoolv1alpha1.Host) { h.Spec.Fencing.Method = vpoolv1alpha1.FencingManual })
	startManager(t, ns, controllers.Options{})
	startAgent(t, ns, "h1", interval, nil)
	a2 := startAgent(t, ns, "h2", interval, nil)
	a3 := startAgent(t, ns, "h3", interval, nil)
	for _, h := range []string{"h2", "h3"} {
		g.Eventually(phaseOf(ns, h), wait, poll).Should(Equal(vpoolv1alpha1.HostPhaseLive))
	}
	setState := func(name string, state vpoolv1alpha1.HostState) error {
		h := getHost(g, ns, name)
		patch := client.MergeFrom(h.DeepCopy())
		h.Spec.State = state
		return k8s.Patch(context.Background(), h, patch)
	}
	g.Expect(setState("h2", vpoolv1alpha1.HostForgotten)).To(Succeed())
	g.Eventually(func(g Gomega) *metav1.Condition {
		return meta.FindStatusCondition(getHost(g, ns, "h2").Status.Conditions, vpoolv1alpha1.ConditionReady)
	}, wait, poll).Should(And(HaveField("Reason", fencing.ReasonForgetRefused),
		HaveField("Message", ContainSubstring("to withdraw the intent, set spec.state: Active"))))
	g.Expect(getHost(g, ns, "h2").Status.ForgetStartedAt).To(BeNil())
	g.Expect(setState("h2", vpoolv1alpha1.HostActive)).To(Succeed(), "a refused forget can be withdrawn")
	g.Eventually(func(g Gomega) string {
		return meta.FindStatusCondition(getHost(g, ns, "h2").Status.Conditions, vpoolv1alpha1.ConditionReady).Reason
	}, wait, poll).Should(Equal(fencing.ReasonHeartbeatReceived))

	// Withdrawn, it no longer fires when the host goes silent: HA is off,
	// the host waits for a person.
	a2.Kill()
	g.Eventually(phaseOf(ns, "h2"), wait, poll).Should(Equal(vpoolv1alpha1.HostPhaseUnreachable))
	g.Consistently(phaseOf(ns, "h2"), 2*timeout, poll).Should(Equal(vpoolv1alpha1.HostPhaseUnreachable))

	// A forget that has begun cannot be withdrawn.
	g.Expect(setState("h3", vpoolv1alpha1.HostForgotten)).To(Succeed())
	a3.Kill()
	g.Eventually(func(g Gomega) *metav1.Time { return getHost(g, ns, "h3").Status.ForgetStartedAt }, wait, poll).NotTo(BeNil())
	err := setState("h3", vpoolv1alpha1.HostActive)
	g.Expect(err).To(MatchError(ContainSubstring("status.forgetStartedAt")))
	g.Expect(err).To(MatchError(ContainSubstring("spec.state")))
	g.Eventually(phaseOf(ns, "h3"), wait, poll).Should(Equal(vpoolv1alpha1.HostPhaseForgotten))
}

// A Redfish host's fencing configuration is checked as soon as it is
// written, not on the day the host must be fenced: a missing credentials
// Secret, one without a password, and credentials the BMC refuses each turn
// FencingReady False naming the field; fixed, it turns True.
func TestRedfishConfigurationCheckedAtOnce(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ns := newNamespace(t)
	bmc := bmcsim.New(t, bmcsim.WithSystem("h1", bmcsim.PowerOn))
	createPool(t, ns, "p", poolOpts{ha: true, timeout: timeout})
	createHost(t, ns, "p", "h1", redfishHost(bmc, "h1"))
	startManager(t, ns, controllers.Options{})
	ready := func(g Gomega) *metav1.Condition {
		return meta.FindStatusCondition(getHost(g, ns, "h1").Status.Conditions, vpoolv1alpha1.HostFencingReady)
	}
	g.Eventually(ready, wait, poll).Should(And(HaveField("Status", metav1.ConditionFalse),
		HaveField("Reason", controllers.ReasonCredentialsMissing),
		HaveField("Message", ContainSubstring("spec.fencing.redfish.credentialsSecretRef"))))
	g.Eventually(eventsOf(ns, "h1"), wait, poll).Should(ContainElement(controllers.ReasonCredentialsMissing))

	// A Secret without a password: the next spec change checks at once.
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "bmc"}, Type: corev1.SecretTypeBasicAuth,
		StringData: map[string]string{"username": bmcsim.DefaultUsername}}
	g.Expect(k8s.Create(context.Background(), secret)).To(Succeed())
	touch := func(address string) {
		h := getHost(g, ns, "h1")
		patch := client.MergeFrom(h.DeepCopy())
		h.Spec.Address = address
		g.Expect(k8s.Patch(context.Background(), h, patch)).To(Succeed())
	}
	touch("h1-a.example")
	g.Eventually(ready, wait, poll).Should(HaveField("Message", ContainSubstring(`"password"`)))

	secret.StringData = map[string]string{"username": bmcsim.DefaultUsername, "password": "wrong"}
	g.Expect(k8s.Update(context.Background(), secret)).To(Succeed())
	touch("h1-b.example")
	g.Eventually(ready, wait, poll).Should(And(HaveField("Status", metav1.ConditionFalse),
		HaveField("Reason", controllers.ReasonBMCUnauthorized), HaveField("Message", ContainSubstring("credentialsSecretRef"))))

	secret.StringData = map[string]string{"username": bmcsim.DefaultUsername, "password": bmcsim.DefaultPassword}
	g.Expect(k8s.Update(context.Background(), secret)).To(Succeed())
	touch("h1-c.example")
	g.Eventually(ready, wait, poll).Should(And(HaveField("Status", metav1.ConditionTrue), HaveField("Reason", controllers.ReasonBMCAnswers)))
	g.Expect(bmc.ForceOffCount("h1")).To(BeZero(), "checking never powers anything off")
}
