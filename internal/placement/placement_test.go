package placement

import (
	"slices"
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

func TestSchedule(t *testing.T) {
	live := func(name string, cpu int64) Host { return Host{Name: name, Live: true, Capacity: res(cpu, 64)} }
	vm := func(name string, order int32, cpu int64) Pending {
		return Pending{VM: VM{Name: name, Need: res(cpu, 1)}, StartOrder: order}
	}
	bestEffort := func(p Pending) Pending { p.BestEffort = true; return p }
	pinned := func(p Pending, host string) Pending { p.PinnedTo = host; return p }
	blocked := func(p Pending) Pending {
		p.Blocked = &Decision{Reason: ReasonDiskUnavailable, Message: "gone"}
		return p
	}
	cases := map[string]struct {
		pending  []Pending
		starting []Starting
		hosts    []Host
		want     []string // host, or reason when not placed
	}{
		"one rank is placed together": {
			[]Pending{vm("a", 0, 1), vm("b", 0, 1)}, nil, []Host{live("h1", 8)}, []string{"h1", "h1"}},
		"a higher startOrder waits for the lower to start": {
			[]Pending{vm("web", 10, 1), vm("db", 0, 1)}, nil, []Host{live("h1", 8)}, []string{ReasonWaitingForOrder, "h1"}},
		"a starting lower VM holds the next rank": {
			[]Pending{vm("web", 10, 1)}, []Starting{{StartOrder: 0}}, []Host{live("h1", 8)}, []string{ReasonWaitingForOrder}},
		"a starting VM of the same rank holds nobody": {
			[]Pending{vm("web2", 10, 1)}, []Starting{{StartOrder: 10}}, []Host{live("h1", 8)}, []string{"h1"}},
		"a blocked lower VM holds nobody": {
			[]Pending{blocked(vm("db", 0, 1)), vm("web", 10, 1)}, nil, []Host{live("h1", 8)}, []string{ReasonDiskUnavailable, "h1"}},
		"a lower VM that fits nowhere holds nobody": {
			[]Pending{vm("big", 0, 100), vm("web", 10, 1)}, nil, []Host{live("h1", 8)}, []string{ReasonNoCapacity, "h1"}},
		"BestEffort waits for Restart VMs": {
			[]Pending{bestEffort(vm("b", 0, 1)), vm("r", 5, 1)}, nil, []Host{live("h1", 8)}, []string{ReasonWaitingPriority, "h1"}},
		"Restart never waits for BestEffort": {
			[]Pending{vm("r", 5, 1)}, []Starting{{BestEffort: true}}, []Host{live("h1", 8)}, []string{"h1"}},
		"BestEffort VMs keep their own order": {
			[]Pending{bestEffort(vm("b2", 2, 1)), bestEffort(vm("b1", 1, 1))}, nil, []Host{live("h1", 8)}, []string{ReasonWaitingForOrder, "h1"}},
		"capacity taken by one placement is seen by the next": {
			[]Pending{vm("a", 0, 3), vm("b", 0, 3), vm("c", 0, 3)}, nil, []Host{live("h1", 4), live("h2", 4)},
			[]string{"h1", "h2", ReasonNoCapacity}},
		"no Live host": {
			[]Pending{vm("a", 0, 1)}, nil, []Host{{Name: "h1", Capacity: res(8, 8)}}, []string{ReasonNoLiveHost}},
		"pinned to a host that is not Live": {
			[]Pending{pinned(vm("a", 0, 1), "h1")}, nil, []Host{{Name: "h1", Capacity: res(8, 8)}, live("h2", 8)},
			[]string{ReasonDiskUnavailable}},
		"pinned to a Live host sees this pass's placements": {
			[]Pending{vm("a", 0, 3), pinned(vm("b", 0, 3), "h1")}, nil, []Host{live("h1", 4)}, []string{"h1", ReasonNoCapacity}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			hosts := slices.Clone(tc.hosts)
			got := Schedule(tc.pending, tc.starting, tc.hosts)
			g.Expect(got).To(HaveLen(len(tc.pending)))
			for i, d := range got {
				g.Expect(d.Message).NotTo(BeEmpty())
				if d.Host != "" {
					g.Expect(d.Host).To(Equal(tc.want[i]), "%s: %s", tc.pending[i].Name, d.Message)
				} else {
					g.Expect(d.Reason).To(Equal(tc.want[i]), "%s: %s", tc.pending[i].Name, d.Message)
				}
			}
			g.Expect(tc.hosts).To(Equal(hosts), "the hosts passed in are not modified")
		})
	}
}

// The message of a held-back VM names the rank it waits for, not the VMs,
// so it stays the same (and is not written again) while they start.
func TestScheduleWaitMessageIsStable(t *testing.T) {
	g := NewWithT(t)
	hosts := []Host{{Name: "h1", Live: true, Capacity: res(8, 8)}}
	web := Pending{VM: VM{Name: "web", Need: res(1, 1)}, StartOrder: 10}
	one := Schedule([]Pending{web}, []Starting{{StartOrder: 0}, {StartOrder: 0}}, hosts)
	two := Schedule([]Pending{web}, []Starting{{StartOrder: 0}}, hosts)
	g.Expect(one).To(Equal(two))
	g.Expect(one[0].Message).To(Equal("waiting for the VMs with startOrder 0 to start"))
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

func TestResized(t *testing.T) {
	hosts := []Host{{Name: "h1", Capacity: res(8, 32)}, {Name: "h2", Capacity: res(16, 16)}}
	cases := map[string]struct {
		need    Resources
		fits    bool
		largest string
	}{
		"fits the largest by memory":               {res(8, 32), true, ""},
		"fits one host by cpu":                     {res(16, 8), true, ""},
		"too much cpu for the one with the memory": {res(16, 32), false, "cpu 8000m, memory 32768Mi"},
		"fits nowhere":                             {res(64, 1024), false, "cpu 8000m, memory 32768Mi"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			d := Resized(tc.need, hosts)
			if tc.fits {
				g.Expect(d).To(BeNil())
				return
			}
			g.Expect(d).NotTo(BeNil())
			g.Expect(d.Reason).To(Equal(ReasonNoHostFits))
			g.Expect(d.Message).To(And(ContainSubstring("spec.resources ("+tc.need.String()+")"), ContainSubstring("the largest offers "+tc.largest),
				ContainSubstring("takes effect at its next boot")))
		})
	}
	NewWithT(t).Expect(Resized(res(1, 1), nil)).NotTo(BeNil(), "a pool without hosts fits nothing")
}

// A VM goes only where every network it names is offered and every SR of
// its disks is attached; when no Live host qualifies, the decision names
// what is missing everywhere.
func TestPlaceNeedsNetworksAndAttachedStorage(t *testing.T) {
	hosts := []Host{
		{Name: "h1", Live: true, Capacity: res(8, 32), Networks: []string{"default"}, ReportsAttachments: true, Attached: []string{"nfs"}},
		{Name: "h2", Live: true, Capacity: res(8, 32), Used: res(1, 1), Networks: []string{"default", "storage"},
			ReportsAttachments: true, Attached: []string{"nfs", "iscsi"}},
		{Name: "h3", Live: true, Capacity: res(8, 32), Used: res(7, 31), Networks: []string{"default", "storage", "dmz"},
			ReportsAttachments: true, Attached: []string{"nfs"}},
		{Name: "dead", Capacity: res(64, 256), Networks: []string{"default", "storage", "dmz", "lab"}},
	}
	cases := map[string]struct {
		vm      VM
		host    string
		reason  string
		message string
	}{
		"no needs: most free memory":             {VM{Need: res(1, 1)}, "h1", ReasonPlaced, "placed on h1"},
		"a network only h2 and h3 offer":         {VM{Need: res(1, 1), Networks: []string{"storage"}}, "h2", ReasonPlaced, "placed on h2"},
		"an SR only h2 attaches":                 {VM{Need: res(1, 1), StorageRepositories: []string{"iscsi"}}, "h2", ReasonPlaced, "placed on h2"},
		"affinity to a host without the network": {VM{Need: res(1, 1), Networks: []string{"storage"}, Affinity: "h1"}, "h2", ReasonPlaced, "placed on h2"},
		"a network no Live host offers": {VM{Need: res(1, 1), Networks: []string{"default", "lab"}}, "", ReasonNetworkUnavailable,
			"no Live host offers network lab"},
		"an SR no Live host attached": {VM{Need: res(1, 1), StorageRepositories: []string{"nfs", "ceph"}}, "", ReasonStorageNotAttached,
			"no Live host has SR ceph attached"},
		"a network and an SR, never together": {VM{Need: res(1, 1), Networks: []string{"dmz"}, StorageRepositories: []string{"iscsi"}},
			"", ReasonNetworkUnavailable, "no Live host has all of network dmz and SR iscsi attached"},
		"capacity only where the network is not": {VM{Need: res(6, 6), Networks: []string{"dmz"}}, "", ReasonNoCapacity, "free"},
		"pinned to a host without the network": {VM{Need: res(1, 1), PinnedTo: "h1", Networks: []string{"storage"}}, "",
			ReasonNetworkUnavailable, "no Live host offers network storage"},
		"pinned to a host that has it all": {VM{Need: res(1, 1), PinnedTo: "h2", Networks: []string{"storage"},
			StorageRepositories: []string{"iscsi"}}, "h2", ReasonPlaced, "owns its local SR"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			d := Place(tc.vm, hosts)
			g.Expect(d.Host).To(Equal(tc.host), d.Message)
			g.Expect(d.Reason).To(Equal(tc.reason), d.Message)
			g.Expect(d.Message).To(ContainSubstring(tc.message))
		})
	}
	old := Host{Name: "old", Live: true, Capacity: res(8, 32)}
	d := Place(VM{Need: res(1, 1), StorageRepositories: []string{"ceph"}}, []Host{old})
	NewWithT(t).Expect(d.Host).To(Equal("old"), "a host whose agent reports no attachments is taken to reach every SR")
}
