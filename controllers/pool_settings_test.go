package controllers_test

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/controllers"
)

// eventMessages lists the messages of the events of one reason about an object.
func eventMessages(g Gomega, ns, name, reason string) []string {
	list := &corev1.EventList{}
	g.Expect(k8s.List(context.Background(), list, client.InNamespace(ns))).To(Succeed())
	var msgs []string
	for _, e := range list.Items {
		if e.InvolvedObject.Name == name && e.Reason == reason {
			msgs = append(msgs, e.Type+": "+e.Message)
		}
	}
	return msgs
}

// pool-restore-database brings back the pool's own settings: a Pool restored
// with an empty spec takes HA, master and default SR from the backup (in
// status.restoredSettings, never in its spec), and every controller uses
// them; a setting in the restoring Pool's own spec wins, also one set later.
func TestRestoreBringsBackPoolSettings(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	p := &vpoolv1alpha1.Pool{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "p"}}
	p.Spec.HA = vpoolv1alpha1.HASpec{Enabled: true, HostFailuresToTolerate: 1}
	p.Spec.HeartbeatTimeout = &metav1.Duration{Duration: 45 * time.Second}
	p.Spec.Master, p.Spec.DefaultStorageRepository = "h2", "nfs"
	g.Expect(k8s.Create(ctx, p)).To(Succeed())
	createSR(t, ns, "p", "nfs", "")
	createHost(t, ns, "p", "h1")
	createHost(t, ns, "p", "h2")
	createKey(t, ns, "k", backupKey)
	startManager(t, ns, controllers.Options{})
	completedBackup(t, g, ns)
	losePool(t, g, ns)

	// Its own heartbeatTimeout; HA, master and default SR left unset.
	p2 := &vpoolv1alpha1.Pool{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "p2"}}
	p2.Spec.HeartbeatTimeout = &metav1.Duration{Duration: timeout}
	p2.Spec.RestoreFrom = &vpoolv1alpha1.RestoreSource{BackupName: "b"}
	g.Expect(k8s.Create(ctx, p2)).To(Succeed())
	g.Eventually(restored(ns, "p2"), wait, poll).Should(And(HaveField("Status", metav1.ConditionTrue),
		HaveField("Message", ContainSubstring("pool settings taken from the backup, where spec leaves them unset "+
			"(status.restoredSettings): ha (enabled, tolerating 1 host failure), master h2, defaultStorageRepository nfs"))))
	p2 = getPool(g, ns, "p2")
	g.Expect(p2.Status.RestoredSettings).To(Equal(&vpoolv1alpha1.PoolSettings{
		HA: &vpoolv1alpha1.HASpec{Enabled: true, HostFailuresToTolerate: 1}, Master: "h2", DefaultStorageRepository: "nfs"}))
	g.Expect(p2.Spec.HA.Enabled).To(BeFalse(), "the controller never writes spec")
	g.Expect(p2.Spec.Master).To(BeEmpty())

	startAgent(t, ns, "h1", interval, nil)
	startAgent(t, ns, "h2", interval, nil)
	g.Eventually(func(g Gomega) string { return getPool(g, ns, "p2").Status.Master }, wait, poll).Should(Equal("h2"),
		"the backup's master preference")
	p2 = getPool(g, ns, "p2")
	g.Expect(p2.Status.EffectiveHeartbeatTimeout.Duration).To(Equal(timeout), "the restoring Pool's own setting wins")
	g.Expect(meta.FindStatusCondition(p2.Status.Conditions, vpoolv1alpha1.PoolFencingAllowed).Reason).NotTo(
		Equal(controllers.ReasonHADisabled), "HA is on, from the backup")
	g.Eventually(func(g Gomega) *metav1.Condition {
		return meta.FindStatusCondition(getPool(g, ns, "p2").Status.Conditions, vpoolv1alpha1.PoolDefaultStorageRepositoryValid)
	}, wait, poll).Should(And(HaveField("Status", metav1.ConditionTrue), HaveField("Message",
		`status.restoredSettings.defaultStorageRepository: StorageRepository "nfs" is shared: usable from every host`)))

	// A setting written in spec later wins over the restored one.
	patch := client.MergeFrom(p2.DeepCopy())
	p2.Spec.Master = "h1"
	g.Expect(k8s.Patch(ctx, p2, patch)).To(Succeed())
	g.Eventually(func(g Gomega) string { return getPool(g, ns, "p2").Status.Master }, wait, poll).Should(Equal("h1"))
}

// Lowering heartbeatTimeout under running agents is flagged: a Warning
// event on the Pool says what the new timeout asks of every agent.
func TestLoweringHeartbeatTimeoutIsAnnounced(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	createPool(t, ns, "p", poolOpts{timeout: time.Minute})
	startManager(t, ns, controllers.Options{})
	g.Eventually(func(g Gomega) *metav1.Duration { return getPool(g, ns, "p").Status.EffectiveHeartbeatTimeout }, wait, poll).Should(
		Equal(&metav1.Duration{Duration: time.Minute}))

	p := getPool(g, ns, "p")
	patch := client.MergeFrom(p.DeepCopy())
	p.Spec.HeartbeatTimeout = &metav1.Duration{Duration: 12 * time.Second}
	g.Expect(k8s.Patch(ctx, p, patch)).To(Succeed())
	g.Eventually(func(g Gomega) []string {
		return eventMessages(g, ns, "p", controllers.ReasonHeartbeatTimeoutChanged)
	}, wait, poll).Should(ConsistOf("Warning: the heartbeat timeout in force went down from 1m0s to 12s (spec.heartbeatTimeout): " +
		"every agent must now renew its heartbeat at least every 3s (a quarter of it); running agents adapt at their next " +
		"renewal, and a host silent for 12s is Unreachable"))
	g.Expect(getPool(g, ns, "p").Status.EffectiveHeartbeatTimeout.Duration).To(Equal(12 * time.Second))
}
