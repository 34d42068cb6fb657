package controllers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/internal/backup"
	"github.com/poolkeeper/poolkeeper/internal/status"
)

// +kubebuilder:rbac:groups=vpool.poolkeeper.io,resources=recoveries,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=vpool.poolkeeper.io,resources=recoveries/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=vpool.poolkeeper.io,resources=recoveries/finalizers,verbs=update
// +kubebuilder:rbac:groups=vpool.poolkeeper.io,resources=virtualmachines,verbs=update
// +kubebuilder:rbac:groups=vpool.poolkeeper.io,resources=virtualappliances,verbs=create;delete

// Reasons of a Recovery's Ready condition (beside ReasonPoolNotFound,
// ReasonKeyUnavailable, ReasonDRTestReady and ReasonDRTestCleanedUp).
const (
	ReasonRecovering          = "Recovering"
	ReasonRecoveryConflicts   = "Conflicts"
	ReasonNothingSelected     = "NothingSelected"
	ReasonSourceNotFound      = "SourceNotFound"
	ReasonSourceNotCompleted  = "SourceNotCompleted"
	ReasonNoBackupsFound      = "NoBackupsFound"
	ReasonSourceUnreadable    = "SourceUnreadable"
	ReasonRecoveryIncomplete  = "RecoveryIncomplete"
	recoveryResultsMaxMessage = 3
)

// RecoveryReconciler recovers chosen VMs and vApps from backups into a pool
// (DESIGN.md "Recovery"): it opens the sources, plans (backup.PlanRecovery:
// the newest information per VM, matched by status.uuid), writes the plan
// to status.plan before any object, then carries out the plan as written —
// SRs, then VDIs (unlocked), then VMs with their uuid — and records the
// results. A plan is made once per generation; a Recovery resumed after a
// crash carries out the same plan again, finding what it created by
// vpoolv1alpha1.LabelRecovery. A recovered VDI carries the volume its backup
// records (vpoolv1alpha1.AnnotationVolume), which its agent attaches. A test
// failover (spec.dryRun) starts nothing, replaces nothing, gives no VDI the
// volume of its backup, and removes what it created once finished or deleted.
type RecoveryReconciler struct {
	client.Client
	// APIReader reads backups' keys and data, and what the namespace holds,
	// from the API server.
	APIReader client.Reader
	Recorder  events.EventRecorder
	Clock     clock.PassiveClock
	// Store, when set, holds every backup's data (Options.Store); else the
	// store each PoolBackup's spec.storage names.
	Store backup.Store
}

// SetupWithManager registers the Recovery controller: a Recovery wakes when
// it changes, when a PoolBackup it may take VMs from changes, and when its
// pool appears.
func (r *RecoveryReconciler) SetupWithManager(mgr ctrl.Manager, opts Options) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&vpoolv1alpha1.Recovery{}).
		Watches(&vpoolv1alpha1.PoolBackup{}, handler.EnqueueRequestsFromMapFunc(r.recoveriesFrom)).
		Watches(&vpoolv1alpha1.Pool{}, handler.EnqueueRequestsFromMapFunc(r.recoveriesInto)).
		WithOptions(controller.Options{MaxConcurrentReconciles: opts.MaxConcurrentReconciles}).
		Complete(conflictsRequeued(r))
}

// recoveriesFrom wakes the unfinished Recoveries that may take VMs from a
// PoolBackup: by its name, or by its location and pool.
func (r *RecoveryReconciler) recoveriesFrom(ctx context.Context, obj client.Object) []reconcile.Request {
	pb, ok := obj.(*vpoolv1alpha1.PoolBackup)
	if !ok {
		return nil
	}
	return r.recoveriesMatching(ctx, pb.Namespace, func(rec *vpoolv1alpha1.Recovery) bool {
		return slices.ContainsFunc(rec.Spec.Sources, func(s vpoolv1alpha1.RecoverySource) bool { return sourceNames(s, pb) })
	})
}

// recoveriesInto wakes the unfinished Recoveries into a Pool.
func (r *RecoveryReconciler) recoveriesInto(ctx context.Context, obj client.Object) []reconcile.Request {
	return r.recoveriesMatching(ctx, obj.GetNamespace(), func(rec *vpoolv1alpha1.Recovery) bool {
		return rec.Spec.PoolRef.Name == obj.GetName()
	})
}

func (r *RecoveryReconciler) recoveriesMatching(ctx context.Context, ns string, match func(*vpoolv1alpha1.Recovery) bool) []reconcile.Request {
	l := &vpoolv1alpha1.RecoveryList{}
	if err := r.List(ctx, l, client.InNamespace(ns), client.UnsafeDisableDeepCopy); err != nil {
		return nil
	}
	var reqs []reconcile.Request
	for i := range l.Items {
		if !recoveryDone(&l.Items[i]) && match(&l.Items[i]) {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&l.Items[i])})
		}
	}
	return reqs
}

// sourceNames says whether source s names PoolBackup pb.
func sourceNames(s vpoolv1alpha1.RecoverySource, pb *vpoolv1alpha1.PoolBackup) bool {
	if s.BackupName != "" {
		return s.BackupName == pb.Name
	}
	ref := pb.Spec.Storage.LocationRef
	return ref != nil && ref.Name == s.Location && pb.Spec.PoolRef.Name == s.Pool
}

// recoveryDone: the Recovery's current generation was carried out.
func recoveryDone(rec *vpoolv1alpha1.Recovery) bool {
	c := meta.FindStatusCondition(rec.Status.Conditions, vpoolv1alpha1.ConditionReady)
	return c != nil && c.Status == metav1.ConditionTrue && c.ObservedGeneration == rec.Generation &&
		(c.Reason == ReasonRecovered || c.Reason == ReasonDRTestReady || c.Reason == ReasonDRTestCleanedUp)
}

// Reconcile carries out one Recovery, or cleans up its test failover.
func (r *RecoveryReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	rec := &vpoolv1alpha1.Recovery{}
	if err := r.Get(ctx, req.NamespacedName, rec); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	ctx = ctrl.LoggerInto(ctx, ctrl.LoggerFrom(ctx).WithValues("Recovery", klog.KObj(rec)))
	finished := rec.Annotations[vpoolv1alpha1.AnnotationDRTestFinished] == "true"
	switch {
	case !rec.DeletionTimestamp.IsZero():
		if !controllerutil.ContainsFinalizer(rec, vpoolv1alpha1.FinalizerRecoveryCleanup) {
			return ctrl.Result{}, nil
		}
		if err := r.cleanup(ctx, rec); err != nil {
			return ctrl.Result{}, err
		}
		return ctrl.Result{}, r.removeFinalizer(ctx, rec)
	case rec.Spec.DryRun && finished:
		return ctrl.Result{}, r.finishTest(ctx, rec)
	case recoveryDone(rec):
		return ctrl.Result{}, nil
	case rec.Spec.DryRun && !controllerutil.ContainsFinalizer(rec, vpoolv1alpha1.FinalizerRecoveryCleanup):
		// Before the test creates anything: its cleanup must run.
		patch := client.MergeFromWithOptions(rec.DeepCopy(), client.MergeFromWithOptimisticLock{})
		controllerutil.AddFinalizer(rec, vpoolv1alpha1.FinalizerRecoveryCleanup)
		return ctrl.Result{}, r.Patch(ctx, rec, patch)
	}
	st := status.New(r.Client, r.Recorder, rec)
	err := r.recover(ctx, st)
	setRecoveryProgress(rec)
	return ctrl.Result{}, st.Patch(ctx, err)
}

// setRecoveryProgress derives Reconciling and Stalled from Ready: Stalled
// for what only a person can unblock, Reconciling while the recovery waits
// for something that will come or is under way.
func setRecoveryProgress(rec *vpoolv1alpha1.Recovery) {
	ready := status.Find(rec, vpoolv1alpha1.ConditionReady)
	if ready == nil {
		return
	}
	stalled := false
	switch ready.Reason {
	case ReasonRecoveryConflicts, ReasonNothingSelected, ReasonSourceUnreadable, ReasonKeyUnavailable,
		ReasonRecoveryIncomplete, vpoolv1alpha1.ReasonInvalidSpec:
		stalled = ready.Status == metav1.ConditionFalse
	}
	status.SetProgress(rec, status.ProgressOf(ready, ready.Status == metav1.ConditionFalse, stalled))
}

// recover takes the Recovery one step on: sources, plan, objects.
func (r *RecoveryReconciler) recover(ctx context.Context, st *status.Helper[*vpoolv1alpha1.Recovery]) error {
	rec := st.Object()
	not := func(reason, msg string) error {
		st.Set(vpoolv1alpha1.ConditionReady, metav1.ConditionFalse, reason, msg)
		return nil
	}
	stop := func(reason, msg string) error {
		st.Set(vpoolv1alpha1.ConditionReady, metav1.ConditionFalse, reason, msg)
		return reconcile.TerminalError(fmt.Errorf("recovery %s stopped: %s", rec.Name, msg))
	}
	pool := &vpoolv1alpha1.Pool{}
	if err := r.Get(ctx, types.NamespacedName{Namespace: rec.Namespace, Name: rec.Spec.PoolRef.Name}, pool); err != nil {
		if apierrors.IsNotFound(err) {
			return not(vpoolv1alpha1.ReasonPoolNotFound, fmt.Sprintf("spec.poolRef: Pool %q not found: the recovery pool must exist", rec.Spec.PoolRef.Name))
		}
		return err
	}
	sources, reason, msg, err := r.openSources(ctx, rec)
	switch {
	case err != nil:
		return err
	case reason == ReasonKeyUnavailable || reason == ReasonSourceUnreadable:
		return stop(reason, msg)
	case reason != "":
		return not(reason, msg)
	}
	if rec.Status.PlanGeneration != rec.Generation {
		if err := r.plan(ctx, st, sources); err != nil || status.Find(rec, vpoolv1alpha1.ConditionReady).Reason != ReasonRecovering {
			return err
		}
	} else if blockedPlan(rec.Status.Plan) {
		return nil // as the plan's conditions say, until the spec changes
	}
	target := backup.RecoveryTarget{Namespace: rec.Namespace, Pool: pool.Name, Recovery: rec.Name, RecoveryUID: rec.UID,
		DryRun: rec.Spec.DryRun, PowerOn: rec.Spec.PowerOn == nil || *rec.Spec.PowerOn}
	work, err := backup.RecoveryWorkFor(rec.Status.Plan, sources, target)
	if err != nil {
		return stop(ReasonSourceUnreadable, err.Error())
	}
	failed, err := r.carryOut(ctx, rec, target, work)
	if err != nil {
		return err
	}
	rec.Status.Results = recoveryResults(rec.Status.Plan, failed)
	if len(failed) > 0 {
		st.Eventf(corev1.EventTypeWarning, ReasonRecoveryIncomplete, "Recover", "%d objects not recovered: %s", len(failed), firstFailures(failed))
		return stop(ReasonRecoveryIncomplete, fmt.Sprintf("%d objects not recovered (see status.results): %s", len(failed), firstFailures(failed)))
	}
	summary := planSummary(rec.Status.Plan)
	if rec.Spec.DryRun {
		msg := "test failover: " + summary + "; no VM is started, and no VirtualDisk is given the volume its backup records (" +
			vpoolv1alpha1.AnnotationVolume + "), so that nothing of the test writes the volumes of the pool it tests; annotate the Recovery " +
			vpoolv1alpha1.AnnotationDRTestFinished + "=true or delete it to remove what it created"
		st.Set(vpoolv1alpha1.ConditionReady, metav1.ConditionTrue, ReasonDRTestReady, msg)
		st.Eventf(corev1.EventTypeNormal, ReasonDRTestReady, "Recover", "%s", msg)
	} else {
		msg := "recovered into pool " + pool.Name + ": " + summary
		st.Set(vpoolv1alpha1.ConditionReady, metav1.ConditionTrue, ReasonRecovered, msg)
		st.Eventf(corev1.EventTypeNormal, ReasonRecovered, "Recover", "%s", msg)
	}
	ctrl.LoggerFrom(ctx).Info("Recovery carried out", "pool", pool.Name, "dryRun", rec.Spec.DryRun, "plan", summary)
	return nil
}

// plan makes the plan of this generation and writes it, before any object.
// It leaves Ready False Recovering when the plan may be carried out.
func (r *RecoveryReconciler) plan(ctx context.Context, st *status.Helper[*vpoolv1alpha1.Recovery], sources []backup.RecoverySource) error {
	rec := st.Object()
	sel := backup.RecoverySelection{VirtualMachines: rec.Spec.VirtualMachines, Appliances: rec.Spec.Appliances}
	if rec.Spec.Selector != nil {
		s, err := metav1.LabelSelectorAsSelector(rec.Spec.Selector)
		if err != nil {
			st.Set(vpoolv1alpha1.ConditionReady, metav1.ConditionFalse, vpoolv1alpha1.ReasonInvalidSpec, "spec.selector: "+err.Error())
			return reconcile.TerminalError(err)
		}
		sel.Selector = s
	}
	have, err := r.existing(ctx, rec)
	if err != nil {
		return err
	}
	mode := rec.Spec.Conflicts
	if mode == "" {
		mode = vpoolv1alpha1.ConflictsFail
	}
	p := backup.PlanRecovery(sources, sel, have, mode)
	if rec.Spec.DryRun {
		p.ForTestFailover()
	}
	rec.Status.Plan, rec.Status.PlanGeneration, rec.Status.Results = p.Items, rec.Generation, nil
	switch {
	case len(p.Items) == 0:
		msg := fmt.Sprintf("no VM of the %d sources matches spec.virtualMachines, spec.appliances or spec.selector", len(sources))
		st.Set(vpoolv1alpha1.ConditionReady, metav1.ConditionFalse, ReasonNothingSelected, msg)
		return reconcile.TerminalError(errors.New(msg))
	case p.Blocked(mode):
		msg := fmt.Sprintf("%d VMs conflict with the pool's (see status.plan); with conflicts Fail nothing was written: "+
			"choose Skip or PreferNewer, or remove the conflicting VMs", p.Conflicts)
		st.Set(vpoolv1alpha1.ConditionReady, metav1.ConditionFalse, ReasonRecoveryConflicts, msg)
		st.Eventf(corev1.EventTypeWarning, ReasonRecoveryConflicts, "Plan", "%s", msg)
		return reconcile.TerminalError(errors.New(msg))
	}
	st.Set(vpoolv1alpha1.ConditionReady, metav1.ConditionFalse, ReasonRecovering, "plan written (status.plan): "+planSummary(p.Items))
	setRecoveryProgress(rec)
	// The plan is recorded before any object is written.
	return st.Write(ctx)
}

// openSources opens every backup the sources name. A problem is a reason
// and a message for Ready; only API errors are errors.
func (r *RecoveryReconciler) openSources(ctx context.Context, rec *vpoolv1alpha1.Recovery) (
	out []backup.RecoverySource, reason, msg string, err error) {
	var pbs []*vpoolv1alpha1.PoolBackup
	var all *vpoolv1alpha1.PoolBackupList
	for i, s := range rec.Spec.Sources {
		if s.BackupName != "" {
			pb := &vpoolv1alpha1.PoolBackup{}
			if err := r.Get(ctx, types.NamespacedName{Namespace: rec.Namespace, Name: s.BackupName}, pb); err != nil {
				if apierrors.IsNotFound(err) {
					return nil, ReasonSourceNotFound, fmt.Sprintf("spec.sources[%d]: PoolBackup %q not found", i, s.BackupName), nil
				}
				return nil, "", "", err
			}
			if pb.Status.Phase != vpoolv1alpha1.BackupCompleted {
				return nil, ReasonSourceNotCompleted, fmt.Sprintf("spec.sources[%d]: PoolBackup %q is %s, not Completed", i, s.BackupName,
					orUnknown(string(pb.Status.Phase))), nil
			}
			pbs = append(pbs, pb)
			continue
		}
		if all == nil {
			all = &vpoolv1alpha1.PoolBackupList{}
			if err := r.List(ctx, all, client.InNamespace(rec.Namespace)); err != nil {
				return nil, "", "", err
			}
		}
		n := len(pbs)
		for j := range all.Items {
			pb := &all.Items[j]
			if sourceNames(s, pb) && pb.Status.Phase == vpoolv1alpha1.BackupCompleted && pb.Status.CompletedAt != nil {
				pbs = append(pbs, pb)
			}
		}
		if len(pbs) == n {
			return nil, ReasonNoBackupsFound, fmt.Sprintf("spec.sources[%d]: no Completed PoolBackup of pool %s found through BackupLocation %s (yet: the location syncs on its interval)",
				i, s.Pool, s.Location), nil
		}
	}
	seen := map[string]bool{}
	for _, pb := range pbs {
		if seen[pb.Name] {
			continue
		}
		seen[pb.Name] = true
		src, reason, msg, err := r.openSource(ctx, pb)
		if err != nil || reason != "" {
			return nil, reason, msg, err
		}
		out = append(out, src)
	}
	return out, "", "", nil
}

// openSource reads and opens one Completed PoolBackup.
func (r *RecoveryReconciler) openSource(ctx context.Context, pb *vpoolv1alpha1.PoolBackup) (backup.RecoverySource, string, string, error) {
	return openPoolBackup(ctx, r.Client, r.APIReader, r.Store, pb)
}

// openPoolBackup reads a Completed PoolBackup's data from store (nil: the
// store its spec.storage names), checks it and opens it with its key. A
// problem with the key, the data or the dump is a reason and a message
// (ReasonKeyUnavailable, ReasonSourceUnreadable); only API and transport
// errors are errors.
func openPoolBackup(ctx context.Context, c client.Client, reader client.Reader, store backup.Store,
	pb *vpoolv1alpha1.PoolBackup) (backup.RecoverySource, string, string, error) {
	keys, err := backupKey(ctx, reader, pb.Namespace, pb.Spec.Encryption.KeySecretRef.Name)
	if err != nil {
		if apierrors.IsNotFound(err) || errors.Is(err, backup.ErrKeyTooShort) {
			return backup.RecoverySource{}, ReasonKeyUnavailable, "PoolBackup " + pb.Name + ": " + err.Error(), nil
		}
		return backup.RecoverySource{}, "", "", err
	}
	if store == nil {
		store = backupStore(c, reader, pb)
	}
	data, err := store.Get(ctx, pb)
	if err != nil {
		if errors.Is(err, backup.ErrChecksum) || errors.Is(err, backup.ErrMissingChunk) || errors.Is(err, backup.ErrStorageCredentials) {
			return backup.RecoverySource{}, ReasonSourceUnreadable, "PoolBackup " + pb.Name + ": " + err.Error() + "; nothing was written", nil
		}
		return backup.RecoverySource{}, "", "", err
	}
	d, err := backup.OpenBackup(pb, data, keys)
	if err != nil {
		return backup.RecoverySource{}, ReasonSourceUnreadable, err.Error() + "; nothing was written", nil
	}
	var at time.Time
	if pb.Status.CompletedAt != nil {
		at = pb.Status.CompletedAt.Time
	}
	return backup.RecoverySource{Backup: pb.Name, CompletedAt: at, Dump: d}, "", "", nil
}

// existing is what the recovery pool's namespace holds, from the API server.
func (r *RecoveryReconciler) existing(ctx context.Context, rec *vpoolv1alpha1.Recovery) (backup.RecoveryExisting, error) {
	vms := &vpoolv1alpha1.VirtualMachineList{}
	vdis := &vpoolv1alpha1.VirtualDiskList{}
	srs := &vpoolv1alpha1.StorageRepositoryList{}
	apps := &vpoolv1alpha1.VirtualApplianceList{}
	for _, l := range []client.ObjectList{vms, vdis, srs, apps} {
		if err := r.APIReader.List(ctx, l, client.InNamespace(rec.Namespace)); err != nil {
			return backup.RecoveryExisting{}, fmt.Errorf("listing %T in %s: %w", l, rec.Namespace, err)
		}
	}
	have := backup.RecoveryExisting{VirtualDisks: map[string]bool{}, StorageRepos: map[string]bool{}, Appliances: map[string]bool{}}
	for i := range apps.Items {
		have.Appliances[apps.Items[i].Name] = true
	}
	for i := range vms.Items {
		vm := &vms.Items[i]
		since := vm.CreationTimestamp.Time
		if t, err := time.Parse(time.RFC3339, vm.Annotations[vpoolv1alpha1.AnnotationInformationFrom]); err == nil {
			since = t
		}
		have.VMs = append(have.VMs, backup.ExistingVM{Name: vm.Name, UUID: vm.Status.UUID, PowerState: vm.Status.PowerState,
			Since: since, Ours: vm.Labels[vpoolv1alpha1.LabelRecovery] == rec.Name})
	}
	for i := range vdis.Items {
		have.VirtualDisks[vdis.Items[i].Name] = true
	}
	for i := range srs.Items {
		have.StorageRepos[srs.Items[i].Name] = true
	}
	return have, nil
}

// carryOut creates the work's objects kind by kind and replaces its VMs. It
// returns, by "Kind/name", why an object was not recovered: a name taken
// since the plan by an object this Recovery did not create, a VM to replace
// that is no longer Halted. API errors are errors.
func (r *RecoveryReconciler) carryOut(ctx context.Context, rec *vpoolv1alpha1.Recovery, t backup.RecoveryTarget,
	w *backup.RecoveryWork) (map[string]string, error) {
	var mu sync.Mutex
	failed := map[string]string{}
	fail := func(kind, name, msg string) {
		mu.Lock()
		failed[kind+"/"+name] = msg
		mu.Unlock()
	}
	create := func(kind string) func(context.Context, client.Object) error {
		return func(ctx context.Context, obj client.Object) error {
			err := r.Create(ctx, obj)
			switch {
			case err == nil:
				return nil
			case apierrors.IsInvalid(err) || apierrors.IsBadRequest(err):
				// The backup's object is not valid here (an older or newer
				// schema, a hand-edited dump): retrying cannot help.
				fail(kind, obj.GetName(), "the API server refuses it: "+err.Error())
				return nil
			case !apierrors.IsAlreadyExists(err):
				return fmt.Errorf("recovering %s %s: %w", kind, obj.GetName(), err)
			}
			cur := obj.DeepCopyObject().(client.Object)
			if err := r.APIReader.Get(ctx, client.ObjectKeyFromObject(obj), cur); err != nil {
				return err
			}
			if cur.GetLabels()[vpoolv1alpha1.LabelRecovery] != rec.Name {
				fail(kind, obj.GetName(), fmt.Sprintf("a %s of that name was created in the namespace after the plan; it was left as it is", kind))
			}
			return nil
		}
	}
	if err := inParallel(ctx, asObjects(w.StorageRepositories), create(backup.KindStorageRepository)); err != nil {
		return nil, err
	}
	if err := inParallel(ctx, asObjects(w.VirtualDisks), create(backup.KindVirtualDisk)); err != nil {
		return nil, err
	}
	if err := inParallel(ctx, asObjects(w.VirtualAppliances), create(backup.KindVirtualAppliance)); err != nil {
		return nil, err
	}
	createVM := create(backup.KindVirtualMachine)
	now := r.Clock.Now()
	if err := inParallel(ctx, w.VirtualMachines, func(ctx context.Context, vm *vpoolv1alpha1.VirtualMachine) error {
		if err := createVM(ctx, vm); err != nil {
			return err
		}
		if s, ok := w.VMStatuses[vm.Name]; ok && failed[backup.KindVirtualMachine+"/"+vm.Name] == "" {
			return writeRestoredVMStatus(ctx, r.Client, r.APIReader, rec.Namespace, vm.Name, nil, s, now)
		}
		return nil
	}); err != nil {
		return nil, err
	}
	names := make([]string, 0, len(w.Replacements))
	for name := range w.Replacements {
		names = append(names, name)
	}
	slices.Sort(names)
	if err := inParallel(ctx, names, func(ctx context.Context, name string) error {
		msg, err := r.replace(ctx, rec, t, name, w.Replacements[name])
		if msg != "" {
			fail(backup.KindVirtualMachine, name, msg)
		}
		return err
	}); err != nil {
		return nil, err
	}
	return failed, nil
}

// replace updates VM name with newer information (PreferNewer), only while
// it is Halted and still the VM of that uuid; a VM this Recovery replaced
// before a crash is left as it is. The update carries the resourceVersion
// read: a VM started meanwhile is read again and judged anew.
func (r *RecoveryReconciler) replace(ctx context.Context, rec *vpoolv1alpha1.Recovery, t backup.RecoveryTarget,
	name string, repl backup.VMReplacement) (string, error) {
	for range 5 {
		vm := &vpoolv1alpha1.VirtualMachine{}
		if err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: rec.Namespace, Name: name}, vm); err != nil {
			if apierrors.IsNotFound(err) {
				return fmt.Sprintf("VM %s to replace is gone", name), nil
			}
			return "", err
		}
		switch {
		case vm.Labels[vpoolv1alpha1.LabelRecovery] == rec.Name &&
			vm.Annotations[vpoolv1alpha1.AnnotationInformationFrom] == repl.CompletedAt.UTC().Format(time.RFC3339):
			return "", nil // replaced before
		case vm.Status.UUID != repl.Record.Status.UUID:
			return fmt.Sprintf("VM %s is no longer the VM of uuid %s", name, repl.Record.Status.UUID), nil
		case vm.Status.PowerState != vpoolv1alpha1.PowerHalted:
			return fmt.Sprintf("VM %s is %s since the plan: only a Halted VM is replaced", name, orUnknown(string(vm.Status.PowerState))), nil
		}
		t.Replace(vm, repl)
		err := r.Update(ctx, vm)
		if apierrors.IsConflict(err) {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("replacing VM %s: %w", name, err)
		}
		return "", nil
	}
	return "", fmt.Errorf("replacing VM %s: it kept changing", name)
}

// blockedPlan: a plan that is not carried out: it has conflicts (with
// conflicts Fail), or nothing in it.
func blockedPlan(items []vpoolv1alpha1.RecoveryItem) bool {
	return len(items) == 0 || slices.ContainsFunc(items, func(it vpoolv1alpha1.RecoveryItem) bool {
		return it.Action == vpoolv1alpha1.ActionConflict
	})
}

// recoveryResults are the plan's items as carried out: done, or failed with
// why. They name each object by kind, name and action only (the plan has
// the rest), so that both lists of a recovery of thousands of VMs fit in
// one object.
func recoveryResults(plan []vpoolv1alpha1.RecoveryItem, failed map[string]string) []vpoolv1alpha1.RecoveryItem {
	out := make([]vpoolv1alpha1.RecoveryItem, 0, len(plan))
	for _, it := range plan {
		it = vpoolv1alpha1.RecoveryItem{Kind: it.Kind, Name: it.Name, Action: it.Action}
		if msg, bad := failed[it.Kind+"/"+it.Name]; bad {
			it.Message = msg
		} else {
			it.Done = true
		}
		out = append(out, it)
	}
	return out
}

// planSummary counts the plan's items by action and kind.
func planSummary(items []vpoolv1alpha1.RecoveryItem) string {
	counts := map[string]int{}
	var keys []string
	for _, it := range items {
		k := string(it.Action) + " " + it.Kind
		if counts[k] == 0 {
			keys = append(keys, k)
		}
		counts[k]++
	}
	slices.Sort(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s: %d", k, counts[k]))
	}
	if len(parts) == 0 {
		return "nothing"
	}
	return strings.Join(parts, ", ")
}

func firstFailures(failed map[string]string) string {
	keys := make([]string, 0, len(failed))
	for k := range failed {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var parts []string
	for _, k := range keys[:min(len(keys), recoveryResultsMaxMessage)] {
		parts = append(parts, k+": "+failed[k])
	}
	return strings.Join(parts, "; ")
}

func asObjects[T client.Object](objs []T) []client.Object {
	out := make([]client.Object, len(objs))
	for i, o := range objs {
		out[i] = o
	}
	return out
}

// finishTest removes what a finished test failover created, says so, and
// lets the Recovery go.
func (r *RecoveryReconciler) finishTest(ctx context.Context, rec *vpoolv1alpha1.Recovery) error {
	if c := status.Find(rec, vpoolv1alpha1.ConditionReady); c == nil || c.Reason != ReasonDRTestCleanedUp {
		if err := r.cleanup(ctx, rec); err != nil {
			return err
		}
		st := status.New(r.Client, r.Recorder, rec)
		msg := "test failover finished: every object it created was removed"
		st.Set(vpoolv1alpha1.ConditionReady, metav1.ConditionTrue, ReasonDRTestCleanedUp, msg)
		setRecoveryProgress(rec)
		st.Eventf(corev1.EventTypeNormal, ReasonDRTestCleanedUp, "Cleanup", "%s", msg)
		if err := st.Patch(ctx, nil); err != nil {
			return err
		}
	}
	if controllerutil.ContainsFinalizer(rec, vpoolv1alpha1.FinalizerRecoveryCleanup) {
		return r.removeFinalizer(ctx, rec)
	}
	return nil
}

// cleanup deletes the objects a test failover created: those labelled with
// the Recovery and owned by it (VMs first, then vApps, VDIs and SRs).
func (r *RecoveryReconciler) cleanup(ctx context.Context, rec *vpoolv1alpha1.Recovery) error {
	sel := client.MatchingLabelsSelector{Selector: labels.SelectorFromSet(labels.Set{vpoolv1alpha1.LabelRecovery: rec.Name})}
	for _, l := range []client.ObjectList{&vpoolv1alpha1.VirtualMachineList{}, &vpoolv1alpha1.VirtualApplianceList{},
		&vpoolv1alpha1.VirtualDiskList{}, &vpoolv1alpha1.StorageRepositoryList{}} {
		if err := r.APIReader.List(ctx, l, client.InNamespace(rec.Namespace), sel); err != nil {
			return err
		}
		if err := meta.EachListItem(l, func(o runtime.Object) error {
			obj := o.(client.Object)
			if !slices.ContainsFunc(obj.GetOwnerReferences(), func(ref metav1.OwnerReference) bool { return ref.UID == rec.UID }) {
				return nil // replaced or reused, not created by the test
			}
			return client.IgnoreNotFound(r.Delete(ctx, obj))
		}); err != nil {
			return fmt.Errorf("cleaning up the test failover %s: %w", rec.Name, err)
		}
	}
	return nil
}

func (r *RecoveryReconciler) removeFinalizer(ctx context.Context, rec *vpoolv1alpha1.Recovery) error {
	patch := client.MergeFromWithOptions(rec.DeepCopy(), client.MergeFromWithOptimisticLock{})
	controllerutil.RemoveFinalizer(rec, vpoolv1alpha1.FinalizerRecoveryCleanup)
	return client.IgnoreNotFound(r.Patch(ctx, rec, patch))
}
