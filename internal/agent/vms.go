package agent

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
)

// syncVMs makes the driver run exactly the VMs the operator placed here and
// whose RW disks are locked for this host, and reports their power state.
// It never runs a VM that is not resident on this host: a VM found running
// here but placed elsewhere (or gone) is stopped. It runs on the worker;
// each start and stop runs on a goroutine of its own (runOp).
func (a *Agent) syncVMs(ctx context.Context, log logr.Logger) error {
	host := &vpoolv1alpha1.Host{}
	if err := a.client.Get(ctx, types.NamespacedName{Namespace: a.cfg.Namespace, Name: a.cfg.Host}, host); err != nil {
		return err
	}
	vms := &vpoolv1alpha1.VirtualMachineList{}
	if err := a.client.List(ctx, vms, client.InNamespace(a.cfg.Namespace)); err != nil {
		return err
	}
	// Operations that return after this are left to the pass their
	// return asks for: what the driver says next may predate them.
	a.worker.mark()
	running, err := a.cfg.Driver.Running(ctx)
	if err != nil {
		return fmt.Errorf("listing VMs: %w", err)
	}
	isRunning := map[string]bool{}
	for _, n := range running {
		isRunning[n] = true
	}
	mine := map[string]*vpoolv1alpha1.VirtualMachine{}
	for i := range vms.Items {
		vm := &vms.Items[i]
		if vm.Spec.PoolRef.Name == host.Spec.PoolRef.Name && vm.Status.ResidentOn == a.cfg.Host {
			mine[vm.Name] = vm
		}
	}
	a.stopUnwanted(ctx, log, running, mine)
	return a.startAndReport(ctx, log, host.Status.Phase == vpoolv1alpha1.HostPhaseLive, host, mine, isRunning)
}

// stopUnwanted stops every running VM that is not resident here or should
// be halted. A VM stays Running in the report until its stop returns: the
// pass that follows reports it Halted.
func (a *Agent) stopUnwanted(ctx context.Context, log logr.Logger, running []string,
	mine map[string]*vpoolv1alpha1.VirtualMachine) {
	for _, name := range running {
		vm := mine[name]
		if vm != nil && vm.Spec.PowerState == vpoolv1alpha1.DesiredRunning && a.placedOnThisBoot(vm) {
			continue
		}
		if a.begin(ctx, name, opStop) {
			a.runOp(ctx, log, name, opStop, 0, func(ctx context.Context) error { return a.cfg.Driver.Stop(ctx, name) })
		}
	}
}

// startAndReport starts the VMs placed here whose disks are locked for this
// host (only while the host is Live) and reports the power state of every
// resident VM but those a start or stop is settling (see below).
func (a *Agent) startAndReport(ctx context.Context, log logr.Logger, live bool, host *vpoolv1alpha1.Host,
	mine map[string]*vpoolv1alpha1.VirtualMachine, isRunning map[string]bool) error {
	// SRs are plugged whatever the phase: a host is ready to run VMs the
	// moment it is Live.
	plugged, firstErr := a.plugStorage(ctx, log, host)
	states := map[string]string{}
	if ps, ok := a.cfg.Driver.(PowerStater); ok {
		var err error
		if states, err = ps.PowerStates(ctx); err != nil {
			return fmt.Errorf("reading power states: %w", err)
		}
	}
	for name, vm := range mine {
		if ctx.Err() != nil {
			return ctx.Err() // fenced or stopping: nothing more is reported
		}
		want := vm.Spec.PowerState == vpoolv1alpha1.DesiredRunning && live &&
			meta.IsStatusConditionTrue(vm.Status.Conditions, vpoolv1alpha1.VMDisksLocked)
		// A VM whose start is in flight since an earlier pass, or whose start
		// or stop returned since this pass read the driver, is left to a
		// later pass: the driver may list a domain while it is created,
		// before it runs or fails, and what it listed may predate that
		// return. A start this pass begins is reported Halted, with what
		// the last one said.
		inFlight, returned := a.worker.state(name)
		if inFlight == opStart || returned {
			continue
		}
		var startErr error
		if want && !isRunning[name] && inFlight == "" {
			if startErr = a.start(ctx, log, vm, plugged); startErr != nil {
				firstErr = fmt.Errorf("starting VM %s: %w", name, startErr)
			}
		}
		started := a.startedCondition(vm, isRunning[name], want, startErr)
		if err := a.reportVM(ctx, vm, powerStateOf(isRunning[name], states[name]), started); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	a.worker.forget(mine)
	return firstErr
}

// powerStateOf is the power state a VM is reported in: Halted unless it
// runs, then what the driver says of it (Running by default).
func powerStateOf(running bool, driverState string) vpoolv1alpha1.PowerState {
	if !running {
		return vpoolv1alpha1.PowerHalted
	}
	if s := vpoolv1alpha1.PowerState(driverState); s != "" {
		return s
	}
	return vpoolv1alpha1.PowerRunning
}

// reportVM writes vm's power state and this agent's Started condition
// (started, unless nil) when they changed.
func (a *Agent) reportVM(ctx context.Context, vm *vpoolv1alpha1.VirtualMachine, state vpoolv1alpha1.PowerState,
	started *metav1.Condition) error {
	if vm.Status.PowerState == state && (started == nil || sameCondition(vm.Status.Conditions, *started)) {
		return nil
	}
	patch := client.MergeFromWithOptions(vm.DeepCopy(), client.MergeFromWithOptimisticLock{})
	vm.Status.PowerState = state
	if started != nil {
		meta.SetStatusCondition(&vm.Status.Conditions, *started)
	}
	if err := a.client.Status().Patch(ctx, vm, patch); err != nil {
		// A conflict means the operator moved it meanwhile: the next sync
		// sees where it belongs and stops it if it is no longer ours.
		return fmt.Errorf("reporting VM %s %s: %w", vm.Name, state, err)
	}
	return nil
}

// startedCondition is what this agent says of starting vm in its Started
// condition (nil: nothing to say): running here, or why not yet when it
// should run — the driver's error of its last start (or of getting its
// disks ready), or what the agent waits for (start logs it once).
func (a *Agent) startedCondition(vm *vpoolv1alpha1.VirtualMachine, running, want bool, startErr error) *metav1.Condition {
	c := &metav1.Condition{Type: vpoolv1alpha1.VMStarted, Status: metav1.ConditionFalse, ObservedGeneration: vm.Generation}
	prefix := vpoolv1alpha1.StartedMessagePrefix(a.cfg.Host)
	switch {
	case running:
		c.Status, c.Reason, c.Message = metav1.ConditionTrue, vpoolv1alpha1.ReasonVMRunningOnHost, prefix+"running"
	case !want:
		return nil
	case startErr != nil:
		c.Reason, c.Message = vpoolv1alpha1.ReasonVMStartFailed, prefix+startErr.Error()
	case a.worker.failure(vm.Name, vm.Generation) != "":
		c.Reason, c.Message = vpoolv1alpha1.ReasonVMStartFailed, prefix+"starting it failed, tried again at every heartbeat: "+
			a.worker.failure(vm.Name, vm.Generation)
	case a.waiting[vm.Name] != "":
		c.Reason, c.Message = vpoolv1alpha1.ReasonVMWaitingOnHost, prefix+a.waiting[vm.Name]
	default:
		return nil
	}
	return c
}

// sameCondition says whether conds already hold c (its status, reason,
// message and generation).
func sameCondition(conds []metav1.Condition, c metav1.Condition) bool {
	old := meta.FindStatusCondition(conds, c.Type)
	return old != nil && old.Status == c.Status && old.Reason == c.Reason && old.Message == c.Message &&
		old.ObservedGeneration == c.ObservedGeneration
}

// start starts vm once everything it needs is here: its RW disks locked
// for this host and boot, its SRs plugged, its volumes created and a MAC
// for every interface; why it does not is logged once per reason. The
// driver's Start runs on a goroutine of its own (runOp), only as begin
// allows.
func (a *Agent) start(ctx context.Context, log logr.Logger, vm *vpoolv1alpha1.VirtualMachine,
	plugged map[string]attachment) error {
	if !a.worker.free(vm.Name) {
		return nil // its start or stop returns first, or another does
	}
	dvm := toDriverVM(vm)
	notReady := ""
	if !a.placedOnThisBoot(vm) {
		notReady = fmt.Sprintf("placed on boot %s of this host, not this boot %s: the operator places it again", vm.Status.ResidentBootID, a.cfg.BootID)
	}
	dvm.Disks = dvm.Disks[:0]
	for _, d := range vm.Spec.Disks {
		if notReady != "" {
			break
		}
		disk, why, err := a.diskFor(ctx, vm, d, plugged)
		if err != nil {
			return err
		}
		if why != "" {
			notReady = why
			break
		}
		dvm.Disks = append(dvm.Disks, disk)
	}
	if notReady == "" {
		dvm.Interfaces, notReady = interfacesOf(vm)
	}
	if notReady != "" {
		if a.waiting == nil {
			a.waiting = map[string]string{}
		}
		if a.waiting[vm.Name] != notReady {
			log.Info("Not starting VM", "vm", vm.Name, "why", notReady)
			a.waiting[vm.Name] = notReady
		}
		return nil
	}
	delete(a.waiting, vm.Name)
	if a.begin(ctx, vm.Name, opStart) {
		a.runOp(ctx, log, vm.Name, opStart, vm.Generation, func(ctx context.Context) error { return a.cfg.Driver.Start(ctx, dvm) })
	}
	return nil
}

// placedOnThisBoot says whether vm was placed on this boot of the host (or
// before boot IDs were recorded). A VM placed on an earlier boot ended with
// it: the operator resets it (HostRebooted) and places it again.
func (a *Agent) placedOnThisBoot(vm *vpoolv1alpha1.VirtualMachine) bool {
	return vm.Status.ResidentBootID == "" || vm.Status.ResidentBootID == a.cfg.BootID
}

// interfacesOf gives the VM's interfaces with their MAC addresses: spec's,
// else the one the operator generated in status.
func interfacesOf(vm *vpoolv1alpha1.VirtualMachine) ([]Interface, string) {
	var out []Interface
	for _, nic := range vm.Spec.Interfaces {
		mac := nic.MACAddress
		if mac == "" {
			for _, st := range vm.Status.Interfaces {
				if st.Name == nic.Name {
					mac = st.MACAddress
				}
			}
		}
		if mac == "" {
			return nil, fmt.Sprintf("interface %s has no MAC address yet (the operator assigns one)", nic.Name)
		}
		out = append(out, Interface{Name: nic.Name, Network: nic.Network, MACAddress: mac})
	}
	return out, ""
}

func toDriverVM(vm *vpoolv1alpha1.VirtualMachine) VM {
	out := VM{Name: vm.Name, Namespace: vm.Namespace, Pool: vm.Spec.PoolRef.Name, UUID: vm.Status.UUID}
	if vm.Spec.Resources.CPU != nil {
		out.CPU = vm.Spec.Resources.CPU.Value()
	}
	if vm.Spec.Resources.Memory != nil {
		out.MemoryMiB = vm.Spec.Resources.Memory.Value() >> 20
	}
	for _, d := range vm.Spec.Disks {
		out.Disks = append(out.Disks, Disk{Name: d.Name, VirtualDisk: d.VirtualDisk, Mode: string(d.Mode)})
	}
	if b := vm.Spec.Boot; b != nil {
		out.Boot = &Boot{Kernel: b.Kernel, Initrd: b.Initrd, Cmdline: b.Cmdline}
	}
	return out
}

// maxDriverOps bounds the VM starts and stops in flight at once, so that a
// host told to run many VMs does not flood its hypervisor.
const maxDriverOps = 4

// What a VM's operation in flight is (worker.busy).
const (
	opStart = "start"
	opStop  = "stop"
)

// worker drives the VMs beside the heartbeat loop, so that no driver call
// (with libvirt an RPC to libvirtd, which can take seconds, or hang with the
// daemon) ever delays a Lease renewal, the self-fence deadline check, or
// what the loop hands the statefile and the watchdog: the loop itself calls
// the driver only to stop every VM when it fences. The loop wakes it
// (wake) after every successful renewal and whenever a watched object or a
// VM changed; a pass (drive) reads the cache and the driver, starts and
// stops VMs and reports the Host's status. Each start or stop runs on a
// goroutine of its own (runOp; one per VM, maxDriverOps at most), so that a
// VM slow to start holds up neither the other VMs nor the report; the
// driver is therefore called concurrently (the sim and libvirt drivers are
// safe for that). A pass reads the driver's running VMs once; a start or
// stop that returns after that read is left to the pass its return asks
// for (returned), so that a list read before a start returned never starts
// the VM a second time.
//
// No VM start completes after a fence without being stopped. The fences
// (selfFence at the deadline, stepDown when another boot took the Lease, a
// watchdog that reset the host) set fenced under mu, cancel the worker's
// context, and only then stop every VM (StopAll). Every Start is preceded
// by begin, which under mu refuses it once fenced, and followed by runOp
// reading fenced under mu. If that read came before fenced was set, the
// Start had returned before the fence's StopAll began, which stops what it
// started; if it came after, runOp stops every VM itself. The fence does
// not wait for a start in flight before its StopAll: that wait would come
// out of the T/2 the other VMs' stop has before the operator's safe time.
// It waits for it afterwards, a heartbeat interval at most (awaitWorker),
// and the agent exits. A Start that never returns (a hung libvirtd) cannot
// be stopped by the agent, nor hold up its fence; the watchdog covers it:
// petted only until shortly before the deadline of the last renewal
// (watchdog.PlanFor), it resets the host, and the VM with it, before the
// operator's safe time. Without a watchdog, the sim driver's VMs die with
// the agent's process, and a real driver's host is fenced by its BMC or a
// person (an Agent-fenced one must have a watchdog: checkWatchdog).
//
// Starts happen only while this boot holds the Lease, the watchdog is armed
// and the self-fence deadline is ahead: begin checks all three under mu
// right before each Start is launched, on the state the loop hands over
// (share) as soon as it changes; the loop fences at the deadline, so a
// Start launched just before it is covered as above.
type worker struct {
	kick   chan struct{}
	cancel context.CancelFunc
	// all counts the pass goroutine and the operations in flight; ended is
	// closed once all of them returned (after wait's first call).
	all       sync.WaitGroup
	endedOnce sync.Once
	ended     chan struct{}

	mu     sync.Mutex
	fenced bool
	// busy is, by VM, the operation in flight.
	busy map[string]string
	// failed is, by VM, the last start's failure, until one succeeds.
	failed map[string]startFailure
	// returned are the VMs whose operation returned since the pass read
	// the driver (mark): that read may not show it, so the pass starts or
	// stops none of them again; the pass the return asks for does what is
	// left.
	returned map[string]bool
	// The heartbeat loop's state (share).
	holding, armed    bool
	lastOK            time.Time
	timeout, interval time.Duration
}

func newWorker() *worker {
	return &worker{kick: make(chan struct{}, 1), ended: make(chan struct{}), busy: map[string]string{},
		returned: map[string]bool{}, failed: map[string]startFailure{}}
}

// startFailure is a start that failed: its error, when it returned, and the
// VM's generation it started.
type startFailure struct {
	err        string
	at         time.Time
	generation int64
}

// maxStartError bounds the error a VM's Started condition repeats.
const maxStartError = 2048

// state is the VM's operation in flight ("" for none), and whether one
// returned since the pass read the driver.
func (w *worker) state(name string) (inFlight string, returned bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.busy[name], w.returned[name]
}

// failure is the error of the VM's last start of generation gen, "" when
// it succeeded (or started an older spec: a mended spec is tried afresh).
func (w *worker) failure(name string, gen int64) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if f, ok := w.failed[name]; ok && f.generation == gen {
		return f.err
	}
	return ""
}

// forget drops the failures of VMs that are no longer this host's.
func (w *worker) forget(mine map[string]*vpoolv1alpha1.VirtualMachine) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for name := range w.failed {
		if mine[name] == nil {
			delete(w.failed, name)
		}
	}
}

// mark is called by a pass right before it reads the driver: operations
// that return from now on are in returned.
func (w *worker) mark() {
	w.mu.Lock()
	clear(w.returned)
	w.mu.Unlock()
}

// wake asks for a pass.
func (w *worker) wake() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// share hands the heartbeat loop's state to the worker.
func (a *Agent) share() {
	w := a.worker
	w.mu.Lock()
	w.holding, w.armed, w.lastOK, w.timeout, w.interval = a.holding, a.armed, a.lastOK, a.timeout, a.interval
	w.mu.Unlock()
}

// startWorker starts the worker's goroutine, until ctx is done or a fence.
func (a *Agent) startWorker(ctx context.Context, log logr.Logger) {
	w := a.worker
	ctx, w.cancel = context.WithCancel(ctx)
	w.all.Add(1)
	go func() {
		defer w.all.Done()
		for {
			select {
			case <-ctx.Done():
				return
			case <-w.kick:
			}
			a.drive(ctx, log)
		}
	}()
}

// drive is one pass: the VMs synced (once the watchdog is armed) and the
// Host's status reported, while this boot holds the Lease before its
// deadline.
func (a *Agent) drive(ctx context.Context, log logr.Logger) {
	w := a.worker
	w.mu.Lock()
	ok := !w.fenced && ctx.Err() == nil && w.holding && a.cfg.Clock.Now().Before(a.deadlineOf(w.lastOK, w.timeout))
	armed, interval := w.armed, w.interval
	w.mu.Unlock()
	if !ok {
		return
	}
	a.passInterval = interval
	if armed {
		if err := a.syncVMs(ctx, log); err != nil && ctx.Err() == nil {
			log.Info("Syncing VMs failed", "error", err.Error())
		}
	}
	if err := a.report(ctx); err != nil && ctx.Err() == nil {
		log.Info("Reporting host status failed", "error", err.Error())
	}
}

// begin reserves the VM name for op, and says whether op may run: not
// after a fence or once the worker stops, one operation per VM, none on a
// VM whose operation returned since the pass read the driver,
// maxDriverOps at most, and a start only while this boot holds the Lease,
// the watchdog is armed and the deadline is ahead. Called by the pass
// goroutine only (so all never rises from zero).
func (a *Agent) begin(ctx context.Context, name, op string) bool {
	w := a.worker
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.fenced || ctx.Err() != nil || w.busy[name] != "" || w.returned[name] || len(w.busy) >= maxDriverOps {
		return false
	}
	if op == opStart && (!w.holding || !w.armed || !a.cfg.Clock.Now().Before(a.deadlineOf(w.lastOK, w.timeout))) {
		return false
	}
	if f, ok := w.failed[name]; ok && op == opStart && !w.lastOK.After(f.at) {
		return false // a failed start is tried again once per renewal, whatever else wakes a pass
	}
	w.busy[name] = op
	w.all.Add(1)
	return true
}

// runOp runs op, begun for the VM name, on a goroutine of its own. A start
// that returns once the host is fencing is followed by another StopAll.
// A success asks for a pass, which reports it; a failure waits for the
// next renewal's, so that a failing start is not retried in a loop: that
// pass tries it again and reports the error (the VM's Started condition).
func (a *Agent) runOp(ctx context.Context, log logr.Logger, name, op string, generation int64, call func(context.Context) error) {
	w := a.worker
	go func() {
		defer w.all.Done()
		err := call(ctx)
		w.mu.Lock()
		delete(w.busy, name)
		w.returned[name] = true
		fenced := w.fenced
		if op == opStart {
			switch {
			case err == nil:
				delete(w.failed, name)
			case ctx.Err() == nil && !fenced:
				msg := err.Error()
				if len(msg) > maxStartError {
					msg = msg[:maxStartError] + "..."
				}
				w.failed[name] = startFailure{err: msg, at: a.cfg.Clock.Now(), generation: generation}
			}
		}
		w.mu.Unlock()
		switch {
		case fenced && op == opStart:
			log.Info("A VM start returned after this host began to fence itself: stopping every VM again", "vm", name,
				"startError", fmt.Sprint(err))
			if err := a.cfg.Driver.StopAll(context.WithoutCancel(ctx)); err != nil {
				log.Info("Stopping the VMs failed; the watchdog, no longer petted, resets the host", "error", err.Error())
			}
		case err != nil:
			if ctx.Err() == nil {
				log.Info("Driver call failed", "vm", name, "op", op, "error", err.Error())
			}
		default:
			if op == opStart {
				log.Info("Started VM", "vm", name)
			} else {
				log.Info("Stopped VM", "vm", name)
			}
			w.wake()
		}
	}()
}

// free says whether an operation on the VM name could begin now: none is
// in flight for it or returned since the pass read the driver, and fewer
// than maxDriverOps in all.
func (w *worker) free(name string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.busy[name] == "" && !w.returned[name] && len(w.busy) < maxDriverOps
}

// inFlightOps lists the operations in flight, as "VM op".
func (w *worker) inFlightOps() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]string, 0, len(w.busy))
	for name, op := range w.busy {
		out = append(out, name+" "+op)
	}
	slices.Sort(out)
	return out
}

// fenceWorker stops the worker before a fence stops every VM: no start
// begins from now on, and one in flight is followed by a StopAll.
func (a *Agent) fenceWorker() {
	w := a.worker
	w.mu.Lock()
	w.fenced = true
	w.mu.Unlock()
	if w.cancel != nil {
		w.cancel()
	}
}

// wait waits up to d for the worker's pass goroutine and operations to
// return, and says whether they did.
func (a *Agent) waitWorker(d time.Duration) bool {
	w := a.worker
	w.endedOnce.Do(func() {
		go func() { w.all.Wait(); close(w.ended) }()
	})
	select {
	case <-w.ended:
		return true
	case <-a.cfg.Clock.After(d):
		return false
	}
}

// awaitWorker waits, after a fence's StopAll, a heartbeat interval at most
// for the driver calls in flight, and says what is left.
func (a *Agent) awaitWorker(log logr.Logger) {
	if a.waitWorker(a.interval) {
		return
	}
	log.Info("Warning: driver calls are still in flight; a VM one of them starts is stopped when it returns, "+
		"and should the agent exit first the watchdog, not petted past the deadline, resets the host",
		"inFlight", a.worker.inFlightOps())
}
