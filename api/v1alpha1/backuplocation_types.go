package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// BackupLocationAccess says whether poolkeeper may write a location's bucket.
// +kubebuilder:validation:Enum=ReadWrite;ReadOnly
type BackupLocationAccess string

const (
	// AccessReadWrite: backups are written to and deleted from the bucket.
	AccessReadWrite BackupLocationAccess = "ReadWrite"
	// AccessReadOnly: the bucket is only listed and read (a DR site reading
	// the primary's bucket); nothing is ever written or deleted there.
	AccessReadOnly BackupLocationAccess = "ReadOnly"
)

// DefaultSyncInterval is how often a BackupLocation lists its bucket when
// spec.syncInterval is not set.
const DefaultSyncInterval = "1m"

// BackupLocationSpec is the desired state of a backup location.
type BackupLocationSpec struct {
	// s3 addresses the bucket.
	// +required
	S3 S3Storage `json:"s3"`
	// access is ReadWrite (default) or ReadOnly.
	// +optional
	// +kubebuilder:default=ReadWrite
	Access BackupLocationAccess `json:"access,omitempty"`
	// syncInterval is how often the bucket is listed for backups this
	// namespace lacks (default 1m, at least 1s).
	// +optional
	// +kubebuilder:default="1m"
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s')",message="syncInterval must be at least 1s"
	SyncInterval *metav1.Duration `json:"syncInterval,omitempty"`
	// encryption names the key Secret, in this namespace, that the
	// PoolBackups found in the bucket are opened with. Without it a synced
	// backup names the key Secret it was written with, by that name.
	// +optional
	Encryption *BackupEncryption `json:"encryption,omitempty"`
}

// BackupLocationStatus is the observed state of a backup location.
type BackupLocationStatus struct {
	// observedGeneration is the generation the status reflects.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// lastSyncedAt is when the bucket was last listed successfully.
	// +optional
	LastSyncedAt *metav1.Time `json:"lastSyncedAt,omitempty"`
	// backups is the number of poolkeeper backups found in the bucket at
	// the last sync.
	// +optional
	Backups int32 `json:"backups"`
	// conditions: Ready, and Stalled while a person must act.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +patchStrategy=merge
	// +patchMergeKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty" patchStrategy:"merge" patchMergeKey:"type"`
}

// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=pbloc,categories=poolkeeper
// +kubebuilder:printcolumn:name="Bucket",type=string,JSONPath=`.spec.s3.bucket`
// +kubebuilder:printcolumn:name="Access",type=string,JSONPath=`.spec.access`
// +kubebuilder:printcolumn:name="Backups",type=integer,JSONPath=`.status.backups`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Synced",type=date,JSONPath=`.status.lastSyncedAt`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`

// BackupLocation is an S3-compatible bucket that holds PoolBackups. Its
// controller creates, in its namespace, a PoolBackup for every backup found
// in the bucket that the namespace lacks: a DR site discovers the primary's
// backups through it.
type BackupLocation struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the desired state of the location.
	// +required
	Spec BackupLocationSpec `json:"spec"`
	// status is the observed state of the location.
	// +optional
	Status BackupLocationStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// BackupLocationList is a list of BackupLocations.
type BackupLocationList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []BackupLocation `json:"items"`
}

func init() {
	register(&BackupLocation{}, &BackupLocationList{})
}
