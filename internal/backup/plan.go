package backup

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
)

// AnnotationRestoredFrom marks every object a restore creates with the name
// of the PoolBackup it came from. A restore that resumes after a crash
// recognises its own objects by it (in the restoring pool) and does not count
// them as conflicts.
const AnnotationRestoredFrom = "vpool.poolkeeper.io/restored-from"

// AnnotationRestoredPowerState records, on a VM of a dry-run restore, the
// spec.powerState of the dump that the restore replaced with Halted.
const AnnotationRestoredPowerState = "vpool.poolkeeper.io/restored-power-state"

// ConditionRestored is the VirtualMachine condition a restore sets on a VM
// whose power state it had to decide: a Suspended VM kept Suspended on its
// surviving image, or Halted because the image is lost. Its reason and
// message say which and why. Other VMs come back as any new VM does.
const ConditionRestored = "Restored"

// Reasons of ConditionRestored.
const (
	// ReasonSuspendImageKept: the VM stays Suspended; its image is on a shared SR.
	ReasonSuspendImageKept = "SuspendImageKept"
	// ReasonSuspendImageLost: the VM is Halted; its image was on a local SR,
	// lost with its host.
	ReasonSuspendImageLost = "SuspendImageLost"
	// ReasonSuspendImageUnavailable: the VM is Halted; its image is not
	// recorded, not in the backup, or not restored.
	ReasonSuspendImageUnavailable = "SuspendImageUnavailable"
)

// VMStatus is the status a restore writes on a VM whose restored state is
// not the one every new VM gets (Halted, which the caller records right
// after the create, as the VM controller would on its first visit): a
// Suspended VM, kept Suspended or Halted, with ConditionRestored saying why.
type VMStatus struct {
	// PowerState is Suspended or Halted.
	PowerState vpoolv1alpha1.PowerState
	// SuspendVirtualDisk is the image of a VM kept Suspended.
	SuspendVirtualDisk string
	// Reason and Message of ConditionRestored.
	Reason, Message string
}

// Pending reports whether a VM's current status still lacks s and may take
// it: a new VM's status (resident nowhere, power state empty or the Halted
// the VM controller records on a new VM) without ConditionRestored. A status
// the pool has written since (a host, another power state) or this restore
// before a crash (the condition) is never overwritten.
func (s VMStatus) Pending(status *vpoolv1alpha1.VirtualMachineStatus) bool {
	return status.ResidentOn == "" &&
		(status.PowerState == "" || status.PowerState == vpoolv1alpha1.PowerHalted) &&
		apimeta.FindStatusCondition(status.Conditions, ConditionRestored) == nil
}

// Apply records s in status; now is the condition's transition time.
func (s VMStatus) Apply(status *vpoolv1alpha1.VirtualMachineStatus, now time.Time) {
	status.PowerState, status.SuspendVirtualDisk = s.PowerState, s.SuspendVirtualDisk
	apimeta.SetStatusCondition(&status.Conditions, metav1.Condition{Type: ConditionRestored, Status: metav1.ConditionTrue,
		Reason: s.Reason, Message: s.Message, LastTransitionTime: metav1.NewTime(now)})
}

// ExistingObject is an object of the target namespace with the name of one
// in the dump.
type ExistingObject struct {
	// Pool is its spec.poolRef.name ("" for a Secret).
	Pool string
	// RestoredFrom is its AnnotationRestoredFrom annotation, if any.
	RestoredFrom string
}

// Existing lists, per kind and by name, the objects already present in the
// namespace a pool is restored into, whatever pool they belong to. Secrets
// are optional (leave Secrets nil when they were not looked up): a restore
// creates a Secret only when it is absent and never counts one as a conflict.
type Existing struct {
	// Hosts by name.
	Hosts map[string]ExistingObject
	// StorageRepositories by name.
	StorageRepositories map[string]ExistingObject
	// VirtualDisks by name.
	VirtualDisks map[string]ExistingObject
	// VirtualMachines by name.
	VirtualMachines map[string]ExistingObject
	// VirtualAppliances by name (add them with Add).
	VirtualAppliances map[string]ExistingObject
	// Secrets by name.
	Secrets map[string]ExistingObject
}

// ExistingFrom builds Existing from the lists of the target namespace.
func ExistingFrom(hosts []vpoolv1alpha1.Host, srs []vpoolv1alpha1.StorageRepository,
	vdis []vpoolv1alpha1.VirtualDisk, vms []vpoolv1alpha1.VirtualMachine) Existing {
	var e Existing
	for i := range hosts {
		e.Add(&hosts[i])
	}
	for i := range srs {
		e.Add(&srs[i])
	}
	for i := range vdis {
		e.Add(&vdis[i])
	}
	for i := range vms {
		e.Add(&vms[i])
	}
	return e
}

// Add records objects of the target namespace: Hosts, StorageRepositories,
// VirtualDisks, VirtualMachines, VirtualAppliances and Secrets; other kinds
// are ignored.
func (e *Existing) Add(objs ...client.Object) {
	put := func(m *map[string]ExistingObject, obj client.Object, pool string) {
		if *m == nil {
			*m = map[string]ExistingObject{}
		}
		(*m)[obj.GetName()] = ExistingObject{Pool: pool, RestoredFrom: obj.GetAnnotations()[AnnotationRestoredFrom]}
	}
	for _, obj := range objs {
		switch o := obj.(type) {
		case *vpoolv1alpha1.Host:
			put(&e.Hosts, o, o.Spec.PoolRef.Name)
		case *vpoolv1alpha1.StorageRepository:
			put(&e.StorageRepositories, o, o.Spec.PoolRef.Name)
		case *vpoolv1alpha1.VirtualDisk:
			put(&e.VirtualDisks, o, o.Spec.PoolRef.Name)
		case *vpoolv1alpha1.VirtualMachine:
			put(&e.VirtualMachines, o, o.Spec.PoolRef.Name)
		case *vpoolv1alpha1.VirtualAppliance:
			put(&e.VirtualAppliances, o, o.Spec.PoolRef.Name)
		case *corev1.Secret:
			put(&e.Secrets, o, "")
		}
	}
}

func (e *Existing) of(kind string) map[string]ExistingObject {
	switch kind {
	case KindHost:
		return e.Hosts
	case KindStorageRepository:
		return e.StorageRepositories
	case KindVirtualDisk:
		return e.VirtualDisks
	case KindVirtualMachine:
		return e.VirtualMachines
	case KindVirtualAppliance:
		return e.VirtualAppliances
	case KindSecret:
		return e.Secrets
	}
	return nil
}

// RestorePlan is what restoring a dump into a pool does
// (pool-restore-database), computed before anything is written.
//
// The caller creates, in this order, Secrets, StorageRepositories,
// VirtualDisks, VirtualAppliances, VirtualMachines and Hosts (Objects lists
// them so):
//   - VirtualDisks name their SR and VMs name their disks and their vApp, so
//     each object is created after what it refers to and no controller sees
//     a dangling reference it would report or act on;
//   - VMs are created resident nowhere and recorded Halted right after the
//     create (a create cannot set a status), as the VM controller records
//     any new VM; the few VMs that need more (VMStatuses: Suspended VMs) get
//     it written before the first Host exists: a Host may go Live as soon as
//     its agent heartbeats, and the pool must then find its whole database
//     rather than a half-restored one to place VMs from;
//   - Secrets come first because Hosts name their BMC credentials.
//
// Objects of one kind do not refer to each other: each kind may be created
// in parallel, as long as it is complete before the next one starts.
//
// A create that fails with AlreadyExists is a conflict that appeared after
// the plan was made: the caller reports it and, in Strict mode, stops. To
// resume after a crash, the caller makes a new plan: objects it created
// before carry AnnotationRestoredFrom and are listed in AlreadyRestored.
type RestorePlan struct {
	// Backup is the PoolBackup restored (target.spec.restoreFrom.backupName).
	Backup string
	// Mode is Strict or BestEffort.
	Mode vpoolv1alpha1.RestoreMode
	// DryRun is a DR test failover (target.spec.restoreFrom.dryRun): nothing
	// is started and everything created is owned by the target Pool, so it is
	// removed with it.
	DryRun bool

	// SourceNamespace and SourcePool name the pool the dump was taken of.
	SourceNamespace, SourcePool string
	// TakenAt is the dump's point in time.
	TakenAt time.Time
	// SourceMaster is the master at the dump's point in time: a hint for the
	// restored pool's first master.
	SourceMaster string
	// Settings are the pool settings the target takes from the dump: those
	// its spec leaves unset (see Settings); nil when none. The caller records
	// them in status.restoredSettings.
	Settings *vpoolv1alpha1.PoolSettings
	// MinEpoch is the lowest epoch the restored pool may use: one above the
	// dump's, so that any agent still following the old pool learns it is
	// out of date.
	MinEpoch int64

	// Secrets to create: the hosts' BMC credentials, when the namespace lacks
	// them. A Secret is never overwritten: a create that fails with
	// AlreadyExists keeps the existing Secret and is not a conflict.
	Secrets []*corev1.Secret
	// StorageRepositories to create.
	StorageRepositories []*vpoolv1alpha1.StorageRepository
	// VirtualDisks to create, without locks.
	VirtualDisks []*vpoolv1alpha1.VirtualDisk
	// VirtualAppliances to create (vApps), pointed at the restoring pool,
	// before the VMs that name them.
	VirtualAppliances []*vpoolv1alpha1.VirtualAppliance
	// VirtualMachines to create; the caller records them Halted, resident
	// nowhere, as any new VM.
	VirtualMachines []*vpoolv1alpha1.VirtualMachine
	// VMStatuses is, by VM name, the status to write with the status
	// subresource on the VMs of the restore (created now or by this restore
	// before a crash) that were Suspended: kept Suspended on a surviving
	// image, or Halted because it is lost. The caller writes it after
	// creating the VM and before creating any Host, and only while
	// VMStatus.Pending: a status the pool has written since is never
	// overwritten.
	VMStatuses map[string]VMStatus
	// Hosts to create. They rejoin the pool when their agents heartbeat.
	Hosts []*vpoolv1alpha1.Host

	// AlreadyRestored lists objects this restore created before (a resume).
	AlreadyRestored []Problem
	// Conflicts lists objects of the dump whose name is taken in the
	// namespace (by another pool, or by an object of the target pool that
	// this restore did not create), and objects that refer to an object of
	// another pool. Strict: the plan is Blocked and creates nothing.
	// BestEffort: they are skipped.
	Conflicts []Problem
	// Skipped lists, in BestEffort mode, objects left out because they depend
	// on a conflicting or skipped object (a VDI on a skipped SR would
	// otherwise name another pool's SR; a VM would attach another pool's disk).
	Skipped []Problem
	// Notes explain what the restore changed or could not check, per object
	// (a Suspended VM reset to Halted, a reference to an object that is
	// nowhere).
	Notes []Problem
}

// Blocked is true when the plan must not be carried out: a Strict restore
// with conflicts. A blocked plan lists no objects to create.
func (p *RestorePlan) Blocked() bool {
	return p.Mode == vpoolv1alpha1.RestoreStrict && len(p.Conflicts) > 0
}

// Err is nil unless the plan is Blocked; then it wraps ErrConflict and lists
// the conflicts (at most SummaryLimit).
func (p *RestorePlan) Err() error {
	if !p.Blocked() {
		return nil
	}
	return fmt.Errorf("%w: %d objects of backup %s conflict with the namespace, nothing was restored (Strict): %s",
		ErrConflict, len(p.Conflicts), p.Backup, Summarize(p.Conflicts, SummaryLimit))
}

// Objects lists the objects to create in creation order.
func (p *RestorePlan) Objects() []client.Object {
	objs := make([]client.Object, 0, len(p.Secrets)+len(p.StorageRepositories)+len(p.VirtualDisks)+
		len(p.VirtualAppliances)+len(p.VirtualMachines)+len(p.Hosts))
	for _, o := range p.Secrets {
		objs = append(objs, o)
	}
	for _, o := range p.StorageRepositories {
		objs = append(objs, o)
	}
	for _, o := range p.VirtualDisks {
		objs = append(objs, o)
	}
	for _, o := range p.VirtualAppliances {
		objs = append(objs, o)
	}
	for _, o := range p.VirtualMachines {
		objs = append(objs, o)
	}
	for _, o := range p.Hosts {
		objs = append(objs, o)
	}
	return objs
}

// Summary describes the plan in a few lines fit for a condition message:
// what it creates, and at most SummaryLimit conflicts, skipped objects and
// notes each.
func (p *RestorePlan) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "backup %s of pool %s/%s taken at %s", p.Backup, p.SourceNamespace, p.SourcePool, p.TakenAt.UTC().Format(time.RFC3339))
	if p.DryRun {
		b.WriteString(" (dry run)")
	}
	if p.Blocked() {
		fmt.Fprintf(&b, ": blocked by %d conflicts, nothing restored (Strict): %s", len(p.Conflicts), Summarize(p.Conflicts, SummaryLimit))
		return b.String()
	}
	fmt.Fprintf(&b, ": creating %d StorageRepositories, %d VirtualDisks, %d VirtualMachines, %d Hosts, %d Secrets",
		len(p.StorageRepositories), len(p.VirtualDisks), len(p.VirtualMachines), len(p.Hosts), len(p.Secrets))
	if n := len(p.VirtualAppliances); n > 0 {
		fmt.Fprintf(&b, ", %d VirtualAppliances", n)
	}
	if n := len(p.AlreadyRestored); n > 0 {
		fmt.Fprintf(&b, "; %d already restored", n)
	}
	if n := len(p.Conflicts); n > 0 {
		fmt.Fprintf(&b, ". Skipped %d conflicting objects: %s", n, Summarize(p.Conflicts, SummaryLimit))
	}
	if n := len(p.Skipped); n > 0 {
		fmt.Fprintf(&b, ". Skipped %d dependent objects: %s", n, Summarize(p.Skipped, SummaryLimit))
	}
	if n := len(p.Notes); n > 0 {
		fmt.Fprintf(&b, ". Notes (%d): %s", n, Summarize(p.Notes, SummaryLimit))
	}
	return b.String()
}

// Plan computes how to restore d into target, a Pool whose spec.restoreFrom
// names the backup, given the objects already in its namespace. It writes
// nothing. Every object is re-pointed at target (spec.poolRef.name), keeps
// its name, labels, annotations and spec, and gets AnnotationRestoredFrom.
// VDIs come without locks, annotated with the volume the backup records
// (vpoolv1alpha1.AnnotationVolume; see restoredVDI); VMs come Halted, resident nowhere, as any new VM,
// except a Suspended VM whose suspend image is on a shared SR of the dump,
// which stays Suspended (the image survived); one whose image was on a local
// SR is Halted, as xe vm-reset-powerstate would after pool-restore-database,
// with a note and ConditionRestored saying why (VMStatuses).
//
// An object of the dump conflicts when one of its kind and name exists in
// the namespace, unless it belongs to target and carries this backup's
// AnnotationRestoredFrom (created by this restore before a crash). A restore
// never overwrites: in Strict mode any conflict blocks the whole plan, in
// BestEffort mode conflicting objects, and those depending on them, are
// skipped and reported. A Secret that already exists is kept, with a note.
//
// A dry run (DR test failover) starts nothing: VMs get spec.powerState
// Halted (the dump's value kept in AnnotationRestoredPowerState), hosts get
// Manual fencing, so a test can never fence the production hosts it names,
// VDIs get no volume annotation, so that it never attaches the production
// volumes, and no Secrets are created; every object is owned by target.
//
// mode overrides target.spec.restoreFrom.mode; empty means Strict.
func Plan(d *Dump, target *vpoolv1alpha1.Pool, existing Existing, mode vpoolv1alpha1.RestoreMode) (*RestorePlan, error) {
	if d == nil {
		return nil, errors.New("planning a restore: no dump")
	}
	if target == nil || target.Spec.RestoreFrom == nil {
		return nil, errors.New("planning a restore: the target Pool has no spec.restoreFrom")
	}
	switch mode {
	case "":
		mode = vpoolv1alpha1.RestoreStrict
	case vpoolv1alpha1.RestoreStrict, vpoolv1alpha1.RestoreBestEffort:
	default:
		return nil, fmt.Errorf("planning a restore: unknown mode %q (Strict or BestEffort)", mode)
	}
	rf := target.Spec.RestoreFrom
	if rf.DryRun && target.UID == "" {
		return nil, fmt.Errorf("planning a dry-run restore: Pool %s has no UID to own the restored objects", target.Name)
	}
	pl := &planner{
		d: d, target: target, existing: existing,
		plan: &RestorePlan{
			Backup: rf.BackupName, Mode: mode, DryRun: rf.DryRun,
			SourceNamespace: d.Namespace, SourcePool: d.Pool.Metadata.Name, TakenAt: d.TakenAt,
			SourceMaster: d.Pool.Status.Master, MinEpoch: d.Pool.Status.Epoch + 1,
			Settings:   Settings(d, &target.Spec),
			VMStatuses: map[string]VMStatus{},
		},
		restored: map[string]map[string]bool{},
		skipped:  map[string]map[string]bool{},
		srs:      make(map[string]*StorageRepositoryRecord, len(d.StorageRepositories)),
		vdis:     make(map[string]*VirtualDiskRecord, len(d.VirtualDisks)),
		secrets:  make(map[string]bool, len(d.Secrets)),
	}
	for i := range d.StorageRepositories {
		pl.srs[d.StorageRepositories[i].Metadata.Name] = &d.StorageRepositories[i]
	}
	for i := range d.VirtualDisks {
		pl.vdis[d.VirtualDisks[i].Metadata.Name] = &d.VirtualDisks[i]
	}
	// Decide kinds in dependency order, so that a reference is always to an
	// object already decided: Secrets, Hosts, SRs, VDIs, vApps, VMs.
	pl.planSecrets()
	pl.planHosts()
	pl.planStorageRepositories()
	pl.planVirtualDisks()
	pl.planVirtualAppliances()
	pl.planVirtualMachines()

	p := pl.plan
	for _, ps := range [][]Problem{p.AlreadyRestored, p.Conflicts, p.Skipped, p.Notes} {
		sortProblems(ps)
	}
	if p.Blocked() {
		p.Secrets, p.StorageRepositories, p.VirtualDisks, p.VirtualMachines, p.Hosts = nil, nil, nil, nil, nil
		p.VirtualAppliances = nil
		p.VMStatuses = nil
	}
	return p, nil
}

// planner holds what Plan has decided so far.
type planner struct {
	d        *Dump
	target   *vpoolv1alpha1.Pool
	existing Existing
	plan     *RestorePlan

	// restored[kind][name]: the object will be in the target pool (created
	// now or by this restore before); skipped[kind][name]: it will not.
	restored, skipped map[string]map[string]bool
	srs               map[string]*StorageRepositoryRecord
	vdis              map[string]*VirtualDiskRecord
	secrets           map[string]bool // in the dump
}

// admit decides whether the object kind/name of the dump is created: false
// with a conflict recorded when its name is taken, false when this restore
// created it before.
func (pl *planner) admit(kind, name string) bool {
	ex, found := pl.existing.of(kind)[name]
	switch {
	case !found:
		return true
	case ex.Pool == pl.target.Name && ex.RestoredFrom == pl.plan.Backup:
		pl.mark(pl.restored, kind, name)
		pl.plan.AlreadyRestored = append(pl.plan.AlreadyRestored, Problem{Kind: kind, Name: name,
			Message: "already restored from backup " + pl.plan.Backup})
		return false
	case ex.Pool == pl.target.Name:
		pl.conflict(kind, name, fmt.Sprintf("a %s of that name already exists in pool %s and was not created by this restore; a restore never overwrites it", kind, ex.Pool))
	case ex.Pool == "":
		pl.conflict(kind, name, fmt.Sprintf("a %s of that name already exists in the namespace", kind))
	default:
		pl.conflict(kind, name, fmt.Sprintf("a %s of that name already exists in pool %s", kind, ex.Pool))
	}
	return false
}

func (pl *planner) conflict(kind, name, msg string) {
	pl.mark(pl.skipped, kind, name)
	pl.plan.Conflicts = append(pl.plan.Conflicts, Problem{Kind: kind, Name: name, Message: msg})
}

// skip leaves out an object that depends on one that is not restored. Only
// BestEffort reports it: a Strict restore with conflicts creates nothing.
func (pl *planner) skip(kind, name, msg string) {
	pl.mark(pl.skipped, kind, name)
	if pl.plan.Mode == vpoolv1alpha1.RestoreBestEffort {
		pl.plan.Skipped = append(pl.plan.Skipped, Problem{Kind: kind, Name: name, Message: msg})
	}
}

func (pl *planner) note(kind, name, msg string) {
	pl.plan.Notes = append(pl.plan.Notes, Problem{Kind: kind, Name: name, Message: msg})
}

func (pl *planner) mark(m map[string]map[string]bool, kind, name string) {
	if m[kind] == nil {
		m[kind] = map[string]bool{}
	}
	m[kind][name] = true
}

// refState is what a reference from a restored object to kind/name resolves to.
type refState int

const (
	// refOK: the object will be in the target pool.
	refOK refState = iota
	// refSkipped: the object is in the dump but will not be restored.
	refSkipped
	// refForeign: the name is another pool's object.
	refForeign
	// refMissing: the object is neither in the dump nor in the namespace.
	refMissing
)

func (pl *planner) ref(kind, name string) (refState, string) {
	if pl.skipped[kind][name] {
		return refSkipped, ""
	}
	if pl.restored[kind][name] {
		return refOK, ""
	}
	if ex, found := pl.existing.of(kind)[name]; found {
		if ex.Pool == pl.target.Name {
			return refOK, ""
		}
		return refForeign, ex.Pool
	}
	return refMissing, ""
}

// meta builds the metadata of a restored object.
func (pl *planner) meta(r RecordMeta) metav1.ObjectMeta {
	m := metav1.ObjectMeta{
		Name:        r.Name,
		Namespace:   pl.target.Namespace,
		Labels:      maps.Clone(r.Labels),
		Annotations: maps.Clone(r.Annotations),
	}
	if m.Annotations == nil {
		m.Annotations = map[string]string{}
	}
	m.Annotations[AnnotationRestoredFrom] = pl.plan.Backup
	if pl.plan.DryRun {
		m.OwnerReferences = []metav1.OwnerReference{{
			APIVersion: vpoolv1alpha1.GroupVersion.String(), Kind: KindPool,
			Name: pl.target.Name, UID: pl.target.UID, BlockOwnerDeletion: ptr.To(false),
		}}
	}
	return m
}

func typeMeta(kind string) metav1.TypeMeta {
	return metav1.TypeMeta{APIVersion: vpoolv1alpha1.GroupVersion.String(), Kind: kind}
}

func (pl *planner) planSecrets() {
	for i := range pl.d.Secrets {
		rec := &pl.d.Secrets[i]
		name := rec.Metadata.Name
		pl.secrets[name] = true
		if pl.plan.DryRun {
			continue
		}
		if ex, found := pl.existing.Secrets[name]; found {
			if ex.RestoredFrom == pl.plan.Backup {
				pl.plan.AlreadyRestored = append(pl.plan.AlreadyRestored, Problem{Kind: KindSecret, Name: name,
					Message: "already restored from backup " + pl.plan.Backup})
			} else {
				pl.note(KindSecret, name, "already exists; kept as it is, not overwritten with the backup's copy")
			}
			continue
		}
		s := &corev1.Secret{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: KindSecret}, ObjectMeta: pl.meta(rec.Metadata), Type: rec.Type}
		if len(rec.Data) > 0 {
			s.Data = make(map[string][]byte, len(rec.Data))
			for k, v := range rec.Data {
				s.Data[k] = slices.Clone(v)
			}
		}
		pl.plan.Secrets = append(pl.plan.Secrets, s)
	}
	if pl.plan.DryRun && len(pl.d.Secrets) > 0 {
		pl.note(KindPool, pl.target.Name, fmt.Sprintf("dry run: the backup's %d Secrets (BMC credentials) are not restored", len(pl.d.Secrets)))
	}
}

func (pl *planner) planHosts() {
	manual := 0
	for i := range pl.d.Hosts {
		rec := &pl.d.Hosts[i]
		name := rec.Metadata.Name
		if !pl.admit(KindHost, name) {
			continue
		}
		pl.mark(pl.restored, KindHost, name)
		h := &vpoolv1alpha1.Host{TypeMeta: typeMeta(KindHost), ObjectMeta: pl.meta(rec.Metadata), Spec: *rec.Spec.DeepCopy()}
		h.Spec.PoolRef.Name = pl.target.Name
		if pl.plan.DryRun {
			if h.Spec.Fencing.Method != vpoolv1alpha1.FencingManual {
				manual++
			}
			h.Spec.Fencing = vpoolv1alpha1.HostFencing{Method: vpoolv1alpha1.FencingManual}
		} else if rf := h.Spec.Fencing.Redfish; rf != nil {
			secret := rf.CredentialsSecretRef.Name
			_, found := pl.existing.Secrets[secret]
			switch {
			case found || pl.secrets[secret]:
			case pl.existing.Secrets != nil:
				pl.note(KindHost, name, fmt.Sprintf("its BMC credentials Secret %s is neither in the backup nor in the namespace: Redfish fencing fails until it is created", secret))
			default:
				pl.note(KindHost, name, fmt.Sprintf("its BMC credentials Secret %s is not in the backup: Redfish fencing needs it in the namespace", secret))
			}
		}
		pl.plan.Hosts = append(pl.plan.Hosts, h)
	}
	if manual > 0 {
		pl.note(KindPool, pl.target.Name, fmt.Sprintf("dry run: %d hosts get Manual fencing, so that the test can never fence the hosts it names", manual))
	}
}

func (pl *planner) planStorageRepositories() {
	for i := range pl.d.StorageRepositories {
		rec := &pl.d.StorageRepositories[i]
		name := rec.Metadata.Name
		if !pl.admit(KindStorageRepository, name) {
			continue
		}
		if !rec.Spec.Shared && rec.Spec.Host != "" {
			switch st, pool := pl.ref(KindHost, rec.Spec.Host); st {
			case refSkipped:
				pl.skip(KindStorageRepository, name, fmt.Sprintf("local SR of Host %s, which is not restored", rec.Spec.Host))
				continue
			case refForeign:
				pl.conflict(KindStorageRepository, name, fmt.Sprintf("local SR of Host %s, which belongs to pool %s", rec.Spec.Host, pool))
				continue
			case refMissing:
				pl.note(KindStorageRepository, name, fmt.Sprintf("local SR of Host %s, which is neither in the backup nor in the namespace", rec.Spec.Host))
			}
		}
		pl.mark(pl.restored, KindStorageRepository, name)
		sr := &vpoolv1alpha1.StorageRepository{TypeMeta: typeMeta(KindStorageRepository), ObjectMeta: pl.meta(rec.Metadata), Spec: *rec.Spec.DeepCopy()}
		sr.Spec.PoolRef.Name = pl.target.Name
		pl.plan.StorageRepositories = append(pl.plan.StorageRepositories, sr)
	}
}

func (pl *planner) planVirtualDisks() {
	withoutVolume := 0
	for i := range pl.d.VirtualDisks {
		rec := &pl.d.VirtualDisks[i]
		name := rec.Metadata.Name
		if !pl.admit(KindVirtualDisk, name) {
			continue
		}
		switch st, pool := pl.ref(KindStorageRepository, rec.Spec.StorageRepository); st {
		case refSkipped:
			pl.skip(KindVirtualDisk, name, fmt.Sprintf("its StorageRepository %s is not restored", rec.Spec.StorageRepository))
			continue
		case refForeign:
			pl.conflict(KindVirtualDisk, name, fmt.Sprintf("its StorageRepository %s belongs to pool %s", rec.Spec.StorageRepository, pool))
			continue
		case refMissing:
			pl.note(KindVirtualDisk, name, fmt.Sprintf("its StorageRepository %s is neither in the backup nor in the namespace", rec.Spec.StorageRepository))
		}
		pl.mark(pl.restored, KindVirtualDisk, name)
		if pl.plan.DryRun && hasVolume(rec) {
			withoutVolume++
		}
		pl.plan.VirtualDisks = append(pl.plan.VirtualDisks, restoredVDI(rec, pl.meta(rec.Metadata), pl.target.Name, pl.plan.DryRun))
	}
	if withoutVolume > 0 {
		pl.note(KindPool, pl.target.Name, fmt.Sprintf("dry run: %d VirtualDisks are not given the volume the backup records (annotation %s), "+
			"so that nothing of the test attaches the volumes of the pool it tests", withoutVolume, vpoolv1alpha1.AnnotationVolume))
	}
}

// restoredVDI is the VirtualDisk recreated from rec with meta, in pool:
// unlocked (a new object has no status), and given the volume its data is
// in (vpoolv1alpha1.AnnotationVolume), so that its agent attaches that
// volume rather than a new, empty one of the VDI's name in its new
// namespace: the backup's status.volume, else the annotation the VDI
// carried in the backup (recreated itself, and not attached since). A test
// failover gives it none, and drops the one the backup carried: nothing of
// a test may attach the volumes of the pool it tests, which may still be
// running on them.
func restoredVDI(rec *VirtualDiskRecord, meta metav1.ObjectMeta, pool string, testFailover bool) *vpoolv1alpha1.VirtualDisk {
	vdi := &vpoolv1alpha1.VirtualDisk{TypeMeta: typeMeta(KindVirtualDisk), ObjectMeta: meta, Spec: *rec.Spec.DeepCopy()}
	vdi.Spec.PoolRef.Name = pool
	switch {
	case testFailover:
		delete(vdi.Annotations, vpoolv1alpha1.AnnotationVolume)
	case rec.Status.Volume != "":
		if vdi.Annotations == nil {
			vdi.Annotations = map[string]string{}
		}
		vdi.Annotations[vpoolv1alpha1.AnnotationVolume] = rec.Status.Volume
	}
	return vdi
}

// hasVolume says whether the backup knows the volume of the VDI of rec.
func hasVolume(rec *VirtualDiskRecord) bool {
	return rec.Status.Volume != "" || rec.Metadata.Annotations[vpoolv1alpha1.AnnotationVolume] != ""
}

// planVirtualAppliances recreates the dump's vApps pointed at the target,
// as SRs are: a vApp refers to nothing but its pool.
func (pl *planner) planVirtualAppliances() {
	for i := range pl.d.VirtualAppliances {
		rec := &pl.d.VirtualAppliances[i]
		name := rec.Metadata.Name
		if !pl.admit(KindVirtualAppliance, name) {
			continue
		}
		pl.mark(pl.restored, KindVirtualAppliance, name)
		app := &vpoolv1alpha1.VirtualAppliance{TypeMeta: typeMeta(KindVirtualAppliance), ObjectMeta: pl.meta(rec.Metadata), Spec: *rec.Spec.DeepCopy()}
		app.Spec.PoolRef.Name = pl.target.Name
		pl.plan.VirtualAppliances = append(pl.plan.VirtualAppliances, app)
	}
}

func (pl *planner) planVirtualMachines() {
	halted := 0
vms:
	for i := range pl.d.VirtualMachines {
		rec := &pl.d.VirtualMachines[i]
		name := rec.Metadata.Name
		if !pl.admit(KindVirtualMachine, name) {
			if pl.restored[KindVirtualMachine][name] {
				pl.setVMStatus(rec)
			}
			continue
		}
		for _, disk := range rec.Spec.Disks {
			switch st, pool := pl.ref(KindVirtualDisk, disk.VirtualDisk); st {
			case refSkipped:
				pl.skip(KindVirtualMachine, name, fmt.Sprintf("its disk %s (VirtualDisk %s) is not restored", disk.Name, disk.VirtualDisk))
				continue vms
			case refForeign:
				pl.conflict(KindVirtualMachine, name, fmt.Sprintf("its disk %s is VirtualDisk %s of pool %s", disk.Name, disk.VirtualDisk, pool))
				continue vms
			case refMissing:
				pl.note(KindVirtualMachine, name, fmt.Sprintf("its disk %s (VirtualDisk %s) is neither in the backup nor in the namespace", disk.Name, disk.VirtualDisk))
			}
		}
		if !pl.applianceRef(rec) {
			continue
		}
		if h := rec.Spec.Affinity.Host; h != "" {
			if st, _ := pl.ref(KindHost, h); st != refOK {
				pl.note(KindVirtualMachine, name, fmt.Sprintf("its preferred host %s is not part of the restored pool", h))
			}
		}
		vm := &vpoolv1alpha1.VirtualMachine{TypeMeta: typeMeta(KindVirtualMachine), ObjectMeta: pl.meta(rec.Metadata), Spec: *rec.Spec.DeepCopy()}
		if rec.Status.UUID != "" {
			vm.Annotations[vpoolv1alpha1.AnnotationUUID] = rec.Status.UUID // the VM keeps its identity
		}
		vm.Spec.PoolRef.Name = pl.target.Name
		if pl.plan.DryRun && vm.Spec.PowerState != vpoolv1alpha1.DesiredHalted && vm.Spec.PowerState != "" {
			vm.Annotations[AnnotationRestoredPowerState] = string(vm.Spec.PowerState)
			vm.Spec.PowerState = vpoolv1alpha1.DesiredHalted
			halted++
		}
		pl.setVMStatus(rec)
		pl.mark(pl.restored, KindVirtualMachine, name)
		pl.plan.VirtualMachines = append(pl.plan.VirtualMachines, vm)
	}
	if halted > 0 {
		pl.note(KindPool, pl.target.Name, fmt.Sprintf("dry run: %d VMs get spec.powerState Halted so that none starts (the backup's value is in annotation %s)",
			halted, AnnotationRestoredPowerState))
	}
}

// applianceRef checks the vApp a VM of the dump names: a VM whose vApp is
// another pool's conflicts, one whose vApp is not restored is skipped (it
// would not start: it would name another pool's vApp, or none). A vApp
// found nowhere gets a note: the VM waits until it exists.
func (pl *planner) applianceRef(rec *VirtualMachineRecord) bool {
	ref := rec.Spec.ApplianceRef
	if ref == nil {
		return true
	}
	name := rec.Metadata.Name
	switch st, pool := pl.ref(KindVirtualAppliance, ref.Name); st {
	case refSkipped:
		pl.skip(KindVirtualMachine, name, fmt.Sprintf("its VirtualAppliance %s is not restored", ref.Name))
		return false
	case refForeign:
		pl.conflict(KindVirtualMachine, name, fmt.Sprintf("its VirtualAppliance %s belongs to pool %s", ref.Name, pool))
		return false
	case refMissing:
		pl.note(KindVirtualMachine, name, fmt.Sprintf("its VirtualAppliance %s is neither in the backup nor in the namespace: the VM does not start until it exists", ref.Name))
	}
	return true
}

func (pl *planner) setVMStatus(rec *VirtualMachineRecord) {
	status, note := pl.vmStatus(rec)
	if status == nil {
		return
	}
	pl.plan.VMStatuses[rec.Metadata.Name] = *status
	pl.note(KindVirtualMachine, rec.Metadata.Name, note)
}

// vmStatus is the status a restored VM that was Suspended starts with, and
// the note for the plan; nil for any other VM, which starts Halted as a new
// VM does. No VM is recorded Running or resident anywhere: its hosts have
// not rejoined yet.
func (pl *planner) vmStatus(rec *VirtualMachineRecord) (*VMStatus, string) {
	if rec.Status.PowerState != vpoolv1alpha1.PowerSuspended {
		return nil, ""
	}
	halted := func(reason, why string) (*VMStatus, string) {
		return &VMStatus{PowerState: vpoolv1alpha1.PowerHalted, Reason: reason,
			Message: fmt.Sprintf("Suspended in backup %s, restored Halted: %s", pl.plan.Backup, why)}, "Halted: " + why
	}
	image := rec.Status.SuspendVirtualDisk
	if image == "" {
		return halted(ReasonSuspendImageUnavailable, "the backup records no suspend image")
	}
	vdi, inDump := pl.vdis[image]
	if !inDump {
		return halted(ReasonSuspendImageUnavailable, fmt.Sprintf("its suspend image VirtualDisk %s is not in the backup", image))
	}
	if st, _ := pl.ref(KindVirtualDisk, image); st != refOK {
		return halted(ReasonSuspendImageUnavailable, fmt.Sprintf("its suspend image VirtualDisk %s is not restored", image))
	}
	srName := vdi.Spec.StorageRepository
	sr, inDump := pl.srs[srName]
	if !inDump {
		return halted(ReasonSuspendImageUnavailable, fmt.Sprintf("its suspend image is on SR %s, which is not in the backup", srName))
	}
	if !sr.Spec.Shared {
		return halted(ReasonSuspendImageLost, fmt.Sprintf("its suspend image was on local SR %s, lost with its host", srName))
	}
	why := fmt.Sprintf("its suspend image VirtualDisk %s is on shared SR %s", image, srName)
	return &VMStatus{PowerState: vpoolv1alpha1.PowerSuspended, SuspendVirtualDisk: image, Reason: ReasonSuspendImageKept,
		Message: fmt.Sprintf("Suspended in backup %s, restored Suspended: %s", pl.plan.Backup, why)}, "kept Suspended: " + why
}
