package backup

import (
	"fmt"
	"maps"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
)

// KindRecovery is the kind of a Recovery (the owner of a test failover's
// objects).
const KindRecovery = "Recovery"

// RecoveryTarget is where, and how, a Recovery recreates objects.
type RecoveryTarget struct {
	// Namespace and Pool: the recovery pool.
	Namespace, Pool string
	// Recovery and RecoveryUID name the Recovery: every object it creates
	// carries vpoolv1alpha1.LabelRecovery, and a test failover's objects are
	// owned by it.
	Recovery    string
	RecoveryUID types.UID
	// DryRun: a test failover; no VM gets spec.powerState Running (the
	// backup's value is kept in AnnotationRestoredPowerState) and no VDI
	// gets the volume of its backup (vpoolv1alpha1.AnnotationVolume).
	DryRun bool
	// PowerOn: a VM whose backup wants it Running gets Running.
	PowerOn bool
}

// RecoveryWork is what carrying out a written plan takes: the objects to
// create, kind by kind (SRs, then VDIs, then vApps, then VMs), the VMs to
// replace, and
// the status to write on recovered VMs that were Suspended.
type RecoveryWork struct {
	StorageRepositories []*vpoolv1alpha1.StorageRepository
	VirtualDisks        []*vpoolv1alpha1.VirtualDisk
	// VirtualAppliances are created before the VMs that name them.
	VirtualAppliances []*vpoolv1alpha1.VirtualAppliance
	VirtualMachines   []*vpoolv1alpha1.VirtualMachine
	// Replacements are VMs of the pool to update from a newer backup
	// (PreferNewer), by the existing VM's name.
	Replacements map[string]VMReplacement
	// VMStatuses is, by VM name, the status a recovered VM that was
	// Suspended in its backup starts with: kept Suspended on an image on a
	// shared SR, Halted when the image was on a local SR (lost with its host).
	// Such a VM is created Halted in spec and is never started by the
	// recovery.
	VMStatuses map[string]VMStatus
}

// VMReplacement is the newer record a replaced VM takes, and its source.
type VMReplacement struct {
	Record      VirtualMachineRecord
	Source      string
	CompletedAt time.Time
}

// RecoveryWorkFor is the work of carrying out items, a plan as written to
// status.plan, from sources (the records named by each item's source). It
// is a pure function: a Recovery resumed after a crash computes the same work
// again, and creates what is still missing. An item whose source or record
// is gone (a PoolBackup deleted since the plan) is an error.
func RecoveryWorkFor(items []vpoolv1alpha1.RecoveryItem, sources []RecoverySource, t RecoveryTarget) (*RecoveryWork, error) {
	bySource := make(map[string]*RecoverySource, len(sources))
	for i := range sources {
		bySource[sources[i].Backup] = &sources[i]
	}
	w := &RecoveryWork{Replacements: map[string]VMReplacement{}, VMStatuses: map[string]VMStatus{}}
	// The VDIs the plan brings (created or reused), for the suspend images.
	vdisInPlan := map[string]bool{}
	for _, it := range items {
		if it.Kind == KindVirtualDisk && (it.Action == vpoolv1alpha1.ActionCreate || it.Action == vpoolv1alpha1.ActionReuse) {
			vdisInPlan[it.Name] = true
		}
	}
	for _, it := range items {
		if it.Action != vpoolv1alpha1.ActionCreate && it.Action != vpoolv1alpha1.ActionReplace {
			continue
		}
		src := bySource[it.Source]
		if src == nil {
			return nil, fmt.Errorf("%s %s: its source, PoolBackup %s, is not among the Recovery's sources any more", it.Kind, it.Name, it.Source)
		}
		if err := w.add(it, src, t, vdisInPlan); err != nil {
			return nil, err
		}
	}
	return w, nil
}

// add adds the work of one Create or Replace item from src.
func (w *RecoveryWork) add(it vpoolv1alpha1.RecoveryItem, src *RecoverySource, t RecoveryTarget, vdisInPlan map[string]bool) error {
	meta := func(r RecordMeta) metav1.ObjectMeta { return t.meta(r, src) }
	switch it.Kind {
	case KindStorageRepository:
		rec, ok := find(src.Dump.StorageRepositories, func(r StorageRepositoryRecord) bool { return r.Metadata.Name == it.Name })
		if !ok {
			return missingRecord(it)
		}
		sr := &vpoolv1alpha1.StorageRepository{TypeMeta: typeMeta(KindStorageRepository), ObjectMeta: meta(rec.Metadata), Spec: *rec.Spec.DeepCopy()}
		sr.Spec.PoolRef.Name = t.Pool
		w.StorageRepositories = append(w.StorageRepositories, sr)
	case KindVirtualDisk:
		rec, ok := find(src.Dump.VirtualDisks, func(r VirtualDiskRecord) bool { return r.Metadata.Name == it.Name })
		if !ok {
			return missingRecord(it)
		}
		w.VirtualDisks = append(w.VirtualDisks, restoredVDI(&rec, meta(rec.Metadata), t.Pool, t.DryRun))
	case KindVirtualAppliance:
		rec, ok := find(src.Dump.VirtualAppliances, func(r VirtualApplianceRecord) bool { return r.Metadata.Name == it.Name })
		if !ok {
			return missingRecord(it)
		}
		app := &vpoolv1alpha1.VirtualAppliance{TypeMeta: typeMeta(KindVirtualAppliance), ObjectMeta: meta(rec.Metadata), Spec: *rec.Spec.DeepCopy()}
		app.Spec.PoolRef.Name = t.Pool
		w.VirtualAppliances = append(w.VirtualAppliances, app)
	case KindVirtualMachine:
		rec, ok := find(src.Dump.VirtualMachines, func(r VirtualMachineRecord) bool {
			return (it.UUID != "" && r.Status.UUID == it.UUID) || (it.UUID == "" && r.Metadata.Name == it.Name)
		})
		if !ok {
			return missingRecord(it)
		}
		if it.Action == vpoolv1alpha1.ActionReplace {
			w.Replacements[it.Name] = VMReplacement{Record: rec, Source: src.Backup, CompletedAt: src.CompletedAt}
			return nil
		}
		vm := &vpoolv1alpha1.VirtualMachine{TypeMeta: typeMeta(KindVirtualMachine), ObjectMeta: meta(rec.Metadata)}
		if rec.Status.UUID != "" {
			vm.Annotations[vpoolv1alpha1.AnnotationUUID] = rec.Status.UUID
		}
		suspended := suspendStatus(src, rec, vdisInPlan)
		t.ApplyRecord(vm, rec, suspended != nil)
		if suspended != nil {
			w.VMStatuses[vm.Name] = *suspended
		}
		w.VirtualMachines = append(w.VirtualMachines, vm)
	}
	return nil
}

// ApplyRecord sets vm's spec from rec, pointed at the recovery pool, with
// the power state the recovery gives it: the backup's, unless the recovery
// is a test failover (Halted, the backup's value in an annotation), powers
// nothing on, or the VM was Suspended (halted: a recovery never resumes one).
func (t RecoveryTarget) ApplyRecord(vm *vpoolv1alpha1.VirtualMachine, rec VirtualMachineRecord, suspended bool) {
	vm.Spec = *rec.Spec.DeepCopy()
	vm.Spec.PoolRef.Name = t.Pool
	if vm.Spec.PowerState == "" || vm.Spec.PowerState == vpoolv1alpha1.DesiredHalted {
		return
	}
	switch {
	case t.DryRun:
		if vm.Annotations == nil {
			vm.Annotations = map[string]string{}
		}
		vm.Annotations[AnnotationRestoredPowerState] = string(vm.Spec.PowerState)
		vm.Spec.PowerState = vpoolv1alpha1.DesiredHalted
	case !t.PowerOn || suspended:
		vm.Spec.PowerState = vpoolv1alpha1.DesiredHalted
	}
}

// Replace updates vm, a Halted VM of the pool, with the newer information of
// r (PreferNewer): its spec, and its labels and annotations merged over the
// VM's own. Its name, uuid and status are kept.
func (t RecoveryTarget) Replace(vm *vpoolv1alpha1.VirtualMachine, r VMReplacement) {
	src := &RecoverySource{Backup: r.Source, CompletedAt: r.CompletedAt}
	m := t.meta(r.Record.Metadata, src)
	if vm.Labels == nil {
		vm.Labels = map[string]string{}
	}
	if vm.Annotations == nil {
		vm.Annotations = map[string]string{}
	}
	maps.Copy(vm.Labels, m.Labels)
	maps.Copy(vm.Annotations, m.Annotations)
	t.ApplyRecord(vm, r.Record, false)
}

// meta is the metadata of an object recovered from src.
func (t RecoveryTarget) meta(r RecordMeta, src *RecoverySource) metav1.ObjectMeta {
	m := metav1.ObjectMeta{Name: r.Name, Namespace: t.Namespace, Labels: maps.Clone(r.Labels), Annotations: maps.Clone(r.Annotations)}
	if m.Labels == nil {
		m.Labels = map[string]string{}
	}
	if m.Annotations == nil {
		m.Annotations = map[string]string{}
	}
	m.Labels[vpoolv1alpha1.LabelRecovery] = t.Recovery
	m.Annotations[AnnotationRestoredFrom] = src.Backup
	m.Annotations[vpoolv1alpha1.AnnotationInformationFrom] = src.CompletedAt.UTC().Format(time.RFC3339)
	if t.DryRun {
		m.OwnerReferences = []metav1.OwnerReference{{
			APIVersion: vpoolv1alpha1.GroupVersion.String(), Kind: KindRecovery,
			Name: t.Recovery, UID: t.RecoveryUID, BlockOwnerDeletion: ptr.To(false),
		}}
	}
	return m
}

// suspendStatus is the status a VM Suspended in src starts with (see
// VMStatus), nil for any other VM; vdis are the VDIs the plan brings.
func suspendStatus(src *RecoverySource, rec VirtualMachineRecord, vdis map[string]bool) *VMStatus {
	if rec.Status.PowerState != vpoolv1alpha1.PowerSuspended {
		return nil
	}
	pl := &planner{d: src.Dump, plan: &RestorePlan{Backup: src.Backup},
		restored: map[string]map[string]bool{KindVirtualDisk: vdis}, skipped: map[string]map[string]bool{},
		srs: map[string]*StorageRepositoryRecord{}, vdis: map[string]*VirtualDiskRecord{}}
	for i := range src.Dump.StorageRepositories {
		pl.srs[src.Dump.StorageRepositories[i].Metadata.Name] = &src.Dump.StorageRepositories[i]
	}
	for i := range src.Dump.VirtualDisks {
		pl.vdis[src.Dump.VirtualDisks[i].Metadata.Name] = &src.Dump.VirtualDisks[i]
	}
	st, _ := pl.vmStatus(&rec)
	return st
}

func find[T any](s []T, match func(T) bool) (T, bool) {
	for _, v := range s {
		if match(v) {
			return v, true
		}
	}
	var zero T
	return zero, false
}

func missingRecord(it vpoolv1alpha1.RecoveryItem) error {
	return fmt.Errorf("%s %s: PoolBackup %s no longer has it", it.Kind, it.Name, it.Source)
}
