package controllers_test

import (
	"context"
	"testing"

	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/controllers"
	"github.com/poolkeeper/poolkeeper/internal/election"
)

// poolGone polls whether a Pool is gone from the API server.
func poolGone(ns, name string) func() bool {
	return func() bool {
		return apierrors.IsNotFound(k8s.Get(context.Background(), key(ns, name), &vpoolv1alpha1.Pool{}))
	}
}

// kubectl delete vpool: while the pool has hosts the deletion waits and says
// why; once the hosts are forgotten (kubectl delete vhost), the Pool goes
// with its VMs, VDIs and SRs, and its PoolBackups stay.
func TestDeletePoolWaitsForItsHosts(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	populatedPool(t, ns)
	createKey(t, ns, "k", backupKey)
	startManager(t, ns, controllers.Options{})
	completedBackup(t, g, ns)
	g.Eventually(func(g Gomega) []string { return getPool(g, ns, "p").Finalizers }, wait, poll).Should(
		ContainElement(vpoolv1alpha1.FinalizerPoolMembers))

	g.Expect(k8s.Delete(ctx, getPool(g, ns, "p"))).To(Succeed())
	g.Eventually(poolCondition(ns, vpoolv1alpha1.ConditionReady), wait, poll).Should(And(
		HaveField("Status", metav1.ConditionFalse), HaveField("Reason", controllers.ReasonDeletionWaiting),
		HaveField("Message", "deletion waits: the pool still has hosts h1, h2 (2 in all); forget them first "+
			"(kubectl delete vhost ...: each is forgotten once it is down)")))
	g.Eventually(eventsOf(ns, "p"), wait, poll).Should(ContainElement(controllers.ReasonDeletionWaiting))
	g.Expect(getVM(g, ns, "vm-0").DeletionTimestamp).To(BeNil(), "nothing is deleted while the pool has hosts")

	g.Expect(k8s.DeleteAllOf(ctx, &vpoolv1alpha1.Host{}, inNS(ns))).To(Succeed())
	g.Eventually(poolGone(ns, "p"), wait, poll).Should(BeTrue())
	for _, l := range []client.ObjectList{&vpoolv1alpha1.VirtualMachineList{}, &vpoolv1alpha1.VirtualDiskList{},
		&vpoolv1alpha1.StorageRepositoryList{}, &vpoolv1alpha1.HostList{}} {
		g.Expect(k8s.List(ctx, l, inNS(ns))).To(Succeed())
		g.Expect(l).To(HaveField("Items", BeEmpty()), "%T", l)
	}
	g.Expect(getBackup(g, ns, "b").DeletionTimestamp).To(BeNil(), "a PoolBackup outlives its pool")
	g.Eventually(eventsOf(ns, "p"), wait, poll).Should(ContainElement(controllers.ReasonMembersDeleted))
	g.Expect(eventMessages(g, ns, "p", controllers.ReasonMembersDeleted)).To(ConsistOf(
		"Normal: the pool has no host left: deleted 4 VirtualMachines, 4 VirtualDisks, 2 StorageRepositories; its 1 PoolBackups are kept"))
}

// The pool is lost with its master: agents killed, hosts deleted. The master
// is forgotten last, once it is fenced and alone (nobody is left to take
// over), and then the Pool goes.
func TestDeletePoolAfterItsMasterDied(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ctx := context.Background()
	f := newPoolFixture(t, poolOpts{ha: true, timeout: timeout, master: "h1"}, "h1", "h2")
	g.Eventually(masterAndEpoch(f.ns), wait, poll).Should(Equal([]interface{}{"h1", int64(1)}))
	f.agents["h1"].Kill()
	f.agents["h2"].Kill()
	g.Expect(k8s.Delete(ctx, getPool(g, f.ns, "p"))).To(Succeed())
	g.Expect(k8s.DeleteAllOf(ctx, &vpoolv1alpha1.Host{}, inNS(f.ns))).To(Succeed())
	g.Eventually(poolGone(f.ns, "p"), wait, poll).Should(BeTrue())
	g.Expect(eventReasons(g, f.ns, "p")).To(ContainElement(election.ReasonReleased))
}
