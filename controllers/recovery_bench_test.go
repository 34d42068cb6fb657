package controllers_test

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/controllers"
	"github.com/poolkeeper/poolkeeper/internal/backup"
	"github.com/poolkeeper/poolkeeper/internal/testutil"
)

// BenchmarkRecovery recovers POOLKEEPER_BENCH_RECOVER (default 2000) VMs,
// chosen by name, out of a backup of POOLKEEPER_BENCH_VMS (default 20000)
// VMs — two VDIs each on one shared SR — into an empty pool, with every
// controller running, and compares it with the floor: plain creates of the
// same objects (the SR, the VDIs, the VMs) with as many workers as the
// Recovery. The backup is sealed and stored as the PoolBackup controller
// stores one, without a source pool of 20,000 VMs to dump. It reports
// figures and never asserts a timing; it fails only when the recovery does
// not work. It runs its scenario once, whatever b.N (about three minutes
// at the default sizes; `make bench` runs it too):
//
//	go test ./controllers/ -run '^$' -bench BenchmarkRecovery -benchtime 1x -timeout 30m
func BenchmarkRecovery(b *testing.B) {
	b.StopTimer()
	vms, chosen := envInt(b, "POOLKEEPER_BENCH_VMS", 20000), envInt(b, "POOLKEEPER_BENCH_RECOVER", 2000)
	ctx := context.Background()
	ns := benchNamespace(b, "pkrec-")
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "k"}, Data: map[string][]byte{"key": backupKey}}
	if err := k8s.Create(ctx, secret); err != nil {
		b.Fatal(err)
	}
	d := benchDump(ns, vms)
	pb := storeBenchBackup(b, ns, d)
	dr := &vpoolv1alpha1.Pool{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "dr"}}
	dr.Spec.Fencing.MaxConcurrent, dr.Spec.Fencing.MaxUnhealthyPercent = 1, 50
	if err := k8s.Create(ctx, dr); err != nil {
		b.Fatal(err)
	}
	errs := &errorLog{}
	startBenchManager(b, restConfig, ns, errs, 0, false)
	time.Sleep(2 * time.Second) // the manager's caches fill

	names := make([]string, 0, chosen)
	for i := 0; i < vms && len(names) < chosen; i += max(1, vms/chosen) {
		names = append(names, d.VirtualMachines[i].Metadata.Name)
	}
	rec := &vpoolv1alpha1.Recovery{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "r"}}
	rec.Spec.PoolRef.Name = "dr"
	rec.Spec.Sources = []vpoolv1alpha1.RecoverySource{{BackupName: pb.Name}}
	rec.Spec.VirtualMachines = names
	rec.Spec.Appliances = []string{}
	powerOff := false
	rec.Spec.PowerOn = &powerOff
	runtime.GC()
	reqs0 := readAPIRequests(ctx, restConfig)
	b.StartTimer()
	start := time.Now()
	if err := k8s.Create(ctx, rec); err != nil {
		b.Fatal(err)
	}
	var planned time.Duration
	lastSay := start
	for {
		if err := k8s.Get(ctx, key(ns, "r"), rec); err != nil {
			b.Fatal(err)
		}
		if planned == 0 && len(rec.Status.Plan) > 0 {
			planned = time.Since(start)
		}
		c := meta.FindStatusCondition(rec.Status.Conditions, vpoolv1alpha1.ConditionReady)
		if c != nil && c.Status == metav1.ConditionTrue {
			break
		}
		if c != nil && meta.IsStatusConditionTrue(rec.Status.Conditions, "Stalled") {
			b.Fatalf("the recovery stalled: %s: %s (errors: %s)", c.Reason, c.Message, errs.summary())
		}
		if time.Since(lastSay) > 15*time.Second {
			lastSay = time.Now()
			say("  recovery after %s: %+v; %s VMs exist; errors: %s", secs(time.Since(start)), c, countIn(ctx, ns, &vpoolv1alpha1.VirtualMachineList{}), errs.summary())
		}
		if time.Since(start) > 20*time.Minute {
			b.Fatalf("the recovery is not done after 20m: %+v (errors: %s)", c, errs.summary())
		}
		time.Sleep(100 * time.Millisecond)
	}
	took := time.Since(start)
	b.StopTimer()
	reqs := readAPIRequests(ctx, restConfig).since(reqs0)
	objects := 1 + 3*len(names)
	say("recovery of %d VMs out of %d: %s (plan written after %s), %d objects, %.0f writes (%s)",
		len(names), vms, secs(took), secs(planned), objects, reqs.writes(), reqs)
	say("  %s", meta.FindStatusCondition(rec.Status.Conditions, vpoolv1alpha1.ConditionReady).Message)
	l := &vpoolv1alpha1.VirtualMachineList{}
	if err := k8s.List(ctx, l, client.InNamespace(ns)); err != nil {
		b.Fatal(err)
	}
	if len(l.Items) != len(names) {
		b.Fatalf("the recovery made %d VMs, want %d", len(l.Items), len(names))
	}

	// The floor: the same objects, created plainly, once the recovered VMs'
	// own reconciles have settled (their writes are not the floor's).
	time.Sleep(10 * time.Second)
	c, err := client.New(restConfig, client.Options{Scheme: testutil.Scheme})
	if err != nil {
		b.Fatal(err)
	}
	floorNS := benchNamespace(b, "pkrecfloor-")
	objs := []client.Object{&vpoolv1alpha1.StorageRepository{ObjectMeta: metav1.ObjectMeta{Namespace: floorNS, Name: "nfs"},
		Spec: vpoolv1alpha1.StorageRepositorySpec{PoolRef: vpoolv1alpha1.PoolReference{Name: "dr"}, Type: "nfs", Shared: true}}}
	var vmObjs []client.Object
	wanted := map[string]bool{}
	for _, n := range names {
		wanted[n] = true
	}
	for _, vm := range d.VirtualMachines {
		if !wanted[vm.Metadata.Name] {
			continue
		}
		for _, disk := range vm.Spec.Disks {
			vdi := &vpoolv1alpha1.VirtualDisk{ObjectMeta: metav1.ObjectMeta{Namespace: floorNS, Name: disk.VirtualDisk}}
			vdi.Spec.PoolRef.Name, vdi.Spec.StorageRepository, vdi.Spec.Size = "dr", "nfs", resource.MustParse("1Gi")
			objs = append(objs, vdi)
		}
		obj := &vpoolv1alpha1.VirtualMachine{ObjectMeta: metav1.ObjectMeta{Namespace: floorNS, Name: vm.Metadata.Name}, Spec: *vm.Spec.DeepCopy()}
		obj.Spec.PoolRef.Name = "dr"
		vmObjs = append(vmObjs, obj)
	}
	reqs0 = readAPIRequests(ctx, restConfig)
	fstart := time.Now()
	if err := createObjects(ctx, c, controllers.RestoreWorkers, objs); err != nil {
		b.Fatal(err)
	}
	if err := createObjects(ctx, c, controllers.RestoreWorkers, vmObjs); err != nil {
		b.Fatal(err)
	}
	floor := time.Since(fstart)
	freqs := readAPIRequests(ctx, restConfig).since(reqs0)
	say("create floor (%d-way): %d objects in %s, %.0f writes", controllers.RestoreWorkers, len(objs)+len(vmObjs), secs(floor), freqs.writes())
	say("recovery / floor: %.2fx the time, %.2fx the writes", took.Seconds()/floor.Seconds(), reqs.writes()/freqs.writes())
	b.ReportMetric(took.Seconds(), "recovery-s")
	b.ReportMetric(floor.Seconds(), "floor-s")
}

func benchNamespace(b testing.TB, prefix string) string {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix}}
	if err := k8s.Create(context.Background(), ns); err != nil {
		b.Fatal(err)
	}
	return ns.Name
}

// benchDump is the dump of a pool "p" of n VMs with two VDIs each on shared SR nfs.
func benchDump(ns string, n int) *backup.Dump {
	d := &backup.Dump{SchemaVersion: backup.SchemaVersion, TakenAt: time.Now().UTC().Truncate(time.Second), Namespace: ns,
		Pool: backup.PoolRecord{Metadata: backup.RecordMeta{Name: "p"}}}
	d.StorageRepositories = []backup.StorageRepositoryRecord{{Metadata: backup.RecordMeta{Name: "nfs"},
		Spec: vpoolv1alpha1.StorageRepositorySpec{PoolRef: vpoolv1alpha1.PoolReference{Name: "p"}, Type: "nfs", Shared: true}}}
	cpu, mem := resource.MustParse("1"), resource.MustParse("1Gi")
	for i := range n {
		name := fmt.Sprintf("vm-%05d", i)
		vm := backup.VirtualMachineRecord{Metadata: backup.RecordMeta{Name: name}}
		vm.Spec.PoolRef.Name = "p"
		vm.Spec.PowerState = vpoolv1alpha1.DesiredRunning
		vm.Spec.Resources = vpoolv1alpha1.VMResources{CPU: &cpu, Memory: &mem}
		vm.Status.UUID = fmt.Sprintf("00000000-0000-4000-8000-%012d", i)
		vm.Status.PowerState = vpoolv1alpha1.PowerRunning
		for j := range 2 {
			disk := fmt.Sprintf("%s-d%d", name, j)
			vm.Spec.Disks = append(vm.Spec.Disks, vpoolv1alpha1.VMDisk{Name: fmt.Sprintf("d%d", j), VirtualDisk: disk, Mode: vpoolv1alpha1.DiskRW})
			vdi := backup.VirtualDiskRecord{Metadata: backup.RecordMeta{Name: disk}}
			vdi.Spec.PoolRef.Name, vdi.Spec.StorageRepository, vdi.Spec.Size = "p", "nfs", resource.MustParse("1Gi")
			d.VirtualDisks = append(d.VirtualDisks, vdi)
		}
		d.VirtualMachines = append(d.VirtualMachines, vm)
	}
	return d
}

// storeBenchBackup seals d with backupKey, stores it in Secrets as the
// PoolBackup controller does and records the PoolBackup Completed.
func storeBenchBackup(b testing.TB, ns string, d *backup.Dump) *vpoolv1alpha1.PoolBackup {
	ctx := context.Background()
	data, err := backup.Seal(d, backupKey)
	if err != nil {
		b.Fatal(err)
	}
	pb := &vpoolv1alpha1.PoolBackup{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "big"}}
	pb.Spec.PoolRef.Name = "p"
	pb.Spec.Storage.Type = vpoolv1alpha1.StorageSecret
	pb.Spec.Encryption.KeySecretRef.Name = "k"
	if err := k8s.Create(ctx, pb); err != nil {
		b.Fatal(err)
	}
	loc, err := (&backup.SecretStore{Client: k8s}).Put(ctx, pb, data)
	if err != nil {
		b.Fatal(err)
	}
	counts := d.Counts()
	now := metav1.Now()
	pb.Status = vpoolv1alpha1.PoolBackupStatus{Phase: vpoolv1alpha1.BackupCompleted, CompletedAt: &now, Counts: &counts,
		SizeBytes: int64(len(data)), SHA256: backup.Checksum(data), Location: loc}
	if err := k8s.Status().Update(ctx, pb); err != nil {
		b.Fatal(err)
	}
	say("backup of %d VMs sealed and stored: %d bytes", len(d.VirtualMachines), len(data))
	return pb
}

// countIn is how many objects of a kind ns holds.
func countIn(ctx context.Context, ns string, l client.ObjectList) string {
	if err := k8s.List(ctx, l, client.InNamespace(ns)); err != nil {
		return "?"
	}
	return fmt.Sprint(meta.LenList(l))
}
