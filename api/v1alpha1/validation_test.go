package v1alpha1_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/internal/testutil"
)

var k8s client.Client

func TestMain(m *testing.M) {
	os.Exit(runWithEnv(m))
}

func runWithEnv(m *testing.M) int {
	cfg, stop, err := testutil.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer stop()
	k8s, err = client.New(cfg, client.Options{Scheme: testutil.Scheme})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

func newNamespace(t *testing.T) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "api-"}}
	if err := k8s.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k8s.Delete(context.Background(), ns) })
	return ns.Name
}

func fromYAML(t *testing.T, ns, doc string) *unstructured.Unstructured {
	t.Helper()
	u := &unstructured.Unstructured{}
	if err := yaml.Unmarshal([]byte(doc), &u.Object); err != nil {
		t.Fatalf("bad test YAML: %v\n%s", err, doc)
	}
	if u.GetAPIVersion() == "" {
		u.SetAPIVersion("vpool.poolkeeper.io/v1alpha1")
	}
	u.SetNamespace(ns)
	return u
}

// TestSamplesAccepted applies every object of config/samples/ and of its
// backup/ directory.
func TestSamplesAccepted(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	files, err := filepath.Glob(filepath.Join(testutil.RepoRoot(), "config", "samples", "*.yaml"))
	g.Expect(err).NotTo(HaveOccurred())
	backup, err := filepath.Glob(filepath.Join(testutil.RepoRoot(), "config", "samples", "backup", "*.yaml"))
	g.Expect(err).NotTo(HaveOccurred())
	files = append(files, backup...)
	g.Expect(files).NotTo(BeEmpty())
	kinds := map[string]int{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		g.Expect(err).NotTo(HaveOccurred())
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
		for {
			u := &unstructured.Unstructured{}
			if err := dec.Decode(&u.Object); err != nil {
				break
			}
			if len(u.Object) == 0 {
				continue
			}
			u.SetNamespace(ns)
			g.Expect(k8s.Create(context.Background(), u)).To(Succeed(), "%s: %s %s", filepath.Base(f), u.GetKind(), u.GetName())
			kinds[u.GetKind()]++
		}
	}
	g.Expect(kinds).To(HaveKeyWithValue("Pool", 1))
	g.Expect(kinds).To(HaveKeyWithValue("Host", 3))
	g.Expect(kinds).To(HaveKeyWithValue("VirtualMachine", 6))
	g.Expect(kinds).To(HaveKey("StorageRepository"))
	g.Expect(kinds).To(HaveKey("VirtualDisk"))
	g.Expect(kinds).To(HaveKey("PoolBackup"))
}

// TestDefaults checks the defaults users rely on when they leave fields out.
func TestDefaults(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	ctx := context.Background()
	objs := []*unstructured.Unstructured{
		fromYAML(t, ns, "kind: Pool\nmetadata: {name: p}\nspec: {}"),
		fromYAML(t, ns, "kind: Host\nmetadata: {name: h}\nspec: {poolRef: {name: p}, address: a, capacity: {cpu: 1, memory: 1Gi}}"),
		fromYAML(t, ns, "kind: VirtualMachine\nmetadata: {name: v}\nspec: {poolRef: {name: p}, disks: [{name: root, virtualDisk: d}]}"),
	}
	for _, o := range objs {
		g.Expect(k8s.Create(ctx, o)).To(Succeed())
	}
	get := func(o *unstructured.Unstructured, path ...string) interface{} {
		g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(o), o)).To(Succeed())
		v, _, _ := unstructured.NestedFieldNoCopy(o.Object, path...)
		return v
	}
	g.Expect(get(objs[0], "spec", "ha", "enabled")).To(BeFalse())
	g.Expect(get(objs[0], "spec", "ha", "hostFailuresToTolerate")).To(BeEquivalentTo(1))
	g.Expect(get(objs[0], "spec", "fencing", "maxConcurrent")).To(BeEquivalentTo(1))
	g.Expect(get(objs[0], "spec", "fencing", "maxUnhealthyPercent")).To(BeEquivalentTo(50))
	g.Expect(get(objs[1], "spec", "fencing", "method")).To(Equal("Agent"))
	g.Expect(get(objs[1], "spec", "state")).To(Equal("Active"))
	g.Expect(get(objs[2], "spec", "powerState")).To(Equal("Halted"))
	g.Expect(get(objs[2], "spec", "ha", "restartPriority")).To(Equal("DoNotRestart"))
	g.Expect(get(objs[2], "spec", "disks")).To(ConsistOf(HaveKeyWithValue("mode", "RW")))
}

const (
	validPool = "kind: Pool\nmetadata: {name: p}\nspec: {ha: {enabled: true}}"
	validHost = `kind: Host
metadata: {name: xen-1}
spec:
  poolRef: {name: p}
  address: 192.0.2.1
  capacity: {cpu: 8, memory: 32Gi}`
	validSR = `kind: StorageRepository
metadata: {name: local}
spec: {poolRef: {name: p}, type: lvm, shared: false, host: xen-1}`
	validVDI = `kind: VirtualDisk
metadata: {name: d}
spec: {poolRef: {name: p}, storageRepository: nfs, size: 1Gi}`
	validVM = `kind: VirtualMachine
metadata: {name: v}
spec:
  poolRef: {name: p}
  disks: [{name: root, virtualDisk: d}]`
	validBackup = `kind: PoolBackup
metadata: {name: b}
spec: {poolRef: {name: p}, encryption: {keySecretRef: {name: k}}}`
)

// TestInvalidObjectsRefused checks that the API server refuses each bad
// object with an error that names the offending field.
func TestInvalidObjectsRefused(t *testing.T) {
	cases := []struct {
		name string
		// create is applied as is; when base is set, base is created first and
		// then patched with create (a merge patch), to test update rules.
		base, create string
		field        string
		// says, when set, is also in the error.
		says string
	}{
		{name: "zero heartbeat timeout", create: "kind: Pool\nmetadata: {name: p}\nspec: {heartbeatTimeout: 0s}", field: "spec.heartbeatTimeout"},
		{name: "negative heartbeat timeout", create: "kind: Pool\nmetadata: {name: p}\nspec: {heartbeatTimeout: -5s}", field: "spec.heartbeatTimeout"},
		{name: "heartbeat timeout not a duration", create: "kind: Pool\nmetadata: {name: p}\nspec: {heartbeatTimeout: soon}", field: "spec.heartbeatTimeout"},
		{name: "master not a DNS label", create: "kind: Pool\nmetadata: {name: p}\nspec: {master: Xen_1.example}", field: "spec.master"},
		{name: "maxUnhealthyPercent over 100", create: "kind: Pool\nmetadata: {name: p}\nspec: {fencing: {maxUnhealthyPercent: 150}}", field: "spec.fencing.maxUnhealthyPercent"},
		{name: "maxConcurrent zero", create: "kind: Pool\nmetadata: {name: p}\nspec: {fencing: {maxConcurrent: 0}}", field: "spec.fencing.maxConcurrent"},
		{name: "negative hostFailuresToTolerate", create: "kind: Pool\nmetadata: {name: p}\nspec: {ha: {hostFailuresToTolerate: -1}}", field: "spec.ha.hostFailuresToTolerate"},
		{name: "unknown restore mode", create: "kind: Pool\nmetadata: {name: p}\nspec: {restoreFrom: {backupName: b, mode: Sloppy}}", field: "spec.restoreFrom.mode"},
		{name: "restoreFrom changed", base: "kind: Pool\nmetadata: {name: p}\nspec: {restoreFrom: {backupName: b}}", create: "spec: {restoreFrom: {backupName: other}}", field: "spec.restoreFrom"},
		{name: "restoreFrom added later", base: validPool, create: "spec: {restoreFrom: {backupName: b}}", field: "restoreFrom"},
		{name: "backup retain zero", create: "kind: Pool\nmetadata: {name: p}\nspec: {backup: {schedule: '@daily', retain: 0, encryption: {keySecretRef: {name: k}}}}", field: "spec.backup.retain"},
		{name: "backup schedule without key", create: "kind: Pool\nmetadata: {name: p}\nspec: {backup: {schedule: '@daily'}}", field: "spec.backup.encryption"},
		{name: "host without poolRef", create: "kind: Host\nmetadata: {name: h}\nspec: {address: a, capacity: {cpu: 1, memory: 1Gi}}", field: "spec.poolRef"},
		{name: "host poolRef changed", base: validHost, create: "spec: {poolRef: {name: q}}", field: "spec.poolRef"},
		{name: "host with zero memory", create: "kind: Host\nmetadata: {name: h}\nspec: {poolRef: {name: p}, address: a, capacity: {cpu: 1, memory: 0}}", field: "spec.capacity.memory"},
		{name: "host memory without a unit", create: "kind: Host\nmetadata: {name: h}\nspec: {poolRef: {name: p}, address: a, capacity: {cpu: 1, memory: '128'}}", field: "spec.capacity.memory", says: "128 is 128 bytes, below the 64Mi minimum: give a unit, such as 128Gi"},
		{name: "host memory a bare integer", create: "kind: Host\nmetadata: {name: h}\nspec: {poolRef: {name: p}, address: a, capacity: {cpu: 1, memory: 128}}", field: "spec.capacity.memory", says: "128 bytes"},
		{name: "host memory 16Ei", create: "kind: Host\nmetadata: {name: h}\nspec: {poolRef: {name: p}, address: a, capacity: {cpu: 1, memory: 16Ei}}", field: "spec.capacity.memory", says: "above the 64Ti maximum"},
		{name: "host with half a CPU", create: "kind: Host\nmetadata: {name: h}\nspec: {poolRef: {name: p}, address: a, capacity: {cpu: 500m, memory: 1Gi}}", field: "spec.capacity.cpu", says: "at least 1"},
		{name: "host with a million CPUs", create: "kind: Host\nmetadata: {name: h}\nspec: {poolRef: {name: p}, address: a, capacity: {cpu: 1M, memory: 1Gi}}", field: "spec.capacity.cpu", says: "at most 4096"},
		{name: "host without capacity", create: "kind: Host\nmetadata: {name: h}\nspec: {poolRef: {name: p}, address: a}", field: "spec.capacity"},
		{name: "host name not a DNS label", create: "kind: Host\nmetadata: {name: xen.1}\nspec: {poolRef: {name: p}, address: a, capacity: {cpu: 1, memory: 1Gi}}", field: "metadata.name"},
		{name: "unknown fencing method", create: "kind: Host\nmetadata: {name: h}\nspec: {poolRef: {name: p}, address: a, capacity: {cpu: 1, memory: 1Gi}, fencing: {method: IPMI}}", field: "spec.fencing.method"},
		{name: "redfish method without redfish", create: "kind: Host\nmetadata: {name: h}\nspec: {poolRef: {name: p}, address: a, capacity: {cpu: 1, memory: 1Gi}, fencing: {method: Redfish}}", field: "spec.fencing.redfish"},
		{name: "redfish endpoint not http", create: "kind: Host\nmetadata: {name: h}\nspec: {poolRef: {name: p}, address: a, capacity: {cpu: 1, memory: 1Gi}, fencing: {method: Redfish, redfish: {endpoint: 'ftp://bmc', systemID: '1', credentialsSecretRef: {name: s}}}}", field: "spec.fencing.redfish.endpoint"},
		{name: "local SR without host", create: "kind: StorageRepository\nmetadata: {name: s}\nspec: {poolRef: {name: p}, type: lvm, shared: false}", field: "spec.host"},
		{name: "shared SR with host", create: "kind: StorageRepository\nmetadata: {name: s}\nspec: {poolRef: {name: p}, type: nfs, shared: true, host: xen-1}", field: "spec.host"},
		{name: "unknown SR type", create: "kind: StorageRepository\nmetadata: {name: s}\nspec: {poolRef: {name: p}, type: floppy, shared: true}", field: "spec.type"},
		{name: "SR host changed", base: validSR, create: "spec: {host: xen-2}", field: "spec.host"},
		{name: "zero-size VDI", create: "kind: VirtualDisk\nmetadata: {name: d}\nspec: {poolRef: {name: p}, storageRepository: nfs, size: 0}", field: "spec.size"},
		{name: "VDI moved to another SR", base: validVDI, create: "spec: {storageRepository: other}", field: "spec.storageRepository"},
		{name: "VM desired power state Paused", create: "kind: VirtualMachine\nmetadata: {name: v}\nspec: {poolRef: {name: p}, powerState: Paused}", field: "spec.powerState"},
		{name: "VM names the same disk twice", create: "kind: VirtualMachine\nmetadata: {name: v}\nspec: {poolRef: {name: p}, disks: [{name: root, virtualDisk: a}, {name: root, virtualDisk: b}]}", field: "spec.disks[1]"},
		{name: "VM attaches one VDI twice", create: "kind: VirtualMachine\nmetadata: {name: v}\nspec: {poolRef: {name: p}, disks: [{name: root, virtualDisk: a}, {name: data, virtualDisk: a}]}", field: "spec.disks"},
		{name: "unknown restart priority", create: "kind: VirtualMachine\nmetadata: {name: v}\nspec: {poolRef: {name: p}, ha: {restartPriority: Always}}", field: "spec.ha.restartPriority"},
		{name: "negative start order", create: "kind: VirtualMachine\nmetadata: {name: v}\nspec: {poolRef: {name: p}, startOrder: -1}", field: "spec.startOrder"},
		{name: "VM memory without a unit", create: "kind: VirtualMachine\nmetadata: {name: v}\nspec: {poolRef: {name: p}, resources: {cpu: 1, memory: '512'}}", field: "spec.resources.memory", says: "512 is 512 bytes, below the 16Mi minimum: give a unit, such as 512Mi"},
		{name: "VM memory 16Ei", create: "kind: VirtualMachine\nmetadata: {name: v}\nspec: {poolRef: {name: p}, resources: {memory: 16Ei}}", field: "spec.resources.memory", says: "above the 64Ti maximum"},
		{name: "VM with zero CPUs", create: "kind: VirtualMachine\nmetadata: {name: v}\nspec: {poolRef: {name: p}, resources: {cpu: 0}}", field: "spec.resources.cpu", says: "at least 1"},
		{name: "VM with 5000 CPUs", create: "kind: VirtualMachine\nmetadata: {name: v}\nspec: {poolRef: {name: p}, resources: {cpu: 5000}}", field: "spec.resources.cpu", says: "at most 4096"},
		{name: "VM poolRef changed", base: validVM, create: "spec: {poolRef: {name: q}}", field: "spec.poolRef"},
		{name: "VM interface on a multicast MAC", create: "kind: VirtualMachine\nmetadata: {name: v}\nspec: {poolRef: {name: p}, interfaces: [{name: eth0, network: default, macAddress: '01:00:5e:00:00:01'}]}", field: "spec.interfaces[0].macAddress", says: "unicast"},
		{name: "VM interface MAC not a MAC", create: "kind: VirtualMachine\nmetadata: {name: v}\nspec: {poolRef: {name: p}, interfaces: [{name: eth0, network: default, macAddress: '52:54:00:12:34'}]}", field: "spec.interfaces[0].macAddress"},
		{name: "VM interface without network", create: "kind: VirtualMachine\nmetadata: {name: v}\nspec: {poolRef: {name: p}, interfaces: [{name: eth0}]}", field: "spec.interfaces[0].network"},
		{name: "VM interfaces share a name", create: "kind: VirtualMachine\nmetadata: {name: v}\nspec: {poolRef: {name: p}, interfaces: [{name: eth0, network: a}, {name: eth0, network: b}]}", field: "spec.interfaces[1]"},
		{name: "VM kernel a relative path", create: "kind: VirtualMachine\nmetadata: {name: v}\nspec: {poolRef: {name: p}, boot: {kernel: vmlinuz}}", field: "spec.boot.kernel"},
		{name: "SR storage pool empty", create: "kind: StorageRepository\nmetadata: {name: s}\nspec: {poolRef: {name: p}, type: nfs, shared: true, libvirt: {storagePool: ''}}", field: "spec.libvirt.storagePool"},
		{name: "backup without encryption", create: "kind: PoolBackup\nmetadata: {name: b}\nspec: {poolRef: {name: p}}", field: "spec.encryption"},
		{name: "S3 storage without s3", create: "kind: PoolBackup\nmetadata: {name: b}\nspec: {poolRef: {name: p}, storage: {type: S3}, encryption: {keySecretRef: {name: k}}}", field: "spec.storage.s3"},
		{name: "backup key changed", base: validBackup, create: "spec: {encryption: {keySecretRef: {name: other}}}", field: "spec.encryption"},
	}
	ns := newNamespace(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			ctx := context.Background()
			var err error
			if tc.base == "" {
				err = k8s.Create(ctx, fromYAML(t, ns, tc.create))
			} else {
				base := fromYAML(t, ns, tc.base)
				base.SetName(base.GetName() + "-" + strings.ReplaceAll(strings.ToLower(t.Name()[strings.LastIndex(t.Name(), "/")+1:]), "_", "-"))
				g.Expect(k8s.Create(ctx, base)).To(Succeed())
				patch, perr := yaml.YAMLToJSON([]byte(tc.create))
				g.Expect(perr).NotTo(HaveOccurred())
				err = k8s.Patch(ctx, base, client.RawPatch("application/merge-patch+json", patch))
			}
			g.Expect(err).To(HaveOccurred(), "the API server accepted a bad object")
			g.Expect(err.Error()).To(ContainSubstring(tc.field), "the error should name the field")
			g.Expect(err.Error()).To(ContainSubstring(tc.says))
		})
	}
	if len(cases) < 15 {
		t.Fatalf("want at least 15 bad objects, have %d", len(cases))
	}
}

// A forget intent can be withdrawn until the operator begins the forget
// (status.forgetStartedAt); from then on the API refuses it, naming the field.
func TestForgetWithdrawnOnlyBeforeItBegins(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	h := &vpoolv1alpha1.Host{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "withdrawn"}}
	h.Spec.PoolRef.Name = "p"
	h.Spec.Address = "a"
	h.Spec.Capacity.CPU.Set(1)
	h.Spec.Capacity.Memory.Set(1 << 30)
	h.Spec.State = vpoolv1alpha1.HostForgotten
	g.Expect(k8s.Create(ctx, h)).To(Succeed())
	t.Cleanup(func() { _ = k8s.Delete(ctx, h) })
	setState := func(state vpoolv1alpha1.HostState) error {
		patch := client.MergeFrom(h.DeepCopy())
		h.Spec.State = state
		return k8s.Patch(ctx, h, patch)
	}
	g.Expect(setState(vpoolv1alpha1.HostActive)).To(Succeed(), "a forget not yet begun can be withdrawn")
	g.Expect(setState(vpoolv1alpha1.HostForgotten)).To(Succeed())
	h.Status.ForgetStartedAt = &metav1.Time{Time: time.Now()}
	g.Expect(k8s.Status().Update(ctx, h)).To(Succeed())
	err := setState(vpoolv1alpha1.HostActive)
	g.Expect(err).To(HaveOccurred(), "a forget that has begun was withdrawn")
	g.Expect(err.Error()).To(And(ContainSubstring("spec.state"), ContainSubstring("status.forgetStartedAt")))
}
