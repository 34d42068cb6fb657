package v1alpha1

// PoolReference names the Pool an object belongs to. The Pool lives in the
// object's own namespace.
type PoolReference struct {
	// name of the Pool in this namespace.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
}

// LocalObjectReference names another object in the same namespace.
type LocalObjectReference struct {
	// name of the object in this namespace.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
}

// Condition types shared by every kind.
const (
	// ConditionReady summarises whether the object is doing what its spec asks.
	ConditionReady = "Ready"
	// ConditionReconciling is present (True) only while the operator is working
	// towards the spec.
	ConditionReconciling = "Reconciling"
	// ConditionStalled is present (True) only when the operator cannot make
	// progress without a change of spec or of the world.
	ConditionStalled = "Stalled"
)

// Reasons shared by every kind.
const (
	// ReasonReconciling says the operator is still working on the object.
	ReasonReconciling = "Reconciling"
	// ReasonSucceeded says the last reconcile reached the desired state.
	ReasonSucceeded = "Succeeded"
	// ReasonPoolNotFound says spec.poolRef names a Pool that does not exist.
	ReasonPoolNotFound = "PoolNotFound"
	// ReasonInvalidSpec says a field of the spec cannot be honoured; the message
	// names the field.
	ReasonInvalidSpec = "InvalidSpec"
)

// CategoryPoolkeeper is the kubectl category every kind belongs to
// (`kubectl get poolkeeper`).
const CategoryPoolkeeper = "poolkeeper"

// LabelHost labels a host's heartbeat Lease with the Host's name; the operator
// watches only Leases that carry it.
const LabelHost = "vpool.poolkeeper.io/host"

// LabelStandby marks the standby Lease of an agent that waits to run a host
// whose heartbeat Lease another boot holds ("<host>.<suffix>"; the value is
// "true"). The operator reports such a second agent on the Host.
const LabelStandby = "vpool.poolkeeper.io/standby"

// FinalizerHostForget holds a Host until it is forgotten (made safe and removed
// from the pool) after it is deleted.
const FinalizerHostForget = "vpool.poolkeeper.io/host-forget"

// LabelPool labels objects the operator creates for a pool (scheduled
// PoolBackups) with the pool's name.
const LabelPool = "vpool.poolkeeper.io/pool"

// LabelScheduled marks a PoolBackup created by a Pool's spec.backup schedule;
// only those are pruned by spec.backup.retain.
const LabelScheduled = "vpool.poolkeeper.io/scheduled"

// FinalizerBackupData holds a PoolBackup until its stored data is deleted.
const FinalizerBackupData = "vpool.poolkeeper.io/backup-data"

// AnnotationStoredKey, on a PoolBackup a BackupLocation's sync created, is
// the key of its object in the location's bucket.
const AnnotationStoredKey = "vpool.poolkeeper.io/stored-key"

// AnnotationGoneFromBucket, on a PoolBackup, says that its location's sync
// found its object gone from the bucket and deletes it: its deletion then
// deletes nothing stored, whatever the bucket holds by then.
const AnnotationGoneFromBucket = "vpool.poolkeeper.io/gone-from-bucket"
