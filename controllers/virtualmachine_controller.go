package controllers

import (
	"context"
	"errors"
	"fmt"
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
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/internal/metrics"
)

// +kubebuilder:rbac:groups=vpool.poolkeeper.io,resources=virtualmachines,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=vpool.poolkeeper.io,resources=virtualmachines/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=vpool.poolkeeper.io,resources=virtualdisks/status,verbs=get;update;patch

// Field indexes of the VM controller.
const (
	// IndexResidentOn indexes VMs by status.residentOn.
	IndexResidentOn = ".status.residentOn"
	// IndexVirtualDisk indexes VMs by the VirtualDisks they attach.
	IndexVirtualDisk = ".spec.disks.virtualDisk"
)

// Reasons of VM conditions and events.
const (
	ReasonRunning         = "Running"
	ReasonStarting        = "Starting"
	ReasonStopping        = "Stopping"
	ReasonHalted          = "Halted"
	ReasonHostUnreachable = "HostUnreachable"
	ReasonVMReset         = "VMReset"
	ReasonDisksLocked     = "DisksLocked"
	ReasonNoRWDisks       = "NoRWDisks"
	ReasonDiskLocked      = "DiskLockedByAnotherHost"
	ReasonRecovered       = "Recovered"
)

// VirtualMachineReconciler places VMs, locks their RW disks for their host
// before the host's agent may start them, and resets the VMs of a fenced or
// forgotten host (vm-reset-powerstate) so they can be restarted elsewhere.
type VirtualMachineReconciler struct {
	client.Client
	// APIReader re-reads a VM's host from the API server before the VM is
	// reset: the Host cache may lag behind the VM cache.
	APIReader client.Reader
	Clock     clock.PassiveClock
	Recorder  events.EventRecorder
}

// vmScope is what one reconcile of a VM has read.
type vmScope struct {
	vm     *vpoolv1alpha1.VirtualMachine
	before *vpoolv1alpha1.VirtualMachine
	pool   *vpoolv1alpha1.Pool
	// host is the VM's host as the cache sees it; nil if it has none or the
	// Host is gone.
	host   *vpoolv1alpha1.Host
	events []pendingEvent
}

// SetupWithManager registers the reconciler, and the placement controller
// that places the VMs of a pool in one pass. A VM wakes on its host's phase
// changes, on its disks' lock changes, and when its pool appears, goes or
// ends a restore.
func (r *VirtualMachineReconciler) SetupWithManager(mgr ctrl.Manager, opts Options) error {
	err := ctrl.NewControllerManagedBy(mgr).
		For(&vpoolv1alpha1.VirtualMachine{}).
		Watches(&vpoolv1alpha1.Host{}, handler.EnqueueRequestsFromMapFunc(r.vmsOnHost), builder.WithPredicates(phaseChanged())).
		Watches(&vpoolv1alpha1.VirtualDisk{}, handler.EnqueueRequestsFromMapFunc(r.vmsForDisk), builder.WithPredicates(lockChanged())).
		Watches(&vpoolv1alpha1.Pool{}, membersOfPool(r.Client, func() client.ObjectList { return &vpoolv1alpha1.VirtualMachineList{} })).
		WithOptions(controller.Options{MaxConcurrentReconciles: opts.MaxConcurrentReconciles}).
		Complete(r)
	if err != nil {
		return err
	}
	return setupPlacement(mgr, &PlacementReconciler{Client: r.Client, Recorder: r.Recorder, Writers: opts.MaxConcurrentReconciles}, opts)
}

// lockChanged passes a VDI whose lock changes hands (or goes).
func lockChanged() predicate.Funcs {
	return onChange(func(o, n *vpoolv1alpha1.VirtualDisk) bool {
		return !equality.Semantic.DeepEqual(o.Status.Lock, n.Status.Lock)
	})
}

// vmsOnHost wakes the VMs resident on a host.
func (r *VirtualMachineReconciler) vmsOnHost(ctx context.Context, obj client.Object) []reconcile.Request {
	return r.vmsMatching(ctx, obj, IndexResidentOn)
}

func (r *VirtualMachineReconciler) vmsForDisk(ctx context.Context, obj client.Object) []reconcile.Request {
	return r.vmsMatching(ctx, obj, IndexVirtualDisk)
}

// vmsMatching wakes the VMs whose index value is obj's name.
func (r *VirtualMachineReconciler) vmsMatching(ctx context.Context, obj client.Object, index string) []reconcile.Request {
	vms := &vpoolv1alpha1.VirtualMachineList{}
	if err := r.List(ctx, vms, client.InNamespace(obj.GetNamespace()), client.MatchingFields{index: obj.GetName()},
		client.UnsafeDisableDeepCopy); err != nil {
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(vms.Items))
	for i := range vms.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&vms.Items[i])})
	}
	return reqs
}

// Reconcile brings one VM towards its desired power state.
func (r *VirtualMachineReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	vm := &vpoolv1alpha1.VirtualMachine{}
	if err := r.Get(ctx, req.NamespacedName, vm); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if vm.Status.PowerState == "" && poolRestoring(ctx, r.Client, vm.Namespace, vm.Spec.PoolRef.Name) {
		return ctrl.Result{}, nil // the restore that creates it records its status
	}
	ctx = ctrl.LoggerInto(ctx, ctrl.LoggerFrom(ctx).WithValues("VirtualMachine", klog.KObj(vm)))
	s := &vmScope{vm: vm, before: vm.DeepCopy()}
	err := r.reconcile(ctx, s)
	if err == nil {
		vm.Status.ObservedGeneration = vm.Generation
	}
	if perr := r.patchStatus(ctx, s); perr != nil {
		return ctrl.Result{}, errors.Join(err, perr)
	}
	for _, e := range s.events {
		r.Recorder.Eventf(vm, nil, e.eventType, e.reason, e.action, "%s", e.note)
		if e.observe != nil {
			e.observe()
		}
	}
	return ctrl.Result{}, err
}

func (r *VirtualMachineReconciler) patchStatus(ctx context.Context, s *vmScope) error {
	if equality.Semantic.DeepEqual(s.before.Status, s.vm.Status) {
		return nil
	}
	if err := r.Status().Patch(ctx, s.vm, client.MergeFromWithOptions(s.before, client.MergeFromWithOptimisticLock{})); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("patching status of VM %s: %w", klog.KObj(s.vm), err)
	}
	s.before = s.vm.DeepCopy()
	return nil
}

func (r *VirtualMachineReconciler) reconcile(ctx context.Context, s *vmScope) error {
	vm := s.vm
	if vm.Status.PowerState == "" {
		vm.Status.PowerState = vpoolv1alpha1.PowerHalted
	}
	pool := &vpoolv1alpha1.Pool{}
	if err := r.Get(ctx, types.NamespacedName{Namespace: vm.Namespace, Name: vm.Spec.PoolRef.Name}, pool); err != nil {
		if !apierrors.IsNotFound(err) {
			return err
		}
		r.set(s, vpoolv1alpha1.ConditionReady, metav1.ConditionFalse, vpoolv1alpha1.ReasonPoolNotFound,
			fmt.Sprintf("spec.poolRef.name: Pool %q not found", vm.Spec.PoolRef.Name))
		return nil
	}
	s.pool = pool
	if err := r.gather(ctx, s); err != nil {
		return err
	}
	if done, err := r.handleHostFailure(ctx, s); done || err != nil {
		return err
	}
	if vm.Spec.PowerState == vpoolv1alpha1.DesiredRunning {
		return r.reconcileRunning(ctx, s)
	}
	r.reconcileHalted(s)
	return nil
}

func (r *VirtualMachineReconciler) gather(ctx context.Context, s *vmScope) error {
	if s.vm.Status.ResidentOn == "" {
		return nil
	}
	h := &vpoolv1alpha1.Host{}
	if err := r.Get(ctx, types.NamespacedName{Namespace: s.vm.Namespace, Name: s.vm.Status.ResidentOn}, h); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("reading host %s of VM %s: %w", s.vm.Status.ResidentOn, s.vm.Name, err)
	}
	s.host = h
	return nil
}

func (r *VirtualMachineReconciler) set(s *vmScope, t string, st metav1.ConditionStatus, reason, msg string) {
	meta.SetStatusCondition(&s.vm.Status.Conditions, metav1.Condition{Type: t, Status: st, Reason: reason, Message: msg,
		ObservedGeneration: s.vm.Generation})
}

// handleHostFailure: a VM on an Unreachable host stays Running in status
// (nothing may move before the host is fenced); a VM on a fenced or forgotten
// host is reset to Halted (vm-reset-powerstate), recorded before anything
// else happens to it. It reports whether the reconcile is done.
func (r *VirtualMachineReconciler) handleHostFailure(ctx context.Context, s *vmScope) (bool, error) {
	vm := s.vm
	if vm.Status.ResidentOn == "" {
		return false, nil
	}
	phase := vpoolv1alpha1.HostPhaseForgotten // a Host object goes away only once forgotten
	if s.host != nil {
		phase = s.host.Status.Phase
	}
	switch phase {
	case vpoolv1alpha1.HostPhaseUnreachable, vpoolv1alpha1.HostPhaseFencing:
		r.set(s, vpoolv1alpha1.ConditionReady, metav1.ConditionFalse, ReasonHostUnreachable, fmt.Sprintf(
			"host %s is %s: the VM stays %s in status until the host is fenced or forgotten", vm.Status.ResidentOn, phase, vm.Status.PowerState))
		return true, nil
	case vpoolv1alpha1.HostPhaseFenced, vpoolv1alpha1.HostPhaseForgotten:
	default:
		return false, nil
	}
	if !bootFenced(s.host, vm.Status.ResidentBootID) {
		if down, err := r.hostDown(ctx, vm); err != nil || !down {
			return true, err
		}
	}
	from := vm.Status.ResidentOn
	vm.Status.LastReset = &vpoolv1alpha1.VMReset{Host: from, At: metav1.NewTime(r.Clock.Now()), Generation: vm.Generation}
	vm.Status.PowerState = vpoolv1alpha1.PowerHalted
	vm.Status.ResidentOn, vm.Status.ResidentBootID = "", ""
	msg := fmt.Sprintf("host %s is %s: power state reset to Halted (vm-reset-powerstate); its disk locks are released next", from, phase)
	r.set(s, vpoolv1alpha1.ConditionReady, metav1.ConditionFalse, ReasonVMReset, msg)
	r.set(s, vpoolv1alpha1.VMScheduled, metav1.ConditionFalse, ReasonVMReset, msg)
	r.set(s, vpoolv1alpha1.VMDisksLocked, metav1.ConditionFalse, ReasonVMReset, msg)
	ctrl.LoggerFrom(ctx).Info("VM reset after host failure", "host", from, "hostPhase", phase)
	s.events = append(s.events, pendingEvent{eventType: corev1.EventTypeNormal, reason: ReasonVMReset, action: "Reset", note: msg,
		observe: metrics.VMsReset.Inc})
	return true, nil
}

// bootFenced reports whether h, as the cache shows it, is Fenced with boot
// as the boot it fenced. The cache may lag, but only behind the truth: that
// boot was fenced, so nothing placed on it or locked for it runs any more.
// Whatever was placed or locked anew since carries another boot ID, and a
// write made from an older view of the VM or VDI fails on its
// resourceVersion. Without a boot ID to match, callers ask the API server.
func bootFenced(h *vpoolv1alpha1.Host, boot string) bool {
	return h != nil && boot != "" && h.Status.Phase == vpoolv1alpha1.HostPhaseFenced && h.Status.Fencing != nil &&
		h.Status.Fencing.BootID == boot
}

// hostDown re-reads the VM's host from the API server: is it really fenced
// or forgotten (or gone)?
func (r *VirtualMachineReconciler) hostDown(ctx context.Context, vm *vpoolv1alpha1.VirtualMachine) (bool, error) {
	h := &vpoolv1alpha1.Host{}
	if err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: vm.Namespace, Name: vm.Status.ResidentOn}, h); err != nil {
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		return false, fmt.Errorf("re-reading host %s of VM %s: %w", vm.Status.ResidentOn, vm.Name, err)
	}
	return h.Status.Phase == vpoolv1alpha1.HostPhaseFenced || h.Status.Phase == vpoolv1alpha1.HostPhaseForgotten, nil
}

func (r *VirtualMachineReconciler) reconcileHalted(s *vmScope) {
	vm := s.vm
	switch {
	case vm.Status.PowerState == vpoolv1alpha1.PowerRunning:
		r.set(s, vpoolv1alpha1.ConditionReady, metav1.ConditionFalse, ReasonStopping,
			fmt.Sprintf("waiting for host %s to stop the VM", vm.Status.ResidentOn))
		return
	case vm.Status.ResidentOn != "":
		// Halted by its own host (or never started): it leaves the host, and
		// the VDI controller releases its locks.
		vm.Status.ResidentOn, vm.Status.ResidentBootID = "", ""
	}
	setHaltedConditions(vm)
}

// setHaltedConditions records a VM halted as its spec asks.
func setHaltedConditions(vm *vpoolv1alpha1.VirtualMachine) {
	set := func(t string, st metav1.ConditionStatus, msg string) {
		meta.SetStatusCondition(&vm.Status.Conditions, metav1.Condition{Type: t, Status: st, Reason: ReasonHalted, Message: msg,
			ObservedGeneration: vm.Generation})
	}
	set(vpoolv1alpha1.ConditionReady, metav1.ConditionTrue, "the VM is halted, as asked")
	set(vpoolv1alpha1.VMScheduled, metav1.ConditionFalse, "spec.powerState is Halted")
	set(vpoolv1alpha1.VMDisksLocked, metav1.ConditionFalse, "spec.powerState is Halted")
}

// newVMStatus is the status of a VM that has never run, as this controller
// records it on its first visit: Halted, and its conditions if it should be.
func newVMStatus(vm *vpoolv1alpha1.VirtualMachine) {
	vm.Status.PowerState = vpoolv1alpha1.PowerHalted
	vm.Status.ObservedGeneration = vm.Generation
	if vm.Spec.PowerState != vpoolv1alpha1.DesiredRunning {
		setHaltedConditions(vm)
	}
}

func (r *VirtualMachineReconciler) reconcileRunning(ctx context.Context, s *vmScope) error {
	vm := s.vm
	if vm.Status.ResidentOn != "" && vm.Status.PowerState == vpoolv1alpha1.PowerRunning {
		r.set(s, vpoolv1alpha1.ConditionReady, metav1.ConditionTrue, ReasonRunning, fmt.Sprintf("running on %s", vm.Status.ResidentOn))
		if reset := vm.Status.LastReset; reset != nil && !meta.IsStatusConditionTrue(s.before.Status.Conditions, vpoolv1alpha1.ConditionReady) {
			took := r.Clock.Since(reset.At.Time)
			s.events = append(s.events, pendingEvent{eventType: corev1.EventTypeNormal, reason: ReasonRecovered, action: "Start",
				note:    fmt.Sprintf("running again on %s, %s after host %s failed", vm.Status.ResidentOn, took.Round(time.Millisecond), reset.Host),
				observe: func() { metrics.RecoveryDuration.Observe(took.Seconds()); metrics.VMsRestarted.Inc() }})
		}
		return nil
	}
	if vm.Status.ResidentOn == "" {
		// The placement controller places it, or says in Scheduled why not.
		return nil
	}
	return r.lockDisks(ctx, s)
}

// lockDisks takes the RW lock of every RW disk for the VM's host through the
// API server's optimistic concurrency. If another host holds one, the VM does
// not start: it gives back what it took and leaves the host.
func (r *VirtualMachineReconciler) lockDisks(ctx context.Context, s *vmScope) error {
	vm := s.vm
	host := vm.Status.ResidentOn
	rw := 0
	var taken []*vpoolv1alpha1.VirtualDisk
	for _, d := range vm.Spec.Disks {
		if d.Mode == vpoolv1alpha1.DiskRO {
			continue
		}
		rw++
		vdi := &vpoolv1alpha1.VirtualDisk{}
		if err := r.Get(ctx, types.NamespacedName{Namespace: vm.Namespace, Name: d.VirtualDisk}, vdi); err != nil {
			return fmt.Errorf("reading VDI %s of VM %s: %w", d.VirtualDisk, vm.Name, err)
		}
		if l := vdi.Status.Lock; l != nil {
			if l.Host == host && l.VirtualMachine == vm.Name {
				taken = append(taken, vdi)
				continue
			}
			return r.lockConflict(ctx, s, taken, vdi)
		}
		vdi.Status.Lock = &vpoolv1alpha1.VDILock{Host: host, Mode: vpoolv1alpha1.DiskRW, VirtualMachine: vm.Name,
			BootID: vm.Status.ResidentBootID, Since: &metav1.Time{Time: r.Clock.Now()}}
		setDiskReady(vdi)
		// Update (not patch) carries the resourceVersion read: of two VMs racing
		// for one VDI, the API server lets exactly one win.
		if err := r.Status().Update(ctx, vdi); err != nil {
			if apierrors.IsConflict(err) {
				return fmt.Errorf("VDI %s changed while locking it for VM %s; retrying: %w", vdi.Name, vm.Name, err)
			}
			return fmt.Errorf("locking VDI %s for VM %s: %w", vdi.Name, vm.Name, err)
		}
		metrics.LocksAcquired.Inc()
		taken = append(taken, vdi)
	}
	msg := fmt.Sprintf("every RW disk is locked for host %s; its agent starts the VM", host)
	if rw == 0 {
		msg = fmt.Sprintf("no RW disk to lock; host %s's agent starts the VM", host)
	}
	r.set(s, vpoolv1alpha1.VMDisksLocked, metav1.ConditionTrue, ReasonDisksLocked, msg)
	r.set(s, vpoolv1alpha1.ConditionReady, metav1.ConditionFalse, ReasonStarting, fmt.Sprintf("starting on %s", host))
	return nil
}

func (r *VirtualMachineReconciler) lockConflict(ctx context.Context, s *vmScope, taken []*vpoolv1alpha1.VirtualDisk,
	held *vpoolv1alpha1.VirtualDisk) error {
	for _, vdi := range taken {
		if vdi.Status.Lock != nil && vdi.Status.Lock.VirtualMachine == s.vm.Name {
			vdi.Status.Lock = nil
			setDiskReady(vdi)
			if err := r.Status().Update(ctx, vdi); err != nil {
				return fmt.Errorf("giving back the lock of VDI %s: %w", vdi.Name, err)
			}
		}
	}
	msg := diskLockedMessage(held)
	s.vm.Status.ResidentOn, s.vm.Status.ResidentBootID = "", ""
	r.set(s, vpoolv1alpha1.VMDisksLocked, metav1.ConditionFalse, ReasonDiskLocked, msg)
	r.set(s, vpoolv1alpha1.VMScheduled, metav1.ConditionFalse, ReasonDiskLocked, msg)
	r.set(s, vpoolv1alpha1.ConditionReady, metav1.ConditionFalse, ReasonDiskLocked, msg)
	if c := meta.FindStatusCondition(s.before.Status.Conditions, vpoolv1alpha1.VMDisksLocked); c == nil || c.Reason != ReasonDiskLocked {
		s.events = append(s.events, pendingEvent{eventType: corev1.EventTypeWarning, reason: ReasonDiskLocked, action: "Start", note: msg})
	}
	return nil
}
