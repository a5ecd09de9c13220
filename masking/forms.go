package masking

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// forms are the encodings of v redaction looks for: v as it is, as the
// common JSON encoders and URL encoders write it, base64- and hex-encoded.
// Most coincide for most values (a value of letters and digits is written
// the same by every JSON and URL encoder), and are not computed then;
// With keeps one of each. wrapped are v's standard base64 forms with
// their edges (base64Edges), which out holds too: redaction looks for
// them across line breaks as well.
func forms(v []byte) (out []string, wrapped []base64Form) {
	s := string(v)
	out = appendJSONForms([]string{s}, s)
	// JSON text held in a JSON string (a log line quoting a request's
	// JSON body, a document stored as a string field) escapes the
	// value's escapes again: pa"ss is pa\\\"ss there. The encoder that
	// wrote the text need not be the one that escapes it again (a Python
	// worker logs the body Go wrote): every pair is looked for.
	once := len(out)
	for i, f := range out[1:once] {
		if slices.Contains(out[1:1+i], f) {
			continue // another encoder's form too
		}
		for _, st := range jsonStyles {
			if d := st.escape(f); !slices.Contains(out[once:], d) {
				out = append(out, d)
			}
		}
	}
	// A value's canonically equivalent spellings (é as one code point, or
	// as e and a combining accent) are the same text to whoever reads
	// them: a worker that normalizes what it handles, or writes it into
	// a macOS file name, which is decomposed, echoes the other one.
	nonASCII := strings.ContainsFunc(s, func(r rune) bool { return r >= 0x80 })
	if nonASCII {
		for _, f := range []norm.Form{norm.NFC, norm.NFD} {
			if n := f.String(s); n != s && !slices.Contains(out, n) {
				out = appendJSONForms(append(out, n), n)
			}
		}
	}
	// A value that holds percent-escapes, written into an HTTP task's
	// uri as it is, reaches the server decoded (ab%4Fcd as abOcd), which
	// an answer quoting the path or the query back holds, as JSON if it
	// is JSON.
	// A query's decoders also read '+' as a space: a base64 value, which
	// holds no escape, reaches the server so.
	dec := percentDecode(s, false)
	if dec != s {
		out = appendJSONForms(append(out, dec), dec)
	}
	if plus := percentDecode(s, true); plus != s && plus != dec {
		out = appendJSONForms(append(out, plus), plus)
	}
	// RFC 3986 makes percent-encoding's hex digits case-insensitive, and
	// some encoders write them in lower case.
	if strings.ContainsFunc(s, percentEscaped) {
		for _, st := range percentStyles {
			out = append(out, st.encode(s, upperHex), st.encode(s, lowerHex))
		}
	}
	// A page or a document that quotes the value back (an error page
	// naming the rejected token) escapes it as HTML or XML, and may write
	// its non-ASCII characters as references.
	escaped := []string{s}
	if strings.ContainsAny(s, htmlSpecial) {
		escaped = nil
		for _, r := range htmlStyles {
			escaped = append(escaped, r.Replace(s))
		}
		out = append(out, escaped...)
	}
	if nonASCII {
		for _, e := range escaped {
			for _, st := range charRefStyles {
				out = append(out, charRefs(e, st))
			}
		}
	}
	// A server that reads a header's bytes as ISO-8859-1 (as HTTP/1.1's
	// first specification said, and Python's http.server does) echoes a
	// non-ASCII value as the characters of its UTF-8 bytes.
	if nonASCII {
		out = append(out, latin1(v))
	}
	// The URL alphabet's forms are the standard's with '-' and '_' for
	// '+' and '/': no form reaches the padding, where the two encodings
	// could differ.
	wrapped = base64Edges(v)
	for _, b := range wrapped {
		out = append(out, b.form)
	}
	for _, b := range wrapped {
		out = append(out, strings.Map(urlAlphabet, b.form))
	}
	// A value printed as bytes (a worker's debug line of what it sends,
	// a digest's input logged) is hex, in lower case (Go's %x and
	// hex.EncodeToString, Python's bytes.hex) or upper (%X, .NET's
	// Convert.ToHexString). Hex keeps each byte to itself: a value's
	// form is in the hex of any data that holds the value.
	h := hex.EncodeToString(v)
	out = append(out, h, strings.ToUpper(h))
	return out, wrapped
}

// appendJSONForms appends s as the encoders of jsonStyles write it, when
// any writes it other than as it is.
func appendJSONForms(out []string, s string) []string {
	if !strings.ContainsFunc(s, jsonEscaped) {
		return out
	}
	for _, st := range jsonStyles {
		f := st.escape(s)
		out = append(out, f)
		// Some encoders (Jackson for control characters, .NET with its
		// relaxed encoder) write \uXXXX with upper-case digits.
		if u := upperUnicodeEscapes(f); u != f {
			out = append(out, u)
		}
	}
	return out
}

// percentDecode returns s with its %XX escapes decoded, and '+' as a
// space if plus (a query's decoders read it so). A '%' that does not
// start an escape is kept, as Python's unquote keeps it (Go's refuses
// the whole text).
func percentDecode(s string, plus bool) string {
	if !strings.Contains(s, "%") && !(plus && strings.Contains(s, "+")) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]):
			b.WriteByte(unhex(s[i+1])<<4 | unhex(s[i+2]))
			i += 2
		case c == '+' && plus:
			b.WriteByte(' ')
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

func isHex(c byte) bool { return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' }

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	}
	return c - 'a' + 10
}

// htmlSpecial are the characters HTML and XML escapers write as entities.
const htmlSpecial = `&<>"'`

// htmlStyles are the common HTML and XML escapers' ways, which differ in
// the quotes: Go's html.EscapeString, Python's html.escape, PHP's
// htmlspecialchars, XML's predefined entities, Java's escapeHtml4 (quotes
// but not apostrophes) and text content escaped as little as it may be.
var htmlStyles = []*strings.Replacer{
	strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&#34;", "'", "&#39;"),
	strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;", "'", "&#x27;"),
	strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;", "'", "&#039;"),
	strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;", "'", "&apos;"),
	strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;"),
	strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;"),
}

// latin1 is v's bytes read as ISO-8859-1, each one character.
func latin1(v []byte) string {
	var b strings.Builder
	for _, c := range v {
		b.WriteRune(rune(c))
	}
	return b.String()
}

// jsonEscaped reports whether an encoder of jsonStyles writes r other
// than as it is (U+FFFD stands for a byte that is not UTF-8).
func jsonEscaped(r rune) bool {
	return r < 0x20 || r == '"' || r == '\\' || r == '/' || r == '<' || r == '>' || r == '&' || r == '\'' || r == '+' || r == '`' || r >= 0x7f
}

// percentEscaped reports whether an encoder of percentStyles writes r
// other than as it is: they all keep ASCII letters, digits and -_.
func percentEscaped(r rune) bool {
	return !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '-' || r == '_' || r == '.')
}

// upperUnicodeEscapes returns JSON string text s with the hex digits of
// its \uXXXX escapes in upper case.
func upperUnicodeEscapes(s string) string {
	if !strings.Contains(s, `\u`) {
		return s
	}
	b := []byte(s)
	for i := 0; i+1 < len(b); i++ {
		if b[i] != '\\' {
			continue
		}
		if b[i+1] == 'u' {
			for j := i + 2; j < i+6 && j < len(b); j++ {
				if 'a' <= b[j] && b[j] <= 'f' {
					b[j] -= 'a' - 'A'
				}
			}
		}
		i++ // past the escaped character: \\u is a backslash and a u
	}
	return string(b)
}

const (
	upperHex = "0123456789ABCDEF"
	lowerHex = "0123456789abcdef"
)

// jsonStyle is how an encoder writes a string in JSON beyond what every
// encoder does: escape ", \ and the control characters, with \b, \f, \n,
// \r and \t for those that have one and \u00XX for the others.
type jsonStyle struct {
	html     bool // <, > and & as \u003c, \u003e and \u0026
	lineSeps bool // U+2028 and U+2029 as \u2028 and \u2029
	slash    bool // / as \/
	ascii    bool // every other non-ASCII character as \uXXXX, in UTF-16
	del      bool // DEL (0x7f) as \u007f
	quotes   bool // ", ', + and ` as \u0022, \u0027, \u002B and \u0060
	upper    bool // \uXXXX with upper-case hex digits
}

// jsonStyles are the common encoders' ways: Go's json.Marshal alone
// escapes what the others leave as it is (& in pa"ss&w0rd), and what is
// pasted from a JavaScript, jq, Python or PHP program is written their way.
var jsonStyles = []jsonStyle{
	{html: true, lineSeps: true}, // Go's json.Marshal
	{lineSeps: true},             // Go's json.Encoder with SetEscapeHTML(false)
	{},                           // JavaScript's JSON.stringify, jq's tojson, Jackson, Python's json.dumps(ensure_ascii=False)
	{ascii: true, del: true},     // Python's json.dumps
	{ascii: true, slash: true},   // PHP's json_encode
	{slash: true},                // PHP's json_encode with JSON_UNESCAPED_UNICODE
	// .NET's System.Text.Json, whose default encoder escapes what HTML
	// and JavaScript could read as markup or code, even a quote or a
	// base64 value's '+': a C# worker's JSON log line quoting the body it
	// sent has pa"ss+1 as pa\u0022ss\u002B1.
	{html: true, ascii: true, del: true, quotes: true, upper: true},
}

// escape returns s as a JSON string written in style st, without its
// quotes. Bytes that are not UTF-8 read as U+FFFD, as encoding/json has
// them; no other encoder takes such a string.
func (st jsonStyle) escape(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			i++
			switch {
			case st.quotes && (c == '"' || c == '\'' || c == '+' || c == '`'):
				st.writeUnicodeEscape(&b, rune(c))
			case c == '"' || c == '\\' || c == '/' && st.slash:
				b.WriteByte('\\')
				b.WriteByte(c)
			case c == '\b':
				b.WriteString(`\b`)
			case c == '\f':
				b.WriteString(`\f`)
			case c == '\n':
				b.WriteString(`\n`)
			case c == '\r':
				b.WriteString(`\r`)
			case c == '\t':
				b.WriteString(`\t`)
			case c < 0x20 || st.html && (c == '<' || c == '>' || c == '&') || st.del && c == 0x7f:
				st.writeUnicodeEscape(&b, rune(c))
			default:
				b.WriteByte(c)
			}
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			st.writeUnicodeEscape(&b, utf8.RuneError)
		case st.ascii || st.lineSeps && (r == '\u2028' || r == '\u2029'):
			if r1, r2 := utf16.EncodeRune(r); r1 != utf8.RuneError {
				st.writeUnicodeEscape(&b, r1)
				st.writeUnicodeEscape(&b, r2)
			} else {
				st.writeUnicodeEscape(&b, r)
			}
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

// writeUnicodeEscape writes \uXXXX for r, below U+10000, with the hex
// digits of st's case.
func (st jsonStyle) writeUnicodeEscape(b *strings.Builder, r rune) {
	digits := lowerHex
	if st.upper {
		digits = upperHex
	}
	b.WriteString(`\u`)
	for shift := 12; shift >= 0; shift -= 4 {
		b.WriteByte(digits[r>>shift&0xF])
	}
}

// percentStyle is which bytes a URL encoder leaves as they are, besides
// ASCII letters and digits, and how it writes a space.
type percentStyle struct {
	keep  string
	space string
}

// percentStyles are the common encoders'. Go's escape the sub-delimiters
// !'()* that JavaScript's encodeURIComponent leaves alone, so that
// p@ss w!rd is p%40ss+w%21rd to one and p%40ss%20w!rd to the other.
var percentStyles = []percentStyle{
	{"-_.~", "+"},            // Go's url.QueryEscape, Python's quote_plus, HTML forms
	{"-_.~", "%20"},          // Python's quote(s, safe=""), Go's url.QueryEscape with + read as %20
	{"-_.~/", "%20"},         // Python's quote(s)
	{"-_.~$&+:=@", "%20"},    // Go's url.PathEscape
	{"-_.~$&+,/:;=@", "%20"}, // Go's URL.EscapedPath: an HTTP task's request line
	{"-_.!~*'()", "%20"},     // JavaScript's encodeURIComponent
	{"-_.*", "+"},            // Java's URLEncoder
	// An HTTP task's query: only what may not stand in one is encoded
	// (workers/system's escapeQuery).
	{"-_.~!#$%&'()*+,/:;=?@[]", "%20"},
}

// encode returns s percent-encoded in style st, with hex's digits.
func (st percentStyle) encode(s, hex string) string {
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte(st.keep, c) >= 0:
			b.WriteByte(c)
		case c == ' ':
			b.WriteString(st.space)
		default:
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&0xF])
		}
	}
	return b.String()
}

// base64Form is one of a value's standard base64 forms: the characters
// that encode the value, at one of the three byte alignments, whatever
// its offset in a longer base64-encoded stream (the encoded characters
// whose bits come from the value alone); and whether the character
// before it (lead) and after it (trail) hold bits of the value beside
// those of its neighbours in the encoded data.
type base64Form struct {
	form        string
	lead, trail bool
}

// base64Edges returns v's standard base64 forms, at each alignment that
// has one.
func base64Edges(v []byte) []base64Form {
	// v after k zero bytes, for each alignment k, encoded one after the
	// other into one string that the forms are cut from.
	buf := make([]byte, 2+len(v))
	copy(buf[2:], v)
	enc := make([]byte, 0, 3*base64.StdEncoding.EncodedLen(len(buf)))
	var at [3]int // where alignment k's encoding starts in enc
	for k := range 3 {
		at[k] = len(enc)
		enc = base64.StdEncoding.AppendEncode(enc, buf[2-k:])
	}
	all := string(enc)
	var out []base64Form
	for k := range 3 {
		from, to := (8*k+5)/6, 8*(k+len(v))/6
		if to > from {
			out = append(out, base64Form{form: all[at[k]+from : at[k]+to], lead: 8*k%6 != 0, trail: 8*(k+len(v))%6 != 0})
		}
	}
	return out
}

// urlAlphabet maps a character of the standard base64 alphabet to the URL
// alphabet's.
func urlAlphabet(r rune) rune {
	switch r {
	case '+':
		return '-'
	case '/':
		return '_'
	}
	return r
}

// NumberForms returns the ways number v (a json.Number, an int, int64 or
// float64 as decoded JSON holds it) is written out, for redaction to look
// for inside text: as v holds it, and as encoding/json and JavaScript write
// its value, which agree (918273645501, 1e+21, 1.5e-7) but for an integer
// past 2^53, which JavaScript holds as the nearest float64. It returns nil
// for anything else.
func NumberForms(v any) []string {
	var out []string
	add := func(s string, ok bool) {
		if ok && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	add(numberText(v))
	switch x := v.(type) {
	case json.Number:
		if i, err := x.Int64(); err == nil {
			add(numberText(i))
		}
		if f, err := x.Float64(); err == nil {
			add(numberText(f))
		}
	case int:
		add(numberText(float64(x)))
	case int64:
		add(numberText(float64(x)))
	}
	return out
}

// numberText returns number v as encoding/json writes it.
func numberText(v any) (string, bool) {
	switch x := v.(type) {
	case json.Number:
		return string(x), x != ""
	case int:
		return strconv.Itoa(x), true
	case int64:
		return strconv.FormatInt(x, 10), true
	case float64:
		b, err := json.Marshal(x) // NaN and infinities fail
		return string(b), err == nil
	}
	return "", false
}

// isNumber reports whether value v is a JSON number.
func isNumber(v []byte) bool {
	return len(v) > 0 && (v[0] == '-' || '0' <= v[0] && v[0] <= '9') && json.Valid(v)
}
