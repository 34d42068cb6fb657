package controllers

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/internal/status"
)

// Three reconcilers write a Pool's status, each its own part: the Pool
// reconciler (counts, heartbeat timeout, storm guard, master and epoch), the
// restore reconciler (status.restore, status.restoredSettings, Restored) and
// the backup schedule reconciler (status.backup, BackupScheduled). Each
// computes on its own copy of the Pool read, then sends only its part, laid
// over that read, in a merge patch conditional on its resourceVersion. A JSON
// merge patch replaces status.conditions whole; the optimistic lock is what
// makes that safe: a write based on a Pool another reconciler wrote since is
// refused (a conflict, retried quietly) instead of dropping the other's fields.
// The status kit (internal/status, Part) does the writing.

// poolStatus writes the part of a Pool's status one of its reconcilers owns.
type poolStatus = *status.Helper[*vpoolv1alpha1.Pool]

// setCondition sets one condition (a poolStatus's Set).
type setCondition = func(t string, st metav1.ConditionStatus, reason, msg string) bool

// poolPart is what the Pool reconciler writes.
var poolPart = status.Part[*vpoolv1alpha1.Pool]{
	Fields: func(dstPool, srcPool *vpoolv1alpha1.Pool) {
		dst, src := &dstPool.Status, &srcPool.Status
		dst.ObservedGeneration = src.ObservedGeneration
		dst.Master = src.Master
		dst.Epoch = src.Epoch
		dst.EffectiveHeartbeatTimeout = src.EffectiveHeartbeatTimeout
		dst.Hosts = src.Hosts
	},
	Conditions: []string{vpoolv1alpha1.ConditionReady, vpoolv1alpha1.PoolMasterAvailable, vpoolv1alpha1.PoolMembersRecovered,
		vpoolv1alpha1.PoolDefaultStorageRepositoryValid, vpoolv1alpha1.PoolFencingAllowed, vpoolv1alpha1.PoolOvercommitted,
		vpoolv1alpha1.PoolHeartbeatStorage, vpoolv1alpha1.ConditionReconciling, vpoolv1alpha1.ConditionStalled},
}

// restorePart is what the restore reconciler writes. It may raise the epoch,
// never lower it: a restored pool's next master starts a new epoch. It does
// so only before Restored is True, while the Pool reconciler waits for it.
var restorePart = status.Part[*vpoolv1alpha1.Pool]{
	Fields: func(dstPool, srcPool *vpoolv1alpha1.Pool) {
		dst, src := &dstPool.Status, &srcPool.Status
		dst.Restore = src.Restore
		dst.RestoredSettings = src.RestoredSettings
		dst.Epoch = max(dst.Epoch, src.Epoch)
	},
	Conditions: []string{vpoolv1alpha1.PoolRestored},
}

// schedulePart is what the backup schedule reconciler writes.
var schedulePart = status.Part[*vpoolv1alpha1.Pool]{
	Fields: func(dst, src *vpoolv1alpha1.Pool) {
		dst.Status.Backup, dst.Status.LastVerified = src.Status.Backup, src.Status.LastVerified
	},
	Conditions: []string{vpoolv1alpha1.PoolBackupScheduled},
}
