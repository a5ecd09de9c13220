package secrets

import (
	"bytes"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"
)

// The barrier tests of HashiCorp Vault (vault/barrier_aes_gcm_test.go),
// ported to flowvault's two ciphertext formats: the keyring's (KEK terms,
// which wrap data keys) and a data key's (which seals values). See
// ../../shared/reference/reliability.md §2.5 and §7.3.

// sealer is what both formats offer.
type sealer struct {
	name string
	seal func(purpose, plaintext []byte) []byte
	open func(purpose, ciphertext []byte) ([]byte, error)
}

func testSealers(t *testing.T) []sealer {
	t.Helper()
	ring, err := newKeyring(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	raw := newKey()
	aead, err := newGCM(raw)
	if err != nil {
		t.Fatal(err)
	}
	dk := &DataKey{id: "test.key", aead: aead}
	return []sealer{
		{"keyring", ring.Seal, ring.Open},
		{"data key", dk.Seal, dk.Open},
	}
}

// TestAESGCMBarrier_Confidential: the stored bytes are not the plaintext.
func TestConfidential(t *testing.T) {
	plain := []byte("the quick brown fox jumps over the lazy dog")
	for _, s := range testSealers(t) {
		t.Run(s.name, func(t *testing.T) {
			ct := s.seal([]byte("p"), plain)
			if bytes.Contains(ct, plain) || bytes.Contains(ct, plain[:8]) {
				t.Fatalf("ciphertext contains the plaintext")
			}
			got, err := s.open([]byte("p"), ct)
			if err != nil || !bytes.Equal(got, plain) {
				t.Fatalf("open = %q, %v", got, err)
			}
		})
	}
}

// TestAESGCMBarrier_Integrity: flipping any bit of a ciphertext makes it
// fail to open, with an error and no panic.
func TestIntegrity(t *testing.T) {
	plain := []byte("value")
	for _, s := range testSealers(t) {
		t.Run(s.name, func(t *testing.T) {
			ct := s.seal([]byte("p"), plain)
			for i := range ct {
				for bit := 0; bit < 8; bit++ {
					bad := bytes.Clone(ct)
					bad[i] ^= 1 << bit
					if got, err := s.open([]byte("p"), bad); err == nil {
						t.Fatalf("byte %d bit %d flipped: opened to %q", i, bit, got)
					}
				}
			}
		})
	}
}

// TestAESGCMBarrier_MoveIntegrityV2: a ciphertext moved to another purpose
// (another secret, version, workflow or field) does not open.
func TestMoveIntegrity(t *testing.T) {
	plain := []byte("value")
	moves := []struct {
		name     string
		from, to []byte
	}{
		{"other secret", SecretPurpose("db", 1), SecretPurpose("db2", 1)},
		{"other version", SecretPurpose("db", 1), SecretPurpose("db", 2)},
		{"other kind", SecretPurpose("db", 1), Purpose("workflow", "db", "1")},
		{"ambiguous split", Purpose("a.b", "c"), Purpose("a", "b.c")},
		{"concatenation", Purpose("ab", "c"), Purpose("a", "bc")},
		{"no purpose", SecretPurpose("db", 1), nil},
		{"data key id", dataKeyPurpose("secret.a.1"), dataKeyPurpose("secret.a.2")},
	}
	for _, s := range testSealers(t) {
		for _, m := range moves {
			t.Run(s.name+"/"+m.name, func(t *testing.T) {
				ct := s.seal(m.from, plain)
				if _, err := s.open(m.to, ct); !errors.Is(err, ErrDecrypt) {
					t.Fatalf("moved ciphertext: err = %v, want ErrDecrypt", err)
				}
				if _, err := s.open(m.from, ct); err != nil {
					t.Fatalf("in place: %v", err)
				}
			})
		}
	}
}

// TestEncrypt_Unique: encrypting the same plaintext never repeats a nonce
// or a ciphertext.
func TestEncryptUnique(t *testing.T) {
	const n = 20000
	for _, s := range testSealers(t) {
		t.Run(s.name, func(t *testing.T) {
			seen := make(map[string]bool, n)
			nonces := make(map[string]bool, n)
			hlen := 1
			if s.name == "keyring" {
				hlen = 5
			}
			for i := 0; i < n; i++ {
				ct := s.seal([]byte("p"), []byte("same plaintext"))
				nonce := string(ct[hlen : hlen+nonceSize])
				if seen[string(ct)] || nonces[nonce] {
					t.Fatalf("repeat after %d encryptions: improper random seeding", i)
				}
				seen[string(ct)], nonces[nonce] = true, true
			}
		})
	}
}

// TestInitialize_KeyLength: every key is AES-256; other lengths are
// refused, for ciphers and for master keys.
func TestKeyLength(t *testing.T) {
	if n := len(newKey()); n != KeySize {
		t.Fatalf("newKey: %d bytes", n)
	}
	for _, n := range []int{0, 16, 24, 31, 33, 64} {
		if _, err := newGCM(make([]byte, n)); err == nil {
			t.Errorf("newGCM accepted a %d-byte key", n)
		}
	}
	if _, err := newGCM(make([]byte, 32)); err != nil {
		t.Fatal(err)
	}
	ring, _ := newKeyring(time.Now())
	for id, term := range ring.terms {
		if len(term.raw) != KeySize {
			t.Fatalf("term %d: %d bytes", id, len(term.raw))
		}
	}
	if len(GenerateMasterKey().key) != KeySize {
		t.Fatal("master key length")
	}
}

func TestParseMasterKey(t *testing.T) {
	key := bytes.Repeat([]byte{0xa5}, 32)
	std := base64.StdEncoding.EncodeToString(key)
	tests := []struct {
		name, text string
		wantErr    string
	}{
		{"std", std, ""},
		{"raw", base64.RawStdEncoding.EncodeToString(key), ""},
		{"whitespace", "  " + std + "\n", ""},
		{"empty", "", "empty"},
		{"16 bytes", base64.StdEncoding.EncodeToString(key[:16]), "decodes to 16 bytes, want exactly 32"},
		{"33 bytes", base64.StdEncoding.EncodeToString(append(key, 1)), "decodes to 33 bytes"},
		{"not base64", "this is not base64!!", "not valid base64"},
		{"hex", strings.Repeat("ab", 32), "decodes to 48 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := ParseMasterKey(tt.text)
			if tt.wantErr == "" {
				if err != nil || !bytes.Equal(k.key, key) {
					t.Fatalf("ParseMasterKey = %v, %v", k, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
			if tt.text != "" && strings.Contains(err.Error(), strings.TrimSpace(tt.text)) {
				t.Fatalf("error quotes the key text: %v", err)
			}
		})
	}
}

// Rotation: old ciphertexts open under the rotated keyring, new ones are
// sealed under the new term, and old terms are kept.
func TestRotateTerms(t *testing.T) {
	r1, _ := newKeyring(time.Now())
	old := r1.Seal([]byte("p"), []byte("old"))
	r2, err := r1.rotated(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if r2.ActiveTerm() != 2 || len(r2.Terms()) != 2 || !r2.Terms()[1].Active || r2.Terms()[0].Active {
		t.Fatalf("terms after rotation: %+v (active %d)", r2.Terms(), r2.ActiveTerm())
	}
	cur := r2.Seal([]byte("p"), []byte("new"))
	if term, _ := ciphertextTerm(old); term != 1 {
		t.Fatalf("old ciphertext term %d", term)
	}
	if term, _ := ciphertextTerm(cur); term != 2 {
		t.Fatalf("new ciphertext term %d", term)
	}
	for ct, want := range map[string]string{string(old): "old", string(cur): "new"} {
		got, err := r2.Open([]byte("p"), []byte(ct))
		if err != nil || string(got) != want {
			t.Fatalf("open after rotation = %q, %v; want %q", got, err, want)
		}
	}
	// The old keyring does not know term 2.
	if _, err := r1.Open([]byte("p"), cur); !errors.Is(err, errUnknownTerm) {
		t.Fatalf("old keyring opened a term-2 ciphertext: %v", err)
	}
	if r1.Fingerprint([]byte("v")) != r2.Fingerprint([]byte("v")) {
		t.Fatal("fingerprints changed with rotation")
	}
}

// Sealed keyrings reload with the right master key and refuse any other.
func TestKeyringSealReload(t *testing.T) {
	mk := GenerateMasterKey()
	r1, _ := newKeyring(time.Now())
	r2, _ := r1.rotated(time.Now())
	blob, err := sealKeyring(mk, r2)
	if err != nil {
		t.Fatal(err)
	}
	for _, term := range r2.termIDs() {
		if bytes.Contains(blob, r2.terms[term].raw) {
			t.Fatal("sealed keyring contains a raw term key")
		}
	}
	got, err := openKeyring(mk, blob)
	if err != nil {
		t.Fatal(err)
	}
	ct := r1.Seal([]byte("p"), []byte("x"))
	if pt, err := got.Open([]byte("p"), ct); err != nil || string(pt) != "x" || got.ActiveTerm() != 2 {
		t.Fatalf("reloaded keyring: %q %v term %d", pt, err, got.ActiveTerm())
	}
	if _, err := openKeyring(GenerateMasterKey(), blob); !errors.Is(err, ErrWrongMasterKey) {
		t.Fatalf("other master key: %v", err)
	}
	for i := range blob {
		bad := bytes.Clone(blob)
		bad[i] ^= 0x01
		if _, err := openKeyring(mk, bad); err == nil {
			t.Fatalf("keyring with byte %d flipped opened", i)
		}
	}
}

// Corrupt or foreign ciphertexts fail with an error, never a panic.
func TestCorruptCiphertext(t *testing.T) {
	inputs := [][]byte{nil, {}, {0x01}, {0x02}, {0, 0, 0, 1, 0x01}, {0, 0, 0, 9, 0x01, 1, 2, 3},
		bytes.Repeat([]byte{0x02}, 28), bytes.Repeat([]byte{0xff}, 200), []byte("plain text, not a ciphertext")}
	for _, s := range testSealers(t) {
		for i, in := range inputs {
			if _, err := s.open([]byte("p"), in); !errors.Is(err, ErrDecrypt) {
				t.Errorf("%s input %d: err = %v, want ErrDecrypt", s.name, i, err)
			}
		}
		ct := s.seal([]byte("p"), []byte("value"))
		for n := 0; n < len(ct); n++ {
			if _, err := s.open([]byte("p"), ct[:n]); err == nil {
				t.Errorf("%s: truncated to %d bytes opened", s.name, n)
			}
		}
	}
	for i, in := range inputs {
		if _, err := openKeyring(GenerateMasterKey(), in); err == nil {
			t.Errorf("keyring input %d opened", i)
		}
	}
}

// Fingerprints are pinned: the same keyring and value give the same
// fingerprint in every version of flowvault (Vault's TestHashString). The
// golden value was checked independently: HMAC-SHA256 keyed with
// HKDF-SHA256(ikm=term key, salt=none, info="flowvault/fingerprint/v1").
func TestFingerprintGolden(t *testing.T) {
	key := make([]byte, 32)
	for i := range key {
		key[i] = byte(i)
	}
	r, err := buildKeyring(keyringData{Active: 1, Terms: []termData{{Term: 1, Key: key}}})
	if err != nil {
		t.Fatal(err)
	}
	const want = "hmac-sha256:027ae365e31db881493da201a006406b2903c2f41a312107180703e43cc53ade"
	got := r.Fingerprint([]byte("foo"))
	if !strings.HasPrefix(got, FingerprintPrefix) || len(got) != len(FingerprintPrefix)+64 {
		t.Fatalf("fingerprint format: %s", got)
	}
	if got != want {
		t.Fatalf("fingerprint = %s, want %s", got, want)
	}
	if !r.MatchesFingerprint([]byte("foo"), got) || r.MatchesFingerprint([]byte("fop"), got) {
		t.Fatal("MatchesFingerprint")
	}
	other, _ := newKeyring(time.Now())
	if other.Fingerprint([]byte("foo")) == got {
		t.Fatal("fingerprint does not depend on the key")
	}
}
