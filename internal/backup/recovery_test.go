package backup_test

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/labels"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/internal/backup"
)

var t0 = time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)

// vmRec is a VM record of uuid with one disk "<name>-disk" on SR sr, and
// memory as a mark of which backup it came from.
func vmRec(name, uuid, memory, sr string, mutate ...func(*backup.VirtualMachineRecord)) (
	backup.VirtualMachineRecord, backup.VirtualDiskRecord, backup.StorageRepositoryRecord) {
	vm := backup.VirtualMachineRecord{Metadata: backup.RecordMeta{Name: name}}
	q := resource.MustParse(memory)
	vm.Spec.Resources.Memory = &q
	vm.Spec.Disks = []vpoolv1alpha1.VMDisk{{Name: "root", VirtualDisk: name + "-disk", Mode: vpoolv1alpha1.DiskRW}}
	vm.Status.UUID = uuid
	for _, m := range mutate {
		m(&vm)
	}
	vdi := backup.VirtualDiskRecord{Metadata: backup.RecordMeta{Name: name + "-disk"}}
	vdi.Spec.StorageRepository = sr
	return vm, vdi, backup.StorageRepositoryRecord{Metadata: backup.RecordMeta{Name: sr}}
}

func source(name string, at time.Duration, recs ...func() (backup.VirtualMachineRecord, backup.VirtualDiskRecord, backup.StorageRepositoryRecord)) backup.RecoverySource {
	d := &backup.Dump{SchemaVersion: backup.SchemaVersion}
	srs := map[string]bool{}
	for _, r := range recs {
		vm, vdi, sr := r()
		d.VirtualMachines = append(d.VirtualMachines, vm)
		d.VirtualDisks = append(d.VirtualDisks, vdi)
		if !srs[sr.Metadata.Name] {
			srs[sr.Metadata.Name] = true
			d.StorageRepositories = append(d.StorageRepositories, sr)
		}
	}
	return backup.RecoverySource{Backup: name, CompletedAt: t0.Add(at), Dump: d}
}

func rec(name, uuid, memory, sr string, mutate ...func(*backup.VirtualMachineRecord)) func() (
	backup.VirtualMachineRecord, backup.VirtualDiskRecord, backup.StorageRepositoryRecord) {
	return func() (backup.VirtualMachineRecord, backup.VirtualDiskRecord, backup.StorageRepositoryRecord) {
		return vmRec(name, uuid, memory, sr, mutate...)
	}
}

func inApp(app string) func(*backup.VirtualMachineRecord) {
	return func(vm *backup.VirtualMachineRecord) {
		vm.Spec.ApplianceRef = &vpoolv1alpha1.LocalObjectReference{Name: app}
	}
}

// items is the plan as "Kind/name action source".
func items(p *backup.RecoveryPlan) []string {
	var out []string
	for _, it := range p.Items {
		out = append(out, it.Kind+"/"+it.Name+" "+string(it.Action)+" "+it.Source)
	}
	return out
}

// Across three backups each VM is recovered from the newest backup that
// has it, matched by uuid even when it was renamed; its VDI comes from
// that same backup, and an SR several need from the newest of them.
func TestPlanRecoveryNewestPerVM(t *testing.T) {
	g := NewWithT(t)
	monday := source("monday", 0, rec("web", "u-web", "1Gi", "nfs"), rec("db", "u-db", "4Gi", "nfs"), rec("old", "u-old", "1Gi", "nfs"))
	tuesday := source("tuesday", 24*time.Hour, rec("web", "u-web", "2Gi", "nfs"), rec("db", "u-db", "8Gi", "iscsi"))
	// Wednesday's backup is listed first but is not the newest for db: it
	// lacks db; web was renamed web2 there and is still the same VM.
	wednesday := source("wednesday", 48*time.Hour, rec("web2", "u-web", "3Gi", "nfs"))
	plan := backup.PlanRecovery([]backup.RecoverySource{wednesday, monday, tuesday},
		backup.RecoverySelection{VirtualMachines: []string{"web", "db", "old"}}, backup.RecoveryExisting{}, vpoolv1alpha1.ConflictsFail)
	g.Expect(items(plan)).To(Equal([]string{
		"VirtualMachine/db Create tuesday",
		"VirtualMachine/old Create monday",
		"VirtualMachine/web2 Create wednesday",
		"VirtualDisk/db-disk Create tuesday",
		"VirtualDisk/old-disk Create monday",
		"VirtualDisk/web2-disk Create wednesday",
		"StorageRepository/iscsi Create tuesday",
		"StorageRepository/nfs Create wednesday", // the newest backup that needs it
	}))
	mem := map[string]string{}
	for _, vm := range plan.VMs {
		mem[vm.Record.Metadata.Name] = vm.Record.Spec.Resources.Memory.String()
	}
	g.Expect(mem).To(Equal(map[string]string{"db": "8Gi", "old": "1Gi", "web2": "3Gi"}))
	g.Expect(plan.Items[0].SourceCompletedAt.Time).To(Equal(t0.Add(24 * time.Hour)))
	g.Expect(plan.Blocked(vpoolv1alpha1.ConflictsFail)).To(BeFalse())
}

// vApps and labels choose VMs too; what nobody chose is not recovered;
// VDIs and SRs the namespace has are reused, not recreated.
func TestPlanRecoverySelection(t *testing.T) {
	g := NewWithT(t)
	labelled := func(vm *backup.VirtualMachineRecord) { vm.Metadata.Labels = map[string]string{"tier": "gold"} }
	src := source("b", 0, rec("a1", "u1", "1Gi", "nfs", inApp("shop")), rec("a2", "u2", "1Gi", "nfs", inApp("shop")),
		rec("gold", "u3", "1Gi", "nfs", labelled), rec("other", "u4", "1Gi", "nfs"))
	plan := backup.PlanRecovery([]backup.RecoverySource{src}, backup.RecoverySelection{Appliances: []string{"shop"},
		Selector: labels.SelectorFromSet(labels.Set{"tier": "gold"})},
		backup.RecoveryExisting{VirtualDisks: map[string]bool{"a1-disk": true}, StorageRepos: map[string]bool{"nfs": true}},
		vpoolv1alpha1.ConflictsFail)
	g.Expect(items(plan)).To(Equal([]string{
		"VirtualMachine/a1 Create b", "VirtualMachine/a2 Create b", "VirtualMachine/gold Create b",
		"VirtualDisk/a1-disk Reuse b", "VirtualDisk/a2-disk Create b", "VirtualDisk/gold-disk Create b",
		"StorageRepository/nfs Reuse b",
	}))
	g.Expect(plan.VirtualDisks).To(HaveLen(2))
	g.Expect(plan.StorageRepositories).To(BeEmpty())
}

// A VM the pool already has: Fail blocks the whole plan, Skip leaves it,
// PreferNewer replaces it only when it is Halted and the backup is newer
// (failback); a VM of another uuid under the same name is never replaced.
func TestPlanRecoveryConflicts(t *testing.T) {
	src := source("dr-site", 10*time.Hour, rec("web", "u-web", "2Gi", "nfs"), rec("new", "u-new", "1Gi", "nfs"))
	for name, tc := range map[string]struct {
		mode     vpoolv1alpha1.RecoveryConflicts
		existing backup.ExistingVM
		want     vpoolv1alpha1.RecoveryAction
		message  string
		blocked  bool
	}{
		"Fail: same uuid": {mode: vpoolv1alpha1.ConflictsFail, want: vpoolv1alpha1.ActionConflict, blocked: true,
			existing: backup.ExistingVM{Name: "web", UUID: "u-web", PowerState: vpoolv1alpha1.PowerHalted, Since: t0},
			message:  "already has VM web"},
		"Skip: same uuid": {mode: vpoolv1alpha1.ConflictsSkip, want: vpoolv1alpha1.ActionSkip,
			existing: backup.ExistingVM{Name: "web", UUID: "u-web", PowerState: vpoolv1alpha1.PowerHalted, Since: t0},
			message:  "already has VM web"},
		"PreferNewer: Halted and older": {mode: vpoolv1alpha1.ConflictsPreferNewer, want: vpoolv1alpha1.ActionReplace,
			existing: backup.ExistingVM{Name: "web", UUID: "u-web", PowerState: vpoolv1alpha1.PowerHalted, Since: t0},
			message:  "replaces VM web, Halted"},
		"PreferNewer: Running": {mode: vpoolv1alpha1.ConflictsPreferNewer, want: vpoolv1alpha1.ActionSkip,
			existing: backup.ExistingVM{Name: "web", UUID: "u-web", PowerState: vpoolv1alpha1.PowerRunning, Since: t0},
			message:  "is Running: only a Halted VM is replaced"},
		"PreferNewer: Halted but newer": {mode: vpoolv1alpha1.ConflictsPreferNewer, want: vpoolv1alpha1.ActionSkip,
			existing: backup.ExistingVM{Name: "web", UUID: "u-web", PowerState: vpoolv1alpha1.PowerHalted, Since: t0.Add(11 * time.Hour)},
			message:  "not older than the backup"},
		"PreferNewer: another VM of the name": {mode: vpoolv1alpha1.ConflictsPreferNewer, want: vpoolv1alpha1.ActionSkip,
			existing: backup.ExistingVM{Name: "web", UUID: "u-other", PowerState: vpoolv1alpha1.PowerHalted, Since: t0},
			message:  "another VM named web"},
		"Fail: another VM of the name": {mode: vpoolv1alpha1.ConflictsFail, want: vpoolv1alpha1.ActionConflict, blocked: true,
			existing: backup.ExistingVM{Name: "web", UUID: "u-other", PowerState: vpoolv1alpha1.PowerHalted, Since: t0},
			message:  "another VM named web"},
	} {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			plan := backup.PlanRecovery([]backup.RecoverySource{src}, backup.RecoverySelection{VirtualMachines: []string{"web", "new"}},
				backup.RecoveryExisting{VMs: []backup.ExistingVM{tc.existing}, VirtualDisks: map[string]bool{"web-disk": true}}, tc.mode)
			g.Expect(plan.Items[0]).To(And(HaveField("Name", "new"), HaveField("Action", vpoolv1alpha1.ActionCreate)))
			g.Expect(plan.Items[1]).To(And(HaveField("Name", "web"), HaveField("Action", tc.want),
				HaveField("Message", ContainSubstring(tc.message))))
			g.Expect(plan.Blocked(tc.mode)).To(Equal(tc.blocked))
			replaced := tc.want == vpoolv1alpha1.ActionReplace
			g.Expect(plan.VMs).To(HaveLen(map[bool]int{true: 2, false: 1}[replaced]))
			if replaced {
				g.Expect(plan.VMs[1].Replace).To(BeTrue())
			}
		})
	}
}

// The vApps the recovered VMs name come with them, from the same backup,
// unless the namespace has them; a vApp in no backup is not invented; a VM
// this Recovery already recovered is reused, not a conflict.
func TestPlanRecoveryAppliances(t *testing.T) {
	g := NewWithT(t)
	src := source("b", 0, rec("a1", "u1", "1Gi", "nfs", inApp("shop")), rec("a2", "u2", "1Gi", "nfs", inApp("shop")),
		rec("c1", "u3", "1Gi", "nfs", inApp("crm")), rec("c2", "u5", "1Gi", "nfs", inApp("crm")),
		rec("g1", "u4", "1Gi", "nfs", inApp("ghost")))
	src.Dump.VirtualAppliances = []backup.VirtualApplianceRecord{{Metadata: backup.RecordMeta{Name: "crm"}},
		{Metadata: backup.RecordMeta{Name: "shop"}}}
	plan := backup.PlanRecovery([]backup.RecoverySource{src}, backup.RecoverySelection{Appliances: []string{"shop", "crm", "ghost"}},
		backup.RecoveryExisting{Appliances: map[string]bool{"crm": true},
			VMs: []backup.ExistingVM{{Name: "c1", UUID: "u3", Ours: true}}}, vpoolv1alpha1.ConflictsFail)
	g.Expect(items(plan)).To(ContainElements("VirtualAppliance/shop Create b", "VirtualAppliance/crm Reuse b",
		"VirtualMachine/c1 Reuse b"))
	g.Expect(items(plan)).NotTo(ContainElement(ContainSubstring("VirtualAppliance/ghost")))
	g.Expect(plan.Blocked(vpoolv1alpha1.ConflictsFail)).To(BeFalse())

	target := backup.RecoveryTarget{Namespace: "dr", Pool: "drpool", Recovery: "r", PowerOn: true}
	w, err := backup.RecoveryWorkFor(plan.Items, []backup.RecoverySource{src}, target)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(w.VirtualAppliances).To(ConsistOf(And(HaveField("Name", "shop"), HaveField("Spec.PoolRef.Name", "drpool"))))
}
