package agent_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/internal/agent"
)

// storageDriver is a sim driver with storage pools and networks, as a real
// hypervisor has: it records the VMs it was asked to start.
type storageDriver struct {
	*agent.SimDriver
	mu      sync.Mutex
	started []agent.VM
	pools   map[string]bool
}

func (d *storageDriver) Start(ctx context.Context, vm agent.VM) error {
	d.mu.Lock()
	d.started = append(d.started, vm)
	d.mu.Unlock()
	return d.SimDriver.Start(ctx, vm)
}

func (d *storageDriver) Plug(_ context.Context, pool string) error {
	if !d.pools[pool] {
		return errors.New("storage pool not found")
	}
	return nil
}

func (d *storageDriver) EnsureVolume(_ context.Context, pool, name string, size int64) (string, error) {
	return "/pools/" + pool + "/" + name + "@" + resource.NewQuantity(size, resource.BinarySI).String(), nil
}

func (d *storageDriver) lastStarted() []agent.VM {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]agent.VM(nil), d.started...)
}

// The agent plugs the SRs of its pool and reports each attachment (pbd-plug),
// creates a VDI's volume on first attach and records it, and starts a VM
// only once its RW disk is locked for this host and this boot.
func TestAgentPlugsStorageAndChecksLocks(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := setup(t, 4*time.Second)
	for _, sr := range []struct {
		name, pool string
	}{{"shared", "pool-a"}, {"broken", "missing"}, {"plain", ""}} {
		o := &vpoolv1alpha1.StorageRepository{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: sr.name}}
		o.Spec.PoolRef.Name, o.Spec.Type, o.Spec.Shared = "p", "nfs", true
		if sr.pool != "" {
			o.Spec.Libvirt = &vpoolv1alpha1.LibvirtStorage{StoragePool: sr.pool}
		}
		g.Expect(k8s.Create(ctx, o)).To(Succeed())
	}
	local := &vpoolv1alpha1.StorageRepository{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "local-h2"}}
	local.Spec.PoolRef.Name, local.Spec.Type, local.Spec.Host = "p", "lvm", "h2"
	local.Spec.Libvirt = &vpoolv1alpha1.LibvirtStorage{StoragePool: "pool-a"}
	g.Expect(k8s.Create(ctx, local)).To(Succeed())
	vdi := &vpoolv1alpha1.VirtualDisk{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "root"}}
	vdi.Spec.PoolRef.Name, vdi.Spec.StorageRepository, vdi.Spec.Size = "p", "shared", resource.MustParse("1Gi")
	g.Expect(k8s.Create(ctx, vdi)).To(Succeed())
	vdi.Status.Lock = &vpoolv1alpha1.VDILock{Host: "h1", Mode: vpoolv1alpha1.DiskRW, BootID: "an-earlier-boot"}
	g.Expect(k8s.Status().Update(ctx, vdi)).To(Succeed())

	placeVM(t, ns, "vm-a")
	vm := &vpoolv1alpha1.VirtualMachine{}
	g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: "vm-a"}, vm)).To(Succeed())
	vm.Spec.Disks = []vpoolv1alpha1.VMDisk{{Name: "root", VirtualDisk: "root", Mode: vpoolv1alpha1.DiskRW}}
	vm.Spec.Interfaces = []vpoolv1alpha1.VMInterface{{Name: "eth0", Network: "default"}}
	g.Expect(k8s.Update(ctx, vm)).To(Succeed())
	vm.Status.Interfaces = []vpoolv1alpha1.VMInterfaceStatus{{Name: "eth0", MACAddress: "52:54:00:00:00:01"}}
	g.Expect(k8s.Status().Update(ctx, vm)).To(Succeed())

	driver := &storageDriver{SimDriver: agent.NewSimDriver(), pools: map[string]bool{"pool-a": true}}
	driver.SetNetworks("storage", "default")
	runAgent(t, agent.Config{RESTConfig: restConfig, Namespace: ns, Host: "h1", Interval: 200 * time.Millisecond,
		Driver: driver, DriverName: "fake", BootID: "boot-1"})

	attachmentOf := func(g Gomega, sr string) vpoolv1alpha1.SRAttachment {
		o := &vpoolv1alpha1.StorageRepository{}
		g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: sr}, o)).To(Succeed())
		g.Expect(o.Status.Attachments).To(HaveLen(1))
		return o.Status.Attachments[0]
	}
	g.Eventually(func(g Gomega) {
		a := attachmentOf(g, "shared")
		g.Expect(a.Host).To(Equal("h1"))
		g.Expect(a.Attached).To(BeTrue())
		g.Expect(a.Reason).To(Equal(agent.ReasonPlugged))
		g.Expect(a.StoragePool).To(Equal("pool-a"))
		a = attachmentOf(g, "broken")
		g.Expect(a.Attached).To(BeFalse())
		g.Expect(a.Reason).To(Equal(agent.ReasonPlugFailed))
		g.Expect(a.Message).To(ContainSubstring("storage pool not found"))
		a = attachmentOf(g, "plain")
		g.Expect(a.Attached).To(BeFalse())
		g.Expect(a.Reason).To(Equal(agent.ReasonNoStoragePool))
		g.Expect(a.Message).To(ContainSubstring("spec.libvirt.storagePool"))
	}, 20*time.Second, 50*time.Millisecond).Should(Succeed())
	o := &vpoolv1alpha1.StorageRepository{}
	g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: "local-h2"}, o)).To(Succeed())
	g.Expect(o.Status.Attachments).To(BeEmpty(), "h1 does not plug a local SR of h2")
	host := &vpoolv1alpha1.Host{}
	g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: "h1"}, host)).To(Succeed())
	g.Expect(host.Status.Networks).To(Equal([]string{"default", "storage"}))
	g.Expect(host.Status.Driver).To(Equal("fake"))

	// Locked for an earlier boot of this host: not started.
	g.Consistently(driver.lastStarted, time.Second, 50*time.Millisecond).Should(BeEmpty(),
		"a VM whose RW disk is locked for another boot must not start")
	g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: "root"}, vdi)).To(Succeed())
	vdi.Status.Lock.BootID = "boot-1"
	g.Expect(k8s.Status().Update(ctx, vdi)).To(Succeed())
	g.Eventually(driver.lastStarted, 20*time.Second, 50*time.Millisecond).Should(HaveLen(1))
	started := driver.lastStarted()[0]
	g.Expect(started.Namespace).To(Equal(ns))
	g.Expect(started.Disks).To(Equal([]agent.Disk{{Name: "root", VirtualDisk: "root", Mode: "RW", StoragePool: "pool-a",
		Volume: "/pools/pool-a/root@1Gi"}}))
	g.Expect(started.Interfaces).To(Equal([]agent.Interface{{Name: "eth0", Network: "default", MACAddress: "52:54:00:00:00:01"}}))
	g.Eventually(func(g Gomega) {
		g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: "root"}, vdi)).To(Succeed())
		g.Expect(vdi.Status.Volume).To(Equal("/pools/pool-a/root@1Gi"))
		g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: "vm-a"}, vm)).To(Succeed())
		g.Expect(vm.Status.PowerState).To(Equal(vpoolv1alpha1.PowerRunning))
	}, 20*time.Second, 50*time.Millisecond).Should(Succeed())
}
