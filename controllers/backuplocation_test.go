package controllers_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/controllers"
	"github.com/poolkeeper/poolkeeper/internal/backup"
)

// requestCounter serves h and counts the requests by method.
type requestCounter struct {
	mu     sync.Mutex
	counts map[string]int
}

func (c *requestCounter) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		c.counts[r.Method]++
		c.mu.Unlock()
		h.ServeHTTP(w, r)
	})
}

// writes is the number of requests that could change the bucket.
func (c *requestCounter) writes() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.counts[http.MethodPut] + c.counts[http.MethodPost] + c.counts[http.MethodDelete] + c.counts[http.MethodPatch]
}

// reset forgets the requests counted so far.
func (c *requestCounter) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.counts = map[string]int{}
}

func (c *requestCounter) total() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, v := range c.counts {
		n += v
	}
	return n
}

// countedS3Endpoint serves be at a second endpoint whose requests are counted.
func countedS3Endpoint(t testing.TB, be *s3mem.Backend) (string, *requestCounter) {
	t.Helper()
	c := &requestCounter{counts: map[string]int{}}
	srv := httptest.NewServer(c.wrap(gofakes3.New(be).Server()))
	t.Cleanup(srv.Close)
	return srv.URL, c
}

func createLocation(t testing.TB, ns, name, endpoint, bucket string, access vpoolv1alpha1.BackupLocationAccess, interval time.Duration) {
	t.Helper()
	loc := &vpoolv1alpha1.BackupLocation{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	loc.Spec.S3 = vpoolv1alpha1.S3Storage{Endpoint: endpoint, Bucket: bucket, Prefix: "site-a",
		CredentialsSecretRef: vpoolv1alpha1.LocalObjectReference{Name: "s3"}}
	loc.Spec.Access = access
	loc.Spec.SyncInterval = &metav1.Duration{Duration: interval}
	if err := k8s.Create(context.Background(), loc); err != nil {
		t.Fatal(err)
	}
}

func createLocationBackup(t *testing.T, ns, name, location string) {
	t.Helper()
	pb := &vpoolv1alpha1.PoolBackup{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	pb.Spec.PoolRef.Name = "p"
	pb.Spec.Storage = vpoolv1alpha1.BackupStorage{Type: vpoolv1alpha1.StorageLocation,
		LocationRef: &vpoolv1alpha1.LocalObjectReference{Name: location}}
	pb.Spec.Encryption.KeySecretRef.Name = "k"
	if err := k8s.Create(context.Background(), pb); err != nil {
		t.Fatal(err)
	}
}

func getLocation(g Gomega, ns, name string) *vpoolv1alpha1.BackupLocation {
	loc := &vpoolv1alpha1.BackupLocation{}
	g.Expect(k8s.Get(context.Background(), key(ns, name), loc)).To(Succeed())
	return loc
}

func locationCondition(ns, name, t string) func(g Gomega) *metav1.Condition {
	return func(g Gomega) *metav1.Condition {
		return meta.FindStatusCondition(getLocation(g, ns, name).Status.Conditions, t)
	}
}

func backupNames(g Gomega, ns string) []string {
	l := &vpoolv1alpha1.PoolBackupList{}
	g.Expect(k8s.List(context.Background(), l, inNS(ns))).To(Succeed())
	var names []string
	for _, pb := range l.Items {
		names = append(names, pb.Name)
	}
	return names
}

func completed(ns, name string) func(g Gomega) vpoolv1alpha1.PoolBackupPhase {
	return func(g Gomega) vpoolv1alpha1.PoolBackupPhase { return getBackup(g, ns, name).Status.Phase }
}

// The DR story of a location: the primary writes self-describing backups
// through a ReadWrite location; a DR site that never saw them reads the same
// bucket through a ReadOnly location, finds them (once each, however many
// syncs), skips objects that are not poolkeeper backups, restores a pool from
// one, and deletes a synced PoolBackup without deleting anything stored —
// and never sends the bucket a single write.
func TestBackupLocationSyncToDRSite(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ctx := context.Background()
	primary, endpoint, be := s3Pool(t)
	createLocation(t, primary, "bucket", endpoint, s3Bucket, vpoolv1alpha1.AccessReadWrite, time.Minute)
	createLocationBackup(t, primary, "b1", "bucket")
	g.Eventually(completed(primary, "b1"), wait, poll).Should(Equal(vpoolv1alpha1.BackupCompleted))
	b1 := getBackup(g, primary, "b1")
	objectKey := "site-a/" + primary + "/p/b1.pkdump"
	g.Expect(b1.Status.Location).To(Equal("s3://" + s3Bucket + "/" + objectKey))
	g.Expect(b1.Status.KeyID).To(Equal(backup.KeyID(backupKey)))
	data, metadata := s3Object(g, be, objectKey)
	g.Expect(backup.Checksum(data)).To(Equal(b1.Status.SHA256))
	d, err := backup.ParseDescription(metadata)
	g.Expect(err).NotTo(HaveOccurred(), "the object describes itself")
	g.Expect(d).To(And(HaveField("Pool", "p"), HaveField("Namespace", primary), HaveField("Name", "b1"),
		HaveField("SHA256", b1.Status.SHA256), HaveField("KeyID", b1.Status.KeyID),
		HaveField("Counts", vpoolv1alpha1.BackupCounts{Hosts: 2, SRs: 2, VDIs: 4, VMs: 4})))
	g.Expect(d.CompletedAt).To(BeTemporally("==", b1.Status.CompletedAt.Time))
	for _, foreign := range []string{"site-a/README.txt", "site-a/other/not-ours.pkdump"} {
		_, err := be.PutObject(s3Bucket, foreign, map[string]string{}, strings.NewReader("hello"), 5, nil)
		g.Expect(err).NotTo(HaveOccurred())
	}

	// The DR site: another namespace and manager, the same bucket, read only.
	dr := newNamespace(t)
	createKey(t, dr, "k", backupKey)
	createS3Credentials(t, dr, "s3")
	drEndpoint, requests := countedS3Endpoint(t, be)
	startManager(t, dr, controllers.Options{})
	createLocation(t, dr, "primary", drEndpoint, s3Bucket, vpoolv1alpha1.AccessReadOnly, time.Second)
	g.Eventually(completed(dr, "b1"), wait, poll).Should(Equal(vpoolv1alpha1.BackupCompleted))
	synced := getBackup(g, dr, "b1")
	g.Expect(synced.Spec.Storage.LocationRef).To(Equal(&vpoolv1alpha1.LocalObjectReference{Name: "primary"}))
	g.Expect(synced.Spec.PoolRef.Name).To(Equal("p"))
	g.Expect(synced.Status).To(And(HaveField("SHA256", b1.Status.SHA256), HaveField("Counts", b1.Status.Counts),
		HaveField("PoolEpoch", b1.Status.PoolEpoch), HaveField("KeyID", b1.Status.KeyID), HaveField("SizeBytes", b1.Status.SizeBytes)))
	g.Expect(synced.Status.CompletedAt.Time).To(BeTemporally("==", b1.Status.CompletedAt.Time))
	ready := meta.FindStatusCondition(synced.Status.Conditions, vpoolv1alpha1.ConditionReady)
	g.Expect(ready).To(And(HaveField("Reason", controllers.ReasonFoundInLocation), HaveField("Message", ContainSubstring(primary+"/b1"))))
	g.Eventually(locationCondition(dr, "primary", vpoolv1alpha1.ConditionReady), wait, poll).Should(And(
		HaveField("Status", metav1.ConditionTrue), HaveField("Reason", controllers.ReasonForeignObjects),
		HaveField("Message", ContainSubstring("site-a/README.txt")), HaveField("Message", ContainSubstring("site-a/other/not-ours.pkdump"))))
	g.Expect(getLocation(g, dr, "primary").Status.Backups).To(BeEquivalentTo(1))

	// A new backup at the primary appears at the next sync; many syncs later
	// there is still one PoolBackup per stored backup.
	createLocationBackup(t, primary, "b2", "bucket")
	g.Eventually(completed(primary, "b2"), wait, poll).Should(Equal(vpoolv1alpha1.BackupCompleted))
	g.Eventually(completed(dr, "b2"), wait, poll).Should(Equal(vpoolv1alpha1.BackupCompleted))
	seen := getLocation(g, dr, "primary").Status.LastSyncedAt.Time
	g.Eventually(func(g Gomega) time.Time { return getLocation(g, dr, "primary").Status.LastSyncedAt.Time }, wait, poll).Should(
		BeTemporally(">=", seen.Add(2*time.Second)))
	g.Expect(backupNames(g, dr)).To(ConsistOf("b1", "b2"))
	g.Expect(getLocation(g, dr, "primary").Status.Backups).To(BeEquivalentTo(2))

	// The DR site restores the lost pool from what it found.
	createRestoringPool(t, dr, "p", vpoolv1alpha1.RestoreSource{BackupName: "b2"})
	g.Eventually(restored(dr, "p"), wait, poll).Should(HaveField("Status", metav1.ConditionTrue))
	g.Expect(getPool(g, dr, "p").Status.Restore.Created).To(Equal(vpoolv1alpha1.BackupCounts{Hosts: 2, SRs: 2, VDIs: 4, VMs: 4}))

	// Deleting a synced PoolBackup of a ReadOnly location deletes nothing
	// stored: the PoolBackup goes, and the next sync finds the backup again.
	gone := getBackup(g, dr, "b1")
	g.Expect(k8s.Delete(ctx, gone)).To(Succeed())
	g.Eventually(func() bool {
		pb := &vpoolv1alpha1.PoolBackup{}
		err := k8s.Get(ctx, key(dr, "b1"), pb)
		return apierrors.IsNotFound(err) || (err == nil && pb.UID != gone.UID)
	}, wait, poll).Should(BeTrue())
	g.Eventually(completed(dr, "b1"), wait, poll).Should(Equal(vpoolv1alpha1.BackupCompleted))
	g.Expect(getBackup(g, dr, "b1").UID).NotTo(Equal(gone.UID))
	stored, _ := s3Object(g, be, objectKey)
	g.Expect(stored).To(Equal(data))
	g.Expect(requests.total()).To(BeNumerically(">", 0))
	g.Expect(requests.writes()).To(BeZero(), "a ReadOnly location never writes its bucket")

	// The primary prunes b1 (deleting its PoolBackup deletes its object):
	// the DR site's next sync deletes its PoolBackup of b1, and only that.
	g.Expect(k8s.Delete(ctx, getBackup(g, primary, "b1"))).To(Succeed())
	g.Eventually(func() []string { return backupNames(g, dr) }, wait, poll).Should(ConsistOf("b2"))
	g.Eventually(eventsOf(dr, "primary"), wait, poll).Should(ContainElement(controllers.ReasonBackupGone))
	g.Consistently(func() []string { return backupNames(g, dr) }, 3*time.Second, poll).Should(ConsistOf("b2"))
	g.Expect(requests.writes()).To(BeZero(), "a ReadOnly location never writes its bucket")
}

// A location says why it cannot sync: credentials missing or refused, a
// bucket that does not exist (Stalled: a person must act), a service that
// does not answer (retried); a backup cannot be written through a ReadOnly
// location.
func TestBackupLocationTroubles(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ns, endpoint, be := s3Pool(t)

	createLocation(t, ns, "no-bucket", endpoint, "no-such-bucket", vpoolv1alpha1.AccessReadOnly, time.Minute)
	g.Eventually(locationCondition(ns, "no-bucket", vpoolv1alpha1.ConditionStalled), wait, poll).Should(And(Not(BeNil()),
		HaveField("Reason", backup.S3BucketNotFound), HaveField("Message", ContainSubstring("check spec.s3.bucket"))))

	refused := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(http.StatusForbidden)
		_, _ = w.Write([]byte(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>InvalidAccessKeyId</Code>` +
			`<Message>The AWS Access Key Id you provided does not exist in our records.</Message></Error>`))
	}))
	t.Cleanup(refused.Close)
	createLocation(t, ns, "refused", refused.URL, s3Bucket, vpoolv1alpha1.AccessReadOnly, time.Minute)
	g.Eventually(locationCondition(ns, "refused", vpoolv1alpha1.ConditionStalled), wait, poll).Should(And(Not(BeNil()),
		HaveField("Reason", backup.S3CredentialsRejected), HaveField("Message", ContainSubstring("credentialsSecretRef"))))

	loc := &vpoolv1alpha1.BackupLocation{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "no-credentials"}}
	loc.Spec.S3 = vpoolv1alpha1.S3Storage{Endpoint: endpoint, Bucket: s3Bucket, CredentialsSecretRef: vpoolv1alpha1.LocalObjectReference{Name: "missing"}}
	g.Expect(k8s.Create(context.Background(), loc)).To(Succeed())
	g.Eventually(locationCondition(ns, "no-credentials", vpoolv1alpha1.ConditionStalled), wait, poll).Should(And(Not(BeNil()),
		HaveField("Reason", backup.ReasonStorageCredentials), HaveField("Message", ContainSubstring(`Secret "missing" not found`))))
	g.Expect(getLocation(g, ns, "no-credentials").Spec.SyncInterval.Duration).To(Equal(time.Minute), "the default interval")

	down := httptest.NewServer(nil)
	down.Close()
	createLocation(t, ns, "down", down.URL, s3Bucket, vpoolv1alpha1.AccessReadOnly, time.Minute)
	g.Eventually(locationCondition(ns, "down", vpoolv1alpha1.ConditionReady), wait, poll).Should(And(Not(BeNil()),
		HaveField("Status", metav1.ConditionFalse), HaveField("Reason", backup.S3Unreachable), HaveField("Message", ContainSubstring(down.URL))))
	g.Expect(locationCondition(ns, "down", vpoolv1alpha1.ConditionStalled)(g)).To(BeNil(), "retried, not stalled")

	createLocation(t, ns, "read-only", endpoint, s3Bucket, vpoolv1alpha1.AccessReadOnly, time.Minute)
	createLocationBackup(t, ns, "b", "read-only")
	g.Eventually(completed(ns, "b"), wait, poll).Should(Equal(vpoolv1alpha1.BackupFailed))
	c := meta.FindStatusCondition(getBackup(g, ns, "b").Status.Conditions, vpoolv1alpha1.ConditionReady)
	g.Expect(c).To(And(HaveField("Reason", backup.ReasonLocationReadOnly), HaveField("Message", ContainSubstring(`BackupLocation "read-only" is ReadOnly`))))
	l, err := be.ListBucket(s3Bucket, nil, gofakes3.ListBucketPage{})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(l.Contents).To(BeEmpty(), "nothing was written")
}
