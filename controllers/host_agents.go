package controllers

import (
	"context"
	"fmt"
	"strings"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/internal/liveness"
	"github.com/poolkeeper/poolkeeper/internal/status"
)

// +kubebuilder:rbac:groups=coordination.k8s.io,resources=leases,verbs=get;list;watch;delete;deletecollection

// Reasons of the Host's AgentConflict condition and its events.
const (
	// ReasonDuplicateAgent: a second agent, of another boot, claims the host.
	ReasonDuplicateAgent = "DuplicateAgent"
	// ReasonSingleAgent: one agent runs the host.
	ReasonSingleAgent = "SingleAgent"
	// ReasonAgentConflictResolved: the second agent is gone.
	ReasonAgentConflictResolved = "AgentConflictResolved"
)

// standbyHost is the Host a standby Lease ("<host>.<suffix>", labelled
// vpool.poolkeeper.io/standby) speaks for; ok is false for any other Lease.
func standbyHost(obj client.Object) (types.NamespacedName, bool) {
	if obj.GetLabels()[vpoolv1alpha1.LabelStandby] != "true" {
		return types.NamespacedName{}, false
	}
	host, _, found := strings.Cut(obj.GetName(), ".")
	return types.NamespacedName{Namespace: obj.GetNamespace(), Name: host}, found
}

// checkAgents sets the AgentConflict condition: True while an agent of
// another boot waits to run the host (its standby Lease changed within the
// heartbeat timeout, on the operator's clock). Such a host is not Ready and
// is given no new VM; the agent that holds the Lease keeps running its VMs
// and the waiting one runs none. Standby Leases silent for the timeout are
// deleted. It returns when to look again.
func (r *HostReconciler) checkAgents(ctx context.Context, s *hostScope) (time.Duration, error) {
	h := s.host
	leases := &coordinationv1.LeaseList{}
	if err := r.List(ctx, leases, client.InNamespace(h.Namespace),
		client.MatchingLabels{vpoolv1alpha1.LabelHost: h.Name, vpoolv1alpha1.LabelStandby: "true"}); err != nil {
		return 0, fmt.Errorf("listing the standby Leases of host %s: %w", h.Name, err)
	}
	holderBoot := h.Status.BootID
	lease := &coordinationv1.Lease{}
	if err := r.Get(ctx, client.ObjectKeyFromObject(h), lease); err == nil {
		holderBoot = liveness.BootOf(ptr.Deref(lease.Spec.HolderIdentity, ""))
	}
	var contenders []liveness.Contender
	byBoot := map[string]*coordinationv1.Lease{}
	for i := range leases.Items {
		l := &leases.Items[i]
		if key, ok := standbyHost(l); !ok || key.Name != h.Name {
			continue
		}
		boot := liveness.BootOf(ptr.Deref(l.Spec.HolderIdentity, ""))
		byBoot[boot] = l
		contenders = append(contenders, liveness.Contender{BootID: boot, LastSeen: r.Tracker.Get(client.ObjectKeyFromObject(l)).LastSeen})
	}
	c := liveness.AgentConflict(holderBoot, contenders, s.now, s.timeout)
	for _, gone := range c.Gone {
		if err := r.Delete(ctx, byBoot[gone.BootID]); err != nil && !apierrors.IsNotFound(err) {
			return 0, fmt.Errorf("deleting the stale standby Lease of host %s: %w", h.Name, err)
		}
	}
	r.setAgentConflict(ctx, s, holderBoot, c.Waiting)
	return c.RecheckIn, nil
}

func (r *HostReconciler) setAgentConflict(ctx context.Context, s *hostScope, holderBoot string, waiting []liveness.Contender) {
	h := s.host
	was := status.IsTrue(s.st.Before(), vpoolv1alpha1.HostAgentConflict)
	cond := metav1.Condition{Status: metav1.ConditionFalse, Reason: ReasonSingleAgent, Message: "one agent runs this host"}
	if len(waiting) > 0 {
		boots := make([]string, 0, len(waiting))
		for _, w := range waiting {
			boots = append(boots, fmt.Sprintf("%s (seen %s)", w.BootID, w.LastSeen.UTC().Format(time.RFC3339)))
		}
		cond.Status, cond.Reason = metav1.ConditionTrue, ReasonDuplicateAgent
		cond.Message = fmt.Sprintf("two agents claim host %s: boot %s holds its heartbeat Lease and runs its VMs; boot %s waits "+
			"and runs none. Is the host cloned, or its identity reused while the original still runs? Stop the agent "+
			"that should not run; until then the host takes no new VM", h.Name, holderBoot, strings.Join(boots, ", "))
	}
	s.st.Set(vpoolv1alpha1.HostAgentConflict, cond.Status, cond.Reason, cond.Message)
	if cond.Status == metav1.ConditionTrue {
		s.agentConflict = cond.Message
	}
	switch now := cond.Status == metav1.ConditionTrue; {
	case now && !was:
		ctrl.LoggerFrom(ctx).Info("Two agents claim the host", "holderBootID", holderBoot, "waiting", len(waiting))
		s.st.Eventf(corev1.EventTypeWarning, ReasonDuplicateAgent, "DetectAgents", "%s", cond.Message)
	case !now && was:
		s.st.Eventf(corev1.EventTypeNormal, ReasonAgentConflictResolved, "DetectAgents", "only boot %s claims the host now", holderBoot)
	}
}

// hostUsable reports whether placement may give h new VMs: Live, with one agent.
func hostUsable(h *vpoolv1alpha1.Host) bool {
	return h.Status.Phase == vpoolv1alpha1.HostPhaseLive && !meta.IsStatusConditionTrue(h.Status.Conditions, vpoolv1alpha1.HostAgentConflict)
}

// usabilityChanged passes a Host's changes of hostUsable (and its phase
// changes and deletion), which placement acts on.
func usabilityChanged() predicate.Funcs {
	return onChange(func(o, n *vpoolv1alpha1.Host) bool {
		return o.Status.Phase != n.Status.Phase || hostUsable(o) != hostUsable(n)
	})
}

// releaseLeases deletes the heartbeat Lease and the standby Leases of a
// forgotten host, before its Host object goes. A forgotten host is down (it
// was fenced, or a person confirmed it), so its boot can hold nothing any
// more; an agent of a host added again under the same name (a restored
// pool) then takes a fresh Lease at once instead of waiting out the dead
// boot's deadline.
func (r *HostReconciler) releaseLeases(ctx context.Context, h *vpoolv1alpha1.Host) error {
	err := r.Delete(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: h.Namespace, Name: h.Name}})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting the heartbeat Lease of forgotten host %s: %w", h.Name, err)
	}
	err = r.DeleteAllOf(ctx, &coordinationv1.Lease{}, client.InNamespace(h.Namespace),
		client.MatchingLabels{vpoolv1alpha1.LabelHost: h.Name, vpoolv1alpha1.LabelStandby: "true"})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting the standby Leases of forgotten host %s: %w", h.Name, err)
	}
	return nil
}
