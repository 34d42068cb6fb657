package backup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
)

// locationField is the path of a location's bucket in its object.
const locationField = "spec.s3"

// LocationStore stores each dump as one self-describing object in the
// bucket of the BackupLocation that spec.storage.locationRef names, at
// LocationObjectKey: a key made of names only, so that a cluster that never
// saw the PoolBackup finds it by listing the bucket. A ReadOnly location is
// never written to or deleted from.
//
// Without a UID in the key, a PoolBackup created again under a deleted
// one's name could meet the old dump: Put refuses to replace another
// PoolBackup's dump (ErrKeyTaken), and Delete deletes only the dump that is
// the PoolBackup's own (its UID, or the sha256 its status records).
type LocationStore struct {
	// Reader reads BackupLocations and their Secrets; give it the
	// manager's API reader.
	Reader client.Reader
}

var _ Store = (*LocationStore)(nil)

// LocationObjectKey is the key of the dump of the PoolBackup name of the
// pool in namespace: <prefix>/<namespace>/<pool>/<name>.pkdump.
func LocationObjectKey(prefix, namespace, pool, name string) string {
	return path.Join(strings.Trim(prefix, "/"), namespace, pool, name+ObjectSuffix)
}

// LocationKey is the key of the backup's object: the one its sync recorded
// (vpool.poolkeeper.io/stored-key), or the one it is written at.
func LocationKey(loc *vpoolv1alpha1.BackupLocation, b *vpoolv1alpha1.PoolBackup) string {
	if k := b.Annotations[vpoolv1alpha1.AnnotationStoredKey]; k != "" {
		return k
	}
	return LocationObjectKey(loc.Spec.S3.Prefix, b.Namespace, b.Spec.PoolRef.Name, b.Name)
}

// LocationURL is the human-readable location of key in the bucket.
func LocationURL(loc *vpoolv1alpha1.BackupLocation, key string) string {
	return fmt.Sprintf("s3://%s/%s", loc.Spec.S3.Bucket, key)
}

// Location reads the BackupLocation the backup names.
func (s *LocationStore) Location(ctx context.Context, b *vpoolv1alpha1.PoolBackup) (*vpoolv1alpha1.BackupLocation, error) {
	ref := b.Spec.Storage.LocationRef
	if ref == nil {
		return nil, fmt.Errorf("PoolBackup %s/%s: spec.storage.locationRef is not set", b.Namespace, b.Name)
	}
	loc := &vpoolv1alpha1.BackupLocation{}
	if err := s.Reader.Get(ctx, types.NamespacedName{Namespace: b.Namespace, Name: ref.Name}, loc); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("%w: spec.storage.locationRef: BackupLocation %q not found", ErrLocationNotFound, ref.Name)
		}
		return nil, err
	}
	return loc, nil
}

// Put uploads data with the backup's description as its metadata. It
// refuses a ReadOnly location (ErrReadOnlyLocation) and a key that holds
// another PoolBackup's dump (ErrKeyTaken). The caller has set
// status.completedAt, poolEpoch, counts and keyID.
func (s *LocationStore) Put(ctx context.Context, b *vpoolv1alpha1.PoolBackup, data []byte) (string, error) {
	if err := checkBackup(b); err != nil {
		return "", err
	}
	loc, c, err := s.open(ctx, b)
	if err != nil {
		return "", err
	}
	if loc.Spec.Access == vpoolv1alpha1.AccessReadOnly {
		return "", fmt.Errorf("%w: spec.storage.locationRef: BackupLocation %q is ReadOnly: backups are read from it, never written",
			ErrReadOnlyLocation, loc.Name)
	}
	key := LocationKey(loc, b)
	where := LocationURL(loc, key)
	head, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(loc.Spec.S3.Bucket), Key: aws.String(key)})
	switch {
	case err == nil:
		if d, perr := ParseDescription(head.Metadata); perr != nil || d.UID != string(b.UID) {
			return "", fmt.Errorf("%w: %s already holds a backup of another PoolBackup of this name; it is kept: name this backup otherwise",
				ErrKeyTaken, where)
		}
	case !s3Gone(err):
		return "", fmt.Errorf("storing PoolBackup %s/%s at %s: %w", b.Namespace, b.Name, where, err)
	}
	_, err = c.PutObject(ctx, &s3.PutObjectInput{
		Bucket:        aws.String(loc.Spec.S3.Bucket),
		Key:           aws.String(key),
		Body:          bytes.NewReader(data),
		ContentLength: aws.Int64(int64(len(data))),
		ContentType:   aws.String("application/octet-stream"),
		Metadata:      Describe(b, data).Metadata(),
	})
	if err != nil {
		return "", fmt.Errorf("storing PoolBackup %s/%s at %s: %w", b.Namespace, b.Name, where, err)
	}
	return where, nil
}

// Get downloads the backup's object and checks it against the SHA-256 of
// its metadata and of backup.status.sha256 (ErrChecksum).
func (s *LocationStore) Get(ctx context.Context, b *vpoolv1alpha1.PoolBackup) ([]byte, error) {
	if err := checkBackup(b); err != nil {
		return nil, err
	}
	loc, c, err := s.open(ctx, b)
	if err != nil {
		return nil, err
	}
	key := LocationKey(loc, b)
	where := LocationURL(loc, key)
	out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(loc.Spec.S3.Bucket), Key: aws.String(key)})
	if err != nil {
		if s3Gone(err) {
			return nil, fmt.Errorf("%w: PoolBackup %s/%s has no stored data: %s not found", ErrMissingChunk, b.Namespace, b.Name, where)
		}
		return nil, fmt.Errorf("reading PoolBackup %s/%s from %s: %w", b.Namespace, b.Name, where, err)
	}
	defer func() { _ = out.Body.Close() }()
	data, err := io.ReadAll(out.Body)
	if err != nil {
		return nil, fmt.Errorf("reading PoolBackup %s/%s from %s: %w", b.Namespace, b.Name, where, err)
	}
	return data, verifyStored(b, where, data, lowerKeys(out.Metadata)[s3MetaSHA256])
}

// Delete deletes the backup's own object from a ReadWrite location. It
// deletes nothing from a ReadOnly location, nothing when the location is
// gone (nothing of it can be reached), nothing for a PoolBackup its
// location's sync found gone from the bucket (AnnotationGoneFromBucket), and
// leaves an object that is another PoolBackup's.
func (s *LocationStore) Delete(ctx context.Context, b *vpoolv1alpha1.PoolBackup) error {
	loc, err := s.Location(ctx, b)
	if err != nil {
		if errors.Is(err, ErrLocationNotFound) {
			return nil
		}
		return err
	}
	if loc.Spec.Access == vpoolv1alpha1.AccessReadOnly || b.Annotations[vpoolv1alpha1.AnnotationGoneFromBucket] != "" {
		return nil // nothing to delete, or (gone from the bucket) nothing that is this PoolBackup's to delete
	}
	c, err := newS3Client(ctx, s.Reader, loc.Namespace, locationField, &loc.Spec.S3)
	if err != nil {
		return err
	}
	key := LocationKey(loc, b)
	bucket := aws.String(loc.Spec.S3.Bucket)
	head, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: bucket, Key: aws.String(key)})
	if err != nil {
		if s3Gone(err) {
			return nil
		}
		return fmt.Errorf("deleting %s of PoolBackup %s/%s: %w", LocationURL(loc, key), b.Namespace, b.Name, err)
	}
	d, err := ParseDescription(head.Metadata)
	if err != nil || (d.UID != string(b.UID) && (b.Status.SHA256 == "" || d.SHA256 != b.Status.SHA256)) {
		return nil // not this PoolBackup's dump
	}
	if _, err := c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: bucket, Key: aws.String(key)}); err != nil && !s3Gone(err) {
		return fmt.Errorf("deleting %s of PoolBackup %s/%s: %w", LocationURL(loc, key), b.Namespace, b.Name, err)
	}
	return nil
}

// open reads the backup's location and makes a client for its bucket.
func (s *LocationStore) open(ctx context.Context, b *vpoolv1alpha1.PoolBackup) (*vpoolv1alpha1.BackupLocation, *s3.Client, error) {
	loc, err := s.Location(ctx, b)
	if err != nil {
		return nil, nil, err
	}
	c, err := newS3Client(ctx, s.Reader, loc.Namespace, locationField, &loc.Spec.S3)
	if err != nil {
		return nil, nil, err
	}
	return loc, c, nil
}

// StoredBackup is a poolkeeper backup found in a location's bucket.
type StoredBackup struct {
	// Key is the object's key.
	Key string
	// Size is the object's size in bytes.
	Size int64
	// Description is what the object says about itself.
	Description Description
}

// Listing is what a location's bucket holds.
type Listing struct {
	// New are the backups whose keys the caller did not know, described.
	New []StoredBackup
	// Known is the number of keys the caller knew (not read again).
	Known int
	// Seen holds every key under the prefix the listing found.
	Seen map[string]bool
	// Foreign are the keys of objects under the prefix that are not
	// poolkeeper backups.
	Foreign []string
}

// Backups is the number of poolkeeper backups in the listing.
func (l Listing) Backups() int { return l.Known + len(l.New) }

// List lists the location's bucket under its prefix. It reads the metadata
// (one HEAD) only of objects whose key known does not report: a sync of a
// bucket it has seen costs one request per thousand objects. It never writes.
func (s *LocationStore) List(ctx context.Context, loc *vpoolv1alpha1.BackupLocation, known func(key string) bool) (Listing, error) {
	c, err := newS3Client(ctx, s.Reader, loc.Namespace, locationField, &loc.Spec.S3)
	if err != nil {
		return Listing{}, err
	}
	l := Listing{Seen: map[string]bool{}}
	in := &s3.ListObjectsV2Input{Bucket: aws.String(loc.Spec.S3.Bucket)}
	if p := strings.Trim(loc.Spec.S3.Prefix, "/"); p != "" {
		in.Prefix = aws.String(p + "/")
	}
	for pages := s3.NewListObjectsV2Paginator(c, in); pages.HasMorePages(); {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return Listing{}, fmt.Errorf("listing s3://%s: %w", loc.Spec.S3.Bucket, err)
		}
		for _, o := range page.Contents {
			key := aws.ToString(o.Key)
			l.Seen[key] = true
			if known(key) {
				l.Known++
				continue
			}
			if !strings.HasSuffix(key, ObjectSuffix) {
				l.Foreign = append(l.Foreign, key)
				continue
			}
			head, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(loc.Spec.S3.Bucket), Key: aws.String(key)})
			if err != nil {
				if s3Gone(err) {
					continue // deleted since it was listed
				}
				return Listing{}, fmt.Errorf("reading the metadata of %s: %w", LocationURL(loc, key), err)
			}
			d, err := ParseDescription(head.Metadata)
			if err != nil {
				l.Foreign = append(l.Foreign, key)
				continue
			}
			l.New = append(l.New, StoredBackup{Key: key, Size: aws.ToInt64(head.ContentLength), Description: d})
		}
	}
	return l, nil
}

func lowerKeys(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[strings.TrimPrefix(strings.ToLower(k), "x-amz-meta-")] = v
	}
	return out
}
