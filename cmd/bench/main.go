// Command bench measures poolkeeper and prints figures; it asserts nothing.
//
//	go run ./cmd/bench liveness        # 1000 hosts, interval 10s, timeout 40s: a few minutes
//	go run ./cmd/bench liveness --hosts 100 --interval 2s --timeout 8s --steady 5s --kill 10
//	go run ./cmd/bench recovery [--dead-hosts 10]  # HA recovery time against the API write floor (recovery.go)
//	go run ./cmd/bench libvirt [--vms 12]          # real guests on simulated libvirt hosts: power loss, agent restart (libvirt.go)
//	go run ./cmd/bench outage [--timeout 20s] [--freezes 1.75,3,6]  # API server frozen, heartbeat SR: the longest outage with 0 VMs stopped (outage.go)
//
// The liveness subcommand starts envtest with the CRDs, runs the real manager
// (--manager, built by `make build`) against it, and creates a Pool with HA
// off (nobody is fenced: only detection is measured), heartbeatTimeout
// --timeout, and --hosts Hosts. A simulated fleet, not real agents, renews
// each Host's Lease every --interval (at most --timeout/4, as for the agent),
// staggered evenly over the interval, as poolkeeper-agent does: it creates the
// Lease on first use, then updates the last object returned, one write per
// heartbeat. The summary on stdout reads:
//
//   - time to all Live: from the fleet's first heartbeat until every Host is
//     Live. A Host turns Live on its first renewal, the heartbeat after the one
//     that created its Lease, so expect about two intervals.
//   - steady window: after one more interval to settle, the fleet runs for
//     --steady. heartbeats counts successful Lease writes; lease writes per
//     heartbeat should be 1.00; host writes (Host MODIFIED events) should be 0:
//     a heartbeat must never write the Host.
//   - operator: the manager's CPU time (utime+stime) in the window per 1000
//     heartbeats, and its VmRSS (peak: VmHWM) at the end of the window.
//   - detection lag: --kill hosts, evenly spread over the stagger, stop
//     renewing at once, so their deadlines spread over one interval. A deadline
//     is when the host's last Lease update returned plus the timeout; the lag is
//     when the bench saw the Host turn Unreachable minus its deadline. missed:
//     killed hosts not Unreachable within timeout+60s; false-positives: hosts
//     not killed that were ever seen Unreachable.
//
// Progress and the raw figures go to stderr; the manager's output goes to a
// log file named at the end. Ctrl-C stops the manager and the control plane.
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/internal/liveness"
	"github.com/poolkeeper/poolkeeper/internal/testutil"
)

type config struct {
	manager                   string
	hosts, kill               int
	interval, timeout, steady time.Duration
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	switch os.Args[1] {
	case "liveness":
		os.Exit(mainLiveness(os.Args[2:]))
	case "recovery":
		os.Exit(mainRecovery(os.Args[2:]))
	case "libvirt":
		os.Exit(mainLibvirt(os.Args[2:]))
	case "outage":
		os.Exit(mainOutage(os.Args[2:]))
	default:
		usage()
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: bench liveness|recovery|libvirt|outage [flags]   (bench liveness -h lists the flags)")
	os.Exit(2)
}

// mainLiveness runs the liveness subcommand and returns the exit status.
func mainLiveness(args []string) int {
	var cfg config
	fs := flag.NewFlagSet("bench liveness", flag.ExitOnError)
	fs.StringVar(&cfg.manager, "manager", "bin/poolkeeper", "Manager binary (built by `make build`).")
	fs.IntVar(&cfg.hosts, "hosts", 1000, "Number of Hosts.")
	fs.DurationVar(&cfg.interval, "interval", 10*time.Second, "Heartbeat interval of the fleet; at most --timeout/4.")
	fs.DurationVar(&cfg.timeout, "timeout", 40*time.Second, "The Pool's spec.heartbeatTimeout.")
	fs.DurationVar(&cfg.steady, "steady", 30*time.Second, "Length of the steady-state cost window.")
	fs.IntVar(&cfg.kill, "kill", 100, "Number of hosts that stop heartbeating, for the detection lag.")
	_ = fs.Parse(args)
	var err error
	switch {
	case cfg.hosts < 1 || cfg.kill < 0 || cfg.kill > cfg.hosts:
		err = errors.New("want --hosts >= 1 and 0 <= --kill <= --hosts")
	case cfg.timeout < time.Second || cfg.steady <= 0:
		err = errors.New("want --timeout >= 1s and --steady > 0")
	default:
		err = checkInterval(cfg.interval, cfg.timeout)
	}
	return run(err, func(ctx context.Context) error { return runLiveness(ctx, cfg) })
}

// checkInterval holds the fleet to the agent's own bound on its interval.
func checkInterval(interval, timeout time.Duration) error {
	if interval <= 0 || interval > liveness.MaxInterval(timeout) {
		return fmt.Errorf("want 0 < --interval <= --timeout/4 (%s), as the agent does", liveness.MaxInterval(timeout))
	}
	return nil
}

// run runs a subcommand until it ends or Ctrl-C, and returns the exit
// status: 2 at once if its flags are wrong (usage).
func run(usage error, f func(context.Context) error) int {
	if usage != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", usage)
		return 2
	}
	ctrl.SetLogger(logr.Discard())
	klog.SetLogger(logr.Discard())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := f(ctx)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		return 1
	}
	return 0
}

func progress(format string, args ...any) { fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...) }

// cluster is envtest with the real manager running against it as a child
// process, and an unthrottled client for the bench.
type cluster struct {
	env  *envtest.Environment
	rest *rest.Config // envtest's admin config, unmodified
	dir  string
	mgr  *managerProc // nil once stopped
	c    client.WithWatch
}

// startCluster starts envtest and the manager; on error it has stopped
// whatever it started.
func startCluster(manager string) (k *cluster, err error) {
	if _, err := os.Stat(manager); err != nil {
		return nil, fmt.Errorf("manager binary: %w (run `make build` first, or pass --manager)", err)
	}
	env, err := testutil.NewEnvironment()
	if err != nil {
		return nil, fmt.Errorf("preparing envtest: %w", err)
	}
	progress("starting envtest (etcd and kube-apiserver)")
	k = &cluster{env: env}
	defer func() {
		if err != nil {
			err = k.close(err)
		}
	}()
	if k.rest, err = env.Start(); err != nil {
		return k, fmt.Errorf("starting envtest: %w", err)
	}
	if k.dir, err = os.MkdirTemp("", "poolkeeper-bench-"); err != nil {
		return k, fmt.Errorf("creating a temporary directory: %w", err)
	}
	admin, err := env.AddUser(envtest.User{Name: "poolkeeper-bench", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return k, fmt.Errorf("creating the admin user: %w", err)
	}
	kubeconfig, err := admin.KubeConfig()
	if err == nil {
		err = os.WriteFile(filepath.Join(k.dir, "kubeconfig"), kubeconfig, 0o600)
	}
	if err != nil {
		return k, fmt.Errorf("writing the admin kubeconfig: %w", err)
	}
	if k.mgr, err = startManager(manager, filepath.Join(k.dir, "kubeconfig")); err != nil {
		return k, err
	}
	progress("manager started, pid %d", k.mgr.cmd.Process.Pid)

	rc := rest.CopyConfig(k.rest)
	rc.QPS, rc.Burst, rc.WarningHandler = 2000, 4000, rest.NoWarnings{} // the bench must not throttle itself
	if k.c, err = client.NewWithWatch(rc, client.Options{Scheme: testutil.Scheme}); err != nil {
		return k, fmt.Errorf("creating the API client: %w", err)
	}
	return k, nil
}

// stopManager stops the manager; err says whether it had died.
func (k *cluster) stopManager() error {
	if k.mgr == nil {
		return nil
	}
	err := k.mgr.stop()
	k.mgr = nil
	return err
}

// close stops the manager and the control plane; it returns err, or if that
// is nil what went wrong while stopping.
func (k *cluster) close(err error) error {
	if serr := k.stopManager(); err == nil {
		err = serr // otherwise err already says whether the manager died
	}
	if k.dir != "" {
		_ = os.RemoveAll(k.dir)
	}
	if serr := k.env.Stop(); serr != nil {
		err = errors.Join(err, fmt.Errorf("stopping envtest: %w", serr))
	}
	return err
}

func runLiveness(ctx context.Context, cfg config) (err error) {
	k, err := startCluster(cfg.manager)
	if err != nil {
		return err
	}
	defer func() { err = k.close(err) }()
	c, mgr := k.c, k.mgr
	r, err := measure(ctx, cfg, c, mgr)
	if err != nil {
		return err
	}
	fmt.Printf("liveness benchmark: hosts=%d interval=%s timeout=%s killed=%d\n", cfg.hosts, cfg.interval, cfg.timeout, cfg.kill)
	fmt.Printf("time to all Live: %.1fs\n", r.allLive.Seconds())
	fmt.Printf("steady window: %s, heartbeats=%d, lease writes/heartbeat=%s, host writes=%d\n",
		cfg.steady, r.beats, ratio(float64(r.writes), float64(r.beats), 1), r.hostWrites)
	fmt.Printf("operator: cpu=%ss per 1000 heartbeats, rss=%.0f MiB (peak %.0f MiB)\n",
		ratio(r.cpu.Seconds(), float64(r.beats), 1000), mib(r.rss), mib(r.hwm))
	l := r.lags
	fmt.Printf("detection lag (ms): n=%d min=%s p50=%s p90=%s p99=%s max=%s missed=%d false-positives=%d\n",
		len(l), pct(l, 0), pct(l, 0.5), pct(l, 0.9), pct(l, 0.99), pct(l, 1), cfg.kill-len(l), r.falsePositives)
	return nil
}

type results struct {
	allLive                   time.Duration
	beats, writes, hostWrites int64
	cpu                       time.Duration
	rss, hwm                  uint64
	lags                      []time.Duration // sorted
	falsePositives            int
}

// measure creates the pool and its hosts, runs the fleet and takes the figures.
func measure(ctx context.Context, cfg config, c client.WithWatch, mgr *managerProc) (*results, error) {
	const ns, pool = "bench-liveness", "bench"
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		return nil, fmt.Errorf("creating namespace %s: %w", ns, err)
	}
	if err := c.Create(ctx, &vpoolv1alpha1.Pool{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: pool},
		Spec: vpoolv1alpha1.PoolSpec{HA: vpoolv1alpha1.HASpec{Enabled: false}, HeartbeatTimeout: &metav1.Duration{Duration: cfg.timeout}},
	}); err != nil {
		return nil, fmt.Errorf("creating Pool %s/%s: %w", ns, pool, err)
	}
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch() // before envtest stops
	w, err := watchHosts(wctx, c, ns, cfg.hosts)
	if err != nil {
		return nil, err
	}
	names, err := createHosts(ctx, c, ns, pool, cfg.hosts)
	if err != nil {
		return nil, err
	}
	f := newFleet(c, ns, names, cfg.interval, cfg.timeout)
	fctx, stopFleet := context.WithCancel(ctx)
	defer stopFleet()
	go f.run(fctx, min(16, cfg.hosts))

	limit := 3*cfg.interval + 5*time.Minute
	if err := waitFor(ctx, mgr, w, f.start.Add(limit), func() bool { return w.view().live == cfg.hosts }); err != nil {
		return nil, fmt.Errorf("waiting for every Host to be Live (%d of %d after %s): %w", w.view().live, cfg.hosts, limit, err)
	}
	r := &results{allLive: w.view().allLive.Sub(f.start)}
	progress("all %d Hosts Live %s after the first heartbeat; settling for one interval", cfg.hosts, r.allLive.Round(time.Millisecond))
	if err := waitFor(ctx, mgr, w, time.Now().Add(cfg.interval), nil); err != nil {
		return nil, err
	}
	if err := r.steady(ctx, cfg, mgr, w, f); err != nil {
		return nil, err
	}
	return r, r.detection(ctx, cfg, mgr, w, f, names)
}

// steady measures the steady-state cost window.
func (r *results) steady(ctx context.Context, cfg config, mgr *managerProc, w *hostWatcher, f *fleet) error {
	cpu0, err := mgr.cpu()
	if err != nil {
		return err
	}
	beats0, writes0, reads0, fails0, hostWrites0 := f.heartbeats.Load(), f.writes.Load(), f.reads.Load(), f.failures.Load(), w.view().modified
	if err := waitFor(ctx, mgr, w, time.Now().Add(cfg.steady), nil); err != nil {
		return err
	}
	cpu1, err := mgr.cpu()
	if err != nil {
		return err
	}
	if r.rss, r.hwm, err = mgr.memory(); err != nil {
		return err
	}
	v := w.view()
	r.beats, r.writes, r.hostWrites, r.cpu = f.heartbeats.Load()-beats0, f.writes.Load()-writes0, v.modified-hostWrites0, cpu1-cpu0
	progress("steady window: %d heartbeats, %d lease writes, %d lease reads, %d failed renewals, %d Host writes; %d of %d Hosts Live at the end",
		r.beats, r.writes, f.reads.Load()-reads0, f.failures.Load()-fails0, r.hostWrites, v.live, cfg.hosts)
	progress("steady window: manager CPU %.2fs (%.1f%% of a core), VmRSS %.1f MiB, VmHWM %.1f MiB",
		r.cpu.Seconds(), 100*r.cpu.Seconds()/cfg.steady.Seconds(), mib(r.rss), mib(r.hwm))
	return nil
}

// detection stops --kill hosts and measures how late each is seen Unreachable.
func (r *results) detection(ctx context.Context, cfg config, mgr *managerProc, w *hostWatcher, f *fleet, names []string) error {
	killed := make([]int, cfg.kill)
	for k := range killed {
		killed[k] = k * cfg.hosts / cfg.kill
	}
	killedAt := time.Now()
	lastOK := f.stop(killed)
	progress("stopped renewing %d Hosts; waiting up to %s for them to turn Unreachable", cfg.kill, cfg.timeout+time.Minute)
	err := waitFor(ctx, mgr, w, killedAt.Add(cfg.timeout+time.Minute), func() bool {
		v := w.view()
		return !slices.ContainsFunc(killed, func(i int) bool { _, ok := v.unreachable[names[i]]; return !ok })
	})
	if err != nil && !errors.Is(err, errTimedOut) {
		return err
	}
	v := w.view()
	for i, j := range killed {
		if seen, ok := v.unreachable[names[j]]; ok {
			r.lags = append(r.lags, seen.Sub(lastOK[i].Add(cfg.timeout)))
		}
	}
	slices.Sort(r.lags)
	r.falsePositives = len(v.unreachable) - len(r.lags)
	return nil
}

// createHosts creates n valid Hosts h-0000, h-0001, … of the pool, 16 at a time.
func createHosts(ctx context.Context, c client.Client, ns, pool string, n int) ([]string, error) {
	start := time.Now()
	names, errs := make([]string, n), make([]error, n)
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Go(func() {
			for i := w; i < n; i += 16 {
				names[i] = fmt.Sprintf("h-%04d", i)
				errs[i] = c.Create(ctx, &vpoolv1alpha1.Host{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: names[i]},
					Spec: vpoolv1alpha1.HostSpec{PoolRef: vpoolv1alpha1.PoolReference{Name: pool},
						Address:  fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255),
						Capacity: vpoolv1alpha1.HostCapacity{CPU: resource.MustParse("16"), Memory: resource.MustParse("64Gi")}}})
			}
		})
	}
	wg.Wait()
	if err := cmp.Or(errs...); err != nil {
		return nil, fmt.Errorf("creating Hosts in %s: %w", ns, err)
	}
	progress("created %d Hosts in %s", n, time.Since(start).Round(time.Millisecond))
	return names, nil
}

var errTimedOut = errors.New("timed out")

// waitFor polls cond until it holds (nil: never), the deadline passes
// (errTimedOut, or nil when cond is nil), ctx ends, the manager exits or the
// Host watch ends.
func waitFor(ctx context.Context, mgr *managerProc, w *hostWatcher, deadline time.Time, cond func() bool) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for cond == nil || !cond() {
		if err := errors.Join(mgr.exited(), w.view().ended); err != nil {
			return err
		}
		if !time.Now().Before(deadline) {
			if cond == nil {
				return nil
			}
			return errTimedOut
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("interrupted: %w", context.Cause(ctx))
		case <-tick.C:
		}
	}
	return nil
}

func mib(bytes uint64) float64 { return float64(bytes) / (1 << 20) }

// ratio formats a/b*scale with two decimals, or n/a when b is zero.
func ratio(a, b, scale float64) string {
	if b == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2f", a/b*scale)
}

// pct is the nearest-rank percentile p (0: min, 1: max) of sorted, in ms.
func pct(sorted []time.Duration, p float64) string {
	if len(sorted) == 0 {
		return "n/a"
	}
	i := min(max(int(math.Ceil(p*float64(len(sorted))))-1, 0), len(sorted)-1)
	return fmt.Sprint(sorted[i].Milliseconds())
}
