package controllers

import (
	"testing"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
)

// While its restore is pending, or its DR test is being cleaned up, the
// Pool's other reconcilers leave it alone, as the single Pool reconcile did.
func TestRestoreGates(t *testing.T) {
	restored := func(st metav1.ConditionStatus, reason string) []metav1.Condition {
		return []metav1.Condition{{Type: vpoolv1alpha1.PoolRestored, Status: st, Reason: reason}}
	}
	now := metav1.Now()
	cases := map[string]struct {
		restoreFrom *vpoolv1alpha1.RestoreSource
		deleted     bool
		finalizers  []string
		finished    bool
		conditions  []metav1.Condition
		pending     bool
		drTestHolds bool
	}{
		"no restore":        {},
		"restore not begun": {restoreFrom: &vpoolv1alpha1.RestoreSource{BackupName: "b"}, pending: true},
		"restore under way": {restoreFrom: &vpoolv1alpha1.RestoreSource{BackupName: "b"},
			conditions: restored(metav1.ConditionFalse, ReasonRestoring), pending: true},
		"restore stopped in its preflight": {restoreFrom: &vpoolv1alpha1.RestoreSource{BackupName: "b"},
			conditions: restored(metav1.ConditionFalse, ReasonBackupNotFound), pending: true},
		"restored": {restoreFrom: &vpoolv1alpha1.RestoreSource{BackupName: "b"},
			conditions: restored(metav1.ConditionTrue, ReasonRestored)},
		"deleted while restoring": {restoreFrom: &vpoolv1alpha1.RestoreSource{BackupName: "b"}, deleted: true,
			finalizers: []string{vpoolv1alpha1.FinalizerPoolMembers}},
		"DR test before its finalizer": {restoreFrom: &vpoolv1alpha1.RestoreSource{BackupName: "b", DryRun: true},
			pending: true, drTestHolds: true},
		"DR test running": {restoreFrom: &vpoolv1alpha1.RestoreSource{BackupName: "b", DryRun: true},
			finalizers: []string{vpoolv1alpha1.FinalizerDRTestCleanup}, conditions: restored(metav1.ConditionTrue, ReasonDRTestReady)},
		"DR test finished": {restoreFrom: &vpoolv1alpha1.RestoreSource{BackupName: "b", DryRun: true}, finished: true,
			conditions: restored(metav1.ConditionTrue, ReasonDRTestReady), drTestHolds: true},
		"DR test deleted, cleanup left": {restoreFrom: &vpoolv1alpha1.RestoreSource{BackupName: "b", DryRun: true}, deleted: true,
			finalizers: []string{vpoolv1alpha1.FinalizerDRTestCleanup, vpoolv1alpha1.FinalizerPoolMembers}, drTestHolds: true},
		"DR test deleted, cleaned up": {restoreFrom: &vpoolv1alpha1.RestoreSource{BackupName: "b", DryRun: true}, deleted: true,
			finalizers: []string{vpoolv1alpha1.FinalizerPoolMembers}},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			pool := &vpoolv1alpha1.Pool{ObjectMeta: metav1.ObjectMeta{Name: "p", Finalizers: c.finalizers}}
			pool.Spec.RestoreFrom = c.restoreFrom
			pool.Status.Conditions = c.conditions
			if c.deleted {
				pool.DeletionTimestamp = &now
			}
			if c.finished {
				pool.Annotations = map[string]string{vpoolv1alpha1.AnnotationDRTestFinished: "true"}
			}
			g.Expect(restorePending(pool)).To(Equal(c.pending), "restorePending")
			g.Expect(drTestHolds(pool)).To(Equal(c.drTestHolds), "drTestHolds")
		})
	}
}
