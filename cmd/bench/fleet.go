package main

import (
	"context"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/internal/liveness"
)

// simHost is one simulated agent's heartbeat state.
type simHost struct {
	name, holder string
	mu           sync.Mutex // held through a renewal, so stop waits for one in flight
	lease        *coordinationv1.Lease
	lastOK       time.Time // when the last successful Lease write returned
	stopped      bool
}

// fleet renews the heartbeat Leases of many hosts as poolkeeper-agent does,
// without the rest of the agent (no cache, no Host status report).
type fleet struct {
	c        client.Client
	ns       string
	interval time.Duration
	duration *int32 // spec.leaseDurationSeconds: the declared self-fence deadline
	hosts    []*simHost
	start    time.Time
	// Lease writes and reads are counted when they return, as heartbeats are.
	heartbeats, writes, reads, failures atomic.Int64
}

func newFleet(c client.Client, ns string, names []string, interval, timeout time.Duration) *fleet {
	f := &fleet{c: c, ns: ns, interval: interval, start: time.Now(),
		duration: ptr.To(int32(math.Ceil(liveness.SelfFenceAfter(timeout).Seconds())))}
	for _, name := range names {
		f.hosts = append(f.hosts, &simHost{name: name, holder: name + "/" + uuid.NewString()}) // host/bootID
	}
	return f
}

// run renews every host once per interval until ctx ends. Host i is due at
// f.start + i*interval/n in every round; worker w serves hosts w, w+workers, …
// in that order, so its due times increase.
func (f *fleet) run(ctx context.Context, workers int) {
	n := len(f.hosts)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			timer := time.NewTimer(0)
			defer timer.Stop()
			for round := 0; ; round++ {
				for i := w; i < n; i += workers {
					timer.Reset(time.Until(f.start.Add(time.Duration(round)*f.interval + f.interval*time.Duration(i)/time.Duration(n))))
					select {
					case <-ctx.Done():
						return
					case <-timer.C:
					}
					f.beat(ctx, f.hosts[i])
				}
			}
		})
	}
	wg.Wait()
}

func (f *fleet) beat(ctx context.Context, h *simHost) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stopped {
		return
	}
	if err := f.renew(ctx, h); err != nil {
		if ctx.Err() == nil {
			f.failures.Add(1)
			progress("heartbeat of %s failed: %v", h.name, err)
		}
		return
	}
	h.lastOK = time.Now()
	f.heartbeats.Add(1)
}

// renew is the agent's renewal: on first use read the Lease and create it if
// missing; afterwards update it from the last object returned.
func (f *fleet) renew(ctx context.Context, h *simHost) error {
	now := metav1.NewMicroTime(time.Now())
	if h.lease == nil {
		lease := &coordinationv1.Lease{}
		err := f.c.Get(ctx, client.ObjectKey{Namespace: f.ns, Name: h.name}, lease)
		f.reads.Add(1)
		if apierrors.IsNotFound(err) {
			lease = &coordinationv1.Lease{
				ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: h.name, Labels: map[string]string{vpoolv1alpha1.LabelHost: h.name}},
				Spec: coordinationv1.LeaseSpec{HolderIdentity: &h.holder, LeaseDurationSeconds: f.duration,
					AcquireTime: &now, RenewTime: &now},
			}
			err = f.c.Create(ctx, lease)
			f.writes.Add(1)
			if err != nil {
				return fmt.Errorf("creating heartbeat Lease: %w", err)
			}
			h.lease = lease
			return nil
		} else if err != nil {
			return fmt.Errorf("reading heartbeat Lease: %w", err)
		}
		h.lease = lease
	}
	lease := h.lease.DeepCopy()
	if lease.Labels == nil {
		lease.Labels = map[string]string{}
	}
	lease.Labels[vpoolv1alpha1.LabelHost] = h.name
	if lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity != h.holder {
		lease.Spec.HolderIdentity, lease.Spec.AcquireTime = &h.holder, &now
		lease.Spec.LeaseTransitions = ptr.To(ptr.Deref(lease.Spec.LeaseTransitions, 0) + 1)
	}
	lease.Spec.LeaseDurationSeconds, lease.Spec.RenewTime = f.duration, &now
	err := f.c.Update(ctx, lease)
	f.writes.Add(1)
	if err != nil {
		if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
			h.lease = nil // read again next time
		}
		return fmt.Errorf("renewing heartbeat Lease: %w", err)
	}
	h.lease = lease
	return nil
}

// stop stops renewing the given hosts, waiting for a renewal in flight, and
// returns when the last successful renewal of each returned.
func (f *fleet) stop(hosts []int) []time.Time {
	last := make([]time.Time, len(hosts))
	for i, j := range hosts {
		h := f.hosts[j]
		h.mu.Lock()
		h.stopped, last[i] = true, h.lastOK
		h.mu.Unlock()
	}
	return last
}
