package liveness

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"
)

var t0 = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)

func TestVerdictBoundary(t *testing.T) {
	timeout := 10 * time.Second
	cases := map[string]struct {
		now       time.Time
		stale     bool
		recheckIn time.Duration
	}{
		"just renewed":              {t0, false, timeout},
		"one nanosecond before":     {t0.Add(timeout - 1), false, 1},
		"exactly at the deadline":   {t0.Add(timeout), true, 0},
		"after the deadline":        {t0.Add(timeout + time.Second), true, 0},
		"clock behind the renewal":  {t0.Add(-time.Second), false, timeout + time.Second},
		"half way requeues at rest": {t0.Add(timeout / 2), false, timeout / 2},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			stale, recheck := Verdict(t0, tc.now, timeout)
			g.Expect(stale).To(Equal(tc.stale))
			g.Expect(recheck).To(Equal(tc.recheckIn))
		})
	}
}

// TestSafeTimeArithmetic checks the contract between the agent's watchdog and
// the operator: the agent stops its VMs at least one maximal heartbeat
// interval plus a T/4 margin before the operator counts the host fenced.
func TestSafeTimeArithmetic(t *testing.T) {
	for _, timeout := range []time.Duration{2 * time.Second, 60 * time.Second, 600 * time.Second} {
		t.Run(timeout.String(), func(t *testing.T) {
			g := NewWithT(t)
			gap := SafeAfter(timeout) - SelfFenceAfter(timeout)
			g.Expect(gap).To(BeNumerically(">=", MaxInterval(timeout)+timeout/4))
			g.Expect(SelfFenceAfter(timeout)).To(BeNumerically(">=", timeout), "a pause shorter than the timeout never self-fences")
			g.Expect(SafeAfter(timeout)).To(Equal(timeout + timeout/2))
			g.Expect(MaxInterval(timeout)).To(Equal(timeout / 4))
		})
	}
}

func TestTracker(t *testing.T) {
	key := types.NamespacedName{Namespace: "ns", Name: "xen-1"}
	t.Run("a Lease never seen is silent since the tracker started", func(t *testing.T) {
		g := NewWithT(t)
		clk := clocktesting.NewFakePassiveClock(t0)
		tr := NewTracker(clk)
		clk.SetTime(t0.Add(time.Minute))
		o := tr.Get(key)
		g.Expect(o.Known).To(BeFalse())
		g.Expect(o.LastSeen).To(Equal(t0))
	})
	t.Run("first sighting after a restart is not a renewal but restarts the count", func(t *testing.T) {
		g := NewWithT(t)
		clk := clocktesting.NewFakePassiveClock(t0)
		tr := NewTracker(clk)
		clk.SetTime(t0.Add(5 * time.Second))
		g.Expect(tr.Observe(key, "100", 0)).To(BeFalse())
		o := tr.Get(key)
		g.Expect(o.Known).To(BeTrue())
		g.Expect(o.LastSeen).To(Equal(t0.Add(5 * time.Second)))
		g.Expect(o.LastRenewal.IsZero()).To(BeTrue())
		g.Expect(o.Fresh(clk.Now(), time.Minute)).To(BeFalse(), "no renewal seen yet: no evidence of life")
		stale, in := Verdict(o.LastSeen, clk.Now(), 10*time.Second)
		g.Expect(stale).To(BeFalse())
		g.Expect(in).To(Equal(10*time.Second), "a restarted operator waits a full timeout of observed silence")
	})
	t.Run("a changed resourceVersion is a renewal on the operator's clock", func(t *testing.T) {
		g := NewWithT(t)
		clk := clocktesting.NewFakePassiveClock(t0)
		tr := NewTracker(clk)
		tr.Observe(key, "100", 0)
		clk.SetTime(t0.Add(3 * time.Second))
		g.Expect(tr.Observe(key, "100", 0)).To(BeFalse(), "a resync with the same version is not a renewal")
		g.Expect(tr.Observe(key, "101", 0)).To(BeTrue())
		o := tr.Get(key)
		g.Expect(o.LastRenewal).To(Equal(t0.Add(3 * time.Second)))
		g.Expect(o.LastSeen).To(Equal(o.LastRenewal))
		g.Expect(o.Renewed(t0.Add(time.Second))).To(BeTrue())
		g.Expect(o.Renewed(t0.Add(4 * time.Second))).To(BeFalse())
	})
	t.Run("the longest declared deadline is kept", func(t *testing.T) {
		g := NewWithT(t)
		tr := NewTracker(clocktesting.NewFakePassiveClock(t0))
		tr.Observe(key, "1", 600*time.Second)
		tr.Observe(key, "2", 60*time.Second)
		g.Expect(tr.Get(key).Declared).To(Equal(600 * time.Second))
	})
	t.Run("forget drops the host", func(t *testing.T) {
		g := NewWithT(t)
		tr := NewTracker(clocktesting.NewFakePassiveClock(t0))
		tr.Observe(key, "1", 0)
		tr.Forget(key)
		g.Expect(tr.Get(key).Known).To(BeFalse())
	})
}
