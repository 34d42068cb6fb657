package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// LabelRecovery labels every object a Recovery creates, and every VM it
// replaces, with the Recovery's name: a Recovery resumed after a crash, or
// planned again after its spec changed, recognises its own objects by it, and
// a test failover's cleanup deletes exactly those.
const LabelRecovery = "vpool.poolkeeper.io/recovery"

// AnnotationUUID, on a VirtualMachine that has no status.uuid yet, is the
// uuid it takes (set by restores and recoveries from the backup, so that a
// VM keeps its identity; also usable to import a VM under a known uuid). A VM
// that already has a status.uuid keeps it.
const AnnotationUUID = "vpool.poolkeeper.io/uuid"

// AnnotationVolume, on a VirtualDisk that has no status.volume yet, is the
// volume (key, or name) its data is in: set by restores and recoveries
// (not by test failovers) from the status.volume of the backup, so that a
// VDI recreated in another namespace, or onto storage replicated
// elsewhere, attaches the volume that holds its data instead of getting a
// new, empty one; also usable to give a new VDI an existing volume. The
// agent looks that volume up in the SR's storage pool, by key, else by the
// key's last path element as a name, else by the VDI's own volume name
// (<namespace>_<vdi>), never creating one: when none is there the VM
// waits. A VDI that already has a status.volume keeps it.
const AnnotationVolume = "vpool.poolkeeper.io/volume"

// AnnotationInformationFrom, on an object a restore or a recovery created, is
// the completedAt (RFC 3339) of the backup its information came from; a
// PreferNewer recovery replaces a Halted VM only with newer information.
const AnnotationInformationFrom = "vpool.poolkeeper.io/information-from"

// FinalizerRecoveryCleanup holds a test-failover Recovery until everything
// it created is removed.
const FinalizerRecoveryCleanup = "vpool.poolkeeper.io/recovery-cleanup"

// RecoveryConflicts says what a Recovery does with a VM the pool already has.
// +kubebuilder:validation:Enum=Fail;Skip;PreferNewer
type RecoveryConflicts string

const (
	// ConflictsFail: any conflict stops the recovery before it writes anything.
	ConflictsFail RecoveryConflicts = "Fail"
	// ConflictsSkip: a VM the pool already has is left as it is.
	ConflictsSkip RecoveryConflicts = "Skip"
	// ConflictsPreferNewer: a VM of the same uuid is replaced when it is
	// Halted and the backup is newer than what it was made from (failback);
	// otherwise it is left as it is.
	ConflictsPreferNewer RecoveryConflicts = "PreferNewer"
)

// RecoverySource is where a Recovery looks for VMs: one PoolBackup, or every
// backup of a pool found through a BackupLocation.
// +kubebuilder:validation:XValidation:rule="has(self.backupName) != has(self.location)",message="a source is either backupName or location and pool"
// +kubebuilder:validation:XValidation:rule="has(self.location) == has(self.pool)",message="location and pool go together"
type RecoverySource struct {
	// backupName names a PoolBackup in this namespace.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	BackupName string `json:"backupName,omitempty"`
	// location names a BackupLocation in this namespace.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Location string `json:"location,omitempty"`
	// pool is the name of the pool, at its site of origin, whose backups
	// found through location are sources.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Pool string `json:"pool,omitempty"`
}

// RecoverySpec is the desired state of a recovery.
// +kubebuilder:validation:XValidation:rule="size(self.virtualMachines) + size(self.appliances) > 0 || has(self.selector)",message="choose VMs: virtualMachines, appliances or selector"
type RecoverySpec struct {
	// poolRef names the recovery pool, an existing Pool of this namespace. Immutable.
	// +required
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="poolRef is immutable"
	PoolRef PoolReference `json:"poolRef"`
	// sources are searched for the chosen VMs; for each VM the most recent
	// information found (by the backup's completedAt) is recovered. Immutable.
	// +required
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="sources are immutable"
	Sources []RecoverySource `json:"sources"`
	// virtualMachines are VM names to recover.
	// +optional
	// +kubebuilder:default={}
	// +kubebuilder:validation:MaxItems=10000
	// +kubebuilder:validation:items:MaxLength=253
	VirtualMachines []string `json:"virtualMachines"`
	// appliances are vApp names whose VMs (spec.applianceRef) are recovered whole.
	// +optional
	// +kubebuilder:default={}
	// +kubebuilder:validation:MaxItems=1000
	// +kubebuilder:validation:items:MaxLength=253
	Appliances []string `json:"appliances"`
	// selector chooses VMs by their labels.
	// +optional
	Selector *metav1.LabelSelector `json:"selector,omitempty"`
	// conflicts: Fail (default), Skip or PreferNewer.
	// +optional
	// +kubebuilder:default=Fail
	Conflicts RecoveryConflicts `json:"conflicts,omitempty"`
	// dryRun is a test failover: everything is recreated, nothing is
	// started, and it is all removed when the Recovery is deleted or
	// annotated vpool.poolkeeper.io/dr-test-finished=true.
	// +optional
	DryRun bool `json:"dryRun,omitempty"`
	// powerOn starts the recovered VMs whose backup had them Running
	// (default true); false recovers them Halted.
	// +optional
	// +kubebuilder:default=true
	PowerOn *bool `json:"powerOn,omitempty"`
}

// RecoveryAction is what a Recovery does with one object.
// +kubebuilder:validation:Enum=Create;Skip;Replace;Reuse;Conflict
type RecoveryAction string

const (
	// ActionCreate: the object is created from the source.
	ActionCreate RecoveryAction = "Create"
	// ActionSkip: the object is left as it is; the reason says why.
	ActionSkip RecoveryAction = "Skip"
	// ActionReplace: the pool's object is replaced by the source's (PreferNewer).
	ActionReplace RecoveryAction = "Replace"
	// ActionReuse: the pool already has the object (an SR, a VDI) and it is used.
	ActionReuse RecoveryAction = "Reuse"
	// ActionConflict: the object conflicts with the pool's; with Fail nothing is written.
	ActionConflict RecoveryAction = "Conflict"
)

// RecoveryItem is one object of a recovery's plan or results.
type RecoveryItem struct {
	// kind of the object: VirtualMachine, VirtualDisk or StorageRepository.
	// +required
	Kind string `json:"kind"`
	// name of the object in this namespace.
	// +required
	Name string `json:"name"`
	// uuid of the VM (VMs only).
	// +optional
	UUID string `json:"uuid,omitempty"`
	// action planned or taken.
	// +required
	Action RecoveryAction `json:"action"`
	// source is the PoolBackup the object's information came from.
	// +optional
	Source string `json:"source,omitempty"`
	// sourceCompletedAt is when that backup completed.
	// +optional
	SourceCompletedAt *metav1.Time `json:"sourceCompletedAt,omitempty"`
	// message says why (a skip, a conflict, a failure).
	// +optional
	Message string `json:"message,omitempty"`
	// done is true once the action was taken (results only).
	// +optional
	Done bool `json:"done,omitempty"`
}

// RecoveryStatus is the observed state of a recovery.
type RecoveryStatus struct {
	// observedGeneration is the generation the status reflects.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// planGeneration is the generation status.plan was made for: a plan is
	// made once per generation and then carried out as written.
	// +optional
	PlanGeneration int64 `json:"planGeneration,omitempty"`
	// plan is what the recovery will create, reuse, skip or replace,
	// written before any object is.
	// +optional
	// +listType=atomic
	Plan []RecoveryItem `json:"plan,omitempty"`
	// results are what was done, per object of the plan: its kind, name and
	// action, done, or a message saying why not.
	// +optional
	// +listType=atomic
	Results []RecoveryItem `json:"results,omitempty"`
	// conditions: Ready, Reconciling, Stalled.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +patchStrategy=merge
	// +patchMergeKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty" patchStrategy:"merge" patchMergeKey:"type"`
}

// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=vrec,categories=poolkeeper
// +kubebuilder:printcolumn:name="Pool",type=string,JSONPath=`.spec.poolRef.name`
// +kubebuilder:printcolumn:name="DryRun",type=boolean,JSONPath=`.spec.dryRun`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="size(self.metadata.name) <= 63",message="a Recovery's name is at most 63 characters: it labels every object the recovery creates"

// Recovery recovers chosen VMs and vApps from backups into a pool
// (vm-recover, appliance-recover, vm-import metadata=true): DR at a site
// that never saw the primary's objects, test failover, and failback.
type Recovery struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the desired state of the recovery.
	// +required
	Spec RecoverySpec `json:"spec"`
	// status is the observed state of the recovery.
	// +optional
	Status RecoveryStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// RecoveryList is a list of Recoveries.
type RecoveryList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Recovery `json:"items"`
}

func init() {
	register(&Recovery{}, &RecoveryList{})
}
