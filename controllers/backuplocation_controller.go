package controllers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/internal/backup"
	"github.com/poolkeeper/poolkeeper/internal/status"
)

// +kubebuilder:rbac:groups=vpool.poolkeeper.io,resources=backuplocations,verbs=get;list;watch
// +kubebuilder:rbac:groups=vpool.poolkeeper.io,resources=backuplocations/status,verbs=get;update;patch

// Reasons of BackupLocation conditions, and of the Ready condition of the
// PoolBackups its sync creates.
const (
	// ReasonSynced: the bucket was listed; every backup in it has its PoolBackup.
	ReasonSynced = "Synced"
	// ReasonForeignObjects: synced, and some objects under the prefix are
	// not poolkeeper backups (they are left alone).
	ReasonForeignObjects = "ForeignObjects"
	// ReasonFoundInLocation: a PoolBackup created for a backup found in a
	// location's bucket.
	ReasonFoundInLocation = "FoundInLocation"
	// ReasonBackupGone: the event of a PoolBackup deleted by the sync because
	// its object is no longer in the bucket.
	ReasonBackupGone = "BackupGone"
)

// foreignShown is how many foreign keys a message names.
const foreignShown = 3

// BackupLister lists a location's bucket (backup.LocationStore does).
type BackupLister interface {
	List(ctx context.Context, loc *vpoolv1alpha1.BackupLocation, known func(key string) bool) (backup.Listing, error)
}

// BackupLocationReconciler syncs a BackupLocation: it lists the bucket every
// spec.syncInterval and creates, in the location's namespace, a PoolBackup
// (phase Completed, spec.storage.locationRef) for every stored backup the
// namespace lacks — Velero's backup sync. It never writes the bucket.
type BackupLocationReconciler struct {
	client.Client
	APIReader client.Reader
	Clock     clock.PassiveClock
	Recorder  events.EventRecorder
	// Lister lists buckets; a LocationStore over APIReader when nil.
	Lister BackupLister
}

// SetupWithManager registers the reconciler. Status writes do not wake it:
// the next sync is a RequeueAfter.
func (r *BackupLocationReconciler) SetupWithManager(mgr ctrl.Manager, opts Options) error {
	if r.Lister == nil {
		r.Lister = &backup.LocationStore{Reader: r.APIReader}
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&vpoolv1alpha1.BackupLocation{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		WithOptions(controller.Options{MaxConcurrentReconciles: opts.MaxConcurrentReconciles}).
		Complete(conflictsRequeued(r))
}

// Reconcile syncs the location when due and requeues for the next sync.
func (r *BackupLocationReconciler) Reconcile(ctx context.Context, req ctrl.Request) (res ctrl.Result, err error) {
	loc := &vpoolv1alpha1.BackupLocation{}
	if err := r.Get(ctx, req.NamespacedName, loc); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	ctx = ctrl.LoggerInto(ctx, ctrl.LoggerFrom(ctx).WithValues("BackupLocation", klog.KObj(loc)))
	interval := syncInterval(loc)
	now := r.Clock.Now()
	if due, in := syncDue(loc, interval, now); !due {
		return ctrl.Result{RequeueAfter: in}, nil
	}
	st := status.New(r.Client, r.Recorder, loc)
	defer func() {
		setLocationProgress(loc)
		err = st.Patch(ctx, err)
	}()
	created, listing, err := r.sync(ctx, loc)
	if err != nil {
		return r.syncFailed(st, interval, err)
	}
	synced := metav1.NewTime(now)
	loc.Status.LastSyncedAt = &synced
	loc.Status.Backups = int32(listing.Backups())
	where := fmt.Sprintf("s3://%s/%s", loc.Spec.S3.Bucket, strings.Trim(loc.Spec.S3.Prefix, "/"))
	msg := fmt.Sprintf("%d backups in %s; %d PoolBackups created by this sync", listing.Backups(), where, created)
	reason := ReasonSynced
	if n := len(listing.Foreign); n > 0 {
		reason = ReasonForeignObjects
		shown := listing.Foreign[:min(n, foreignShown)]
		msg += fmt.Sprintf("; %d objects under the prefix are not poolkeeper backups and are left alone: %s", n, strings.Join(shown, ", "))
		if n > foreignShown {
			msg += ", ..."
		}
	}
	if was := st.Was(vpoolv1alpha1.ConditionReady); reason == ReasonForeignObjects && (was == nil || was.Reason != reason) {
		st.Eventf(corev1.EventTypeWarning, reason, "Sync", "%s", msg)
	}
	st.Set(vpoolv1alpha1.ConditionReady, metav1.ConditionTrue, reason, msg)
	if created > 0 {
		ctrl.LoggerFrom(ctx).Info("Backups synced from the bucket", "created", created, "backups", listing.Backups())
	}
	return ctrl.Result{RequeueAfter: interval}, nil
}

// syncFailed says why the bucket could not be synced. A trouble a person
// must fix (credentials, bucket) stalls the location, which tries again at
// the next interval; an unreachable service is retried with backoff.
func (r *BackupLocationReconciler) syncFailed(st *status.Helper[*vpoolv1alpha1.BackupLocation], interval time.Duration,
	err error) (ctrl.Result, error) {
	loc := st.Object()
	reason := backup.Reason(err)
	if reason == "" {
		reason = backup.S3Trouble(err)
	}
	msg := fmt.Sprintf("syncing s3://%s at %s: %v", loc.Spec.S3.Bucket, loc.Spec.S3.Endpoint, err)
	switch reason {
	case backup.S3CredentialsRejected:
		msg += ": check the access key in spec.s3.credentialsSecretRef"
	case backup.S3BucketNotFound:
		msg += ": check spec.s3.bucket"
	}
	if was := st.Was(vpoolv1alpha1.ConditionReady); was == nil || was.Reason != reason {
		st.Eventf(corev1.EventTypeWarning, reason, "Sync", "%s", msg)
	}
	st.Set(vpoolv1alpha1.ConditionReady, metav1.ConditionFalse, reason, msg)
	if reason == backup.S3Unreachable {
		return ctrl.Result{}, fmt.Errorf("syncing BackupLocation %s: %w", klog.KObj(loc), err)
	}
	return ctrl.Result{RequeueAfter: interval}, nil
}

// setLocationProgress: a location that cannot sync for a reason only a
// person can fix is Stalled.
func setLocationProgress(loc *vpoolv1alpha1.BackupLocation) {
	ready := status.Find(loc, vpoolv1alpha1.ConditionReady)
	stalled := ready != nil && ready.Status == metav1.ConditionFalse && ready.Reason != backup.S3Unreachable
	status.SetProgress(loc, status.ProgressOf(ready, false, stalled))
}

// syncInterval is spec.syncInterval or its default.
func syncInterval(loc *vpoolv1alpha1.BackupLocation) time.Duration {
	if d := loc.Spec.SyncInterval; d != nil && d.Duration >= time.Second {
		return d.Duration
	}
	d, _ := time.ParseDuration(vpoolv1alpha1.DefaultSyncInterval)
	return d
}

// syncDue decides whether the location is synced now: never synced, its
// spec changed since, its last sync failed, or the interval has passed.
// Otherwise it says when the next sync is due.
func syncDue(loc *vpoolv1alpha1.BackupLocation, interval time.Duration, now time.Time) (bool, time.Duration) {
	last := loc.Status.LastSyncedAt
	if last == nil || loc.Status.ObservedGeneration != loc.Generation || !status.IsTrue(loc, vpoolv1alpha1.ConditionReady) {
		return true, 0
	}
	if next := last.Add(interval); now.Before(next) {
		return false, next.Sub(now)
	}
	return true, 0
}

// sync lists the bucket and creates the PoolBackups the namespace lacks.
func (r *BackupLocationReconciler) sync(ctx context.Context, loc *vpoolv1alpha1.BackupLocation) (int, backup.Listing, error) {
	have := &vpoolv1alpha1.PoolBackupList{}
	if err := r.List(ctx, have, client.InNamespace(loc.Namespace)); err != nil {
		return 0, backup.Listing{}, err
	}
	known := map[string]bool{}
	for i := range have.Items {
		pb := &have.Items[i]
		if ref := pb.Spec.Storage.LocationRef; ref != nil && ref.Name == loc.Name && pb.Status.Phase != "" {
			known[backup.LocationKey(loc, pb)] = true
		}
	}
	listing, err := r.Lister.List(ctx, loc, func(key string) bool { return known[key] })
	if err != nil {
		return 0, backup.Listing{}, err
	}
	created := 0
	for _, sb := range listing.New {
		made, err := r.createSynced(ctx, loc, sb)
		if err != nil {
			return created, listing, err
		}
		if made {
			created++
		}
	}
	if err := r.pruneGone(ctx, loc, have.Items, listing); err != nil {
		return created, listing, err
	}
	return created, listing, nil
}

// pruneGone deletes the Completed PoolBackups of the location whose object
// the listing did not find: pruned at the site that wrote them (its retain),
// or deleted by hand. They were listed before the bucket, and a PoolBackup
// is Completed only once its object is stored, so an object that is missing
// is gone (Velero's backup sync does the same). Each is annotated
// AnnotationGoneFromBucket before it is deleted, so that its deletion
// deletes nothing stored even if the listing missed an object that is
// there (and a sync resumed after a crash deletes it the same way).
func (r *BackupLocationReconciler) pruneGone(ctx context.Context, loc *vpoolv1alpha1.BackupLocation,
	have []vpoolv1alpha1.PoolBackup, listing backup.Listing) error {
	for _, pb := range goneBackups(loc, have, listing.Seen) {
		if pb.Annotations[vpoolv1alpha1.AnnotationGoneFromBucket] == "" {
			patch := client.MergeFromWithOptions(pb.DeepCopy(), client.MergeFromWithOptimisticLock{})
			if pb.Annotations == nil {
				pb.Annotations = map[string]string{}
			}
			pb.Annotations[vpoolv1alpha1.AnnotationGoneFromBucket] = "true"
			if err := r.Patch(ctx, pb, patch); err != nil {
				return client.IgnoreNotFound(err)
			}
		}
		if err := r.Delete(ctx, pb); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("deleting PoolBackup %s/%s, whose object is gone: %w", pb.Namespace, pb.Name, err)
		}
		r.Recorder.Eventf(loc, pb, corev1.EventTypeNormal, ReasonBackupGone, "Sync",
			"PoolBackup %s deleted: its object %s is no longer in the bucket", pb.Name, backup.LocationKey(loc, pb))
		ctrl.LoggerFrom(ctx).Info("PoolBackup deleted: its object is gone from the bucket", "PoolBackup", pb.Name)
	}
	return nil
}

// createSynced creates the PoolBackup of a stored backup, named as the
// backup that wrote it when that name is free, and writes its status. A
// PoolBackup of that stored key already there (a sync interrupted before
// its status write, or a cache behind) is completed, never duplicated.
func (r *BackupLocationReconciler) createSynced(ctx context.Context, loc *vpoolv1alpha1.BackupLocation, sb backup.StoredBackup) (bool, error) {
	for _, name := range syncedNames(sb) {
		pb := syncedBackup(loc, sb, name)
		err := r.Create(ctx, pb)
		if apierrors.IsAlreadyExists(err) {
			if err = r.APIReader.Get(ctx, types.NamespacedName{Namespace: loc.Namespace, Name: name}, pb); err != nil {
				return false, err
			}
			ref := pb.Spec.Storage.LocationRef
			if ref == nil || ref.Name != loc.Name || backup.LocationKey(loc, pb) != sb.Key {
				continue // another backup has the name
			}
			if pb.Status.Phase != "" {
				return false, nil
			}
		} else if err != nil {
			return false, fmt.Errorf("creating PoolBackup %s/%s for %s: %w", loc.Namespace, name, sb.Key, err)
		}
		return true, r.writeSyncedStatus(ctx, loc, pb, sb)
	}
	return false, fmt.Errorf("no free name for a PoolBackup of %s", sb.Key)
}

func (r *BackupLocationReconciler) writeSyncedStatus(ctx context.Context, loc *vpoolv1alpha1.BackupLocation,
	pb *vpoolv1alpha1.PoolBackup, sb backup.StoredBackup) error {
	d := sb.Description
	st := status.New(r.Client, r.Recorder, pb)
	pb.Status = d.Status(backup.LocationURL(loc, sb.Key), sb.Size)
	st.Set(vpoolv1alpha1.ConditionReady, metav1.ConditionTrue, ReasonFoundInLocation,
		fmt.Sprintf("found in BackupLocation %s at %s: written by PoolBackup %s/%s, key %s",
			loc.Name, pb.Status.Location, d.Namespace, d.Name, orUnknown(d.KeyID)))
	return st.Patch(ctx, nil)
}

// syncedNames are the names a synced PoolBackup may take, in order: the
// name of the backup that wrote it, then that name with a digest of the key
// (another namespace's backup of the same name).
func syncedNames(sb backup.StoredBackup) []string {
	sum := sha256.Sum256([]byte(sb.Key))
	suffix := "-" + hex.EncodeToString(sum[:4])
	base := sb.Description.Name
	if len(base)+len(suffix) > validation.DNS1123SubdomainMaxLength {
		base = base[:validation.DNS1123SubdomainMaxLength-len(suffix)]
	}
	names := []string{base + suffix}
	if len(validation.IsDNS1123Subdomain(sb.Description.Name)) == 0 {
		names = append([]string{sb.Description.Name}, names...)
	}
	return names
}

// syncedBackup is the PoolBackup of a stored backup.
func syncedBackup(loc *vpoolv1alpha1.BackupLocation, sb backup.StoredBackup, name string) *vpoolv1alpha1.PoolBackup {
	d := sb.Description
	keySecret := d.KeySecret
	if e := loc.Spec.Encryption; e != nil {
		keySecret = e.KeySecretRef.Name
	}
	pb := &vpoolv1alpha1.PoolBackup{ObjectMeta: metav1.ObjectMeta{
		Namespace:   loc.Namespace,
		Name:        name,
		Labels:      map[string]string{vpoolv1alpha1.LabelPool: d.Pool},
		Annotations: map[string]string{vpoolv1alpha1.AnnotationStoredKey: sb.Key},
		Finalizers:  []string{vpoolv1alpha1.FinalizerBackupData},
	}}
	if len(validation.IsValidLabelValue(d.Pool)) != 0 {
		delete(pb.Labels, vpoolv1alpha1.LabelPool)
	}
	pb.Spec.PoolRef.Name = d.Pool
	pb.Spec.Storage = vpoolv1alpha1.BackupStorage{Type: vpoolv1alpha1.StorageLocation,
		LocationRef: &vpoolv1alpha1.LocalObjectReference{Name: loc.Name}}
	pb.Spec.Encryption.KeySecretRef.Name = keySecret
	return pb
}

// goneBackups are the PoolBackups of have that pruneGone deletes: synced
// from the bucket (those written here are pruned by their own retain),
// Completed, of loc, not being deleted, whose key is under the prefix listed (a
// PoolBackup stored under another prefix, before spec.s3.prefix changed,
// was not looked for) and was not found there (seen).
func goneBackups(loc *vpoolv1alpha1.BackupLocation, have []vpoolv1alpha1.PoolBackup, seen map[string]bool) []*vpoolv1alpha1.PoolBackup {
	var gone []*vpoolv1alpha1.PoolBackup
	for i := range have {
		pb := &have[i]
		ref := pb.Spec.Storage.LocationRef
		key := backup.LocationKey(loc, pb)
		synced := pb.Annotations[vpoolv1alpha1.AnnotationStoredKey] != ""
		if synced && ref != nil && ref.Name == loc.Name && pb.Status.Phase == vpoolv1alpha1.BackupCompleted && pb.DeletionTimestamp.IsZero() &&
			strings.HasPrefix(key, loc.Spec.S3.Prefix) && !seen[key] {
			gone = append(gone, pb)
		}
	}
	return gone
}
