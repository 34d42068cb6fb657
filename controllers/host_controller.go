package controllers

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/internal/fencing"
	"github.com/poolkeeper/poolkeeper/internal/liveness"
	"github.com/poolkeeper/poolkeeper/internal/metrics"
	"github.com/poolkeeper/poolkeeper/internal/status"
)

// +kubebuilder:rbac:groups=vpool.poolkeeper.io,resources=hosts,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=vpool.poolkeeper.io,resources=hosts/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=vpool.poolkeeper.io,resources=hosts/finalizers,verbs=update
// +kubebuilder:rbac:groups=coordination.k8s.io,resources=leases,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// HostReconciler runs the host phase machine: heartbeat staleness, fencing
// (Agent watchdog, Redfish, Manual), the repair and rejoin paths, and forget.
type HostReconciler struct {
	client.Client
	// APIReader reads from the API server, not the cache: Leases before any
	// destructive step, and BMC credentials.
	APIReader client.Reader
	Clock     clock.PassiveClock
	Tracker   *liveness.Tracker
	Recorder  events.EventRecorder
	// BMC opens a Redfish client; tests may replace it.
	BMC BMCFactory
	// Methods are the fencing methods by API enum value; nil: the built-in
	// ones (fencing.NewRegistry with BMC).
	Methods fencing.Registry
	// GuardChanged, when set, is told of each pool whose storm guard began
	// to hold or was lifted (PoolReconciler.GuardChanges), so that its
	// FencingAllowed condition says so at once.
	GuardChanged chan<- event.GenericEvent

	// poolLocks holds a *sync.Mutex per pool ("namespace/name"): see startFencing.
	poolLocks sync.Map
	// bmcChecks holds the last bmcCheck of each Redfish Host, by name.
	bmcChecks sync.Map
	// fenceStalls holds the fenceStall of each Host whose fence stopped on
	// a terminal failure, by name.
	fenceStalls sync.Map
	// defaultMethods is fencing.NewRegistry(BMC), built once.
	methodsOnce    sync.Once
	defaultMethods fencing.Registry
}

type workqueueInterface = workqueue.TypedRateLimitingInterface[reconcile.Request]

// hostScope is what one reconcile of a Host has read.
type hostScope struct {
	host *vpoolv1alpha1.Host
	// st writes the host's status: once at the end, and before a step that
	// must be recorded before it is taken (writeStatus).
	st      *status.Helper[*vpoolv1alpha1.Host]
	pool    *vpoolv1alpha1.Pool
	tally   fencing.Tally
	tallied bool
	fencing int // other hosts of the pool in phase Fencing
	timeout time.Duration
	now     time.Time
	// transitioned: this reconcile changed the phase (and announced it).
	transitioned bool
	// agentConflict says why the host is not Ready while two agents claim it.
	agentConflict string
	// settings are the pool's settings in force (Pool.Effective).
	settings vpoolv1alpha1.EffectiveSettings
	// in is the phase machine's input, built once by decisionInput and kept
	// in step with the host as the machine advances (syncInput).
	in fencing.HostInput
	// fencer is the host's fencing method.
	fencer fencing.Fencer
	// suspectIn is, for a Live host of an HA pool, how long until its
	// silence makes it stale for the storm guard (see watchQuiet).
	suspectIn time.Duration
	// secretsRead are the resourceVersions of the Secrets the fencing
	// method read in this reconcile, by name.
	secretsRead map[string]string
}

// SetupWithManager registers the reconciler: Hosts, their Leases (through the
// liveness tracker), their Pool, and sibling phase changes (which free the
// fencing budget or lift the storm guard).
func (r *HostReconciler) SetupWithManager(mgr ctrl.Manager, opts Options) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&vpoolv1alpha1.Host{}).
		Watches(&coordinationv1.Lease{}, handler.Funcs{
			CreateFunc: func(ctx context.Context, e event.CreateEvent, q workqueueInterface) { r.leaseEvent(ctx, e.Object, q) },
			UpdateFunc: func(ctx context.Context, e event.UpdateEvent, q workqueueInterface) {
				r.leaseEvent(ctx, e.ObjectNew, q)
			},
			DeleteFunc: func(ctx context.Context, e event.DeleteEvent, q workqueueInterface) {
				key := client.ObjectKeyFromObject(e.Object)
				if host, ok := standbyHost(e.Object); ok {
					r.Tracker.Forget(key)
					key = host
				}
				q.Add(reconcile.Request{NamespacedName: key})
			},
		}).
		Watches(&vpoolv1alpha1.Pool{}, handler.EnqueueRequestsFromMapFunc(r.hostsOfPool),
			builder.WithPredicates(poolDecisionInputsChanged())).
		Watches(&vpoolv1alpha1.Host{}, handler.EnqueueRequestsFromMapFunc(r.waitingSiblings),
			builder.WithPredicates(phaseChanged())).
		WithOptions(controller.Options{MaxConcurrentReconciles: opts.MaxConcurrentReconciles}).
		Complete(conflictsRequeued(r))
}

// leaseEvent records a Lease observation. A renewal of a Live host needs no
// reconcile (its expiry is already queued) unless its pool's storm guard
// holds: the renewal may lift it; anything else does.
func (r *HostReconciler) leaseEvent(ctx context.Context, obj client.Object, q workqueueInterface) {
	key := client.ObjectKeyFromObject(obj)
	renewed := r.Tracker.Observe(key, obj.GetResourceVersion(), declaredDeadline(obj))
	if host, ok := standbyHost(obj); ok {
		// A second agent: its first sighting wakes the host; its renewals
		// need nothing (the host looks again when it would be gone).
		if !renewed {
			q.Add(reconcile.Request{NamespacedName: host})
		}
		return
	}
	host := &vpoolv1alpha1.Host{}
	if err := r.Get(ctx, key, host); err != nil {
		return
	}
	if renewed && host.Status.Phase == vpoolv1alpha1.HostPhaseLive && !r.mayLiftGuard(ctx, host) {
		return
	}
	q.Add(reconcile.Request{NamespacedName: key})
}

func (r *HostReconciler) hostsOfPool(ctx context.Context, obj client.Object) []reconcile.Request {
	hosts := &vpoolv1alpha1.HostList{}
	if err := r.List(ctx, hosts, client.InNamespace(obj.GetNamespace()), client.MatchingFields{IndexPoolRef: obj.GetName()}); err != nil {
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(hosts.Items))
	for i := range hosts.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&hosts.Items[i])})
	}
	return reqs
}

// waitingSiblings wakes the Unreachable hosts of a pool when another host's
// phase changes: the storm guard or the fencing budget may now let them go on.
func (r *HostReconciler) waitingSiblings(ctx context.Context, obj client.Object) []reconcile.Request {
	h, ok := obj.(*vpoolv1alpha1.Host)
	if !ok {
		return nil
	}
	hosts := &vpoolv1alpha1.HostList{}
	if err := r.List(ctx, hosts, client.InNamespace(h.Namespace), client.MatchingFields{IndexPoolRef: h.Spec.PoolRef.Name}); err != nil {
		return nil
	}
	var reqs []reconcile.Request
	for i := range hosts.Items {
		s := &hosts.Items[i]
		if s.Name != h.Name && s.Status.Phase == vpoolv1alpha1.HostPhaseUnreachable {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(s)})
		}
	}
	return reqs
}

// poolDecisionInputsChanged passes Pool events that change what a Host
// decides: the spec (HA, timeout, fencing bounds) and the master and epoch.
// Host counts in the Pool's status do not wake every Host.
func poolDecisionInputsChanged() predicate.Funcs {
	return predicate.Funcs{
		UpdateFunc: func(e event.UpdateEvent) bool {
			o, n := e.ObjectOld.(*vpoolv1alpha1.Pool), e.ObjectNew.(*vpoolv1alpha1.Pool)
			return o.Generation != n.Generation || o.Status.Master != n.Status.Master || o.Status.Epoch != n.Status.Epoch
		},
	}
}

// Reconcile advances one Host through its phases.
func (r *HostReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	host := &vpoolv1alpha1.Host{}
	if err := r.Get(ctx, req.NamespacedName, host); err != nil {
		if apierrors.IsNotFound(err) {
			r.Tracker.Forget(req.NamespacedName)
			r.bmcChecks.Delete(req.NamespacedName)
			r.fenceStalls.Delete(req.NamespacedName)
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, err
	}
	log := ctrl.LoggerFrom(ctx).WithValues("Host", klog.KObj(host))
	ctx = ctrl.LoggerInto(ctx, log)

	if host.DeletionTimestamp.IsZero() && !controllerutil.ContainsFinalizer(host, vpoolv1alpha1.FinalizerHostForget) {
		patch := client.MergeFrom(host.DeepCopy())
		controllerutil.AddFinalizer(host, vpoolv1alpha1.FinalizerHostForget)
		return ctrl.Result{}, r.Patch(ctx, host, patch)
	}

	s := &hostScope{host: host, st: status.New(r.Client, r.Recorder, host), now: r.Clock.Now()}
	result, forgotten, err := r.reconcile(ctx, s)
	// Transitions are announced only once they are recorded.
	if err := s.st.Patch(ctx, err); err != nil {
		return ctrl.Result{}, err
	}
	if forgotten && !host.DeletionTimestamp.IsZero() {
		// Deleted and forgotten: let the object go, and its Leases first.
		if err := r.releaseLeases(ctx, host); err != nil {
			return ctrl.Result{}, err
		}
		return ctrl.Result{}, r.removeFinalizer(ctx, host)
	}
	return result, nil
}

// reconcile does the work of one pass on a Host; it reports whether the host
// is forgotten, so a deleted Host can release its finalizer.
func (r *HostReconciler) reconcile(ctx context.Context, s *hostScope) (ctrl.Result, bool, error) {
	host := s.host
	pool := &vpoolv1alpha1.Pool{}
	if err := r.Get(ctx, types.NamespacedName{Namespace: host.Namespace, Name: host.Spec.PoolRef.Name}, pool); err != nil {
		if !apierrors.IsNotFound(err) {
			return ctrl.Result{}, false, err
		}
		if !forgetIntent(host) {
			r.setPoolMissing(host)
			return ctrl.Result{}, false, nil
		}
		// A host is never forgotten while its agent heartbeats, with or
		// without its pool: without one, it is forgotten as in a pool with
		// HA off once it is down (orphanPool).
		pool = orphanPool(host, r.Tracker.Get(client.ObjectKeyFromObject(host)))
	}
	if err := r.fillScope(ctx, s, pool); err != nil {
		return ctrl.Result{}, false, err
	}
	requeue, err := r.reconcilePhase(ctx, s)
	if err != nil {
		return ctrl.Result{}, false, err
	}
	return ctrl.Result{RequeueAfter: requeue}, host.Status.Phase == vpoolv1alpha1.HostPhaseForgotten, nil
}

// forgetIntent reports whether a person asked for the host to be forgotten:
// spec.state Forgotten, or the Host deleted.
func forgetIntent(h *vpoolv1alpha1.Host) bool {
	return h.Spec.State == vpoolv1alpha1.HostForgotten || !h.DeletionTimestamp.IsZero()
}

// orphanPool stands in for the missing pool of a host being forgotten: HA
// off, and the heartbeat timeout the agent last declared in its Lease (the
// HA default if it never did), so that a heartbeating host is refused and a
// silent one is forgotten once its agent has certainly self-fenced.
func orphanPool(h *vpoolv1alpha1.Host, hb liveness.Observation) *vpoolv1alpha1.Pool {
	timeout := hb.Declared
	if timeout <= 0 {
		timeout = liveness.DefaultHATimeout
	}
	p := &vpoolv1alpha1.Pool{ObjectMeta: metav1.ObjectMeta{Namespace: h.Namespace, Name: h.Spec.PoolRef.Name}}
	p.Spec.HeartbeatTimeout = &metav1.Duration{Duration: timeout}
	p.Spec.Fencing.MaxConcurrent = 1
	return p
}

func (r *HostReconciler) fillScope(_ context.Context, s *hostScope, pool *vpoolv1alpha1.Pool) error {
	s.pool = pool
	s.settings = pool.Effective()
	s.timeout = s.settings.HeartbeatTimeout
	return nil
}

// tallyPool counts the pool's hosts for the fencing chain, from the cache.
// Only a host that may be fenced, or a quiet one (watchQuiet), needs it: a
// heartbeating host's reconcile stays O(1).
func (r *HostReconciler) tallyPool(ctx context.Context, s *hostScope) error {
	if s.tallied {
		return nil
	}
	hosts := &vpoolv1alpha1.HostList{}
	if err := r.List(ctx, hosts, client.InNamespace(s.host.Namespace), client.MatchingFields{IndexPoolRef: s.pool.Name}); err != nil {
		return fmt.Errorf("listing hosts of pool %s: %w", s.pool.Name, err)
	}
	s.setTally(hosts.Items, r.Tracker)
	return nil
}

// setTally counts hosts, taking this reconcile's view of its own host.
func (s *hostScope) setTally(hosts []vpoolv1alpha1.Host, tracker *liveness.Tracker) {
	s.tallied, s.fencing = true, 0
	for i := range hosts {
		h := &hosts[i]
		if h.Name == s.host.Name {
			hosts[i] = *s.host
		} else if h.Status.Phase == vpoolv1alpha1.HostPhaseFencing {
			s.fencing++
		}
	}
	s.tally = tallyHosts(hosts, tracker, s.now, s.timeout)
}

// startFencing moves an Unreachable host to Fencing if the fencing chain
// still allows it. The hosts of one pool start fencing one at a time, under
// the pool's lock: the budget (spec.fencing.maxConcurrent) is counted from a
// quorum read of the API server, since the cache may not yet show a sibling
// that has just started, and the Fencing phase is written before the lock is
// released. Parallel reconciles, and an operator restarted at any point, so
// never see more hosts in Fencing than the budget.
func (r *HostReconciler) startFencing(ctx context.Context, s *hostScope) (fencing.Decision, error) {
	unlock := r.lockPool(s.host.Namespace, s.pool.Name)
	defer unlock()
	all := &vpoolv1alpha1.HostList{}
	if err := r.APIReader.List(ctx, all, client.InNamespace(s.host.Namespace)); err != nil {
		return fencing.Decision{}, fmt.Errorf("listing hosts of pool %s: %w", s.pool.Name, err)
	}
	hosts := slices.DeleteFunc(all.Items, func(h vpoolv1alpha1.Host) bool { return h.Spec.PoolRef.Name != s.pool.Name })
	s.setTally(hosts, r.Tracker)
	s.in.Guard = r.guard(s)
	d := fencing.Next(s.in)
	if d.Phase != vpoolv1alpha1.HostPhaseFencing {
		return d, nil
	}
	r.transition(ctx, s, d)
	if err := r.writeStatus(ctx, s); err != nil {
		return d, fmt.Errorf("recording that host %s is fencing: %w", s.host.Name, err)
	}
	return d, nil
}

// lockPool serialises the start of fencing within one pool; it returns the unlock.
func (r *HostReconciler) lockPool(namespace, pool string) func() {
	m, _ := r.poolLocks.LoadOrStore(namespace+"/"+pool, &sync.Mutex{})
	mu := m.(*sync.Mutex)
	mu.Lock()
	return mu.Unlock
}

// writeStatus records the status now (a step that must be recorded before
// what it allows is done), with optimistic locking against what was read.
func (r *HostReconciler) writeStatus(ctx context.Context, s *hostScope) error {
	return s.st.Write(ctx)
}

// methods is the registry of fencing methods in force.
func (r *HostReconciler) methods() fencing.Registry {
	if r.Methods != nil {
		return r.Methods
	}
	r.methodsOnce.Do(func() { r.defaultMethods = fencing.NewRegistry(r.BMC) })
	return r.defaultMethods
}

// decisionInput builds the phase machine's input from what was read. The
// pool is tallied only for a host that may be fenced, or a quiet Live one:
// a heartbeating host's reconcile stays O(1).
func (r *HostReconciler) decisionInput(ctx context.Context, s *hostScope) error {
	h := s.host
	methods := r.methods()
	method := fencing.MethodOf(h)
	s.fencer = methods.Get(method)
	s.in = fencing.HostInput{
		Now: s.now, Method: method, Spec: h.Spec.Fencing, Methods: methods, HAEnabled: s.settings.HA.Enabled,
		Forget: forgetIntent(h), Timeout: s.timeout, IsMaster: s.pool.Status.Master == h.Name, BootID: h.Status.BootID,
		RunningVMs: len(h.Status.RunningVMs), MasterEpoch: h.Status.MasterEpoch, PoolEpoch: s.pool.Status.Epoch,
		Watchdog: h.Status.Watchdog,
	}
	r.syncInput(s)
	// A host waiting for its agent's safe time is not counted fenced while
	// the storm guard holds (fencing.Agent), so the guard is looked at then;
	// and as soon as a Live host goes quiet (watchQuiet).
	quiet := r.watchQuiet(s)
	waiting := h.Status.Phase == vpoolv1alpha1.HostPhaseFencing && s.in.HAEnabled && !s.in.Forget
	if quiet || waiting || h.Status.Phase == vpoolv1alpha1.HostPhaseUnreachable && (s.in.HAEnabled || s.in.Forget) {
		if err := r.tallyPool(ctx, s); err != nil {
			return err
		}
	}
	s.in.Guard = r.guard(s)
	return nil
}

// syncInput brings into the input what a step of the machine changes: the
// phase and fence record written, and the heartbeat after a Lease re-read.
func (r *HostReconciler) syncInput(s *hostScope) {
	h := s.host
	s.in.Phase, s.in.Fencing = h.Status.Phase, h.Status.Fencing
	s.in.Heartbeat = r.heartbeatOf(s)
	s.in.Withdrawable = h.Spec.State == vpoolv1alpha1.HostForgotten && h.DeletionTimestamp.IsZero() && h.Status.ForgetStartedAt == nil
}

// guard runs the fencing chain on the scope's tally, and records the storm
// guard's verdict for the pool's recount.
func (r *HostReconciler) guard(s *hostScope) fencing.Check {
	r.noteGuard(s)
	// A lift noted just now counts this host's silence afresh at once.
	s.in.Heartbeat = r.heartbeatOf(s)
	return fencing.MayFence(fencing.Request{
		Automatic: s.in.HAEnabled && !s.in.Forget, Method: s.in.Method, Tally: s.tally, Methods: s.in.Methods,
		MaxUnhealthyPercent: s.settings.Fencing.MaxUnhealthyPercent, MaxConcurrent: s.settings.Fencing.MaxConcurrent,
		InFencing: s.fencing,
	})
}

// reconcilePhase advances the host through its phases, checks its agents
// and its fencing configuration, and says when to look again.
func (r *HostReconciler) reconcilePhase(ctx context.Context, s *hostScope) (time.Duration, error) {
	h := s.host
	if h.Status.Phase == "" {
		h.Status.Phase = vpoolv1alpha1.HostPhasePending
	}
	if err := r.decisionInput(ctx, s); err != nil {
		return 0, err
	}
	stepRequeue, err := r.fenceStep(ctx, s)
	if err != nil {
		return 0, err
	}
	d, err := r.advance(ctx, s)
	if err != nil {
		return 0, err
	}
	agentsRecheck, err := r.checkAgents(ctx, s)
	if err != nil {
		return 0, err
	}
	r.setConditions(s, d)
	fencingRecheck := r.checkFencing(ctx, s)
	setHostProgress(h)
	r.announceReadyChange(s)
	requeue := d.RequeueAfter
	if stepRequeue > 0 && h.Status.Phase == vpoolv1alpha1.HostPhaseFencing {
		requeue = stepRequeue
	}
	var suspect time.Duration
	if h.Status.Phase == vpoolv1alpha1.HostPhaseLive {
		suspect = s.suspectIn
	}
	return earliest(requeue, agentsRecheck, fencingRecheck, suspect), nil
}

// advance runs the phase machine until it settles (a few steps at most),
// re-reading the Lease before every destructive step, and returns the last
// decision.
func (r *HostReconciler) advance(ctx context.Context, s *hostScope) (fencing.Decision, error) {
	h := s.host
	var d fencing.Decision
	for step := 0; step < 6; step++ {
		r.syncInput(s)
		d = fencing.Next(s.in)
		if d.Destructive(h.Status.Phase) {
			moved, err := r.leaseMoved(ctx, h)
			if err != nil {
				return d, err
			}
			if moved {
				continue // the count starts again; decide anew
			}
		}
		if d.Phase == h.Status.Phase {
			return d, nil
		}
		if d.Phase == vpoolv1alpha1.HostPhaseFencing && h.Status.Phase == vpoolv1alpha1.HostPhaseUnreachable {
			// The fencing budget is decided and spent under the pool's lock,
			// against the API server: see startFencing.
			var err error
			if d, err = r.startFencing(ctx, s); err != nil || h.Status.Phase != vpoolv1alpha1.HostPhaseFencing {
				return d, err
			}
			continue
		}
		r.transition(ctx, s, d)
		if d.Phase == vpoolv1alpha1.HostPhaseUnreachable {
			// Recorded on its own, so everyone sees Unreachable before anything
			// else happens; the write's own event brings the next step.
			return d, nil
		}
	}
	return d, nil
}

// earliest is the shortest of the non-zero durations (zero if none).
func earliest(ds ...time.Duration) time.Duration {
	var out time.Duration
	for _, d := range ds {
		if d > 0 && (out == 0 || d < out) {
			out = d
		}
	}
	return out
}

// transition records a phase change in status (written before anything the
// new phase allows is done) and emits its event.
func (r *HostReconciler) transition(ctx context.Context, s *hostScope, d fencing.Decision) {
	h := s.host
	from := h.Status.Phase
	now := metav1.NewTime(s.now)
	hb := s.in.Heartbeat
	if d.BeginsForget(from, forgetIntent(h)) && h.Status.ForgetStartedAt == nil {
		h.Status.ForgetStartedAt = &now
	}
	h.Status.Phase = d.Phase
	if !hb.LastRenewal.IsZero() {
		h.Status.LastHeartbeatTime = &metav1.Time{Time: hb.LastRenewal}
	}
	method := s.in.Method
	eventType := corev1.EventTypeNormal
	var observe func()
	s.transitioned = true
	switch d.Phase {
	case vpoolv1alpha1.HostPhaseUnreachable:
		eventType = corev1.EventTypeWarning
		lag := s.now.Sub(hb.LastSeen.Add(s.timeout))
		observe = func() { metrics.DetectionLag.Observe(lag.Seconds()) }
	case vpoolv1alpha1.HostPhaseFencing:
		h.Status.Fencing = s.fencer.Start(s.in)
	case vpoolv1alpha1.HostPhaseFenced:
		if h.Status.Fencing == nil {
			h.Status.Fencing = fencing.StartRecord(s.in)
		}
		h.Status.Fencing.CompletedAt = &now
		h.Status.Fencing.Evidence = d.Message
		h.Status.Fencing.LastError = ""
		observe = func() { metrics.Fences.WithLabelValues(string(method), "fenced").Inc() }
	case vpoolv1alpha1.HostPhaseLive:
		if from == vpoolv1alpha1.HostPhaseFencing {
			h.Status.Fencing = nil // abandoned: the host proved alive
			observe = func() { metrics.Fences.WithLabelValues(string(method), "abandoned").Inc() }
		}
	}
	ctrl.LoggerFrom(ctx).Info("Host phase changed", "from", from, "to", d.Phase, "reason", d.Reason)
	s.st.Event(status.Event{Type: eventType, Reason: d.Reason, Action: string(d.Phase), Note: d.Message, Observe: observe})
}

// leaseMoved re-reads the host's Lease from the API server. If it changed
// since the last observation the tracker records a renewal: a late watch
// event must never make a live host look dead.
func (r *HostReconciler) leaseMoved(ctx context.Context, h *vpoolv1alpha1.Host) (bool, error) {
	lease := &coordinationv1.Lease{}
	key := client.ObjectKeyFromObject(h)
	if err := r.APIReader.Get(ctx, key, lease); err != nil {
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return false, fmt.Errorf("re-reading the heartbeat Lease of host %s: %w", key, err)
	}
	if lease.Labels[vpoolv1alpha1.LabelHost] != h.Name {
		return false, nil // not an agent's Lease
	}
	return r.Tracker.Observe(key, lease.ResourceVersion, declaredDeadline(lease)), nil
}

// declaredDeadline is the self-fence deadline an agent declares in its Lease.
func declaredDeadline(obj client.Object) time.Duration {
	lease, ok := obj.(*coordinationv1.Lease)
	if !ok || lease.Spec.LeaseDurationSeconds == nil {
		return 0
	}
	return time.Duration(*lease.Spec.LeaseDurationSeconds) * time.Second
}

func (r *HostReconciler) setConditions(s *hostScope, d fencing.Decision) {
	h := s.host
	set := s.st.Set
	switch {
	case h.Status.Phase == vpoolv1alpha1.HostPhaseLive && s.agentConflict != "":
		set(vpoolv1alpha1.ConditionReady, metav1.ConditionFalse, ReasonDuplicateAgent, s.agentConflict)
	case h.Status.Phase == vpoolv1alpha1.HostPhaseLive:
		set(vpoolv1alpha1.ConditionReady, metav1.ConditionTrue, d.Reason, d.Message)
	default:
		set(vpoolv1alpha1.ConditionReady, metav1.ConditionFalse, d.Reason, d.Message)
	}
	hb := fencing.HeartbeatVerdict(h.Status.Phase, s.in.Heartbeat, s.now, s.timeout)
	set(vpoolv1alpha1.HostHeartbeat, hb.Status, hb.Reason, hb.Message)
	fenced := s.in.Methods.FencedVerdict(h.Status.Phase, d, h.Status.Fencing)
	set(vpoolv1alpha1.HostFencedCondition, fenced.Status, fenced.Reason, fenced.Message)
	h.Status.Role = vpoolv1alpha1.RoleMember
	if s.pool.Status.Master == h.Name {
		h.Status.Role = vpoolv1alpha1.RoleMaster
	}
}

// setHostProgress says, for kstatus, that a host being fenced is work under
// way, and that one whose BMC refuses the credentials waits for a person.
func setHostProgress(h *vpoolv1alpha1.Host) {
	if fr := status.Find(h, vpoolv1alpha1.HostFencingReady); fr != nil &&
		fr.Status == metav1.ConditionFalse && fr.Reason == ReasonBMCUnauthorized {
		status.SetProgress(h, status.ProgressOf(fr, false, true))
		return
	}
	fencing := h.Status.Phase == vpoolv1alpha1.HostPhaseFencing
	status.SetProgress(h, status.ProgressOf(status.Find(h, vpoolv1alpha1.ConditionReady), fencing, false))
}

// announceReadyChange emits an event when the Ready reason changed without a
// phase transition (a refusal, a block, a wait), so each is said once.
func (r *HostReconciler) announceReadyChange(s *hostScope) {
	if s.transitioned {
		return
	}
	old, cur := s.st.Was(vpoolv1alpha1.ConditionReady), s.st.Get(vpoolv1alpha1.ConditionReady)
	if cur == nil || (old != nil && old.Reason == cur.Reason) {
		return
	}
	eventType := corev1.EventTypeNormal
	if cur.Status != metav1.ConditionTrue || cur.Reason == fencing.ReasonForgetRefused {
		eventType = corev1.EventTypeWarning
	}
	s.st.Event(status.Event{Type: eventType, Reason: cur.Reason, Action: string(s.host.Status.Phase), Note: cur.Message})
}

func (r *HostReconciler) setPoolMissing(h *vpoolv1alpha1.Host) {
	if h.Status.Phase == "" {
		h.Status.Phase = vpoolv1alpha1.HostPhasePending
	}
	status.Set(h, vpoolv1alpha1.ConditionReady, metav1.ConditionFalse, vpoolv1alpha1.ReasonPoolNotFound,
		fmt.Sprintf("spec.poolRef.name: Pool %q not found in namespace %s", h.Spec.PoolRef.Name, h.Namespace))
}

func (r *HostReconciler) removeFinalizer(ctx context.Context, h *vpoolv1alpha1.Host) error {
	if !controllerutil.ContainsFinalizer(h, vpoolv1alpha1.FinalizerHostForget) {
		return nil
	}
	patch := client.MergeFrom(h.DeepCopy())
	controllerutil.RemoveFinalizer(h, vpoolv1alpha1.FinalizerHostForget)
	return r.Patch(ctx, h, patch)
}
