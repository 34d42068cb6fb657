package controllers

import (
	"context"
	"fmt"
	"strings"

	coordinationv1 "k8s.io/api/coordination/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/internal/backup"
	"github.com/poolkeeper/poolkeeper/internal/liveness"
	"sigs.k8s.io/controller-runtime/pkg/event"
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
	// Tracker records heartbeat renewals; a new one when nil.
	Tracker *liveness.Tracker
	// BMC opens Redfish clients; DefaultBMCFactory when nil.
	BMC BMCFactory
	// Store, when set, keeps every backup's sealed dump, for backups and
	// restores alike, whatever the backup's spec.storage says.
	Store backup.Store
}

// CacheOptions restricts the manager's cache to what poolkeeper needs: of all
// Leases, only the heartbeat Leases of hosts (labelled vpool.poolkeeper.io/host),
// and, when namespaces is set (a comma-separated list), only those namespaces.
func CacheOptions(namespaces string) cache.Options {
	opts := cache.Options{ByObject: map[client.Object]cache.ByObject{
		&coordinationv1.Lease{}: {Label: hostLeaseSelector()},
	}}
	for _, ns := range strings.Split(namespaces, ",") {
		if ns = strings.TrimSpace(ns); ns != "" {
			if opts.DefaultNamespaces == nil {
				opts.DefaultNamespaces = map[string]cache.Config{}
			}
			opts.DefaultNamespaces[ns] = cache.Config{}
		}
	}
	return opts
}

func hostLeaseSelector() labels.Selector {
	req, err := labels.NewRequirement(vpoolv1alpha1.LabelHost, selection.Exists, nil)
	if err != nil {
		panic(err)
	}
	return labels.NewSelector().Add(*req)
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
	if opts.Tracker == nil {
		opts.Tracker = liveness.NewTracker(opts.Clock)
	}
	recorder := mgr.GetEventRecorder("poolkeeper")
	guardChanges := make(chan event.GenericEvent, 1024)
	reconcilers := []interface {
		SetupWithManager(ctrl.Manager, Options) error
	}{
		&PoolReconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Recorder: recorder, Clock: opts.Clock,
			Tracker: opts.Tracker, GuardChanges: guardChanges},
		&HostReconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Clock: opts.Clock,
			Tracker: opts.Tracker, Recorder: recorder, BMC: opts.BMC, GuardChanged: guardChanges},
		&StorageRepositoryReconciler{Client: mgr.GetClient(), Recorder: recorder},
		&VirtualDiskReconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Recorder: recorder},
		&VirtualMachineReconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Clock: opts.Clock, Recorder: recorder},
		&VirtualApplianceReconciler{Client: mgr.GetClient(), Clock: opts.Clock, Recorder: recorder},
		&PoolBackupReconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Clock: opts.Clock, Recorder: recorder,
			Store: opts.Store},
		&BackupLocationReconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Clock: opts.Clock, Recorder: recorder},
		&RecoveryReconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Clock: opts.Clock, Recorder: recorder,
			Store: opts.Store},
		&CSRApproverReconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Recorder: recorder, Clock: opts.Clock},
	}
	for _, r := range reconcilers {
		if err := r.SetupWithManager(mgr, opts); err != nil {
			return fmt.Errorf("setting up %T: %w", r, err)
		}
	}
	return mgr.Add(&APIReachWatch{Config: mgr.GetConfig(), Recount: opts.Tracker.Recount(), Clock: opts.Clock,
		Log: mgr.GetLogger().WithName("api-reach")})
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
		&vpoolv1alpha1.VirtualAppliance{}: func(o client.Object) []string {
			return []string{o.(*vpoolv1alpha1.VirtualAppliance).Spec.PoolRef.Name}
		},
	}
	for obj, fn := range byPool {
		if err := idx.IndexField(ctx, obj, IndexPoolRef, fn); err != nil {
			return fmt.Errorf("indexing %T by pool: %w", obj, err)
		}
	}
	if err := idx.IndexField(ctx, &vpoolv1alpha1.VirtualMachine{}, IndexResidentOn, func(o client.Object) []string {
		return []string{o.(*vpoolv1alpha1.VirtualMachine).Status.ResidentOn}
	}); err != nil {
		return fmt.Errorf("indexing VMs by host: %w", err)
	}
	if err := idx.IndexField(ctx, &vpoolv1alpha1.VirtualMachine{}, IndexVirtualDisk, func(o client.Object) []string {
		var names []string
		for _, d := range o.(*vpoolv1alpha1.VirtualMachine).Spec.Disks {
			names = append(names, d.VirtualDisk)
		}
		return names
	}); err != nil {
		return fmt.Errorf("indexing VMs by disk: %w", err)
	}
	if err := idx.IndexField(ctx, &vpoolv1alpha1.VirtualDisk{}, IndexLockHost, func(o client.Object) []string {
		if l := o.(*vpoolv1alpha1.VirtualDisk).Status.Lock; l != nil {
			return []string{l.Host}
		}
		return nil
	}); err != nil {
		return fmt.Errorf("indexing VDIs by lock holder: %w", err)
	}
	return nil
}
