package controllers

import (
	"context"

	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/internal/status"
)

// BackupScheduleReconciler creates the PoolBackups of a Pool's backup
// schedule (spec.backup, or the one a restore brought back) when due, and
// prunes the oldest beyond its retain count (see pool_schedule.go). It writes
// status.backup and the BackupScheduled condition, and waits while the Pool's
// restore is pending. It is keyed by Pool.
type BackupScheduleReconciler struct {
	client.Client
	Clock clock.PassiveClock
}

// SetupWithManager registers the schedule controller. A Pool with no
// schedule never reaches it; a backup that completes or fails wakes its
// pool's retention.
func (r *BackupScheduleReconciler) SetupWithManager(mgr ctrl.Manager, opts Options) error {
	return ctrl.NewControllerManagedBy(mgr).
		Named("backupschedule").
		For(&vpoolv1alpha1.Pool{}, builder.WithPredicates(predicate.NewPredicateFuncs(func(o client.Object) bool {
			pool, ok := o.(*vpoolv1alpha1.Pool)
			return ok && (pool.Status.Backup != nil || pool.Effective().Backup != nil)
		}))).
		Watches(&vpoolv1alpha1.PoolBackup{}, handler.EnqueueRequestsFromMapFunc(poolOf)).
		WithOptions(controller.Options{MaxConcurrentReconciles: opts.MaxConcurrentReconciles}).
		Complete(conflictsRequeued(r))
}

// Reconcile takes the pool's due backup and prunes old ones; it requeues
// for the next one.
func (r *BackupScheduleReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	pool := &vpoolv1alpha1.Pool{}
	if err := r.Get(ctx, req.NamespacedName, pool); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	ctx = ctrl.LoggerInto(ctx, ctrl.LoggerFrom(ctx).WithValues("Pool", klog.KObj(pool)))
	if drTestHolds(pool) || restorePending(pool) {
		return ctrl.Result{}, nil // the restore's status write wakes this pool
	}
	st := status.New(r.Client, nil, pool).Owning(schedulePart)
	requeue, err := r.reconcileSchedule(ctx, pool, st.Set)
	if err = st.Patch(ctx, err); err != nil {
		return ctrl.Result{}, err
	}
	return ctrl.Result{RequeueAfter: requeue}, nil
}
