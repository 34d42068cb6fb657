package backup

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
)

// ObjectFormat is the value of the format entry of a stored backup's
// metadata: what tells a poolkeeper backup from any other object.
const ObjectFormat = "poolkeeper.io/pool-dump"

// ObjectSuffix ends the key of every backup a location stores.
const ObjectSuffix = ".pkdump"

// The entries of a stored backup's metadata (x-amz-meta-<entry>).
const (
	metaFormat      = "poolkeeper-format"
	metaPool        = "pool"
	metaNamespace   = "namespace"
	metaName        = "name"
	metaUID         = "uid"
	metaCompletedAt = "completed-at"
	metaEpoch       = "epoch"
	metaCounts      = "counts"
	metaKeyID       = "key-id"
	metaKeySecret   = "key-secret"
)

// ErrForeignObject: an object of a location's bucket is not a poolkeeper
// backup, or its description is unreadable.
var ErrForeignObject = errors.New("not a poolkeeper backup")

// Description is what a stored backup says about itself, so that a cluster
// that never saw its PoolBackup can find, list and open it.
type Description struct {
	// Pool is the name of the pool backed up.
	Pool string
	// Namespace is the namespace the pool lived in.
	Namespace string
	// Name is the name of the PoolBackup that wrote it.
	Name string
	// UID is the UID of that PoolBackup, in the cluster that wrote it.
	UID string
	// CompletedAt is when the dump was stored.
	CompletedAt time.Time
	// Epoch is the pool's epoch at the dump's point in time.
	Epoch int64
	// Counts of the objects in the dump.
	Counts vpoolv1alpha1.BackupCounts
	// SHA256 is the hex SHA-256 of the stored bytes.
	SHA256 string
	// KeyID identifies the key the dump is sealed with.
	KeyID string
	// KeySecret is the name of the key Secret it was written with.
	KeySecret string
}

// Describe is the description of backup with data as its stored bytes. The
// caller has set status.completedAt, poolEpoch, counts and keyID.
func Describe(b *vpoolv1alpha1.PoolBackup, data []byte) Description {
	d := Description{Pool: b.Spec.PoolRef.Name, Namespace: b.Namespace, Name: b.Name, UID: string(b.UID),
		SHA256: Checksum(data), KeyID: b.Status.KeyID, KeySecret: b.Spec.Encryption.KeySecretRef.Name}
	if t := b.Status.CompletedAt; t != nil {
		d.CompletedAt = t.UTC().Truncate(time.Second) // as the status records it
	}
	if e := b.Status.PoolEpoch; e != nil {
		d.Epoch = *e
	}
	if c := b.Status.Counts; c != nil {
		d.Counts = *c
	}
	return d
}

// Metadata is the description as object metadata.
func (d Description) Metadata() map[string]string {
	c := d.Counts
	return map[string]string{
		metaFormat:      fmt.Sprintf("%s/v%d", ObjectFormat, FormatVersion),
		metaPool:        d.Pool,
		metaNamespace:   d.Namespace,
		metaName:        d.Name,
		metaUID:         d.UID,
		metaCompletedAt: d.CompletedAt.UTC().Format(time.RFC3339Nano),
		metaEpoch:       strconv.FormatInt(d.Epoch, 10),
		metaCounts:      fmt.Sprintf("hosts=%d,srs=%d,vdis=%d,vms=%d", c.Hosts, c.SRs, c.VDIs, c.VMs),
		s3MetaSHA256:    d.SHA256,
		metaKeyID:       d.KeyID,
		metaKeySecret:   d.KeySecret,
	}
}

// ParseDescription reads the description of a stored backup from its
// object metadata (S3 gives the entries' names in any case, with or
// without their x-amz-meta- prefix). An object
// without poolkeeper's format entry, or with a description that does not
// parse, is ErrForeignObject.
func ParseDescription(meta map[string]string) (Description, error) {
	m := lowerKeys(meta)
	if !strings.HasPrefix(m[metaFormat], ObjectFormat+"/") {
		return Description{}, fmt.Errorf("%w: its metadata has no %s entry of %s", ErrForeignObject, metaFormat, ObjectFormat)
	}
	d := Description{Pool: m[metaPool], Namespace: m[metaNamespace], Name: m[metaName], UID: m[metaUID],
		SHA256: m[s3MetaSHA256], KeyID: m[metaKeyID], KeySecret: m[metaKeySecret]}
	var err error
	if d.CompletedAt, err = time.Parse(time.RFC3339Nano, m[metaCompletedAt]); err != nil {
		return Description{}, fmt.Errorf("%w: %s: %w", ErrForeignObject, metaCompletedAt, err)
	}
	if d.Epoch, err = strconv.ParseInt(m[metaEpoch], 10, 64); err != nil {
		return Description{}, fmt.Errorf("%w: %s: %w", ErrForeignObject, metaEpoch, err)
	}
	c := &d.Counts
	if _, err := fmt.Sscanf(m[metaCounts], "hosts=%d,srs=%d,vdis=%d,vms=%d", &c.Hosts, &c.SRs, &c.VDIs, &c.VMs); err != nil {
		return Description{}, fmt.Errorf("%w: %s %q: %w", ErrForeignObject, metaCounts, m[metaCounts], err)
	}
	for entry, v := range map[string]string{metaPool: d.Pool, metaName: d.Name, s3MetaSHA256: d.SHA256, metaKeySecret: d.KeySecret} {
		if v == "" {
			return Description{}, fmt.Errorf("%w: its metadata has no %s entry", ErrForeignObject, entry)
		}
	}
	return d, nil
}

// Status is the status of a PoolBackup for the stored backup: Completed,
// with what the description says.
func (d Description) Status(location string, size int64) vpoolv1alpha1.PoolBackupStatus {
	completed := metav1.NewTime(d.CompletedAt)
	epoch, counts := d.Epoch, d.Counts
	return vpoolv1alpha1.PoolBackupStatus{Phase: vpoolv1alpha1.BackupCompleted, CompletedAt: &completed,
		PoolEpoch: &epoch, Counts: &counts, SizeBytes: size, SHA256: d.SHA256, Location: location, KeyID: d.KeyID}
}
