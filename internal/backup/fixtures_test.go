package backup_test

import (
	"bytes"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/internal/backup"
)

// The volumes of the world's VDIs: vm1-root's status.volume, and the one
// data carries in its annotation.
const (
	rootVolume = "/srv/images/prod_vm1-root"
	dataVolume = "/srv/images/old_data"
)

// takenAt is the fixed point in time of the test dumps.
var takenAt = time.Date(2026, 3, 1, 2, 30, 0, 123456789, time.UTC)

var (
	key      = bytes.Repeat([]byte("0123456789abcdef"), 2)       // 32 bytes
	otherKey = bytes.Repeat([]byte("fedcba9876543210"), 2)       // 32 bytes
	longKey  = append(bytes.Repeat([]byte("x"), 63), byte('\n')) // a key file with its newline
)

// world is a pool's namespace: pool p in namespace prod, and objects of
// another pool, "other", next to it.
type world struct {
	pool    *vpoolv1alpha1.Pool
	hosts   []vpoolv1alpha1.Host
	srs     []vpoolv1alpha1.StorageRepository
	vdis    []vpoolv1alpha1.VirtualDisk
	vms     []vpoolv1alpha1.VirtualMachine
	secrets []corev1.Secret
}

func (w *world) dump() *backup.Dump {
	d := backup.NewDump(w.pool, w.hosts, w.srs, w.vdis, w.vms, takenAt)
	d.AddSecrets(w.secrets...)
	return d
}

func meta(name string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Namespace: "prod", Name: name, UID: types.UID("uid-" + name), ResourceVersion: "42"}
}

func host(name, pool string, role vpoolv1alpha1.HostRole) vpoolv1alpha1.Host {
	h := vpoolv1alpha1.Host{ObjectMeta: meta(name)}
	h.Spec.PoolRef.Name = pool
	h.Spec.Address = name + ".example.com"
	h.Spec.Capacity = vpoolv1alpha1.HostCapacity{CPU: resource.MustParse("32"), Memory: resource.MustParse("256Gi")}
	h.Spec.Fencing.Method = vpoolv1alpha1.FencingAgent
	h.Spec.State = vpoolv1alpha1.HostActive
	h.Status = vpoolv1alpha1.HostStatus{Phase: vpoolv1alpha1.HostPhaseLive, Role: role, MasterEpoch: 7, BootID: "boot-" + name}
	return h
}

func sr(name, pool string, shared bool, onHost string) vpoolv1alpha1.StorageRepository {
	s := vpoolv1alpha1.StorageRepository{ObjectMeta: meta(name)}
	s.Spec = vpoolv1alpha1.StorageRepositorySpec{PoolRef: vpoolv1alpha1.PoolReference{Name: pool}, Type: "lvm", Shared: shared, Host: onHost}
	if shared {
		s.Spec.Type = "nfs"
	}
	return s
}

func vdi(name, pool, srName string) vpoolv1alpha1.VirtualDisk {
	v := vpoolv1alpha1.VirtualDisk{ObjectMeta: meta(name)}
	v.Spec = vpoolv1alpha1.VirtualDiskSpec{PoolRef: vpoolv1alpha1.PoolReference{Name: pool}, StorageRepository: srName, Size: resource.MustParse("20Gi")}
	return v
}

func vm(name, pool string, desired vpoolv1alpha1.DesiredPowerState, power vpoolv1alpha1.PowerState, on string, disks ...string) vpoolv1alpha1.VirtualMachine {
	v := vpoolv1alpha1.VirtualMachine{ObjectMeta: meta(name)}
	v.Spec.PoolRef.Name = pool
	v.Spec.PowerState = desired
	v.Spec.Resources = vpoolv1alpha1.VMResources{CPU: resource.NewQuantity(2, resource.DecimalSI), Memory: resource.NewQuantity(4<<30, resource.BinarySI)}
	v.Spec.HA.RestartPriority = vpoolv1alpha1.RestartAlways
	for i, d := range disks {
		v.Spec.Disks = append(v.Spec.Disks, vpoolv1alpha1.VMDisk{Name: []string{"root", "data", "swap"}[i], VirtualDisk: d, Mode: vpoolv1alpha1.DiskRW})
	}
	v.Status = vpoolv1alpha1.VirtualMachineStatus{PowerState: power, ResidentOn: on}
	return v
}

// newWorld builds pool p:
//
//	hosts h1 (master), h2, h3 (Redfish, Secret bmc-h3), h4 (Forgotten)
//	SRs   shared (nfs), local-h1 (local to h1)
//	VDIs  vm1-root, vm3-suspend, data on shared; vm2-root, vm4-suspend on local-h1;
//	      vm1-root records its volume, data carries one in its annotation
//	      (restored itself, not attached since), the others have none yet
//	VMs   vm1 Running on h1 (vm1-root locked), vm2 Halted, vm3 Suspended on
//	      shared, vm4 Suspended on local-h1, vm5 being deleted
//
// and h-other, sr-other, vdi-other, vm-other of pool "other".
func newWorld() *world {
	w := &world{}
	w.pool = &vpoolv1alpha1.Pool{ObjectMeta: meta("p")}
	w.pool.Labels = map[string]string{"site": "paris"}
	w.pool.Spec.HA = vpoolv1alpha1.HASpec{Enabled: true, HostFailuresToTolerate: 1}
	w.pool.Spec.Master = "h1"
	w.pool.Spec.DefaultStorageRepository = "shared"
	w.pool.Spec.Backup = &vpoolv1alpha1.BackupSchedule{Schedule: "@daily", Retain: 7,
		Encryption: vpoolv1alpha1.BackupEncryption{KeySecretRef: vpoolv1alpha1.LocalObjectReference{Name: "backup-key"}}}
	w.pool.Status = vpoolv1alpha1.PoolStatus{Master: "h1", Epoch: 7}

	h1 := host("h1", "p", vpoolv1alpha1.RoleMaster)
	h1.Labels = map[string]string{"rack": "r1"}
	h3 := host("h3", "p", vpoolv1alpha1.RoleMember)
	h3.Spec.Fencing = vpoolv1alpha1.HostFencing{Method: vpoolv1alpha1.FencingRedfish, Redfish: &vpoolv1alpha1.RedfishFencing{
		Endpoint: "https://bmc-h3:443", SystemID: "1", CredentialsSecretRef: vpoolv1alpha1.LocalObjectReference{Name: "bmc-h3"}}}
	h4 := host("h4", "p", vpoolv1alpha1.RoleMember)
	h4.Spec.State = vpoolv1alpha1.HostForgotten
	// Out of order on purpose: the dump sorts by name.
	w.hosts = []vpoolv1alpha1.Host{h3, h1, host("h2", "p", vpoolv1alpha1.RoleMember), h4, host("h-other", "other", vpoolv1alpha1.RoleMaster)}

	w.srs = []vpoolv1alpha1.StorageRepository{sr("shared", "p", true, ""), sr("local-h1", "p", false, "h1"), sr("sr-other", "other", true, "")}

	root := vdi("vm1-root", "p", "shared")
	root.Status.Lock = &vpoolv1alpha1.VDILock{Host: "h1", Mode: vpoolv1alpha1.DiskRW, VirtualMachine: "vm1"}
	root.Status.Volume = rootVolume
	data := vdi("data", "p", "shared")
	data.Annotations = map[string]string{vpoolv1alpha1.AnnotationVolume: dataVolume}
	w.vdis = []vpoolv1alpha1.VirtualDisk{root, vdi("vm2-root", "p", "local-h1"), vdi("vm3-suspend", "p", "shared"),
		vdi("vm4-suspend", "p", "local-h1"), data, vdi("vdi-other", "other", "sr-other")}

	vm1 := vm("vm1", "p", vpoolv1alpha1.DesiredRunning, vpoolv1alpha1.PowerRunning, "h1", "vm1-root", "data")
	vm1.Annotations = map[string]string{
		"kubectl.kubernetes.io/last-applied-configuration": `{"huge":"json"}`,
		"owner": "team-a",
	}
	vm1.Spec.Affinity.Host = "h1"
	vm1.Status.Conditions = []metav1.Condition{{Type: "Ready", Status: metav1.ConditionTrue, Reason: "Running"}}
	vm3 := vm("vm3", "p", vpoolv1alpha1.DesiredRunning, vpoolv1alpha1.PowerSuspended, "")
	vm3.Status.SuspendVirtualDisk = "vm3-suspend"
	vm4 := vm("vm4", "p", vpoolv1alpha1.DesiredRunning, vpoolv1alpha1.PowerSuspended, "")
	vm4.Status.SuspendVirtualDisk = "vm4-suspend"
	vm5 := vm("vm5", "p", vpoolv1alpha1.DesiredHalted, vpoolv1alpha1.PowerHalted, "")
	vm5.DeletionTimestamp = &metav1.Time{Time: takenAt}
	w.vms = []vpoolv1alpha1.VirtualMachine{vm1, vm("vm2", "p", vpoolv1alpha1.DesiredHalted, vpoolv1alpha1.PowerHalted, "", "vm2-root"),
		vm3, vm4, vm5, vm("vm-other", "other", vpoolv1alpha1.DesiredRunning, vpoolv1alpha1.PowerRunning, "h-other", "vdi-other")}

	w.secrets = []corev1.Secret{
		{ObjectMeta: meta("bmc-h3"), Type: corev1.SecretTypeBasicAuth, Data: map[string][]byte{"username": []byte("root"), "password": []byte("calvin")}},
		{ObjectMeta: meta("unrelated"), Data: map[string][]byte{"token": []byte("nope")}},
	}
	return w
}

// target is the Pool restoring backup b1 into namespace dr.
func target(mode vpoolv1alpha1.RestoreMode, dryRun bool) *vpoolv1alpha1.Pool {
	p := &vpoolv1alpha1.Pool{ObjectMeta: metav1.ObjectMeta{Namespace: "dr", Name: "restored", UID: "uid-restored"}}
	p.Spec.RestoreFrom = &vpoolv1alpha1.RestoreSource{BackupName: "b1", Mode: mode, DryRun: dryRun}
	return p
}
