package placement

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

func TestApplianceGate(t *testing.T) {
	now := time.Date(2026, 12, 1, 17, 0, 0, 0, time.UTC)
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	running := func(name string, order int32, since time.Time) Member {
		return Member{Name: name, StartOrder: order, ShouldRun: true, Running: true, RunningSince: since}
	}
	notRunning := func(name string, order int32) Member {
		return Member{Name: name, StartOrder: order, ShouldRun: true}
	}
	halted := func(name string, order int32) Member { return Member{Name: name, StartOrder: order} }
	cases := map[string]struct {
		delay      time.Duration
		members    []Member
		startOrder int32
		// wait is the expected message, "" when the member may start.
		wait      string
		notBefore time.Time
	}{
		"the lowest group starts at once": {delay: time.Minute, startOrder: 0,
			members: []Member{notRunning("db", 0), notRunning("web", 10)}},
		"a group waits for the one before it to run": {delay: 0, startOrder: 10,
			members: []Member{running("db-1", 0, ago(time.Hour)), notRunning("db-2", 0), notRunning("web", 10)},
			wait:    "vApp shop: waiting for its VMs with startOrder 0 to run"},
		"no delay: the next group starts once the one before it runs": {delay: 0, startOrder: 10,
			members: []Member{running("db", 0, now)}},
		"no delay: a run not recorded yet is enough": {delay: 0, startOrder: 10,
			members: []Member{running("db", 0, time.Time{})}},
		"the delay counts from the latest run of the groups before": {delay: 30 * time.Second, startOrder: 10,
			members:   []Member{running("db-1", 0, ago(time.Minute)), running("db-2", 0, ago(10*time.Second))},
			wait:      "vApp shop: its VMs with startOrder 0 run; waiting startDelay 30s, until 2026-12-01T17:00:20.000Z",
			notBefore: now.Add(20 * time.Second)},
		"the delay ends exactly at its deadline": {delay: 30 * time.Second, startOrder: 10,
			members: []Member{running("db", 0, ago(30*time.Second))}},
		"a millisecond before the deadline it still waits": {delay: 30 * time.Second, startOrder: 10,
			members:   []Member{running("db", 0, ago(30*time.Second-time.Millisecond))},
			wait:      "vApp shop: its VMs with startOrder 0 run; waiting startDelay 30s, until 2026-12-01T17:00:00.001Z",
			notBefore: now.Add(time.Millisecond)},
		"with a delay, a run not recorded yet holds the group": {delay: 30 * time.Second, startOrder: 10,
			members: []Member{running("db", 0, time.Time{})},
			wait:    "vApp shop: waiting for its VMs with startOrder 0 to run"},
		"a Halted member holds nobody back": {delay: 30 * time.Second, startOrder: 10,
			members: []Member{halted("db", 0), running("cache", 5, ago(time.Minute))}},
		"every earlier group must run, not only the one just before": {delay: 0, startOrder: 20,
			members: []Member{notRunning("db", 0), running("app", 10, ago(time.Hour))},
			wait:    "vApp shop: waiting for its VMs with startOrder 0 to run"},
		"the lowest group not running is named": {delay: 0, startOrder: 20,
			members: []Member{notRunning("app", 10), notRunning("db", 0)},
			wait:    "vApp shop: waiting for its VMs with startOrder 0 to run"},
		"the third group waits the delay after the second": {delay: 30 * time.Second, startOrder: 20,
			members:   []Member{running("db", 0, ago(time.Hour)), running("app", 10, ago(5*time.Second))},
			wait:      "vApp shop: its VMs with startOrder 10 run; waiting startDelay 30s, until 2026-12-01T17:00:25.000Z",
			notBefore: now.Add(25 * time.Second)},
		"members of the same group do not wait for each other": {delay: time.Minute, startOrder: 10,
			members: []Member{running("db", 0, ago(time.Hour)), notRunning("web-1", 10), notRunning("web-2", 10)}},
		"later groups hold nobody back": {delay: time.Minute, startOrder: 0,
			members: []Member{notRunning("db", 0), running("web", 10, now)}},
		"no other member": {delay: time.Minute, startOrder: 10, members: []Member{notRunning("web", 10)}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			wait, notBefore := Appliance{Name: "shop", StartDelay: tc.delay, Members: tc.members}.Gate(tc.startOrder, now)
			g.Expect(notBefore).To(BeTemporally("==", tc.notBefore))
			if tc.wait == "" {
				g.Expect(wait).To(BeNil())
				return
			}
			g.Expect(wait).To(HaveValue(Equal(Decision{Reason: ReasonWaitingForAppliance, Message: tc.wait})))
		})
	}
}

// A vApp member held back by the gate is Blocked: Schedule does not place
// it, and it holds back no VM of the pool outside its vApp; a VM without a
// vApp is placed as before.
func TestScheduleWithApplianceGate(t *testing.T) {
	g := NewWithT(t)
	now := time.Date(2026, 12, 1, 17, 0, 0, 0, time.UTC)
	app := Appliance{Name: "shop", StartDelay: 30 * time.Second,
		Members: []Member{{Name: "db", StartOrder: 0, ShouldRun: true, Running: true, RunningSince: now.Add(-10 * time.Second)}}}
	wait, notBefore := app.Gate(10, now)
	g.Expect(notBefore).To(Equal(now.Add(20 * time.Second)))
	hosts := []Host{{Name: "h1", Live: true, Capacity: res(8, 32)}}
	pending := []Pending{
		{VM: VM{Name: "web", Need: res(1, 1)}, StartOrder: 10, Blocked: wait},
		{VM: VM{Name: "batch", Need: res(1, 1)}, StartOrder: 20},
	}
	d := Schedule(pending, nil, hosts)
	g.Expect(d[0]).To(Equal(*wait))
	g.Expect(d[1].Host).To(Equal("h1"), "a VM without a vApp is not held back by a waiting member")

	wait, notBefore = app.Gate(10, notBefore)
	g.Expect(wait).To(BeNil())
	g.Expect(notBefore.IsZero()).To(BeTrue())
	pending[0].Blocked = wait
	g.Expect(Schedule(pending, nil, hosts)[0].Host).To(Equal("h1"))
}
