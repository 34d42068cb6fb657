package fencing

import (
	"context"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
)

// Manual is the method of a host nobody can fence: a person confirms it is
// down by setting spec.state: Forgotten (host-forget).
type Manual struct{}

var _ Fencer = Manual{}

// Unattended is false: HA never fences a Manual host.
func (Manual) Unattended() bool { return false }

// Start implements Fencer.
func (Manual) Start(in HostInput) *vpoolv1alpha1.FencingStatus { return StartRecord(in) }

// Step does nothing: only a person acts.
func (Manual) Step(context.Context, Env, HostInput) (Progress, error) { return Progress{}, nil }

// Decide is Fenced on the person's word.
func (Manual) Decide(in HostInput) Decision {
	if in.Forget {
		return Decision{Phase: vpoolv1alpha1.HostPhaseFenced, Reason: ReasonPersonConfirmed,
			Message: "a person confirmed the host is down (spec.state: Forgotten)"}
	}
	return Decision{Phase: vpoolv1alpha1.HostPhaseFencing, Reason: ReasonManualFencingRequired,
		Message: "fencing method is Manual: once you are sure the host is down, set spec.state: Forgotten"}
}

// FencedReason implements Fencer.
func (Manual) FencedReason() string { return ReasonPersonConfirmed }

// Remote implements Fencer.
func (Manual) Remote() bool { return false }

// Readiness is always "ready": the person is the method.
func (Manual) Readiness(context.Context, Env, HostInput) Readiness {
	return Readiness{Ready: true, Reason: ReasonManualOnly,
		Message: "fencing method is Manual: nobody can fence this host; a person confirms it is down (spec.state: Forgotten)"}
}
