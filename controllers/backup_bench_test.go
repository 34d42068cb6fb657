package controllers_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/controllers"
	"github.com/poolkeeper/poolkeeper/internal/backup"
	"github.com/poolkeeper/poolkeeper/internal/liveness"
	"github.com/poolkeeper/poolkeeper/internal/testutil"
)

// BenchmarkBackupRestore takes a PoolBackup of a large pool with the real
// PoolBackup controller, loses the pool, restores it through a Pool with
// spec.restoreFrom, and compares both with what the API server alone needs:
// a plain List of the pool (the dump's floor) and plain creates of the same
// objects (the restore's floor). It reports figures and never asserts a
// timing; it fails only when the backup or the restore does not work.
//
// It runs its scenario once, whatever b.N, and only when selected by name
// (-bench BackupRestore) or with POOLKEEPER_BENCH_BACKUP=1, so that
// `make bench` (-bench .) does not spend many minutes on it:
//
//	go test ./controllers/ -run '^$' -bench BenchmarkBackupRestore -benchtime 1x -timeout 60m
//
// POOLKEEPER_BENCH_HOSTS (default 1000) and POOLKEEPER_BENCH_VMS (default
// 20000) size the pool; every VM has two VDIs on one shared SR.
// POOLKEEPER_BENCH_SETTLE_MAX (default 5m), POOLKEEPER_BENCH_DUMP_MAX
// (15m) and POOLKEEPER_BENCH_RESTORE_MAX (20m) bound the waits: a restore
// still running at its bound is reported with its progress, and the
// benchmark fails after its report. POOLKEEPER_BENCH_PROFILE=DIR writes a
// CPU profile of the process (the manager runs in it) for each phase;
// POOLKEEPER_BENCH_LOGS=1 prints the manager's logs.
// POOLKEEPER_BENCH_CACHE_SYNC_TIMEOUT (e.g. 60m) replaces controller-runtime's
// 2m CacheSyncTimeout for the benchmark's manager: a diagnostic knob, not the
// product's configuration. POOLKEEPER_BENCH_CONTROLLERS=backup runs only the
// PoolBackup and Pool reconcilers, to measure the dump and the restore without
// the other controllers' reaction to every object.
// POOLKEEPER_BENCH_QPS sets the client-side rate limit (QPS, and Burst twice
// it) of the manager and of the floors' clients alike; -1 is none, as the
// product's manager runs (ctrl.GetConfig); default: the suite's 500/1000.
func BenchmarkBackupRestore(b *testing.B) {
	if os.Getenv("POOLKEEPER_BENCH_BACKUP") != "1" && !benchSelected("BackupRestore") {
		b.Skip("select it by name (-bench BenchmarkBackupRestore) or set POOLKEEPER_BENCH_BACKUP=1: it takes minutes")
	}
	b.StopTimer()
	bb := &backupBench{b: b, hosts: envInt(b, "POOLKEEPER_BENCH_HOSTS", 1000), vms: envInt(b, "POOLKEEPER_BENCH_VMS", 20000),
		settleMax:        envDuration(b, "POOLKEEPER_BENCH_SETTLE_MAX", 5*time.Minute),
		dumpMax:          envDuration(b, "POOLKEEPER_BENCH_DUMP_MAX", 15*time.Minute),
		restoreMax:       envDuration(b, "POOLKEEPER_BENCH_RESTORE_MAX", 20*time.Minute),
		profileDir:       os.Getenv("POOLKEEPER_BENCH_PROFILE"),
		cacheSyncTimeout: envDuration(b, "POOLKEEPER_BENCH_CACHE_SYNC_TIMEOUT", 0),
		onlyBackup:       os.Getenv("POOLKEEPER_BENCH_CONTROLLERS") == "backup",
		cfg:              rest.CopyConfig(restConfig)}
	if v := os.Getenv("POOLKEEPER_BENCH_QPS"); v != "" {
		qps, err := strconv.ParseFloat(v, 32)
		if err != nil || (qps <= 0 && qps != -1) {
			b.Fatalf("POOLKEEPER_BENCH_QPS=%q: want a positive number or -1", v)
		}
		bb.cfg.QPS, bb.cfg.Burst = float32(qps), max(int(2*qps), 0)
	}
	if v := os.Getenv("POOLKEEPER_BENCH_CONTROLLERS"); v != "" && v != "all" && v != "backup" {
		b.Fatalf("POOLKEEPER_BENCH_CONTROLLERS=%q: want all or backup", v)
	}
	bb.run()
}

// benchSelected says whether the -bench pattern names the benchmark, rather
// than selecting everything.
func benchSelected(name string) bool {
	f := flag.Lookup("test.bench")
	return f != nil && strings.Contains(f.Value.String(), name)
}

func envInt(b *testing.B, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		b.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}

func envDuration(b *testing.B, name string, def time.Duration) time.Duration {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		b.Fatalf("%s=%q: want a positive duration", name, v)
	}
	return d
}

const (
	benchPool     = "p"
	benchRestored = "p2"
	benchBackup   = "b"
	benchKey      = "k"
	benchSR       = "nfs"
	benchWorkers  = 16
	benchPoll     = 50 * time.Millisecond
)

type backupBench struct {
	b          *testing.B
	hosts, vms int
	settleMax  time.Duration
	dumpMax    time.Duration
	restoreMax time.Duration
	profileDir string
	// cacheSyncTimeout replaces controller-runtime's 2m when positive.
	cacheSyncTimeout time.Duration
	// onlyBackup runs only the PoolBackup and Pool reconcilers.
	onlyBackup bool
	// cfg is the manager's and the floors' client configuration.
	cfg         *rest.Config
	ns          string
	mgr         *benchManager
	profileFile *os.File
	fast        client.Client // setup and teardown: QPS 2000 / Burst 4000
	errs        *errorLog

	setup, settleDump, settleRestore, lose time.Duration
	listFloor, listExact                   time.Duration
	// listLoaded is the list floor measured again right before the dump, in
	// the same process as the manager and its filled cache: the dump's ratio
	// is taken to it.
	listLoaded                 time.Duration
	dump, readBack, open, seal time.Duration
	size                       int64
	chunks                     int
	dumpMem, restoreMem        memPeak
	dumpCPU, restoreCPU        cpuTimes
	// restoreReqs and floorReqs are the API server's requests during the
	// restore and during the 16-way create floor.
	restoreReqs, floorReqs apiRequests
	// afterRestore is how long the manager took to go quiet after Restored,
	// and afterRestoreReqs what it asked of the API server meanwhile.
	afterRestore                        time.Duration
	afterRestoreQuiet                   bool
	afterRestoreReqs                    apiRequests
	restore, firstCreated               time.Duration
	created                             vpoolv1alpha1.BackupCounts
	floorSeq, floorPar                  time.Duration
	settleDumpQuiet, settleRestoreQuiet bool
	restoreMsg, restoreProgress         string
	restoreDone                         bool
	cpu0                                cpuTimes // at the start, for the whole run's figures
	start                               time.Time
	stall                               struct {
		pending float64
		cpu     time.Duration
		since   time.Time
		checked time.Time
		dumped  bool
	}
}

func (bb *backupBench) objects() int { return bb.hosts + 1 + 3*bb.vms }

// mode names what differs from the product's manager, if anything.
func (bb *backupBench) mode() string {
	var m []string
	if bb.onlyBackup {
		m = append(m, "controllers=PoolBackup+Pool only")
	}
	if bb.cacheSyncTimeout > 0 {
		m = append(m, "cacheSyncTimeout="+bb.cacheSyncTimeout.String())
	}
	if len(m) == 0 {
		return ""
	}
	return " (" + strings.Join(m, ", ") + ")"
}

func (bb *backupBench) run() {
	b := bb.b
	ctx := context.Background()
	fastCfg := rest.CopyConfig(restConfig)
	fastCfg.QPS, fastCfg.Burst = 2000, 4000
	var err error
	if bb.fast, err = client.New(fastCfg, client.Options{Scheme: testutil.Scheme}); err != nil {
		b.Fatal(err)
	}
	say("backup benchmark: hosts=%d vms=%d vdis=%d (%d pool objects), GOMAXPROCS=%d",
		bb.hosts, bb.vms, 2*bb.vms, bb.objects(), runtime.GOMAXPROCS(0))
	bb.cpu0, bb.start = readCPU(), time.Now()

	// 1. Setup, not timed.
	start := time.Now()
	bb.ns = bb.namespace("pkbench-")
	bb.createSetup(ctx)
	bb.setup = time.Since(start)
	say("setup: %d objects created %d-way (QPS 2000/Burst 4000) in %s", bb.objects()+3, benchWorkers, secs(bb.setup))

	// 2. The dump's floor: the same uncached reader the controller reads with.
	bb.listFloor, bb.listExact = bb.measureListFloor(ctx, "before the manager starts")

	// 3. Dump with the real manager.
	bb.errs = &errorLog{phase: "start"}
	bb.mgr = startBenchManager(b, bb.cfg, bb.ns, bb.errs, bb.cacheSyncTimeout, bb.onlyBackup)
	bb.profile("settle-start")
	bb.settleDump, bb.settleDumpQuiet = bb.settle(ctx, "manager start (initial reconcile of every object)")
	bb.stopProfile()
	bb.listLoaded, _ = bb.measureListFloor(ctx, "with the manager running, before the dump")
	bb.profile("dump")
	bb.errs.setPhase("dump")
	bb.measureDump(ctx)
	bb.stopProfile()

	// 4. Restore into the same namespace after losing the pool.
	bb.errs.setPhase("loss")
	bb.losePool(ctx)
	bb.settleRestore, bb.settleRestoreQuiet = bb.settle(ctx, "after the loss")
	bb.profile("restore")
	bb.errs.setPhase("restore")
	bb.measureRestore(ctx)
	bb.stopProfile()
	if bb.restoreDone {
		reqs0 := readAPIRequests(ctx, restConfig)
		bb.afterRestore, bb.afterRestoreQuiet = bb.settle(ctx, "after the restore (the work the restore deferred)")
		bb.afterRestoreReqs = readAPIRequests(ctx, restConfig).since(reqs0)
	}
	bb.errs.setPhase("")
	bb.mgr.Stop()
	say("manager stopped (the create floors run without it)")

	// 5. The restore's floors: plain creates, one at a time and with as
	// many workers as the restore.
	bb.floorSeq = bb.createFloor(ctx, 1)
	bb.floorPar = bb.createFloor(ctx, controllers.RestoreWorkers)

	bb.report()
	if !bb.restoreDone {
		b.Errorf("the restore did not complete within %s: %s", bb.restoreMax, bb.restoreProgress)
	}
}

// profile writes a CPU profile of the phase to the profile directory, if
// one is set, until stopProfile.
func (bb *backupBench) profile(phase string) {
	if bb.profileDir == "" {
		return
	}
	f, err := os.Create(filepath.Join(bb.profileDir, phase+".prof"))
	if err != nil {
		bb.b.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		say("no CPU profile of %s: %v", phase, err)
		return
	}
	bb.profileFile = f
}

func (bb *backupBench) stopProfile() {
	if bb.profileFile == nil {
		return
	}
	pprof.StopCPUProfile()
	_ = bb.profileFile.Close()
	say("CPU profile written to %s", bb.profileFile.Name())
	bb.profileFile = nil
}

// say prints at once: a benchmark's b.Logf only shows at its end, and a
// -timeout panic would lose it.
func say(format string, args ...any) {
	fmt.Printf("backup-bench: "+format+"\n", args...)
}

func secs(d time.Duration) string { return fmt.Sprintf("%.2fs", d.Seconds()) }

func mib(n uint64) float64 { return float64(n) / (1 << 20) }

func (bb *backupBench) namespace(prefix string) string {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix}}
	if err := bb.fast.Create(context.Background(), ns); err != nil {
		bb.b.Fatal(err)
	}
	return ns.Name
}

// poolObjects builds the pool's objects in the restore's order: the SR, the
// VDIs, the VMs, then the Hosts.
func (bb *backupBench) poolObjects(ns, pool string) []client.Object {
	objs := make([]client.Object, 0, bb.objects())
	sr := &vpoolv1alpha1.StorageRepository{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: benchSR}}
	sr.Spec.PoolRef.Name, sr.Spec.Type, sr.Spec.Shared = pool, "nfs", true
	objs = append(objs, sr)
	size := resource.MustParse("10Gi")
	for i := range bb.vms {
		for _, d := range []string{"root", "data"} {
			vdi := &vpoolv1alpha1.VirtualDisk{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("vm-%05d-%s", i, d)}}
			vdi.Spec.PoolRef.Name, vdi.Spec.StorageRepository, vdi.Spec.Size = pool, benchSR, size
			objs = append(objs, vdi)
		}
	}
	cpu, mem := resource.MustParse("1"), resource.MustParse("1Gi")
	for i := range bb.vms {
		vm := &vpoolv1alpha1.VirtualMachine{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("vm-%05d", i)}}
		vm.Spec.PoolRef.Name = pool
		vm.Spec.PowerState = vpoolv1alpha1.DesiredHalted
		vm.Spec.HA.RestartPriority = vpoolv1alpha1.RestartAlways
		vm.Spec.Resources = vpoolv1alpha1.VMResources{CPU: &cpu, Memory: &mem}
		for _, d := range []string{"root", "data"} {
			vm.Spec.Disks = append(vm.Spec.Disks, vpoolv1alpha1.VMDisk{Name: d, VirtualDisk: fmt.Sprintf("vm-%05d-%s", i, d),
				Mode: vpoolv1alpha1.DiskRW})
		}
		objs = append(objs, vm)
	}
	for i := range bb.hosts {
		h := &vpoolv1alpha1.Host{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("host-%04d", i)}}
		h.Spec.PoolRef.Name = pool
		h.Spec.Address = h.Name + ".example"
		h.Spec.Capacity.CPU.Set(16)
		h.Spec.Capacity.Memory.Set(64 << 30)
		objs = append(objs, h)
	}
	return objs
}

func (bb *backupBench) createSetup(ctx context.Context) {
	b := bb.b
	key := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: bb.ns, Name: benchKey}, Data: map[string][]byte{"key": backupKey}}
	p := &vpoolv1alpha1.Pool{ObjectMeta: metav1.ObjectMeta{Namespace: bb.ns, Name: benchPool}}
	p.Spec.HA.HostFailuresToTolerate = 1
	p.Spec.Fencing.MaxConcurrent, p.Spec.Fencing.MaxUnhealthyPercent = 1, 50
	for _, o := range []client.Object{key, p} {
		if err := bb.fast.Create(ctx, o); err != nil {
			b.Fatal(err)
		}
	}
	if err := createObjects(ctx, bb.fast, benchWorkers, bb.poolObjects(bb.ns, benchPool)); err != nil {
		b.Fatal(err)
	}
}

// createObjects creates objs with the given number of workers; with one,
// in order, one at a time.
func createObjects(ctx context.Context, c client.Client, workers int, objs []client.Object) error {
	if workers <= 1 {
		for _, o := range objs {
			if err := c.Create(ctx, o); err != nil {
				return fmt.Errorf("creating %T %s: %w", o, o.GetName(), err)
			}
		}
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	next := make(chan client.Object)
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for o := range next {
				if err := c.Create(ctx, o); err != nil {
					once.Do(func() { first = fmt.Errorf("creating %T %s: %w", o, o.GetName(), err); cancel() })
				}
			}
		}()
	}
feed:
	for _, o := range objs {
		select {
		case next <- o:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	return first
}

func poolLists() []client.ObjectList {
	return []client.ObjectList{&vpoolv1alpha1.HostList{}, &vpoolv1alpha1.StorageRepositoryList{},
		&vpoolv1alpha1.VirtualDiskList{}, &vpoolv1alpha1.VirtualMachineList{}}
}

// measureListFloor times, three times each, a plain List of the pool's four
// kinds and the same four lists at one revision (what readSnapshot reads;
// here one after the other, where readSnapshot makes the four at once),
// through a direct client like the manager's API reader; it keeps the best.
func (bb *backupBench) measureListFloor(ctx context.Context, when string) (time.Duration, time.Duration) {
	b := bb.b
	reader, err := client.New(bb.cfg, client.Options{Scheme: testutil.Scheme})
	if err != nil {
		b.Fatal(err)
	}
	var plain, exact []time.Duration
	for range 3 {
		runtime.GC()
		start := time.Now()
		n := 0
		for _, l := range poolLists() {
			if err := reader.List(ctx, l, client.InNamespace(bb.ns)); err != nil {
				b.Fatal(err)
			}
			n += meta.LenList(l)
		}
		plain = append(plain, time.Since(start))
		if n != bb.objects() {
			b.Fatalf("listed %d objects, want %d", n, bb.objects())
		}

		runtime.GC()
		start = time.Now()
		pools := &vpoolv1alpha1.PoolList{}
		if err := reader.List(ctx, pools, client.InNamespace(bb.ns)); err != nil {
			b.Fatal(err)
		}
		at := &client.ListOptions{Namespace: bb.ns, Raw: &metav1.ListOptions{
			ResourceVersion: pools.ResourceVersion, ResourceVersionMatch: metav1.ResourceVersionMatchExact}}
		for _, l := range poolLists() {
			if err := reader.List(ctx, l, at); err != nil {
				b.Fatal(err)
			}
		}
		exact = append(exact, time.Since(start))
	}
	floor, atRevision := minDuration(plain), minDuration(exact)
	say("list floor, %s: plain List of the 4 kinds %v, best %s; at one revision, one after the other %v, best %s",
		when, roundAll(plain), secs(floor), roundAll(exact), secs(atRevision))
	return floor, atRevision
}

func minDuration(ds []time.Duration) time.Duration {
	m := ds[0]
	for _, d := range ds[1:] {
		m = min(m, d)
	}
	return m
}

func roundAll(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(time.Millisecond)
	}
	return out
}

// benchManager is the suite's manager, with what its Start returned.
type benchManager struct {
	*manager
	started time.Time
	mu      sync.Mutex
	err     error
}

// exited reports whether the manager stopped by itself, and why.
func (m *benchManager) exited() (bool, error) {
	select {
	case <-m.done:
		m.mu.Lock()
		defer m.mu.Unlock()
		return true, m.err
	default:
		return false, nil
	}
}

// startBenchManager starts a manager as the suite's startManager does (same
// options, 4 workers per controller), for a benchmark, with a logger that
// keeps the reconcile errors for the report. A positive cacheSyncTimeout
// replaces controller-runtime's default (2m), which the product keeps.
// onlyBackup registers only the reconcilers of a backup (PoolBackup) and of
// a restore (Pool), with the index they use, instead of every reconciler.
func startBenchManager(b *testing.B, cfg *rest.Config, ns string, errs *errorLog, cacheSyncTimeout time.Duration, onlyBackup bool) *benchManager {
	b.Helper()
	sink := &errorSink{log: errs}
	if os.Getenv("POOLKEEPER_BENCH_LOGS") == "1" {
		sink.next = zap.New(zap.UseDevMode(true)).GetSink()
	}
	ctrlConfig := config.Controller{SkipNameValidation: ptr.To(true)}
	if cacheSyncTimeout > 0 {
		ctrlConfig.CacheSyncTimeout = cacheSyncTimeout
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 testutil.Scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Cache:                  controllers.CacheOptions(ns),
		Controller:             ctrlConfig,
		Logger:                 logr.New(sink),
	})
	if err != nil {
		b.Fatal(err)
	}
	opts := controllers.Options{Clock: clock.RealClock{}, MaxConcurrentReconciles: 4}
	if onlyBackup {
		setupBackupOnly(b, mgr, opts)
	} else if err := controllers.SetupWithManager(mgr, opts); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &benchManager{manager: &manager{cancel: cancel, done: make(chan struct{})}, started: time.Now()}
	go func() {
		defer close(m.done)
		err := mgr.Start(ctx)
		m.mu.Lock()
		m.err = err
		m.mu.Unlock()
	}()
	b.Cleanup(func() {
		if done, _ := m.exited(); !done {
			m.Stop()
		}
	})
	return m
}

// setupBackupOnly registers the PoolBackup and Pool reconcilers as
// controllers.SetupWithManager does, and the spec.poolRef.name index the
// Pool reconciler lists with.
func setupBackupOnly(b *testing.B, mgr ctrl.Manager, opts controllers.Options) {
	ctx := context.Background()
	idx := mgr.GetFieldIndexer()
	poolRef := map[client.Object]client.IndexerFunc{
		&vpoolv1alpha1.Host{}: func(o client.Object) []string { return []string{o.(*vpoolv1alpha1.Host).Spec.PoolRef.Name} },
		&vpoolv1alpha1.StorageRepository{}: func(o client.Object) []string {
			return []string{o.(*vpoolv1alpha1.StorageRepository).Spec.PoolRef.Name}
		},
		&vpoolv1alpha1.VirtualMachine{}: func(o client.Object) []string {
			return []string{o.(*vpoolv1alpha1.VirtualMachine).Spec.PoolRef.Name}
		},
		&vpoolv1alpha1.PoolBackup{}: func(o client.Object) []string {
			return []string{o.(*vpoolv1alpha1.PoolBackup).Spec.PoolRef.Name}
		},
	}
	for obj, fn := range poolRef {
		if err := idx.IndexField(ctx, obj, controllers.IndexPoolRef, fn); err != nil {
			b.Fatal(err)
		}
	}
	recorder := mgr.GetEventRecorder("poolkeeper")
	pool := &controllers.PoolReconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Recorder: recorder,
		Clock: opts.Clock, Tracker: liveness.NewTracker(opts.Clock)}
	pb := &controllers.PoolBackupReconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Clock: opts.Clock,
		Recorder: recorder}
	if err := pool.SetupWithManager(mgr, opts); err != nil {
		b.Fatal(err)
	}
	if err := pb.SetupWithManager(mgr, opts); err != nil {
		b.Fatal(err)
	}
}

// checkManager fails the benchmark, with what was measured so far, if the
// manager stopped by itself.
func (bb *backupBench) checkManager(phase string) {
	done, err := bb.mgr.exited()
	if !done {
		return
	}
	bb.stopProfile()
	say("MANAGER EXITED during %s, %s after it started: %v", phase, secs(time.Since(bb.mgr.started)), err)
	bb.diagnose()
	bb.partialReport(fmt.Sprintf("the manager exited during %s, %s after it started: %v", phase, secs(time.Since(bb.mgr.started)), err))
	bb.b.Fatalf("the manager exited during %s: %v", phase, err)
}

// partialReport prints what was measured before a failure.
func (bb *backupBench) partialReport(failure string) {
	var s strings.Builder
	fmt.Fprintf(&s, "backup benchmark: hosts=%d vms=%d vdis=%d%s\n", bb.hosts, bb.vms, 2*bb.vms, bb.mode())
	fmt.Fprintf(&s, "setup: %s; list floor: %s (at one revision %s)", secs(bb.setup), secs(bb.listFloor), secs(bb.listExact))
	if bb.dump > 0 {
		fmt.Fprintf(&s, "; dump: %s (ratio %.2f), stored %.1f MiB in %d chunks, peak heap %.0f MiB", secs(bb.dump),
			bb.dump.Seconds()/bb.listFloor.Seconds(), mib(uint64(bb.size)), bb.chunks, mib(bb.dumpMem.heapInuse))
	}
	fmt.Fprintf(&s, "\nFAILED: %s\n", failure)
	if bb.cacheSyncTimeout > 0 {
		fmt.Fprintf(&s, "- the manager's CacheSyncTimeout was raised to %s (not the product's 2m)\n", bb.cacheSyncTimeout)
	}
	fmt.Fprintf(&s, "- manager reconcile errors by phase and controller: %s\n", bb.errs.summary())
	fmt.Print(s.String())
	bb.b.Log("\n" + s.String())
}

// settle waits until the manager is quiet: for 3s its work queues empty with
// no reconcile running, at most 5 etcd revisions, and under a quarter of a
// core of this process (event handlers map events without queueing
// anything). It returns how long that took and whether it happened before
// settleMax.
func (bb *backupBench) settle(ctx context.Context, what string) (time.Duration, bool) {
	type sample struct {
		rev     uint64
		cpu     cpuTimes
		pending float64
	}
	start := time.Now()
	var samples []sample
	lastSay := start
	for time.Since(start) < bb.settleMax {
		samples = append(samples, sample{rev: bb.revision(ctx), cpu: readCPU(), pending: pendingWork()})
		if n := len(samples); n > 3 {
			a, z := samples[n-4], samples[n-1]
			busy := samples[n-3].pending+samples[n-2].pending+z.pending > 0
			used := z.cpu.sub(a.cpu)
			if !busy && z.rev-a.rev <= 5 && used.self < 750*time.Millisecond {
				d := time.Since(start)
				say("settled %s in %s", what, secs(d))
				return d, true
			}
			bb.watchStall(z.pending, z.cpu)
			bb.checkManager("settling (" + what + ")")
			if time.Since(lastSay) >= 30*time.Second {
				lastSay = time.Now()
				say("  settling %s: %s; over the last 3s %d writes, %.2f cores here, %.2f cores of other processes; %.0f queued or running reconciles",
					what, secs(time.Since(start)), z.rev-a.rev, used.self.Seconds()/3, used.foreign().Seconds()/3, z.pending)
			}
		}
		time.Sleep(time.Second)
	}
	d := time.Since(start)
	say("NOT settled %s after %s: going on with the manager still busy", what, secs(d))
	return d, false
}

// checkStall runs watchStall at most once a second.
func (bb *backupBench) checkStall() {
	if time.Since(bb.stall.checked) >= time.Second {
		bb.stall.checked = time.Now()
		bb.watchStall(pendingWork(), readCPU())
	}
}

// watchStall dumps every goroutine, once, when reconciles are queued but
// neither their number nor this process's CPU time has moved for 30s: the
// manager is stuck, not slow.
func (bb *backupBench) watchStall(pending float64, cpu cpuTimes) {
	now := time.Now()
	if pending == 0 || pending != bb.stall.pending || cpu.self-bb.stall.cpu > 300*time.Millisecond {
		bb.stall.pending, bb.stall.cpu, bb.stall.since = pending, cpu.self, now
		return
	}
	if bb.stall.dumped || now.Sub(bb.stall.since) < 30*time.Second {
		return
	}
	bb.stall.dumped = true
	dir := bb.profileDir
	if dir == "" {
		dir = os.TempDir()
	}
	name := filepath.Join(dir, fmt.Sprintf("stall-goroutines-%d.txt", os.Getpid()))
	f, err := os.Create(name)
	if err != nil {
		say("STALL: %.0f reconciles queued, no progress for %s; cannot dump goroutines: %v", pending, secs(now.Sub(bb.stall.since)), err)
		return
	}
	defer func() { _ = f.Close() }()
	_ = pprof.Lookup("goroutine").WriteTo(f, 2)
	say("STALL: %.0f reconciles queued and no CPU used for %s; every goroutine written to %s",
		pending, secs(now.Sub(bb.stall.since)), name)
}

// pendingWork is the reconciles queued or running in this process's
// controllers (the manager's workqueue_depth and active_workers metrics).
func pendingWork() float64 {
	families, err := metrics.Registry.Gather()
	if err != nil {
		return 0
	}
	var n float64
	for _, f := range families {
		if f.GetName() != "workqueue_depth" && f.GetName() != "controller_runtime_active_workers" {
			continue
		}
		for _, m := range f.GetMetric() {
			n += m.GetGauge().GetValue()
		}
	}
	return n
}

// revision is etcd's current revision, from a quorum list.
func (bb *backupBench) revision(ctx context.Context) uint64 {
	l := &vpoolv1alpha1.PoolBackupList{}
	if err := bb.fast.List(ctx, l, client.InNamespace(bb.ns), client.Limit(1)); err != nil {
		bb.b.Fatal(err)
	}
	rv, err := strconv.ParseUint(l.ResourceVersion, 10, 64)
	if err != nil {
		bb.b.Fatalf("list resourceVersion %q: %v", l.ResourceVersion, err)
	}
	return rv
}

func (bb *backupBench) measureDump(ctx context.Context) {
	b := bb.b
	runtime.GC()
	stopMem := sampleMem()
	cpu0 := readCPU()
	pb := &vpoolv1alpha1.PoolBackup{ObjectMeta: metav1.ObjectMeta{Namespace: bb.ns, Name: benchBackup}}
	pb.Spec.PoolRef.Name = benchPool
	pb.Spec.Storage.Type = vpoolv1alpha1.StorageSecret
	pb.Spec.Encryption.KeySecretRef.Name = benchKey
	b.StartTimer()
	start := time.Now()
	if err := k8s.Create(ctx, pb); err != nil {
		b.Fatal(err)
	}
	lastSay := start
	for {
		if err := k8s.Get(ctx, key(bb.ns, benchBackup), pb); err != nil {
			b.Fatal(err)
		}
		if pb.Status.Phase == vpoolv1alpha1.BackupCompleted || pb.Status.Phase == vpoolv1alpha1.BackupFailed {
			break
		}
		if time.Since(start) > bb.dumpMax {
			bb.diagnose()
			b.Fatalf("the PoolBackup is still %q after %s: %+v", pb.Status.Phase, bb.dumpMax, pb.Status.Conditions)
		}
		if time.Since(lastSay) >= 10*time.Second {
			lastSay = time.Now()
			say("  dump: %s, phase %q, %.0f reconciles queued or running", secs(time.Since(start)), pb.Status.Phase, pendingWork())
		}
		bb.checkStall()
		bb.checkManager("the dump")
		time.Sleep(benchPoll)
	}
	bb.dump = time.Since(start)
	b.StopTimer()
	bb.dumpCPU = readCPU().sub(cpu0)
	bb.dumpMem = stopMem()
	if pb.Status.Phase != vpoolv1alpha1.BackupCompleted {
		bb.diagnose()
		b.Fatalf("the backup failed: %+v", meta.FindStatusCondition(pb.Status.Conditions, vpoolv1alpha1.ConditionReady))
	}
	bb.size = pb.Status.SizeBytes
	if want := (vpoolv1alpha1.BackupCounts{Hosts: int32(bb.hosts), SRs: 1, VDIs: int32(2 * bb.vms), VMs: int32(bb.vms)}); *pb.Status.Counts != want {
		b.Fatalf("the backup counts %+v, want %+v", *pb.Status.Counts, want)
	}
	secrets := &corev1.SecretList{}
	if err := k8s.List(ctx, secrets, client.InNamespace(bb.ns), client.MatchingLabels{backup.LabelBackup: backup.LabelValue(benchBackup)}); err != nil {
		b.Fatal(err)
	}
	bb.chunks = len(secrets.Items)
	say("dump: Completed in %s, %d bytes in %d chunk Secrets (%s)", secs(bb.dump), bb.size, bb.chunks, pb.Status.Location)

	// What the dump's later steps cost on their own, in this process.
	reader, err := client.New(bb.cfg, client.Options{Scheme: testutil.Scheme})
	if err != nil {
		b.Fatal(err)
	}
	t := time.Now()
	data, err := (&backup.SecretStore{Client: k8s, Reader: reader}).Get(ctx, pb)
	if err != nil {
		b.Fatal(err)
	}
	bb.readBack = time.Since(t)
	t = time.Now()
	d, err := backup.Open(data, backupKey)
	if err != nil {
		b.Fatal(err)
	}
	bb.open = time.Since(t)
	t = time.Now()
	if _, err := backup.Seal(d, backupKey); err != nil {
		b.Fatal(err)
	}
	bb.seal = time.Since(t)
	say("dump parts, measured alone in the test: read back %d chunks %s, open %s, seal %s",
		bb.chunks, secs(bb.readBack), secs(bb.open), secs(bb.seal))
}

// losePool deletes the Pool and every object of it (DeleteAllOf per kind, in
// parallel) and waits until they are gone; the manager removes the Hosts'
// finalizers. The PoolBackup and its chunks stay.
func (bb *backupBench) losePool(ctx context.Context) {
	b := bb.b
	start := time.Now()
	if err := bb.fast.DeleteAllOf(ctx, &vpoolv1alpha1.Pool{}, client.InNamespace(bb.ns)); err != nil {
		b.Fatal(err)
	}
	kinds := []client.Object{&vpoolv1alpha1.VirtualMachine{}, &vpoolv1alpha1.VirtualDisk{},
		&vpoolv1alpha1.StorageRepository{}, &vpoolv1alpha1.Host{}}
	deleteAll := func() {
		errs := make([]error, len(kinds))
		var wg sync.WaitGroup
		for i, k := range kinds {
			wg.Go(func() {
				// A collection of tens of thousands outlives the API server's
				// request timeout (a timeout, or a stream the server resets);
				// the server goes on deleting, and what is left is deleted
				// again below.
				errs[i] = bb.fast.DeleteAllOf(ctx, k, client.InNamespace(bb.ns))
			})
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			say("deleting the pool's objects: %v; checking what is left", err)
		}
	}
	deleteAll()
	lastDelete := time.Now()
	for {
		left := 0
		for _, l := range poolLists() {
			if err := bb.fast.List(ctx, l, client.InNamespace(bb.ns), client.Limit(1)); err != nil {
				b.Fatal(err)
			}
			left += meta.LenList(l)
		}
		if left == 0 {
			break
		}
		bb.checkManager("the loss")
		if time.Since(start) > bb.settleMax {
			bb.diagnose()
			b.Fatalf("the pool's objects are not gone after %s", bb.settleMax)
		}
		if time.Since(lastDelete) > time.Minute {
			deleteAll() // in case a timed-out deletecollection stopped
			lastDelete = time.Now()
		}
		time.Sleep(250 * time.Millisecond)
	}
	bb.lose = time.Since(start)
	say("pool lost: every object deleted and gone in %s (not timed)", secs(bb.lose))
}

func (bb *backupBench) measureRestore(ctx context.Context) {
	b := bb.b
	runtime.GC()
	stopMem := sampleMem()
	cpu0 := readCPU()
	reqs0 := readAPIRequests(ctx, restConfig)
	p := &vpoolv1alpha1.Pool{ObjectMeta: metav1.ObjectMeta{Namespace: bb.ns, Name: benchRestored}}
	p.Spec.HA.HostFailuresToTolerate = 1
	p.Spec.Fencing.MaxConcurrent, p.Spec.Fencing.MaxUnhealthyPercent = 1, 50
	p.Spec.RestoreFrom = &vpoolv1alpha1.RestoreSource{BackupName: benchBackup}
	b.StartTimer()
	start := time.Now()
	if err := k8s.Create(ctx, p); err != nil {
		b.Fatal(err)
	}
	lastSay := start
	sr := &vpoolv1alpha1.StorageRepository{}
	for {
		if bb.firstCreated == 0 {
			if err := k8s.Get(ctx, key(bb.ns, benchSR), sr); err == nil {
				bb.firstCreated = time.Since(start)
			}
		}
		if err := k8s.Get(ctx, key(bb.ns, benchRestored), p); err != nil {
			b.Fatal(err)
		}
		c := meta.FindStatusCondition(p.Status.Conditions, vpoolv1alpha1.PoolRestored)
		if c != nil && c.Status == metav1.ConditionTrue {
			bb.restoreMsg = c.Message
			break
		}
		if c != nil && c.Reason != controllers.ReasonRestoring {
			bb.diagnose()
			b.Fatalf("the restore failed: %s: %s", c.Reason, c.Message)
		}
		if time.Since(lastSay) >= 15*time.Second || time.Since(start) > bb.restoreMax {
			lastSay = time.Now()
			bb.restoreProgress = fmt.Sprintf("after %s, %s VDIs, %s VMs and %s hosts exist", secs(time.Since(start)),
				bb.count(ctx, &vpoolv1alpha1.VirtualDiskList{}), bb.count(ctx, &vpoolv1alpha1.VirtualMachineList{}),
				bb.count(ctx, &vpoolv1alpha1.HostList{}))
			say("  restore: %s; %.0f reconciles queued or running", bb.restoreProgress, pendingWork())
		}
		bb.checkStall()
		bb.checkManager("the restore")
		if time.Since(start) > bb.restoreMax {
			bb.restore = time.Since(start)
			b.StopTimer()
			bb.restoreCPU = readCPU().sub(cpu0)
			bb.restoreReqs = readAPIRequests(ctx, restConfig).since(reqs0)
			bb.restoreMem = stopMem()
			say("restore NOT complete after %s: %s; condition %+v", secs(bb.restore), bb.restoreProgress, c)
			bb.diagnose()
			return
		}
		time.Sleep(benchPoll)
	}
	bb.restore = time.Since(start)
	b.StopTimer()
	bb.restoreDone = true
	bb.restoreCPU = readCPU().sub(cpu0)
	bb.restoreReqs = readAPIRequests(ctx, restConfig).since(reqs0)
	bb.restoreMem = stopMem()
	bb.created = p.Status.Restore.Created
	say("restore: Restored in %s (first object after %s): %s", secs(bb.restore), secs(bb.firstCreated), bb.restoreMsg)
	if want := (vpoolv1alpha1.BackupCounts{Hosts: int32(bb.hosts), SRs: 1, VDIs: int32(2 * bb.vms), VMs: int32(bb.vms)}); bb.created != want {
		b.Fatalf("the restore created %+v, want %+v", bb.created, want)
	}
}

// count is how many objects of a kind the namespace holds, from a one-item
// page (its remainingItemCount), or "?" when the server does not say.
func (bb *backupBench) count(ctx context.Context, l client.ObjectList) string {
	if err := bb.fast.List(ctx, l, client.InNamespace(bb.ns), client.Limit(1)); err != nil {
		return "?"
	}
	n := int64(meta.LenList(l))
	if r := l.GetRemainingItemCount(); r != nil {
		return strconv.FormatInt(n+*r, 10)
	}
	if l.GetContinue() == "" {
		return strconv.FormatInt(n, 10)
	}
	return "?"
}

// createFloor times plain creates of the pool's objects in a fresh namespace
// through a direct client with the manager's configuration (QPS and Burst),
// one at a time or with as many workers as the restore.
func (bb *backupBench) createFloor(ctx context.Context, workers int) time.Duration {
	b := bb.b
	c, err := client.New(bb.cfg, client.Options{Scheme: testutil.Scheme})
	if err != nil {
		b.Fatal(err)
	}
	ns := bb.namespace("pkfloor-")
	objs := bb.poolObjects(ns, benchPool)
	runtime.GC()
	cpu0 := readCPU()
	reqs0 := readAPIRequests(ctx, restConfig)
	start := time.Now()
	if err := createObjects(ctx, c, workers, objs); err != nil {
		b.Fatal(err)
	}
	d := time.Since(start)
	if workers > 1 {
		bb.floorReqs = readAPIRequests(ctx, restConfig).since(reqs0)
	}
	say("create floor (%d-way, QPS %.0f/Burst %d): %d objects in %s (%.0f/s); other processes used %.2f cores meanwhile",
		workers, bb.cfg.QPS, bb.cfg.Burst, len(objs), secs(d), float64(len(objs))/d.Seconds(),
		readCPU().sub(cpu0).foreign().Seconds()/d.Seconds())
	return d
}

// diagnose prints what can explain a backup or restore that fails or hangs.
func (bb *backupBench) diagnose() {
	say("manager reconcile errors: %s", bb.errs.summary())
	list := &corev1.EventList{}
	if err := k8s.List(context.Background(), list, client.InNamespace(bb.ns)); err == nil {
		reasons := map[string]int{}
		for _, e := range list.Items {
			if e.Type == corev1.EventTypeWarning || e.InvolvedObject.Kind == "Pool" || e.InvolvedObject.Kind == "PoolBackup" {
				reasons[e.InvolvedObject.Kind+"/"+e.Reason+": "+e.Message]++
			}
		}
		for r, n := range reasons {
			say("  event x%d %s", n, r)
		}
	}
}

func (bb *backupBench) report() {
	b := bb.b
	dumpRatio := bb.dump.Seconds() / bb.listLoaded.Seconds()
	restoreRatio := bb.restore.Seconds() / bb.floorSeq.Seconds()
	parRatio := bb.restore.Seconds() / bb.floorPar.Seconds()
	b.ReportMetric(bb.setup.Seconds(), "setup-s")
	b.ReportMetric(bb.listFloor.Seconds(), "list-floor-s")
	b.ReportMetric(bb.listLoaded.Seconds(), "list-floor-loaded-s")
	b.ReportMetric(bb.dump.Seconds(), "dump-s")
	b.ReportMetric(dumpRatio, "dump/list-floor")
	b.ReportMetric(float64(bb.size), "stored-bytes")
	b.ReportMetric(float64(bb.chunks), "chunks")
	b.ReportMetric(mib(bb.dumpMem.heapInuse), "dump-peak-heap-MiB")
	b.ReportMetric(bb.restore.Seconds(), "restore-s")
	b.ReportMetric(bb.floorSeq.Seconds(), "create-floor-seq-s")
	b.ReportMetric(bb.floorPar.Seconds(), "create-floor-par-s")
	b.ReportMetric(restoreRatio, "restore/create-floor")
	b.ReportMetric(parRatio, "restore/create-floor-par")
	b.ReportMetric(mib(bb.restoreMem.heapInuse), "restore-peak-heap-MiB")
	b.ReportMetric(bb.afterRestore.Seconds(), "after-restore-quiet-s")

	var s strings.Builder
	fmt.Fprintf(&s, "backup benchmark: hosts=%d vms=%d vdis=%d%s\n", bb.hosts, bb.vms, 2*bb.vms, bb.mode())
	fmt.Fprintf(&s, "list floor: %s with the manager running (%s before it started); dump: %s (ratio %.2f; %.2f to the floor before the manager), stored %.1f MiB in %d chunks, peak heap %.0f MiB\n",
		secs(bb.listLoaded), secs(bb.listFloor), secs(bb.dump), dumpRatio, bb.dump.Seconds()/bb.listFloor.Seconds(),
		mib(uint64(bb.size)), bb.chunks, mib(bb.dumpMem.heapInuse))
	restoreFig := fmt.Sprintf("%s (ratio %.2f to the sequential floor, %.2f to the %d-way floor)", secs(bb.restore), restoreRatio,
		parRatio, controllers.RestoreWorkers)
	if !bb.restoreDone {
		restoreFig = fmt.Sprintf("NOT complete after %s (ratios > %.2f and %.2f; %s)", secs(bb.restore), restoreRatio, parRatio, bb.restoreProgress)
	}
	fmt.Fprintf(&s, "create floor (sequential): %s; create floor (%d-way, as the restore): %s; restore: %s; peak heap %.0f MiB\n",
		secs(bb.floorSeq), controllers.RestoreWorkers, secs(bb.floorPar), restoreFig, mib(bb.restoreMem.heapInuse))
	fmt.Fprintf(&s, "notes:\n")
	if bb.cacheSyncTimeout > 0 {
		fmt.Fprintf(&s, "- NOT the product's configuration: the manager's CacheSyncTimeout was raised to %s (controller-runtime's default, which the product keeps, is 2m)\n", bb.cacheSyncTimeout)
	}
	if bb.onlyBackup {
		fmt.Fprintf(&s, "- NOT the product's manager: only the PoolBackup and Pool reconcilers ran (POOLKEEPER_BENCH_CONTROLLERS=backup); the Host, VM, VDI and SR controllers, which react to every restored object, did not\n")
	}
	fmt.Fprintf(&s, "- setup (not timed): %d objects %d-way at QPS 2000/Burst 4000 in %s (%.0f/s)\n", bb.objects()+3, benchWorkers,
		secs(bb.setup), float64(bb.objects()+3)/bb.setup.Seconds())
	fmt.Fprintf(&s, "- list floor: best of 3 plain Lists of Hosts, SRs, VDIs and VMs through a direct client (the manager's API reader kind), measured before the manager starts and again right before the dump, in the same process as the manager and its filled cache (the dump's ratio is to the latter); before the manager, the same lists at one revision, one after the other (readSnapshot makes them at once): %s\n",
		secs(bb.listExact))
	fmt.Fprintf(&s, "- dump: from creating the PoolBackup to status.phase Completed (polled every %s); besides the snapshot lists it seals (gzip + AES-GCM), stores %d chunk Secrets, reads them back and opens them before Completed; alone in the test: read back %s, open %s, seal %s\n",
		benchPoll, bb.chunks, secs(bb.readBack), secs(bb.open), secs(bb.seal))
	fmt.Fprintf(&s, "- the manager settled (every object reconciled once, as after any start) before the dump in %s%s and before the restore in %s%s\n",
		secs(bb.settleDump), notQuiet(bb.settleDumpQuiet), secs(bb.settleRestore), notQuiet(bb.settleRestoreQuiet))
	fmt.Fprintf(&s, "- restore: from creating the Pool with spec.restoreFrom to Restored True; first object (the SR) after %s (preflight: read back, open, plan); created %d hosts, %d SRs, %d VDIs, %d VMs\n",
		secs(bb.firstCreated), bb.created.Hosts, bb.created.SRs, bb.created.VDIs, bb.created.VMs)
	fmt.Fprintf(&s, "- the restore (createPlanned) creates each kind with %d workers, SRs, VDIs, VMs then Hosts, a kind complete before the next, reads nothing back, and records each VM it creates Halted (one status write per VM, from the create's response): %d creates. The floors are the same %d creates in a fresh namespace with the manager stopped, through a client with the manager's QPS %.0f/Burst %d (per kind): one at a time, and %d-way in one stream\n",
		controllers.RestoreWorkers, bb.objects(), bb.objects(), bb.cfg.QPS, bb.cfg.Burst, controllers.RestoreWorkers)
	fmt.Fprintf(&s, "- parallelism: the %d-way create floor is %.1fx the sequential one's speed (%s vs %s; setup, %d-way at QPS 2000, reached %.0f/s)\n",
		controllers.RestoreWorkers, bb.floorSeq.Seconds()/bb.floorPar.Seconds(), secs(bb.floorPar), secs(bb.floorSeq),
		benchWorkers, float64(bb.objects()+3)/bb.setup.Seconds())
	if bb.restore > bb.floorPar {
		fmt.Fprintf(&s, "- the restore took %s more than the %d-way floor; meanwhile the test process (the manager, whose other controllers react to every restored object) used %s of CPU and the API server %s\n",
			secs(bb.restore-bb.floorPar), controllers.RestoreWorkers, secs(bb.restoreCPU.self), secs(bb.restoreCPU.apiserver))
	}
	fmt.Fprintf(&s, "- API server requests during the restore (every client: the restore, the other controllers, events, this benchmark's polling): %s\n", bb.restoreReqs)
	if bb.restoreDone {
		fmt.Fprintf(&s, "- after Restored, the manager went quiet in %s%s (the last 3 s of it quiet, as it is judged): the VDIs' Ready conditions and the rest of what the other controllers leave to the restore while it runs; API server requests meanwhile: %s\n",
			secs(bb.afterRestore), notQuiet(bb.afterRestoreQuiet), bb.afterRestoreReqs)
	}
	fmt.Fprintf(&s, "- API server requests during the %d-way create floor: %s\n", controllers.RestoreWorkers, bb.floorReqs)
	fmt.Fprintf(&s, "- peak memory (HeapInuse / Sys of the test process, sampled every 100ms; the manager runs in-process, so it includes the test's own clients and buffers): dump %.0f / %.0f MiB, restore %.0f / %.0f MiB\n",
		mib(bb.dumpMem.heapInuse), mib(bb.dumpMem.sys), mib(bb.restoreMem.heapInuse), mib(bb.restoreMem.sys))
	fmt.Fprintf(&s, "- CPU during the dump: test process (manager) %s, kube-apiserver %s, etcd %s, other processes %s; during the restore: %s, %s, %s, other processes %s (%d cores)\n",
		secs(bb.dumpCPU.self), secs(bb.dumpCPU.apiserver), secs(bb.dumpCPU.etcd), secs(bb.dumpCPU.foreign()),
		secs(bb.restoreCPU.self), secs(bb.restoreCPU.apiserver), secs(bb.restoreCPU.etcd), secs(bb.restoreCPU.foreign()), runtime.NumCPU())
	other := (bb.dumpCPU.foreign() + bb.restoreCPU.foreign()).Seconds() / (bb.dump + bb.restore).Seconds()
	all := readCPU().sub(bb.cpu0)
	whole, steal := all.foreign().Seconds()/time.Since(bb.start).Seconds(), all.steal.Seconds()/time.Since(bb.start).Seconds()
	fmt.Fprintf(&s, "- other processes on the machine used %.2f cores on average during the dump and restore, %.2f over the whole run; the hypervisor stole %.2f cores over the whole run\n",
		other, whole, steal)
	if max(other, whole, steal) > 0.2 {
		fmt.Fprintf(&s, "- WARNING: other processes competed for the CPU: the figures are disturbed\n")
	}
	fmt.Fprintf(&s, "- manager reconcile errors by phase and controller: %s\n", bb.errs.summary())
	fmt.Print(s.String())
	b.Log("\n" + s.String())
}

func notQuiet(quiet bool) string {
	if quiet {
		return ""
	}
	return " (NOT quiet: the cap was reached)"
}

// memPeak is the highest HeapInuse and Sys seen.
type memPeak struct{ heapInuse, sys uint64 }

// sampleMem samples the process's memory every 100ms until the returned
// function is called, which returns the peaks.
func sampleMem() func() memPeak {
	var (
		mu   sync.Mutex
		peak memPeak
	)
	stop := make(chan struct{})
	done := make(chan struct{})
	read := func() {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		mu.Lock()
		peak.heapInuse, peak.sys = max(peak.heapInuse, ms.HeapInuse), max(peak.sys, ms.Sys)
		mu.Unlock()
	}
	go func() {
		defer close(done)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			read()
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	return func() memPeak {
		close(stop)
		<-done
		read()
		mu.Lock()
		defer mu.Unlock()
		return peak
	}
}

// cpuTimes is CPU time used by this process (the manager runs in it), by
// the envtest kube-apiserver and etcd, its children, and by the whole
// machine (busy time of every CPU, from /proc/stat), and the time the
// hypervisor stole from the machine's CPUs.
type cpuTimes struct{ self, apiserver, etcd, machine, steal time.Duration }

func (c cpuTimes) sub(o cpuTimes) cpuTimes {
	return cpuTimes{self: c.self - o.self, apiserver: c.apiserver - o.apiserver, etcd: c.etcd - o.etcd,
		machine: c.machine - o.machine, steal: c.steal - o.steal}
}

// foreign is what other processes used: anything on the machine but this
// process and its control plane.
func (c cpuTimes) foreign() time.Duration {
	return max(c.machine-c.self-c.apiserver-c.etcd, 0)
}

func readCPU() cpuTimes {
	var c cpuTimes
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err == nil {
		c.self = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	c.machine, c.steal = machineBusy()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return c
	}
	self := os.Getpid()
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		comm, ppid, used, ok := procStat(pid)
		if !ok || ppid != self {
			continue
		}
		switch comm {
		case "kube-apiserver":
			c.apiserver += used
		case "etcd":
			c.etcd += used
		}
	}
	return c
}

// machineBusy is the busy time of every CPU of the machine since boot, and
// the time the hypervisor stole.
func machineBusy() (busy, steal time.Duration) {
	raw, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(raw), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	if len(f) < 9 || f[0] != "cpu" {
		return 0, 0
	}
	var ticks [8]int64
	for i, v := range f[1:9] {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, 0
		}
		ticks[i] = n
	}
	const tick = 10 * time.Millisecond
	b := ticks[0] + ticks[1] + ticks[2] + ticks[5] + ticks[6] // user nice system irq softirq
	return time.Duration(b) * tick, time.Duration(ticks[7]) * tick
}

// procStat reads a process's name, parent and CPU time (utime+stime, in
// USER_HZ ticks of 10ms) from /proc/<pid>/stat.
func procStat(pid int) (string, int, time.Duration, bool) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", 0, 0, false
	}
	s := string(raw)
	open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || end < open {
		return "", 0, 0, false
	}
	f := strings.Fields(s[end+1:])
	if len(f) < 13 {
		return "", 0, 0, false
	}
	ppid, err1 := strconv.Atoi(f[1])
	utime, err2 := strconv.ParseInt(f[11], 10, 64)
	stime, err3 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return "", 0, 0, false
	}
	return s[open+1 : end], ppid, time.Duration(utime+stime) * 10 * time.Millisecond, true
}

// errorLog keeps the errors the manager logs (reconcile errors), by
// controller, with the first two messages of each.
type errorLog struct {
	mu     sync.Mutex
	phase  string // "" once the manager is stopping: its errors then are not the product's
	count  map[string]int
	sample []string
}

// setPhase names the phase later errors belong to; "" drops them.
func (l *errorLog) setPhase(phase string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.phase = phase
}

func (l *errorLog) add(who, msg string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.phase == "" {
		return
	}
	who = l.phase + " " + who
	if l.count == nil {
		l.count = map[string]int{}
	}
	l.count[who]++
	if l.count[who] <= 2 {
		if len(msg) > 400 {
			msg = msg[:400] + "..."
		}
		l.sample = append(l.sample, who+": "+msg)
	}
}

func (l *errorLog) summary() string {
	if l == nil {
		return "none"
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.count) == 0 {
		return "none"
	}
	var parts []string
	for who, n := range l.count {
		parts = append(parts, fmt.Sprintf("%s x%d", who, n))
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ") + "; first: " + strings.Join(l.sample, " | ")
}

// errorSink is a logr sink that records errors and passes everything to
// next, when set (POOLKEEPER_BENCH_LOGS=1), or drops it.
type errorSink struct {
	log  *errorLog
	name string
	next logr.LogSink
}

func (s *errorSink) Init(info logr.RuntimeInfo) {
	if s.next != nil {
		s.next.Init(info)
	}
}

func (s *errorSink) Enabled(level int) bool { return s.next != nil && s.next.Enabled(level) }

func (s *errorSink) Info(level int, msg string, kv ...any) {
	if s.next != nil {
		s.next.Info(level, msg, kv...)
	}
}

func (s *errorSink) Error(err error, msg string, kv ...any) {
	s.log.add(s.withValues(kv).name, msg+": "+fmt.Sprint(err))
	if s.next != nil {
		s.next.Error(err, msg, kv...)
	}
}

func (s *errorSink) WithValues(kv ...any) logr.LogSink {
	out := s.withValues(kv)
	if s.next != nil {
		out.next = s.next.WithValues(kv...)
	}
	return out
}

func (s *errorSink) WithName(name string) logr.LogSink {
	out := &errorSink{log: s.log, name: s.name, next: s.next}
	if s.next != nil {
		out.next = s.next.WithName(name)
	}
	return out
}

// withValues is a copy of s named after the controller in kv, if any.
func (s *errorSink) withValues(kv []any) *errorSink {
	out := &errorSink{log: s.log, name: s.name, next: s.next}
	for i := 0; i+1 < len(kv); i += 2 {
		if k, ok := kv[i].(string); ok && k == "controller" {
			out.name = fmt.Sprint(kv[i+1])
		}
	}
	return out
}
