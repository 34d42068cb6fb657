package controllers_test

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/controllers"
	"github.com/poolkeeper/poolkeeper/internal/fencing"
)

// stormTimeout leaves room between T/2, when a quiet Live host counts as
// stale for the storm guard, and T, when it is Unreachable.
const stormTimeout = 4 * time.Second

// firstEventAt is when the first event of reason about one of names was
// emitted, and about which; zero while there is none.
func firstEventAt(g Gomega, ns, reason string, names ...string) (time.Time, string) {
	list := &corev1.EventList{}
	g.Expect(k8s.List(context.Background(), list, inNS(ns))).To(Succeed())
	var at time.Time
	var about string
	for _, e := range list.Items {
		for _, n := range names {
			if e.InvolvedObject.Name == n && e.Reason == reason && (at.IsZero() || e.EventTime.Time.Before(at)) {
				at, about = e.EventTime.Time, n
			}
		}
	}
	return at, about
}

// When a majority of a pool's hosts go quiet at once, the storm guard holds
// from the instant their silence reaches T/2 (when the agents' outage
// exemptions may begin), not a full timeout later when they are
// Unreachable: a StormGuard event says so before either is Unreachable.
func TestStormGuardHoldsAtHalfTheTimeout(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ns := newNamespace(t)
	agents := threeLiveHosts(t, g, ns, stormTimeout)

	agents["h2"].Kill()
	agents["h3"].Kill()
	killed := time.Now()
	var held time.Time
	g.Eventually(func(g Gomega) {
		held, _ = firstEventAt(g, ns, fencing.ReasonStormGuard, "h2", "h3")
		g.Expect(held).NotTo(BeZero())
	}, wait, poll).Should(Succeed())
	t.Logf("storm guard held %s after the agents were killed (T/2 = %s)", held.Sub(killed), stormTimeout/2)
	// The last renewal observed came at most one interval before the kill.
	g.Expect(held.Sub(killed)).To(BeNumerically(">=", stormTimeout/2-interval-100*time.Millisecond), "not before T/2 of silence")
	g.Expect(held.Sub(killed)).To(BeNumerically("<", stormTimeout), "before a full timeout of silence")
	// The Pool says so at once too, while h2 and h3 are still Live: no Host
	// write announces a quiet host, so the guard's change wakes the Pool.
	g.Eventually(func(g Gomega) {
		c := poolCondition(ns, vpoolv1alpha1.PoolFencingAllowed)(g)
		g.Expect(c).NotTo(BeNil())
		g.Expect(c.Status).To(Equal(metav1.ConditionFalse))
		g.Expect(c.Reason).To(Equal(fencing.ReasonStormGuard))
	}, wait, 20*time.Millisecond).Should(Succeed())
	for _, h := range []string{"h2", "h3"} {
		g.Expect(phaseOf(ns, h)(g)).To(Equal(vpoolv1alpha1.HostPhaseLive), "the Pool's FencingAllowed is False before %s is Unreachable", h)
	}
	for _, h := range []string{"h2", "h3"} {
		g.Eventually(phaseOf(ns, h), wait, poll).Should(Equal(vpoolv1alpha1.HostPhaseUnreachable))
		stale, _ := firstEventAt(g, ns, fencing.ReasonHeartbeatStale, h)
		g.Expect(stale).To(BeTemporally(">", held), "%s was Unreachable only after the guard held", h)
	}
	g.Consistently(phaseOf(ns, "h2"), stormTimeout, poll).Should(Equal(vpoolv1alpha1.HostPhaseUnreachable), "nobody is fenced")
}

// A storm of quiet Live hosts that ends before any is Unreachable is ridden
// out like any other: the renewal that ends it lifts the guard at once, and
// the silence of the host that really died counts afresh from then.
func TestQuietHostsStormLiftedByARenewal(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ns := newNamespace(t)
	agents := threeLiveHosts(t, g, ns, stormTimeout)

	agents["h3"].Freeze(stormTimeout*3/4 - interval) // quiet past T/2, renewing before T
	agents["h2"].Kill()
	var held, lifted time.Time
	var liftedOn string
	g.Eventually(func(g Gomega) {
		held, _ = firstEventAt(g, ns, fencing.ReasonStormGuard, "h2", "h3")
		lifted, liftedOn = firstEventAt(g, ns, controllers.ReasonOutageRiddenOut, "h1", "h2", "h3")
		g.Expect(lifted).NotTo(BeZero())
	}, wait, poll).Should(Succeed())
	g.Expect(held).NotTo(BeZero(), "the guard held while h2 and h3 were quiet")
	g.Expect(liftedOn).To(Equal("h3"), "lifted by the reconcile of h3's renewal")
	g.Expect(lifted.Sub(held)).To(BeNumerically("<", stormTimeout/2), "lifted as soon as h3 renewed")

	g.Eventually(phaseOf(ns, "h2"), wait, poll).Should(Equal(vpoolv1alpha1.HostPhaseFenced))
	h2 := getHost(g, ns, "h2")
	// status.fencing.safeAt is recorded to the second.
	g.Expect(h2.Status.Fencing.SafeAt.Time).To(BeTemporally(">=", lifted.Add(stormTimeout+stormTimeout/2).Truncate(time.Second)),
		"h2's silence counted afresh from the lift")
	g.Expect(eventReasons(g, ns, "h3")).NotTo(ContainElement(fencing.ReasonHeartbeatStale), "h3 was never Unreachable")
}
