package v1alpha1

import (
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// DesiredPowerState is the power state a user asks for.
// +kubebuilder:validation:Enum=Running;Halted
type DesiredPowerState string

const (
	// DesiredRunning asks for the VM to run on some Live host.
	DesiredRunning DesiredPowerState = "Running"
	// DesiredHalted asks for the VM to be stopped.
	DesiredHalted DesiredPowerState = "Halted"
)

// PowerState is a VM's observed power state.
// +kubebuilder:validation:Enum=Running;Halted;Suspended;Paused;Unknown
type PowerState string

const (
	// PowerRunning: running on status.residentOn.
	PowerRunning PowerState = "Running"
	// PowerHalted: not running anywhere.
	PowerHalted PowerState = "Halted"
	// PowerSuspended: memory saved to status.suspendVirtualDisk.
	PowerSuspended PowerState = "Suspended"
	// PowerPaused: resident but not scheduled by the hypervisor.
	PowerPaused PowerState = "Paused"
	// PowerUnknown: not yet observed.
	PowerUnknown PowerState = "Unknown"
)

// RestartPriority is what HA does with a VM whose host failed.
// +kubebuilder:validation:Enum=Restart;BestEffort;DoNotRestart
type RestartPriority string

const (
	// RestartAlways: restarted first, in startOrder.
	RestartAlways RestartPriority = "Restart"
	// RestartBestEffort: restarted if capacity remains after the Restart VMs.
	RestartBestEffort RestartPriority = "BestEffort"
	// RestartNever: stays Halted.
	RestartNever RestartPriority = "DoNotRestart"
)

// VMResources is what a VM needs from its host.
type VMResources struct {
	// cpu is the number of virtual CPUs: 1 to 4096.
	// +optional
	// +kubebuilder:validation:XValidation:rule="quantity(string(self)).compareTo(quantity('1')) >= 0",messageExpression="string(self) + ' virtual CPUs: a VM has at least 1'"
	// +kubebuilder:validation:XValidation:rule="quantity(string(self)).compareTo(quantity('4096')) <= 0",messageExpression="string(self) + ' virtual CPUs: a VM has at most 4096'"
	CPU *resource.Quantity `json:"cpu,omitempty"`
	// memory is the VM's memory: 16Mi to 64Ti. A number without a unit is bytes.
	// +optional
	// +kubebuilder:validation:XValidation:rule="quantity(string(self)).compareTo(quantity('16Mi')) >= 0",messageExpression="string(self).matches('^[0-9]+$') ? string(self) + ' is ' + string(self) + ' bytes, below the 16Mi minimum: give a unit, such as ' + string(self) + 'Mi' : string(self) + ' is below the 16Mi minimum'"
	// +kubebuilder:validation:XValidation:rule="quantity(string(self)).compareTo(quantity('64Ti')) <= 0",messageExpression="string(self) + ' is above the 64Ti maximum'"
	Memory *resource.Quantity `json:"memory,omitempty"`
}

// VMDisk attaches a VirtualDisk to a VM.
type VMDisk struct {
	// name of the disk within the VM (for example root, data).
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Name string `json:"name"`
	// virtualDisk names the VirtualDisk in this namespace.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	VirtualDisk string `json:"virtualDisk"`
	// mode is RW (default; locks the VDI to the VM's host) or RO.
	// +optional
	// +kubebuilder:default=RW
	Mode DiskMode `json:"mode,omitempty"`
}

// VMAffinity expresses placement preferences.
type VMAffinity struct {
	// host is the preferred Host.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Host string `json:"host,omitempty"`
}

// VMInterface is a network interface of a VM.
type VMInterface struct {
	// name of the interface within the VM (for example eth0).
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Name string `json:"name"`
	// network is the host network the interface is plugged into, by name: a
	// VM is placed only on a host whose status.networks has it.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=255
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9][-A-Za-z0-9_.+]*$`
	Network string `json:"network"`
	// macAddress is the interface's unicast MAC address (for example
	// 52:54:00:12:34:56). Without it one is generated and kept in
	// status.interfaces, so that a VM restarted elsewhere keeps it.
	// +optional
	// +kubebuilder:validation:MaxLength=17
	// +kubebuilder:validation:Pattern=`^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$`
	// +kubebuilder:validation:XValidation:rule="self.matches('^.[02468aceACE]')",message="macAddress must be a unicast address (the first octet even)"
	MACAddress string `json:"macAddress,omitempty"`
}

// VMBoot is a direct kernel boot from files on the host.
type VMBoot struct {
	// kernel is the absolute path of the kernel image on the host.
	// +required
	// +kubebuilder:validation:MinLength=2
	// +kubebuilder:validation:MaxLength=4096
	// +kubebuilder:validation:Pattern=`^/[^\x00]*$`
	Kernel string `json:"kernel"`
	// initrd is the absolute path of the initial ramdisk on the host.
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	// +kubebuilder:validation:Pattern=`^/[^\x00]*$`
	Initrd string `json:"initrd,omitempty"`
	// cmdline is the kernel command line.
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	Cmdline string `json:"cmdline,omitempty"`
}

// VMInterfaceStatus is an interface's address as used by the VM.
type VMInterfaceStatus struct {
	// name of the interface (spec.interfaces[].name).
	// +required
	Name string `json:"name"`
	// macAddress is the MAC address the interface has: spec's, or the one
	// generated for it.
	// +required
	MACAddress string `json:"macAddress"`
}

// VMHA is the VM's HA setting.
type VMHA struct {
	// restartPriority: Restart (restarted first, in startOrder), BestEffort
	// (if capacity remains) or DoNotRestart (stays Halted).
	// +optional
	// +kubebuilder:default=DoNotRestart
	RestartPriority RestartPriority `json:"restartPriority,omitempty"`
}

// VirtualMachineSpec is the desired state of a VM.
// +kubebuilder:validation:XValidation:rule="!has(self.disks) || self.disks.all(d, self.disks.exists_one(e, e.virtualDisk == d.virtualDisk))",message="a VirtualDisk may be attached only once to a VM",fieldPath=".disks"
type VirtualMachineSpec struct {
	// poolRef names the Pool this VM belongs to. Immutable.
	// +required
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="poolRef is immutable"
	PoolRef PoolReference `json:"poolRef"`

	// powerState is the desired power state: Running or Halted.
	// +optional
	// +kubebuilder:default=Halted
	PowerState DesiredPowerState `json:"powerState,omitempty"`

	// resources is what the VM needs from its host.
	// +optional
	Resources VMResources `json:"resources,omitempty"`

	// disks attached to the VM. Names and VirtualDisks are unique within a VM.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=64
	Disks []VMDisk `json:"disks,omitempty"`

	// affinity expresses placement preferences.
	// +optional
	Affinity VMAffinity `json:"affinity,omitempty"`

	// ha is the VM's HA setting.
	// +optional
	// +kubebuilder:default={}
	HA VMHA `json:"ha,omitempty"`

	// startOrder orders starts within a pool (a vApp's boot order): lower first.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=10000
	StartOrder int32 `json:"startOrder,omitempty"`

	// applianceRef names the VirtualAppliance (vApp) the VM belongs to: its
	// VMs start, and are recovered, together, in startOrder.
	// +optional
	ApplianceRef *LocalObjectReference `json:"applianceRef,omitempty"`

	// interfaces are the VM's network interfaces. Names are unique within a VM.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=32
	Interfaces []VMInterface `json:"interfaces,omitempty"`

	// boot, when set, boots the VM from a kernel (and initrd) on the host;
	// without it the VM boots from its first disk.
	// +optional
	Boot *VMBoot `json:"boot,omitempty"`
}

// VirtualMachineStatus is the observed state of a VM.
type VirtualMachineStatus struct {
	// observedGeneration is the generation the status reflects.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// uuid is the VM's identity, set once by the operator and kept by
	// backups and restores (XenServer keeps UUIDs on restore): hypervisor
	// domains are tagged with it and recoveries match VMs by it.
	// +optional
	// +kubebuilder:validation:MaxLength=36
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="uuid is immutable once set"
	UUID string `json:"uuid,omitempty"`

	// powerState: Running, Halted, Suspended, Paused or Unknown.
	// +optional
	PowerState PowerState `json:"powerState,omitempty"`

	// residentOn is the Host the VM runs on, or is recorded as running on.
	// +optional
	ResidentOn string `json:"residentOn,omitempty"`

	// residentBootID is the boot ID residentOn had when the VM was placed on
	// it. Once that boot is fenced, the VM is known to run no more.
	// +optional
	ResidentBootID string `json:"residentBootID,omitempty"`

	// suspendVirtualDisk holds the VM's memory while it is Suspended.
	// +optional
	SuspendVirtualDisk string `json:"suspendVirtualDisk,omitempty"`

	// interfaces are the MAC addresses of the VM's interfaces, generated once
	// where spec.interfaces gives none and kept across restarts elsewhere.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=32
	Interfaces []VMInterfaceStatus `json:"interfaces,omitempty"`

	// lastReset records the last vm-reset-powerstate: the VM's host was fenced
	// or forgotten while the VM was resident on it.
	// +optional
	LastReset *VMReset `json:"lastReset,omitempty"`

	// conditions: Ready, Scheduled, DisksLocked, Restored on a VM a
	// restore had to change (a Suspended VM whose image was lost is Halted),
	// and ResourcesPending while a running VM's spec.resources fit no host.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +patchStrategy=merge
	// +patchMergeKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty" patchStrategy:"merge" patchMergeKey:"type"`
}

// VMReset records a vm-reset-powerstate.
type VMReset struct {
	// host the VM was resident on.
	Host string `json:"host"`
	// at is when the VM was reset to Halted, to the second.
	At metav1.Time `json:"at"`
	// preciseAt is the same instant to the microsecond: recovery times are
	// measured from it. Absent on resets recorded before it existed.
	// +optional
	PreciseAt *metav1.MicroTime `json:"preciseAt,omitempty"`
	// generation is the VM's metadata.generation at the reset. A DoNotRestart
	// VM is started again only after its spec changes.
	Generation int64 `json:"generation"`
}

// VirtualMachine condition types.
const (
	// VMScheduled is True once the VM has a host to run on.
	VMScheduled = "Scheduled"
	// VMDisksLocked is True once every RW disk is locked for the VM's host.
	VMDisksLocked = "DisksLocked"
	// VMResourcesPending is True while a running VM's spec.resources, which
	// take effect at its next boot, fit no host of the pool. Absent otherwise.
	VMResourcesPending = "ResourcesPending"
	// VMStarted is the word of the agent of the VM's host on starting it: True
	// (reason Running) once the VM runs there, False with why not yet —
	// StartFailed: the hypervisor refused to start it, with its error, tried
	// again at every heartbeat; WaitingOnHost: what the agent still waits
	// for (a volume, a MAC address, this boot's placement). Its message
	// begins with "host NAME: ", the host that said it; Ready repeats a
	// False one of the VM's current host.
	VMStarted = "Started"
)

// Reasons of VMStarted, set by the agent.
const (
	ReasonVMRunningOnHost = "Running"
	ReasonVMStartFailed   = "StartFailed"
	ReasonVMWaitingOnHost = "WaitingOnHost"
)

// StartedMessagePrefix is how a VMStarted message names its host.
func StartedMessagePrefix(host string) string { return "host " + host + ": " }

// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=vmachine,categories=poolkeeper
// +kubebuilder:printcolumn:name="Pool",type=string,JSONPath=`.spec.poolRef.name`
// +kubebuilder:printcolumn:name="Desired",type=string,JSONPath=`.spec.powerState`
// +kubebuilder:printcolumn:name="Power",type=string,JSONPath=`.status.powerState`
// +kubebuilder:printcolumn:name="Host",type=string,JSONPath=`.status.residentOn`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Priority",type=string,JSONPath=`.spec.ha.restartPriority`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`

// VirtualMachine is a VM of a pool: its desired power state, disks and HA
// restart priority.
type VirtualMachine struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the desired state of the VM.
	// +required
	Spec VirtualMachineSpec `json:"spec"`
	// status is the observed state of the VM.
	// +optional
	Status VirtualMachineStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// VirtualMachineList is a list of VirtualMachines.
type VirtualMachineList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []VirtualMachine `json:"items"`
}

func init() {
	register(&VirtualMachine{}, &VirtualMachineList{})
}
