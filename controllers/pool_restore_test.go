package controllers_test

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/controllers"
	"github.com/poolkeeper/poolkeeper/internal/backup"
)

// completedBackup takes backup "b" of pool "p" and waits for it.
func completedBackup(t *testing.T, g Gomega, ns string) *vpoolv1alpha1.PoolBackup {
	t.Helper()
	createBackup(t, ns, "b", "k")
	g.Eventually(func(g Gomega) vpoolv1alpha1.PoolBackupPhase { return getBackup(g, ns, "b").Status.Phase }, wait, poll).Should(
		Equal(vpoolv1alpha1.BackupCompleted))
	return getBackup(g, ns, "b")
}

// lostPoolWithBackup makes a populated pool with a running manager, runs
// before (what the pool does before its backup), takes backup "b" of it, and
// loses the whole pool; it returns the namespace.
func lostPoolWithBackup(t *testing.T, g Gomega, before ...func(ns string)) string {
	t.Helper()
	ns := newNamespace(t)
	populatedPool(t, ns)
	createKey(t, ns, "k", backupKey)
	startManager(t, ns, controllers.Options{})
	for _, f := range before {
		f(ns)
	}
	completedBackup(t, g, ns)
	losePool(t, g, ns)
	return ns
}

// losePool deletes the pool and every object of it, as a whole-pool loss.
func losePool(t *testing.T, g Gomega, ns string) {
	t.Helper()
	ctx := context.Background()
	g.Expect(k8s.DeleteAllOf(ctx, &vpoolv1alpha1.Pool{}, client.InNamespace(ns))).To(Succeed())
	for _, obj := range []client.Object{&vpoolv1alpha1.VirtualMachine{}, &vpoolv1alpha1.VirtualAppliance{}, &vpoolv1alpha1.VirtualDisk{},
		&vpoolv1alpha1.StorageRepository{}, &vpoolv1alpha1.Host{}} {
		g.Expect(k8s.DeleteAllOf(ctx, obj, client.InNamespace(ns))).To(Succeed())
	}
	g.Eventually(func(g Gomega) int {
		l := &vpoolv1alpha1.HostList{}
		g.Expect(k8s.List(ctx, l, inNS(ns))).To(Succeed())
		return len(l.Items)
	}, wait, poll).Should(BeZero())
}

func createRestoringPool(t *testing.T, ns, name string, rf vpoolv1alpha1.RestoreSource) {
	t.Helper()
	p := &vpoolv1alpha1.Pool{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	p.Spec.HA.Enabled = true
	p.Spec.HeartbeatTimeout = &metav1.Duration{Duration: timeout}
	p.Spec.Fencing.MaxConcurrent, p.Spec.Fencing.MaxUnhealthyPercent = 1, 50
	p.Spec.RestoreFrom = &rf
	if err := k8s.Create(context.Background(), p); err != nil {
		t.Fatal(err)
	}
}

func restored(ns, pool string) func(g Gomega) *metav1.Condition {
	return func(g Gomega) *metav1.Condition {
		c := meta.FindStatusCondition(getPool(g, ns, pool).Status.Conditions, vpoolv1alpha1.PoolRestored)
		g.Expect(c).NotTo(BeNil())
		return c
	}
}

// The whole pool is lost and restored through a new Pool: every object comes
// back, pointed at the new pool, VDIs unlocked, VMs Halted until hosts are
// Live, and then the VMs run again.
func TestRestoreRoundTrip(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ns := newNamespace(t)
	populatedPool(t, ns)
	createAppliance(t, ns, "p", "shop", 30*time.Second)
	createKey(t, ns, "k", backupKey)
	startManager(t, ns, controllers.Options{})
	var want []vpoolv1alpha1.VirtualMachineSpec
	var uuids []string
	for i := 0; i < 4; i++ {
		name := "vm-" + string(rune('0'+i))
		g.Eventually(func() string { return getVM(g, ns, name).Status.UUID }, wait, poll).ShouldNot(BeEmpty())
		want = append(want, getVM(g, ns, name).Spec)
		uuids = append(uuids, getVM(g, ns, name).Status.UUID)
	}
	completedBackup(t, g, ns)
	losePool(t, g, ns)

	createRestoringPool(t, ns, "p2", vpoolv1alpha1.RestoreSource{BackupName: "b"})
	g.Eventually(restored(ns, "p2"), wait, poll).Should(HaveField("Status", metav1.ConditionTrue))
	p2 := getPool(g, ns, "p2")
	g.Expect(p2.Status.Restore.Created).To(Equal(vpoolv1alpha1.BackupCounts{Hosts: 2, SRs: 2, VDIs: 4, VMs: 4}))
	for i, spec := range want {
		name := "vm-" + string(rune('0'+i))
		vm := getVM(g, ns, name)
		spec.PoolRef.Name = "p2"
		g.Expect(vm.Spec).To(Equal(spec))
		// A restored VM is resident nowhere and Halted in status as soon as
		// the pool says Restored.
		g.Expect(vm.Status.ResidentOn).To(BeEmpty())
		g.Expect(vm.Status.PowerState).To(Equal(vpoolv1alpha1.PowerHalted))
		g.Expect(meta.FindStatusCondition(getVM(g, ns, name).Status.Conditions, backup.ConditionRestored)).To(BeNil(),
			"only a VM the restore had to decide about says so")
		g.Expect(getVDI(g, ns, name).Status.Lock).To(BeNil())
		g.Eventually(func() string { return getVM(g, ns, name).Status.UUID }, wait, poll).Should(Equal(uuids[i]),
			"a restored VM keeps its uuid")
	}
	g.Expect(getHost(g, ns, "h1").Spec.PoolRef.Name).To(Equal("p2"))
	app := &vpoolv1alpha1.VirtualAppliance{}
	g.Expect(k8s.Get(context.Background(), key(ns, "shop"), app)).To(Succeed(), "the restore brings the pool's vApps back")
	g.Expect(app.Spec.PoolRef.Name).To(Equal("p2"))
	g.Expect(app.Spec.StartDelay.Duration).To(Equal(30 * time.Second))
	// The VDIs' controller left them to the restore; now they have their Ready condition.
	for i := 0; i < 4; i++ {
		name := "vm-" + string(rune('0'+i))
		g.Eventually(func(g Gomega) *metav1.Condition {
			return meta.FindStatusCondition(getVDI(g, ns, name).Status.Conditions, vpoolv1alpha1.ConditionReady)
		}, wait, poll).Should(And(Not(BeNil()), HaveField("Status", metav1.ConditionTrue), HaveField("Reason", "Unlocked")))
	}

	// Hosts rejoin when their agents heartbeat; then the VMs run again.
	startAgent(t, ns, "h1", interval, nil)
	startAgent(t, ns, "h2", interval, nil)
	for i := 0; i < 4; i++ {
		g.Eventually(runningOn(ns, "vm-"+string(rune('0'+i))), wait, poll).ShouldNot(BeEmpty())
	}
}

// recordVolume records a VDI's volume in its status, as its agent does on
// first attach.
func recordVolume(g Gomega, ns, name, volume string) {
	vdi := getVDI(g, ns, name)
	patch := client.MergeFrom(vdi.DeepCopy())
	vdi.Status.Volume = volume
	g.Expect(k8s.Status().Patch(context.Background(), vdi, patch)).To(Succeed())
}

// A whole-pool restore gives each VDI whose agent had recorded a volume that
// volume (kept in the backup) as vpool.poolkeeper.io/volume, so that the
// VDI attaches it again rather than a new, empty one; a VDI that had none
// gets none, and its agent finds or creates its volume by name.
func TestRestoreKeepsVolumes(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	var volumes map[string]string
	ns := lostPoolWithBackup(t, g, func(ns string) {
		// vm-0's volume is named after its namespace, vm-1's (older) after the VDI.
		volumes = map[string]string{"vm-0": "/srv/images/" + ns + "_vm-0", "vm-1": "/srv/images/vm-1", "vm-2": "", "vm-3": ""}
		for name, v := range volumes {
			if v != "" {
				recordVolume(g, ns, name, v)
			}
		}
	})

	createRestoringPool(t, ns, "p2", vpoolv1alpha1.RestoreSource{BackupName: "b"})
	g.Eventually(restored(ns, "p2"), wait, poll).Should(HaveField("Status", metav1.ConditionTrue))
	for name, v := range volumes {
		vdi := getVDI(g, ns, name)
		g.Expect(vdi.Spec.PoolRef.Name).To(Equal("p2"))
		g.Expect(vdi.Status.Volume).To(BeEmpty(), "a new object: its agent records the volume it attaches")
		if v == "" {
			g.Expect(vdi.Annotations).NotTo(HaveKey(vpoolv1alpha1.AnnotationVolume), name)
		} else {
			g.Expect(vdi.Annotations).To(HaveKeyWithValue(vpoolv1alpha1.AnnotationVolume, v), name)
		}
	}
}

// withPowerState sets a VM's desired power state.
func withPowerState(p vpoolv1alpha1.DesiredPowerState) func(*vpoolv1alpha1.VirtualMachine) {
	return func(vm *vpoolv1alpha1.VirtualMachine) { vm.Spec.PowerState = p }
}

// suspend records a VM as Suspended with its memory image on a VDI, as its
// host's agent would.
func suspend(t *testing.T, g Gomega, ns, name, image string) {
	t.Helper()
	vm := getVM(g, ns, name)
	patch := client.MergeFrom(vm.DeepCopy())
	vm.Status.PowerState, vm.Status.SuspendVirtualDisk = vpoolv1alpha1.PowerSuspended, image
	g.Expect(k8s.Status().Patch(context.Background(), vm, patch)).To(Succeed())
}

// A VM Suspended with its memory image on a host's local SR cannot resume
// after the pool is lost: it comes back Halted, and says why. One whose image
// is on a shared SR stays Suspended.
func TestRestoreSuspendedVMs(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ns, _ := lostPoolWithSuspendedVMs(t, g)

	createRestoringPool(t, ns, "p2", vpoolv1alpha1.RestoreSource{BackupName: "b"})
	g.Eventually(restored(ns, "p2"), wait, poll).Should(HaveField("Status", metav1.ConditionTrue))
	g.Expect(getPool(g, ns, "p2").Status.Restore.Problems).To(ContainElement(
		"VirtualMachine local: Halted: its suspend image was on local SR h1-local, lost with its host"))
	expectSuspendedVMsRestored(g, ns)
}

// lostPoolWithSuspendedVMs is lostPoolWithBackup with two more VMs, both
// Suspended: "local" with its image on h1's local SR, "shared" with its
// image on the shared SR. It returns the namespace and the running manager.
func lostPoolWithSuspendedVMs(t *testing.T, g Gomega) (string, *manager) {
	t.Helper()
	ns := newNamespace(t)
	populatedPool(t, ns)
	createVDI(t, ns, "p", "local-suspend", "h1-local")
	createVM(t, ns, "p", "local", withDisk("local-suspend"), withPowerState(vpoolv1alpha1.DesiredHalted))
	suspend(t, g, ns, "local", "local-suspend")
	createVDI(t, ns, "p", "shared-suspend", "nfs")
	createVM(t, ns, "p", "shared", withDisk("shared-suspend"), withPowerState(vpoolv1alpha1.DesiredHalted))
	suspend(t, g, ns, "shared", "shared-suspend")
	createKey(t, ns, "k", backupKey)
	m := startManager(t, ns, controllers.Options{})
	completedBackup(t, g, ns)
	losePool(t, g, ns)
	return ns, m
}

// expectSuspendedVMsRestored checks the VMs of lostPoolWithSuspendedVMs
// after a restore: "local" Halted, "shared" Suspended, each with a Restored
// condition saying why, kept once the VM controller has taken them over.
func expectSuspendedVMsRestored(g Gomega, ns string) {
	vm := getVM(g, ns, "local")
	g.Expect(vm.Status.PowerState).To(Equal(vpoolv1alpha1.PowerHalted))
	g.Expect(vm.Status.SuspendVirtualDisk).To(BeEmpty())
	g.Expect(vm.Status.ResidentOn).To(BeEmpty())
	c := meta.FindStatusCondition(vm.Status.Conditions, backup.ConditionRestored)
	g.Expect(c).NotTo(BeNil(), "%+v", vm.Status)
	g.Expect(c.Status).To(Equal(metav1.ConditionTrue))
	g.Expect(c.Reason).To(Equal(backup.ReasonSuspendImageLost))
	g.Expect(c.Message).To(Equal("Suspended in backup b, restored Halted: its suspend image was on local SR h1-local, lost with its host"))

	vm = getVM(g, ns, "shared")
	g.Expect(vm.Status.PowerState).To(Equal(vpoolv1alpha1.PowerSuspended))
	g.Expect(vm.Status.SuspendVirtualDisk).To(Equal("shared-suspend"))
	g.Expect(meta.FindStatusCondition(vm.Status.Conditions, backup.ConditionRestored)).To(And(
		HaveField("Reason", backup.ReasonSuspendImageKept),
		HaveField("Message", "Suspended in backup b, restored Suspended: its suspend image VirtualDisk shared-suspend is on shared SR nfs")))

	// The VM controller takes both over without losing what the restore said.
	for _, name := range []string{"local", "shared"} {
		g.Eventually(func(g Gomega) []metav1.Condition { return getVM(g, ns, name).Status.Conditions }, wait, poll).Should(And(
			ContainElement(HaveField("Type", vpoolv1alpha1.ConditionReady)),
			ContainElement(HaveField("Type", backup.ConditionRestored))))
	}
	g.Expect(getVM(g, ns, "local").Status.PowerState).To(Equal(vpoolv1alpha1.PowerHalted))
	g.Expect(getVM(g, ns, "shared").Status.PowerState).To(Equal(vpoolv1alpha1.PowerSuspended))
}

// A restore cut short by a crash is finished by the next manager: what the
// first one created is recognised, neither duplicated nor a conflict, and a
// VM created without its status yet gets it.
func TestRestoreResumesAfterCrash(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ctx := context.Background()
	ns, m := lostPoolWithSuspendedVMs(t, g)
	m.Stop()
	createRestoringPool(t, ns, "p2", vpoolv1alpha1.RestoreSource{BackupName: "b"})

	// What the crashed manager had done: the SRs, the VDIs and the first VMs,
	// "shared" among them, with no status written yet.
	pb := getBackup(g, ns, "b")
	data, err := (&backup.SecretStore{Client: k8s}).Get(ctx, pb)
	g.Expect(err).NotTo(HaveOccurred())
	plan, err := backup.Preflight(pb, data, backupKey, getPool(g, ns, "p2"), backup.Existing{})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(plan.VirtualMachines).To(HaveLen(6))
	for _, obj := range plan.Objects() {
		switch o := obj.(type) {
		case *vpoolv1alpha1.Host:
			continue
		case *vpoolv1alpha1.VirtualMachine:
			if o.Name != "shared" && o.Name != "vm-0" {
				continue
			}
		}
		g.Expect(k8s.Create(ctx, obj)).To(Succeed())
	}

	startManager(t, ns, controllers.Options{})
	g.Eventually(restored(ns, "p2"), wait, poll).Should(And(HaveField("Status", metav1.ConditionTrue),
		HaveField("Message", ContainSubstring("already restored"))))
	p2 := getPool(g, ns, "p2")
	g.Expect(p2.Status.Restore.Created).To(Equal(vpoolv1alpha1.BackupCounts{Hosts: 2, SRs: 2, VDIs: 6, VMs: 6}))
	g.Expect(p2.Status.Restore.Problems).NotTo(ContainElement(ContainSubstring("already exists")))
	vms := &vpoolv1alpha1.VirtualMachineList{}
	g.Expect(k8s.List(ctx, vms, inNS(ns))).To(Succeed())
	g.Expect(vms.Items).To(HaveLen(6))
	expectSuspendedVMsRestored(g, ns)
	// vm-0 had no status when the manager stopped; the restore did not write
	// it again (it was there already), and the VM controller records it once
	// the restore is done.
	g.Eventually(func(g Gomega) vpoolv1alpha1.PowerState { return getVM(g, ns, "vm-0").Status.PowerState }, wait, poll).Should(
		Equal(vpoolv1alpha1.PowerHalted))
}

// Preflight failures write nothing and name what failed.
func TestRestorePreflightFailures(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ns := lostPoolWithBackup(t, g)

	// A flipped byte in a stored chunk.
	ctx := context.Background()
	chunk := &corev1.Secret{}
	g.Expect(k8s.Get(ctx, key(ns, backup.ChunkName("b", 0)), chunk)).To(Succeed())
	orig := append([]byte(nil), chunk.Data[backup.ChunkKey]...)
	chunk.Data[backup.ChunkKey][len(orig)/2] ^= 0x01
	g.Expect(k8s.Update(ctx, chunk)).To(Succeed())
	createRestoringPool(t, ns, "p2", vpoolv1alpha1.RestoreSource{BackupName: "b"})
	g.Eventually(restored(ns, "p2"), wait, poll).Should(And(HaveField("Status", metav1.ConditionFalse),
		HaveField("Message", ContainSubstring("checksum")), HaveField("Message", ContainSubstring("nothing was written"))))
	vms := &vpoolv1alpha1.VirtualMachineList{}
	g.Expect(k8s.List(ctx, vms, inNS(ns))).To(Succeed())
	g.Expect(vms.Items).To(BeEmpty())
	// A restore stopped in its preflight tries again when its Pool changes:
	// p2 goes before the bytes are mended, so that only p3 reads them.
	g.Expect(k8s.Delete(ctx, &vpoolv1alpha1.Pool{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "p2"}})).To(Succeed())
	g.Eventually(poolGone(ns, "p2"), wait, poll).Should(BeTrue())

	// The right bytes but another key.
	g.Expect(k8s.Get(ctx, key(ns, backup.ChunkName("b", 0)), chunk)).To(Succeed())
	chunk.Data[backup.ChunkKey] = orig
	g.Expect(k8s.Update(ctx, chunk)).To(Succeed())
	k := &corev1.Secret{}
	g.Expect(k8s.Get(ctx, key(ns, "k"), k)).To(Succeed())
	k.Data["key"] = []byte("another-key-of-at-least-32-bytes-long!!")
	g.Expect(k8s.Update(ctx, k)).To(Succeed())
	createRestoringPool(t, ns, "p3", vpoolv1alpha1.RestoreSource{BackupName: "b"})
	g.Eventually(restored(ns, "p3"), wait, poll).Should(And(HaveField("Status", metav1.ConditionFalse),
		HaveField("Reason", backup.ReasonWrongKey)))
	g.Expect(k8s.List(ctx, vms, inNS(ns))).To(Succeed())
	g.Expect(vms.Items).To(BeEmpty())

	// A missing key Secret.
	g.Expect(k8s.Delete(ctx, k)).To(Succeed())
	createRestoringPool(t, ns, "p4", vpoolv1alpha1.RestoreSource{BackupName: "b"})
	g.Eventually(restored(ns, "p4"), wait, poll).Should(And(HaveField("Status", metav1.ConditionFalse),
		HaveField("Reason", controllers.ReasonKeyUnavailable), HaveField("Message", ContainSubstring(`Secret "k" not found`))))
}

// Strict stops at a conflict before writing anything; BestEffort skips the
// conflicting object and reports it.
func TestRestoreConflicts(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ns := lostPoolWithBackup(t, g)
	createPool(t, ns, "other", poolOpts{})
	createVM(t, ns, "other", "vm-1")

	createRestoringPool(t, ns, "strict", vpoolv1alpha1.RestoreSource{BackupName: "b", Mode: vpoolv1alpha1.RestoreStrict})
	g.Eventually(restored(ns, "strict"), wait, poll).Should(And(HaveField("Status", metav1.ConditionFalse),
		HaveField("Reason", backup.ReasonRestoreConflict), HaveField("Message", ContainSubstring("vm-1"))))
	srs := &vpoolv1alpha1.StorageRepositoryList{}
	g.Expect(k8s.List(context.Background(), srs, inNS(ns))).To(Succeed())
	g.Expect(srs.Items).To(BeEmpty(), "Strict writes nothing")
	g.Expect(k8s.Delete(context.Background(), getPool(g, ns, "strict"))).To(Succeed())

	createRestoringPool(t, ns, "best", vpoolv1alpha1.RestoreSource{BackupName: "b", Mode: vpoolv1alpha1.RestoreBestEffort})
	g.Eventually(restored(ns, "best"), wait, poll).Should(HaveField("Status", metav1.ConditionTrue))
	best := getPool(g, ns, "best")
	g.Expect(best.Status.Restore.Created.VMs).To(BeEquivalentTo(3), "%+v %v", best.Status.Restore, meta.FindStatusCondition(best.Status.Conditions, vpoolv1alpha1.PoolRestored))
	g.Expect(best.Status.Restore.Problems).To(ContainElement(ContainSubstring("vm-1")))
	g.Expect(getVM(g, ns, "vm-1").Spec.PoolRef.Name).To(Equal("other"), "the existing object is not overwritten")
	g.Expect(getVM(g, ns, "vm-2").Spec.PoolRef.Name).To(Equal("best"))
}

// A DR test failover recreates everything, starts nothing, and cleans up
// when the test is marked finished.
func TestRestoreDryRun(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ns := lostPoolWithBackup(t, g)

	createRestoringPool(t, ns, "dr", vpoolv1alpha1.RestoreSource{BackupName: "b", DryRun: true})
	g.Eventually(restored(ns, "dr"), wait, poll).Should(And(HaveField("Status", metav1.ConditionTrue),
		HaveField("Reason", controllers.ReasonDRTestReady), HaveField("Message", ContainSubstring("no VM is started"))))
	startAgent(t, ns, "h1", interval, nil)
	g.Eventually(phaseOf(ns, "h1"), wait, poll).Should(Equal(vpoolv1alpha1.HostPhaseLive))
	g.Consistently(runningOn(ns, "vm-0"), time.Second, poll).Should(BeEmpty(), "a DR test starts nothing")

	dr := getPool(g, ns, "dr")
	patch := client.MergeFrom(dr.DeepCopy())
	dr.Annotations = map[string]string{vpoolv1alpha1.AnnotationDRTestFinished: "true"}
	g.Expect(k8s.Patch(context.Background(), dr, patch)).To(Succeed())
	g.Eventually(restored(ns, "dr"), wait, poll).Should(HaveField("Reason", controllers.ReasonDRTestCleanedUp))
	g.Eventually(func(g Gomega) int {
		vms := &vpoolv1alpha1.VirtualMachineList{}
		g.Expect(k8s.List(context.Background(), vms, inNS(ns))).To(Succeed())
		return len(vms.Items)
	}, wait, poll).Should(BeZero())
}

// Scheduled backups: one per due time (missed runs collapse into one), the
// oldest pruned beyond retain, with a fake clock.
func TestBackupScheduleAndRetention(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ns := newNamespace(t)
	populatedPool(t, ns)
	createKey(t, ns, "k", backupKey)
	created := getPool(g, ns, "p").CreationTimestamp.Time
	clk := clocktesting.NewFakeClock(created)
	startManager(t, ns, controllers.Options{Clock: clk})

	pool := getPool(g, ns, "p")
	patch := client.MergeFrom(pool.DeepCopy())
	pool.Spec.Backup = &vpoolv1alpha1.BackupSchedule{Schedule: "0 * * * *", Retain: 2,
		Encryption: vpoolv1alpha1.BackupEncryption{KeySecretRef: vpoolv1alpha1.LocalObjectReference{Name: "k"}}}
	g.Expect(k8s.Patch(context.Background(), pool, patch)).To(Succeed())
	g.Eventually(func(g Gomega) *vpoolv1alpha1.BackupScheduleStatus { return getPool(g, ns, "p").Status.Backup }, wait, poll).Should(
		HaveField("NextScheduleTime", Not(BeNil())))

	scheduled := func(g Gomega) []string {
		l := &vpoolv1alpha1.PoolBackupList{}
		g.Expect(k8s.List(context.Background(), l, inNS(ns), client.MatchingLabels{vpoolv1alpha1.LabelScheduled: "true"})).To(Succeed())
		var names []string
		for _, b := range l.Items {
			if b.DeletionTimestamp.IsZero() {
				names = append(names, b.Name)
			}
		}
		return names
	}
	// Five hours pass while the operator is down: one backup, not five.
	clk.Step(5 * time.Hour)
	poke(g, ns)
	g.Eventually(scheduled, wait, poll).Should(HaveLen(1))
	for i := 0; i < 3; i++ {
		clk.Step(time.Hour)
		poke(g, ns)
		// Retention may already have pruned the oldest once the new one completed.
		g.Eventually(scheduled, wait, poll).Should(Or(HaveLen(min(i+2, 3)), HaveLen(2)))
		g.Eventually(func(g Gomega) []vpoolv1alpha1.PoolBackupPhase {
			var phases []vpoolv1alpha1.PoolBackupPhase
			for _, n := range scheduled(g) {
				phases = append(phases, getBackup(g, ns, n).Status.Phase)
			}
			return phases
		}, wait, poll).Should(HaveEach(vpoolv1alpha1.BackupCompleted))
	}
	poke(g, ns)
	g.Eventually(scheduled, wait, poll).Should(HaveLen(2), "retain 2")
}

// poke makes the Pool reconcile now (the fake clock does not fire requeues).
func poke(g Gomega, ns string) {
	p := getPool(g, ns, "p")
	patch := client.MergeFrom(p.DeepCopy())
	if p.Annotations == nil {
		p.Annotations = map[string]string{}
	}
	p.Annotations["poke"] = time.Now().String()
	g.Expect(k8s.Patch(context.Background(), p, patch)).To(Succeed())
}

// spec.backup.verify checks the pool's latest backup on its schedule, with
// nothing created: a backup that opens and plans passes, is annotated
// verified-at and shows in the verification gauge; one whose key is gone
// fails, saying why.
func TestScheduledBackupVerification(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ns := newNamespace(t)
	populatedPool(t, ns)
	createKey(t, ns, "k", backupKey)
	created := getPool(g, ns, "p").CreationTimestamp.Time
	clk := clocktesting.NewFakeClock(created)
	startManager(t, ns, controllers.Options{Clock: clk})
	completedBackup(t, g, ns)

	pool := getPool(g, ns, "p")
	patch := client.MergeFrom(pool.DeepCopy())
	pool.Spec.Backup = &vpoolv1alpha1.BackupSchedule{Schedule: "0 0 1 1 *", Retain: 2,
		Encryption: vpoolv1alpha1.BackupEncryption{KeySecretRef: vpoolv1alpha1.LocalObjectReference{Name: "k"}},
		Verify:     &vpoolv1alpha1.BackupVerification{Schedule: "0 * * * *"}}
	g.Expect(k8s.Patch(context.Background(), pool, patch)).To(Succeed())
	g.Eventually(func(g Gomega) *metav1.Time {
		st := getPool(g, ns, "p").Status.Backup
		g.Expect(st).NotTo(BeNil())
		return st.NextVerifyScheduleTime
	}, wait, poll).ShouldNot(BeNil())
	g.Expect(getPool(g, ns, "p").Status.LastVerified).To(BeNil(), "not due yet")

	clk.Step(time.Hour)
	poke(g, ns)
	g.Eventually(func(g Gomega) *vpoolv1alpha1.BackupVerificationStatus { return getPool(g, ns, "p").Status.LastVerified }, wait, poll).Should(
		And(Not(BeNil()), HaveField("Passed", true), HaveField("Backup", "b"),
			HaveField("Message", And(ContainSubstring("sha256 as recorded, decrypted, 2 hosts, 2 SRs, 4 VDIs, 4 VMs"),
				ContainSubstring("Create VirtualMachine: 4")))))
	g.Expect(getBackup(g, ns, "b").Annotations).To(HaveKey("vpool.poolkeeper.io/verified-at"))
	g.Eventually(eventsOf(ns, "p"), wait, poll).Should(ContainElement(controllers.ReasonBackupVerified))
	l := &vpoolv1alpha1.VirtualMachineList{}
	g.Expect(k8s.List(context.Background(), l, inNS(ns))).To(Succeed())
	g.Expect(l.Items).To(HaveLen(4), "a verification creates nothing")

	// The key is lost: the next verification fails and says so.
	g.Expect(k8s.Delete(context.Background(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "k"}})).To(Succeed())
	clk.Step(time.Hour)
	poke(g, ns)
	g.Eventually(func(g Gomega) *vpoolv1alpha1.BackupVerificationStatus { return getPool(g, ns, "p").Status.LastVerified }, wait, poll).Should(
		And(HaveField("Passed", false), HaveField("Message", ContainSubstring("KeyUnavailable"))))
	g.Eventually(eventsOf(ns, "p"), wait, poll).Should(ContainElement(controllers.ReasonBackupVerificationFailed))
}
