package backup

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// MinKeySize is the least key material, in bytes, Seal and Open accept.
const MinKeySize = 32

// The sealed format (FormatVersion 1), all integers big-endian:
//
//	offset size
//	0      6    magic "PKDUMP"
//	6      1    format version (1)
//	7      1    flags (0)
//	8      2    dump schema version
//	10     16   salt (random)
//	26     16   key check: HKDF-SHA256(key, salt, infoKeyCheck)
//	42     12   AES-GCM nonce (random)
//	54     4    CRC-32C of bytes 0..53
//	58     ...  AES-256-GCM(HKDF-SHA256(key, salt, infoCipher), nonce,
//	            gzip(JSON(dump)), additional data = bytes 0..57), tag included
//
// The key check tells a wrong key (ErrWrongKey) from modified data
// (ErrCorrupt), and the header CRC tells a damaged header from a wrong key.
// The random salt gives every dump its own cipher key, so nonces never repeat
// under one key whatever the number of backups.
const (
	// FormatVersion is the version of the sealed container Seal writes.
	FormatVersion = 1

	magic        = "PKDUMP"
	offVersion   = 6
	offFlags     = 7
	offSchema    = 8
	offSalt      = 10
	offKeyCheck  = 26
	offNonce     = 42
	offCRC       = 54
	headerSize   = 58
	saltSize     = 16
	keyCheckSize = 16
	nonceSize    = 12
	tagSize      = 16

	infoCipher   = "poolkeeper.io pool-dump v1 aes-256-gcm"
	infoKeyCheck = "poolkeeper.io pool-dump v1 key-check"

	// compressionLevel: dumps live in etcd, so size counts more than CPU. For
	// the benchmark's 61,000 objects, DefaultCompression makes a dump about
	// 15% smaller than BestSpeed for about 0.15s more, once per backup.
	compressionLevel = gzip.DefaultCompression
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Seal encodes d in the first format (the operator writes the age format,
// SealAge; Seal remains for tools and tests that need the first format):
// JSON, gzip, then AES-256-GCM with a key derived
// from key (at least MinKeySize bytes, used as given: a trailing newline is
// part of it). There is no unencrypted form: an empty key is ErrNoKey.
// The records are streamed into the compressor one by one, so the only
// full-size buffer is the compressed output, encrypted in place.
func Seal(d *Dump, key []byte) ([]byte, error) {
	if d == nil {
		return nil, errors.New("sealing a dump: no dump")
	}
	if d.SchemaVersion != SchemaVersion {
		return nil, fmt.Errorf("sealing a dump: %w: it says schema version %d, this build writes %d (build dumps with NewDump)",
			ErrSchemaVersion, d.SchemaVersion, SchemaVersion)
	}
	return seal(key, SchemaVersion, func(w io.Writer) error { return writeDump(w, d) })
}

// seal seals what write writes, under the given schema version; tests use it
// to make dumps from the future.
func seal(key []byte, schema uint16, write func(io.Writer) error) ([]byte, error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	buf.Write(make([]byte, headerSize))
	zw, err := gzip.NewWriterLevel(&buf, compressionLevel)
	if err != nil {
		return nil, err
	}
	bw := bufio.NewWriterSize(zw, 64<<10)
	if err := write(bw); err != nil {
		return nil, fmt.Errorf("encoding the dump: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return nil, fmt.Errorf("compressing the dump: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("compressing the dump: %w", err)
	}
	// Room for the tag, so that the cipher works in place.
	buf.Grow(tagSize)
	out := buf.Bytes()

	h := out[:headerSize]
	copy(h, magic)
	h[offVersion] = FormatVersion
	h[offFlags] = 0
	binary.BigEndian.PutUint16(h[offSchema:], schema)
	if _, err := rand.Read(h[offSalt : offSalt+saltSize]); err != nil {
		return nil, fmt.Errorf("reading random salt: %w", err)
	}
	if _, err := rand.Read(h[offNonce : offNonce+nonceSize]); err != nil {
		return nil, fmt.Errorf("reading random nonce: %w", err)
	}
	aead, check, err := deriveKeys(key, h[offSalt:offSalt+saltSize])
	if err != nil {
		return nil, err
	}
	copy(h[offKeyCheck:offKeyCheck+keyCheckSize], check)
	binary.BigEndian.PutUint32(h[offCRC:], crc32.Checksum(h[:offCRC], castagnoli))
	// out[headerSize:] is the plaintext; appending to h writes over it exactly.
	return aead.Seal(h, h[offNonce:offNonce+nonceSize], out[headerSize:], h), nil
}

// Open reverses Seal, and opens a dump of the age format sealed to the
// passphrase key (see OpenAny). It does not modify data. It fails with ErrNoKey or
// ErrKeyTooShort for unusable key material, ErrCorrupt when data is not a
// sealed dump, is truncated or was modified, ErrWrongKey when data was sealed
// with another key, and ErrSchemaVersion when a newer poolkeeper wrote it.
// The errors name what was found.
func Open(data []byte, key []byte) (*Dump, error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	if IsAge(data) {
		return OpenAny(data, PassphraseKeys(key))
	}
	if len(data) < headerSize+tagSize {
		return nil, fmt.Errorf("%w: %d bytes is too short for a sealed pool dump (at least %d)", ErrCorrupt, len(data), headerSize+tagSize)
	}
	h := data[:headerSize]
	if string(h[:len(magic)]) != magic {
		return nil, fmt.Errorf("%w: not a poolkeeper pool dump (bad magic %q)", ErrCorrupt, h[:len(magic)])
	}
	if h[offVersion] != FormatVersion {
		return nil, fmt.Errorf("%w: unknown format version %d (this build reads %d): the header is damaged, or a newer poolkeeper wrote it",
			ErrCorrupt, h[offVersion], FormatVersion)
	}
	if got, want := crc32.Checksum(h[:offCRC], castagnoli), binary.BigEndian.Uint32(h[offCRC:]); got != want {
		return nil, fmt.Errorf("%w: header checksum mismatch (stored %08x, computed %08x)", ErrCorrupt, want, got)
	}
	if h[offFlags] != 0 {
		return nil, fmt.Errorf("%w: unknown flags %#02x in the header", ErrCorrupt, h[offFlags])
	}
	aead, check, err := deriveKeys(key, h[offSalt:offSalt+saltSize])
	if err != nil {
		return nil, err
	}
	if subtle.ConstantTimeCompare(check, h[offKeyCheck:offKeyCheck+keyCheckSize]) != 1 {
		return nil, fmt.Errorf("%w: the dump was encrypted with a different key", ErrWrongKey)
	}
	plain, err := aead.Open(nil, h[offNonce:offNonce+nonceSize], data[headerSize:], h)
	if err != nil {
		return nil, fmt.Errorf("%w: authentication failed with the right key: the data was modified after it was sealed", ErrCorrupt)
	}
	schema := int(binary.BigEndian.Uint16(h[offSchema:]))
	if schema < 1 || schema > SchemaVersion {
		return nil, fmt.Errorf("%w: the dump has schema version %d, this build reads up to %d: restore it with a newer poolkeeper",
			ErrSchemaVersion, schema, SchemaVersion)
	}
	d, err := readGzipDump(bytes.NewReader(plain))
	if err != nil {
		return nil, err
	}
	if d.SchemaVersion != schema {
		return nil, fmt.Errorf("%w: the header says schema version %d, the content %d", ErrCorrupt, schema, d.SchemaVersion)
	}
	return d, nil
}

// readGzipDump reads one gzip stream of a JSON dump.
func readGzipDump(r io.Reader) (*Dump, error) {
	zr, err := gzip.NewReader(r)
	if err != nil {
		return nil, fmt.Errorf("%w: decompressing: %w", ErrCorrupt, err)
	}
	zr.Multistream(false)
	return readDump(zr)
}

// Checksum is the hex SHA-256 of the stored bytes (PoolBackup status.sha256).
func Checksum(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// KeyID is the fingerprint of key material (PoolBackup status.keyID): 16
// hex digits that tell keys apart and say nothing about the key.
func KeyID(key []byte) string {
	sum := sha256.Sum256(append([]byte("poolkeeper.io key-id\x00"), key...))
	return hex.EncodeToString(sum[:8])
}

// checkKey refuses key material that would not protect the dump.
func checkKey(key []byte) error {
	switch {
	case len(key) == 0:
		return &sentinelError{
			msg: fmt.Sprintf("%v: the key material is empty or missing (need at least %d bytes); a dump is never stored unencrypted",
				ErrNoKey, MinKeySize),
			is: []error{ErrNoKey, ErrKeyTooShort},
		}
	case len(key) < MinKeySize:
		return fmt.Errorf("%w: %d bytes of key material, need at least %d", ErrKeyTooShort, len(key), MinKeySize)
	}
	return nil
}

// deriveKeys derives the dump's cipher and its key check from the key
// material and the dump's salt.
func deriveKeys(key, salt []byte) (cipher.AEAD, []byte, error) {
	k, err := hkdf.Key(sha256.New, key, salt, infoCipher, 32)
	if err != nil {
		return nil, nil, fmt.Errorf("deriving the dump key: %w", err)
	}
	check, err := hkdf.Key(sha256.New, key, salt, infoKeyCheck, keyCheckSize)
	if err != nil {
		return nil, nil, fmt.Errorf("deriving the key check: %w", err)
	}
	block, err := aes.NewCipher(k)
	if err != nil {
		return nil, nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, nil, err
	}
	return aead, check, nil
}

// sentinelError has its own message and matches several sentinels.
type sentinelError struct {
	msg string
	is  []error
}

func (e *sentinelError) Error() string   { return e.msg }
func (e *sentinelError) Unwrap() []error { return e.is }
