package secrets

import (
	"bytes"
	"encoding/base64"
	"strings"
	"testing"
)

// FuzzParseMasterKey reads any text as a master key. A key read writes
// back as text that reads as the same key; a refusal quotes no part of
// the text of more than a few characters (it may be a key mistyped).
func FuzzParseMasterKey(f *testing.F) {
	key := bytes.Repeat([]byte{0xa5}, 32)
	for _, s := range []string{base64.StdEncoding.EncodeToString(key), base64.RawStdEncoding.EncodeToString(key),
		"  " + base64.StdEncoding.EncodeToString(key) + "\n", "", base64.StdEncoding.EncodeToString(key[:16]),
		"this is not base64!!", strings.Repeat("ab", 32), "pWl=", base64.URLEncoding.EncodeToString(key)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		k, err := ParseMasterKey(text)
		if err != nil {
			for part := range strings.FieldsSeq(text) {
				if len(part) >= 8 && strings.Contains(err.Error(), part) {
					t.Fatalf("error quotes %q of the text: %v", part, err)
				}
			}
			return
		}
		again, err := ParseMasterKey(string(k.Text()))
		if err != nil || !bytes.Equal(again.key, k.key) {
			t.Fatalf("%q: written back as %q, read as %v, %v", text, k.Text(), again, err)
		}
	})
}
