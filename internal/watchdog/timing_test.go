package watchdog

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

func TestPlanFor(t *testing.T) {
	const ms, s = time.Millisecond, time.Second
	cases := []struct {
		name                                    string
		t, granularity                          time.Duration
		timeout, petEvery, petUntil, latest, rb time.Duration
		fails                                   bool
	}{
		{name: "HA default, device", t: 60 * s, granularity: s,
			timeout: 15 * s, petEvery: 3750 * ms, petUntil: 48750 * ms, latest: 78750 * ms, rb: 11250 * ms},
		{name: "HA off default, device", t: 600 * s, granularity: s,
			timeout: 150 * s, petEvery: 37500 * ms, petUntil: 487500 * ms, latest: 787500 * ms, rb: 112500 * ms},
		{name: "T/4 not whole seconds: rounded down", t: 10 * s, granularity: s,
			timeout: 2 * s, petEvery: 500 * ms, petUntil: 8500 * ms, latest: 12500 * ms, rb: 2500 * ms},
		{name: "shortest T a device serves", t: 3 * s, granularity: s,
			timeout: s, petEvery: 250 * ms, petUntil: 2250 * ms, latest: 4250 * ms, rb: 250 * ms},
		{name: "T = 2s is too short for whole seconds", t: 2 * s, granularity: s,
			timeout: s, petEvery: 250 * ms, petUntil: 1250 * ms, latest: 3250 * ms, rb: -250 * ms, fails: true},
		{name: "API minimum T = 1s, device: at least one second", t: s, granularity: s,
			timeout: s, petEvery: 250 * ms, petUntil: 250 * ms, latest: 2250 * ms, rb: -750 * ms, fails: true},
		{name: "API minimum T = 1s, emulator", t: s, granularity: ms,
			timeout: 250 * ms, petEvery: 62500 * time.Microsecond, petUntil: 812500 * time.Microsecond,
			latest: 1312500 * time.Microsecond, rb: 187500 * time.Microsecond},
		{name: "HA default, emulator", t: 60 * s, granularity: ms,
			timeout: 15 * s, petEvery: 3750 * ms, petUntil: 48750 * ms, latest: 78750 * ms, rb: 11250 * ms},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := NewWithT(t)
			p, err := PlanFor(c.t, c.granularity)
			if c.fails {
				g.Expect(err).To(MatchError(ContainSubstring("too short")))
			} else {
				g.Expect(err).NotTo(HaveOccurred())
			}
			g.Expect(p.Timeout).To(Equal(c.timeout), "W")
			g.Expect(p.PetEvery).To(Equal(c.petEvery), "pet period")
			g.Expect(p.PetUntil).To(Equal(c.petUntil), "last pet after S")
			g.Expect(p.LatestExpiry).To(Equal(c.latest), "latest expiry after S")
			g.Expect(p.SafeAfter).To(Equal(c.t+c.t/2), "the operator's safe time after L")
			g.Expect(p.ResetBudget).To(Equal(c.rb), "left for the reset")
			// The watchdog never fires before the agent's own self-fence
			// deadline S+T: the last pet is at most PetEvery before PetUntil.
			g.Expect(p.PetUntil - p.PetEvery + p.Timeout).To(BeNumerically(">=", c.t))
			if !c.fails {
				g.Expect(p.LatestExpiry + p.ResetBudget).To(Equal(p.SafeAfter))
				g.Expect(p.ResetBudget).To(BeNumerically(">=", MinResetBudget))
			}
		})
	}
}

func TestMayPet(t *testing.T) {
	g := NewWithT(t)
	p, err := PlanFor(60*time.Second, time.Second)
	g.Expect(err).NotTo(HaveOccurred())
	s := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	ok, until := p.MayPet(s, s.Add(time.Second))
	g.Expect(ok).To(BeTrue())
	g.Expect(until).To(Equal(s.Add(48750 * time.Millisecond)))
	ok, _ = p.MayPet(s, s.Add(48750*time.Millisecond))
	g.Expect(ok).To(BeTrue(), "up to the bound itself")
	ok, _ = p.MayPet(s, s.Add(48751*time.Millisecond))
	g.Expect(ok).To(BeFalse(), "a resumed agent may not pet on an old renewal")
}

// A watchdog whose driver set another timeout than the one asked gets a plan
// of its own: the pets stop earlier (a longer timeout) or later (a shorter
// one) so that it still never fires before S + T and expires by
// S + T + W/4 + set at the latest; one that cannot reset the host before the
// safe time is refused.
func TestPlanWithTimeout(t *testing.T) {
	const ms, s = time.Millisecond, time.Second
	cases := []struct {
		name                 string
		t, set               time.Duration
		petUntil, latest, rb time.Duration
		fails                bool
	}{
		{name: "as asked", t: 60 * s, set: 15 * s, petUntil: 48750 * ms, latest: 78750 * ms, rb: 11250 * ms},
		{name: "rounded up to even seconds", t: 60 * s, set: 16 * s, petUntil: 47750 * ms, latest: 79750 * ms, rb: 10250 * ms},
		{name: "rounded down", t: 60 * s, set: 10 * s, petUntil: 53750 * ms, latest: 73750 * ms, rb: 16250 * ms},
		{name: "rounded up to a minute: no time left for the reset", t: 60 * s, set: 60 * s,
			petUntil: 3750 * ms, latest: 123750 * ms, rb: -33750 * ms, fails: true},
		{name: "longer than T + W/4: no pet can follow a renewal", t: 20 * s, set: 30 * s,
			petUntil: -8750 * ms, latest: 51250 * ms, rb: -21250 * ms, fails: true},
		{name: "the longest that still leaves the reset its budget", t: 20 * s, set: 8750*ms - MinResetBudget,
			petUntil: 12500*ms + MinResetBudget, latest: 30*s - MinResetBudget, rb: MinResetBudget},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := NewWithT(t)
			base, err := PlanFor(c.t, time.Millisecond)
			g.Expect(err).NotTo(HaveOccurred())
			p, err := base.WithTimeout(c.set)
			if c.fails {
				g.Expect(err).To(MatchError(ContainSubstring("cannot")), "refused") // the message says why
			} else {
				g.Expect(err).NotTo(HaveOccurred())
			}
			g.Expect(p.Set).To(Equal(c.set))
			g.Expect(p.Timeout).To(Equal(base.Timeout), "W, the timeout asked, is kept")
			g.Expect(p.PetUntil).To(Equal(c.petUntil), "last pet after S")
			g.Expect(p.LatestExpiry).To(Equal(c.latest), "latest expiry after S")
			g.Expect(p.ResetBudget).To(Equal(c.rb), "left for the reset")
			if !c.fails {
				// Never before S + T: the last pet is at most PetEvery before PetUntil.
				g.Expect(p.PetUntil - p.PetEvery + p.Set).To(BeNumerically(">=", c.t))
				// The last pet, plus one unjustified restart, expires by LatestExpiry.
				g.Expect(p.PetUntil + 2*p.Set).To(Equal(p.LatestExpiry))
				g.Expect(p.LatestExpiry + p.ResetBudget).To(Equal(p.SafeAfter))
			}
		})
	}
}

// A pet fits the safe time when the watchdog, restarted once more without a
// renewal, still expires MinResetBudget before it: every pet MayPet allows
// does, up to the bound; past it, one whose timeout is long enough does not.
func TestFitsSafeTime(t *testing.T) {
	g := NewWithT(t)
	const ms = time.Millisecond
	s := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	for _, tt := range []time.Duration{3 * time.Second, 10 * time.Second, 60 * time.Second} {
		p, err := PlanFor(tt, time.Second)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(p.ExpiresBy(s.Add(p.PetUntil))).To(Equal(s.Add(p.LatestExpiry)), "T = %s", tt)
		g.Expect(p.FitsSafeTime(s, s)).To(BeTrue())
		g.Expect(p.FitsSafeTime(s, s.Add(p.PetUntil))).To(BeTrue(), "T = %s", tt)
		g.Expect(p.FitsSafeTime(s, s.Add(p.PetUntil+p.ResetBudget))).To(BeFalse(), "T = %s", tt)
	}
	// T = 4s, 1s asked, 1.5s set: pets until S + 2.75s; one at S + 2.9s
	// still fits (expiry by S + 5.9s, MinResetBudget before the safe time
	// S + 6s), one at S + 2.95s does not.
	p, err := PlanFor(4*time.Second, ms)
	g.Expect(err).NotTo(HaveOccurred())
	p, err = p.WithTimeout(1500 * ms)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(p.PetUntil).To(Equal(2750 * ms))
	g.Expect(p.FitsSafeTime(s, s.Add(2900*ms))).To(BeTrue())
	g.Expect(p.FitsSafeTime(s, s.Add(2950*ms))).To(BeFalse(), "expiry by S + 5.95s leaves less than %s", MinResetBudget)
	g.Expect(p.FitsSafeTime(s, s.Add(3*time.Second))).To(BeFalse())
}
