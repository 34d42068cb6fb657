package liveness

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

func TestSurvive(t *testing.T) {
	const T = 20 * time.Second
	s := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	cut := PeerSlot{Known: true, Reached: false, SinceOK: 12 * time.Second}
	fine := PeerSlot{Known: true, Reached: true, SinceOK: 2 * time.Second}
	young := PeerSlot{Known: true, Reached: false, SinceOK: 5 * time.Second} // missed one renewal only
	unknown := PeerSlot{Known: false, Reached: false, SinceOK: time.Hour}    // torn or stale slot
	base := func(now time.Duration, peers ...PeerSlot) SurvivalInput {
		return SurvivalInput{Now: s.Add(now), LastOK: s, Timeout: T, PoolHosts: 3, MaxUnhealthyPercent: 50,
			HeartbeatSR: true, ReadOK: true, ReadAt: s.Add(now), Peers: peers}
	}
	cases := map[string]struct {
		in       SurvivalInput
		exempt   bool
		deadline time.Duration // after S
		reason   string
	}{
		"no heartbeat SR: the deadline of today": {
			in:       func() SurvivalInput { i := base(15*time.Second, cut, cut); i.HeartbeatSR = false; return i }(),
			deadline: T, reason: SurvivalRenewed},
		"renewing: nothing to decide": {
			in:       func() SurvivalInput { i := base(5*time.Second, cut, cut); i.Reached = true; return i }(),
			deadline: T, reason: SurvivalRenewed},
		"the whole pool cut off: exempt for B from the read": {
			in: base(15*time.Second, cut, cut), exempt: true, deadline: 15*time.Second + T/2, reason: SurvivalExempt},
		"two of three cut off, this one included: exempt": {
			in: base(15*time.Second, cut, fine), exempt: true, deadline: 15*time.Second + T/2, reason: SurvivalExempt},
		"cut off alone: self-fences at S + T": {
			in: base(15*time.Second, fine, fine), deadline: T, reason: SurvivalAlone},
		"peers that missed one renewal only do not count yet": {
			in: base(15*time.Second, young, fine), deadline: T, reason: SurvivalAlone},
		"a torn or stale slot never counts as cut off": {
			in: base(15*time.Second, unknown, unknown), deadline: T, reason: SurvivalAlone},
		"the statefile unreadable: self-fences at S + T": {
			in:       func() SurvivalInput { i := base(15*time.Second, cut, cut); i.ReadOK = false; return i }(),
			deadline: T, reason: SurvivalNoStatefile},
		"exactly maxUnhealthyPercent is not more: 2 of 4": {
			in:       func() SurvivalInput { i := base(15*time.Second, cut, fine, fine); i.PoolHosts = 4; return i }(),
			deadline: T, reason: SurvivalAlone},
		"hosts without a slot count against the exemption (status.hosts.total)": {
			in:       func() SurvivalInput { i := base(15*time.Second, cut); i.PoolHosts = 4; return i }(),
			deadline: T, reason: SurvivalAlone},
		"a read started after the deadline revives nothing": {
			in: base(T, cut, cut), deadline: T, reason: SurvivalAlone},
		"the exemption ended: the last confirmation plus B": {
			in: func() SurvivalInput {
				i := base(30*time.Second, fine, fine)
				i.Confirmed = s.Add(25 * time.Second)
				return i
			}(),
			deadline: 25*time.Second + T/2, reason: SurvivalGrace},
		"the exemption ended with the statefile lost: the same bound": {
			in: func() SurvivalInput {
				i := base(30*time.Second, cut, cut)
				i.ReadOK, i.Confirmed = false, s.Add(25*time.Second)
				return i
			}(),
			deadline: 25*time.Second + T/2, reason: SurvivalGrace},
		"a confirmation keeps extending the deadline while the outage lasts": {
			in: func() SurvivalInput {
				i := base(2*time.Minute, cut, cut)
				i.Confirmed = s.Add(112 * time.Second)
				return i
			}(),
			exempt: true, deadline: 2*time.Minute + T/2, reason: SurvivalExempt},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			got := Survive(c.in)
			g.Expect(got.Exempt).To(Equal(c.exempt), got.Message)
			g.Expect(got.Deadline).To(Equal(s.Add(c.deadline)), got.Message)
			g.Expect(got.Reason).To(Equal(c.reason), got.Message)
			if c.exempt {
				g.Expect(got.Confirmed).To(Equal(c.in.ReadAt))
			}
		})
	}
}

func TestRecountCountsAfreshAfterTheGuardHeld(t *testing.T) {
	g := NewWithT(t)
	t0 := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	r := NewRecount()
	from, holding := r.From("ns/p")
	g.Expect(from.IsZero()).To(BeTrue())
	g.Expect(holding).To(BeFalse())

	g.Expect(r.Note("ns/p", t0, false, 0)).To(Equal(RecountChange{}), "a guard that never held changes nothing")
	g.Expect(r.Note("ns/p", t0.Add(10*time.Second), true, 2).Began).To(BeTrue())
	g.Expect(r.Note("ns/p", t0.Add(20*time.Second), true, 3)).To(Equal(RecountChange{}))
	lifted := r.Note("ns/p", t0.Add(45*time.Second), false, 0)
	g.Expect(lifted).To(Equal(RecountChange{Lifted: true, Since: t0.Add(45 * time.Second), HeldFor: 35 * time.Second, Peak: 3}))
	from, holding = r.From("ns/p")
	g.Expect(from).To(Equal(t0.Add(45 * time.Second)))
	g.Expect(holding).To(BeFalse())

	stale := Observation{Known: true, LastSeen: t0, LastRenewal: t0}
	g.Expect(stale.Afresh(from).LastSeen).To(Equal(t0.Add(45*time.Second)), "silence counts from the lift")
	g.Expect(stale.Afresh(from).LastRenewal).To(Equal(t0), "counting afresh is no evidence of life")
	later := Observation{Known: true, LastSeen: t0.Add(time.Minute)}
	g.Expect(later.Afresh(from).LastSeen).To(Equal(t0.Add(time.Minute)), "a later renewal stands")

	other, _ := r.From("ns/q")
	g.Expect(other.IsZero()).To(BeTrue(), "another pool is not recounted")
	r.Outage(t0.Add(2 * time.Minute))
	other, _ = r.From("ns/q")
	g.Expect(other).To(Equal(t0.Add(2*time.Minute)), "the operator's own outage recounts every pool")
}
