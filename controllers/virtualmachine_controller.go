package controllers

import (
	"context"
	"fmt"
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
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/internal/metrics"
	"github.com/poolkeeper/poolkeeper/internal/placement"
	"github.com/poolkeeper/poolkeeper/internal/status"
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
	ReasonHostUnreachable = placement.ReasonHostUnreachable
	ReasonVMReset         = placement.ReasonVMReset
	ReasonDisksLocked     = "DisksLocked"
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
	vm *vpoolv1alpha1.VirtualMachine
	// st writes the VM's status once, at the end of the reconcile.
	st   *status.Helper[*vpoolv1alpha1.VirtualMachine]
	pool *vpoolv1alpha1.Pool
	// host is the VM's host as the cache sees it; nil if it has none or the
	// Host is gone.
	host *vpoolv1alpha1.Host
}

// SetupWithManager registers the reconciler, and the placement controller
// that places the VMs of a pool in one pass. A VM wakes on its host's phase
// changes, on its disks' lock changes, and when its pool appears, goes or
// ends a restore.
func (r *VirtualMachineReconciler) SetupWithManager(mgr ctrl.Manager, opts Options) error {
	err := ctrl.NewControllerManagedBy(mgr).
		For(&vpoolv1alpha1.VirtualMachine{}).
		Watches(&vpoolv1alpha1.Host{}, handler.EnqueueRequestsFromMapFunc(r.vmsOnHost), builder.WithPredicates(residencyOfHostChanged())).
		Watches(&vpoolv1alpha1.VirtualDisk{}, handler.EnqueueRequestsFromMapFunc(r.vmsForDisk), builder.WithPredicates(lockChanged())).
		Watches(&vpoolv1alpha1.Pool{}, membersOfPool(r.Client, func() client.ObjectList { return &vpoolv1alpha1.VirtualMachineList{} })).
		WithOptions(controller.Options{MaxConcurrentReconciles: opts.MaxConcurrentReconciles}).
		Complete(conflictsRequeued(r))
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
	s := &vmScope{vm: vm, st: status.New(r.Client, r.Recorder, vm)}
	err := r.reconcile(ctx, s)
	setVMProgress(vm)
	return ctrl.Result{}, s.st.Patch(ctx, err)
}

func (r *VirtualMachineReconciler) reconcile(ctx context.Context, s *vmScope) error {
	vm := s.vm
	if vm.Status.PowerState == "" {
		vm.Status.PowerState = vpoolv1alpha1.PowerHalted
	}
	assignIdentity(vm)
	pool := &vpoolv1alpha1.Pool{}
	if err := r.Get(ctx, types.NamespacedName{Namespace: vm.Namespace, Name: vm.Spec.PoolRef.Name}, pool); err != nil {
		if !apierrors.IsNotFound(err) {
			return err
		}
		s.st.Set(vpoolv1alpha1.ConditionReady, metav1.ConditionFalse, vpoolv1alpha1.ReasonPoolNotFound,
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
	// Only a running VM can have a size pending for its next boot.
	defer func() {
		if vm.Status.PowerState != vpoolv1alpha1.PowerRunning {
			s.st.Remove(vpoolv1alpha1.VMResourcesPending)
		}
	}()
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

// handleHostFailure applies the reset decision (placement.ResetVerdict): a
// VM on an Unreachable host stays Running in status (nothing may move
// before the host is fenced); a VM on a fenced or forgotten host is reset to
// Halted (vm-reset-powerstate), recorded before anything else happens to
// it. It reports whether the reconcile is done.
func (r *VirtualMachineReconciler) handleHostFailure(ctx context.Context, s *vmScope) (bool, error) {
	vm := s.vm
	if vm.Status.ResidentOn == "" {
		return false, nil
	}
	h := residentHost(vm, s.host)
	d := placement.ResetVerdict(h, string(vm.Status.PowerState))
	if d.Action == placement.ResetConfirm {
		down, err := r.hostDown(ctx, vm)
		if err != nil || !down {
			return true, err
		}
		h.Confirmed = true
		d = placement.ResetVerdict(h, string(vm.Status.PowerState))
	}
	switch d.Action {
	case placement.ResetNone:
		return false, nil
	case placement.ResetHold:
		s.st.Set(vpoolv1alpha1.ConditionReady, metav1.ConditionFalse, d.Reason, d.Message)
		return true, nil
	}
	from, now := vm.Status.ResidentOn, r.Clock.Now()
	vm.Status.LastReset = &vpoolv1alpha1.VMReset{Host: from, At: metav1.NewTime(now), PreciseAt: &metav1.MicroTime{Time: now},
		Generation: vm.Generation}
	vm.Status.PowerState = vpoolv1alpha1.PowerHalted
	vm.Status.ResidentOn, vm.Status.ResidentBootID = "", ""
	for _, t := range []string{vpoolv1alpha1.ConditionReady, vpoolv1alpha1.VMScheduled, vpoolv1alpha1.VMDisksLocked} {
		s.st.Set(t, metav1.ConditionFalse, d.Reason, d.Message)
	}
	ctrl.LoggerFrom(ctx).Info("VM reset after host failure", "host", from, "hostPhase", h.Phase, "reason", d.Reason)
	s.st.Event(status.Event{Type: corev1.EventTypeNormal, Reason: d.Reason, Action: "Reset", Note: d.Message, Observe: metrics.VMsReset.Inc})
	return true, nil
}

// residentHost is what the cache shows of the VM's host (nil: gone).
func residentHost(vm *vpoolv1alpha1.VirtualMachine, host *vpoolv1alpha1.Host) placement.ResidentHost {
	phase := vpoolv1alpha1.HostPhaseForgotten // a Host object goes away only once forgotten
	boot := ""
	if host != nil {
		phase, boot = host.Status.Phase, host.Status.BootID
	}
	return placement.ResidentHost{Name: vm.Status.ResidentOn, Phase: string(phase), Boot: boot, ResidentBoot: vm.Status.ResidentBootID,
		Unreachable: phase == vpoolv1alpha1.HostPhaseUnreachable || phase == vpoolv1alpha1.HostPhaseFencing,
		Down:        phase == vpoolv1alpha1.HostPhaseFenced || phase == vpoolv1alpha1.HostPhaseForgotten,
		BootFenced:  bootFenced(host, vm.Status.ResidentBootID)}
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
		s.st.Set(vpoolv1alpha1.ConditionReady, metav1.ConditionFalse, ReasonStopping,
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
	set := func(t string, st metav1.ConditionStatus, msg string) { status.Set(vm, t, st, ReasonHalted, msg) }
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
		s.st.Set(vpoolv1alpha1.ConditionReady, metav1.ConditionTrue, ReasonRunning, fmt.Sprintf("running on %s", vm.Status.ResidentOn))
		if meta.IsStatusConditionTrue(vm.Status.Conditions, vpoolv1alpha1.VMDisksLocked) {
			s.st.Set(vpoolv1alpha1.VMDisksLocked, metav1.ConditionTrue, ReasonDisksLocked, disksLockedMessage(vm, true))
		}
		if reset := vm.Status.LastReset; reset != nil && !status.IsTrue(s.st.Before(), vpoolv1alpha1.ConditionReady) {
			r.recovered(ctx, s, reset)
		}
		return r.checkResize(ctx, s)
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
	if refused, err := r.mayLockFor(ctx, vm, host); err != nil || refused != nil {
		if refused != nil {
			r.leaveHost(s, refused.Reason, refused.Message)
		}
		return err
	}
	var taken []*vpoolv1alpha1.VirtualDisk
	for _, d := range vm.Spec.Disks {
		if d.Mode == vpoolv1alpha1.DiskRO {
			continue
		}
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
		setDiskReady(vdi, nil) // mayLockFor found its SR, in its pool
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
	s.st.Set(vpoolv1alpha1.VMDisksLocked, metav1.ConditionTrue, ReasonDisksLocked, disksLockedMessage(vm, false))
	reason, msg := startingOn(vm, host)
	s.st.Set(vpoolv1alpha1.ConditionReady, metav1.ConditionFalse, reason, msg)
	return nil
}

// startingOn is Ready's reason and message for a VM placed on host, its
// disks locked, that does not run yet: Starting, or what host's agent says
// in the VM's Started condition stops it (StartFailed, with the
// hypervisor's error; WaitingOnHost, with what it waits for).
func startingOn(vm *vpoolv1alpha1.VirtualMachine, host string) (reason, msg string) {
	reason, msg = ReasonStarting, fmt.Sprintf("starting on %s", host)
	c := meta.FindStatusCondition(vm.Status.Conditions, vpoolv1alpha1.VMStarted)
	if c == nil || c.Status != metav1.ConditionFalse {
		return reason, msg
	}
	if why, ok := strings.CutPrefix(c.Message, vpoolv1alpha1.StartedMessagePrefix(host)); ok {
		return c.Reason, fmt.Sprintf("starting on %s: %s", host, why)
	}
	return reason, msg
}

func (r *VirtualMachineReconciler) lockConflict(ctx context.Context, s *vmScope, taken []*vpoolv1alpha1.VirtualDisk,
	held *vpoolv1alpha1.VirtualDisk) error {
	for _, vdi := range taken {
		if vdi.Status.Lock != nil && vdi.Status.Lock.VirtualMachine == s.vm.Name {
			vdi.Status.Lock = nil
			setDiskReady(vdi, nil)
			if err := r.Status().Update(ctx, vdi); err != nil {
				return fmt.Errorf("giving back the lock of VDI %s: %w", vdi.Name, err)
			}
		}
	}
	r.leaveHost(s, ReasonDiskLocked, diskLockedMessage(held))
	return nil
}

// leaveHost takes back a placement whose disks cannot be locked for its
// host (before the host's agent may start the VM), and says why: placement
// decides again.
func (r *VirtualMachineReconciler) leaveHost(s *vmScope, reason, msg string) {
	s.vm.Status.ResidentOn, s.vm.Status.ResidentBootID = "", ""
	s.st.Set(vpoolv1alpha1.VMDisksLocked, metav1.ConditionFalse, reason, msg)
	s.st.Set(vpoolv1alpha1.VMScheduled, metav1.ConditionFalse, reason, msg)
	s.st.Set(vpoolv1alpha1.ConditionReady, metav1.ConditionFalse, reason, msg)
	if c := s.st.Was(vpoolv1alpha1.VMDisksLocked); c == nil || c.Reason != reason {
		s.st.Eventf(corev1.EventTypeWarning, reason, "Start", "%s", msg)
	}
}

// mayLockFor checks, before any lock is taken, that the VM's disks may be
// used on host (placement.MayRunOn): of the VM's pool, on SRs of that pool,
// none on a local SR of another host. It returns why not, or nil.
func (r *VirtualMachineReconciler) mayLockFor(ctx context.Context, vm *vpoolv1alpha1.VirtualMachine, host string) (
	*placement.Decision, error) {
	disks := make([]placement.Disk, 0, len(vm.Spec.Disks))
	for i, d := range vm.Spec.Disks {
		disk, _, err := readDisk(ctx, r.Client, vm, i, d)
		if err != nil {
			return nil, err
		}
		disks = append(disks, disk)
	}
	return placement.MayRunOn(vm.Spec.PoolRef.Name, host, disks), nil
}

// disksLockedMessage is the DisksLocked message of a VM whose RW disks are
// locked for its host, before it runs there or once it does.
func disksLockedMessage(vm *vpoolv1alpha1.VirtualMachine, running bool) string {
	host, rw := vm.Status.ResidentOn, 0
	for _, d := range vm.Spec.Disks {
		if d.Mode != vpoolv1alpha1.DiskRO {
			rw++
		}
	}
	switch {
	case rw == 0 && running:
		return fmt.Sprintf("no RW disk to lock; host %s runs the VM", host)
	case rw == 0:
		return fmt.Sprintf("no RW disk to lock; host %s's agent starts the VM", host)
	case running:
		return fmt.Sprintf("every RW disk is locked for host %s, which runs the VM", host)
	}
	return fmt.Sprintf("every RW disk is locked for host %s; its agent starts the VM", host)
}

// recovered announces a VM running again after a reset, and measures the
// time from that reset (to the microsecond when recorded so) to now.
func (r *VirtualMachineReconciler) recovered(ctx context.Context, s *vmScope, reset *vpoolv1alpha1.VMReset) {
	at := reset.At.Time
	if reset.PreciseAt != nil {
		at = reset.PreciseAt.Time
	}
	took := r.Clock.Since(at)
	note := fmt.Sprintf("running again on %s, %s after its reset (host %s: %s)", s.vm.Status.ResidentOn,
		took.Round(time.Millisecond), reset.Host, r.failedHostStory(ctx, s.vm.Namespace, reset.Host))
	s.st.Event(status.Event{Type: corev1.EventTypeNormal, Reason: ReasonRecovered, Action: "Start", Note: note,
		Observe: func() { metrics.RecoveryDuration.Observe(took.Seconds()); metrics.VMsRestarted.Inc() }})
}

// failedHostStory says, as the cache shows it, when the host a VM was reset
// from went silent and was fenced.
func (r *VirtualMachineReconciler) failedHostStory(ctx context.Context, ns, name string) string {
	h := &vpoolv1alpha1.Host{}
	if err := r.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, h, client.UnsafeDisableDeepCopy); err != nil {
		return "forgotten"
	}
	story := string(h.Status.Phase)
	if t := h.Status.LastHeartbeatTime; t != nil {
		story += ", silent since " + t.UTC().Format(time.RFC3339)
	}
	if f := h.Status.Fencing; f != nil && f.CompletedAt != nil {
		story += ", fenced at " + f.CompletedAt.UTC().Format(time.RFC3339)
	}
	return story
}

// checkResize tells, on a running VM whose spec changed, whether its
// spec.resources fit any host of the pool: they take effect at its next
// boot, which needs such a host (ResourcesPending while none has).
func (r *VirtualMachineReconciler) checkResize(ctx context.Context, s *vmScope) error {
	vm := s.vm
	had := s.st.Get(vpoolv1alpha1.VMResourcesPending) != nil
	if !had && s.st.Before().Status.ObservedGeneration == vm.Generation {
		return nil
	}
	hosts := &vpoolv1alpha1.HostList{}
	if err := r.List(ctx, hosts, client.InNamespace(vm.Namespace), client.MatchingFields{IndexPoolRef: vm.Spec.PoolRef.Name},
		client.UnsafeDisableDeepCopy); err != nil {
		return fmt.Errorf("listing hosts of pool %s: %w", vm.Spec.PoolRef.Name, err)
	}
	var candidates []placement.Host
	for i := range hosts.Items {
		if h := &hosts.Items[i]; h.Status.Phase != vpoolv1alpha1.HostPhaseForgotten {
			candidates = append(candidates, placement.Host{Name: h.Name, Capacity: hostCapacity(h)})
		}
	}
	d := placement.Resized(vmNeed(vm), candidates)
	if d == nil {
		s.st.Remove(vpoolv1alpha1.VMResourcesPending)
		return nil
	}
	s.st.Set(vpoolv1alpha1.VMResourcesPending, metav1.ConditionTrue, d.Reason, d.Message)
	if !had {
		s.st.Eventf(corev1.EventTypeWarning, d.Reason, "Resize", "%s", d.Message)
	}
	return nil
}
