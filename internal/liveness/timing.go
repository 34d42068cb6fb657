package liveness

import (
	"time"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
)

const (
	// DefaultHATimeout is the heartbeat timeout with HA enabled, the
	// shorter of the defaults (the API's DefaultHAHeartbeatTimeout): what an
	// agent or the operator assumes when it cannot read a pool.
	DefaultHATimeout = vpoolv1alpha1.DefaultHAHeartbeatTimeout
	// MaxIntervalFraction bounds the agent's heartbeat interval: at most
	// T/MaxIntervalFraction, so a timeout spans at least four heartbeats.
	MaxIntervalFraction = 4
)

// SelfFenceAfter is how long after the start of its last successful renewal
// an agent stops every VM (its watchdog deadline): the heartbeat timeout.
// A heartbeat pause shorter than T minus one interval never self-fences.
func SelfFenceAfter(timeout time.Duration) time.Duration {
	return timeout
}

// SafeGuard is the time the operator waits after a host became stale before
// it counts an Agent-fenced host as down: T/2, which is at least one heartbeat
// interval (at most T/4) plus a margin of T/4 for the watchdog to stop VMs.
func SafeGuard(timeout time.Duration) time.Duration {
	return timeout / 2
}

// SafeAfter is how long after the last renewal the operator observed an
// Agent-fenced host is certainly down: T + T/2.
func SafeAfter(timeout time.Duration) time.Duration {
	return timeout + SafeGuard(timeout)
}

// SuspectAfter is the silence after which a host that is still Live counts as
// stale for the storm guard: T/2, at least two missed heartbeats. Hosts cut
// off together all reach it before the first of them reaches T, so the guard
// sees them together instead of one by one.
func SuspectAfter(timeout time.Duration) time.Duration {
	return timeout / 2
}

// MaxInterval is the longest heartbeat interval an agent may use with timeout.
func MaxInterval(timeout time.Duration) time.Duration {
	return timeout / MaxIntervalFraction
}

// Verdict says whether a host last seen at lastSeen is stale at now, and if
// not, how long until it would be (the exact time to check again).
func Verdict(lastSeen, now time.Time, timeout time.Duration) (stale bool, recheckIn time.Duration) {
	deadline := lastSeen.Add(timeout)
	if !now.Before(deadline) {
		return true, 0
	}
	return false, deadline.Sub(now)
}
