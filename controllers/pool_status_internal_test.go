package controllers

import (
	"context"
	"testing"

	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/internal/status"
	"github.com/poolkeeper/poolkeeper/internal/testutil"
)

// The Pool, restore and backup schedule reconcilers write one Pool's status
// at once: each writes its own part only, and a write based on a Pool another
// one wrote since is refused, so that none drops what another wrote.
func TestPoolStatusPartsKeepEachOthersFields(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	pool := &vpoolv1alpha1.Pool{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p"}}
	c := fake.NewClientBuilder().WithScheme(testutil.Scheme).WithObjects(pool).WithStatusSubresource(pool).Build()
	read := func() *vpoolv1alpha1.Pool {
		p := &vpoolv1alpha1.Pool{}
		g.Expect(c.Get(ctx, client.ObjectKeyFromObject(pool), p)).To(Succeed())
		return p
	}
	write := func(part status.Part[*vpoolv1alpha1.Pool], before *vpoolv1alpha1.Pool, change func(*vpoolv1alpha1.Pool)) (bool, error) {
		st := status.New(c, nil, before).Owning(part)
		change(st.Object())
		err := st.Write(ctx)
		return st.Written(), err
	}

	forPool, forSchedule, forRestore := read(), read(), read()
	g.Expect(write(poolPart, forPool, func(p *vpoolv1alpha1.Pool) {
		p.Status.Hosts.Total = 3
		status.Set(p, vpoolv1alpha1.ConditionReady, metav1.ConditionFalse, ReasonRestoring, "waiting")
	})).To(BeTrue())

	// Read before the Pool reconciler wrote: refused, not written over it.
	_, err := write(schedulePart, forSchedule, func(p *vpoolv1alpha1.Pool) {
		p.Status.Backup = &vpoolv1alpha1.BackupScheduleStatus{LastBackup: "p-1"}
	})
	g.Expect(apierrors.IsConflict(err)).To(BeTrue(), "a stale write must conflict, got %v", err)
	_, err = write(restorePart, forRestore, func(p *vpoolv1alpha1.Pool) { p.Status.Epoch = 5 })
	g.Expect(apierrors.IsConflict(err)).To(BeTrue(), "a stale write must conflict, got %v", err)

	// Read again: each writes its part, and only its part.
	g.Expect(write(schedulePart, read(), func(p *vpoolv1alpha1.Pool) {
		p.Status.Backup = &vpoolv1alpha1.BackupScheduleStatus{LastBackup: "p-1"}
		status.Set(p, vpoolv1alpha1.PoolBackupScheduled, metav1.ConditionTrue, ReasonScheduleValid, "next")
		p.Status.Hosts.Total = 9                                                       // not the schedule's
		meta.RemoveStatusCondition(&p.Status.Conditions, vpoolv1alpha1.ConditionReady) // nor this
	})).To(BeTrue())
	g.Expect(write(restorePart, read(), func(p *vpoolv1alpha1.Pool) {
		p.Status.Epoch = 5
		p.Status.Restore = &vpoolv1alpha1.RestoreStatus{Backup: "b"}
		status.Set(p, vpoolv1alpha1.PoolRestored, metav1.ConditionFalse, ReasonRestoring, "recreating")
		p.Status.Backup = nil // not the restore's
	})).To(BeTrue())
	// The restore only raises the epoch.
	g.Expect(write(restorePart, read(), func(p *vpoolv1alpha1.Pool) { p.Status.Epoch = 2 })).To(BeFalse())
	// Nothing changed in a part: nothing written.
	g.Expect(write(poolPart, read(), func(p *vpoolv1alpha1.Pool) { p.Status.Backup = nil })).To(BeFalse())

	got := read()
	g.Expect(got.Status.Hosts.Total).To(BeEquivalentTo(3))
	g.Expect(got.Status.Epoch).To(BeEquivalentTo(5))
	g.Expect(got.Status.Backup).To(Equal(&vpoolv1alpha1.BackupScheduleStatus{LastBackup: "p-1"}))
	g.Expect(got.Status.Restore).To(Equal(&vpoolv1alpha1.RestoreStatus{Backup: "b"}))
	for _, t := range []string{vpoolv1alpha1.ConditionReady, vpoolv1alpha1.PoolBackupScheduled, vpoolv1alpha1.PoolRestored} {
		g.Expect(meta.FindStatusCondition(got.Status.Conditions, t)).NotTo(BeNil(), "condition %s", t)
	}
}
