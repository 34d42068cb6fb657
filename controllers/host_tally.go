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
		if h.Status.Phase == vpoolv1alpha1.HostPhaseLive && suspectIn(tracker.Get(client.ObjectKeyFromObject(h)), now, timeout) <= 0 {
			suspects++
		}
	}
	t := fencing.TallyOf(phases)
	t.Suspect = suspects
	return t
}

// suspectIn is how long until a Live host's silence (from the last renewal
// observed, not counted afresh) reaches liveness.SuspectAfter, when the
// storm guard counts it stale; zero or less once it has.
func suspectIn(hb liveness.Observation, now time.Time, timeout time.Duration) time.Duration {
	return hb.LastSeen.Add(liveness.SuspectAfter(timeout)).Sub(now)
}
