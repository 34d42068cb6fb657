package controllers

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
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

// poolStatusPart is the part of a Pool's status one reconciler owns.
type poolStatusPart struct {
	// copyFields copies the fields of the part from src to dst.
	copyFields func(dst, src *vpoolv1alpha1.PoolStatus)
	// conditions are the condition types of the part.
	conditions []string
}

// patch writes the part of pool's status that differs from before, the Pool
// as read, and nothing else; it reports whether it wrote. On success pool
// holds the Pool as the API server returned it.
func (p poolStatusPart) patch(ctx context.Context, c client.Client, before, pool *vpoolv1alpha1.Pool) (bool, error) {
	out := before.DeepCopy()
	p.copyFields(&out.Status, &pool.Status)
	for _, t := range p.conditions {
		if cond := meta.FindStatusCondition(pool.Status.Conditions, t); cond != nil {
			meta.SetStatusCondition(&out.Status.Conditions, *cond)
		} else {
			meta.RemoveStatusCondition(&out.Status.Conditions, t)
		}
	}
	if equality.Semantic.DeepEqual(before.Status, out.Status) {
		return false, nil
	}
	if err := c.Status().Patch(ctx, out, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{})); err != nil {
		return false, fmt.Errorf("patching status of pool %s: %w", klog.KObj(pool), err)
	}
	out.DeepCopyInto(pool)
	return true, nil
}

// patchFresh is patch, retried on a conflict over the Pool read again from
// reader. It is for a part that does not depend on the rest of the status and
// costs much to compute (a restore's outcome): a write of another part
// meanwhile must not make that work be done again. Only one reconciler
// writes a part, one reconcile of a Pool at a time, so laying the part over
// the newer Pool loses nothing.
func (p poolStatusPart) patchFresh(ctx context.Context, c client.Client, reader client.Reader, before,
	pool *vpoolv1alpha1.Pool) (bool, error) {
	written, err := p.patch(ctx, c, before, pool)
	for range 5 {
		if !apierrors.IsConflict(err) {
			break
		}
		fresh := &vpoolv1alpha1.Pool{}
		if err := reader.Get(ctx, client.ObjectKeyFromObject(before), fresh); err != nil {
			return false, fmt.Errorf("reading pool %s again: %w", klog.KObj(before), err)
		}
		written, err = p.patch(ctx, c, fresh, pool)
	}
	return written, err
}

// poolPart is what the Pool reconciler writes.
var poolPart = poolStatusPart{
	copyFields: func(dst, src *vpoolv1alpha1.PoolStatus) {
		dst.ObservedGeneration = src.ObservedGeneration
		dst.Master = src.Master
		dst.Epoch = src.Epoch
		dst.EffectiveHeartbeatTimeout = src.EffectiveHeartbeatTimeout
		dst.Hosts = src.Hosts
	},
	conditions: []string{vpoolv1alpha1.ConditionReady, vpoolv1alpha1.PoolMasterAvailable, vpoolv1alpha1.PoolMembersRecovered,
		vpoolv1alpha1.PoolDefaultStorageRepositoryValid, vpoolv1alpha1.PoolFencingAllowed, vpoolv1alpha1.PoolOvercommitted,
		vpoolv1alpha1.ConditionReconciling, vpoolv1alpha1.ConditionStalled},
}

// restorePart is what the restore reconciler writes. It may raise the epoch,
// never lower it: a restored pool's next master starts a new epoch. It does
// so only before Restored is True, while the Pool reconciler waits for it.
var restorePart = poolStatusPart{
	copyFields: func(dst, src *vpoolv1alpha1.PoolStatus) {
		dst.Restore = src.Restore
		dst.RestoredSettings = src.RestoredSettings
		dst.Epoch = max(dst.Epoch, src.Epoch)
	},
	conditions: []string{vpoolv1alpha1.PoolRestored},
}

// schedulePart is what the backup schedule reconciler writes.
var schedulePart = poolStatusPart{
	copyFields: func(dst, src *vpoolv1alpha1.PoolStatus) { dst.Backup = src.Backup },
	conditions: []string{vpoolv1alpha1.PoolBackupScheduled},
}

// poolConditions returns the setter of pool's conditions its reconcilers
// use: every condition records the generation it was decided for.
func poolConditions(pool *vpoolv1alpha1.Pool) func(t string, st metav1.ConditionStatus, reason, msg string) {
	return func(t string, st metav1.ConditionStatus, reason, msg string) {
		meta.SetStatusCondition(&pool.Status.Conditions, metav1.Condition{Type: t, Status: st, Reason: reason, Message: msg,
			ObservedGeneration: pool.Generation})
	}
}
