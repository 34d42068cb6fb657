package controllers

import (
	"context"
	"errors"
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
	"github.com/poolkeeper/poolkeeper/internal/redfish"
)

// BMC is what the Host controller needs of a host's Redfish service.
type BMC interface {
	PowerState(ctx context.Context) (redfish.PowerState, error)
	ForceOff(ctx context.Context) error
}

// BMCFactory opens a BMC client.
type BMCFactory func(cfg redfish.Config) (BMC, error)

// DefaultBMCFactory opens a real Redfish client.
func DefaultBMCFactory(cfg redfish.Config) (BMC, error) { return redfish.New(cfg) }

// Reasons of Redfish fencing events and of the FencingReady condition.
const (
	ReasonFencingFailed      = "FencingFailed"
	ReasonPowerOffRequested  = "PowerOffRequested"
	ReasonCredentialsMissing = "BMCCredentialsMissing"
	// ReasonBMCUnauthorized: the BMC refuses the credentials (401 or 403).
	ReasonBMCUnauthorized = "BMCUnauthorized"
	// ReasonBMCUnreachable: the BMC does not answer, or answers with an error.
	ReasonBMCUnreachable = "BMCUnreachable"
	// ReasonBMCAnswers: the BMC answers with the configured credentials.
	ReasonBMCAnswers = "BMCAnswers"
	// ReasonAgentWatchdogReady, ReasonManualOnly: FencingReady of the other methods.
	ReasonAgentWatchdogReady = "AgentWatchdog"
	ReasonManualOnly         = "ManualFencing"
)

// How often a host's Redfish configuration is checked again: after a
// failure (the Secret may come later, the BMC may come back), and while it
// works (credentials get rotated). A change of the Host's spec checks at once.
const (
	bmcRecheckFailed = 30 * time.Second
	bmcRecheckOK     = time.Hour
	bmcCheckTimeout  = 10 * time.Second
)

// bmcCheck is the last check of one Host's Redfish configuration.
type bmcCheck struct {
	generation int64
	at         time.Time
	ok         bool
}

// checkFencing sets the FencingReady condition. A Redfish host's credentials
// Secret is read and its BMC asked for the power state as soon as the spec
// is written, so a missing Secret, a missing password or a BMC that refuses
// the credentials is said on the first day, not on the day the host must be
// fenced. It returns when to check again (zero: on the next spec change).
func (r *HostReconciler) checkFencing(ctx context.Context, s *hostScope) time.Duration {
	h := s.host
	set := func(st metav1.ConditionStatus, reason, msg string) {
		meta.SetStatusCondition(&h.Status.Conditions, metav1.Condition{Type: vpoolv1alpha1.HostFencingReady, Status: st,
			Reason: reason, Message: msg, ObservedGeneration: h.Generation})
	}
	switch h.Spec.Fencing.Method {
	case vpoolv1alpha1.FencingManual:
		set(metav1.ConditionTrue, ReasonManualOnly, "fencing method is Manual: nobody can fence this host; a person confirms it is down (spec.state: Forgotten)")
		return 0
	case vpoolv1alpha1.FencingRedfish:
	default:
		set(metav1.ConditionTrue, ReasonAgentWatchdogReady, "the host's agent self-fences when it cannot renew its heartbeat")
		return 0
	}
	if h.Status.Phase == vpoolv1alpha1.HostPhaseFencing {
		return 0 // the fence itself talks to the BMC and says how it goes
	}
	last, _ := r.bmcChecks.Load(client.ObjectKeyFromObject(h))
	if c, ok := last.(bmcCheck); ok && c.generation == h.Generation {
		next := c.at.Add(bmcRecheckFailed)
		if c.ok {
			next = c.at.Add(bmcRecheckOK)
		}
		if s.now.Before(next) {
			return next.Sub(s.now)
		}
	}
	ok := r.probeBMC(ctx, s, set)
	r.announceFencingReady(s)
	r.bmcChecks.Store(client.ObjectKeyFromObject(h), bmcCheck{generation: h.Generation, at: s.now, ok: ok})
	if ok {
		return bmcRecheckOK
	}
	return bmcRecheckFailed
}

// probeBMC opens the host's BMC with its credentials and reads the power
// state, setting FencingReady from the outcome.
func (r *HostReconciler) probeBMC(ctx context.Context, s *hostScope, set func(metav1.ConditionStatus, string, string)) bool {
	h := s.host
	rf := h.Spec.Fencing.Redfish
	if rf == nil {
		set(metav1.ConditionFalse, ReasonCredentialsMissing, "spec.fencing.redfish is not set")
		return false
	}
	bmc, err := r.openBMC(ctx, h)
	if err != nil {
		set(metav1.ConditionFalse, ReasonCredentialsMissing, err.Error()+": the host cannot be fenced until it is fixed")
		return false
	}
	pctx, cancel := context.WithTimeout(ctx, bmcCheckTimeout)
	defer cancel()
	state, err := bmc.PowerState(pctx)
	switch {
	case errors.Is(err, redfish.ErrUnauthorized):
		set(metav1.ConditionFalse, ReasonBMCUnauthorized, fmt.Sprintf("the BMC at %s refuses the credentials of Secret %s "+
			"(spec.fencing.redfish.credentialsSecretRef): %v; the host cannot be fenced until they are fixed",
			rf.Endpoint, rf.CredentialsSecretRef.Name, err))
		return false
	case err != nil:
		set(metav1.ConditionFalse, ReasonBMCUnreachable, fmt.Sprintf("the BMC at %s (spec.fencing.redfish.endpoint) does not answer: %v; "+
			"checked again in %s", rf.Endpoint, err, bmcRecheckFailed))
		return false
	}
	set(metav1.ConditionTrue, ReasonBMCAnswers, fmt.Sprintf("the BMC at %s answers for system %s with the credentials of Secret %s (PowerState %s)",
		rf.Endpoint, rf.SystemID, rf.CredentialsSecretRef.Name, state))
	return true
}

// fenceRedfish drives one step of a Redfish fence of a host whose Fencing
// phase is already recorded: read the power state and, if the host is not
// off, record the request in status and send ForceOff. A failure keeps the
// host in Fencing with a Warning event and a backoff; it never lets the fence
// complete. It returns whether the BMC reports the host off.
func (r *HostReconciler) fenceRedfish(ctx context.Context, s *hostScope) (bool, time.Duration, error) {
	h := s.host
	f := h.Status.Fencing
	if f == nil {
		f = &vpoolv1alpha1.FencingStatus{Method: vpoolv1alpha1.FencingRedfish, StartedAt: &metav1.Time{Time: s.now}, BootID: h.Status.BootID}
		h.Status.Fencing = f
	}
	fail := func(reason string, err error) (bool, time.Duration, error) {
		f.Attempts++
		f.LastError = err.Error()
		metrics.Fences.WithLabelValues(string(vpoolv1alpha1.FencingRedfish), "failed").Inc()
		wait := fencing.Backoff(f.Attempts)
		r.Recorder.Eventf(h, nil, corev1.EventTypeWarning, reason, "PowerOff",
			"Redfish fencing attempt %d failed, retrying in %s: %s", f.Attempts, wait, err.Error())
		ctrl.LoggerFrom(ctx).Info("Redfish fencing failed", "attempt", f.Attempts, "retryIn", wait, "error", err.Error())
		return false, wait, nil
	}
	bmc, err := r.openBMC(ctx, h)
	if err != nil {
		return fail(ReasonCredentialsMissing, err)
	}
	// The host must not be powered off if it has just renewed its Lease.
	if moved, err := r.leaseMoved(ctx, h); err != nil || moved {
		return false, 0, err
	}
	state, err := bmc.PowerState(ctx)
	if err != nil {
		return fail(ReasonFencingFailed, fmt.Errorf("reading the power state: %w", err))
	}
	var last time.Time
	if f.PowerOffRequestedAt != nil {
		last = f.PowerOffRequestedAt.Time
	}
	action, requeue := fencing.RedfishStep(state == redfish.PowerOff, last, s.now)
	switch action {
	case fencing.BMCDone:
		return true, 0, nil
	case fencing.BMCWait:
		return false, requeue, nil
	}
	// Record the request before sending it, so a restarted operator knows.
	f.PowerOffRequestedAt = &metav1.Time{Time: s.now}
	if err := r.writeStatus(ctx, s); err != nil {
		return false, 0, fmt.Errorf("recording the power-off request of host %s: %w", h.Name, err)
	}
	if err := bmc.ForceOff(ctx); err != nil {
		return fail(ReasonFencingFailed, fmt.Errorf("sending ForceOff: %w", err))
	}
	f.Attempts, f.LastError = 0, ""
	r.Recorder.Eventf(h, nil, corev1.EventTypeNormal, ReasonPowerOffRequested, "PowerOff",
		"Asked the BMC at %s to power off system %s (ForceOff); was %s", h.Spec.Fencing.Redfish.Endpoint, h.Spec.Fencing.Redfish.SystemID, state)
	return false, requeue, nil
}

func (r *HostReconciler) openBMC(ctx context.Context, h *vpoolv1alpha1.Host) (BMC, error) {
	rf := h.Spec.Fencing.Redfish
	if rf == nil {
		return nil, fmt.Errorf("spec.fencing.redfish is not set")
	}
	secret := &corev1.Secret{}
	key := types.NamespacedName{Namespace: h.Namespace, Name: rf.CredentialsSecretRef.Name}
	if err := r.APIReader.Get(ctx, key, secret); err != nil {
		return nil, fmt.Errorf("reading spec.fencing.redfish.credentialsSecretRef %s: %w", key.Name, err)
	}
	user, pass := string(secret.Data[corev1.BasicAuthUsernameKey]), string(secret.Data[corev1.BasicAuthPasswordKey])
	if user == "" || pass == "" {
		return nil, fmt.Errorf("secret %s (spec.fencing.redfish.credentialsSecretRef) needs non-empty %q and %q entries",
			key.Name, corev1.BasicAuthUsernameKey, corev1.BasicAuthPasswordKey)
	}
	factory := r.BMC
	if factory == nil {
		factory = DefaultBMCFactory
	}
	return factory(redfish.Config{Endpoint: rf.Endpoint, SystemID: rf.SystemID, Username: user, Password: pass,
		InsecureSkipVerify: rf.InsecureSkipVerify})
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
