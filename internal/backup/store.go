package backup

import (
	"context"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
)

// Store keeps the sealed bytes of PoolBackups. SecretStore implements it
// with in-cluster Secrets, S3Store with one object in an S3-compatible bucket.
//
// Every method is idempotent and safe to repeat after a crash, and never
// touches data that belongs to another PoolBackup.
type Store interface {
	// Put stores data as the dump of backup, replacing whatever an earlier,
	// interrupted Put of the same backup left, and returns a human-readable
	// location for status.location. The caller calls Put only while the
	// backup is not Completed: a Completed backup's data is never rewritten.
	Put(ctx context.Context, backup *vpoolv1alpha1.PoolBackup, data []byte) (location string, err error)
	// Get returns the dump of backup, checked against the SHA-256 recorded
	// with it (ErrChecksum) and against backup.status.sha256 when set. It
	// fails with ErrMissingChunk when (part of) the data cannot be found.
	Get(ctx context.Context, backup *vpoolv1alpha1.PoolBackup) ([]byte, error)
	// Delete removes the dump of backup. Deleting what is not there is not
	// an error.
	Delete(ctx context.Context, backup *vpoolv1alpha1.PoolBackup) error
}
