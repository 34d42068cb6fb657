package controllers

import (
	"context"
	"time"

	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"

	"github.com/poolkeeper/poolkeeper/internal/liveness"
	"github.com/poolkeeper/poolkeeper/internal/metrics"
)

// Defaults of APIReachWatch.
const (
	DefaultReachInterval = time.Second
	DefaultReachTimeout  = 5 * time.Second
)

// APIReachWatch is a manager Runnable that follows whether this operator
// reaches the API server: it asks for /readyz every Interval, each request
// bounded by Timeout (liveness.Reach). When it reaches the API server again
// after it could not, every pool's silence counts afresh from that moment
// (liveness.Recount.Outage, DESIGN.md "Control-plane outages"): meanwhile its
// cache may have missed renewals, and a host that rode out the outage must
// never be counted fenced on a safe time computed from before it. While it
// cannot reach it (from the first probe that failed), no host's silence
// counts at all (liveness.Recount.Cut): no Host is judged Unreachable on a
// silence the operator cannot tell from its own. It also watches this
// process's own run (watchSelf): after a stall (SIGSTOP, a paused VM) every
// pool's silence counts afresh too. Every replica runs it: each has its own
// view.
type APIReachWatch struct {
	// Probe asks the API server once; nil means GET /readyz with Config.
	Probe   func(ctx context.Context) error
	Config  *rest.Config
	Recount *liveness.Recount
	Clock   clock.PassiveClock
	// Interval and Timeout: DefaultReachInterval and DefaultReachTimeout
	// when zero.
	Interval, Timeout time.Duration
	Log               logr.Logger
}

// NeedLeaderElection implements LeaderElectionRunnable: every replica probes.
func (w *APIReachWatch) NeedLeaderElection() bool { return false }

// Start probes until ctx ends.
func (w *APIReachWatch) Start(ctx context.Context) error {
	probe, err := w.probe()
	if err != nil {
		return err
	}
	interval, timeout := cmpOr(w.Interval, DefaultReachInterval), cmpOr(w.Timeout, DefaultReachTimeout)
	w.Recount.Watch()
	go w.watchSelf(ctx)
	var reach liveness.Reach
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		sent := w.Clock.Now()
		pctx, cancel := context.WithTimeout(ctx, timeout)
		perr := probe(pctx)
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		switch ch := reach.Probe(sent, perr == nil); {
		case ch.Began:
			w.Recount.Cut(ch.Since)
			w.Log.Info("The API server does not answer this operator; once it does, every host's silence counts afresh", "error", perr.Error())
		case ch.Ended:
			end := w.Clock.Now()
			w.Recount.Outage(end)
			metrics.OperatorOutage.Observe(end.Sub(ch.Since).Seconds())
			w.Log.Info("The API server answers again: every host's silence counts afresh from now", "unreachableFor", end.Sub(ch.Since).String())
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// watchSelf notes that this operator runs, every quarter of
// liveness.StallAfter, until ctx ends, and reports the stalls found (by it
// or by a Host's reconcile, whichever ran first after one): a process
// stopped, or starved, for longer than that then counts every host's
// silence afresh, as after an outage.
func (w *APIReachWatch) watchSelf(ctx context.Context) {
	wait.UntilWithContext(ctx, func(context.Context) {
		w.Recount.Alive(w.Clock.Now())
		for _, st := range w.Recount.Stalls() {
			metrics.OperatorStall.Observe(st.For.Seconds())
			w.Log.Info("This operator did not run for a while (stopped, or starved of CPU): its cache may have missed "+
				"renewals meanwhile, so every host's silence counts afresh from its resume", "stalledFor", st.For.String(),
				"resumedAt", st.End)
		}
	}, liveness.StallAfter/4)
}

func (w *APIReachWatch) probe() (func(context.Context) error, error) {
	if w.Probe != nil {
		return w.Probe, nil
	}
	cs, err := kubernetes.NewForConfig(w.Config)
	if err != nil {
		return nil, err
	}
	rc := cs.Discovery().RESTClient()
	return func(ctx context.Context) error {
		return reachError(rc.Get().AbsPath("/readyz").Do(ctx).Error())
	}, nil
}

// reachError is a /readyz answer as the reach watch counts it: nil when the
// API server answered, even to refuse (401, 403: this operator may not read
// /readyz) or not to know the path (404): only a failure to get an answer,
// or an answer that the server is not ready (5xx, 429), is an outage. A
// refusal counted as one would stop every host's silence from counting for
// as long as it lasts, so fencing nobody.
func reachError(err error) error {
	if apierrors.IsUnauthorized(err) || apierrors.IsForbidden(err) || apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

func cmpOr(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}
