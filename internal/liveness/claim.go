package liveness

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// One host has at most one agent running VMs. The agent that holds the
// host's heartbeat Lease (holderIdentity "<host>/<bootID>") is the one; an
// agent of another boot that finds the Lease held waits, runs nothing, and
// announces itself in a standby Lease of its own ("<host>.<suffix>",
// labelled vpool.poolkeeper.io/standby) so the operator can say so. It takes
// the Lease over only once the holder is certainly gone:
//
//   - the Host records the holder's boot as fenced (the operator counted it
//     down), or
//   - the Lease has not changed, on the waiting agent's own clock, for the
//     holder's declared self-fence deadline plus SafeGuard: by then the
//     holder has stopped its VMs (its deadline runs from the start of its
//     last renewal, which is before this agent first read that renewal), by
//     the same argument that makes the operator's safe time safe.
//
// Two waiting agents race through the API server's optimistic concurrency:
// one update wins, the other reads the winner's renewal and waits again. A
// holder that finds the Lease taken from it (it was silent past its own
// deadline, so it has self-fenced already) stops every VM and exits.

// ClaimInput is what an agent knows when it decides whether to hold its
// host's heartbeat Lease.
type ClaimInput struct {
	// Now is the agent's clock.
	Now time.Time
	// Mine is this boot's holder identity; Holder the Lease's ("" for none).
	Mine, Holder string
	// Since is when this agent first read the Lease at its current
	// resourceVersion, on its own clock.
	Since time.Time
	// Declared is the holder's declared self-fence deadline (the Lease's
	// leaseDurationSeconds); Timeout the pool's heartbeat timeout.
	Declared, Timeout time.Duration
	// HolderFenced is true when the Host records the holder's boot as fenced.
	HolderFenced bool
}

// Claim is the decision: take (or keep) the Lease, or wait.
type Claim struct {
	Take bool
	// Message says why, for the agent's log.
	Message string
	// TakeAt is when the agent may take the Lease if it stays unchanged
	// (zero when Take, or when only the holder's fence can free it).
	TakeAt time.Time
}

// DecideClaim decides whether an agent may hold its host's Lease now.
func DecideClaim(in ClaimInput) Claim {
	switch {
	case in.Holder == "" || in.Holder == in.Mine:
		return Claim{Take: true, Message: "this boot holds the heartbeat Lease"}
	case in.HolderFenced:
		return Claim{Take: true, Message: fmt.Sprintf("the Lease holder %s is fenced: taking the Lease over", in.Holder)}
	}
	takeAt := in.Since.Add(max(in.Declared, SelfFenceAfter(in.Timeout)) + SafeGuard(in.Timeout))
	if !in.Now.Before(takeAt) {
		return Claim{Take: true, Message: fmt.Sprintf("the Lease holder %s has not renewed since %s: it has self-fenced; taking the Lease over",
			in.Holder, in.Since.UTC().Format(time.RFC3339))}
	}
	return Claim{TakeAt: takeAt, Message: fmt.Sprintf("another agent (%s) holds this host's heartbeat Lease: this one runs no VM "+
		"and waits; it takes over only if that agent stops renewing (not before %s)", in.Holder, takeAt.UTC().Format(time.RFC3339))}
}

// BootOf is the boot ID in a holder identity "<host>/<bootID>".
func BootOf(holder string) string {
	_, boot, _ := strings.Cut(holder, "/")
	return boot
}

// Contender is an agent of another boot that waits to run a host, as the
// operator saw its standby Lease.
type Contender struct {
	// BootID is the waiting agent's boot.
	BootID string
	// LastSeen is when the operator last saw its standby Lease change (or
	// first saw it).
	LastSeen time.Time
}

// Conflict is the operator's view of a host with more than one agent.
type Conflict struct {
	// Waiting are the contenders seen within the heartbeat timeout, by boot ID.
	Waiting []Contender
	// Gone are contenders silent for the timeout: their standby Leases can go.
	Gone []Contender
	// RecheckIn is when the first waiting contender would be gone (zero: none).
	RecheckIn time.Duration
}

// AgentConflict sorts the contenders of a host whose Lease holder runs boot
// holderBoot: a contender is waiting while its standby Lease changed within
// timeout of now, on the operator's clock.
func AgentConflict(holderBoot string, contenders []Contender, now time.Time, timeout time.Duration) Conflict {
	var c Conflict
	for _, x := range contenders {
		if x.BootID == holderBoot {
			c.Gone = append(c.Gone, x) // the holder's own, from before it took over
			continue
		}
		stale, recheck := Verdict(x.LastSeen, now, timeout)
		if stale {
			c.Gone = append(c.Gone, x)
			continue
		}
		c.Waiting = append(c.Waiting, x)
		if c.RecheckIn == 0 || recheck < c.RecheckIn {
			c.RecheckIn = recheck
		}
	}
	slices.SortFunc(c.Waiting, func(a, b Contender) int { return strings.Compare(a.BootID, b.BootID) })
	return c
}
