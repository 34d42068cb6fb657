package placement

import (
	"testing"

	. "github.com/onsi/gomega"
)

// disk is a VDI of pool p on an SR of pool p, shared unless host is set.
func disk(i int, vdi, host string) Disk {
	return Disk{Index: i, Name: vdi, VDI: vdi, VDIFound: true, VDIPool: "p", SR: "sr-" + vdi, SRFound: true, SRPool: "p", SRHost: host}
}

func TestCheckDisks(t *testing.T) {
	otherPoolVDI := disk(1, "theirs", "")
	otherPoolVDI.VDIPool = "q"
	otherPoolSR := disk(0, "mine", "")
	otherPoolSR.SRPool, otherPoolSR.SR = "q", "their-nfs"
	missingVDI := disk(0, "gone", "")
	missingVDI.VDIFound = false
	missingSR := disk(0, "orphan", "")
	missingSR.SRFound = false
	cases := map[string]struct {
		disks  []Disk
		pinned string
		reason string
		says   []string
	}{
		"shared disks pin nothing":            {[]Disk{disk(0, "a", ""), disk(1, "b", "")}, "", "", nil},
		"a local disk pins to its host":       {[]Disk{disk(0, "a", ""), disk(1, "b", "h2")}, "h2", "", nil},
		"two local disks of one host":         {[]Disk{disk(0, "a", "h2"), disk(1, "b", "h2")}, "h2", "", nil},
		"two local disks of different hosts":  {[]Disk{disk(0, "a", "h2"), disk(1, "b", "h3")}, "", ReasonLocalDisksApart, []string{"spec.disks[0].virtualDisk", "spec.disks[1].virtualDisk", "VDI a", "host h2", "VDI b", "host h3"}},
		"a VDI of another pool":               {[]Disk{disk(0, "a", ""), otherPoolVDI}, "", ReasonDiskInOtherPool, []string{"spec.disks[1].virtualDisk", `"theirs"`, "pool q", "pool p"}},
		"a VDI on an SR of another pool":      {[]Disk{otherPoolSR}, "", ReasonDiskInOtherPool, []string{"spec.disks[0].virtualDisk", `"their-nfs"`, "pool q", "pool p"}},
		"a VDI that does not exist":           {[]Disk{missingVDI}, "", ReasonDiskUnavailable, []string{"spec.disks[0].virtualDisk", `"gone"`, "not found"}},
		"a VDI whose SR does not exist":       {[]Disk{missingSR}, "", ReasonDiskUnavailable, []string{"spec.disks[0].virtualDisk", `"sr-orphan"`, "not found"}},
		"another pool's local disk pins none": {[]Disk{disk(0, "a", "h2"), func() Disk { d := disk(1, "b", "q1"); d.VDIPool = "q"; return d }()}, "", ReasonDiskInOtherPool, nil},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			pinned, blocked := CheckDisks("p", tc.disks)
			g.Expect(pinned).To(Equal(tc.pinned))
			if tc.reason == "" {
				g.Expect(blocked).To(BeNil())
				return
			}
			g.Expect(blocked).NotTo(BeNil())
			g.Expect(blocked.Host).To(BeEmpty())
			g.Expect(blocked.Reason).To(Equal(tc.reason))
			for _, s := range tc.says {
				g.Expect(blocked.Message).To(ContainSubstring(s))
			}
		})
	}
}

func TestMayRunOn(t *testing.T) {
	cases := map[string]struct {
		disks  []Disk
		host   string
		reason string
	}{
		"shared disks: any host":             {[]Disk{disk(0, "a", "")}, "h1", ""},
		"local disk on its host":             {[]Disk{disk(0, "a", ""), disk(1, "b", "h2")}, "h2", ""},
		"local disk of another host":         {[]Disk{disk(0, "a", ""), disk(1, "b", "h2")}, "h3", ReasonPinnedElsewhere},
		"local disks apart: no host":         {[]Disk{disk(0, "a", "h2"), disk(1, "b", "h3")}, "h3", ReasonLocalDisksApart},
		"another pool's VDI: no host at all": {[]Disk{func() Disk { d := disk(0, "a", ""); d.VDIPool = "q"; return d }()}, "h1", ReasonDiskInOtherPool},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			d := MayRunOn("p", tc.host, tc.disks)
			if tc.reason == "" {
				g.Expect(d).To(BeNil())
				return
			}
			g.Expect(d).NotTo(BeNil())
			g.Expect(d.Reason).To(Equal(tc.reason))
			g.Expect(d.Message).To(ContainSubstring("spec.disks["))
		})
	}
	d := MayRunOn("p", "h3", []Disk{disk(0, "a", ""), disk(1, "b", "h2")})
	NewWithT(t).Expect(d.Message).To(Equal("spec.disks[1].virtualDisk: VDI b is on a local SR of host h2: the VM cannot run on h3"))
}

func TestStorageRef(t *testing.T) {
	g := NewWithT(t)
	g.Expect(StorageRef("p", "nfs", true, "p")).To(BeNil())
	missing := StorageRef("p", "nfs", false, "")
	g.Expect(missing).To(HaveField("Reason", ReasonSRNotFound))
	g.Expect(missing.Message).To(Equal(`spec.storageRepository: StorageRepository "nfs" not found`))
	other := StorageRef("p", "nfs", true, "q")
	g.Expect(other).To(HaveField("Reason", ReasonSRInOtherPool))
	g.Expect(other.Message).To(Equal(`spec.storageRepository: StorageRepository "nfs" belongs to pool q, not to this VDI's pool p`))
}

// A preferred host that is no host of the pool is said, and the VM runs
// elsewhere meanwhile; one that exists but is down or full is passed over
// as before.
func TestScheduleAffinityHost(t *testing.T) {
	hosts := []Host{{Name: "h1", Live: true, Capacity: res(8, 8)}, {Name: "h2", Capacity: res(8, 8)}}
	cases := map[string]struct {
		affinity, host, reason string
	}{
		"no such host":         {"xen-9", "h1", ReasonAffinityHostNotFound},
		"a host that is down":  {"h2", "h1", ReasonPlaced},
		"the preferred host":   {"h1", "h1", ReasonPlaced},
		"no preference at all": {"", "h1", ReasonPlaced},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			d := Schedule([]Pending{{VM: VM{Name: "v", Need: res(1, 1), Affinity: tc.affinity}}}, nil, hosts)[0]
			g.Expect(d.Host).To(Equal(tc.host))
			g.Expect(d.Reason).To(Equal(tc.reason))
		})
	}
	d := Schedule([]Pending{{VM: VM{Name: "v", Need: res(1, 1), Affinity: "xen-9"}}}, nil, hosts)[0]
	NewWithT(t).Expect(d.Message).To(Equal("spec.affinity.host: xen-9 is not a host of this pool; placed on h1 instead"))
}
