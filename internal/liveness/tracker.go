package liveness

import (
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
)

// Observation is what the operator has seen of one host's heartbeat Lease.
type Observation struct {
	// Known is true once the Lease has been seen at all.
	Known bool
	// LastSeen is the start of the current silence: the last renewal observed,
	// or when this process first saw the Lease (or started) if none was.
	LastSeen time.Time
	// LastRenewal is when this process last saw the Lease change; zero if it
	// has not seen it change since it started. Only a renewal is evidence
	// that the host is alive.
	LastRenewal time.Time
	// ResourceVersion is the Lease's resourceVersion at LastSeen.
	ResourceVersion string
	// Declared is the self-fence deadline the agent declared in the Lease
	// (spec.leaseDurationSeconds); zero if none.
	Declared time.Duration
}

// Renewed reports whether a renewal was observed strictly after t.
func (o Observation) Renewed(after time.Time) bool {
	return !o.LastRenewal.IsZero() && o.LastRenewal.After(after)
}

// Fresh reports whether a renewal was observed within timeout of now.
func (o Observation) Fresh(now time.Time, timeout time.Duration) bool {
	if o.LastRenewal.IsZero() {
		return false
	}
	stale, _ := Verdict(o.LastRenewal, now, timeout)
	return !stale
}

type entry struct {
	rv          string
	declared    time.Duration
	firstSeen   time.Time
	lastRenewal time.Time
}

// Tracker records Lease renewals on the operator's clock. It is safe for
// concurrent use. A Lease's first sighting is not a renewal: after a restart
// the operator waits a full timeout of observed silence before a host is
// stale, and needs a real renewal before a non-Live host counts as alive.
type Tracker struct {
	clock   clock.PassiveClock
	started time.Time

	mu      sync.RWMutex
	entries map[types.NamespacedName]*entry
	recount *Recount
}

// NewTracker returns an empty tracker; its start time is now on c.
func NewTracker(c clock.PassiveClock) *Tracker {
	return &Tracker{clock: c, started: c.Now(), entries: map[types.NamespacedName]*entry{}, recount: NewRecount()}
}

// Recount is the tracker's record of when each pool's silence counts afresh.
func (t *Tracker) Recount() *Recount { return t.recount }

// Observe records that the Lease key was seen at resourceVersion rv now,
// declaring a self-fence deadline of declared. It reports whether that is a
// renewal (a change since the last observation).
func (t *Tracker) Observe(key types.NamespacedName, rv string, declared time.Duration) (renewed bool) {
	now := t.clock.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.entries[key]
	if !ok {
		t.entries[key] = &entry{rv: rv, firstSeen: now, declared: declared}
		return false
	}
	// The longest deadline ever declared counts: an agent cut off before it
	// learnt of a shorter timeout still runs on the longer one.
	e.declared = max(e.declared, declared)
	if e.rv == rv {
		return false
	}
	e.rv = rv
	e.lastRenewal = now
	return true
}

// Get returns the observation of key. A Lease never seen is silent since the
// tracker started.
func (t *Tracker) Get(key types.NamespacedName) Observation {
	t.mu.RLock()
	defer t.mu.RUnlock()
	e, ok := t.entries[key]
	if !ok {
		return Observation{LastSeen: t.started}
	}
	o := Observation{Known: true, LastSeen: e.firstSeen, LastRenewal: e.lastRenewal, ResourceVersion: e.rv, Declared: e.declared}
	if e.lastRenewal.After(e.firstSeen) {
		o.LastSeen = e.lastRenewal
	}
	return o
}

// Forget drops key, for a Host that no longer exists.
func (t *Tracker) Forget(key types.NamespacedName) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.entries, key)
}
