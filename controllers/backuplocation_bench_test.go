package controllers_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/internal/backup"
)

// BenchmarkLocationSync syncs a bucket of POOLKEEPER_BENCH_BACKUPS
// (default 1000) backups into a fresh namespace through a ReadOnly
// BackupLocation — a DR site's first sync — then syncs it again with
// nothing new, and reports the seconds, the API writes and the S3 requests
// of each. It asserts no timing; it fails only when the sync does not create
// exactly one PoolBackup per stored backup. It runs its scenario once,
// whatever b.N (about 30 s with its setup):
//
//	go test ./controllers/ -run '^$' -bench BenchmarkLocationSync -benchtime 1x
func BenchmarkLocationSync(b *testing.B) {
	b.StopTimer()
	n := envInt(b, "POOLKEEPER_BENCH_BACKUPS", 1000)
	ctx := context.Background()
	_, be := s3Service(b)
	endpoint, requests := countedS3Endpoint(b, be)

	// The primary's bucket: n backups written as a ReadWrite location writes them.
	primary := benchNamespace(b, "pksyncsrc-")
	createS3Credentials(b, primary, "s3")
	createLocation(b, primary, "bucket", endpoint, s3Bucket, vpoolv1alpha1.AccessReadWrite, time.Hour)
	data, err := backup.Seal(benchDump(primary, 1), backupKey)
	if err != nil {
		b.Fatal(err)
	}
	store := &backup.LocationStore{Reader: k8s}
	start := time.Now()
	for i := range n {
		pb := &vpoolv1alpha1.PoolBackup{ObjectMeta: metav1.ObjectMeta{Namespace: primary, Name: fmt.Sprintf("p-%05d", i),
			UID: types.UID(fmt.Sprintf("00000000-0000-4000-8000-%012d", i))}}
		pb.Spec.PoolRef.Name = "p"
		pb.Spec.Storage = vpoolv1alpha1.BackupStorage{Type: vpoolv1alpha1.StorageLocation, LocationRef: &vpoolv1alpha1.LocalObjectReference{Name: "bucket"}}
		pb.Spec.Encryption.KeySecretRef.Name = "k"
		at := metav1.NewTime(time.Now().Add(time.Duration(i-n) * time.Minute).UTC().Truncate(time.Second))
		pb.Status = vpoolv1alpha1.PoolBackupStatus{Phase: vpoolv1alpha1.BackupCompleted, CompletedAt: &at, PoolEpoch: ptr.To(int64(1)),
			Counts: &vpoolv1alpha1.BackupCounts{VMs: 1, VDIs: 2, SRs: 1}, KeyID: backup.KeyID(backupKey)}
		if _, err := store.Put(ctx, pb, data); err != nil {
			b.Fatal(err)
		}
	}
	say("%d backups stored in the bucket in %s (not timed)", n, secs(time.Since(start)))

	// The DR site.
	dr := benchNamespace(b, "pksyncdr-")
	createS3Credentials(b, dr, "s3")
	if err := k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: dr, Name: "k"}, Data: map[string][]byte{"key": backupKey}}); err != nil {
		b.Fatal(err)
	}
	errs := &errorLog{}
	startBenchManager(b, restConfig, dr, errs, 0, false)
	time.Sleep(2 * time.Second) // the manager's caches fill
	requests.reset()
	reqs0 := readAPIRequests(ctx, restConfig)
	b.StartTimer()
	start = time.Now()
	createLocation(b, dr, "primary", endpoint, s3Bucket, vpoolv1alpha1.AccessReadOnly, 5*time.Second)
	loc := &vpoolv1alpha1.BackupLocation{}
	for {
		if err := k8s.Get(ctx, key(dr, "primary"), loc); err != nil {
			b.Fatal(err)
		}
		if loc.Status.Backups == int32(n) && int(countPoolBackups(b, dr)) == n {
			break
		}
		if time.Since(start) > 10*time.Minute {
			b.Fatalf("after 10m the location found %d backups and the namespace has %d PoolBackups (errors: %s)",
				loc.Status.Backups, countPoolBackups(b, dr), errs.summary())
		}
		time.Sleep(100 * time.Millisecond)
	}
	first := time.Since(start)
	b.StopTimer()
	apiFirst := readAPIRequests(ctx, restConfig).since(reqs0)
	s3First := requests.total()
	say("first sync of %d backups: %s, %.0f API writes (%s), %d S3 requests", n, secs(first), apiFirst.writes(), apiFirst, s3First)

	// The next sync finds nothing new.
	requests.reset()
	reqs0 = readAPIRequests(ctx, restConfig)
	synced := loc.Status.LastSyncedAt.Time
	start = time.Now()
	for {
		if err := k8s.Get(ctx, key(dr, "primary"), loc); err != nil {
			b.Fatal(err)
		}
		if loc.Status.LastSyncedAt.After(synced) {
			break
		}
		if time.Since(start) > time.Minute {
			b.Fatal("no second sync within a minute")
		}
		time.Sleep(100 * time.Millisecond)
	}
	apiNext := readAPIRequests(ctx, restConfig).since(reqs0)
	say("next sync, nothing new: %.0f API writes (%s), %d S3 requests", apiNext.writes(), apiNext, requests.total())
	if c := countPoolBackups(b, dr); int(c) != n {
		b.Fatalf("%d PoolBackups after the second sync, want %d", c, n)
	}
	b.ReportMetric(first.Seconds(), "first-sync-s")
	b.ReportMetric(apiFirst.writes(), "first-sync-writes")
}

func countPoolBackups(b *testing.B, ns string) int64 {
	l := &vpoolv1alpha1.PoolBackupList{}
	if err := k8s.List(context.Background(), l, client.InNamespace(ns)); err != nil {
		b.Fatal(err)
	}
	var n int64
	for i := range l.Items {
		if l.Items[i].Status.Phase == vpoolv1alpha1.BackupCompleted {
			n++
		}
	}
	return n
}
