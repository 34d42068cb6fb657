package controllers

import (
	"context"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
)

// +kubebuilder:rbac:groups=vpool.poolkeeper.io,resources=storagerepositories,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=vpool.poolkeeper.io,resources=storagerepositories/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=vpool.poolkeeper.io,resources=storagerepositories/finalizers,verbs=update

// StorageRepositoryReconciler reconciles StorageRepository objects.
type StorageRepositoryReconciler struct {
	client.Client
}

// SetupWithManager registers the reconciler with the manager.
func (r *StorageRepositoryReconciler) SetupWithManager(mgr ctrl.Manager, opts Options) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&vpoolv1alpha1.StorageRepository{}).
		WithOptions(controller.Options{MaxConcurrentReconciles: opts.MaxConcurrentReconciles}).
		Complete(r)
}

// Reconcile brings one StorageRepository towards its spec.
func (r *StorageRepositoryReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	return ctrl.Result{}, nil
}
