package controllers_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"filippo.io/age"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/internal/backup"
)

// A cluster given only an age recipient writes backups it cannot read: the
// backup completes (checked by its sha256), the holder of the identity
// opens it, and a restore in that cluster says what is missing.
func TestBackupToRecipientOnly(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ctx := context.Background()
	id, err := age.GenerateX25519Identity()
	g.Expect(err).NotTo(HaveOccurred())
	ns, endpoint, be := s3Pool(t)
	g.Expect(k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "public"},
		Data: map[string][]byte{backup.SecretRecipients: []byte(id.Recipient().String() + "\n")}})).To(Succeed())
	createLocation(t, ns, "bucket", endpoint, s3Bucket, vpoolv1alpha1.AccessReadWrite, time.Minute)
	pb := &vpoolv1alpha1.PoolBackup{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "b"}}
	pb.Spec.PoolRef.Name = "p"
	pb.Spec.Storage = vpoolv1alpha1.BackupStorage{Type: vpoolv1alpha1.StorageLocation, LocationRef: &vpoolv1alpha1.LocalObjectReference{Name: "bucket"}}
	pb.Spec.Encryption.KeySecretRef.Name = "public"
	g.Expect(k8s.Create(ctx, pb)).To(Succeed())
	g.Eventually(completed(ns, "b"), wait, poll).Should(Equal(vpoolv1alpha1.BackupCompleted))
	ready := meta.FindStatusCondition(getBackup(g, ns, "b").Status.Conditions, vpoolv1alpha1.ConditionReady)
	g.Expect(ready.Message).To(ContainSubstring("this cluster holds no identity to read it"))

	data, _ := s3Object(g, be, "site-a/"+ns+"/p/b.pkdump")
	g.Expect(backup.IsAge(data)).To(BeTrue())
	_, err = age.Decrypt(bytes.NewReader(data), id)
	g.Expect(err).NotTo(HaveOccurred(), "the identity's holder reads it with plain age")
	d, err := backup.OpenAny(data, backup.Keys{Identities: []age.Identity{id}})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(d.Counts()).To(Equal(vpoolv1alpha1.BackupCounts{Hosts: 2, SRs: 2, VDIs: 4, VMs: 4}))

	losePool(t, g, ns)
	createRestoringPool(t, ns, "p2", vpoolv1alpha1.RestoreSource{BackupName: "b"})
	g.Eventually(restored(ns, "p2"), wait, poll).Should(And(HaveField("Status", metav1.ConditionFalse),
		HaveField("Reason", backup.ReasonNoIdentity), HaveField("Message", ContainSubstring("identities"))))
}
