package masking

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/flowvault/flowvault/engine/expr"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// gcmSealer is a real AES-GCM sealer with one key per kind.
type gcmSealer struct{ keys map[byte]cipher.AEAD }

func newGCMSealer(t *testing.T) *gcmSealer {
	s := &gcmSealer{keys: map[byte]cipher.AEAD{}}
	for _, k := range []byte{KindSecrets, KindMasked} {
		key := make([]byte, 32)
		rand.Read(key)
		b, _ := aes.NewCipher(key)
		g, err := cipher.NewGCM(b)
		if err != nil {
			t.Fatal(err)
		}
		s.keys[k] = g
	}
	return s
}

func (s *gcmSealer) Seal(kind byte, purpose string, plain []byte) ([]byte, error) {
	g := s.keys[kind]
	nonce := make([]byte, g.NonceSize())
	rand.Read(nonce)
	return g.Seal(nonce, nonce, plain, []byte(purpose)), nil
}

func (s *gcmSealer) Open(kind byte, purpose string, ct []byte) ([]byte, error) {
	g, ok := s.keys[kind]
	if !ok {
		return nil, errors.New("key destroyed")
	}
	return g.Open(nil, ct[:g.NonceSize()], ct[g.NonceSize():], []byte(purpose))
}

func TestSealOpenRoundTrip(t *testing.T) {
	s := newGCMSealer(t)
	in := map[string]any{
		"visible":  "v",
		"_secrets": map[string]any{"token": "t0k-t0k-t0k", "n": int64(7), "list": []any{"a", true}},
		"_masked":  map[string]any{"ssn": "123-45-6789", "_secrets": "inner"},
	}
	var found []string
	sealed, err := SealKeys(s, nil, "task/1/output", in, func(p []byte) { found = append(found, string(p)) })
	if err != nil {
		t.Fatal(err)
	}
	m := sealed.(map[string]any)
	if m["visible"] != "v" {
		t.Fatal("a visible value was sealed")
	}
	tok, ok := m["_secrets"].(map[string]any)["token"].(*Sealed)
	if !ok || tok.Kind != KindSecrets {
		t.Fatalf("token = %#v", m["_secrets"])
	}
	if inner := m["_masked"].(map[string]any)["_secrets"].(*Sealed); inner.Kind != KindSecrets {
		t.Fatal("_secrets inside _masked must use the secrets key")
	}
	if len(found) != 6 {
		t.Fatalf("found %d plaintexts, want 6", len(found))
	}

	// Stored as msgpack: sealed values keep their type, nothing is plaintext.
	raw, err := msgpack.Marshal(sealed)
	if err != nil {
		t.Fatal(err)
	}
	for _, plain := range []string{"t0k-t0k-t0k", "123-45-6789", "inner"} {
		if strings.Contains(string(raw), plain) {
			t.Fatalf("msgpack holds %q in plaintext", plain)
		}
	}
	var back map[string]any
	if err := msgpack.Unmarshal(raw, &back); err != nil {
		t.Fatal(err)
	}
	// Shown as JSON: every sealed leaf is "***".
	js, _ := json.Marshal(back)
	if !strings.Contains(string(js), `"token":"***"`) || strings.Contains(string(js), "t0k") {
		t.Fatalf("JSON view = %s", js)
	}
	if fmt.Sprint(tok) != Mask || fmt.Sprintf("%#v", tok) != Mask {
		t.Fatal("fmt renders a sealed value")
	}
	opened, err := Open(back, s.Open)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(opened, map[string]any{"visible": "v",
		"_secrets": map[string]any{"token": "t0k-t0k-t0k", "n": int64(7), "list": []any{"a", true}},
		"_masked":  map[string]any{"ssn": "123-45-6789", "_secrets": "inner"}}) {
		t.Fatalf("opened = %#v", opened)
	}
	// A ciphertext moved to another place does not open there.
	if tok.Purpose != "task/1/output._secrets.token" {
		t.Fatalf("purpose %q", tok.Purpose)
	}
	if _, err := s.Open(KindSecrets, "task/2/output._secrets.token", tok.Ciphertext); err == nil {
		t.Fatal("a sealed value opened under another purpose")
	}
	// After compaction the secrets key is gone; shredding leaves "***".
	v, ok := Shred(back, KindSecrets)
	shredded := v.(map[string]any)
	if !ok {
		t.Fatal("shred reports nothing replaced")
	}
	if shredded["_secrets"].(map[string]any)["token"] != Mask {
		t.Fatal("shred kept a secrets-kind value")
	}
	if _, ok := shredded["_masked"].(map[string]any)["ssn"].(*Sealed); !ok {
		t.Fatal("shred removed a masked-kind value")
	}
	// Copy on write: the input keeps its sealed value, and what holds
	// nothing of that kind is shared, not copied.
	if _, ok := back["_secrets"].(map[string]any)["token"].(*Sealed); !ok {
		t.Fatal("shred modified its input")
	}
	masked := map[string]any{"ssn": &Sealed{Kind: KindMasked}}
	mixed := map[string]any{"_masked": masked, "_secrets": map[string]any{"t": &Sealed{Kind: KindSecrets}}}
	if v, _ := Shred(mixed, KindSecrets); !sameMap(v.(map[string]any)["_masked"], masked) || sameMap(v, mixed) {
		t.Fatal("shred copied a map without secrets-kind values, or kept one with them")
	}
	if clean := map[string]any{"a": []any{"b"}}; !sameMap(unshredded(Shred(clean, KindSecrets)), clean) {
		t.Fatal("shred copied a map without sealed values")
	}
}

// unshredded is the value of a Shred that replaced nothing, nil otherwise.
func unshredded(v any, shredded bool) any {
	if shredded {
		return nil
	}
	return v
}

func sameMap(a, b any) bool {
	return reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer()
}

func TestSealFields(t *testing.T) {
	s := newGCMSealer(t)
	out, err := SealFields(s, nil, "wf/input", map[string]any{"card": "4111", "plain": "x"}, []string{"card", "missing"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c, ok := out["card"].(*Sealed); !ok || c.Kind != KindSecrets || out["plain"] != "x" {
		t.Fatalf("SealFields = %#v", out)
	}
	if !HasSealed(out) || HasSealed(map[string]any{"a": []any{"b"}}) {
		t.Fatal("HasSealed")
	}
}

// A masked field that holds sealed values already (a _secrets block of
// its own, sealed by the same call, or a leaf sealed by SealTrees for the
// version a workflow ran before) has its other leaves sealed around them:
// sealed whole from its JSON, each of them read "***" when it opened.
func TestSealFieldsKeepsWhatIsSealedInAField(t *testing.T) {
	s := newGCMSealer(t)
	before, err := SealTrees(s, KindSecrets, nil, "wf/input", map[string]any{"card": map[string]any{"num": "4111-4111"}}, []string{"card"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		in   map[string]any
		want any
	}{
		{"a _secrets block in it", map[string]any{"card": map[string]any{"_secrets": map[string]any{"pin": "1234"}, "holder": "bob"}},
			map[string]any{"_secrets": map[string]any{"pin": "1234"}, "holder": "bob"}},
		{"a leaf sealed before", map[string]any{"card": map[string]any{"num": before["card"].(map[string]any)["num"], "holder": "bob"}},
			map[string]any{"num": "4111-4111", "holder": "bob"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out, err := SealFields(s, nil, "wf/input", tt.in, []string{"card"}, nil)
			if err != nil {
				t.Fatal(err)
			}
			opened, err := Open(out["card"], s.Open)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(opened, tt.want) {
				t.Errorf("the field opens as %v, want %v", opened, tt.want)
			}
			if card, _ := out["card"].(map[string]any); card != nil && fmt.Sprint(card["holder"]) != Mask {
				t.Errorf("the field's plain leaf holder = %v, want it sealed", card["holder"])
			}
		})
	}
}

func TestSealTrees(t *testing.T) {
	s := newGCMSealer(t)
	in := map[string]any{"creds": map[string]any{"user": "bob", "pins": []any{1234.0}}, "plain": "x"}
	out, err := SealTrees(s, KindSecrets, nil, "wf/input", in, []string{"creds", "missing"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	creds := out["creds"].(map[string]any)
	user, ok := creds["user"].(*Sealed)
	if !ok || user.Kind != KindSecrets || user.Purpose != "wf/input.creds.user" {
		t.Fatalf("creds.user = %#v", creds["user"])
	}
	if pin, ok := creds["pins"].([]any)[0].(*Sealed); !ok || pin.Purpose != "wf/input.creds.pins[0]" {
		t.Fatalf("creds.pins = %#v", creds["pins"])
	}
	if out["plain"] != "x" || len(out) != 2 {
		t.Fatalf("out = %v", out)
	}
	if _, sealed := in["creds"].(map[string]any)["user"].(*Sealed); sealed {
		t.Fatal("SealTrees changed its input")
	}
}

// A purpose is stored in plain text: a key above a sealed leaf that holds
// a value redaction looks for is named as redaction writes it, numbered
// past the names other keys of its map go by, and every leaf still opens.
func TestSealKeysNamesKeysAsRedacted(t *testing.T) {
	s := newGCMSealer(t)
	const v, w = "value-one-Xk28", "value-two-Pq71"
	in := map[string]any{
		"_secrets": map[string]any{v: "one", w: "two", "***": "three", "***#2": "four", "k " + v: "five"},
		v:          map[string]any{"_masked": map[string]any{"a": "six"}},
	}
	out, err := SealKeys(s, NewRedactor([]byte(v), []byte(w)), "p", in, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{} // purpose → the value it opens to
	var walk func(any)
	walk = func(x any) {
		switch y := x.(type) {
		case *Sealed:
			plain, err := s.Open(y.Kind, y.Purpose, y.Ciphertext)
			if err != nil {
				t.Fatalf("%s: %v", y.Purpose, err)
			}
			if _, twice := got[y.Purpose]; twice {
				t.Errorf("two values sealed under %s", y.Purpose)
			}
			got[y.Purpose] = string(plain)
		case map[string]any:
			for _, e := range y {
				walk(e)
			}
		}
	}
	walk(out)
	want := map[string]bool{"p._secrets.***": true, "p._secrets.***#2": true, "p._secrets.***#3": true, "p._secrets.***#4": true,
		"p._secrets.k ***": true, "p.***._masked.a": true}
	if len(got) != len(want) {
		t.Fatalf("purposes %v, want %v", got, want)
	}
	for p, plain := range got {
		if !want[p] || strings.Contains(p, v) || strings.Contains(p, w) {
			t.Errorf("purpose %q (of %s)", p, plain)
		}
	}
	if got["p._secrets.***"] != `"three"` || got["p._secrets.***#2"] != `"four"` || got["p._secrets.k ***"] != `"five"` {
		t.Errorf("the keys redaction leaves are named as they are: %v", got)
	}
}

// Keys of one object that redact to the same text are kept apart in the
// redacted copy, each with its value, named as the purposes of the values
// sealed under them name them (KeyNames): a worker's output keyed by two
// of its secrets lost one of them, and the name a value was stored under
// was another than its purpose's. The names are the same whenever asked.
func TestRedactKeepsKeysThatReadTheSameApart(t *testing.T) {
	s := newGCMSealer(t)
	var values [][]byte
	block := map[string]any{"***": "kept-as-it-is", "plain": "plain-data"}
	for i := range 8 {
		v := fmt.Sprintf("key-secret-%d-Qp83xZ", i)
		values = append(values, []byte(v))
		block[v] = fmt.Sprintf("leaf-%d", i)
	}
	block["Bearer "+string(values[0])] = "leaf-in-text"
	r := NewRedactor(values...)
	in := map[string]any{"_secrets": block}
	sealed, err := SealKeys(s, r, "p", in, nil)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		out := r.Map(sealed.(map[string]any))
		got, ok := out["_secrets"].(map[string]any)
		if !ok || len(got) != len(block) {
			t.Fatalf("redacted %v, want %d keys", out, len(block))
		}
		opened := map[string]bool{}
		for k, e := range got {
			for _, v := range values {
				if strings.Contains(k, string(v)) {
					t.Errorf("stored key %q spells a value", k)
				}
			}
			sv, ok := e.(*Sealed)
			if !ok {
				t.Fatalf("%s holds %v", k, e)
			}
			if want := "p._secrets." + k; sv.Purpose != want {
				t.Errorf("the value stored under %q is sealed under %s", k, sv.Purpose)
			}
			plain, err := s.Open(sv.Kind, sv.Purpose, sv.Ciphertext)
			if err != nil {
				t.Fatal(err)
			}
			opened[string(plain)] = true
		}
		for _, leaf := range block {
			if js, _ := json.Marshal(leaf); !opened[string(js)] {
				t.Errorf("%s is missing from %v", js, got)
			}
		}
		if got["***"].(*Sealed).Purpose != "p._secrets.***" || got["plain"].(*Sealed).Purpose != "p._secrets.plain" {
			t.Errorf("keys redaction leaves are renamed: %v", got)
		}
	}
	plain := r.Map(map[string]any{string(values[0]): "a", string(values[1]): "b"})
	if len(plain) != 2 || plain["***"] == plain["***#2"] {
		t.Errorf("plain data redacted to %v", plain)
	}
	if !reflect.DeepEqual(KeyNames(r, block), KeyNames(r, block)) {
		t.Error("KeyNames names a map's keys differently each time")
	}
}

// A sealed number opens as conductor.Unmarshal reads JSON everywhere else:
// an integer's text an int64, any other number a float64, so that text
// built from it (expr.Text, Java's String.valueOf) reads "2", not "2.0",
// and an integer past 2^53 keeps its digits. A number written with a
// decimal point or an exponent that is whole is sealed as encoding/json
// writes it, as an integer (README lists it). Whether sealed whole (a
// maskedFields field) or leaf by leaf (_secrets), and a number equal to a
// secret is still redacted whole.
func TestOpenReadsNumbersAsConductor(t *testing.T) {
	t.Parallel()
	s := newGCMSealer(t)
	for _, tc := range []struct {
		given string // as the workflow holds it (conductor.Unmarshal)
		want  any
		text  string
		// redacted: long enough for redaction to look for it.
		redacted bool
	}{
		{"2", int64(2), "2", false},
		{"2.0", int64(2), "2", false},
		{"-3", int64(-3), "-3", false},
		{"1e3", int64(1000), "1000", false},
		{"9007199254740993", int64(9007199254740993), "9007199254740993", true},
		{"918273645501.0", int64(918273645501), "918273645501", true},
		{"0.5", 0.5, "0.5", false},
		{"-918273.5", -918273.5, "-918273.5", true},
		{"1e21", 1e21, "1.0E21", false},
		{`{"a":[2,0.5,{"b":-3}],"c":2.0}`, map[string]any{"a": []any{int64(2), 0.5, map[string]any{"b": int64(-3)}}, "c": int64(2)}, `{"a":[2,0.5,{"b":-3}],"c":2}`, false},
		{`[2,2.0,"2"]`, []any{int64(2), int64(2), "2"}, `[2,2,"2"]`, false},
	} {
		var given any
		if err := conductor.Unmarshal([]byte(tc.given), &given); err != nil {
			t.Fatal(err)
		}
		var found [][]byte
		keep := func(p []byte) { found = append(found, bytes.Clone(p)) }
		whole, err := SealFields(s, nil, "wf/x/input", map[string]any{"v": given}, []string{"v"}, keep)
		if err != nil {
			t.Fatal(err)
		}
		leaves, err := SealKeys(s, nil, "wf/x/output", map[string]any{"_secrets": given}, keep)
		if err != nil {
			t.Fatal(err)
		}
		for _, sealed := range []struct {
			how  string
			v    any
			path func(any) any
		}{
			{"whole", whole, func(v any) any { return v.(map[string]any)["v"] }},
			{"leaf by leaf", leaves, func(v any) any { return v.(map[string]any)[KeySecrets] }},
		} {
			o, err := Open(sealed.v, s.Open)
			if err != nil {
				t.Fatalf("%s %s: %v", tc.given, sealed.how, err)
			}
			opened := sealed.path(o)
			if !reflect.DeepEqual(opened, tc.want) {
				t.Errorf("%s sealed %s opens as %T %v, want %T %v", tc.given, sealed.how, opened, opened, tc.want, tc.want)
			}
			if got := expr.Text(opened); got != tc.text {
				t.Errorf("%s sealed %s reads %q in text, want %q", tc.given, sealed.how, got, tc.text)
			}
			if tc.redacted {
				if got := NewRedactor(found...).Value(opened); got != Mask {
					t.Errorf("%s sealed %s is redacted as %#v, want %q", tc.given, sealed.how, got, Mask)
				}
			}
		}
	}
}
