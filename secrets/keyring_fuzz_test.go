package secrets

import (
	"bytes"
	"crypto/cipher"
	"slices"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// FuzzOpenKeyring reads any bytes as the stored keyring, as a start does,
// both as the blob stored and as the plaintext a blob sealed under the
// master key holds; and any bytes as a wrapped key. Nothing panics; a
// refusal returns no keyring and quotes no key of the plaintext; a
// keyring read is whole (its active term is one of its terms) and opens
// what it seals.
func FuzzOpenKeyring(f *testing.F) {
	mk := &MasterKey{key: bytes.Repeat([]byte{0xa5}, KeySize)}
	ring, err := newKeyring(time.UnixMilli(1796032800000))
	if err != nil {
		f.Fatal(err)
	}
	good := ring.data()
	plain, err := msgpack.Marshal(&good)
	if err != nil {
		f.Fatal(err)
	}
	blob, err := sealKeyring(mk, ring)
	if err != nil {
		f.Fatal(err)
	}
	twoTerms, _ := msgpack.Marshal(&keyringData{Active: 2, Terms: []termData{{Term: 1, Key: bytes.Repeat([]byte{1}, KeySize)}, {Term: 2, Key: bytes.Repeat([]byte{2}, 16)}}})
	noActive, _ := msgpack.Marshal(&keyringData{Active: 3, Terms: []termData{{Term: 1, Key: bytes.Repeat([]byte{1}, KeySize)}}})
	short, _ := msgpack.Marshal(&keyringData{Active: 1, Terms: []termData{{Term: 1, Key: []byte("sk_live_short")}}})
	for _, b := range [][]byte{plain, blob, twoTerms, noActive, short, nil, []byte("FVKR"), blob[:20], ring.Seal([]byte("p"), []byte("x"))} {
		f.Add(b)
	}
	header := append(append(slices.Clone(keyringMagic), keyringFormat), mk.checkValue()...)
	f.Fuzz(func(t *testing.T, b []byte) {
		check := func(what string, r *Keyring, err error) {
			t.Helper()
			if err != nil {
				if r != nil {
					t.Fatalf("%s: %v and a keyring", what, err)
				}
				var d keyringData
				if msgpack.Unmarshal(b, &d) == nil {
					for _, term := range d.Terms {
						if len(term.Key) >= 4 && bytes.Contains([]byte(err.Error()), term.Key) {
							t.Fatalf("%s: %v quotes a key", what, err)
						}
					}
				}
				return
			}
			if r.terms[r.active] == nil || len(r.fpKey) != KeySize {
				t.Fatalf("%s: keyring without its active term", what)
			}
			if got, err := r.Open([]byte("p"), r.Seal([]byte("p"), []byte("v"))); err != nil || string(got) != "v" {
				t.Fatalf("%s: opens what it seals as %q, %v", what, got, err)
			}
		}
		r, err := openKeyring(mk, b)
		check("stored", r, err)
		r, err = openKeyring(mk, sealWith(mustGCM(t, mk.key), header, Purpose("keyring", string(header)), b))
		check("sealed", r, err)
		if _, err := ring.Open(dataKeyPurpose("wf.x"), b); err == nil {
			t.Fatalf("%x opens without being sealed", b)
		}
	})
}

func mustGCM(t *testing.T, key []byte) cipher.AEAD {
	aead, err := newGCM(key)
	if err != nil {
		t.Fatal(err)
	}
	return aead
}
