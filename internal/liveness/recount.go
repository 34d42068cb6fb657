package liveness

import (
	"sync"
	"time"

	"k8s.io/utils/clock"
)

// Recount records, per pool, from when the operator counts its hosts'
// silence afresh, as after a restart: from the first time it saw the storm
// guard lifted after it had held, and from the end of any stretch in which
// the operator itself could not reach the API server. A host that rode out
// an outage is then never counted fenced on a safe time computed from a
// renewal before it: its silence counts from after the outage.
//
// The guard's verdict it is given is the raw one (silence counted from the
// last renewal observed), so counting afresh never lifts the guard itself.
type Recount struct {
	mu    sync.Mutex
	pools map[string]*recount
	// outageEnd is the end of the operator's last outage, for every pool;
	// cutSince the start of the one going on (zero: none).
	outageEnd, cutSince time.Time
	// The operator's own run (Alive): whether a watch ticks, its last tick
	// by run (the process's own monotonic clock, whatever clock decisions
	// use), and the stalls found since the watch last took them.
	run      clock.PassiveClock
	watching bool
	alive    time.Time
	stalls   []Stall
}

// StallAfter is how long the operator may go without running (a watch
// that ticks every fraction of a second did not) before that counts as a
// stall: SIGSTOP, a paused VM, a starved CPU. A stall of d leaves its
// cache d behind the renewals it missed, which the watches deliver only
// after the resume, while the timers due meanwhile fire at once; a silence
// it judged from that cache would be its own. A stall shorter than this
// is covered by the timeouts' margins for heartbeat timeouts from 2s: with
// a renewal every T/4 at most, d + T/4 < T.
const StallAfter = time.Second

// Stall is a stretch in which the operator did not run, found at End.
type Stall struct {
	End time.Time
	For time.Duration
}

type recount struct {
	holding   bool
	heldSince time.Time
	from      time.Time
	peak      int
}

// RecountChange says what a Note changed, for events and metrics.
type RecountChange struct {
	// Began is true when the guard began to hold; Lifted when it was seen
	// lifted after holding (the count starts again at Since), after holding
	// for HeldFor with at most Peak hosts stale at once.
	Began, Lifted bool
	Since         time.Time
	HeldFor       time.Duration
	Peak          int
}

// NewRecount returns an empty Recount.
func NewRecount() *Recount { return &Recount{pools: map[string]*recount{}, run: clock.RealClock{}} }

// SetRunClock sets the clock a stall is measured by (tests: a fake one;
// the real clock by default, even under an injected decision clock, whose
// steps are no stall).
func (r *Recount) SetRunClock(c clock.PassiveClock) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.run = c
}

// Note records the storm guard's verdict for pool at now, with stale hosts.
func (r *Recount) Note(pool string, now time.Time, held bool, stale int) RecountChange {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.pools[pool]
	if p == nil {
		p = &recount{}
		r.pools[pool] = p
	}
	switch {
	case held && !p.holding:
		p.holding, p.heldSince, p.peak = true, now, stale
		return RecountChange{Began: true, Since: now, Peak: stale}
	case held:
		p.peak = max(p.peak, stale)
	case p.holding:
		p.holding = false
		if now.After(p.from) {
			p.from = now
		}
		return RecountChange{Lifted: true, Since: now, HeldFor: now.Sub(p.heldSince), Peak: p.peak}
	}
	return RecountChange{}
}

// Cut records that the operator cannot reach the API server since since:
// until Outage records its end, no host's silence counts (CutOff), since the
// operator's cache cannot see the renewals the API server may be taking.
func (r *Recount) Cut(since time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cutSince.IsZero() {
		r.cutSince = since
	}
}

// CutOff reports whether the operator is cut off from the API server (Cut
// without an Outage after it), and since when.
func (r *Recount) CutOff() (since time.Time, cut bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cutSince, !r.cutSince.IsZero()
}

// Outage records that the operator could not reach the API server until end.
func (r *Recount) Outage(end time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if end.After(r.outageEnd) {
		r.outageEnd = end
	}
	r.cutSince = time.Time{}
}

// From is when the silence of pool's hosts counts from at the earliest
// (zero: no recount), and whether the guard holds now as last noted.
func (r *Recount) From(pool string) (from time.Time, holding bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	from = r.outageEnd
	if p := r.pools[pool]; p != nil {
		holding = p.holding
		if p.from.After(from) {
			from = p.from
		}
	}
	return from, holding
}

// Afresh is o with its silence counted from no earlier than from.
func (o Observation) Afresh(from time.Time) Observation {
	if from.After(o.LastSeen) {
		o.LastSeen = from
	}
	return o
}

// Watch starts the operator's watch of its own run: from then on, Alive
// finds stalls.
func (r *Recount) Watch() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.watching, r.alive = true, r.run.Now()
}

// Alive records that the operator runs, now being the time its decisions
// use. It is called by the watch of its own run, every fraction of a
// second, and before every judgement of a host's silence (heartbeatOf), so
// that the first of them to run after a stall finds it, whichever the
// scheduler resumes first. When the last call is more than StallAfter
// before this one, by the run clock, the operator did not run meanwhile:
// every pool's silence counts afresh from now, as after an outage, and the
// stall is returned (and kept for Stalls).
func (r *Recount) Alive(now time.Time) (stalled time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.watching {
		return 0
	}
	ran := r.run.Now()
	if gap := ran.Sub(r.alive); gap > StallAfter {
		stalled = gap
		if now.After(r.outageEnd) {
			r.outageEnd = now
		}
		r.stalls = append(r.stalls, Stall{End: now, For: gap})
	}
	if ran.After(r.alive) {
		r.alive = ran
	}
	return stalled
}

// Stalls returns the stalls found since the last call, and forgets them.
func (r *Recount) Stalls() []Stall {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.stalls
	r.stalls = nil
	return out
}
