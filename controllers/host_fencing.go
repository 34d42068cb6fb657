package controllers

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/internal/fencing"
	"github.com/poolkeeper/poolkeeper/internal/metrics"
)

// BMC is what Redfish fencing needs of a host's Redfish service.
type BMC = fencing.BMC

// BMCFactory opens a BMC client.
type BMCFactory = fencing.BMCFactory

// DefaultBMCFactory opens a real Redfish client.
var DefaultBMCFactory = fencing.DefaultBMCFactory

// Reasons of fencing events and of the FencingReady condition; the fencing
// methods own them.
const (
	ReasonFencingFailed      = fencing.ReasonFencingFailed
	ReasonPowerOffRequested  = fencing.ReasonPowerOffRequested
	ReasonCredentialsMissing = fencing.ReasonCredentialsMissing
	ReasonBMCUnauthorized    = fencing.ReasonBMCUnauthorized
	ReasonBMCUnreachable     = fencing.ReasonBMCUnreachable
	ReasonBMCAnswers         = fencing.ReasonBMCAnswers
	ReasonAgentSelfFence     = fencing.ReasonAgentSelfFence
	ReasonManualOnly         = fencing.ReasonManualOnly
)

// bmcCheck is the last readiness check of one Host's remote fencing method.
type bmcCheck struct {
	generation int64
	at         time.Time
	recheck    time.Duration
}

// hostEnv is what a fencing method may do for one host: read a Secret and
// the Lease from the API server, write the status now, announce an action.
type hostEnv struct {
	r *HostReconciler
	s *hostScope
}

var _ fencing.Env = hostEnv{}

func (e hostEnv) Secret(ctx context.Context, name string) (map[string][]byte, error) {
	secret := &corev1.Secret{}
	if err := e.r.APIReader.Get(ctx, types.NamespacedName{Namespace: e.s.host.Namespace, Name: name}, secret); err != nil {
		return nil, err
	}
	return secret.Data, nil
}

func (e hostEnv) LeaseMoved(ctx context.Context) (bool, error) { return e.r.leaseMoved(ctx, e.s.host) }

func (e hostEnv) FenceRecord() *vpoolv1alpha1.FencingStatus {
	h := e.s.host
	if h.Status.Fencing == nil {
		h.Status.Fencing = fencing.StartRecord(e.s.in)
	}
	return h.Status.Fencing
}

func (e hostEnv) Record(ctx context.Context) error { return e.r.writeStatus(ctx, e.s) }

func (e hostEnv) Event(eventType, reason, action, note string) {
	e.r.Recorder.Eventf(e.s.host, nil, eventType, reason, action, "%s", note)
}

// fenceStep drives one action of a fence whose Fencing phase is recorded
// and whose heartbeat has not resumed, and feeds what it saw into the
// input. A failure keeps the host in Fencing with a Warning event and a
// backoff; it never lets the fence complete. It returns when to step again.
func (r *HostReconciler) fenceStep(ctx context.Context, s *hostScope) (time.Duration, error) {
	if s.in.Phase != vpoolv1alpha1.HostPhaseFencing || fencing.Resumed(s.in) {
		return 0, nil
	}
	p, err := s.fencer.Step(ctx, hostEnv{r: r, s: s}, s.in)
	if err != nil {
		return 0, fmt.Errorf("fencing host %s: %w", s.host.Name, err)
	}
	if p.Failure != nil {
		return r.fenceFailed(ctx, s, p.Failure), nil
	}
	s.in.Down = p.Down
	return p.RequeueAfter, nil
}

// fenceFailed counts a failed fencing action and says when to retry.
func (r *HostReconciler) fenceFailed(ctx context.Context, s *hostScope, fl *fencing.Failure) time.Duration {
	f := hostEnv{r: r, s: s}.FenceRecord()
	f.Attempts++
	f.LastError = fl.Err.Error()
	metrics.Fences.WithLabelValues(string(s.in.Method), "failed").Inc()
	wait := fencing.Backoff(f.Attempts)
	r.Recorder.Eventf(s.host, nil, corev1.EventTypeWarning, fl.Reason, fl.Action,
		"%s fencing attempt %d failed, retrying in %s: %s", s.in.Method, f.Attempts, wait, fl.Err.Error())
	ctrl.LoggerFrom(ctx).Info("Fencing attempt failed", "method", s.in.Method, "attempt", f.Attempts, "retryIn", wait,
		"terminal", fl.Terminal, "error", fl.Err.Error())
	return wait
}

// checkFencing sets the FencingReady condition from the method's
// readiness. A remote method (Redfish) is checked as soon as the spec is
// written, so a missing Secret or refused credentials are said on the first
// day, then again after its Recheck; not while the fence itself talks to
// the BMC. It returns when to check again (zero: on the next spec change).
func (r *HostReconciler) checkFencing(ctx context.Context, s *hostScope) time.Duration {
	h := s.host
	set := func(rd fencing.Readiness) {
		st := metav1.ConditionFalse
		if rd.Ready {
			st = metav1.ConditionTrue
		}
		meta.SetStatusCondition(&h.Status.Conditions, metav1.Condition{Type: vpoolv1alpha1.HostFencingReady, Status: st,
			Reason: rd.Reason, Message: rd.Message, ObservedGeneration: h.Generation})
	}
	env := hostEnv{r: r, s: s}
	if !s.fencer.Remote() {
		set(s.fencer.Readiness(ctx, env, s.in))
		return 0
	}
	if h.Status.Phase == vpoolv1alpha1.HostPhaseFencing {
		return 0 // the fence itself talks to the BMC and says how it goes
	}
	last, _ := r.bmcChecks.Load(client.ObjectKeyFromObject(h))
	if c, ok := last.(bmcCheck); ok && c.generation == h.Generation {
		if next := c.at.Add(c.recheck); s.now.Before(next) {
			return next.Sub(s.now)
		}
	}
	rd := s.fencer.Readiness(ctx, env, s.in)
	set(rd)
	r.announceFencingReady(s)
	r.bmcChecks.Store(client.ObjectKeyFromObject(h), bmcCheck{generation: h.Generation, at: s.now, recheck: rd.Recheck})
	return rd.Recheck
}

// announceFencingReady emits an event when the FencingReady reason changed:
// a Warning when the host can no longer be fenced, Normal when it can again.
func (r *HostReconciler) announceFencingReady(s *hostScope) {
	old := meta.FindStatusCondition(s.before.Status.Conditions, vpoolv1alpha1.HostFencingReady)
	cur := meta.FindStatusCondition(s.host.Status.Conditions, vpoolv1alpha1.HostFencingReady)
	if cur == nil || (old != nil && old.Reason == cur.Reason) || (old == nil && cur.Status == metav1.ConditionTrue) {
		return
	}
	eventType := corev1.EventTypeNormal
	if cur.Status != metav1.ConditionTrue {
		eventType = corev1.EventTypeWarning
	}
	s.events = append(s.events, pendingEvent{eventType: eventType, reason: cur.Reason, action: "CheckFencing", note: cur.Message})
}
