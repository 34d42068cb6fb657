package controllers

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
)

// Deleting a Pool (kubectl delete vpool) deletes what only makes sense in it
// once nothing can run there: while the pool has a Host that is not
// forgotten, the deletion waits and says so, and the pool goes on with its
// work (HA, fencing, master) except new backups and restores. Once no Host
// is left, FinalizerPoolMembers deletes the pool's VirtualMachines,
// VirtualDisks, StorageRepositories and forgotten Hosts, never its
// PoolBackups (they outlive the pool), and lets the Pool go.

// Reasons of a deleted Pool's Ready condition and events.
const (
	// ReasonDeletionWaiting: the pool still has hosts to forget.
	ReasonDeletionWaiting = "DeletionWaiting"
	// ReasonDeleting: no host is left; the pool's objects are deleted.
	ReasonDeleting = "Deleting"
	// ReasonMembersDeleted is the event of the deletes the finalizer made.
	ReasonMembersDeleted = "MembersDeleted"
)

// deletionCondition is the Ready condition of a deleted Pool, decided from
// its hosts: it waits while one is not forgotten.
func deletionCondition(hosts []vpoolv1alpha1.Host) (reason, msg string) {
	var left []string
	for i := range hosts {
		if hosts[i].Status.Phase != vpoolv1alpha1.HostPhaseForgotten {
			left = append(left, hosts[i].Name)
		}
	}
	if len(left) == 0 {
		return ReasonDeleting, "deleting: no host is left; deleting the pool's VirtualMachines, VirtualDisks and " +
			"StorageRepositories (its PoolBackups are kept)"
	}
	return ReasonDeletionWaiting, fmt.Sprintf("deletion waits: the pool still has hosts %s (%d in all); forget them first "+
		"(kubectl delete vhost ...: each is forgotten once it is down)", truncateList(left, 5), len(left))
}

// ensureMembersFinalizer adds FinalizerPoolMembers to a Pool that is not
// being deleted; it reports whether it patched the Pool.
func (r *PoolReconciler) ensureMembersFinalizer(ctx context.Context, pool *vpoolv1alpha1.Pool) (bool, error) {
	if !pool.DeletionTimestamp.IsZero() || controllerutil.ContainsFinalizer(pool, vpoolv1alpha1.FinalizerPoolMembers) {
		return false, nil
	}
	// On the Pool as read: the restore reconciler writes FinalizerDRTestCleanup beside it.
	patch := client.MergeFromWithOptions(pool.DeepCopy(), client.MergeFromWithOptimisticLock{})
	controllerutil.AddFinalizer(pool, vpoolv1alpha1.FinalizerPoolMembers)
	return true, r.Patch(ctx, pool, patch)
}

// reconcileDelete runs once the deleted Pool's status says Deleting (written
// before anything is deleted): it checks against the API server that no Host
// is left, deletes the pool's other objects and, once none is left, removes
// FinalizerPoolMembers. Every step is idempotent.
func (r *PoolReconciler) reconcileDelete(ctx context.Context, pool *vpoolv1alpha1.Pool) error {
	ready := meta.FindStatusCondition(pool.Status.Conditions, vpoolv1alpha1.ConditionReady)
	if pool.DeletionTimestamp.IsZero() || !controllerutil.ContainsFinalizer(pool, vpoolv1alpha1.FinalizerPoolMembers) ||
		ready == nil || ready.Reason != ReasonDeleting {
		return nil
	}
	hosts := &vpoolv1alpha1.HostList{}
	if err := r.APIReader.List(ctx, hosts, client.InNamespace(pool.Namespace)); err != nil {
		return fmt.Errorf("listing hosts of deleted pool %s: %w", pool.Name, err)
	}
	for i := range hosts.Items {
		if h := &hosts.Items[i]; h.Spec.PoolRef.Name == pool.Name && h.Status.Phase != vpoolv1alpha1.HostPhaseForgotten {
			return nil // a host came back: the next status says so
		}
	}
	kinds := []struct {
		name string
		list client.ObjectList
	}{{"VirtualMachines", &vpoolv1alpha1.VirtualMachineList{}}, {"VirtualAppliances", &vpoolv1alpha1.VirtualApplianceList{}},
		{"VirtualDisks", &vpoolv1alpha1.VirtualDiskList{}},
		{"StorageRepositories", &vpoolv1alpha1.StorageRepositoryList{}}, {"forgotten Hosts", hosts}}
	left, deleted := 0, make([]string, 0, len(kinds))
	for i, k := range kinds {
		if i < len(kinds)-1 {
			if err := r.APIReader.List(ctx, k.list, client.InNamespace(pool.Namespace)); err != nil {
				return fmt.Errorf("listing the %s of deleted pool %s: %w", k.name, pool.Name, err)
			}
		}
		n, total, err := r.deleteOfPool(ctx, pool.Name, k.list)
		if err != nil {
			return err
		}
		left += total
		if n > 0 {
			deleted = append(deleted, fmt.Sprintf("%d %s", n, k.name))
		}
	}
	if len(deleted) > 0 {
		r.announceMembersDeleted(ctx, pool, deleted)
	}
	if left > 0 {
		return nil // their delete events bring the pool back
	}
	patch := client.MergeFromWithOptions(pool.DeepCopy(), client.MergeFromWithOptimisticLock{})
	controllerutil.RemoveFinalizer(pool, vpoolv1alpha1.FinalizerPoolMembers)
	if err := r.Patch(ctx, pool, patch); err != nil {
		return fmt.Errorf("removing the finalizer of deleted pool %s: %w", pool.Name, err)
	}
	ctrl.LoggerFrom(ctx).Info("Pool deleted: no host, VM, vApp, VDI or SR left")
	return nil
}

// deleteOfPool deletes the objects of list that belong to pool and are not
// being deleted yet; it returns how many it deleted and how many there are.
func (r *PoolReconciler) deleteOfPool(ctx context.Context, pool string, list client.ObjectList) (deleted, total int, err error) {
	err = meta.EachListItem(list, func(o runtime.Object) error {
		obj := o.(client.Object)
		if poolRefOf(obj) != pool {
			return nil
		}
		total++
		if !obj.GetDeletionTimestamp().IsZero() {
			return nil
		}
		if err := r.Delete(ctx, obj); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("deleting %T %s of deleted pool %s: %w", obj, obj.GetName(), pool, err)
		}
		deleted++
		return nil
	})
	return deleted, total, err
}

// announceMembersDeleted says what the finalizer deleted, and that the
// pool's PoolBackups are kept.
func (r *PoolReconciler) announceMembersDeleted(ctx context.Context, pool *vpoolv1alpha1.Pool, deleted []string) {
	backups := &vpoolv1alpha1.PoolBackupList{}
	kept := 0
	if err := r.List(ctx, backups, client.InNamespace(pool.Namespace)); err == nil {
		for i := range backups.Items {
			if backups.Items[i].Spec.PoolRef.Name == pool.Name {
				kept++
			}
		}
	}
	msg := fmt.Sprintf("the pool has no host left: deleted %s; its %d PoolBackups are kept", strings.Join(deleted, ", "), kept)
	ctrl.LoggerFrom(ctx).Info("Deleted the objects of a deleted pool", "deleted", deleted, "backupsKept", kept)
	r.Recorder.Eventf(pool, nil, corev1.EventTypeNormal, ReasonMembersDeleted, "Delete", "%s", msg)
}

// deletionReady overrides the Ready condition of a deleted Pool.
func deletionReady(pool *vpoolv1alpha1.Pool, hosts []vpoolv1alpha1.Host, set setCondition) {
	if pool.DeletionTimestamp.IsZero() {
		return
	}
	reason, msg := deletionCondition(hosts)
	set(vpoolv1alpha1.ConditionReady, metav1.ConditionFalse, reason, msg)
}
