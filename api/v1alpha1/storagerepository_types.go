package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// StorageRepositoryType is the kind of storage behind an SR.
// +kubebuilder:validation:Enum=nfs;iscsi;hba;cifs;gfs2;lvm;ext;xfs
type StorageRepositoryType string

// StorageRepositorySpec is the desired state of a storage repository.
// +kubebuilder:validation:XValidation:rule="self.shared || has(self.host)",message="host is required when shared is false (a local SR belongs to one host)",fieldPath=".host"
// +kubebuilder:validation:XValidation:rule="!self.shared || !has(self.host)",message="host must not be set on a shared SR",fieldPath=".host"
type StorageRepositorySpec struct {
	// poolRef names the Pool this SR belongs to. Immutable.
	// +required
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="poolRef is immutable"
	PoolRef PoolReference `json:"poolRef"`

	// type is the storage type: nfs, iscsi, hba, cifs, gfs2 (usually shared),
	// lvm, ext, xfs (usually local). Immutable.
	// +required
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="type is immutable"
	Type StorageRepositoryType `json:"type"`

	// shared is true for storage every host of the pool reaches (NFS, iSCSI),
	// false for a local SR of one host. Immutable.
	// +optional
	// +kubebuilder:default=false
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="shared is immutable"
	Shared bool `json:"shared"`

	// host is the Host owning a local SR; required when shared is false. A
	// local SR dies with its host. Immutable.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="host is immutable"
	Host string `json:"host,omitempty"`

	// libvirt maps the SR to a libvirt storage pool on each host that plugs
	// it (hosts running the libvirt driver). Changing it (after a restore
	// onto other storage) makes the agents plug the SR again.
	// +optional
	Libvirt *LibvirtStorage `json:"libvirt,omitempty"`
}

// LibvirtStorage names the libvirt storage pool behind an SR.
type LibvirtStorage struct {
	// storagePool is the libvirt storage pool, defined on every host that
	// should plug this SR, holding its VDIs as volumes named after the
	// VirtualDisk.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=255
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9][-A-Za-z0-9_.+]*$`
	StoragePool string `json:"storagePool"`
}

// SRAttachment is one host's attachment of an SR (XenServer's PBD),
// reported by that host's agent.
type SRAttachment struct {
	// host is the Host the attachment is on.
	// +required
	Host string `json:"host"`
	// attached is true once the host has plugged the SR (its storage pool
	// is active and reachable).
	// +required
	Attached bool `json:"attached"`
	// reason is a CamelCase word for why the SR is or is not attached.
	// +optional
	Reason string `json:"reason,omitempty"`
	// message says what the agent found.
	// +optional
	Message string `json:"message,omitempty"`
	// storagePool is the spec.libvirt.storagePool the host plugged: an
	// attachment of another storage pool is stale.
	// +optional
	StoragePool string `json:"storagePool,omitempty"`
	// lastTransitionTime is when attached last changed.
	// +optional
	LastTransitionTime *metav1.Time `json:"lastTransitionTime,omitempty"`
}

// StorageRepositoryStatus is the observed state of a storage repository.
type StorageRepositoryStatus struct {
	// observedGeneration is the generation the status reflects.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// attachments are the SR's attachments, one per host that reported one
	// (XenServer's PBDs). VMs are placed only on hosts where every SR of
	// their disks is attached.
	// +optional
	// +listType=map
	// +listMapKey=host
	// +kubebuilder:validation:MaxItems=64
	Attachments []SRAttachment `json:"attachments,omitempty"`

	// conditions: Ready (False for a local SR whose host is not Live).
	// +optional
	// +listType=map
	// +listMapKey=type
	// +patchStrategy=merge
	// +patchMergeKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty" patchStrategy:"merge" patchMergeKey:"type"`
}

// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=sr,categories=poolkeeper
// +kubebuilder:printcolumn:name="Pool",type=string,JSONPath=`.spec.poolRef.name`
// +kubebuilder:printcolumn:name="Type",type=string,JSONPath=`.spec.type`
// +kubebuilder:printcolumn:name="Shared",type=boolean,JSONPath=`.spec.shared`
// +kubebuilder:printcolumn:name="Host",type=string,JSONPath=`.spec.host`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`

// StorageRepository is an SR: shared storage every host reaches, or the local
// storage of one host.
type StorageRepository struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the desired state of the SR.
	// +required
	Spec StorageRepositorySpec `json:"spec"`
	// status is the observed state of the SR.
	// +optional
	Status StorageRepositoryStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// StorageRepositoryList is a list of StorageRepositories.
type StorageRepositoryList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []StorageRepository `json:"items"`
}

func init() {
	register(&StorageRepository{}, &StorageRepositoryList{})
}
