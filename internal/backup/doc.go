// Package backup owns the pool database's backup format and storage, and the
// planning of a restore: the parts of pool-dump-database and
// pool-restore-database that do not reconcile anything. The PoolBackup and
// Pool controllers call it; it never reads the clock and, apart from
// SecretStore, never talks to the API server.
//
// # Backup (PoolBackup controller)
//
//	d := backup.NewDump(pool, hosts, srs, vdis, vms, now) // one consistent read of the namespace
//	d.AddSecrets(secrets...)                              // the Secrets named by d.SecretNames()
//	data, err := backup.Seal(d, key)                      // key: the `key` entry of spec.encryption.keySecretRef
//	loc, err := store.Put(ctx, pb, data)                  // store: &backup.SecretStore{Client: c, Reader: mgr.GetAPIReader()}
//	// status: counts = d.Counts(), poolEpoch = d.Pool.Status.Epoch,
//	// sizeBytes = len(data), sha256 = backup.Checksum(data), location = loc
//
// A Dump (schema SchemaVersion) keeps each object's name, labels, annotations
// and spec, and only the status recovery needs: the pool's master and epoch,
// each host's role, each VM's power state, host and suspend image, each
// VDI's volume (status.volume, which a restore or recovery gives the
// recreated VDI as vpoolv1alpha1.AnnotationVolume). VDI locks are never
// kept.
//
// Seal writes gzip-compressed JSON encrypted with AES-256-GCM under a key
// derived (HKDF-SHA256, random salt per dump) from at least MinKeySize bytes
// of key material, behind a header with a magic, a format version, a key
// check and a CRC (see seal.go). There is no unencrypted form. Open tells
// apart, with errors.Is: ErrNoKey / ErrKeyTooShort (unusable key material),
// ErrWrongKey (another key sealed it), ErrCorrupt (not a dump, truncated or
// modified), ErrSchemaVersion (written by a newer poolkeeper). Checksum is the
// SHA-256 recorded in status.sha256 and checked on every read.
//
// # Storage
//
// Store is the storage contract (Put, Get, Delete; idempotent). SecretStore
// keeps a dump in Opaque Secrets named "<backup>-chunk-NNN" in the
// PoolBackup's namespace, controlled by the PoolBackup (deleting it deletes
// them), each annotated with its index, the chunk count and the SHA-256 of
// the whole, so that Get detects a missing chunk (ErrMissingChunk), a torn
// write or a modified byte (ErrChecksum). S3Store (spec.storage.type S3)
// keeps the dump as one object in an S3-compatible bucket, its SHA-256 in
// the object's metadata, checked the same way.
//
// # Restore (Pool controller, spec.restoreFrom)
//
//	data, err := store.Get(ctx, pb)
//	existing := backup.ExistingFrom(hosts, srs, vdis, vms) // the target namespace, all pools
//	plan, err := backup.Preflight(pb, data, key, pool, existing)
//	if err != nil { /* condition Restored False, reason backup.Reason(err) */ }
//	if err := plan.Err(); err != nil { /* Strict and conflicts: write nothing */ }
//	// Create plan.Secrets (AlreadyExists is fine), StorageRepositories,
//	// VirtualDisks and VirtualMachines (each kind may be created in
//	// parallel); Apply plan.VMStatuses on the VMs where they are still
//	// Pending; then create plan.Hosts.
//
// Preflight checks in order the checksum, the key, the format and schema, then
// calls Plan. Plan is pure: it re-points every object at the restoring Pool,
// drops VDI locks, brings every VM back Halted (a Suspended VM whose image is
// on a shared SR stays Suspended; one whose image was on a local SR is Halted
// with a note and the VM condition ConditionRestored), and lists conflicts with objects already in the namespace: Strict
// blocks the whole restore, BestEffort skips each conflicting object and the
// objects that depend on it, and reports them. Objects are created Secrets,
// SRs, VDIs, VMs, then Hosts; see RestorePlan for why, and for resuming a
// restore after a crash (AnnotationRestoredFrom). Problem lists are bounded
// in messages by Summarize (SummaryLimit entries and "and N more").
package backup
