package fencing_test

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/poolkeeper/poolkeeper/internal/fencing"
	"github.com/poolkeeper/poolkeeper/internal/liveness"
	"github.com/poolkeeper/poolkeeper/internal/watchdog"
)

// The outage model runs the agent's survival rule (liveness.Survive) and
// the operator's decisions (storm guard, counting afresh, the Agent
// method's safe time) together on one simulated pool, over random
// schedules of partitions (API server down, the operator cut off, a host
// cut off from the API server or from the statefile, the statefile down),
// agents frozen, forward steps of the agents' monotonic clocks and watchdog
// resets, and checks after every step that no VM runs on two hosts.
//
// What it assumes, as the real system does: a renewal that reaches the API
// server succeeds at the agent; the operator observes a committed renewal
// at once while it reaches the API server, and all of them when it reaches
// it again; a statefile slot counts as known only when written within two
// statefile periods of the read (statefileAge); clock rates agree.

const (
	modelT    = 20 * time.Second
	modelStep = 250 * time.Millisecond
)

type window struct{ from, to time.Duration }

func (w window) has(t time.Duration) bool { return t >= w.from && t < w.to }

type schedule []window

func (s schedule) has(t time.Duration) bool {
	for _, w := range s {
		if w.has(t) {
			return true
		}
	}
	return false
}

type modelHost struct {
	name string
	// off is the agent's monotonic clock minus real time (forward steps only).
	off time.Duration
	// cutAPI, cutSF, frozen: when the host cannot reach the API server or
	// the statefile, and when its agent is stopped.
	cutAPI, cutSF, frozen schedule
	steps                 map[time.Duration]time.Duration

	up       bool // the agent runs (holds the Lease)
	bootAt   time.Duration
	lastOK   time.Time
	reached  bool
	conf     time.Time
	deadline time.Time
	nextBeat time.Duration
	nextSF   time.Duration
	expiry   time.Duration // watchdog expiry (real); 0: disarmed
	rv       int           // Lease resourceVersion at the API server
	// slot as last written: real time, counter, what it says.
	slotAt   time.Duration
	slot     liveness.PeerSlot
	fenced   bool // the operator counted this boot fenced
	vms      map[int]bool
	stopped  int // VMs this host stopped (self-fence or reset)
	exempted int
}

type model struct {
	rng        *rand.Rand
	now        time.Duration
	start      time.Time
	hosts      []*modelHost
	apiDown    schedule
	opCut      schedule
	sfDown     schedule
	pct        int32
	clk        *clocktesting.FakeClock
	tracker    *liveness.Tracker
	recount    *liveness.Recount
	seen       map[string]int // rv the operator last observed
	plan       watchdog.Plan
	restarts   int
	violations []string
	owner      map[int]*modelHost
}

func (m *model) agentTime(h *modelHost) time.Time { return m.start.Add(m.now + h.off) }

func (m *model) apiReach(h *modelHost) bool { return !m.apiDown.has(m.now) && !h.cutAPI.has(m.now) }
func (m *model) sfReach(h *modelHost) bool  { return !m.sfDown.has(m.now) && !h.cutSF.has(m.now) }
func (m *model) opReach() bool              { return !m.apiDown.has(m.now) && !m.opCut.has(m.now) }

func randomSchedule(rng *rand.Rand, horizon time.Duration, n int, longest time.Duration) schedule {
	var s schedule
	for range rng.IntN(n + 1) {
		from := time.Duration(rng.Int64N(int64(horizon)))
		s = append(s, window{from, from + time.Duration(rng.Int64N(int64(longest)))})
	}
	return s
}

func newModel(seed uint64) *model {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	horizon := 12 * modelT
	m := &model{rng: rng, start: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), pct: []int32{50, 50, 34, 0, 66}[rng.IntN(5)],
		seen: map[string]int{}, recount: liveness.NewRecount(), owner: map[int]*modelHost{}}
	m.clk = clocktesting.NewFakeClock(m.start)
	m.tracker = liveness.NewTracker(m.clk)
	m.plan, _ = watchdog.PlanFor(modelT, time.Millisecond)
	m.apiDown = randomSchedule(rng, horizon, 2, 4*modelT)
	m.opCut = randomSchedule(rng, horizon, 1, 3*modelT)
	m.sfDown = randomSchedule(rng, horizon, 1, 2*modelT)
	n := 2 + rng.IntN(5)
	vm := 0
	for i := range n {
		h := &modelHost{name: fmt.Sprintf("h%d", i), vms: map[int]bool{}, steps: map[time.Duration]time.Duration{},
			cutAPI: randomSchedule(rng, horizon, 2, 3*modelT), cutSF: randomSchedule(rng, horizon, 1, 2*modelT),
			frozen: randomSchedule(rng, horizon, 1, 2*modelT)}
		for range rng.IntN(2) {
			h.steps[time.Duration(rng.Int64N(int64(horizon/modelStep)))*modelStep] = time.Duration(rng.Int64N(int64(modelT / 2)))
		}
		for range 2 {
			h.vms[vm] = true
			m.owner[vm] = h
			vm++
		}
		m.hosts = append(m.hosts, h)
		m.boot(h)
	}
	return m
}

// boot starts an agent: its first renewal arms the watchdog.
func (m *model) boot(h *modelHost) {
	h.up, h.bootAt, h.fenced, h.conf = true, m.now, false, time.Time{}
	h.lastOK, h.reached = m.agentTime(h), true
	h.deadline = h.lastOK.Add(modelT)
	h.rv++
	h.expiry = m.now + m.plan.Timeout
	h.nextBeat, h.nextSF = m.now+modelT/4, m.now+modelT/8
}

func (m *model) stopVMs(h *modelHost) {
	h.stopped += len(h.vms)
	h.vms = map[int]bool{}
}

func (m *model) stepAgent(h *modelHost) {
	if d, ok := h.steps[m.now]; ok {
		h.off += d
	}
	if !h.up {
		if m.now-h.bootAt > 2*modelT && m.apiReach(h) {
			m.boot(h) // a new boot, with no VM
		}
		return
	}
	if h.expiry > 0 && m.now >= h.expiry {
		m.stopVMs(h) // the watchdog reset the host
		h.up, h.bootAt, h.expiry = false, m.now, 0
		return
	}
	if h.frozen.has(m.now) {
		return
	}
	at := m.agentTime(h)
	if m.now >= h.nextBeat {
		h.nextBeat = m.now + modelT/4
		if at.Before(h.deadline) && m.apiReach(h) {
			h.lastOK, h.reached = at, true
			h.rv++
		} else {
			h.reached = false
		}
	}
	if m.now >= h.nextSF && m.sfReach(h) {
		h.nextSF = m.now + modelT/8
		h.slotAt = m.now
		h.slot = liveness.PeerSlot{Host: h.name, Known: true, Reached: h.reached, SinceOK: at.Sub(h.lastOK)}
		var peers []liveness.PeerSlot
		for _, o := range m.hosts {
			if o == h {
				continue
			}
			p := o.slot
			p.Host = o.name
			p.Known = o.slotAt > 0 && m.now-o.slotAt <= 2*modelT/8
			peers = append(peers, p)
		}
		s := liveness.Survive(liveness.SurvivalInput{Now: at, LastOK: h.lastOK, Reached: h.reached, Timeout: modelT,
			PoolHosts: len(m.hosts), MaxUnhealthyPercent: m.pct, HeartbeatSR: true, ReadOK: true, ReadAt: at,
			Peers: peers, Confirmed: h.conf})
		if s.Exempt {
			h.exempted++
		}
		h.conf = s.Confirmed
	}
	h.deadline = h.lastOK.Add(modelT)
	if !h.conf.IsZero() && h.conf.Add(liveness.ExemptionGrace(modelT)).After(h.deadline) {
		h.deadline = h.conf.Add(liveness.ExemptionGrace(modelT))
	}
	if !at.Before(h.deadline) {
		m.stopVMs(h) // self-fence
		h.up, h.bootAt = false, m.now
		return // the watchdog stays armed and resets the host
	}
	if ok, _ := m.plan.MayPet(h.deadline.Add(-modelT), at); ok {
		h.expiry = m.now + m.plan.Timeout
	}
}

func (m *model) stepOperator() {
	m.clk.SetTime(m.start.Add(m.now))
	if m.opReach() {
		for _, h := range m.hosts {
			m.tracker.Observe(types.NamespacedName{Name: h.name}, fmt.Sprint(h.rv), modelT)
		}
	}
	now := m.clk.Now()
	var t fencing.Tally
	for _, h := range m.hosts {
		if h.fenced {
			t.Fenced++
			continue
		}
		t.Live++
		if now.Sub(m.tracker.Get(types.NamespacedName{Name: h.name}).LastSeen) >= liveness.SuspectAfter(modelT) {
			t.Suspect++
		}
	}
	guard := fencing.StormGuard(t, m.pct)
	m.recount.Note("pool", now, !guard.Allowed, t.Stale())
	if !m.opReach() || !guard.Allowed {
		return
	}
	from, _ := m.recount.From("pool")
	for _, h := range m.hosts {
		obs := m.tracker.Get(types.NamespacedName{Name: h.name}).Afresh(from)
		if h.fenced || obs.Fresh(now, modelT) || now.Before(fencing.SafeAt(obs, modelT)) {
			continue
		}
		h.fenced = true
		m.moveVMs(h)
	}
}

// moveVMs restarts the VMs the operator records on a fenced host on a
// host it sees live: each must run nowhere else by now.
func (m *model) moveVMs(from *modelHost) {
	var to *modelHost
	for _, h := range m.hosts {
		if h != from && !h.fenced && h.up {
			to = h
			break
		}
	}
	for vm, owner := range m.owner {
		if owner != from || to == nil {
			continue
		}
		for _, h := range m.hosts {
			if h.vms[vm] {
				m.violations = append(m.violations, fmt.Sprintf("at %s VM %d restarted on %s while it runs on %s (fenced: %v)",
					m.now, vm, to.name, h.name, h.fenced))
			}
		}
		to.vms[vm] = true
		m.owner[vm] = to
		m.restarts++
	}
}

func (m *model) run() {
	for m.now = 0; m.now < 14*modelT; m.now += modelStep {
		for _, h := range m.hosts {
			m.stepAgent(h)
		}
		m.stepOperator()
	}
}

func TestOutageModelNoVMRunsTwice(t *testing.T) {
	g := NewWithT(t)
	restarts, exemptions := 0, 0
	for seed := range uint64(2000) {
		m := newModel(seed)
		m.run()
		g.Expect(m.violations).To(BeEmpty(), "seed %d", seed)
		restarts += m.restarts
		for _, h := range m.hosts {
			exemptions += h.exempted
		}
	}
	// The schedules do fence hosts and grant exemptions: the check is not vacuous.
	g.Expect(restarts).To(BeNumerically(">", 100))
	g.Expect(exemptions).To(BeNumerically(">", 100))
}
