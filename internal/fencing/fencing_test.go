package fencing

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/internal/liveness"
)

var t0 = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)

const (
	live        = vpoolv1alpha1.HostPhaseLive
	unreachable = vpoolv1alpha1.HostPhaseUnreachable
	inFencing   = vpoolv1alpha1.HostPhaseFencing
	fenced      = vpoolv1alpha1.HostPhaseFenced
	pending     = vpoolv1alpha1.HostPhasePending
	forgotten   = vpoolv1alpha1.HostPhaseForgotten
)

func tally(phases ...vpoolv1alpha1.HostPhase) Tally { return TallyOf(phases) }

func withSuspects(t Tally, n int) Tally {
	t.Suspect = n
	return t
}

func TestStormGuard(t *testing.T) {
	cases := map[string]struct {
		tally   Tally
		percent int32
		allowed bool
	}{
		"one of three stale, default 50%":          {tally(live, live, unreachable), 50, true},
		"two of three stale, default 50%":          {tally(live, unreachable, unreachable), 50, false},
		"two of four is exactly 50%: allowed":      {tally(live, live, unreachable, inFencing), 50, true},
		"three of four over 50%":                   {tally(live, unreachable, unreachable, inFencing), 50, false},
		"fenced and pending hosts are not watched": {tally(live, unreachable, fenced, fenced, pending), 50, true},
		"0% never allows a stale host":             {tally(live, live, live, unreachable), 0, false},
		"100% always allows":                       {tally(unreachable, unreachable), 100, true},
		"nobody watched":                           {tally(pending, forgotten), 50, true},
		"a silent Live host counts as stale":       {withSuspects(tally(live, live, unreachable), 1), 50, false},
		"suspects are not counted twice":           {withSuspects(tally(live, live, live, live), 2), 50, true},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			c := StormGuard(tc.tally, tc.percent)
			g.Expect(c.Allowed).To(Equal(tc.allowed), c.Message)
			if !tc.allowed {
				g.Expect(c.Reason).To(Equal(ReasonStormGuard))
				g.Expect(c.Message).To(ContainSubstring("fences nobody"))
			}
		})
	}
}

func TestMayFenceChain(t *testing.T) {
	base := Request{Automatic: true, Method: vpoolv1alpha1.FencingAgent, Tally: tally(live, live, unreachable),
		MaxUnhealthyPercent: 50, MaxConcurrent: 1}
	cases := map[string]struct {
		mutate func(*Request)
		reason string
	}{
		"allowed":           {func(*Request) {}, ReasonFencingAllowed},
		"storm guard first": {func(r *Request) { r.Tally = tally(live, unreachable, unreachable); r.InFencing = 5 }, ReasonStormGuard},
		"a person's intent passes the storm guard": {func(r *Request) {
			r.Automatic = false
			r.Tally = tally(live, unreachable, unreachable)
		}, ReasonFencingAllowed},
		"budget exhausted":                             {func(r *Request) { r.InFencing = 1 }, ReasonBudgetExhausted},
		"budget of two with one fencing":               {func(r *Request) { r.InFencing = 1; r.MaxConcurrent = 2 }, ReasonFencingAllowed},
		"budget binds a person too":                    {func(r *Request) { r.Automatic = false; r.InFencing = 1 }, ReasonBudgetExhausted},
		"manual method cannot be fenced automatically": {func(r *Request) { r.Method = vpoolv1alpha1.FencingManual }, ReasonManualFencingRequired},
		"manual method with a person's intent":         {func(r *Request) { r.Method = vpoolv1alpha1.FencingManual; r.Automatic = false }, ReasonFencingAllowed},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			r := base
			tc.mutate(&r)
			c := MayFence(r)
			g.Expect(c.Reason).To(Equal(tc.reason), c.Message)
			g.Expect(c.Allowed).To(Equal(tc.reason == ReasonFencingAllowed))
			g.Expect(c.Message).NotTo(BeEmpty())
		})
	}
}

func observed(lastRenewal time.Time) liveness.Observation {
	return liveness.Observation{Known: true, LastSeen: lastRenewal, LastRenewal: lastRenewal}
}

func TestNext(t *testing.T) {
	timeout := 10 * time.Second
	allowed := Check{Allowed: true, Reason: ReasonFencingAllowed}
	started := &metav1.Time{Time: t0.Add(timeout)}
	cases := map[string]struct {
		in      HostInput
		phase   vpoolv1alpha1.HostPhase
		reason  string
		requeue time.Duration
	}{
		"pending without heartbeat waits": {
			in: HostInput{Now: t0, Phase: pending, Heartbeat: liveness.Observation{LastSeen: t0}}, phase: pending, reason: ReasonAwaitingHeartbeat},
		"pending with a renewal goes live": {
			in: HostInput{Now: t0, Phase: pending, Heartbeat: observed(t0)}, phase: live, reason: ReasonHeartbeatReceived},
		"pending host forgotten": {
			in: HostInput{Now: t0, Phase: pending, Forget: true}, phase: forgotten, reason: ReasonForgotten},
		"live requeues at the exact deadline": {
			in: HostInput{Now: t0.Add(4 * time.Second), Phase: live, Heartbeat: observed(t0)}, phase: live, reason: ReasonHeartbeatReceived, requeue: 6 * time.Second},
		"live goes unreachable at the deadline": {
			in: HostInput{Now: t0.Add(timeout), Phase: live, Heartbeat: observed(t0)}, phase: unreachable, reason: ReasonHeartbeatStale},
		"a restarted operator waits a full timeout from the first sighting": {
			in: HostInput{Now: t0.Add(9 * time.Second), Phase: live, Heartbeat: liveness.Observation{Known: true, LastSeen: t0}}, phase: live, requeue: time.Second, reason: ReasonHeartbeatReceived},
		"forget refused while heartbeating": {
			in: HostInput{Now: t0.Add(time.Second), Phase: live, Forget: true, Heartbeat: observed(t0)}, phase: live, reason: ReasonForgetRefused, requeue: 9 * time.Second},
		"unreachable without HA waits for a person": {
			in: HostInput{Now: t0.Add(20 * time.Second), Phase: unreachable, Heartbeat: observed(t0), Guard: allowed}, phase: unreachable, reason: ReasonAwaitingPerson},
		"unreachable with HA starts fencing": {
			in: HostInput{Now: t0.Add(20 * time.Second), Phase: unreachable, HAEnabled: true, Heartbeat: observed(t0), Guard: allowed}, phase: inFencing, reason: ReasonFencingStarted},
		"unreachable, silence counted afresh after an outage: no fence before a timeout from the recount": {
			in: HostInput{Now: t0.Add(20 * time.Second), Phase: unreachable, HAEnabled: true,
				Heartbeat: observed(t0).Afresh(t0.Add(16 * time.Second)), Guard: allowed},
			phase: unreachable, reason: ReasonCountingAfresh, requeue: 6 * time.Second},
		"unreachable with HA blocked by the guard": {
			in: HostInput{Now: t0.Add(20 * time.Second), Phase: unreachable, HAEnabled: true, Heartbeat: observed(t0), Guard: Check{Reason: ReasonStormGuard, Message: "storm"}}, phase: unreachable, reason: ReasonStormGuard},
		"unreachable without HA but forgotten starts fencing": {
			in: HostInput{Now: t0.Add(20 * time.Second), Phase: unreachable, Forget: true, Heartbeat: observed(t0), Guard: allowed}, phase: inFencing, reason: ReasonFencingStarted},
		"repair path: heartbeat back before fencing": {
			in: HostInput{Now: t0.Add(21 * time.Second), Phase: unreachable, HAEnabled: true, Heartbeat: observed(t0.Add(20 * time.Second)), Guard: allowed}, phase: live, reason: ReasonHeartbeatResumed},
		"agent fencing waits for the safe time": {
			in: HostInput{Now: t0.Add(12 * time.Second), Phase: inFencing, Method: vpoolv1alpha1.FencingAgent, Heartbeat: observed(t0),
				Fencing: &vpoolv1alpha1.FencingStatus{StartedAt: started}}, phase: inFencing, reason: ReasonAwaitingSafeTime, requeue: 3 * time.Second},
		"agent fencing completes at the safe time": {
			in: HostInput{Now: t0.Add(15 * time.Second), Phase: inFencing, Method: vpoolv1alpha1.FencingAgent, Heartbeat: observed(t0),
				Fencing: &vpoolv1alpha1.FencingStatus{StartedAt: started}}, phase: fenced, reason: ReasonAgentWatchdog},
		"agent fencing honours a longer deadline declared in the Lease": {
			in: HostInput{Now: t0.Add(15 * time.Second), Phase: inFencing, Method: vpoolv1alpha1.FencingAgent,
				Heartbeat: liveness.Observation{Known: true, LastSeen: t0, LastRenewal: t0, Declared: 20 * time.Second},
				Fencing:   &vpoolv1alpha1.FencingStatus{StartedAt: started}}, phase: inFencing, reason: ReasonAwaitingSafeTime, requeue: 10 * time.Second},
		"heartbeat during fencing abandons the fence": {
			in: HostInput{Now: t0.Add(12 * time.Second), Phase: inFencing, Method: vpoolv1alpha1.FencingAgent, Heartbeat: observed(t0.Add(11 * time.Second)),
				Fencing: &vpoolv1alpha1.FencingStatus{StartedAt: started}}, phase: live, reason: ReasonHeartbeatResumed},
		"redfish waits for power off": {
			in: HostInput{Now: t0.Add(12 * time.Second), Phase: inFencing, Method: vpoolv1alpha1.FencingRedfish, Heartbeat: observed(t0),
				Fencing: &vpoolv1alpha1.FencingStatus{StartedAt: started}}, phase: inFencing, reason: ReasonPoweringOff},
		"redfish fenced when the BMC says off": {
			in: HostInput{Now: t0.Add(12 * time.Second), Phase: inFencing, Method: vpoolv1alpha1.FencingRedfish, Heartbeat: observed(t0), Down: true,
				Fencing: &vpoolv1alpha1.FencingStatus{StartedAt: started}}, phase: fenced, reason: ReasonRedfishPowerOff},
		"manual fenced on the person's word": {
			in: HostInput{Now: t0.Add(12 * time.Second), Phase: inFencing, Method: vpoolv1alpha1.FencingManual, Forget: true, Heartbeat: observed(t0),
				Fencing: &vpoolv1alpha1.FencingStatus{StartedAt: started}}, phase: fenced, reason: ReasonPersonConfirmed},
		"fenced master is not forgotten before another master is in place": {
			in: HostInput{Now: t0.Add(30 * time.Second), Phase: fenced, Forget: true, IsMaster: true}, phase: fenced, reason: ReasonMasterForget},
		"fenced host forgotten": {
			in: HostInput{Now: t0.Add(30 * time.Second), Phase: fenced, Forget: true}, phase: forgotten, reason: ReasonForgotten},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			if tc.in.Timeout == 0 {
				tc.in.Timeout = timeout
			}
			d := Next(tc.in)
			g.Expect(d.Phase).To(Equal(tc.phase), d.Message)
			g.Expect(d.Reason).To(Equal(tc.reason), d.Message)
			g.Expect(d.RequeueAfter).To(Equal(tc.requeue))
			g.Expect(d.Message).NotTo(BeEmpty())
		})
	}
}

func TestRejoin(t *testing.T) {
	timeout := 10 * time.Second
	completed := &metav1.Time{Time: t0.Add(15 * time.Second)}
	base := HostInput{Now: t0.Add(31 * time.Second), Timeout: timeout, Phase: fenced, Heartbeat: observed(t0.Add(30 * time.Second)),
		Fencing: &vpoolv1alpha1.FencingStatus{Method: vpoolv1alpha1.FencingAgent, BootID: "boot-1", CompletedAt: completed, Evidence: "x"},
		BootID:  "boot-2", MasterEpoch: 3, PoolEpoch: 3}
	cases := map[string]struct {
		mutate  func(*HostInput)
		phase   vpoolv1alpha1.HostPhase
		message string
	}{
		"new boot, no VM, current epoch: rejoins": {func(*HostInput) {}, live, "rejoined"},
		"same boot ID stays fenced":               {func(in *HostInput) { in.BootID = "boot-1" }, fenced, "a new boot"},
		"VMs still running stays fenced":          {func(in *HostInput) { in.RunningVMs = 2 }, fenced, "no VM running"},
		"old epoch stays fenced":                  {func(in *HostInput) { in.MasterEpoch = 2 }, fenced, "epoch 3"},
		"no heartbeat since the fence":            {func(in *HostInput) { in.Heartbeat = observed(t0) }, fenced, "fenced"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			in := base
			tc.mutate(&in)
			d := Next(in)
			g.Expect(d.Phase).To(Equal(tc.phase))
			g.Expect(d.Message).To(ContainSubstring(tc.message))
		})
	}
}

func TestDestructive(t *testing.T) {
	g := NewWithT(t)
	g.Expect(Decision{Phase: inFencing}.Destructive(unreachable)).To(BeTrue())
	g.Expect(Decision{Phase: fenced}.Destructive(inFencing)).To(BeTrue())
	g.Expect(Decision{Phase: forgotten}.Destructive(fenced)).To(BeTrue())
	g.Expect(Decision{Phase: unreachable}.Destructive(live)).To(BeFalse())
	g.Expect(Decision{Phase: live}.Destructive(unreachable)).To(BeFalse())
	g.Expect(Decision{Phase: inFencing}.Destructive(inFencing)).To(BeFalse())
}

func TestRedfishStep(t *testing.T) {
	cases := map[string]struct {
		off    bool
		last   time.Time
		now    time.Time
		action BMCAction
	}{
		"off: done, no second power-off":    {true, t0, t0.Add(time.Hour), BMCDone},
		"off before any request: done":      {true, time.Time{}, t0, BMCDone},
		"on, never requested: power off":    {false, time.Time{}, t0, BMCPowerOff},
		"on, requested just now: wait":      {false, t0, t0.Add(time.Second), BMCWait},
		"on, request timed out: send again": {false, t0, t0.Add(PowerOffRetryAfter), BMCPowerOff},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			a, _ := RedfishStep(tc.off, tc.last, tc.now)
			NewWithT(t).Expect(a).To(Equal(tc.action))
		})
	}
}

func TestBackoff(t *testing.T) {
	g := NewWithT(t)
	g.Expect(Backoff(0)).To(Equal(time.Second))
	g.Expect(Backoff(1)).To(Equal(time.Second))
	g.Expect(Backoff(2)).To(Equal(2 * time.Second))
	g.Expect(Backoff(4)).To(Equal(8 * time.Second))
	g.Expect(Backoff(8)).To(Equal(MaxBackoff))
	g.Expect(Backoff(100)).To(Equal(MaxBackoff))
}
