package api

import (
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/flowvault/flowvault/internal/testutil"
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

// The value of a PUT is read so that, once the handler wipes it, no copy
// of the body is left: a value as sent, one decoded from a JSON string
// (whose body is wiped) and one over the limit, refused.
func TestReadValueBodyLeavesNoCopy(t *testing.T) {
	value := strings.Repeat("s", 5000)
	for _, tc := range []struct {
		name, contentType, body string
		want                    string // "": refused
	}{
		{"text", "text/plain", value, value},
		{"JSON string", "application/json", `"` + value + `"`, value},
		{"over the limit", "text/plain", strings.Repeat("s", maxValueBody+1), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := testutil.NewTracedReader(strings.NewReader(tc.body))
			r := httptest.NewRequest("PUT", "/api/secrets/db", body)
			r.Header.Set("Content-Type", tc.contentType)
			v, err := readValueBody(httptest.NewRecorder(), r, "secret")
			if string(v) != tc.want || (err == nil) != (tc.want != "") {
				t.Fatalf("%d bytes, %v; want %d", len(v), err, len(tc.want))
			}
			wipeBytes(v)
			if left := body.Left(); left != 0 {
				t.Fatalf("%d bytes of the body are left unwiped once the value is", left)
			}
		})
	}
}
