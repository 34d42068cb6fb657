package fencing

import (
	"fmt"
	"time"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/internal/liveness"
)

// Reasons of host phase transitions, used in the Host's conditions and events.
const (
	ReasonAwaitingHeartbeat = "AwaitingHeartbeat"
	ReasonHeartbeatReceived = "HeartbeatReceived"
	ReasonHeartbeatStale    = "HeartbeatStale"
	ReasonHeartbeatResumed  = "HeartbeatResumed"
	ReasonAwaitingPerson    = "AwaitingPerson"
	ReasonFencingStarted    = "FencingStarted"
	ReasonAwaitingSafeTime  = "AwaitingSafeTime"
	ReasonPoweringOff       = "PoweringOff"
	ReasonAgentWatchdog     = "AgentWatchdog"
	ReasonRedfishPowerOff   = "RedfishPowerOff"
	ReasonPersonConfirmed   = "PersonConfirmed"
	ReasonRejoinPending     = "RejoinPending"
	ReasonRejoined          = "Rejoined"
	ReasonForgetRefused     = "ForgetRefused"
	ReasonForgotten         = "Forgotten"
	ReasonMasterForget      = "MasterForgetBlocked"
	// ReasonCountingAfresh: after an outage the host's silence counts afresh
	// (liveness.Recount) and has not yet reached the timeout: no fence begins.
	ReasonCountingAfresh = "CountingAfresh"
)

// HostInput is everything the phase machine looks at for one host.
type HostInput struct {
	Now       time.Time
	Phase     vpoolv1alpha1.HostPhase
	Method    vpoolv1alpha1.FencingMethod
	HAEnabled bool
	// Forget is the person's intent: spec.state Forgotten or the Host deleted.
	Forget bool
	// Withdrawable is true when the intent is spec.state Forgotten (not a
	// deletion) and the forget has not begun: it can still be set back to Active.
	Withdrawable bool
	Timeout      time.Duration
	Heartbeat    liveness.Observation
	// Fencing is the recorded fence, if any.
	Fencing *vpoolv1alpha1.FencingStatus
	// Guard is the fencing chain's verdict for this host (MayFence).
	Guard Check
	// Spec is the host's spec.fencing (the method's configuration).
	Spec vpoolv1alpha1.HostFencing
	// Methods resolves Method to its Fencer (nil: the built-in methods).
	Methods Registry
	// Down is true when the method's Step of this reconcile observed the
	// host down (Redfish: the BMC reported PowerState Off).
	Down bool
	// IsMaster is true when the host is the pool's master (status.master).
	IsMaster bool
	// Watchdog is the watchdog the host's agent reports (status.watchdog),
	// cited in an Agent fence's evidence for the boot counted fenced.
	Watchdog *vpoolv1alpha1.WatchdogStatus
	// Agent-reported state, for a fenced host that heartbeats again.
	BootID      string
	RunningVMs  int
	MasterEpoch int64
	PoolEpoch   int64
}

// Decision is the next phase and why. RequeueAfter is the exact time until the
// decision may change without any event (zero: only an event changes it).
type Decision struct {
	Phase        vpoolv1alpha1.HostPhase
	Reason       string
	Message      string
	RequeueAfter time.Duration
}

// BeginsForget reports whether taking d from phase "from" with a forget
// intent begins the forget: the step the operator records in
// status.forgetStartedAt, after which the intent cannot be withdrawn.
func (d Decision) BeginsForget(from vpoolv1alpha1.HostPhase, forget bool) bool {
	return forget && d.Phase != from && (d.Phase == vpoolv1alpha1.HostPhaseFencing || d.Phase == vpoolv1alpha1.HostPhaseFenced ||
		d.Phase == vpoolv1alpha1.HostPhaseForgotten)
}

// Destructive reports whether moving from phase "from" to d.Phase is a step the
// operator may take only after re-reading the Lease from the API server.
func (d Decision) Destructive(from vpoolv1alpha1.HostPhase) bool {
	return d.Phase != from && (d.Phase == vpoolv1alpha1.HostPhaseFencing || d.Phase == vpoolv1alpha1.HostPhaseFenced ||
		d.Phase == vpoolv1alpha1.HostPhaseForgotten)
}

// Next decides one step of the host phase machine.
func Next(in HostInput) Decision {
	switch in.Phase {
	case vpoolv1alpha1.HostPhaseLive:
		return nextLive(in)
	case vpoolv1alpha1.HostPhaseUnreachable:
		return nextUnreachable(in)
	case vpoolv1alpha1.HostPhaseFencing:
		return nextFencing(in)
	case vpoolv1alpha1.HostPhaseFenced:
		return nextFenced(in)
	case vpoolv1alpha1.HostPhaseForgotten:
		return Decision{Phase: in.Phase, Reason: ReasonForgotten, Message: "the host was removed from the pool (host-forget)"}
	default:
		return nextPending(in)
	}
}

func nextPending(in HostInput) Decision {
	if in.Heartbeat.Fresh(in.Now, in.Timeout) {
		return Decision{Phase: vpoolv1alpha1.HostPhaseLive, Reason: ReasonHeartbeatReceived, Message: "the host's agent is heartbeating"}
	}
	if in.Forget {
		return Decision{Phase: vpoolv1alpha1.HostPhaseForgotten, Reason: ReasonForgotten,
			Message: "the host never heartbeated; removed from the pool"}
	}
	return Decision{Phase: vpoolv1alpha1.HostPhasePending, Reason: ReasonAwaitingHeartbeat,
		Message: "no heartbeat observed yet: start poolkeeper-agent on the host"}
}

func nextLive(in HostInput) Decision {
	stale, recheck := liveness.Verdict(in.Heartbeat.LastSeen, in.Now, in.Timeout)
	if stale {
		return Decision{Phase: vpoolv1alpha1.HostPhaseUnreachable, Reason: ReasonHeartbeatStale, Message: fmt.Sprintf(
			"no heartbeat observed for %s (timeout %s), since %s", in.Now.Sub(in.Heartbeat.LastSeen).Round(time.Millisecond),
			in.Timeout, in.Heartbeat.LastSeen.UTC().Format(time.RFC3339))}
	}
	d := Decision{Phase: vpoolv1alpha1.HostPhaseLive, Reason: ReasonHeartbeatReceived, Message: "the host's agent is heartbeating",
		RequeueAfter: recheck}
	if in.Forget {
		d.Reason = ReasonForgetRefused
		d.Message = fmt.Sprintf("refusing to forget a host that is still heartbeating (last renewal observed %s ago): "+
			"shut it down first; it is forgotten once no heartbeat is seen for %s",
			in.Now.Sub(in.Heartbeat.LastSeen).Round(time.Second), in.Timeout)
		if in.Withdrawable {
			d.Message += "; to withdraw the intent, set spec.state: Active"
		}
	}
	return d
}

func nextUnreachable(in HostInput) Decision {
	if in.Heartbeat.Fresh(in.Now, in.Timeout) {
		return Decision{Phase: vpoolv1alpha1.HostPhaseLive, Reason: ReasonHeartbeatResumed,
			Message: "heartbeat resumed before the host was fenced"}
	}
	if !in.HAEnabled && !in.Forget {
		return Decision{Phase: vpoolv1alpha1.HostPhaseUnreachable, Reason: ReasonAwaitingPerson, Message: "HA is off: " +
			"the host's VMs stay Running in status until a person confirms it is down by setting spec.state: Forgotten (host-forget)"}
	}
	if !in.Guard.Allowed {
		return Decision{Phase: vpoolv1alpha1.HostPhaseUnreachable, Reason: in.Guard.Reason, Message: in.Guard.Message}
	}
	// Counted afresh after an outage, the silence must reach the timeout
	// again before a fence begins: a host that rode out the outage renews
	// within that time (and a fence method that acts at once, Redfish, never
	// powers it off on the silence from before).
	if stale, recheck := liveness.Verdict(in.Heartbeat.LastSeen, in.Now, in.Timeout); !stale {
		return Decision{Phase: vpoolv1alpha1.HostPhaseUnreachable, Reason: ReasonCountingAfresh, RequeueAfter: recheck,
			Message: fmt.Sprintf("after an outage the host's silence counts afresh from %s: no fence begins before it "+
				"reaches the timeout %s", in.Heartbeat.LastSeen.UTC().Format(time.RFC3339), in.Timeout)}
	}
	return Decision{Phase: vpoolv1alpha1.HostPhaseFencing, Reason: ReasonFencingStarted,
		Message: fmt.Sprintf("fencing the host with method %s", in.Method)}
}

// Resumed reports whether the heartbeat of a host in Fencing resumed since
// the fence started: the fence is abandoned, and no method may act.
func Resumed(in HostInput) bool {
	return in.Fencing != nil && in.Fencing.StartedAt != nil && in.Heartbeat.Renewed(in.Fencing.StartedAt.Time) &&
		in.Heartbeat.Fresh(in.Now, in.Timeout)
}

func nextFencing(in HostInput) Decision {
	if Resumed(in) {
		return Decision{Phase: vpoolv1alpha1.HostPhaseLive, Reason: ReasonHeartbeatResumed,
			Message: "heartbeat resumed before the fence completed; fence abandoned"}
	}
	return in.Methods.Get(in.Method).Decide(in)
}

// SafeAt is when an Agent-fenced host is certainly down: the last renewal the
// operator observed plus liveness.SafeAfter, or later if the agent declared a
// longer self-fence deadline in its Lease than the pool's timeout.
func SafeAt(hb liveness.Observation, timeout time.Duration) time.Time {
	return hb.LastSeen.Add(max(liveness.SelfFenceAfter(timeout), hb.Declared) + liveness.SafeGuard(timeout))
}

// selfFenceBy is when the agent's watchdog has stopped every VM at the latest.
func selfFenceBy(hb liveness.Observation, timeout time.Duration) time.Time {
	return hb.LastSeen.Add(max(liveness.SelfFenceAfter(timeout), hb.Declared))
}

func nextFenced(in HostInput) Decision {
	if in.Forget && in.IsMaster {
		return Decision{Phase: vpoolv1alpha1.HostPhaseFenced, Reason: ReasonMasterForget, Message: "the host is fenced but still the pool " +
			"master: it is forgotten once another master is in place (set spec.master to a Live member, or let HA elect one)"}
	}
	if in.Forget {
		return Decision{Phase: vpoolv1alpha1.HostPhaseForgotten, Reason: ReasonForgotten, Message: "the fenced host was removed from the pool (host-forget)"}
	}
	renewed := in.Fencing != nil && in.Fencing.CompletedAt != nil && in.Heartbeat.Renewed(in.Fencing.CompletedAt.Time) &&
		in.Heartbeat.Fresh(in.Now, in.Timeout)
	if !renewed {
		return Decision{Phase: vpoolv1alpha1.HostPhaseFenced, Reason: in.Methods.FencedReason(in.Fencing, ReasonAgentWatchdog), Message: "the host is fenced"}
	}
	var missing []string
	if in.Fencing.BootID != "" && in.BootID == in.Fencing.BootID {
		missing = append(missing, fmt.Sprintf("a new boot (boot ID is still %s)", in.BootID))
	}
	if in.RunningVMs > 0 {
		missing = append(missing, fmt.Sprintf("no VM running (the agent reports %d)", in.RunningVMs))
	}
	if in.MasterEpoch != in.PoolEpoch {
		missing = append(missing, fmt.Sprintf("the current pool epoch %d (the agent follows %d)", in.PoolEpoch, in.MasterEpoch))
	}
	if len(missing) > 0 {
		return Decision{Phase: vpoolv1alpha1.HostPhaseFenced, Reason: ReasonRejoinPending,
			Message: fmt.Sprintf("heartbeat resumed, but the host rejoins only with %s", joinAnd(missing))}
	}
	return Decision{Phase: vpoolv1alpha1.HostPhaseLive, Reason: ReasonRejoined,
		Message: fmt.Sprintf("the host rebooted (boot ID %s), runs no VM and follows epoch %d: rejoined as a member", in.BootID, in.PoolEpoch)}
}

func joinAnd(items []string) string {
	switch len(items) {
	case 1:
		return items[0]
	case 2:
		return items[0] + " and " + items[1]
	default:
		out := ""
		for i, s := range items {
			switch {
			case i == len(items)-1:
				out += ", and " + s
			case i > 0:
				out += ", " + s
			default:
				out = s
			}
		}
		return out
	}
}
