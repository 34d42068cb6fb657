package fencing

import (
	"fmt"
	"strings"
	"time"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/internal/liveness"
)

// AgentEvidence is the status.fencing.evidence of an Agent-fenced host
// counted fenced at in.Now: from when its silence counts (X), when its agent
// self-fences (X + T, or the longer deadline it declared in its Lease), what
// resets the host if the agent process cannot stop its VMs, and the safe
// time X + T + T/2. Only a watchdog the Host reports for the boot counted
// fenced (in.Fencing.BootID) is cited: without one, the safe time rests on
// the agent process alone.
func AgentEvidence(in HostInput) string {
	hb := in.Heartbeat
	selfFence := selfFenceBy(hb, in.Timeout)
	deadline := selfFence.Sub(hb.LastSeen)
	safeAt := SafeAt(hb, in.Timeout)
	declared := ""
	if deadline > liveness.SelfFenceAfter(in.Timeout) {
		declared = ", the deadline it declared in its Lease"
	}
	return strings.Join([]string{
		silenceFrom(hb),
		fmt.Sprintf("the agent self-fences (stops every VM) at %s (X + %s%s)", stamp(selfFence), deadline, declared),
		watchdogClause(in, selfFence, safeAt),
		fmt.Sprintf("safe at %s (X + %s + %s), counted fenced at %s", stamp(safeAt), deadline,
			liveness.SafeGuard(in.Timeout), stamp(in.Now)),
	}, "; ")
}

// silenceFrom says what X, the start of the silence the safe time counts
// from, is.
func silenceFrom(hb liveness.Observation) string {
	switch {
	case hb.LastRenewal.IsZero():
		return fmt.Sprintf("no lease renewal observed since X = %s (when this operator started or first saw the lease)",
			stamp(hb.LastSeen))
	case hb.LastSeen.After(hb.LastRenewal):
		return fmt.Sprintf("silence counted afresh from X = %s after an outage (the lease was last renewed at %s)",
			stamp(hb.LastSeen), stamp(hb.LastRenewal))
	default:
		return fmt.Sprintf("lease last renewed at X = %s (on the operator's clock)", stamp(hb.LastSeen))
	}
}

// watchdogClause says what resets the host after the agent's self-fence
// deadline: the watchdog armed for the boot counted fenced, or nothing.
func watchdogClause(in HostInput, selfFence, safeAt time.Time) string {
	const alone = "the safe time rests on the agent process alone"
	boot := ""
	if in.Fencing != nil {
		boot = in.Fencing.BootID
	}
	wd := in.Watchdog
	switch {
	case wd == nil:
		return "the host reports no watchdog: " + alone
	case boot == "":
		return fmt.Sprintf("no boot was recorded when the fence began, so the watchdog reported for boot %s is not cited: %s",
			wd.BootID, alone)
	case wd.BootID != boot:
		return fmt.Sprintf("the host reports a watchdog for boot %s only, not for boot %s, the one counted fenced: %s",
			wd.BootID, boot, alone)
	case wd.Kind == vpoolv1alpha1.WatchdogNone || wd.Timeout == nil || wd.Timeout.Duration <= 0:
		return fmt.Sprintf("its agent armed no watchdog for boot %s (--watchdog none): %s", boot, alone)
	}
	// The pets stop so that the last expires by the self-fence plus a
	// quarter of the W the agent asked (T/4, at least a second for a
	// device); with one unjustified restart of the W its driver set
	// (watchdog.Plan.WithTimeout), the host is reset by W/4 of the one asked
	// plus W after the self-fence at the latest: 5W/4 when they are one.
	w, asked := wd.Timeout.Duration, in.Timeout/4
	if wd.Kind == vpoolv1alpha1.WatchdogDevice && asked < time.Second {
		asked = time.Second
	}
	reset, bound := selfFence.Add(asked/4+w), "5W/4"
	if w != asked {
		bound = fmt.Sprintf("%s/4 + W", asked)
	}
	what := "kernel watchdog"
	if wd.Kind == vpoolv1alpha1.WatchdogEmulated {
		what = "emulated watchdog"
	}
	armed := fmt.Sprintf("%s %s (timeout %s, boot %s)", what, wd.Device, w, boot)
	by := fmt.Sprintf("resets the host by %s at the latest (X + %s + %s)", stamp(reset), selfFence.Sub(in.Heartbeat.LastSeen), bound)
	if reset.After(safeAt) {
		return fmt.Sprintf("its %s %s, %s after the safe time: until then %s", armed, by, reset.Sub(safeAt), alone)
	}
	return fmt.Sprintf("the safe time rests on its %s, which %s, %s before the safe time", armed, by, safeAt.Sub(reset))
}

// stamp formats t in UTC to the millisecond: watchdog timeouts are fractions
// of the heartbeat timeout.
func stamp(t time.Time) string {
	return t.UTC().Round(time.Millisecond).Format(time.RFC3339Nano)
}
