package watchdog

import (
	"fmt"
	"time"

	"github.com/poolkeeper/poolkeeper/internal/liveness"
)

// MinResetBudget is the least time a Plan leaves between the latest moment
// the watchdog can expire and the operator's safe time, for the reset itself:
// the watchdog timer's slack plus the time from its expiry to the host's VMs
// being gone (for a hardware or softdog reset, a CPU reset; for the emulator,
// SIGKILL of the host's QEMU processes, a few milliseconds).
const MinResetBudget = 100 * time.Millisecond

// Plan is how an agent drives its watchdog for a heartbeat timeout T. Every
// duration after "after S" counts from S, the start of the agent's last
// successful Lease renewal; the operator observes that renewal at L >= S and
// counts an Agent-fenced host down at its safe time L + T + T/2.
type Plan struct {
	// HeartbeatTimeout is T.
	HeartbeatTimeout time.Duration
	// Timeout is W, the watchdog's timeout: T/4 rounded down to the
	// watchdog's granularity, and at least one granule.
	Timeout time.Duration
	// Set is the timeout the watchdog runs with: Timeout, unless its driver
	// set another (WithTimeout).
	Set time.Duration
	// PetEvery is how often the agent pets while it may: W/4 (a quarter of
	// the timeout set, when WithTimeout gives a shorter one).
	PetEvery time.Duration
	// PetUntil (after S) is the last moment a pet justified by the renewal
	// at S may reach the watchdog: T - W + W/4. A pet at P <= S + PetUntil
	// expires no later than S + T + W/4; the last one, at most PetEvery
	// earlier, no sooner than S + T, so the watchdog never fires before the
	// agent's own self-fence deadline S + T (the first line).
	PetUntil time.Duration
	// LatestExpiry (after S) bounds when the watchdog expires with no
	// renewal after S: S + T + W/4 + W, which allows for one restart of the
	// timer that no renewal justified (Linux restarts it when the agent's
	// file is closed without disarming, i.e. when the agent dies; or a pet
	// delayed past its check by a stop inside the write).
	LatestExpiry time.Duration
	// SafeAfter (after S, at the earliest) is the operator's safe time:
	// T + T/2, counted from L >= S.
	SafeAfter time.Duration
	// ResetBudget is SafeAfter - LatestExpiry: the time left for the reset
	// (T/2 - 5W/4, at least 3T/16 when W = T/4).
	ResetBudget time.Duration
}

// PlanFor returns the Plan for heartbeat timeout t with a watchdog whose
// timeout is set in steps of granularity (time.Second for a Linux device,
// time.Millisecond for the emulator). It fails when the plan leaves less
// than MinResetBudget for the reset: the watchdog's steps are too coarse
// for t (a device needs t >= 3s); the Plan returned with the error is the
// best the watchdog can do.
//
// The argument, with S, L, T and W as above and P the time a pet reaches
// the watchdog:
//
//   - The agent pets only while it holds the Lease and only at
//     P <= S + PetUntil = S + T - W + W/4, S being its last successful
//     renewal. It pets every W/4, so a healthy agent (renewing every
//     interval <= T/4) keeps the watchdog from expiring, and one that stops
//     renewing has it expire between S + T and S + T + W/4: after its
//     in-process self-fence deadline S + T.
//   - Linux restarts the timer once more when the watchdog file is closed
//     without the magic 'V' (the agent dies or exits), and only before the
//     timer expired; the agent opens the device only once it holds the
//     Lease, so each renewal is followed by at most one such restart. So the
//     watchdog expires by S + T + W/4 + W = S + LatestExpiry at the latest.
//   - The operator's safe time is L + T + T/2 >= S + SafeAfter. The reset
//     therefore has ResetBudget = T/2 - 5W/4 for itself; with W = T/4 that
//     is 3T/16 (T = 60s: W = 15s, pets every 3.75s until S + 48.75s, expiry
//     in [S + 60s, S + 63.75s], at the latest S + 78.75s, 11.25s before the
//     safe time S + 90s).
func PlanFor(t, granularity time.Duration) (Plan, error) {
	if granularity <= 0 {
		granularity = time.Millisecond
	}
	w := max(t/4/granularity*granularity, granularity)
	p := Plan{
		HeartbeatTimeout: t,
		Timeout:          w,
		Set:              w,
		PetEvery:         w / 4,
		PetUntil:         liveness.SelfFenceAfter(t) - w + w/4,
		LatestExpiry:     liveness.SelfFenceAfter(t) + w/4 + w,
		SafeAfter:        liveness.SafeAfter(t),
	}
	p.ResetBudget = p.SafeAfter - p.LatestExpiry
	if p.ResetBudget < MinResetBudget {
		return p, fmt.Errorf("a heartbeat timeout of %s is too short for a watchdog set in steps of %s: "+
			"its %s timeout can expire as late as %s after the last renewal, which leaves %s before the safe time %s "+
			"for the reset (at least %s needed)", t, granularity, w, p.LatestExpiry, p.ResetBudget, p.SafeAfter, MinResetBudget)
	}
	return p, nil
}

// WithTimeout is the Plan for a watchdog whose driver set its timeout to set
// rather than the Timeout asked (drivers round to what their hardware
// counts: whole minutes, even seconds): the pets stop at
// PetUntil = T + W/4 - set after S, so that the last one still expires by
// S + T + W/4 (and no sooner than S + T), and the watchdog expires by
// LatestExpiry = T + W/4 + set at the latest, its one unjustified restart
// included. It fails when no pet can follow a renewal (set > T + W/4) or
// when that leaves less than MinResetBudget before the safe time: such a
// watchdog cannot reset the host in time. The Plan returned with the error
// is what the watchdog would do.
func (p Plan) WithTimeout(set time.Duration) (Plan, error) {
	t, w := p.HeartbeatTimeout, p.Timeout
	p.PetUntil = liveness.SelfFenceAfter(t) + w/4 - set
	p.PetEvery = min(w, set) / 4
	p.LatestExpiry = liveness.SelfFenceAfter(t) + w/4 + set
	p.ResetBudget = p.SafeAfter - p.LatestExpiry
	p.Set = set
	if p.PetUntil < 0 || p.ResetBudget < MinResetBudget {
		return p, fmt.Errorf("the watchdog cannot reset the host in time: its driver set a timeout of %s where %s was asked; for a heartbeat timeout of %s it "+
			"can expire as late as %s after the last renewal, which leaves %s before the safe time %s for the reset "+
			"(at least %s needed)", set, w, t, p.LatestExpiry, p.ResetBudget, p.SafeAfter, MinResetBudget)
	}
	return p, nil
}

// MayPet reports whether a pet justified by the renewal that started at s
// may still reach the watchdog at now, and until when.
func (p Plan) MayPet(s, now time.Time) (ok bool, until time.Time) {
	until = s.Add(p.PetUntil)
	return !now.After(until), until
}

// ExpiresBy is the latest a watchdog running with the plan's Set timeout
// expires after a pet that reached it at at, with no pet after it: at +
// 2·Set, its one unjustified restart included. For a pet at S + PetUntil
// that is S + LatestExpiry.
func (p Plan) ExpiresBy(at time.Time) time.Time { return at.Add(2 * p.Set) }

// FitsSafeTime reports whether a pet that reached the watchdog at at, the
// last renewal having started at s, leaves it expiring at least
// MinResetBudget before the operator's safe time: true of every pet MayPet
// allows when the plan came without an error. A pet that set a new timeout
// is checked by it once the timeout the driver took is known, since the
// bound it was sent within was the one of the timeout asked.
func (p Plan) FitsSafeTime(s, at time.Time) bool {
	return !p.ExpiresBy(at).After(s.Add(p.SafeAfter - MinResetBudget))
}
