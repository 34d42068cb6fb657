package controllers

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/internal/backup"
	"github.com/poolkeeper/poolkeeper/internal/metrics"
	"github.com/poolkeeper/poolkeeper/internal/placement"
	"github.com/poolkeeper/poolkeeper/internal/status"
)

// +kubebuilder:rbac:groups=vpool.poolkeeper.io,resources=hosts;storagerepositories;virtualdisks;virtualmachines;virtualappliances,verbs=create;delete

// Reasons of the Restored condition.
const (
	ReasonRestoring       = "Restoring"
	ReasonRestored        = "Restored"
	ReasonBackupNotFound  = "BackupNotFound"
	ReasonDRTestReady     = "DRTestReady"
	ReasonDRTestCleanedUp = "DRTestCleanedUp"
)

// reconcileRestore recreates the pool from spec.restoreFrom
// (pool-restore-database). Preflight first: checksum, key, schema and
// conflicts; nothing is written unless it passes. Creation is idempotent: the
// restore's own objects carry AnnotationRestoredFrom, so a restore resumed
// after a crash goes on where it stopped. Until Restored is True, the Pool's
// other reconcilers wait (restorePending).
func (r *RestoreReconciler) reconcileRestore(ctx context.Context, pool *vpoolv1alpha1.Pool,
	set setCondition) error {
	if pool.Spec.RestoreFrom == nil || !pool.DeletionTimestamp.IsZero() {
		return nil // a deleted Pool starts no restore
	}
	if c := meta.FindStatusCondition(pool.Status.Conditions, vpoolv1alpha1.PoolRestored); c != nil && c.Status == metav1.ConditionTrue {
		return nil
	}
	fail := func(reason, msg string) error {
		set(vpoolv1alpha1.PoolRestored, metav1.ConditionFalse, reason, msg)
		return nil
	}
	// stop is fail for what only a person can fix, returned as a terminal
	// error: not retried; the Pool is reconciled again when it or what it
	// restores from changes.
	stop := func(reason, msg string) error {
		set(vpoolv1alpha1.PoolRestored, metav1.ConditionFalse, reason, msg)
		return reconcile.TerminalError(fmt.Errorf("restore of pool %s stopped: %s", pool.Name, msg))
	}
	pb, key, data, reason, msg, err := r.fetchBackup(ctx, pool)
	switch {
	case err != nil:
		return err
	case reason == ReasonKeyUnavailable:
		return stop(reason, msg)
	case reason != "":
		return fail(reason, msg)
	}
	existing, err := r.existing(ctx, pool.Namespace)
	if err != nil {
		return err
	}
	plan, err := backup.PreflightWith(pb, data, key, pool, existing)
	if err != nil {
		return fail(backup.Reason(err), "preflight: "+err.Error()+"; nothing was written")
	}
	if err := plan.Err(); err != nil {
		r.recordProblems(pool, plan)
		return stop(backup.Reason(err), fmt.Sprintf("Strict restore stopped before writing anything: %s", plan.Summary()))
	}
	set(vpoolv1alpha1.PoolRestored, metav1.ConditionFalse, ReasonRestoring, "recreating the pool's objects")
	if err := r.createPlanned(ctx, pool, plan); err != nil {
		return err
	}
	if pool.Status.Epoch < plan.MinEpoch {
		pool.Status.Epoch = plan.MinEpoch // the restored pool's next master starts a new epoch
	}
	r.recordProblems(pool, plan)
	now := metav1.NewTime(r.Clock.Now())
	pool.Status.Restore.CompletedAt = &now
	// A restore resumed after a crash finds part of its work done: count it too.
	done := map[string]int32{}
	for _, p := range plan.AlreadyRestored {
		done[p.Kind]++
	}
	pool.Status.Restore.Created = vpoolv1alpha1.BackupCounts{
		Hosts: int32(len(plan.Hosts)) + done[backup.KindHost], SRs: int32(len(plan.StorageRepositories)) + done[backup.KindStorageRepository],
		VDIs: int32(len(plan.VirtualDisks)) + done[backup.KindVirtualDisk], VMs: int32(len(plan.VirtualMachines)) + done[backup.KindVirtualMachine]}
	pool.Status.RestoredSettings = plan.Settings
	reason, msg = ReasonRestored, "restored: "+plan.Summary()+"; "+settingsTaken(plan.Settings)
	if plan.DryRun {
		reason, msg = ReasonDRTestReady, "DR test failover: "+plan.Summary()+
			"; no VM is started; delete the Pool or annotate it "+vpoolv1alpha1.AnnotationDRTestFinished+"=true to clean up"
	}
	set(vpoolv1alpha1.PoolRestored, metav1.ConditionTrue, reason, msg)
	result := "restored"
	if plan.DryRun {
		result = "dry-run"
	}
	metrics.RestoreDuration.WithLabelValues(result).Observe(now.Sub(pool.CreationTimestamp.Time).Seconds())
	ctrl.LoggerFrom(ctx).Info("Pool restored", "backup", pb.Name, "dryRun", plan.DryRun)
	return nil
}

// fetchBackup reads the PoolBackup to restore, its key and its stored bytes.
// A problem with any of them is a reason and a message for the Restored
// condition; only API errors are errors.
func (r *RestoreReconciler) fetchBackup(ctx context.Context, pool *vpoolv1alpha1.Pool) (
	pb *vpoolv1alpha1.PoolBackup, key backup.Keys, data []byte, reason, msg string, err error) {
	name := pool.Spec.RestoreFrom.BackupName
	pb = &vpoolv1alpha1.PoolBackup{}
	if err := r.Get(ctx, types.NamespacedName{Namespace: pool.Namespace, Name: name}, pb); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, backup.Keys{}, nil, ReasonBackupNotFound, fmt.Sprintf("spec.restoreFrom.backupName: PoolBackup %q not found", name), nil
		}
		return nil, backup.Keys{}, nil, "", "", err
	}
	if pb.Status.Phase != vpoolv1alpha1.BackupCompleted {
		return nil, backup.Keys{}, nil, backup.ReasonBackupNotCompleted, fmt.Sprintf("spec.restoreFrom.backupName: PoolBackup %q is %s, not Completed",
			name, orUnknown(string(pb.Status.Phase))), nil
	}
	key, err = backupKey(ctx, r.APIReader, pool.Namespace, pb.Spec.Encryption.KeySecretRef.Name)
	if err != nil {
		if apierrors.IsNotFound(err) || errors.Is(err, backup.ErrKeyTooShort) {
			return nil, backup.Keys{}, nil, ReasonKeyUnavailable, "PoolBackup " + pb.Name + ": " + err.Error(), nil
		}
		return nil, backup.Keys{}, nil, "", "", err
	}
	data, err = r.store(pb).Get(ctx, pb)
	if err != nil {
		if errors.Is(err, backup.ErrChecksum) || errors.Is(err, backup.ErrMissingChunk) || errors.Is(err, backup.ErrStorageCredentials) {
			return nil, backup.Keys{}, nil, backup.Reason(err), "preflight: " + err.Error() + "; nothing was written", nil
		}
		return nil, backup.Keys{}, nil, "", "", err
	}
	return pb, key, data, "", "", nil
}

// store is where the backup's data is: the manager's Store when it has one
// (the PoolBackup controller wrote it there), else the one spec.storage names.
func (r *RestoreReconciler) store(pb *vpoolv1alpha1.PoolBackup) backup.Store {
	if r.Store != nil {
		return r.Store
	}
	return backupStore(r.Client, r.APIReader, pb)
}

// settingsTaken says which pool settings the restore took from the backup.
func settingsTaken(s *vpoolv1alpha1.PoolSettings) string {
	if s == nil {
		return "no pool setting taken from the backup (the spec sets them, or the backup has none)"
	}
	return "pool settings taken from the backup, where spec leaves them unset (status.restoredSettings): " + s.String()
}

func orUnknown(s string) string {
	if s == "" {
		return "not started"
	}
	return s
}

func (r *RestoreReconciler) recordProblems(pool *vpoolv1alpha1.Pool, plan *backup.RestorePlan) {
	if pool.Status.Restore == nil {
		pool.Status.Restore = &vpoolv1alpha1.RestoreStatus{Backup: plan.Backup}
	}
	var lines []string
	for _, group := range [][]backup.Problem{plan.Conflicts, plan.Skipped, plan.Notes} {
		for _, p := range group {
			if len(lines) < 20 {
				lines = append(lines, p.String())
			}
		}
	}
	pool.Status.Restore.Problems = lines
}

// existing lists what the namespace already holds, from the API server.
func (r *RestoreReconciler) existing(ctx context.Context, ns string) (backup.Existing, error) {
	hosts := &vpoolv1alpha1.HostList{}
	srs := &vpoolv1alpha1.StorageRepositoryList{}
	vdis := &vpoolv1alpha1.VirtualDiskList{}
	vms := &vpoolv1alpha1.VirtualMachineList{}
	for _, l := range []client.ObjectList{hosts, srs, vdis, vms} {
		if err := r.APIReader.List(ctx, l, client.InNamespace(ns)); err != nil {
			return backup.Existing{}, fmt.Errorf("listing %T in %s: %w", l, ns, err)
		}
	}
	apps := &vpoolv1alpha1.VirtualApplianceList{}
	if err := r.APIReader.List(ctx, apps, client.InNamespace(ns)); err != nil {
		return backup.Existing{}, fmt.Errorf("listing %T in %s: %w", apps, ns, err)
	}
	e := backup.ExistingFrom(hosts.Items, srs.Items, vdis.Items, vms.Items)
	for i := range apps.Items {
		e.Add(&apps.Items[i])
	}
	return e, nil
}

// RestoreWorkers is how many creates a restore has in flight at once.
// Objects of one kind never refer to each other, so each kind is created in
// parallel, and completely before the next kind starts.
const RestoreWorkers = 16

// createPlanned creates the plan's objects kind by kind, in the plan's order:
// Secrets, SRs, VDIs, vApps, VMs (with the statuses of the VMs that were Suspended),
// then Hosts, which rejoin when their agents heartbeat. A create that finds
// the object already there is one this restore made before a restart, or a
// Secret the namespace had.
func (r *RestoreReconciler) createPlanned(ctx context.Context, pool *vpoolv1alpha1.Pool, plan *backup.RestorePlan) error {
	now := r.Clock.Now()
	if err := createAll(ctx, r.Client, plan.Secrets, nil); err != nil {
		return err
	}
	if err := createAll(ctx, r.Client, plan.StorageRepositories, nil); err != nil {
		return err
	}
	if err := createAll(ctx, r.Client, plan.VirtualDisks, nil); err != nil {
		return err
	}
	// vApps before the VMs that name them, which otherwise wait for them.
	if err := createAll(ctx, r.Client, plan.VirtualAppliances, nil); err != nil {
		return err
	}
	creating := make(map[string]bool, len(plan.VirtualMachines))
	for _, vm := range plan.VirtualMachines {
		creating[vm.Name] = true
	}
	// A VM created now starts from the create's response; one this restore
	// created before a crash is read again.
	if err := createAll(ctx, r.Client, plan.VirtualMachines, func(ctx context.Context, vm *vpoolv1alpha1.VirtualMachine, created bool) error {
		st, ok := plan.VMStatuses[vm.Name]
		if !ok {
			if created {
				return r.recordHalted(ctx, vm)
			}
			return nil
		}
		name := vm.Name
		if !created {
			vm = nil
		}
		return r.restoreVMStatus(ctx, pool.Namespace, name, vm, st, now)
	}); err != nil {
		return err
	}
	var resumed []string
	for name := range plan.VMStatuses {
		if !creating[name] {
			resumed = append(resumed, name)
		}
	}
	if err := inParallel(ctx, resumed, func(ctx context.Context, name string) error {
		return r.restoreVMStatus(ctx, pool.Namespace, name, nil, plan.VMStatuses[name], now)
	}); err != nil {
		return err
	}
	return createAll(ctx, r.Client, plan.Hosts, nil)
}

// recordHalted records a VM just created from the backup Halted, with the
// status the VM controller and the placement controller would give it while
// the pool has no Live host, so that neither writes it again: a restored
// pool shows its VMs Halted until hosts are Live again. A VM either of them
// recorded first is left as it is.
func (r *RestoreReconciler) recordHalted(ctx context.Context, vm *vpoolv1alpha1.VirtualMachine) error {
	if vm.Status.PowerState != "" {
		return nil
	}
	st := status.New(r.Client, nil, vm)
	newVMStatus(vm)
	if vm.Spec.PowerState == vpoolv1alpha1.DesiredRunning {
		decide(vm, placement.NoLiveHost, "")
	}
	if err := st.Write(ctx); err != nil && !apierrors.IsConflict(err) {
		return fmt.Errorf("recording restored VM %s Halted: %w", vm.Name, err)
	}
	return nil
}

// restoreVMStatus writes a restored VM's status while it is still Pending:
// from vm, as the create returned it, or else as read from the API server.
// The write is conditional on the version read, so that a status the VM
// controller or an agent wrote meanwhile is read again and judged anew.
func (r *RestoreReconciler) restoreVMStatus(ctx context.Context, ns, name string, vm *vpoolv1alpha1.VirtualMachine,
	st backup.VMStatus, now time.Time) error {
	return writeRestoredVMStatus(ctx, r.Client, r.APIReader, ns, name, vm, st, now)
}

// writeRestoredVMStatus is restoreVMStatus for any controller that
// recreates VMs from a backup (restores and recoveries).
func writeRestoredVMStatus(ctx context.Context, c client.Client, reader client.Reader, ns, name string, vm *vpoolv1alpha1.VirtualMachine,
	st backup.VMStatus, now time.Time) error {
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if vm == nil {
			vm = &vpoolv1alpha1.VirtualMachine{}
			if err := reader.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, vm); err != nil {
				return err
			}
		}
		if !st.Pending(&vm.Status) {
			return nil
		}
		patch := client.MergeFromWithOptions(vm.DeepCopy(), client.MergeFromWithOptimisticLock{})
		st.Apply(&vm.Status, now)
		err := c.Status().Patch(ctx, vm, patch)
		vm = nil // read again after a conflict
		return err
	})
	if err != nil {
		return fmt.Errorf("recording the status of restored VM %s: %w", name, err)
	}
	return nil
}

// createAll creates objs with RestoreWorkers in parallel, and runs then, if
// set, on each object once it exists: created tells whether this call
// created it (obj is then the API server's response) or found it there.
func createAll[T client.Object](ctx context.Context, c client.Client, objs []T,
	then func(ctx context.Context, obj T, created bool) error) error {
	return inParallel(ctx, objs, func(ctx context.Context, obj T) error {
		err := c.Create(ctx, obj)
		created := err == nil
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("restoring %T %s: %w", obj, obj.GetName(), err)
		}
		if then == nil {
			return nil
		}
		return then(ctx, obj, created)
	})
}

// inParallel runs fn on every item with at most RestoreWorkers at once. The
// first error stops the items not yet started and is returned.
func inParallel[T any](ctx context.Context, items []T, fn func(context.Context, T) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	next := make(chan T)
	var wg sync.WaitGroup
	for range min(RestoreWorkers, len(items)) {
		wg.Go(func() {
			for item := range next {
				if err := fn(ctx, item); err != nil {
					cancel(err)
				}
			}
		})
	}
feed:
	for _, item := range items {
		select {
		case next <- item:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	return context.Cause(ctx)
}

// cleanupDRTest removes every object a dry-run restore created.
func (r *RestoreReconciler) cleanupDRTest(ctx context.Context, pool *vpoolv1alpha1.Pool) error {
	lists := []client.ObjectList{&vpoolv1alpha1.VirtualMachineList{}, &vpoolv1alpha1.VirtualApplianceList{}, &vpoolv1alpha1.VirtualDiskList{},
		&vpoolv1alpha1.StorageRepositoryList{}, &vpoolv1alpha1.HostList{}}
	for _, l := range lists {
		if err := r.APIReader.List(ctx, l, client.InNamespace(pool.Namespace)); err != nil {
			return err
		}
		if err := meta.EachListItem(l, func(o runtime.Object) error {
			obj := o.(client.Object)
			if obj.GetAnnotations()[backup.AnnotationRestoredFrom] == "" || poolRefOf(obj) != pool.Name {
				return nil
			}
			return client.IgnoreNotFound(r.Delete(ctx, obj))
		}); err != nil {
			return fmt.Errorf("cleaning up the DR test of pool %s: %w", pool.Name, err)
		}
	}
	return nil
}
