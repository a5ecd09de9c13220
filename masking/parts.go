package masking

import (
	"bytes"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// Parts returns the parts of v that reach text without the rest of v, at
// least MinLength bytes long and other than v: what whoever builds a
// redactor gives it beside v (WithParts; the guard, each on its own, so
// that a part the workflow's definition spells is not looked for), for
// each to be looked for in every form v is. A part shorter than
// MinLength is not, but its escaped forms that reach the floor are
// (escapedForms: pa'ss as .NET writes it in JSON, pa\u0027ss).
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
//
// A value spliced into a string of a script's text (an INLINE's
// expression, handed off with its references resolved) is code past a
// character of its own that ends the string: a quote (', ", `), or ${ in
// a template. The script's errors quote the name or the number they
// stopped at (ReferenceError: w0rdX9 is not defined), which a script that
// catches the error returns as its result: a value holding such a
// character is cut into the runs of the characters a JavaScript name or
// number is made of but '.' (notScriptToken), which a member access cuts
// a name at. A value without one stays in the string, and is not cut:
// its words (session-1-5d0c9e) are no secret of their own, and would be
// looked for in all the workflow writes, a member named session
// included. Nor is a JSON object or array, whose member names are its
// structure: the guard looks for its strings and numbers, each with its
// own parts.
//
// A value holding a backslash, spliced into a string of a script, is read
// with its escapes decoded (p\u0061ss\x21 is pass!), which the script
// returns, concatenates or throws, where neither the value as written nor
// any of its forms is: what each kind of literal reads from it is a part
// (scriptLiterals), the pieces of one that stay in the literal when the
// value ends it (but a JSON document's: the text between its strings is
// its structure).
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
	if endsScriptString(s) && !isJSONDocument(v) {
		parts = append(parts, strings.FieldsFunc(s, notScriptToken)...)
		// A name spelt with escapes (w\u0030rd) is quoted as the script
		// reads it (w0rd).
		if strings.Contains(s, `\`) {
			parts = append(parts, strings.FieldsFunc(ScriptUnescaped(s), notScriptToken)...)
		}
	}
	if strings.Contains(s, `\`) {
		parts = append(parts, scriptLiterals(s, !isJSONDocument(v))...)
	}
	for _, p := range parts {
		if len(p) < MinLength {
			parts = append(parts, escapedForms(p)...)
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

// escapedForms returns the forms of part p, shorter than MinLength, that
// the encoders of jsonStyles write for it and for its percent-decoded
// spellings (p%27s reaches a server as p's, echoed as p\u0027s), each when
// it holds an ASCII character one of them escapes. The floor applies to
// each form, as it did when a query's pieces were forms of the value (a
// part is a value of its own, which the floor drops whole): an escape
// that brings a form to it is no ordinary text. Each is a part of its
// own, looked for in every form of its own (a log line quoting the JSON).
// The short part's base64 and hex forms are not looked for: every part
// has them, at the floor from 5 bytes on, and they are in the encoding
// of any text that holds the part (the user admin in a base64 config),
// which the floor keeps as it is. Nor a part
// of letters and digits escaped only for being non-ASCII (Python's é as
// \u00e9, a script's name): such a part is a word, written so in every
// JSON text Python writes.
func escapedForms(p string) []string {
	var out []string
	for _, d := range []string{p, percentDecode(p, false), percentDecode(p, true)} {
		if strings.ContainsFunc(d, escapedASCII) {
			out = appendJSONForms(out, d)
		}
	}
	return out
}

// escapedASCII reports whether r is an ASCII character that an encoder
// of jsonStyles writes other than as it is.
func escapedASCII(r rune) bool {
	return r < utf8.RuneSelf && jsonEscaped(r)
}

// notUserinfo reports whether Go's url.Parse refuses r in a userinfo: it
// takes ASCII letters and digits, -._~, the sub-delimiters !$&'()*+,;=,
// ':', '@' and '%'.
func notUserinfo(r rune) bool {
	return !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || strings.ContainsRune("-._~!$&'()*+,;=:@%", r))
}

// endsScriptString reports whether s, spliced into a string of a script,
// ends it.
func endsScriptString(s string) bool {
	return strings.ContainsAny(s, "'\"`") || strings.Contains(s, "${")
}

// isJSONDocument reports whether v is a JSON object or array.
func isJSONDocument(v []byte) bool {
	t := bytes.TrimLeft(v, " \t\n\r")
	return len(t) > 0 && (t[0] == '{' || t[0] == '[') && json.Valid(v)
}

// notScriptToken reports whether r cuts a value into script tokens: all
// but the letters, digits, combining marks, '_' and '$' that JavaScript's
// names and numbers are made of ('.', which a number may hold, cuts the
// names of a member access).
func notScriptToken(r rune) bool {
	return !(unicode.IsLetter(r) || unicode.IsNumber(r) || unicode.IsMark(r) || r == '_' || r == '$')
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

// ScriptUnescaped is src with each escape read as the character it stands
// for, in a name or a string, as goja reads it (writeEscape).
func ScriptUnescaped(src string) string {
	var b strings.Builder
	for i := 0; i < len(src); i++ {
		if src[i] != '\\' || i+1 == len(src) {
			b.WriteByte(src[i])
			continue
		}
		i += writeEscape(&b, src[i:]) - 1
	}
	return b.String()
}

// scriptLiterals returns what a script reads from s spliced into a string
// literal quoted with each of ', " and ` (an INLINE's '${…}'), its escapes
// decoded (writeEscape), which is what the script returns, concatenates
// or throws: all of s, for a literal s does not end; for one it ends (its
// quote, or ${ in a template), when cut, each piece of s that stays in a
// literal, the code between them left out (Parts cuts it into names). A
// template reads a CR and a CRLF as a LF; a ' or " literal holding either
// does not compile.
func scriptLiterals(s string, cut bool) []string {
	var out []string
	for _, quote := range []byte{'\'', '"', '`'} {
		var pieces []string
		var b strings.Builder
		closer := byte(0) // what ends the code s is in past a piece; 0 in a literal
		for i := 0; i < len(s); i++ {
			switch c := s[i]; {
			case closer != 0:
				if c == closer {
					closer = 0
				}
			case c == '\\' && i+1 < len(s):
				i += writeEscape(&b, s[i:]) - 1
			case c == quote || quote == '`' && c == '$' && i+1 < len(s) && s[i+1] == '{':
				pieces, closer = append(pieces, b.String()), quote
				if c == '$' {
					closer = '}'
					i++
				}
				b.Reset()
			case c == '\r':
				b.WriteByte('\n')
				if i+1 < len(s) && s[i+1] == '\n' {
					i++
				}
			default:
				b.WriteByte(c)
			}
		}
		if closer == 0 {
			pieces = append(pieces, b.String())
		}
		if len(pieces) == 1 || cut {
			out = append(out, pieces...)
		}
	}
	return out
}

// writeEscape writes what the escape that s begins with (a backslash and
// at least one byte) stands for to b, as goja reads it in a string
// literal, and returns its length: \u0030, \u{30}, \x30, \60 (up to three
// octal digits, whatever their value: \477 is U+013F), \n and its kind,
// and \q (q itself); a line continuation (a backslash before a LF, CR,
// CRLF, U+2028 or U+2029) stands for nothing. Two \u escapes of a UTF-16
// surrogate pair stand for the one character. An escape goja refuses
// (\x4) stands for the character after the backslash.
func writeEscape(b *strings.Builder, s string) int {
	r, n := scriptEscape(s[1:])
	if utf16.IsSurrogate(r) && 1+n < len(s) && s[1+n] == '\\' && 2+n < len(s) {
		if low, m := scriptEscape(s[2+n:]); utf16.IsSurrogate(low) {
			if pair := utf16.DecodeRune(r, low); pair != utf8.RuneError {
				b.WriteRune(pair)
				return 2 + n + m
			}
		}
	}
	if r >= 0 {
		b.WriteRune(r)
	}
	return 1 + n
}

// scriptEscape reads the escape that s, the text after a backslash, begins
// with: the character it stands for (-1 for none) and its length.
func scriptEscape(s string) (rune, int) {
	hex := func(digits string) (rune, bool) {
		v, err := strconv.ParseUint(digits, 16, 32)
		return rune(v), err == nil && v <= unicode.MaxRune
	}
	switch c := s[0]; {
	case c == 'u' && strings.HasPrefix(s, "u{"):
		if end := strings.IndexByte(s, '}'); end > 2 {
			if r, ok := hex(s[2:end]); ok {
				return r, end + 1
			}
		}
	case c == 'u' && len(s) >= 5:
		if r, ok := hex(s[1:5]); ok {
			return r, 5
		}
	case c == 'x' && len(s) >= 3:
		if r, ok := hex(s[1:3]); ok {
			return r, 3
		}
	case '0' <= c && c <= '7':
		n := 1
		for n < len(s) && n < 3 && '0' <= s[n] && s[n] <= '7' {
			n++
		}
		v, _ := strconv.ParseUint(s[:n], 8, 32)
		return rune(v), n
	case strings.HasPrefix(s, "\r\n"):
		return -1, 2
	case c == '\n' || c == '\r':
		return -1, 1
	case strings.HasPrefix(s, "\u2028") || strings.HasPrefix(s, "\u2029"):
		return -1, len("\u2028")
	}
	if i := strings.IndexByte("bfnrtv", s[0]); i >= 0 {
		return rune("\b\f\n\r\t\v"[i]), 1
	}
	r, n := utf8.DecodeRuneInString(s)
	return r, n
}
