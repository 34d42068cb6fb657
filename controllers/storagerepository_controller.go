package controllers

import (
	"context"
	"fmt"
	"sort"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/internal/status"
)

// +kubebuilder:rbac:groups=vpool.poolkeeper.io,resources=storagerepositories,verbs=get;list;watch
// +kubebuilder:rbac:groups=vpool.poolkeeper.io,resources=storagerepositories/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=vpool.poolkeeper.io,resources=hosts;pools,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reasons of a StorageRepository's Ready condition. A local SR's reason when
// its host is not Live is "Host" followed by the host's phase (HostPending,
// HostUnreachable, HostFencing, HostFenced, HostForgotten).
const (
	// ReasonSRHostLive: the host owning a local SR is Live.
	ReasonSRHostLive = "HostLive"
	// ReasonSRHostNotFound: spec.host names no Host in the namespace.
	ReasonSRHostNotFound = "HostNotFound"
	// ReasonSRHostInOtherPool: spec.host names a Host of another pool.
	ReasonSRHostInOtherPool = "HostInOtherPool"
	// ReasonSRLiveHosts: a shared SR is usable from at least one Live host.
	ReasonSRLiveHosts = "LiveHosts"
	// ReasonSRNoLiveHost: no host of the pool is Live to use a shared SR.
	ReasonSRNoLiveHost = "NoLiveHost"
)

// StorageRepositoryReconciler keeps an SR's Ready condition: a local SR is
// usable only while its host is Live (it dies with its host), a shared SR
// from the pool's Live hosts.
type StorageRepositoryReconciler struct {
	client.Client
	Recorder events.EventRecorder
}

// SetupWithManager registers the reconciler. A Host wakes the SRs it can
// change only when its phase changes (heartbeats do not), and a Pool only
// when it appears or goes.
func (r *StorageRepositoryReconciler) SetupWithManager(mgr ctrl.Manager, opts Options) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&vpoolv1alpha1.StorageRepository{}).
		Watches(&vpoolv1alpha1.Host{}, handler.EnqueueRequestsFromMapFunc(r.srsOfHost),
			builder.WithPredicates(phaseChanged())).
		Watches(&vpoolv1alpha1.Pool{}, handler.EnqueueRequestsFromMapFunc(r.srsOfPool),
			builder.WithPredicates(predicate.Funcs{UpdateFunc: func(event.UpdateEvent) bool { return false }})).
		WithOptions(controller.Options{MaxConcurrentReconciles: opts.MaxConcurrentReconciles}).
		Complete(conflictsRequeued(r))
}

// srsOfHost maps a Host to the local SRs naming it and the shared SRs of its pool.
func (r *StorageRepositoryReconciler) srsOfHost(ctx context.Context, obj client.Object) []reconcile.Request {
	h, ok := obj.(*vpoolv1alpha1.Host)
	if !ok {
		return nil
	}
	return r.srsWhere(ctx, h.Namespace, func(sr *vpoolv1alpha1.StorageRepository) bool {
		return sr.Spec.Host == h.Name || (sr.Spec.Shared && sr.Spec.PoolRef.Name == h.Spec.PoolRef.Name)
	})
}

func (r *StorageRepositoryReconciler) srsOfPool(ctx context.Context, obj client.Object) []reconcile.Request {
	return r.srsWhere(ctx, obj.GetNamespace(), func(sr *vpoolv1alpha1.StorageRepository) bool {
		return sr.Spec.PoolRef.Name == obj.GetName()
	})
}

// srsWhere lists the SRs of a namespace that match (SRs are few: no index).
func (r *StorageRepositoryReconciler) srsWhere(ctx context.Context, ns string,
	match func(*vpoolv1alpha1.StorageRepository) bool) []reconcile.Request {
	srs := &vpoolv1alpha1.StorageRepositoryList{}
	if err := r.List(ctx, srs, client.InNamespace(ns)); err != nil {
		return nil
	}
	var reqs []reconcile.Request
	for i := range srs.Items {
		if match(&srs.Items[i]) {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&srs.Items[i])})
		}
	}
	return reqs
}

// Reconcile brings one StorageRepository's status up to date.
func (r *StorageRepositoryReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	sr := &vpoolv1alpha1.StorageRepository{}
	if err := r.Get(ctx, req.NamespacedName, sr); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	ctx = ctrl.LoggerInto(ctx, ctrl.LoggerFrom(ctx).WithValues("StorageRepository", klog.KObj(sr)))
	st := status.New(r.Client, r.Recorder, sr)
	in, err := r.observe(ctx, sr)
	if err == nil {
		ready, reason, msg := srReadiness(sr, in)
		st.Set(vpoolv1alpha1.ConditionReady, ready, reason, msg)
		setSRProgress(sr)
		r.announce(ctx, st)
	}
	return ctrl.Result{}, st.Patch(ctx, err)
}

// srInput is what an SR's readiness depends on.
type srInput struct {
	poolFound bool
	// host is the Host owning a local SR; nil when it does not exist.
	host *vpoolv1alpha1.Host
	// hosts are the pool's hosts, for a shared SR.
	hosts []vpoolv1alpha1.Host
}

func (r *StorageRepositoryReconciler) observe(ctx context.Context, sr *vpoolv1alpha1.StorageRepository) (srInput, error) {
	var in srInput
	pool := &vpoolv1alpha1.Pool{}
	if err := r.Get(ctx, types.NamespacedName{Namespace: sr.Namespace, Name: sr.Spec.PoolRef.Name}, pool); err != nil {
		if !apierrors.IsNotFound(err) {
			return in, fmt.Errorf("reading pool %s of StorageRepository %s: %w", sr.Spec.PoolRef.Name, klog.KObj(sr), err)
		}
		return in, nil
	}
	in.poolFound = true
	if !sr.Spec.Shared {
		h := &vpoolv1alpha1.Host{}
		if err := r.Get(ctx, types.NamespacedName{Namespace: sr.Namespace, Name: sr.Spec.Host}, h); err != nil {
			if !apierrors.IsNotFound(err) {
				return in, fmt.Errorf("reading host %s of StorageRepository %s: %w", sr.Spec.Host, klog.KObj(sr), err)
			}
			return in, nil
		}
		in.host = h
		return in, nil
	}
	hosts := &vpoolv1alpha1.HostList{}
	if err := r.List(ctx, hosts, client.InNamespace(sr.Namespace), client.MatchingFields{IndexPoolRef: pool.Name}); err != nil {
		return in, fmt.Errorf("listing hosts of pool %s: %w", pool.Name, err)
	}
	in.hosts = hosts.Items
	return in, nil
}

// srReadiness decides an SR's Ready condition: a local SR dies with its
// host, a shared SR is usable from the pool's Live hosts.
func srReadiness(sr *vpoolv1alpha1.StorageRepository, in srInput) (metav1.ConditionStatus, string, string) {
	switch {
	case !in.poolFound:
		return metav1.ConditionFalse, vpoolv1alpha1.ReasonPoolNotFound,
			fmt.Sprintf("spec.poolRef.name: Pool %q not found in namespace %s", sr.Spec.PoolRef.Name, sr.Namespace)
	case !sr.Spec.Shared && in.host == nil:
		return metav1.ConditionFalse, ReasonSRHostNotFound,
			fmt.Sprintf("spec.host: Host %q not found in namespace %s", sr.Spec.Host, sr.Namespace)
	case !sr.Spec.Shared && in.host.Spec.PoolRef.Name != sr.Spec.PoolRef.Name:
		return metav1.ConditionFalse, ReasonSRHostInOtherPool,
			fmt.Sprintf("spec.host: Host %q belongs to pool %q, not %q", sr.Spec.Host, in.host.Spec.PoolRef.Name, sr.Spec.PoolRef.Name)
	case !sr.Spec.Shared:
		phase := orPending(in.host.Status.Phase)
		if phase == vpoolv1alpha1.HostPhaseLive {
			return metav1.ConditionTrue, ReasonSRHostLive, fmt.Sprintf("local SR of host %s, which is Live", sr.Spec.Host)
		}
		return metav1.ConditionFalse, "Host" + string(phase),
			fmt.Sprintf("local SR of host %s, which is %s: its VDIs cannot be used until the host is Live again", sr.Spec.Host, phase)
	}
	var live, down []string
	for i := range in.hosts {
		h := &in.hosts[i]
		switch h.Status.Phase {
		case vpoolv1alpha1.HostPhaseLive:
			live = append(live, h.Name)
		case vpoolv1alpha1.HostPhaseForgotten:
		default:
			down = append(down, fmt.Sprintf("%s (%s)", h.Name, orPending(h.Status.Phase)))
		}
	}
	sort.Strings(live)
	sort.Strings(down)
	msg := fmt.Sprintf("shared: usable from %d of %d hosts", len(live), len(live)+len(down))
	if len(live) > 0 {
		msg += "; Live: " + truncateList(live, 10)
	}
	if len(down) > 0 {
		msg += "; not Live: " + truncateList(down, 10)
	}
	if len(live) == 0 {
		return metav1.ConditionFalse, ReasonSRNoLiveHost, msg
	}
	return metav1.ConditionTrue, ReasonSRLiveHosts, msg
}

func orPending(p vpoolv1alpha1.HostPhase) vpoolv1alpha1.HostPhase {
	if p == "" {
		return vpoolv1alpha1.HostPhasePending
	}
	return p
}

// announce emits an event when Ready changed status or reason: Warning when
// the SR became unusable, Normal when it became usable again. A first visit
// that finds the SR usable says nothing.
func (r *StorageRepositoryReconciler) announce(ctx context.Context, st *status.Helper[*vpoolv1alpha1.StorageRepository]) {
	old, cur := st.Was(vpoolv1alpha1.ConditionReady), st.Get(vpoolv1alpha1.ConditionReady)
	if old != nil && old.Status == cur.Status && old.Reason == cur.Reason {
		return
	}
	if old == nil && cur.Status == metav1.ConditionTrue {
		return
	}
	eventType := corev1.EventTypeNormal
	if cur.Status != metav1.ConditionTrue {
		eventType = corev1.EventTypeWarning
	}
	ctrl.LoggerFrom(ctx).Info("StorageRepository readiness changed", "ready", cur.Status, "reason", cur.Reason)
	st.Eventf(eventType, cur.Reason, "CheckUsable", "%s", cur.Message)
}
