package backup_test

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"strings"
	"testing"

	"filippo.io/age"
	. "github.com/onsi/gomega"

	"github.com/poolkeeper/poolkeeper/internal/backup"
)

func newIdentity(t *testing.T) *age.X25519Identity {
	t.Helper()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// keySecret is the key material of a key Secret with these entries.
func keySecret(t *testing.T, entries map[string]string) backup.Keys {
	t.Helper()
	data := map[string][]byte{}
	for k, v := range entries {
		data[k] = []byte(v)
	}
	keys, err := backup.ParseKeys(data, `Secret "k"`)
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// A dump sealed in the age format opens again with the passphrase, or with
// any identity of its recipients; the plain age library (what the age CLI
// runs) opens it to gzip'd JSON; the first format's Open reads it too.
func TestSealAgeRoundTrip(t *testing.T) {
	g := NewWithT(t)
	d := newWorld().dump()
	alice, bob := newIdentity(t), newIdentity(t)
	for name, keys := range map[string]backup.Keys{
		"passphrase": keySecret(t, map[string]string{backup.SecretKey: string(key)}),
		"recipients": keySecret(t, map[string]string{
			backup.SecretRecipients: "# alice\n" + alice.Recipient().String() + "\n",
			backup.SecretIdentities: alice.String(),
		}),
	} {
		data, err := backup.SealAge(d, keys)
		g.Expect(err).NotTo(HaveOccurred(), name)
		g.Expect(backup.IsAge(data)).To(BeTrue(), name)
		got, err := backup.OpenAny(data, keys)
		g.Expect(err).NotTo(HaveOccurred(), name)
		g.Expect(got).To(equalDump(d), name)
	}

	data, err := backup.SealAge(d, keySecret(t, map[string]string{backup.SecretKey: string(key)}))
	g.Expect(err).NotTo(HaveOccurred())
	got, err := backup.Open(data, key)
	g.Expect(err).NotTo(HaveOccurred(), "Open reads both formats")
	g.Expect(got).To(equalDump(d))

	// What `age -d -i identities.txt | gunzip` does at a DR site.
	data, err = backup.SealAge(d, keySecret(t, map[string]string{backup.SecretRecipients: bob.Recipient().String()}))
	g.Expect(err).NotTo(HaveOccurred())
	r, err := age.Decrypt(bytes.NewReader(data), bob)
	g.Expect(err).NotTo(HaveOccurred())
	zr, err := gzip.NewReader(r)
	g.Expect(err).NotTo(HaveOccurred())
	var doc map[string]any
	g.Expect(json.NewDecoder(zr).Decode(&doc)).To(Succeed())
	g.Expect(doc).To(HaveKeyWithValue("schemaVersion", BeNumerically("==", backup.SchemaVersion)))
	g.Expect(doc).To(HaveKey("virtualMachines"))
}

// Rotation: sealed to the old and the new recipient, a dump opens with
// either identity alone; the key ID tells the recipient sets apart whatever
// their order.
func TestSealAgeRotation(t *testing.T) {
	g := NewWithT(t)
	d := newWorld().dump()
	old, next := newIdentity(t), newIdentity(t)
	both := old.Recipient().String() + "\n" + next.Recipient().String() + "\n"
	data, err := backup.SealAge(d, keySecret(t, map[string]string{backup.SecretRecipients: both}))
	g.Expect(err).NotTo(HaveOccurred())
	for _, id := range []*age.X25519Identity{old, next} {
		got, err := backup.OpenAny(data, keySecret(t, map[string]string{
			backup.SecretRecipients: id.Recipient().String(), backup.SecretIdentities: id.String()}))
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(got).To(equalDump(d))
	}
	reversed := next.Recipient().String() + "\n" + old.Recipient().String()
	g.Expect(keySecret(t, map[string]string{backup.SecretRecipients: reversed}).ID()).To(
		Equal(keySecret(t, map[string]string{backup.SecretRecipients: both}).ID()))
	g.Expect(keySecret(t, map[string]string{backup.SecretRecipients: old.Recipient().String()}).ID()).NotTo(
		Equal(keySecret(t, map[string]string{backup.SecretRecipients: both}).ID()))
}

// The wrong identity or passphrase is ErrWrongKey, never corruption;
// recipients without identities write what they cannot read
// (ErrNoIdentity); a flipped byte anywhere never opens.
func TestOpenAgeRefusals(t *testing.T) {
	g := NewWithT(t)
	d := newWorld().dump()
	alice, eve := newIdentity(t), newIdentity(t)
	writer := keySecret(t, map[string]string{backup.SecretRecipients: alice.Recipient().String()})
	g.Expect(writer.CanRead()).To(BeFalse())
	data, err := backup.SealAge(d, writer)
	g.Expect(err).NotTo(HaveOccurred())

	_, err = backup.OpenAny(data, writer)
	g.Expect(err).To(MatchError(backup.ErrNoIdentity))
	g.Expect(backup.Reason(err)).To(Equal(backup.ReasonNoIdentity))
	g.Expect(err.Error()).To(ContainSubstring("add the private keys"))

	_, err = backup.OpenAny(data, keySecret(t, map[string]string{backup.SecretIdentities: eve.String()}))
	g.Expect(err).To(MatchError(backup.ErrWrongKey))
	g.Expect(err).NotTo(MatchError(backup.ErrCorrupt))

	sealed, err := backup.SealAge(d, backup.PassphraseKeys(key))
	g.Expect(err).NotTo(HaveOccurred())
	_, err = backup.OpenAny(sealed, backup.PassphraseKeys([]byte(strings.Repeat("x", backup.MinKeySize))))
	g.Expect(err).To(MatchError(backup.ErrWrongKey))

	readable := keySecret(t, map[string]string{backup.SecretIdentities: alice.String()})
	for i := 0; i < len(data); i += 1 + len(data)/97 {
		bad := bytes.Clone(data)
		bad[i] ^= 0x04
		_, err := backup.OpenAny(bad, readable)
		g.Expect(err).To(HaveOccurred(), "byte %d flipped", i)
	}
	_, err = backup.OpenAny(data[:len(data)-1], readable)
	g.Expect(err).To(MatchError(backup.ErrCorrupt), "truncated")
}

// A dump of the first format still opens with its passphrase; with only
// age identities the error says how to read and convert it.
func TestOpenFirstFormat(t *testing.T) {
	g := NewWithT(t)
	d := newWorld().dump()
	data, err := backup.Seal(d, key)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(backup.IsAge(data)).To(BeFalse())
	got, err := backup.OpenAny(data, keySecret(t, map[string]string{backup.SecretKey: string(key)}))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(got).To(equalDump(d))

	_, err = backup.OpenAny(data, keySecret(t, map[string]string{backup.SecretIdentities: newIdentity(t).String()}))
	g.Expect(err).To(MatchError(backup.ErrWrongKey))
	g.Expect(err.Error()).To(And(ContainSubstring("first format"), ContainSubstring("entry to read it"),
		ContainSubstring("restore it and take a new backup")))
}

// A key Secret that could not protect a dump is refused, naming the entry.
func TestParseKeysRefusesWeakKeys(t *testing.T) {
	g := NewWithT(t)
	for name, tc := range map[string]struct {
		entries map[string][]byte
		want    error
		msg     string
	}{
		"nothing":          {entries: map[string][]byte{}, want: backup.ErrNoKey, msg: "needs a key entry"},
		"short passphrase": {entries: map[string][]byte{backup.SecretKey: []byte("short")}, want: backup.ErrKeyTooShort, msg: "needs a key entry"},
		"short passphrase beside recipients": {entries: map[string][]byte{backup.SecretKey: []byte("short"),
			backup.SecretRecipients: []byte(newIdentity(t).Recipient().String())}, want: backup.ErrKeyTooShort, msg: "needs a key entry"},
		"bad recipient": {entries: map[string][]byte{backup.SecretRecipients: []byte("age1notakey")}, want: backup.ErrKeyTooShort, msg: "entry recipients"},
		"bad identity":  {entries: map[string][]byte{backup.SecretKey: key, backup.SecretIdentities: []byte("AGE-SECRET-KEY-1X")}, want: backup.ErrKeyTooShort, msg: "entry identities"},
	} {
		_, err := backup.ParseKeys(tc.entries, `Secret "k"`)
		g.Expect(err).To(MatchError(tc.want), name)
		g.Expect(err.Error()).To(And(ContainSubstring(`Secret "k"`), ContainSubstring(tc.msg)), name)
	}
}
