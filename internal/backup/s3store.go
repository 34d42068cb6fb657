package backup

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
)

// The credentials Secret of S3 storage (spec.storage.s3.credentialsSecretRef).
const (
	// S3AccessKeyID is the Secret entry holding the access key ID.
	S3AccessKeyID = "accessKeyID"
	// S3SecretAccessKey is the Secret entry holding the secret access key.
	S3SecretAccessKey = "secretAccessKey"
	// S3DefaultRegion is used when spec.storage.s3.region is empty; most
	// S3-compatible services accept any region.
	S3DefaultRegion = "us-east-1"
	// s3MetaSHA256 is the object metadata entry (x-amz-meta-sha256) holding
	// the hex SHA-256 of the object's bytes.
	s3MetaSHA256 = "sha256"
)

// S3Store stores each dump as one object in an S3-compatible bucket
// (spec.storage.s3), at S3ObjectKey, with its SHA-256 in the object's
// metadata. Requests use path-style addressing against spec.storage.s3.endpoint
// and the static credentials of spec.storage.s3.credentialsSecretRef, so
// that MinIO, Ceph RGW and other S3-compatible services work as AWS S3 does.
//
// The object name carries the PoolBackup's UID: a PoolBackup deleted and
// created again under the same name never reads or deletes the old one's data.
type S3Store struct {
	// Reader reads the credentials Secret; give it the manager's API reader.
	Reader client.Reader
}

var _ Store = (*S3Store)(nil)

// S3ObjectKey is the key of a PoolBackup's object: the prefix, then
// <namespace>/<name>-<uid>.pkdump.
func S3ObjectKey(b *vpoolv1alpha1.PoolBackup) string {
	prefix := ""
	if s := b.Spec.Storage.S3; s != nil {
		prefix = strings.Trim(s.Prefix, "/")
	}
	return path.Join(prefix, b.Namespace, fmt.Sprintf("%s-%s.pkdump", b.Name, b.UID))
}

func s3Location(b *vpoolv1alpha1.PoolBackup) string {
	return fmt.Sprintf("s3://%s/%s", b.Spec.Storage.S3.Bucket, S3ObjectKey(b))
}

// Put uploads data as the backup's object, replacing what an earlier,
// interrupted Put of the same backup left. The location is
// "s3://<bucket>/<key>".
func (s *S3Store) Put(ctx context.Context, b *vpoolv1alpha1.PoolBackup, data []byte) (string, error) {
	if err := checkS3Backup(b); err != nil {
		return "", err
	}
	if len(data) == 0 {
		return "", fmt.Errorf("storing PoolBackup %s/%s: no data", b.Namespace, b.Name)
	}
	c, err := s.client(ctx, b)
	if err != nil {
		return "", err
	}
	_, err = c.PutObject(ctx, &s3.PutObjectInput{
		Bucket:        aws.String(b.Spec.Storage.S3.Bucket),
		Key:           aws.String(S3ObjectKey(b)),
		Body:          bytes.NewReader(data),
		ContentLength: aws.Int64(int64(len(data))),
		ContentType:   aws.String("application/octet-stream"),
		Metadata:      map[string]string{s3MetaSHA256: Checksum(data)},
	})
	if err != nil {
		return "", fmt.Errorf("storing PoolBackup %s/%s at %s: %w", b.Namespace, b.Name, s3Location(b), err)
	}
	return s3Location(b), nil
}

// Get downloads the backup's object and checks its bytes against the
// SHA-256 stored with it and against backup.status.sha256 when that is set
// (ErrChecksum). A missing object or bucket is ErrMissingChunk.
func (s *S3Store) Get(ctx context.Context, b *vpoolv1alpha1.PoolBackup) ([]byte, error) {
	if err := checkS3Backup(b); err != nil {
		return nil, err
	}
	c, err := s.client(ctx, b)
	if err != nil {
		return nil, err
	}
	out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(b.Spec.Storage.S3.Bucket), Key: aws.String(S3ObjectKey(b))})
	if err != nil {
		if s3Gone(err) {
			return nil, fmt.Errorf("%w: PoolBackup %s/%s has no stored data: %s not found", ErrMissingChunk, b.Namespace, b.Name, s3Location(b))
		}
		return nil, fmt.Errorf("reading PoolBackup %s/%s from %s: %w", b.Namespace, b.Name, s3Location(b), err)
	}
	defer func() { _ = out.Body.Close() }()
	data, err := io.ReadAll(out.Body)
	if err != nil {
		return nil, fmt.Errorf("reading PoolBackup %s/%s from %s: %w", b.Namespace, b.Name, s3Location(b), err)
	}
	return data, verifyStored(b, s3Location(b), data, out.Metadata[s3MetaSHA256])
}

// Delete deletes the backup's object; an object or bucket that is not
// there is not an error.
func (s *S3Store) Delete(ctx context.Context, b *vpoolv1alpha1.PoolBackup) error {
	if err := checkS3Backup(b); err != nil {
		return err
	}
	c, err := s.client(ctx, b)
	if err != nil {
		return err
	}
	_, err = c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(b.Spec.Storage.S3.Bucket), Key: aws.String(S3ObjectKey(b))})
	if err != nil && !s3Gone(err) {
		return fmt.Errorf("deleting %s of PoolBackup %s/%s: %w", s3Location(b), b.Namespace, b.Name, err)
	}
	return nil
}

// client makes an S3 client for the backup's bucket with its credentials.
func (s *S3Store) client(ctx context.Context, b *vpoolv1alpha1.PoolBackup) (*s3.Client, error) {
	return newS3Client(ctx, s.Reader, b.Namespace, "spec.storage.s3", b.Spec.Storage.S3)
}

func checkS3Backup(b *vpoolv1alpha1.PoolBackup) error {
	if err := checkBackup(b); err != nil {
		return err
	}
	if b.Spec.Storage.S3 == nil {
		return fmt.Errorf("PoolBackup %s/%s: spec.storage.s3 is not set", b.Namespace, b.Name)
	}
	if b.UID == "" {
		return fmt.Errorf("PoolBackup %s/%s has no UID to name its object", b.Namespace, b.Name)
	}
	return nil
}
