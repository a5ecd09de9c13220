package masking

import (
	"encoding/base64"
	"encoding/hex"
	"testing"
)

// The parts a uri cuts a value into are redacted in every form the value
// is: the user and the password of a user:password (cut at its first
// ':', as Go reads a userinfo), and a query's parameters. A part shorter
// than MinLength is not looked for, one at the floor is.
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
