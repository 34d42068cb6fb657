package controllers_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/controllers"
	"github.com/poolkeeper/poolkeeper/internal/backup"
	"github.com/poolkeeper/poolkeeper/internal/fencing"
	"github.com/poolkeeper/poolkeeper/internal/testutil/bmcsim"
)

// kstatusOf reads obj as Flux and Argo CD do: through kstatus.
func kstatusOf(ns, name string, obj client.Object) func(g Gomega) status.Status {
	return func(g Gomega) status.Status {
		g.Expect(k8s.Get(context.Background(), key(ns, name), obj)).To(Succeed())
		content, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
		g.Expect(err).NotTo(HaveOccurred())
		res, err := status.Compute(&unstructured.Unstructured{Object: content})
		g.Expect(err).NotTo(HaveOccurred())
		return res.Status
	}
}

// A Live host reads Current; a host being fenced reads InProgress, for as
// long as its BMC keeps failing.
func TestKstatusHostLiveAndFencing(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ns := newNamespace(t)
	bmc, a2 := redfishPool(t, g, ns)
	g.Eventually(kstatusOf(ns, "h2", &vpoolv1alpha1.Host{}), wait, poll).Should(Equal(status.CurrentStatus))
	g.Eventually(kstatusOf(ns, "p", &vpoolv1alpha1.Pool{}), wait, poll).Should(Equal(status.CurrentStatus))

	bmc.SetFailing(http.StatusInternalServerError)
	a2.Kill()
	g.Eventually(phaseOf(ns, "h2"), wait, poll).Should(Equal(vpoolv1alpha1.HostPhaseFencing))
	g.Eventually(kstatusOf(ns, "h2", &vpoolv1alpha1.Host{}), wait, poll).Should(Equal(status.InProgressStatus))
	g.Expect(kstatusOf(ns, "h1", &vpoolv1alpha1.Host{})(g)).To(Equal(status.CurrentStatus))
}

// A BMC that refuses the credentials waits for a person: the host reads
// Failed (Stalled), and Current again once the Secret is right.
func TestKstatusRedfishUnauthorizedIsStalled(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ns := newNamespace(t)
	bmc := bmcsim.New(t, bmcsim.WithSystem("h1", bmcsim.PowerOn))
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "bmc"}, Type: corev1.SecretTypeBasicAuth,
		StringData: map[string]string{"username": bmcsim.DefaultUsername, "password": "wrong"}}
	g.Expect(k8s.Create(context.Background(), secret)).To(Succeed())
	createPool(t, ns, "p", poolOpts{ha: true, timeout: timeout})
	createHost(t, ns, "p", "h1", redfishHost(bmc, "h1"))
	startManager(t, ns, controllers.Options{})
	startAgent(t, ns, "h1", interval, nil)
	g.Eventually(func(g Gomega) []metav1.Condition { return getHost(g, ns, "h1").Status.Conditions }, wait, poll).Should(
		ContainElement(And(HaveField("Type", vpoolv1alpha1.HostFencingReady), HaveField("Reason", controllers.ReasonBMCUnauthorized))))
	g.Expect(kstatusOf(ns, "h1", &vpoolv1alpha1.Host{})(g)).To(Equal(status.FailedStatus), "%+v", getHost(g, ns, "h1").Status.Conditions)

	secret.StringData = map[string]string{"username": bmcsim.DefaultUsername, "password": bmcsim.DefaultPassword}
	g.Expect(k8s.Update(context.Background(), secret)).To(Succeed())
	h := getHost(g, ns, "h1")
	patch := client.MergeFrom(h.DeepCopy())
	h.Spec.Address = "h1-b.example" // a spec change checks the BMC again at once
	g.Expect(k8s.Patch(context.Background(), h, patch)).To(Succeed())
	g.Eventually(kstatusOf(ns, "h1", &vpoolv1alpha1.Host{}), wait, poll).Should(Equal(status.CurrentStatus))
}

// A Completed PoolBackup reads Current; one without its key reads Failed
// (Stalled): it is never retried.
func TestKstatusBackupCompletedAndFailed(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ns := newNamespace(t)
	populatedPool(t, ns)
	createKey(t, ns, "k", backupKey)
	startManager(t, ns, controllers.Options{})
	createBackup(t, ns, "good", "k")
	createBackup(t, ns, "missing", "nope")
	for name, phase := range map[string]vpoolv1alpha1.PoolBackupPhase{"good": vpoolv1alpha1.BackupCompleted, "missing": vpoolv1alpha1.BackupFailed} {
		g.Eventually(func(g Gomega) vpoolv1alpha1.PoolBackupPhase { return getBackup(g, ns, name).Status.Phase }, wait, poll).Should(Equal(phase))
	}
	g.Expect(kstatusOf(ns, "good", &vpoolv1alpha1.PoolBackup{})(g)).To(Equal(status.CurrentStatus))
	g.Expect(kstatusOf(ns, "missing", &vpoolv1alpha1.PoolBackup{})(g)).To(Equal(status.FailedStatus))
}

// A Pool whose backup schedule is not a cron string reads Failed (Stalled)
// until the schedule is fixed.
func TestKstatusPoolBadScheduleIsStalled(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ns := newNamespace(t)
	pool := &vpoolv1alpha1.Pool{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "p"}}
	pool.Spec.Backup = &vpoolv1alpha1.BackupSchedule{Schedule: "every hour", Retain: 2}
	pool.Spec.Backup.Encryption.KeySecretRef.Name = "k"
	g.Expect(k8s.Create(context.Background(), pool)).To(Succeed())
	startManager(t, ns, controllers.Options{})
	g.Eventually(kstatusOf(ns, "p", &vpoolv1alpha1.Pool{}), wait, poll).Should(Equal(status.FailedStatus))

	p := getPool(g, ns, "p")
	patch := client.MergeFrom(p.DeepCopy())
	p.Spec.Backup.Schedule = "0 * * * *"
	g.Expect(k8s.Patch(context.Background(), p, patch)).To(Succeed())
	g.Eventually(kstatusOf(ns, "p", &vpoolv1alpha1.Pool{}), wait, poll).ShouldNot(Equal(status.FailedStatus))
}

// A Strict restore stopped on a conflict waits for a person: the Pool reads
// Failed (Stalled).
func TestKstatusStrictRestoreConflictIsStalled(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ns := lostPoolWithBackup(t, g)
	createPool(t, ns, "other", poolOpts{})
	createVM(t, ns, "other", "vm-1")
	createRestoringPool(t, ns, "strict", vpoolv1alpha1.RestoreSource{BackupName: "b", Mode: vpoolv1alpha1.RestoreStrict})
	g.Eventually(restored(ns, "strict"), wait, poll).Should(HaveField("Reason", backup.ReasonRestoreConflict))
	g.Eventually(kstatusOf(ns, "strict", &vpoolv1alpha1.Pool{}), wait, poll).Should(Equal(status.FailedStatus))
}

// A Pool whose storm guard holds is not Ready, though its master is up: it
// could not recover from one more host failure.
func TestKstatusPoolStormGuardIsNotReady(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ns := newNamespace(t)
	createPool(t, ns, "p", poolOpts{ha: true, timeout: timeout, master: "h1"})
	agents := map[string]*runningAgent{}
	for _, h := range []string{"h1", "h2", "h3"} {
		createHost(t, ns, "p", h)
	}
	startManager(t, ns, controllers.Options{})
	for _, h := range []string{"h1", "h2", "h3"} {
		agents[h] = startAgent(t, ns, h, interval, nil)
		g.Eventually(phaseOf(ns, h), wait, poll).Should(Equal(vpoolv1alpha1.HostPhaseLive))
	}
	g.Eventually(poolCondition(ns, vpoolv1alpha1.ConditionReady), wait, poll).Should(HaveField("Status", metav1.ConditionTrue))
	agents["h2"].Kill()
	agents["h3"].Kill()
	g.Eventually(poolCondition(ns, vpoolv1alpha1.ConditionReady), wait, poll).Should(And(
		HaveField("Status", metav1.ConditionFalse), HaveField("Reason", fencing.ReasonStormGuard)))
	g.Expect(poolCondition(ns, vpoolv1alpha1.PoolMasterAvailable)(g)).To(HaveField("Status", metav1.ConditionTrue))
	g.Expect(kstatusOf(ns, "p", &vpoolv1alpha1.Pool{})(g)).To(Equal(status.InProgressStatus))
}

// A BMC that refuses the credentials during a fence stops the fence: the
// host reads Failed (Stalled, FencingReady naming the Secret to fix), the BMC
// is not asked again with the same credentials, and the fence completes once
// the Secret is fixed.
func TestKstatusRedfishUnauthorizedWhileFencingIsStalled(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	bmc, a2 := redfishPool(t, g, ns)
	secret := &corev1.Secret{}
	g.Expect(k8s.Get(ctx, key(ns, "bmc"), secret)).To(Succeed())
	secret.Data["password"] = []byte("rotated-on-the-bmc-only")
	g.Expect(k8s.Update(ctx, secret)).To(Succeed())

	a2.Kill()
	g.Eventually(kstatusOf(ns, "h2", &vpoolv1alpha1.Host{}), wait, poll).Should(Equal(status.FailedStatus))
	h := getHost(g, ns, "h2")
	g.Expect(h.Status.Phase).To(Equal(vpoolv1alpha1.HostPhaseFencing))
	g.Expect(h.Status.Conditions).To(ContainElement(And(HaveField("Type", vpoolv1alpha1.ConditionStalled),
		HaveField("Reason", controllers.ReasonBMCUnauthorized), HaveField("Message", ContainSubstring("Secret bmc")))))
	g.Eventually(eventsOf(ns, "h2"), wait, poll).Should(ContainElement(controllers.ReasonBMCUnauthorized))
	refused := bmc.AuthFailures()
	g.Consistently(bmc.AuthFailures, 3*time.Second, poll).Should(Equal(refused), "no retry with the refused credentials")

	g.Expect(k8s.Get(ctx, key(ns, "bmc"), secret)).To(Succeed())
	secret.Data["password"] = []byte(bmcsim.DefaultPassword)
	g.Expect(k8s.Update(ctx, secret)).To(Succeed())
	// The manager does not watch Secrets: a change of the Host brings the
	// retry at once (else the Secret is looked at again within StallRecheck).
	h = getHost(g, ns, "h2")
	patch := client.MergeFrom(h.DeepCopy())
	h.Annotations = map[string]string{"example.com/credentials-fixed": "true"}
	g.Expect(k8s.Patch(ctx, h, patch)).To(Succeed())
	g.Eventually(phaseOf(ns, "h2"), wait, poll).Should(Equal(vpoolv1alpha1.HostPhaseFenced))
	g.Expect(getHost(g, ns, "h2").Status.Conditions).NotTo(ContainElement(HaveField("Type", vpoolv1alpha1.ConditionStalled)))
}

// A pool that could not restart its VMs after one more host failure
// (Overcommitted) is not Ready: kstatus does not read it Current.
func TestKstatusOvercommittedPoolIsNotReady(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	f := newPoolFixture(t, poolOpts{ha: true, timeout: timeout}, "h1", "h2")
	g.Eventually(kstatusOf(f.ns, "p", &vpoolv1alpha1.Pool{}), wait, poll).Should(Equal(status.CurrentStatus))
	for _, name := range []string{"vm-1", "vm-2"} { // 24 CPUs: two 16-CPU hosts less one cannot run both
		createVM(t, f.ns, "p", name, withCPU("12"))
	}
	g.Eventually(poolCondition(f.ns, vpoolv1alpha1.ConditionReady), wait, poll).Should(And(
		HaveField("Status", metav1.ConditionFalse), HaveField("Reason", controllers.ReasonOvercommitted)))
	g.Expect(poolCondition(f.ns, vpoolv1alpha1.PoolMasterAvailable)(g)).To(HaveField("Status", metav1.ConditionTrue))
	g.Expect(kstatusOf(f.ns, "p", &vpoolv1alpha1.Pool{})(g)).To(Equal(status.InProgressStatus))
}

// A running VM, its disk and its SR read Current; a VM, a disk and an SR
// whose spec names what does not exist read Failed (Stalled) until fixed.
func TestKstatusVMDiskAndSR(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ctx := context.Background()
	f := newPoolFixture(t, poolOpts{ha: true, timeout: timeout}, "h1")
	createVDI(t, f.ns, "p", "disk", "nfs")
	createVM(t, f.ns, "p", "vm-1", withDisk("disk"))
	g.Eventually(runningOn(f.ns, "vm-1"), wait, poll).Should(Equal("h1"))
	g.Eventually(kstatusOf(f.ns, "vm-1", &vpoolv1alpha1.VirtualMachine{}), wait, poll).Should(Equal(status.CurrentStatus))
	g.Eventually(kstatusOf(f.ns, "disk", &vpoolv1alpha1.VirtualDisk{}), wait, poll).Should(Equal(status.CurrentStatus))
	g.Eventually(kstatusOf(f.ns, "nfs", &vpoolv1alpha1.StorageRepository{}), wait, poll).Should(Equal(status.CurrentStatus))

	createVDI(t, f.ns, "p", "orphan", "no-such-sr")
	createSR(t, f.ns, "p", "ghost-local", "no-such-host")
	createPool(t, f.ns, "q", poolOpts{})
	createVDI(t, f.ns, "q", "foreign", "nfs")
	createVM(t, f.ns, "p", "vm-2", withDisk("foreign"))
	g.Eventually(kstatusOf(f.ns, "orphan", &vpoolv1alpha1.VirtualDisk{}), wait, poll).Should(Equal(status.FailedStatus))
	g.Eventually(kstatusOf(f.ns, "ghost-local", &vpoolv1alpha1.StorageRepository{}), wait, poll).Should(Equal(status.FailedStatus))
	g.Eventually(kstatusOf(f.ns, "vm-2", &vpoolv1alpha1.VirtualMachine{}), wait, poll).Should(Equal(status.FailedStatus))

	vm := getVM(g, f.ns, "vm-2")
	patch := client.MergeFrom(vm.DeepCopy())
	vm.Spec.Disks = nil
	g.Expect(k8s.Patch(ctx, vm, patch)).To(Succeed())
	g.Eventually(kstatusOf(f.ns, "vm-2", &vpoolv1alpha1.VirtualMachine{}), wait, poll).Should(Equal(status.CurrentStatus))
	createSR(t, f.ns, "p", "no-such-sr", "")
	g.Eventually(kstatusOf(f.ns, "orphan", &vpoolv1alpha1.VirtualDisk{}), wait, poll).Should(Equal(status.CurrentStatus))
}

func withCPU(cpu string) func(*vpoolv1alpha1.VirtualMachine) {
	return func(vm *vpoolv1alpha1.VirtualMachine) {
		q := resource.MustParse(cpu)
		vm.Spec.Resources.CPU = &q
	}
}
