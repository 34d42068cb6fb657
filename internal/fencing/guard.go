package fencing

import (
	"fmt"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
)

// Reasons of the fencing checks; they end up verbatim in conditions and events.
const (
	// ReasonFencingAllowed: every check passed.
	ReasonFencingAllowed = "FencingAllowed"
	// ReasonStormGuard: too many hosts are stale at once; the operator assumes
	// it is itself cut off and fences nobody.
	ReasonStormGuard = "StormGuard"
	// ReasonBudgetExhausted: spec.fencing.maxConcurrent hosts are already being fenced.
	ReasonBudgetExhausted = "FencingBudgetExhausted"
	// ReasonManualFencingRequired: the host's method is Manual; only a person
	// can confirm it is down.
	ReasonManualFencingRequired = "ManualFencingRequired"
)

// Check is the outcome of one check, or of the whole chain.
type Check struct {
	Allowed bool
	Reason  string
	Message string
}

// Tally counts a pool's hosts by phase. Suspect counts the Live hosts that
// have been silent for liveness.SuspectAfter: not yet Unreachable, but stale
// for the storm guard.
type Tally struct {
	Total, Pending, Live, Suspect, Unreachable, Fencing, Fenced, Forgotten int
}

// TallyOf counts phases; an empty phase counts as Pending.
func TallyOf(phases []vpoolv1alpha1.HostPhase) Tally {
	var t Tally
	for _, p := range phases {
		t.Total++
		switch p {
		case vpoolv1alpha1.HostPhaseLive:
			t.Live++
		case vpoolv1alpha1.HostPhaseUnreachable:
			t.Unreachable++
		case vpoolv1alpha1.HostPhaseFencing:
			t.Fencing++
		case vpoolv1alpha1.HostPhaseFenced:
			t.Fenced++
		case vpoolv1alpha1.HostPhaseForgotten:
			t.Forgotten++
		default:
			t.Pending++
		}
	}
	return t
}

// Stale is the number of hosts that stopped heartbeating and are not yet
// fenced, suspects included.
func (t Tally) Stale() int { return t.Suspect + t.Unreachable + t.Fencing }

// Watched is the number of hosts expected to heartbeat: Live (suspects
// included) or stale.
func (t Tally) Watched() int { return t.Live + t.Unreachable + t.Fencing }

// StormGuard allows fencing while at most maxUnhealthyPercent of the watched
// hosts are stale. Exactly the percentage is still allowed.
func StormGuard(t Tally, maxUnhealthyPercent int32) Check {
	stale, watched := t.Stale(), t.Watched()
	if watched == 0 || stale*100 <= int(maxUnhealthyPercent)*watched {
		return Check{Allowed: true, Reason: ReasonFencingAllowed,
			Message: fmt.Sprintf("%d of %d hosts stale, within maxUnhealthyPercent %d%%", stale, watched, maxUnhealthyPercent)}
	}
	return Check{Reason: ReasonStormGuard, Message: fmt.Sprintf(
		"%d of %d hosts are stale at once (over maxUnhealthyPercent %d%%): the operator may itself be cut off from them, so it fences nobody",
		stale, watched, maxUnhealthyPercent)}
}

// Request is what the chain needs to decide whether one host may be fenced now.
type Request struct {
	// Automatic is true for HA fencing, false for a person's forget intent.
	Automatic bool
	// Method is the host's fencing method.
	Method vpoolv1alpha1.FencingMethod
	// Tally counts the pool's hosts, this one included.
	Tally Tally
	// MaxUnhealthyPercent and MaxConcurrent come from the pool's spec.fencing.
	MaxUnhealthyPercent int32
	MaxConcurrent       int32
	// InFencing is the number of the pool's other hosts now in phase Fencing.
	InFencing int
	// Methods resolves Method to its Fencer (nil: the built-in methods).
	Methods Registry
}

// MayFence runs the checks in order and returns the first refusal, or an
// allowance. A person's forget intent overrides the storm guard (the person
// has looked), but not the concurrency budget.
func MayFence(r Request) Check {
	if r.Automatic {
		if c := StormGuard(r.Tally, r.MaxUnhealthyPercent); !c.Allowed {
			return c
		}
	}
	if r.InFencing >= int(r.MaxConcurrent) {
		return Check{Reason: ReasonBudgetExhausted, Message: fmt.Sprintf(
			"%d hosts are already being fenced (spec.fencing.maxConcurrent %d); this one waits its turn", r.InFencing, r.MaxConcurrent)}
	}
	if r.Automatic && !r.Methods.Get(r.Method).Unattended() {
		return Check{Reason: ReasonManualFencingRequired, Message: fmt.Sprintf("fencing method is %s: nobody can fence this host; "+
			"once you are sure it is down, set spec.state: Forgotten", r.Method)}
	}
	return Check{Allowed: true, Reason: ReasonFencingAllowed, Message: fmt.Sprintf("fencing with method %s", r.Method)}
}
