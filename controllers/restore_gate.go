package controllers

import (
	"context"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/controller/priorityqueue"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
)

// While a pool is being restored, the restore writes what the pool's new
// objects first need (each VM recorded Halted), and the other controllers
// leave the new objects alone: a VM or VDI that has no status yet waits, and
// the placement controller makes no pass. Their first writes would only
// repeat the restore's or compete with its creates for the API server. When
// the restore finishes (Restored True) or stops, or the restoring Pool goes,
// every object of the pool is woken once, behind the work of objects that
// changed.

// restoring reports whether the pool's restore (spec.restoreFrom) is under
// way: not begun yet or recreating objects, in a Pool not being deleted
// (a deleted Pool starts no restore and stops one). A restore that stopped in its
// preflight (Restored False for another reason) writes nothing, and holds
// nothing back.
func restoring(pool *vpoolv1alpha1.Pool) bool {
	if pool.Spec.RestoreFrom == nil || !pool.DeletionTimestamp.IsZero() {
		return false
	}
	c := meta.FindStatusCondition(pool.Status.Conditions, vpoolv1alpha1.PoolRestored)
	return c == nil || c.Status != metav1.ConditionTrue && c.Reason == ReasonRestoring
}

// poolRestoring reads the pool from the cache: is it being restored? A pool
// that cannot be read is not.
func poolRestoring(ctx context.Context, c client.Reader, namespace, name string) bool {
	pool := &vpoolv1alpha1.Pool{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, pool, client.UnsafeDisableDeepCopy); err != nil {
		return false
	}
	return restoring(pool)
}

// restoreEnded passes a Pool whose restore has just finished or stopped.
func restoreEnded(o, n *vpoolv1alpha1.Pool) bool { return restoring(o) && !restoring(n) }

// membersOfPool wakes every object of a kind in a pool, at low priority,
// when the pool appears or goes (a member that found no pool reports it),
// or when its restore ends. newList makes an empty list of the kind.
func membersOfPool(c client.Reader, newList func() client.ObjectList) handler.EventHandler {
	type queue = workqueue.TypedRateLimitingInterface[reconcile.Request]
	enqueue := func(ctx context.Context, pool client.Object, q queue) {
		l := newList()
		if err := c.List(ctx, l, client.InNamespace(pool.GetNamespace()), client.MatchingFields{IndexPoolRef: pool.GetName()},
			client.UnsafeDisableDeepCopy); err != nil {
			return
		}
		reqs := make([]reconcile.Request, 0, meta.LenList(l))
		_ = meta.EachListItem(l, func(o runtime.Object) error {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(o.(client.Object))})
			return nil
		})
		if pq, ok := q.(priorityqueue.PriorityQueue[reconcile.Request]); ok {
			pq.AddWithOpts(priorityqueue.AddOpts{Priority: ptr.To(handler.LowPriority)}, reqs...)
			return
		}
		for _, r := range reqs {
			q.Add(r)
		}
	}
	return handler.Funcs{
		CreateFunc: func(ctx context.Context, e event.CreateEvent, q queue) { enqueue(ctx, e.Object, q) },
		DeleteFunc: func(ctx context.Context, e event.DeleteEvent, q queue) { enqueue(ctx, e.Object, q) },
		UpdateFunc: func(ctx context.Context, e event.UpdateEvent, q queue) {
			o, okOld := e.ObjectOld.(*vpoolv1alpha1.Pool)
			n, okNew := e.ObjectNew.(*vpoolv1alpha1.Pool)
			if okOld && okNew && restoreEnded(o, n) {
				enqueue(ctx, n, q)
			}
		},
	}
}

// restorePending reports whether a Pool waits for its restore
// (spec.restoreFrom) before its other work: the restore is under way or
// stopped in its preflight (Restored not True). A deleted Pool starts no
// restore and does not wait.
func restorePending(pool *vpoolv1alpha1.Pool) bool {
	if pool.Spec.RestoreFrom == nil || !pool.DeletionTimestamp.IsZero() {
		return false
	}
	return !meta.IsStatusConditionTrue(pool.Status.Conditions, vpoolv1alpha1.PoolRestored)
}

// drTestHolds reports whether the cleanup of a DR test (spec.restoreFrom.dryRun)
// has the Pool, and its other reconcilers leave it alone: a DR-test Pool
// before its cleanup finalizer is on, a deleted one until that finalizer is
// off, and one whose test is marked finished.
func drTestHolds(pool *vpoolv1alpha1.Pool) bool {
	if !pool.DeletionTimestamp.IsZero() {
		return controllerutil.ContainsFinalizer(pool, vpoolv1alpha1.FinalizerDRTestCleanup)
	}
	if pool.Spec.RestoreFrom == nil || !pool.Spec.RestoreFrom.DryRun {
		return false
	}
	return pool.Annotations[vpoolv1alpha1.AnnotationDRTestFinished] == "true" ||
		!controllerutil.ContainsFinalizer(pool, vpoolv1alpha1.FinalizerDRTestCleanup)
}
