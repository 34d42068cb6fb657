package main

// The recovery subcommand measures how long HA takes to run a fenced host's
// VMs again and compares it with the API write floor of the same work.
//
//	go run ./cmd/bench recovery                  # 1 dead host, 100 VMs
//	go run ./cmd/bench recovery --dead-hosts 10  # 10 dead hosts, 1000 VMs
//
// Setup, as for liveness: envtest, the real manager, a fleet renewing Leases.
// A Pool with HA on, heartbeatTimeout --timeout, spec.fencing.maxConcurrent
// --dead-hosts (all are fenced at once) and maxUnhealthyPercent 100: the storm
// guard would rightly refuse to fence 10 of 12 hosts, and this measures
// recovery, not the guard. One shared nfs SR; --hosts Hosts (cpu 1000, memory
// 4Ti, fencing Agent), of which the last --dead-hosts die (the first, which
// the pool elects master, survives). Each host that dies runs --vms-per-host
// VMs (1 CPU, 1Gi, one RW VDI on the SR, restartPriority Restart, affinity to
// it). simAgents plays the agents' VM role from one VM watch.
//
// The dead hosts stop heartbeating once every VM runs. recovery = last VM
// Running on a surviving host - last host seen Fenced; per-VM latency = VM
// Running again - its host seen Fenced (all on the bench's watches).
//
// Write floor. Per VM the current protocol cannot do with fewer than 6
// writes: VM status reset (Halted, residentOn ""), VDI lock release, VM status
// placement (residentOn is recorded before any lock), VDI lock, VM status
// DisksLocked True (the agent's signal, so it must follow the lock), and the
// agent's VM status Running; conditions ride in those writes. 5 would do if
// the agent read the VDI locks itself: that chain is timed too. Once the
// manager is stopped, the bench makes those writes, of the same kinds (VM
// status merge patches with optimistic lock, VDI status updates), on scratch
// objects in another namespace: each VM's chain in order, --writers chains at
// once (4, the manager's --max-concurrent-reconciles), with a client set up as
// the manager's (ctrl.GetConfig sets QPS -1: no client-side rate limiter).
// ratio = recovery / floor.
//
// Writes made are counted from the watches, from the first fence until 2s
// after the last VM runs again: MODIFIED VMs (less the agents' reports) and
// VDIs, and Events about VMs and VDIs.

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/internal/testutil"
)

type (
	vmObj  = vpoolv1alpha1.VirtualMachine
	vdiObj = vpoolv1alpha1.VirtualDisk
)

type recoveryConfig struct {
	manager                          string
	hosts, dead, vmsPerHost, writers int
	interval, timeout, wait          time.Duration
}

const hostCPU = 1000 // and 4Ti of memory: 1000 VMs of 1 CPU, 1Gi fit on one host

func mainRecovery(args []string) int {
	var cfg recoveryConfig
	fs := flag.NewFlagSet("bench recovery", flag.ExitOnError)
	fs.StringVar(&cfg.manager, "manager", "bin/poolkeeper", "Manager binary (built by `make build`).")
	fs.IntVar(&cfg.hosts, "hosts", 12, "Number of Hosts, the dead ones included.")
	fs.IntVar(&cfg.dead, "dead-hosts", 1, "Hosts that stop heartbeating once their VMs run; they are fenced at once.")
	fs.IntVar(&cfg.vmsPerHost, "vms-per-host", 100, "VMs started on each host that dies.")
	fs.DurationVar(&cfg.interval, "interval", time.Second, "Heartbeat interval of the fleet; at most --timeout/4.")
	fs.DurationVar(&cfg.timeout, "timeout", 4*time.Second, "The Pool's spec.heartbeatTimeout.")
	fs.DurationVar(&cfg.wait, "wait", 10*time.Minute, "How long to wait for the VMs to run again after the kill.")
	fs.IntVar(&cfg.writers, "writers", 4, "Concurrent writers of the write floor (the manager's --max-concurrent-reconciles).")
	_ = fs.Parse(args)
	var err error
	switch {
	case cfg.dead < 1 || cfg.dead >= cfg.hosts || cfg.vmsPerHost < 1 || cfg.writers < 1:
		err = errors.New("want 1 <= --dead-hosts < --hosts, --vms-per-host >= 1 and --writers >= 1")
	case (cfg.hosts-cfg.dead)*hostCPU < cfg.dead*cfg.vmsPerHost:
		err = fmt.Errorf("the %d surviving hosts (%d CPUs each) cannot run %d VMs", cfg.hosts-cfg.dead, hostCPU, cfg.dead*cfg.vmsPerHost)
	case cfg.timeout < time.Second || cfg.wait <= 0:
		err = errors.New("want --timeout >= 1s and --wait > 0")
	default:
		err = checkInterval(cfg.interval, cfg.timeout)
	}
	return run(err, func(ctx context.Context) error { return runRecovery(ctx, cfg) })
}

func runRecovery(ctx context.Context, cfg recoveryConfig) (err error) {
	k, err := startCluster(cfg.manager)
	if err != nil {
		return err
	}
	defer func() { err = k.close(err) }()
	r, err := measureRecovery(ctx, cfg, k)
	if err != nil {
		return err
	}
	progress("stopping the manager: the write floor is timed on an API server doing nothing else")
	if err := k.stopManager(); err != nil {
		return err
	}
	n := cfg.dead * cfg.vmsPerHost
	floor6, floor5, err := measureFloor(ctx, k, n, cfg.writers)
	if err != nil {
		return err
	}
	perVM := func(kind string) string { return ratio(float64(r.writes[kind]), float64(n), 1) }
	fmt.Printf("recovery benchmark: hosts=%d dead=%d vms=%d interval=%s timeout=%s\n", cfg.hosts, cfg.dead, n, cfg.interval, cfg.timeout)
	fmt.Printf("fence confirmed: %.2fs after the kill (first %.2fs); all VMs running again: %.2fs after the fence\n",
		r.lastFenced.Sub(r.killed).Seconds(), r.firstFenced.Sub(r.killed).Seconds(), r.recovery.Seconds())
	fmt.Printf("recovery: %.2fs (per-VM p50 %sms p99 %sms; from the first fence %.2fs); writes per VM: %s (VM %s, VDI %s; agent %s; events %s)\n",
		r.recovery.Seconds(), pct(r.latency, 0.5), pct(r.latency, 0.99), r.lastBack.Sub(r.firstFenced).Seconds(),
		ratio(float64(r.writes["VM"]+r.writes["VDI"]), float64(n), 1), perVM("VM"), perVM("VDI"), perVM("agent"), perVM("Event"))
	fmt.Printf("write floor: %.2fs for %d writes (6 per VM, %d writers); ratio %s (target <= 2)\n",
		floor6.Seconds(), 6*n, cfg.writers, ratio(r.recovery.Seconds(), floor6.Seconds(), 1))
	fmt.Printf("write floor, 5 per VM (agent reading the locks): %.2fs for %d writes; ratio %s\n",
		floor5.Seconds(), 5*n, ratio(r.recovery.Seconds(), floor5.Seconds(), 1))
	fmt.Printf("manager cpu: %.2fs from the kill to the last VM running again (%.0f%% of a core); load average %s\n",
		r.cpu.Seconds(), 100*r.cpu.Seconds()/r.lastBack.Sub(r.killed).Seconds(), r.load)
	return nil
}

type recoveryResults struct {
	killed, firstFenced, lastFenced, lastBack time.Time
	recovery, cpu                             time.Duration // cpu: the manager's, from the kill to the last VM back
	load                                      string        // the machine's 1-minute load average
	latency                                   []time.Duration
	writes                                    map[string]int // VM (the manager's), agent, VDI, Event
}

// measureRecovery builds the pool, runs every VM on its host, kills the dead
// hosts and waits until their VMs run elsewhere.
func measureRecovery(ctx context.Context, cfg recoveryConfig, k *cluster) (*recoveryResults, error) {
	const ns, pool, sr = "bench-recovery", "bench", "shared-nfs"
	c, n := k.c, cfg.dead*cfg.vmsPerHost
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		return nil, fmt.Errorf("creating namespace %s: %w", ns, err)
	}
	if err := c.Create(ctx, &vpoolv1alpha1.Pool{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: pool},
		Spec: vpoolv1alpha1.PoolSpec{HA: vpoolv1alpha1.HASpec{Enabled: true}, HeartbeatTimeout: &metav1.Duration{Duration: cfg.timeout},
			Fencing: vpoolv1alpha1.PoolFencingSpec{MaxConcurrent: int32(cfg.dead), MaxUnhealthyPercent: 100}},
	}); err != nil {
		return nil, fmt.Errorf("creating Pool %s/%s: %w", ns, pool, err)
	}
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch() // before envtest stops
	w, err := watchHosts(wctx, c, ns, cfg.hosts)
	if err != nil {
		return nil, err
	}
	names := make([]string, cfg.hosts)
	if err := parallel(cfg.hosts, 16, func(i int) error {
		names[i] = fmt.Sprintf("h-%04d", i)
		return c.Create(ctx, &vpoolv1alpha1.Host{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: names[i]},
			Spec: vpoolv1alpha1.HostSpec{PoolRef: vpoolv1alpha1.PoolReference{Name: pool}, Address: fmt.Sprintf("10.0.%d.%d", i>>8, i&255),
				Capacity: vpoolv1alpha1.HostCapacity{CPU: *resource.NewQuantity(hostCPU, resource.DecimalSI), Memory: resource.MustParse("4Ti")}}})
	}); err != nil {
		return nil, fmt.Errorf("creating Hosts: %w", err)
	}
	f := newFleet(c, ns, names, cfg.interval, cfg.timeout)
	go f.run(wctx, cfg.hosts)
	if err := waitFor(ctx, k.mgr, w, f.start.Add(2*time.Minute), func() bool { return w.view().live == cfg.hosts }); err != nil {
		return nil, fmt.Errorf("waiting for every Host to be Live (%d of %d): %w", w.view().live, cfg.hosts, err)
	}
	progress("all %d Hosts Live", cfg.hosts)

	rec := &recorder{fenced: map[string]time.Time{}, on: map[string]string{}, back: map[string]time.Time{}, writes: map[string][]time.Time{}}
	ag := newSimAgents(c, w, names, n)
	for _, list := range []client.ObjectList{&vpoolv1alpha1.HostList{}, &vpoolv1alpha1.VirtualMachineList{},
		&vpoolv1alpha1.VirtualDiskList{}, &eventsv1.EventList{}} {
		if err := follow(wctx, c, list, ns, rec, ag); err != nil {
			return nil, err
		}
	}
	for _, h := range names {
		go ag.work(wctx, h)
	}

	start := time.Now()
	affinity := map[string]string{}
	dead := names[cfg.hosts-cfg.dead:]
	if err := c.Create(ctx, &vpoolv1alpha1.StorageRepository{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: sr},
		Spec: vpoolv1alpha1.StorageRepositorySpec{PoolRef: vpoolv1alpha1.PoolReference{Name: pool}, Type: "nfs", Shared: true}}); err != nil {
		return nil, fmt.Errorf("creating the SR: %w", err)
	}
	if err := parallel(n, 16, func(i int) error {
		return c.Create(ctx, newVDI(ns, pool, sr, i))
	}); err != nil {
		return nil, fmt.Errorf("creating VDIs: %w", err)
	}
	for i := range n {
		affinity[fmt.Sprintf("vm-%04d", i)] = dead[i/cfg.vmsPerHost]
	}
	if err := parallel(n, 16, func(i int) error {
		return c.Create(ctx, newVM(ns, pool, i, dead[i/cfg.vmsPerHost]))
	}); err != nil {
		return nil, fmt.Errorf("creating VMs: %w", err)
	}
	if err := rec.waitUntil(ctx, k.mgr, w, time.Now().Add(5*time.Minute), func() bool { return maps.Equal(rec.on, affinity) }); err != nil {
		diagnose(ctx, c, ns)
		return nil, fmt.Errorf("waiting for every VM to run on its host: %w", err)
	}
	progress("%d VMs running on %d hosts %s after they were created", n, cfg.dead, time.Since(start).Round(time.Millisecond))

	killed := make([]int, cfg.dead)
	for i := range killed {
		killed[i] = cfg.hosts - cfg.dead + i
	}
	cpu0, err := k.mgr.cpu()
	if err != nil {
		return nil, err
	}
	load0 := loadAverage() // other work on the machine skews every figure
	rec.kill(time.Now())
	f.stop(killed)
	ag.kill(dead)
	progress("stopped %d hosts; waiting up to %s for their VMs to run elsewhere", cfg.dead, cfg.wait)
	if err := rec.waitUntil(ctx, k.mgr, w, rec.killed.Add(cfg.wait), func() bool { return len(rec.back) == n }); err != nil {
		rec.mu.Lock()
		progress("%d of %d VMs running again; %d of %d hosts fenced", len(rec.back), n, len(rec.fenced), cfg.dead)
		rec.mu.Unlock()
		diagnose(ctx, c, ns)
		return nil, fmt.Errorf("waiting for the VMs to run again: %w", err)
	}
	cpu1, err := k.mgr.cpu()
	if err != nil {
		return nil, err
	}
	load1 := loadAverage()
	_ = waitFor(ctx, k.mgr, w, time.Now().Add(2*time.Second), nil) // trailing writes, counted
	progress("the surviving agents run %d VMs", ag.running())
	r := rec.results(ag.reports())
	r.cpu, r.load = cpu1-cpu0, load0+" at the kill, "+load1+" at the end"
	return r, nil
}

// recorder is what the bench's watches have seen, on its clock.
type recorder struct {
	mu     sync.Mutex
	ended  error
	killed time.Time
	fenced map[string]time.Time   // host → first seen Fenced
	on     map[string]string      // VM → host it is seen Running on (absent: not Running)
	home   map[string]string      // VM → host it ran on at the kill
	back   map[string]time.Time   // VM → first seen Running on another host after the kill
	writes map[string][]time.Time // after the kill, by kind: VM and VDI MODIFIED, Events
}

func (r *recorder) fail(err error) { r.mu.Lock(); r.ended = cmp.Or(r.ended, err); r.mu.Unlock() }

func (r *recorder) handle(t watch.EventType, o client.Object, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch o := o.(type) {
	case *vpoolv1alpha1.Host:
		if _, seen := r.fenced[o.Name]; !seen && o.Status.Phase == vpoolv1alpha1.HostPhaseFenced {
			r.fenced[o.Name] = now
		}
	case *vmObj:
		on := o.Status.ResidentOn
		if o.Status.PowerState != vpoolv1alpha1.PowerRunning || t == watch.Deleted {
			on = ""
		}
		if delete(r.on, o.Name); on != "" {
			r.on[o.Name] = on
		}
		if _, seen := r.back[o.Name]; !seen && !r.killed.IsZero() && on != "" && r.home[o.Name] != "" && on != r.home[o.Name] {
			r.back[o.Name] = now
		}
		r.count("VM", t == watch.Modified, now)
	case *vdiObj:
		r.count("VDI", t == watch.Modified, now)
	case *eventsv1.Event: // VMReset, VDILockReleased, …
		r.count("Event", t != watch.Deleted && (o.Regarding.Kind == "VirtualMachine" || o.Regarding.Kind == "VirtualDisk"), now)
	}
}

func (r *recorder) count(kind string, write bool, now time.Time) {
	if write && !r.killed.IsZero() {
		r.writes[kind] = append(r.writes[kind], now)
	}
}

func (r *recorder) kill(now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.killed, r.home = now, maps.Clone(r.on)
}

// waitUntil is waitFor with cond under the recorder's lock; a failed watch ends it.
func (r *recorder) waitUntil(ctx context.Context, mgr *managerProc, w *hostWatcher, deadline time.Time, cond func() bool) error {
	err := waitFor(ctx, mgr, w, deadline, func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.ended != nil || cond()
	})
	r.mu.Lock()
	defer r.mu.Unlock()
	return cmp.Or(r.ended, err)
}

func (r *recorder) results(agent []time.Time) *recoveryResults {
	r.mu.Lock()
	defer r.mu.Unlock()
	res := &recoveryResults{killed: r.killed, writes: map[string]int{}}
	dead := slices.Collect(maps.Values(r.home))
	for h, t := range r.fenced {
		if !slices.Contains(dead, h) {
			progress("warning: host %s, which kept heartbeating, was fenced", h)
			continue
		}
		if res.firstFenced.IsZero() || t.Before(res.firstFenced) {
			res.firstFenced = t
		}
		if t.After(res.lastFenced) {
			res.lastFenced = t
		}
	}
	for vm, t := range r.back {
		if t.After(res.lastBack) {
			res.lastBack = t
		}
		res.latency = append(res.latency, t.Sub(r.fenced[r.home[vm]]))
	}
	slices.Sort(res.latency)
	res.recovery = res.lastBack.Sub(res.lastFenced)
	i, _ := slices.BinarySearchFunc(agent, r.killed, time.Time.Compare)
	r.writes["agent"] = agent[i:] // the agents' reports after the kill
	for kind, ts := range r.writes {
		i, _ := slices.BinarySearchFunc(ts, res.firstFenced, time.Time.Compare)
		res.writes[kind] = len(ts) - i
		if i > 0 {
			progress("before the first fence (%.2fs after the kill): %d %s writes", res.firstFenced.Sub(r.killed).Seconds(), i, kind)
		}
	}
	res.writes["VM"] -= res.writes["agent"]
	return res
}

// follow watches list's kind in ns and hands every event to the recorder, and
// VMs to the agents too, until ctx ends; it returns once the watch is open, so
// no later write is missed. Objects that exist already come as ADDED. A watch
// the API server ends (as it ends the watch of a client it finds too slow on
// a loaded machine) is resumed where it stopped.
func follow(ctx context.Context, c client.WithWatch, list client.ObjectList, ns string, r *recorder, ag *simAgents) error {
	if err := c.List(ctx, list, client.InNamespace(ns)); err != nil {
		return fmt.Errorf("listing %T in %s: %w", list, ns, err)
	}
	lw := &cache.ListWatch{WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
		return c.Watch(ctx, list.DeepCopyObject().(client.ObjectList), &client.ListOptions{Namespace: ns, Raw: &o})
	}}
	wi, err := watchtools.NewRetryWatcherWithContext(ctx, list.GetResourceVersion(), lw)
	if err != nil {
		return fmt.Errorf("watching %T in %s: %w", list, ns, err)
	}
	handle := func(t watch.EventType, obj client.Object) {
		r.handle(t, obj, time.Now())
		if vm, ok := obj.(*vmObj); ok {
			ag.observe(vm)
		}
	}
	if err := meta.EachListItem(list, func(o runtime.Object) error {
		handle(watch.Added, o.(client.Object))
		return nil
	}); err != nil {
		return err
	}
	go func() {
		defer wi.Stop()
		for ev := range wi.ResultChan() {
			obj, ok := ev.Object.(client.Object)
			if !ok || ev.Type == watch.Error {
				r.fail(fmt.Errorf("the watch of %T failed: %v", list, ev.Object))
				return
			}
			handle(ev.Type, obj)
		}
		if ctx.Err() == nil {
			r.fail(fmt.Errorf("the watch of %T ended", list))
		}
	}()
	return nil
}

// simAgents plays the VM role of poolkeeper-agent for every simulated host,
// fed by the bench's one VM watch. Each host has one worker, which reports its
// VMs Running one at a time, as one agent's sync loop does.
type simAgents struct {
	c        client.Client
	hosts    *hostWatcher
	mu       sync.Mutex
	latest   map[string]*vmObj          // VM → last seen
	queued   map[string]bool            // host/VM → in that host's queue
	queues   map[string]chan string     // host → VMs to look at
	dead     map[string]bool            // hosts killed: they do nothing
	runs     map[string]map[string]bool // host → VMs it runs
	reported []time.Time                // when each successful Running report returned
}

func newSimAgents(c client.Client, w *hostWatcher, hosts []string, vms int) *simAgents {
	a := &simAgents{c: c, hosts: w, latest: map[string]*vmObj{}, queued: map[string]bool{},
		queues: map[string]chan string{}, dead: map[string]bool{}, runs: map[string]map[string]bool{}}
	for _, h := range hosts {
		a.queues[h], a.runs[h] = make(chan string, vms), map[string]bool{} // a VM is at most once in a queue
	}
	return a
}

// wants: host's agent should start vm and report it Running. Locked.
func (a *simAgents) wants(vm *vmObj, host string) bool {
	return vm != nil && vm.Status.ResidentOn == host && !a.dead[host] && vm.Spec.PowerState == vpoolv1alpha1.DesiredRunning &&
		meta.IsStatusConditionTrue(vm.Status.Conditions, vpoolv1alpha1.VMDisksLocked) &&
		vm.Status.PowerState != vpoolv1alpha1.PowerRunning && a.hosts.phase(host) == vpoolv1alpha1.HostPhaseLive
}

func (a *simAgents) observe(vm *vmObj) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.latest[vm.Name] = vm
	a.enqueue(vm.Status.ResidentOn, vm.Name)
}

func (a *simAgents) enqueue(host, name string) {
	if q, key := a.queues[host], host+"/"+name; q != nil && !a.queued[key] && a.wants(a.latest[name], host) {
		a.queued[key] = true
		q <- name
	}
}

func (a *simAgents) work(ctx context.Context, host string) {
	for {
		var name string
		select {
		case <-ctx.Done():
			return
		case name = <-a.queues[host]:
		}
		a.mu.Lock()
		delete(a.queued, host+"/"+name)
		vm := a.latest[name]
		ok := a.wants(vm, host)
		a.mu.Unlock()
		if !ok {
			continue
		}
		running := vm.DeepCopy()
		running.Status.PowerState = vpoolv1alpha1.PowerRunning
		err := a.c.Status().Patch(ctx, running, client.MergeFromWithOptions(vm, client.MergeFromWithOptimisticLock{}))
		a.mu.Lock()
		switch {
		case err == nil:
			a.reported = append(a.reported, time.Now())
			if !a.dead[host] {
				a.runs[host][name] = true
			}
		case apierrors.IsConflict(err) || apierrors.IsNotFound(err) || ctx.Err() != nil:
			// Changed meanwhile: its next event decides again.
		default:
			progress("agent of %s: reporting VM %s Running: %v; retrying", host, name, err)
			time.AfterFunc(100*time.Millisecond, func() { a.mu.Lock(); a.enqueue(host, name); a.mu.Unlock() })
		}
		a.mu.Unlock()
	}
}

// kill stops the hosts' agents; they forget their VMs.
func (a *simAgents) kill(hosts []string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, h := range hosts {
		a.dead[h] = true
		delete(a.runs, h)
	}
}

func (a *simAgents) running() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, vms := range a.runs {
		n += len(vms)
	}
	return n
}

func (a *simAgents) reports() []time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.reported)
}

func (w *hostWatcher) phase(name string) vpoolv1alpha1.HostPhase {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.phases[name]
}

func newVDI(ns, pool, sr string, i int) *vdiObj {
	return &vdiObj{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("vdi-%04d", i)},
		Spec: vpoolv1alpha1.VirtualDiskSpec{PoolRef: vpoolv1alpha1.PoolReference{Name: pool}, StorageRepository: sr,
			Size: resource.MustParse("10Gi")}}
}

func newVM(ns, pool string, i int, host string) *vmObj {
	cpu, mem := resource.MustParse("1"), resource.MustParse("1Gi")
	return &vmObj{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("vm-%04d", i)},
		Spec: vpoolv1alpha1.VirtualMachineSpec{PoolRef: vpoolv1alpha1.PoolReference{Name: pool}, PowerState: vpoolv1alpha1.DesiredRunning,
			Resources: vpoolv1alpha1.VMResources{CPU: &cpu, Memory: &mem}, Affinity: vpoolv1alpha1.VMAffinity{Host: host},
			Disks: []vpoolv1alpha1.VMDisk{{Name: "root", VirtualDisk: fmt.Sprintf("vdi-%04d", i), Mode: vpoolv1alpha1.DiskRW}},
			HA:    vpoolv1alpha1.VMHA{RestartPriority: vpoolv1alpha1.RestartAlways}}}
}

// measureFloor times the write chains of n VMs on scratch objects, writers
// chains at once: 6 writes per VM (from host a to b), then 5 (back to a).
func measureFloor(ctx context.Context, k *cluster, n, writers int) (six, five time.Duration, err error) {
	const ns, pool, sr = "bench-floor", "floor", "floor-sr"
	if err := k.c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		return 0, 0, fmt.Errorf("creating namespace %s: %w", ns, err)
	}
	vms, vdis := make([]*vmObj, n), make([]*vdiObj, n)
	// Not timed: the objects, in the state of a VM running on floor-a.
	if err := parallel(n, 16, func(i int) error {
		vms[i], vdis[i] = newVM(ns, pool, i, ""), newVDI(ns, pool, sr, i)
		if err := errors.Join(k.c.Create(ctx, vms[i]), k.c.Create(ctx, vdis[i])); err != nil {
			return err
		}
		return step(ctx, k.c, vms[i], vdis[i], "", "floor-a", 6)
	}); err != nil {
		return 0, 0, fmt.Errorf("creating the scratch objects: %w", err)
	}
	rc := rest.CopyConfig(k.rest)
	rc.QPS, rc.WarningHandler = -1, rest.NoWarnings{} // as ctrl.GetConfig leaves the manager's: no client-side limiter
	c, err := client.New(rc, client.Options{Scheme: testutil.Scheme})
	if err != nil {
		return 0, 0, fmt.Errorf("creating the floor's API client: %w", err)
	}
	for _, chain := range []struct {
		from, to string
		writes   int
		took     *time.Duration
	}{{"floor-a", "floor-b", 6, &six}, {"floor-b", "floor-a", 5, &five}} {
		start := time.Now()
		if err := parallel(n, writers, func(i int) error { return step(ctx, c, vms[i], vdis[i], chain.from, chain.to, chain.writes) }); err != nil {
			return 0, 0, fmt.Errorf("timing the write floor: %w", err)
		}
		*chain.took = time.Since(start)
		progress("write floor: %d writes per VM, %d VMs, %d writers: %s", chain.writes, n, writers, chain.took.Round(time.Millisecond))
	}
	return six, five, nil
}

// step moves one VM from host from to host to as recovery does, one write
// after the other, each on the object the previous one returned: reset,
// release, place, lock, (with 6 writes) DisksLocked, Running. From "" it
// only places and starts (no reset, nothing to release).
func step(ctx context.Context, c client.Client, vm *vmObj, vdi *vdiObj, from, to string, writes int) error {
	now := metav1.Now()
	set := func(t string, st metav1.ConditionStatus, reason, msg string) {
		meta.SetStatusCondition(&vm.Status.Conditions, metav1.Condition{Type: t, Status: st, Reason: reason, Message: msg, ObservedGeneration: vm.Generation})
	}
	patchVM := func(mutate func()) error {
		patch := client.MergeFromWithOptions(vm.DeepCopy(), client.MergeFromWithOptimisticLock{})
		mutate()
		return c.Status().Patch(ctx, vm, patch)
	}
	if from != "" {
		if err := patchVM(func() {
			msg := fmt.Sprintf("host %s is Fenced: power state reset to Halted (vm-reset-powerstate); its disk locks are released next", from)
			vm.Status.PowerState, vm.Status.ResidentOn = vpoolv1alpha1.PowerHalted, ""
			vm.Status.LastReset = &vpoolv1alpha1.VMReset{Host: from, At: now, Generation: vm.Generation}
			set(vpoolv1alpha1.ConditionReady, metav1.ConditionFalse, "VMReset", msg)
			set(vpoolv1alpha1.VMScheduled, metav1.ConditionFalse, "VMReset", msg)
			set(vpoolv1alpha1.VMDisksLocked, metav1.ConditionFalse, "VMReset", msg)
		}); err != nil {
			return err
		}
		vdi.Status.Lock = nil
		if err := c.Status().Update(ctx, vdi); err != nil {
			return err
		}
	}
	if err := patchVM(func() {
		vm.Status.ResidentOn = to
		set(vpoolv1alpha1.VMScheduled, metav1.ConditionTrue, "Placed", "placed on "+to)
		set(vpoolv1alpha1.VMDisksLocked, metav1.ConditionFalse, "Starting", "locking RW disks for "+to)
		set(vpoolv1alpha1.ConditionReady, metav1.ConditionFalse, "Starting", "placed on "+to)
		if writes == 5 {
			set(vpoolv1alpha1.VMDisksLocked, metav1.ConditionTrue, "DisksLocked", "every RW disk is locked for host "+to)
		}
	}); err != nil {
		return err
	}
	vdi.Status.Lock = &vpoolv1alpha1.VDILock{Host: to, Mode: vpoolv1alpha1.DiskRW, VirtualMachine: vm.Name, Since: &now}
	if err := c.Status().Update(ctx, vdi); err != nil {
		return err
	}
	if writes == 6 {
		if err := patchVM(func() {
			set(vpoolv1alpha1.VMDisksLocked, metav1.ConditionTrue, "DisksLocked", "every RW disk is locked for host "+to)
			set(vpoolv1alpha1.ConditionReady, metav1.ConditionFalse, "Starting", "starting on "+to)
		}); err != nil {
			return err
		}
	}
	return patchVM(func() { vm.Status.PowerState = vpoolv1alpha1.PowerRunning })
}

// loadAverage is the machine's 1-minute load average, "?" if unknown.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) > 0 {
		return f[0]
	}
	return "?"
}

// parallel runs f(0), …, f(n-1) on workers goroutines, worker w taking w,
// w+workers, …; it returns the first error.
func parallel(n, workers int, f func(i int) error) error {
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n && errs[w] == nil; i += workers {
				errs[w] = f(i)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// diagnose prints where the VMs are stuck, by state, and the Hosts' phases.
func diagnose(ctx context.Context, c client.Client, ns string) {
	vms, hosts := &vpoolv1alpha1.VirtualMachineList{}, &vpoolv1alpha1.HostList{}
	if err := errors.Join(c.List(ctx, vms, client.InNamespace(ns)), c.List(ctx, hosts, client.InNamespace(ns))); err != nil {
		progress("diagnosis: %v", err)
		return
	}
	reason := func(vm *vmObj, t string) string {
		if cond := meta.FindStatusCondition(vm.Status.Conditions, t); cond != nil {
			return string(cond.Status) + "/" + cond.Reason
		}
		return "-"
	}
	states := map[string]int{}
	for i := range vms.Items {
		vm := &vms.Items[i]
		states[fmt.Sprintf("power=%s residentOn=%q Scheduled=%s DisksLocked=%s", vm.Status.PowerState, vm.Status.ResidentOn,
			reason(vm, vpoolv1alpha1.VMScheduled), reason(vm, vpoolv1alpha1.VMDisksLocked))]++
	}
	for _, s := range slices.Sorted(maps.Keys(states)) {
		progress("diagnosis: %4d VMs %s", states[s], s)
	}
	for _, h := range hosts.Items {
		progress("diagnosis: host %s %s", h.Name, h.Status.Phase)
	}
}
