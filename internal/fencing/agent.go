package fencing

import (
	"context"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
)

// Reasons of the FencingReady condition of the Agent and Manual methods.
const (
	ReasonAgentSelfFence = "AgentSelfFence"
	ReasonManualOnly     = "ManualFencing"
)

// Agent fences by waiting: the host agent's watchdog stops every VM when it
// cannot renew its heartbeat, and the host counts as fenced once the safe
// time computed from the last renewal observed has passed.
type Agent struct{}

var _ Fencer = Agent{}

// Unattended implements Fencer.
func (Agent) Unattended() bool { return true }

// Start records the safe time along with the start.
func (Agent) Start(in HostInput) *vpoolv1alpha1.FencingStatus {
	f := StartRecord(in)
	f.SafeAt = &metav1.Time{Time: SafeAt(in.Heartbeat, in.Timeout)}
	return f
}

// Step does nothing: the watchdog acts on the host, the operator only waits.
func (Agent) Step(context.Context, Env, HostInput) (Progress, error) { return Progress{}, nil }

// Decide is Fenced once the safe time has passed, with AgentEvidence as the
// evidence, and never while the storm guard holds: a host cut off with the
// majority keeps its VMs past its renewal deadline (liveness.Survive), and
// its silence counts afresh once the guard lifts (liveness.Recount).
func (Agent) Decide(in HostInput) Decision {
	safeAt := SafeAt(in.Heartbeat, in.Timeout)
	if in.Guard.Reason == ReasonStormGuard {
		return Decision{Phase: vpoolv1alpha1.HostPhaseFencing, Reason: ReasonStormGuard, Message: in.Guard.Message +
			"; this host's silence counts afresh once the guard lifts, as its agent may ride the outage out"}
	}
	if in.Now.Before(safeAt) {
		return Decision{Phase: vpoolv1alpha1.HostPhaseFencing, Reason: ReasonAwaitingSafeTime, RequeueAfter: safeAt.Sub(in.Now),
			Message: fmt.Sprintf("the agent's watchdog stops every VM by %s; the host counts as fenced at %s",
				selfFenceBy(in.Heartbeat, in.Timeout).UTC().Format(time.RFC3339), safeAt.UTC().Format(time.RFC3339))}
	}
	return Decision{Phase: vpoolv1alpha1.HostPhaseFenced, Reason: ReasonAgentWatchdog, Message: AgentEvidence(in)}
}

// FencedReason implements Fencer.
func (Agent) FencedReason() string { return ReasonAgentWatchdog }

// Remote implements Fencer.
func (Agent) Remote() bool { return false }

// Readiness is always ready: the watchdog needs nothing from the operator.
func (Agent) Readiness(context.Context, Env, HostInput) Readiness {
	return Readiness{Ready: true, Reason: ReasonAgentSelfFence, Message: "the host's agent self-fences when it cannot renew its heartbeat"}
}
