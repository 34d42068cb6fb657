package metrics_test

import (
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/internal/metrics"
)

// now is 1796126400 seconds after the epoch.
var now = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

func ago(d time.Duration) metav1.Time { return metav1.NewTime(now.Add(-d)) }

func host(name string, phase vpoolv1alpha1.HostPhase, conds ...metav1.Condition) *vpoolv1alpha1.Host {
	return &vpoolv1alpha1.Host{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name},
		Spec: vpoolv1alpha1.HostSpec{PoolRef: vpoolv1alpha1.PoolReference{Name: "p"}, Address: "a",
			Capacity: vpoolv1alpha1.HostCapacity{CPU: resource.MustParse("1"), Memory: resource.MustParse("1Gi")}},
		Status: vpoolv1alpha1.HostStatus{Phase: phase, Conditions: conds}}
}

func vm(name string, ps vpoolv1alpha1.PowerState) *vpoolv1alpha1.VirtualMachine {
	return &vpoolv1alpha1.VirtualMachine{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name},
		Spec:   vpoolv1alpha1.VirtualMachineSpec{PoolRef: vpoolv1alpha1.PoolReference{Name: "p"}},
		Status: vpoolv1alpha1.VirtualMachineStatus{PowerState: ps}}
}

func vdi(name, holder string) *vpoolv1alpha1.VirtualDisk {
	return &vpoolv1alpha1.VirtualDisk{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name},
		Spec: vpoolv1alpha1.VirtualDiskSpec{PoolRef: vpoolv1alpha1.PoolReference{Name: "p"}, StorageRepository: "nfs",
			Size: resource.MustParse("1Gi")},
		Status: vpoolv1alpha1.VirtualDiskStatus{Lock: &vpoolv1alpha1.VDILock{Host: holder, Mode: vpoolv1alpha1.DiskRW}}}
}

func cond(t string, st metav1.ConditionStatus, reason string, since time.Duration) metav1.Condition {
	return metav1.Condition{Type: t, Status: st, Reason: reason, LastTransitionTime: ago(since)}
}

// TestPoolCollector: a pool with a host of each trouble, as a pager sees it.
func TestPoolCollector(t *testing.T) {
	g := NewWithT(t)
	pool := &vpoolv1alpha1.Pool{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p", CreationTimestamp: ago(24 * time.Hour)},
		Spec: vpoolv1alpha1.PoolSpec{Backup: &vpoolv1alpha1.BackupSchedule{Schedule: "0 */6 * * *",
			Encryption: vpoolv1alpha1.BackupEncryption{KeySecretRef: vpoolv1alpha1.LocalObjectReference{Name: "k"}}}},
		Status: vpoolv1alpha1.PoolStatus{Conditions: []metav1.Condition{
			cond("Ready", metav1.ConditionFalse, "StormGuard", time.Minute),
			cond("FencingAllowed", metav1.ConditionFalse, "StormGuard", time.Minute),
			cond("Overcommitted", metav1.ConditionTrue, "InsufficientCapacity", time.Minute),
		}},
	}
	fencing := host("h3", vpoolv1alpha1.HostPhaseFencing)
	fencing.Spec.Fencing.Method = vpoolv1alpha1.FencingRedfish
	fencing.Status.Fencing = &vpoolv1alpha1.FencingStatus{Method: vpoolv1alpha1.FencingRedfish, StartedAt: ptr(ago(90 * time.Second))}
	fencing.Status.Conditions = []metav1.Condition{cond("FencingReady", metav1.ConditionFalse, "BMCUnreachable", time.Hour)}
	completed := func(name string, at time.Duration, verified string) *vpoolv1alpha1.PoolBackup {
		b := &vpoolv1alpha1.PoolBackup{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name},
			Spec:   vpoolv1alpha1.PoolBackupSpec{PoolRef: vpoolv1alpha1.PoolReference{Name: "p"}},
			Status: vpoolv1alpha1.PoolBackupStatus{Phase: vpoolv1alpha1.BackupCompleted, CompletedAt: ptr(ago(at))}}
		if verified != "" {
			b.Annotations = map[string]string{metrics.AnnotationVerifiedAt: verified}
		}
		return b
	}
	objs := []client.Object{pool,
		host("h1", vpoolv1alpha1.HostPhaseLive), host("h2", vpoolv1alpha1.HostPhaseUnreachable,
			cond("Heartbeat", metav1.ConditionFalse, "HeartbeatStale", 5*time.Minute)), fencing,
		host("h4", vpoolv1alpha1.HostPhaseFenced),
		vm("a", vpoolv1alpha1.PowerRunning), vm("b", vpoolv1alpha1.PowerRunning), vm("c", ""),
		vdi("a-root", "h1"), vdi("b-root", "h4"), vdi("c-root", "gone"),
		completed("old", 30*time.Hour, now.Add(-20*time.Hour).Format(time.RFC3339)), completed("new", 7*time.Hour, ""),
		&vpoolv1alpha1.PoolBackup{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "failed"},
			Spec:   vpoolv1alpha1.PoolBackupSpec{PoolRef: vpoolv1alpha1.PoolReference{Name: "p"}},
			Status: vpoolv1alpha1.PoolBackupStatus{Phase: vpoolv1alpha1.BackupFailed}},
	}
	s := runtime.NewScheme()
	g.Expect(vpoolv1alpha1.AddToScheme(s)).To(Succeed())
	c := &metrics.PoolCollector{Reader: fake.NewClientBuilder().WithScheme(s).WithObjects(objs...).Build(),
		Clock: clocktesting.NewFakePassiveClock(now)}

	want := `
# HELP poolkeeper_hosts Hosts of a pool by phase.
# TYPE poolkeeper_hosts gauge
poolkeeper_hosts{namespace="ns",phase="Fenced",pool="p"} 1
poolkeeper_hosts{namespace="ns",phase="Fencing",pool="p"} 1
poolkeeper_hosts{namespace="ns",phase="Forgotten",pool="p"} 0
poolkeeper_hosts{namespace="ns",phase="Live",pool="p"} 1
poolkeeper_hosts{namespace="ns",phase="Pending",pool="p"} 0
poolkeeper_hosts{namespace="ns",phase="Unreachable",pool="p"} 1
# HELP poolkeeper_vms VMs of a pool by power state (status.powerState).
# TYPE poolkeeper_vms gauge
poolkeeper_vms{namespace="ns",pool="p",power_state="Halted"} 1
poolkeeper_vms{namespace="ns",pool="p",power_state="Paused"} 0
poolkeeper_vms{namespace="ns",pool="p",power_state="Running"} 2
poolkeeper_vms{namespace="ns",pool="p",power_state="Suspended"} 0
poolkeeper_vms{namespace="ns",pool="p",power_state="Unknown"} 0
# HELP poolkeeper_host_unreachable_seconds Seconds since an Unreachable host's heartbeat went stale.
# TYPE poolkeeper_host_unreachable_seconds gauge
poolkeeper_host_unreachable_seconds{host="h2",namespace="ns",pool="p"} 300
# HELP poolkeeper_host_fencing_seconds Seconds a host has been in phase Fencing (since status.fencing.startedAt).
# TYPE poolkeeper_host_fencing_seconds gauge
poolkeeper_host_fencing_seconds{host="h3",method="Redfish",namespace="ns",pool="p"} 90
# HELP poolkeeper_host_fencing_ready 1 while the host's fencing device answers (condition FencingReady True), 0 while it does not.
# TYPE poolkeeper_host_fencing_ready gauge
poolkeeper_host_fencing_ready{host="h3",method="Redfish",namespace="ns",pool="p",reason="BMCUnreachable"} 0
# HELP poolkeeper_pool_fencing_allowed 1 while the pool may fence, 0 while the storm guard (or the fencing budget) holds.
# TYPE poolkeeper_pool_fencing_allowed gauge
poolkeeper_pool_fencing_allowed{namespace="ns",pool="p",reason="StormGuard"} 0
# HELP poolkeeper_pool_overcommitted 1 while the pool cannot keep capacity for hostFailuresToTolerate host failures.
# TYPE poolkeeper_pool_overcommitted gauge
poolkeeper_pool_overcommitted{namespace="ns",pool="p"} 1
# HELP poolkeeper_vdi_locks_held_by_fenced_hosts VDI RW locks held by a host that is Fenced, Forgotten or gone.
# TYPE poolkeeper_vdi_locks_held_by_fenced_hosts gauge
poolkeeper_vdi_locks_held_by_fenced_hosts{namespace="ns",pool="p"} 2
# HELP poolkeeper_pool_backup_interval_seconds Seconds between two runs of the pool's backup schedule (spec.backup.schedule).
# TYPE poolkeeper_pool_backup_interval_seconds gauge
poolkeeper_pool_backup_interval_seconds{namespace="ns",pool="p"} 21600
# HELP poolkeeper_pool_last_backup_timestamp_seconds When the pool's latest Completed PoolBackup completed, in seconds since the epoch.
# TYPE poolkeeper_pool_last_backup_timestamp_seconds gauge
poolkeeper_pool_last_backup_timestamp_seconds{namespace="ns",pool="p"} 1.7961012e+09
# HELP poolkeeper_pool_last_verification_timestamp_seconds When a backup of the pool last passed a verification (kubectl poolkeeper backup-verify, or spec.backup.verify), in seconds since the epoch.
# TYPE poolkeeper_pool_last_verification_timestamp_seconds gauge
poolkeeper_pool_last_verification_timestamp_seconds{namespace="ns",pool="p"} 1.7960544e+09
`
	g.Expect(testutil.CollectAndCompare(c, strings.NewReader(want), metrics.HostsName, metrics.VMsName, metrics.HostUnreachableName,
		metrics.HostFencingName, metrics.HostFencingReadyName, metrics.PoolFencingAllowedName, metrics.PoolOvercommittedName,
		metrics.VDILocksFencedName, metrics.BackupIntervalName, metrics.LastBackupName, metrics.LastVerificationName)).To(Succeed())
	g.Expect(testutil.CollectAndLint(c)).To(BeEmpty())
}

func ptr[T any](v T) *T { return &v }
