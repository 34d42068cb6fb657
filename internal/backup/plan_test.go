package backup_test

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/internal/backup"
)

const (
	strict     = vpoolv1alpha1.RestoreStrict
	bestEffort = vpoolv1alpha1.RestoreBestEffort
)

// planned lists a plan's objects as "Kind/name", in creation order.
func planned(p *backup.RestorePlan) []string {
	out := []string{}
	for _, o := range p.Objects() {
		out = append(out, o.GetObjectKind().GroupVersionKind().Kind+"/"+o.GetName())
	}
	return out
}

func problem(kind, name, msg string) backup.Problem {
	return backup.Problem{Kind: kind, Name: name, Message: msg}
}

// existingIn builds Existing from objects of the target namespace.
func existingIn(objs ...client.Object) backup.Existing {
	var e backup.Existing
	e.Add(objs...)
	return e
}

func restoredMeta(name, restoredFrom string) metav1.ObjectMeta {
	m := metav1.ObjectMeta{Namespace: "dr", Name: name}
	if restoredFrom != "" {
		m.Annotations = map[string]string{backup.AnnotationRestoredFrom: restoredFrom}
	}
	return m
}

func existingVM(name, pool, restoredFrom string) *vpoolv1alpha1.VirtualMachine {
	v := &vpoolv1alpha1.VirtualMachine{ObjectMeta: restoredMeta(name, restoredFrom)}
	v.Spec.PoolRef.Name = pool
	return v
}

func existingSR(name, pool, restoredFrom string) *vpoolv1alpha1.StorageRepository {
	s := &vpoolv1alpha1.StorageRepository{ObjectMeta: restoredMeta(name, restoredFrom)}
	s.Spec.PoolRef.Name = pool
	return s
}

func existingHost(name, pool, restoredFrom string) *vpoolv1alpha1.Host {
	h := &vpoolv1alpha1.Host{ObjectMeta: restoredMeta(name, restoredFrom)}
	h.Spec.PoolRef.Name = pool
	return h
}

var everything = []string{
	"Secret/bmc-h3",
	"StorageRepository/local-h1", "StorageRepository/shared",
	"VirtualDisk/data", "VirtualDisk/vm1-root", "VirtualDisk/vm2-root", "VirtualDisk/vm3-suspend", "VirtualDisk/vm4-suspend",
	"VirtualMachine/vm1", "VirtualMachine/vm2", "VirtualMachine/vm3", "VirtualMachine/vm4",
	"Host/h1", "Host/h2", "Host/h3",
}

var suspendNotes = []backup.Problem{
	problem("VirtualMachine", "vm3", "kept Suspended: its suspend image VirtualDisk vm3-suspend is on shared SR shared"),
	problem("VirtualMachine", "vm4", "Halted: its suspend image was on local SR local-h1, lost with its host"),
}

func TestPlan(t *testing.T) {
	tests := map[string]struct {
		mode     vpoolv1alpha1.RestoreMode
		dryRun   bool
		existing backup.Existing
		edit     func(d *backup.Dump)

		blocked   bool
		create    []string
		conflicts []backup.Problem
		skipped   []backup.Problem
		already   []string
		notes     []backup.Problem
		statuses  []string // VMStatuses; the Suspended VMs created (vm3, vm4) when nil
	}{
		"empty namespace": {
			mode: strict, create: everything, notes: suspendNotes,
		},
		"empty mode means Strict": {
			mode: "", existing: existingIn(existingVM("vm2", "other", "")), blocked: true,
			conflicts: []backup.Problem{problem("VirtualMachine", "vm2", "a VirtualMachine of that name already exists in pool other")},
			notes:     suspendNotes,
		},
		"Strict with conflicts reports them all and creates nothing": {
			mode: strict,
			existing: existingIn(existingVM("vm2", "other", ""), existingSR("shared", "other", ""),
				existingHost("h2", "restored", ""), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "bmc-h3"}}),
			blocked: true,
			conflicts: []backup.Problem{
				problem("StorageRepository", "shared", "a StorageRepository of that name already exists in pool other"),
				problem("VirtualMachine", "vm2", "a VirtualMachine of that name already exists in pool other"),
				problem("Host", "h2", "a Host of that name already exists in pool restored and was not created by this restore; a restore never overwrites it"),
			},
			notes: append([]backup.Problem{problem("Secret", "bmc-h3", "already exists; kept as it is, not overwritten with the backup's copy")},
				problem("VirtualMachine", "vm3", "Halted: its suspend image VirtualDisk vm3-suspend is not restored"), suspendNotes[1]),
		},
		"BestEffort skips conflicts and what depends on them": {
			mode:     bestEffort,
			existing: existingIn(existingVM("vm2", "other", ""), existingSR("shared", "other", "")),
			create: []string{
				"Secret/bmc-h3", "StorageRepository/local-h1",
				"VirtualDisk/vm2-root", "VirtualDisk/vm4-suspend",
				"VirtualMachine/vm3", "VirtualMachine/vm4",
				"Host/h1", "Host/h2", "Host/h3",
			},
			conflicts: []backup.Problem{
				problem("StorageRepository", "shared", "a StorageRepository of that name already exists in pool other"),
				problem("VirtualMachine", "vm2", "a VirtualMachine of that name already exists in pool other"),
			},
			skipped: []backup.Problem{
				problem("VirtualDisk", "data", "its StorageRepository shared is not restored"),
				problem("VirtualDisk", "vm1-root", "its StorageRepository shared is not restored"),
				problem("VirtualDisk", "vm3-suspend", "its StorageRepository shared is not restored"),
				problem("VirtualMachine", "vm1", "its disk root (VirtualDisk vm1-root) is not restored"),
			},
			notes: []backup.Problem{
				problem("VirtualMachine", "vm3", "Halted: its suspend image VirtualDisk vm3-suspend is not restored"),
				suspendNotes[1],
			},
		},
		"a conflicting host takes its local SR along": {
			mode:     bestEffort,
			existing: existingIn(existingHost("h1", "other", "")),
			create: []string{
				"Secret/bmc-h3", "StorageRepository/shared",
				"VirtualDisk/data", "VirtualDisk/vm1-root", "VirtualDisk/vm3-suspend",
				"VirtualMachine/vm1", "VirtualMachine/vm3", "VirtualMachine/vm4",
				"Host/h2", "Host/h3",
			},
			conflicts: []backup.Problem{problem("Host", "h1", "a Host of that name already exists in pool other")},
			skipped: []backup.Problem{
				problem("StorageRepository", "local-h1", "local SR of Host h1, which is not restored"),
				problem("VirtualDisk", "vm2-root", "its StorageRepository local-h1 is not restored"),
				problem("VirtualDisk", "vm4-suspend", "its StorageRepository local-h1 is not restored"),
				problem("VirtualMachine", "vm2", "its disk root (VirtualDisk vm2-root) is not restored"),
			},
			notes: []backup.Problem{
				problem("VirtualMachine", "vm1", "its preferred host h1 is not part of the restored pool"),
				suspendNotes[0],
				problem("VirtualMachine", "vm4", "Halted: its suspend image VirtualDisk vm4-suspend is not restored"),
			},
		},
		"a reference to another pool's object is a conflict": {
			mode:     bestEffort,
			existing: existingIn(existingSR("ghost", "other", "")),
			edit: func(d *backup.Dump) {
				d.VirtualDisks[0].Spec.StorageRepository = "ghost" // data
			},
			create: []string{
				"Secret/bmc-h3", "StorageRepository/local-h1", "StorageRepository/shared",
				"VirtualDisk/vm1-root", "VirtualDisk/vm2-root", "VirtualDisk/vm3-suspend", "VirtualDisk/vm4-suspend",
				"VirtualMachine/vm2", "VirtualMachine/vm3", "VirtualMachine/vm4",
				"Host/h1", "Host/h2", "Host/h3",
			},
			conflicts: []backup.Problem{problem("VirtualDisk", "data", "its StorageRepository ghost belongs to pool other")},
			skipped:   []backup.Problem{problem("VirtualMachine", "vm1", "its disk data (VirtualDisk data) is not restored")},
			notes:     suspendNotes,
		},
		"references to nothing are noted": {
			mode: strict,
			edit: func(d *backup.Dump) {
				d.VirtualDisks[0].Spec.StorageRepository = "gone"
				d.VirtualMachines[1].Spec.Disks[0].VirtualDisk = "lost"
				d.VirtualMachines[1].Spec.Affinity.Host = "h9"
				d.Secrets = nil
			},
			create: everything[1:],
			notes: []backup.Problem{
				problem("VirtualDisk", "data", "its StorageRepository gone is neither in the backup nor in the namespace"),
				problem("VirtualMachine", "vm2", "its disk root (VirtualDisk lost) is neither in the backup nor in the namespace"),
				problem("VirtualMachine", "vm2", "its preferred host h9 is not part of the restored pool"),
				suspendNotes[0], suspendNotes[1],
				problem("Host", "h3", "its BMC credentials Secret bmc-h3 is not in the backup: Redfish fencing needs it in the namespace"),
			},
		},
		"a credentials Secret looked up and found nowhere": {
			mode:     strict,
			existing: backup.Existing{Secrets: map[string]backup.ExistingObject{}},
			edit:     func(d *backup.Dump) { d.Secrets = nil },
			create:   everything[1:],
			notes: append(suspendNotes,
				problem("Host", "h3", "its BMC credentials Secret bmc-h3 is neither in the backup nor in the namespace: Redfish fencing fails until it is created")),
		},
		"a credentials Secret that exists": {
			mode:     strict,
			existing: existingIn(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "bmc-h3"}}),
			edit:     func(d *backup.Dump) { d.Secrets = nil },
			create:   everything[1:],
			notes:    suspendNotes,
		},
		"a resumed restore recognises its own objects": {
			mode: strict,
			existing: existingIn(existingSR("local-h1", "restored", "b1"), existingSR("shared", "restored", "b1"),
				existingVM("vm1", "restored", "b1"), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "bmc-h3",
					Annotations: map[string]string{backup.AnnotationRestoredFrom: "b1"}}}),
			create: []string{
				"VirtualDisk/data", "VirtualDisk/vm1-root", "VirtualDisk/vm2-root", "VirtualDisk/vm3-suspend", "VirtualDisk/vm4-suspend",
				"VirtualMachine/vm2", "VirtualMachine/vm3", "VirtualMachine/vm4",
				"Host/h1", "Host/h2", "Host/h3",
			},
			already:  []string{"Secret/bmc-h3", "StorageRepository/local-h1", "StorageRepository/shared", "VirtualMachine/vm1"},
			notes:    suspendNotes,
			statuses: []string{"vm3", "vm4"},
		},
		"an object restored from another backup conflicts": {
			mode:     strict,
			existing: existingIn(existingVM("vm1", "restored", "b0")),
			blocked:  true,
			conflicts: []backup.Problem{problem("VirtualMachine", "vm1",
				"a VirtualMachine of that name already exists in pool restored and was not created by this restore; a restore never overwrites it")},
			notes: suspendNotes,
		},
		"dry run": {
			mode: strict, dryRun: true,
			create: everything[1:],
			notes: append(suspendNotes,
				problem("Pool", "restored", "dry run: the backup's 1 Secrets (BMC credentials) are not restored"),
				problem("Pool", "restored", "dry run: 3 hosts get Manual fencing, so that the test can never fence the hosts it names"),
				problem("Pool", "restored", "dry run: 2 VirtualDisks are not given the volume the backup records (annotation vpool.poolkeeper.io/volume), "+
					"so that nothing of the test attaches the volumes of the pool it tests"),
				problem("Pool", "restored", "dry run: 3 VMs get spec.powerState Halted so that none starts (the backup's value is in annotation vpool.poolkeeper.io/restored-power-state)"),
			),
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			d := newWorld().dump()
			if tc.edit != nil {
				tc.edit(d)
			}
			p, err := backup.Plan(d, target(tc.mode, tc.dryRun), tc.existing, tc.mode)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(p.Blocked()).To(Equal(tc.blocked))
			if tc.blocked {
				g.Expect(p.Objects()).To(BeEmpty(), "a blocked plan creates nothing")
				g.Expect(p.Err()).To(MatchError(backup.ErrConflict))
				g.Expect(p.Summary()).To(ContainSubstring("nothing restored (Strict)"))
			} else {
				g.Expect(p.Err()).NotTo(HaveOccurred())
				g.Expect(planned(p)).To(Equal(tc.create))
				if len(tc.conflicts) > 0 {
					g.Expect(p.Summary()).To(ContainSubstring(". Skipped %d conflicting objects: %s", len(tc.conflicts), tc.conflicts[0]))
				}
			}
			g.Expect(p.Conflicts).To(Equal(tc.conflicts))
			g.Expect(p.Skipped).To(Equal(tc.skipped))
			g.Expect(p.Notes).To(Equal(tc.notes))
			already := []string{}
			for _, a := range p.AlreadyRestored {
				already = append(already, a.Kind+"/"+a.Name)
			}
			g.Expect(already).To(ConsistOf(tc.already))
			statuses := tc.statuses
			if statuses == nil {
				for _, v := range p.VirtualMachines {
					if v.Name == "vm3" || v.Name == "vm4" {
						statuses = append(statuses, v.Name)
					}
				}
			}
			g.Expect(p.VMStatuses).To(HaveLen(len(statuses)))
			for _, name := range statuses {
				g.Expect(p.VMStatuses).To(HaveKey(name))
			}
		})
	}
}

func TestPlanRestoredObjects(t *testing.T) {
	g := NewWithT(t)
	w := newWorld()
	d := w.dump()
	p, err := backup.Plan(d, target(strict, false), backup.Existing{}, strict)
	g.Expect(err).NotTo(HaveOccurred())

	g.Expect(p.Backup).To(Equal("b1"))
	g.Expect(p.SourceNamespace).To(Equal("prod"))
	g.Expect(p.SourcePool).To(Equal("p"))
	g.Expect(p.SourceMaster).To(Equal("h1"))
	g.Expect(p.MinEpoch).To(Equal(int64(8)), "above the dump's epoch 7")
	g.Expect(p.TakenAt).To(Equal(takenAt))

	for _, o := range p.Objects() {
		g.Expect(o.GetNamespace()).To(Equal("dr"), o.GetName())
		g.Expect(o.GetAnnotations()).To(HaveKeyWithValue(backup.AnnotationRestoredFrom, "b1"), o.GetName())
		g.Expect(o.GetOwnerReferences()).To(BeEmpty(), "only a dry run is owned by the pool")
		g.Expect(o.GetUID()).To(BeEmpty())
		g.Expect(o.GetResourceVersion()).To(BeEmpty())
	}
	for _, h := range p.Hosts {
		g.Expect(h.Spec.PoolRef.Name).To(Equal("restored"))
		g.Expect(h.Status).To(BeZero(), "hosts rejoin when their agents heartbeat")
	}
	g.Expect(p.Hosts[0].Labels).To(Equal(map[string]string{"rack": "r1"}))
	g.Expect(p.Hosts[2].Spec.Fencing).To(Equal(w.hosts[0].Spec.Fencing), "Redfish fencing kept")
	for _, sr := range p.StorageRepositories {
		g.Expect(sr.Spec.PoolRef.Name).To(Equal("restored"))
	}
	for _, vdi := range p.VirtualDisks {
		g.Expect(vdi.Spec.PoolRef.Name).To(Equal("restored"))
		g.Expect(vdi.Status.Lock).To(BeNil(), "locks are never restored")
	}
	g.Expect(p.VirtualDisks[1].Name).To(Equal("vm1-root"))
	g.Expect(p.VirtualDisks[1].Spec.Size).To(BeComparableTo(w.vdis[0].Spec.Size))

	byName := map[string]*vpoolv1alpha1.VirtualMachine{}
	for _, v := range p.VirtualMachines {
		g.Expect(v.Spec.PoolRef.Name).To(Equal("restored"))
		byName[v.Name] = v
	}
	vm1 := byName["vm1"]
	g.Expect(vm1.Spec.PowerState).To(Equal(vpoolv1alpha1.DesiredRunning), "it starts once its hosts are Live")
	g.Expect(vm1.Spec.Disks).To(Equal(w.vms[0].Spec.Disks))
	g.Expect(vm1.Annotations).To(Equal(map[string]string{"owner": "team-a", backup.AnnotationRestoredFrom: "b1"}))
	g.Expect(vm1.Status).To(BeZero(), "the status is written apart")
	// vm1 was Running on h1 and vm2 Halted: both come back as new VMs do,
	// resident nowhere, recorded Halted by the caller; only vm3 needs more.
	g.Expect(p.VMStatuses).To(Equal(map[string]backup.VMStatus{
		"vm3": {PowerState: vpoolv1alpha1.PowerSuspended, SuspendVirtualDisk: "vm3-suspend", Reason: backup.ReasonSuspendImageKept,
			Message: "Suspended in backup b1, restored Suspended: its suspend image VirtualDisk vm3-suspend is on shared SR shared"},
		"vm4": {PowerState: vpoolv1alpha1.PowerHalted, Reason: backup.ReasonSuspendImageLost,
			Message: "Suspended in backup b1, restored Halted: its suspend image was on local SR local-h1, lost with its host"},
	}))

	g.Expect(p.Secrets).To(HaveLen(1))
	g.Expect(p.Secrets[0].Type).To(Equal(corev1.SecretTypeBasicAuth))
	g.Expect(p.Secrets[0].Data).To(HaveKeyWithValue("password", []byte("calvin")))

	// The plan owns its objects: changing them leaves the dump alone.
	vm1.Spec.Disks[0].VirtualDisk = "changed"
	g.Expect(d.VirtualMachines[0].Spec.Disks[0].VirtualDisk).To(Equal("vm1-root"))

	g.Expect(p.Summary()).To(HavePrefix("backup b1 of pool prod/p taken at 2026-03-01T02:30:00Z: creating 2 StorageRepositories, 5 VirtualDisks, 4 VirtualMachines, 3 Hosts, 1 Secrets. Notes (2): "))
}

// A restored VDI is annotated with the volume its data is in: the backup's
// status.volume, else the annotation it carried in the backup (restored
// itself and not attached since); one the backup knows no volume of gets
// none, and finds or creates its volume by its name, as before volumes were
// kept. A dry run annotates none and drops the backup's: a test never
// attaches the volumes of the pool it tests.
func TestPlanKeepsVolumes(t *testing.T) {
	g := NewWithT(t)
	d := newWorld().dump()
	vdis := func(p *backup.RestorePlan) map[string]map[string]string {
		out := map[string]map[string]string{}
		for _, v := range p.VirtualDisks {
			out[v.Name] = v.Annotations
		}
		return out
	}
	p, err := backup.Plan(d, target(strict, false), backup.Existing{}, strict)
	g.Expect(err).NotTo(HaveOccurred())
	got := vdis(p)
	g.Expect(got).To(HaveLen(5))
	g.Expect(got["vm1-root"]).To(HaveKeyWithValue(vpoolv1alpha1.AnnotationVolume, rootVolume), "its status.volume")
	g.Expect(got["data"]).To(HaveKeyWithValue(vpoolv1alpha1.AnnotationVolume, dataVolume), "the backup's annotation")
	for _, name := range []string{"vm2-root", "vm3-suspend", "vm4-suspend"} {
		g.Expect(got[name]).NotTo(HaveKey(vpoolv1alpha1.AnnotationVolume), name)
	}

	// A status.volume is newer than an annotation the VDI kept from its own
	// restore: the VDI recorded that volume once attached.
	d.VirtualDisks[1].Metadata.Annotations = map[string]string{vpoolv1alpha1.AnnotationVolume: "/stale"}
	p, err = backup.Plan(d, target(strict, false), backup.Existing{}, strict)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(vdis(p)["vm1-root"]).To(HaveKeyWithValue(vpoolv1alpha1.AnnotationVolume, rootVolume))
	g.Expect(d.VirtualDisks[1].Metadata.Annotations).To(HaveKeyWithValue(vpoolv1alpha1.AnnotationVolume, "/stale"),
		"the plan leaves the dump alone")

	p, err = backup.Plan(d, target(strict, true), backup.Existing{}, strict)
	g.Expect(err).NotTo(HaveOccurred())
	got = vdis(p)
	g.Expect(got).To(HaveLen(5))
	for name, annotations := range got {
		g.Expect(annotations).NotTo(HaveKey(vpoolv1alpha1.AnnotationVolume), "dry run: %s", name)
		g.Expect(annotations).To(HaveKeyWithValue(backup.AnnotationRestoredFrom, "b1"), name)
	}
	g.Expect(p.Notes).To(ContainElement(HaveField("Message", HavePrefix("dry run: 2 VirtualDisks are not given the volume"))))
}

func TestPlanDryRun(t *testing.T) {
	g := NewWithT(t)
	p, err := backup.Plan(newWorld().dump(), target(strict, true), backup.Existing{}, strict)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(p.DryRun).To(BeTrue())
	g.Expect(p.Secrets).To(BeEmpty(), "production credentials stay out of a test")
	for _, o := range p.Objects() {
		g.Expect(o.GetOwnerReferences()).To(ConsistOf(HaveField("UID", BeEquivalentTo("uid-restored"))), o.GetName())
		g.Expect(o.GetOwnerReferences()[0].Kind).To(Equal("Pool"))
		g.Expect(o.GetOwnerReferences()[0].APIVersion).To(Equal("vpool.poolkeeper.io/v1alpha1"))
	}
	for _, h := range p.Hosts {
		g.Expect(h.Spec.Fencing).To(Equal(vpoolv1alpha1.HostFencing{Method: vpoolv1alpha1.FencingManual}), h.Name)
	}
	for _, v := range p.VirtualMachines {
		g.Expect(v.Spec.PowerState).To(Equal(vpoolv1alpha1.DesiredHalted), v.Name)
	}
	g.Expect(p.VirtualMachines[0].Annotations).To(HaveKeyWithValue(backup.AnnotationRestoredPowerState, "Running"))
	g.Expect(p.VirtualMachines[1].Annotations).NotTo(HaveKey(backup.AnnotationRestoredPowerState), "vm2 was Halted already")
	g.Expect(p.Summary()).To(ContainSubstring("(dry run)"))

	noUID := target(strict, true)
	noUID.UID = ""
	_, err = backup.Plan(newWorld().dump(), noUID, backup.Existing{}, strict)
	g.Expect(err).To(MatchError(ContainSubstring("no UID")))
}

func TestPlanRefusesBadInput(t *testing.T) {
	d := newWorld().dump()
	noRestore := target(strict, false)
	noRestore.Spec.RestoreFrom = nil
	tests := map[string]struct {
		dump   *backup.Dump
		target *vpoolv1alpha1.Pool
		mode   vpoolv1alpha1.RestoreMode
		msg    string
	}{
		"no dump":         {target: target(strict, false), mode: strict, msg: "no dump"},
		"no target":       {dump: d, mode: strict, msg: "no spec.restoreFrom"},
		"no restoreFrom":  {dump: d, target: noRestore, mode: strict, msg: "no spec.restoreFrom"},
		"an unknown mode": {dump: d, target: target(strict, false), mode: "Lenient", msg: `unknown mode "Lenient"`},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			p, err := backup.Plan(tc.dump, tc.target, backup.Existing{}, tc.mode)
			g.Expect(p).To(BeNil())
			g.Expect(err).To(MatchError(ContainSubstring(tc.msg)))
		})
	}
}

func TestPlanSummaryIsBounded(t *testing.T) {
	g := NewWithT(t)
	w := newWorld()
	var existing backup.Existing
	for i := range 30 {
		v := vm("vm"+string(rune('a'+i%26))+string(rune('a'+i/26)), "p", vpoolv1alpha1.DesiredHalted, vpoolv1alpha1.PowerHalted, "")
		w.vms = append(w.vms, v)
		existing.Add(existingVM(v.Name, "other", ""))
	}
	p, err := backup.Plan(w.dump(), target(strict, false), existing, strict)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(p.Conflicts).To(HaveLen(30))
	g.Expect(p.Err()).To(MatchError(HaveSuffix("; and 10 more")))
	g.Expect(p.Err()).To(MatchError(HavePrefix("restore conflicts: 30 objects of backup b1 conflict with the namespace, nothing was restored (Strict): VirtualMachine vmaa: a VirtualMachine of that name already exists in pool other; ")))
}

func TestExistingFrom(t *testing.T) {
	g := NewWithT(t)
	w := newWorld()
	e := backup.ExistingFrom(w.hosts, w.srs, w.vdis, w.vms)
	g.Expect(e.Hosts).To(HaveKeyWithValue("h-other", backup.ExistingObject{Pool: "other"}))
	g.Expect(e.StorageRepositories).To(HaveLen(3))
	g.Expect(e.VirtualDisks).To(HaveKeyWithValue("vm1-root", backup.ExistingObject{Pool: "p"}))
	g.Expect(e.VirtualMachines).To(HaveLen(6))
	g.Expect(e.Secrets).To(BeNil())
	e.Add(&w.secrets[0], &corev1.ConfigMap{})
	g.Expect(e.Secrets).To(Equal(map[string]backup.ExistingObject{"bmc-h3": {}}))
}

func TestVMStatusPending(t *testing.T) {
	restored := metav1.Condition{Type: backup.ConditionRestored, Status: metav1.ConditionTrue, Reason: backup.ReasonSuspendImageLost}
	ready := metav1.Condition{Type: vpoolv1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: "Halted"}
	tests := map[string]struct {
		status  vpoolv1alpha1.VirtualMachineStatus
		pending bool
	}{
		"a new VM":                       {pending: true},
		"Halted by the VM controller":    {status: vpoolv1alpha1.VirtualMachineStatus{PowerState: vpoolv1alpha1.PowerHalted, Conditions: []metav1.Condition{ready}}, pending: true},
		"written by this restore before": {status: vpoolv1alpha1.VirtualMachineStatus{PowerState: vpoolv1alpha1.PowerHalted, Conditions: []metav1.Condition{restored}}},
		"placed on a host since":         {status: vpoolv1alpha1.VirtualMachineStatus{PowerState: vpoolv1alpha1.PowerHalted, ResidentOn: "h1"}},
		"running since":                  {status: vpoolv1alpha1.VirtualMachineStatus{PowerState: vpoolv1alpha1.PowerRunning, ResidentOn: "h1"}},
		"Suspended already":              {status: vpoolv1alpha1.VirtualMachineStatus{PowerState: vpoolv1alpha1.PowerSuspended}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			st := backup.VMStatus{PowerState: vpoolv1alpha1.PowerSuspended, SuspendVirtualDisk: "vm3-suspend", Reason: backup.ReasonSuspendImageKept, Message: "m"}
			g.Expect(st.Pending(&tc.status)).To(Equal(tc.pending))
		})
	}
}

func TestVMStatusApply(t *testing.T) {
	g := NewWithT(t)
	at := time.Date(2026, 3, 1, 3, 0, 0, 0, time.UTC)
	status := vpoolv1alpha1.VirtualMachineStatus{PowerState: vpoolv1alpha1.PowerHalted, Conditions: []metav1.Condition{
		{Type: vpoolv1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: "Halted"}}}
	backup.VMStatus{PowerState: vpoolv1alpha1.PowerSuspended, SuspendVirtualDisk: "vm3-suspend", Reason: backup.ReasonSuspendImageKept,
		Message: "kept"}.Apply(&status, at)
	g.Expect(status.PowerState).To(Equal(vpoolv1alpha1.PowerSuspended))
	g.Expect(status.SuspendVirtualDisk).To(Equal("vm3-suspend"))
	g.Expect(status.Conditions).To(HaveLen(2), "the VM controller's conditions are kept")
	g.Expect(status.Conditions[1]).To(Equal(metav1.Condition{Type: backup.ConditionRestored, Status: metav1.ConditionTrue,
		Reason: backup.ReasonSuspendImageKept, Message: "kept", LastTransitionTime: metav1.NewTime(at)}))
}
