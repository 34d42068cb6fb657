package controllers_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/controllers"
	"github.com/poolkeeper/poolkeeper/internal/agent"
	"github.com/poolkeeper/poolkeeper/internal/placement"
)

func createSR(t *testing.T, ns, pool, name, localHost string) {
	t.Helper()
	sr := &vpoolv1alpha1.StorageRepository{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	sr.Spec.PoolRef.Name = pool
	sr.Spec.Type = "nfs"
	sr.Spec.Shared = localHost == ""
	if localHost != "" {
		sr.Spec.Type, sr.Spec.Host = "lvm", localHost
	}
	if err := k8s.Create(context.Background(), sr); err != nil {
		t.Fatal(err)
	}
}

func createVDI(t *testing.T, ns, pool, name, sr string) {
	t.Helper()
	d := &vpoolv1alpha1.VirtualDisk{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	d.Spec.PoolRef.Name = pool
	d.Spec.StorageRepository = sr
	d.Spec.Size = resource.MustParse("10Gi")
	if err := k8s.Create(context.Background(), d); err != nil {
		t.Fatal(err)
	}
}

func createVM(t *testing.T, ns, pool, name string, mutate ...func(*vpoolv1alpha1.VirtualMachine)) {
	t.Helper()
	vm := &vpoolv1alpha1.VirtualMachine{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	vm.Spec.PoolRef.Name = pool
	vm.Spec.PowerState = vpoolv1alpha1.DesiredRunning
	vm.Spec.HA.RestartPriority = vpoolv1alpha1.RestartAlways
	cpu, mem := resource.MustParse("1"), resource.MustParse("1Gi")
	vm.Spec.Resources = vpoolv1alpha1.VMResources{CPU: &cpu, Memory: &mem}
	for _, f := range mutate {
		f(vm)
	}
	if err := k8s.Create(context.Background(), vm); err != nil {
		t.Fatal(err)
	}
}

func withDisk(vdi string) func(*vpoolv1alpha1.VirtualMachine) {
	return func(vm *vpoolv1alpha1.VirtualMachine) {
		vm.Spec.Disks = append(vm.Spec.Disks, vpoolv1alpha1.VMDisk{Name: "d" + string(rune('0'+len(vm.Spec.Disks))), VirtualDisk: vdi, Mode: vpoolv1alpha1.DiskRW})
	}
}

func withAffinity(host string) func(*vpoolv1alpha1.VirtualMachine) {
	return func(vm *vpoolv1alpha1.VirtualMachine) { vm.Spec.Affinity.Host = host }
}

func getVM(g Gomega, ns, name string) *vpoolv1alpha1.VirtualMachine {
	vm := &vpoolv1alpha1.VirtualMachine{}
	g.Expect(k8s.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, vm)).To(Succeed())
	return vm
}

func getVDI(g Gomega, ns, name string) *vpoolv1alpha1.VirtualDisk {
	d := &vpoolv1alpha1.VirtualDisk{}
	g.Expect(k8s.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, d)).To(Succeed())
	return d
}

// runningOn returns where a VM runs: status says Running on that host.
func runningOn(ns, name string) func(g Gomega) string {
	return func(g Gomega) string {
		vm := getVM(g, ns, name)
		if vm.Status.PowerState != vpoolv1alpha1.PowerRunning {
			return ""
		}
		return vm.Status.ResidentOn
	}
}

// invariantWatcher samples the sim drivers and fails the test if a VM ever
// runs on two hosts at once (invariant 1).
type invariantWatcher struct {
	stop chan struct{}
	wg   sync.WaitGroup
}

func watchInvariants(t *testing.T, drivers map[string]*agent.SimDriver) *invariantWatcher {
	w := &invariantWatcher{stop: make(chan struct{})}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		for {
			select {
			case <-w.stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			where := map[string]string{}
			for host, d := range drivers {
				names, _ := d.Running(context.Background())
				for _, n := range names {
					if other, dup := where[n]; dup {
						t.Errorf("invariant 1 broken: VM %s runs on %s and %s", n, other, host)
					}
					where[n] = host
				}
			}
		}
	}()
	t.Cleanup(func() { close(w.stop); w.wg.Wait() })
	return w
}

// poolFixture is a pool of hosts with agents and a shared SR.
type poolFixture struct {
	ns      string
	agents  map[string]*runningAgent
	drivers map[string]*agent.SimDriver
}

func newPoolFixture(t *testing.T, o poolOpts, hosts ...string) *poolFixture {
	t.Helper()
	f := &poolFixture{ns: newNamespace(t), agents: map[string]*runningAgent{}, drivers: map[string]*agent.SimDriver{}}
	createPool(t, f.ns, "p", o)
	createSR(t, f.ns, "p", "nfs", "")
	for _, h := range hosts {
		createHost(t, f.ns, "p", h)
	}
	startManager(t, f.ns, controllers.Options{})
	for _, h := range hosts {
		f.drivers[h] = agent.NewSimDriver()
		f.agents[h] = startAgent(t, f.ns, h, interval, f.drivers[h])
	}
	g := NewWithT(t)
	for _, h := range hosts {
		g.Eventually(phaseOf(f.ns, h), wait, poll).Should(Equal(vpoolv1alpha1.HostPhaseLive))
	}
	watchInvariants(t, f.drivers)
	return f
}

// A member dies with HA on: its VMs come back elsewhere, their locks move
// with them, and no VM ever runs twice.
func TestMemberDiesHAOnVMsRestartElsewhere(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	f := newPoolFixture(t, poolOpts{ha: true, timeout: timeout, master: "h1"}, "h1", "h2", "h3")
	for _, name := range []string{"a", "b", "c"} {
		createVDI(t, f.ns, "p", name+"-root", "nfs")
		createVM(t, f.ns, "p", name, withDisk(name+"-root"), withAffinity("h2"))
	}
	createVM(t, f.ns, "p", "keep-off", withAffinity("h2"), func(vm *vpoolv1alpha1.VirtualMachine) {
		vm.Spec.HA.RestartPriority = vpoolv1alpha1.RestartNever
	})
	for _, name := range []string{"a", "b", "c", "keep-off"} {
		g.Eventually(runningOn(f.ns, name), wait, poll).Should(Equal("h2"))
	}
	// The boot each VM and lock were placed for is recorded: once that boot
	// is fenced, they are known dead without asking the API server again.
	h2Boot := getHost(g, f.ns, "h2").Status.BootID
	g.Expect(h2Boot).NotTo(BeEmpty())
	g.Expect(getVM(g, f.ns, "a").Status.ResidentBootID).To(Equal(h2Boot))
	g.Expect(getVDI(g, f.ns, "a-root").Status.Lock).To(And(HaveField("Host", "h2"), HaveField("BootID", h2Boot)))
	g.Eventually(func() []string { r, _ := f.drivers["h2"].Running(context.Background()); return r }, wait, poll).Should(HaveLen(4))

	f.agents["h2"].Kill()
	for _, name := range []string{"a", "b", "c"} {
		g.Eventually(runningOn(f.ns, name), wait, poll).Should(BeElementOf("h1", "h3"))
		vm := getVM(g, f.ns, name)
		g.Expect(vm.Status.LastReset).NotTo(BeNil())
		g.Expect(vm.Status.LastReset.Host).To(Equal("h2"))
		boot := getHost(g, f.ns, vm.Status.ResidentOn).Status.BootID
		g.Expect(vm.Status.ResidentBootID).To(Equal(boot))
		g.Expect(getVDI(g, f.ns, name+"-root").Status.Lock).To(And(HaveField("Host", vm.Status.ResidentOn), HaveField("BootID", boot)))
	}
	g.Expect(phaseOf(f.ns, "h2")(g)).To(Equal(vpoolv1alpha1.HostPhaseFenced))
	g.Expect(getHost(g, f.ns, "h2").Status.Fencing).To(HaveField("BootID", h2Boot))
	g.Consistently(func(g Gomega) *vpoolv1alpha1.VirtualMachine { return getVM(g, f.ns, "keep-off") }, time.Second, poll).Should(And(
		HaveField("Status.PowerState", vpoolv1alpha1.PowerHalted), HaveField("Status.ResidentOn", "")))
	c := meta.FindStatusCondition(getVM(g, f.ns, "keep-off").Status.Conditions, vpoolv1alpha1.VMScheduled)
	g.Expect(c.Reason).To(Equal(placement.ReasonDoNotRestart))
}

// With HA off, a dead member's VMs stay Running in status until a person
// forgets the host; then they are reset, their locks released, and restarted.
func TestMemberDiesHAOffVMsWaitForForget(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	f := newPoolFixture(t, poolOpts{timeout: timeout, master: "h1"}, "h1", "h2")
	createVDI(t, f.ns, "p", "a-root", "nfs")
	createVM(t, f.ns, "p", "a", withDisk("a-root"), withAffinity("h2"))
	g.Eventually(runningOn(f.ns, "a"), wait, poll).Should(Equal("h2"))

	f.agents["h2"].Kill()
	g.Eventually(phaseOf(f.ns, "h2"), wait, poll).Should(Equal(vpoolv1alpha1.HostPhaseUnreachable))
	g.Eventually(func(g Gomega) string {
		return meta.FindStatusCondition(getVM(g, f.ns, "a").Status.Conditions, vpoolv1alpha1.ConditionReady).Reason
	}, wait, poll).Should(Equal(controllers.ReasonHostUnreachable))
	g.Consistently(runningOn(f.ns, "a"), 2*timeout, poll).Should(Equal("h2"), "kept Running in status while the host may be alive")
	g.Expect(getVDI(g, f.ns, "a-root").Status.Lock).To(HaveField("Host", "h2"))

	h2 := getHost(g, f.ns, "h2")
	patch := client.MergeFrom(h2.DeepCopy())
	h2.Spec.State = vpoolv1alpha1.HostForgotten
	g.Expect(k8s.Patch(context.Background(), h2, patch)).To(Succeed())
	g.Eventually(runningOn(f.ns, "a"), wait, poll).Should(Equal("h1"))
	g.Expect(phaseOf(f.ns, "h2")(g)).To(Equal(vpoolv1alpha1.HostPhaseForgotten))
	g.Expect(getVDI(g, f.ns, "a-root").Status.Lock).To(HaveField("Host", "h1"))
	g.Eventually(eventsOf(f.ns, "a-root"), wait, poll).Should(ContainElement(controllers.ReasonLockReleased))
}

// Two VMs sharing one RW VDI: the second does not start, and says why.
func TestSharedRWDiskSecondVMRefused(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	f := newPoolFixture(t, poolOpts{ha: true, timeout: timeout}, "h1", "h2")
	createVDI(t, f.ns, "p", "shared", "nfs")
	createVM(t, f.ns, "p", "first", withDisk("shared"), withAffinity("h1"))
	g.Eventually(runningOn(f.ns, "first"), wait, poll).Should(Equal("h1"))
	createVM(t, f.ns, "p", "second", withDisk("shared"), withAffinity("h2"))
	g.Eventually(func(g Gomega) *metav1.Condition {
		return meta.FindStatusCondition(getVM(g, f.ns, "second").Status.Conditions, vpoolv1alpha1.VMDisksLocked)
	}, wait, poll).Should(And(HaveField("Status", metav1.ConditionFalse), HaveField("Message", "VDI shared already attached RW by h1")))
	g.Consistently(runningOn(f.ns, "second"), time.Second, poll).Should(BeEmpty())
	g.Expect(getVDI(g, f.ns, "shared").Status.Lock).To(HaveField("VirtualMachine", "first"))

	// Halting the first VM releases the lock to the second.
	first := getVM(g, f.ns, "first")
	patch := client.MergeFrom(first.DeepCopy())
	first.Spec.PowerState = vpoolv1alpha1.DesiredHalted
	g.Expect(k8s.Patch(context.Background(), first, patch)).To(Succeed())
	g.Eventually(runningOn(f.ns, "second"), wait, poll).Should(Equal("h2"))
	g.Expect(getVM(g, f.ns, "first").Status.PowerState).To(Equal(vpoolv1alpha1.PowerHalted))
}

// A VM whose disk is on the dead host's local SR cannot move: it stays Halted
// and says why.
func TestLocalSRVMStaysHalted(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	f := newPoolFixture(t, poolOpts{ha: true, timeout: timeout, master: "h1"}, "h1", "h2", "h3")
	createSR(t, f.ns, "p", "h2-local", "h2")
	createVDI(t, f.ns, "p", "scratch", "h2-local")
	createVM(t, f.ns, "p", "pinned", withDisk("scratch"))
	g.Eventually(runningOn(f.ns, "pinned"), wait, poll).Should(Equal("h2"), "a local SR pins the VM to its host")

	f.agents["h2"].Kill()
	g.Eventually(func(g Gomega) *metav1.Condition {
		return meta.FindStatusCondition(getVM(g, f.ns, "pinned").Status.Conditions, vpoolv1alpha1.VMScheduled)
	}, wait, poll).Should(And(HaveField("Reason", placement.ReasonDiskUnavailable), HaveField("Message", ContainSubstring("local SR of host h2"))))
	vm := getVM(g, f.ns, "pinned")
	g.Expect(vm.Status.PowerState).To(Equal(vpoolv1alpha1.PowerHalted))
	g.Expect(vm.Status.ResidentOn).To(BeEmpty())
}

// bootingDriver is a sim host on which the VMs named in booting do not
// come up until they are let go.
type bootingDriver struct {
	*agent.SimDriver
	mu      sync.Mutex
	booting map[string]bool
}

func (d *bootingDriver) Start(ctx context.Context, vm agent.VM) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.booting[vm.Name] {
		return fmt.Errorf("VM %s is still booting", vm.Name)
	}
	return d.SimDriver.Start(ctx, vm)
}

func (d *bootingDriver) letGo(name string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.booting, name)
}

// Boot order: a VM with a higher startOrder is not placed before the VMs
// of the lower one have started, as a vApp boots.
func TestStartOrderWaitsForBoot(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ns := newNamespace(t)
	createPool(t, ns, "p", poolOpts{ha: true, timeout: timeout})
	createSR(t, ns, "p", "nfs", "")
	createHost(t, ns, "p", "h1")
	startManager(t, ns, controllers.Options{})
	driver := &bootingDriver{SimDriver: agent.NewSimDriver(), booting: map[string]bool{"db": true}}
	startAgentConfig(t, agent.Config{Namespace: ns, Host: "h1", Interval: interval, Driver: driver})
	g.Eventually(phaseOf(ns, "h1"), wait, poll).Should(Equal(vpoolv1alpha1.HostPhaseLive))

	createVM(t, ns, "p", "db", func(vm *vpoolv1alpha1.VirtualMachine) { vm.Spec.StartOrder = 0 })
	createVM(t, ns, "p", "web", func(vm *vpoolv1alpha1.VirtualMachine) { vm.Spec.StartOrder = 10 })
	g.Eventually(func(g Gomega) bool {
		return meta.IsStatusConditionTrue(getVM(g, ns, "db").Status.Conditions, vpoolv1alpha1.VMDisksLocked)
	}, wait, poll).Should(BeTrue(), "db is placed and its host told to start it")
	g.Eventually(func(g Gomega) *metav1.Condition {
		return meta.FindStatusCondition(getVM(g, ns, "web").Status.Conditions, vpoolv1alpha1.VMScheduled)
	}, wait, poll).Should(And(HaveField("Reason", placement.ReasonWaitingForOrder),
		HaveField("Message", "waiting for the VMs with startOrder 0 to start")))
	g.Consistently(func(g Gomega) string { return getVM(g, ns, "web").Status.ResidentOn }, 2*time.Second, poll).
		Should(BeEmpty(), "web waits while db boots")

	driver.letGo("db")
	g.Eventually(runningOn(ns, "db"), wait, poll).Should(Equal("h1"))
	g.Eventually(runningOn(ns, "web"), wait, poll).Should(Equal("h1"))
}

// Start order: a VM with a higher startOrder waits for the lower ones.
func TestStartOrder(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	f := newPoolFixture(t, poolOpts{ha: true, timeout: timeout}, "h1")
	createVM(t, f.ns, "p", "db", func(vm *vpoolv1alpha1.VirtualMachine) {
		vm.Spec.StartOrder = 0
		vm.Spec.PowerState = vpoolv1alpha1.DesiredHalted
	})
	createVM(t, f.ns, "p", "web", func(vm *vpoolv1alpha1.VirtualMachine) { vm.Spec.StartOrder = 10 })
	g.Eventually(runningOn(f.ns, "web"), wait, poll).Should(Equal("h1"), "a halted lower VM holds nobody back")

	createVM(t, f.ns, "p", "app", func(vm *vpoolv1alpha1.VirtualMachine) { vm.Spec.StartOrder = 20 })
	createVM(t, f.ns, "p", "cache", func(vm *vpoolv1alpha1.VirtualMachine) {
		vm.Spec.StartOrder = 5
		vm.Spec.Disks = []vpoolv1alpha1.VMDisk{{Name: "root", VirtualDisk: "missing", Mode: vpoolv1alpha1.DiskRW}}
	})
	g.Eventually(runningOn(f.ns, "app"), wait, poll).Should(Equal("h1"), "a blocked lower VM holds nobody back")
	c := meta.FindStatusCondition(getVM(g, f.ns, "cache").Status.Conditions, vpoolv1alpha1.VMScheduled)
	g.Expect(c.Reason).To(Equal(placement.ReasonDiskUnavailable))
	g.Expect(c.Message).To(ContainSubstring(`VirtualDisk "missing" not found`))
}

// A VM whose pool does not exist says so, and is taken up when the pool
// appears (GitOps applies a directory in no particular order).
func TestVMWaitsForItsPool(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ns := newNamespace(t)
	createVM(t, ns, "p", "vm", withPowerState(vpoolv1alpha1.DesiredHalted))
	startManager(t, ns, controllers.Options{})
	ready := func(g Gomega) *metav1.Condition {
		return meta.FindStatusCondition(getVM(g, ns, "vm").Status.Conditions, vpoolv1alpha1.ConditionReady)
	}
	notFound := And(Not(BeNil()), HaveField("Status", metav1.ConditionFalse),
		HaveField("Reason", vpoolv1alpha1.ReasonPoolNotFound), HaveField("Message", `spec.poolRef.name: Pool "p" not found`))
	g.Eventually(ready, wait, poll).Should(notFound)
	g.Consistently(ready, time.Second, poll).Should(notFound) // nothing left to do until the pool appears

	createPool(t, ns, "p", poolOpts{ha: true, timeout: timeout})
	g.Eventually(ready, wait, poll).Should(And(HaveField("Status", metav1.ConditionTrue), HaveField("Reason", controllers.ReasonHalted)))
}
