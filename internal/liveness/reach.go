package liveness

import "time"

// Reach follows whether the operator reaches the API server, from its
// probes: the first probe that fails begins an outage; the first that
// succeeds after one ends it. It is a pure record of observations: the
// caller gives every probe's outcome and the time it was sent.
type Reach struct {
	down      bool
	downSince time.Time
}

// ReachChange is what a probe changed.
type ReachChange struct {
	// Began: the probe began an outage. Ended: it ended one that began at
	// Since, so the operator's view of every Lease may be stale until now.
	Began, Ended bool
	Since        time.Time
}

// Probe records a probe sent at sent that reached the API server (ok) or not.
func (r *Reach) Probe(sent time.Time, ok bool) ReachChange {
	switch {
	case !ok && !r.down:
		r.down, r.downSince = true, sent
		return ReachChange{Began: true, Since: sent}
	case ok && r.down:
		r.down = false
		return ReachChange{Ended: true, Since: r.downSince}
	}
	return ReachChange{}
}
