package controllers

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"

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

// Reasons of Redfish fencing events.
const (
	ReasonFencingFailed      = "FencingFailed"
	ReasonPowerOffRequested  = "PowerOffRequested"
	ReasonCredentialsMissing = "BMCCredentialsMissing"
)

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
