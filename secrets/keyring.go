package secrets

import (
	"bytes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"slices"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// Keyring holds the key encryption keys (KEKs), one per term, Vault style:
// the active term seals, every term opens, and a ciphertext names the term
// it was sealed under in its first four bytes. Rotation builds a new
// keyring with one more term; old terms stay to open what they sealed. A
// Keyring is immutable and safe for concurrent use. It prints as "***".
type Keyring struct {
	redacted
	active uint32
	terms  map[uint32]*kekTerm
	fpKey  []byte // HMAC key of value fingerprints
}

type kekTerm struct {
	raw     []byte
	aead    cipher.AEAD
	created int64 // Unix milliseconds
}

// TermInfo describes one KEK term (never its key).
type TermInfo struct {
	Term    uint32
	Created time.Time
	Active  bool
}

// keyringData is the keyring's plaintext, sealed under the master key.
type keyringData struct {
	Active uint32     `msgpack:"active"`
	Terms  []termData `msgpack:"terms"`
}

type termData struct {
	Term    uint32 `msgpack:"term"`
	Key     []byte `msgpack:"key"`
	Created int64  `msgpack:"created"`
}

// newKeyring returns a keyring with one fresh term, 1.
func newKeyring(now time.Time) (*Keyring, error) {
	return buildKeyring(keyringData{Active: 1, Terms: []termData{{Term: 1, Key: newKey(), Created: now.UnixMilli()}}})
}

// buildKeyring makes a Keyring from its plaintext. It copies the keys.
func buildKeyring(d keyringData) (*Keyring, error) {
	r := &Keyring{active: d.Active, terms: make(map[uint32]*kekTerm, len(d.Terms))}
	var first uint32
	for _, t := range d.Terms {
		if _, dup := r.terms[t.Term]; dup || t.Term == 0 {
			return nil, fmt.Errorf("keyring: bad or duplicate term %d", t.Term)
		}
		raw := bytes.Clone(t.Key)
		aead, err := newGCM(raw)
		if err != nil {
			return nil, fmt.Errorf("keyring term %d: %w", t.Term, err)
		}
		r.terms[t.Term] = &kekTerm{raw: raw, aead: aead, created: t.Created}
		if first == 0 || t.Term < first {
			first = t.Term
		}
	}
	if r.terms[d.Active] == nil {
		return nil, fmt.Errorf("keyring: active term %d is missing", d.Active)
	}
	// Fingerprints must survive rotation, so their key derives from the
	// first term, which every later keyring keeps.
	fp, err := hkdf.Key(sha256.New, r.terms[first].raw, nil, "flowvault/fingerprint/v1", KeySize)
	if err != nil {
		return nil, err
	}
	r.fpKey = fp
	return r, nil
}

// data is the keyring's plaintext; the caller wipes the keys after use.
func (r *Keyring) data() keyringData {
	d := keyringData{Active: r.active}
	for _, id := range r.termIDs() {
		t := r.terms[id]
		d.Terms = append(d.Terms, termData{Term: id, Key: bytes.Clone(t.raw), Created: t.created})
	}
	return d
}

func (d keyringData) wipe() {
	for _, t := range d.Terms {
		wipe(t.Key)
	}
}

func (r *Keyring) termIDs() []uint32 {
	ids := make([]uint32, 0, len(r.terms))
	for id := range r.terms {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// rotated returns a new keyring whose active term is a fresh key one above
// the highest term; every existing term is kept for decryption.
func (r *Keyring) rotated(now time.Time) (*Keyring, error) {
	d := r.data()
	defer d.wipe()
	next := d.Terms[len(d.Terms)-1].Term + 1
	d.Terms = append(d.Terms, termData{Term: next, Key: newKey(), Created: now.UnixMilli()})
	d.Active = next
	return buildKeyring(d)
}

// ActiveTerm is the term new ciphertexts are sealed under.
func (r *Keyring) ActiveTerm() uint32 { return r.active }

// Terms lists the keyring's terms, oldest first.
func (r *Keyring) Terms() []TermInfo {
	var out []TermInfo
	for _, id := range r.termIDs() {
		out = append(out, TermInfo{Term: id, Created: time.UnixMilli(r.terms[id].created).UTC(), Active: id == r.active})
	}
	return out
}

// Seal encrypts plaintext under the active term for purpose: term uint32
// BE | 0x01 | 12-byte random nonce | AES-256-GCM ciphertext and tag, with
// purpose as additional data.
func (r *Keyring) Seal(purpose, plaintext []byte) []byte {
	var h [5]byte
	binary.BigEndian.PutUint32(h[:4], r.active)
	h[4] = formatTermGCM
	return sealWith(r.terms[r.active].aead, h[:], purpose, plaintext)
}

// Open decrypts a ciphertext made by Seal, under whichever term sealed it,
// with the same purpose. Anything else fails (ErrDecrypt, or an unknown
// term); Open never panics.
func (r *Keyring) Open(purpose, ciphertext []byte) ([]byte, error) {
	term, ok := ciphertextTerm(ciphertext)
	if !ok {
		return nil, fmt.Errorf("%w: not a keyring ciphertext", ErrDecrypt)
	}
	t := r.terms[term]
	if t == nil {
		return nil, fmt.Errorf("%w %d: %w", errUnknownTerm, term, ErrDecrypt)
	}
	return openWith(t.aead, 5, purpose, ciphertext)
}

// ciphertextTerm reads the term of a keyring ciphertext.
func ciphertextTerm(ct []byte) (uint32, bool) {
	if len(ct) < 5 || ct[4] != formatTermGCM {
		return 0, false
	}
	return binary.BigEndian.Uint32(ct[:4]), true
}

// FingerprintPrefix starts every value fingerprint.
const FingerprintPrefix = "hmac-sha256:"

// Fingerprint identifies value without revealing it: "hmac-sha256:" and
// the hex HMAC-SHA256 of value under a key derived (HKDF-SHA256) from the
// keyring's first term. Equal values have equal fingerprints on every
// node and across rotations; without the keyring a fingerprint tells
// nothing about the value, even a short one.
func (r *Keyring) Fingerprint(value []byte) string {
	h := hmac.New(sha256.New, r.fpKey)
	h.Write(value)
	return FingerprintPrefix + hex.EncodeToString(h.Sum(nil))
}

// MatchesFingerprint reports, in constant time, whether value has
// fingerprint fp.
func (r *Keyring) MatchesFingerprint(value []byte, fp string) bool {
	return subtle.ConstantTimeCompare([]byte(r.Fingerprint(value)), []byte(fp)) == 1
}

// The sealed keyring: magic | format | key check value | nonce | GCM.
var keyringMagic = []byte("FVKR")

const keyringFormat byte = 1

// sealKeyring encrypts r under the master key.
func sealKeyring(mk *MasterKey, r *Keyring) ([]byte, error) {
	d := r.data()
	defer d.wipe()
	plain, err := msgpack.Marshal(&d)
	if err != nil {
		return nil, err
	}
	defer wipe(plain)
	aead, err := newGCM(mk.key)
	if err != nil {
		return nil, err
	}
	header := append(append(slices.Clone(keyringMagic), keyringFormat), mk.checkValue()...)
	return sealWith(aead, header, Purpose("keyring", string(header)), plain), nil
}

// openKeyring decrypts a sealed keyring. A master key other than the one
// that sealed it fails with ErrWrongMasterKey.
func openKeyring(mk *MasterKey, blob []byte) (*Keyring, error) {
	hlen := len(keyringMagic) + 1 + 8
	if len(blob) < hlen || !bytes.Equal(blob[:len(keyringMagic)], keyringMagic) {
		return nil, fmt.Errorf("stored keyring is not a flowvault keyring: %w", ErrDecrypt)
	}
	if blob[len(keyringMagic)] != keyringFormat {
		return nil, fmt.Errorf("stored keyring has format %d, this version reads %d", blob[len(keyringMagic)], keyringFormat)
	}
	header := blob[:hlen]
	if subtle.ConstantTimeCompare(header[len(keyringMagic)+1:], mk.checkValue()) != 1 {
		return nil, ErrWrongMasterKey
	}
	aead, err := newGCM(mk.key)
	if err != nil {
		return nil, err
	}
	plain, err := openWith(aead, hlen, Purpose("keyring", string(header)), blob)
	if err != nil {
		return nil, fmt.Errorf("stored keyring does not decrypt although the master key matches its check value (damaged?): %w", err)
	}
	defer wipe(plain)
	var d keyringData
	if err := msgpack.Unmarshal(plain, &d); err != nil {
		return nil, fmt.Errorf("stored keyring: %w", err)
	}
	defer d.wipe()
	return buildKeyring(d)
}
