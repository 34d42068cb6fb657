package controllers

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/internal/fencing"
)

// While the operator itself cannot reach the API server (its reach watch
// noted the outage's start), no host's silence counts: its cache shows no
// renewal whether or not the agents renew, so no Host is judged Unreachable
// meanwhile, and nothing is written. Once it reaches the API server again,
// silence counts from then: a host still silent is Unreachable a whole
// timeout later, not at once.
func TestNoSilenceCountsWhileTheOperatorIsCutOff(t *testing.T) {
	g := NewWithT(t)
	rig := newQuietRig(t)
	hosts := []string{"h1", "h2", "h3"}
	rig.renew(hosts...)
	for _, h := range hosts {
		rig.reconcile(g, h)
	}
	rig.events()
	written := rig.writes

	rc := rig.r.Tracker.Recount()
	rig.clk.Step(time.Second)
	rc.Cut(rig.clk.Now())
	rig.clk.Step(2 * quietTimeout)
	for _, h := range hosts {
		rig.reconcile(g, h)
		g.Expect(rig.phase(g, h)).To(Equal(vpoolv1alpha1.HostPhaseLive), "%s silent for 2T while the operator is cut off", h)
	}
	g.Expect(rig.writes).To(Equal(written), "no Host written while the operator is cut off")
	g.Expect(rig.events()).NotTo(ContainElement(ContainSubstring(fencing.ReasonHeartbeatStale)), "no HeartbeatStale")

	end := rig.clk.Now()
	rc.Outage(end)
	rig.clk.Step(quietTimeout - time.Millisecond)
	rig.reconcile(g, "h1")
	g.Expect(rig.phase(g, "h1")).To(Equal(vpoolv1alpha1.HostPhaseLive), "silence counted from the outage's end: T - 1ms")
	rig.clk.Step(time.Millisecond)
	rig.reconcile(g, "h1")
	g.Expect(rig.phase(g, "h1")).To(Equal(vpoolv1alpha1.HostPhaseUnreachable), "still silent a whole timeout after the outage")
}

// The operator stopped for 2T while the agents renew: on its resume the
// timers due meanwhile fire before its cache has the renewals it missed.
// The first judgement of a host's silence finds the stall (its watch did
// not tick meanwhile), so no host is taken for silent: silence counts from
// the resume, and a host still silent is Unreachable a whole timeout later.
func TestNoSilenceCountsAcrossTheOperatorsOwnStall(t *testing.T) {
	g := NewWithT(t)
	rig := newQuietRig(t)
	hosts := []string{"h1", "h2", "h3"}
	rc := rig.r.Tracker.Recount()
	rc.SetRunClock(rig.clk) // the rig's clock stands for the process's own
	rc.Watch()
	rig.renew(hosts...)
	for _, h := range hosts {
		rig.reconcile(g, h)
	}
	rig.events()
	written := rig.writes

	rig.clk.Step(2 * quietTimeout) // stopped: no tick, no reconcile
	for _, h := range hosts {
		rig.reconcile(g, h)
		g.Expect(rig.phase(g, h)).To(Equal(vpoolv1alpha1.HostPhaseLive), "%s after the operator's own stall of 2T", h)
	}
	g.Expect(rig.writes).To(Equal(written), "no Host written on the resume")
	g.Expect(rig.events()).NotTo(ContainElement(ContainSubstring(fencing.ReasonHeartbeatStale)), "no HeartbeatStale")
	g.Expect(rc.Stalls()).To(HaveLen(1), "the stall is found once, by the first reconcile after it")

	for range 4 { // the watch ticks on: no stall
		rig.clk.Step(quietTimeout / 4)
		rc.Alive(rig.clk.Now())
	}
	rig.reconcile(g, "h1")
	g.Expect(rig.phase(g, "h1")).To(Equal(vpoolv1alpha1.HostPhaseUnreachable), "still silent a whole timeout after the resume")
}
