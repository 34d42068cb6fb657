package controllers

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"

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

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/internal/placement"
	"github.com/poolkeeper/poolkeeper/internal/status"
)

// +kubebuilder:rbac:groups=vpool.poolkeeper.io,resources=virtualappliances,verbs=get;list;watch
// +kubebuilder:rbac:groups=vpool.poolkeeper.io,resources=virtualappliances/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=vpool.poolkeeper.io,resources=virtualmachines;pools,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reasons of a VirtualAppliance's Ready condition.
const (
	// ReasonApplianceRunning: every member whose spec.powerState is Running runs.
	ReasonApplianceRunning = "MembersRunning"
	// ReasonApplianceNoMembers: no VM of the pool names the vApp.
	ReasonApplianceNoMembers = "NoMembers"
	// ReasonApplianceStarting: members that should run do not yet, and the
	// operator is getting them there (placing them, starting them, or
	// waiting out the vApp's start order and startDelay).
	ReasonApplianceStarting = "MembersStarting"
	// ReasonApplianceMembersWaiting: members that should run do not, each
	// for a reason of its own (no capacity, a disk locked elsewhere, no
	// Live host...): see those members' Scheduled conditions.
	ReasonApplianceMembersWaiting = "MembersNotRunning"
	// ReasonApplianceMembersInOtherPool: VMs of another pool name the vApp
	// in spec.applianceRef; they are no members and do not start.
	ReasonApplianceMembersInOtherPool = "MembersInOtherPool"
)

// applianceWorking are the vApp Ready reasons of work under way;
// applianceStalled those only a person can clear.
var (
	applianceWorking = map[string]bool{ReasonApplianceStarting: true}
	applianceStalled = map[string]bool{vpoolv1alpha1.ReasonPoolNotFound: true, ReasonApplianceMembersInOtherPool: true}
)

// memberStarting are the VM Ready reasons of a member on its way to run:
// being started, or waiting for the VMs it boots after.
var memberStarting = map[string]bool{ReasonStarting: true, ReasonVMReset: true, placement.ReasonWaitingForOrder: true,
	placement.ReasonWaitingPriority: true, placement.ReasonWaitingForAppliance: true}

// VirtualApplianceReconciler keeps a vApp's status: its members (the VMs of
// its pool that name it in spec.applianceRef) with when each was seen
// running, and its Ready condition. Placement reads the members' running
// times to start each start-order group spec.startDelay after the one
// before it runs.
type VirtualApplianceReconciler struct {
	client.Client
	Clock    clock.PassiveClock
	Recorder events.EventRecorder
}

// SetupWithManager registers the reconciler. A vApp wakes when a VM that
// names it (before or after an update) changes in what its status shows, and
// when its pool appears or goes.
func (r *VirtualApplianceReconciler) SetupWithManager(mgr ctrl.Manager, opts Options) error {
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &vpoolv1alpha1.VirtualMachine{}, IndexApplianceRef,
		func(o client.Object) []string {
			if name := applianceOf(o.(*vpoolv1alpha1.VirtualMachine)); name != "" {
				return []string{name}
			}
			return nil
		}); err != nil {
		return fmt.Errorf("indexing VMs by appliance: %w", err)
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&vpoolv1alpha1.VirtualAppliance{}).
		Watches(&vpoolv1alpha1.VirtualMachine{}, handler.EnqueueRequestsFromMapFunc(appliancesOfVM),
			builder.WithPredicates(memberChanged())).
		Watches(&vpoolv1alpha1.Pool{}, membersOfPool(r.Client, func() client.ObjectList { return &vpoolv1alpha1.VirtualApplianceList{} })).
		WithOptions(controller.Options{MaxConcurrentReconciles: opts.MaxConcurrentReconciles}).
		Complete(conflictsRequeued(r))
}

// Reconcile brings one VirtualAppliance's status up to date.
func (r *VirtualApplianceReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	app := &vpoolv1alpha1.VirtualAppliance{}
	if err := r.Get(ctx, req.NamespacedName, app); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	ctx = ctrl.LoggerInto(ctx, ctrl.LoggerFrom(ctx).WithValues("VirtualAppliance", klog.KObj(app)))
	st := status.New(r.Client, r.Recorder, app)
	in, err := r.observe(ctx, app)
	if err == nil {
		members, foreign := applianceMembers(st.Before(), in.vms, metav1.NewMicroTime(r.Clock.Now()))
		app.Status.MemberCount = int32(len(members))
		app.Status.Members = members[:min(len(members), vpoolv1alpha1.MaxApplianceMembers)]
		ready, reason, msg := applianceReadiness(app, in.poolFound, members, foreign, in.vms)
		st.Set(vpoolv1alpha1.ConditionReady, ready, reason, msg)
		st.SetProgress(readyProgress(st.Get(vpoolv1alpha1.ConditionReady), applianceWorking, applianceStalled))
		announceAppliance(ctx, st)
	}
	return ctrl.Result{}, st.Patch(ctx, err)
}

// applianceInput is what a vApp's status depends on.
type applianceInput struct {
	poolFound bool
	// vms name the vApp, whatever their pool, by name.
	vms map[string]*vpoolv1alpha1.VirtualMachine
}

func (r *VirtualApplianceReconciler) observe(ctx context.Context, app *vpoolv1alpha1.VirtualAppliance) (applianceInput, error) {
	in := applianceInput{vms: map[string]*vpoolv1alpha1.VirtualMachine{}}
	pool := &vpoolv1alpha1.Pool{}
	if err := r.Get(ctx, types.NamespacedName{Namespace: app.Namespace, Name: app.Spec.PoolRef.Name}, pool); err != nil {
		if !apierrors.IsNotFound(err) {
			return in, fmt.Errorf("reading pool %s of VirtualAppliance %s: %w", app.Spec.PoolRef.Name, klog.KObj(app), err)
		}
	} else {
		in.poolFound = true
	}
	vms := &vpoolv1alpha1.VirtualMachineList{}
	if err := r.List(ctx, vms, client.InNamespace(app.Namespace), client.MatchingFields{IndexApplianceRef: app.Name},
		client.UnsafeDisableDeepCopy); err != nil {
		return in, fmt.Errorf("listing VMs of VirtualAppliance %s: %w", klog.KObj(app), err)
	}
	for i := range vms.Items {
		in.vms[vms.Items[i].Name] = &vms.Items[i]
	}
	return in, nil
}

// applianceMembers lists, sorted by name, the VMs of app's pool in vms, with
// when each was seen running: kept from app's record while the record is of
// the VM's current run, now for a VM found running afresh. foreign are the
// VMs of other pools that name app, sorted.
func applianceMembers(app *vpoolv1alpha1.VirtualAppliance, vms map[string]*vpoolv1alpha1.VirtualMachine,
	now metav1.MicroTime) (members []vpoolv1alpha1.ApplianceMember, foreign []string) {
	for _, vm := range vms {
		if vm.Spec.PoolRef.Name != app.Spec.PoolRef.Name {
			foreign = append(foreign, vm.Name)
			continue
		}
		m := vpoolv1alpha1.ApplianceMember{Name: vm.Name, StartOrder: vm.Spec.StartOrder, DesiredPowerState: vm.Spec.PowerState,
			PowerState: vm.Status.PowerState, ResidentOn: vm.Status.ResidentOn}
		if since := runningSince(vm, memberOf(app, vm.Name)); since != nil {
			m.RunningSince = since.DeepCopy()
		} else if vm.Status.PowerState == vpoolv1alpha1.PowerRunning {
			m.RunningSince = now.DeepCopy()
		}
		members = append(members, m)
	}
	slices.SortFunc(members, func(a, b vpoolv1alpha1.ApplianceMember) int { return strings.Compare(a.Name, b.Name) })
	slices.Sort(foreign)
	return members, foreign
}

// applianceReadiness decides a vApp's Ready condition. It is True when
// every member that should run (spec.powerState Running, and not held
// Halted by DoNotRestart after its host failed) runs (its own Ready True:
// not on a host that is down). It is False, naming
// the members that do not run, lowest start order first, with the reason
// MembersStarting while at least one of them is on its way (being started,
// or waiting for the groups before it), MembersNotRunning when every one
// of them waits for a reason of its own. A missing Pool, and VMs of another
// pool naming the vApp, come first: only a person can fix them.
func applianceReadiness(app *vpoolv1alpha1.VirtualAppliance, poolFound bool, members []vpoolv1alpha1.ApplianceMember,
	foreign []string, vms map[string]*vpoolv1alpha1.VirtualMachine) (metav1.ConditionStatus, string, string) {
	switch {
	case !poolFound:
		return metav1.ConditionFalse, vpoolv1alpha1.ReasonPoolNotFound,
			fmt.Sprintf("spec.poolRef.name: Pool %q not found in namespace %s", app.Spec.PoolRef.Name, app.Namespace)
	case len(foreign) > 0:
		return metav1.ConditionFalse, ReasonApplianceMembersInOtherPool, fmt.Sprintf(
			"VMs of another pool name this vApp of pool %s in spec.applianceRef and do not start: %s",
			app.Spec.PoolRef.Name, truncateList(foreign, 10))
	case len(members) == 0:
		return metav1.ConditionTrue, ReasonApplianceNoMembers, "no VM of the pool names this vApp in spec.applianceRef"
	}
	var want, running int
	var waiting []vpoolv1alpha1.ApplianceMember
	starting := false
	for _, m := range members {
		vm := vms[m.Name]
		if !shouldRun(vm) {
			continue
		}
		want++
		// Running as the VM's own Ready says: not on a host that is down.
		if vm.Status.PowerState == vpoolv1alpha1.PowerRunning && meta.IsStatusConditionTrue(vm.Status.Conditions, vpoolv1alpha1.ConditionReady) {
			running++
			continue
		}
		waiting = append(waiting, m)
		// A member whose Ready was not decided yet for its spec is on its way.
		if reason := vmReadyReason(vm); reason == "" || memberStarting[reason] {
			starting = true
		}
	}
	msg := fmt.Sprintf("%d of %d members that should run are running (%d members)", running, want, len(members))
	if len(waiting) == 0 {
		return metav1.ConditionTrue, ReasonApplianceRunning, msg
	}
	slices.SortStableFunc(waiting, func(a, b vpoolv1alpha1.ApplianceMember) int { return cmp.Compare(a.StartOrder, b.StartOrder) })
	names := make([]string, 0, len(waiting))
	for _, m := range waiting {
		name := fmt.Sprintf("%s (startOrder %d", m.Name, m.StartOrder)
		if reason := vmReadyReason(vms[m.Name]); reason != "" {
			name += ", " + reason
		}
		names = append(names, name+")")
	}
	msg += "; not running: " + truncateList(names, 10)
	if starting {
		return metav1.ConditionFalse, ReasonApplianceStarting, msg
	}
	return metav1.ConditionFalse, ReasonApplianceMembersWaiting, msg
}

// announceAppliance emits an event when Ready changes reason: Normal once
// every member runs (not on a first visit that finds them so), Warning when
// members wait for a person; starting members are no news.
func announceAppliance(ctx context.Context, st *status.Helper[*vpoolv1alpha1.VirtualAppliance]) {
	old, cur := st.Was(vpoolv1alpha1.ConditionReady), st.Get(vpoolv1alpha1.ConditionReady)
	if old != nil && old.Reason == cur.Reason {
		return
	}
	switch {
	case cur.Reason == ReasonApplianceRunning && old != nil:
		st.Eventf(corev1.EventTypeNormal, cur.Reason, "Start", "%s", cur.Message)
	case cur.Status == metav1.ConditionFalse && cur.Reason != ReasonApplianceStarting:
		st.Eventf(corev1.EventTypeWarning, cur.Reason, "Start", "%s", cur.Message)
	default:
		return
	}
	ctrl.LoggerFrom(ctx).Info("VirtualAppliance readiness changed", "ready", cur.Status, "reason", cur.Reason)
}
