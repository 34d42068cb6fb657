package backup

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
)

// A stored backup's metadata says all a DR site needs, and reads back the
// same; an object without it is not taken for a backup.
func TestDescriptionRoundTrip(t *testing.T) {
	g := NewWithT(t)
	done := metav1.NewTime(time.Date(2026, 3, 1, 2, 3, 4, 5, time.UTC))
	pb := &vpoolv1alpha1.PoolBackup{ObjectMeta: metav1.ObjectMeta{Namespace: "site-a", Name: "nightly", UID: "u-1"}}
	pb.Spec.PoolRef.Name = "p"
	pb.Spec.Encryption.KeySecretRef.Name = "k"
	pb.Status.CompletedAt, pb.Status.PoolEpoch, pb.Status.KeyID = &done, ptr.To[int64](7), "0011223344556677"
	pb.Status.Counts = &vpoolv1alpha1.BackupCounts{Hosts: 3, SRs: 2, VDIs: 10, VMs: 9}
	d := Describe(pb, []byte("sealed"))
	meta := map[string]string{}
	for k, v := range d.Metadata() {
		meta["X-Amz-Meta-"+k] = v // as some services return them
	}
	got, err := ParseDescription(meta)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(got).To(Equal(d))
	g.Expect(got.CompletedAt).To(Equal(time.Date(2026, 3, 1, 2, 3, 4, 0, time.UTC)), "to the second, as status.completedAt")
	g.Expect(got.SHA256).To(Equal(Checksum([]byte("sealed"))))

	for name, meta := range map[string]map[string]string{
		"no metadata":     {},
		"another format":  {metaFormat: "velero/v1"},
		"no completed-at": {metaFormat: ObjectFormat + "/v1", metaPool: "p"},
	} {
		_, err := ParseDescription(meta)
		g.Expect(err).To(MatchError(ErrForeignObject), name)
	}
}
