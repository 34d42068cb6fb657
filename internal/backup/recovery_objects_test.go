package backup_test

import (
	"testing"

	. "github.com/onsi/gomega"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/internal/backup"
)

func running(vm *backup.VirtualMachineRecord) { vm.Spec.PowerState = vpoolv1alpha1.DesiredRunning }

func suspendedOn(vdi string) func(*backup.VirtualMachineRecord) {
	return func(vm *backup.VirtualMachineRecord) {
		vm.Status.PowerState = vpoolv1alpha1.PowerSuspended
		vm.Status.SuspendVirtualDisk = vdi
	}
}

// The work of a written plan: objects pointed at the recovery pool, labelled
// with the Recovery, VMs with their uuid and the power state the recovery
// gives them, and Suspended VMs kept Suspended only on shared storage.
func TestRecoveryWorkFor(t *testing.T) {
	g := NewWithT(t)
	src := source("b", 0, rec("web", "u-web", "1Gi", "nfs", running),
		rec("db", "u-db", "1Gi", "local", running, suspendedOn("db-disk")),
		rec("cache", "u-cache", "1Gi", "nfs", suspendedOn("cache-disk")))
	src.Dump.StorageRepositories[0].Spec.Shared = true
	src.Dump.VirtualDisks[0].Status.Volume = "/srv/images/prod_web-disk"
	src.Dump.VirtualDisks[1].Metadata.Annotations = map[string]string{vpoolv1alpha1.AnnotationVolume: "/srv/images/prod_db-disk"}
	target := backup.RecoveryTarget{Namespace: "dr", Pool: "drpool", Recovery: "r", RecoveryUID: "uid-r", PowerOn: true}
	all := backup.RecoverySelection{VirtualMachines: []string{"web", "db", "cache"}}
	plan := backup.PlanRecovery([]backup.RecoverySource{src}, all, backup.RecoveryExisting{}, vpoolv1alpha1.ConflictsFail)

	w, err := backup.RecoveryWorkFor(plan.Items, []backup.RecoverySource{src}, target)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(w.StorageRepositories).To(HaveLen(2))
	g.Expect(w.VirtualDisks).To(HaveLen(3))
	byName := map[string]*vpoolv1alpha1.VirtualMachine{}
	for _, vm := range w.VirtualMachines {
		byName[vm.Name] = vm
		g.Expect(vm.Namespace).To(Equal("dr"))
		g.Expect(vm.Spec.PoolRef.Name).To(Equal("drpool"))
		g.Expect(vm.Labels).To(HaveKeyWithValue(vpoolv1alpha1.LabelRecovery, "r"))
		g.Expect(vm.Annotations).To(HaveKeyWithValue(vpoolv1alpha1.AnnotationUUID, "u-"+vm.Name))
		g.Expect(vm.Annotations).To(HaveKeyWithValue(backup.AnnotationRestoredFrom, "b"))
		g.Expect(vm.OwnerReferences).To(BeEmpty(), "only a test failover's objects are owned by the Recovery")
	}
	g.Expect(byName["web"].Spec.PowerState).To(Equal(vpoolv1alpha1.DesiredRunning))
	g.Expect(byName["db"].Spec.PowerState).To(Equal(vpoolv1alpha1.DesiredHalted), "a Suspended VM is never started")
	g.Expect(w.VMStatuses).To(HaveKeyWithValue("db", HaveField("Reason", backup.ReasonSuspendImageLost)))
	g.Expect(w.VMStatuses).To(HaveKeyWithValue("cache", And(HaveField("PowerState", vpoolv1alpha1.PowerSuspended),
		HaveField("SuspendVirtualDisk", "cache-disk"))))
	for _, sr := range w.StorageRepositories {
		g.Expect(sr.Spec.PoolRef.Name).To(Equal("drpool"))
	}
	volumes := map[string]string{}
	for _, vdi := range w.VirtualDisks {
		g.Expect(vdi.Spec.PoolRef.Name).To(Equal("drpool"))
		volumes[vdi.Name] = vdi.Annotations[vpoolv1alpha1.AnnotationVolume]
	}
	g.Expect(volumes).To(Equal(map[string]string{"web-disk": "/srv/images/prod_web-disk", "db-disk": "/srv/images/prod_db-disk",
		"cache-disk": ""}), "a recovered VDI carries the volume its backup recorded (or the annotation it kept), one without gets none")

	// A test failover: nothing runs, everything is owned by the Recovery.
	test := target
	test.DryRun = true
	w, err = backup.RecoveryWorkFor(plan.Items, []backup.RecoverySource{src}, test)
	g.Expect(err).NotTo(HaveOccurred())
	for _, vm := range w.VirtualMachines {
		g.Expect(vm.Spec.PowerState).NotTo(Equal(vpoolv1alpha1.DesiredRunning))
		g.Expect(vm.OwnerReferences).To(ConsistOf(HaveField("UID", BeEquivalentTo("uid-r"))))
	}
	g.Expect(w.VirtualDisks).To(HaveLen(3))
	for _, vdi := range w.VirtualDisks {
		g.Expect(vdi.Annotations).NotTo(HaveKey(vpoolv1alpha1.AnnotationVolume),
			"a test failover never attaches the volumes of the pool it tests (VDI %s)", vdi.Name)
	}
	g.Expect(w.VirtualMachines[len(w.VirtualMachines)-1].Annotations).To(HaveKey(backup.AnnotationRestoredPowerState))

	// powerOn false: recovered Halted.
	off := target
	off.PowerOn = false
	w, err = backup.RecoveryWorkFor(plan.Items, []backup.RecoverySource{src}, off)
	g.Expect(err).NotTo(HaveOccurred())
	for _, vm := range w.VirtualMachines {
		g.Expect(vm.Spec.PowerState).NotTo(Equal(vpoolv1alpha1.DesiredRunning))
	}

	// A source gone since the plan was written.
	_, err = backup.RecoveryWorkFor(plan.Items, nil, target)
	g.Expect(err).To(MatchError(ContainSubstring("its source, PoolBackup b, is not among the Recovery")))
}
