package agent

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	. "github.com/onsi/gomega"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/poolkeeper/poolkeeper/internal/watchdog"
)

// roundingWatchdog is a watchdog whose driver sets the timeouts of round
// instead of the ones asked, and records when each pet reached it.
type roundingWatchdog struct {
	watchdog.None
	clock  *clocktesting.FakeClock
	round  map[time.Duration]time.Duration
	armed  bool
	set    time.Duration
	petsAt []time.Time
}

func (w *roundingWatchdog) Kind() string { return watchdog.KindDevice }

func (w *roundingWatchdog) Arm() error { w.armed = true; return nil }

func (w *roundingWatchdog) SetTimeout(d, _ time.Duration) (time.Duration, error) {
	w.set = d
	if r, ok := w.round[d]; ok {
		w.set = r
	}
	w.petsAt = append(w.petsAt, w.clock.Now())
	return w.set, nil
}

func (w *roundingWatchdog) Pet(time.Duration) error {
	w.petsAt = append(w.petsAt, w.clock.Now())
	return nil
}

// A shorter heartbeat timeout reaches the petter at once; the pet that sets
// its watchdog timeout is sent within the bound of the timeout asked. When
// the driver takes a longer one, from which that pet lets the watchdog run
// past the operator's safe time, the petter says so: an Agent-fenced
// host's agent pets no more (its VMs are stopped, watchdogReady), another
// goes on with a warning. The same change early in the window is fine.
func TestTimeoutChangedLateInTheWindowIsCheckedAgainstTheTimeoutSet(t *testing.T) {
	// T = 8s: W = 2s, set exactly. T = 4s: W = 1s asked, 1.5s set; pets may
	// reach it until S + 2.75s (S + 3.25s for the 1s asked), and one at
	// S + 3s can expire as late as S + 6s, the safe time itself.
	for _, c := range []struct {
		name   string
		at     time.Duration
		strict bool
		unsafe bool
	}{
		{name: "late, Agent-fenced: no more pets", at: 3 * time.Second, strict: true, unsafe: true},
		{name: "late, fenced otherwise: a warning", at: 3 * time.Second},
		{name: "early: fine", at: 500 * time.Millisecond, strict: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			g := NewWithT(t)
			clock := clocktesting.NewFakeClock(time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC))
			wd := &roundingWatchdog{clock: clock, round: map[time.Duration]time.Duration{time.Second: 1500 * time.Millisecond}}
			var mu sync.Mutex
			var logged []string
			log := funcr.New(func(_, args string) {
				mu.Lock()
				defer mu.Unlock()
				logged = append(logged, args)
			}, funcr.Options{})
			p := &petter{wd: wd, clock: clock, log: log, poke: make(chan struct{}, 1), strict: c.strict}
			s := clock.Now()
			p.s, p.t, p.holding = s, 8*time.Second, true
			_, err := p.step()
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(wd.armed).To(BeTrue())
			g.Expect(wd.set).To(Equal(2 * time.Second))

			clock.Step(c.at)
			p.mu.Lock()
			p.t = 4 * time.Second
			p.mu.Unlock()
			_, err = p.step()
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(wd.set).To(Equal(1500*time.Millisecond), "the shorter timeout is set at once")
			if c.unsafe {
				g.Expect(p.unsafe).To(MatchError(ContainSubstring("later than")))
			} else {
				g.Expect(p.unsafe).To(BeNil())
			}
			mu.Lock()
			warned := strings.Contains(strings.Join(logged, "\n"), "cannot reset this host before the operator's safe time")
			mu.Unlock()
			g.Expect(warned).To(Equal(c.at == 3*time.Second), "said: %v", logged)

			// Then the petter pets while the plan of the 1.5s set allows.
			pets := len(wd.petsAt)
			for range 20 {
				clock.Step(100 * time.Millisecond)
				_, err = p.step()
				g.Expect(err).NotTo(HaveOccurred())
			}
			plan, err := watchdog.PlanFor(4*time.Second, watchdog.None{}.Granularity())
			g.Expect(err).NotTo(HaveOccurred())
			adjusted, err := plan.WithTimeout(1500 * time.Millisecond)
			g.Expect(err).NotTo(HaveOccurred())
			later := wd.petsAt[pets:]
			switch {
			case c.unsafe:
				g.Expect(later).To(BeEmpty(), "no pet after a pet that can run past the safe time")
			case c.at > adjusted.PetUntil:
				g.Expect(later).To(BeEmpty(), "none past the plan of the timeout set")
			default:
				g.Expect(later).NotTo(BeEmpty())
				for _, at := range later {
					g.Expect(at.Sub(s)).To(BeNumerically("<=", adjusted.PetUntil))
					g.Expect(adjusted.FitsSafeTime(s, at)).To(BeTrue())
				}
			}
			if c.unsafe {
				a := &Agent{petter: p}
				_, err := a.watchdogReady()
				g.Expect(errors.Is(err, ErrNoSafeWatchdog)).To(BeTrue(), "got %v", err)
			}
		})
	}
}
