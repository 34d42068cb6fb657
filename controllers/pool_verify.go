package controllers

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/internal/backup"
	"github.com/poolkeeper/poolkeeper/internal/metrics"
	"github.com/poolkeeper/poolkeeper/internal/schedule"
)

// Events of the scheduled verification.
const (
	ReasonBackupVerified           = "BackupVerified"
	ReasonBackupVerificationFailed = "BackupVerificationFailed"
)

// reconcileVerify runs the scheduled verification of spec.backup.verify
// when due (decideSchedule, as the backups: missed runs collapse into one)
// and records it in status.lastVerified; a backup that passes is annotated
// metrics.AnnotationVerifiedAt, which poolkeeper_pool_last_verification_timestamp_seconds
// reports. It returns the time until the next verification is due.
func (r *BackupScheduleReconciler) reconcileVerify(ctx context.Context, pool *vpoolv1alpha1.Pool, spec *vpoolv1alpha1.BackupSchedule,
	set setCondition, event func(eventType, reason, note string)) (time.Duration, error) {
	st := pool.Status.Backup
	if spec.Verify == nil {
		st.LastVerifyScheduleTime, st.NextVerifyScheduleTime = nil, nil
		return 0, nil
	}
	sched, err := schedule.Parse(spec.Verify.Schedule)
	if err != nil {
		msg := fmt.Sprintf("%s.verify.schedule: %q is not a cron schedule: %v", settingField(pool.Spec.Backup != nil, "backup"), spec.Verify.Schedule, err)
		set(vpoolv1alpha1.PoolBackupScheduled, metav1.ConditionFalse, ReasonScheduleInvalid, msg)
		return 0, reconcile.TerminalError(fmt.Errorf("pool %s: %s", pool.Name, msg))
	}
	now := r.Clock.Now()
	last := pool.CreationTimestamp.Time
	if st.LastVerifyScheduleTime != nil {
		last = st.LastVerifyScheduleTime.Time
	}
	d := decideSchedule(sched, last, now)
	if !d.Due.IsZero() && pool.DeletionTimestamp.IsZero() {
		res, err := r.verifyLatest(ctx, pool)
		if err != nil {
			return 0, err
		}
		res.Time = metav1.NewTime(now)
		pool.Status.LastVerified = res
		st.LastVerifyScheduleTime = &metav1.Time{Time: d.Due}
		if res.Passed {
			event(corev1.EventTypeNormal, ReasonBackupVerified, res.Message)
		} else {
			event(corev1.EventTypeWarning, ReasonBackupVerificationFailed, res.Message)
		}
		ctrl.LoggerFrom(ctx).Info("Backup verified", "PoolBackup", res.Backup, "passed", res.Passed, "message", res.Message)
	}
	st.NextVerifyScheduleTime = &metav1.Time{Time: d.Next}
	return d.Next.Sub(now), nil
}

// verifyLatest verifies the pool's latest Completed backup. Only API and
// transport errors are errors: a backup that fails a check is a result.
func (r *BackupScheduleReconciler) verifyLatest(ctx context.Context, pool *vpoolv1alpha1.Pool) (*vpoolv1alpha1.BackupVerificationStatus, error) {
	list := &vpoolv1alpha1.PoolBackupList{}
	if err := r.List(ctx, list, client.InNamespace(pool.Namespace)); err != nil {
		return nil, fmt.Errorf("listing the backups of pool %s: %w", pool.Name, err)
	}
	var latest *vpoolv1alpha1.PoolBackup
	for i := range list.Items {
		pb := &list.Items[i]
		if pb.Spec.PoolRef.Name != pool.Name || pb.Status.Phase != vpoolv1alpha1.BackupCompleted || pb.Status.CompletedAt == nil ||
			!pb.DeletionTimestamp.IsZero() {
			continue
		}
		if latest == nil || pb.Status.CompletedAt.After(latest.Status.CompletedAt.Time) {
			latest = pb
		}
	}
	if latest == nil {
		return &vpoolv1alpha1.BackupVerificationStatus{Message: "the pool has no Completed backup to verify"}, nil
	}
	src, reason, msg, err := openPoolBackup(ctx, r.Client, r.APIReader, r.Store, latest)
	if err != nil {
		return nil, err
	}
	res := &vpoolv1alpha1.BackupVerificationStatus{Backup: latest.Name}
	if reason != "" {
		res.Message = reason + ": " + msg
		return res, nil
	}
	var every backup.RecoverySelection
	for _, vm := range src.Dump.VirtualMachines {
		every.VirtualMachines = append(every.VirtualMachines, vm.Metadata.Name)
	}
	plan := backup.PlanRecovery([]backup.RecoverySource{src}, every, backup.RecoveryExisting{}, vpoolv1alpha1.ConflictsFail)
	c := src.Dump.Counts()
	res.Passed = true
	res.Message = fmt.Sprintf("PoolBackup %s (completed %s): sha256 as recorded, decrypted, %d hosts, %d SRs, %d VDIs, %d VMs as recorded; "+
		"a test failover would recreate %s", latest.Name, latest.Status.CompletedAt.UTC().Format(time.RFC3339),
		c.Hosts, c.SRs, c.VDIs, c.VMs, planSummary(plan.Items))
	patch := client.MergeFrom(latest.DeepCopy())
	if latest.Annotations == nil {
		latest.Annotations = map[string]string{}
	}
	latest.Annotations[metrics.AnnotationVerifiedAt] = r.Clock.Now().UTC().Format(time.RFC3339)
	if err := r.Patch(ctx, latest, patch); client.IgnoreNotFound(err) != nil {
		return nil, fmt.Errorf("recording the verification of PoolBackup %s: %w", latest.Name, err)
	}
	return res, nil
}
