package v1alpha1

import (
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// DiskMode is how a disk is attached.
// +kubebuilder:validation:Enum=RW;RO
type DiskMode string

const (
	// DiskRW is a read-write attachment; at most one host holds it.
	DiskRW DiskMode = "RW"
	// DiskRO is a read-only attachment.
	DiskRO DiskMode = "RO"
)

// VirtualDiskSpec is the desired state of a virtual disk.
type VirtualDiskSpec struct {
	// poolRef names the Pool this VDI belongs to. Immutable.
	// +required
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="poolRef is immutable"
	PoolRef PoolReference `json:"poolRef"`

	// storageRepository names the SR holding the disk. Immutable.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="storageRepository is immutable"
	StorageRepository string `json:"storageRepository"`

	// size is the virtual size of the disk.
	// +required
	// +kubebuilder:validation:XValidation:rule="quantity(string(self)).isGreaterThan(quantity('0'))",message="size must be greater than zero"
	Size resource.Quantity `json:"size"`
}

// VDILock is the RW attachment lock of a VDI (XenServer's host_<ref>=RW).
type VDILock struct {
	// host holds the lock.
	// +required
	Host string `json:"host"`
	// mode is RW.
	// +required
	Mode DiskMode `json:"mode"`
	// virtualMachine is the VM the disk is attached to on that host.
	// +optional
	VirtualMachine string `json:"virtualMachine,omitempty"`
	// bootID is the boot of host the lock was taken for. Once that boot is
	// fenced, the lock is known to be stale.
	// +optional
	BootID string `json:"bootID,omitempty"`
	// since is when the lock was taken.
	// +optional
	Since *metav1.Time `json:"since,omitempty"`
}

// VirtualDiskStatus is the observed state of a virtual disk.
type VirtualDiskStatus struct {
	// observedGeneration is the generation the status reflects.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// lock is the RW attachment lock. At most one host holds it; only the
	// operator writes it, through the API server's optimistic concurrency.
	// +optional
	Lock *VDILock `json:"lock,omitempty"`

	// volume is the path or volume key the host driver uses for the disk:
	// with the libvirt driver, the key of the volume the agent created in
	// its SR's storage pool on first attach, with spec.size.
	// +optional
	Volume string `json:"volume,omitempty"`

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
// +kubebuilder:resource:shortName=vdi,categories=poolkeeper
// +kubebuilder:printcolumn:name="Pool",type=string,JSONPath=`.spec.poolRef.name`
// +kubebuilder:printcolumn:name="SR",type=string,JSONPath=`.spec.storageRepository`
// +kubebuilder:printcolumn:name="Size",type=string,JSONPath=`.spec.size`
// +kubebuilder:printcolumn:name="Locked-By",type=string,JSONPath=`.status.lock.host`
// +kubebuilder:printcolumn:name="VM",type=string,JSONPath=`.status.lock.virtualMachine`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`

// VirtualDisk is a VDI in a storage repository. Its status holds the RW lock.
type VirtualDisk struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the desired state of the VDI.
	// +required
	Spec VirtualDiskSpec `json:"spec"`
	// status is the observed state of the VDI.
	// +optional
	Status VirtualDiskStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// VirtualDiskList is a list of VirtualDisks.
type VirtualDiskList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []VirtualDisk `json:"items"`
}

func init() {
	register(&VirtualDisk{}, &VirtualDiskList{})
}
