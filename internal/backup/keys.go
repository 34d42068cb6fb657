package backup

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"

	"filippo.io/age"
)

// The entries of a backup's key Secret (spec.encryption.keySecretRef).
const (
	// SecretKey holds the passphrase (at least MinKeySize bytes): with it
	// alone, dumps are sealed to an age scrypt recipient, and it opens
	// them, and those of the first format, again.
	SecretKey = "key"
	// SecretRecipients holds age X25519 public keys (age1...), one a line,
	// # comments allowed: with them, dumps are sealed to every one of them
	// (several for a rotation) instead of the passphrase. They are enough
	// to write a backup, not to read one.
	SecretRecipients = "recipients"
	// SecretIdentities holds age X25519 private keys (AGE-SECRET-KEY-1...),
	// one a line: what reads the dumps sealed to their recipients. A
	// cluster without them writes backups it cannot read; with them alone
	// (no key, no recipients) dumps are sealed to their public keys.
	SecretIdentities = "identities"
)

// scryptWorkFactor is the log2 of the scrypt cost of a passphrase-sealed
// dump: the passphrase has at least 256 bits already, so the cost guards
// nothing a shorter one would; 2^15 is about 32 MiB and a tenth of a second,
// once per backup and per restore, and well under the age CLI's limit.
const scryptWorkFactor = 15

// ErrNoIdentity: a dump cannot be opened because the key Secret holds
// recipients (enough to write) and no identity (needed to read).
var ErrNoIdentity = errors.New("no identity to read the backup")

// Keys is the key material of a backup, from its key Secret.
type Keys struct {
	// Passphrase is the `key` entry, when set.
	Passphrase []byte
	// Recipients are the X25519 recipients of the `recipients` entry.
	Recipients []age.Recipient
	// Identities are the X25519 identities of the `identities` entry.
	Identities []age.Identity

	recipients []string // as written, for ID
}

// PassphraseKeys is the key material of a Secret with only a `key` entry.
func PassphraseKeys(key []byte) Keys { return Keys{Passphrase: key} }

// ParseKeys reads the key material of a key Secret's entries. It refuses
// Secrets with nothing to seal a dump with (ErrNoKey), a passphrase shorter
// than MinKeySize (ErrKeyTooShort) and entries that do not parse; field
// names the Secret in the messages.
func ParseKeys(data map[string][]byte, field string) (Keys, error) {
	k := Keys{Passphrase: data[SecretKey]}
	_, hasKey := data[SecretKey]
	if hasKey || (len(bytes.TrimSpace(data[SecretRecipients])) == 0 && len(bytes.TrimSpace(data[SecretIdentities])) == 0) {
		if err := checkKey(k.Passphrase); err != nil {
			return Keys{}, fmt.Errorf("%s needs a %s entry of at least %d bytes (has %d), or age %s: %w",
				field, SecretKey, MinKeySize, len(k.Passphrase), SecretRecipients, err)
		}
	}
	if text := data[SecretRecipients]; len(bytes.TrimSpace(text)) > 0 {
		rs, err := age.ParseRecipients(bytes.NewReader(text))
		if err != nil {
			return Keys{}, fmt.Errorf("%w: %s: entry %s: %w", ErrKeyTooShort, field, SecretRecipients, err)
		}
		for _, r := range rs {
			x, ok := r.(*age.X25519Recipient)
			if !ok {
				return Keys{}, fmt.Errorf("%w: %s: entry %s: only X25519 recipients (age1...) are taken", ErrKeyTooShort, field, SecretRecipients)
			}
			k.recipients = append(k.recipients, x.String())
		}
		k.Recipients = rs
	}
	if text := data[SecretIdentities]; len(bytes.TrimSpace(text)) > 0 {
		ids, err := age.ParseIdentities(bytes.NewReader(text))
		if err != nil {
			return Keys{}, fmt.Errorf("%w: %s: entry %s: %w", ErrKeyTooShort, field, SecretIdentities, err)
		}
		k.Identities = ids
		if len(k.Recipients) == 0 && !hasKey {
			// Identities alone: dumps are sealed to their own public keys.
			for _, id := range ids {
				if x, ok := id.(*age.X25519Identity); ok {
					k.Recipients = append(k.Recipients, x.Recipient())
					k.recipients = append(k.recipients, x.Recipient().String())
				}
			}
		}
	}
	return k, nil
}

// ID fingerprints what dumps are sealed to (PoolBackup status.keyID): the
// set of recipients, or the passphrase. It says nothing about either.
func (k Keys) ID() string {
	if len(k.recipients) > 0 {
		rs := slices.Clone(k.recipients)
		slices.Sort(rs)
		sum := sha256.Sum256([]byte("poolkeeper.io recipients\x00" + strings.Join(rs, "\n")))
		return hex.EncodeToString(sum[:8])
	}
	return KeyID(k.Passphrase)
}

// CanRead reports whether the keys can open what they seal.
func (k Keys) CanRead() bool { return len(k.Recipients) == 0 || len(k.Identities) > 0 }

// sealTo is what a dump is sealed to: every recipient, or the passphrase.
func (k Keys) sealTo() ([]age.Recipient, error) {
	if len(k.Recipients) > 0 {
		return k.Recipients, nil
	}
	if err := checkKey(k.Passphrase); err != nil {
		return nil, err
	}
	r, err := age.NewScryptRecipient(string(k.Passphrase))
	if err != nil {
		return nil, fmt.Errorf("sealing to the passphrase: %w", err)
	}
	r.SetWorkFactor(scryptWorkFactor)
	return []age.Recipient{r}, nil
}

// openWith is what opens a dump: the identities and the passphrase.
func (k Keys) openWith() ([]age.Identity, error) {
	ids := slices.Clone(k.Identities)
	if len(k.Passphrase) >= MinKeySize {
		id, err := age.NewScryptIdentity(string(k.Passphrase))
		if err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("%w: the key Secret has %s (enough to write backups) but no %s: add the private keys to read them",
			ErrNoIdentity, SecretRecipients, SecretIdentities)
	}
	return ids, nil
}
