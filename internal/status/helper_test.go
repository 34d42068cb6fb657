package status_test

import (
	"context"
	"errors"
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/internal/status"
)

func newClient(t *testing.T, objs ...client.Object) client.Client {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := vpoolv1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	return fake.NewClientBuilder().WithScheme(scheme).WithObjects(objs...).WithStatusSubresource(objs...).Build()
}

func host(gen int64) *vpoolv1alpha1.Host {
	return &vpoolv1alpha1.Host{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "h1", Generation: gen}}
}

func read[T client.Object](g Gomega, c client.Client, obj T) T {
	g.Expect(c.Get(context.Background(), client.ObjectKeyFromObject(obj), obj)).To(Succeed())
	return obj
}

func drained(rec *events.FakeRecorder) []string {
	var out []string
	for {
		select {
		case e := <-rec.Events:
			out = append(out, e)
		default:
			return out
		}
	}
}

func TestPatchWritesOnceAndAnnouncesAfter(t *testing.T) {
	g := NewWithT(t)
	c := newClient(t, host(3))
	rec := events.NewFakeRecorder(10)
	h := read(g, c, host(0))
	rv := h.ResourceVersion

	p := status.New(c, rec, h)
	p.Set(vpoolv1alpha1.ConditionReady, metav1.ConditionTrue, "Live", "the agent heartbeats")
	p.Eventf(corev1.EventTypeNormal, "Live", "Live", "host %s is live", h.Name)
	g.Expect(drained(rec)).To(BeEmpty(), "nothing is announced before the write")
	g.Expect(p.Patch(context.Background(), nil)).To(Succeed())
	g.Expect(drained(rec)).To(ConsistOf("Normal Live host h1 is live"))

	got := read(g, c, host(0))
	g.Expect(got.ResourceVersion).NotTo(Equal(rv))
	g.Expect(got.Status.ObservedGeneration).To(Equal(int64(3)))
	cond := status.Find(got, vpoolv1alpha1.ConditionReady)
	g.Expect(cond).NotTo(BeNil())
	g.Expect(cond.ObservedGeneration).To(Equal(int64(3)))

	// The same decision again: nothing written.
	p = status.New(c, rec, got)
	p.Set(vpoolv1alpha1.ConditionReady, metav1.ConditionTrue, "Live", "the agent heartbeats")
	g.Expect(p.Patch(context.Background(), nil)).To(Succeed())
	g.Expect(p.Written()).To(BeFalse())
	g.Expect(read(g, c, host(0)).ResourceVersion).To(Equal(got.ResourceVersion))
}

func TestObservedGenerationOnlyWhenJudged(t *testing.T) {
	for name, tc := range map[string]struct {
		err      error
		observed int64
	}{
		"success":         {nil, 5},
		"transient":       {errors.New("the API server is slow"), 0},
		"spec (terminal)": {reconcile.TerminalError(errors.New("spec.x is wrong")), 5},
	} {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			c := newClient(t, host(5))
			p := status.New(c, events.NewFakeRecorder(1), read(g, c, host(0)))
			p.Set(vpoolv1alpha1.ConditionReady, metav1.ConditionFalse, "Pending", "waiting")
			err := p.Patch(context.Background(), tc.err)
			g.Expect(err == tc.err).To(BeTrue(), "the reconcile's error comes back as it was: %v", err)
			got := read(g, c, host(0))
			g.Expect(got.Status.ObservedGeneration).To(Equal(tc.observed))
			g.Expect(status.Find(got, vpoolv1alpha1.ConditionReady)).NotTo(BeNil(), "the condition is written either way")
		})
	}
}

func TestConflictIsJoinedAndSilent(t *testing.T) {
	g := NewWithT(t)
	c := newClient(t, host(1))
	rec := events.NewFakeRecorder(10)
	stale := read(g, c, host(0))
	other := read(g, c, host(0))
	other.Status.BootID = "b2"
	g.Expect(c.Status().Update(context.Background(), other)).To(Succeed())

	p := status.New(c, rec, stale)
	p.Set(vpoolv1alpha1.ConditionReady, metav1.ConditionFalse, "Fencing", "fencing")
	p.Eventf(corev1.EventTypeNormal, "Fencing", "Fencing", "fencing")
	reconcileErr := errors.New("BMC timeout")
	err := p.Patch(context.Background(), reconcileErr)
	g.Expect(apierrors.IsConflict(err)).To(BeTrue(), "%v", err)
	g.Expect(errors.Is(err, reconcileErr)).To(BeTrue())
	g.Expect(drained(rec)).To(BeEmpty(), "a decision not recorded is not announced")
	g.Expect(read(g, c, host(0)).Status.BootID).To(Equal("b2"))
}

func TestWriteNowRebases(t *testing.T) {
	g := NewWithT(t)
	c := newClient(t, host(1))
	rec := events.NewFakeRecorder(10)
	p := status.New(c, rec, read(g, c, host(0)))
	p.Object().Status.Phase = vpoolv1alpha1.HostPhaseFencing
	p.Eventf(corev1.EventTypeNormal, "Fencing", "Fencing", "fencing")
	g.Expect(p.Write(context.Background())).To(Succeed())
	g.Expect(drained(rec)).To(HaveLen(1))
	g.Expect(read(g, c, host(0)).Status.Phase).To(Equal(vpoolv1alpha1.HostPhaseFencing), "recorded before the action")
	g.Expect(p.Before().Status.Phase).To(Equal(vpoolv1alpha1.HostPhaseFencing))

	// The deferred write after it is based on what Write wrote.
	p.Object().Status.Phase = vpoolv1alpha1.HostPhaseFenced
	g.Expect(p.Patch(context.Background(), nil)).To(Succeed())
	got := read(g, c, host(0))
	g.Expect(got.Status.Phase).To(Equal(vpoolv1alpha1.HostPhaseFenced))
	g.Expect(got.Status.ObservedGeneration).To(Equal(int64(1)))
}

// Two controllers each own a part of a Pool's status; neither drops the other's.
var (
	counts = status.Part[*vpoolv1alpha1.Pool]{
		Fields:     func(dst, src *vpoolv1alpha1.Pool) { dst.Status.Hosts = src.Status.Hosts },
		Conditions: []string{vpoolv1alpha1.ConditionReady},
	}
	restored = status.Part[*vpoolv1alpha1.Pool]{
		Fields:     func(dst, src *vpoolv1alpha1.Pool) { dst.Status.Restore = src.Status.Restore },
		Conditions: []string{vpoolv1alpha1.PoolRestored},
	}
)

func pool() *vpoolv1alpha1.Pool {
	return &vpoolv1alpha1.Pool{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p", Generation: 1}}
}

func TestPartsWriteOnlyTheirOwn(t *testing.T) {
	g := NewWithT(t)
	c := newClient(t, pool())
	ctx := context.Background()

	a := status.New(c, events.NewFakeRecorder(1), read(g, c, pool())).Owning(counts)
	b := status.New(c, events.NewFakeRecorder(1), read(g, c, pool())).Owning(restored).RetryingConflicts(c)
	a.Object().Status.Hosts.Live = 2
	a.Set(vpoolv1alpha1.ConditionReady, metav1.ConditionTrue, "MasterLive", "ok")
	b.Object().Status.Hosts.Live = 99 // not b's: never written by b
	b.Object().Status.Restore = &vpoolv1alpha1.RestoreStatus{Backup: "bk"}
	b.Set(vpoolv1alpha1.PoolRestored, metav1.ConditionTrue, "Restored", "done")
	b.Set(vpoolv1alpha1.ConditionReady, metav1.ConditionFalse, "NotMine", "not b's")

	g.Expect(a.Patch(ctx, nil)).To(Succeed())
	// b read before a wrote: its write conflicts and is laid over a fresh read.
	g.Expect(b.Patch(ctx, nil)).To(Succeed())

	got := read(g, c, pool())
	g.Expect(got.Status.Hosts.Live).To(Equal(int32(2)))
	g.Expect(got.Status.Restore).NotTo(BeNil())
	g.Expect(status.Find(got, vpoolv1alpha1.ConditionReady).Reason).To(Equal("MasterLive"))
	g.Expect(status.IsTrue(got, vpoolv1alpha1.PoolRestored)).To(BeTrue())
	g.Expect(got.Status.ObservedGeneration).To(BeZero(), "neither part owns observedGeneration")

	// Without the retry, a stale part write is a conflict.
	stale := status.New(c, events.NewFakeRecorder(1), pool()).Owning(counts)
	stale.Before().ResourceVersion = "1"
	stale.Object().Status.Hosts.Live = 3
	g.Expect(apierrors.IsConflict(stale.Patch(ctx, nil))).To(BeTrue())
}

func TestProgress(t *testing.T) {
	g := NewWithT(t)
	h := host(2)
	status.SetProgress(h, status.Progress{Reconciling: true, Reason: "Fencing", Message: "powering off"})
	g.Expect(status.IsTrue(h, status.Reconciling)).To(BeTrue())
	status.SetProgress(h, status.Progress{Reconciling: true, Stalled: true, Reason: "BMCUnauthorized"})
	g.Expect(status.Find(h, status.Reconciling)).To(BeNil())
	g.Expect(status.Find(h, status.Stalled)).To(HaveField("Reason", "BMCUnauthorized"))
	status.SetProgress(h, status.Progress{})
	g.Expect(h.Status.Conditions).To(BeEmpty())
	g.Expect(status.ProgressOf(nil, true, false).Reason).To(Equal(status.ReasonReconciling))
	g.Expect(status.Reconciling).To(Equal(vpoolv1alpha1.ConditionReconciling))
	g.Expect(status.Stalled).To(Equal(vpoolv1alpha1.ConditionStalled))
}
