package controllers_test

import (
	"context"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/controllers"
	"github.com/poolkeeper/poolkeeper/internal/agent"
	"github.com/poolkeeper/poolkeeper/internal/placement"
)

func conditionOf(ns, vm, t string) func(g Gomega) *metav1.Condition {
	return func(g Gomega) *metav1.Condition {
		return meta.FindStatusCondition(getVM(g, ns, vm).Status.Conditions, t)
	}
}

func vdiReady(ns, vdi string) func(g Gomega) *metav1.Condition {
	return func(g Gomega) *metav1.Condition {
		return meta.FindStatusCondition(getVDI(g, ns, vdi).Status.Conditions, vpoolv1alpha1.ConditionReady)
	}
}

// eventNotes lists the notes of the events of one reason about an object.
func eventNotes(ns, name, reason string) func(g Gomega) []string {
	return func(g Gomega) []string {
		list := &corev1.EventList{}
		g.Expect(k8s.List(context.Background(), list, inNS(ns))).To(Succeed())
		var notes []string
		for _, e := range list.Items {
			if e.InvolvedObject.Name == name && e.Reason == reason {
				notes = append(notes, e.Message)
			}
		}
		return notes
	}
}

func patchVM(g Gomega, ns, name string, mutate func(*vpoolv1alpha1.VirtualMachine)) {
	vm := getVM(g, ns, name)
	patch := client.MergeFrom(vm.DeepCopy())
	mutate(vm)
	g.Expect(k8s.Patch(context.Background(), vm, patch)).To(Succeed())
}

// Mistaken or hostile references: another pool's VDI, disks on local SRs
// of two hosts, a VDI on a missing SR or another pool's SR, a preferred host
// that does not exist. Nothing is locked or started on them, and each VM and
// VDI says which field is wrong.
func TestHostileReferences(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	f := newPoolFixture(t, poolOpts{ha: true, timeout: timeout, master: "h1"}, "h1", "h2", "h3")
	createPool(t, f.ns, "q", poolOpts{})
	createSR(t, f.ns, "q", "q-nfs", "")
	createSR(t, f.ns, "p", "h2-local", "h2")
	createSR(t, f.ns, "p", "h3-local", "h3")
	createVDI(t, f.ns, "q", "theirs", "q-nfs")
	createVDI(t, f.ns, "p", "on-h2", "h2-local")
	createVDI(t, f.ns, "p", "on-h3", "h3-local")
	createVDI(t, f.ns, "p", "orphan", "missing")
	createVDI(t, f.ns, "p", "crossed", "q-nfs")
	createVDI(t, f.ns, "p", "root", "nfs")
	createVM(t, f.ns, "p", "intruder", withDisk("theirs"))
	createVM(t, f.ns, "p", "split", withDisk("on-h2"), withDisk("on-h3"))
	createVM(t, f.ns, "p", "stray", withDisk("orphan"))
	createVM(t, f.ns, "p", "crosser", withDisk("crossed"))
	createVM(t, f.ns, "p", "wanderer", withDisk("root"), withAffinity("xen-9"))

	g.Eventually(conditionOf(f.ns, "intruder", vpoolv1alpha1.VMScheduled), wait, poll).Should(And(
		HaveField("Status", metav1.ConditionFalse), HaveField("Reason", placement.ReasonDiskInOtherPool),
		HaveField("Message", `spec.disks[0].virtualDisk: VirtualDisk "theirs" belongs to pool q, not to the VM's pool p`)))
	g.Expect(conditionOf(f.ns, "intruder", vpoolv1alpha1.VMDisksLocked)(g)).To(HaveField("Status", metav1.ConditionFalse))
	g.Eventually(conditionOf(f.ns, "split", vpoolv1alpha1.VMScheduled), wait, poll).Should(And(
		HaveField("Reason", placement.ReasonLocalDisksApart), HaveField("Message", And(
			ContainSubstring("spec.disks[0].virtualDisk: VDI on-h2 is on a local SR of host h2"),
			ContainSubstring("spec.disks[1].virtualDisk: VDI on-h3 on a local SR of host h3")))))
	g.Eventually(vdiReady(f.ns, "orphan"), wait, poll).Should(And(HaveField("Status", metav1.ConditionFalse),
		HaveField("Reason", placement.ReasonSRNotFound), HaveField("Message", `spec.storageRepository: StorageRepository "missing" not found`)))
	g.Eventually(vdiReady(f.ns, "crossed"), wait, poll).Should(And(HaveField("Status", metav1.ConditionFalse),
		HaveField("Reason", placement.ReasonSRInOtherPool), HaveField("Message", ContainSubstring("spec.storageRepository"))))
	g.Eventually(conditionOf(f.ns, "stray", vpoolv1alpha1.VMScheduled), wait, poll).Should(
		HaveField("Reason", placement.ReasonDiskUnavailable))
	g.Eventually(conditionOf(f.ns, "crosser", vpoolv1alpha1.VMScheduled), wait, poll).Should(And(
		HaveField("Reason", placement.ReasonDiskInOtherPool), HaveField("Message", ContainSubstring(`StorageRepository "q-nfs" of pool q`))))
	g.Eventually(eventsOf(f.ns, "intruder"), wait, poll).Should(ContainElement(placement.ReasonDiskInOtherPool))

	// A preferred host that does not exist is only a preference: the VM
	// runs elsewhere and says so.
	g.Eventually(runningOn(f.ns, "wanderer"), wait, poll).ShouldNot(BeEmpty())
	g.Expect(conditionOf(f.ns, "wanderer", vpoolv1alpha1.VMScheduled)(g)).To(And(HaveField("Status", metav1.ConditionTrue),
		HaveField("Reason", placement.ReasonAffinityHostNotFound), HaveField("Message", HavePrefix("spec.affinity.host: xen-9 is not a host"))))
	// Running: DisksLocked says who runs it, not that it will be started.
	g.Eventually(conditionOf(f.ns, "wanderer", vpoolv1alpha1.VMDisksLocked), wait, poll).Should(And(
		HaveField("Status", metav1.ConditionTrue), HaveField("Message", HaveSuffix(", which runs the VM"))))

	g.Consistently(func(g Gomega) []string {
		var locked []string
		for _, d := range []string{"theirs", "on-h2", "on-h3", "orphan", "crossed"} {
			if l := getVDI(g, f.ns, d).Status.Lock; l != nil {
				locked = append(locked, d+" by "+l.Host)
			}
		}
		for _, vm := range []string{"intruder", "split", "stray", "crosser"} {
			if on := getVM(g, f.ns, vm).Status.ResidentOn; on != "" {
				locked = append(locked, vm+" on "+on)
			}
		}
		return locked
	}, 2*time.Second, poll).Should(BeEmpty(), "nothing is placed or locked on a bad reference")

	// The missing SR appears: the VDI is usable and its VM runs.
	createSR(t, f.ns, "p", "missing", "")
	g.Eventually(vdiReady(f.ns, "orphan"), wait, poll).Should(And(HaveField("Status", metav1.ConditionTrue),
		HaveField("Reason", BeElementOf("Unlocked", "Locked"))))
	g.Eventually(runningOn(f.ns, "stray"), wait, poll).ShouldNot(BeEmpty())
}

// A VM placed on one host (a stale placement) while a disk is on another
// host's local SR is never locked or started there: it leaves that host and
// runs on the SR's host.
func TestPinnedVMNeverLockedElsewhere(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ns := newNamespace(t)
	createPool(t, ns, "p", poolOpts{ha: true, timeout: timeout})
	createHost(t, ns, "p", "h2")
	createHost(t, ns, "p", "h3")
	createSR(t, ns, "p", "h2-local", "h2")
	createVDI(t, ns, "p", "scratch", "h2-local")
	createVM(t, ns, "p", "pinned", withDisk("scratch"))
	vm := getVM(g, ns, "pinned")
	patch := client.MergeFrom(vm.DeepCopy())
	vm.Status.PowerState, vm.Status.ResidentOn = vpoolv1alpha1.PowerHalted, "h3"
	g.Expect(k8s.Status().Patch(context.Background(), vm, patch)).To(Succeed())

	startManager(t, ns, controllers.Options{})
	drivers := map[string]*agent.SimDriver{"h2": agent.NewSimDriver(), "h3": agent.NewSimDriver()}
	for h, d := range drivers {
		startAgent(t, ns, h, interval, d)
	}
	g.Eventually(runningOn(ns, "pinned"), wait, poll).Should(Equal("h2"))
	g.Expect(getVDI(g, ns, "scratch").Status.Lock).To(HaveField("Host", "h2"))
	onH3, _ := drivers["h3"].Running(context.Background())
	g.Expect(onH3).To(BeEmpty())
	g.Eventually(eventNotes(ns, "pinned", placement.ReasonPinnedElsewhere), wait, poll).Should(ConsistOf(
		"spec.disks[0].virtualDisk: VDI scratch is on a local SR of host h2: the VM cannot run on h3"))
}

// A running VM resized past every host runs on at its old size and says
// that its next boot fits no host; halted and started again, it waits for
// capacity, and no condition says Halted any more.
func TestRunningVMResizedPastEveryHost(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	f := newPoolFixture(t, poolOpts{ha: true, timeout: timeout, master: "h1"}, "h1", "h2")
	createVM(t, f.ns, "p", "grow")
	g.Eventually(runningOn(f.ns, "grow"), wait, poll).ShouldNot(BeEmpty())
	g.Expect(conditionOf(f.ns, "grow", vpoolv1alpha1.VMResourcesPending)(g)).To(BeNil())

	resize := func(memory string) {
		patchVM(g, f.ns, "grow", func(vm *vpoolv1alpha1.VirtualMachine) {
			m := resource.MustParse(memory)
			vm.Spec.Resources.Memory = &m
		})
	}
	resize("1Ti")
	g.Eventually(conditionOf(f.ns, "grow", vpoolv1alpha1.VMResourcesPending), wait, poll).Should(And(
		HaveField("Status", metav1.ConditionTrue), HaveField("Reason", placement.ReasonNoHostFits),
		HaveField("Message", And(ContainSubstring("spec.resources (cpu 1000m, memory 1048576Mi) fit no host"),
			ContainSubstring("the new size takes effect at its next boot")))))
	g.Expect(runningOn(f.ns, "grow")(g)).NotTo(BeEmpty())
	g.Expect(conditionOf(f.ns, "grow", vpoolv1alpha1.ConditionReady)(g)).To(HaveField("Status", metav1.ConditionTrue))
	g.Eventually(eventsOf(f.ns, "grow"), wait, poll).Should(ContainElement(placement.ReasonNoHostFits))

	patchVM(g, f.ns, "grow", func(vm *vpoolv1alpha1.VirtualMachine) { vm.Spec.PowerState = vpoolv1alpha1.DesiredHalted })
	g.Eventually(func(g Gomega) vpoolv1alpha1.PowerState { return getVM(g, f.ns, "grow").Status.PowerState }, wait, poll).
		Should(Equal(vpoolv1alpha1.PowerHalted))
	g.Eventually(conditionOf(f.ns, "grow", vpoolv1alpha1.VMResourcesPending), wait, poll).Should(BeNil())
	patchVM(g, f.ns, "grow", func(vm *vpoolv1alpha1.VirtualMachine) { vm.Spec.PowerState = vpoolv1alpha1.DesiredRunning })
	g.Eventually(conditionOf(f.ns, "grow", vpoolv1alpha1.VMScheduled), wait, poll).Should(HaveField("Reason", placement.ReasonNoCapacity))
	g.Eventually(func(g Gomega) []string {
		var halted []string
		for _, c := range getVM(g, f.ns, "grow").Status.Conditions {
			if c.Reason == controllers.ReasonHalted {
				halted = append(halted, c.Type)
			}
		}
		return halted
	}, wait, poll).Should(BeEmpty(), "no condition stays Halted once the VM should run")
	g.Expect(conditionOf(f.ns, "grow", vpoolv1alpha1.VMDisksLocked)(g)).To(HaveField("Reason", controllers.ReasonNotScheduled))

	resize("1Gi")
	g.Eventually(runningOn(f.ns, "grow"), wait, poll).ShouldNot(BeEmpty())
}

// recoveryObservations reads the recovery histogram: count and sum.
func recoveryObservations(g Gomega) (uint64, float64) {
	families, err := crmetrics.Registry.Gather()
	g.Expect(err).NotTo(HaveOccurred())
	for _, mf := range families {
		if mf.GetName() == "poolkeeper_vm_recovery_duration_seconds" {
			h := mf.GetMetric()[0].GetHistogram()
			return h.GetSampleCount(), h.GetSampleSum()
		}
	}
	return 0, 0
}

// The recovery time is measured from the VM's reset to it running again, to
// the millisecond and below: the event and the histogram say 51ms when the
// operator's clock moved 51ms between the two. Not parallel: the histogram
// is the process's.
func TestRecoveryTimeMeasuredFromReset(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	createPool(t, ns, "p", poolOpts{ha: true, timeout: 10 * time.Second, master: "h1"})
	createSR(t, ns, "p", "nfs", "")
	for _, h := range []string{"h1", "h2", "h3"} {
		createHost(t, ns, "p", h)
	}
	// A sub-second start: a time kept to the second would be off by 300ms.
	clk := clocktesting.NewFakeClock(time.Now().Truncate(time.Second).Add(300 * time.Millisecond))
	startManager(t, ns, controllers.Options{Clock: clk})
	held := map[string]*bootingDriver{}
	var failing *runningAgent
	for _, h := range []string{"h1", "h2", "h3"} {
		if h == "h2" {
			failing = startAgent(t, ns, h, interval, nil)
			continue
		}
		held[h] = &bootingDriver{SimDriver: agent.NewSimDriver(), booting: map[string]bool{}}
		startAgentConfig(t, agent.Config{Namespace: ns, Host: h, Interval: interval, Driver: held[h]})
	}
	for _, h := range []string{"h1", "h2", "h3"} {
		g.Eventually(phaseOf(ns, h), wait, poll).Should(Equal(vpoolv1alpha1.HostPhaseLive))
	}
	createVDI(t, ns, "p", "a-root", "nfs")
	createVM(t, ns, "p", "a", withDisk("a-root"), withAffinity("h2"))
	g.Eventually(runningOn(ns, "a"), wait, poll).Should(Equal("h2"))
	for _, d := range held {
		d.mu.Lock()
		d.booting["a"] = true
		d.mu.Unlock()
	}
	count, sum := recoveryObservations(g)

	// h2 dies; the operator's clock moves a second at a time (live hosts
	// renew in between) until the VM is reset.
	failing.Kill()
	var reset *vpoolv1alpha1.VMReset
	g.Eventually(func(g Gomega) *vpoolv1alpha1.VMReset {
		if reset = getVM(g, ns, "a").Status.LastReset; reset == nil {
			clk.Step(time.Second)
		}
		return reset
	}, 2*wait, 400*time.Millisecond).ShouldNot(BeNil())
	g.Expect(reset.PreciseAt).NotTo(BeNil())
	g.Expect(reset.PreciseAt.Time.Nanosecond()).NotTo(BeZero(), "kept below the second")

	clk.Step(51 * time.Millisecond)
	// 51ms, or a second more if the reset came while the clock was stepped.
	took := clk.Since(reset.PreciseAt.Time)
	g.Expect(took.Milliseconds() % 1000).To(BeEquivalentTo(51))
	for _, d := range held {
		d.letGo("a")
	}
	g.Eventually(runningOn(ns, "a"), wait, poll).Should(BeElementOf("h1", "h3"))
	g.Eventually(eventNotes(ns, "a", controllers.ReasonRecovered), wait, poll).Should(ConsistOf(
		HavePrefix("running again on " + getVM(g, ns, "a").Status.ResidentOn + ", " + took.String() + " after its reset (host h2: Fenced")))
	g.Eventually(func(g Gomega) uint64 { c, _ := recoveryObservations(g); return c }, wait, poll).Should(Equal(count + 1))
	_, after := recoveryObservations(g)
	g.Expect(after-sum).To(BeNumerically("~", took.Seconds(), 1e-6), "the histogram observes reset to running")
	note := eventNotes(ns, "a", controllers.ReasonRecovered)(g)[0]
	g.Expect(strings.Contains(note, "silent since")).To(BeTrue(), note)
}
