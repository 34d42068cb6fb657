package main

// The libvirt subcommand measures recovery of real VMs: the test guest of
// hack/guest on hosts simulated by hack/libvirt-host.sh, each with its own
// libvirt daemon, emulated watchdog and poolkeeper-agent --driver libvirt.
//
//	go run ./cmd/bench libvirt                 # 3 hosts, 12 guests, 20s timeout
//	go run ./cmd/bench libvirt --vms 4 --timeout 10s
//
// Setup: envtest and the real manager (as for liveness), a Pool with HA on
// and heartbeatTimeout --timeout, the shared SR "shared" (the libvirt
// storage pool every simulated host has), 3 Hosts with an agent each
// (--agent, built by `make build`) and --vms Restart VMs (1 vCPU, 128 MiB,
// one RW 64 MiB VDI, booting the test guest, affinity to the second host),
// created one at a time, each once the one before runs.
//
// Agent restart: with every guest running, the second host's agent is
// stopped (SIGTERM, as for an upgrade) and started again. stopped = guests
// whose domain (ID, QEMU pid) is gone or new two heartbeats later (must be
// 0); adopt = from the new agent's start to its first Lease renewal, after
// which it runs the host's VMs again.
//
// Power loss: `hack/libvirt-host.sh down` of the second host and a SIGKILL
// of its agent, at t0. From t0, on the bench's clock, polling the API every
// 100 ms and the guests' disks (package hack/guest/disklog): detect (the
// Host Unreachable), fence (Fenced), reset+release (the last VM reset and
// its VDI lock released), running (the last VM Running on another host) and
// booted (the last guest's first record on its disk from the new boot). The
// disk logs are checked for two boots writing at once.
//
// Progress goes to stderr, the figures to stdout; nothing is asserted.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/hack/guest/disklog"
)

type libvirtConfig struct {
	manager, agent          string
	vms                     int
	interval, timeout, wait time.Duration
}

const (
	lvNS     = "bench-libvirt"
	lvPool   = "p"
	lvVictim = "h2"
)

var lvHosts = []string{"h1", "h2", "h3"}

func mainLibvirt(args []string) int {
	var cfg libvirtConfig
	fs := flag.NewFlagSet("bench libvirt", flag.ExitOnError)
	fs.StringVar(&cfg.manager, "manager", "bin/poolkeeper", "Manager binary (built by `make build`).")
	fs.StringVar(&cfg.agent, "agent", "bin/poolkeeper-agent", "Agent binary (built by `make build`).")
	fs.IntVar(&cfg.vms, "vms", 12, "Guests, all on the host that loses its power.")
	fs.DurationVar(&cfg.timeout, "timeout", 20*time.Second, "The Pool's spec.heartbeatTimeout.")
	fs.DurationVar(&cfg.interval, "interval", 5*time.Second, "The agents' heartbeat interval; at most --timeout/4.")
	fs.DurationVar(&cfg.wait, "wait", 10*time.Minute, "How long to wait for each phase (guests booting under QEMU TCG are slow).")
	_ = fs.Parse(args)
	var err error
	switch {
	case cfg.vms < 1:
		err = errors.New("want --vms >= 1")
	case cfg.timeout < 4*time.Second || cfg.wait <= 0:
		err = errors.New("want --timeout >= 4s and --wait > 0")
	default:
		err = checkInterval(cfg.interval, cfg.timeout)
	}
	return run(err, func(ctx context.Context) error { return runLibvirt(ctx, cfg) })
}

// lvHost is one simulated host and its agent.
type lvHost struct {
	name, simName, uri, watchdog string
	agent                        *exec.Cmd
	agentDone                    chan struct{}
	agentStarted                 time.Time
}

// libvirtBench is one run: the cluster, the simulated hosts and the guest.
type libvirtBench struct {
	cfg                     libvirtConfig
	k                       *cluster
	root                    string // POOLKEEPER_LIBVIRT_ROOT
	kernel, initrd, cmdline string
	accel                   string
	hosts                   map[string]*lvHost
}

func runLibvirt(ctx context.Context, cfg libvirtConfig) (err error) {
	if _, err := os.Stat(cfg.agent); err != nil {
		return fmt.Errorf("agent binary: %w (run `make build` first, or pass --agent)", err)
	}
	k, err := startCluster(cfg.manager)
	if err != nil {
		return err
	}
	defer func() { err = k.close(err) }()
	b := &libvirtBench{cfg: cfg, k: k, hosts: map[string]*lvHost{}}
	if b.root, err = os.MkdirTemp("", "poolkeeper-bench-libvirt-"); err != nil {
		return err
	}
	defer func() { b.teardown(err != nil) }()
	if err := b.setup(ctx); err != nil {
		return err
	}
	restart, err := b.agentRestart(ctx)
	if err != nil {
		return err
	}
	loss, err := b.powerLoss(ctx)
	if err != nil {
		return err
	}
	fmt.Printf("libvirt benchmark: hosts=%d vms=%d interval=%s timeout=%s domains=%s\n",
		len(lvHosts), cfg.vms, cfg.interval, cfg.timeout, b.accel)
	fmt.Printf("agent restart (SIGTERM and start, %d guests running): VMs stopped %d of %d; adopted (first Lease renewal of the new agent) %.2fs after its start\n",
		cfg.vms, restart.stopped, cfg.vms, restart.adopt.Seconds())
	s := func(t time.Time) float64 { return t.Sub(loss.cut).Seconds() }
	fmt.Printf("power loss of %s with %d guests, seconds from the cut: detect %.1f, fence %.1f, reset+release %.1f, running elsewhere %.1f, booted %.1f (heartbeat timeout %.0fs, safe time %.0fs)\n",
		lvVictim, cfg.vms, s(loss.unreachable), s(loss.fenced), s(loss.released), s(loss.running), s(loss.booted),
		cfg.timeout.Seconds(), 1.5*cfg.timeout.Seconds())
	fmt.Printf("per guest (p50 / max, s from the cut): running %.1f / %.1f, booted %.1f / %.1f; boot after Running %.1f / %.1f\n",
		secs(loss.runningEach, 0.5, loss.cut), secs(loss.runningEach, 1, loss.cut),
		secs(loss.bootedEach, 0.5, loss.cut), secs(loss.bootedEach, 1, loss.cut),
		pctDur(loss.bootLag, 0.5).Seconds(), pctDur(loss.bootLag, 1).Seconds())
	fmt.Printf("disk logs: %d of %d guests show one writer at a time\n", loss.oneWriter, cfg.vms)
	for _, o := range loss.overlaps {
		fmt.Printf("  OVERLAP: %s\n", o)
	}
	return nil
}

// setup builds the guest, starts the hosts and their agents and the VMs,
// and waits until every guest writes its disk.
func (b *libvirtBench) setup(ctx context.Context) error {
	out, err := b.script("hack/guest/build.sh", filepath.Join(b.root, "guest"))
	if err != nil {
		return fmt.Errorf("building the test guest: %w", err)
	}
	b.kernel, b.initrd, b.cmdline = out["KERNEL"], out["INITRD"], out["CMDLINE"]
	progress("test guest: kernel %s, initrd %s", b.kernel, b.initrd)
	var wg sync.WaitGroup
	errs := make([]error, len(lvHosts))
	for i, h := range lvHosts {
		b.hosts[h] = &lvHost{name: h, simName: "bench-" + h}
		wg.Go(func() { errs[i] = b.up(b.hosts[h]) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	progress("simulated hosts up (%s): %s", b.accel, strings.Join(lvHosts, ", "))
	if err := b.createPool(ctx); err != nil {
		return err
	}
	for _, h := range lvHosts {
		if err := b.startAgent(b.hosts[h]); err != nil {
			return err
		}
	}
	if err := b.poll(ctx, "every Host Live", func(s *snapshot) bool {
		return !slices.ContainsFunc(lvHosts, func(h string) bool { return s.hosts[h].Status.Phase != vpoolv1alpha1.HostPhaseLive })
	}); err != nil {
		return err
	}
	start := time.Now()
	// One at a time: the agent starts the VMs it finds placed on its host one
	// after the other within one sync, and renews its Lease only between
	// syncs, so a dozen slow starts at once can outlast the heartbeat timeout.
	for i := range b.cfg.vms {
		name := vmName(i)
		if err := b.createVM(ctx, name); err != nil {
			return err
		}
		if err := b.poll(ctx, name+" Running", func(s *snapshot) bool {
			return s.vms[name] != nil && s.vms[name].Status.PowerState == vpoolv1alpha1.PowerRunning
		}); err != nil {
			return err
		}
	}
	if err := b.poll(ctx, fmt.Sprintf("every guest booted on %s", lvVictim), func(s *snapshot) bool {
		for i := range b.cfg.vms {
			vm := s.vms[vmName(i)]
			if vm.Status.PowerState != vpoolv1alpha1.PowerRunning || vm.Status.ResidentOn != lvVictim {
				return false
			}
			if boots := s.boots[vmName(i)]; len(boots) == 0 || boots[len(boots)-1].Records == 0 {
				return false
			}
		}
		return true
	}); err != nil {
		return err
	}
	progress("%d guests running on %s and writing their disks, %.1fs after the VMs were created", b.cfg.vms, lvVictim, time.Since(start).Seconds())
	return nil
}

// createPool creates the namespace, the Pool, its shared SR and its Hosts.
func (b *libvirtBench) createPool(ctx context.Context) error {
	c := b.k.c
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: lvNS}}); err != nil {
		return err
	}
	objs := []client.Object{
		&vpoolv1alpha1.Pool{ObjectMeta: metav1.ObjectMeta{Namespace: lvNS, Name: lvPool}, Spec: vpoolv1alpha1.PoolSpec{
			HA: vpoolv1alpha1.HASpec{Enabled: true}, HeartbeatTimeout: &metav1.Duration{Duration: b.cfg.timeout},
			Master: lvHosts[0], DefaultStorageRepository: "shared"}},
		&vpoolv1alpha1.StorageRepository{ObjectMeta: metav1.ObjectMeta{Namespace: lvNS, Name: "shared"},
			Spec: vpoolv1alpha1.StorageRepositorySpec{PoolRef: vpoolv1alpha1.PoolReference{Name: lvPool}, Type: "nfs", Shared: true,
				Libvirt: &vpoolv1alpha1.LibvirtStorage{StoragePool: "shared"}}},
	}
	for _, h := range lvHosts {
		objs = append(objs, &vpoolv1alpha1.Host{ObjectMeta: metav1.ObjectMeta{Namespace: lvNS, Name: h},
			Spec: vpoolv1alpha1.HostSpec{PoolRef: vpoolv1alpha1.PoolReference{Name: lvPool}, Address: h + ".example",
				Capacity: vpoolv1alpha1.HostCapacity{CPU: resource.MustParse("32"), Memory: resource.MustParse("32Gi")}}})
	}
	for _, o := range objs {
		if err := c.Create(ctx, o); err != nil {
			return fmt.Errorf("creating %T %s: %w", o, o.GetName(), err)
		}
	}
	return nil
}

func vmName(i int) string { return fmt.Sprintf("vm-%02d", i) }

func (b *libvirtBench) createVM(ctx context.Context, name string) error {
	mem, cpu := resource.MustParse("128Mi"), resource.MustParse("1")
	vdi := &vpoolv1alpha1.VirtualDisk{ObjectMeta: metav1.ObjectMeta{Namespace: lvNS, Name: name + "-disk"},
		Spec: vpoolv1alpha1.VirtualDiskSpec{PoolRef: vpoolv1alpha1.PoolReference{Name: lvPool}, StorageRepository: "shared",
			Size: resource.MustParse("64Mi")}}
	vm := &vpoolv1alpha1.VirtualMachine{ObjectMeta: metav1.ObjectMeta{Namespace: lvNS, Name: name},
		Spec: vpoolv1alpha1.VirtualMachineSpec{PoolRef: vpoolv1alpha1.PoolReference{Name: lvPool},
			PowerState: vpoolv1alpha1.DesiredRunning,
			Resources:  vpoolv1alpha1.VMResources{CPU: &cpu, Memory: &mem},
			Disks:      []vpoolv1alpha1.VMDisk{{Name: "log", VirtualDisk: vdi.Name, Mode: vpoolv1alpha1.DiskRW}},
			Boot:       &vpoolv1alpha1.VMBoot{Kernel: b.kernel, Initrd: b.initrd, Cmdline: b.cmdline},
			Affinity:   vpoolv1alpha1.VMAffinity{Host: lvVictim},
			HA:         vpoolv1alpha1.VMHA{RestartPriority: vpoolv1alpha1.RestartAlways}}}
	for _, o := range []client.Object{vdi, vm} {
		if err := b.k.c.Create(ctx, o); err != nil {
			return fmt.Errorf("creating %T %s: %w", o, o.GetName(), err)
		}
	}
	return nil
}

// script runs a hack/ script with the bench's POOLKEEPER_LIBVIRT_ROOT and
// returns its KEY=VALUE lines; its stderr goes to a log in the root.
func (b *libvirtBench) script(path string, args ...string) (map[string]string, error) {
	var stdout bytes.Buffer
	logPath := filepath.Join(b.root, strings.ReplaceAll(filepath.Base(path)+"-"+strings.Join(args, "-"), "/", "_")+".log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, err
	}
	defer func() { _ = logf.Close() }()
	cmd := exec.Command(path, args...)
	cmd.Env = append(os.Environ(), "POOLKEEPER_LIBVIRT_ROOT="+b.root)
	cmd.Stdout, cmd.Stderr = &stdout, logf
	if err := cmd.Run(); err != nil {
		tail, _ := os.ReadFile(logPath)
		lines := strings.Split(strings.TrimSpace(string(tail)), "\n")
		return nil, fmt.Errorf("%s %s: %w: %s", path, strings.Join(args, " "), err, strings.Join(lines[max(0, len(lines)-3):], "; "))
	}
	out := map[string]string{}
	sc := bufio.NewScanner(&stdout)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			out[k] = v
		}
	}
	if strings.HasPrefix(filepath.Base(path), "libvirt-host") && len(args) > 0 && args[0] == "up" {
		if log, _ := os.ReadFile(logPath); bytes.Contains(log, []byte("KVM works")) {
			b.accel = "kvm"
		} else if b.accel == "" {
			b.accel = "qemu (TCG)"
		}
	}
	return out, nil
}

func (b *libvirtBench) up(h *lvHost) error {
	out, err := b.script("hack/libvirt-host.sh", "up", h.simName)
	if err != nil {
		return err
	}
	h.uri, h.watchdog = out["LIBVIRT_URI"], out["WATCHDOG"]
	if h.uri == "" || h.watchdog == "" {
		return fmt.Errorf("hack/libvirt-host.sh up %s printed no LIBVIRT_URI= or WATCHDOG= line", h.simName)
	}
	return nil
}

func (b *libvirtBench) startAgent(h *lvHost) error {
	return h.start(b.cfg.agent, filepath.Join(b.k.dir, "kubeconfig"), filepath.Join(b.root, "agent-"+h.name+".log"),
		"--namespace", lvNS, "--host", h.name, "--driver", "libvirt",
		"--libvirt-uri", h.uri, "--watchdog", h.watchdog, "--heartbeat-interval", b.cfg.interval.String())
}

// start runs the host's agent, the binary path with args, against
// kubeconfig, its output appended to logPath.
func (h *lvHost) start(path, kubeconfig, logPath string, args ...string) error {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(path, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		return fmt.Errorf("starting the agent of %s: %w", h.name, err)
	}
	h.agent, h.agentDone, h.agentStarted = cmd, make(chan struct{}), time.Now()
	done := h.agentDone
	go func() { _ = cmd.Wait(); _ = logf.Close(); close(done) }()
	return nil
}

// stopAgent signals the host's agent and waits for it to exit.
func (h *lvHost) stopAgent(sig syscall.Signal) {
	if h.agent == nil {
		return
	}
	_ = h.agent.Process.Signal(sig)
	select {
	case <-h.agentDone:
	case <-time.After(30 * time.Second):
		_ = h.agent.Process.Kill()
		<-h.agentDone
	}
	h.agent = nil
}

// teardown stops the agents and powers the hosts off; their files go,
// unless the run failed: then the logs are kept.
func (b *libvirtBench) teardown(failed bool) {
	for _, h := range b.hosts {
		h.stopAgent(syscall.SIGKILL)
	}
	for _, h := range b.hosts {
		if _, err := b.script("hack/libvirt-host.sh", "down", h.simName); err != nil {
			progress("%v", err)
		}
	}
	if failed {
		_ = os.RemoveAll(filepath.Join(b.root, "shared"))
		progress("logs of the simulated hosts and agents kept in %s", b.root)
		return
	}
	_ = os.RemoveAll(b.root)
}

// snapshot is one poll of the pool's objects and the guests' disks.
type snapshot struct {
	at    time.Time
	hosts map[string]*vpoolv1alpha1.Host
	vms   map[string]*vpoolv1alpha1.VirtualMachine
	vdis  map[string]*vpoolv1alpha1.VirtualDisk
	boots map[string][]disklog.Boot // by VM
	lease map[string]*coordinationv1.Lease
}

func (b *libvirtBench) snapshot(ctx context.Context) (*snapshot, error) {
	s := &snapshot{at: time.Now(), hosts: map[string]*vpoolv1alpha1.Host{}, vms: map[string]*vpoolv1alpha1.VirtualMachine{},
		vdis: map[string]*vpoolv1alpha1.VirtualDisk{}, boots: map[string][]disklog.Boot{}, lease: map[string]*coordinationv1.Lease{}}
	var hosts vpoolv1alpha1.HostList
	var vms vpoolv1alpha1.VirtualMachineList
	var vdis vpoolv1alpha1.VirtualDiskList
	var leases coordinationv1.LeaseList
	for _, l := range []client.ObjectList{&hosts, &vms, &vdis, &leases} {
		if err := b.k.c.List(ctx, l, client.InNamespace(lvNS)); err != nil {
			return nil, err
		}
	}
	for i := range hosts.Items {
		s.hosts[hosts.Items[i].Name] = &hosts.Items[i]
	}
	for i := range vms.Items {
		s.vms[vms.Items[i].Name] = &vms.Items[i]
	}
	for i := range leases.Items {
		s.lease[leases.Items[i].Name] = &leases.Items[i]
	}
	for i := range vdis.Items {
		vdi := &vdis.Items[i]
		vm := strings.TrimSuffix(vdi.Name, "-disk")
		s.vdis[vm] = vdi
		if vdi.Status.Volume == "" {
			continue
		}
		boots, err := readBoots(vdi.Status.Volume)
		if err != nil {
			return nil, fmt.Errorf("reading the disk of %s: %w", vm, err)
		}
		s.boots[vm] = boots
	}
	return s, nil
}

func readBoots(path string) ([]disklog.Boot, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	return disklog.Read(f, st.Size())
}

// poll takes a snapshot every 100 ms until cond holds, an agent of a host
// that should run exits, the manager exits or --wait passes.
func (b *libvirtBench) poll(ctx context.Context, what string, cond func(*snapshot) bool) error {
	deadline := time.Now().Add(b.cfg.wait)
	for {
		s, err := b.snapshot(ctx)
		if err != nil {
			return err
		}
		if cond(s) {
			return nil
		}
		if err := b.k.mgr.exited(); err != nil {
			return err
		}
		for _, h := range b.hosts {
			if h.agent != nil && h.agentDone != nil {
				select {
				case <-h.agentDone:
					return fmt.Errorf("waiting for %s: the agent of %s exited (see %s)", what, h.name,
						filepath.Join(b.root, "agent-"+h.name+".log"))
				default:
				}
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("waiting for %s: %w after %s", what, errTimedOut, b.cfg.wait)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("interrupted: %w", context.Cause(ctx))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

type restartResult struct {
	stopped int
	adopt   time.Duration
}

// agentRestart restarts the victim's agent with every guest running.
func (b *libvirtBench) agentRestart(ctx context.Context) (restartResult, error) {
	var r restartResult
	h := b.hosts[lvVictim]
	before, err := b.domains(h)
	if err != nil {
		return r, err
	}
	h.stopAgent(syscall.SIGTERM)
	if err := b.startAgent(h); err != nil {
		return r, err
	}
	started := h.agentStarted
	var renewed time.Time
	if err := b.poll(ctx, "the restarted agent's first renewal", func(s *snapshot) bool {
		l := s.lease[lvVictim]
		if l != nil && l.Spec.RenewTime != nil && l.Spec.RenewTime.After(started) {
			renewed = s.at
			return true
		}
		return false
	}); err != nil {
		return r, err
	}
	r.adopt = renewed.Sub(started)
	// Two heartbeats: the new agent has synced its VMs.
	select {
	case <-ctx.Done():
		return r, context.Cause(ctx)
	case <-time.After(2 * b.cfg.interval):
	}
	after, err := b.domains(h)
	if err != nil {
		return r, err
	}
	for name, d := range before {
		if after[name] != d {
			r.stopped++
		}
	}
	progress("agent of %s restarted: %d of %d domains unchanged; first renewal %.2fs after its start",
		lvVictim, len(before)-r.stopped, len(before), r.adopt.Seconds())
	return r, nil
}

// domains are the host's active domains: name -> "ID/QEMU pid".
func (b *libvirtBench) domains(h *lvHost) (map[string]string, error) {
	u, err := url.Parse(h.uri)
	if err != nil {
		return nil, err
	}
	conn, err := golibvirt.ConnectToURI(u)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", h.uri, err)
	}
	defer func() { _ = conn.Disconnect() }()
	doms, _, err := conn.ConnectListAllDomains(1, golibvirt.ConnectListDomainsActive)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, d := range doms {
		pid, _ := os.ReadFile(filepath.Join(b.root, h.simName, "run", "qemu", d.Name+".pid"))
		out[d.Name] = strconv.Itoa(int(d.ID)) + "/" + strings.TrimSpace(string(pid))
	}
	return out, nil
}

type lossResult struct {
	cut, unreachable, fenced, released, running, booted time.Time
	runningAt, bootedAt                                 map[string]time.Time // by VM, first seen
	runningEach, bootedEach                             []time.Time
	bootLag                                             []time.Duration
	oneWriter                                           int
	overlaps                                            []disklog.Overlap
}

// powerLoss cuts the victim's power and follows the recovery.
func (b *libvirtBench) powerLoss(ctx context.Context) (lossResult, error) {
	r := lossResult{runningAt: map[string]time.Time{}, bootedAt: map[string]time.Time{}}
	h := b.hosts[lvVictim]
	r.cut = time.Now()
	if _, err := b.script("hack/libvirt-host.sh", "down", h.simName); err != nil {
		return r, err
	}
	h.stopAgent(syscall.SIGKILL)
	progress("power cut on %s; waiting for its %d guests to boot elsewhere", lvVictim, b.cfg.vms)
	if err := b.poll(ctx, "every guest booted on another host", func(s *snapshot) bool { return r.observe(s, b.cfg.vms) }); err != nil {
		return r, fmt.Errorf("%w (running elsewhere: %d, booted: %d of %d)", err, len(r.runningAt), len(r.bootedAt), b.cfg.vms)
	}
	for i := range b.cfg.vms {
		name := vmName(i)
		r.runningEach = append(r.runningEach, r.runningAt[name])
		r.bootedEach = append(r.bootedEach, r.bootedAt[name])
		r.bootLag = append(r.bootLag, r.bootedAt[name].Sub(r.runningAt[name]))
	}
	slices.SortFunc(r.runningEach, time.Time.Compare)
	slices.SortFunc(r.bootedEach, time.Time.Compare)
	slices.Sort(r.bootLag)
	r.running, r.booted = r.runningEach[len(r.runningEach)-1], r.bootedEach[len(r.bootedEach)-1]
	// A few records more from the new boots, then the disk logs.
	time.Sleep(time.Second)
	s, err := b.snapshot(ctx)
	if err != nil {
		return r, err
	}
	for i := range b.cfg.vms {
		o := disklog.Overlaps(s.boots[vmName(i)], disklog.Tolerance)
		if len(o) == 0 {
			r.oneWriter++
		}
		r.overlaps = append(r.overlaps, o...)
	}
	return r, nil
}

// observe records what a snapshot after the cut shows first, and says
// whether every guest has booted on another host.
func (r *lossResult) observe(s *snapshot, vms int) bool {
	switch s.hosts[lvVictim].Status.Phase {
	case vpoolv1alpha1.HostPhaseUnreachable, vpoolv1alpha1.HostPhaseFencing:
		setOnce(&r.unreachable, s.at)
	case vpoolv1alpha1.HostPhaseFenced:
		setOnce(&r.unreachable, s.at)
		setOnce(&r.fenced, s.at)
	}
	released := 0
	for i := range vms {
		name := vmName(i)
		vm, vdi := s.vms[name], s.vdis[name]
		reset := vm.Status.LastReset != nil && vm.Status.LastReset.At.After(r.cut.Add(-time.Second))
		if reset && vdi != nil && (vdi.Status.Lock == nil || vdi.Status.Lock.Host != lvVictim) {
			released++
		}
		if vm.Status.PowerState == vpoolv1alpha1.PowerRunning && vm.Status.ResidentOn != "" && vm.Status.ResidentOn != lvVictim {
			setOnceIn(r.runningAt, name, s.at)
		}
		if slices.ContainsFunc(s.boots[name], func(bt disklog.Boot) bool { return bt.Start.After(r.cut) && bt.Records > 0 }) {
			setOnceIn(r.bootedAt, name, s.at)
		}
	}
	if released == vms {
		setOnce(&r.released, s.at)
	}
	return len(r.bootedAt) == vms && len(r.runningAt) == vms
}

func setOnceIn(m map[string]time.Time, k string, at time.Time) {
	if _, ok := m[k]; !ok {
		m[k] = at
	}
}

func setOnce(t *time.Time, at time.Time) {
	if t.IsZero() {
		*t = at
	}
}

// secs is the p-th of sorted times, in seconds after t0.
func secs(sorted []time.Time, p float64, t0 time.Time) float64 {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[int(p*float64(len(sorted)-1))].Sub(t0).Seconds()
}

func pctDur(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[int(p*float64(len(sorted)-1))]
}
