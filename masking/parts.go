package masking

import (
	"slices"
	"strings"
)

// Parts returns the parts of v that reach text without the rest of v, at
// least MinLength bytes long and other than v: what whoever builds a
// redactor gives it beside v (WithParts; the guard, each on its own, so
// that a part the workflow's definition spells is not looked for), for
// each to be looked for in every form v is.
//
// A value written into a uri as it is reaches the server cut:
//   - at its first ':', when it is a userinfo (http://${creds}@host): Go
//     sends the user and the password apart in the Basic Authorization
//     header, and a server that decodes it echoes them as separate
//     fields, neither of them the whole value. Go refuses a uri whose
//     userinfo holds other characters than userinfo's, and sends nothing:
//     a JSON secret ({"user":"svc","password":…}) is not cut, which would
//     have {"user" looked for in every JSON text;
//   - at '&', '#' and '?', and each piece at its first '=', when it is in
//     a query: its parameters are split at '&' and each at its first '=',
//     a fragment ('#') is not sent, a '?' in the path starts the query,
//     and an answer quoting the parsed query back (Go's URL.Query,
//     Python's parse_qs) holds the pieces.
func Parts(v []byte) [][]byte {
	s := string(v)
	var parts []string
	if user, password, ok := strings.Cut(s, ":"); ok && !strings.ContainsFunc(s, notUserinfo) {
		parts = append(parts, user, password)
	}
	if strings.ContainsAny(s, "&#?=") {
		for p := range strings.FieldsFuncSeq(s, func(r rune) bool { return r == '&' || r == '#' || r == '?' }) {
			parts = append(parts, p)
			if k, v, ok := strings.Cut(p, "="); ok {
				parts = append(parts, k, v)
			}
		}
	}
	var out [][]byte
	for i, p := range parts {
		if len(p) >= MinLength && p != s && !slices.Contains(parts[:i], p) {
			out = append(out, []byte(p))
		}
	}
	return out
}

// notUserinfo reports whether Go's url.Parse refuses r in a userinfo: it
// takes ASCII letters and digits, -._~, the sub-delimiters !$&'()*+,;=,
// ':', '@' and '%'.
func notUserinfo(r rune) bool {
	return !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || strings.ContainsRune("-._~!$&'()*+,;=:@%", r))
}

// WithParts returns values followed by the parts of each (Parts), for a
// redactor that looks for them all.
func WithParts(values [][]byte) [][]byte {
	out := slices.Clone(values)
	for _, v := range values {
		out = append(out, Parts(v)...)
	}
	return out
}
