package controllers

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/internal/fencing"
	"github.com/poolkeeper/poolkeeper/internal/liveness"
	"github.com/poolkeeper/poolkeeper/internal/metrics"
	"github.com/poolkeeper/poolkeeper/internal/status"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/event"
)

// Reasons of the recount after a storm.
const (
	// ReasonOutageRiddenOut: the storm guard held and was lifted; every
	// host's silence counts afresh from the lift.
	ReasonOutageRiddenOut = "OutageRiddenOut"
)

// poolKey names a pool in the tracker's recount.
func poolKey(namespace, name string) string { return namespace + "/" + name }

// noteGuard records the raw storm guard verdict of the scope's tally (HA
// pools only): the start of a storm, and its lift, from which every host's
// silence counts afresh (liveness.Recount).
func (r *HostReconciler) noteGuard(s *hostScope) {
	if !s.tallied || !s.settings.HA.Enabled {
		return
	}
	g := fencing.StormGuard(s.tally, s.settings.Fencing.MaxUnhealthyPercent)
	c := r.Tracker.Recount().Note(poolKey(s.pool.Namespace, s.pool.Name), s.now, !g.Allowed, s.tally.Stale())
	if (c.Began || c.Lifted) && r.GuardChanged != nil {
		select { // the Pool's next reconcile reads the verdict noted; a full queue has one pending
		case r.GuardChanged <- event.GenericEvent{Object: &vpoolv1alpha1.Pool{
			ObjectMeta: metav1.ObjectMeta{Namespace: s.pool.Namespace, Name: s.pool.Name}}}:
		default:
		}
	}
	if c.Began {
		s.st.Event(status.Event{Type: corev1.EventTypeWarning, Reason: fencing.ReasonStormGuard, Action: "HoldFencing",
			Note: fmt.Sprintf("the storm guard of pool %s holds from %s: %s (a Live host silent for %s counts as stale)",
				s.pool.Name, s.now.UTC().Format(time.RFC3339), g.Message, liveness.SuspectAfter(s.timeout))})
	}
	if !c.Lifted {
		return
	}
	msg := fmt.Sprintf("the storm guard of pool %s held for %s with up to %d hosts stale and was lifted at %s; "+
		"every host's silence counts afresh from then, so none is fenced before %s", s.pool.Name, c.HeldFor.Round(time.Millisecond),
		c.Peak, c.Since.UTC().Format(time.RFC3339), c.Since.Add(liveness.SafeAfter(s.timeout)).UTC().Format(time.RFC3339))
	s.st.Event(status.Event{Type: corev1.EventTypeNormal, Reason: ReasonOutageRiddenOut, Action: "CountAfresh", Note: msg,
		Observe: func() { metrics.ObserveOutageRiddenOut(c.HeldFor, c.Peak) }})
}

// watchQuiet says whether the reconcile of a Live host of an HA pool
// tallies the pool for the storm guard: once the host's silence reaches
// liveness.SuspectAfter, when the tally counts it stale (so the start of a
// storm is noted then, as agents' outage exemptions start then, not a full
// timeout later), and while the pool's guard holds (a renewal may lift
// it). Before that instant it sets s.suspectIn, to look again exactly then;
// a renewal meanwhile makes that look a no-op.
func (r *HostReconciler) watchQuiet(s *hostScope) bool {
	h := s.host
	if h.Status.Phase != vpoolv1alpha1.HostPhaseLive || !s.settings.HA.Enabled {
		return false
	}
	s.suspectIn = suspectIn(r.Tracker.Get(client.ObjectKeyFromObject(h)), s.now, s.timeout)
	return s.suspectIn <= 0 || r.guardHolds(h)
}

// guardHolds reports whether the storm guard of host h's pool was last
// noted holding.
func (r *HostReconciler) guardHolds(h *vpoolv1alpha1.Host) bool {
	_, holding := r.Tracker.Recount().From(poolKey(h.Namespace, h.Spec.PoolRef.Name))
	return holding
}

// mayLiftGuard reports whether a renewal of Live host h may lift its pool's
// storm guard: the guard was last noted holding and the pool (read from the
// cache) has HA on, so the host's reconcile tallies it.
func (r *HostReconciler) mayLiftGuard(ctx context.Context, h *vpoolv1alpha1.Host) bool {
	if !r.guardHolds(h) {
		return false
	}
	pool := &vpoolv1alpha1.Pool{}
	return r.Get(ctx, types.NamespacedName{Namespace: h.Namespace, Name: h.Spec.PoolRef.Name}, pool) == nil &&
		pool.Effective().HA.Enabled
}

// heartbeatOf is the host's heartbeat as the phase machine counts it: from
// the last renewal observed, or afresh from the pool's recount, or from now
// while the operator itself is cut off from the API server (its cache then
// shows no renewal, whether or not the agents renew). A stall of the
// operator itself that ends now (it was stopped, its cache missed the
// renewals meanwhile) is found first, and counts every pool afresh from
// now (liveness.Recount.Alive).
func (r *HostReconciler) heartbeatOf(s *hostScope) liveness.Observation {
	rc := r.Tracker.Recount()
	rc.Alive(s.now)
	from, _ := rc.From(poolKey(s.host.Namespace, s.host.Spec.PoolRef.Name))
	if _, cut := rc.CutOff(); cut {
		from = s.now
	}
	return r.Tracker.Get(client.ObjectKeyFromObject(s.host)).Afresh(from)
}

// ReasonCountingAfresh is FencingAllowed's reason while the pool's hosts'
// silence counts afresh after a storm: fencing is allowed, but no host is
// counted fenced on a safe time from before the storm.
const ReasonCountingAfresh = fencing.ReasonCountingAfresh

// recountedGuard is the storm guard of a pool's tally as the Pool's
// FencingAllowed condition says it: with the recount in force, if any. The
// Host reconciler notes the guard's verdicts (noteGuard), and announces a
// lift; the Pool only reads them.
func recountedGuard(rc *liveness.Recount, pool *vpoolv1alpha1.Pool, tally fencing.Tally,
	settings vpoolv1alpha1.EffectiveSettings, now time.Time) fencing.Check {
	key := poolKey(pool.Namespace, pool.Name)
	c := fencing.StormGuard(tally, settings.Fencing.MaxUnhealthyPercent)
	if from, _ := rc.From(key); c.Allowed && !from.IsZero() && now.Before(from.Add(liveness.SafeAfter(settings.HeartbeatTimeout))) {
		c.Reason = ReasonCountingAfresh
		c.Message += fmt.Sprintf("; after an outage (storm guard lifted, or the operator cut off) every host's silence counts "+
			"afresh from %s: no host is counted fenced before %s", from.UTC().Format(time.RFC3339),
			from.Add(liveness.SafeAfter(settings.HeartbeatTimeout)).UTC().Format(time.RFC3339))
	}
	return c
}
