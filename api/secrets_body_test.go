package api

import (
	"encoding/json"
	"testing"
	"unicode/utf8"
)

// unquoteJSON accepts exactly the JSON string literals encoding/json
// accepts and decodes them to the same text, except that it refuses
// invalid UTF-8, which encoding/json replaces with U+FFFD: such a body is
// then refused as a value that is not text.
func TestUnquoteJSON(t *testing.T) {
	inputs := []string{
		`""`, `"a"`, `"hello world"`, `"\"\\\/\b\f\n\r\t"`, `"\u0041\u00e9\u20ac"`, `"\ud83d\udd11"`,
		`"\ud83d"`, `"\udd11"`, `"\ud83dx"`, `"\ud83d\u0041"`, `"é🔑"`, `"\x"`, `"\u12"`, `"\u12g4"`, `"a"b"`,
		`"tab	inside"`, "\"nl\ninside\"", `"`, `"unterminated`, `unquoted"`, `"\"`, `"\\"`, "\"\xff\"", `"\U0041"`,
	}
	for _, in := range inputs {
		checkUnquote(t, in)
	}
}

func checkUnquote(t *testing.T, in string) {
	t.Helper()
	if !utf8.ValidString(in) {
		if _, ok := unquoteJSON([]byte(in)); ok {
			t.Fatalf("%q: invalid UTF-8 accepted", in)
		}
		return
	}
	var want string
	werr := json.Unmarshal([]byte(in), &want)
	got, ok := unquoteJSON([]byte(in))
	if ok != (werr == nil) {
		t.Fatalf("%q: ok = %v, encoding/json err = %v", in, ok, werr)
	}
	if ok && string(got) != want {
		t.Fatalf("%q: got %q, want %q", in, got, want)
	}
}

func FuzzUnquoteJSON(f *testing.F) {
	for _, s := range []string{`"a\u0041\n"`, `"\ud83d\udd11"`, `"x"`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if len(s) < 2 || s[0] != '"' || s[len(s)-1] != '"' {
			return
		}
		checkUnquote(t, s)
	})
}
