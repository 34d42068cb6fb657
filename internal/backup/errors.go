package backup

import "errors"

// Sentinel errors. Every error this package returns for one of these causes
// wraps the sentinel (test with errors.Is) and adds a message naming the
// object and the values involved.
var (
	// ErrNoKey: the key material is empty or missing. A dump is never written
	// or read in plaintext.
	ErrNoKey = errors.New("no encryption key")
	// ErrKeyTooShort: the key material is shorter than MinKeySize bytes. An
	// empty key matches both ErrNoKey and ErrKeyTooShort.
	ErrKeyTooShort = errors.New("encryption key too short")
	// ErrWrongKey: the dump was sealed with another key.
	ErrWrongKey = errors.New("wrong key")
	// ErrCorrupt: the bytes are not a sealed dump, are truncated, or were
	// modified after they were sealed.
	ErrCorrupt = errors.New("backup corrupt")
	// ErrSchemaVersion: the dump was written with a schema this build does not
	// know (a newer poolkeeper wrote it).
	ErrSchemaVersion = errors.New("unsupported dump schema")
	// ErrChecksum: the stored bytes do not have the SHA-256 recorded for them.
	ErrChecksum = errors.New("checksum mismatch")
	// ErrMissingChunk: a stored chunk of the dump cannot be found.
	ErrMissingChunk = errors.New("backup chunk missing")
	// ErrNotCompleted: the PoolBackup to restore is not in phase Completed.
	ErrNotCompleted = errors.New("backup not completed")
	// ErrConflict: a Strict restore is blocked by objects that already exist.
	ErrConflict = errors.New("restore conflicts")
	// ErrStorageCredentials: the credentials of the backup's storage are
	// missing or incomplete.
	ErrStorageCredentials = errors.New("storage credentials unavailable")
	// ErrLocationNotFound: spec.storage.locationRef names no BackupLocation.
	ErrLocationNotFound = errors.New("backup location not found")
	// ErrReadOnlyLocation: a write to a ReadOnly BackupLocation was refused.
	ErrReadOnlyLocation = errors.New("backup location is read-only")
	// ErrKeyTaken: the location already holds another PoolBackup's dump
	// under the key this one would be stored at.
	ErrKeyTaken = errors.New("stored key taken")
)

// Condition reasons for the errors above, returned by Reason.
const (
	// ReasonKeyMissing is the reason for ErrNoKey.
	ReasonKeyMissing = "KeyMissing"
	// ReasonKeyTooShort is the reason for ErrKeyTooShort.
	ReasonKeyTooShort = "KeyTooShort"
	// ReasonWrongKey is the reason for ErrWrongKey.
	ReasonWrongKey = "WrongKey"
	// ReasonBackupCorrupt is the reason for ErrCorrupt.
	ReasonBackupCorrupt = "BackupCorrupt"
	// ReasonUnsupportedSchema is the reason for ErrSchemaVersion.
	ReasonUnsupportedSchema = "UnsupportedSchemaVersion"
	// ReasonChecksumMismatch is the reason for ErrChecksum.
	ReasonChecksumMismatch = "ChecksumMismatch"
	// ReasonBackupIncomplete is the reason for ErrMissingChunk.
	ReasonBackupIncomplete = "BackupIncomplete"
	// ReasonBackupNotCompleted is the reason for ErrNotCompleted.
	ReasonBackupNotCompleted = "BackupNotCompleted"
	// ReasonRestoreConflict is the reason for ErrConflict.
	ReasonRestoreConflict = "Conflicts"
	// ReasonStorageCredentials is the reason for ErrStorageCredentials.
	ReasonStorageCredentials = "StorageCredentialsUnavailable"
	// ReasonLocationNotFound is the reason for ErrLocationNotFound.
	ReasonLocationNotFound = "LocationNotFound"
	// ReasonLocationReadOnly is the reason for ErrReadOnlyLocation.
	ReasonLocationReadOnly = "LocationReadOnly"
	// ReasonKeyTaken is the reason for ErrKeyTaken.
	ReasonKeyTaken = "StoredKeyTaken"
	// ReasonNoIdentity is the reason for ErrNoIdentity.
	ReasonNoIdentity = "NoIdentity"
)

// Reason maps an error of this package to a condition reason (one of the
// Reason* constants), so that a controller can set a precise reason with the
// error's text as the message. It returns "" for any other error.
func Reason(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrNoKey):
		return ReasonKeyMissing
	case errors.Is(err, ErrKeyTooShort):
		return ReasonKeyTooShort
	case errors.Is(err, ErrWrongKey):
		return ReasonWrongKey
	case errors.Is(err, ErrChecksum):
		return ReasonChecksumMismatch
	case errors.Is(err, ErrSchemaVersion):
		return ReasonUnsupportedSchema
	case errors.Is(err, ErrMissingChunk):
		return ReasonBackupIncomplete
	case errors.Is(err, ErrCorrupt):
		return ReasonBackupCorrupt
	case errors.Is(err, ErrNotCompleted):
		return ReasonBackupNotCompleted
	case errors.Is(err, ErrConflict):
		return ReasonRestoreConflict
	case errors.Is(err, ErrStorageCredentials):
		return ReasonStorageCredentials
	case errors.Is(err, ErrLocationNotFound):
		return ReasonLocationNotFound
	case errors.Is(err, ErrReadOnlyLocation):
		return ReasonLocationReadOnly
	case errors.Is(err, ErrKeyTaken):
		return ReasonKeyTaken
	case errors.Is(err, ErrNoIdentity):
		return ReasonNoIdentity
	}
	return ""
}
