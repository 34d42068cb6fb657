package agent

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/internal/liveness"
	"github.com/poolkeeper/poolkeeper/internal/watchdog"
)

// ErrNoSafeWatchdog is returned by Run when the host is fenced by its agent
// (spec.fencing.method Agent) and its VMs outlive the agent, but there is no
// watchdog that can reset the host before the operator's safe time.
var ErrNoSafeWatchdog = errors.New("this host's fencing needs a watchdog that resets it before the operator's safe time")

// petter pets the watchdog from its own goroutine, so that a slow renewal
// or driver call never starves it: it pets every PetEvery while the state
// the heartbeat loop gave it (the start of the last successful renewal, the
// timeout in force, whether this boot holds the Lease) allows (see
// watchdog.PlanFor). A longer timeout reaches it only once declared in the
// Lease, a shorter one at once (the loop's a.timeout does so).
type petter struct {
	wd    watchdog.Watchdog
	clock clock.WithTicker
	log   logr.Logger
	poke  chan struct{}

	mu      sync.Mutex
	s       time.Time
	t       time.Duration
	holding bool
	// exempt is the S a confirmed outage exemption justifies: its read's
	// start plus liveness.ExemptionGrace, minus T (zero: none).
	exempt time.Time

	// op serializes pets (the petting goroutine's, and the heartbeat loop's
	// first one) and guards what follows.
	op    sync.Mutex
	armed bool
	// set is the plan's timeout last set, got the timeout the watchdog
	// took for it (zero until one was set since it was armed).
	set, got      time.Duration
	lastErr, said string
	// strict is set for an Agent-fenced host whose VMs outlive the agent:
	// there a watchdog whose driver set a timeout that cannot reset the host
	// before the safe time (unsafe, sticky) ends the agent.
	strict bool
	unsafe error

	// report is the Host's status.watchdog as this boot reported it; only
	// the heartbeat loop touches it.
	report watchdogReport
}

// watchdogReport is what the agent reported in status.watchdog: sent once
// written, tried and failedAt after a failed write (retried a heartbeat
// timeout later).
type watchdogReport struct {
	sent, tried *vpoolv1alpha1.WatchdogStatus
	failedAt    time.Time
}

// noteWatchdog hands the heartbeat state to the petter.
func (a *Agent) noteWatchdog() {
	p := a.petter
	if p == nil {
		return
	}
	p.mu.Lock()
	p.s, p.t, p.holding = a.lastOK, a.timeout, a.holding
	p.mu.Unlock()
	select {
	case p.poke <- struct{}{}:
	default:
	}
}

// notePetterExemption hands the petter the last confirmed exemption: it
// pets as if the last renewal had started at confirmed + B - T.
func (a *Agent) notePetterExemption(confirmed time.Time, t time.Duration) {
	p := a.petter
	if p == nil || confirmed.IsZero() {
		return
	}
	p.mu.Lock()
	p.exempt = confirmed.Add(liveness.ExemptionGrace(t) - liveness.SelfFenceAfter(t))
	p.mu.Unlock()
	select {
	case p.poke <- struct{}{}:
	default:
	}
}

// watchdogReady pets the watchdog right after a successful renewal, from
// the heartbeat loop, records it in the Host's status (reportWatchdog), and
// reports whether VMs may run: only once the watchdog is armed, so that no
// VM runs on a host the watchdog does not guard. Its error is
// watchdog.ErrHostReset, or ErrNoSafeWatchdog when the watchdog's driver set
// a timeout that cannot reset the host in time.
func (a *Agent) watchdogReady() (bool, error) {
	p := a.petter
	if p == nil {
		a.reportWatchdog()
		return true, nil
	}
	a.noteWatchdog()
	if _, err := p.step(); err != nil {
		return false, err
	}
	a.reportWatchdog()
	p.op.Lock()
	defer p.op.Unlock()
	if p.unsafe != nil {
		return false, fmt.Errorf("%w: watchdog %s: %w", ErrNoSafeWatchdog, p.wd, p.unsafe)
	}
	return p.armed, nil
}

// watchdogStatus is what the Host's status.watchdog says of this boot: the
// watchdog once armed with a timeout (nil before), or None without one.
func (a *Agent) watchdogStatus() *vpoolv1alpha1.WatchdogStatus {
	p := a.petter
	if p == nil {
		return &vpoolv1alpha1.WatchdogStatus{Kind: vpoolv1alpha1.WatchdogNone, BootID: a.cfg.BootID}
	}
	p.op.Lock()
	defer p.op.Unlock()
	if !p.armed || p.got <= 0 {
		return nil
	}
	kind := vpoolv1alpha1.WatchdogDevice
	if p.wd.Kind() == watchdog.KindEmulated {
		kind = vpoolv1alpha1.WatchdogEmulated
	}
	return &vpoolv1alpha1.WatchdogStatus{Kind: kind, Device: p.wd.String(), Timeout: &metav1.Duration{Duration: p.got},
		BootID: a.cfg.BootID}
}

// reportWatchdog writes the Host's status.watchdog, after a successful
// renewal, when it does not say what this boot armed: once per boot, and
// again when the watchdog's timeout changes. The operator cites it in the
// evidence of a fence of this boot. A failed write is retried after a
// heartbeat timeout (without a watchdog, at the next renewal); it never
// stops the agent.
func (a *Agent) reportWatchdog() {
	want := a.watchdogStatus()
	if want == nil || a.client == nil {
		return
	}
	var rep *watchdogReport
	if a.petter != nil {
		rep = &a.petter.report
		if equality.Semantic.DeepEqual(rep.sent, want) || equality.Semantic.DeepEqual(rep.tried, want) &&
			a.cfg.Clock.Since(rep.failedAt) < a.timeout {
			return
		}
	}
	log := a.cfg.Log.WithValues("host", a.cfg.Host, "bootID", a.cfg.BootID)
	ctx, cancel := context.WithTimeout(context.Background(), a.interval)
	defer cancel()
	host := &vpoolv1alpha1.Host{}
	err := a.client.Get(ctx, types.NamespacedName{Namespace: a.cfg.Namespace, Name: a.cfg.Host}, host)
	if err == nil && equality.Semantic.DeepEqual(host.Status.Watchdog, want) {
		if rep != nil {
			rep.sent = want
		}
		return
	}
	if err == nil {
		patch := client.MergeFrom(host.DeepCopy())
		host.Status.Watchdog = want
		err = a.client.Status().Patch(ctx, host, patch)
	}
	if err != nil {
		if rep != nil {
			rep.tried, rep.failedAt = want, a.cfg.Clock.Now()
		}
		log.Info("Reporting the watchdog in the Host's status failed; trying again later", "error", err.Error())
		return
	}
	if rep != nil {
		rep.sent = want
	}
	log.Info("Watchdog reported", "kind", want.Kind, "device", want.Device, "timeout", want.Timeout)
}

// watchdogArmed reports whether VMs may run as far as the watchdog goes:
// there is none, or it is armed.
func (a *Agent) watchdogArmed() bool {
	p := a.petter
	if p == nil {
		return true
	}
	p.op.Lock()
	defer p.op.Unlock()
	return p.armed && p.unsafe == nil
}

// checkWatchdog refuses to run an Agent-fenced host whose VMs outlive the
// agent without a watchdog that can reset it in time, and logs what the
// operator's safe time rests on.
func (a *Agent) checkWatchdog(log logr.Logger, host *vpoolv1alpha1.Host) error {
	method := host.Spec.Fencing.Method
	if method == "" {
		method = vpoolv1alpha1.FencingAgent
	}
	agentFenced := method == vpoolv1alpha1.FencingAgent
	if a.petter == nil {
		if agentFenced && a.cfg.RequireWatchdog {
			return fmt.Errorf("%w: Host %s/%s is fenced by its agent (spec.fencing.method Agent) and its VMs outlive the agent, "+
				"so only a watchdog resets it before the operator's safe time; give --watchdog %s (softdog where there is no "+
				"hardware watchdog: modprobe softdog) or --watchdog unix:PATH, or fence the host with Redfish or Manual",
				ErrNoSafeWatchdog, a.cfg.Namespace, a.cfg.Host, watchdog.DefaultDevice)
		}
		rests := "the agent's in-process self-fence " + liveness.SelfFenceAfter(a.timeout).String() + " after its last renewal"
		if !agentFenced {
			rests = string(method) + " fencing"
		}
		log.Info("No watchdog", "watchdog", watchdog.KindNone, "fencing", method, "safeTimeRestsOn", rests)
		return nil
	}
	a.petter.strict = agentFenced && a.cfg.RequireWatchdog
	plan, err := watchdog.PlanFor(a.timeout, a.petter.wd.Granularity())
	if err != nil && agentFenced && a.cfg.RequireWatchdog {
		return fmt.Errorf("%w: watchdog %s: %w", ErrNoSafeWatchdog, a.petter.wd, err)
	}
	log.Info("Watchdog", "watchdog", a.petter.wd.String(), "kind", a.petter.wd.Kind(), "fencing", method,
		"timeout", plan.Timeout, "petEvery", plan.PetEvery, "petUntil", plan.PetUntil,
		"latestExpiry", plan.LatestExpiry, "safeAfter", plan.SafeAfter, "resetBudget", plan.ResetBudget,
		"safeTimeRestsOn", fmt.Sprintf("the %s watchdog %s: armed at the first renewal, petted only within %s of the last one, "+
			"it resets the host at most %s after it, %s before the operator's safe time", a.petter.wd.Kind(), a.petter.wd,
			plan.PetUntil, plan.LatestExpiry, plan.ResetBudget))
	if err != nil {
		log.Info("Warning: the watchdog cannot reset this host before the operator's safe time", "error", err.Error())
	}
	return nil
}

// run pets until ctx is done, or the watchdog says the host was reset,
// which it hands to reset.
func (p *petter) run(ctx context.Context, reset func(error)) {
	for {
		wait, err := p.step()
		if err != nil {
			reset(err)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-p.poke:
		case <-p.clock.After(wait):
		}
	}
}

// step pets once if it may, and says when to look again. Its error is
// always watchdog.ErrHostReset: the other errors are logged.
func (p *petter) step() (time.Duration, error) {
	p.op.Lock()
	defer p.op.Unlock()
	p.mu.Lock()
	s, t, holding := p.s, p.t, p.holding
	if p.exempt.After(s) {
		s = p.exempt
	}
	p.mu.Unlock()
	plan, perr := watchdog.PlanFor(t, p.wd.Granularity())
	if p.armed && p.got > 0 && p.set == plan.Timeout && p.got != plan.Timeout {
		// The driver set another timeout: the pets stop when its plan says.
		plan, perr = plan.WithTimeout(p.got)
	}
	if perr != nil {
		p.sayOnce("Warning: the watchdog cannot reset this host before the operator's safe time", perr)
	}
	if !holding || p.unsafe != nil {
		return plan.PetEvery, nil
	}
	now := p.clock.Now()
	ok, until := plan.MayPet(s, now)
	if !ok {
		p.sayOnce("Watchdog: no successful renewal since "+s.Format(time.RFC3339Nano)+"; no more pets", nil,
			"resetBy", s.Add(plan.LatestExpiry))
		return plan.PetEvery, nil
	}
	within := until.Sub(now)
	err := p.pet(plan, s, within)
	if errors.Is(err, watchdog.ErrHostReset) {
		return 0, err
	}
	if err != nil {
		if err.Error() != p.lastErr {
			p.log.Info("Petting the watchdog failed", "watchdog", p.wd.String(), "error", err.Error())
		}
		p.lastErr = err.Error()
		return plan.PetEvery, nil
	}
	p.lastErr = ""
	if after := p.clock.Now(); after.After(until) {
		p.log.Info("Warning: a watchdog pet returned after the bound its renewal allows; it may have extended the deadline",
			"renewalStart", s, "bound", until, "returned", after)
	}
	return plan.PetEvery, nil
}

// pet arms the watchdog on the first pet (only now: opening a device
// starts it), sets the plan's timeout when it changed (a pet too), and pets,
// within of now; s is the start of the renewal that justifies it.
func (p *petter) pet(plan watchdog.Plan, s time.Time, within time.Duration) error {
	if !p.armed {
		if err := p.wd.Arm(); err != nil {
			return err
		}
		p.armed, p.set, p.got = true, 0, 0
		p.log.Info("Watchdog armed", "watchdog", p.wd.String())
	}
	if p.set == plan.Timeout {
		return p.wd.Pet(within)
	}
	got, err := p.wd.SetTimeout(plan.Timeout, within)
	if err != nil {
		return err
	}
	p.set, p.got = plan.Timeout, got
	if got == plan.Timeout {
		p.log.Info("Watchdog timeout set", "watchdog", p.wd.String(), "timeout", got, "heartbeatTimeout", plan.HeartbeatTimeout)
		return nil
	}
	adjusted, err := plan.WithTimeout(got)
	if reached := p.clock.Now(); err == nil && !adjusted.FitsSafeTime(s, reached) {
		// The timeout changed late in the renewal's window (a shorter
		// heartbeat timeout reaches the petter at once): this pet was sent
		// within the bound of the timeout asked, and the one set can run
		// past the safe time from it.
		err = fmt.Errorf("the pet that set it reached the watchdog %s after the last renewal, later than the %s "+
			"its timeout allows: the watchdog can expire as late as %s after the renewal, less than %s before the "+
			"safe time %s", reached.Sub(s), adjusted.PetUntil, adjusted.ExpiresBy(reached).Sub(s), watchdog.MinResetBudget,
			adjusted.SafeAfter)
	}
	switch {
	case err != nil && p.strict:
		// No more pets: the heartbeat loop stops every VM and ends the agent
		// (watchdogReady), and the watchdog resets the host if it cannot.
		p.unsafe = err
		p.log.Info("The watchdog's driver set a timeout that cannot reset this host before the operator's safe time: "+
			"no more pets, stopping every VM", "watchdog", p.wd.String(), "asked", plan.Timeout, "got", got, "error", err.Error())
	case err != nil:
		p.log.Info("Warning: the watchdog's driver set a timeout that cannot reset this host before the operator's safe time",
			"watchdog", p.wd.String(), "asked", plan.Timeout, "got", got, "error", err.Error())
	default:
		p.log.Info("Watchdog timeout set by its driver to another than the one asked: pets stop earlier or later to match",
			"watchdog", p.wd.String(), "asked", plan.Timeout, "got", got, "petUntil", adjusted.PetUntil,
			"latestExpiry", adjusted.LatestExpiry, "resetBudget", adjusted.ResetBudget)
	}
	return nil
}

// sayOnce logs msg the first time in a row it is said.
func (p *petter) sayOnce(msg string, err error, kv ...any) {
	if p.said == msg {
		return
	}
	p.said = msg
	if err != nil {
		kv = append(kv, "error", err.Error())
	}
	p.log.Info(msg, kv...)
}

// releaseWatchdog releases the watchdog when Run ends with runErr. A clean
// stop disarms it only when no VM runs: a stopped agent with VMs running
// leaves it armed, or the operator's safe time would rest on nothing. After
// a self-fence it stays armed too: the reset is the new boot the host needs
// to rejoin.
func (a *Agent) releaseWatchdog(log logr.Logger, runErr error) {
	p := a.petter
	if p == nil {
		return
	}
	if !p.armed {
		_ = p.wd.Close()
		return
	}
	plan, _ := watchdog.PlanFor(a.timeout, p.wd.Granularity())
	if runErr != nil && !errors.Is(runErr, ErrNoSafeWatchdog) {
		if !errors.Is(runErr, watchdog.ErrHostReset) {
			log.Info("Watchdog left armed: it resets the host (a new boot)", "watchdog", p.wd.String(), "within", plan.Timeout)
		}
		_ = p.wd.Close()
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	running, err := a.cfg.Driver.Running(ctx)
	if inFlight := a.worker.inFlightOps(); err == nil && len(inFlight) > 0 {
		// A start still in flight may bring a VM up after this look.
		running = inFlight
	}
	if err == nil && len(running) == 0 {
		if derr := p.wd.Disarm(); derr != nil {
			log.Info("Disarming the watchdog failed; it resets the host unless an agent pets it", "watchdog", p.wd.String(),
				"error", derr.Error())
			return
		}
		log.Info("Stopped with no VM running: watchdog disarmed", "watchdog", p.wd.String())
		return
	}
	_ = p.wd.Close()
	if err != nil {
		log.Info("Stopped without knowing which VMs run: the watchdog stays armed and resets the host unless an agent pets it in time",
			"watchdog", p.wd.String(), "within", plan.Timeout, "error", err.Error())
		return
	}
	log.Info("Stopped with VMs running: the watchdog stays armed and resets the host unless an agent pets it in time "+
		"(a restarted agent does after its first renewal)", "watchdog", p.wd.String(), "within", plan.Timeout, "runningVMs", len(running))
}

// hostReset is Run's error after the watchdog said it reset the host: the
// VMs died with that boot, and this agent exits without another renewal.
// For ErrNoSafeWatchdog (a watchdog that cannot reset the host in time) it
// stops every VM and returns that error.
func (a *Agent) hostReset(ctx context.Context, log logr.Logger, cause error) error {
	if errors.Is(cause, ErrNoSafeWatchdog) {
		log.Info("The watchdog cannot reset this host before the operator's safe time: stopping every VM and exiting",
			"error", cause.Error())
		stop, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := a.cfg.Driver.StopAll(stop); err != nil {
			return fmt.Errorf("stopping the VMs: %w (%w)", err, cause)
		}
		return cause
	}
	log.Info("The watchdog reset this host: this boot is over; exiting as self-fenced without another renewal", "error", cause.Error())
	stop, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := a.cfg.Driver.StopAll(stop); err != nil {
		log.Info("Stopping what is left of the VMs failed", "error", err.Error())
	}
	return fmt.Errorf("%w: %w", ErrSelfFenced, cause)
}
