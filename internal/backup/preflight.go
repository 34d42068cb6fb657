package backup

import (
	"errors"
	"fmt"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
)

// Preflight checks everything a restore of target from backup needs before
// anything is written, in this order, and plans it:
//
//  1. the PoolBackup is the one target.spec.restoreFrom names and is
//     Completed (ErrNotCompleted);
//  2. data, as read from the Store, has the SHA-256 in its status
//     (ErrChecksum: "checksum mismatch: stored sha256 X, computed Y");
//  3. it opens with key (ErrNoKey, ErrKeyTooShort, ErrWrongKey, ErrCorrupt)
//     and has a schema this build reads (ErrSchemaVersion);
//  4. the dump is of the PoolBackup's pool and has the counts in its status
//     (ErrCorrupt);
//  5. Plan, in target.spec.restoreFrom.mode.
//
// Every error names the PoolBackup and what failed; Reason maps it to a
// condition reason. A plan is returned even when it is Blocked: the caller
// reports plan.Err() and writes nothing.
func Preflight(backup *vpoolv1alpha1.PoolBackup, data, key []byte, target *vpoolv1alpha1.Pool, existing Existing) (*RestorePlan, error) {
	return PreflightWith(backup, data, PassphraseKeys(key), target, existing)
}

// PreflightWith is Preflight with the key material of a key Secret: a dump
// of either format opens (OpenAny).
func PreflightWith(backup *vpoolv1alpha1.PoolBackup, data []byte, keys Keys, target *vpoolv1alpha1.Pool, existing Existing) (*RestorePlan, error) {
	if backup == nil || target == nil || target.Spec.RestoreFrom == nil {
		return nil, errors.New("restore preflight: needs a PoolBackup and a Pool with spec.restoreFrom")
	}
	name := backup.Namespace + "/" + backup.Name
	if backup.Name != target.Spec.RestoreFrom.BackupName {
		return nil, fmt.Errorf("restore preflight: Pool %s restores from %s, not from PoolBackup %s",
			target.Name, target.Spec.RestoreFrom.BackupName, name)
	}
	d, err := OpenBackup(backup, data, keys)
	if err != nil {
		return nil, err
	}
	plan, err := Plan(d, target, existing, target.Spec.RestoreFrom.Mode)
	if err != nil {
		return nil, fmt.Errorf("planning the restore of PoolBackup %s: %w", name, err)
	}
	return plan, nil
}

// OpenBackup opens the data of a Completed PoolBackup, as read from its
// Store: checked against the sha256 in its status (ErrChecksum), opened with
// keys (ErrNoKey, ErrKeyTooShort, ErrWrongKey, ErrCorrupt, ErrSchemaVersion),
// and checked to be a dump of the PoolBackup's pool with the counts in its
// status (ErrCorrupt). Every error names the PoolBackup.
func OpenBackup(backup *vpoolv1alpha1.PoolBackup, data []byte, keys Keys) (*Dump, error) {
	name := backup.Namespace + "/" + backup.Name
	if phase := backup.Status.Phase; phase != vpoolv1alpha1.BackupCompleted {
		if phase == "" {
			phase = vpoolv1alpha1.BackupPending
		}
		return nil, fmt.Errorf("%w: PoolBackup %s is %s; only a Completed backup can be restored or recovered", ErrNotCompleted, name, phase)
	}
	want := backup.Status.SHA256
	if want == "" {
		return nil, fmt.Errorf("%w: PoolBackup %s records no sha256 to check its data against", ErrChecksum, name)
	}
	if got := Checksum(data); got != want {
		return nil, fmt.Errorf("%w: PoolBackup %s: stored sha256 %s, computed %s", ErrChecksum, name, want, got)
	}
	d, err := OpenAny(data, keys)
	if err != nil {
		return nil, fmt.Errorf("opening PoolBackup %s: %w", name, err)
	}
	if pool := backup.Spec.PoolRef.Name; d.Pool.Metadata.Name != pool {
		return nil, fmt.Errorf("%w: PoolBackup %s is of pool %s but its data is a dump of pool %s", ErrCorrupt, name, pool, d.Pool.Metadata.Name)
	}
	if c := backup.Status.Counts; c != nil && *c != d.Counts() {
		got := d.Counts()
		return nil, fmt.Errorf("%w: PoolBackup %s records %d hosts, %d SRs, %d VDIs, %d VMs, its data holds %d, %d, %d, %d",
			ErrCorrupt, name, c.Hosts, c.SRs, c.VDIs, c.VMs, got.Hosts, got.SRs, got.VDIs, got.VMs)
	}
	return d, nil
}
