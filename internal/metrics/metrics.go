// Package metrics defines poolkeeper's Prometheus metrics, registered with
// controller-runtime's registry and served on the manager's metrics endpoint.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
)

var (
	// DetectionLag is how late a host was found Unreachable after its
	// heartbeat deadline.
	DetectionLag = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "poolkeeper_host_detection_lag_seconds",
		Help:    "Time from a host's heartbeat deadline to the operator marking it Unreachable.",
		Buckets: []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10},
	})
	// Fences counts fences by method and result (fenced, abandoned, failed).
	Fences = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "poolkeeper_fences_total",
		Help: "Fencing outcomes by method (Agent, Redfish, Manual) and result (fenced, abandoned, failed).",
	}, []string{"method", "result"})
	// RecoveryDuration is the time from a VM's reset after its host failed to
	// the VM running again elsewhere.
	RecoveryDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "poolkeeper_vm_recovery_duration_seconds",
		Help:    "Time from a VM's reset after its host was fenced or forgotten to the VM running again.",
		Buckets: prometheus.ExponentialBuckets(0.05, 2, 14),
	})
	// VMsRestarted counts VMs running again after their host failed.
	VMsRestarted = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "poolkeeper_vms_restarted_total",
		Help: "VMs running again on another host after their host was fenced or forgotten.",
	})
	// VMsReset counts vm-reset-powerstate steps.
	VMsReset = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "poolkeeper_vms_reset_total",
		Help: "VMs reset to Halted because their host was fenced or forgotten (vm-reset-powerstate).",
	})
	// LocksAcquired counts VDI RW locks taken.
	LocksAcquired = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "poolkeeper_vdi_locks_acquired_total",
		Help: "VDI RW locks taken for a host.",
	})
	// LocksReleased counts VDI RW locks released, by reason.
	LocksReleased = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "poolkeeper_vdi_locks_released_total",
		Help: "VDI RW locks released, by reason (HolderFenced, HaltedByHost, VMGone).",
	}, []string{"reason"})
	// MasterChanges counts changes of pool master, by reason.
	MasterChanges = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "poolkeeper_master_changes_total",
		Help: "Changes of pool master (each a new epoch), by reason.",
	}, []string{"reason"})
	// BackupDuration is how long a PoolBackup took, by result.
	BackupDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "poolkeeper_backup_duration_seconds",
		Help:    "Time to take a PoolBackup (read, seal, store, verify), by result.",
		Buckets: prometheus.ExponentialBuckets(0.05, 2, 14),
	}, []string{"result"})
	// BackupSize is the stored size of the last completed backup of a pool.
	BackupSize = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "poolkeeper_backup_size_bytes",
		Help: "Stored (compressed, encrypted) size of the last completed backup of a pool.",
	}, []string{"namespace", "pool"})
	// RestoreDuration is how long a restore took, by result.
	RestoreDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "poolkeeper_restore_duration_seconds",
		Help:    "Time from a Pool with spec.restoreFrom to its Restored condition, by result (restored, dry-run).",
		Buckets: prometheus.ExponentialBuckets(0.05, 2, 14),
	}, []string{"result"})
)

func init() {
	crmetrics.Registry.MustRegister(DetectionLag, Fences, RecoveryDuration, VMsRestarted, VMsReset,
		LocksAcquired, LocksReleased, MasterChanges, BackupDuration, BackupSize, RestoreDuration)
}
