package controllers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
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
	"github.com/poolkeeper/poolkeeper/internal/election"
	"github.com/poolkeeper/poolkeeper/internal/fencing"
	"github.com/poolkeeper/poolkeeper/internal/liveness"
	"github.com/poolkeeper/poolkeeper/internal/metrics"
	"github.com/poolkeeper/poolkeeper/internal/placement"
)

// +kubebuilder:rbac:groups=vpool.poolkeeper.io,resources=pools,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=vpool.poolkeeper.io,resources=pools/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=vpool.poolkeeper.io,resources=pools/finalizers,verbs=update
// +kubebuilder:rbac:groups=vpool.poolkeeper.io,resources=poolbackups,verbs=get;list;watch;create;delete

// Reasons of Pool conditions.
const (
	ReasonMembersOnEpoch     = "MembersOnEpoch"
	ReasonMembersBehind      = "MembersBehind"
	ReasonDefaultSRNotSet    = "NotSet"
	ReasonDefaultSRValid     = "Valid"
	ReasonDefaultSRNotFound  = "NotFound"
	ReasonDefaultSRNotUsable = "NotReachableFromMaster"
	ReasonHADisabled         = "HADisabled"
	ReasonOvercommitted      = "Overcommitted"
	ReasonCapacitySufficient = "CapacitySufficient"
	// ReasonHeartbeatTimeoutChanged is the event of a change of
	// status.effectiveHeartbeatTimeout.
	ReasonHeartbeatTimeoutChanged = "HeartbeatTimeoutChanged"
)

// PoolReconciler keeps a Pool's status: host counts, the heartbeat timeout in
// force, the storm guard, the master and its epoch, and whether members follow it.
type PoolReconciler struct {
	client.Client
	// APIReader reads backups' keys and data and, for a restore, what the
	// namespace holds, from the API server.
	APIReader client.Reader
	Recorder  events.EventRecorder
	Clock     clock.PassiveClock
	Tracker   *liveness.Tracker

	// masterChange is the reason of the master change of the running
	// reconcile (the Pool controller runs one worker).
	masterChange string
}

// SetupWithManager registers the reconciler; a Host or SR change wakes its Pool.
func (r *PoolReconciler) SetupWithManager(mgr ctrl.Manager, opts Options) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&vpoolv1alpha1.Pool{}).
		Watches(&vpoolv1alpha1.Host{}, handler.EnqueueRequestsFromMapFunc(poolOf)).
		Watches(&vpoolv1alpha1.StorageRepository{}, handler.EnqueueRequestsFromMapFunc(poolOf)).
		Watches(&vpoolv1alpha1.VirtualMachine{}, handler.EnqueueRequestsFromMapFunc(poolOf),
			builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&vpoolv1alpha1.PoolBackup{}, handler.EnqueueRequestsFromMapFunc(r.poolsOfBackup)).
		// One worker: pools are few, and masterChange is per reconcile.
		WithOptions(controller.Options{MaxConcurrentReconciles: 1}).
		Complete(conflictsRequeued(r))
}

// poolOf maps any pool-scoped object to its Pool.
func poolOf(_ context.Context, obj client.Object) []reconcile.Request {
	var name string
	switch o := obj.(type) {
	case *vpoolv1alpha1.Host:
		name = o.Spec.PoolRef.Name
	case *vpoolv1alpha1.StorageRepository:
		name = o.Spec.PoolRef.Name
	case *vpoolv1alpha1.VirtualDisk:
		name = o.Spec.PoolRef.Name
	case *vpoolv1alpha1.VirtualMachine:
		name = o.Spec.PoolRef.Name
	case *vpoolv1alpha1.PoolBackup:
		name = o.Spec.PoolRef.Name
	}
	if name == "" {
		return nil
	}
	return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: obj.GetNamespace(), Name: name}}}
}

// poolsOfBackup wakes the pool a backup belongs to (retention, a restore
// waiting for it) and the pools restoring from it.
func (r *PoolReconciler) poolsOfBackup(ctx context.Context, obj client.Object) []reconcile.Request {
	reqs := poolOf(ctx, obj)
	pools := &vpoolv1alpha1.PoolList{}
	if err := r.List(ctx, pools, client.InNamespace(obj.GetNamespace())); err != nil {
		return reqs
	}
	for _, p := range pools.Items {
		if p.Spec.RestoreFrom != nil && p.Spec.RestoreFrom.BackupName == obj.GetName() {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&p)})
		}
	}
	return reqs
}

// Reconcile brings one Pool's status up to date; a deleted Pool waits for
// its hosts to be forgotten, then deletes its objects (see pool_delete.go).
func (r *PoolReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	pool := &vpoolv1alpha1.Pool{}
	if err := r.Get(ctx, req.NamespacedName, pool); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	ctx = ctrl.LoggerInto(ctx, ctrl.LoggerFrom(ctx).WithValues("Pool", klog.KObj(pool)))
	if done, err := r.reconcileDRTestCleanup(ctx, pool); done || err != nil {
		return ctrl.Result{}, err
	}
	if patched, err := r.ensureMembersFinalizer(ctx, pool); patched || err != nil {
		return ctrl.Result{}, err
	}
	before := pool.DeepCopy()
	r.masterChange = ""
	requeue, err := r.reconcile(ctx, pool)
	if err == nil {
		pool.Status.ObservedGeneration = pool.Generation
	}
	if !equality.Semantic.DeepEqual(before.Status, pool.Status) {
		if perr := r.Status().Patch(ctx, pool, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{})); perr != nil {
			return ctrl.Result{}, errors.Join(err, fmt.Errorf("patching status of pool %s: %w", klog.KObj(pool), perr))
		}
		if pool.Status.Epoch != before.Status.Epoch && pool.Status.Master != before.Status.Master {
			metrics.MasterChanges.WithLabelValues(r.masterChange).Inc()
		}
		r.announce(before, pool)
	}
	if err == nil {
		err = r.reconcileDelete(ctx, pool)
	}
	return ctrl.Result{RequeueAfter: requeue}, err
}

// announce emits, once the status that says so is written, the events of
// what changed in it: the heartbeat timeout in force, a deletion that waits.
func (r *PoolReconciler) announce(before, pool *vpoolv1alpha1.Pool) {
	if old, now := before.Status.EffectiveHeartbeatTimeout, pool.Status.EffectiveHeartbeatTimeout; old != nil && now != nil &&
		old.Duration != now.Duration {
		kind, msg := timeoutChange(pool, old.Duration, now.Duration)
		r.Recorder.Eventf(pool, nil, kind, ReasonHeartbeatTimeoutChanged, "ChangeHeartbeatTimeout", "%s", msg)
	}
	was := meta.FindStatusCondition(before.Status.Conditions, vpoolv1alpha1.ConditionReady)
	if c := meta.FindStatusCondition(pool.Status.Conditions, vpoolv1alpha1.ConditionReady); c != nil &&
		c.Reason == ReasonDeletionWaiting && (was == nil || was.Reason != ReasonDeletionWaiting) {
		r.Recorder.Eventf(pool, nil, corev1.EventTypeWarning, ReasonDeletionWaiting, "Delete", "%s", c.Message)
	}
}

// reconcileDRTestCleanup keeps a finalizer on a DR-test Pool and, when the
// Pool is deleted or the test is marked finished, removes what it created.
func (r *PoolReconciler) reconcileDRTestCleanup(ctx context.Context, pool *vpoolv1alpha1.Pool) (bool, error) {
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
		patch := client.MergeFrom(pool.DeepCopy())
		controllerutil.RemoveFinalizer(pool, vpoolv1alpha1.FinalizerDRTestCleanup)
		return true, r.Patch(ctx, pool, patch)
	case drTest && !finished && !controllerutil.ContainsFinalizer(pool, vpoolv1alpha1.FinalizerDRTestCleanup):
		patch := client.MergeFrom(pool.DeepCopy())
		controllerutil.AddFinalizer(pool, vpoolv1alpha1.FinalizerDRTestCleanup)
		return true, r.Patch(ctx, pool, patch)
	case drTest && finished && (pool.Status.Restore == nil || !pool.Status.Restore.CleanedUp):
		if err := r.cleanupDRTest(ctx, pool); err != nil {
			return true, err
		}
		before := pool.DeepCopy()
		if pool.Status.Restore == nil {
			pool.Status.Restore = &vpoolv1alpha1.RestoreStatus{Backup: pool.Spec.RestoreFrom.BackupName}
		}
		pool.Status.Restore.CleanedUp = true
		meta.SetStatusCondition(&pool.Status.Conditions, metav1.Condition{Type: vpoolv1alpha1.PoolRestored,
			Status: metav1.ConditionTrue, Reason: ReasonDRTestCleanedUp, ObservedGeneration: pool.Generation,
			Message: "DR test finished: every object it created was removed"})
		if err := r.Status().Patch(ctx, pool, client.MergeFrom(before)); err != nil {
			return true, err
		}
		if controllerutil.ContainsFinalizer(pool, vpoolv1alpha1.FinalizerDRTestCleanup) {
			patch := client.MergeFrom(pool.DeepCopy())
			controllerutil.RemoveFinalizer(pool, vpoolv1alpha1.FinalizerDRTestCleanup)
			return true, r.Patch(ctx, pool, patch)
		}
		return true, nil
	case drTest && finished:
		return true, nil // cleaned up: the test is over
	}
	return false, nil
}

func (r *PoolReconciler) reconcile(ctx context.Context, pool *vpoolv1alpha1.Pool) (time.Duration, error) {
	set := func(t string, st metav1.ConditionStatus, reason, msg string) {
		meta.SetStatusCondition(&pool.Status.Conditions, metav1.Condition{Type: t, Status: st, Reason: reason, Message: msg,
			ObservedGeneration: pool.Generation})
	}
	if done, err := r.reconcileRestore(ctx, pool, set); err != nil || !done {
		if err == nil {
			set(vpoolv1alpha1.ConditionReady, metav1.ConditionFalse, ReasonRestoring, "waiting for the restore of spec.restoreFrom")
		}
		return 0, err
	}
	requeue, err := r.reconcileSchedule(ctx, pool, set)
	if err != nil {
		return 0, err
	}
	hosts := &vpoolv1alpha1.HostList{}
	if err := r.List(ctx, hosts, client.InNamespace(pool.Namespace), client.MatchingFields{IndexPoolRef: pool.Name}); err != nil {
		return 0, fmt.Errorf("listing hosts of pool %s: %w", pool.Name, err)
	}
	sort.Slice(hosts.Items, func(i, j int) bool { return hosts.Items[i].Name < hosts.Items[j].Name })
	settings := pool.Effective()
	tally := tallyHosts(hosts.Items, r.Tracker, r.Clock.Now(), settings.HeartbeatTimeout)
	pool.Status.Hosts = vpoolv1alpha1.HostCounts{
		Total: int32(tally.Total - tally.Forgotten), Live: int32(tally.Live),
		Unreachable: int32(tally.Unreachable + tally.Fencing), Fenced: int32(tally.Fenced),
	}
	pool.Status.EffectiveHeartbeatTimeout = &metav1.Duration{Duration: settings.HeartbeatTimeout}
	if settings.HA.Enabled {
		c := fencing.StormGuard(tally, settings.Fencing.MaxUnhealthyPercent)
		set(vpoolv1alpha1.PoolFencingAllowed, boolStatus(c.Allowed), c.Reason, c.Message)
	} else {
		set(vpoolv1alpha1.PoolFencingAllowed, metav1.ConditionTrue, ReasonHADisabled,
			"HA is off: a host is fenced only when a person forgets it (spec.state: Forgotten)")
	}

	d := r.reconcileMaster(ctx, pool, &settings, hosts.Items)
	r.masterConditions(pool, &settings, hosts.Items, d, set)
	if err := r.defaultSRCondition(ctx, pool, settings.DefaultStorageRepository, set); err != nil {
		return 0, err
	}
	if err := r.overcommitted(ctx, pool, int(settings.HA.HostFailuresToTolerate), hosts.Items, set); err != nil {
		return 0, err
	}
	ma := meta.FindStatusCondition(pool.Status.Conditions, vpoolv1alpha1.PoolMasterAvailable)
	set(vpoolv1alpha1.ConditionReady, ma.Status, ma.Reason, ma.Message)
	deletionReady(pool, hosts.Items, set)
	return requeue, nil
}

// reconcileMaster records the master the election decides; a change bumps
// the epoch in the same write, so there is at most one master per epoch.
func (r *PoolReconciler) reconcileMaster(ctx context.Context, pool *vpoolv1alpha1.Pool, settings *vpoolv1alpha1.EffectiveSettings,
	hosts []vpoolv1alpha1.Host) election.Decision {
	in := election.Input{HAEnabled: settings.HA.Enabled, Current: pool.Status.Master, Requested: settings.Master,
		Epoch: pool.Status.Epoch}
	for i := range hosts {
		h := &hosts[i]
		in.Hosts = append(in.Hosts, election.Host{Name: h.Name, Phase: h.Status.Phase, Epoch: h.Status.MasterEpoch,
			Forgetting: !h.DeletionTimestamp.IsZero() || h.Spec.State == vpoolv1alpha1.HostForgotten})
	}
	d := election.Decide(in)
	if !d.Changed {
		return d
	}
	from := pool.Status.Master
	r.masterChange = d.Reason
	pool.Status.Master = d.Master
	pool.Status.Epoch++
	ctrl.LoggerFrom(ctx).Info("Master changed", "from", from, "to", d.Master, "epoch", pool.Status.Epoch, "reason", d.Reason)
	r.Recorder.Eventf(pool, nil, corev1.EventTypeNormal, d.Reason, "ChangeMaster", "%s (epoch %d)", d.Message, pool.Status.Epoch)
	return d
}

func (r *PoolReconciler) masterConditions(pool *vpoolv1alpha1.Pool, settings *vpoolv1alpha1.EffectiveSettings,
	hosts []vpoolv1alpha1.Host, d election.Decision,
	set func(string, metav1.ConditionStatus, string, string)) {
	masterLive := false
	var behind []string
	for i := range hosts {
		h := &hosts[i]
		if h.Name == pool.Status.Master && h.Status.Phase == vpoolv1alpha1.HostPhaseLive {
			masterLive = true
		}
		if h.Status.Phase == vpoolv1alpha1.HostPhaseLive && h.Status.MasterEpoch != pool.Status.Epoch {
			behind = append(behind, fmt.Sprintf("%s (epoch %d)", h.Name, h.Status.MasterEpoch))
		}
	}
	msg := d.Message
	if req := settings.Master; req != "" && !slices.ContainsFunc(hosts, func(h vpoolv1alpha1.Host) bool { return h.Name == req }) {
		msg += fmt.Sprintf("; %s: Host %q not found in this pool", settingField(pool.Spec.Master != "", "master"), req)
	}
	if masterLive {
		set(vpoolv1alpha1.PoolMasterAvailable, metav1.ConditionTrue, d.Reason, fmt.Sprintf("%s (epoch %d)", msg, pool.Status.Epoch))
	} else {
		set(vpoolv1alpha1.PoolMasterAvailable, metav1.ConditionFalse, d.Reason, msg)
	}
	if len(behind) == 0 {
		set(vpoolv1alpha1.PoolMembersRecovered, metav1.ConditionTrue, ReasonMembersOnEpoch,
			fmt.Sprintf("every Live host follows epoch %d", pool.Status.Epoch))
	} else {
		set(vpoolv1alpha1.PoolMembersRecovered, metav1.ConditionFalse, ReasonMembersBehind,
			fmt.Sprintf("not yet on epoch %d: %s", pool.Status.Epoch, truncateList(behind, 10)))
	}
}

func (r *PoolReconciler) defaultSRCondition(ctx context.Context, pool *vpoolv1alpha1.Pool, name string,
	set func(string, metav1.ConditionStatus, string, string)) error {
	field := settingField(pool.Spec.DefaultStorageRepository != "", "defaultStorageRepository")
	if name == "" {
		set(vpoolv1alpha1.PoolDefaultStorageRepositoryValid, metav1.ConditionFalse, ReasonDefaultSRNotSet,
			"spec.defaultStorageRepository is not set")
		return nil
	}
	sr := &vpoolv1alpha1.StorageRepository{}
	if err := r.Get(ctx, types.NamespacedName{Namespace: pool.Namespace, Name: name}, sr); err != nil {
		if !apierrors.IsNotFound(err) {
			return err
		}
		set(vpoolv1alpha1.PoolDefaultStorageRepositoryValid, metav1.ConditionFalse, ReasonDefaultSRNotFound,
			fmt.Sprintf("%s: StorageRepository %q not found", field, name))
		return nil
	}
	st, reason, msg := defaultSRVerdict(sr, pool.Name, pool.Status.Master)
	set(vpoolv1alpha1.PoolDefaultStorageRepositoryValid, st, reason, field+": "+msg)
	return nil
}

// defaultSRVerdict says whether the default SR sr is usable: from every
// host when shared, else from the master it is local to.
func defaultSRVerdict(sr *vpoolv1alpha1.StorageRepository, pool, master string) (metav1.ConditionStatus, string, string) {
	switch {
	case sr.Spec.PoolRef.Name != pool:
		return metav1.ConditionFalse, ReasonDefaultSRNotFound,
			fmt.Sprintf("StorageRepository %q belongs to pool %q", sr.Name, sr.Spec.PoolRef.Name)
	case sr.Spec.Shared:
		return metav1.ConditionTrue, ReasonDefaultSRValid, fmt.Sprintf("StorageRepository %q is shared: usable from every host", sr.Name)
	case master == "":
		return metav1.ConditionFalse, ReasonDefaultSRNotUsable,
			fmt.Sprintf("%q is local to host %s and the pool has no master yet", sr.Name, sr.Spec.Host)
	case sr.Spec.Host != master:
		return metav1.ConditionFalse, ReasonDefaultSRNotUsable,
			fmt.Sprintf("%q is local to host %s, not to the master %s", sr.Name, sr.Spec.Host, master)
	}
	return metav1.ConditionTrue, ReasonDefaultSRValid, fmt.Sprintf("StorageRepository %q is local to the master %s", sr.Name, master)
}

// settingField names where a setting in force comes from, for a message.
func settingField(inSpec bool, name string) string {
	if inSpec {
		return "spec." + name
	}
	return "status.restoredSettings." + name
}

// overcommitted sets the Overcommitted condition: can the Live hosts run
// every Restart VM, and still after losing hostFailuresToTolerate of them?
func (r *PoolReconciler) overcommitted(ctx context.Context, pool *vpoolv1alpha1.Pool, tolerate int, hosts []vpoolv1alpha1.Host,
	set func(string, metav1.ConditionStatus, string, string)) error {
	vms := &vpoolv1alpha1.VirtualMachineList{}
	if err := r.List(ctx, vms, client.InNamespace(pool.Namespace), client.MatchingFields{IndexPoolRef: pool.Name},
		client.UnsafeDisableDeepCopy); err != nil {
		return fmt.Errorf("listing VMs of pool %s: %w", pool.Name, err)
	}
	var demand placement.Resources
	for i := range vms.Items {
		vm := &vms.Items[i]
		if vm.Spec.PowerState == vpoolv1alpha1.DesiredRunning && vm.Spec.HA.RestartPriority == vpoolv1alpha1.RestartAlways {
			demand = demand.Add(vmNeed(vm))
		}
	}
	var live []placement.Resources
	for i := range hosts {
		if hosts[i].Status.Phase == vpoolv1alpha1.HostPhaseLive {
			live = append(live, hostCapacity(&hosts[i]))
		}
	}
	over, msg := placement.Overcommitted(live, demand, tolerate)
	if over {
		set(vpoolv1alpha1.PoolOvercommitted, metav1.ConditionTrue, ReasonOvercommitted, msg)
	} else {
		set(vpoolv1alpha1.PoolOvercommitted, metav1.ConditionFalse, ReasonCapacitySufficient, msg)
	}
	return nil
}

// timeoutChange words a change of the heartbeat timeout in force: a shorter
// one is a Warning, since every agent must then renew more often.
func timeoutChange(pool *vpoolv1alpha1.Pool, from, to time.Duration) (eventType, msg string) {
	source := fmt.Sprintf("the default with spec.ha.enabled %t", pool.Effective().HA.Enabled)
	switch {
	case pool.Spec.HeartbeatTimeout != nil && pool.Spec.HeartbeatTimeout.Duration > 0:
		source = "spec.heartbeatTimeout"
	case pool.Status.RestoredSettings != nil && pool.Status.RestoredSettings.HeartbeatTimeout != nil:
		source = "status.restoredSettings.heartbeatTimeout"
	}
	if to > from {
		return corev1.EventTypeNormal, fmt.Sprintf("the heartbeat timeout in force went up from %s to %s (%s): "+
			"a host is Unreachable after %s without a heartbeat", from, to, source, to)
	}
	return corev1.EventTypeWarning, fmt.Sprintf("the heartbeat timeout in force went down from %s to %s (%s): every agent "+
		"must now renew its heartbeat at least every %s (a quarter of it); running agents adapt at their next renewal, "+
		"and a host silent for %s is Unreachable", from, to, source, liveness.MaxInterval(to), to)
}

func boolStatus(b bool) metav1.ConditionStatus {
	if b {
		return metav1.ConditionTrue
	}
	return metav1.ConditionFalse
}

// truncateList joins items, naming at most n of them.
func truncateList(items []string, n int) string {
	if len(items) <= n {
		return strings.Join(items, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(items[:n], ", "), len(items)-n)
}
