package fencing

import (
	"context"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
)

// Fencer is one fencing method (spec.fencing.method). Adding a method is one
// file with a Fencer and its API enum value: the Host controller drives every
// method through this interface, and the phase machine asks it whether a
// recorded fence is complete.
type Fencer interface {
	// Unattended reports whether the operator can fence with this method
	// without a person (false for Manual: HA cannot fence such a host).
	Unattended() bool
	// Start is the fence record written, before any action, when the host
	// enters Fencing.
	Start(in HostInput) *vpoolv1alpha1.FencingStatus
	// Step performs one action of a recorded fence (env.FenceRecord is the
	// host's status.fencing, which Step may update) and says what it observed. It
	// is called only while the fence is still under way, and must re-read the
	// Lease through env before any destructive action. A method that only
	// waits does nothing.
	Step(ctx context.Context, env Env, in HostInput) (Progress, error)
	// Decide is the phase machine's verdict on a host in Fencing whose
	// heartbeat has not resumed: still Fencing, or Fenced with the evidence
	// in the message. Pure: it looks only at in (in.Down is what Step saw).
	Decide(in HostInput) Decision
	// FencedReason is the reason of a fence this method completed.
	FencedReason() string
	// Remote reports whether Readiness talks to something outside the
	// cluster (a BMC): such a check is cached and announced on change.
	Remote() bool
	// Readiness is the FencingReady verdict: can this host be fenced when
	// it must be.
	Readiness(ctx context.Context, env Env, in HostInput) Readiness
}

// Env is what a Fencer may do outside the pure decision, provided by the
// Host controller for one host.
type Env interface {
	// Secret reads a Secret of the host's namespace from the API server.
	Secret(ctx context.Context, name string) (map[string][]byte, error)
	// LeaseMoved re-reads the host's Lease from the API server and reports
	// whether it was renewed since the last observation.
	LeaseMoved(ctx context.Context) (bool, error)
	// FenceRecord is the host's status.fencing, started (StartRecord) if
	// it is missing; a Step updates it in place.
	FenceRecord() *vpoolv1alpha1.FencingStatus
	// Record writes the host's status now, with optimistic locking: a step
	// that must be recorded before the action it allows.
	Record(ctx context.Context) error
	// Event announces an action taken, once the status written after it
	// is recorded.
	Event(eventType, reason, action, note string)
}

// Progress is what one Step observed.
type Progress struct {
	// Down is true when the method observed the host down (Redfish:
	// PowerState Off).
	Down bool
	// RequeueAfter is when to step again (zero: on the next event).
	RequeueAfter time.Duration
	// Failure is set when the action failed; the fence stays under way.
	Failure *Failure
}

// Failure is a failed fencing action.
type Failure struct {
	// Reason and Action are the Warning event's reason and action.
	Reason, Action string
	Err            error
	// Terminal is true when retrying cannot help until a person fixes
	// something (credentials the BMC refuses); otherwise the action is
	// retried with Backoff. A terminal failure is not retried until the Host
	// or a Secret the method read changes; the host is Stalled meanwhile.
	Terminal bool
	// Fix says, for a terminal failure, what a person must change.
	Fix string
}

// Readiness is the FencingReady condition's verdict.
type Readiness struct {
	Ready           bool
	Reason, Message string
	// Recheck is when to check again (zero: on the next spec change).
	Recheck time.Duration
}

// Registry maps the API enum value to its Fencer. A nil or partial
// Registry falls back to the built-in methods; an unknown or empty method
// is Agent, the API default.
type Registry map[vpoolv1alpha1.FencingMethod]Fencer

// NewRegistry returns the built-in methods: Agent, Redfish (opening BMCs
// with open; DefaultBMCFactory when nil) and Manual.
func NewRegistry(open BMCFactory) Registry {
	if open == nil {
		open = DefaultBMCFactory
	}
	return Registry{
		vpoolv1alpha1.FencingAgent:   Agent{},
		vpoolv1alpha1.FencingRedfish: Redfish{Open: open},
		vpoolv1alpha1.FencingManual:  Manual{},
	}
}

var builtin = NewRegistry(nil)

// Get returns the Fencer of method m.
func (r Registry) Get(m vpoolv1alpha1.FencingMethod) Fencer {
	if f, ok := r[m]; ok {
		return f
	}
	if f, ok := builtin[m]; ok {
		return f
	}
	return builtin[vpoolv1alpha1.FencingAgent]
}

// MethodOf is the host's fencing method, Agent when unset.
func MethodOf(h *vpoolv1alpha1.Host) vpoolv1alpha1.FencingMethod {
	if h.Spec.Fencing.Method == "" {
		return vpoolv1alpha1.FencingAgent
	}
	return h.Spec.Fencing.Method
}

// FencedReason is the reason of the Fenced condition for a fence record:
// the recorded method's when the fence left evidence, fallback otherwise.
func (r Registry) FencedReason(f *vpoolv1alpha1.FencingStatus, fallback string) string {
	if f == nil || f.Evidence == "" {
		return fallback
	}
	return r.Get(f.Method).FencedReason()
}

// StartRecord is the fence record every method starts from.
func StartRecord(in HostInput) *vpoolv1alpha1.FencingStatus {
	return &vpoolv1alpha1.FencingStatus{Method: in.Method, StartedAt: &metav1.Time{Time: in.Now}, BootID: in.BootID}
}
