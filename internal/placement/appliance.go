package placement

import (
	"fmt"
	"time"
)

// Reasons of the vApp start order (the VM's Scheduled condition).
const (
	// ReasonWaitingForAppliance: a member of a vApp waits for the VMs of its
	// vApp with a lower startOrder to run, then for the vApp's startDelay.
	ReasonWaitingForAppliance = "WaitingForAppliance"
	// ReasonApplianceNotFound: spec.applianceRef names no VirtualAppliance.
	ReasonApplianceNotFound = "ApplianceNotFound"
	// ReasonApplianceInOtherPool: spec.applianceRef names a VirtualAppliance
	// of another pool.
	ReasonApplianceInOtherPool = "ApplianceInOtherPool"
)

// Member is a VM of a vApp as its start order sees it.
type Member struct {
	Name       string
	StartOrder int32
	// ShouldRun is true when the VM's spec.powerState is Running and the
	// operator means to run it (not held Halted after a reset, as
	// DoNotRestart VMs are). A member that should not run holds nobody back.
	ShouldRun bool
	// Running is true when the VM is observed Running.
	Running bool
	// RunningSince is when its current run began, as the vApp recorded it;
	// zero while not recorded.
	RunningSince time.Time
}

// Appliance is a vApp's start order: its members and the delay between one
// start-order group and the next.
type Appliance struct {
	Name       string
	StartDelay time.Duration
	Members    []Member
}

// Gate decides whether a member of the vApp with startOrder may start at
// now. It may once every member with a lower startOrder that should run is
// Running and has been for StartDelay: each group waits for the ones before
// it to run, plus the delay, counted from the latest of their runs. It
// returns nil when the member may start, else the waiting decision, with,
// when only the delay is left, the instant it ends (zero otherwise: what the
// member waits for is an event). A member of the lowest group never waits.
func (a Appliance) Gate(startOrder int32, now time.Time) (wait *Decision, notBefore time.Time) {
	var blocking, before *int32 // the lowest group not running; the group just before startOrder
	var latest time.Time
	for _, m := range a.Members {
		if m.StartOrder >= startOrder || !m.ShouldRun {
			continue
		}
		if before == nil || m.StartOrder > *before {
			before = &m.StartOrder
		}
		// A run the vApp has not recorded yet counts as no run when there is
		// a delay to count from it.
		if !m.Running || a.StartDelay > 0 && m.RunningSince.IsZero() {
			if blocking == nil || m.StartOrder < *blocking {
				blocking = &m.StartOrder
			}
			continue
		}
		if m.RunningSince.After(latest) {
			latest = m.RunningSince
		}
	}
	switch {
	case blocking != nil:
		return &Decision{Reason: ReasonWaitingForAppliance, Message: fmt.Sprintf(
			"vApp %s: waiting for its VMs with startOrder %d to run", a.Name, *blocking)}, time.Time{}
	case before == nil || a.StartDelay <= 0:
		return nil, time.Time{}
	}
	notBefore = latest.Add(a.StartDelay)
	if !now.Before(notBefore) {
		return nil, time.Time{}
	}
	// The message names the deadline, not the time left, so that it does not
	// change (and is not written again) on every pass until then.
	return &Decision{Reason: ReasonWaitingForAppliance, Message: fmt.Sprintf(
		"vApp %s: its VMs with startOrder %d run; waiting startDelay %s, until %s",
		a.Name, *before, a.StartDelay, notBefore.UTC().Format(deadlineFormat))}, notBefore
}

// deadlineFormat prints a deadline to the millisecond.
const deadlineFormat = "2006-01-02T15:04:05.000Z07:00"
