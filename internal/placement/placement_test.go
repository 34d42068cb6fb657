package placement

import (
	"testing"

	. "github.com/onsi/gomega"
)

const gi = int64(1) << 30

func res(cpu, memGi int64) Resources { return Resources{MilliCPU: cpu * 1000, Memory: memGi * gi} }

func TestPlace(t *testing.T) {
	hosts := []Host{
		{Name: "h1", Live: true, Capacity: res(8, 32), Used: res(6, 24)},
		{Name: "h2", Live: true, Capacity: res(8, 32), Used: res(2, 8)},
		{Name: "h3", Live: true, Capacity: res(8, 32), Used: res(2, 8)},
		{Name: "dead", Live: false, Capacity: res(64, 256)},
	}
	cases := map[string]struct {
		vm     VM
		host   string
		reason string
	}{
		"most free memory, ties by name": {VM{Need: res(1, 1)}, "h2", ReasonPlaced},
		"affinity wins when it fits":     {VM{Need: res(1, 1), Affinity: "h1"}, "h1", ReasonPlaced},
		"affinity ignored when full":     {VM{Need: res(4, 4), Affinity: "h1"}, "h2", ReasonPlaced},
		"a dead host is never chosen":    {VM{Need: res(10, 10)}, "", ReasonNoCapacity},
		"pinned to its local SR's host":  {VM{Need: res(1, 1), PinnedTo: "h3"}, "h3", ReasonPlaced},
		"pinned to a dead host":          {VM{Need: res(1, 1), PinnedTo: "dead"}, "", ReasonDiskUnavailable},
		"pinned to a gone host":          {VM{Need: res(1, 1), PinnedTo: "nowhere"}, "", ReasonDiskUnavailable},
		"pinned host full":               {VM{Need: res(4, 4), PinnedTo: "h1"}, "", ReasonNoCapacity},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			d := Place(tc.vm, hosts)
			g.Expect(d.Host).To(Equal(tc.host), d.Message)
			g.Expect(d.Reason).To(Equal(tc.reason))
			g.Expect(d.Message).NotTo(BeEmpty())
		})
	}
	NewWithT(t).Expect(Place(VM{}, []Host{{Name: "x"}}).Reason).To(Equal(ReasonNoLiveHost))
}

func TestGate(t *testing.T) {
	cases := map[string]struct {
		vm     Waiting
		others []Waiting
		ok     bool
		reason string
	}{
		"nobody waits":                        {Waiting{}, nil, true, ""},
		"a lower start order waits":           {Waiting{StartOrder: 10}, []Waiting{{Name: "db"}}, false, ReasonWaitingForOrder},
		"equal start order starts together":   {Waiting{StartOrder: 10}, []Waiting{{Name: "web2", StartOrder: 10}}, true, ""},
		"a blocked lower VM holds nobody":     {Waiting{StartOrder: 10}, []Waiting{{Name: "db", Blocked: true}}, true, ""},
		"BestEffort waits for Restart VMs":    {Waiting{BestEffort: true}, []Waiting{{Name: "r", StartOrder: 5}}, false, ReasonWaitingPriority},
		"Restart never waits for BestEffort":  {Waiting{StartOrder: 5}, []Waiting{{Name: "b", BestEffort: true}}, true, ""},
		"BestEffort VMs keep their own order": {Waiting{BestEffort: true, StartOrder: 2}, []Waiting{{Name: "b", BestEffort: true, StartOrder: 1}}, false, ReasonWaitingForOrder},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			ok, reason, msg := Gate(tc.vm, tc.others)
			g.Expect(ok).To(Equal(tc.ok), msg)
			g.Expect(reason).To(Equal(tc.reason))
		})
	}
}

func TestRelease(t *testing.T) {
	cases := map[string]struct {
		state   HolderState
		vm      LockedVM
		release bool
		reason  string
	}{
		"holder fenced: released":               {HolderDown, LockedVM{Exists: true, ResidentOn: "h1", Running: true}, true, ReasonHolderFenced},
		"holder live running the VM: kept":      {HolderLive, LockedVM{Exists: true, ResidentOn: "h1", Running: true, RunningOnHolder: true}, false, ReasonLockHeld},
		"VM halted by its host: released":       {HolderLive, LockedVM{Exists: true}, true, ReasonHaltedByHost},
		"VM still resident: kept":               {HolderLive, LockedVM{Exists: true, ResidentOn: "h1"}, false, ReasonLockHeld},
		"VM reported running by the host: kept": {HolderLive, LockedVM{Exists: true, RunningOnHolder: true}, false, ReasonLockHeld},
		"VM gone, host does not run it":         {HolderLive, LockedVM{}, true, ReasonVMGone},
		"VM gone but the host runs it: kept":    {HolderLive, LockedVM{RunningOnHolder: true}, false, ReasonLockHeld},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			release, reason, _ := Release("h1", tc.state, tc.vm)
			g.Expect(release).To(Equal(tc.release))
			g.Expect(reason).To(Equal(tc.reason))
		})
	}
}

func TestOvercommitted(t *testing.T) {
	cases := map[string]struct {
		live     []Resources
		demand   Resources
		failures int
		over     bool
	}{
		"fits and tolerates one failure":  {[]Resources{res(8, 32), res(8, 32), res(8, 32)}, res(10, 40), 1, false},
		"fits but not after one failure":  {[]Resources{res(8, 32), res(8, 32)}, res(10, 40), 1, true},
		"does not fit at all":             {[]Resources{res(8, 32)}, res(10, 40), 0, true},
		"no failure to tolerate":          {[]Resources{res(8, 32), res(8, 32)}, res(10, 40), 0, false},
		"tolerating as many as there are": {[]Resources{res(8, 32)}, Resources{}, 1, true},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			over, msg := Overcommitted(tc.live, tc.demand, tc.failures)
			NewWithT(t).Expect(over).To(Equal(tc.over), msg)
		})
	}
}
