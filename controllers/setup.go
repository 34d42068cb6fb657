package controllers

import (
	"context"
	"fmt"

	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
)

// Field indexes shared by the reconcilers.
const (
	// IndexPoolRef indexes every pool-scoped kind by spec.poolRef.name.
	IndexPoolRef = ".spec.poolRef.name"
)

// Options configures the reconcilers.
type Options struct {
	// Clock is the time source of every decision; tests inject a fake one.
	Clock clock.PassiveClock
	// MaxConcurrentReconciles is the number of parallel reconciles per controller.
	MaxConcurrentReconciles int
}

// SetupWithManager registers the field indexes and every reconciler.
func SetupWithManager(mgr ctrl.Manager, opts Options) error {
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.MaxConcurrentReconciles < 1 {
		opts.MaxConcurrentReconciles = 1
	}
	if err := setupIndexes(context.Background(), mgr); err != nil {
		return err
	}
	reconcilers := []interface {
		SetupWithManager(ctrl.Manager, Options) error
	}{
		&PoolReconciler{Client: mgr.GetClient()},
		&HostReconciler{Client: mgr.GetClient()},
		&StorageRepositoryReconciler{Client: mgr.GetClient()},
		&VirtualDiskReconciler{Client: mgr.GetClient()},
		&VirtualMachineReconciler{Client: mgr.GetClient()},
		&PoolBackupReconciler{Client: mgr.GetClient()},
	}
	for _, r := range reconcilers {
		if err := r.SetupWithManager(mgr, opts); err != nil {
			return fmt.Errorf("setting up %T: %w", r, err)
		}
	}
	return nil
}

func setupIndexes(ctx context.Context, mgr ctrl.Manager) error {
	idx := mgr.GetFieldIndexer()
	byPool := map[client.Object]client.IndexerFunc{
		&vpoolv1alpha1.Host{}: func(o client.Object) []string {
			return []string{o.(*vpoolv1alpha1.Host).Spec.PoolRef.Name}
		},
		&vpoolv1alpha1.StorageRepository{}: func(o client.Object) []string {
			return []string{o.(*vpoolv1alpha1.StorageRepository).Spec.PoolRef.Name}
		},
		&vpoolv1alpha1.VirtualDisk{}: func(o client.Object) []string {
			return []string{o.(*vpoolv1alpha1.VirtualDisk).Spec.PoolRef.Name}
		},
		&vpoolv1alpha1.VirtualMachine{}: func(o client.Object) []string {
			return []string{o.(*vpoolv1alpha1.VirtualMachine).Spec.PoolRef.Name}
		},
		&vpoolv1alpha1.PoolBackup{}: func(o client.Object) []string {
			return []string{o.(*vpoolv1alpha1.PoolBackup).Spec.PoolRef.Name}
		},
	}
	for obj, fn := range byPool {
		if err := idx.IndexField(ctx, obj, IndexPoolRef, fn); err != nil {
			return fmt.Errorf("indexing %T by pool: %w", obj, err)
		}
	}
	return nil
}
