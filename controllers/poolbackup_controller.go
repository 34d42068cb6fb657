package controllers

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/internal/backup"
	"github.com/poolkeeper/poolkeeper/internal/metrics"
	"github.com/poolkeeper/poolkeeper/internal/status"
)

// +kubebuilder:rbac:groups=vpool.poolkeeper.io,resources=poolbackups,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=vpool.poolkeeper.io,resources=poolbackups/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=vpool.poolkeeper.io,resources=poolbackups/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;create;update;delete

// Reasons of PoolBackup conditions.
const (
	ReasonBackupCompleted = "BackupCompleted"
	ReasonBackupTaking    = "TakingBackup"
	ReasonKeyUnavailable  = "KeyUnavailable"
	// ReasonDataNotDeleted: a PoolBackup that recorded no stored data went
	// without its store confirming the deletion.
	ReasonDataNotDeleted = "DataNotDeleted"
)

// snapshotAttempts bounds the retries of a point-in-time read whose revision
// was compacted away meanwhile.
const snapshotAttempts = 3

// PoolBackupReconciler takes a PoolBackup (pool-dump-database): one
// point-in-time read of the pool, sealed with the backup's key, stored, and
// verified; and deletes the stored data with the PoolBackup.
type PoolBackupReconciler struct {
	client.Client
	APIReader client.Reader
	Clock     clock.PassiveClock
	Recorder  events.EventRecorder
	// Store keeps the sealed dumps; Secrets in the backup's namespace when nil.
	Store backup.Store
}

// SetupWithManager registers the reconciler.
func (r *PoolBackupReconciler) SetupWithManager(mgr ctrl.Manager, opts Options) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&vpoolv1alpha1.PoolBackup{}).
		WithOptions(controller.Options{MaxConcurrentReconciles: opts.MaxConcurrentReconciles}).
		Complete(conflictsRequeued(r))
}

func (r *PoolBackupReconciler) store(pb *vpoolv1alpha1.PoolBackup) backup.Store {
	if r.Store != nil {
		return r.Store
	}
	return backupStore(r.Client, r.APIReader, pb)
}

// Reconcile takes one backup, once.
func (r *PoolBackupReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	pb := &vpoolv1alpha1.PoolBackup{}
	if err := r.Get(ctx, req.NamespacedName, pb); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	ctx = ctrl.LoggerInto(ctx, ctrl.LoggerFrom(ctx).WithValues("PoolBackup", klog.KObj(pb)))
	if !pb.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, r.reconcileDelete(ctx, pb)
	}
	if !controllerutil.ContainsFinalizer(pb, vpoolv1alpha1.FinalizerBackupData) {
		patch := client.MergeFrom(pb.DeepCopy())
		controllerutil.AddFinalizer(pb, vpoolv1alpha1.FinalizerBackupData)
		return ctrl.Result{}, r.Patch(ctx, pb, patch)
	}
	if pb.Status.Phase == vpoolv1alpha1.BackupCompleted || pb.Status.Phase == vpoolv1alpha1.BackupFailed {
		return ctrl.Result{}, nil // a backup is one snapshot; a new one is a new PoolBackup
	}
	if pb.Annotations[vpoolv1alpha1.AnnotationStoredKey] != "" {
		return ctrl.Result{}, nil // found in a location: its sync writes its status, nothing is taken
	}
	st := status.New(r.Client, r.Recorder, pb)
	err := r.take(ctx, st)
	if pb.Status.Phase != vpoolv1alpha1.BackupCompleted {
		pb.Status.CompletedAt = nil // set before the dump is stored, for its description
	}
	setBackupProgress(pb)
	return ctrl.Result{}, st.Patch(ctx, err)
}

// take dumps, seals, stores and verifies. Spec problems fail the backup for
// good (Failed, with the field named, returned as a terminal error); API
// errors are returned for a retry.
func (r *PoolBackupReconciler) take(ctx context.Context, st *status.Helper[*vpoolv1alpha1.PoolBackup]) error {
	pb := st.Object()
	now := metav1.NewTime(r.Clock.Now())
	if pb.Status.StartedAt == nil {
		pb.Status.StartedAt = &now
	}
	pb.Status.Phase = vpoolv1alpha1.BackupInProgress
	st.Set(vpoolv1alpha1.ConditionReady, metav1.ConditionFalse, ReasonBackupTaking, "taking the backup")

	key, err := backupKey(ctx, r.APIReader, pb.Namespace, pb.Spec.Encryption.KeySecretRef.Name)
	if err != nil {
		if apierrors.IsNotFound(err) || errors.Is(err, backup.ErrNoKey) || errors.Is(err, backup.ErrKeyTooShort) {
			return r.fail(st, ReasonKeyUnavailable, err.Error())
		}
		return err
	}
	d, snap, err := r.dump(ctx, pb, now.Time)
	if errors.Is(err, errPoolNotFound) {
		return r.fail(st, vpoolv1alpha1.ReasonPoolNotFound, fmt.Sprintf("spec.poolRef.name: %v", err))
	}
	if err != nil {
		return err
	}
	data, err := backup.SealAge(d, key)
	if err != nil {
		return r.fail(st, backup.Reason(err), err.Error())
	}
	// What a location stores with the dump to describe it.
	counts := d.Counts()
	done := metav1.NewTime(r.Clock.Now())
	pb.Status.CompletedAt = &done
	pb.Status.PoolEpoch = ptr.To(snap.pool.Status.Epoch)
	pb.Status.Counts = &counts
	pb.Status.KeyID = key.ID()
	location, err := r.store(pb).Put(ctx, pb, data)
	if err != nil {
		pb.Status.CompletedAt = nil
	}
	if errors.Is(err, backup.ErrStorageCredentials) || errors.Is(err, backup.ErrLocationNotFound) ||
		errors.Is(err, backup.ErrReadOnlyLocation) || errors.Is(err, backup.ErrKeyTaken) {
		return r.fail(st, backup.Reason(err), err.Error())
	}
	if err != nil {
		// Retried with backoff; the condition says why meanwhile.
		st.Set(vpoolv1alpha1.ConditionReady, metav1.ConditionFalse, ReasonBackupTaking, fmt.Sprintf("storing the backup failed, retrying: %v", err))
		return fmt.Errorf("storing PoolBackup %s: %w", klog.KObj(pb), err)
	}
	// Read it back: a backup is Completed only once it can be restored.
	stored, err := r.store(pb).Get(ctx, pb)
	if err != nil {
		return fmt.Errorf("verifying PoolBackup %s: %w", klog.KObj(pb), err)
	}
	readable := "it opens with the key"
	if !key.CanRead() {
		// Recipients only: this cluster writes what it cannot read; the
		// sha256 read back is the check.
		readable = "sealed to the recipients only: this cluster holds no identity to read it"
	} else if _, err := backup.OpenAny(stored, key); err != nil {
		return r.fail(st, backup.Reason(err), fmt.Sprintf("the stored backup does not open: %v", err))
	}
	pb.Status.Phase = vpoolv1alpha1.BackupCompleted
	pb.Status.SizeBytes = int64(len(data))
	pb.Status.SHA256 = backup.Checksum(data)
	pb.Status.Location = location
	msg := fmt.Sprintf("%d hosts, %d SRs, %d VDIs, %d VMs at revision %s; %d bytes encrypted at %s; %s",
		counts.Hosts, counts.SRs, counts.VDIs, counts.VMs, snap.revision, len(data), location, readable)
	st.Set(vpoolv1alpha1.ConditionReady, metav1.ConditionTrue, ReasonBackupCompleted, msg)
	metrics.BackupDuration.WithLabelValues("completed").Observe(done.Sub(pb.Status.StartedAt.Time).Seconds())
	metrics.BackupSize.WithLabelValues(pb.Namespace, pb.Spec.PoolRef.Name).Set(float64(len(data)))
	ctrl.LoggerFrom(ctx).Info("Backup completed", "bytes", len(data), "location", location)
	st.Eventf(corev1.EventTypeNormal, ReasonBackupCompleted, "Backup", "%s", msg)
	return nil
}

// dump reads the pool at one revision, with the Secrets its hosts name.
func (r *PoolBackupReconciler) dump(ctx context.Context, pb *vpoolv1alpha1.PoolBackup, now time.Time) (
	*backup.Dump, *poolSnapshot, error) {
	var snap *poolSnapshot
	var err error
	for attempt := 1; ; attempt++ {
		snap, err = readSnapshot(ctx, r.APIReader, pb.Namespace, pb.Spec.PoolRef.Name)
		if err == nil || attempt == snapshotAttempts || errors.Is(err, errPoolNotFound) {
			break
		}
	}
	if err != nil {
		return nil, nil, err
	}
	d := backup.NewDump(snap.pool, snap.hosts, snap.srs, snap.vdis, snap.vms, now)
	d.AddAppliances(snap.apps...)
	for _, name := range d.SecretNames() {
		s := &corev1.Secret{}
		if err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: pb.Namespace, Name: name}, s); err != nil {
			if apierrors.IsNotFound(err) {
				continue // a Host names a Secret that does not exist: nothing to keep
			}
			return nil, nil, err
		}
		d.AddSecrets(*s)
	}
	return d, snap, nil
}

// fail fails the backup for good: a spec problem, returned as a terminal
// error (a new backup is a new PoolBackup).
func (r *PoolBackupReconciler) fail(st *status.Helper[*vpoolv1alpha1.PoolBackup], reason, msg string) error {
	pb := st.Object()
	pb.Status.Phase = vpoolv1alpha1.BackupFailed
	st.Set(vpoolv1alpha1.ConditionReady, metav1.ConditionFalse, reason, msg)
	if pb.Status.StartedAt != nil {
		metrics.BackupDuration.WithLabelValues("failed").Observe(r.Clock.Since(pb.Status.StartedAt.Time).Seconds())
	}
	st.Eventf(corev1.EventTypeWarning, reason, "Backup", "%s", msg)
	return reconcile.TerminalError(fmt.Errorf("PoolBackup %s failed: %s: %s", klog.KObj(pb), reason, msg))
}

// setBackupProgress says, for kstatus, that a backup not yet Completed or
// Failed is work under way, and that a Failed one (never retried: a new
// backup is a new PoolBackup) waits for a person.
func setBackupProgress(pb *vpoolv1alpha1.PoolBackup) {
	phase := pb.Status.Phase
	status.SetProgress(pb, status.ProgressOf(status.Find(pb, vpoolv1alpha1.ConditionReady),
		phase == vpoolv1alpha1.BackupInProgress || phase == vpoolv1alpha1.BackupPending || phase == "",
		phase == vpoolv1alpha1.BackupFailed))
}

// reconcileDelete deletes the stored data, then lets the PoolBackup go.
func (r *PoolBackupReconciler) reconcileDelete(ctx context.Context, pb *vpoolv1alpha1.PoolBackup) error {
	if !controllerutil.ContainsFinalizer(pb, vpoolv1alpha1.FinalizerBackupData) {
		return nil
	}
	if err := r.store(pb).Delete(ctx, pb); err != nil {
		if pb.Status.Location != "" {
			return fmt.Errorf("deleting the data of PoolBackup %s: %w", klog.KObj(pb), err)
		}
		// It never recorded stored data (e.g. its endpoint was wrong): it
		// does not wait for a store that cannot answer.
		r.Recorder.Eventf(pb, nil, corev1.EventTypeWarning, ReasonDataNotDeleted, "Delete",
			"deleted without its store's answer: it had recorded no stored data; anything a failed attempt left stays there: %v", err)
	}
	patch := client.MergeFrom(pb.DeepCopy())
	controllerutil.RemoveFinalizer(pb, vpoolv1alpha1.FinalizerBackupData)
	return r.Patch(ctx, pb, patch)
}
