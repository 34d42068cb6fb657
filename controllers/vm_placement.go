package controllers

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/internal/placement"
	"github.com/poolkeeper/poolkeeper/internal/status"
)

// PlacementReconciler places the VMs of a pool that should run and have no
// host, all in one pass per pool (placement.Schedule): start order, restart
// priority and capacity are properties of the pool, not of one VM, and one
// pass over the pool's VMs costs what one VM's reconcile used to. It records
// each placement in the VM's status.residentOn, and why a VM waits in its
// Scheduled condition; the VM controller then locks the VM's disks for that
// host. It is keyed by Pool.
type PlacementReconciler struct {
	client.Client
	Recorder events.EventRecorder
	// Clock is the time a vApp's startDelay is measured on.
	Clock clock.PassiveClock
	// Writers is the number of status writes of one pass made at once.
	Writers int

	mu sync.Mutex
	// placed remembers, per pool, the resourceVersion each VM had when this
	// reconciler placed it. Until the cache shows a newer one, the cache does
	// not know that placement yet, and a pass would count the host's capacity
	// as free: the pass waits for the cache instead.
	placed map[types.NamespacedName]map[string]string
}

// setupPlacement registers the placement controller beside the VM controller.
func setupPlacement(mgr ctrl.Manager, r *PlacementReconciler, opts Options) error {
	r.placed = map[types.NamespacedName]map[string]string{}
	if r.Clock == nil {
		r.Clock = opts.Clock
	}
	// A Pool's annotations changing asks for a pass now, as
	// `kubectl annotate` can.
	return ctrl.NewControllerManagedBy(mgr).
		Named("placement").
		For(&vpoolv1alpha1.Pool{}, builder.WithPredicates(predicate.Or[client.Object](predicate.GenerationChangedPredicate{},
			predicate.AnnotationChangedPredicate{}, onChange(restoreEnded)))).
		Watches(&vpoolv1alpha1.VirtualMachine{}, handler.EnqueueRequestsFromMapFunc(poolOf), builder.WithPredicates(placementEvent())).
		Watches(&vpoolv1alpha1.Host{}, handler.EnqueueRequestsFromMapFunc(poolOf),
			builder.WithPredicates(predicate.Or[client.Object](usabilityChanged(), networksChanged()))).
		// A disk that appears or is released may unblock a VM.
		Watches(&vpoolv1alpha1.VirtualDisk{}, handler.EnqueueRequestsFromMapFunc(poolOf), builder.WithPredicates(diskFreed())).
		Watches(&vpoolv1alpha1.StorageRepository{}, handler.EnqueueRequestsFromMapFunc(poolOf),
			builder.WithPredicates(predicate.Or[client.Object](predicate.GenerationChangedPredicate{}, attachmentsChanged()))).
		// A vApp's startDelay and its members' running times gate its groups.
		Watches(&vpoolv1alpha1.VirtualAppliance{}, handler.EnqueueRequestsFromMapFunc(r.poolsOfAppliance),
			builder.WithPredicates(applianceStartChanged())).
		WithOptions(controller.Options{MaxConcurrentReconciles: opts.MaxConcurrentReconciles}).
		Complete(conflictsRequeued(r))
}

// placementEvent passes the VM events that can change a pool's placement: a
// VM that comes to want a host, a placement or power state that changes
// (capacity, start order), a spec change, a deletion.
func placementEvent() predicate.Funcs {
	p := onChange(func(o, n *vpoolv1alpha1.VirtualMachine) bool {
		return o.Generation != n.Generation || o.Status.ResidentOn != n.Status.ResidentOn || o.Status.PowerState != n.Status.PowerState
	})
	p.CreateFunc = func(e event.CreateEvent) bool {
		vm, ok := e.Object.(*vpoolv1alpha1.VirtualMachine)
		return ok && vm.Spec.PowerState == vpoolv1alpha1.DesiredRunning
	}
	return p
}

// poolsOfAppliance maps a vApp to its pool and the pools of the VMs that
// name it (a VM of another pool is told the vApp is not of its pool).
func (r *PlacementReconciler) poolsOfAppliance(ctx context.Context, obj client.Object) []reconcile.Request {
	app, ok := obj.(*vpoolv1alpha1.VirtualAppliance)
	if !ok {
		return nil
	}
	pools := []string{app.Spec.PoolRef.Name}
	vms := &vpoolv1alpha1.VirtualMachineList{}
	if err := r.List(ctx, vms, client.InNamespace(app.Namespace), client.MatchingFields{IndexApplianceRef: app.Name},
		client.UnsafeDisableDeepCopy); err == nil {
		for i := range vms.Items {
			if p := vms.Items[i].Spec.PoolRef.Name; !slices.Contains(pools, p) {
				pools = append(pools, p)
			}
		}
	}
	reqs := make([]reconcile.Request, 0, len(pools))
	for _, p := range pools {
		reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: app.Namespace, Name: p}})
	}
	return reqs
}

// applianceStartChanged passes a vApp that appears, goes, changes spec or
// records other members (their running times).
func applianceStartChanged() predicate.Funcs {
	p := onChange(func(o, n *vpoolv1alpha1.VirtualAppliance) bool {
		return o.Generation != n.Generation || !equality.Semantic.DeepEqual(o.Status.Members, n.Status.Members)
	})
	p.CreateFunc = func(event.CreateEvent) bool { return true }
	return p
}

// diskFreed passes a VDI that appears, goes, changes spec or loses its lock.
func diskFreed() predicate.Funcs {
	p := onChange(func(o, n *vpoolv1alpha1.VirtualDisk) bool {
		return o.Status.Lock != nil && n.Status.Lock == nil || o.Generation != n.Generation
	})
	p.CreateFunc = func(event.CreateEvent) bool { return true }
	return p
}

// networksChanged passes a Host whose agent reports other networks or
// starts to report attachments.
func networksChanged() predicate.Funcs {
	return onChange(func(o, n *vpoolv1alpha1.Host) bool {
		return !slices.Equal(o.Status.Networks, n.Status.Networks) || o.Status.Driver != n.Status.Driver
	})
}

// attachmentsChanged passes an SR that a host plugs or unplugs.
func attachmentsChanged() predicate.Funcs {
	return onChange(func(o, n *vpoolv1alpha1.StorageRepository) bool {
		return !equality.Semantic.DeepEqual(attachedHosts(o), attachedHosts(n))
	})
}

// attachedHosts are the hosts that have sr attached.
func attachedHosts(sr *vpoolv1alpha1.StorageRepository) []string {
	var out []string
	for _, a := range sr.Status.Attachments {
		if a.Attached && (sr.Spec.Libvirt == nil || a.StoragePool == "" || a.StoragePool == sr.Spec.Libvirt.StoragePool) {
			out = append(out, a.Host)
		}
	}
	return out
}

// waitsForHost: the VM should run but is not placed.
func waitsForHost(vm *vpoolv1alpha1.VirtualMachine) bool {
	return vm.Spec.PowerState == vpoolv1alpha1.DesiredRunning && vm.Status.ResidentOn == ""
}

// Reconcile places the pool's waiting VMs.
func (r *PlacementReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	pool := &vpoolv1alpha1.Pool{}
	if err := r.Get(ctx, req.NamespacedName, pool); err != nil {
		if apierrors.IsNotFound(err) {
			r.mu.Lock()
			delete(r.placed, req.NamespacedName)
			r.mu.Unlock()
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if restoring(pool) {
		// The restore records its VMs waiting for a Live host; the pass comes when it is done.
		return ctrl.Result{}, nil
	}
	// Read-only views of the cache: a large pool is read on every pass.
	hosts := &vpoolv1alpha1.HostList{}
	if err := r.List(ctx, hosts, client.InNamespace(pool.Namespace), client.MatchingFields{IndexPoolRef: pool.Name},
		client.UnsafeDisableDeepCopy); err != nil {
		return ctrl.Result{}, fmt.Errorf("listing hosts of pool %s: %w", pool.Name, err)
	}
	vms := &vpoolv1alpha1.VirtualMachineList{}
	if err := r.List(ctx, vms, client.InNamespace(pool.Namespace), client.MatchingFields{IndexPoolRef: pool.Name},
		client.UnsafeDisableDeepCopy); err != nil {
		return ctrl.Result{}, fmt.Errorf("listing VMs of pool %s: %w", pool.Name, err)
	}
	if !r.cacheHasPlacements(req.NamespacedName, vms.Items) {
		// The VM update the cache lacks wakes this pool again when it comes.
		return ctrl.Result{RequeueAfter: time.Second}, nil
	}
	srs := &vpoolv1alpha1.StorageRepositoryList{}
	if err := r.List(ctx, srs, client.InNamespace(pool.Namespace), client.UnsafeDisableDeepCopy); err != nil {
		return ctrl.Result{}, fmt.Errorf("listing storage repositories of pool %s: %w", pool.Name, err)
	}
	// Of every pool: a VM may name another pool's vApp, and is told so.
	apps := &vpoolv1alpha1.VirtualApplianceList{}
	if err := r.List(ctx, apps, client.InNamespace(pool.Namespace), client.UnsafeDisableDeepCopy); err != nil {
		return ctrl.Result{}, fmt.Errorf("listing virtual appliances of pool %s: %w", pool.Name, err)
	}
	round, err := r.gather(ctx, hosts.Items, vms.Items, srs.Items)
	if err != nil || len(round.pending) == 0 {
		return ctrl.Result{}, err
	}
	now := r.Clock.Now()
	wake := gateAppliances(round, pool.Name, vms.Items, apps.Items, now)
	decisions := placement.Schedule(round.pending, round.starting, round.hosts)
	placed := 0
	for _, d := range decisions {
		if d.Host != "" {
			placed++
		}
	}
	if placed > 0 {
		ctrl.LoggerFrom(ctx).Info("Placing VMs", "placed", placed, "waiting", len(decisions)-placed)
	}
	conflicts, err := r.record(ctx, req.NamespacedName, round.waiting, decisions, round.boots)
	if conflicts && err == nil {
		// A VM changed meanwhile, maybe only in a status field that wakes no
		// pass (its observedGeneration): decide again, with the newer VM.
		return ctrl.Result{RequeueAfter: conflictRetry}, nil
	}
	if err != nil || wake.IsZero() {
		return ctrl.Result{}, err
	}
	// The next pass comes when the first vApp startDelay ends.
	return ctrl.Result{RequeueAfter: wake.Sub(now)}, nil
}

// conflictRetry is how soon a pass whose write met a newer VM runs again.
const conflictRetry = 100 * time.Millisecond

// placementRound is what one pass over a pool decides from.
type placementRound struct {
	hosts    []placement.Host
	boots    map[string]string // host → its boot ID
	phases   map[string]vpoolv1alpha1.HostPhase
	waiting  []*vpoolv1alpha1.VirtualMachine
	pending  []placement.Pending // indexed like waiting
	starting []placement.Starting
}

// gather sorts a pool's VMs into those that wait to be placed, those that
// are starting, and the capacity the placed ones take.
func (r *PlacementReconciler) gather(ctx context.Context, hosts []vpoolv1alpha1.Host, vms []vpoolv1alpha1.VirtualMachine,
	srs []vpoolv1alpha1.StorageRepository) (*placementRound, error) {
	phases := map[string]vpoolv1alpha1.HostPhase{}
	round := &placementRound{boots: map[string]string{}, phases: phases}
	for i := range hosts {
		round.boots[hosts[i].Name] = hosts[i].Status.BootID
		phases[hosts[i].Name] = hosts[i].Status.Phase
	}
	used := map[string]placement.Resources{}
	for i := range vms {
		vm := &vms[i]
		if on := vm.Status.ResidentOn; on != "" {
			used[on] = used[on].Add(vmNeed(vm))
			if vm.Spec.PowerState == vpoolv1alpha1.DesiredRunning && vm.Status.PowerState != vpoolv1alpha1.PowerRunning &&
				phases[on] == vpoolv1alpha1.HostPhaseLive {
				round.starting = append(round.starting, placement.Starting{StartOrder: vm.Spec.StartOrder,
					BestEffort: vm.Spec.HA.RestartPriority == vpoolv1alpha1.RestartBestEffort})
			}
			continue
		}
		if !waitsForHost(vm) || vm.DeletionTimestamp != nil {
			continue
		}
		p, ready, err := r.pending(ctx, vm, phases)
		if err != nil {
			return nil, err
		}
		if ready {
			round.waiting, round.pending = append(round.waiting, vm), append(round.pending, p)
		}
	}
	attached := map[string][]string{} // host → the SRs it has attached
	for i := range srs {
		for _, h := range attachedHosts(&srs[i]) {
			attached[h] = append(attached[h], srs[i].Name)
		}
	}
	for i := range hosts {
		h := &hosts[i]
		// A host two agents claim takes no new VM (hostUsable). A host whose
		// agent reports its driver reports its attachments too.
		round.hosts = append(round.hosts, placement.Host{Name: h.Name, Live: hostUsable(h),
			Capacity: hostCapacity(h), Used: used[h.Name], Networks: h.Status.Networks,
			ReportsAttachments: h.Status.Driver != "", Attached: attached[h.Name]})
	}
	return round, nil
}

// gateAppliances holds back the waiting vApp members whose vApp's earlier
// start-order groups do not run yet, or ran less than its startDelay ago
// (placement.Appliance.Gate), and those naming a vApp that is missing or of
// another pool (the vApp in apps, of pool, would say how long to wait). A
// member blocked for a reason of its own keeps that reason. It returns the
// earliest instant a startDelay ends, zero if none does.
func gateAppliances(round *placementRound, pool string, vms []vpoolv1alpha1.VirtualMachine,
	apps []vpoolv1alpha1.VirtualAppliance, now time.Time) time.Time {
	byName := make(map[string]*vpoolv1alpha1.VirtualAppliance, len(apps))
	for i := range apps {
		byName[apps[i].Name] = &apps[i]
	}
	members := map[string][]*vpoolv1alpha1.VirtualMachine{}
	for i := range vms {
		if name := applianceOf(&vms[i]); name != "" && vms[i].DeletionTimestamp == nil {
			members[name] = append(members[name], &vms[i])
		}
	}
	gates := map[string]placement.Appliance{}
	var wake time.Time
	for i, vm := range round.waiting {
		name, p := applianceOf(vm), &round.pending[i]
		if name == "" || p.Blocked != nil {
			continue
		}
		app := byName[name]
		switch {
		case app == nil:
			p.Blocked = &placement.Decision{Reason: placement.ReasonApplianceNotFound, Message: fmt.Sprintf(
				"spec.applianceRef.name: VirtualAppliance %q not found in pool %s; the VM starts once it exists", name, pool)}
			continue
		case app.Spec.PoolRef.Name != pool:
			p.Blocked = &placement.Decision{Reason: placement.ReasonApplianceInOtherPool, Message: fmt.Sprintf(
				"spec.applianceRef.name: VirtualAppliance %q belongs to pool %q, not %q", name, app.Spec.PoolRef.Name, pool)}
			continue
		}
		gate, ok := gates[name]
		if !ok {
			gate = applianceGate(app, members[name], round.phases)
			gates[name] = gate
		}
		wait, at := gate.Gate(vm.Spec.StartOrder, now)
		p.Blocked = wait
		if !at.IsZero() && (wake.IsZero() || at.Before(wake)) {
			wake = at
		}
	}
	return wake
}

// applianceGate is the start order of app, whose members are vms. A member
// recorded Running on a host that is not Live (Unreachable, or fenced and
// its VMs not reset yet) does not run for its vApp's later groups.
func applianceGate(app *vpoolv1alpha1.VirtualAppliance, vms []*vpoolv1alpha1.VirtualMachine,
	phases map[string]vpoolv1alpha1.HostPhase) placement.Appliance {
	g := placement.Appliance{Name: app.Name, Members: make([]placement.Member, 0, len(vms))}
	if d := app.Spec.StartDelay; d != nil {
		g.StartDelay = d.Duration
	}
	for _, vm := range vms {
		m := placement.Member{Name: vm.Name, StartOrder: vm.Spec.StartOrder, ShouldRun: shouldRun(vm),
			Running: vm.Status.PowerState == vpoolv1alpha1.PowerRunning && phases[vm.Status.ResidentOn] == vpoolv1alpha1.HostPhaseLive}
		if since := runningSince(vm, memberOf(app, vm.Name)); since != nil {
			m.RunningSince = since.Time
		}
		g.Members = append(g.Members, m)
	}
	return g
}

// pending is what placement needs of a waiting VM, with the reason of its
// own that keeps it from running, if any. It is not ready to be placed while
// the VDI controller is about to release a lock it held on its last host.
func (r *PlacementReconciler) pending(ctx context.Context, vm *vpoolv1alpha1.VirtualMachine,
	phases map[string]vpoolv1alpha1.HostPhase) (p placement.Pending, ready bool, err error) {
	p = placement.Pending{VM: placement.VM{Name: vm.Name, Need: vmNeed(vm), Affinity: vm.Spec.Affinity.Host},
		StartOrder: vm.Spec.StartOrder, BestEffort: vm.Spec.HA.RestartPriority == vpoolv1alpha1.RestartBestEffort}
	for _, nic := range vm.Spec.Interfaces {
		if !slices.Contains(p.Networks, nic.Network) {
			p.Networks = append(p.Networks, nic.Network)
		}
	}
	if heldAfterReset(vm) {
		reset := vm.Status.LastReset
		p.Blocked = &placement.Decision{Reason: placement.ReasonDoNotRestart, Message: fmt.Sprintf(
			"reset after host %s failed; restartPriority DoNotRestart: change the spec (e.g. set powerState Halted, then Running) to start it again",
			reset.Host)}
		return p, true, nil
	}
	disks := make([]placement.Disk, 0, len(vm.Spec.Disks))
	for i, d := range vm.Spec.Disks {
		disk, vdi, err := readDisk(ctx, r.Client, vm, i, d)
		if err != nil {
			return p, false, err
		}
		if blocked, releasing := lockHeld(vm, d, vdi, phases); releasing {
			return p, false, nil
		} else if blocked != nil {
			p.Blocked = blocked
			return p, true, nil
		}
		disks = append(disks, disk)
		if vdi != nil && !slices.Contains(p.StorageRepositories, vdi.Spec.StorageRepository) {
			p.StorageRepositories = append(p.StorageRepositories, vdi.Spec.StorageRepository)
		}
	}
	p.PinnedTo, p.Blocked = placement.CheckDisks(vm.Spec.PoolRef.Name, disks)
	return p, true, nil
}

// lockHeld checks that no other VM holds the RW lock of a disk's VDI (nil
// if it is missing or of another pool: CheckDisks says so). releasing is
// a lock the VM itself holds on a host that no longer runs it: the VDI
// controller releases it (resetvdis.py), and the VM waits for that without
// a word, its status already saying so.
func lockHeld(vm *vpoolv1alpha1.VirtualMachine, d vpoolv1alpha1.VMDisk, vdi *vpoolv1alpha1.VirtualDisk,
	phases map[string]vpoolv1alpha1.HostPhase) (blocked *placement.Decision, releasing bool) {
	if vdi == nil || vdi.Spec.PoolRef.Name != vm.Spec.PoolRef.Name || d.Mode == vpoolv1alpha1.DiskRO || vdi.Status.Lock == nil {
		return nil, false
	}
	l := vdi.Status.Lock
	phase, known := phases[l.Host]
	if l.VirtualMachine == vm.Name && (!known || phase != vpoolv1alpha1.HostPhaseUnreachable && phase != vpoolv1alpha1.HostPhaseFencing) {
		return nil, true
	}
	return &placement.Decision{Reason: ReasonDiskLocked, Message: diskLockedMessage(vdi)}, false
}

// readDisk reads, through reader's cache, what placement needs of the i-th
// disk of a VM: its VDI (returned, nil if missing; not to be modified) and
// that VDI's SR.
func readDisk(ctx context.Context, reader client.Reader, vm *vpoolv1alpha1.VirtualMachine, i int, d vpoolv1alpha1.VMDisk) (
	placement.Disk, *vpoolv1alpha1.VirtualDisk, error) {
	disk := placement.Disk{Index: i, Name: d.Name, VDI: d.VirtualDisk}
	vdi := &vpoolv1alpha1.VirtualDisk{}
	if err := reader.Get(ctx, types.NamespacedName{Namespace: vm.Namespace, Name: d.VirtualDisk}, vdi, client.UnsafeDisableDeepCopy); err != nil {
		if apierrors.IsNotFound(err) {
			return disk, nil, nil
		}
		return disk, nil, fmt.Errorf("reading VDI %s of VM %s: %w", d.VirtualDisk, klog.KObj(vm), err)
	}
	disk.VDIFound, disk.VDIPool, disk.SR = true, vdi.Spec.PoolRef.Name, vdi.Spec.StorageRepository
	sr := &vpoolv1alpha1.StorageRepository{}
	if err := reader.Get(ctx, types.NamespacedName{Namespace: vm.Namespace, Name: vdi.Spec.StorageRepository}, sr, client.UnsafeDisableDeepCopy); err != nil {
		if apierrors.IsNotFound(err) {
			return disk, vdi, nil
		}
		return disk, nil, fmt.Errorf("reading SR %s of VDI %s: %w", vdi.Spec.StorageRepository, vdi.Name, err)
	}
	disk.SRFound, disk.SRPool = true, sr.Spec.PoolRef.Name
	if !sr.Spec.Shared {
		disk.SRHost = sr.Spec.Host
	}
	return disk, vdi, nil
}

// diskLockedMessage is what a VM that cannot have a VDI is told.
func diskLockedMessage(held *vpoolv1alpha1.VirtualDisk) string {
	return fmt.Sprintf("VDI %s already attached RW by %s", held.Name, held.Status.Lock.Host)
}

// cacheHasPlacements reports whether the cache shows every placement this
// reconciler made in the pool, and forgets those it shows.
func (r *PlacementReconciler) cacheHasPlacements(pool types.NamespacedName, vms []vpoolv1alpha1.VirtualMachine) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	placed := r.placed[pool]
	if len(placed) == 0 {
		return true
	}
	for i := range vms {
		if rv, ok := placed[vms[i].Name]; ok && vms[i].ResourceVersion == rv {
			return false
		}
	}
	delete(r.placed, pool)
	return true
}

// record writes each decision that changes a VM's status: a placement in
// status.residentOn (before any disk is locked for that host), a wait in
// the Scheduled and Ready conditions. Of a VM changed meanwhile, the write
// fails on its resourceVersion and the next pass decides again.
func (r *PlacementReconciler) record(ctx context.Context, pool types.NamespacedName, vms []*vpoolv1alpha1.VirtualMachine,
	decisions []placement.Decision, boots map[string]string) (conflicts bool, err error) {
	var conflicted atomic.Bool
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(max(r.Writers, 1))
	for i, vm := range vms {
		if decided(vm, decisions[i]) {
			continue // the common case in a large pool: nothing to copy or compare
		}
		before, after := vm, vm.DeepCopy()
		if !decide(after, decisions[i], boots[decisions[i].Host]) {
			continue
		}
		if after.Status.ResidentOn != "" {
			r.mu.Lock()
			if r.placed[pool] == nil {
				r.placed[pool] = map[string]string{}
			}
			r.placed[pool][vm.Name] = vm.ResourceVersion
			r.mu.Unlock()
		}
		g.Go(func() error {
			st := status.NewFrom(r.Client, r.Recorder, before, after)
			if d := decisions[i]; warned[d.Reason] && scheduledReason(before) != d.Reason {
				st.Eventf(corev1.EventTypeWarning, d.Reason, "Start", "%s", d.Message)
			}
			err := st.Write(ctx)
			switch {
			case apierrors.IsConflict(err):
				r.forget(pool, vm.Name)
				conflicted.Store(true)
				return nil
			case err != nil:
				r.forget(pool, vm.Name)
				return fmt.Errorf("recording the placement of VM %s: %w", klog.KObj(vm), err)
			case !st.Written(): // the VM is gone
				r.forget(pool, vm.Name)
			}
			return nil
		})
	}
	err = g.Wait()
	return conflicted.Load(), err
}

func (r *PlacementReconciler) forget(pool types.NamespacedName, vm string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.placed[pool], vm)
}

func scheduledReason(vm *vpoolv1alpha1.VirtualMachine) string {
	if c := meta.FindStatusCondition(vm.Status.Conditions, vpoolv1alpha1.VMScheduled); c != nil {
		return c.Reason
	}
	return ""
}

// decided reports whether a VM's status already says what a decision not
// to place it would write.
func decided(vm *vpoolv1alpha1.VirtualMachine, d placement.Decision) bool {
	if d.Host != "" || vm.Status.PowerState == "" {
		return false
	}
	says := func(t string) bool {
		c := meta.FindStatusCondition(vm.Status.Conditions, t)
		return c != nil && c.Status == metav1.ConditionFalse && c.Reason == d.Reason && c.Message == d.Message &&
			c.ObservedGeneration == vm.Generation
	}
	reason, msg := disksWaiting(d)
	c := meta.FindStatusCondition(vm.Status.Conditions, vpoolv1alpha1.VMDisksLocked)
	return says(vpoolv1alpha1.VMScheduled) && says(vpoolv1alpha1.ConditionReady) &&
		c != nil && c.Status == metav1.ConditionFalse && c.Reason == reason && c.Message == msg && c.ObservedGeneration == vm.Generation
}

// ReasonNotScheduled is the DisksLocked reason of a VM waiting for a host.
const ReasonNotScheduled = "NotScheduled"

// disksWaiting is the DisksLocked condition of a VM not placed by d: the
// decision itself when a disk is why, else that no host is chosen yet.
func disksWaiting(d placement.Decision) (reason, msg string) {
	if d.Reason == ReasonDiskLocked {
		return d.Reason, d.Message
	}
	return ReasonNotScheduled, "no disk is locked until the VM has a host (see Scheduled)"
}

// warned are the placement reasons told in a Warning event when they first appear.
var warned = map[string]bool{ReasonDiskLocked: true, placement.ReasonDiskInOtherPool: true,
	placement.ReasonLocalDisksApart: true, placement.ReasonAffinityHostNotFound: true}

// decide applies a decision to a VM's status and reports whether it changed;
// boot is the boot ID of the host it places the VM on.
func decide(vm *vpoolv1alpha1.VirtualMachine, d placement.Decision, boot string) bool {
	before := vm.Status.DeepCopy()
	set := func(t string, st metav1.ConditionStatus, reason, msg string) { status.Set(vm, t, st, reason, msg) }
	if vm.Status.PowerState == "" {
		vm.Status.PowerState = vpoolv1alpha1.PowerHalted
	}
	if d.Host != "" {
		vm.Status.ResidentOn, vm.Status.ResidentBootID = d.Host, boot
		set(vpoolv1alpha1.VMScheduled, metav1.ConditionTrue, d.Reason, d.Message)
		set(vpoolv1alpha1.VMDisksLocked, metav1.ConditionFalse, ReasonStarting, "locking RW disks for "+d.Host)
		set(vpoolv1alpha1.ConditionReady, metav1.ConditionFalse, ReasonStarting, d.Message)
	} else {
		set(vpoolv1alpha1.VMScheduled, metav1.ConditionFalse, d.Reason, d.Message)
		set(vpoolv1alpha1.ConditionReady, metav1.ConditionFalse, d.Reason, d.Message)
		reason, msg := disksWaiting(d)
		set(vpoolv1alpha1.VMDisksLocked, metav1.ConditionFalse, reason, msg)
	}
	setVMProgress(vm)
	return !equality.Semantic.DeepEqual(*before, vm.Status)
}
