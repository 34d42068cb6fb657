package agent_test

import (
	"context"
	"errors"
	"maps"
	"slices"
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
// hypervisor has: it records the VMs it was asked to start. Its volumes are
// in store, which drivers of one host (agents of several namespaces) share.
type storageDriver struct {
	*agent.SimDriver
	mu      sync.Mutex
	started []agent.VM
	pools   map[string]bool
	store   *volumeStore
}

// volumeStore is a host's storage pools' volumes, keyed as in a libvirt
// dir pool: /pools/POOL/NAME.
type volumeStore struct {
	mu sync.Mutex
	// volumes: pool, then name, to key; sizes by key.
	volumes map[string]map[string]string
	sizes   map[string]int64
}

// ensure returns the key of volume name of pool, created with size when
// missing.
func (s *volumeStore) ensure(pool, name string, size int64) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.volumes == nil {
		s.volumes, s.sizes = map[string]map[string]string{}, map[string]int64{}
	}
	if s.volumes[pool] == nil {
		s.volumes[pool] = map[string]string{}
	}
	key, ok := s.volumes[pool][name]
	if !ok {
		key = "/pools/" + pool + "/" + name
		s.volumes[pool][name], s.sizes[key] = key, size
	}
	return key
}

// names are the volumes of pool, sorted.
func (s *volumeStore) names(pool string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Sorted(maps.Keys(s.volumes[pool]))
}

func (s *volumeStore) size(key string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sizes[key]
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
	return d.store.ensure(pool, name, size), nil
}

func (d *storageDriver) FindVolume(_ context.Context, pool, key string, names ...string) (string, bool, error) {
	d.store.mu.Lock()
	defer d.store.mu.Unlock()
	if slices.Contains(slices.Collect(maps.Values(d.store.volumes[pool])), key) {
		return key, true, nil
	}
	for _, n := range names {
		if k, ok := d.store.volumes[pool][n]; ok {
			return k, true, nil
		}
	}
	return "", false, nil
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

	driver := &storageDriver{SimDriver: agent.NewSimDriver(), pools: map[string]bool{"pool-a": true}, store: &volumeStore{}}
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
	// (The Host's status is reported after the pass that plugs the SRs.)
	g.Eventually(func(g Gomega) {
		host := &vpoolv1alpha1.Host{}
		g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: "h1"}, host)).To(Succeed())
		g.Expect(host.Status.Networks).To(Equal([]string{"default", "storage"}))
		g.Expect(host.Status.Driver).To(Equal("fake"))
	}, 20*time.Second, 50*time.Millisecond).Should(Succeed())

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
		Volume: "/pools/pool-a/" + ns + "_root"}}))
	g.Expect(driver.store.size("/pools/pool-a/"+ns+"_root")).To(Equal(int64(1<<30)), "created with spec.size")
	g.Expect(started.Interfaces).To(Equal([]agent.Interface{{Name: "eth0", Network: "default", MACAddress: "52:54:00:00:00:01"}}))
	g.Eventually(func(g Gomega) {
		g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: "root"}, vdi)).To(Succeed())
		g.Expect(vdi.Status.Volume).To(Equal("/pools/pool-a/" + ns + "_root"))
		g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: "vm-a"}, vm)).To(Succeed())
		g.Expect(vm.Status.PowerState).To(Equal(vpoolv1alpha1.PowerRunning))
	}, 20*time.Second, 50*time.Millisecond).Should(Succeed())
}

// Agents of two namespaces on one host, whose SRs share a storage pool, give
// their VDIs of one name two volumes, <namespace>_<vdi>. A VDI that records
// its volume keeps it: by its key, or (its SR's storage restored elsewhere,
// the key gone) by its name there, the VDI's own name for a volume created
// before volumes were named after their namespace; one whose volume is
// nowhere gets no new empty one, nor another namespace's volume of its name.
// A VDI that records none but carries the volume of its backup
// (vpool.poolkeeper.io/volume, as a restore or a recovery into another
// namespace makes it) attaches that volume, by its key or by its name, else
// the volume of its own name when there is one, and creates none: when
// neither is there, its VM waits.
func TestVolumesAreNamespaced(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	store := &volumeStore{}
	// Volumes an earlier agent made, named after their VDIs only.
	data := store.ensure("pool-a", "data", 1<<30)
	store.ensure("pool-a", "moved", 1<<30)
	store.ensure("pool-a", "lost", 1<<30) // another namespace's VDI lost
	// Volumes of the primary site's namespace prod, replicated here.
	restored := store.ensure("pool-a", "prod_restored", 1<<30)
	renamed := store.ensure("pool-a", "prod_renamed", 1<<30)
	ns1, ns2 := setup(t, 4*time.Second), setup(t, 4*time.Second)
	fallback := store.ensure("pool-a", ns2+"_fallback", 1<<30) // renamed by hand for the recovery
	vdi := func(ns, name, recorded string, annotated ...string) {
		t.Helper()
		o := &vpoolv1alpha1.VirtualDisk{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
		o.Spec.PoolRef.Name, o.Spec.StorageRepository, o.Spec.Size = "p", "shared", resource.MustParse("1Gi")
		if len(annotated) > 0 {
			o.Annotations = map[string]string{vpoolv1alpha1.AnnotationVolume: annotated[0]}
		}
		g.Expect(k8s.Create(ctx, o)).To(Succeed())
		o.Status.Lock = &vpoolv1alpha1.VDILock{Host: "h1", Mode: vpoolv1alpha1.DiskRW, BootID: "boot-1"}
		o.Status.Volume = recorded
		g.Expect(k8s.Status().Update(ctx, o)).To(Succeed())
	}
	vm := func(ns, name string, vdis ...string) {
		t.Helper()
		placeVM(t, ns, name)
		o := &vpoolv1alpha1.VirtualMachine{}
		g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, o)).To(Succeed())
		for _, v := range vdis {
			o.Spec.Disks = append(o.Spec.Disks, vpoolv1alpha1.VMDisk{Name: v, VirtualDisk: v, Mode: vpoolv1alpha1.DiskRW})
		}
		g.Expect(k8s.Update(ctx, o)).To(Succeed())
	}
	drivers := map[string]*storageDriver{}
	for _, ns := range []string{ns1, ns2} {
		sr := &vpoolv1alpha1.StorageRepository{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "shared"}}
		sr.Spec.PoolRef.Name, sr.Spec.Type, sr.Spec.Shared = "p", "nfs", true
		sr.Spec.Libvirt = &vpoolv1alpha1.LibvirtStorage{StoragePool: "pool-a"}
		g.Expect(k8s.Create(ctx, sr)).To(Succeed())
		vdi(ns, "root", "")
		drivers[ns] = &storageDriver{SimDriver: agent.NewSimDriver(), pools: map[string]bool{"pool-a": true}, store: store}
	}
	vdi(ns2, "data", data, "/pools/pool-a/lost") // status.volume wins
	vdi(ns2, "moved", "/old-storage/moved")
	vdi(ns1, "lost", "/old-storage/"+ns1+"_lost")
	// Recreated from a backup of namespace prod: no status.volume, the
	// backed-up one annotated.
	vdi(ns2, "restored", "", restored)
	vdi(ns2, "renamed", "", "/primary-mount/prod_renamed") // the same name under another key
	vdi(ns2, "fallback", "", "/primary-mount/prod_fallback")
	vdi(ns1, "gone", "", "/primary-mount/prod_gone") // not replicated here
	vm(ns1, "vm-a", "root")
	vm(ns1, "vm-lost", "lost")
	vm(ns1, "vm-gone", "gone")
	vm(ns2, "vm-b", "root", "data", "moved", "restored", "renamed", "fallback")
	for _, ns := range []string{ns1, ns2} {
		runAgent(t, agent.Config{RESTConfig: restConfig, Namespace: ns, Host: "h1", Interval: 200 * time.Millisecond,
			Driver: drivers[ns], DriverName: "fake", BootID: "boot-1"})
	}

	disk := func(name, volume string) agent.Disk {
		return agent.Disk{Name: name, VirtualDisk: name, Mode: "RW", StoragePool: "pool-a", Volume: volume}
	}
	for _, want := range []struct {
		ns, vm string
		disks  []agent.Disk
	}{
		{ns1, "vm-a", []agent.Disk{disk("root", "/pools/pool-a/"+ns1+"_root")}},
		{ns2, "vm-b", []agent.Disk{disk("root", "/pools/pool-a/"+ns2+"_root"), disk("data", data),
			disk("moved", "/pools/pool-a/moved"), disk("restored", restored), disk("renamed", renamed),
			disk("fallback", fallback)}},
	} {
		g.Eventually(drivers[want.ns].lastStarted, 20*time.Second, 50*time.Millisecond).Should(HaveLen(1))
		started := drivers[want.ns].lastStarted()[0]
		g.Expect(started.Name).To(Equal(want.vm))
		g.Expect(started.Disks).To(Equal(want.disks))
	}
	volumeOf := func(g Gomega, ns, name string) string {
		o := &vpoolv1alpha1.VirtualDisk{}
		g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, o)).To(Succeed())
		return o.Status.Volume
	}
	g.Eventually(func(g Gomega) {
		g.Expect(volumeOf(g, ns1, "root")).To(Equal("/pools/pool-a/" + ns1 + "_root"))
		g.Expect(volumeOf(g, ns2, "root")).To(Equal("/pools/pool-a/" + ns2 + "_root"))
		g.Expect(volumeOf(g, ns2, "moved")).To(Equal("/pools/pool-a/moved"), "the restored volume's key recorded")
		g.Expect(volumeOf(g, ns2, "restored")).To(Equal(restored), "the backed-up volume recorded")
		g.Expect(volumeOf(g, ns2, "renamed")).To(Equal(renamed))
		g.Expect(volumeOf(g, ns2, "fallback")).To(Equal(fallback))
	}, 20*time.Second, 50*time.Millisecond).Should(Succeed())
	g.Consistently(func(g Gomega) {
		g.Expect(drivers[ns1].lastStarted()).To(HaveLen(1), "vm-lost and vm-gone must not start: their volumes are nowhere")
		g.Expect(volumeOf(g, ns1, "lost")).To(Equal("/old-storage/" + ns1 + "_lost"))
		g.Expect(volumeOf(g, ns1, "gone")).To(BeEmpty(), "no volume recorded for a backed-up volume that is not here")
		g.Expect(volumeOf(g, ns2, "data")).To(Equal(data))
	}, time.Second, 100*time.Millisecond).Should(Succeed())
	g.Expect(store.names("pool-a")).To(ConsistOf("data", "lost", "moved", ns1+"_root", ns2+"_root",
		"prod_restored", "prod_renamed", ns2+"_fallback"),
		"two volumes for the two roots, and no other new one: none for the VDIs that carry their backed-up volume")
}
