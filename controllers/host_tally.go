package controllers

import (
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/internal/fencing"
	"github.com/poolkeeper/poolkeeper/internal/liveness"
)

// tallyHosts counts hosts by phase; a Live host silent for
// liveness.SuspectAfter counts as a suspect for the storm guard.
func tallyHosts(hosts []vpoolv1alpha1.Host, tracker *liveness.Tracker, now time.Time, timeout time.Duration) fencing.Tally {
	phases := make([]vpoolv1alpha1.HostPhase, 0, len(hosts))
	suspects := 0
	for i := range hosts {
		h := &hosts[i]
		phases = append(phases, h.Status.Phase)
		if h.Status.Phase == vpoolv1alpha1.HostPhaseLive &&
			now.Sub(tracker.Get(client.ObjectKeyFromObject(h)).LastSeen) >= liveness.SuspectAfter(timeout) {
			suspects++
		}
	}
	t := fencing.TallyOf(phases)
	t.Suspect = suspects
	return t
}
