package controllers

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
)

// A location is synced when never synced, changed, failing, or due; else
// the next sync is exactly one interval after the last.
func TestSyncDue(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	ago := func(d time.Duration) *metav1.Time { t := metav1.NewTime(now.Add(-d)); return &t }
	ready := []metav1.Condition{{Type: vpoolv1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: ReasonSynced}}
	failing := []metav1.Condition{{Type: vpoolv1alpha1.ConditionReady, Status: metav1.ConditionFalse, Reason: "BucketUnreachable"}}
	for name, tc := range map[string]struct {
		last       *metav1.Time
		generation int64
		conditions []metav1.Condition
		due        bool
		in         time.Duration
	}{
		"never synced":     {due: true, generation: 1},
		"synced 20s ago":   {last: ago(20 * time.Second), generation: 1, conditions: ready, in: 40 * time.Second},
		"synced 60s ago":   {last: ago(time.Minute), generation: 1, conditions: ready, due: true},
		"spec changed":     {last: ago(time.Second), generation: 2, conditions: ready, due: true},
		"last sync failed": {last: ago(time.Second), generation: 1, conditions: failing, due: true},
	} {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			loc := &vpoolv1alpha1.BackupLocation{ObjectMeta: metav1.ObjectMeta{Generation: tc.generation}}
			loc.Status = vpoolv1alpha1.BackupLocationStatus{LastSyncedAt: tc.last, ObservedGeneration: 1, Conditions: tc.conditions}
			due, in := syncDue(loc, time.Minute, now)
			g.Expect(due).To(Equal(tc.due))
			g.Expect(in).To(Equal(tc.in))
		})
	}
}

// Only a Completed PoolBackup of this location whose object the listing
// did not find is gone: not one of another location, not one still being
// written, not one already being deleted, not one the listing found.
func TestGoneBackups(t *testing.T) {
	g := NewWithT(t)
	loc := &vpoolv1alpha1.BackupLocation{ObjectMeta: metav1.ObjectMeta{Namespace: "dr", Name: "primary"}}
	pb := func(name, location string, phase vpoolv1alpha1.PoolBackupPhase, deleting bool) vpoolv1alpha1.PoolBackup {
		b := vpoolv1alpha1.PoolBackup{ObjectMeta: metav1.ObjectMeta{Namespace: "dr", Name: name,
			Annotations: map[string]string{vpoolv1alpha1.AnnotationStoredKey: "site-a/" + name + ".pkdump"}}}
		b.Spec.PoolRef.Name = "p"
		b.Spec.Storage = vpoolv1alpha1.BackupStorage{Type: vpoolv1alpha1.StorageLocation, LocationRef: &vpoolv1alpha1.LocalObjectReference{Name: location}}
		b.Status.Phase = phase
		if deleting {
			now := metav1.Now()
			b.DeletionTimestamp = &now
		}
		return b
	}
	have := []vpoolv1alpha1.PoolBackup{
		pb("kept", "primary", vpoolv1alpha1.BackupCompleted, false),
		pb("pruned", "primary", vpoolv1alpha1.BackupCompleted, false),
		pb("writing", "primary", vpoolv1alpha1.BackupInProgress, false),
		pb("deleting", "primary", vpoolv1alpha1.BackupCompleted, true),
		pb("elsewhere", "other", vpoolv1alpha1.BackupCompleted, false),
		pb("other-prefix", "primary", vpoolv1alpha1.BackupCompleted, false),
	}
	// Stored before spec.s3.prefix changed from old-site/ to site-a/: not
	// looked for by the listing, so not gone (deleting it would delete its
	// object in a ReadWrite location).
	have[5].Annotations[vpoolv1alpha1.AnnotationStoredKey] = "old-site/other-prefix.pkdump"
	// Written through this location, not synced from it: its own retain prunes it.
	written := pb("written", "primary", vpoolv1alpha1.BackupCompleted, false)
	delete(written.Annotations, vpoolv1alpha1.AnnotationStoredKey)
	have = append(have, written)
	loc.Spec.S3.Prefix = "site-a/"
	seen := map[string]bool{"site-a/kept.pkdump": true}
	var names []string
	for _, b := range goneBackups(loc, have, seen) {
		names = append(names, b.Name)
	}
	g.Expect(names).To(ConsistOf("pruned"))
}
