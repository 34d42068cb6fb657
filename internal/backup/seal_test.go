package backup_test

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/types"

	"github.com/poolkeeper/poolkeeper/internal/backup"
)

// equalDump matches a dump equal to want, comparing quantities and times
// with their Equal methods (a decoded Quantity caches its string differently).
func equalDump(want *backup.Dump) types.GomegaMatcher {
	return BeComparableTo(want)
}

func TestSealOpenRoundTrip(t *testing.T) {
	w := newWorld()
	empty := newWorld()
	empty.hosts, empty.srs, empty.vdis, empty.vms, empty.secrets = nil, nil, nil, nil, nil
	tests := map[string]struct {
		dump *backup.Dump
		key  []byte
	}{
		"full pool":                {dump: w.dump(), key: key},
		"empty pool":               {dump: empty.dump(), key: key},
		"without secrets":          {dump: backup.NewDump(w.pool, w.hosts, w.srs, w.vdis, w.vms, takenAt), key: key},
		"long key with a newline":  {dump: w.dump(), key: longKey},
		"html characters verbatim": {dump: func() *backup.Dump { d := w.dump(); d.Pool.Metadata.Labels["x"] = "<&>"; return d }(), key: key},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			data, err := backup.Seal(tc.dump, tc.key)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(data).NotTo(ContainSubstring("calvin"), "the BMC password is not in clear")
			g.Expect(data).NotTo(ContainSubstring("vm1-root"), "nothing is in clear")

			got, err := backup.Open(data, tc.key)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(got).To(equalDump(tc.dump))
			g.Expect(got.TakenAt).To(Equal(takenAt))
			g.Expect(got.Counts()).To(Equal(tc.dump.Counts()))

			again, err := backup.Seal(tc.dump, tc.key)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(again).NotTo(Equal(data), "a fresh salt and nonce every time")
		})
	}
}

func TestOpenDetectsEveryFlippedByte(t *testing.T) {
	g := NewWithT(t)
	data, err := backup.Seal(newWorld().dump(), key)
	g.Expect(err).NotTo(HaveOccurred())
	orig := bytes.Clone(data)
	for i := range data {
		for _, mask := range []byte{0x01, 0x80, 0xff} {
			bad := bytes.Clone(data)
			bad[i] ^= mask
			d, err := backup.Open(bad, key)
			g.Expect(d).To(BeNil(), "byte %d ^ %#x", i, mask)
			// The header CRC catches a flip in the salt or key check, so a
			// flipped byte is never mistaken for a wrong key.
			g.Expect(err).To(MatchError(backup.ErrCorrupt), "byte %d ^ %#x", i, mask)
		}
	}
	g.Expect(data).To(Equal(orig), "Open does not modify its input")
}

func TestOpenCorrupt(t *testing.T) {
	data, err := backup.Seal(newWorld().dump(), key)
	NewWithT(t).Expect(err).NotTo(HaveOccurred())
	tests := map[string]struct {
		data []byte
		msg  string
	}{
		"nil":               {data: nil, msg: "too short"},
		"one byte":          {data: data[:1], msg: "too short"},
		"header only":       {data: data[:58], msg: "too short"},
		"header and a tag":  {data: data[:58+16], msg: "authentication failed"},
		"truncated by one":  {data: data[:len(data)-1], msg: "authentication failed"},
		"extra byte":        {data: append(bytes.Clone(data), 0), msg: "authentication failed"},
		"not a dump":        {data: bytes.Repeat([]byte("hello world "), 20), msg: "bad magic"},
		"two dumps in one":  {data: append(bytes.Clone(data), data...), msg: "authentication failed"},
		"future format":     {data: withByte(data, 6, 2), msg: "unknown format version 2"},
		"damaged key check": {data: withByte(data, 30, data[30]^1), msg: "header checksum mismatch"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			d, err := backup.Open(tc.data, key)
			g.Expect(d).To(BeNil())
			g.Expect(err).To(MatchError(backup.ErrCorrupt))
			g.Expect(err).To(MatchError(ContainSubstring(tc.msg)))
			g.Expect(backup.Reason(err)).To(Equal(backup.ReasonBackupCorrupt))
		})
	}
}

func withByte(data []byte, i int, b byte) []byte {
	out := bytes.Clone(data)
	out[i] = b
	return out
}

func TestOpenWrongKey(t *testing.T) {
	g := NewWithT(t)
	data, err := backup.Seal(newWorld().dump(), key)
	g.Expect(err).NotTo(HaveOccurred())
	lastByte := withByte(key, len(key)-1, key[len(key)-1]^1)
	for _, k := range [][]byte{otherKey, longKey, append(bytes.Clone(key), '\n'), lastByte} {
		_, err := backup.Open(data, k)
		g.Expect(err).To(MatchError(backup.ErrWrongKey), "key %q", k)
		g.Expect(err).NotTo(MatchError(backup.ErrCorrupt))
		g.Expect(err.Error()).To(ContainSubstring("wrong key"))
		g.Expect(backup.Reason(err)).To(Equal(backup.ReasonWrongKey))
	}
}

func TestKeyMaterial(t *testing.T) {
	d := newWorld().dump()
	sealed, err := backup.Seal(d, key)
	NewWithT(t).Expect(err).NotTo(HaveOccurred())
	tests := map[string]struct {
		key    []byte
		want   []error
		reason string
	}{
		"nil":      {key: nil, want: []error{backup.ErrNoKey, backup.ErrKeyTooShort}, reason: backup.ReasonKeyMissing},
		"empty":    {key: []byte{}, want: []error{backup.ErrNoKey, backup.ErrKeyTooShort}, reason: backup.ReasonKeyMissing},
		"one byte": {key: []byte("k"), want: []error{backup.ErrKeyTooShort}, reason: backup.ReasonKeyTooShort},
		"31 bytes": {key: key[:31], want: []error{backup.ErrKeyTooShort}, reason: backup.ReasonKeyTooShort},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			data, err := backup.Seal(d, tc.key)
			g.Expect(data).To(BeNil(), "never a plaintext backup")
			for _, want := range tc.want {
				g.Expect(err).To(MatchError(want))
			}
			g.Expect(backup.Reason(err)).To(Equal(tc.reason))
			got, err := backup.Open(sealed, tc.key)
			g.Expect(got).To(BeNil())
			for _, want := range tc.want {
				g.Expect(err).To(MatchError(want))
			}
		})
	}
	t.Run("message", func(t *testing.T) {
		g := NewWithT(t)
		_, err := backup.Seal(d, nil)
		g.Expect(err.Error()).To(Equal("no encryption key: the key material is empty or missing (need at least 32 bytes); a dump is never stored unencrypted"))
		_, err = backup.Seal(d, key[:10])
		g.Expect(err.Error()).To(Equal("encryption key too short: 10 bytes of key material, need at least 32"))
	})
}

func TestSealRefusesOtherSchemas(t *testing.T) {
	g := NewWithT(t)
	d := newWorld().dump()
	for _, v := range []int{0, backup.SchemaVersion + 1} {
		d.SchemaVersion = v
		data, err := backup.Seal(d, key)
		g.Expect(data).To(BeNil())
		g.Expect(err).To(MatchError(backup.ErrSchemaVersion))
	}
	_, err := backup.Seal(nil, key)
	g.Expect(err).To(HaveOccurred())
}

func TestChecksum(t *testing.T) {
	g := NewWithT(t)
	g.Expect(backup.Checksum(nil)).To(Equal("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"))
	g.Expect(backup.Checksum([]byte("abc"))).To(Equal("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"))
}

func TestReason(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{nil, ""},
		{errors.New("other"), ""},
		{fmt.Errorf("x: %w", backup.ErrChecksum), backup.ReasonChecksumMismatch},
		{fmt.Errorf("x: %w", backup.ErrSchemaVersion), backup.ReasonUnsupportedSchema},
		{fmt.Errorf("x: %w", backup.ErrMissingChunk), backup.ReasonBackupIncomplete},
		{fmt.Errorf("x: %w", backup.ErrNotCompleted), backup.ReasonBackupNotCompleted},
		{fmt.Errorf("x: %w", backup.ErrConflict), backup.ReasonRestoreConflict},
	}
	for _, tc := range tests {
		NewWithT(t).Expect(backup.Reason(tc.err)).To(Equal(tc.want), "%v", tc.err)
	}
}
