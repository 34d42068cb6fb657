package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/uuid"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/internal/liveness"
	"github.com/poolkeeper/poolkeeper/internal/watchdog"
)

// ErrSelfFenced is returned by Run when the watchdog stopped every VM because
// the Lease could not be renewed in time. The host must reboot (the agent
// restart, with a new boot ID) before the operator lets it rejoin.
var ErrSelfFenced = errors.New("self-fenced: the heartbeat Lease could not be renewed before the watchdog deadline; every VM was stopped")

// DefaultHeartbeatInterval is the default time between two Lease renewals.
const DefaultHeartbeatInterval = 10 * time.Second

// Config configures an Agent.
type Config struct {
	// RESTConfig reaches the API server.
	RESTConfig *rest.Config
	// Namespace and Host name the Host this agent runs.
	Namespace, Host string
	// Interval is the heartbeat interval (DefaultHeartbeatInterval when zero).
	Interval time.Duration
	// Driver runs the VMs; DriverName is its kind, reported in the Host's
	// status.driver (sim when empty and Driver is a *SimDriver).
	Driver     Driver
	DriverName string
	// BootID identifies this boot; a new random one when empty.
	BootID string
	// Watchdog resets the host when the agent stops petting it; nil or
	// watchdog.None for none (see watchdog.PlanFor for when it is petted).
	Watchdog watchdog.Watchdog
	// RequireWatchdog makes Run refuse an Agent-fenced host without a
	// watchdog that can reset it in time (ErrNoSafeWatchdog): set it with a
	// driver whose VMs outlive the agent.
	RequireWatchdog bool
	// Clock is the time source (real when nil); its durations are monotonic.
	Clock clock.WithTicker
	// StatefileDir resolves the pool's heartbeat SR to the directory of its
	// statefile on this host (nil: no statefile; a control-plane outage
	// then stops the VMs as without a heartbeat SR). The agent follows the
	// pool's setting while it runs (see followStatefile).
	StatefileDir func(ctx context.Context, sr *vpoolv1alpha1.StorageRepository) (string, error)
	// Log receives the agent's logs.
	Log logr.Logger
}

// Agent is one host's agent.
type Agent struct {
	cfg    Config
	client client.Client
	cache  cache.Cache
	lease  *coordinationv1.Lease
	// holding is true while this boot holds the heartbeat Lease: only then
	// does it run VMs and report (see liveness.DecideClaim).
	holding bool
	// seenRV is the Lease's resourceVersion as last read while another boot
	// held it, first read at seenAt on this agent's clock.
	seenRV string
	seenAt time.Time
	// standby is this boot's standby Lease while it waits.
	standby *coordinationv1.Lease
	// waitMsg is the last wait announced in the log, so each is said once.
	waitMsg string
	// lastOK is the start of the last successful renewal; deadline = lastOK + T.
	lastOK  time.Time
	timeout time.Duration
	// interval is the heartbeat interval in force: cfg.Interval, or a
	// quarter of the pool's timeout when that is shorter. passInterval is
	// the worker's copy of it, as of its current pass (only the worker
	// touches it).
	interval, passInterval time.Duration
	// pendingTimeout is a longer pool timeout not yet declared in the Lease;
	// declared is the timeout the last successful renewal declared.
	pendingTimeout, declared time.Duration

	mu     sync.Mutex
	frozen time.Duration
	// wake is poked when a watched object changes.
	wake chan struct{}
	// poolName names the host's pool (spec.poolRef is immutable).
	poolName string
	// armed is whether the watchdog is armed (or there is none), as the
	// heartbeat loop last found.
	armed bool
	// worker drives the VMs (see worker).
	worker *worker
	// petter pets the watchdog; nil without one.
	petter *petter
	// surv is the heartbeat SR's statefile; nil when the agent has no way to
	// reach one (Config.StatefileDir nil).
	surv *survival

	hostState
}

func (a *Agent) poke() {
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// New validates cfg and returns an Agent.
func New(cfg Config) (*Agent, error) {
	if cfg.RESTConfig == nil || cfg.Namespace == "" || cfg.Host == "" || cfg.Driver == nil {
		return nil, errors.New("agent: RESTConfig, Namespace, Host and Driver are required")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultHeartbeatInterval
	}
	if cfg.BootID == "" {
		cfg.BootID = uuid.NewString()
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	if _, sim := cfg.Driver.(*SimDriver); sim && cfg.DriverName == "" {
		cfg.DriverName = "sim"
	}
	a := &Agent{cfg: cfg, wake: make(chan struct{}, 1), worker: newWorker()}
	if cfg.Watchdog != nil && cfg.Watchdog.Kind() != watchdog.KindNone {
		a.petter = &petter{wd: cfg.Watchdog, clock: cfg.Clock, log: cfg.Log, poke: make(chan struct{}, 1)}
	}
	return a, nil
}

// BootID is this boot's identifier.
func (a *Agent) BootID() string { return a.cfg.BootID }

// Freeze stalls the heartbeat loop for d as a stopped process would be
// (SIGSTOP): no renewal, no report. For simulations and tests of the sim driver.
func (a *Agent) Freeze(d time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.frozen += d
}

// Run heartbeats until ctx is done (nil, or errStoppedInFlight when a VM start
// or stop was still in flight), the agent self-fences or the watchdog reset
// the host (ErrSelfFenced), or the watchdog cannot guard the host
// (ErrNoSafeWatchdog).
func (a *Agent) Run(ctx context.Context) (err error) {
	log := a.cfg.Log.WithValues("host", a.cfg.Host, "bootID", a.cfg.BootID)
	direct, err := client.New(a.cfg.RESTConfig, client.Options{Scheme: scheme})
	if err != nil {
		return fmt.Errorf("creating the API client: %w", err)
	}
	host := &vpoolv1alpha1.Host{}
	if err := direct.Get(ctx, types.NamespacedName{Namespace: a.cfg.Namespace, Name: a.cfg.Host}, host); err != nil {
		return fmt.Errorf("reading Host %s/%s: %w", a.cfg.Namespace, a.cfg.Host, err)
	}
	if err := a.startCache(ctx, host.Spec.PoolRef.Name); err != nil {
		return err
	}
	// Host and Pool are read from the watch cache; the Lease is only written.
	a.client, err = client.New(a.cfg.RESTConfig, client.Options{Scheme: scheme,
		Cache: &client.CacheOptions{Reader: a.cache, DisableFor: []client.Object{&coordinationv1.Lease{}}}})
	if err != nil {
		return fmt.Errorf("creating the API client: %w", err)
	}
	a.poolName = host.Spec.PoolRef.Name
	a.setTimeout(log, a.poolTimeout(ctx, a.poolName))
	log.Info("Agent started", "interval", a.interval, "heartbeatTimeout", a.timeout,
		"selfFenceAfter", liveness.SelfFenceAfter(a.timeout))
	if err := a.checkWatchdog(log, host); err != nil {
		return err
	}
	ctx, cancelRun := context.WithCancelCause(ctx)
	defer cancelRun(nil)
	if a.cfg.StatefileDir != nil {
		a.surv = &survival{boot: a.cfg.BootID}
		a.publish(true)
		stopped := make(chan struct{})
		go func() { defer close(stopped); a.runStatefile(ctx, log, host.Spec.PoolRef.Name) }()
		defer func() { cancelRun(nil); <-stopped }()
	}
	if a.petter != nil {
		// The petter outlives Run's context: on a clean stop it pets (as its
		// plan allows) until the worker's wait below is over, so that a
		// start still in flight cannot make the watchdog expire meanwhile.
		a.petter.log = log
		petting := make(chan struct{})
		pctx, stopPetting := context.WithCancel(context.WithoutCancel(ctx))
		go func() { defer close(petting); a.petter.run(pctx, cancelRun) }()
		defer func() { stopPetting(); <-petting; a.releaseWatchdog(log, err) }()
	}

	a.lastOK = a.cfg.Clock.Now()
	a.share()
	a.startWorker(ctx, log)
	defer func() {
		// A clean stop: no VM is stopped, but none may come up unseen
		// either, or releaseWatchdog could disarm the watchdog of a host
		// that runs it.
		a.worker.cancel()
		if err == nil && !a.waitWorker(a.interval) {
			err = fmt.Errorf("%w: %v", errStoppedInFlight, a.worker.inFlightOps())
		}
	}()
	next := a.cfg.Clock.Now()
	for {
		if !a.cfg.Clock.Now().Before(next) {
			if err := a.beat(ctx, log); err != nil {
				return err
			}
			next = a.cfg.Clock.Now().Add(a.interval)
		} else if err := a.check(ctx, log); err != nil {
			return err
		}
		wait := next.Sub(a.cfg.Clock.Now())
		if untilDeadline := a.deadline().Sub(a.cfg.Clock.Now()); a.holding && untilDeadline < wait {
			wait = max(untilDeadline, 0)
		}
		select {
		case <-ctx.Done():
			if cause := context.Cause(ctx); errors.Is(cause, watchdog.ErrHostReset) {
				return a.reset(ctx, log, cause)
			}
			return nil
		case <-a.wake:
		case <-a.cfg.Clock.After(wait):
		}
	}
}

// check runs between heartbeats, when a watched object changed or the
// deadline came: it self-fences once the deadline passed, follows the
// pool's timeout and wakes the worker. Like the whole heartbeat loop it
// never waits for a driver call (see worker). An agent that does not hold
// the Lease runs nothing.
func (a *Agent) check(ctx context.Context, log logr.Logger) error {
	if !a.holding {
		return nil
	}
	if !a.cfg.Clock.Now().Before(a.deadline()) {
		return a.selfFence(ctx, log)
	}
	a.followPool(ctx, log)
	// Nothing starts on a host its watchdog does not guard (beat says so).
	a.armed = a.watchdogArmed()
	a.share()
	a.worker.wake()
	return nil
}

// followPool adopts the pool's heartbeat timeout, read from the cache.
func (a *Agent) followPool(ctx context.Context, log logr.Logger) {
	pool := &vpoolv1alpha1.Pool{}
	if err := a.client.Get(ctx, types.NamespacedName{Namespace: a.cfg.Namespace, Name: a.poolName}, pool); err == nil {
		a.setTimeout(log, pool.Effective().HeartbeatTimeout)
	}
}

// deadline is the self-fence deadline: S + T, or later while the
// statefile confirms an outage exemption (liveness.Survive).
func (a *Agent) deadline() time.Time { return a.deadlineOf(a.lastOK, a.timeout) }

// deadlineOf is the self-fence deadline after a last successful renewal
// that started at lastOK, with timeout.
func (a *Agent) deadlineOf(lastOK time.Time, timeout time.Duration) time.Time {
	d := lastOK.Add(liveness.SelfFenceAfter(timeout))
	if ex := a.exemptUntil(); ex.After(d) {
		return ex
	}
	return d
}

// beat is one heartbeat: deadline check, renewal, and the worker woken.
func (a *Agent) beat(ctx context.Context, log logr.Logger) error {
	defer a.noteWatchdog()
	defer a.share()
	a.sleepIfFrozen(ctx)
	if ctx.Err() != nil {
		return nil
	}
	if a.holding && !a.cfg.Clock.Now().Before(a.deadline()) {
		return a.selfFence(ctx, log)
	}
	start := a.cfg.Clock.Now()
	// A renewal that completes after the deadline does not count: by then the
	// operator may already have started to count this host as fenced.
	rctx, cancel := context.WithTimeout(ctx, a.interval+liveness.SelfFenceAfter(a.timeout))
	if a.holding {
		deadline := a.deadline()
		if a.hasStatefile() {
			// Each attempt is bounded by an interval, so the statefile says
			// within one that this host cannot reach the API server.
			if bound := start.Add(a.interval); bound.Before(deadline) {
				deadline = bound
			}
		}
		rctx, cancel = context.WithDeadline(ctx, deadline)
	}
	wasHolding := a.holding
	err := a.renew(rctx, log)
	cancel()
	defer func() { a.publish(err == nil || apiAnswered(err)) }()
	if errors.Is(err, errDisplaced) {
		return a.stepDown(ctx, log, err)
	}
	if err == nil && !a.holding {
		return nil // waiting for another boot to go: nothing runs here
	}
	if err == nil && (!wasHolding || a.cfg.Clock.Now().Before(a.deadline())) {
		a.lastOK = start
		if a.pendingTimeout > 0 && a.declared == a.pendingTimeout {
			// Declared by the renewal that started at lastOK: the longer
			// deadline runs from there.
			a.timeout, a.pendingTimeout = a.declared, 0
			a.adaptInterval(log)
		}
	} else if err != nil && ctx.Err() == nil {
		log.Info("Heartbeat renewal failed", "error", err.Error(), "selfFenceIn", a.deadline().Sub(a.cfg.Clock.Now()))
	}
	if err == nil {
		return a.afterRenewal(ctx, log)
	}
	return nil
}

// afterRenewal follows the pool's timeout, pets the watchdog and wakes the
// worker, which drives the VMs (once the watchdog is armed) and reports,
// after a successful renewal.
func (a *Agent) afterRenewal(ctx context.Context, log logr.Logger) error {
	a.followPool(ctx, log)
	ready, err := a.watchdogReady()
	if err != nil {
		return a.reset(ctx, log, err)
	}
	if !ready {
		log.Info("The watchdog is not armed: no VM is started or stopped until it is")
	}
	a.armed = ready
	a.share()
	a.worker.wake()
	return nil
}

func (a *Agent) sleepIfFrozen(ctx context.Context) {
	a.mu.Lock()
	d := a.frozen
	a.frozen = 0
	a.mu.Unlock()
	if d <= 0 {
		return
	}
	select {
	case <-ctx.Done():
	case <-a.cfg.Clock.After(d):
	}
}

// selfFence stops every VM at the deadline. The worker is stopped first:
// no VM starts after this StopAll without being stopped (see worker).
func (a *Agent) selfFence(ctx context.Context, log logr.Logger) error {
	a.fenceWorker()
	defer a.awaitWorker(log)
	running, _ := a.cfg.Driver.Running(ctx)
	log.Info("Watchdog: no successful heartbeat renewal before the deadline; stopping every VM",
		"lastRenewalStart", a.lastOK, "deadline", a.deadline(), "runningVMs", len(running))
	if err := a.cfg.Driver.StopAll(context.WithoutCancel(ctx)); err != nil {
		return fmt.Errorf("self-fence: stopping VMs: %w (%w)", err, ErrSelfFenced)
	}
	return ErrSelfFenced
}

// reset ends this boot after the watchdog reset the host (hostReset), the
// worker stopped first as for selfFence.
func (a *Agent) reset(ctx context.Context, log logr.Logger, cause error) error {
	a.fenceWorker()
	defer a.awaitWorker(log)
	return a.hostReset(ctx, log, cause)
}

// errStoppedInFlight is Run's error when it stopped while a VM's start or
// stop was still in flight: the watchdog is then left armed.
var errStoppedInFlight = errors.New("stopped while a VM start or stop was still in flight in the driver; the watchdog stays armed")

// apiAnswered reports whether err is an answer of the API server (a
// conflict, a refusal): the renewal reached it.
func apiAnswered(err error) bool {
	var st apierrors.APIStatus
	return errors.As(err, &st) && !apierrors.IsTimeout(err) && !apierrors.IsServerTimeout(err) &&
		!apierrors.IsServiceUnavailable(err) && !apierrors.IsTooManyRequests(err)
}

// errDisplaced is returned by renew when another boot took the Lease from
// this one.
var errDisplaced = errors.New("another boot took over this host's heartbeat Lease")

// renew writes the Lease: exactly one API write per heartbeat in the steady
// state (an update from the last response; a conflict costs a read). It
// takes the Lease only as liveness.DecideClaim allows; while another boot
// holds it, renew renews this boot's standby Lease instead and a.holding is
// false.
func (a *Agent) renew(ctx context.Context, log logr.Logger) error {
	now := metav1.NewMicroTime(a.cfg.Clock.Now())
	holder := a.holder()
	// A longer timeout is declared first, and applies once declared.
	declare := a.timeout
	if a.pendingTimeout > 0 {
		declare = a.pendingTimeout
	}
	duration := ptr.To(int32(math.Ceil(liveness.SelfFenceAfter(declare).Seconds())))
	if a.lease == nil {
		lease := &coordinationv1.Lease{}
		err := a.client.Get(ctx, types.NamespacedName{Namespace: a.cfg.Namespace, Name: a.cfg.Host}, lease)
		switch {
		case apierrors.IsNotFound(err):
			lease = &coordinationv1.Lease{
				ObjectMeta: metav1.ObjectMeta{Namespace: a.cfg.Namespace, Name: a.cfg.Host,
					Labels: map[string]string{vpoolv1alpha1.LabelHost: a.cfg.Host}},
				Spec: coordinationv1.LeaseSpec{HolderIdentity: &holder, LeaseDurationSeconds: duration, AcquireTime: &now, RenewTime: &now},
			}
			if err := a.client.Create(ctx, lease); err != nil {
				return fmt.Errorf("creating heartbeat Lease: %w", err)
			}
			a.lease, a.declared = lease, declare
			a.acquired(ctx, log, "created the heartbeat Lease")
			return nil
		case err != nil:
			return fmt.Errorf("reading heartbeat Lease: %w", err)
		}
		a.lease = lease
	}
	lease := a.lease.DeepCopy()
	if current := ptr.Deref(lease.Spec.HolderIdentity, ""); current != holder {
		if a.holding {
			a.lease = nil
			return fmt.Errorf("%w (%s)", errDisplaced, current)
		}
		if lease.ResourceVersion != a.seenRV {
			a.seenRV, a.seenAt = lease.ResourceVersion, a.cfg.Clock.Now()
		}
		c := liveness.DecideClaim(liveness.ClaimInput{Now: a.cfg.Clock.Now(), Mine: holder, Holder: current, Since: a.seenAt,
			Declared: time.Duration(ptr.Deref(lease.Spec.LeaseDurationSeconds, 0)) * time.Second, Timeout: a.timeout,
			HolderFenced: a.holderFenced(ctx, liveness.BootOf(current))})
		if !c.Take {
			a.lease = nil // read it again at the next heartbeat
			if c.Message != a.waitMsg {
				log.Info("Waiting: another agent runs this host", "holder", current, "why", c.Message)
				a.waitMsg = c.Message
			}
			return a.renewStandby(ctx, now)
		}
		log.Info("Taking over the heartbeat Lease", "from", current, "why", c.Message)
		lease.Spec.HolderIdentity = &holder
		lease.Spec.AcquireTime = &now
		lease.Spec.LeaseTransitions = ptr.To(ptr.Deref(lease.Spec.LeaseTransitions, 0) + 1)
	}
	if lease.Labels == nil {
		lease.Labels = map[string]string{}
	}
	lease.Labels[vpoolv1alpha1.LabelHost] = a.cfg.Host
	lease.Spec.LeaseDurationSeconds = duration
	lease.Spec.RenewTime = &now
	if err := a.client.Update(ctx, lease); err != nil {
		if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
			a.lease = nil // re-read next time
		}
		return fmt.Errorf("renewing heartbeat Lease: %w", err)
	}
	a.lease, a.declared = lease, declare
	if !a.holding {
		a.acquired(ctx, log, "holds the heartbeat Lease")
	}
	return nil
}

func (a *Agent) holder() string { return a.cfg.Host + "/" + a.cfg.BootID }

// acquired records that this boot holds the Lease and drops its standby Lease.
func (a *Agent) acquired(ctx context.Context, log logr.Logger, what string) {
	a.holding, a.waitMsg = true, ""
	log.Info("This boot "+what+"; it runs the host's VMs", "holder", a.holder())
	if a.standby != nil {
		if err := a.client.Delete(ctx, a.standby); err != nil && !apierrors.IsNotFound(err) {
			log.Info("Deleting the standby Lease failed; the operator removes it once stale", "error", err.Error())
		}
		a.standby = nil
	}
}

// holderFenced reports whether the Host records boot as fenced: the
// operator has counted it down.
func (a *Agent) holderFenced(ctx context.Context, boot string) bool {
	host := &vpoolv1alpha1.Host{}
	if boot == "" || a.client.Get(ctx, types.NamespacedName{Namespace: a.cfg.Namespace, Name: a.cfg.Host}, host) != nil {
		return false
	}
	f := host.Status.Fencing
	return f != nil && f.BootID == boot && f.CompletedAt != nil &&
		(host.Status.Phase == vpoolv1alpha1.HostPhaseFenced || host.Status.Phase == vpoolv1alpha1.HostPhaseForgotten)
}

// renewStandby renews this boot's standby Lease, which tells the operator
// that a second agent waits to run the host.
func (a *Agent) renewStandby(ctx context.Context, now metav1.MicroTime) error {
	holder := a.holder()
	if a.standby == nil {
		a.standby = &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Namespace: a.cfg.Namespace, Name: StandbyLeaseName(a.cfg.Host, a.cfg.BootID),
				Labels: map[string]string{vpoolv1alpha1.LabelHost: a.cfg.Host, vpoolv1alpha1.LabelStandby: "true"}},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: &holder, AcquireTime: &now, RenewTime: &now},
		}
		if err := a.client.Create(ctx, a.standby); err != nil {
			a.standby = nil
			if apierrors.IsAlreadyExists(err) {
				return nil // renewed at the next heartbeat, after a read
			}
			return fmt.Errorf("creating the standby Lease: %w", err)
		}
		return nil
	}
	a.standby.Spec.RenewTime = &now
	if err := a.client.Update(ctx, a.standby); err != nil {
		a.standby = nil
		if apierrors.IsConflict(err) || apierrors.IsNotFound(err) || apierrors.IsAlreadyExists(err) {
			return nil
		}
		return fmt.Errorf("renewing the standby Lease: %w", err)
	}
	return nil
}

// StandbyLeaseName names the standby Lease of boot on host: the host name (a
// DNS label, so without dots), a dot, and a digest of the boot ID.
func StandbyLeaseName(host, boot string) string {
	sum := sha256.Sum256([]byte(boot))
	return host + "." + hex.EncodeToString(sum[:8])
}

// stepDown stops every VM after another boot took the Lease: two agents
// never run one host's VMs.
func (a *Agent) stepDown(ctx context.Context, log logr.Logger, cause error) error {
	log.Info("Another boot holds the heartbeat Lease now; stopping every VM", "error", cause.Error())
	a.holding = false
	a.fenceWorker()
	defer a.awaitWorker(log)
	if err := a.cfg.Driver.StopAll(context.WithoutCancel(ctx)); err != nil {
		return fmt.Errorf("stepping down: stopping VMs: %w (%w)", err, ErrSelfFenced)
	}
	return fmt.Errorf("%w: %w", ErrSelfFenced, cause)
}

// report writes the agent-owned Host status fields when they changed. It
// runs on the worker: it asks the driver which VMs run.
func (a *Agent) report(ctx context.Context) error {
	host := &vpoolv1alpha1.Host{}
	if err := a.client.Get(ctx, types.NamespacedName{Namespace: a.cfg.Namespace, Name: a.cfg.Host}, host); err != nil {
		return err
	}
	pool := &vpoolv1alpha1.Pool{}
	// Unreadable: epoch 0 (the heartbeat loop follows its timeout).
	_ = a.client.Get(ctx, types.NamespacedName{Namespace: a.cfg.Namespace, Name: host.Spec.PoolRef.Name}, pool)
	running, err := a.cfg.Driver.Running(ctx)
	if err != nil {
		return fmt.Errorf("listing VMs: %w", err)
	}
	networks, err := a.hostNetworks(ctx)
	if err != nil {
		return err
	}
	epoch := pool.Status.Epoch
	interval := &metav1.Duration{Duration: a.passInterval}
	if host.Status.BootID == a.cfg.BootID && host.Status.MasterEpoch == epoch && slices.Equal(host.Status.RunningVMs, running) &&
		ptr.Equal(host.Status.HeartbeatInterval, interval) && slices.Equal(host.Status.Networks, networks) &&
		host.Status.Driver == a.cfg.DriverName {
		return nil
	}
	patch := client.MergeFrom(host.DeepCopy())
	host.Status.BootID = a.cfg.BootID
	host.Status.MasterEpoch = epoch
	host.Status.RunningVMs = running
	host.Status.HeartbeatInterval = interval
	host.Status.Networks = networks
	host.Status.Driver = a.cfg.DriverName
	return a.client.Status().Patch(ctx, host, patch)
}

// setTimeout adopts the pool's heartbeat timeout t and the interval it
// allows: at most a quarter of t. A shorter timeout applies at once: the
// watchdog deadline shrinks before the next renewal. A longer one is
// declared in the Lease at the next renewal (leaseDurationSeconds) and the
// deadline grows only from that renewal on (renew computes it from the
// timeout that renewal declared), so the operator never counts this host
// down on a deadline shorter than the one the agent runs on.
func (a *Agent) setTimeout(log logr.Logger, t time.Duration) {
	switch {
	case a.timeout == 0 || t < a.timeout:
		a.timeout, a.pendingTimeout = t, 0
	case t > a.timeout:
		a.pendingTimeout = t
	default:
		a.pendingTimeout = 0
	}
	a.adaptInterval(log)
	a.noteWatchdog()
	a.share()
}

// adaptInterval sets the heartbeat interval for the timeout in force.
func (a *Agent) adaptInterval(log logr.Logger) {
	interval := min(a.cfg.Interval, liveness.MaxInterval(a.timeout))
	if interval != a.interval {
		if a.interval != 0 || interval != a.cfg.Interval {
			log.Info("Heartbeat interval adapted to the pool's heartbeat timeout", "interval", interval,
				"requested", a.cfg.Interval, "heartbeatTimeout", a.timeout, "maxInterval", liveness.MaxInterval(a.timeout))
		}
		a.interval = interval
	}
}

func (a *Agent) poolTimeout(ctx context.Context, poolName string) time.Duration {
	pool := &vpoolv1alpha1.Pool{}
	if err := a.client.Get(ctx, types.NamespacedName{Namespace: a.cfg.Namespace, Name: poolName}, pool); err != nil {
		return liveness.DefaultHATimeout // the shorter default: safe either way
	}
	return pool.Effective().HeartbeatTimeout
}

func (a *Agent) startCache(ctx context.Context, poolName string) error {
	c, err := cache.New(a.cfg.RESTConfig, cache.Options{
		Scheme:            scheme,
		DefaultNamespaces: map[string]cache.Config{a.cfg.Namespace: {}},
		ByObject: map[client.Object]cache.ByObject{
			&vpoolv1alpha1.Host{}: {Field: fields.OneTermEqualSelector("metadata.name", a.cfg.Host)},
			&vpoolv1alpha1.Pool{}: {Field: fields.OneTermEqualSelector("metadata.name", poolName)},
		},
	})
	if err != nil {
		return fmt.Errorf("creating the cache: %w", err)
	}
	// Informers are started lazily by the first Get; warm them now.
	go func() { _ = c.Start(ctx) }()
	for _, obj := range []client.Object{&vpoolv1alpha1.Host{}, &vpoolv1alpha1.Pool{}, &vpoolv1alpha1.VirtualMachine{},
		&vpoolv1alpha1.VirtualDisk{}, &vpoolv1alpha1.StorageRepository{}} {
		inf, err := c.GetInformer(ctx, obj)
		if err != nil {
			return fmt.Errorf("starting the cache: %w", err)
		}
		// Any change of a VM, its disks or SRs, the Host or the Pool may call
		// for a VM sync.
		if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
			AddFunc:    func(any) { a.poke() },
			UpdateFunc: func(any, any) { a.poke() },
			DeleteFunc: func(any) { a.poke() },
		}); err != nil {
			return fmt.Errorf("watching %T: %w", obj, err)
		}
	}
	if !c.WaitForCacheSync(ctx) {
		return errors.New("the cache did not sync")
	}
	if n, ok := a.cfg.Driver.(Notifier); ok {
		// A VM that changes on its own (shut down from inside, crashed,
		// paused) is reported at once.
		go func() {
			for {
				select {
				case <-ctx.Done():
					return
				case <-n.Changes():
					a.poke()
				}
			}
		}()
	}
	a.cache = c
	return nil
}
