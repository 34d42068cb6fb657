package controllers

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
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

// +kubebuilder:rbac:groups=vpool.poolkeeper.io,resources=virtualdisks,verbs=get;list;watch
// +kubebuilder:rbac:groups=vpool.poolkeeper.io,resources=virtualdisks/status,verbs=get;update;patch

// Field indexes of the VDI controller.
const (
	// IndexLockHost indexes VDIs by the host holding their RW lock.
	IndexLockHost = ".status.lock.host"
	// IndexStorageRepository indexes VDIs by the SR they name.
	IndexStorageRepository = ".spec.storageRepository"
)

// ReasonLockReleased is the event of a released VDI lock.
const ReasonLockReleased = "VDILockReleased"

// VirtualDiskReconciler releases a VDI's RW lock when, and only when, its
// holder is fenced or forgotten (resetvdis.py) or the VM on it was halted by
// its own host.
type VirtualDiskReconciler struct {
	client.Client
	// APIReader reads the holder and the VM from the API server before a
	// release: caches of different kinds lag each other, and a VM placed a
	// moment ago must not look halted.
	APIReader client.Reader
	Recorder  events.EventRecorder
}

// SetupWithManager registers the reconciler; a VDI wakes on changes of the
// VMs that attach it, of the host holding its lock and of the SR it names,
// and when its pool's restore ends.
func (r *VirtualDiskReconciler) SetupWithManager(mgr ctrl.Manager, opts Options) error {
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &vpoolv1alpha1.VirtualDisk{}, IndexStorageRepository,
		func(o client.Object) []string { return []string{o.(*vpoolv1alpha1.VirtualDisk).Spec.StorageRepository} }); err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&vpoolv1alpha1.VirtualDisk{}).
		Watches(&vpoolv1alpha1.StorageRepository{}, handler.EnqueueRequestsFromMapFunc(r.disksOnSR),
			builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&vpoolv1alpha1.VirtualMachine{}, handler.EnqueueRequestsFromMapFunc(disksOfVM), builder.WithPredicates(residencyChanged())).
		Watches(&vpoolv1alpha1.Host{}, handler.EnqueueRequestsFromMapFunc(r.disksLockedBy)).
		Watches(&vpoolv1alpha1.Pool{}, membersOfPool(r.Client, func() client.ObjectList { return &vpoolv1alpha1.VirtualDiskList{} })).
		WithOptions(controller.Options{MaxConcurrentReconciles: opts.MaxConcurrentReconciles}).
		Complete(conflictsRequeued(r))
}

// residencyChanged passes the VM events the release rule depends on: where
// the VM is, whether it runs, whether it exists.
func residencyChanged() predicate.Funcs {
	return onChange(func(o, n *vpoolv1alpha1.VirtualMachine) bool {
		return o.Status.ResidentOn != n.Status.ResidentOn || o.Status.PowerState != n.Status.PowerState
	})
}

func disksOfVM(_ context.Context, obj client.Object) []reconcile.Request {
	vm, ok := obj.(*vpoolv1alpha1.VirtualMachine)
	if !ok {
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(vm.Spec.Disks))
	for _, d := range vm.Spec.Disks {
		reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: vm.Namespace, Name: d.VirtualDisk}})
	}
	return reqs
}

func (r *VirtualDiskReconciler) disksLockedBy(ctx context.Context, obj client.Object) []reconcile.Request {
	return r.disksMatching(ctx, obj, IndexLockHost)
}

// disksOnSR wakes the VDIs that name an SR, whichever pool either is of.
func (r *VirtualDiskReconciler) disksOnSR(ctx context.Context, obj client.Object) []reconcile.Request {
	return r.disksMatching(ctx, obj, IndexStorageRepository)
}

// disksMatching wakes the VDIs whose index value is obj's name.
func (r *VirtualDiskReconciler) disksMatching(ctx context.Context, obj client.Object, index string) []reconcile.Request {
	vdis := &vpoolv1alpha1.VirtualDiskList{}
	if err := r.List(ctx, vdis, client.InNamespace(obj.GetNamespace()), client.MatchingFields{index: obj.GetName()},
		client.UnsafeDisableDeepCopy); err != nil {
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(vdis.Items))
	for i := range vdis.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&vdis.Items[i])})
	}
	return reqs
}

// Reconcile releases one VDI's lock if the release rule allows it.
func (r *VirtualDiskReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	vdi := &vpoolv1alpha1.VirtualDisk{}
	if err := r.Get(ctx, req.NamespacedName, vdi); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if vdi.Status.Lock == nil && poolRestoring(ctx, r.Client, vdi.Namespace, vdi.Spec.PoolRef.Name) {
		return ctrl.Result{}, nil // its Ready condition once the restore is done
	}
	// The write carries the resourceVersion read: a lock taken meanwhile is
	// never released.
	st := status.New(r.Client, r.Recorder, vdi)
	return ctrl.Result{}, st.Patch(ctx, r.reconcile(ctx, st))
}

// reconcile sets the VDI's Ready condition and releases its lock when the
// rule allows it, asking the API server when the cache says yes.
func (r *VirtualDiskReconciler) reconcile(ctx context.Context, st *status.Helper[*vpoolv1alpha1.VirtualDisk]) error {
	vdi := st.Object()
	lock := vdi.Status.Lock
	refused, err := r.checkSR(ctx, vdi)
	if err != nil {
		return err
	}
	setDiskReady(vdi, refused)
	if lock == nil {
		return nil
	}
	release, reason, msg, err := r.mayRelease(ctx, vdi, r.Client)
	if err != nil || !release {
		return err
	}
	holder := &vpoolv1alpha1.Host{}
	if err := r.Get(ctx, types.NamespacedName{Namespace: vdi.Namespace, Name: lock.Host}, holder); err != nil || !bootFenced(holder, lock.BootID) {
		// The cache said yes; the API server must say so too.
		release, reason, msg, err = r.mayRelease(ctx, vdi, r.APIReader)
		if err != nil || !release {
			return err
		}
	}
	vdi.Status.Lock = nil
	setDiskReady(vdi, refused)
	ctrl.LoggerFrom(ctx).Info("Releasing VDI lock", "VirtualDisk", klog.KObj(vdi), "host", lock.Host, "reason", reason)
	st.Event(status.Event{Type: corev1.EventTypeNormal, Reason: ReasonLockReleased, Action: "Release", Note: reason + ": " + msg,
		Observe: metrics.LocksReleased.WithLabelValues(reason).Inc})
	return nil
}

// mayRelease applies the release rule to the holder and the VM as reader sees them.
func (r *VirtualDiskReconciler) mayRelease(ctx context.Context, vdi *vpoolv1alpha1.VirtualDisk, reader client.Reader) (
	bool, string, string, error) {
	lock := vdi.Status.Lock
	holder := &vpoolv1alpha1.Host{}
	state := placement.HolderLive
	if err := reader.Get(ctx, types.NamespacedName{Namespace: vdi.Namespace, Name: lock.Host}, holder); err != nil {
		if !apierrors.IsNotFound(err) {
			return false, "", "", err
		}
		state = placement.HolderDown // a Host object goes away only once forgotten
	} else if holder.Status.Phase == vpoolv1alpha1.HostPhaseFenced || holder.Status.Phase == vpoolv1alpha1.HostPhaseForgotten {
		state = placement.HolderDown
	}
	var vmState placement.LockedVM
	vm := &vpoolv1alpha1.VirtualMachine{}
	if err := reader.Get(ctx, types.NamespacedName{Namespace: vdi.Namespace, Name: lock.VirtualMachine}, vm); err == nil {
		vmState = placement.LockedVM{Exists: true, ResidentOn: vm.Status.ResidentOn, Running: vm.Status.PowerState == vpoolv1alpha1.PowerRunning}
	} else if !apierrors.IsNotFound(err) {
		return false, "", "", err
	}
	if state == placement.HolderLive {
		for _, name := range holder.Status.RunningVMs {
			vmState.RunningOnHolder = vmState.RunningOnHolder || name == lock.VirtualMachine
		}
	}
	release, reason, msg := placement.Release(lock.Host, state, vmState)
	return release, reason, msg, nil
}

// checkSR checks the VDI's spec.storageRepository against the cache: why
// the VDI cannot be used (placement.StorageRef), or nil.
func (r *VirtualDiskReconciler) checkSR(ctx context.Context, vdi *vpoolv1alpha1.VirtualDisk) (*placement.Decision, error) {
	sr := &vpoolv1alpha1.StorageRepository{}
	err := r.Get(ctx, types.NamespacedName{Namespace: vdi.Namespace, Name: vdi.Spec.StorageRepository}, sr, client.UnsafeDisableDeepCopy)
	if err != nil && !apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("reading SR %s of VDI %s: %w", vdi.Spec.StorageRepository, klog.KObj(vdi), err)
	}
	return placement.StorageRef(vdi.Spec.PoolRef.Name, vdi.Spec.StorageRepository, err == nil, sr.Spec.PoolRef.Name), nil
}
