package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// BackupStorageType is where a backup's bytes are kept.
// +kubebuilder:validation:Enum=Secret;S3;Location
type BackupStorageType string

const (
	// StorageSecret keeps the dump in Secrets in the pool's namespace,
	// compressed and chunked, owned by the PoolBackup.
	StorageSecret BackupStorageType = "Secret"
	// StorageS3 keeps the dump in an S3-compatible bucket.
	StorageS3 BackupStorageType = "S3"
	// StorageLocation keeps the dump in the bucket of a BackupLocation,
	// self-describing, under a key that a fresh cluster can find.
	StorageLocation BackupStorageType = "Location"
)

// S3Storage addresses an S3-compatible bucket.
type S3Storage struct {
	// endpoint is the service's base URL, for example https://s3.example.com.
	// +required
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="isURL(self) && url(self).getScheme() in ['https', 'http']",message="endpoint must be an http(s) URL"
	Endpoint string `json:"endpoint"`
	// bucket is the bucket name.
	// +required
	// +kubebuilder:validation:MinLength=3
	// +kubebuilder:validation:MaxLength=63
	Bucket string `json:"bucket"`
	// prefix is prepended to every object key.
	// +optional
	// +kubebuilder:validation:MaxLength=512
	Prefix string `json:"prefix,omitempty"`
	// region of the bucket.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	Region string `json:"region,omitempty"`
	// credentialsSecretRef names a Secret with accessKeyID and secretAccessKey.
	// +required
	CredentialsSecretRef LocalObjectReference `json:"credentialsSecretRef"`
	// caBundleSecretRef names a Secret whose `ca.crt` entry holds the PEM
	// certificates of the private CA that signed the endpoint's certificate;
	// without it the system's roots are trusted.
	// +optional
	CABundleSecretRef *LocalObjectReference `json:"caBundleSecretRef,omitempty"`
}

// BackupStorage is where a backup is stored.
// +kubebuilder:validation:XValidation:rule="!has(self.type) || self.type != 'S3' || has(self.s3)",message="s3 is required when type is S3",fieldPath=".s3"
// +kubebuilder:validation:XValidation:rule="(has(self.type) && self.type == 'S3') || !has(self.s3)",message="s3 may only be set when type is S3",fieldPath=".s3"
// +kubebuilder:validation:XValidation:rule="!has(self.type) || self.type != 'Location' || has(self.locationRef)",message="locationRef is required when type is Location",fieldPath=".locationRef"
// +kubebuilder:validation:XValidation:rule="(has(self.type) && self.type == 'Location') || !has(self.locationRef)",message="locationRef may only be set when type is Location",fieldPath=".locationRef"
type BackupStorage struct {
	// type is Secret (default: in-cluster Secrets in the pool's namespace),
	// S3 or Location.
	// +optional
	// +kubebuilder:default=Secret
	Type BackupStorageType `json:"type,omitempty"`
	// s3 addresses the bucket when type is S3.
	// +optional
	S3 *S3Storage `json:"s3,omitempty"`
	// locationRef names the BackupLocation, in this namespace, whose bucket
	// holds the dump when type is Location.
	// +optional
	LocationRef *LocalObjectReference `json:"locationRef,omitempty"`
}

// BackupEncryption names the key a backup is encrypted with. The dump holds
// credentials, so it is always encrypted at rest.
type BackupEncryption struct {
	// keySecretRef names a Secret in this namespace whose `key` entry holds the
	// key material (at least 32 bytes).
	// +required
	KeySecretRef LocalObjectReference `json:"keySecretRef"`
}

// PoolBackupSpec is the desired state of a pool backup.
type PoolBackupSpec struct {
	// poolRef names the Pool to back up. Immutable.
	// +required
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="poolRef is immutable"
	PoolRef PoolReference `json:"poolRef"`

	// storage is where the dump is stored. Immutable.
	// +optional
	// +kubebuilder:default={}
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="storage is immutable"
	Storage BackupStorage `json:"storage,omitempty"`

	// encryption names the key the dump is encrypted with. Immutable.
	// +required
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="encryption is immutable"
	Encryption BackupEncryption `json:"encryption"`
}

// PoolBackupPhase is where a backup is in its life cycle.
// +kubebuilder:validation:Enum=Pending;InProgress;Completed;Failed
type PoolBackupPhase string

const (
	// BackupPending: not started.
	BackupPending PoolBackupPhase = "Pending"
	// BackupInProgress: being taken.
	BackupInProgress PoolBackupPhase = "InProgress"
	// BackupCompleted: stored and verified.
	BackupCompleted PoolBackupPhase = "Completed"
	// BackupFailed: could not be taken; the Ready condition says why.
	BackupFailed PoolBackupPhase = "Failed"
)

// BackupCounts counts the objects in a dump.
type BackupCounts struct {
	// hosts is the number of Hosts.
	// +optional
	Hosts int32 `json:"hosts"`
	// srs is the number of StorageRepositories.
	// +optional
	SRs int32 `json:"srs"`
	// vdis is the number of VirtualDisks.
	// +optional
	VDIs int32 `json:"vdis"`
	// vms is the number of VirtualMachines.
	// +optional
	VMs int32 `json:"vms"`
}

// PoolBackupStatus is the observed state of a pool backup.
type PoolBackupStatus struct {
	// observedGeneration is the generation the status reflects.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// phase: Pending, InProgress, Completed or Failed.
	// +optional
	Phase PoolBackupPhase `json:"phase,omitempty"`
	// startedAt is when the dump began.
	// +optional
	StartedAt *metav1.Time `json:"startedAt,omitempty"`
	// completedAt is when the dump was stored and verified.
	// +optional
	CompletedAt *metav1.Time `json:"completedAt,omitempty"`
	// poolEpoch is the pool's epoch at the dump's point in time (0: the pool
	// never had a master). Set with counts, once the dump is taken.
	// +optional
	PoolEpoch *int64 `json:"poolEpoch,omitempty"`
	// counts of the objects in the dump.
	// +optional
	Counts *BackupCounts `json:"counts,omitempty"`
	// sizeBytes is the size of the stored (compressed, encrypted) dump.
	// +optional
	SizeBytes int64 `json:"sizeBytes,omitempty"`
	// sha256 is the hex SHA-256 of the stored bytes, checked on every read.
	// +optional
	SHA256 string `json:"sha256,omitempty"`
	// location says where the dump is stored.
	// +optional
	Location string `json:"location,omitempty"`
	// keyID identifies the key the dump was sealed with (a fingerprint of
	// the key material or of the recipients, never the key itself), so that
	// a DR site can tell which key it needs.
	// +optional
	KeyID string `json:"keyID,omitempty"`
	// conditions: Ready.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +patchStrategy=merge
	// +patchMergeKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty" patchStrategy:"merge" patchMergeKey:"type"`
}

// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=pbak,categories=poolkeeper
// +kubebuilder:printcolumn:name="Pool",type=string,JSONPath=`.spec.poolRef.name`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Epoch",type=integer,JSONPath=`.status.poolEpoch`
// +kubebuilder:printcolumn:name="Hosts",type=integer,JSONPath=`.status.counts.hosts`
// +kubebuilder:printcolumn:name="SRs",type=integer,JSONPath=`.status.counts.srs`,priority=1
// +kubebuilder:printcolumn:name="VDIs",type=integer,JSONPath=`.status.counts.vdis`,priority=1
// +kubebuilder:printcolumn:name="VMs",type=integer,JSONPath=`.status.counts.vms`
// +kubebuilder:printcolumn:name="Size",type=integer,JSONPath=`.status.sizeBytes`
// +kubebuilder:printcolumn:name="Completed",type=date,JSONPath=`.status.completedAt`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`

// PoolBackup is one encrypted point-in-time snapshot of a pool's database
// (pool-dump-database). It outlives its pool.
type PoolBackup struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the desired state of the backup.
	// +required
	Spec PoolBackupSpec `json:"spec"`
	// status is the observed state of the backup.
	// +optional
	Status PoolBackupStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// PoolBackupList is a list of PoolBackups.
type PoolBackupList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []PoolBackup `json:"items"`
}

func init() {
	register(&PoolBackup{}, &PoolBackupList{})
}
