package backup_test

import (
	"bytes"
	"testing"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
	"github.com/poolkeeper/poolkeeper/internal/backup"
)

// completed is PoolBackup b1 of pool p as the backup controller leaves it
// after storing data.
func completed(d *backup.Dump, data []byte) *vpoolv1alpha1.PoolBackup {
	counts := d.Counts()
	return &vpoolv1alpha1.PoolBackup{
		ObjectMeta: metav1.ObjectMeta{Namespace: "dr", Name: "b1"},
		Spec:       vpoolv1alpha1.PoolBackupSpec{PoolRef: vpoolv1alpha1.PoolReference{Name: "p"}},
		Status: vpoolv1alpha1.PoolBackupStatus{Phase: vpoolv1alpha1.BackupCompleted, SHA256: backup.Checksum(data),
			Counts: &counts, SizeBytes: int64(len(data)), PoolEpoch: ptr.To(d.Pool.Status.Epoch)},
	}
}

func TestPreflight(t *testing.T) {
	d := newWorld().dump()
	data, err := backup.Seal(d, key)
	NewWithT(t).Expect(err).NotTo(HaveOccurred())
	flipped := bytes.Clone(data)
	flipped[len(flipped)/2] ^= 1
	otherPool := newWorld()
	otherPool.pool.Name = "q"
	for i := range otherPool.hosts {
		otherPool.hosts[i].Spec.PoolRef.Name = "q"
	}
	otherData, err := backup.Seal(otherPool.dump(), key)
	NewWithT(t).Expect(err).NotTo(HaveOccurred())

	tests := map[string]struct {
		edit   func(b *vpoolv1alpha1.PoolBackup, p *vpoolv1alpha1.Pool)
		data   []byte
		key    []byte
		want   error
		reason string
		msg    string
	}{
		"a good backup": {},
		"another backup": {
			edit: func(b *vpoolv1alpha1.PoolBackup, _ *vpoolv1alpha1.Pool) { b.Name = "b2" },
			msg:  "Pool restored restores from b1, not from PoolBackup dr/b2",
		},
		"not completed": {
			edit:   func(b *vpoolv1alpha1.PoolBackup, _ *vpoolv1alpha1.Pool) { b.Status.Phase = vpoolv1alpha1.BackupFailed },
			want:   backup.ErrNotCompleted,
			reason: backup.ReasonBackupNotCompleted, msg: "PoolBackup dr/b1 is Failed; only a Completed backup can be restored",
		},
		"never started": {
			edit:   func(b *vpoolv1alpha1.PoolBackup, _ *vpoolv1alpha1.Pool) { b.Status = vpoolv1alpha1.PoolBackupStatus{} },
			want:   backup.ErrNotCompleted,
			reason: backup.ReasonBackupNotCompleted, msg: "is Pending",
		},
		"no recorded checksum": {
			edit:   func(b *vpoolv1alpha1.PoolBackup, _ *vpoolv1alpha1.Pool) { b.Status.SHA256 = "" },
			want:   backup.ErrChecksum,
			reason: backup.ReasonChecksumMismatch, msg: "records no sha256",
		},
		"a flipped byte fails the checksum before decryption": {
			data: flipped, key: otherKey, want: backup.ErrChecksum, reason: backup.ReasonChecksumMismatch,
			msg: "checksum mismatch: PoolBackup dr/b1: stored sha256 " + backup.Checksum(data) + ", computed " + backup.Checksum(flipped),
		},
		"wrong key": {
			key: otherKey, want: backup.ErrWrongKey, reason: backup.ReasonWrongKey,
			msg: "opening PoolBackup dr/b1: wrong key: the dump was encrypted with a different key",
		},
		"no key": {
			key: []byte{}, want: backup.ErrNoKey, reason: backup.ReasonKeyMissing, msg: "opening PoolBackup dr/b1: no encryption key",
		},
		"a dump of another pool": {
			data: otherData, want: backup.ErrCorrupt, reason: backup.ReasonBackupCorrupt,
			edit: func(b *vpoolv1alpha1.PoolBackup, _ *vpoolv1alpha1.Pool) { b.Status.SHA256 = backup.Checksum(otherData) },
			msg:  "PoolBackup dr/b1 is of pool p but its data is a dump of pool q",
		},
		"other counts": {
			edit:   func(b *vpoolv1alpha1.PoolBackup, _ *vpoolv1alpha1.Pool) { b.Status.Counts.VMs = 5 },
			want:   backup.ErrCorrupt,
			reason: backup.ReasonBackupCorrupt, msg: "records 3 hosts, 2 SRs, 5 VDIs, 5 VMs, its data holds 3, 2, 5, 4",
		},
		"an unknown mode": {
			edit: func(_ *vpoolv1alpha1.PoolBackup, p *vpoolv1alpha1.Pool) { p.Spec.RestoreFrom.Mode = "Sloppy" },
			msg:  `planning the restore of PoolBackup dr/b1: planning a restore: unknown mode "Sloppy"`,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			in, k := data, key
			if tc.data != nil {
				in = tc.data
			}
			if tc.key != nil {
				k = tc.key
			}
			b, pool := completed(d, data), target(strict, false)
			if tc.edit != nil {
				tc.edit(b, pool)
			}
			plan, err := backup.Preflight(b, in, k, pool, backup.Existing{})
			if tc.msg == "" {
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(plan.Objects()).To(HaveLen(15))
				return
			}
			g.Expect(plan).To(BeNil())
			g.Expect(err).To(MatchError(ContainSubstring(tc.msg)))
			if tc.want != nil {
				g.Expect(err).To(MatchError(tc.want))
			}
			g.Expect(backup.Reason(err)).To(Equal(tc.reason))
		})
	}

	t.Run("a blocked plan is returned with its conflicts", func(t *testing.T) {
		g := NewWithT(t)
		existing := existingIn(existingVM("vm1", "other", ""))
		plan, err := backup.Preflight(completed(d, data), data, key, target(strict, false), existing)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(plan.Blocked()).To(BeTrue())
		g.Expect(backup.Reason(plan.Err())).To(Equal(backup.ReasonRestoreConflict))

		plan, err = backup.Preflight(completed(d, data), data, key, target(bestEffort, false), existing)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(plan.Blocked()).To(BeFalse())
		g.Expect(plan.Mode).To(Equal(bestEffort), "the mode of spec.restoreFrom")
		g.Expect(plan.Conflicts).To(HaveLen(1))
	})
}
