package controllers_test

import (
	"context"
	"testing"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/controllers"
)

func getSR(g Gomega, ns, name string) *vpoolv1alpha1.StorageRepository {
	sr := &vpoolv1alpha1.StorageRepository{}
	g.Expect(k8s.Get(context.Background(), key(ns, name), sr)).To(Succeed())
	return sr
}

// srReady is an SR's Ready condition.
func srReady(ns, name string) func(g Gomega) metav1.Condition {
	return func(g Gomega) metav1.Condition {
		c := meta.FindStatusCondition(getSR(g, ns, name).Status.Conditions, vpoolv1alpha1.ConditionReady)
		g.Expect(c).NotTo(BeNil())
		return *c
	}
}

func readyWith(status metav1.ConditionStatus, reason string, msg ...string) OmegaMatcher {
	m := []OmegaMatcher{HaveField("Status", status), HaveField("Reason", reason)}
	for _, s := range msg {
		m = append(m, HaveField("Message", ContainSubstring(s)))
	}
	return And(m...)
}

// A local SR is usable while its host is Live, not once the host dies or is
// fenced, and again when the host comes back; a local SR whose host does not
// exist says so, naming spec.host, until the host is added. A shared SR
// counts the Live hosts it is usable from. Heartbeats alone write nothing.
func TestStorageRepositoryFollowsItsHost(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	f := newPoolFixture(t, poolOpts{ha: true, timeout: timeout, master: "h1"}, "h1", "h2", "h3")
	createSR(t, f.ns, "p", "h3-local", "h3")
	createSR(t, f.ns, "p", "h4-local", "h4")

	g.Eventually(srReady(f.ns, "h3-local"), wait, poll).Should(readyWith(metav1.ConditionTrue, controllers.ReasonSRHostLive, "h3"))
	g.Eventually(srReady(f.ns, "nfs"), wait, poll).Should(readyWith(metav1.ConditionTrue, controllers.ReasonSRLiveHosts,
		"usable from 3 of 3 hosts"))
	g.Eventually(srReady(f.ns, "h4-local"), wait, poll).Should(readyWith(metav1.ConditionFalse, controllers.ReasonSRHostNotFound,
		`spec.host: Host "h4" not found`))
	sr := getSR(g, f.ns, "h3-local")
	g.Expect(sr.Status.ObservedGeneration).To(Equal(sr.Generation))

	// Heartbeats (several per timeout) do not rewrite the status.
	g.Consistently(func(g Gomega) string { return getSR(g, f.ns, "h3-local").ResourceVersion }, 2*timeout, poll).
		Should(Equal(sr.ResourceVersion))

	f.agents["h3"].Kill()
	g.Eventually(srReady(f.ns, "h3-local"), wait, poll).Should(readyWith(metav1.ConditionFalse, "HostFenced",
		"local SR of host h3, which is Fenced"))
	g.Eventually(srReady(f.ns, "nfs"), wait, poll).Should(readyWith(metav1.ConditionTrue, controllers.ReasonSRLiveHosts,
		"usable from 2 of 3 hosts", "h3 (Fenced)"))
	g.Eventually(eventsOf(f.ns, "h3-local"), wait, poll).Should(
		ContainElement("HostFenced"))

	// h3 boots again (a new boot ID) and rejoins: its SR is usable again.
	startAgent(t, f.ns, "h3", interval, nil)
	g.Eventually(srReady(f.ns, "h3-local"), wait, poll).Should(readyWith(metav1.ConditionTrue, controllers.ReasonSRHostLive))
	g.Eventually(srReady(f.ns, "nfs"), wait, poll).Should(readyWith(metav1.ConditionTrue, controllers.ReasonSRLiveHosts,
		"usable from 3 of 3 hosts"))
	g.Eventually(eventsOf(f.ns, "h3-local"), wait, poll).Should(
		ContainElement(controllers.ReasonSRHostLive))

	// The missing host is added and heartbeats.
	createHost(t, f.ns, "p", "h4")
	startAgent(t, f.ns, "h4", interval, nil)
	g.Eventually(srReady(f.ns, "h4-local"), wait, poll).Should(readyWith(metav1.ConditionTrue, controllers.ReasonSRHostLive))
	g.Eventually(srReady(f.ns, "nfs"), wait, poll).Should(readyWith(metav1.ConditionTrue, controllers.ReasonSRLiveHosts,
		"usable from 4 of 4 hosts"))
}

// A local SR naming a host of another pool, or an SR of a pool that does not
// exist, is not Ready and names the field; the SR becomes Ready once the pool
// appears.
func TestStorageRepositoryNamesBadReferences(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ns := newNamespace(t)
	createPool(t, ns, "p", poolOpts{ha: true, timeout: timeout})
	createPool(t, ns, "q", poolOpts{ha: true, timeout: timeout})
	createHost(t, ns, "q", "q1")
	createSR(t, ns, "p", "q1-local", "q1")
	createSR(t, ns, "r", "r-nfs", "")
	startManager(t, ns, controllers.Options{})

	g.Eventually(srReady(ns, "q1-local"), wait, poll).Should(readyWith(metav1.ConditionFalse, controllers.ReasonSRHostInOtherPool,
		`spec.host: Host "q1" belongs to pool "q", not "p"`))
	g.Eventually(srReady(ns, "r-nfs"), wait, poll).Should(readyWith(metav1.ConditionFalse, vpoolv1alpha1.ReasonPoolNotFound,
		`spec.poolRef.name: Pool "r" not found`))

	createPool(t, ns, "r", poolOpts{ha: true, timeout: timeout})
	createHost(t, ns, "r", "r1")
	g.Eventually(srReady(ns, "r-nfs"), wait, poll).Should(readyWith(metav1.ConditionFalse, controllers.ReasonSRNoLiveHost,
		"usable from 0 of 1 hosts", "r1 (Pending)"))
	startAgent(t, ns, "r1", interval, nil)
	g.Eventually(srReady(ns, "r-nfs"), wait, poll).Should(readyWith(metav1.ConditionTrue, controllers.ReasonSRLiveHosts,
		"usable from 1 of 1 hosts", "Live: r1"))
	g.Eventually(eventsOf(ns, "r-nfs"), wait, poll).Should(
		ContainElements(vpoolv1alpha1.ReasonPoolNotFound, controllers.ReasonSRLiveHosts))
}
