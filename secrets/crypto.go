package secrets

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
)

// KeySize is the length of every key flowvault uses: master key, KEK terms
// and data keys are AES-256 keys.
const KeySize = 32

const (
	nonceSize = 12 // GCM standard nonce
	tagSize   = 16 // GCM tag
)

// Ciphertext format bytes. A reader that meets another value refuses the
// ciphertext instead of guessing.
const (
	// formatTermGCM: term uint32 BE | 0x01 | nonce | AES-256-GCM(KEK term).
	// Vault's barrier layout (AESGCMVersion2, path as AAD).
	formatTermGCM byte = 0x01
	// formatDataGCM: 0x02 | nonce | AES-256-GCM(data key).
	formatDataGCM byte = 0x02
)

var (
	// ErrDecrypt is returned when a ciphertext does not open: it is
	// corrupt, was tampered with, was sealed for another purpose or under
	// another key, or is not a flowvault ciphertext at all.
	ErrDecrypt = errors.New("decryption failed: ciphertext corrupt, tampered with, or sealed for another purpose or key")
	// ErrKeyDestroyed is returned for a data key that does not exist:
	// destroyed (crypto-shredded) or never created.
	ErrKeyDestroyed = errors.New("data key not found: destroyed or never created")
	// ErrKeyDamaged is returned for a stored data key or key page that its
	// keyring's term does not open (ErrDecrypt), or that opens to the
	// wrong number of bytes: no attempt reads or rewrites it until it is
	// restored (a backup, a repair), or the keyring that wrapped it is. A
	// damaged key page can only be erased whole (EraseDamagedPage).
	ErrKeyDamaged = errors.New("stored data key damaged")
	// ErrKeyringMismatch is returned for a key page that does not open
	// under its term when that proves nothing about the page: nothing
	// else stored under the term opens with this keyring, or the page
	// was stored before this keyring's term was created. The keyring,
	// not the page, is wrong (its entry replaced by a new keyring, which
	// starts at term 1 again), and the page is not erased.
	ErrKeyringMismatch = errors.New("the keyring does not match the key store")
	// ErrInvalidKeyID is returned for an id that cannot name a data key
	// (CheckKeyID), nor a slot of a key page for a pooled key's id.
	ErrInvalidKeyID = errors.New("invalid data key id")
	// ErrWrongMasterKey is returned when the configured master key is not
	// the one that sealed the stored keyring.
	ErrWrongMasterKey = errors.New("wrong master key")
	// ErrNoMasterKey is returned when no master key is configured and dev
	// mode cannot provide one.
	ErrNoMasterKey = errors.New("no master key")
	// errUnknownTerm marks a ciphertext sealed under a KEK term this
	// keyring does not hold (yet: another process may have rotated).
	errUnknownTerm = errors.New("unknown key term")
)

// Purpose builds the additional authenticated data that binds a ciphertext
// to what it is for. Each part is length-prefixed, so different part lists
// never give the same bytes: ("a.b", "c") and ("a", "b.c") differ. A
// ciphertext opened with another purpose fails with ErrDecrypt, so a
// ciphertext moved to another secret, version, workflow or field is useless.
func Purpose(parts ...string) []byte {
	n := 4
	for _, p := range parts {
		n += binary.MaxVarintLen64 + len(p)
	}
	b := make([]byte, 0, n)
	b = append(b, "fv1\x00"...)
	for _, p := range parts {
		b = binary.AppendUvarint(b, uint64(len(p)))
		b = append(b, p...)
	}
	return b
}

// SecretPurpose is the purpose of the ciphertext of version version of
// secret name.
func SecretPurpose(name string, version int) []byte {
	return Purpose("secret", name, strconv.Itoa(version))
}

// dataKeyPurpose is the purpose of the wrapped data key id.
func dataKeyPurpose(id string) []byte { return Purpose("data-key", id) }

// newGCM returns AES-256-GCM with key. The caller still owns key (and
// should wipe it); the cipher keeps its own expanded copy.
func newGCM(key []byte) (cipher.AEAD, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("key is %d bytes, want %d", len(key), KeySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// newKey returns a fresh random key.
func newKey() []byte {
	k := make([]byte, KeySize)
	_, _ = rand.Read(k) // crypto/rand.Read never fails (Go 1.24+)
	return k
}

// sealWith encrypts plaintext with aead behind header, with a random
// nonce: header | nonce | ciphertext+tag.
func sealWith(aead cipher.AEAD, header, purpose, plaintext []byte) []byte {
	out := make([]byte, len(header)+nonceSize, len(header)+nonceSize+len(plaintext)+tagSize)
	copy(out, header)
	nonce := out[len(header):]
	_, _ = rand.Read(nonce)
	return aead.Seal(out, nonce, plaintext, purpose)
}

// openWith reverses sealWith for a ciphertext whose header has been
// checked and is hlen bytes long. It never panics on short input.
func openWith(aead cipher.AEAD, hlen int, purpose, ciphertext []byte) ([]byte, error) {
	if len(ciphertext) < hlen+nonceSize+tagSize {
		return nil, fmt.Errorf("%w: %d bytes is too short", ErrDecrypt, len(ciphertext))
	}
	nonce := ciphertext[hlen : hlen+nonceSize]
	pt, err := aead.Open(nil, nonce, ciphertext[hlen+nonceSize:], purpose)
	if err != nil {
		return nil, ErrDecrypt
	}
	return pt, nil
}

// DataKey is one AES-256-GCM data encryption key: the key of one secret
// version (later: of one workflow's masked fields). It holds only the
// cipher; the raw key bytes were wiped once it was built. It prints as
// "***". A DataKey is safe for concurrent use.
type DataKey struct {
	redacted
	id   string
	aead cipher.AEAD
	// refused knows the keys destroyed lately, here or by another
	// process: a holder that took this one before (a decision, a hand-off
	// under way) opens nothing with it from then on, whether or not the
	// cache still holds it. Nil for a key no cache handed out.
	refused *keyCache
}

// ID is the key's reference, as events store it.
func (k *DataKey) ID() string { return k.id }

// Seal encrypts plaintext for purpose (see Purpose): 0x02 | 12-byte
// random nonce | AES-256-GCM ciphertext and tag, with purpose as
// additional data. Every call uses a fresh nonce.
func (k *DataKey) Seal(purpose, plaintext []byte) []byte {
	return sealWith(k.aead, []byte{formatDataGCM}, purpose, plaintext)
}

// Open decrypts a ciphertext made by Seal with the same purpose. A key
// destroyed since it was read fails with ErrKeyDestroyed, anything else
// with ErrDecrypt; Open never panics.
func (k *DataKey) Open(purpose, ciphertext []byte) ([]byte, error) {
	if k.refused != nil && k.refused.isDestroyed(k.id) {
		return nil, fmt.Errorf("%s: %w", k.id, ErrKeyDestroyed)
	}
	if len(ciphertext) == 0 || ciphertext[0] != formatDataGCM {
		return nil, fmt.Errorf("%w: not a data-key ciphertext", ErrDecrypt)
	}
	return openWith(k.aead, 1, purpose, ciphertext)
}
