package backup

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"

	"filippo.io/age"
)

// The age format (FormatVersion 2): the file is an age v1 file
// (age-encryption.org/v1) whose plaintext is gzip(JSON(dump)) — nothing of
// poolkeeper's own — so that a DR site can read a backup with the age CLI:
//
//	age -d -i identities.txt backup.pkdump | gunzip > dump.json
//
// The dump's schema version is in the JSON; the sha256 of the stored bytes
// is kept beside them (status.sha256, the object's metadata).
const (
	// FormatAge is the format SealAge writes.
	FormatAge = 2
	ageMagic  = "age-encryption.org/v1\n"
)

// IsAge reports whether data is in the age format.
func IsAge(data []byte) bool { return bytes.HasPrefix(data, []byte(ageMagic)) }

// SealAge seals d in the age format to keys' recipients, or to its
// passphrase (an age scrypt recipient) when it has none.
func SealAge(d *Dump, keys Keys) ([]byte, error) {
	if d == nil {
		return nil, errors.New("sealing a dump: no dump")
	}
	if d.SchemaVersion != SchemaVersion {
		return nil, fmt.Errorf("sealing a dump: %w: it says schema version %d, this build writes %d (build dumps with NewDump)",
			ErrSchemaVersion, d.SchemaVersion, SchemaVersion)
	}
	return sealAge(keys, func(w io.Writer) error { return writeDump(w, d) })
}

func sealAge(keys Keys, write func(io.Writer) error) ([]byte, error) {
	to, err := keys.sealTo()
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	aw, err := age.Encrypt(&buf, to...)
	if err != nil {
		return nil, fmt.Errorf("sealing the dump: %w", err)
	}
	zw, err := gzip.NewWriterLevel(aw, compressionLevel)
	if err != nil {
		return nil, err
	}
	bw := bufio.NewWriterSize(zw, 64<<10)
	if err := write(bw); err != nil {
		return nil, fmt.Errorf("encoding the dump: %w", err)
	}
	for _, c := range []func() error{bw.Flush, zw.Close, aw.Close} {
		if err := c(); err != nil {
			return nil, fmt.Errorf("sealing the dump: %w", err)
		}
	}
	return buf.Bytes(), nil
}

// OpenAny opens a dump of either format: the age format with keys'
// identities or passphrase, the first format with its passphrase. Its
// errors are Open's, and ErrNoIdentity when keys can only write.
func OpenAny(data []byte, keys Keys) (*Dump, error) {
	if !IsAge(data) {
		if bytes.HasPrefix(data, []byte(magic)) && len(keys.Passphrase) == 0 && (len(keys.Identities) > 0 || len(keys.Recipients) > 0) {
			return nil, fmt.Errorf("%w: this backup is in poolkeeper's first format, sealed with a passphrase: put that passphrase "+
				"in the key Secret's %s entry to read it; to convert it, restore it and take a new backup, which is written in the age format",
				ErrWrongKey, SecretKey)
		}
		return Open(data, keys.Passphrase)
	}
	ids, err := keys.openWith()
	if err != nil {
		return nil, err
	}
	r, err := age.Decrypt(bytes.NewReader(data), ids...)
	if err != nil {
		var none *age.NoIdentityMatchError
		if errors.As(err, &none) {
			return nil, fmt.Errorf("%w: none of the key Secret's identities or passphrase opens the dump: it was sealed to other keys", ErrWrongKey)
		}
		return nil, fmt.Errorf("%w: the age header: %w", ErrCorrupt, err)
	}
	d, err := readGzipDump(r)
	if err != nil {
		return nil, err
	}
	// The rest must authenticate too: the last chunk is checked only once read.
	if _, err := io.Copy(io.Discard, r); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	if d.SchemaVersion < 1 || d.SchemaVersion > SchemaVersion {
		return nil, fmt.Errorf("%w: the dump has schema version %d, this build reads up to %d: restore it with a newer poolkeeper",
			ErrSchemaVersion, d.SchemaVersion, SchemaVersion)
	}
	return d, nil
}
