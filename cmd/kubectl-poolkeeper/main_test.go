package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	filage "filippo.io/age"
	. "github.com/onsi/gomega"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/internal/backup"
	"github.com/poolkeeper/poolkeeper/internal/metrics"
)

const ns = "pools"

var now = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

// plugin runs the plugin against c with stdin and returns the exit
// status, stdout and stderr.
func plugin(c client.Client, stdin string, args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	o := newOptions(strings.NewReader(stdin), &out, &errOut)
	o.now = func() time.Time { return now }
	o.poll = time.Millisecond
	o.connect = func(*options) (client.Client, string, error) { return c, ns, nil }
	code := runWith(o, append([]string{"-n", ns}, args...))
	return code, out.String(), errOut.String()
}

func at(d time.Duration) *metav1.Time { return &metav1.Time{Time: now.Add(d)} }

func cond(t string, st metav1.ConditionStatus, reason, msg string) metav1.Condition {
	return metav1.Condition{Type: t, Status: st, Reason: reason, Message: msg}
}

func host(name string, phase vpoolv1alpha1.HostPhase, role vpoolv1alpha1.HostRole) *vpoolv1alpha1.Host {
	return &vpoolv1alpha1.Host{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: vpoolv1alpha1.HostSpec{PoolRef: vpoolv1alpha1.PoolReference{Name: "p"}, Address: name + ".example",
			Capacity: vpoolv1alpha1.HostCapacity{CPU: resource.MustParse("16"), Memory: resource.MustParse("64Gi")}},
		Status: vpoolv1alpha1.HostStatus{Phase: phase, Role: role,
			Conditions: []metav1.Condition{cond("Ready", metav1.ConditionTrue, "Live", "")}},
	}
}

func lease(name string, renewed time.Duration) *coordinationv1.Lease {
	return &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: coordinationv1.LeaseSpec{RenewTime: &metav1.MicroTime{Time: now.Add(renewed)}}}
}

func vm(name, on string) *vpoolv1alpha1.VirtualMachine {
	return &vpoolv1alpha1.VirtualMachine{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: vpoolv1alpha1.VirtualMachineSpec{PoolRef: vpoolv1alpha1.PoolReference{Name: "p"}, PowerState: vpoolv1alpha1.DesiredRunning,
			Disks: []vpoolv1alpha1.VMDisk{{Name: "root", VirtualDisk: name + "-root"}}},
		Status: vpoolv1alpha1.VirtualMachineStatus{PowerState: vpoolv1alpha1.PowerRunning, ResidentOn: on,
			Conditions: []metav1.Condition{cond("Ready", metav1.ConditionTrue, "Running", "")}},
	}
}

func vdi(name, lockedBy string) *vpoolv1alpha1.VirtualDisk {
	d := &vpoolv1alpha1.VirtualDisk{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: vpoolv1alpha1.VirtualDiskSpec{PoolRef: vpoolv1alpha1.PoolReference{Name: "p"}, StorageRepository: "nfs",
			Size: resource.MustParse("10Gi")},
	}
	if lockedBy != "" {
		d.Status.Lock = &vpoolv1alpha1.VDILock{Host: lockedBy, Mode: vpoolv1alpha1.DiskRW, VirtualMachine: strings.TrimSuffix(name, "-root"), Since: at(-time.Hour)}
	}
	return d
}

// degradedPool: HA off, master h1 Live, h2 Unreachable with VM b and its
// lock, h3 Fencing with its safe time 10s away, guarded by /dev/watchdog.
func degradedPool() []client.Object {
	pool := &vpoolv1alpha1.Pool{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "p"},
		Status: vpoolv1alpha1.PoolStatus{Master: "h1", Epoch: 3, EffectiveHeartbeatTimeout: &metav1.Duration{Duration: 40 * time.Second},
			Conditions: []metav1.Condition{
				cond("Ready", metav1.ConditionTrue, "Succeeded", ""),
				cond("FencingAllowed", metav1.ConditionTrue, "FencingAllowed", ""),
				cond("Overcommitted", metav1.ConditionFalse, "CapacityAvailable", ""),
			}},
	}
	h3 := host("h3", vpoolv1alpha1.HostPhaseFencing, vpoolv1alpha1.RoleMember)
	h3.Status.Fencing = &vpoolv1alpha1.FencingStatus{Method: vpoolv1alpha1.FencingAgent, StartedAt: at(-5 * time.Second),
		SafeAt: at(10 * time.Second), BootID: "boot-3"}
	h3.Status.Watchdog = &vpoolv1alpha1.WatchdogStatus{Kind: vpoolv1alpha1.WatchdogDevice, Device: "/dev/watchdog",
		Timeout: &metav1.Duration{Duration: 10 * time.Second}, BootID: "boot-3"}
	h2 := host("h2", vpoolv1alpha1.HostPhaseUnreachable, vpoolv1alpha1.RoleMember)
	h2.Status.Conditions = []metav1.Condition{cond("Ready", metav1.ConditionFalse, "HeartbeatStale", "no heartbeat for 45s")}
	return []client.Object{pool, host("h1", vpoolv1alpha1.HostPhaseLive, vpoolv1alpha1.RoleMaster), h2, h3,
		lease("h1", -2*time.Second), lease("h2", -45*time.Second), lease("h3", -50*time.Second),
		vm("a", "h1"), vm("b", "h2"), vdi("a-root", "h1"), vdi("b-root", "h2")}
}

func fakeClient(objs ...client.Object) client.Client {
	return fake.NewClientBuilder().WithScheme(scheme).WithObjects(objs...).Build()
}

func TestHelpNamesTheXeCommand(t *testing.T) {
	for cmd, xe := range map[string][]string{
		"status":           {"xe pool-list"},
		"host-forget":      {"xe host-forget", "vm-reset-powerstate"},
		"designate-master": {"pool-designate-new-master", "pool-emergency-transition-to-master", "pool-recover-slaves"},
		"backup":           {"xe pool-dump-database"},
		"backup-verify":    {"xe pool-restore-database"},
		"recover":          {"xe vm-recover", "appliance-recover", "PreferNewer"},
		"dr-test":          {"starting nothing", "--finish"},
	} {
		t.Run(cmd, func(t *testing.T) {
			g := NewWithT(t)
			code, out, _ := plugin(fakeClient(), "", cmd, "--help")
			g.Expect(code).To(Equal(exitOK))
			for _, s := range xe {
				g.Expect(out).To(ContainSubstring(s))
			}
			g.Expect(out).To(ContainSubstring("kubectl poolkeeper " + cmd))
		})
	}
}

func TestStatusShowsThePoolAtAGlance(t *testing.T) {
	g := NewWithT(t)
	pb := completedBackup("b1", "")
	pb.Annotations = map[string]string{metrics.AnnotationVerifiedAt: now.Add(-time.Minute).Format(time.RFC3339)}
	c := fakeClient(append(degradedPool(), pb)...)
	code, out, errOut := plugin(c, "", "status", "p")
	g.Expect(code).To(Equal(exitOK), errOut)
	g.Expect(out).To(ContainSubstring("Master h1, epoch 3; HA off; heartbeat timeout 40s"))
	g.Expect(out).To(ContainSubstring("Storm guard: fencing allowed"))
	g.Expect(out).To(MatchRegexp(`h1 +Master +Live +2s ago +- +1 +1 +True`))
	g.Expect(out).To(MatchRegexp(`h2 +Member +Unreachable +45s ago +- +1 +1 +False \(HeartbeatStale\)`))
	g.Expect(out).To(MatchRegexp(`h3 +Member +Fencing +50s ago +Agent, started 5s ago, safe in 10s, watchdog /dev/watchdog +0 +0`))
	g.Expect(out).To(MatchRegexp(`b-root +h2 +Unreachable +b +1h0m ago`))
	g.Expect(out).To(ContainSubstring("Last backup: b1 Completed 10m0s ago (2 hosts, 2 VMs"))
	g.Expect(out).To(ContainSubstring("Last verification: b1 passed 1m0s ago"))

	code, out, _ = plugin(c, "", "status", "p", "-o", "json")
	g.Expect(code).To(Equal(exitOK))
	var r poolReport
	g.Expect(json.Unmarshal([]byte(out), &r)).To(Succeed())
	g.Expect(r.Hosts).To(HaveLen(3))
	g.Expect(r.Hosts[2].Phase).To(Equal("Fencing"))
	g.Expect(r.Hosts[2].Watchdog).To(HaveField("Device", "/dev/watchdog"))
	g.Expect(*r.Hosts[1].HeartbeatAgeSeconds).To(BeNumerically("==", 45))
	g.Expect(r.Hosts[1].VMs).To(Equal([]string{"b"}))
	g.Expect(r.LastBackup.Name).To(Equal("b1"))

	code, out, _ = plugin(c, "", "status", "-o", "yaml")
	g.Expect(code).To(Equal(exitOK))
	g.Expect(out).To(ContainSubstring("name: p\n"))
}

func TestStatusSaysTheStormGuardHolds(t *testing.T) {
	g := NewWithT(t)
	objs := degradedPool()
	pool := objs[0].(*vpoolv1alpha1.Pool)
	pool.Status.Conditions[1] = cond("FencingAllowed", metav1.ConditionFalse, "StormGuard", "3 of 3 hosts are stale")
	code, out, _ := plugin(fakeClient(objs...), "", "status", "p")
	g.Expect(code).To(Equal(exitOK))
	g.Expect(out).To(ContainSubstring("Storm guard: HOLDING, fencing nobody (StormGuard: 3 of 3 hosts are stale)"))
}

func TestHostForgetWithoutConfirmationChangesNothing(t *testing.T) {
	g := NewWithT(t)
	c := fakeClient(degradedPool()...)
	code, out, errOut := plugin(c, "no\n", "host-forget", "h2")
	g.Expect(code).To(Equal(exitFailed))
	g.Expect(out).To(ContainSubstring("Plan for xe host-forget of host h2 (pool pools/p, phase Unreachable)"))
	g.Expect(out).To(ContainSubstring("VM b (Running): reset to Halted (vm-reset-powerstate), then started on another Live host"))
	g.Expect(out).To(ContainSubstring("VDI RW locks released: b-root"))
	g.Expect(out).To(ContainSubstring("master:   none: the master is h1"))
	g.Expect(errOut).To(ContainSubstring("Type yes to go on"))
	g.Expect(errOut).To(ContainSubstring("not confirmed: nothing changed"))
	h := &vpoolv1alpha1.Host{}
	g.Expect(c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "h2"}, h)).To(Succeed())
	g.Expect(h.Spec.State).To(BeEmpty())

	// No terminal, no answer: nothing either.
	code, _, _ = plugin(c, "", "host-forget", "h2")
	g.Expect(code).To(Equal(exitFailed))
	g.Expect(c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "h2"}, h)).To(Succeed())
	g.Expect(h.Spec.State).To(BeEmpty())
}

func TestHostForgetConfirmedSetsTheIntent(t *testing.T) {
	for name, how := range map[string]struct {
		stdin string
		args  []string
	}{"typed yes": {"yes\n", nil}, "--yes": {"", []string{"--yes"}}} {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			c := fakeClient(degradedPool()...)
			code, out, errOut := plugin(c, how.stdin, append([]string{"host-forget", "h2"}, how.args...)...)
			g.Expect(code).To(Equal(exitOK), errOut)
			g.Expect(out).To(ContainSubstring("host/h2: spec.state set to Forgotten"))
			h := &vpoolv1alpha1.Host{}
			g.Expect(c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "h2"}, h)).To(Succeed())
			g.Expect(h.Spec.State).To(Equal(vpoolv1alpha1.HostForgotten))
			g.Expect(h.Status.Phase).To(Equal(vpoolv1alpha1.HostPhaseUnreachable), "the plugin never writes status")
		})
	}
}

func TestHostForgetOfTheMasterWithHAOffSaysItWaitsForANewMaster(t *testing.T) {
	g := NewWithT(t)
	objs := degradedPool()
	objs[0].(*vpoolv1alpha1.Pool).Status.Master = "h2"
	code, out, _ := plugin(fakeClient(objs...), "", "host-forget", "h2", "--yes", "-o", "json")
	g.Expect(code).To(Equal(exitOK))
	var p forgetPlan
	g.Expect(json.Unmarshal([]byte(out), &p)).To(Succeed())
	g.Expect(p.Master).To(ContainSubstring("stays Fenced, not forgotten, until another master is in place"))
	g.Expect(p.Confirmed).To(BeTrue())
	g.Expect(p.LocksReleased).To(Equal([]string{"b-root"}))
}

func TestDesignateMaster(t *testing.T) {
	g := NewWithT(t)
	objs := degradedPool()
	c := fakeClient(objs...)
	code, _, errOut := plugin(c, "", "designate-master", "h2")
	g.Expect(code).To(Equal(exitFailed))
	g.Expect(errOut).To(ContainSubstring("host h2 is Unreachable: only a Live host can become the master"))

	code, out, errOut := plugin(c, "", "designate-master", "h1")
	g.Expect(code).To(Equal(exitOK), errOut)
	g.Expect(out).To(ContainSubstring("h1 is already the master"))

	// The master dies with HA off: an emergency transition.
	objs[1].(*vpoolv1alpha1.Host).Status.Phase = vpoolv1alpha1.HostPhaseUnreachable
	objs = append(objs, host("h4", vpoolv1alpha1.HostPhaseLive, vpoolv1alpha1.RoleMember))
	c = fakeClient(objs...)
	code, out, errOut = plugin(c, "", "designate-master", "h4")
	g.Expect(code).To(Equal(exitOK), errOut)
	g.Expect(out).To(ContainSubstring("the master h1 is not Live and HA is off: emergency transition of h4 to master " +
		"(xe pool-emergency-transition-to-master), then every member follows it (xe pool-recover-slaves)"))
	pool := &vpoolv1alpha1.Pool{}
	g.Expect(c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "p"}, pool)).To(Succeed())
	g.Expect(pool.Spec.Master).To(Equal("h4"))
	g.Expect(pool.Status.Master).To(Equal("h1"), "the plugin never writes status")
}

// completeRecovery plays the operator's part: once Recovery name exists, it
// writes its plan, results and Ready, as set does.
func completeRecovery(c client.Client, name string, set func(*vpoolv1alpha1.Recovery)) chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 5000 {
			rec := &vpoolv1alpha1.Recovery{}
			if err := c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, rec); err == nil {
				set(rec)
				_ = c.Update(context.Background(), rec)
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	return done
}

func recoveredStatus(reason, msg string) func(*vpoolv1alpha1.Recovery) {
	return func(rec *vpoolv1alpha1.Recovery) {
		item := vpoolv1alpha1.RecoveryItem{Kind: "VirtualMachine", Name: "db", Action: vpoolv1alpha1.ActionCreate, Source: "b1"}
		rec.Status.Plan = []vpoolv1alpha1.RecoveryItem{item}
		item.Done = true
		rec.Status.Results = []vpoolv1alpha1.RecoveryItem{item}
		rec.Status.Conditions = []metav1.Condition{{Type: "Ready", Status: metav1.ConditionTrue, Reason: reason, Message: msg,
			ObservedGeneration: rec.Generation}}
	}
}

func TestRecoverCreatesARecoveryAndWaits(t *testing.T) {
	g := NewWithT(t)
	c := fakeClient(degradedPool()...)
	done := completeRecovery(c, "back", recoveredStatus("Recovered", "recovered into pool p: Create VirtualMachine: 1"))
	code, out, errOut := plugin(c, "", "recover", "p", "--name", "back", "--location", "primary", "--source-pool", "prod",
		"--vm", "db", "--appliance", "shop", "--conflicts", "PreferNewer", "--power-on=false")
	<-done
	g.Expect(code).To(Equal(exitOK), errOut)
	g.Expect(out).To(ContainSubstring("recovery/back created: into pool p from every backup of pool prod in backuplocation/primary"))
	g.Expect(out).To(MatchRegexp(`Create +VirtualMachine +db +b1 +yes`))
	g.Expect(out).To(ContainSubstring("recovery/back Recovered: recovered into pool p"))
	rec := &vpoolv1alpha1.Recovery{}
	g.Expect(c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "back"}, rec)).To(Succeed())
	g.Expect(rec.Spec.Sources).To(Equal([]vpoolv1alpha1.RecoverySource{{Location: "primary", Pool: "prod"}}))
	g.Expect(rec.Spec.VirtualMachines).To(Equal([]string{"db"}))
	g.Expect(rec.Spec.Appliances).To(Equal([]string{"shop"}))
	g.Expect(rec.Spec.Conflicts).To(Equal(vpoolv1alpha1.ConflictsPreferNewer))
	g.Expect(*rec.Spec.PowerOn).To(BeFalse())
	g.Expect(rec.Spec.DryRun).To(BeFalse())
}

func TestRecoverStoppedFails(t *testing.T) {
	g := NewWithT(t)
	c := fakeClient(degradedPool()...)
	done := completeRecovery(c, "r", func(rec *vpoolv1alpha1.Recovery) {
		rec.Status.Conditions = []metav1.Condition{
			{Type: "Ready", Status: metav1.ConditionFalse, Reason: "Conflicts", Message: "1 VMs conflict with the pool's"},
			{Type: "Stalled", Status: metav1.ConditionTrue, Reason: "Conflicts", Message: "1 VMs conflict with the pool's"}}
	})
	code, _, errOut := plugin(c, "", "recover", "p", "--name", "r", "--from", "b1,b2", "--vm", "db")
	<-done
	g.Expect(code).To(Equal(exitFailed))
	g.Expect(errOut).To(ContainSubstring("recovery pools/r stopped"))
	g.Expect(errOut).To(ContainSubstring("Conflicts"))
}

func TestRecoverRefusesWhatCannotWork(t *testing.T) {
	for name, args := range map[string][]string{
		"no source":              {"recover", "p", "--vm", "db"},
		"location without pool":  {"recover", "p", "--location", "primary", "--vm", "db"},
		"nothing chosen":         {"recover", "p", "--from", "b1"},
		"bad conflicts":          {"recover", "p", "--from", "b1", "--vm", "db", "--conflicts", "Overwrite"},
		"bad selector":           {"recover", "p", "--from", "b1", "--selector", "a in (b"},
		"dr-test without a pool": {"dr-test"},
	} {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			c := fakeClient(degradedPool()...)
			code, _, _ := plugin(c, "", args...)
			g.Expect(code).To(Equal(exitUsage))
			l := &vpoolv1alpha1.RecoveryList{}
			g.Expect(c.List(context.Background(), l)).To(Succeed())
			g.Expect(l.Items).To(BeEmpty(), "nothing is created")
		})
	}
}

func TestDRTestAndFinish(t *testing.T) {
	g := NewWithT(t)
	c := fakeClient(degradedPool()...)
	done := completeRecovery(c, "t1", recoveredStatus("DRTestReady", "test failover: Create VirtualMachine: 1; no VM is started"))
	code, out, errOut := plugin(c, "", "dr-test", "p", "--name", "t1", "--from", "b1", "--selector", "tier=db")
	<-done
	g.Expect(code).To(Equal(exitOK), errOut)
	g.Expect(out).To(ContainSubstring("recovery/t1 DRTestReady: test failover"))
	g.Expect(out).To(ContainSubstring("kubectl poolkeeper dr-test --finish t1"))
	rec := &vpoolv1alpha1.Recovery{}
	g.Expect(c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "t1"}, rec)).To(Succeed())
	g.Expect(rec.Spec.DryRun).To(BeTrue())
	g.Expect(rec.Spec.Selector.MatchLabels).To(HaveKeyWithValue("tier", "db"))

	done = make(chan struct{})
	go func() {
		defer close(done)
		for range 5000 {
			rec := &vpoolv1alpha1.Recovery{}
			if c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "t1"}, rec) == nil &&
				rec.Annotations[vpoolv1alpha1.AnnotationDRTestFinished] == "true" {
				rec.Status.Conditions[0].Reason = "DRTestCleanedUp"
				rec.Status.Conditions[0].Message = "test failover finished: every object it created was removed"
				_ = c.Update(context.Background(), rec)
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	code, out, errOut = plugin(c, "", "dr-test", "--finish", "t1")
	<-done
	g.Expect(code).To(Equal(exitOK), errOut)
	g.Expect(out).To(ContainSubstring("recovery/t1 DRTestCleanedUp: test failover finished"))
}

func TestWrongOutputIsAUsageError(t *testing.T) {
	g := NewWithT(t)
	code, _, errOut := plugin(fakeClient(), "", "status", "-o", "xml")
	g.Expect(code).To(Equal(exitUsage))
	g.Expect(errOut).To(ContainSubstring(`--output "xml": use table, json or yaml`))
}

// completedBackup is a Completed PoolBackup of pool p without stored data.
func completedBackup(name, sum string) *vpoolv1alpha1.PoolBackup {
	return &vpoolv1alpha1.PoolBackup{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: "uid-" + "1"},
		Spec: vpoolv1alpha1.PoolBackupSpec{PoolRef: vpoolv1alpha1.PoolReference{Name: "p"},
			Encryption: vpoolv1alpha1.BackupEncryption{KeySecretRef: vpoolv1alpha1.LocalObjectReference{Name: "key"}}},
		Status: vpoolv1alpha1.PoolBackupStatus{Phase: vpoolv1alpha1.BackupCompleted, CompletedAt: at(-10 * time.Minute),
			SHA256: sum, PoolEpoch: ptr.To[int64](3), Counts: &vpoolv1alpha1.BackupCounts{Hosts: 2, VMs: 2}},
	}
}

// storedBackup seals a dump of degradedPool with key into chunk Secrets
// of a Completed PoolBackup b1, as the operator does.
func storedBackup(t *testing.T, key []byte) client.Client {
	t.Helper()
	return storedBackupSealed(t, func(d *backup.Dump) ([]byte, error) { return backup.Seal(d, key) })
}

// storedBackupSealed is storedBackup with the dump sealed by seal.
func storedBackupSealed(t *testing.T, seal func(*backup.Dump) ([]byte, error)) client.Client {
	t.Helper()
	g := NewWithT(t)
	objs := degradedPool()
	var hosts []vpoolv1alpha1.Host
	var vms []vpoolv1alpha1.VirtualMachine
	var vdis []vpoolv1alpha1.VirtualDisk
	for _, o := range objs {
		switch o := o.(type) {
		case *vpoolv1alpha1.Host:
			hosts = append(hosts, *o)
		case *vpoolv1alpha1.VirtualMachine:
			vms = append(vms, *o)
		case *vpoolv1alpha1.VirtualDisk:
			vdis = append(vdis, *o)
		}
	}
	d := backup.NewDump(objs[0].(*vpoolv1alpha1.Pool), hosts, nil, vdis, vms, now)
	data, err := seal(d)
	g.Expect(err).NotTo(HaveOccurred())
	pb := completedBackup("b1", backup.Checksum(data))
	counts := d.Counts()
	pb.Status.Counts = &counts
	c := fakeClient(append(objs, pb)...)
	loc, err := (&backup.SecretStore{Client: c, ChunkSize: 256}).Put(context.Background(), pb, data)
	g.Expect(err).NotTo(HaveOccurred())
	pb.Status.Location = loc
	g.Expect(c.Update(context.Background(), pb)).To(Succeed())
	return c
}

func keyFile(t *testing.T, key []byte) string {
	p := filepath.Join(t.TempDir(), "key.bin")
	if err := os.WriteFile(p, key, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestBackupVerify(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef-key")
	t.Run("the right key passes and is recorded", func(t *testing.T) {
		g := NewWithT(t)
		c := storedBackup(t, key)
		saved := filepath.Join(t.TempDir(), "b1.pkdump")
		code, out, errOut := plugin(c, "", "backup-verify", "b1", "--key-file", keyFile(t, key), "--save", saved)
		g.Expect(code).To(Equal(exitOK), errOut)
		g.Expect(out).To(MatchRegexp(`ok +download +\d+ bytes from secret://pools/b1-chunk-\*`))
		g.Expect(out).To(MatchRegexp(`ok +sha256 +[0-9a-f]{64} as status.sha256 records`))
		g.Expect(out).To(ContainSubstring("pool p taken 2026-12-01T12:00:00Z at epoch 3"))
		g.Expect(out).To(ContainSubstring("3 hosts, 0 SRs, 2 VDIs, 2 VMs, as status.counts records"))
		g.Expect(out).To(ContainSubstring("poolbackup/b1 verified"))
		pb := &vpoolv1alpha1.PoolBackup{}
		g.Expect(c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "b1"}, pb)).To(Succeed())
		verified, ok := metrics.VerifiedAt(pb)
		g.Expect(ok).To(BeTrue())
		g.Expect(verified).To(BeTemporally("==", now))
		data, err := os.ReadFile(saved)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(backup.Checksum(data)).To(Equal(pb.Status.SHA256))
	})
	t.Run("a key file with a final newline the key lacks", func(t *testing.T) {
		g := NewWithT(t)
		code, out, errOut := plugin(storedBackup(t, key), "", "backup-verify", "b1", "--key-file", keyFile(t, append(key, '\n')))
		g.Expect(code).To(Equal(exitOK), errOut)
		g.Expect(out).To(ContainSubstring("(without the file's final newline)"))
	})
	t.Run("a wrong key fails", func(t *testing.T) {
		g := NewWithT(t)
		c := storedBackup(t, key)
		code, out, errOut := plugin(c, "", "backup-verify", "b1", "--key-file", keyFile(t, []byte("another key of at least thirty-two bytes")))
		g.Expect(code).To(Equal(exitFailed))
		g.Expect(out).To(MatchRegexp(`FAIL decrypt +wrong key: the dump was encrypted with a different key`))
		g.Expect(errOut).To(ContainSubstring("backup-verify of pools/b1 FAILED at decrypt"))
		pb := &vpoolv1alpha1.PoolBackup{}
		g.Expect(c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "b1"}, pb)).To(Succeed())
		g.Expect(pb.Annotations).NotTo(HaveKey(metrics.AnnotationVerifiedAt))
	})
	t.Run("a flipped byte fails", func(t *testing.T) {
		g := NewWithT(t)
		c := storedBackup(t, key)
		sec := &corev1.Secret{}
		g.Expect(c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: backup.ChunkName("b1", 1)}, sec)).To(Succeed())
		sec.Data[backup.ChunkKey][7] ^= 0x01
		g.Expect(c.Update(context.Background(), sec)).To(Succeed())
		code, out, _ := plugin(c, "", "backup-verify", "b1", "--key-file", keyFile(t, key), "-o", "json")
		g.Expect(code).To(Equal(exitFailed))
		var v verification
		g.Expect(json.Unmarshal([]byte(out), &v)).To(Succeed())
		g.Expect(v.Passed).To(BeFalse())
		g.Expect(v.FailReason).To(Equal(backup.ReasonChecksumMismatch))
		g.Expect(v.Failure).To(ContainSubstring("checksum mismatch"))
	})
	t.Run("the age format, with a passphrase or identities", func(t *testing.T) {
		g := NewWithT(t)
		c := storedBackupSealed(t, func(d *backup.Dump) ([]byte, error) { return backup.SealAge(d, backup.PassphraseKeys(key)) })
		code, out, errOut := plugin(c, "", "backup-verify", "b1", "--key-file", keyFile(t, key))
		g.Expect(code).To(Equal(exitOK), errOut)
		g.Expect(out).To(ContainSubstring("age format, with"))

		id, err := filage.GenerateX25519Identity()
		g.Expect(err).NotTo(HaveOccurred())
		keys, err := backup.ParseKeys(map[string][]byte{backup.SecretRecipients: []byte(id.Recipient().String() + "\n")}, "test")
		g.Expect(err).NotTo(HaveOccurred())
		c = storedBackupSealed(t, func(d *backup.Dump) ([]byte, error) { return backup.SealAge(d, keys) })
		code, out, errOut = plugin(c, "", "backup-verify", "b1", "--identities-file", keyFile(t, []byte(id.String()+"\n")))
		g.Expect(code).To(Equal(exitOK), errOut)
		g.Expect(out).To(ContainSubstring("poolbackup/b1 verified"))

		other, err := filage.GenerateX25519Identity()
		g.Expect(err).NotTo(HaveOccurred())
		code, out, _ = plugin(c, "", "backup-verify", "b1", "--identities-file", keyFile(t, []byte(other.String()+"\n")))
		g.Expect(code).To(Equal(exitFailed))
		g.Expect(out).To(ContainSubstring("FAIL decrypt"))
		g.Expect(out).To(ContainSubstring("wrong key"))
	})
	t.Run("no key file is a usage error", func(t *testing.T) {
		g := NewWithT(t)
		code, _, errOut := plugin(fakeClient(), "", "backup-verify", "b1")
		g.Expect(code).To(Equal(exitUsage))
		g.Expect(errOut).To(ContainSubstring("give one of --key-file"))
	})
}

func TestBackupWaitsForTheOperator(t *testing.T) {
	g := NewWithT(t)
	objs := degradedPool()
	objs[0].(*vpoolv1alpha1.Pool).Spec.Backup = &vpoolv1alpha1.BackupSchedule{Schedule: "0 * * * *",
		Encryption: vpoolv1alpha1.BackupEncryption{KeySecretRef: vpoolv1alpha1.LocalObjectReference{Name: "pool-key"}}}
	c := fakeClient(objs...)
	// The operator's part: complete the backup once it exists.
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 5000 {
			pb := &vpoolv1alpha1.PoolBackup{}
			if err := c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "manual"}, pb); err == nil {
				pb.Status = completedBackup("manual", "abc").Status
				_ = c.Update(context.Background(), pb)
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	code, out, errOut := plugin(c, "", "backup", "p", "--name", "manual")
	<-done
	g.Expect(code).To(Equal(exitOK), errOut)
	g.Expect(out).To(ContainSubstring("poolbackup/manual created for pool p"))
	g.Expect(out).To(ContainSubstring("poolbackup/manual Completed: 2 hosts, 0 SRs, 0 VDIs, 2 VMs, epoch 3, 0 bytes, sha256 abc"))
	pb := &vpoolv1alpha1.PoolBackup{}
	g.Expect(c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "manual"}, pb)).To(Succeed())
	g.Expect(pb.Spec.Encryption.KeySecretRef.Name).To(Equal("pool-key"))

	code, _, errOut = plugin(fakeClient(degradedPool()...), "", "backup", "p")
	g.Expect(code).To(Equal(exitUsage))
	g.Expect(errOut).To(ContainSubstring("name the Secret holding the key with --key-secret"))
}
