package backup_test

import (
	"context"
	"testing"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/internal/backup"
	"github.com/poolkeeper/poolkeeper/internal/testutil"
)

// Deleting a PoolBackup its location's sync found gone from the bucket
// deletes nothing stored, in a ReadWrite location too: the store does not
// even reach for the bucket (here it could not: its credentials are
// missing), whatever a later listing would find.
func TestLocationStoreDeletesNothingOfABackupGoneFromTheBucket(t *testing.T) {
	g := NewWithT(t)
	loc := &vpoolv1alpha1.BackupLocation{ObjectMeta: metav1.ObjectMeta{Namespace: "dr", Name: "primary"}}
	loc.Spec.Access = vpoolv1alpha1.AccessReadWrite
	loc.Spec.S3 = vpoolv1alpha1.S3Storage{Bucket: "b", Prefix: "site-a/"}
	loc.Spec.S3.CredentialsSecretRef.Name = "s3"
	store := &backup.LocationStore{Reader: fake.NewClientBuilder().WithScheme(testutil.Scheme).WithObjects(loc).Build()}
	pb := &vpoolv1alpha1.PoolBackup{ObjectMeta: metav1.ObjectMeta{Namespace: "dr", Name: "b1",
		Annotations: map[string]string{vpoolv1alpha1.AnnotationStoredKey: "site-a/ns/p/b1.pkdump"}}}
	pb.Spec.Storage = vpoolv1alpha1.BackupStorage{Type: vpoolv1alpha1.StorageLocation,
		LocationRef: &vpoolv1alpha1.LocalObjectReference{Name: "primary"}}

	g.Expect(store.Delete(context.Background(), pb)).To(MatchError(backup.ErrStorageCredentials),
		"a PoolBackup of a ReadWrite location: its object is looked for, to be deleted")
	pb.Annotations[vpoolv1alpha1.AnnotationGoneFromBucket] = "true"
	g.Expect(store.Delete(context.Background(), pb)).To(Succeed(), "gone from the bucket: nothing stored is touched")
}
