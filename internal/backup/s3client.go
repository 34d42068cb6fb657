package backup

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
)

// S3CABundle is the entry of the caBundleSecretRef Secret holding the PEM
// certificates of the endpoint's private CA.
const S3CABundle = "ca.crt"

// newS3Client makes an S3 client for spec, with the static credentials of
// its credentialsSecretRef and, when set, the roots of its caBundleSecretRef,
// both read from namespace. field is the path of spec in the object, for the
// messages ("spec.storage.s3").
func newS3Client(ctx context.Context, reader client.Reader, namespace, field string, spec *vpoolv1alpha1.S3Storage) (*s3.Client, error) {
	name := spec.CredentialsSecretRef.Name
	sec := &corev1.Secret{}
	if err := reader.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, sec); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("%w: %s.credentialsSecretRef: Secret %q not found", ErrStorageCredentials, field, name)
		}
		return nil, err
	}
	id, secret := string(sec.Data[S3AccessKeyID]), string(sec.Data[S3SecretAccessKey])
	if id == "" || secret == "" {
		return nil, fmt.Errorf("%w: %s.credentialsSecretRef: Secret %q needs the entries %s and %s",
			ErrStorageCredentials, field, name, S3AccessKeyID, S3SecretAccessKey)
	}
	region := spec.Region
	if region == "" {
		region = S3DefaultRegion
	}
	opts := s3.Options{
		BaseEndpoint: aws.String(spec.Endpoint),
		Region:       region,
		Credentials:  credentials.NewStaticCredentialsProvider(id, secret, ""),
		UsePathStyle: true,
		// S3-compatible services do not all take the newer checksum trailers.
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	}
	if ref := spec.CABundleSecretRef; ref != nil {
		hc, err := caBundleClient(ctx, reader, namespace, field, ref.Name)
		if err != nil {
			return nil, err
		}
		opts.HTTPClient = hc
	}
	return s3.New(opts), nil
}

// caBundleClient is an HTTP client that trusts only the CA certificates of
// the Secret's ca.crt entry.
func caBundleClient(ctx context.Context, reader client.Reader, namespace, field, name string) (*http.Client, error) {
	sec := &corev1.Secret{}
	if err := reader.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, sec); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("%w: %s.caBundleSecretRef: Secret %q not found", ErrStorageCredentials, field, name)
		}
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(sec.Data[S3CABundle]) {
		return nil, fmt.Errorf("%w: %s.caBundleSecretRef: Secret %q has no PEM certificate in its %s entry",
			ErrStorageCredentials, field, name, S3CABundle)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return &http.Client{Transport: tr}, nil
}

// s3Gone reports whether err says the object or its bucket does not exist.
func s3Gone(err error) bool {
	var noKey *s3types.NoSuchKey
	var noBucket *s3types.NoSuchBucket
	var notFound *s3types.NotFound
	if errors.As(err, &noKey) || errors.As(err, &noBucket) || errors.As(err, &notFound) {
		return true
	}
	var api smithy.APIError
	return errors.As(err, &api) && (api.ErrorCode() == "NoSuchKey" || api.ErrorCode() == "NoSuchBucket" || api.ErrorCode() == "NotFound")
}

// S3 troubles of a bucket, as S3Trouble tells them apart.
const (
	// S3CredentialsRejected: the service refused the credentials.
	S3CredentialsRejected = "CredentialsRejected"
	// S3BucketNotFound: the bucket does not exist.
	S3BucketNotFound = "BucketNotFound"
	// S3Unreachable: the service could not be reached or failed; it may
	// answer later.
	S3Unreachable = "BucketUnreachable"
)

// S3Trouble says what an error of an S3 request means for a person: one of
// the S3* troubles above. Only S3Unreachable may go away without a change.
func S3Trouble(err error) string {
	var api smithy.APIError
	if errors.As(err, &api) {
		switch api.ErrorCode() {
		case "InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "Forbidden", "InvalidToken", "ExpiredToken":
			return S3CredentialsRejected
		case "NoSuchBucket":
			return S3BucketNotFound
		}
	}
	var noBucket *s3types.NoSuchBucket
	if errors.As(err, &noBucket) {
		return S3BucketNotFound
	}
	return S3Unreachable
}

// verifyStored checks an object's bytes against the SHA-256 stored with it
// and against backup.status.sha256 when that is set (ErrChecksum).
func verifyStored(b *vpoolv1alpha1.PoolBackup, where string, data []byte, stored string) error {
	got := Checksum(data)
	if stored != "" && stored != got {
		return fmt.Errorf("%w: PoolBackup %s/%s: %s has sha256 %s, stored with %s", ErrChecksum, b.Namespace, b.Name, where, got, stored)
	}
	if want := b.Status.SHA256; want != "" && want != got {
		return fmt.Errorf("%w: PoolBackup %s/%s: %s has sha256 %s, its status records %s", ErrChecksum, b.Namespace, b.Name, where, got, want)
	}
	return nil
}
