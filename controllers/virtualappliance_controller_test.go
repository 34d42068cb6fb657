package controllers_test

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/controllers"
	"github.com/poolkeeper/poolkeeper/internal/agent"
	"github.com/poolkeeper/poolkeeper/internal/placement"
)

func createAppliance(t *testing.T, ns, pool, name string, delay time.Duration) {
	t.Helper()
	app := &vpoolv1alpha1.VirtualAppliance{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	app.Spec.PoolRef.Name = pool
	app.Spec.StartDelay = &metav1.Duration{Duration: delay}
	if err := k8s.Create(context.Background(), app); err != nil {
		t.Fatal(err)
	}
}

func getAppliance(g Gomega, ns, name string) *vpoolv1alpha1.VirtualAppliance {
	app := &vpoolv1alpha1.VirtualAppliance{}
	g.Expect(k8s.Get(context.Background(), key(ns, name), app)).To(Succeed())
	return app
}

func inAppliance(app string, startOrder int32) func(*vpoolv1alpha1.VirtualMachine) {
	return func(vm *vpoolv1alpha1.VirtualMachine) {
		vm.Spec.ApplianceRef = &vpoolv1alpha1.LocalObjectReference{Name: app}
		vm.Spec.StartOrder = startOrder
	}
}

// scheduled is a VM's Scheduled condition.
func scheduled(ns, name string) func(g Gomega) *metav1.Condition {
	return func(g Gomega) *metav1.Condition {
		return meta.FindStatusCondition(getVM(g, ns, name).Status.Conditions, vpoolv1alpha1.VMScheduled)
	}
}

func condition(reason string, msg any) OmegaMatcher {
	return And(HaveField("Status", metav1.ConditionFalse), HaveField("Reason", reason), HaveField("Message", msg))
}

// A vApp of three VMs in two start-order groups with startDelay 30s: the
// second group is not placed while a VM of the first does not run, then not
// before the operator's clock is 30s past the first group's last start; the
// vApp lists its members and is Ready once all run.
func TestApplianceStartsGroupsAfterStartDelay(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ns := newNamespace(t)
	// A long heartbeat timeout: the fake clock jumps while agents renew.
	createPool(t, ns, "p", poolOpts{timeout: 10 * time.Minute})
	clk := clocktesting.NewFakeClock(time.Now())
	startManager(t, ns, controllers.Options{Clock: clk})
	drivers := map[string]*bootingDriver{}
	for _, h := range []string{"h1", "h2"} {
		createHost(t, ns, "p", h)
		drivers[h] = &bootingDriver{SimDriver: agent.NewSimDriver(), booting: map[string]bool{"db-2": true}}
		startAgentConfig(t, agent.Config{Namespace: ns, Host: h, Interval: interval, Driver: drivers[h]})
	}
	for _, h := range []string{"h1", "h2"} {
		g.Eventually(phaseOf(ns, h), wait, poll).Should(Equal(vpoolv1alpha1.HostPhaseLive))
	}
	createAppliance(t, ns, "p", "shop", 30*time.Second)
	createVM(t, ns, "p", "db-1", inAppliance("shop", 0))
	createVM(t, ns, "p", "db-2", inAppliance("shop", 0))
	createVM(t, ns, "p", "web", inAppliance("shop", 10))

	// db-1 runs, db-2 is still booting: web waits for the whole first group.
	g.Eventually(runningOn(ns, "db-1"), wait, poll).ShouldNot(BeEmpty())
	g.Eventually(scheduled(ns, "web"), wait, poll).Should(condition(placement.ReasonWaitingForAppliance,
		"vApp shop: waiting for its VMs with startOrder 0 to run"))
	g.Eventually(func(g Gomega) []vpoolv1alpha1.ApplianceMember { return getAppliance(g, ns, "shop").Status.Members }, wait, poll).Should(
		HaveExactElements(
			And(HaveField("Name", "db-1"), HaveField("StartOrder", int32(0)), HaveField("PowerState", vpoolv1alpha1.PowerRunning),
				HaveField("RunningSince", Not(BeNil()))),
			And(HaveField("Name", "db-2"), HaveField("StartOrder", int32(0)), HaveField("RunningSince", BeNil())),
			And(HaveField("Name", "web"), HaveField("StartOrder", int32(10)), HaveField("ResidentOn", BeEmpty()))))
	g.Eventually(func(g Gomega) *vpoolv1alpha1.VirtualApplianceStatus { return &getAppliance(g, ns, "shop").Status }, wait, poll).Should(And(
		HaveField("MemberCount", BeEquivalentTo(3)),
		HaveField("Conditions", ContainElements(
			condition(controllers.ReasonApplianceStarting, And(ContainSubstring("1 of 3 members that should run are running"),
				ContainSubstring("db-2 (startOrder 0"), ContainSubstring("web (startOrder 10, WaitingForAppliance)"))),
			And(HaveField("Type", vpoolv1alpha1.ConditionReconciling), HaveField("Status", metav1.ConditionTrue))))))
	g.Consistently(func(g Gomega) string { return getVM(g, ns, "web").Status.ResidentOn }, time.Second, poll).Should(BeEmpty())

	// db-2 runs: web waits startDelay from now on the operator's clock.
	started := clk.Now()
	for _, d := range drivers {
		d.letGo("db-2")
	}
	g.Eventually(runningOn(ns, "db-2"), wait, poll).ShouldNot(BeEmpty())
	deadline := started.Truncate(time.Microsecond).Add(30 * time.Second)
	g.Eventually(scheduled(ns, "web"), wait, poll).Should(condition(placement.ReasonWaitingForAppliance,
		"vApp shop: its VMs with startOrder 0 run; waiting startDelay 30s, until "+deadline.UTC().Format("2006-01-02T15:04:05.000Z07:00")))
	g.Expect(getAppliance(g, ns, "shop").Status.Members[1].RunningSince.Time).To(BeTemporally("==", started.Truncate(time.Microsecond)))
	g.Consistently(func(g Gomega) string { return getVM(g, ns, "web").Status.ResidentOn }, time.Second, poll).Should(BeEmpty())

	// A microsecond short of the delay, web still waits.
	clk.Step(deadline.Sub(clk.Now()) - time.Microsecond)
	poke(g, ns)
	g.Consistently(func(g Gomega) string { return getVM(g, ns, "web").Status.ResidentOn }, time.Second, poll).Should(BeEmpty())

	clk.Step(time.Microsecond)
	poke(g, ns)
	g.Eventually(runningOn(ns, "web"), wait, poll).ShouldNot(BeEmpty())
	g.Eventually(func(g Gomega) *metav1.Condition {
		return meta.FindStatusCondition(getAppliance(g, ns, "shop").Status.Conditions, vpoolv1alpha1.ConditionReady)
	}, wait, poll).Should(And(HaveField("Status", metav1.ConditionTrue), HaveField("Reason", controllers.ReasonApplianceRunning),
		HaveField("Message", "3 of 3 members that should run are running (3 members)")))
	app := getAppliance(g, ns, "shop")
	g.Expect(meta.FindStatusCondition(app.Status.Conditions, vpoolv1alpha1.ConditionReconciling)).To(BeNil())
	g.Expect(app.Status.ObservedGeneration).To(Equal(app.Generation))
	g.Eventually(eventNotes(ns, "shop", controllers.ReasonApplianceRunning), wait, poll).Should(HaveLen(1))
}

// A VM naming a vApp that does not exist, or one of another pool, does not
// start and says why; the vApp says which VMs of another pool name it. Once
// the vApp exists, the VM starts. A VM without a vApp is not held back.
func TestApplianceReferences(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ns := newNamespace(t)
	createPool(t, ns, "p", poolOpts{})
	createPool(t, ns, "q", poolOpts{})
	startManager(t, ns, controllers.Options{})
	createHost(t, ns, "p", "h1")
	startAgent(t, ns, "h1", interval, nil)
	g.Eventually(phaseOf(ns, "h1"), wait, poll).Should(Equal(vpoolv1alpha1.HostPhaseLive))

	createAppliance(t, ns, "q", "other", 0)
	createVM(t, ns, "p", "lost", inAppliance("later", 0))
	createVM(t, ns, "p", "stray", inAppliance("other", 0))
	createVM(t, ns, "p", "plain", func(vm *vpoolv1alpha1.VirtualMachine) { vm.Spec.StartOrder = 10 })
	g.Eventually(runningOn(ns, "plain"), wait, poll).Should(Equal("h1"))
	g.Eventually(scheduled(ns, "lost"), wait, poll).Should(condition(placement.ReasonApplianceNotFound,
		`spec.applianceRef.name: VirtualAppliance "later" not found in pool p; the VM starts once it exists`))
	g.Eventually(scheduled(ns, "stray"), wait, poll).Should(condition(placement.ReasonApplianceInOtherPool,
		`spec.applianceRef.name: VirtualAppliance "other" belongs to pool "q", not "p"`))
	g.Eventually(func(g Gomega) *vpoolv1alpha1.VirtualApplianceStatus { return &getAppliance(g, ns, "other").Status }, wait, poll).Should(And(
		HaveField("Members", BeEmpty()),
		HaveField("Conditions", ContainElements(
			condition(controllers.ReasonApplianceMembersInOtherPool,
				"VMs of another pool name this vApp of pool q in spec.applianceRef and do not start: stray"),
			And(HaveField("Type", vpoolv1alpha1.ConditionStalled), HaveField("Status", metav1.ConditionTrue))))))
	g.Eventually(eventsOf(ns, "other"), wait, poll).Should(ContainElement(controllers.ReasonApplianceMembersInOtherPool))

	createAppliance(t, ns, "p", "later", 0)
	g.Eventually(runningOn(ns, "lost"), wait, poll).Should(Equal("h1"))
	g.Eventually(func(g Gomega) []string {
		var names []string
		for _, m := range getAppliance(g, ns, "later").Status.Members {
			names = append(names, m.Name)
		}
		return names
	}, wait, poll).Should(Equal([]string{"lost"}))
	g.Expect(getVM(g, ns, "stray").Status.ResidentOn).To(BeEmpty())
}

// A vApp's spec is checked at apply: startDelay within 0s to 1h, poolRef
// immutable; startDelay defaults to 0s.
func TestVirtualApplianceValidation(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ns := newNamespace(t)
	ctx := context.Background()
	for delay, msg := range map[string]string{"-1s": "startDelay must not be negative", "61m": "startDelay must be at most 1h"} {
		d, err := time.ParseDuration(delay)
		g.Expect(err).NotTo(HaveOccurred())
		app := &vpoolv1alpha1.VirtualAppliance{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "bad"},
			Spec: vpoolv1alpha1.VirtualApplianceSpec{PoolRef: vpoolv1alpha1.PoolReference{Name: "p"}, StartDelay: &metav1.Duration{Duration: d}}}
		g.Expect(k8s.Create(ctx, app)).To(MatchError(ContainSubstring(msg)), delay)
	}
	app := &vpoolv1alpha1.VirtualAppliance{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "good"},
		Spec: vpoolv1alpha1.VirtualApplianceSpec{PoolRef: vpoolv1alpha1.PoolReference{Name: "p"}}}
	g.Expect(k8s.Create(ctx, app)).To(Succeed())
	g.Expect(app.Spec.StartDelay).To(HaveValue(Equal(metav1.Duration{})))
	patch := client.MergeFrom(app.DeepCopy())
	app.Spec.PoolRef.Name = "q"
	g.Expect(k8s.Patch(ctx, app, patch)).To(MatchError(ContainSubstring("poolRef is immutable")))
	app = getAppliance(g, ns, "good")
	patch = client.MergeFrom(app.DeepCopy())
	app.Spec.StartDelay = &metav1.Duration{Duration: time.Hour}
	g.Expect(k8s.Patch(ctx, app, patch)).To(Succeed())
}

// HA restart of a vApp: its host dies with both groups on it; once the host
// is fenced and the VMs reset, the first group is restarted elsewhere, and
// the second only startDelay after the first runs again (counted from the
// new run, not the one before the failure).
func TestApplianceRestartAfterHostFailureKeepsItsDelay(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ns := newNamespace(t)
	const delay = 2 * time.Second
	createPool(t, ns, "p", poolOpts{ha: true, timeout: timeout})
	for _, h := range []string{"h1", "h2", "h3"} {
		createHost(t, ns, "p", h)
	}
	startManager(t, ns, controllers.Options{})
	agents := map[string]*runningAgent{}
	for _, h := range []string{"h1", "h2", "h3"} {
		agents[h] = startAgent(t, ns, h, interval, nil)
	}
	for _, h := range []string{"h1", "h2", "h3"} {
		g.Eventually(phaseOf(ns, h), wait, poll).Should(Equal(vpoolv1alpha1.HostPhaseLive))
	}
	createAppliance(t, ns, "p", "shop", delay)
	createVM(t, ns, "p", "db", inAppliance("shop", 0), withAffinity("h2"))
	createVM(t, ns, "p", "web", inAppliance("shop", 10), withAffinity("h2"))
	g.Eventually(runningOn(ns, "web"), wait, poll).Should(Equal("h2"))
	member := func(g Gomega, name string) vpoolv1alpha1.ApplianceMember {
		for _, m := range getAppliance(g, ns, "shop").Status.Members {
			if m.Name == name {
				return m
			}
		}
		g.Expect(name).To(BeEmpty(), "not a member")
		return vpoolv1alpha1.ApplianceMember{}
	}
	g.Eventually(func(g Gomega) *metav1.MicroTime { return member(g, "web").RunningSince }, wait, poll).ShouldNot(BeNil())
	dbBefore := member(g, "db").RunningSince.Time
	g.Expect(member(g, "web").RunningSince.Time.Sub(dbBefore)).To(BeNumerically(">=", delay), "first start")

	agents["h2"].Kill()
	g.Eventually(func(g Gomega) *vpoolv1alpha1.VMReset { return getVM(g, ns, "web").Status.LastReset }, 2*wait, poll).ShouldNot(BeNil())
	g.Eventually(runningOn(ns, "db"), wait, poll).Should(BeElementOf("h1", "h3"))
	g.Eventually(runningOn(ns, "web"), wait, poll).Should(BeElementOf("h1", "h3"))
	g.Eventually(func(g Gomega) *metav1.MicroTime { return member(g, "web").RunningSince }, wait, poll).ShouldNot(BeNil())
	db, web := member(g, "db"), member(g, "web")
	g.Expect(db.RunningSince.Time).To(BeTemporally(">", dbBefore.Add(timeout)), "the record of db's new run")
	g.Expect(web.RunningSince.Time.Sub(db.RunningSince.Time)).To(BeNumerically(">=", delay),
		"web restarted startDelay after db runs again")
}
