package metrics

import (
	"time"

	vpoolv1alpha1 "github.com/poolkeeper/poolkeeper/api/v1alpha1"
)

// AnnotationVerifiedAt records on a PoolBackup when its stored bytes last
// passed an offline verification (`kubectl poolkeeper backup-verify`:
// downloaded, sha256 checked, decrypted with the key), as an RFC 3339 time.
// The operator verifies every backup once, before it is Completed; this
// records that a person (or a job) proved later that it still restores.
const AnnotationVerifiedAt = "vpool.poolkeeper.io/verified-at"

// VerifiedAt is the time AnnotationVerifiedAt records on b.
func VerifiedAt(b *vpoolv1alpha1.PoolBackup) (time.Time, bool) {
	v, ok := b.Annotations[AnnotationVerifiedAt]
	if !ok {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339, v)
	return t, err == nil
}
