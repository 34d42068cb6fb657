package controllers

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	clocktesting "k8s.io/utils/clock/testing"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/internal/testutil"
)

// A spec.backup.verify.schedule that is not a cron string stalls the
// verification alone: the condition names the field, and the reconcile
// still asks to be woken for the next scheduled backup rather than ending
// in an error that nothing retries.
func TestBadVerifyScheduleKeepsTheBackupsDue(t *testing.T) {
	g := NewWithT(t)
	created := time.Date(2026, 12, 1, 12, 10, 0, 0, time.UTC)
	pool := &vpoolv1alpha1.Pool{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p", CreationTimestamp: metav1.NewTime(created)}}
	pool.Spec.Backup = &vpoolv1alpha1.BackupSchedule{Schedule: "0 * * * *", Retain: 2,
		Encryption: vpoolv1alpha1.BackupEncryption{KeySecretRef: vpoolv1alpha1.LocalObjectReference{Name: "k"}},
		Verify:     &vpoolv1alpha1.BackupVerification{Schedule: "every hour"}}
	c := fake.NewClientBuilder().WithScheme(testutil.Scheme).WithObjects(pool).WithStatusSubresource(pool).Build()
	r := &BackupScheduleReconciler{Client: c, APIReader: c, Recorder: events.NewFakeRecorder(10),
		Clock: clocktesting.NewFakeClock(created)}
	res, err := r.Reconcile(context.Background(), ctrl.Request{NamespacedName: types.NamespacedName{Namespace: "ns", Name: "p"}})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(res.RequeueAfter).To(Equal(50*time.Minute), "woken for the backup due at 13:00")
	got := &vpoolv1alpha1.Pool{}
	g.Expect(c.Get(context.Background(), types.NamespacedName{Namespace: "ns", Name: "p"}, got)).To(Succeed())
	cond := meta.FindStatusCondition(got.Status.Conditions, vpoolv1alpha1.PoolBackupScheduled)
	g.Expect(cond).NotTo(BeNil())
	g.Expect(cond.Reason).To(Equal(ReasonScheduleInvalid))
	g.Expect(cond.Message).To(ContainSubstring("verify.schedule"))
}
