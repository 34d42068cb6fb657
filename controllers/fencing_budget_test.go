package controllers_test

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/controllers"
	"github.com/poolkeeper/poolkeeper/internal/testutil"
)

// Several hosts of one pool die at the same moment, and parallel reconciles
// decide their fate at once: at no point are more of them Fencing than
// spec.fencing.maxConcurrent, yet every one is fenced in turn. The check
// reads every change of every Host in order from one watch, so a fence that
// started while another was in flight cannot go unseen. The survivors stay
// Live: their heartbeat timeout is many intervals long, so that a loaded
// machine starving six agents of CPU does not silence one for a whole
// timeout (its agent would self-fence, and the operator rightly fence it).
func TestFencingBudgetHoldsUnderConcurrency(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ns := newNamespace(t)
	hosts := []string{"h1", "h2", "h3", "h4", "h5", "h6"}
	dying := hosts[:4]
	const budgetTimeout = 24 * interval
	createPool(t, ns, "p", poolOpts{ha: true, timeout: budgetTimeout, maxUnhealthy: ptr.To[int32](100), maxConcurrent: 1})
	for _, h := range hosts {
		createHost(t, ns, "p", h)
	}
	wc, err := client.NewWithWatch(restConfig, client.Options{Scheme: testutil.Scheme})
	g.Expect(err).NotTo(HaveOccurred())
	watcher, err := wc.Watch(context.Background(), &vpoolv1alpha1.HostList{}, inNS(ns))
	g.Expect(err).NotTo(HaveOccurred())
	defer watcher.Stop()
	startManager(t, ns, controllers.Options{})
	agents := map[string]*runningAgent{}
	for _, h := range hosts {
		agents[h] = startAgent(t, ns, h, interval, nil)
	}
	for _, h := range hosts {
		g.Eventually(phaseOf(ns, h), wait, poll).Should(Equal(vpoolv1alpha1.HostPhaseLive))
	}
	for _, h := range dying {
		go agents[h].Kill()
	}

	phases := map[string]vpoolv1alpha1.HostPhase{}
	most, fenced := 0, 0
	deadline := time.After(2 * wait)
	for fenced < len(dying) {
		select {
		case ev, ok := <-watcher.ResultChan():
			g.Expect(ok).To(BeTrue(), "the watch ended")
			if ev.Type == watch.Error {
				continue
			}
			h := ev.Object.(*vpoolv1alpha1.Host)
			phases[h.Name] = h.Status.Phase
			inFencing := 0
			fenced = 0
			for _, p := range phases {
				switch p {
				case vpoolv1alpha1.HostPhaseFencing:
					inFencing++
				case vpoolv1alpha1.HostPhaseFenced:
					fenced++
				}
			}
			most = max(most, inFencing)
			g.Expect(inFencing).To(BeNumerically("<=", 1), "hosts in Fencing at once: %v", phases)
		case <-deadline:
			t.Fatalf("only %d of %d dead hosts fenced: %v", fenced, len(dying), phases)
		}
	}
	g.Expect(most).To(Equal(1))
	for _, h := range hosts[4:] {
		g.Expect(phases[h]).To(Equal(vpoolv1alpha1.HostPhaseLive),
			"surviving host %s, whose agent returned %v (self-fenced: it was starved of its heartbeats for %s; nil: a live host was fenced)",
			h, agents[h].Err(), budgetTimeout)
	}
}
