package main

// The outage subcommand measures the longest API server outage that an HA
// pool with a heartbeat SR rides out with no VM stopped (README "Control-plane
// outages and the heartbeat SR").
//
//	go run ./cmd/bench outage                                  # T 20s, freezes 1.75T, 3T, 6T: about 5½ minutes
//	go run ./cmd/bench outage --timeout 60s --freezes 1.75,3   # about 8 minutes
//
// Setup: envtest and the real manager (as for liveness; its log at level
// info, unless POOLKEEPER_BENCH_LOG_LEVEL says otherwise, for the Hosts'
// phase changes), a Pool with HA on, heartbeatTimeout --timeout and its
// shared SR nfs as heartbeat SR, 3 Hosts, each with a real agent (--agent,
// built by `make build`: --driver sim, --heartbeat-interval --interval, all
// three with one --sim-storage-dir, so they share the statefile, and each
// serving its metrics on a loopback port), and --vms-per-host Restart VMs on
// each host (a RW VDI on the SR each, affinity to the host).
//
// Then for each of --freezes, multiples of T tried in increasing order, the
// kube-apiserver (envtest's, a child of this process) is stopped (SIGSTOP)
// for that long and resumed (SIGCONT). Just before the resume the agents'
// /metrics and statefile slots are read: how many agents are exempt, and
// each slot's time since its writer's last renewal. From the resume the
// bench polls the API every 250 ms and times, on its clock: answering (the
// first answer), renewed (every agent's Lease renewed by an attempt begun
// after the SIGSTOP), Live (every Host Live, with that renewal) and not
// exempt (no agent's poolkeeper_agent_outage_exempt at 1); it goes on until
// the operator's safe time T + T/2 counted from the answer has passed (the
// operator counts every host's silence afresh from then). It reports: from
// the agents' logs the VMs stopped (Stopped VM lines and the VMs of a
// self-fence), the agents that self-fenced or exited, and the VMs started
// again; from the API the VMs no longer Running on their host, the VMs
// missing from the Hosts' status.runningVMs (the sim driver's own state, as
// its agent reports it), the Hosts seen in a phase other than Live after
// the resume and the reasons of the Host events since the freeze; from the
// manager's log the Hosts it moved out of Live and those it fenced (to
// Fencing or Fenced); from the agents' /metrics the exemptions granted and
// how long they held; and the load average. A freeze that stopped a VM or
// fenced a host ends the run: the pool is no longer the one measured. The
// last line is the longest freeze with 0 VMs stopped and 0 hosts fenced.
//
// Progress goes to stderr, the figures to stdout; nothing is asserted.
// Ctrl-C resumes the API server if it is stopped, then stops the agents, the
// manager and the control plane.

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/internal/agent/statefile"
)

type outageConfig struct {
	manager, agent    string
	timeout, interval time.Duration
	freezes           []float64
	vmsPerHost        int
	wait              time.Duration
}

const (
	obNS   = "bench-outage"
	obPool = "p"
	obSR   = "nfs"
)

var obHosts = []string{"h1", "h2", "h3"}

func mainOutage(args []string) int {
	var cfg outageConfig
	freezes := "1.75,3,6"
	fs := flag.NewFlagSet("bench outage", flag.ExitOnError)
	fs.StringVar(&cfg.manager, "manager", "bin/poolkeeper", "Manager binary (built by `make build`).")
	fs.StringVar(&cfg.agent, "agent", "bin/poolkeeper-agent", "Agent binary (built by `make build`).")
	fs.DurationVar(&cfg.timeout, "timeout", 20*time.Second, "The Pool's spec.heartbeatTimeout, T.")
	fs.DurationVar(&cfg.interval, "interval", 0, "The agents' heartbeat interval; at most T/4. Default: the agent's 10s, or T/4 if less.")
	fs.StringVar(&freezes, "freezes", freezes, "API server freezes to try, in multiples of T, comma-separated, increasing.")
	fs.IntVar(&cfg.vmsPerHost, "vms-per-host", 2, "Running VMs on each host.")
	fs.DurationVar(&cfg.wait, "wait", 3*time.Minute, "How long to wait for the pool to be ready, and for it to settle after a freeze.")
	_ = fs.Parse(args)
	if cfg.interval == 0 {
		cfg.interval = min(10*time.Second, cfg.timeout/4)
	}
	var err error
	for f := range strings.SplitSeq(freezes, ",") {
		k, perr := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if perr != nil || k <= 0 || (len(cfg.freezes) > 0 && k <= cfg.freezes[len(cfg.freezes)-1]) {
			err = fmt.Errorf("--freezes %q: want positive multiples of T in increasing order", freezes)
			break
		}
		cfg.freezes = append(cfg.freezes, k)
	}
	switch {
	case err != nil:
	case cfg.timeout < 4*time.Second || cfg.vmsPerHost < 1 || cfg.wait <= 0:
		err = errors.New("want --timeout >= 4s, --vms-per-host >= 1 and --wait > 0")
	default:
		err = checkInterval(cfg.interval, cfg.timeout)
	}
	return run(err, func(ctx context.Context) error { return runOutage(ctx, cfg) })
}

// outageBench is one run: the cluster, the agents and the frozen API server.
type outageBench struct {
	cfg       outageConfig
	k         *cluster
	root      string // the shared storage and the agents' logs
	apiserver int    // the kube-apiserver's pid
	frozen    bool
	hosts     map[string]*lvHost
	metrics   map[string]string // host → its agent's metrics URL
	logOff    map[string]int64  // log file → where the current freeze's part starts
	running   map[string]int    // host → VMs it reports running before the freezes
}

// freezeResult is what one freeze did.
type freezeResult struct {
	k                               float64
	length                          time.Duration
	answering, renewed, live, unexp time.Duration // from the resume
	exemptAtEnd                     int
	sinceOK                         []time.Duration // each slot's, just before the resume
	stopped, selfFenced, exited     int
	started, moved, notRunning      int
	leftLive, fenced                []string // host:phase, as the manager logged them (each once)
	seen                            []string // host:phase other than Live, polled from the API after the resume
	events                          []string // the Host events since the freeze began: reason@seconds from the resume, the last of each
	granted                         int
	held                            time.Duration // mean exemption length
	load                            string
}

func (r *freezeResult) harmless() bool {
	return r.stopped == 0 && r.selfFenced == 0 && r.exited == 0 && r.moved == 0 && r.notRunning == 0 && len(r.fenced) == 0 &&
		!slices.ContainsFunc(r.events, func(e string) bool { return strings.Contains(e, "Fenc") || strings.Contains(e, "Reset") })
}

func runOutage(ctx context.Context, cfg outageConfig) (err error) {
	if _, err := os.Stat(cfg.agent); err != nil {
		return fmt.Errorf("agent binary: %w (run `make build` first, or pass --agent)", err)
	}
	if os.Getenv("POOLKEEPER_BENCH_LOG_LEVEL") == "" {
		_ = os.Setenv("POOLKEEPER_BENCH_LOG_LEVEL", "info") // the Hosts' phase changes
	}
	k, err := startCluster(cfg.manager)
	if err != nil {
		return err
	}
	defer func() { err = k.close(err) }()
	b := &outageBench{cfg: cfg, k: k, hosts: map[string]*lvHost{}, metrics: map[string]string{}, logOff: map[string]int64{}}
	defer b.resume() // before the control plane stops: a stopped process ignores SIGTERM
	if b.apiserver, err = childNamed("kube-apiserver"); err != nil {
		return err
	}
	if b.root, err = os.MkdirTemp("", "poolkeeper-bench-outage-"); err != nil {
		return err
	}
	defer func() { b.teardown(err != nil) }()
	if err := b.setup(ctx); err != nil {
		return err
	}
	fmt.Printf("outage benchmark: hosts=%d vms=%d (%d per host) timeout=%s interval=%s heartbeat SR %s (statefile with O_DIRECT: %s)\n",
		len(obHosts), len(obHosts)*cfg.vmsPerHost, cfg.vmsPerHost, cfg.timeout, cfg.interval, obSR, b.direct())
	var longest *freezeResult
	for _, k := range cfg.freezes {
		r, err := b.freeze(ctx, k)
		if err != nil {
			return err
		}
		r.print(cfg.timeout)
		if !r.harmless() {
			progress("the %s freeze stopped VMs or fenced hosts: no longer freezes", r.length)
			break
		}
		longest = r
	}
	if longest == nil {
		fmt.Println("longest freeze ridden out with 0 VMs stopped: none of those tried")
	} else {
		fmt.Printf("longest freeze ridden out with 0 VMs stopped: %.0f s (= %g×T)\n", longest.length.Seconds(), longest.k)
	}
	return nil
}

func (r *freezeResult) print(t time.Duration) {
	s := func(d time.Duration) string { return fmt.Sprintf("%.1fs", d.Seconds()) }
	since := make([]string, len(r.sinceOK))
	for i, d := range r.sinceOK {
		since[i] = fmt.Sprintf("%.0f", d.Seconds())
	}
	fmt.Printf("freeze %.0fs (%g×T): VMs stopped %d, agents self-fenced %d (exited %d), VMs started again %d, off their host %d, missing from runningVMs %d; hosts fenced %d %v\n",
		r.length.Seconds(), r.k, r.stopped, r.selfFenced, r.exited, r.started, r.moved, r.notRunning, len(r.fenced), r.fenced)
	fmt.Printf("  hosts the manager moved out of Live %d %v, seen so in the API after the resume %d %v; Host events since the freeze (reason×Hosts@first, from the resume) %v\n",
		len(r.leftLive), r.leftLive, len(r.seen), r.seen, r.events)
	fmt.Printf("  exemptions granted %d (held %s on average), agents exempt at the freeze's end %d of %d, slots' time since their last renewal then %ss\n",
		r.granted, s(r.held), r.exemptAtEnd, len(obHosts), strings.Join(since, "/"))
	fmt.Printf("  from the resume: API answering %s, every Lease renewed %s, every Host Live %s, no agent exempt %s (safe time T+T/2 = %s waited from the answer); load average %s\n",
		s(r.answering), s(r.renewed), s(r.live), s(r.unexp), s(t*3/2), r.load)
}

// setup creates the pool, starts the agents and the VMs, and waits until
// every VM runs and every agent uses the statefile.
func (b *outageBench) setup(ctx context.Context) error {
	c := b.k.c
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: obNS}}); err != nil {
		return err
	}
	objs := []client.Object{
		&vpoolv1alpha1.Pool{ObjectMeta: metav1.ObjectMeta{Namespace: obNS, Name: obPool}, Spec: vpoolv1alpha1.PoolSpec{
			HA:               vpoolv1alpha1.HASpec{Enabled: true, HeartbeatStorageRepository: obSR},
			HeartbeatTimeout: &metav1.Duration{Duration: b.cfg.timeout}, Master: obHosts[0], DefaultStorageRepository: obSR}},
		&vpoolv1alpha1.StorageRepository{ObjectMeta: metav1.ObjectMeta{Namespace: obNS, Name: obSR},
			Spec: vpoolv1alpha1.StorageRepositorySpec{PoolRef: vpoolv1alpha1.PoolReference{Name: obPool}, Type: "nfs", Shared: true}},
	}
	for _, h := range obHosts {
		objs = append(objs, &vpoolv1alpha1.Host{ObjectMeta: metav1.ObjectMeta{Namespace: obNS, Name: h},
			Spec: vpoolv1alpha1.HostSpec{PoolRef: vpoolv1alpha1.PoolReference{Name: obPool}, Address: h + ".example",
				Capacity: vpoolv1alpha1.HostCapacity{CPU: resource.MustParse("16"), Memory: resource.MustParse("64Gi")}}})
	}
	for _, o := range objs {
		if err := c.Create(ctx, o); err != nil {
			return fmt.Errorf("creating %T %s: %w", o, o.GetName(), err)
		}
	}
	for _, h := range obHosts {
		if err := b.startAgent(h); err != nil {
			return err
		}
	}
	if err := b.poll(ctx, "every Host Live", time.Now().Add(b.cfg.wait), func(s *obSnapshot) bool { return s.allLive(time.Time{}) }); err != nil {
		return err
	}
	home := map[string]string{}
	for i := range len(obHosts) * b.cfg.vmsPerHost {
		h := obHosts[i/b.cfg.vmsPerHost]
		vm := newVM(obNS, obPool, i, h)
		home[vm.Name] = h
		if err := errors.Join(c.Create(ctx, newVDI(obNS, obPool, obSR, i)), c.Create(ctx, vm)); err != nil {
			return fmt.Errorf("creating VM %s: %w", vm.Name, err)
		}
	}
	if err := b.poll(ctx, "every VM Running on its host, the heartbeat SR in use", time.Now().Add(b.cfg.wait), func(s *obSnapshot) bool {
		for vm, h := range home {
			if s.vms[vm] == nil || s.vms[vm].Status.PowerState != vpoolv1alpha1.PowerRunning || s.vms[vm].Status.ResidentOn != h {
				return false
			}
		}
		return meta.IsStatusConditionTrue(s.pool.Status.Conditions, vpoolv1alpha1.PoolHeartbeatStorage) && b.statefileInUse()
	}); err != nil {
		diagnose(ctx, c, obNS)
		return err
	}
	s, err := b.snapshot(ctx)
	if err != nil {
		return err
	}
	b.running = map[string]int{}
	for _, h := range obHosts {
		b.running[h] = len(s.hosts[h].Status.RunningVMs)
	}
	progress("%d VMs running on %s; the agents write and read the statefile in %s", len(home), strings.Join(obHosts, ", "), b.statefileDir())
	return nil
}

func (b *outageBench) statefileDir() string {
	return filepath.Join(b.root, "storage", obSR, "statefile")
}
func (b *outageBench) agentLog(h string) string {
	return filepath.Join(b.root, "agent-"+h+".log")
}

// statefileInUse: every agent said it opened the statefile, and wrote its slot.
func (b *outageBench) statefileInUse() bool {
	for _, h := range obHosts {
		log, _ := os.ReadFile(b.agentLog(h))
		if _, err := os.Stat(filepath.Join(b.statefileDir(), h+".slot")); err != nil || !bytes.Contains(log, []byte(`"Statefile on the heartbeat SR"`)) {
			return false
		}
	}
	return true
}

// direct is what the agents' logs say of O_DIRECT on the statefile.
func (b *outageBench) direct() string {
	var says []string
	for _, h := range obHosts {
		log, _ := os.ReadFile(b.agentLog(h))
		switch {
		case bytes.Contains(log, []byte(`"oDirect":true`)):
			says = append(says, "true")
		case bytes.Contains(log, []byte(`"oDirect":false`)):
			says = append(says, "false")
		}
	}
	if len(says) < len(obHosts) {
		return "unknown"
	}
	slices.Sort(says)
	return strings.Join(slices.Compact(says), "/")
}

// startAgent starts the host's sim agent; its metrics are served on a free
// loopback port.
func (b *outageBench) startAgent(name string) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	h := &lvHost{name: name}
	if err := h.start(b.cfg.agent, filepath.Join(b.k.dir, "kubeconfig"), b.agentLog(name),
		"--namespace", obNS, "--host", name, "--driver", "sim", "--heartbeat-interval", b.cfg.interval.String(),
		"--sim-storage-dir", filepath.Join(b.root, "storage"), "--metrics-bind-address", addr); err != nil {
		return err
	}
	b.hosts[name], b.metrics[name] = h, "http://"+addr+"/metrics"
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// teardown stops the agents; their logs and the storage go, unless the run
// failed.
func (b *outageBench) teardown(failed bool) {
	for _, h := range b.hosts {
		h.stopAgent(syscall.SIGKILL)
	}
	if failed {
		progress("the agents' logs and the statefile kept in %s", b.root)
		return
	}
	_ = os.RemoveAll(b.root)
}

// childNamed is the pid of this process's one child running the binary name.
func childNamed(name string) (int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	var found []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// Field 4, after the command name in parentheses, is the parent's pid.
		f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		if exe, _ := os.Readlink(filepath.Join("/proc", e.Name(), "exe")); len(f) > 1 && f[1] == strconv.Itoa(os.Getpid()) && filepath.Base(exe) == name {
			found = append(found, pid)
		}
	}
	if len(found) != 1 {
		return 0, fmt.Errorf("want one child process %s of this process, found %d", name, len(found))
	}
	return found[0], nil
}

// resume sends SIGCONT to the API server if it is stopped.
func (b *outageBench) resume() {
	if b.frozen {
		if err := syscall.Kill(b.apiserver, syscall.SIGCONT); err != nil {
			progress("resuming the API server (pid %d): %v", b.apiserver, err)
		}
		b.frozen = false
	}
}

// freeze stops the API server for k×T, resumes it and follows the pool
// until the safe time counted from the API server's answer has passed.
func (b *outageBench) freeze(ctx context.Context, k float64) (*freezeResult, error) {
	t := b.cfg.timeout
	r := &freezeResult{k: k, length: time.Duration(k * float64(t))}
	before, err := b.scrapeAll(ctx)
	if err != nil {
		return nil, err
	}
	for _, h := range obHosts {
		b.logOff[b.agentLog(h)] = fileSize(b.agentLog(h))
	}
	b.logOff[b.k.mgr.log.Name()] = fileSize(b.k.mgr.log.Name())
	load0 := loadAverage()
	progress("API server (pid %d) stopped for %s (%g×T)", b.apiserver, r.length, k)
	if err := syscall.Kill(b.apiserver, syscall.SIGSTOP); err != nil {
		return nil, fmt.Errorf("stopping the API server: %w", err)
	}
	b.frozen = true
	stopped := time.Now()
	// The agents and the statefile as the freeze ends (they answer without the API server).
	if err := sleep(ctx, r.length-3*time.Second); err != nil {
		return nil, err
	}
	atEnd, err := b.scrapeAll(ctx)
	if err != nil {
		return nil, err
	}
	r.sinceOK = b.slotsSinceOK()
	if err := sleep(ctx, 3*time.Second); err != nil {
		return nil, err
	}
	b.resume()
	resumed := time.Now()
	progress("API server resumed")
	for _, h := range obHosts {
		r.exemptAtEnd += int(atEnd[h]["poolkeeper_agent_outage_exempt"])
	}
	if err := b.settle(ctx, r, stopped, resumed); err != nil {
		return nil, err
	}
	after, err := b.scrapeAll(ctx)
	if err != nil {
		return nil, err
	}
	var held float64
	for _, h := range obHosts {
		r.granted += int(after[h]["poolkeeper_agent_outage_exemptions_granted_total"] - before[h]["poolkeeper_agent_outage_exemptions_granted_total"])
		held += after[h]["poolkeeper_agent_outage_exemption_seconds_sum"] - before[h]["poolkeeper_agent_outage_exemption_seconds_sum"]
	}
	if ended := sumOf(after, "poolkeeper_agent_outage_exemption_seconds_count") - sumOf(before, "poolkeeper_agent_outage_exemption_seconds_count"); ended > 0 {
		r.held = time.Duration(held / ended * float64(time.Second))
	}
	if err := b.judge(ctx, r, stopped, resumed); err != nil {
		return nil, err
	}
	r.load = load0 + " at the freeze, " + loadAverage() + " after"
	return r, nil
}

// settle follows the pool from the resume, every 250 ms: the API server
// answering, every Lease renewed (a renewal that started after the SIGSTOP
// landed after the resume), every Host Live, no agent exempt, and any Host
// not Live; until all that and the safe time from the answer have passed.
func (b *outageBench) settle(ctx context.Context, r *freezeResult, stopped, resumed time.Time) error {
	var answered time.Time
	safe := b.cfg.timeout * 3 / 2
	return b.poll(ctx, "every Lease renewed, every Host Live, no agent exempt", resumed.Add(safe+b.cfg.wait), func(s *obSnapshot) bool {
		at := time.Since(resumed)
		if answered.IsZero() {
			answered, r.answering = time.Now(), time.Since(resumed)
		}
		for _, h := range obHosts {
			if p := s.hosts[h].Status.Phase; p != vpoolv1alpha1.HostPhaseLive {
				r.seen = appendNew(r.seen, h+":"+string(p))
			}
		}
		if r.renewed == 0 && s.allRenewed(stopped) {
			r.renewed = at
		}
		if r.live == 0 && s.allLive(stopped) {
			r.live = at
		}
		if r.unexp == 0 {
			if m, err := b.scrapeAll(ctx); err == nil && sumOf(m, "poolkeeper_agent_outage_exempt") == 0 {
				r.unexp = at
			}
		}
		return r.renewed > 0 && r.live > 0 && r.unexp > 0 && time.Since(answered) >= safe || b.anyExited()
	})
}

// judge counts what the freeze, from since to resumed, did to the VMs and the hosts.
func (b *outageBench) judge(ctx context.Context, r *freezeResult, since, resumed time.Time) error {
	for _, h := range obHosts {
		log := b.logSince(b.agentLog(h))
		r.stopped += strings.Count(log, `"Stopped VM"`)
		r.started += strings.Count(log, `"Started VM"`)
		for line := range strings.Lines(log) {
			if strings.Contains(line, "stopping every VM") {
				r.selfFenced++
				var l struct {
					RunningVMs int `json:"runningVMs"`
				}
				_ = json.Unmarshal([]byte(line), &l)
				r.stopped += l.RunningVMs
			}
		}
		if b.exited(h) {
			r.exited++
		}
	}
	for line := range strings.Lines(b.logSince(b.k.mgr.log.Name())) {
		var l struct {
			Msg, To string
			Host    struct{ Name, Namespace string }
		}
		if json.Unmarshal([]byte(line), &l) != nil || l.Msg != "Host phase changed" || l.Host.Namespace != obNS {
			continue
		}
		if l.To != string(vpoolv1alpha1.HostPhaseLive) {
			r.leftLive = appendNew(r.leftLive, l.Host.Name+":"+l.To)
		}
		if l.To == string(vpoolv1alpha1.HostPhaseFencing) || l.To == string(vpoolv1alpha1.HostPhaseFenced) {
			r.fenced = appendNew(r.fenced, l.Host.Name+":"+l.To)
		}
	}
	if err := b.hostEvents(ctx, r, since, resumed); err != nil {
		return err
	}
	s, err := b.snapshot(ctx)
	if err != nil {
		return err
	}
	for i := range len(obHosts) * b.cfg.vmsPerHost {
		vm := s.vms[fmt.Sprintf("vm-%04d", i)]
		if vm == nil || vm.Status.PowerState != vpoolv1alpha1.PowerRunning || vm.Status.ResidentOn != obHosts[i/b.cfg.vmsPerHost] {
			r.moved++
		}
	}
	for _, h := range obHosts {
		r.notRunning += max(0, b.running[h]-len(s.hosts[h].Status.RunningVMs))
	}
	return nil
}

// hostEvents lists the Host events of the pool last seen at or after since
// (whole seconds), by reason: how many Hosts, and the first time from
// resumed.
func (b *outageBench) hostEvents(ctx context.Context, r *freezeResult, since, resumed time.Time) error {
	var events eventsv1.EventList
	if err := b.k.c.List(ctx, &events, client.InNamespace(obNS)); err != nil {
		return err
	}
	type seen struct {
		reason string
		n      int
		first  time.Time
	}
	var byReason []*seen
	for _, e := range events.Items {
		last := e.EventTime.Time
		if e.Series != nil {
			last = e.Series.LastObservedTime.Time
		}
		if t := e.DeprecatedLastTimestamp.Time; t.After(last) {
			last = t
		}
		if e.Regarding.Kind != "Host" || last.Before(since.Truncate(time.Second)) {
			continue
		}
		i := slices.IndexFunc(byReason, func(s *seen) bool { return s.reason == e.Reason })
		if i < 0 {
			i, byReason = len(byReason), append(byReason, &seen{reason: e.Reason, first: last})
		}
		if byReason[i].n++; last.Before(byReason[i].first) {
			byReason[i].first = last
		}
	}
	slices.SortFunc(byReason, func(a, b *seen) int { return a.first.Compare(b.first) })
	for _, s := range byReason {
		r.events = append(r.events, fmt.Sprintf("%s×%d@%+.1fs", s.reason, s.n, s.first.Sub(resumed).Seconds()))
	}
	return nil
}

// appendNew appends v to the sorted set s.
func appendNew(s []string, v string) []string {
	if i, found := slices.BinarySearch(s, v); !found {
		return slices.Insert(s, i, v)
	}
	return s
}

func (b *outageBench) exited(h string) bool {
	select {
	case <-b.hosts[h].agentDone:
		return true
	default:
		return false
	}
}

func (b *outageBench) anyExited() bool { return slices.ContainsFunc(obHosts, b.exited) }

// logSince is what file gained since the freeze began.
func (b *outageBench) logSince(file string) string {
	f, err := os.Open(file)
	if err != nil {
		return ""
	}
	defer func() { _ = f.Close() }()
	if _, err := f.Seek(b.logOff[file], io.SeekStart); err != nil {
		return ""
	}
	out, _ := io.ReadAll(f)
	return string(out)
}

func fileSize(name string) int64 {
	st, err := os.Stat(name)
	if err != nil {
		return 0
	}
	return st.Size()
}

// slotsSinceOK reads each host's statefile slot as its peers do (the JSON
// after the block's 16-byte header) and returns its time since its
// writer's last renewal.
func (b *outageBench) slotsSinceOK() []time.Duration {
	var out []time.Duration
	for _, h := range obHosts {
		block, err := os.ReadFile(filepath.Join(b.statefileDir(), h+".slot"))
		var s statefile.Slot
		if err == nil && len(block) >= 16 {
			n := min(int(binary.LittleEndian.Uint32(block[8:])), len(block)-16)
			_ = json.Unmarshal(block[16:16+n], &s)
		}
		out = append(out, s.SinceOK)
	}
	return out
}

// scrapeAll reads every agent's metrics: host → sample name → the sum of
// its values.
func (b *outageBench) scrapeAll(ctx context.Context) (map[string]map[string]float64, error) {
	out := map[string]map[string]float64{}
	for _, h := range obHosts {
		m, err := scrape(ctx, b.metrics[h])
		if err != nil {
			return nil, fmt.Errorf("the metrics of %s's agent: %w", h, err)
		}
		out[h] = m
	}
	return out, nil
}

func scrape(ctx context.Context, url string) (map[string]float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for line := range strings.Lines(string(body)) {
		f := strings.Fields(line)
		if len(f) < 2 || strings.HasPrefix(f[0], "#") {
			continue
		}
		name, _, _ := strings.Cut(f[0], "{")
		if v, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil {
			out[name] += v
		}
	}
	return out, nil
}

func sumOf(m map[string]map[string]float64, name string) float64 {
	var s float64
	for _, h := range m {
		s += h[name]
	}
	return s
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return fmt.Errorf("interrupted: %w", context.Cause(ctx))
	case <-time.After(d):
		return nil
	}
}

// obSnapshot is one poll of the pool's objects.
type obSnapshot struct {
	at     time.Time
	pool   *vpoolv1alpha1.Pool
	hosts  map[string]*vpoolv1alpha1.Host
	vms    map[string]*vpoolv1alpha1.VirtualMachine
	leases map[string]*coordinationv1.Lease
}

// allLive: every Host Live, and (after is not zero) its Lease renewed after after.
func (s *obSnapshot) allLive(after time.Time) bool {
	return !slices.ContainsFunc(obHosts, func(h string) bool {
		return s.hosts[h] == nil || s.hosts[h].Status.Phase != vpoolv1alpha1.HostPhaseLive
	}) && (after.IsZero() || s.allRenewed(after))
}

func (s *obSnapshot) allRenewed(after time.Time) bool {
	return !slices.ContainsFunc(obHosts, func(h string) bool {
		l := s.leases[h]
		return l == nil || l.Spec.RenewTime == nil || !l.Spec.RenewTime.After(after)
	})
}

// snapshot lists the pool's objects; each request may take 2s, so that a
// poll goes on while the API server does not answer.
func (b *outageBench) snapshot(ctx context.Context) (*obSnapshot, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	s := &obSnapshot{at: time.Now(), pool: &vpoolv1alpha1.Pool{}}
	var hosts vpoolv1alpha1.HostList
	var vms vpoolv1alpha1.VirtualMachineList
	var leases coordinationv1.LeaseList
	err := b.k.c.Get(ctx, client.ObjectKey{Namespace: obNS, Name: obPool}, s.pool)
	for _, l := range []client.ObjectList{&hosts, &vms, &leases} {
		if err == nil {
			err = b.k.c.List(ctx, l, client.InNamespace(obNS))
		}
	}
	if err != nil {
		return nil, err
	}
	s.hosts, s.vms, s.leases = byName(hosts.Items), byName(vms.Items), byName(leases.Items)
	return s, nil
}

// byName indexes a list's items by name.
func byName[T any, P interface {
	*T
	client.Object
}](items []T) map[string]P {
	m := make(map[string]P, len(items))
	for i := range items {
		m[P(&items[i]).GetName()] = &items[i]
	}
	return m
}

// poll takes a snapshot every 250 ms until cond holds, the deadline passes,
// the manager exits or ctx ends; a snapshot that fails (the API server not
// answering) is tried again.
func (b *outageBench) poll(ctx context.Context, what string, deadline time.Time, cond func(*obSnapshot) bool) error {
	var last error
	for {
		s, err := b.snapshot(ctx)
		if err == nil && cond(s) {
			return nil
		}
		last = err
		if err := b.k.mgr.exited(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("waiting for %s: %w (last error: %w)", what, errTimedOut, last)
		}
		if err := sleep(ctx, 250*time.Millisecond); err != nil {
			return err
		}
	}
}
