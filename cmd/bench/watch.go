package main

import (
	"context"
	"fmt"
	"maps"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
)

// hostView is what the Host watch has seen so far, on the bench's clock.
type hostView struct {
	live        int                  // Hosts now Live
	allLive     time.Time            // when all the Hosts were first Live at once
	modified    int64                // Host writes (MODIFIED events)
	unreachable map[string]time.Time // when each Host was first seen Unreachable
	ended       error                // why the watch ended early, if it did
}

type hostWatcher struct {
	hosts  int
	mu     sync.Mutex
	phases map[string]vpoolv1alpha1.HostPhase
	v      hostView
}

// watchHosts opens one watch on the Hosts of ns and follows it until ctx
// ends; it returns once the watch is open, so no later write is missed.
func watchHosts(ctx context.Context, c client.WithWatch, ns string, hosts int) (*hostWatcher, error) {
	// The server would otherwise end the watch after 30 to 60 minutes.
	wi, err := c.Watch(ctx, &vpoolv1alpha1.HostList{}, &client.ListOptions{Namespace: ns,
		Raw: &metav1.ListOptions{TimeoutSeconds: ptr.To[int64](24 * 3600)}})
	if err != nil {
		return nil, fmt.Errorf("watching Hosts in %s: %w", ns, err)
	}
	w := &hostWatcher{hosts: hosts, phases: map[string]vpoolv1alpha1.HostPhase{}, v: hostView{unreachable: map[string]time.Time{}}}
	go func() {
		defer wi.Stop()
		for ev := range wi.ResultChan() {
			h, ok := ev.Object.(*vpoolv1alpha1.Host)
			if !ok {
				w.end(fmt.Errorf("the Host watch failed: %v", ev.Object))
				return
			}
			w.handle(ev.Type, h, time.Now())
		}
		if ctx.Err() == nil {
			w.end(fmt.Errorf("the API server ended the Host watch"))
		}
	}()
	return w, nil
}

func (w *hostWatcher) end(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.v.ended = err
}

func (w *hostWatcher) handle(t watch.EventType, h *vpoolv1alpha1.Host, now time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	phase := h.Status.Phase
	switch t {
	case watch.Modified:
		w.v.modified++
	case watch.Deleted:
		phase = ""
	}
	wasLive, isLive := w.phases[h.Name] == vpoolv1alpha1.HostPhaseLive, phase == vpoolv1alpha1.HostPhaseLive
	w.phases[h.Name] = phase
	switch {
	case isLive && !wasLive:
		if w.v.live++; w.v.live == w.hosts && w.v.allLive.IsZero() {
			w.v.allLive = now
		}
	case wasLive && !isLive:
		w.v.live--
	}
	if _, seen := w.v.unreachable[h.Name]; !seen && phase == vpoolv1alpha1.HostPhaseUnreachable {
		w.v.unreachable[h.Name] = now
	}
}

func (w *hostWatcher) view() hostView {
	w.mu.Lock()
	defer w.mu.Unlock()
	v := w.v
	v.unreachable = maps.Clone(w.v.unreachable)
	return v
}
