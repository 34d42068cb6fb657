package fencing

import (
	"context"
	"errors"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/internal/liveness"
	"github.com/poolkeeper/poolkeeper/internal/redfish"
)

// fakeEnv records what a Fencer asked of the controller, in order.
type fakeEnv struct {
	rec      *vpoolv1alpha1.FencingStatus
	start    func() *vpoolv1alpha1.FencingStatus
	moved    bool
	secret   map[string][]byte
	calls    []string
	recorded []vpoolv1alpha1.FencingStatus
	events   []string
}

func (e *fakeEnv) Secret(_ context.Context, name string) (map[string][]byte, error) {
	e.calls = append(e.calls, "secret "+name)
	if e.secret == nil {
		return nil, errors.New("not found")
	}
	return e.secret, nil
}

func (e *fakeEnv) LeaseMoved(context.Context) (bool, error) {
	e.calls = append(e.calls, "lease")
	return e.moved, nil
}

func (e *fakeEnv) FenceRecord() *vpoolv1alpha1.FencingStatus {
	if e.rec == nil {
		e.rec = e.start()
	}
	return e.rec
}

func (e *fakeEnv) Record(context.Context) error {
	e.calls = append(e.calls, "record")
	e.recorded = append(e.recorded, *e.rec.DeepCopy())
	return nil
}

func (e *fakeEnv) Event(_, reason, _, _ string) { e.events = append(e.events, reason) }

// outlet is a switched PDU outlet: the toy method's remote end.
type outlet struct {
	on    bool
	calls *[]string
}

// pduFencer is a toy fencing method, written here against the interface
// alone: it cuts the host's outlet, recording the request first, and counts
// the host fenced once the outlet reads off.
type pduFencer struct{ outlet *outlet }

const toyMethod vpoolv1alpha1.FencingMethod = "PDU"

func (pduFencer) Unattended() bool                                { return true }
func (pduFencer) Start(in HostInput) *vpoolv1alpha1.FencingStatus { return StartRecord(in) }
func (pduFencer) FencedReason() string                            { return "OutletOff" }
func (pduFencer) Remote() bool                                    { return false }
func (pduFencer) Readiness(context.Context, Env, HostInput) Readiness {
	return Readiness{Ready: true, Reason: "OutletWired"}
}

func (p pduFencer) Step(ctx context.Context, env Env, in HostInput) (Progress, error) {
	if moved, err := env.LeaseMoved(ctx); err != nil || moved {
		return Progress{}, err
	}
	if !p.outlet.on {
		return Progress{Down: true}, nil
	}
	env.FenceRecord().PowerOffRequestedAt = &metav1.Time{Time: in.Now}
	if err := env.Record(ctx); err != nil {
		return Progress{}, err
	}
	*p.outlet.calls = append(*p.outlet.calls, "cut")
	p.outlet.on = false
	return Progress{RequeueAfter: time.Second}, nil
}

func (pduFencer) Decide(in HostInput) Decision {
	if in.Down {
		return Decision{Phase: vpoolv1alpha1.HostPhaseFenced, Reason: "OutletOff", Message: "the PDU reports the outlet off"}
	}
	return Decision{Phase: vpoolv1alpha1.HostPhaseFencing, Reason: "CuttingPower", Message: "cutting the outlet"}
}

// A method added in a test file, through the registry alone, fences a host
// with HA: the chain lets it (it is unattended), the phase machine asks it
// whether the fence is done, and the Fenced condition carries its reason.
// The controller does the same steps with the same calls.
func TestToyMethodFencesAHost(t *testing.T) {
	g := NewWithT(t)
	clk := clocktesting.NewFakePassiveClock(t0)
	timeout := 10 * time.Second
	var calls []string
	out := &outlet{on: true, calls: &calls}
	methods := NewRegistry(nil)
	methods[toyMethod] = pduFencer{outlet: out}

	in := HostInput{Method: toyMethod, Methods: methods, HAEnabled: true, Timeout: timeout, Phase: live, Heartbeat: observed(t0)}
	step := func() Decision {
		in.Now = clk.Now()
		in.Guard = MayFence(Request{Automatic: true, Method: toyMethod, Methods: methods, Tally: tally(live, live, in.Phase),
			MaxUnhealthyPercent: 50, MaxConcurrent: 1})
		d := Next(in)
		if d.Phase == inFencing && in.Phase != inFencing {
			in.Fencing = methods.Get(in.Method).Start(in)
		}
		in.Phase = d.Phase
		return d
	}

	clk.SetTime(t0.Add(timeout))
	g.Expect(step().Reason).To(Equal(ReasonHeartbeatStale))
	d := step()
	g.Expect(d.Phase).To(Equal(inFencing))
	g.Expect(in.Fencing.Method).To(Equal(toyMethod))

	env := &fakeEnv{rec: in.Fencing}
	for i := 0; i < 2 && in.Phase == inFencing; i++ {
		clk.SetTime(clk.Now().Add(time.Second))
		in.Now = clk.Now()
		p, err := methods.Get(in.Method).Step(context.Background(), env, in)
		g.Expect(err).NotTo(HaveOccurred())
		in.Down = p.Down
		d = step()
	}
	g.Expect(d.Phase).To(Equal(fenced))
	g.Expect(d.Reason).To(Equal("OutletOff"))
	g.Expect(env.calls).To(Equal([]string{"lease", "record", "lease"}), "the Lease is re-read, the request recorded, then acted on")
	g.Expect(calls).To(Equal([]string{"cut"}))
	g.Expect(env.recorded[0].PowerOffRequestedAt).NotTo(BeNil())

	in.Fencing.Evidence = d.Message
	v := methods.FencedVerdict(fenced, d, in.Fencing)
	g.Expect(v.Status).To(Equal(metav1.ConditionTrue))
	g.Expect(v.Reason).To(Equal("OutletOff"))
}

func TestRegistryFallsBackToTheBuiltins(t *testing.T) {
	g := NewWithT(t)
	var nilRegistry Registry
	g.Expect(nilRegistry.Get(vpoolv1alpha1.FencingRedfish)).To(BeAssignableToTypeOf(Redfish{}))
	g.Expect(nilRegistry.Get(vpoolv1alpha1.FencingManual)).To(Equal(Manual{}))
	g.Expect(nilRegistry.Get("")).To(Equal(Agent{}), "unset is the API default, Agent")
	g.Expect(nilRegistry.Get("Unknown")).To(Equal(Agent{}))
	g.Expect(MethodOf(&vpoolv1alpha1.Host{})).To(Equal(vpoolv1alpha1.FencingAgent))
}

func TestFencedReasonIsOneDecision(t *testing.T) {
	evidence := func(m vpoolv1alpha1.FencingMethod) *vpoolv1alpha1.FencingStatus {
		return &vpoolv1alpha1.FencingStatus{Method: m, Evidence: "down"}
	}
	cases := map[string]struct {
		phase  vpoolv1alpha1.HostPhase
		f      *vpoolv1alpha1.FencingStatus
		status metav1.ConditionStatus
		reason string
	}{
		"redfish fence":                       {fenced, evidence(vpoolv1alpha1.FencingRedfish), metav1.ConditionTrue, ReasonRedfishPowerOff},
		"manual fence":                        {fenced, evidence(vpoolv1alpha1.FencingManual), metav1.ConditionTrue, ReasonPersonConfirmed},
		"agent fence":                         {fenced, evidence(vpoolv1alpha1.FencingAgent), metav1.ConditionTrue, ReasonAgentWatchdog},
		"forgotten without a fence record":    {forgotten, nil, metav1.ConditionTrue, ReasonForgotten},
		"forgotten after a redfish fence":     {forgotten, evidence(vpoolv1alpha1.FencingRedfish), metav1.ConditionTrue, ReasonRedfishPowerOff},
		"fencing says how the fence goes":     {inFencing, nil, metav1.ConditionFalse, ReasonPoweringOff},
		"a live host is not fenced":           {live, nil, metav1.ConditionFalse, ReasonNotFenced},
		"a record without evidence: fallback": {forgotten, &vpoolv1alpha1.FencingStatus{Method: vpoolv1alpha1.FencingRedfish}, metav1.ConditionTrue, ReasonForgotten},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			v := Registry(nil).FencedVerdict(tc.phase, Decision{Reason: ReasonPoweringOff}, tc.f)
			g.Expect(v.Status).To(Equal(tc.status))
			g.Expect(v.Reason).To(Equal(tc.reason))
		})
	}
	// The phase machine's reason for a fenced host is the same decision.
	g := NewWithT(t)
	d := Next(HostInput{Now: t0, Phase: fenced, Fencing: evidence(vpoolv1alpha1.FencingRedfish)})
	g.Expect(d.Reason).To(Equal(ReasonRedfishPowerOff))
}

func TestHeartbeatVerdict(t *testing.T) {
	timeout := 10 * time.Second
	cases := map[string]struct {
		phase  vpoolv1alpha1.HostPhase
		hb     liveness.Observation
		now    time.Time
		status metav1.ConditionStatus
		reason string
	}{
		"pending":                        {pending, liveness.Observation{}, t0, metav1.ConditionUnknown, ReasonAwaitingHeartbeat},
		"live":                           {live, observed(t0), t0.Add(time.Hour), metav1.ConditionTrue, ReasonHeartbeatReceived},
		"fenced but renewing":            {fenced, observed(t0), t0.Add(time.Second), metav1.ConditionTrue, ReasonHeartbeatReceived},
		"unreachable and silent":         {unreachable, observed(t0), t0.Add(timeout), metav1.ConditionFalse, ReasonHeartbeatStale},
		"fencing and silent":             {inFencing, observed(t0), t0.Add(time.Minute), metav1.ConditionFalse, ReasonHeartbeatStale},
		"unreachable with a new renewal": {unreachable, observed(t0), t0.Add(timeout - time.Second), metav1.ConditionTrue, ReasonHeartbeatReceived},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			v := HeartbeatVerdict(tc.phase, tc.hb, tc.now, timeout)
			g.Expect(v.Status).To(Equal(tc.status))
			g.Expect(v.Reason).To(Equal(tc.reason))
			g.Expect(v.Message).NotTo(BeEmpty())
		})
	}
}

// fakeBMC answers from fields and logs what it was asked.
type fakeBMC struct {
	state redfish.PowerState
	err   error
	calls *[]string
}

func (b fakeBMC) PowerState(context.Context) (redfish.PowerState, error) {
	*b.calls = append(*b.calls, "power")
	return b.state, b.err
}

func (b fakeBMC) ForceOff(context.Context) error {
	*b.calls = append(*b.calls, "forceoff")
	return nil
}

func TestRedfishStepRecordsBeforeForceOff(t *testing.T) {
	rf := &vpoolv1alpha1.RedfishFencing{Endpoint: "https://bmc", SystemID: "1",
		CredentialsSecretRef: vpoolv1alpha1.LocalObjectReference{Name: "bmc"}}
	creds := map[string][]byte{corev1.BasicAuthUsernameKey: []byte("u"), corev1.BasicAuthPasswordKey: []byte("p")}
	in := HostInput{Now: t0, Method: vpoolv1alpha1.FencingRedfish, Spec: vpoolv1alpha1.HostFencing{Method: vpoolv1alpha1.FencingRedfish, Redfish: rf}}
	cases := map[string]struct {
		bmc      fakeBMC
		moved    bool
		secret   map[string][]byte
		calls    []string
		down     bool
		failure  string
		terminal bool
	}{
		"on: record, then ForceOff":         {bmc: fakeBMC{state: redfish.PowerOn}, secret: creds, calls: []string{"secret bmc", "lease", "power", "record", "forceoff"}},
		"off: done, nothing sent":           {bmc: fakeBMC{state: redfish.PowerOff}, secret: creds, calls: []string{"secret bmc", "lease", "power"}, down: true},
		"lease moved: nothing sent":         {bmc: fakeBMC{state: redfish.PowerOn}, secret: creds, moved: true, calls: []string{"secret bmc", "lease"}},
		"no secret: retried":                {bmc: fakeBMC{state: redfish.PowerOn}, calls: []string{"secret bmc"}, failure: ReasonCredentialsMissing},
		"refused credentials: terminal":     {bmc: fakeBMC{err: redfish.ErrUnauthorized}, secret: creds, calls: []string{"secret bmc", "lease", "power"}, failure: ReasonBMCUnauthorized, terminal: true},
		"a BMC that does not answer: retry": {bmc: fakeBMC{err: errors.New("timeout")}, secret: creds, calls: []string{"secret bmc", "lease", "power"}, failure: ReasonFencingFailed},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			env := &fakeEnv{moved: tc.moved, secret: tc.secret, start: func() *vpoolv1alpha1.FencingStatus { return StartRecord(in) }}
			bmc := tc.bmc
			bmc.calls = &env.calls
			m := Redfish{Open: func(redfish.Config) (BMC, error) { return bmc, nil }}
			p, err := m.Step(context.Background(), env, in)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(env.calls).To(Equal(tc.calls))
			g.Expect(p.Down).To(Equal(tc.down))
			if tc.failure == "" {
				g.Expect(p.Failure).To(BeNil())
				return
			}
			g.Expect(p.Failure.Reason).To(Equal(tc.failure))
			g.Expect(p.Failure.Terminal).To(Equal(tc.terminal))
		})
	}
	g := NewWithT(t)
	env := &fakeEnv{secret: creds, start: func() *vpoolv1alpha1.FencingStatus { return StartRecord(in) }}
	m := Redfish{Open: func(redfish.Config) (BMC, error) { return fakeBMC{state: redfish.PowerOn, calls: &env.calls}, nil }}
	_, err := m.Step(context.Background(), env, in)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(env.recorded).To(HaveLen(1))
	g.Expect(env.recorded[0].PowerOffRequestedAt).NotTo(BeNil(), "the request is in status before it is sent")
	g.Expect(env.events).To(Equal([]string{ReasonPowerOffRequested}))
}
