package controllers

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/internal/backup"
	"github.com/poolkeeper/poolkeeper/internal/status"
)

// RestoreReconciler recreates a Pool from spec.restoreFrom
// (pool-restore-database, see pool_restore.go) and, for a DR test
// (spec.restoreFrom.dryRun), removes what it created once the test is
// finished or the Pool deleted. It writes status.restore,
// status.restoredSettings and the Restored condition; the Pool's other
// reconcilers wait for Restored True. It is keyed by Pool.
type RestoreReconciler struct {
	client.Client
	// APIReader reads backups' keys and data and what the namespace holds
	// from the API server.
	APIReader client.Reader
	Recorder  events.EventRecorder
	Clock     clock.PassiveClock
	// Store, when set, holds every backup's data (Options.Store, shared with
	// the PoolBackup controller); else the store its spec.storage names.
	Store backup.Store
}

// SetupWithManager registers the restore controller. A Pool with no restore
// and no DR-test finalizer never reaches it.
func (r *RestoreReconciler) SetupWithManager(mgr ctrl.Manager, opts Options) error {
	return ctrl.NewControllerManagedBy(mgr).
		Named("restore").
		For(&vpoolv1alpha1.Pool{}, builder.WithPredicates(predicate.NewPredicateFuncs(func(o client.Object) bool {
			pool, ok := o.(*vpoolv1alpha1.Pool)
			return ok && (pool.Spec.RestoreFrom != nil || controllerutil.ContainsFinalizer(pool, vpoolv1alpha1.FinalizerDRTestCleanup))
		}))).
		Watches(&vpoolv1alpha1.PoolBackup{}, handler.EnqueueRequestsFromMapFunc(r.poolsRestoringFrom)).
		// An object of a pool whose restore stopped in its preflight (a
		// conflict) may be what stopped it.
		Watches(&vpoolv1alpha1.Host{}, handler.EnqueueRequestsFromMapFunc(r.poolWaitingForRestore)).
		Watches(&vpoolv1alpha1.StorageRepository{}, handler.EnqueueRequestsFromMapFunc(r.poolWaitingForRestore)).
		Watches(&vpoolv1alpha1.VirtualMachine{}, handler.EnqueueRequestsFromMapFunc(r.poolWaitingForRestore),
			builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		WithOptions(controller.Options{MaxConcurrentReconciles: opts.MaxConcurrentReconciles}).
		Complete(conflictsRequeued(r))
}

// poolsRestoringFrom wakes the pools restoring from a backup.
func (r *RestoreReconciler) poolsRestoringFrom(ctx context.Context, obj client.Object) []reconcile.Request {
	pools := &vpoolv1alpha1.PoolList{}
	if err := r.List(ctx, pools, client.InNamespace(obj.GetNamespace())); err != nil {
		return nil
	}
	var reqs []reconcile.Request
	for _, p := range pools.Items {
		if p.Spec.RestoreFrom != nil && p.Spec.RestoreFrom.BackupName == obj.GetName() {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&p)})
		}
	}
	return reqs
}

// poolWaitingForRestore wakes the pool of obj while its restore is pending.
func (r *RestoreReconciler) poolWaitingForRestore(ctx context.Context, obj client.Object) []reconcile.Request {
	reqs := poolOf(ctx, obj)
	if len(reqs) == 0 {
		return nil
	}
	pool := &vpoolv1alpha1.Pool{}
	if err := r.Get(ctx, reqs[0].NamespacedName, pool, client.UnsafeDisableDeepCopy); err != nil || !restorePending(pool) {
		return nil
	}
	return reqs
}

// Reconcile restores one Pool, or cleans up its DR test.
func (r *RestoreReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	pool := &vpoolv1alpha1.Pool{}
	if err := r.Get(ctx, req.NamespacedName, pool); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	ctx = ctrl.LoggerInto(ctx, ctrl.LoggerFrom(ctx).WithValues("Pool", klog.KObj(pool)))
	if done, err := r.reconcileDRTestCleanup(ctx, pool); done || err != nil {
		return ctrl.Result{}, err
	}
	if pool.DeletionTimestamp.IsZero() && !controllerutil.ContainsFinalizer(pool, vpoolv1alpha1.FinalizerPoolMembers) {
		// The Pool reconciler adds it first, so that a Pool deleted in the
		// middle of its restore deletes what the restore created.
		return ctrl.Result{}, nil
	}
	if restorePending(pool) {
		// The cache may not show yet the outcome this reconciler wrote last,
		// and a restore is costly: read the Pool from the API server.
		if err := r.APIReader.Get(ctx, req.NamespacedName, pool); err != nil {
			return ctrl.Result{}, client.IgnoreNotFound(err)
		}
	}
	st := status.New(r.Client, r.Recorder, pool).Owning(restorePart).RetryingConflicts(r.APIReader)
	err := r.reconcileRestore(ctx, pool, st.Set)
	announceRestored(st)
	return ctrl.Result{}, st.Patch(ctx, err)
}

// announceRestored queues, for once written, the event of a restore that finished.
func announceRestored(st poolStatus) {
	if status.IsTrue(st.Before(), vpoolv1alpha1.PoolRestored) {
		return
	}
	if c := st.Get(vpoolv1alpha1.PoolRestored); c != nil && c.Status == metav1.ConditionTrue {
		st.Eventf(corev1.EventTypeNormal, c.Reason, "Restore", "%s", c.Message)
	}
}

// reconcileDRTestCleanup keeps a finalizer on a DR-test Pool and, when the
// Pool is deleted or the test is marked finished, removes what it created.
func (r *RestoreReconciler) reconcileDRTestCleanup(ctx context.Context, pool *vpoolv1alpha1.Pool) (bool, error) {
	drTest := pool.Spec.RestoreFrom != nil && pool.Spec.RestoreFrom.DryRun
	finished := pool.Annotations[vpoolv1alpha1.AnnotationDRTestFinished] == "true"
	switch {
	case !pool.DeletionTimestamp.IsZero():
		if !controllerutil.ContainsFinalizer(pool, vpoolv1alpha1.FinalizerDRTestCleanup) {
			return false, nil // on to FinalizerPoolMembers
		}
		if err := r.cleanupDRTest(ctx, pool); err != nil {
			return true, err
		}
		return true, r.removeDRTestFinalizer(ctx, pool)
	case drTest && !finished && !controllerutil.ContainsFinalizer(pool, vpoolv1alpha1.FinalizerDRTestCleanup):
		patch := client.MergeFromWithOptions(pool.DeepCopy(), client.MergeFromWithOptimisticLock{})
		controllerutil.AddFinalizer(pool, vpoolv1alpha1.FinalizerDRTestCleanup)
		return true, r.Patch(ctx, pool, patch)
	case drTest && finished && (pool.Status.Restore == nil || !pool.Status.Restore.CleanedUp):
		if err := r.cleanupDRTest(ctx, pool); err != nil {
			return true, err
		}
		st := status.New(r.Client, r.Recorder, pool).Owning(restorePart)
		if pool.Status.Restore == nil {
			pool.Status.Restore = &vpoolv1alpha1.RestoreStatus{Backup: pool.Spec.RestoreFrom.BackupName}
		}
		pool.Status.Restore.CleanedUp = true
		st.Set(vpoolv1alpha1.PoolRestored, metav1.ConditionTrue, ReasonDRTestCleanedUp,
			"DR test finished: every object it created was removed")
		if err := st.Write(ctx); err != nil {
			return true, err
		}
		if controllerutil.ContainsFinalizer(pool, vpoolv1alpha1.FinalizerDRTestCleanup) {
			return true, r.removeDRTestFinalizer(ctx, pool)
		}
		return true, nil
	case drTest && finished:
		return true, nil // cleaned up: the test is over
	}
	return false, nil
}

// removeDRTestFinalizer removes FinalizerDRTestCleanup, on the Pool as read:
// the Pool reconciler may write FinalizerPoolMembers beside it.
func (r *RestoreReconciler) removeDRTestFinalizer(ctx context.Context, pool *vpoolv1alpha1.Pool) error {
	patch := client.MergeFromWithOptions(pool.DeepCopy(), client.MergeFromWithOptimisticLock{})
	controllerutil.RemoveFinalizer(pool, vpoolv1alpha1.FinalizerDRTestCleanup)
	return r.Patch(ctx, pool, patch)
}
