package masking

import (
	"encoding/base64"
	"encoding/hex"
	"slices"
	"strings"
	"testing"

	"github.com/dop251/goja"
)

// The parts a uri or a script cuts a value into are redacted in every
// form the value is: the user and the password of a user:password (cut at
// its first ':', as Go reads a userinfo), a query's parameters, and the
// names and numbers a script's error quotes, of a value that ends the
// script's string it is spliced into, and what a script's string literal
// reads from a value holding escapes. A part shorter than MinLength is
// not looked for, one at the floor is.
func TestRedactParts(t *testing.T) {
	t.Parallel()
	const (
		creds = `admin9:pa'ss&w0rd:x`
		cut   = "Tq7Hw2xZ&kX93Zp=Vb5N+m8Lq#fRag22xY?pQ"
	)
	tests := []struct {
		name, value, text, want string
	}{
		{"password", creds, `{"password":"pa'ss&w0rd:x"}`, `{"password":"***"}`},
		{"password as Go's JSON", creds, `pa'ss\u0026w0rd:x`, `***`},
		{"password HTML-escaped", creds, `pa&#39;ss&amp;w0rd:x`, `***`},
		{"password in base64", creds, base64.StdEncoding.EncodeToString([]byte(`pa'ss&w0rd:x`)), `***`},
		{"password in hex", creds, hex.EncodeToString([]byte(`pa'ss&w0rd:x`)), `***`},
		{"user at the floor", creds, `{"user":"admin9"}`, `{"user":"***"}`},
		{"user shorter", "admin:k3Y8wQ2r", `{"user":"admin","password":"k3Y8wQ2r"}`, `{"user":"admin","password":"***"}`},
		{"password at the floor", "usr:abc123", `abc123 abc12`, `*** abc12`},
		{"password shorter", "usr1234:abc12", `abc12 usr1234`, `abc12 ***`},
		// Go refuses a uri whose userinfo holds a quote or a brace.
		{"not a userinfo", `{"user":"svc-acct9"}`, `{"user":"bob","id":"svc-acct9"}`, `{"user":"bob","id":"svc-acct9"}`},
		// A query's parameters (at '&', then key and value at '='), a
		// fragment not sent, a path's '?', as Go's URL.Query reads them.
		{"the parameter it began", cut, `Tq7Hw2xZ`, `***`},
		{"a parameter's key", cut, `kX93Zp`, `***`},
		{"a parameter's value", cut, `Vb5N m8Lq`, `***`},
		{"a fragment", cut, `fRag22xY`, `***`},
		{"a whole query's value", "api_key=Zx81Lm0qPw", `Zx81Lm0qPw`, `***`},
		{"a whole query's key", "api_key=Zx81Lm0qPw", `api_key`, `***`},
		// A value spliced into a script's string ends it with its quote:
		// what follows is code, whose error a script that catches it
		// returns.
		{"a script's name", `p4ss'+w0rdX9tail+'`, `w0rdX9tail is not defined`, `*** is not defined`},
		{"a script's name at the floor", `p4ss'+w0rdX9+'`, `ReferenceError: w0rdX9 is not defined`, `ReferenceError: *** is not defined`},
		{"a script's name shorter", `p4ss'+w0rdX+'`, `ReferenceError: w0rdX is not defined`, `ReferenceError: w0rdX is not defined`},
		{"a member's name", `p4ss'+a.pr0pX9.x+'`, `Cannot read property 'pr0pX9' of undefined`, `Cannot read property '***' of undefined`},
		{"a number", `p4ss'+123456()+'`, `TypeError: 123456 is not a function`, `TypeError: *** is not a function`},
		{"a name spelt with an escape", `p4ss'+\u0071Rt5wX9+'`, `qRt5wX9 is not defined`, `*** is not defined`},
		{"a name of accented letters", "p4ss\"+Pa\u0308sswo\u0308rt+\"", "Pa\u0308sswo\u0308rt is not defined", `*** is not defined`},
		{"a name in a template", "p4ss${w0rdX9tail}", `w0rdX9tail is not defined`, `*** is not defined`},
		// A value that ends no string stays in it, and a JSON document's
		// member names are its structure: neither is cut into names.
		{"a value that ends no string", "session-1-5d0c9e", `{"session":"new"}`, `{"session":"new"}`},
		{"a JSON document", `{"password":"p4ss'w0rdX9"}`, `{"password":"x"}`, `{"password":"x"}`},
		// A value holding a backslash, spliced into a script's string,
		// is read with its escapes decoded, which the script returns.
		{"\\x", `abc\x41def-9Qz`, `abcAdef-9Qz`, `***`},
		{"\\u", `p\u0061ssW0rd`, `passW0rd`, `***`},
		{"\\u{}", `p\u{61}ssW0rd`, `passW0rd`, `***`},
		{"a surrogate pair", `key\uD83D\uDE00x9`, "key\U0001F600x9", `***`},
		{"\\n", `line1\nline2`, "line1\nline2", `***`},
		{"a line continuation", "abc\\\ndef123", `abcdef123`, `***`},
		{"a line continuation, CRLF", "abc\\\r\ndef123", `abcdef123`, `***`},
		{"octal, as goja reads it", `p\141ss\477W0`, "passĿW0", `***`},
		{"\\8", `ab\8cd9Q`, `ab8cd9Q`, `***`},
		{"an escaped quote", `it\'s-s3cret`, `it's-s3cret`, `***`},
		{"decoded at the floor", `\x41\x42\x43\x44\x45\x46`, `ABCDEF`, `***`},
		{"decoded shorter", `\x41\x42\x43\x44\x45`, `ABCDE`, `ABCDE`},
		// A template reads a CR as a LF, and ends at ${: what it reads
		// before it and after the }, each.
		{"a template's CRLF", "abc\\x41\r\ndef", "abcA\ndef", `***`},
		{"a template before ${", `ab\x41-cd${x}ef-\x42gh`, `abA-cd`, `***`},
		{"a template after ${}", `ab\x41-cd${x}ef-\x42gh`, `ef-Bgh`, `***`},
		{"a string around ${", `ab\x41-cd${x}ef-\x42gh`, `abA-cd${x}ef-Bgh`, `***`},
		// A value that ends a '-quoted string: its piece in it, and all of
		// it as a "-quoted one reads it.
		{"the piece a quote ends", `p\x41ss-w0rd'+x+'`, `pAss-w0rd`, `***`},
		{"all of it, another quote", `p\x41ss-w0rd'+x+'`, `pAss-w0rd'+x+'`, `***`},
		// A JSON document is read whole, by the literals it does not end,
		// and not cut: the text between its strings is its structure.
		{"a JSON document decoded", `{"pw":"p4ss\u0077ord"}`, `{"pw":"p4ssword"}`, `***`},
		{"a JSON document's structure", `{"ids":[1,2,3],"pw":"a\nb"}`, `{"n":[1,2,3],"m":2}`, `{"n":[1,2,3],"m":2}`},
		// A part shorter than the floor is kept as it is, in base64 and
		// in hex, and looked for as the JSON encoders escape it and its
		// percent-decoded spellings, where that reaches the floor.
		{"a short piece as .NET's JSON", "pa'ss&w0rd=Zx81Lm0q", `{"p":"pa\u0027ss"}`, `{"p":"***"}`},
		{"a short password as Go's JSON", "bob12:p&ss1", `{"password":"p\u0026ss1"}`, `{"password":"***"}`},
		{"a short piece decoded, as .NET's JSON", "p%27s&w0rd=Zx81Lm0q", `p\u0027s`, `***`},
		{"a short piece", "pa'ss&w0rd=Zx81Lm0q", `{"p":"pa'ss"}`, `{"p":"pa'ss"}`},
		{"a short piece in base64", "pa'ss&w0rd=Zx81Lm0q", base64.StdEncoding.EncodeToString([]byte(`pa'ss`)), base64.StdEncoding.EncodeToString([]byte(`pa'ss`))},
		{"a short piece in hex", "pa'ss&w0rd=Zx81Lm0q", hex.EncodeToString([]byte(`pa'ss`)), hex.EncodeToString([]byte(`pa'ss`))},
		{"a short piece escaped under the floor", "a/b&w0rd=Zx81Lm0q", `a\/b`, `a\/b`},
		{"a short name escaped as non-ASCII", `p4ss'+é+'`, `caf\u00e9`, `caf\u00e9`},
		{"query parameter decoded shorter", "ab12cd&ef%34gh=ij56kl", `ef4gh`, `ef4gh`},
		{"query parameter decoded", "ab12cd&ef%34gh=ij56kl", `ef4gh=ij56kl ef4gh`, `*** ef4gh`},
	}
	for _, tt := range tests {
		r := NewRedactor(WithParts([][]byte{[]byte(tt.value)})...)
		if got := r.String(`{"note":"sent ` + tt.text + ` upstream"}`); got != `{"note":"sent `+tt.want+` upstream"}` {
			t.Errorf("%s: %q redacted for %q is %q, want %q", tt.name, tt.text, tt.value, got, tt.want)
		}
	}
}

// What Parts reads from a value holding escapes is what goja reads from
// the value spliced into a string literal of each kind that it does not
// end: the text a script holds, which it returns.
func TestScriptLiteralsAsGojaReadsThem(t *testing.T) {
	t.Parallel()
	values := []string{
		`abc\x41def`, `p\u0061ss\u{1F600}\u{62}`, `\uD83D\uDE00pair\uD83Dlone`, `\101\60\8\9\477\400\08\0`,
		"con\\\ntin\\\r\nued\\\u2028here", `\b\f\n\r\t\v\q\'\"\\end`, "raw\r\nCRLF\rCR\\x41", "é\\é\\\u2029à",
		`\x4bad`, `tail\`,
	}
	for _, v := range values {
		parts := Parts([]byte(v))
		for _, quote := range []string{`'`, `"`, "`"} {
			got, err := goja.New().RunString(quote + v + quote)
			if err != nil {
				continue // the script does not compile, and holds nothing
			}
			if s := got.String(); len(s) >= MinLength && s != v && !slices.ContainsFunc(parts, func(p []byte) bool { return string(p) == s }) {
				t.Errorf("%s%s%s: goja reads %q, which is not a part of %q", quote, v, quote, s, parts)
			}
		}
	}
}

// A part that the text before a value spells with the value's first
// characters does not leave the rest of the value in plain text: the
// replacer masks the needle that starts first and goes on after it, and
// the value, which started within the part, was not looked for there.
func TestRedactPartBeforeItsValue(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, value, text string
	}{
		// A user whose start and end are alike ("xy7Qxy"), echoed cut
		// short before the whole value.
		{"a user", "xy7Qxy:Zr4k-Wn8p-Tq2v", "xy7Q" + "xy7Qxy:Zr4k-Wn8p-Tq2v"},
		// The first name of a value that ends a script's string.
		{"a script's name", `ok5fIo.a2p:4swc+&3jC"`, "ok5fI" + `ok5fIo.a2p:4swc+&3jC"`},
		// A query's first piece.
		{"a query's piece", "r80m5ur?y=Vb5N-m8Lq", "+r80m5u" + "r80m5ur?y=Vb5N-m8Lq"},
	}
	for _, tt := range tests {
		r := NewRedactor(WithParts([][]byte{[]byte(tt.value)})...)
		got := r.String(tt.text)
		// What stays of the value in plain text: no run of 4 of its
		// bytes past the first that the text's start spelt.
		for i := 1; i+4 <= len(tt.value); i++ {
			if strings.Contains(got, tt.value[i:i+4]) && !strings.Contains(tt.text[:len(tt.text)-len(tt.value)], tt.value[i:i+4]) {
				t.Errorf("%s: %q redacted for %q is %q: %q of the value stays", tt.name, tt.text, tt.value, got, tt.value[i:i+4])
				break
			}
		}
	}
}
