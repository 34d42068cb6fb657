package backup

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
)

// The Secrets of SecretStore.
const (
	// LabelBackup labels every chunk Secret with its PoolBackup
	// (LabelValue of its name).
	LabelBackup = "vpool.poolkeeper.io/backup"
	// AnnotationChunkIndex is the chunk's index, from 0.
	AnnotationChunkIndex = "vpool.poolkeeper.io/chunk-index"
	// AnnotationChunkCount is the number of chunks of the dump, on every chunk.
	AnnotationChunkCount = "vpool.poolkeeper.io/chunk-count"
	// AnnotationSHA256 is the hex SHA-256 of the whole stored dump, on every
	// chunk; chunks of one write carry the same value.
	AnnotationSHA256 = "vpool.poolkeeper.io/sha256"
	// AnnotationSize is the size in bytes of the whole stored dump.
	AnnotationSize = "vpool.poolkeeper.io/size"
	// ChunkKey is the data entry holding a chunk's bytes.
	ChunkKey = "chunk"

	// DefaultChunkSize keeps each chunk Secret well under the API server's
	// 1 MiB limit on Secret data.
	DefaultChunkSize = 512 << 10
	// MaxChunkSize is the largest chunk that fits in a Secret.
	MaxChunkSize = 1<<20 - 1<<10
	// MaxChunks bounds the number of chunks of one dump (names end in a
	// three-digit index).
	MaxChunks = 1000
)

// SecretStore stores dumps in Secrets of the PoolBackup's namespace, named
// ChunkName(backup, i), of type Opaque with the bytes in data[ChunkKey],
// labelled LabelBackup and annotated with the chunk's index, the chunk
// count, the dump's size and its SHA-256. Each chunk has the PoolBackup as
// controller owner, so the garbage collector deletes the chunks with it.
//
// Its Client must be able to create, update, delete and get Secrets; it
// never lists them (it reads every chunk by its name). Reads go to Reader when set: give it the manager's API reader
// (mgr.GetAPIReader()), or the manager's cached client would start caching
// every Secret of the cluster, dump chunks included.
type SecretStore struct {
	// Client writes the Secrets; its scheme must know PoolBackup.
	Client client.Client
	// Reader reads them; Client when nil.
	Reader client.Reader
	// ChunkSize is the size of a chunk in bytes; DefaultChunkSize when zero,
	// at most MaxChunkSize.
	ChunkSize int
}

var _ Store = (*SecretStore)(nil)

// ChunkName is the name of the Secret holding chunk i of a PoolBackup.
func ChunkName(backupName string, i int) string {
	return fmt.Sprintf("%s-chunk-%03d", backupName, i)
}

// LabelValue is the LabelBackup value of a PoolBackup's chunks: its
// name, or "sha256-" and a hash of it when the name is not a valid label
// value (longer than 63 characters).
func LabelValue(backupName string) string {
	if len(validation.IsValidLabelValue(backupName)) == 0 {
		return backupName
	}
	sum := sha256.Sum256([]byte(backupName))
	return "sha256-" + hex.EncodeToString(sum[:])[:48]
}

// Put stores data in ceil(len(data)/ChunkSize) chunk Secrets, creating the
// missing ones, rewriting those that differ, and deleting chunks of an
// earlier write with a higher index. It refuses to overwrite a Secret that is
// not a chunk of this PoolBackup. The location is
// "secret://<namespace>/<backup>-chunk-* (N chunks)".
func (s *SecretStore) Put(ctx context.Context, b *vpoolv1alpha1.PoolBackup, data []byte) (string, error) {
	if err := checkBackup(b); err != nil {
		return "", err
	}
	if b.UID == "" {
		return "", fmt.Errorf("storing PoolBackup %s/%s: it has no UID to own its chunks", b.Namespace, b.Name)
	}
	if len(data) == 0 {
		return "", fmt.Errorf("storing PoolBackup %s/%s: no data", b.Namespace, b.Name)
	}
	size, err := s.chunkSize()
	if err != nil {
		return "", err
	}
	n := (len(data) + size - 1) / size
	if n > MaxChunks {
		return "", fmt.Errorf("storing PoolBackup %s/%s: %d bytes need %d chunks of %d bytes, at most %d are allowed",
			b.Namespace, b.Name, len(data), n, size, MaxChunks)
	}
	if errs := validation.IsDNS1123Subdomain(ChunkName(b.Name, n-1)); len(errs) > 0 {
		return "", fmt.Errorf("storing PoolBackup %s/%s: its name is too long for chunk Secret names: %s",
			b.Namespace, b.Name, errs[0])
	}
	sum := Checksum(data)
	for i := range n {
		chunk := data[i*size : min((i+1)*size, len(data))]
		if err := s.putChunk(ctx, b, i, n, sum, len(data), chunk); err != nil {
			return "", err
		}
	}
	if err := s.deleteChunks(ctx, b, n); err != nil {
		return "", err
	}
	return location(b, n), nil
}

// Get reads the chunks back in order and checks them: every chunk must be
// there (ErrMissingChunk) and of the same write, and the bytes must have the
// recorded SHA-256, which must be backup.status.sha256 when that is set
// (ErrChecksum).
func (s *SecretStore) Get(ctx context.Context, b *vpoolv1alpha1.PoolBackup) ([]byte, error) {
	if err := checkBackup(b); err != nil {
		return nil, err
	}
	first, err := s.getChunk(ctx, b, 0)
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("%w: PoolBackup %s/%s has no stored data: Secret %s not found",
			ErrMissingChunk, b.Namespace, b.Name, ChunkName(b.Name, 0))
	}
	if err != nil {
		return nil, err
	}
	info, err := readChunkInfo(first)
	if err != nil {
		return nil, err
	}
	if want := b.Status.SHA256; want != "" && want != info.sum {
		return nil, fmt.Errorf("%w: the stored chunks of PoolBackup %s/%s hold a dump with sha256 %s, its status records %s",
			ErrChecksum, b.Namespace, b.Name, info.sum, want)
	}
	if info.index != 0 {
		return nil, fmt.Errorf("%w: Secret %s/%s says it is chunk %d", ErrCorrupt, first.Namespace, first.Name, info.index)
	}
	buf := make([]byte, 0, info.size)
	buf = append(buf, first.Data[ChunkKey]...)
	for i := 1; i < info.count; i++ {
		sec, err := s.getChunk(ctx, b, i)
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("%w: chunk %d of %d of PoolBackup %s/%s (Secret %s) is missing",
				ErrMissingChunk, i, info.count, b.Namespace, b.Name, ChunkName(b.Name, i))
		}
		if err != nil {
			return nil, err
		}
		ci, err := readChunkInfo(sec)
		if err != nil {
			return nil, err
		}
		if ci.index != i || ci.count != info.count || ci.sum != info.sum {
			return nil, fmt.Errorf("%w: Secret %s/%s (chunk %d of %d, sha256 %s) is not part of the write of chunk 0 (%d chunks, sha256 %s): the backup was not stored completely",
				ErrChecksum, sec.Namespace, sec.Name, ci.index, ci.count, ci.sum, info.count, info.sum)
		}
		buf = append(buf, sec.Data[ChunkKey]...)
	}
	if got := Checksum(buf); got != info.sum {
		return nil, fmt.Errorf("%w: PoolBackup %s/%s: stored sha256 %s, computed %s",
			ErrChecksum, b.Namespace, b.Name, info.sum, got)
	}
	return buf, nil
}

// Delete deletes every chunk Secret of the PoolBackup.
func (s *SecretStore) Delete(ctx context.Context, b *vpoolv1alpha1.PoolBackup) error {
	if err := checkBackup(b); err != nil {
		return err
	}
	return s.deleteChunks(ctx, b, 0)
}

func (s *SecretStore) reader() client.Reader {
	if s.Reader != nil {
		return s.Reader
	}
	return s.Client
}

func (s *SecretStore) chunkSize() (int, error) {
	switch {
	case s.ChunkSize == 0:
		return DefaultChunkSize, nil
	case s.ChunkSize < 0 || s.ChunkSize > MaxChunkSize:
		return 0, fmt.Errorf("secret store: chunk size %d is not between 1 and %d bytes", s.ChunkSize, MaxChunkSize)
	}
	return s.ChunkSize, nil
}

func (s *SecretStore) getChunk(ctx context.Context, b *vpoolv1alpha1.PoolBackup, i int) (*corev1.Secret, error) {
	sec := &corev1.Secret{}
	err := s.reader().Get(ctx, client.ObjectKey{Namespace: b.Namespace, Name: ChunkName(b.Name, i)}, sec)
	if err != nil && !apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("reading chunk %d of PoolBackup %s/%s: %w", i, b.Namespace, b.Name, err)
	}
	return sec, err
}

// putChunk creates chunk i or brings an existing one up to date.
func (s *SecretStore) putChunk(ctx context.Context, b *vpoolv1alpha1.PoolBackup, i, n int, sum string, size int, chunk []byte) error {
	labels := map[string]string{LabelBackup: LabelValue(b.Name)}
	annotations := map[string]string{
		AnnotationChunkIndex: strconv.Itoa(i),
		AnnotationChunkCount: strconv.Itoa(n),
		AnnotationSHA256:     sum,
		AnnotationSize:       strconv.Itoa(size),
	}
	sec := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: b.Namespace, Name: ChunkName(b.Name, i), Labels: labels, Annotations: annotations},
		Type:       corev1.SecretTypeOpaque,
		Data:       map[string][]byte{ChunkKey: chunk},
	}
	if err := controllerutil.SetControllerReference(b, sec, s.Client.Scheme()); err != nil {
		return fmt.Errorf("owning chunk Secret %s/%s by PoolBackup %s: %w", sec.Namespace, sec.Name, b.Name, err)
	}
	switch err := s.Client.Create(ctx, sec); {
	case err == nil:
		return nil
	case !apierrors.IsAlreadyExists(err):
		return fmt.Errorf("creating chunk Secret %s/%s (%d of %d): %w", sec.Namespace, sec.Name, i+1, n, err)
	}

	// A Put before this one (interrupted, or of an older dump) left the chunk.
	cur := &corev1.Secret{}
	if err := s.reader().Get(ctx, client.ObjectKeyFromObject(sec), cur); err != nil {
		return fmt.Errorf("reading chunk Secret %s/%s: %w", sec.Namespace, sec.Name, err)
	}
	if err := claimable(cur, b); err != nil {
		return err
	}
	if cur.Type != corev1.SecretTypeOpaque {
		return fmt.Errorf("chunk Secret %s/%s has type %s, not Opaque; delete it to store PoolBackup %s",
			cur.Namespace, cur.Name, cur.Type, b.Name)
	}
	owned := metav1.IsControlledBy(cur, b)
	if owned && len(cur.Data) == 1 && bytes.Equal(cur.Data[ChunkKey], chunk) &&
		subset(labels, cur.Labels) && subset(annotations, cur.Annotations) {
		return nil
	}
	if !owned {
		// Left by a deleted PoolBackup of the same name: take it over.
		cur.OwnerReferences = slices.DeleteFunc(cur.OwnerReferences, func(r metav1.OwnerReference) bool {
			return r.Controller != nil && *r.Controller
		})
		if err := controllerutil.SetControllerReference(b, cur, s.Client.Scheme()); err != nil {
			return fmt.Errorf("owning chunk Secret %s/%s by PoolBackup %s: %w", cur.Namespace, cur.Name, b.Name, err)
		}
	}
	if cur.Labels == nil {
		cur.Labels = map[string]string{}
	}
	if cur.Annotations == nil {
		cur.Annotations = map[string]string{}
	}
	maps.Copy(cur.Labels, labels)
	maps.Copy(cur.Annotations, annotations)
	cur.Data = map[string][]byte{ChunkKey: chunk}
	cur.StringData = nil
	if err := s.Client.Update(ctx, cur); err != nil {
		return fmt.Errorf("updating chunk Secret %s/%s (%d of %d): %w", cur.Namespace, cur.Name, i+1, n, err)
	}
	return nil
}

// deleteChunks deletes the PoolBackup's chunks with an index of at least
// from. It finds them by name, never by a list (the manager may get Secrets,
// not list them, for a list returns every Secret's data): Put writes chunks
// from index 0 up and this deletes them from the top down, so the chunks of
// a backup are always one run of names, which ends at the first name that is
// missing or not a chunk of b.
func (s *SecretStore) deleteChunks(ctx context.Context, b *vpoolv1alpha1.PoolBackup, from int) error {
	var found []*corev1.Secret
	for i := from; i < MaxChunks; i++ {
		sec, err := s.getChunk(ctx, b, i)
		if apierrors.IsNotFound(err) {
			break
		}
		if err != nil {
			return err
		}
		if !isChunk(sec, b, i) {
			break
		}
		found = append(found, sec)
	}
	for _, sec := range slices.Backward(found) {
		err := s.Client.Delete(ctx, sec, client.Preconditions{UID: &sec.UID})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			// Stop here: a chunk below one still there is never deleted.
			return fmt.Errorf("deleting chunk Secret %s/%s: %w", sec.Namespace, sec.Name, err)
		}
	}
	return nil
}

// isChunk says whether sec is chunk i of b, one Put wrote: labelled and
// annotated as such, and claimable.
func isChunk(sec *corev1.Secret, b *vpoolv1alpha1.PoolBackup, i int) bool {
	idx, err := strconv.Atoi(sec.Annotations[AnnotationChunkIndex])
	return err == nil && idx == i && sec.Labels[LabelBackup] == LabelValue(b.Name) && claimable(sec, b) == nil
}

// claimable says whether sec may be written or deleted as a chunk of b: its
// controller is a PoolBackup named like b (b itself, or a deleted one of the
// same name whose chunks the garbage collector has not removed yet).
func claimable(sec *corev1.Secret, b *vpoolv1alpha1.PoolBackup) error {
	ref := metav1.GetControllerOf(sec)
	if ref == nil || ref.Kind != "PoolBackup" || ref.Name != b.Name || ref.APIVersion != vpoolv1alpha1.GroupVersion.String() {
		return fmt.Errorf("secret %s/%s exists and is not a chunk of PoolBackup %s; refusing to overwrite it",
			sec.Namespace, sec.Name, b.Name)
	}
	return nil
}

type chunkInfo struct {
	index, count, size int
	sum                string
}

func readChunkInfo(sec *corev1.Secret) (chunkInfo, error) {
	var ci chunkInfo
	var errIndex, errCount, errSize error
	ci.index, errIndex = strconv.Atoi(sec.Annotations[AnnotationChunkIndex])
	ci.count, errCount = strconv.Atoi(sec.Annotations[AnnotationChunkCount])
	ci.size, errSize = strconv.Atoi(sec.Annotations[AnnotationSize])
	ci.sum = sec.Annotations[AnnotationSHA256]
	if err := errors.Join(errIndex, errCount, errSize); err != nil || ci.sum == "" ||
		ci.count < 1 || ci.count > MaxChunks || ci.size < 0 || ci.size > ci.count*MaxChunkSize {
		return ci, fmt.Errorf("%w: chunk Secret %s/%s has missing or invalid annotations %s, %s, %s, %s",
			ErrCorrupt, sec.Namespace, sec.Name, AnnotationChunkIndex, AnnotationChunkCount, AnnotationSize, AnnotationSHA256)
	}
	if _, ok := sec.Data[ChunkKey]; !ok {
		return ci, fmt.Errorf("%w: chunk Secret %s/%s has no %q entry", ErrCorrupt, sec.Namespace, sec.Name, ChunkKey)
	}
	return ci, nil
}

func checkBackup(b *vpoolv1alpha1.PoolBackup) error {
	if b == nil || b.Name == "" || b.Namespace == "" {
		return errors.New("secret store: the PoolBackup needs a name and a namespace")
	}
	return nil
}

func location(b *vpoolv1alpha1.PoolBackup, n int) string {
	chunks := "chunks"
	if n == 1 {
		chunks = "chunk"
	}
	return fmt.Sprintf("secret://%s/%s-chunk-* (%d %s)", b.Namespace, b.Name, n, chunks)
}

// subset reports whether every entry of want is in have.
func subset(want, have map[string]string) bool {
	for k, v := range want {
		if hv, ok := have[k]; !ok || hv != v {
			return false
		}
	}
	return true
}
