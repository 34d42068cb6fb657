package v1alpha1

import (
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// FencingMethod is how a host is made safe (powered off) before its VMs and
// disk locks are taken over.
// +kubebuilder:validation:Enum=Agent;Redfish;Manual
type FencingMethod string

const (
	// FencingAgent relies on the host agent's watchdog: it stops every VM when it
	// cannot renew its heartbeat, and the operator counts the host fenced once
	// the computed safe time has passed.
	FencingAgent FencingMethod = "Agent"
	// FencingRedfish powers the host off through its BMC
	// (ComputerSystem.Reset with ResetType ForceOff).
	FencingRedfish FencingMethod = "Redfish"
	// FencingManual: nobody can fence the host; a person confirms it is down by
	// setting spec.state to Forgotten.
	FencingManual FencingMethod = "Manual"
)

// HostState is the administrative state of a host.
// +kubebuilder:validation:Enum=Active;Forgotten
type HostState string

const (
	// HostActive is a member of the pool.
	HostActive HostState = "Active"
	// HostForgotten is xe host-forget: the host is made safe and removed from
	// the pool. It never comes back under the same object.
	HostForgotten HostState = "Forgotten"
)

// HostCapacity is what a host offers to VMs.
type HostCapacity struct {
	// cpu is the number of CPUs available to VMs: 1 to 4096.
	// +required
	// +kubebuilder:validation:XValidation:rule="quantity(string(self)).compareTo(quantity('1')) >= 0",messageExpression="string(self) + ' CPUs: a host offers at least 1'"
	// +kubebuilder:validation:XValidation:rule="quantity(string(self)).compareTo(quantity('4096')) <= 0",messageExpression="string(self) + ' CPUs: a host offers at most 4096'"
	CPU resource.Quantity `json:"cpu"`
	// memory is the memory available to VMs: 64Mi to 64Ti. A number without
	// a unit is bytes.
	// +required
	// +kubebuilder:validation:XValidation:rule="quantity(string(self)).compareTo(quantity('64Mi')) >= 0",messageExpression="string(self).matches('^[0-9]+$') ? string(self) + ' is ' + string(self) + ' bytes, below the 64Mi minimum: give a unit, such as ' + string(self) + 'Gi' : string(self) + ' is below the 64Mi minimum'"
	// +kubebuilder:validation:XValidation:rule="quantity(string(self)).compareTo(quantity('64Ti')) <= 0",messageExpression="string(self) + ' is above the 64Ti maximum'"
	Memory resource.Quantity `json:"memory"`
}

// RedfishFencing addresses a host's BMC.
type RedfishFencing struct {
	// endpoint is the BMC's base URL, for example https://bmc:443.
	// +required
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="isURL(self) && url(self).getScheme() in ['https', 'http']",message="endpoint must be an http(s) URL such as https://bmc:443"
	Endpoint string `json:"endpoint"`

	// systemID is the member of /redfish/v1/Systems that is this host.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=255
	// +kubebuilder:validation:Pattern=`^[^/?#]+$`
	SystemID string `json:"systemID"`

	// credentialsSecretRef names a kubernetes.io/basic-auth Secret in this
	// namespace holding the BMC's username and password.
	// +required
	CredentialsSecretRef LocalObjectReference `json:"credentialsSecretRef"`

	// insecureSkipVerify skips verification of the BMC's TLS certificate.
	// +optional
	InsecureSkipVerify bool `json:"insecureSkipVerify,omitempty"`

	// caBundleSecretRef names a Secret in this namespace whose `ca.crt`
	// entry holds the PEM certificates of the private CA that signed the
	// BMC's certificate; they are trusted instead of the system's roots.
	// +optional
	CABundleSecretRef *LocalObjectReference `json:"caBundleSecretRef,omitempty"`
}

// HostFencing selects how the host is fenced.
// +kubebuilder:validation:XValidation:rule="!has(self.method) || self.method != 'Redfish' || has(self.redfish)",message="redfish is required when method is Redfish",fieldPath=".redfish"
// +kubebuilder:validation:XValidation:rule="(has(self.method) && self.method == 'Redfish') || !has(self.redfish)",message="redfish may only be set when method is Redfish",fieldPath=".redfish"
type HostFencing struct {
	// method is Agent (the agent's watchdog), Redfish (BMC power-off) or Manual
	// (a person confirms the host is down).
	// +optional
	// +kubebuilder:default=Agent
	Method FencingMethod `json:"method,omitempty"`

	// redfish addresses the BMC; required when method is Redfish.
	// +optional
	Redfish *RedfishFencing `json:"redfish,omitempty"`
}

// HostSpec is the desired state of a hypervisor host.
type HostSpec struct {
	// poolRef names the Pool this host belongs to. Immutable.
	// +required
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="poolRef is immutable"
	PoolRef PoolReference `json:"poolRef"`

	// address is the host's management address (name or IP).
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Address string `json:"address"`

	// capacity is what the host offers to VMs.
	// +required
	Capacity HostCapacity `json:"capacity"`

	// fencing selects how the host is fenced.
	// +optional
	// +kubebuilder:default={}
	Fencing HostFencing `json:"fencing,omitempty"`

	// state is Active, or Forgotten for xe host-forget. The intent can be
	// withdrawn (set back to Active) until the operator begins the forget,
	// which it records in status.forgetStartedAt; from then on the host
	// cannot become Active again: add it as a new Host.
	// +optional
	// +kubebuilder:default=Active
	State HostState `json:"state,omitempty"`
}

// HostPhase is where a host is in its life cycle.
// +kubebuilder:validation:Enum=Pending;Live;Unreachable;Fencing;Fenced;Forgotten
type HostPhase string

const (
	// HostPhasePending: no heartbeat observed yet.
	HostPhasePending HostPhase = "Pending"
	// HostPhaseLive: heartbeating.
	HostPhaseLive HostPhase = "Live"
	// HostPhaseUnreachable: no heartbeat for the heartbeat timeout; not yet fenced.
	HostPhaseUnreachable HostPhase = "Unreachable"
	// HostPhaseFencing: being made safe.
	HostPhaseFencing HostPhase = "Fencing"
	// HostPhaseFenced: known to be down; its VMs may be reset and its locks released.
	HostPhaseFenced HostPhase = "Fenced"
	// HostPhaseForgotten: removed from the pool (xe host-forget).
	HostPhaseForgotten HostPhase = "Forgotten"
)

// HostRole is a host's role in the pool.
// +kubebuilder:validation:Enum=Master;Member
type HostRole string

const (
	// RoleMaster is the pool master.
	RoleMaster HostRole = "Master"
	// RoleMember is any other host.
	RoleMember HostRole = "Member"
)

// FencingStatus records a fence: what was done, when, and the evidence that the
// host is down.
type FencingStatus struct {
	// method is the fencing method used.
	// +optional
	Method FencingMethod `json:"method,omitempty"`
	// startedAt is when fencing began (recorded before any action).
	// +optional
	StartedAt *metav1.Time `json:"startedAt,omitempty"`
	// safeAt is, for Agent fencing, the time after which the host's watchdog has
	// certainly stopped its VMs.
	// +optional
	SafeAt *metav1.Time `json:"safeAt,omitempty"`
	// completedAt is when the host was known to be down.
	// +optional
	CompletedAt *metav1.Time `json:"completedAt,omitempty"`
	// evidence says why the host is known to be down.
	// +optional
	Evidence string `json:"evidence,omitempty"`
	// bootID is the agent's boot ID when fencing began; a fenced host rejoins
	// only after a new boot.
	// +optional
	BootID string `json:"bootID,omitempty"`
	// powerOffRequestedAt is when the operator last asked the BMC for
	// ForceOff (Redfish), recorded before the request is sent.
	// +optional
	PowerOffRequestedAt *metav1.Time `json:"powerOffRequestedAt,omitempty"`
	// attempts counts failed fencing actions since startedAt.
	// +optional
	Attempts int32 `json:"attempts,omitempty"`
	// lastError is the last fencing action's error, if it failed.
	// +optional
	LastError string `json:"lastError,omitempty"`
}

// WatchdogKind is what resets a host when its agent stops petting it.
// +kubebuilder:validation:Enum=Device;Emulated;None
type WatchdogKind string

const (
	// WatchdogDevice is a Linux watchdog device (/dev/watchdog: a hardware
	// watchdog, or softdog): the kernel resets the host when it expires.
	WatchdogDevice WatchdogKind = "Device"
	// WatchdogEmulated is the watchdog emulator of hack/libvirt-host.sh,
	// reached over a unix socket: it destroys the host's domains when it
	// expires.
	WatchdogEmulated WatchdogKind = "Emulated"
	// WatchdogNone is no watchdog (--watchdog none): only the agent's
	// in-process self-fence stops the VMs.
	WatchdogNone WatchdogKind = "None"
)

// WatchdogStatus is the watchdog the host's agent armed for one boot
// (reported by the agent, once per boot and again when its timeout
// changes). The operator cites it in status.fencing.evidence when it
// counts that boot fenced.
type WatchdogStatus struct {
	// kind is Device (a Linux watchdog device), Emulated (the watchdog
	// emulator of hack/libvirt-host.sh) or None (no watchdog: the safe time
	// rests on the agent process alone).
	// +required
	Kind WatchdogKind `json:"kind"`

	// device names the watchdog as the agent's --watchdog does: the device
	// path (/dev/watchdog) or unix:PATH, the emulator's socket. Empty for
	// None.
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	Device string `json:"device,omitempty"`

	// timeout is the watchdog's timeout W as armed: a quarter of the pool's
	// heartbeat timeout, rounded down to the watchdog's steps (whole
	// seconds for a device), or what its driver set instead. A host whose
	// agent stops renewing is reset at most T + W'/4 + W after its last
	// renewal, W' the timeout it asked (T + 5W/4 when they are one). Unset
	// for None.
	// +optional
	Timeout *metav1.Duration `json:"timeout,omitempty"`

	// bootID is the boot the watchdog was armed for (status.bootID then): a
	// watchdog reported for another boot says nothing about this one.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=255
	BootID string `json:"bootID"`
}

// HostStatus is the observed state of a host.
type HostStatus struct {
	// observedGeneration is the generation the status reflects.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// phase: Pending, Live, Unreachable, Fencing, Fenced or Forgotten.
	// +optional
	Phase HostPhase `json:"phase,omitempty"`

	// role is Master or Member.
	// +optional
	Role HostRole `json:"role,omitempty"`

	// lastHeartbeatTime is when the operator last observed the host's Lease
	// renewed, on the operator's clock. It is written on phase transitions,
	// not on every heartbeat.
	// +optional
	LastHeartbeatTime *metav1.Time `json:"lastHeartbeatTime,omitempty"`

	// masterEpoch is the pool epoch the host's agent follows (reported by the agent).
	// +optional
	MasterEpoch int64 `json:"masterEpoch,omitempty"`

	// bootID identifies the agent's current boot; it changes on every start
	// (reported by the agent).
	// +optional
	BootID string `json:"bootID,omitempty"`

	// runningVMs lists the VMs the agent reports running on the host.
	// +optional
	// +listType=set
	RunningVMs []string `json:"runningVMs,omitempty"`

	// networks are the networks the host offers, by name (reported by the
	// agent: with the libvirt driver, its active libvirt networks). A VM is
	// placed only on a host that offers every network it names.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=256
	// +kubebuilder:validation:items:MaxLength=255
	Networks []string `json:"networks,omitempty"`

	// driver is the agent's host driver: sim or libvirt (reported by the agent).
	// +optional
	Driver string `json:"driver,omitempty"`

	// heartbeatInterval is the interval the agent renews its Lease at
	// (reported by the agent): its --heartbeat-interval, or less when the
	// pool's heartbeat timeout needs it (at most a quarter of the timeout).
	// +optional
	HeartbeatInterval *metav1.Duration `json:"heartbeatInterval,omitempty"`

	// watchdog is the watchdog the agent armed, and for which boot
	// (reported by the agent): what an Agent fence's safe time rests on.
	// +optional
	Watchdog *WatchdogStatus `json:"watchdog,omitempty"`

	// fencing records the current or last fence.
	// +optional
	Fencing *FencingStatus `json:"fencing,omitempty"`

	// forgetStartedAt is when the operator began to forget the host
	// (spec.state Forgotten, or the Host deleted): from then on the forget
	// cannot be withdrawn.
	// +optional
	ForgetStartedAt *metav1.Time `json:"forgetStartedAt,omitempty"`

	// conditions: Ready, Heartbeat, Fenced, FencingReady, AgentConflict.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +patchStrategy=merge
	// +patchMergeKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty" patchStrategy:"merge" patchMergeKey:"type"`
}

// Host condition types.
const (
	// HostHeartbeat is True while the host renews its Lease in time.
	HostHeartbeat = "Heartbeat"
	// HostFencedCondition is True once the host is known to be down.
	HostFencedCondition = "Fenced"
	// HostAgentConflict is True while a second agent (another boot) claims
	// the host: a cloned host, or a host's identity reused while the
	// original still runs. The host is not Ready and gets no new VMs until
	// one of the two is gone.
	HostAgentConflict = "AgentConflict"
	// HostFencingReady says whether the host can be fenced with its method,
	// checked as soon as the fencing configuration is written: for Redfish,
	// the credentials Secret and the BMC's answer to them.
	HostFencingReady = "FencingReady"
)

// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=vhost,categories=poolkeeper
// +kubebuilder:validation:XValidation:rule="self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$') && size(self.metadata.name) <= 63",message="metadata.name of a Host must be a DNS label (lower-case letters, digits and '-', at most 63 characters): it names the host's heartbeat Lease and is used as a host name"
// +kubebuilder:validation:XValidation:rule="!has(oldSelf.spec.state) || oldSelf.spec.state != 'Forgotten' || (has(self.spec.state) && self.spec.state == 'Forgotten') || !has(oldSelf.status) || !has(oldSelf.status.forgetStartedAt)",message="the forget of this host has begun (status.forgetStartedAt is set): it cannot be withdrawn; add the host again as a new Host",fieldPath=".spec.state"
// +kubebuilder:printcolumn:name="Pool",type=string,JSONPath=`.spec.poolRef.name`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Role",type=string,JSONPath=`.status.role`
// +kubebuilder:printcolumn:name="Epoch",type=integer,JSONPath=`.status.masterEpoch`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Address",type=string,JSONPath=`.spec.address`,priority=1
// +kubebuilder:printcolumn:name="Fencing",type=string,JSONPath=`.spec.fencing.method`,priority=1
// +kubebuilder:printcolumn:name="Watchdog",type=string,JSONPath=`.status.watchdog.kind`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`

// Host is a hypervisor host of a pool, member or master. Its agent heartbeats
// through a coordination.k8s.io Lease of the same name.
type Host struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the desired state of the host.
	// +required
	Spec HostSpec `json:"spec"`
	// status is the observed state of the host.
	// +optional
	Status HostStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// HostList is a list of Hosts.
type HostList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Host `json:"items"`
}

func init() {
	register(&Host{}, &HostList{})
}
