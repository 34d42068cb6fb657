package controllers

import (
	"context"
	"errors"
	"time"

	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/internal/backup"
	"github.com/poolkeeper/poolkeeper/internal/status"
)

// BackupScheduleReconciler creates the PoolBackups of a Pool's backup
// schedule (spec.backup, or the one a restore brought back) when due, and
// prunes the oldest beyond its retain count (see pool_schedule.go), and
// verifies the latest backup on spec.backup.verify's schedule
// (pool_verify.go). It writes status.backup, status.lastVerified and the
// BackupScheduled condition, and waits while the Pool's
// restore is pending. It is keyed by Pool.
type BackupScheduleReconciler struct {
	client.Client
	// APIReader reads a verified backup's key from the API server.
	APIReader client.Reader
	Recorder  events.EventRecorder
	Clock     clock.PassiveClock
	// Store, when set, holds every backup's data (Options.Store).
	Store backup.Store
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
	st := status.New(r.Client, r.Recorder, pool).Owning(schedulePart)
	requeue, err := r.reconcileSchedule(ctx, pool, st.Set)
	if err == nil && pool.Status.Backup != nil {
		// The verification never holds up the backups: a bad verify
		// schedule stalls the verification alone (its condition says why),
		// and one that failed to run is tried again in verifyRetry.
		verify, verr := r.reconcileVerify(ctx, pool, pool.Effective().Backup, st.Set, func(eventType, reason, note string) {
			st.Eventf(eventType, reason, "Verify", "%s", note)
		})
		switch {
		case errors.Is(verr, reconcile.TerminalError(nil)):
			err = verr
		case verr != nil:
			ctrl.LoggerFrom(ctx).Info("The scheduled verification failed to run; trying again", "error", verr.Error(), "in", verifyRetry)
			verify = verifyRetry
		}
		if verify > 0 && (requeue == 0 || verify < requeue) {
			requeue = verify
		}
	}
	if err = st.Patch(ctx, err); err != nil {
		if errors.Is(err, reconcile.TerminalError(nil)) && requeue > 0 {
			return ctrl.Result{RequeueAfter: requeue}, nil // the next backup is still due
		}
		return ctrl.Result{}, err
	}
	return ctrl.Result{RequeueAfter: requeue}, nil
}

// verifyRetry is when a scheduled verification that failed to run (the
// bucket unreachable, the API server refusing) is tried again.
const verifyRetry = time.Minute
