package liveness

import (
	"fmt"
	"time"
)

// Reasons of the survival rule; they end up verbatim in the agent's log and
// in its statefile metrics.
const (
	// SurvivalRenewed: the last renewal justifies the VMs (no outage).
	SurvivalRenewed = "Renewed"
	// SurvivalExempt: the statefile shows more than maxUnhealthyPercent of
	// the pool cut off from the API server, this host among them; the
	// operator's storm guard fences nobody, so the VMs stay.
	SurvivalExempt = "OutageExempt"
	// SurvivalAlone: this host cannot renew, but the statefile shows no
	// majority cut off: it self-fences on its renewal deadline.
	SurvivalAlone = "CutOffAlone"
	// SurvivalNoStatefile: the statefile could not be read: no exemption.
	SurvivalNoStatefile = "StatefileUnreadable"
	// SurvivalGrace: an exemption ended; the host has until its deadline
	// (the last confirmation plus ExemptionGrace) to renew.
	SurvivalGrace = "ExemptionEnded"
)

// CutOffAfter is how long a host must have gone without a successful
// renewal, by its own clock, before its statefile slot counts it as cut off
// from the API server: SuspectAfter (T/2), the silence after which the
// operator's storm guard counts it stale.
func CutOffAfter(timeout time.Duration) time.Duration { return SuspectAfter(timeout) }

// ExemptionGrace is B, the bound on the time an agent keeps its VMs after
// the start of the last statefile read that confirmed its exemption: T/2.
// A host whose peers renew again renews at once when it reads so (it is
// then no longer exempt) and has B to succeed.
//
// The bound, with G the start of the last confirming read and C the first
// time the operator saw the storm guard lifted after it held (it counts
// every host's silence afresh from C): the agent self-fences by G + B and
// its watchdog resets the host by G + B + 5W/4 = G + 13T/16 (W = T/4); the
// operator counts the host fenced no sooner than C + T + T/2. A read
// confirms only while more than maxUnhealthyPercent of the pool has gone
// T/2 without a renewal, which the operator sees as a storm (or has seen
// lifted, at C) no later than about T/2 after the agents do; the outage
// model test (internal/fencing) checks the whole chain, and fails for B = T.
func ExemptionGrace(timeout time.Duration) time.Duration { return timeout / 2 }

// PeerSlot is what one other host's statefile slot says, as the reader saw it.
type PeerSlot struct {
	// Host names the writer.
	Host string
	// Known is true when the slot is intact and its counter moved within the
	// reader's freshness window: a torn, stale or never-moving slot is
	// unknown and never counts as cut off.
	Known bool
	// Reached is true when the writer's last renewal attempt reached the API
	// server (it succeeded, or the server answered).
	Reached bool
	// SinceOK is the writer's own view (its monotonic clock) of the time since
	// the start of its last successful renewal, when it wrote the slot.
	SinceOK time.Duration
}

// CutOff reports whether the slot counts its writer as cut off from the API
// server for a pool timeout t.
func (p PeerSlot) CutOff(t time.Duration) bool {
	return p.Known && !p.Reached && p.SinceOK >= CutOffAfter(t)
}

// SurvivalInput is what an agent knows when it decides whether it may keep
// its VMs: its own renewals, the pool's settings it last read, and the
// statefile as last read. Every time is on the agent's monotonic clock.
type SurvivalInput struct {
	Now time.Time
	// LastOK is S, the start of the last successful renewal.
	LastOK time.Time
	// Reached is true when this agent's last renewal attempt reached the API
	// server.
	Reached bool
	// Timeout is T, the pool's heartbeat timeout in force.
	Timeout time.Duration
	// PoolHosts is the number of the pool's hosts the agent last read (the
	// Pool's status.hosts.total); the statefile's slots count if more.
	PoolHosts int
	// MaxUnhealthyPercent is the pool's spec.fencing.maxUnhealthyPercent.
	MaxUnhealthyPercent int32
	// HeartbeatSR is true when the pool has a heartbeat SR.
	HeartbeatSR bool
	// ReadOK is true when the statefile was read; ReadAt is when that read
	// started, and Peers what it showed of the other hosts.
	ReadOK bool
	ReadAt time.Time
	Peers  []PeerSlot
	// Confirmed is the start of the last read that confirmed an exemption
	// (zero if none): Survive's previous Confirmed.
	Confirmed time.Time
}

// Survival is the rule's verdict.
type Survival struct {
	// Deadline is when the agent self-fences unless it renews or a later
	// read confirms an exemption: max(S + T, Confirmed + ExemptionGrace).
	Deadline time.Time
	// Confirmed is the start of the last confirming read, for the next call.
	Confirmed time.Time
	// Exempt is true when this read confirmed the exemption.
	Exempt bool
	// CutOff and Of are the hosts counted cut off, this one included, and
	// the pool's hosts they are counted against.
	CutOff, Of int
	Reason     string
	Message    string
}

// Survive is the agent's survival rule. An agent that cannot renew keeps
// its VMs, and keeps petting its watchdog, only while the statefile shows
// that the hosts cut off from the API server are more than
// maxUnhealthyPercent of the pool, itself among them: exactly when the
// operator's storm guard fences nobody. A host cut off alone or with a
// minority, or that cannot read the statefile, self-fences at S + T as
// without one. A read confirms only if it started before the deadline in
// force (a late read never revives a self-fenced host), and each
// confirmation lasts ExemptionGrace from the start of its read.
func Survive(in SurvivalInput) Survival {
	t := in.Timeout
	out := Survival{Deadline: in.LastOK.Add(SelfFenceAfter(t)), Confirmed: in.Confirmed, Reason: SurvivalRenewed,
		Message: "the last renewal justifies the VMs"}
	if !in.Confirmed.IsZero() {
		out.Deadline = later(out.Deadline, in.Confirmed.Add(ExemptionGrace(t)))
	}
	if !in.HeartbeatSR {
		return out
	}
	if !in.ReadOK {
		out.Reason, out.Message = SurvivalNoStatefile, "the statefile could not be read: no exemption"
		return out.grace(in)
	}
	self := PeerSlot{Known: true, Reached: in.Reached, SinceOK: in.Now.Sub(in.LastOK)}
	out.Of = max(in.PoolHosts, len(in.Peers)+1)
	if self.CutOff(t) {
		out.CutOff = 1
	}
	for _, p := range in.Peers {
		if p.CutOff(t) {
			out.CutOff++
		}
	}
	majority := out.CutOff*100 > int(in.MaxUnhealthyPercent)*out.Of
	switch {
	case !self.CutOff(t):
		return out
	case !majority:
		out.Reason, out.Message = SurvivalAlone, fmt.Sprintf("%d of %d hosts cut off from the API server "+
			"(not more than maxUnhealthyPercent %d%%): the operator may fence this host, so it self-fences on its deadline",
			out.CutOff, out.Of, in.MaxUnhealthyPercent)
		return out.grace(in)
	case !in.ReadAt.Before(out.Deadline):
		out.Reason, out.Message = SurvivalAlone, "the statefile read started after the deadline: too late to be exempt"
		return out
	}
	out.Exempt, out.Confirmed = true, in.ReadAt
	out.Deadline = later(out.Deadline, in.ReadAt.Add(ExemptionGrace(t)))
	out.Reason, out.Message = SurvivalExempt, fmt.Sprintf("%d of %d hosts cut off from the API server (over maxUnhealthyPercent %d%%): "+
		"the operator fences nobody, so the VMs stay", out.CutOff, out.Of, in.MaxUnhealthyPercent)
	return out
}

// grace says so when an earlier exemption still carries the deadline.
func (s Survival) grace(in SurvivalInput) Survival {
	if !in.Confirmed.IsZero() && s.Deadline.After(in.LastOK.Add(SelfFenceAfter(in.Timeout))) {
		s.Message += fmt.Sprintf("; the exemption confirmed at %s ended: renew by %s or self-fence",
			in.Confirmed.Format(time.RFC3339Nano), s.Deadline.Format(time.RFC3339Nano))
		s.Reason = SurvivalGrace
	}
	return s
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
