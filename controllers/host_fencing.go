package controllers

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/internal/fencing"
	"github.com/poolkeeper/poolkeeper/internal/metrics"
	"github.com/poolkeeper/poolkeeper/internal/status"
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
	// readiness is its verdict (or the fence's, which talked to the BMC
	// since), set again by every reconcile until its recheck.
	readiness fencing.Readiness
}

// fenceStall is a fence stopped on a terminal failure: it is tried again
// once the Host's spec or one of the Secrets the method read changes.
type fenceStall struct {
	generation int64
	// secrets are the resourceVersions of the Secrets read, by name.
	secrets map[string]string
}

// StallRecheck is how often a stalled fence's Secrets are read again (by
// name, from the API server: the manager may not watch Secrets) to see
// whether a person fixed them. Only the Secrets are read; the BMC is not
// asked again until they or the Host change.
const StallRecheck = 30 * time.Second

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
	if e.s.secretsRead == nil {
		e.s.secretsRead = map[string]string{}
	}
	e.s.secretsRead[name] = secret.ResourceVersion
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

// Event queues the announcement for the status write that follows the action.
func (e hostEnv) Event(eventType, reason, action, note string) {
	e.s.st.Event(status.Event{Type: eventType, Reason: reason, Action: action, Note: note})
}

// fenceStep drives one action of a fence whose Fencing phase is recorded
// and whose heartbeat has not resumed, and feeds what it saw into the
// input. A failure keeps the host in Fencing with a Warning event and a
// backoff; it never lets the fence complete. It returns when to step again.
func (r *HostReconciler) fenceStep(ctx context.Context, s *hostScope) (time.Duration, error) {
	key := client.ObjectKeyFromObject(s.host)
	if s.in.Phase != vpoolv1alpha1.HostPhaseFencing || fencing.Resumed(s.in) {
		r.fenceStalls.Delete(key)
		return 0, nil
	}
	if stalled, err := r.stillStalled(ctx, s); err != nil || stalled {
		return StallRecheck, err
	}
	env := hostEnv{r: r, s: s}
	p, err := s.fencer.Step(ctx, env, s.in)
	if err != nil {
		return 0, fmt.Errorf("fencing host %s: %w", s.host.Name, err)
	}
	if p.Failure != nil {
		return r.fenceFailed(ctx, s, p.Failure), nil
	}
	if _, was := r.fenceStalls.LoadAndDelete(key); s.fencer.Remote() && (was || !status.IsTrue(s.host, vpoolv1alpha1.HostFencingReady)) {
		// The remote method answers again: FencingReady (and so Stalled) say so.
		r.noteReadiness(s, s.fencer.Readiness(ctx, env, s.in))
	}
	s.in.Down = p.Down
	return p.RequeueAfter, nil
}

// stillStalled reports whether the host's fence stopped on a terminal
// failure and nothing it depends on changed since: the Host's spec and the
// Secrets the method read, read again by name.
func (r *HostReconciler) stillStalled(ctx context.Context, s *hostScope) (bool, error) {
	key := client.ObjectKeyFromObject(s.host)
	v, ok := r.fenceStalls.Load(key)
	if !ok {
		return false, nil
	}
	stall := v.(fenceStall)
	if stall.generation != s.host.Generation {
		r.fenceStalls.Delete(key)
		return false, nil
	}
	for name, version := range stall.secrets {
		secret := &corev1.Secret{}
		err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: s.host.Namespace, Name: name}, secret)
		if err != nil && !apierrors.IsNotFound(err) {
			return false, fmt.Errorf("reading Secret %s of host %s: %w", name, s.host.Name, err)
		}
		if err != nil || secret.ResourceVersion != version {
			r.fenceStalls.Delete(key)
			return false, nil
		}
	}
	return true, nil
}

// fenceFailed counts a failed fencing action and says when to retry. A
// terminal failure is not retried on a timer: the host is Stalled, with
// FencingReady saying what to fix, until the Host or a Secret the method
// read changes.
func (r *HostReconciler) fenceFailed(ctx context.Context, s *hostScope, fl *fencing.Failure) time.Duration {
	f := hostEnv{r: r, s: s}.FenceRecord()
	f.Attempts++
	f.LastError = fl.Err.Error()
	metrics.Fences.WithLabelValues(string(s.in.Method), "failed").Inc()
	log := ctrl.LoggerFrom(ctx).WithValues("method", s.in.Method, "attempt", f.Attempts, "error", fl.Err.Error())
	if fl.Terminal {
		key, stall := client.ObjectKeyFromObject(s.host), fenceStall{generation: s.host.Generation, secrets: s.secretsRead}
		msg := fmt.Sprintf("%s fencing attempt %d failed: %s; %s", s.in.Method, f.Attempts, fl.Err.Error(), fl.Fix)
		r.noteReadiness(s, fencing.Readiness{Reason: fl.Reason, Message: msg, Recheck: fencing.BMCRecheckFailed})
		// The fence stops only once the status saying so is written: after a
		// lost write (a conflict) the next reconcile tries again and tells it.
		s.st.Event(status.Event{Type: corev1.EventTypeWarning, Reason: fl.Reason, Action: fl.Action, Note: msg,
			Observe: func() { r.fenceStalls.Store(key, stall) }})
		log.Info("Fencing stopped until its configuration changes")
		return StallRecheck
	}
	wait := fencing.Backoff(f.Attempts)
	s.st.Eventf(corev1.EventTypeWarning, fl.Reason, fl.Action,
		"%s fencing attempt %d failed, retrying in %s: %s", s.in.Method, f.Attempts, wait, fl.Err.Error())
	log.Info("Fencing attempt failed", "retryIn", wait)
	return wait
}

// setFencingReady sets the FencingReady condition from a readiness verdict.
func (r *HostReconciler) setFencingReady(s *hostScope, rd fencing.Readiness) {
	s.st.Set(vpoolv1alpha1.HostFencingReady, status.Bool(rd.Ready), rd.Reason, rd.Message)
}

// noteReadiness sets FencingReady from what the host's remote method has
// just answered, and keeps the verdict until its recheck: every reconcile
// sets it again, so that a status write lost to a conflict loses nothing.
func (r *HostReconciler) noteReadiness(s *hostScope, rd fencing.Readiness) {
	r.setFencingReady(s, rd)
	r.bmcChecks.Store(client.ObjectKeyFromObject(s.host), bmcCheck{generation: s.host.Generation, at: s.now, readiness: rd})
}

// checkFencing sets the FencingReady condition from the method's
// readiness. A remote method (Redfish) is checked as soon as the spec is
// written, so a missing Secret or refused credentials are said on the first
// day, then again after its Recheck; not while the fence itself talks to
// the BMC. It returns when to check again (zero: on the next spec change).
func (r *HostReconciler) checkFencing(ctx context.Context, s *hostScope) time.Duration {
	h := s.host
	env := hostEnv{r: r, s: s}
	if !s.fencer.Remote() {
		r.setFencingReady(s, s.fencer.Readiness(ctx, env, s.in))
		return 0
	}
	if h.Status.Phase == vpoolv1alpha1.HostPhaseFencing {
		return 0 // the fence itself talks to the BMC and says how it goes
	}
	last, _ := r.bmcChecks.Load(client.ObjectKeyFromObject(h))
	if c, ok := last.(bmcCheck); ok && c.generation == h.Generation {
		if next := c.at.Add(c.readiness.Recheck); s.now.Before(next) {
			r.setFencingReady(s, c.readiness)
			r.announceFencingReady(s)
			return next.Sub(s.now)
		}
	}
	rd := s.fencer.Readiness(ctx, env, s.in)
	r.noteReadiness(s, rd)
	r.announceFencingReady(s)
	return rd.Recheck
}

// announceFencingReady emits an event when the FencingReady reason changed:
// a Warning when the host can no longer be fenced, Normal when it can again.
func (r *HostReconciler) announceFencingReady(s *hostScope) {
	old, cur := s.st.Was(vpoolv1alpha1.HostFencingReady), s.st.Get(vpoolv1alpha1.HostFencingReady)
	if cur == nil || (old != nil && old.Reason == cur.Reason) || (old == nil && cur.Status == metav1.ConditionTrue) {
		return
	}
	eventType := corev1.EventTypeNormal
	if cur.Status != metav1.ConditionTrue {
		eventType = corev1.EventTypeWarning
	}
	s.st.Eventf(eventType, cur.Reason, "CheckFencing", "%s", cur.Message)
}
