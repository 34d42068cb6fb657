package fencing

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/internal/redfish"
)

// BMCAction is the next thing to do with a host's BMC during a Redfish fence.
type BMCAction int

const (
	// BMCDone: the BMC reports the host off; nothing more to send.
	BMCDone BMCAction = iota
	// BMCPowerOff: record the request in status, then send ForceOff.
	BMCPowerOff
	// BMCWait: a ForceOff was sent recently; poll the power state again.
	BMCWait
)

const (
	// PowerOffRetryAfter is how long the operator waits for PowerState Off
	// after a ForceOff before it sends another.
	PowerOffRetryAfter = 30 * time.Second
	// PowerPollInterval is how often the power state is read while waiting.
	PowerPollInterval = time.Second
	// MaxBackoff caps the wait between failed BMC calls.
	MaxBackoff = 2 * time.Minute
)

// RedfishStep decides the next BMC action from the power state just read and
// when ForceOff was last requested. A host already off is never sent a
// second ForceOff.
func RedfishStep(off bool, lastRequest time.Time, now time.Time) (BMCAction, time.Duration) {
	switch {
	case off:
		return BMCDone, 0
	case lastRequest.IsZero() || now.Sub(lastRequest) >= PowerOffRetryAfter:
		return BMCPowerOff, PowerPollInterval
	default:
		return BMCWait, PowerPollInterval
	}
}

// Backoff is the wait after the given number of consecutive failed BMC calls:
// 1s, 2s, 4s, ... up to MaxBackoff.
func Backoff(attempts int32) time.Duration {
	if attempts < 1 {
		return time.Second
	}
	if attempts > 8 {
		return MaxBackoff
	}
	d := time.Second << (attempts - 1)
	if d > MaxBackoff {
		return MaxBackoff
	}
	return d
}

// Reasons of Redfish fencing events and of its FencingReady condition.
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
)

// How often a host's Redfish configuration is checked again: after a
// failure (the Secret may come later, the BMC may come back), and while it
// works (credentials get rotated). A change of the Host's spec checks at once.
const (
	BMCRecheckFailed = 30 * time.Second
	BMCRecheckOK     = time.Hour
	bmcCheckTimeout  = 10 * time.Second
)

// BMC is what Redfish fencing needs of a host's Redfish service.
type BMC interface {
	PowerState(ctx context.Context) (redfish.PowerState, error)
	ForceOff(ctx context.Context) error
}

// BMCFactory opens a BMC client.
type BMCFactory func(cfg redfish.Config) (BMC, error)

// DefaultBMCFactory opens a real Redfish client.
func DefaultBMCFactory(cfg redfish.Config) (BMC, error) { return redfish.New(cfg) }

// Redfish fences by BMC power-off: ComputerSystem.Reset ForceOff, then
// waiting for PowerState Off.
type Redfish struct {
	// Open opens the host's BMC.
	Open BMCFactory
}

var _ Fencer = Redfish{}

// Unattended implements Fencer.
func (Redfish) Unattended() bool { return true }

// Start implements Fencer.
func (Redfish) Start(in HostInput) *vpoolv1alpha1.FencingStatus { return StartRecord(in) }

// Step reads the power state and, if the host is not off, records the
// request in status and then sends ForceOff. The Lease is re-read first:
// a host that has just renewed it is not powered off.
func (m Redfish) Step(ctx context.Context, env Env, in HostInput) (Progress, error) {
	f := env.FenceRecord()
	rf := in.Spec.Redfish
	bmc, err := m.open(ctx, env, rf)
	if err != nil {
		return failed(rf, ReasonCredentialsMissing, err), nil
	}
	if moved, err := env.LeaseMoved(ctx); err != nil || moved {
		return Progress{}, err
	}
	state, err := bmc.PowerState(ctx)
	if err != nil {
		return failed(rf, ReasonFencingFailed, fmt.Errorf("reading the power state: %w", err)), nil
	}
	var last time.Time
	if f.PowerOffRequestedAt != nil {
		last = f.PowerOffRequestedAt.Time
	}
	action, requeue := RedfishStep(state == redfish.PowerOff, last, in.Now)
	switch action {
	case BMCDone:
		return Progress{Down: true}, nil
	case BMCWait:
		return Progress{RequeueAfter: requeue}, nil
	}
	// Record the request before sending it, so a restarted operator knows.
	f.PowerOffRequestedAt = &metav1.Time{Time: in.Now}
	if err := env.Record(ctx); err != nil {
		return Progress{}, fmt.Errorf("recording the power-off request: %w", err)
	}
	if err := bmc.ForceOff(ctx); err != nil {
		return failed(rf, ReasonFencingFailed, fmt.Errorf("sending ForceOff: %w", err)), nil
	}
	f.Attempts, f.LastError = 0, ""
	env.Event(corev1.EventTypeNormal, ReasonPowerOffRequested, "PowerOff", fmt.Sprintf(
		"Asked the BMC at %s to power off system %s (ForceOff); was %s", in.Spec.Redfish.Endpoint, in.Spec.Redfish.SystemID, state))
	return Progress{RequeueAfter: requeue}, nil
}

// failed is a failed BMC action. Credentials the BMC refuses (401, 403) are
// terminal: retrying with them cannot help, and may lock the BMC account.
func failed(rf *vpoolv1alpha1.RedfishFencing, reason string, err error) Progress {
	f := &Failure{Reason: reason, Action: "PowerOff", Err: err}
	if errors.Is(err, redfish.ErrUnauthorized) {
		f.Reason, f.Terminal = ReasonBMCUnauthorized, true
		f.Fix = fmt.Sprintf("the BMC at %s refuses the credentials: fix username and password in Secret %s "+
			"(spec.fencing.redfish.credentialsSecretRef); fencing is tried again once the Secret or the Host changes",
			rf.Endpoint, rf.CredentialsSecretRef.Name)
	}
	return Progress{Failure: f}
}

// Decide is Fenced once the BMC reports the host off.
func (Redfish) Decide(in HostInput) Decision {
	if in.Down {
		return Decision{Phase: vpoolv1alpha1.HostPhaseFenced, Reason: ReasonRedfishPowerOff, Message: "the BMC reports PowerState Off"}
	}
	return Decision{Phase: vpoolv1alpha1.HostPhaseFencing, Reason: ReasonPoweringOff,
		Message: "powering the host off through its BMC (ComputerSystem.Reset ForceOff)"}
}

// FencedReason implements Fencer.
func (Redfish) FencedReason() string { return ReasonRedfishPowerOff }

// Remote is true: Readiness asks the BMC.
func (Redfish) Remote() bool { return true }

// Readiness opens the host's BMC with its credentials and reads the power
// state, so a missing Secret, a missing password or a BMC that refuses the
// credentials is said on the first day, not on the day the host must be fenced.
func (m Redfish) Readiness(ctx context.Context, env Env, in HostInput) Readiness {
	rf := in.Spec.Redfish
	notReady := func(reason, msg string) Readiness {
		return Readiness{Reason: reason, Message: msg, Recheck: BMCRecheckFailed}
	}
	if rf == nil {
		return notReady(ReasonCredentialsMissing, "spec.fencing.redfish is not set")
	}
	bmc, err := m.open(ctx, env, rf)
	if err != nil {
		return notReady(ReasonCredentialsMissing, err.Error()+": the host cannot be fenced until it is fixed")
	}
	pctx, cancel := context.WithTimeout(ctx, bmcCheckTimeout)
	defer cancel()
	state, err := bmc.PowerState(pctx)
	switch {
	case errors.Is(err, redfish.ErrUnauthorized):
		return notReady(ReasonBMCUnauthorized, fmt.Sprintf("the BMC at %s refuses the credentials of Secret %s "+
			"(spec.fencing.redfish.credentialsSecretRef): %v; the host cannot be fenced until they are fixed",
			rf.Endpoint, rf.CredentialsSecretRef.Name, err))
	case err != nil:
		return notReady(ReasonBMCUnreachable, fmt.Sprintf("the BMC at %s (spec.fencing.redfish.endpoint) does not answer: %v; "+
			"checked again in %s", rf.Endpoint, err, BMCRecheckFailed))
	}
	return Readiness{Ready: true, Reason: ReasonBMCAnswers, Recheck: BMCRecheckOK, Message: fmt.Sprintf(
		"the BMC at %s answers for system %s with the credentials of Secret %s (PowerState %s)",
		rf.Endpoint, rf.SystemID, rf.CredentialsSecretRef.Name, state)}
}

// open reads the BMC credentials from the API server and opens the BMC.
func (m Redfish) open(ctx context.Context, env Env, rf *vpoolv1alpha1.RedfishFencing) (BMC, error) {
	if rf == nil {
		return nil, fmt.Errorf("spec.fencing.redfish is not set")
	}
	name := rf.CredentialsSecretRef.Name
	data, err := env.Secret(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("reading spec.fencing.redfish.credentialsSecretRef %s: %w", name, err)
	}
	user, pass := string(data[corev1.BasicAuthUsernameKey]), string(data[corev1.BasicAuthPasswordKey])
	if user == "" || pass == "" {
		return nil, fmt.Errorf("secret %s (spec.fencing.redfish.credentialsSecretRef) needs non-empty %q and %q entries",
			name, corev1.BasicAuthUsernameKey, corev1.BasicAuthPasswordKey)
	}
	open := m.Open
	if open == nil {
		open = DefaultBMCFactory
	}
	cfg := redfish.Config{Endpoint: rf.Endpoint, SystemID: rf.SystemID, Username: user, Password: pass,
		InsecureSkipVerify: rf.InsecureSkipVerify}
	if ref := rf.CABundleSecretRef; ref != nil {
		if cfg.RootCAs, err = caBundle(ctx, env, ref.Name); err != nil {
			return nil, err
		}
	}
	return open(cfg)
}

// caBundle is the pool of the PEM certificates in the `ca.crt` entry of
// Secret name (spec.fencing.redfish.caBundleSecretRef).
func caBundle(ctx context.Context, env Env, name string) (*x509.CertPool, error) {
	data, err := env.Secret(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("reading spec.fencing.redfish.caBundleSecretRef %s: %w", name, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data[CABundleKey]) {
		return nil, fmt.Errorf("secret %s (spec.fencing.redfish.caBundleSecretRef) has no PEM certificate in its %q entry", name, CABundleKey)
	}
	return pool, nil
}

// CABundleKey is the entry of a CA bundle Secret that holds the PEM
// certificates.
const CABundleKey = "ca.crt"
