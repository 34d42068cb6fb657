package controllers_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	kstatus "sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/controllers"
	"github.com/poolkeeper/poolkeeper/internal/backup"
)

func createRecovery(t *testing.T, ns, name, pool string, mutate func(*vpoolv1alpha1.Recovery), sources ...string) {
	t.Helper()
	rec := &vpoolv1alpha1.Recovery{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	rec.Spec.PoolRef.Name = pool
	for _, s := range sources {
		rec.Spec.Sources = append(rec.Spec.Sources, vpoolv1alpha1.RecoverySource{BackupName: s})
	}
	if mutate != nil {
		mutate(rec)
	}
	if err := k8s.Create(context.Background(), rec); err != nil {
		t.Fatal(err)
	}
}

func getRecovery(g Gomega, ns, name string) *vpoolv1alpha1.Recovery {
	rec := &vpoolv1alpha1.Recovery{}
	g.Expect(k8s.Get(context.Background(), key(ns, name), rec)).To(Succeed())
	return rec
}

// recoveryReady is the Recovery's Ready condition.
func recoveryReady(ns, name string) func(g Gomega) *metav1.Condition {
	return func(g Gomega) *metav1.Condition {
		c := meta.FindStatusCondition(getRecovery(g, ns, name).Status.Conditions, vpoolv1alpha1.ConditionReady)
		g.Expect(c).NotTo(BeNil())
		return c
	}
}

func selectVMs(names ...string) func(*vpoolv1alpha1.Recovery) {
	return func(r *vpoolv1alpha1.Recovery) { r.Spec.VirtualMachines = names }
}

func withMemory(m string) func(*vpoolv1alpha1.VirtualMachine) {
	return func(vm *vpoolv1alpha1.VirtualMachine) {
		q := resource.MustParse(m)
		vm.Spec.Resources.Memory = &q
	}
}

func setMemory(t *testing.T, g Gomega, ns, name, m string) {
	t.Helper()
	vm := getVM(g, ns, name)
	withMemory(m)(vm)
	g.Expect(k8s.Update(context.Background(), vm)).To(Succeed())
}

func backupNow(t *testing.T, g Gomega, ns, name string) {
	t.Helper()
	// completedAt has a resolution of a second: this backup is newer than
	// the one before; and the manager's cache has seen the changes made
	// since.
	time.Sleep(1100 * time.Millisecond)
	createBackup(t, ns, name, "k")
	g.Eventually(func(g Gomega) vpoolv1alpha1.PoolBackupPhase { return getBackup(g, ns, name).Status.Phase }, wait, poll).Should(
		Equal(vpoolv1alpha1.BackupCompleted))
}

func vmNames(g Gomega, ns string) []string {
	l := &vpoolv1alpha1.VirtualMachineList{}
	g.Expect(k8s.List(context.Background(), l, inNS(ns))).To(Succeed())
	var names []string
	for _, vm := range l.Items {
		names = append(names, vm.Name)
	}
	return names
}

// A lost pool's VMs are recovered into another pool from a backup: the plan
// is in status before the first object exists, SRs and VDIs come back
// unlocked and only as far as the chosen VMs need them, and every VM keeps
// its uuid.
func TestRecoveryPlansFirstAndKeepsUUIDs(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ns := newNamespace(t)
	populatedPool(t, ns)
	createAppliance(t, ns, "p", "shop", 0)
	vm2 := &vpoolv1alpha1.VirtualMachine{}
	g.Expect(k8s.Get(context.Background(), key(ns, "vm-2"), vm2)).To(Succeed())
	vm2.Spec.ApplianceRef = &vpoolv1alpha1.LocalObjectReference{Name: "shop"}
	g.Expect(k8s.Update(context.Background(), vm2)).To(Succeed())
	createKey(t, ns, "k", backupKey)
	startManager(t, ns, controllers.Options{})
	uuids := map[string]string{}
	for i := range 4 {
		name := "vm-" + strconv.Itoa(i)
		g.Eventually(func() string { return getVM(g, ns, name).Status.UUID }, wait, poll).ShouldNot(BeEmpty())
		uuids[name] = getVM(g, ns, name).Status.UUID
	}
	completedBackup(t, g, ns)
	losePool(t, g, ns)
	createPool(t, ns, "dr", poolOpts{ha: true, timeout: timeout})

	ctx := context.Background()
	wc, err := client.NewWithWatch(restConfig, client.Options{Scheme: k8s.Scheme()})
	g.Expect(err).NotTo(HaveOccurred())
	recWatch, err := wc.Watch(ctx, &vpoolv1alpha1.RecoveryList{}, inNS(ns))
	g.Expect(err).NotTo(HaveOccurred())
	defer recWatch.Stop()
	vmWatch, err := wc.Watch(ctx, &vpoolv1alpha1.VirtualMachineList{}, inNS(ns))
	g.Expect(err).NotTo(HaveOccurred())
	defer vmWatch.Stop()

	createRecovery(t, ns, "r", "dr", selectVMs("vm-0", "vm-2"), "b")
	g.Eventually(recoveryReady(ns, "r"), wait, poll).Should(And(HaveField("Status", metav1.ConditionTrue), HaveField("Reason", controllers.ReasonRecovered)))

	// The plan's write comes before every VM's creation (resourceVersions
	// are one etcd revision sequence).
	planned := int64(0)
	for planned == 0 {
		ev := <-recWatch.ResultChan()
		if rec, ok := ev.Object.(*vpoolv1alpha1.Recovery); ok && len(rec.Status.Plan) > 0 {
			planned, _ = strconv.ParseInt(rec.ResourceVersion, 10, 64)
		}
	}
	created := 0
	for created < 2 {
		ev := <-vmWatch.ResultChan()
		if ev.Type != watch.Added {
			continue
		}
		rv, _ := strconv.ParseInt(ev.Object.(*vpoolv1alpha1.VirtualMachine).ResourceVersion, 10, 64)
		g.Expect(rv).To(BeNumerically(">", planned), "a VM was created before the plan was written")
		created++
	}

	rec := getRecovery(g, ns, "r")
	g.Expect(rec.Status.PlanGeneration).To(Equal(rec.Generation))
	var plan []string
	for _, it := range rec.Status.Plan {
		plan = append(plan, string(it.Action)+" "+it.Kind+" "+it.Name+" from "+it.Source)
	}
	g.Expect(plan).To(Equal([]string{
		"Create VirtualMachine vm-0 from b", "Create VirtualMachine vm-2 from b",
		"Create VirtualDisk vm-0 from b", "Create VirtualDisk vm-2 from b",
		"Create StorageRepository nfs from b",
		"Create VirtualAppliance shop from b",
	}))
	g.Expect(rec.Status.Results).To(HaveLen(6))
	for _, it := range rec.Status.Results {
		g.Expect(it.Done).To(BeTrue(), "%s %s", it.Kind, it.Name)
	}
	g.Expect(vmNames(g, ns)).To(ConsistOf("vm-0", "vm-2"))
	for _, name := range []string{"vm-0", "vm-2"} {
		g.Eventually(func() string { return getVM(g, ns, name).Status.UUID }, wait, poll).Should(Equal(uuids[name]),
			"VM %s keeps its uuid", name)
		vm := getVM(g, ns, name)
		g.Expect(vm.Spec.PoolRef.Name).To(Equal("dr"))
		g.Expect(vm.Labels).To(HaveKeyWithValue(vpoolv1alpha1.LabelRecovery, "r"))
		g.Expect(vm.Annotations).To(HaveKeyWithValue(backup.AnnotationRestoredFrom, "b"))
		vdi := getVDI(g, ns, name)
		g.Expect(vdi.Spec.PoolRef.Name).To(Equal("dr"))
		g.Expect(vdi.Status.Lock).To(BeNil())
	}
	sr := &vpoolv1alpha1.StorageRepository{}
	g.Expect(k8s.Get(ctx, key(ns, "nfs"), sr)).To(Succeed())
	g.Expect(sr.Spec.PoolRef.Name).To(Equal("dr"))
	g.Expect(k8s.Get(ctx, key(ns, "h1-local"), &vpoolv1alpha1.StorageRepository{})).NotTo(Succeed(), "no chosen VM needs h1-local")
	app := &vpoolv1alpha1.VirtualAppliance{}
	g.Expect(k8s.Get(ctx, key(ns, "shop"), app)).To(Succeed())
	g.Expect(app.Spec.PoolRef.Name).To(Equal("dr"))
	g.Expect(meta.FindStatusCondition(rec.Status.Conditions, "Reconciling")).To(BeNil())
	g.Expect(meta.FindStatusCondition(rec.Status.Conditions, "Stalled")).To(BeNil())
}

// Each VM comes from the newest backup that has it; with conflicts Fail a
// VM the pool already has stops the recovery before it writes anything, Skip
// leaves it, and PreferNewer replaces a Halted VM whose information is older.
func TestRecoveryNewestPerVMAndConflicts(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ns := newNamespace(t)
	populatedPool(t, ns)
	createKey(t, ns, "k", backupKey)
	startManager(t, ns, controllers.Options{})
	backupNow(t, g, ns, "b1")
	setMemory(t, g, ns, "vm-0", "2Gi")
	setMemory(t, g, ns, "vm-3", "3Gi")
	backupNow(t, g, ns, "b2")
	setMemory(t, g, ns, "vm-0", "4Gi")
	g.Expect(k8s.Delete(context.Background(), getVM(g, ns, "vm-3"))).To(Succeed())
	g.Eventually(func() []string { return vmNames(g, ns) }, wait, poll).ShouldNot(ContainElement("vm-3"))
	backupNow(t, g, ns, "b3")
	losePool(t, g, ns)
	createPool(t, ns, "dr", poolOpts{ha: true, timeout: timeout})

	createRecovery(t, ns, "r", "dr", selectVMs("vm-0", "vm-3"), "b1", "b3", "b2")
	g.Eventually(recoveryReady(ns, "r"), wait, poll).Should(HaveField("Reason", controllers.ReasonRecovered))
	g.Eventually(kstatusOf(ns, "r", &vpoolv1alpha1.Recovery{}), wait, poll).Should(Equal(kstatus.CurrentStatus))
	g.Expect(getVM(g, ns, "vm-0").Spec.Resources.Memory.String()).To(Equal("4Gi"), "vm-0 from b3, the newest")
	g.Expect(getVM(g, ns, "vm-3").Spec.Resources.Memory.String()).To(Equal("3Gi"), "vm-3 from b2, the newest that has it")
	sources := map[string]string{}
	for _, it := range getRecovery(g, ns, "r").Status.Plan {
		sources[it.Kind+"/"+it.Name] = it.Source
	}
	g.Expect(sources).To(HaveKeyWithValue("VirtualMachine/vm-0", "b3"))
	g.Expect(sources).To(HaveKeyWithValue("VirtualMachine/vm-3", "b2"))

	// Fail: vm-0 is there; nothing is written, and only a person can go on.
	before := vmNames(g, ns)
	createRecovery(t, ns, "fail", "dr", selectVMs("vm-0", "vm-1"), "b3")
	g.Eventually(recoveryReady(ns, "fail"), wait, poll).Should(And(HaveField("Status", metav1.ConditionFalse),
		HaveField("Reason", controllers.ReasonRecoveryConflicts)))
	fail := getRecovery(g, ns, "fail")
	g.Expect(meta.IsStatusConditionTrue(fail.Status.Conditions, "Stalled")).To(BeTrue())
	g.Expect(kstatusOf(ns, "fail", &vpoolv1alpha1.Recovery{})(g)).To(Equal(kstatus.FailedStatus))
	g.Expect(fail.Status.Plan).To(ContainElement(And(HaveField("Name", "vm-0"), HaveField("Action", vpoolv1alpha1.ActionConflict))))
	g.Consistently(func() []string { return vmNames(g, ns) }, 2*time.Second, poll).Should(ConsistOf(before))

	// Skip: the same choice goes on around vm-0.
	patch := client.MergeFrom(fail.DeepCopy())
	fail.Spec.Conflicts = vpoolv1alpha1.ConflictsSkip
	g.Expect(k8s.Patch(context.Background(), fail, patch)).To(Succeed())
	g.Eventually(recoveryReady(ns, "fail"), wait, poll).Should(HaveField("Reason", controllers.ReasonRecovered))
	g.Expect(vmNames(g, ns)).To(ContainElement("vm-1"))
	g.Expect(getRecovery(g, ns, "fail").Status.Plan).To(ContainElement(And(HaveField("Name", "vm-0"), HaveField("Action", vpoolv1alpha1.ActionSkip))))
	g.Expect(getVM(g, ns, "vm-0").Labels).To(HaveKeyWithValue(vpoolv1alpha1.LabelRecovery, "r"), "vm-0 untouched")

	// PreferNewer: vm-0 is Halted (the pool has no host) and says its
	// information is older than b3, and it was changed: b3 replaces it.
	g.Eventually(func() vpoolv1alpha1.PowerState { return getVM(g, ns, "vm-0").Status.PowerState }, wait, poll).Should(
		Equal(vpoolv1alpha1.PowerHalted))
	vm := getVM(g, ns, "vm-0")
	uuid := vm.Status.UUID
	vm.Annotations[vpoolv1alpha1.AnnotationInformationFrom] = "2020-01-01T00:00:00Z"
	withMemory("8Gi")(vm)
	g.Expect(k8s.Update(context.Background(), vm)).To(Succeed())
	createRecovery(t, ns, "back", "dr", func(r *vpoolv1alpha1.Recovery) {
		r.Spec.VirtualMachines = []string{"vm-0"}
		r.Spec.Conflicts = vpoolv1alpha1.ConflictsPreferNewer
	}, "b3")
	g.Eventually(recoveryReady(ns, "back"), wait, poll).Should(HaveField("Reason", controllers.ReasonRecovered))
	g.Expect(getRecovery(g, ns, "back").Status.Plan).To(ContainElement(And(HaveField("Name", "vm-0"), HaveField("Action", vpoolv1alpha1.ActionReplace))))
	vm = getVM(g, ns, "vm-0")
	g.Expect(vm.Spec.Resources.Memory.String()).To(Equal("4Gi"))
	g.Expect(vm.Status.UUID).To(Equal(uuid))
	g.Expect(vm.Labels).To(HaveKeyWithValue(vpoolv1alpha1.LabelRecovery, "back"))
}

// A test failover recreates the chosen VMs in a pool with Live hosts and
// starts none; once finished, everything it created is gone. The real
// recovery that follows runs them.
func TestRecoveryTestFailoverStartsNothingAndCleansUp(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	f := newPoolFixture(t, poolOpts{ha: true, timeout: timeout}, "h1", "h2")
	ns := f.ns
	createKey(t, ns, "k", backupKey)
	for _, name := range []string{"a", "b"} {
		createVDI(t, ns, "p", name, "nfs")
		createVM(t, ns, "p", name, withDisk(name), withMemory("512Mi"))
	}
	g.Eventually(func() []string { return vmNames(g, ns) }, wait, poll).Should(HaveLen(2))
	for _, name := range []string{"a", "b"} {
		g.Eventually(runningOn(ns, name), wait, poll).ShouldNot(BeEmpty())
	}
	backupNow(t, g, ns, "b")
	ctx := context.Background()
	for _, name := range []string{"a", "b"} {
		g.Expect(k8s.Delete(ctx, getVM(g, ns, name))).To(Succeed())
	}
	g.Eventually(func() []string { return vmNames(g, ns) }, wait, poll).Should(BeEmpty())
	for _, name := range []string{"a", "b"} {
		g.Expect(k8s.Delete(ctx, getVDI(g, ns, name))).To(Succeed())
	}

	createRecovery(t, ns, "test", "p", func(r *vpoolv1alpha1.Recovery) {
		r.Spec.VirtualMachines = []string{"a", "b"}
		r.Spec.DryRun = true
	}, "b")
	g.Eventually(recoveryReady(ns, "test"), wait, poll).Should(HaveField("Reason", controllers.ReasonDRTestReady))
	g.Expect(getRecovery(g, ns, "test").Finalizers).To(ContainElement(vpoolv1alpha1.FinalizerRecoveryCleanup))
	for _, name := range []string{"a", "b"} {
		vm := getVM(g, ns, name)
		g.Expect(vm.Spec.PowerState).To(Equal(vpoolv1alpha1.DesiredHalted))
		g.Expect(vm.Annotations).To(HaveKeyWithValue(backup.AnnotationRestoredPowerState, string(vpoolv1alpha1.DesiredRunning)))
	}
	g.Consistently(func(g Gomega) int {
		n := 0
		for _, h := range []string{"h1", "h2"} {
			names, err := f.drivers[h].Running(ctx)
			g.Expect(err).NotTo(HaveOccurred())
			n += len(names)
		}
		return n
	}, 3*time.Second, poll).Should(
		BeZero(), "a test failover starts nothing")

	rec := getRecovery(g, ns, "test")
	patch := client.MergeFrom(rec.DeepCopy())
	rec.Annotations = map[string]string{vpoolv1alpha1.AnnotationDRTestFinished: "true"}
	g.Expect(k8s.Patch(ctx, rec, patch)).To(Succeed())
	g.Eventually(recoveryReady(ns, "test"), wait, poll).Should(HaveField("Reason", controllers.ReasonDRTestCleanedUp))
	g.Eventually(func() []string { return vmNames(g, ns) }, wait, poll).Should(BeEmpty())
	g.Eventually(func() error { return k8s.Get(ctx, key(ns, "a"), &vpoolv1alpha1.VirtualDisk{}) }, wait, poll).ShouldNot(Succeed())
	g.Eventually(func() []string { return getRecovery(g, ns, "test").Finalizers }, wait, poll).Should(BeEmpty())
	g.Expect(k8s.Get(ctx, key(ns, "nfs"), &vpoolv1alpha1.StorageRepository{})).To(Succeed(), "the pool's own SR was reused, not removed")

	createRecovery(t, ns, "real", "p", selectVMs("a", "b"), "b")
	g.Eventually(recoveryReady(ns, "real"), wait, poll).Should(HaveField("Reason", controllers.ReasonRecovered))
	for _, name := range []string{"a", "b"} {
		g.Eventually(runningOn(ns, name), wait, poll).ShouldNot(BeEmpty(), "VM %s runs after the real recovery", name)
	}
}

// A DR site recovers VMs into a namespace of its own, from the primary's
// backups found through a BackupLocation: each recovered VDI carries the
// volume its agent at the primary had recorded (vpool.poolkeeper.io/volume),
// which the DR site's replicated storage holds under the primary's name, so
// that it attaches that volume rather than a new, empty one of its new
// namespace's name. A test failover first gives no VDI that volume: the
// primary may still be running on it.
func TestRecoveryIntoAnotherNamespaceKeepsVolumes(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ctx := context.Background()
	primary, endpoint, _ := s3Pool(t)
	volume := "/srv/images/" + primary + "_vm-0"
	recordVolume(g, primary, "vm-0", volume)
	createLocation(t, primary, "bucket", endpoint, s3Bucket, vpoolv1alpha1.AccessReadWrite, time.Minute)
	createLocationBackup(t, primary, "b1", "bucket")
	g.Eventually(completed(primary, "b1"), wait, poll).Should(Equal(vpoolv1alpha1.BackupCompleted))

	dr := newNamespace(t)
	createKey(t, dr, "k", backupKey)
	createS3Credentials(t, dr, "s3")
	startManager(t, dr, controllers.Options{})
	createLocation(t, dr, "primary", endpoint, s3Bucket, vpoolv1alpha1.AccessReadOnly, time.Second)
	createPool(t, dr, "site-b", poolOpts{ha: true, timeout: timeout})
	g.Eventually(completed(dr, "b1"), wait, poll).Should(Equal(vpoolv1alpha1.BackupCompleted))
	fromPrimary := func(dryRun bool) func(*vpoolv1alpha1.Recovery) {
		return func(r *vpoolv1alpha1.Recovery) {
			r.Spec.Sources = []vpoolv1alpha1.RecoverySource{{Location: "primary", Pool: "p"}}
			r.Spec.VirtualMachines = []string{"vm-0", "vm-3"}
			r.Spec.DryRun = dryRun
		}
	}

	createRecovery(t, dr, "test", "site-b", fromPrimary(true))
	g.Eventually(recoveryReady(dr, "test"), wait, poll).Should(And(HaveField("Reason", controllers.ReasonDRTestReady),
		HaveField("Message", ContainSubstring("no VirtualDisk is given the volume its backup records"))))
	for _, name := range []string{"vm-0", "vm-3"} {
		vdi := getVDI(g, dr, name)
		g.Expect(vdi.Labels).To(HaveKeyWithValue(vpoolv1alpha1.LabelRecovery, "test"))
		g.Expect(vdi.Annotations).NotTo(HaveKey(vpoolv1alpha1.AnnotationVolume), "a test failover never attaches the primary's volumes")
	}
	rec := getRecovery(g, dr, "test")
	patch := client.MergeFrom(rec.DeepCopy())
	rec.Annotations = map[string]string{vpoolv1alpha1.AnnotationDRTestFinished: "true"}
	g.Expect(k8s.Patch(ctx, rec, patch)).To(Succeed())
	g.Eventually(recoveryReady(dr, "test"), wait, poll).Should(HaveField("Reason", controllers.ReasonDRTestCleanedUp))
	g.Eventually(func() error { return k8s.Get(ctx, key(dr, "vm-0"), &vpoolv1alpha1.VirtualDisk{}) }, wait, poll).ShouldNot(Succeed())

	createRecovery(t, dr, "failover", "site-b", fromPrimary(false))
	g.Eventually(recoveryReady(dr, "failover"), wait, poll).Should(HaveField("Reason", controllers.ReasonRecovered))
	vdi := getVDI(g, dr, "vm-0")
	g.Expect(vdi.Spec.PoolRef.Name).To(Equal("site-b"))
	g.Expect(vdi.Labels).To(HaveKeyWithValue(vpoolv1alpha1.LabelRecovery, "failover"))
	g.Expect(vdi.Annotations).To(HaveKeyWithValue(vpoolv1alpha1.AnnotationVolume, volume),
		"the primary's volume, not a new one named after namespace "+dr)
	g.Expect(vdi.Status.Volume).To(BeEmpty())
	g.Expect(getVDI(g, dr, "vm-3").Annotations).NotTo(HaveKey(vpoolv1alpha1.AnnotationVolume),
		"vm-3's VDI recorded no volume at the primary")
}

// An object of the backup the API server refuses (here a VDI without its
// size, as from a hand-edited or foreign dump) is not retried forever: the
// rest is recovered, and the Recovery stalls saying which and why.
func TestRecoveryOfARefusedObjectStalls(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ns := newNamespace(t)
	createKey(t, ns, "k", backupKey)
	d := benchDump(ns, 2)
	d.VirtualDisks[0].Spec.Size = resource.Quantity{}
	pb := storeBenchBackup(t, ns, d)
	createPool(t, ns, "dr", poolOpts{ha: true, timeout: timeout})
	startManager(t, ns, controllers.Options{})
	createRecovery(t, ns, "r", "dr", selectVMs("vm-00000", "vm-00001"), pb.Name)
	g.Eventually(recoveryReady(ns, "r"), wait, poll).Should(And(HaveField("Status", metav1.ConditionFalse),
		HaveField("Reason", controllers.ReasonRecoveryIncomplete),
		HaveField("Message", ContainSubstring("VirtualDisk/vm-00000-d0: the API server refuses it"))))
	rec := getRecovery(g, ns, "r")
	g.Expect(meta.IsStatusConditionTrue(rec.Status.Conditions, "Stalled")).To(BeTrue())
	g.Expect(rec.Status.Results).To(ContainElement(And(HaveField("Name", "vm-00000-d0"), HaveField("Done", false))))
	g.Expect(vmNames(g, ns)).To(ConsistOf("vm-00000", "vm-00001"), "the rest is recovered")
}
