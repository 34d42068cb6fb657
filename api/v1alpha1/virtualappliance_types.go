package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// MaxApplianceMembers is the most members status.members lists; a vApp with
// more says so in status.memberCount and its Ready message.
const MaxApplianceMembers = 1024

// VirtualApplianceSpec is the desired state of a vApp.
type VirtualApplianceSpec struct {
	// poolRef names the Pool this vApp belongs to; its VMs must be of the
	// same pool. Immutable.
	// +required
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="poolRef is immutable"
	PoolRef PoolReference `json:"poolRef"`

	// startDelay is how long a start-order group of the vApp waits, once
	// every VM of the groups before it that should run is Running, before
	// it starts (XenServer's start_delay): 0s to 1h, default 0s (the next
	// group starts as soon as the one before it runs).
	// +optional
	// +kubebuilder:default="0s"
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('0s')",message="startDelay must not be negative"
	// +kubebuilder:validation:XValidation:rule="duration(self) <= duration('1h')",message="startDelay must be at most 1h"
	StartDelay *metav1.Duration `json:"startDelay,omitempty"`
}

// ApplianceMember is a VM of a vApp as the vApp sees it.
type ApplianceMember struct {
	// name of the VirtualMachine.
	// +required
	Name string `json:"name"`
	// startOrder is the VM's spec.startOrder: its group in the vApp's boot
	// order, lower first.
	// +required
	StartOrder int32 `json:"startOrder"`
	// desiredPowerState is the VM's spec.powerState. A Halted member holds
	// no group back.
	// +optional
	DesiredPowerState DesiredPowerState `json:"desiredPowerState,omitempty"`
	// powerState is the VM's status.powerState.
	// +optional
	PowerState PowerState `json:"powerState,omitempty"`
	// residentOn is the Host the VM runs on, or is placed on.
	// +optional
	ResidentOn string `json:"residentOn,omitempty"`
	// runningSince is when the operator saw the VM Running on residentOn,
	// to the microsecond; the next group's startDelay counts from the
	// latest runningSince of the groups before it. Absent while the VM does
	// not run.
	// +optional
	RunningSince *metav1.MicroTime `json:"runningSince,omitempty"`
}

// VirtualApplianceStatus is the observed state of a vApp.
type VirtualApplianceStatus struct {
	// observedGeneration is the generation the status reflects.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// memberCount is the number of VMs of the pool whose spec.applianceRef
	// names this vApp.
	// +optional
	MemberCount int32 `json:"memberCount,omitempty"`

	// members are those VMs, by name (at most 1024).
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=1024
	Members []ApplianceMember `json:"members,omitempty"`

	// conditions: Ready (True when every member whose spec.powerState is
	// Running runs), Reconciling while members are starting.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +patchStrategy=merge
	// +patchMergeKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty" patchStrategy:"merge" patchMergeKey:"type"`
}

// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=vapp,categories=poolkeeper
// +kubebuilder:printcolumn:name="Pool",type=string,JSONPath=`.spec.poolRef.name`
// +kubebuilder:printcolumn:name="Members",type=integer,JSONPath=`.status.memberCount`
// +kubebuilder:printcolumn:name="Delay",type=string,JSONPath=`.spec.startDelay`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`

// VirtualAppliance is a vApp: VMs (those whose spec.applianceRef names it)
// started, and recovered, together, by their startOrder, each start-order
// group waiting for the one before it to run plus spec.startDelay.
type VirtualAppliance struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the desired state of the vApp.
	// +required
	Spec VirtualApplianceSpec `json:"spec"`
	// status is the observed state of the vApp.
	// +optional
	Status VirtualApplianceStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// VirtualApplianceList is a list of VirtualAppliances.
type VirtualApplianceList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []VirtualAppliance `json:"items"`
}

func init() {
	register(&VirtualAppliance{}, &VirtualApplianceList{})
}
