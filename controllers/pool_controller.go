package controllers

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
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
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/internal/backup"
	"github.com/poolkeeper/poolkeeper/internal/election"
	"github.com/poolkeeper/poolkeeper/internal/liveness"
	"github.com/poolkeeper/poolkeeper/internal/metrics"
	"github.com/poolkeeper/poolkeeper/internal/placement"
	"github.com/poolkeeper/poolkeeper/internal/status"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/source"
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
// force, the storm guard, the master and its epoch, and whether members follow
// it; and it deletes a deleted Pool's objects. The restore (RestoreReconciler)
// and the backup schedule (BackupScheduleReconciler) are reconcilers of their
// own; each writes only its part of the status (see pool_status.go).
type PoolReconciler struct {
	client.Client
	// APIReader reads, for a deleted Pool, what is left of it from the API server.
	APIReader client.Reader
	Recorder  events.EventRecorder
	Clock     clock.PassiveClock
	Tracker   *liveness.Tracker
	// GuardChanges wakes a Pool whose storm guard the Host reconciler saw
	// begin to hold or lift (HostReconciler.GuardChanged), which no object
	// change announces: a quiet host's silence reaching T/2 writes nothing.
	GuardChanges <-chan event.GenericEvent
}

// SetupWithManager registers the reconciler, and beside it the restore and
// backup schedule controllers; a Host or SR change wakes its Pool, and so
// does a change of its storm guard's verdict.
func (r *PoolReconciler) SetupWithManager(mgr ctrl.Manager, opts Options) error {
	restore := &RestoreReconciler{Client: r.Client, APIReader: r.APIReader, Recorder: r.Recorder, Clock: r.Clock, Store: opts.Store}
	if err := restore.SetupWithManager(mgr, opts); err != nil {
		return fmt.Errorf("setting up the restore controller: %w", err)
	}
	schedule := &BackupScheduleReconciler{Client: r.Client, APIReader: r.APIReader, Recorder: r.Recorder, Clock: r.Clock, Store: opts.Store}
	if err := schedule.SetupWithManager(mgr, opts); err != nil {
		return fmt.Errorf("setting up the backup schedule controller: %w", err)
	}
	b := ctrl.NewControllerManagedBy(mgr).
		For(&vpoolv1alpha1.Pool{})
	if r.GuardChanges != nil {
		b = b.WatchesRawSource(source.Channel(r.GuardChanges, &handler.EnqueueRequestForObject{}))
	}
	return b.
		Watches(&vpoolv1alpha1.Host{}, handler.EnqueueRequestsFromMapFunc(poolOf)).
		Watches(&vpoolv1alpha1.StorageRepository{}, handler.EnqueueRequestsFromMapFunc(poolOf)).
		Watches(&vpoolv1alpha1.VirtualMachine{}, handler.EnqueueRequestsFromMapFunc(poolOf),
			builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		WithOptions(controller.Options{MaxConcurrentReconciles: opts.MaxConcurrentReconciles}).
		Complete(conflictsRequeued(r))
}

// Reconcile brings one Pool's status up to date; a deleted Pool waits for
// its hosts to be forgotten, then deletes its objects (see pool_delete.go).
func (r *PoolReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	pool := &vpoolv1alpha1.Pool{}
	if err := r.Get(ctx, req.NamespacedName, pool); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	ctx = ctrl.LoggerInto(ctx, ctrl.LoggerFrom(ctx).WithValues("Pool", klog.KObj(pool)))
	if drTestHolds(pool) {
		return ctrl.Result{}, nil // the restore reconciler cleans up the DR test
	}
	if patched, err := r.ensureMembersFinalizer(ctx, pool); patched || err != nil {
		return ctrl.Result{}, err
	}
	st := status.New(r.Client, r.Recorder, pool).Owning(poolPart)
	d, err := r.reconcile(ctx, pool, st.Set)
	setPoolProgress(pool)
	r.announce(st, d)
	if err = st.Patch(ctx, err); err == nil {
		err = r.reconcileDelete(ctx, pool)
	}
	return ctrl.Result{}, err
}

// announce queues, for once the status that says so is written, the events
// of what changed in it: the master (decision d), the heartbeat timeout in
// force, a deletion that waits.
func (r *PoolReconciler) announce(st poolStatus, d election.Decision) {
	before, pool := st.Before(), st.Object()
	if d.Changed {
		e := status.Event{Type: corev1.EventTypeNormal, Reason: d.Reason, Action: "ChangeMaster",
			Note: fmt.Sprintf("%s (epoch %d)", d.Message, pool.Status.Epoch)}
		if pool.Status.Master != before.Status.Master {
			e.Observe = metrics.MasterChanges.WithLabelValues(d.Reason).Inc
		}
		st.Event(e)
	}
	if old, now := before.Status.EffectiveHeartbeatTimeout, pool.Status.EffectiveHeartbeatTimeout; old != nil && now != nil &&
		old.Duration != now.Duration {
		kind, msg := timeoutChange(pool, old.Duration, now.Duration)
		st.Eventf(kind, ReasonHeartbeatTimeoutChanged, "ChangeHeartbeatTimeout", "%s", msg)
	}
	was := st.Was(vpoolv1alpha1.ConditionReady)
	if c := st.Get(vpoolv1alpha1.ConditionReady); c != nil &&
		c.Reason == ReasonDeletionWaiting && (was == nil || was.Reason != ReasonDeletionWaiting) {
		st.Eventf(corev1.EventTypeWarning, ReasonDeletionWaiting, "Delete", "%s", c.Message)
	}
}

// reconcile decides the Pool reconciler's part of the status; it returns
// the election's decision, for announce.
func (r *PoolReconciler) reconcile(ctx context.Context, pool *vpoolv1alpha1.Pool, set setCondition) (election.Decision, error) {
	if restorePending(pool) {
		set(vpoolv1alpha1.ConditionReady, metav1.ConditionFalse, ReasonRestoring, "waiting for the restore of spec.restoreFrom")
		return election.Decision{}, nil
	}
	hosts := &vpoolv1alpha1.HostList{}
	if err := r.List(ctx, hosts, client.InNamespace(pool.Namespace), client.MatchingFields{IndexPoolRef: pool.Name}); err != nil {
		return election.Decision{}, fmt.Errorf("listing hosts of pool %s: %w", pool.Name, err)
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
		c := recountedGuard(r.Tracker.Recount(), pool, tally, settings, r.Clock.Now())
		set(vpoolv1alpha1.PoolFencingAllowed, status.Bool(c.Allowed), c.Reason, c.Message)
	} else {
		set(vpoolv1alpha1.PoolFencingAllowed, metav1.ConditionTrue, ReasonHADisabled,
			"HA is off: a host is fenced only when a person forgets it (spec.state: Forgotten)")
	}

	d := r.reconcileMaster(ctx, pool, &settings, hosts.Items)
	r.masterConditions(pool, &settings, hosts.Items, d, set)
	if err := r.defaultSRCondition(ctx, pool, settings.DefaultStorageRepository, set); err != nil {
		return d, err
	}
	if err := r.heartbeatSRCondition(ctx, pool, &settings, set); err != nil {
		return d, err
	}
	if err := r.overcommitted(ctx, pool, int(settings.HA.HostFailuresToTolerate), hosts.Items, set); err != nil {
		return d, err
	}
	ready := poolReadiness(pool.Status.Conditions)
	set(vpoolv1alpha1.ConditionReady, ready.Status, ready.Reason, ready.Message)
	deletionReady(pool, hosts.Items, set)
	return d, nil
}

// poolReadiness is the Ready a user means by a healthy pool: a master, and
// the pool able to recover from a host failure. A storm guard that holds
// (FencingAllowed False) or too little capacity (Overcommitted) is not Ready.
func poolReadiness(conds []metav1.Condition) *metav1.Condition {
	ready := meta.FindStatusCondition(conds, vpoolv1alpha1.PoolMasterAvailable)
	if ready.Status != metav1.ConditionTrue {
		return ready
	}
	if c := meta.FindStatusCondition(conds, vpoolv1alpha1.PoolFencingAllowed); c != nil && c.Status == metav1.ConditionFalse {
		return c
	}
	if c := meta.FindStatusCondition(conds, vpoolv1alpha1.PoolOvercommitted); c != nil && c.Status == metav1.ConditionTrue {
		return &metav1.Condition{Status: metav1.ConditionFalse, Reason: c.Reason, Message: c.Message}
	}
	return ready
}

// setPoolProgress says, for kstatus, what the restore and the backup
// schedule reconcilers decided: a restore under way is Reconciling; a Strict
// restore stopped on a conflict, or an invalid schedule, is Stalled. The Pool
// reconciler alone writes both conditions, so that they have one writer.
func setPoolProgress(pool *vpoolv1alpha1.Pool) {
	restored := meta.FindStatusCondition(pool.Status.Conditions, vpoolv1alpha1.PoolRestored)
	sched := meta.FindStatusCondition(pool.Status.Conditions, vpoolv1alpha1.PoolBackupScheduled)
	var p status.Progress
	switch {
	case restorePending(pool) && restored != nil && restored.Reason == backup.ReasonRestoreConflict:
		p = status.ProgressOf(restored, false, true)
	case restorePending(pool):
		p = status.ProgressOf(restored, true, false)
	case sched != nil && sched.Status == metav1.ConditionFalse && sched.Reason == ReasonScheduleInvalid:
		p = status.ProgressOf(sched, false, true)
	}
	status.SetProgress(pool, p)
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
	pool.Status.Master = d.Master
	pool.Status.Epoch++
	ctrl.LoggerFrom(ctx).Info("Master changed", "from", from, "to", d.Master, "epoch", pool.Status.Epoch, "reason", d.Reason)
	return d
}

func (r *PoolReconciler) masterConditions(pool *vpoolv1alpha1.Pool, settings *vpoolv1alpha1.EffectiveSettings,
	hosts []vpoolv1alpha1.Host, d election.Decision,
	set setCondition) {
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
	set setCondition) error {
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
	set setCondition) error {
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
