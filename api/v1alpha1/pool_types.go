package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// PoolSpec is the desired state of a resource pool.
// +kubebuilder:validation:XValidation:rule="has(oldSelf.restoreFrom) == has(self.restoreFrom)",message="restoreFrom can only be set when the Pool is created and cannot be removed"
type PoolSpec struct {
	// ha configures high availability: automatic fencing of dead hosts, restart
	// of their VMs and election of a new master.
	// +optional
	// +kubebuilder:default={}
	HA HASpec `json:"ha,omitempty"`

	// heartbeatTimeout is how long a host may go without renewing its heartbeat
	// Lease before it is considered Unreachable: a duration between 1s and 24h.
	// Unset: the value a restore took from its backup, else 600s without HA,
	// 60s with HA. status.effectiveHeartbeatTimeout shows the value in force.
	// Agents heartbeat at most every quarter of it: a running agent adapts at
	// its next renewal.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s')",message="heartbeatTimeout must be a duration of at least 1s"
	// +kubebuilder:validation:XValidation:rule="duration(self) <= duration('24h')",message="heartbeatTimeout must be at most 24h"
	HeartbeatTimeout *metav1.Duration `json:"heartbeatTimeout,omitempty"`

	// master is the name of the Host requested as pool master. With the master
	// live it is a planned hand-over; with the master dead and HA off it is the
	// recovery intent (pool-emergency-transition-to-master followed by
	// pool-recover-slaves); with HA on it is only a preference.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Master string `json:"master,omitempty"`

	// defaultStorageRepository names the pool's default StorageRepository.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	DefaultStorageRepository string `json:"defaultStorageRepository,omitempty"`

	// fencing bounds automatic fencing (the storm guard).
	// +optional
	// +kubebuilder:default={}
	Fencing PoolFencingSpec `json:"fencing,omitempty"`

	// backup creates PoolBackups on a schedule and prunes old ones.
	// +optional
	Backup *BackupSchedule `json:"backup,omitempty"`

	// restoreFrom recreates the pool from a PoolBackup in this namespace
	// (pool-restore-database). It can only be set when the Pool is created.
	// +optional
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="restoreFrom is immutable"
	RestoreFrom *RestoreSource `json:"restoreFrom,omitempty"`
}

// HASpec configures high availability.
type HASpec struct {
	// enabled turns HA on: dead hosts are fenced automatically, their VMs
	// restarted and a new master elected automatically.
	// +optional
	// +kubebuilder:default=false
	Enabled bool `json:"enabled,omitempty"`

	// hostFailuresToTolerate is the number of host failures whose VMs the pool
	// keeps capacity free to restart. The Overcommitted condition is True when
	// the pool can no longer honour it.
	// +optional
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	HostFailuresToTolerate int32 `json:"hostFailuresToTolerate,omitempty"`

	// heartbeatStorageRepository names a shared StorageRepository of the pool
	// (XenServer's heartbeat SR, pool-ha-enable heartbeat-sr-uuids=) whose
	// statefile is the agents' second heartbeat channel: with it, an outage
	// of the API server or etcd that cuts off more than
	// spec.fencing.maxUnhealthyPercent of the hosts stops no VM. Without it
	// an agent that cannot renew its Lease for the heartbeat timeout stops
	// every VM, outage or not (the Pool's HeartbeatStorage condition says so).
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`
	HeartbeatStorageRepository string `json:"heartbeatStorageRepository,omitempty"`
}

// PoolFencingSpec is the storm guard for automatic fencing.
type PoolFencingSpec struct {
	// maxConcurrent is how many hosts may be in Fencing at once.
	// +optional
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000
	MaxConcurrent int32 `json:"maxConcurrent,omitempty"`

	// maxUnhealthyPercent: when more than this percentage of the pool's hosts is
	// stale at once, the operator assumes it is itself cut off, fences nobody and
	// sets FencingAllowed to False.
	// +optional
	// +kubebuilder:default=50
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	MaxUnhealthyPercent int32 `json:"maxUnhealthyPercent,omitempty"`
}

// BackupSchedule creates PoolBackups on a cron schedule.
type BackupSchedule struct {
	// schedule is a standard five-field cron expression (or a descriptor such
	// as @daily), evaluated in UTC.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=128
	Schedule string `json:"schedule"`

	// retain is how many completed backups of this schedule to keep; older
	// ones are deleted.
	// +optional
	// +kubebuilder:default=7
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000
	Retain int32 `json:"retain,omitempty"`

	// storage is where the backups are stored.
	// +optional
	// +kubebuilder:default={}
	Storage BackupStorage `json:"storage,omitempty"`

	// encryption is the key the backups are encrypted with.
	// +required
	Encryption BackupEncryption `json:"encryption"`

	// verify proves on a schedule that the pool's latest backup would
	// recover the pool; the outcome is in status.lastVerified.
	// +optional
	Verify *BackupVerification `json:"verify,omitempty"`
}

// BackupVerification is a scheduled check of the pool's latest Completed
// backup: downloaded from its storage, checked against its sha256,
// decrypted with its key, its counts checked, and planned as a test
// failover of every VM it holds (the plan a Recovery would write, into a
// pool that has none of its objects). Nothing is created: a test failover
// that creates objects needs a site whose namespace does not already hold
// the pool's VMs (a DR site: a Recovery with spec.dryRun).
type BackupVerification struct {
	// schedule is a standard five-field cron expression (or a descriptor such
	// as @daily), evaluated in UTC.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=128
	Schedule string `json:"schedule"`
}

// BackupVerificationStatus is the outcome of the last scheduled verification.
type BackupVerificationStatus struct {
	// backup is the PoolBackup verified ("" when the pool had none).
	// +optional
	Backup string `json:"backup,omitempty"`
	// time is when the verification ran.
	// +required
	Time metav1.Time `json:"time"`
	// passed is true when every check passed.
	// +required
	Passed bool `json:"passed"`
	// message says what was checked and found, or what failed.
	// +optional
	Message string `json:"message,omitempty"`
}

// RestoreMode says what a restore does on a conflict with an existing object.
// +kubebuilder:validation:Enum=Strict;BestEffort
type RestoreMode string

const (
	// RestoreStrict stops at the first conflict, before writing anything.
	RestoreStrict RestoreMode = "Strict"
	// RestoreBestEffort skips each conflicting object and reports it.
	RestoreBestEffort RestoreMode = "BestEffort"
)

// RestoreSource names the PoolBackup a Pool is restored from.
type RestoreSource struct {
	// backupName is the PoolBackup in this namespace to restore.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	BackupName string `json:"backupName"`

	// mode is Strict (stop at the first conflict, write nothing) or BestEffort
	// (skip and report each conflict).
	// +optional
	// +kubebuilder:default=Strict
	Mode RestoreMode `json:"mode,omitempty"`

	// dryRun makes this a DR test failover: objects are recreated but no VM is
	// started, and everything created is removed when the Pool is deleted.
	// +optional
	DryRun bool `json:"dryRun,omitempty"`
}

// PoolSettings are a pool's own settings a restore can bring back: the
// fields of PoolSpec of the same names, each set only when taken.
type PoolSettings struct {
	// heartbeatTimeout as in spec.heartbeatTimeout.
	// +optional
	HeartbeatTimeout *metav1.Duration `json:"heartbeatTimeout,omitempty"`
	// ha as in spec.ha.
	// +optional
	HA *HASpec `json:"ha,omitempty"`
	// master as in spec.master: the backup's requested master, else the
	// master at the backup's point in time (a preference for the first master).
	// +optional
	Master string `json:"master,omitempty"`
	// defaultStorageRepository as in spec.defaultStorageRepository.
	// +optional
	DefaultStorageRepository string `json:"defaultStorageRepository,omitempty"`
	// fencing as in spec.fencing.
	// +optional
	Fencing *PoolFencingSpec `json:"fencing,omitempty"`
	// backup as in spec.backup.
	// +optional
	Backup *BackupSchedule `json:"backup,omitempty"`
}

// HostCounts counts a pool's hosts by state.
type HostCounts struct {
	// total is the number of Hosts of the pool, forgotten ones excluded.
	// +optional
	Total int32 `json:"total,omitempty"`
	// live is the number of Hosts in phase Live.
	// +optional
	Live int32 `json:"live,omitempty"`
	// unreachable is the number of Hosts in phase Unreachable or Fencing.
	// +optional
	Unreachable int32 `json:"unreachable,omitempty"`
	// fenced is the number of Hosts in phase Fenced.
	// +optional
	Fenced int32 `json:"fenced,omitempty"`
}

// PoolStatus is the observed state of a pool.
type PoolStatus struct {
	// observedGeneration is the generation the status reflects.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// master is the Host currently acting as pool master.
	// +optional
	Master string `json:"master,omitempty"`

	// epoch increases by one on every change of master. Agents follow it; an
	// agent on an older epoch is not a master.
	// +optional
	Epoch int64 `json:"epoch,omitempty"`

	// effectiveHeartbeatTimeout is the heartbeat timeout in force: spec.heartbeatTimeout,
	// else restoredSettings.heartbeatTimeout, else the default for spec.ha.enabled
	// (see Pool.Effective).
	// +optional
	EffectiveHeartbeatTimeout *metav1.Duration `json:"effectiveHeartbeatTimeout,omitempty"`

	// restoredSettings are the pool settings a restore (spec.restoreFrom) took
	// from its backup because this Pool's spec left them unset, as
	// pool-restore-database brings back the pool database. Each is in force
	// while the spec leaves it unset; a value set in spec wins.
	// +optional
	RestoredSettings *PoolSettings `json:"restoredSettings,omitempty"`

	// hosts counts the pool's hosts by state.
	// +optional
	Hosts HostCounts `json:"hosts,omitempty"`

	// backup is the state of the spec.backup schedule.
	// +optional
	Backup *BackupScheduleStatus `json:"backup,omitempty"`

	// lastVerified is the outcome of the last scheduled verification of the
	// pool's latest backup (spec.backup.verify).
	// +optional
	LastVerified *BackupVerificationStatus `json:"lastVerified,omitempty"`

	// restore reports the restore of spec.restoreFrom.
	// +optional
	Restore *RestoreStatus `json:"restore,omitempty"`

	// conditions: Ready, MasterAvailable, MembersRecovered,
	// DefaultStorageRepositoryValid, FencingAllowed, Overcommitted, and
	// Restored when spec.restoreFrom is set.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +patchStrategy=merge
	// +patchMergeKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty" patchStrategy:"merge" patchMergeKey:"type"`
}

// BackupScheduleStatus is the state of a pool's backup schedule.
type BackupScheduleStatus struct {
	// lastScheduleTime is the scheduled time of the last backup created.
	// +optional
	LastScheduleTime *metav1.Time `json:"lastScheduleTime,omitempty"`
	// nextScheduleTime is when the next backup is due.
	// +optional
	NextScheduleTime *metav1.Time `json:"nextScheduleTime,omitempty"`
	// lastBackup is the name of the last PoolBackup the schedule created.
	// +optional
	LastBackup string `json:"lastBackup,omitempty"`
	// lastVerifyScheduleTime is the scheduled time of the last verification
	// (spec.backup.verify).
	// +optional
	LastVerifyScheduleTime *metav1.Time `json:"lastVerifyScheduleTime,omitempty"`
	// nextVerifyScheduleTime is when the next verification is due.
	// +optional
	NextVerifyScheduleTime *metav1.Time `json:"nextVerifyScheduleTime,omitempty"`
}

// RestoreStatus reports a restore (pool-restore-database).
type RestoreStatus struct {
	// backup is the PoolBackup restored.
	Backup string `json:"backup"`
	// completedAt is when every object was recreated.
	// +optional
	CompletedAt *metav1.Time `json:"completedAt,omitempty"`
	// created counts the objects recreated.
	// +optional
	Created BackupCounts `json:"created,omitempty"`
	// problems lists conflicts, skipped objects and notes, one per line, at
	// most 20 (the Restored condition says how many there were in all).
	// +optional
	// +kubebuilder:validation:MaxItems=20
	Problems []string `json:"problems,omitempty"`
	// cleanedUp is set once a DR test's objects were removed.
	// +optional
	CleanedUp bool `json:"cleanedUp,omitempty"`
}

// AnnotationDRTestFinished on a Pool restored with restoreFrom.dryRun marks
// the DR test finished: everything it created is removed.
const AnnotationDRTestFinished = "vpool.poolkeeper.io/dr-test-finished"

// FinalizerDRTestCleanup holds a DR-test Pool until its objects are removed.
const FinalizerDRTestCleanup = "vpool.poolkeeper.io/dr-test-cleanup"

// FinalizerPoolMembers holds a deleted Pool while it still has Hosts; once
// none is left it deletes the pool's VirtualMachines, VirtualDisks and
// StorageRepositories (never its PoolBackups) and lets the Pool go.
const FinalizerPoolMembers = "vpool.poolkeeper.io/pool-members"

// Pool condition types.
const (
	// PoolMasterAvailable is True while a Live host is the pool master.
	PoolMasterAvailable = "MasterAvailable"
	// PoolMembersRecovered is True once every Live host follows the current epoch.
	PoolMembersRecovered = "MembersRecovered"
	// PoolDefaultStorageRepositoryValid says whether spec.defaultStorageRepository
	// exists and is usable from the master.
	PoolDefaultStorageRepositoryValid = "DefaultStorageRepositoryValid"
	// PoolFencingAllowed is False when the storm guard stops all fencing.
	PoolFencingAllowed = "FencingAllowed"
	// PoolHeartbeatStorage says, with HA on, whether the pool has a heartbeat
	// SR: False means a control-plane outage longer than the heartbeat
	// timeout stops every VM.
	PoolHeartbeatStorage = "HeartbeatStorage"
	// PoolOvercommitted is True when surviving capacity cannot honour
	// spec.ha.hostFailuresToTolerate or restart every Restart VM.
	PoolOvercommitted = "Overcommitted"
	// PoolRestored reports the progress of spec.restoreFrom.
	PoolRestored = "Restored"
	// PoolBackupScheduled reports the spec.backup schedule (only when set).
	PoolBackupScheduled = "BackupScheduled"
)

// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=vpool,categories=poolkeeper
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Master",type=string,JSONPath=`.status.master`
// +kubebuilder:printcolumn:name="Epoch",type=integer,JSONPath=`.status.epoch`
// +kubebuilder:printcolumn:name="HA",type=boolean,JSONPath=`.spec.ha.enabled`
// +kubebuilder:printcolumn:name="Hosts",type=integer,JSONPath=`.status.hosts.total`
// +kubebuilder:printcolumn:name="Live",type=integer,JSONPath=`.status.hosts.live`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`

// Pool is a XenServer-style resource pool: its hosts, storage and VMs, its
// master, HA settings and backup schedule.
type Pool struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the desired state of the pool.
	// +optional
	Spec PoolSpec `json:"spec,omitempty"`
	// status is the observed state of the pool.
	// +optional
	Status PoolStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// PoolList is a list of Pools.
type PoolList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Pool `json:"items"`
}

func init() {
	register(&Pool{}, &PoolList{})
}
