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
