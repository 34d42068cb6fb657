package controllers_test

import (
	"bytes"
	"context"
	"net/http/httptest"
	"testing"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/controllers"
	"github.com/poolkeeper/poolkeeper/internal/backup"
)

const s3Bucket = "pool-backups"

// s3Service serves the S3 API over HTTP from memory, with one bucket, and
// returns its endpoint.
func s3Service(t testing.TB) (string, *s3mem.Backend) {
	t.Helper()
	be := s3mem.New()
	if err := be.CreateBucket(s3Bucket); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(gofakes3.New(be).Server())
	t.Cleanup(srv.Close)
	return srv.URL, be
}

func createS3Credentials(t testing.TB, ns, name string) {
	t.Helper()
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Data: map[string][]byte{
		backup.S3AccessKeyID: []byte("poolkeeper"), backup.S3SecretAccessKey: []byte("s3cr3t-s3cr3t-s3cr3t")}}
	if err := k8s.Create(context.Background(), s); err != nil {
		t.Fatal(err)
	}
}

func createS3Backup(t *testing.T, ns, name, endpoint, credentials string) {
	t.Helper()
	pb := &vpoolv1alpha1.PoolBackup{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	pb.Spec.PoolRef.Name = "p"
	pb.Spec.Storage = vpoolv1alpha1.BackupStorage{Type: vpoolv1alpha1.StorageS3, S3: &vpoolv1alpha1.S3Storage{
		Endpoint: endpoint, Bucket: s3Bucket, Prefix: "site-a/", CredentialsSecretRef: vpoolv1alpha1.LocalObjectReference{Name: credentials}}}
	pb.Spec.Encryption.KeySecretRef.Name = "k"
	if err := k8s.Create(context.Background(), pb); err != nil {
		t.Fatal(err)
	}
}

// s3Pool is a populated pool "p" with a running manager, the backup key
// "k", the credentials Secret "s3" and an S3 service with its bucket.
func s3Pool(t *testing.T) (ns, endpoint string, be *s3mem.Backend) {
	t.Helper()
	endpoint, be = s3Service(t)
	ns = newNamespace(t)
	populatedPool(t, ns)
	createKey(t, ns, "k", backupKey)
	createS3Credentials(t, ns, "s3")
	startManager(t, ns, controllers.Options{})
	return ns, endpoint, be
}

// backupGone reports whether the PoolBackup no longer exists.
func backupGone(ns, name string) func() bool {
	return func() bool {
		return apierrors.IsNotFound(k8s.Get(context.Background(), key(ns, name), &vpoolv1alpha1.PoolBackup{}))
	}
}

// s3Object reads an object's bytes and metadata from the service's memory.
func s3Object(g Gomega, be *s3mem.Backend, key string) ([]byte, map[string]string) {
	obj, err := be.GetObject(s3Bucket, key, nil)
	g.Expect(err).NotTo(HaveOccurred())
	defer func() { _ = obj.Contents.Close() }()
	var buf bytes.Buffer
	_, err = buf.ReadFrom(obj.Contents)
	g.Expect(err).NotTo(HaveOccurred())
	return buf.Bytes(), obj.Metadata
}

// A backup to an S3-compatible bucket: one encrypted object named after the
// PoolBackup and its UID, no Secrets; the pool restored from it; the object
// deleted with the PoolBackup.
func TestBackupToS3(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ctx := context.Background()
	ns, endpoint, be := s3Pool(t)
	createS3Backup(t, ns, "b", endpoint, "s3")

	g.Eventually(func(g Gomega) vpoolv1alpha1.PoolBackupPhase { return getBackup(g, ns, "b").Status.Phase }, wait, poll).Should(
		Equal(vpoolv1alpha1.BackupCompleted))
	pb := getBackup(g, ns, "b")
	objectKey := "site-a/" + ns + "/b-" + string(pb.UID) + ".pkdump"
	g.Expect(pb.Status.Location).To(Equal("s3://" + s3Bucket + "/" + objectKey))
	data, metadata := s3Object(g, be, objectKey)
	g.Expect(int64(len(data))).To(Equal(pb.Status.SizeBytes))
	g.Expect(backup.Checksum(data)).To(Equal(pb.Status.SHA256))
	g.Expect(metadata).To(ContainElement(pb.Status.SHA256))
	d, err := backup.Open(data, backupKey)
	g.Expect(err).NotTo(HaveOccurred(), "the object is the sealed dump")
	g.Expect(d.Counts()).To(Equal(vpoolv1alpha1.BackupCounts{Hosts: 2, SRs: 2, VDIs: 4, VMs: 4}))
	secrets := &corev1.SecretList{}
	g.Expect(k8s.List(ctx, secrets, inNS(ns), client.HasLabels{backup.LabelBackup})).To(Succeed())
	g.Expect(secrets.Items).To(BeEmpty(), "nothing is stored in Secrets")

	losePool(t, g, ns)
	createRestoringPool(t, ns, "p2", vpoolv1alpha1.RestoreSource{BackupName: "b"})
	g.Eventually(restored(ns, "p2"), wait, poll).Should(HaveField("Status", metav1.ConditionTrue))
	g.Expect(getPool(g, ns, "p2").Status.Restore.Created).To(Equal(vpoolv1alpha1.BackupCounts{Hosts: 2, SRs: 2, VDIs: 4, VMs: 4}))

	g.Expect(k8s.Delete(ctx, pb)).To(Succeed())
	g.Eventually(func() error { _, err := be.HeadObject(s3Bucket, objectKey); return err }, wait, poll).Should(HaveOccurred())
	g.Eventually(backupGone(ns, "b"), wait, poll).Should(BeTrue())
}

// Without its credentials an S3 backup fails and names the field; an
// unreachable service is retried and said so; a flipped byte in the stored
// object stops a restore in its preflight.
func TestBackupToS3Failures(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ctx := context.Background()
	ns, endpoint, be := s3Pool(t)

	createS3Backup(t, ns, "no-credentials", endpoint, "missing")
	g.Eventually(func(g Gomega) *vpoolv1alpha1.PoolBackup { return getBackup(g, ns, "no-credentials") }, wait, poll).Should(
		HaveField("Status.Phase", vpoolv1alpha1.BackupFailed))
	c := meta.FindStatusCondition(getBackup(g, ns, "no-credentials").Status.Conditions, vpoolv1alpha1.ConditionReady)
	g.Expect(c.Reason).To(Equal(backup.ReasonStorageCredentials))
	g.Expect(c.Message).To(ContainSubstring(`spec.storage.s3.credentialsSecretRef: Secret "missing" not found`))
	// Nothing was stored, so it goes without its credentials.
	g.Expect(k8s.Delete(ctx, getBackup(g, ns, "no-credentials"))).To(Succeed())
	g.Eventually(backupGone(ns, "no-credentials"), wait, poll).Should(BeTrue())

	// A service that cannot be reached: retried, and the condition says why.
	down := httptest.NewServer(nil)
	down.Close()
	createS3Backup(t, ns, "unreachable", down.URL, "s3")
	g.Eventually(func(g Gomega) *metav1.Condition {
		return meta.FindStatusCondition(getBackup(g, ns, "unreachable").Status.Conditions, vpoolv1alpha1.ConditionReady)
	}, wait, poll).Should(And(Not(BeNil()), HaveField("Reason", controllers.ReasonBackupTaking),
		HaveField("Message", ContainSubstring("storing the backup failed, retrying")), HaveField("Message", ContainSubstring(down.URL))))
	g.Expect(getBackup(g, ns, "unreachable").Status.Phase).To(Equal(vpoolv1alpha1.BackupInProgress))
	// It stored nothing: deleting it does not wait for the service.
	g.Expect(k8s.Delete(ctx, getBackup(g, ns, "unreachable"))).To(Succeed())
	g.Eventually(backupGone(ns, "unreachable"), wait, poll).Should(BeTrue())

	createS3Backup(t, ns, "b", endpoint, "s3")
	g.Eventually(func(g Gomega) vpoolv1alpha1.PoolBackupPhase { return getBackup(g, ns, "b").Status.Phase }, wait, poll).Should(
		Equal(vpoolv1alpha1.BackupCompleted))
	pb := getBackup(g, ns, "b")
	objectKey := "site-a/" + ns + "/b-" + string(pb.UID) + ".pkdump"
	data, metadata := s3Object(g, be, objectKey)
	data[len(data)/2] ^= 0x01
	_, err := be.PutObject(s3Bucket, objectKey, metadata, bytes.NewReader(data), int64(len(data)), nil)
	g.Expect(err).NotTo(HaveOccurred())

	losePool(t, g, ns)
	createRestoringPool(t, ns, "p2", vpoolv1alpha1.RestoreSource{BackupName: "b"})
	g.Eventually(restored(ns, "p2"), wait, poll).Should(And(HaveField("Status", metav1.ConditionFalse),
		HaveField("Reason", backup.ReasonChecksumMismatch), HaveField("Message", ContainSubstring(objectKey)),
		HaveField("Message", ContainSubstring("nothing was written"))))
	vms := &vpoolv1alpha1.VirtualMachineList{}
	g.Expect(k8s.List(ctx, vms, inNS(ns))).To(Succeed())
	g.Expect(vms.Items).To(BeEmpty())
}
