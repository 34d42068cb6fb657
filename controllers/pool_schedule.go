package controllers

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/robfig/cron/v3"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/internal/schedule"
)

// Reasons of the BackupScheduled condition.
const (
	ReasonScheduleValid   = "Scheduled"
	ReasonScheduleInvalid = "InvalidSchedule"
	// ReasonScheduleSuspended: the pool is being deleted.
	ReasonScheduleSuspended = "Suspended"
)

// scheduleDecision is what the backup schedule asks for now.
type scheduleDecision struct {
	// Due is the scheduled time of a backup to create now (zero: none).
	Due time.Time
	// Next is when the following backup is due.
	Next time.Time
}

// decideSchedule is a pure function of the schedule, the last scheduled time
// (or the pool's creation) and now. Missed runs (an operator that was down)
// collapse into one backup, named after the latest missed slot.
func decideSchedule(sched cron.Schedule, last, now time.Time) scheduleDecision {
	next := sched.Next(last)
	if next.After(now) {
		return scheduleDecision{Next: next}
	}
	due := next
	for n := sched.Next(due); !n.After(now); n = sched.Next(n) {
		due = n
	}
	return scheduleDecision{Due: due, Next: sched.Next(due)}
}

// reconcileSchedule creates the PoolBackups of spec.backup when due and
// prunes the oldest beyond spec.backup.retain. It returns the time until the
// next backup is due.
func (r *BackupScheduleReconciler) reconcileSchedule(ctx context.Context, pool *vpoolv1alpha1.Pool,
	set setCondition) (time.Duration, error) {
	spec := pool.Effective().Backup
	if spec == nil {
		pool.Status.Backup = nil
		return 0, nil
	}
	sched, err := schedule.Parse(spec.Schedule)
	if err != nil {
		// A spec error: not retried; the Pool is reconciled again when it changes.
		msg := fmt.Sprintf("%s.schedule: %q is not a cron schedule: %v", settingField(pool.Spec.Backup != nil, "backup"), spec.Schedule, err)
		set(vpoolv1alpha1.PoolBackupScheduled, metav1.ConditionFalse, ReasonScheduleInvalid, msg)
		return 0, reconcile.TerminalError(fmt.Errorf("pool %s: %s", pool.Name, msg))
	}
	if pool.Status.Backup == nil {
		pool.Status.Backup = &vpoolv1alpha1.BackupScheduleStatus{}
	}
	st := pool.Status.Backup
	now := r.Clock.Now()
	last := pool.CreationTimestamp.Time
	if st.LastScheduleTime != nil {
		last = st.LastScheduleTime.Time
	}
	d := decideSchedule(sched, last, now)
	if !pool.DeletionTimestamp.IsZero() {
		set(vpoolv1alpha1.PoolBackupScheduled, metav1.ConditionFalse, ReasonScheduleSuspended,
			"the pool is being deleted: no new backup is taken")
		return 0, nil
	}
	if !d.Due.IsZero() {
		name, err := r.createScheduledBackup(ctx, pool, spec, d.Due)
		if err != nil {
			return 0, err
		}
		st.LastScheduleTime = &metav1.Time{Time: d.Due}
		st.LastBackup = name
	}
	st.NextScheduleTime = &metav1.Time{Time: d.Next}
	if err := r.pruneBackups(ctx, pool, int(spec.Retain)); err != nil {
		return 0, err
	}
	set(vpoolv1alpha1.PoolBackupScheduled, metav1.ConditionTrue, ReasonScheduleValid,
		fmt.Sprintf("next backup at %s; keeping the last %d", d.Next.UTC().Format(time.RFC3339), spec.Retain))
	return d.Next.Sub(now), nil
}

// createScheduledBackup creates the PoolBackup of one scheduled time. Its
// name is derived from that time, so a retry never creates a second one.
func (r *BackupScheduleReconciler) createScheduledBackup(ctx context.Context, pool *vpoolv1alpha1.Pool, spec *vpoolv1alpha1.BackupSchedule,
	at time.Time) (string, error) {
	pb := &vpoolv1alpha1.PoolBackup{ObjectMeta: metav1.ObjectMeta{
		Namespace: pool.Namespace,
		Name:      fmt.Sprintf("%s-%s", pool.Name, at.UTC().Format("20060102-150405")),
		Labels:    map[string]string{vpoolv1alpha1.LabelPool: pool.Name, vpoolv1alpha1.LabelScheduled: "true"},
	}}
	pb.Spec.PoolRef.Name = pool.Name
	pb.Spec.Storage = spec.Storage
	pb.Spec.Encryption = spec.Encryption
	if err := r.Create(ctx, pb); err != nil && !apierrors.IsAlreadyExists(err) {
		return "", fmt.Errorf("creating scheduled PoolBackup %s: %w", pb.Name, err)
	}
	ctrl.LoggerFrom(ctx).Info("Scheduled backup created", "PoolBackup", pb.Name)
	return pb.Name, nil
}

// pruneBackups deletes the scheduled backups beyond spec.backup.retain:
// the oldest completed ones, and failed ones beyond the same count. A failed
// backup never blocks the next; backups created by hand are never pruned.
func (r *BackupScheduleReconciler) pruneBackups(ctx context.Context, pool *vpoolv1alpha1.Pool, retain int) error {
	list := &vpoolv1alpha1.PoolBackupList{}
	if err := r.List(ctx, list, client.InNamespace(pool.Namespace),
		client.MatchingLabels{vpoolv1alpha1.LabelPool: pool.Name, vpoolv1alpha1.LabelScheduled: "true"}); err != nil {
		return fmt.Errorf("listing scheduled backups of pool %s: %w", pool.Name, err)
	}
	byPhase := map[vpoolv1alpha1.PoolBackupPhase][]vpoolv1alpha1.PoolBackup{}
	for _, b := range list.Items {
		if b.DeletionTimestamp.IsZero() {
			byPhase[b.Status.Phase] = append(byPhase[b.Status.Phase], b)
		}
	}
	for _, phase := range []vpoolv1alpha1.PoolBackupPhase{vpoolv1alpha1.BackupCompleted, vpoolv1alpha1.BackupFailed} {
		items := byPhase[phase]
		if len(items) <= retain {
			continue
		}
		// Names carry the scheduled time: newest first by name.
		sort.Slice(items, func(i, j int) bool { return items[i].Name > items[j].Name })
		for i := retain; i < len(items); i++ {
			if err := r.Delete(ctx, &items[i]); client.IgnoreNotFound(err) != nil {
				return fmt.Errorf("pruning PoolBackup %s: %w", items[i].Name, err)
			}
			ctrl.LoggerFrom(ctx).Info("Pruned backup", "PoolBackup", items[i].Name, "retain", retain)
		}
	}
	return nil
}
