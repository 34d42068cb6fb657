package controllers

import (
	"context"
	"fmt"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/workqueue"
	clocktesting "k8s.io/utils/clock/testing"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/internal/fencing"
	"github.com/poolkeeper/poolkeeper/internal/liveness"
	"github.com/poolkeeper/poolkeeper/internal/testutil"
)

// quietRig is a Host reconciler with a fake clock over a fake API server
// holding an HA pool p (heartbeat timeout 4s) of three Live hosts, whose
// Lease renewals the test hands to the tracker; it counts Host writes.
type quietRig struct {
	r      *HostReconciler
	clk    *clocktesting.FakeClock
	rec    *events.FakeRecorder
	rv     map[string]int
	writes int
}

const quietTimeout = 4 * time.Second

func newQuietRig(t *testing.T) *quietRig {
	t.Helper()
	rig := &quietRig{clk: clocktesting.NewFakeClock(time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)),
		rec: events.NewFakeRecorder(100), rv: map[string]int{}}
	pool := &vpoolv1alpha1.Pool{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p"}}
	pool.Spec.HA.Enabled = true
	pool.Spec.HeartbeatTimeout = &metav1.Duration{Duration: quietTimeout}
	pool.Spec.Fencing.MaxUnhealthyPercent, pool.Spec.Fencing.MaxConcurrent = 50, 1
	objs := []client.Object{pool}
	for _, name := range []string{"h1", "h2", "h3"} {
		h := &vpoolv1alpha1.Host{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name,
			Finalizers: []string{vpoolv1alpha1.FinalizerHostForget}}}
		h.Spec.PoolRef.Name = "p"
		h.Status.Phase = vpoolv1alpha1.HostPhaseLive
		objs = append(objs, h)
	}
	c := fake.NewClientBuilder().WithScheme(testutil.Scheme).WithObjects(objs...).WithStatusSubresource(objs...).
		WithIndex(&vpoolv1alpha1.Host{}, IndexPoolRef, func(o client.Object) []string {
			return []string{o.(*vpoolv1alpha1.Host).Spec.PoolRef.Name}
		}).
		WithInterceptorFuncs(interceptor.Funcs{SubResourcePatch: func(ctx context.Context, c client.Client, sub string,
			obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
			if _, ok := obj.(*vpoolv1alpha1.Host); ok {
				rig.writes++
			}
			return c.SubResource(sub).Patch(ctx, obj, patch, opts...)
		}}).Build()
	rig.r = &HostReconciler{Client: c, APIReader: c, Clock: rig.clk, Tracker: liveness.NewTracker(rig.clk), Recorder: rig.rec}
	return rig
}

// renew makes the tracker observe a renewal of the Leases of names now.
func (rig *quietRig) renew(names ...string) {
	for _, name := range names {
		rig.r.Tracker.Observe(hostKey(name), rig.renewed(name).ResourceVersion, quietTimeout)
	}
}

// renewed is host name's Lease, renewed.
func (rig *quietRig) renewed(name string) *coordinationv1.Lease {
	rig.rv[name]++
	return &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, ResourceVersion: fmt.Sprint(rig.rv[name]),
		Labels: map[string]string{vpoolv1alpha1.LabelHost: name}}}
}

// reconcile reconciles host name and returns when it asks to look again.
func (rig *quietRig) reconcile(g Gomega, name string) time.Duration {
	res, err := rig.r.Reconcile(context.Background(), ctrl.Request{NamespacedName: hostKey(name)})
	g.Expect(err).NotTo(HaveOccurred())
	return res.RequeueAfter
}

func (rig *quietRig) phase(g Gomega, name string) vpoolv1alpha1.HostPhase {
	h := &vpoolv1alpha1.Host{}
	g.Expect(rig.r.Get(context.Background(), hostKey(name), h)).To(Succeed())
	return h.Status.Phase
}

func (rig *quietRig) holding() bool {
	_, holding := rig.r.Tracker.Recount().From(poolKey("ns", "p"))
	return holding
}

// events drains the events announced so far.
func (rig *quietRig) events() []string {
	var out []string
	for {
		select {
		case e := <-rig.rec.Events:
			out = append(out, e)
		default:
			return out
		}
	}
}

func hostKey(name string) types.NamespacedName {
	return types.NamespacedName{Namespace: "ns", Name: name}
}

// A Live host of an HA pool is looked at again at the exact instant its
// silence reaches T/2, when the storm guard counts it stale: renewed
// meanwhile, the look writes nothing and notes nothing; silent, it tallies
// the pool, and with a majority quiet the guard holds from that instant,
// before any host is Unreachable. The renewal that ends the storm lifts it.
func TestQuietLiveHostLooksAtTheStormGuardAtHalfTheTimeout(t *testing.T) {
	g := NewWithT(t)
	rig := newQuietRig(t)
	rig.renew("h1", "h2", "h3")
	rig.clk.Step(100 * time.Millisecond)
	rig.renew("h1", "h2", "h3")
	for _, h := range []string{"h1", "h2", "h3"} {
		g.Expect(rig.reconcile(g, h)).To(Equal(quietTimeout/2), "just renewed: looked at again T/2 later") // sets the conditions
	}
	rig.events()
	written := rig.writes

	rig.clk.Step(time.Second)
	g.Expect(rig.reconcile(g, "h2")).To(Equal(quietTimeout/2-time.Second), "at the exact instant h2's silence reaches T/2")
	rig.renew("h1")
	rig.clk.Step(time.Second / 2)
	g.Expect(rig.reconcile(g, "h1")).To(Equal(quietTimeout/2-time.Second/2), "from h1's last renewal")

	// At h2's instant: renewed meanwhile, the look is a no-op that looks
	// again T/2 after the renewal; h3, silent since the start, is quiet but
	// alone (1 of 3 stale).
	rig.clk.Step(time.Second / 2)
	rig.renew("h2")
	g.Expect(rig.reconcile(g, "h2")).To(Equal(quietTimeout / 2))
	g.Expect(rig.reconcile(g, "h3")).To(Equal(quietTimeout/2), "quiet: then at its timeout")
	g.Expect(rig.holding()).To(BeFalse())

	// h1's silence reaches T/2: with h3, 2 of 3 are stale and the guard holds
	// from that instant, not earlier.
	rig.clk.Step(time.Second - time.Millisecond)
	g.Expect(rig.reconcile(g, "h1")).To(Equal(time.Millisecond))
	g.Expect(rig.holding()).To(BeFalse(), "not before T/2")
	rig.clk.Step(time.Millisecond)
	g.Expect(rig.reconcile(g, "h1")).To(Equal(quietTimeout / 2))
	g.Expect(rig.holding()).To(BeTrue())
	g.Expect(rig.events()).To(ConsistOf(And(HavePrefix("Warning "+fencing.ReasonStormGuard+" "),
		ContainSubstring("2 of 3 hosts are stale at once"), ContainSubstring("a Live host silent for 2s counts as stale"))))
	for _, h := range []string{"h1", "h2", "h3"} {
		g.Expect(rig.phase(g, h)).To(Equal(vpoolv1alpha1.HostPhaseLive), "nobody is Unreachable yet")
	}
	g.Expect(rig.writes).To(Equal(written), "no Host is written")

	// While the guard holds, a renewal wakes its host, whose look lifts it.
	q := workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[reconcile.Request]())
	defer q.ShutDown()
	rig.r.leaseEvent(context.Background(), rig.renewed("h3"), q)
	g.Expect(q.Len()).To(Equal(1), "a renewal during a storm is looked at")
	rig.reconcile(g, "h3")
	g.Expect(rig.holding()).To(BeFalse())
	g.Expect(rig.events()).To(ConsistOf(HavePrefix("Normal " + ReasonOutageRiddenOut + " ")))

	rig.r.leaseEvent(context.Background(), rig.renewed("h1"), q)
	g.Expect(q.Len()).To(Equal(1), "once lifted, a renewal of a Live host needs no look")
	g.Expect(rig.writes).To(Equal(written), "no Host is written")
}
