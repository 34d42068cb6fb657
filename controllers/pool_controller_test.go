package controllers_test

import (
	"context"
	"testing"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/controllers"
	"github.com/poolkeeper/poolkeeper/internal/election"
)

func poolCondition(ns, typ string) func(g Gomega) *metav1.Condition {
	return func(g Gomega) *metav1.Condition {
		c := meta.FindStatusCondition(getPool(g, ns, "p").Status.Conditions, typ)
		g.Expect(c).NotTo(BeNil())
		return c
	}
}

func masterAndEpoch(ns string) func(g Gomega) []interface{} {
	return func(g Gomega) []interface{} {
		p := getPool(g, ns, "p")
		return []interface{}{p.Status.Master, p.Status.Epoch}
	}
}

// The master dies with HA on: once it is fenced a new master is elected, the
// epoch goes up by one, and every member follows the new epoch.
func TestMasterDiesHAOn(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	f := newPoolFixture(t, poolOpts{ha: true, timeout: timeout, master: "h1"}, "h1", "h2", "h3")
	g.Eventually(masterAndEpoch(f.ns), wait, poll).Should(Equal([]interface{}{"h1", int64(1)}))
	g.Eventually(poolCondition(f.ns, vpoolv1alpha1.PoolMembersRecovered), wait, poll).Should(HaveField("Status", metav1.ConditionTrue))

	f.agents["h1"].Kill()
	g.Eventually(masterAndEpoch(f.ns), wait, poll).Should(Equal([]interface{}{"h2", int64(2)}), "the first Live host on the epoch, by name")
	g.Expect(phaseOf(f.ns, "h1")(g)).To(Equal(vpoolv1alpha1.HostPhaseFenced))
	g.Eventually(poolCondition(f.ns, vpoolv1alpha1.PoolMembersRecovered), wait, poll).Should(And(
		HaveField("Status", metav1.ConditionTrue), HaveField("Message", ContainSubstring("epoch 2"))))
	g.Eventually(poolCondition(f.ns, vpoolv1alpha1.PoolMasterAvailable), wait, poll).Should(HaveField("Status", metav1.ConditionTrue))
	g.Expect(getHost(g, f.ns, "h2").Status.Role).To(Equal(vpoolv1alpha1.RoleMaster))
	g.Eventually(eventsOf(f.ns, "p"), wait, poll).Should(ContainElement(election.ReasonHAReplacement))
}

// The master dies with HA off: members wait; a person names a Live member in
// spec.master (pool-emergency-transition-to-master) and it takes over; the old
// master comes back as a member of the new epoch.
func TestMasterDiesHAOffThenTransition(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	f := newPoolFixture(t, poolOpts{timeout: timeout, master: "h1"}, "h1", "h2", "h3")
	g.Eventually(masterAndEpoch(f.ns), wait, poll).Should(Equal([]interface{}{"h1", int64(1)}))

	f.agents["h1"].Kill()
	g.Eventually(poolCondition(f.ns, vpoolv1alpha1.PoolMasterAvailable), wait, poll).Should(And(
		HaveField("Status", metav1.ConditionFalse), HaveField("Reason", election.ReasonWaitPerson),
		HaveField("Message", ContainSubstring("set spec.master"))))
	g.Consistently(masterAndEpoch(f.ns), 2*timeout, poll).Should(Equal([]interface{}{"h1", int64(1)}), "members wait")

	pool := getPool(g, f.ns, "p")
	patch := client.MergeFrom(pool.DeepCopy())
	pool.Spec.Master = "h3"
	g.Expect(k8s.Patch(context.Background(), pool, patch)).To(Succeed())
	g.Eventually(masterAndEpoch(f.ns), wait, poll).Should(Equal([]interface{}{"h3", int64(2)}))
	g.Eventually(poolCondition(f.ns, vpoolv1alpha1.PoolMembersRecovered), wait, poll).Should(HaveField("Status", metav1.ConditionTrue))
	g.Eventually(eventsOf(f.ns, "p"), wait, poll).Should(ContainElement(election.ReasonEmergency))

	// The old master returns: it rejoins as a member and follows epoch 2.
	startAgent(t, f.ns, "h1", interval, nil)
	g.Eventually(func(g Gomega) *vpoolv1alpha1.Host { return getHost(g, f.ns, "h1") }, wait, poll).Should(And(
		HaveField("Status.Phase", vpoolv1alpha1.HostPhaseLive), HaveField("Status.Role", vpoolv1alpha1.RoleMember),
		HaveField("Status.MasterEpoch", int64(2))))
	g.Expect(masterAndEpoch(f.ns)(g)).To(Equal([]interface{}{"h3", int64(2)}))
}

// A planned hand-over between two Live hosts bumps the epoch once.
func TestPlannedHandOver(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	f := newPoolFixture(t, poolOpts{ha: true, timeout: timeout, master: "h1"}, "h1", "h2")
	g.Eventually(masterAndEpoch(f.ns), wait, poll).Should(Equal([]interface{}{"h1", int64(1)}))
	pool := getPool(g, f.ns, "p")
	patch := client.MergeFrom(pool.DeepCopy())
	pool.Spec.Master = "h2"
	g.Expect(k8s.Patch(context.Background(), pool, patch)).To(Succeed())
	g.Eventually(masterAndEpoch(f.ns), wait, poll).Should(Equal([]interface{}{"h2", int64(2)}))
	g.Consistently(masterAndEpoch(f.ns), timeout, poll).Should(Equal([]interface{}{"h2", int64(2)}))
	g.Eventually(func(g Gomega) vpoolv1alpha1.HostRole { return getHost(g, f.ns, "h1").Status.Role }, wait, poll).Should(
		Equal(vpoolv1alpha1.RoleMember))
}

// Forgetting the master waits until another master is in place.
func TestForgetMasterWaitsForNewMaster(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	f := newPoolFixture(t, poolOpts{timeout: timeout, master: "h1"}, "h1", "h2")
	g.Eventually(masterAndEpoch(f.ns), wait, poll).Should(Equal([]interface{}{"h1", int64(1)}))
	f.agents["h1"].Kill()
	h1 := getHost(g, f.ns, "h1")
	patch := client.MergeFrom(h1.DeepCopy())
	h1.Spec.State = vpoolv1alpha1.HostForgotten
	g.Expect(k8s.Patch(context.Background(), h1, patch)).To(Succeed())
	g.Eventually(func(g Gomega) string {
		return meta.FindStatusCondition(getHost(g, f.ns, "h1").Status.Conditions, vpoolv1alpha1.ConditionReady).Reason
	}, wait, poll).Should(Equal("MasterForgetBlocked"))
	g.Expect(phaseOf(f.ns, "h1")(g)).To(Equal(vpoolv1alpha1.HostPhaseFenced))

	pool := getPool(g, f.ns, "p")
	ppatch := client.MergeFrom(pool.DeepCopy())
	pool.Spec.Master = "h2"
	g.Expect(k8s.Patch(context.Background(), pool, ppatch)).To(Succeed())
	g.Eventually(phaseOf(f.ns, "h1"), wait, poll).Should(Equal(vpoolv1alpha1.HostPhaseForgotten))
	g.Expect(masterAndEpoch(f.ns)(g)).To(Equal([]interface{}{"h2", int64(2)}))
}

// The Pool's conditions say what they mean: a local default SR waits for a
// master, a shared one is usable from every host, and the pool tolerates
// "1 host failure".
func TestPoolConditionsWording(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ctx := context.Background()
	f := newPoolFixture(t, poolOpts{ha: true, timeout: timeout}, "h1", "h2")
	g.Eventually(poolCondition(f.ns, vpoolv1alpha1.PoolOvercommitted), wait, poll).Should(And(
		HaveField("Status", metav1.ConditionFalse), HaveField("Message", HaveSuffix("and tolerate 1 host failure"))))
	p := getPool(g, f.ns, "p")
	patch := client.MergeFrom(p.DeepCopy())
	p.Spec.DefaultStorageRepository = "nfs"
	g.Expect(k8s.Patch(ctx, p, patch)).To(Succeed())
	g.Eventually(poolCondition(f.ns, vpoolv1alpha1.PoolDefaultStorageRepositoryValid), wait, poll).Should(And(
		HaveField("Status", metav1.ConditionTrue),
		HaveField("Message", `spec.defaultStorageRepository: StorageRepository "nfs" is shared: usable from every host`)))

	// A pool with no host has no master: its local default SR is not usable yet.
	q := &vpoolv1alpha1.Pool{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: "q"}}
	q.Spec.DefaultStorageRepository = "x-local"
	g.Expect(k8s.Create(ctx, q)).To(Succeed())
	createSR(t, f.ns, "q", "x-local", "x")
	g.Eventually(func(g Gomega) *metav1.Condition {
		return meta.FindStatusCondition(getPool(g, f.ns, "q").Status.Conditions, vpoolv1alpha1.PoolDefaultStorageRepositoryValid)
	}, wait, poll).Should(And(HaveField("Status", metav1.ConditionFalse), HaveField("Reason", controllers.ReasonDefaultSRNotUsable),
		HaveField("Message", `spec.defaultStorageRepository: "x-local" is local to host x and the pool has no master yet`)))
}
