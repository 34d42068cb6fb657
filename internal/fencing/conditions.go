package fencing

import (
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/internal/liveness"
)

// ReasonNotFenced is the Fenced condition's reason while the host is not
// being fenced.
const ReasonNotFenced = "NotFenced"

// Verdict is one condition's status, reason and message.
type Verdict struct {
	Status  metav1.ConditionStatus
	Reason  string
	Message string
}

// HeartbeatVerdict is the Heartbeat condition of a host in phase p (the
// phase just decided): Unknown before the first heartbeat, True while Live or
// while the last renewal observed is within the timeout, False otherwise.
func HeartbeatVerdict(p vpoolv1alpha1.HostPhase, hb liveness.Observation, now time.Time, timeout time.Duration) Verdict {
	switch {
	case p == vpoolv1alpha1.HostPhasePending:
		return Verdict{metav1.ConditionUnknown, ReasonAwaitingHeartbeat, "no heartbeat observed yet"}
	case p == vpoolv1alpha1.HostPhaseLive || hb.Fresh(now, timeout):
		return Verdict{metav1.ConditionTrue, ReasonHeartbeatReceived, fmt.Sprintf("the agent renews its Lease (timeout %s)", timeout)}
	default:
		return Verdict{metav1.ConditionFalse, ReasonHeartbeatStale,
			fmt.Sprintf("no heartbeat observed since %s (timeout %s)", hb.LastSeen.UTC().Format(time.RFC3339), timeout)}
	}
}

// FencedVerdict is the Fenced condition of a host in phase p, given the
// decision d just taken and its fence record f: True with the evidence once
// the host is down, False with d's reason while it is being fenced.
func (r Registry) FencedVerdict(p vpoolv1alpha1.HostPhase, d Decision, f *vpoolv1alpha1.FencingStatus) Verdict {
	switch p {
	case vpoolv1alpha1.HostPhaseFenced, vpoolv1alpha1.HostPhaseForgotten:
		msg := "the host is down"
		if f != nil && f.Evidence != "" {
			msg = f.Evidence
		}
		return Verdict{metav1.ConditionTrue, r.FencedReason(f, ReasonForgotten), msg}
	case vpoolv1alpha1.HostPhaseFencing:
		return Verdict{metav1.ConditionFalse, d.Reason, d.Message}
	default:
		return Verdict{metav1.ConditionFalse, ReasonNotFenced, "the host is not fenced"}
	}
}
