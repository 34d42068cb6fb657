package controllers

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/tools/events"
	clocktesting "k8s.io/utils/clock/testing"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/internal/fencing"
	"github.com/poolkeeper/poolkeeper/internal/liveness"
	"github.com/poolkeeper/poolkeeper/internal/redfish"
	"github.com/poolkeeper/poolkeeper/internal/status"
	"github.com/poolkeeper/poolkeeper/internal/testutil"
)

// refusingBMC refuses every login, as a BMC whose password was rotated.
type refusingBMC struct{ logins *int }

func (b refusingBMC) PowerState(context.Context) (redfish.PowerState, error) {
	*b.logins++
	return "", fmt.Errorf("GET /redfish/v1/Systems/h2: %w", redfish.ErrUnauthorized)
}

func (b refusingBMC) ForceOff(context.Context) error { return errors.New("not reached") }

// lossyRig is a Host reconciler over a fake API server that loses the
// first status writes of Hosts to conflicts, with a BMC that refuses every
// login, for host h2 of an HA pool p fenced with Redfish.
type lossyRig struct {
	r      *HostReconciler
	c      client.Client
	clk    *clocktesting.FakeClock
	req    ctrl.Request
	logins int
}

func newLossyRig(lose int, phase vpoolv1alpha1.HostPhase) *lossyRig {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	pool := &vpoolv1alpha1.Pool{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p"}}
	pool.Spec.HA.Enabled = true
	pool.Spec.HeartbeatTimeout = &metav1.Duration{Duration: 2 * time.Second}
	host := &vpoolv1alpha1.Host{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "h2",
		Finalizers: []string{vpoolv1alpha1.FinalizerHostForget}}}
	host.Spec.PoolRef.Name = "p"
	host.Spec.Fencing.Method = vpoolv1alpha1.FencingRedfish
	host.Spec.Fencing.Redfish = &vpoolv1alpha1.RedfishFencing{Endpoint: "https://bmc.example", SystemID: "h2",
		CredentialsSecretRef: vpoolv1alpha1.LocalObjectReference{Name: "bmc"}}
	host.Status.Phase = phase
	if phase == vpoolv1alpha1.HostPhaseFencing {
		host.Status.Fencing = &vpoolv1alpha1.FencingStatus{Method: vpoolv1alpha1.FencingRedfish,
			StartedAt: &metav1.Time{Time: now.Add(-time.Second)}}
	}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "bmc"},
		Data: map[string][]byte{"username": []byte("admin"), "password": []byte("rotated-on-the-bmc-only")}}
	rig := &lossyRig{clk: clocktesting.NewFakeClock(now), req: ctrl.Request{NamespacedName: client.ObjectKeyFromObject(host)}}
	rig.c = fake.NewClientBuilder().WithScheme(testutil.Scheme).WithObjects(pool, host, secret).
		WithStatusSubresource(pool, host).
		WithIndex(&vpoolv1alpha1.Host{}, IndexPoolRef, func(o client.Object) []string {
			return []string{o.(*vpoolv1alpha1.Host).Spec.PoolRef.Name}
		}).
		WithInterceptorFuncs(interceptor.Funcs{SubResourcePatch: func(ctx context.Context, c client.Client, sub string,
			obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
			if _, ok := obj.(*vpoolv1alpha1.Host); ok && lose > 0 {
				lose--
				return apierrors.NewConflict(schema.GroupResource{Group: "vpool.poolkeeper.io", Resource: "hosts"}, obj.GetName(),
					errors.New("the object has been modified"))
			}
			return c.SubResource(sub).Patch(ctx, obj, patch, opts...)
		}}).Build()
	rig.r = &HostReconciler{Client: rig.c, APIReader: rig.c, Clock: rig.clk, Tracker: liveness.NewTracker(rig.clk),
		Recorder: events.NewFakeRecorder(100),
		BMC:      func(redfish.Config) (BMC, error) { return refusingBMC{logins: &rig.logins}, nil }}
	return rig
}

// reconcileLosingWrite reconciles once, asking the BMC, with the status
// write lost, then lets 200ms pass.
func (rig *lossyRig) reconcileLosingWrite(g Gomega) {
	_, err := rig.r.Reconcile(context.Background(), rig.req)
	g.Expect(apierrors.IsConflict(err)).To(BeTrue(), "the status write is lost, got %v", err)
	g.Expect(rig.logins).To(Equal(1))
	rig.clk.Step(200 * time.Millisecond)
}

func (rig *lossyRig) host(g Gomega) *vpoolv1alpha1.Host {
	h := &vpoolv1alpha1.Host{}
	g.Expect(rig.c.Get(context.Background(), rig.req.NamespacedName, h)).To(Succeed())
	return h
}

// A fence stopped on credentials the BMC refuses is stopped only once the
// status that says so is written: when that write is lost to a conflict,
// the next reconcile tries again and records it, instead of waiting in
// silence for a change that nobody was told to make.
func TestFenceStallHoldsOnlyOnceRecorded(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	rig := newLossyRig(1, vpoolv1alpha1.HostPhaseFencing)
	rig.reconcileLosingWrite(g)
	g.Expect(rig.host(g).Status.Fencing.Attempts).To(BeZero())

	res, err := rig.r.Reconcile(ctx, rig.req)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(rig.logins).To(Equal(2), "the refusal nobody was told of is met again")
	g.Expect(res.RequeueAfter).To(Equal(StallRecheck))
	h := rig.host(g)
	g.Expect(h.Status.Phase).To(Equal(vpoolv1alpha1.HostPhaseFencing))
	g.Expect(h.Status.Fencing.Attempts).To(BeEquivalentTo(1))
	g.Expect(h.Status.Fencing.LastError).To(ContainSubstring("unauthorized"))
	g.Expect(status.Find(h, vpoolv1alpha1.HostFencingReady)).To(And(
		HaveField("Status", metav1.ConditionFalse), HaveField("Reason", ReasonBMCUnauthorized)))
	g.Expect(status.Find(h, vpoolv1alpha1.ConditionStalled)).To(HaveField("Reason", ReasonBMCUnauthorized))

	rig.clk.Step(time.Second)
	res, err = rig.r.Reconcile(ctx, rig.req)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(rig.logins).To(Equal(2), "once recorded, the refused credentials are not tried again")
	g.Expect(res.RequeueAfter).To(Equal(StallRecheck))
}

// The readiness check of a Redfish host is said in FencingReady even when
// the status write that first carried it is lost to a conflict: the next
// reconcile sets it again from the check, without asking the BMC again
// before the recheck.
func TestFencingReadySurvivesALostWrite(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	rig := newLossyRig(1, vpoolv1alpha1.HostPhasePending)
	rig.reconcileLosingWrite(g)

	res, err := rig.r.Reconcile(ctx, rig.req)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(rig.logins).To(Equal(1), "checked again only after the recheck")
	g.Expect(status.Find(rig.host(g), vpoolv1alpha1.HostFencingReady)).To(And(
		HaveField("Status", metav1.ConditionFalse), HaveField("Reason", ReasonBMCUnauthorized)))
	g.Expect(res.RequeueAfter).To(Equal(fencing.BMCRecheckFailed - 200*time.Millisecond))
}
