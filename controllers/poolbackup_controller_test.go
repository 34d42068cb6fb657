package controllers_test

import (
	"context"
	"encoding/json"
	"strconv"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/controllers"
	"github.com/poolkeeper/poolkeeper/internal/backup"
)

var backupKey = []byte("0123456789abcdef0123456789abcdef-test-key")

func createKey(t *testing.T, ns, name string, key []byte) {
	t.Helper()
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Data: map[string][]byte{"key": key}}
	if err := k8s.Create(context.Background(), s); err != nil {
		t.Fatal(err)
	}
}

func createBackup(t *testing.T, ns, name, keyName string) {
	t.Helper()
	pb := &vpoolv1alpha1.PoolBackup{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	pb.Spec.PoolRef.Name = "p"
	pb.Spec.Storage.Type = vpoolv1alpha1.StorageSecret
	pb.Spec.Encryption.KeySecretRef.Name = keyName
	if err := k8s.Create(context.Background(), pb); err != nil {
		t.Fatal(err)
	}
}

func getBackup(g Gomega, ns, name string) *vpoolv1alpha1.PoolBackup {
	pb := &vpoolv1alpha1.PoolBackup{}
	g.Expect(k8s.Get(context.Background(), key(ns, name), pb)).To(Succeed())
	return pb
}

// populatedPool creates a pool with hosts, SRs, VDIs and VMs, no agents.
func populatedPool(t *testing.T, ns string) {
	t.Helper()
	createPool(t, ns, "p", poolOpts{ha: true, timeout: timeout})
	createSR(t, ns, "p", "nfs", "")
	createSR(t, ns, "p", "h1-local", "h1")
	for _, h := range []string{"h1", "h2"} {
		createHost(t, ns, "p", h)
	}
	for i := 0; i < 4; i++ {
		name := "vm-" + strconv.Itoa(i)
		createVDI(t, ns, "p", name, "nfs")
		createVM(t, ns, "p", name, withDisk(name))
	}
}

// A PoolBackup of a populated pool completes with its counts, size, checksum
// and location; its data lives in Secrets and goes with the PoolBackup.
func TestBackupCompletesAndDeletesItsData(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ns := newNamespace(t)
	populatedPool(t, ns)
	createKey(t, ns, "k", backupKey)
	startManager(t, ns, controllers.Options{})
	createBackup(t, ns, "b1", "k")
	g.Eventually(func(g Gomega) vpoolv1alpha1.PoolBackupPhase { return getBackup(g, ns, "b1").Status.Phase }, wait, poll).Should(
		Equal(vpoolv1alpha1.BackupCompleted))
	pb := getBackup(g, ns, "b1")
	g.Expect(*pb.Status.Counts).To(Equal(vpoolv1alpha1.BackupCounts{Hosts: 2, SRs: 2, VDIs: 4, VMs: 4}))
	g.Expect(pb.Status.SizeBytes).To(BeNumerically(">", 0))
	g.Expect(pb.Status.SHA256).To(HaveLen(64))
	g.Expect(pb.Status.Location).To(ContainSubstring("b1-chunk"))
	g.Expect(meta.IsStatusConditionTrue(pb.Status.Conditions, vpoolv1alpha1.ConditionReady)).To(BeTrue())
	g.Expect(scrape(g)).To(And(HaveKeyWithValue("poolkeeper_backup_duration_seconds{result=completed}", BeNumerically(">", 0)),
		HaveKeyWithValue("poolkeeper_backup_size_bytes{namespace="+ns+",pool=p}", BeNumerically("==", pb.Status.SizeBytes))))

	store := &backup.SecretStore{Client: k8s}
	data, err := store.Get(context.Background(), pb)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(backup.Checksum(data)).To(Equal(pb.Status.SHA256))
	d, err := backup.Open(data, backupKey)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(d.Counts()).To(Equal(*pb.Status.Counts))
	_, err = backup.Open(data, []byte("another-key-another-key-another-key!!"))
	g.Expect(err).To(MatchError(backup.ErrWrongKey))

	g.Expect(k8s.Delete(context.Background(), pb)).To(Succeed())
	g.Eventually(func(g Gomega) []corev1.Secret {
		secrets := &corev1.SecretList{}
		g.Expect(k8s.List(context.Background(), secrets, inNS(ns), client.HasLabels{backup.LabelBackup})).To(Succeed())
		return secrets.Items
	}, wait, poll).Should(BeEmpty())
}

// No key, no backup: a missing or short key fails the backup and says why.
func TestBackupWithoutKeyFails(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ns := newNamespace(t)
	populatedPool(t, ns)
	createKey(t, ns, "short", []byte("too-short"))
	startManager(t, ns, controllers.Options{})
	createBackup(t, ns, "missing", "nope")
	createBackup(t, ns, "short", "short")
	s3 := &vpoolv1alpha1.PoolBackup{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "s3"}}
	s3.Spec.PoolRef.Name = "p"
	s3.Spec.Storage = vpoolv1alpha1.BackupStorage{Type: vpoolv1alpha1.StorageS3, S3: &vpoolv1alpha1.S3Storage{
		Endpoint: "https://s3.example.com", Bucket: "backups", CredentialsSecretRef: vpoolv1alpha1.LocalObjectReference{Name: "s3"}}}
	s3.Spec.Encryption.KeySecretRef.Name = "short"
	g.Expect(k8s.Create(context.Background(), s3)).To(Succeed())
	for name, msg := range map[string]string{"missing": `Secret "nope" not found`, "short": "at least 32 bytes", "s3": "at least 32 bytes"} {
		g.Eventually(func(g Gomega) *vpoolv1alpha1.PoolBackup { return getBackup(g, ns, name) }, wait, poll).Should(And(
			HaveField("Status.Phase", vpoolv1alpha1.BackupFailed), HaveField("Status.SHA256", "")))
		c := meta.FindStatusCondition(getBackup(g, ns, name).Status.Conditions, vpoolv1alpha1.ConditionReady)
		g.Expect(c.Reason).To(Equal(controllers.ReasonKeyUnavailable))
		g.Expect(c.Message).To(ContainSubstring("spec.encryption.keySecretRef"))
		g.Expect(c.Message).To(ContainSubstring(msg))
	}
	secrets := &corev1.SecretList{}
	g.Expect(k8s.List(context.Background(), secrets, inNS(ns), client.HasLabels{backup.LabelBackup})).To(Succeed())
	g.Expect(secrets.Items).To(BeEmpty(), "nothing is stored without a key")
}

// A writer that changes a Host and then a VM, over and over, while backups
// are taken: every dump is one point in time, so the VM's counter is the
// Host's or one behind it, never further apart.
func TestBackupIsConsistentUnderWrites(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ns := newNamespace(t)
	populatedPool(t, ns)
	createKey(t, ns, "k", backupKey)
	startManager(t, ns, controllers.Options{})

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 1; ctx.Err() == nil; i++ {
			for _, obj := range []client.Object{&vpoolv1alpha1.Host{}, &vpoolv1alpha1.VirtualMachine{}} {
				name := "h1"
				if _, ok := obj.(*vpoolv1alpha1.VirtualMachine); ok {
					name = "vm-0"
				}
				patch := []byte(`{"metadata":{"annotations":{"counter":"` + strconv.Itoa(i) + `"}}}`)
				obj.SetNamespace(ns)
				obj.SetName(name)
				_ = k8s.Patch(ctx, obj, client.RawPatch("application/merge-patch+json", patch))
			}
		}
	}()
	defer func() { cancel(); wg.Wait() }()
	time.Sleep(200 * time.Millisecond)
	for i := 0; i < 3; i++ {
		name := "consistent-" + strconv.Itoa(i)
		createBackup(t, ns, name, "k")
		g.Eventually(func(g Gomega) vpoolv1alpha1.PoolBackupPhase { return getBackup(g, ns, name).Status.Phase }, wait, poll).Should(
			Equal(vpoolv1alpha1.BackupCompleted))
		data, err := (&backup.SecretStore{Client: k8s}).Get(context.Background(), getBackup(g, ns, name))
		g.Expect(err).NotTo(HaveOccurred())
		d, err := backup.Open(data, backupKey)
		g.Expect(err).NotTo(HaveOccurred())
		var host, vm int
		for _, h := range d.Hosts {
			if h.Metadata.Name == "h1" {
				host, _ = strconv.Atoi(h.Metadata.Annotations["counter"])
			}
		}
		for _, v := range d.VirtualMachines {
			if v.Metadata.Name == "vm-0" {
				vm, _ = strconv.Atoi(v.Metadata.Annotations["counter"])
			}
		}
		g.Expect(host).To(BeNumerically(">", 0), "the writer was running")
		g.Expect(host-vm).To(BeElementOf(0, 1), "host counter %d, VM counter %d: not one point in time", host, vm)
	}
}

// kubectl get pbak shows what a backup holds, an empty one too: HOSTS, VMS
// and EPOCH read 0, not blank.
func TestBackupOfAnEmptyPoolShowsItsCounts(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ns := newNamespace(t)
	createPool(t, ns, "p", poolOpts{})
	createKey(t, ns, "k", backupKey)
	startManager(t, ns, controllers.Options{})
	createBackup(t, ns, "b1", "k")
	g.Eventually(func(g Gomega) vpoolv1alpha1.PoolBackupPhase { return getBackup(g, ns, "b1").Status.Phase }, wait, poll).Should(
		Equal(vpoolv1alpha1.BackupCompleted))

	cs, err := kubernetes.NewForConfig(restConfig)
	g.Expect(err).NotTo(HaveOccurred())
	raw, err := cs.CoreV1().RESTClient().Get().AbsPath("/apis", vpoolv1alpha1.GroupVersion.Group, vpoolv1alpha1.GroupVersion.Version,
		"namespaces", ns, "poolbackups").SetHeader("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io").DoRaw(context.Background())
	g.Expect(err).NotTo(HaveOccurred())
	table := &metav1.Table{}
	g.Expect(json.Unmarshal(raw, table)).To(Succeed())
	g.Expect(table.Rows).To(HaveLen(1))
	shown := map[string]any{}
	for i, c := range table.ColumnDefinitions {
		shown[c.Name] = table.Rows[0].Cells[i]
	}
	g.Expect(shown).To(And(HaveKeyWithValue("Phase", "Completed"), HaveKeyWithValue("Epoch", BeEquivalentTo(0)),
		HaveKeyWithValue("Hosts", BeEquivalentTo(0)), HaveKeyWithValue("VMs", BeEquivalentTo(0))))
}
