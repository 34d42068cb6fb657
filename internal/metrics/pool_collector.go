package metrics

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/internal/schedule"
)

// The gauges PoolCollector exports, by name. Every one has the labels
// namespace and pool; the per-host ones also host.
const (
	// HostsName: hosts of a pool by phase (every phase, 0 included).
	HostsName = "poolkeeper_hosts"
	// VMsName: VMs of a pool by power state (every state, 0 included).
	VMsName = "poolkeeper_vms"
	// HostUnreachableName: how long an Unreachable host has been silent.
	HostUnreachableName = "poolkeeper_host_unreachable_seconds"
	// HostFencingName: how long a host has been in phase Fencing.
	HostFencingName = "poolkeeper_host_fencing_seconds"
	// HostFencingReadyName: 1 while a host's fencing device (its BMC)
	// answers, 0 while it does not (condition FencingReady).
	HostFencingReadyName = "poolkeeper_host_fencing_ready"
	// PoolReadyName: the Pool's Ready condition, 1 or 0.
	PoolReadyName = "poolkeeper_pool_ready"
	// PoolFencingAllowedName: 0 while the storm guard holds.
	PoolFencingAllowedName = "poolkeeper_pool_fencing_allowed"
	// PoolOvercommittedName: 1 while the pool cannot honour
	// hostFailuresToTolerate.
	PoolOvercommittedName = "poolkeeper_pool_overcommitted"
	// VDILocksFencedName: VDI locks held by a host that is Fenced,
	// Forgotten or gone; they should be released within moments.
	VDILocksFencedName = "poolkeeper_vdi_locks_held_by_fenced_hosts"
	// PoolCreatedName: when the Pool was created.
	PoolCreatedName = "poolkeeper_pool_created_timestamp_seconds"
	// BackupIntervalName: the interval of the pool's backup schedule.
	BackupIntervalName = "poolkeeper_pool_backup_interval_seconds"
	// LastBackupName: when the pool's latest Completed backup completed.
	LastBackupName = "poolkeeper_pool_last_backup_timestamp_seconds"
	// LastVerificationName: when a backup of the pool last passed
	// kubectl poolkeeper backup-verify or the scheduled verification of
	// spec.backup.verify (AnnotationVerifiedAt).
	LastVerificationName = "poolkeeper_pool_last_verification_timestamp_seconds"
)

var (
	poolLabels = []string{"namespace", "pool"}
	hostLabels = []string{"namespace", "pool", "host"}

	hostsDesc = prometheus.NewDesc(HostsName, "Hosts of a pool by phase.", append(poolLabels, "phase"), nil)
	vmsDesc   = prometheus.NewDesc(VMsName, "VMs of a pool by power state (status.powerState).",
		append(poolLabels, "power_state"), nil)
	unreachableDesc = prometheus.NewDesc(HostUnreachableName,
		"Seconds since an Unreachable host's heartbeat went stale.", hostLabels, nil)
	fencingDesc = prometheus.NewDesc(HostFencingName, "Seconds a host has been in phase Fencing (since status.fencing.startedAt).",
		append(hostLabels, "method"), nil)
	fencingReadyDesc = prometheus.NewDesc(HostFencingReadyName,
		"1 while the host's fencing device answers (condition FencingReady True), 0 while it does not.",
		append(hostLabels, "method", "reason"), nil)
	poolReadyDesc = prometheus.NewDesc(PoolReadyName, "1 while the Pool is Ready, 0 otherwise.", append(poolLabels, "reason"), nil)
	allowedDesc   = prometheus.NewDesc(PoolFencingAllowedName,
		"1 while the pool may fence, 0 while the storm guard (or the fencing budget) holds.", append(poolLabels, "reason"), nil)
	overcommittedDesc = prometheus.NewDesc(PoolOvercommittedName,
		"1 while the pool cannot keep capacity for hostFailuresToTolerate host failures.", poolLabels, nil)
	locksFencedDesc = prometheus.NewDesc(VDILocksFencedName,
		"VDI RW locks held by a host that is Fenced, Forgotten or gone.", poolLabels, nil)
	createdDesc  = prometheus.NewDesc(PoolCreatedName, "When the Pool was created, in seconds since the epoch.", poolLabels, nil)
	intervalDesc = prometheus.NewDesc(BackupIntervalName,
		"Seconds between two runs of the pool's backup schedule (spec.backup.schedule).", poolLabels, nil)
	lastBackupDesc = prometheus.NewDesc(LastBackupName,
		"When the pool's latest Completed PoolBackup completed, in seconds since the epoch.", poolLabels, nil)
	lastVerifiedDesc = prometheus.NewDesc(LastVerificationName,
		"When a backup of the pool last passed a verification (kubectl poolkeeper backup-verify, or spec.backup.verify), in seconds since the epoch.", poolLabels, nil)
)

var (
	hostPhases = []vpoolv1alpha1.HostPhase{vpoolv1alpha1.HostPhasePending, vpoolv1alpha1.HostPhaseLive,
		vpoolv1alpha1.HostPhaseUnreachable, vpoolv1alpha1.HostPhaseFencing, vpoolv1alpha1.HostPhaseFenced,
		vpoolv1alpha1.HostPhaseForgotten}
	powerStates = []vpoolv1alpha1.PowerState{vpoolv1alpha1.PowerRunning, vpoolv1alpha1.PowerHalted,
		vpoolv1alpha1.PowerSuspended, vpoolv1alpha1.PowerPaused, vpoolv1alpha1.PowerUnknown}
)

// PoolCollector computes the pool gauges at scrape time from the objects
// Reader holds: give it the manager's cache, which the controllers fill
// anyway, so a scrape costs no API request. It writes nothing.
type PoolCollector struct {
	Reader client.Reader
	Clock  clock.PassiveClock
	// Timeout bounds the lists of one scrape; 10s when zero.
	Timeout time.Duration
	// OnError is told when a list fails; the scrape then has no pool gauges.
	OnError func(error)
}

var _ prometheus.Collector = (*PoolCollector)(nil)

// Describe sends the descriptors of every gauge.
func (c *PoolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{hostsDesc, vmsDesc, unreachableDesc, fencingDesc, fencingReadyDesc, poolReadyDesc,
		allowedDesc, overcommittedDesc, locksFencedDesc, createdDesc, intervalDesc, lastBackupDesc, lastVerifiedDesc} {
		ch <- d
	}
}

// poolKey names a pool across namespaces.
type poolKey struct{ namespace, name string }

// Collect lists pools, hosts, VMs, VDIs and PoolBackups and sends the gauges.
func (c *PoolCollector) Collect(ch chan<- prometheus.Metric) {
	timeout := c.Timeout
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var pools vpoolv1alpha1.PoolList
	var hosts vpoolv1alpha1.HostList
	var vms vpoolv1alpha1.VirtualMachineList
	var vdis vpoolv1alpha1.VirtualDiskList
	var backups vpoolv1alpha1.PoolBackupList
	for _, l := range []client.ObjectList{&pools, &hosts, &vms, &vdis, &backups} {
		// Read only: the cache's objects are not copied.
		if err := c.Reader.List(ctx, l, client.UnsafeDisableDeepCopy); err != nil {
			if c.OnError != nil {
				c.OnError(err)
			}
			return
		}
	}
	now := c.Clock.Now()
	known := map[poolKey]bool{}
	for i := range pools.Items {
		p := &pools.Items[i]
		known[poolKey{p.Namespace, p.Name}] = true
		collectPool(ch, p, now)
	}
	phases := collectHosts(ch, known, hosts.Items, now)
	collectVMs(ch, known, vms.Items)
	collectLocks(ch, known, vdis.Items, phases)
	collectBackups(ch, known, backups.Items)
}

func gauge(ch chan<- prometheus.Metric, d *prometheus.Desc, v float64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}

func bit(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func unixSeconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

func collectPool(ch chan<- prometheus.Metric, p *vpoolv1alpha1.Pool, now time.Time) {
	ns, name := p.Namespace, p.Name
	gauge(ch, createdDesc, unixSeconds(p.CreationTimestamp.Time), ns, name)
	if c := meta.FindStatusCondition(p.Status.Conditions, vpoolv1alpha1.ConditionReady); c != nil {
		gauge(ch, poolReadyDesc, bit(c.Status == metav1.ConditionTrue), ns, name, c.Reason)
	}
	if c := meta.FindStatusCondition(p.Status.Conditions, vpoolv1alpha1.PoolFencingAllowed); c != nil {
		gauge(ch, allowedDesc, bit(c.Status != metav1.ConditionFalse), ns, name, c.Reason)
	}
	gauge(ch, overcommittedDesc, bit(meta.IsStatusConditionTrue(p.Status.Conditions, vpoolv1alpha1.PoolOvercommitted)), ns, name)
	if b := p.Effective().Backup; b != nil {
		// An invalid schedule has no interval; the Pool is Stalled and says so.
		if s, err := schedule.Parse(b.Schedule); err == nil {
			next := s.Next(now)
			gauge(ch, intervalDesc, s.Next(next).Sub(next).Seconds(), ns, name)
		}
	}
}

// collectHosts sends the host gauges of known pools and returns each
// host's phase.
func collectHosts(ch chan<- prometheus.Metric, known map[poolKey]bool, hosts []vpoolv1alpha1.Host,
	now time.Time) map[poolKey]vpoolv1alpha1.HostPhase {
	counts := map[poolKey]map[vpoolv1alpha1.HostPhase]int{}
	for k := range known {
		counts[k] = map[vpoolv1alpha1.HostPhase]int{}
	}
	phases := map[poolKey]vpoolv1alpha1.HostPhase{}
	for i := range hosts {
		h := &hosts[i]
		k := poolKey{h.Namespace, h.Spec.PoolRef.Name}
		if !known[k] {
			continue
		}
		phase := h.Status.Phase
		if phase == "" {
			phase = vpoolv1alpha1.HostPhasePending
		}
		counts[k][phase]++
		phases[poolKey{h.Namespace, h.Name}] = phase
		method := string(h.Spec.Fencing.Method)
		if method == "" {
			method = string(vpoolv1alpha1.FencingAgent)
		}
		switch phase {
		case vpoolv1alpha1.HostPhaseUnreachable:
			since := h.Status.LastHeartbeatTime
			if c := meta.FindStatusCondition(h.Status.Conditions, vpoolv1alpha1.HostHeartbeat); c != nil && c.Status != metav1.ConditionTrue {
				since = &c.LastTransitionTime
			}
			if since != nil {
				gauge(ch, unreachableDesc, now.Sub(since.Time).Seconds(), h.Namespace, k.name, h.Name)
			}
		case vpoolv1alpha1.HostPhaseFencing:
			if f := h.Status.Fencing; f != nil && f.StartedAt != nil {
				gauge(ch, fencingDesc, now.Sub(f.StartedAt.Time).Seconds(), h.Namespace, k.name, h.Name, method)
			}
		}
		if c := meta.FindStatusCondition(h.Status.Conditions, vpoolv1alpha1.HostFencingReady); c != nil {
			gauge(ch, fencingReadyDesc, bit(c.Status == metav1.ConditionTrue), h.Namespace, k.name, h.Name, method, c.Reason)
		}
	}
	for k, byPhase := range counts {
		for _, phase := range hostPhases {
			gauge(ch, hostsDesc, float64(byPhase[phase]), k.namespace, k.name, string(phase))
		}
	}
	return phases
}

func collectVMs(ch chan<- prometheus.Metric, known map[poolKey]bool, vms []vpoolv1alpha1.VirtualMachine) {
	counts := map[poolKey]map[vpoolv1alpha1.PowerState]int{}
	for k := range known {
		counts[k] = map[vpoolv1alpha1.PowerState]int{}
	}
	for i := range vms {
		vm := &vms[i]
		k := poolKey{vm.Namespace, vm.Spec.PoolRef.Name}
		if !known[k] {
			continue
		}
		ps := vm.Status.PowerState
		if ps == "" {
			ps = vpoolv1alpha1.PowerHalted
		}
		counts[k][ps]++
	}
	for k, byState := range counts {
		for _, ps := range powerStates {
			gauge(ch, vmsDesc, float64(byState[ps]), k.namespace, k.name, string(ps))
		}
	}
}

func collectLocks(ch chan<- prometheus.Metric, known map[poolKey]bool, vdis []vpoolv1alpha1.VirtualDisk,
	phases map[poolKey]vpoolv1alpha1.HostPhase) {
	counts := map[poolKey]int{}
	for k := range known {
		counts[k] = 0
	}
	for i := range vdis {
		d := &vdis[i]
		k := poolKey{d.Namespace, d.Spec.PoolRef.Name}
		if !known[k] || d.Status.Lock == nil {
			continue
		}
		switch phase, ok := phases[poolKey{d.Namespace, d.Status.Lock.Host}]; {
		case !ok, phase == vpoolv1alpha1.HostPhaseFenced, phase == vpoolv1alpha1.HostPhaseForgotten:
			counts[k]++
		}
	}
	for k, n := range counts {
		gauge(ch, locksFencedDesc, float64(n), k.namespace, k.name)
	}
}

func collectBackups(ch chan<- prometheus.Metric, known map[poolKey]bool, backups []vpoolv1alpha1.PoolBackup) {
	last, verified := map[poolKey]time.Time{}, map[poolKey]time.Time{}
	for i := range backups {
		b := &backups[i]
		k := poolKey{b.Namespace, b.Spec.PoolRef.Name}
		if !known[k] {
			continue
		}
		if b.Status.Phase == vpoolv1alpha1.BackupCompleted && b.Status.CompletedAt != nil && b.Status.CompletedAt.After(last[k]) {
			last[k] = b.Status.CompletedAt.Time
		}
		if t, ok := VerifiedAt(b); ok && t.After(verified[k]) {
			verified[k] = t
		}
	}
	for k, t := range last {
		gauge(ch, lastBackupDesc, unixSeconds(t), k.namespace, k.name)
	}
	for k, t := range verified {
		gauge(ch, lastVerifiedDesc, unixSeconds(t), k.namespace, k.name)
	}
}
