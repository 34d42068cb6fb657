package backup

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
)

// SchemaVersion is the version of the Dump schema this build writes. Open
// refuses a dump with a higher version (ErrSchemaVersion). Adding an optional
// field to a record is compatible; removing or renaming one, or changing its
// meaning, needs a new version and a migration in Open.
const SchemaVersion = 1

// droppedAnnotations are not worth keeping in a dump: they describe how an
// object was last applied, not what it is, and can be large.
var droppedAnnotations = []string{
	"kubectl.kubernetes.io/last-applied-configuration",
}

// Dump is one point-in-time copy of a pool's database
// (pool-dump-database): the Pool and every Host, StorageRepository,
// VirtualDisk, VirtualMachine and VirtualAppliance of it. It keeps, for each
// object, its name, labels and annotations, its full spec and only the
// status that recovery needs (for a VDI, its volume). VDI locks and
// conditions are never kept: they describe hosts that a restore does not
// bring back running.
type Dump struct {
	// SchemaVersion is the schema the dump was written with (SchemaVersion).
	SchemaVersion int `json:"schemaVersion"`
	// TakenAt is the dump's point in time, in UTC.
	TakenAt time.Time `json:"takenAt"`
	// Namespace is the namespace the pool lived in.
	Namespace string `json:"namespace"`
	// Pool is the pool itself.
	Pool PoolRecord `json:"pool"`
	// Hosts of the pool, by name.
	Hosts []HostRecord `json:"hosts"`
	// StorageRepositories of the pool, by name.
	StorageRepositories []StorageRepositoryRecord `json:"storageRepositories"`
	// VirtualDisks of the pool, by name.
	VirtualDisks []VirtualDiskRecord `json:"virtualDisks"`
	// VirtualMachines of the pool, by name.
	VirtualMachines []VirtualMachineRecord `json:"virtualMachines"`
	// VirtualAppliances of the pool (vApps), by name; see AddAppliances.
	// Absent from dumps written before vApps existed: a dump without
	// appliances is valid.
	VirtualAppliances []VirtualApplianceRecord `json:"virtualAppliances,omitempty"`
	// Secrets the hosts' fencing needs (BMC credentials), by name; see
	// AddSecrets. They are why a dump is always encrypted.
	Secrets []SecretRecord `json:"secrets,omitempty"`
	// Omitted lists the pool's objects deliberately left out of the dump and
	// why (a forgotten host, an object being deleted).
	Omitted []Problem `json:"omitted,omitempty"`
}

// RecordMeta is the part of an object's metadata a dump keeps.
type RecordMeta struct {
	// Name of the object.
	Name string `json:"name"`
	// Labels of the object.
	Labels map[string]string `json:"labels,omitempty"`
	// Annotations of the object, without kubectl's last-applied-configuration.
	Annotations map[string]string `json:"annotations,omitempty"`
}

// PoolRecord is a Pool in a dump.
type PoolRecord struct {
	// Metadata of the Pool.
	Metadata RecordMeta `json:"metadata"`
	// Spec of the Pool.
	Spec vpoolv1alpha1.PoolSpec `json:"spec"`
	// Status is the part of the Pool's status recovery needs.
	Status PoolRecordStatus `json:"status"`
}

// PoolRecordStatus is the part of a Pool's status a dump keeps.
type PoolRecordStatus struct {
	// Master is the host that was master at the dump's point in time.
	Master string `json:"master,omitempty"`
	// Epoch is the pool's epoch at the dump's point in time. A restored pool
	// must start above it (see RestorePlan.MinEpoch).
	Epoch int64 `json:"epoch,omitempty"`
}

// HostRecord is a Host in a dump.
type HostRecord struct {
	// Metadata of the Host.
	Metadata RecordMeta `json:"metadata"`
	// Spec of the Host.
	Spec vpoolv1alpha1.HostSpec `json:"spec"`
	// Status is the part of the Host's status a dump keeps.
	Status HostRecordStatus `json:"status"`
}

// HostRecordStatus is the part of a Host's status a dump keeps.
type HostRecordStatus struct {
	// Role of the host at the dump's point in time (informational: a restored
	// host rejoins as whatever the restored pool makes it).
	Role vpoolv1alpha1.HostRole `json:"role,omitempty"`
}

// StorageRepositoryRecord is a StorageRepository in a dump.
type StorageRepositoryRecord struct {
	// Metadata of the SR.
	Metadata RecordMeta `json:"metadata"`
	// Spec of the SR.
	Spec vpoolv1alpha1.StorageRepositorySpec `json:"spec"`
}

// VirtualDiskRecord is a VirtualDisk in a dump. Its lock is not kept.
type VirtualDiskRecord struct {
	// Metadata of the VDI.
	Metadata RecordMeta `json:"metadata"`
	// Spec of the VDI.
	Spec vpoolv1alpha1.VirtualDiskSpec `json:"spec"`
	// Status is the part of the VDI's status recovery needs. Absent from
	// dumps written before it was kept, and from the record of a VDI that
	// had no volume yet: such a VDI is restored as a new one, whose agent
	// finds or creates its volume by its name. A poolkeeper older than this
	// field refuses a dump that holds it (ErrSchemaVersion, as for any field
	// it does not know) rather than restoring its VDIs onto new volumes.
	Status VirtualDiskRecordStatus `json:"status,omitzero"`
}

// VirtualDiskRecordStatus is the part of a VDI's status a dump keeps.
type VirtualDiskRecordStatus struct {
	// Volume is the VDI's status.volume: the key (or path) of the volume
	// that holds its data, as the host driver recorded it on first attach.
	// A restore or recovery gives it to the recreated VDI
	// (vpoolv1alpha1.AnnotationVolume), so that the VDI attaches that
	// volume again rather than a new, empty one of its new name.
	Volume string `json:"volume,omitempty"`
}

// VirtualMachineRecord is a VirtualMachine in a dump.
type VirtualMachineRecord struct {
	// Metadata of the VM.
	Metadata RecordMeta `json:"metadata"`
	// Spec of the VM.
	Spec vpoolv1alpha1.VirtualMachineSpec `json:"spec"`
	// Status is the part of the VM's status recovery needs.
	Status VirtualMachineRecordStatus `json:"status"`
}

// VirtualMachineRecordStatus is the part of a VM's status a dump keeps.
type VirtualMachineRecordStatus struct {
	// PowerState at the dump's point in time.
	PowerState vpoolv1alpha1.PowerState `json:"powerState,omitempty"`
	// ResidentOn is the host the VM was on.
	ResidentOn string `json:"residentOn,omitempty"`
	// SuspendVirtualDisk holds the memory of a Suspended VM.
	SuspendVirtualDisk string `json:"suspendVirtualDisk,omitempty"`
	// UUID is the VM's identity (status.uuid): recoveries match a VM
	// across backups by it.
	UUID string `json:"uuid,omitempty"`
}

// VirtualApplianceRecord is a VirtualAppliance (vApp) in a dump. Its status
// is not kept: its members are the VMs that name it, and their running
// times describe hosts a restore does not bring back running.
type VirtualApplianceRecord struct {
	// Metadata of the vApp.
	Metadata RecordMeta `json:"metadata"`
	// Spec of the vApp.
	Spec vpoolv1alpha1.VirtualApplianceSpec `json:"spec"`
}

// KindVirtualAppliance names the VirtualAppliance kind in problems.
const KindVirtualAppliance = "VirtualAppliance"

// SecretRecord is a Secret in a dump.
type SecretRecord struct {
	// Metadata of the Secret.
	Metadata RecordMeta `json:"metadata"`
	// Type of the Secret.
	Type corev1.SecretType `json:"type,omitempty"`
	// Data of the Secret.
	Data map[string][]byte `json:"data,omitempty"`
}

// NewDump copies the pool's database into a Dump taken at now. The caller
// lists the objects of the pool's namespace at one point in time (one
// consistent read, from the API server rather than a cache); NewDump keeps
// those of pool (spec.poolRef.name) and deep-copies them, so the caller's
// objects may change afterwards. It leaves out, and lists in Omitted, Hosts
// that are Forgotten and objects being deleted: a restore must not bring
// back what a person asked to remove. Records are sorted by name.
func NewDump(pool *vpoolv1alpha1.Pool, hosts []vpoolv1alpha1.Host, srs []vpoolv1alpha1.StorageRepository,
	vdis []vpoolv1alpha1.VirtualDisk, vms []vpoolv1alpha1.VirtualMachine, now time.Time) *Dump {
	d := &Dump{
		SchemaVersion: SchemaVersion,
		TakenAt:       now.UTC(),
		Namespace:     pool.Namespace,
		Pool: PoolRecord{
			Metadata: recordMeta(&pool.ObjectMeta),
			Spec:     *pool.Spec.DeepCopy(),
			Status:   PoolRecordStatus{Master: pool.Status.Master, Epoch: pool.Status.Epoch},
		},
	}
	// of reports whether obj belongs in the dump, noting deliberate omissions.
	of := func(kind string, obj *metav1.ObjectMeta, poolName string) bool {
		if poolName != pool.Name || (obj.Namespace != "" && pool.Namespace != "" && obj.Namespace != pool.Namespace) {
			return false
		}
		if obj.DeletionTimestamp != nil {
			d.Omitted = append(d.Omitted, Problem{Kind: kind, Name: obj.Name, Message: "being deleted; not backed up"})
			return false
		}
		return true
	}
	for i := range hosts {
		h := &hosts[i]
		if !of(KindHost, &h.ObjectMeta, h.Spec.PoolRef.Name) {
			continue
		}
		if h.Spec.State == vpoolv1alpha1.HostForgotten || h.Status.Phase == vpoolv1alpha1.HostPhaseForgotten {
			d.Omitted = append(d.Omitted, Problem{Kind: KindHost, Name: h.Name, Message: "forgotten (host-forget); not backed up"})
			continue
		}
		d.Hosts = append(d.Hosts, HostRecord{Metadata: recordMeta(&h.ObjectMeta), Spec: *h.Spec.DeepCopy(),
			Status: HostRecordStatus{Role: h.Status.Role}})
	}
	for i := range srs {
		sr := &srs[i]
		if of(KindStorageRepository, &sr.ObjectMeta, sr.Spec.PoolRef.Name) {
			d.StorageRepositories = append(d.StorageRepositories,
				StorageRepositoryRecord{Metadata: recordMeta(&sr.ObjectMeta), Spec: *sr.Spec.DeepCopy()})
		}
	}
	for i := range vdis {
		vdi := &vdis[i]
		if of(KindVirtualDisk, &vdi.ObjectMeta, vdi.Spec.PoolRef.Name) {
			d.VirtualDisks = append(d.VirtualDisks, VirtualDiskRecord{Metadata: recordMeta(&vdi.ObjectMeta), Spec: *vdi.Spec.DeepCopy(),
				Status: VirtualDiskRecordStatus{Volume: vdi.Status.Volume}})
		}
	}
	for i := range vms {
		vm := &vms[i]
		if of(KindVirtualMachine, &vm.ObjectMeta, vm.Spec.PoolRef.Name) {
			d.VirtualMachines = append(d.VirtualMachines, VirtualMachineRecord{
				Metadata: recordMeta(&vm.ObjectMeta),
				Spec:     *vm.Spec.DeepCopy(),
				Status: VirtualMachineRecordStatus{
					PowerState:         vm.Status.PowerState,
					ResidentOn:         vm.Status.ResidentOn,
					SuspendVirtualDisk: vm.Status.SuspendVirtualDisk,
					UUID:               vm.Status.UUID,
				},
			})
		}
	}
	sortByName(d.Hosts, func(r HostRecord) string { return r.Metadata.Name })
	sortByName(d.StorageRepositories, func(r StorageRepositoryRecord) string { return r.Metadata.Name })
	sortByName(d.VirtualDisks, func(r VirtualDiskRecord) string { return r.Metadata.Name })
	sortByName(d.VirtualMachines, func(r VirtualMachineRecord) string { return r.Metadata.Name })
	sortProblems(d.Omitted)
	return d
}

// AddAppliances copies into the dump those of apps that belong to its pool,
// listed by the same consistent read as the objects given to NewDump, and
// lists in Omitted those being deleted. A vApp already in the dump is
// replaced. Records are sorted by name.
func (d *Dump) AddAppliances(apps ...vpoolv1alpha1.VirtualAppliance) {
	for i := range apps {
		app := &apps[i]
		if app.Spec.PoolRef.Name != d.Pool.Metadata.Name || (app.Namespace != "" && d.Namespace != "" && app.Namespace != d.Namespace) {
			continue
		}
		d.VirtualAppliances = slices.DeleteFunc(d.VirtualAppliances, func(r VirtualApplianceRecord) bool { return r.Metadata.Name == app.Name })
		if app.DeletionTimestamp != nil {
			d.Omitted = append(d.Omitted, Problem{Kind: KindVirtualAppliance, Name: app.Name, Message: "being deleted; not backed up"})
			continue
		}
		d.VirtualAppliances = append(d.VirtualAppliances,
			VirtualApplianceRecord{Metadata: recordMeta(&app.ObjectMeta), Spec: *app.Spec.DeepCopy()})
	}
	sortByName(d.VirtualAppliances, func(r VirtualApplianceRecord) string { return r.Metadata.Name })
	sortProblems(d.Omitted)
}

// SecretNames lists, sorted and without duplicates, the Secrets the dump's
// hosts refer to (spec.fencing.redfish.credentialsSecretRef). The caller
// reads them and passes them to AddSecrets.
func (d *Dump) SecretNames() []string {
	var names []string
	for i := range d.Hosts {
		if rf := d.Hosts[i].Spec.Fencing.Redfish; rf != nil && rf.CredentialsSecretRef.Name != "" {
			names = append(names, rf.CredentialsSecretRef.Name)
		}
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// AddSecrets copies into the dump those of secrets that its hosts refer to
// (see SecretNames) and ignores the others, so that a restore into an empty
// namespace has working fencing. A Secret already in the dump is replaced.
func (d *Dump) AddSecrets(secrets ...corev1.Secret) {
	wanted := d.SecretNames()
	for i := range secrets {
		s := &secrets[i]
		if _, ok := slices.BinarySearch(wanted, s.Name); !ok {
			continue
		}
		rec := SecretRecord{Metadata: recordMeta(&s.ObjectMeta), Type: s.Type}
		if len(s.Data) > 0 {
			rec.Data = make(map[string][]byte, len(s.Data))
			for k, v := range s.Data {
				rec.Data[k] = slices.Clone(v)
			}
		}
		d.Secrets = slices.DeleteFunc(d.Secrets, func(r SecretRecord) bool { return r.Metadata.Name == s.Name })
		d.Secrets = append(d.Secrets, rec)
	}
	sortByName(d.Secrets, func(r SecretRecord) string { return r.Metadata.Name })
}

// Counts counts the objects in the dump, for PoolBackup status.counts.
func (d *Dump) Counts() vpoolv1alpha1.BackupCounts {
	return vpoolv1alpha1.BackupCounts{
		Hosts: int32(len(d.Hosts)),
		SRs:   int32(len(d.StorageRepositories)),
		VDIs:  int32(len(d.VirtualDisks)),
		VMs:   int32(len(d.VirtualMachines)),
	}
}

// String describes the dump in one line.
func (d *Dump) String() string {
	c := d.Counts()
	return fmt.Sprintf("dump of pool %s/%s taken at %s (schema %d, epoch %d): %d hosts, %d SRs, %d VDIs, %d VMs",
		d.Namespace, d.Pool.Metadata.Name, d.TakenAt.Format(time.RFC3339), d.SchemaVersion, d.Pool.Status.Epoch,
		c.Hosts, c.SRs, c.VDIs, c.VMs)
}

func recordMeta(m *metav1.ObjectMeta) RecordMeta {
	r := RecordMeta{Name: m.Name}
	if len(m.Labels) > 0 {
		r.Labels = maps.Clone(m.Labels)
	}
	for k, v := range m.Annotations {
		if slices.Contains(droppedAnnotations, k) {
			continue
		}
		if r.Annotations == nil {
			r.Annotations = make(map[string]string, len(m.Annotations))
		}
		r.Annotations[k] = v
	}
	return r
}

func sortByName[T any](s []T, name func(T) string) {
	slices.SortStableFunc(s, func(a, b T) int { return strings.Compare(name(a), name(b)) })
}
