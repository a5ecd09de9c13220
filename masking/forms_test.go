package masking

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"html"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// A value is redacted as other programs than Go's write it: JSON encoders
// that do not escape &, < and > or that escape / and non-ASCII characters,
// URL encoders that leave !'()* alone or write hex digits in lower case,
// \uXXXX escapes with upper-case digits, .NET's that escapes quotes and
// '+' too; and its canonically equivalent spelling (NFC, NFD).
// The encoded texts are those the named encoders print.
func TestRedactOtherEncoders(t *testing.T) {
	const (
		quoted  = `pa"ss&w0rd-xyz`
		spaced  = `p@ss w!rd-1`
		unicode = `café/naïve<b>&😀`
		symbols = `x7#K0!2mQ$9vL~4*(n)'`
		control = "tab\there\x1fand-more"
		deleted = "pw\x7fe3ad3be95f64dc0b"
		phrase  = "correct horse, battery staple/x;y"
		escapes = "ab%4Fcd%2fx+y9%zz"
		angled  = "pw%3Cx%3E-secret"
		plussed = "ab+cd/ef+gh9=="
		latin   = "Pässwort-Grüße-2024 €"
		nfd     = "Pa\u0308sswo\u0308rter-Grun-2024" // decomposed: a and o, each then a combining diaeresis
	)
	all := NewRedactor([]byte(quoted), []byte(spaced), []byte(unicode), []byte(symbols), []byte(control), []byte(deleted), []byte(phrase),
		[]byte(escapes), []byte(angled), []byte(plussed), []byte(latin), []byte(nfd))
	for _, tc := range []struct {
		encoder, secret, encoded string
	}{
		{"Go json.Marshal", quoted, `pa\"ss\u0026w0rd-xyz`},
		{"Go json.Marshal", unicode, `café/naïve\u003cb\u003e\u0026😀`},
		{"JSON.stringify", quoted, `pa\"ss&w0rd-xyz`},
		{"jq tojson", unicode, `café/naïve<b>&😀`},
		{"Python json.dumps", unicode, `caf\u00e9/na\u00efve<b>&\ud83d\ude00`},
		{"Python json.dumps", deleted, `pw\u007fe3ad3be95f64dc0b`},
		{"upper-case \\u digits (.NET, Jackson)", unicode, `caf\u00E9/na\u00EFve<b>&\uD83D\uDE00`},
		{"Jackson", control, `tab\there\u001Fand-more`},
		{".NET System.Text.Json", quoted, `pa\u0022ss\u0026w0rd-xyz`},
		{".NET System.Text.Json", plussed, `ab\u002Bcd/ef\u002Bgh9==`},
		{".NET System.Text.Json", symbols, `x7#K0!2mQ$9vL~4*(n)\u0027`},
		{".NET System.Text.Json", unicode, `caf\u00E9/na\u00EFve\u003Cb\u003E\u0026\uD83D\uDE00`},
		{"PHP json_encode", unicode, `caf\u00e9\/na\u00efve<b>&\ud83d\ude00`},
		{"PHP json_encode JSON_UNESCAPED_UNICODE", unicode, `café\/naïve<b>&😀`},
		{"Go url.QueryEscape", spaced, `p%40ss+w%21rd-1`},
		{"Go url.PathEscape", spaced, `p@ss%20w%21rd-1`},
		{"Go URL.EscapedPath (an HTTP task's request line)", phrase, `correct%20horse,%20battery%20staple/x;y`},
		{"an HTTP task's query", spaced, `p@ss%20w!rd-1`},
		{"an HTTP task's query", unicode, `caf%C3%A9/na%C3%AFve%3Cb%3E&%F0%9F%98%80`},
		{"encodeURIComponent", spaced, `p%40ss%20w!rd-1`},
		{"encodeURIComponent", symbols, `x7%23K0!2mQ%249vL~4*(n)'`},
		{"encodeURIComponent", unicode, `caf%C3%A9%2Fna%C3%AFve%3Cb%3E%26%F0%9F%98%80`},
		{"Python quote", unicode, `caf%C3%A9/na%C3%AFve%3Cb%3E%26%F0%9F%98%80`},
		{"Java URLEncoder", symbols, `x7%23K0%212mQ%249vL%7E4*%28n%29%27`},
		{"lower-case hex", unicode, `caf%c3%a9%2fna%c3%afve%3cb%3e%26%f0%9f%98%80`},
		{"lower-case hex", symbols, `x7%23K0%212mQ%249vL~4%2a%28n%29%27`},
		// A server quoting back the path or query an HTTP task's uri
		// sent it with the value as it is: decoded.
		{"Go URL.Path, Python unquote", escapes, `abOcd/x+y9%zz`},
		{"Go URL.Query, Python unquote_plus", escapes, `abOcd/x y9%zz`},
		{"a decoded query as Go's json.Marshal writes it", angled, `pw\u003cx\u003e-secret`},
		// A base64 value, '+' and no escape, in a query: '+' reads as a
		// space.
		{"Go URL.Query, Python unquote_plus", plussed, `ab cd/ef gh9==`},
		// An error page quoting the rejected value back.
		{"Go html.EscapeString", quoted, `pa&#34;ss&amp;w0rd-xyz`},
		{"Go html.EscapeString", symbols, `x7#K0!2mQ$9vL~4*(n)&#39;`},
		{"Python html.escape", unicode, `café/naïve&lt;b&gt;&amp;😀`},
		{"Python html.escape", symbols, `x7#K0!2mQ$9vL~4*(n)&#x27;`},
		{"PHP htmlspecialchars", symbols, `x7#K0!2mQ$9vL~4*(n)&#039;`},
		{"XML", symbols, `x7#K0!2mQ$9vL~4*(n)&apos;`},
		{"Java escapeHtml4", quoted, `pa&quot;ss&amp;w0rd-xyz`},
		// Its non-ASCII characters as references.
		{"Java escapeHtml4, PHP htmlentities", latin, `P&auml;sswort-Gr&uuml;&szlig;e-2024 &euro;`},
		{"Java escapeHtml4", unicode, `caf&eacute;/na&iuml;ve&lt;b&gt;&amp;😀`},
		{".NET WebUtility.HtmlEncode", latin, `P&#228;sswort-Gr&#252;&#223;e-2024 €`},
		{".NET WebUtility.HtmlEncode", unicode, `caf&#233;/na&#239;ve&lt;b&gt;&amp;&#128512;`},
		{"Python xmlcharrefreplace", latin, `P&#228;sswort-Gr&#252;&#223;e-2024 &#8364;`},
		{"lxml writing ASCII", latin, `P&#xE4;sswort-Gr&#xFC;&#xDF;e-2024 &#x20AC;`},
		// Its canonically equivalent spelling, composed or decomposed.
		{"NFD (a macOS file name, a normalizing worker)", latin, "Pa\u0308sswort-Gru\u0308\u00dfe-2024 \u20ac"},
		{"NFD in JSON (Python json.dumps)", latin, `Pa\u0308sswort-Gru\u0308\u00dfe-2024 \u20ac`},
		{"NFC", nfd, "P\u00e4ssw\u00f6rter-Grun-2024"},
		// A header's UTF-8 bytes read as ISO-8859-1 (Python's http.server).
		{"Latin-1 reading", unicode, "cafÃ©/naÃ¯ve<b>&ð"},
	} {
		text := `{"note":"sent ` + tc.encoded + ` upstream"}`
		want := `{"note":"sent *** upstream"}`
		for name, r := range map[string]*Redactor{"alone": NewRedactor([]byte(tc.secret)), "with others": all} {
			if got := r.String(text); got != want {
				t.Errorf("%s, %s: %s redacted to %s", tc.encoder, name, text, got)
			}
		}
	}
}

// JSON text held in a JSON string (a worker's JSON log line quoting the
// JSON body it sent, a document stored as a string field) escapes a
// value's escapes again; the two encoders need not be the same.
func TestRedactJSONInJSON(t *testing.T) {
	goHTML := func(s string) string { b, _ := json.Marshal(s); return string(b[1 : len(b)-1]) }
	goPlain := func(s string) string {
		var b bytes.Buffer
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false)
		_ = enc.Encode(s)
		return b.String()[1 : b.Len()-2]
	}
	encoders := []struct {
		name   string
		escape func(string) string
	}{
		{"json.Marshal", goHTML},
		{"json.Encoder without HTML escaping", goPlain},
		{"Python json.dumps", jsonStyles[3].escape},
		{"PHP json_encode", jsonStyles[4].escape},
		{".NET System.Text.Json", jsonStyles[6].escape},
	}
	for _, secret := range []string{`pa"ss\w0rd-xyz`, `café/naïve<b>&😀`, "tab\there\x1fand-more", `ab+cd/ef+gh9==`} {
		r := NewRedactor([]byte(secret))
		for _, inner := range encoders {
			for _, outer := range encoders {
				text := `{"line":"` + outer.escape(`{"password":"`+inner.escape(secret)+`"}`) + `"}`
				want := `{"line":"` + outer.escape(`{"password":"`) + Mask + outer.escape(`"}`) + `"}`
				if got := r.String(text); got != want {
					t.Errorf("%q, %s in %s: %s redacted to %s", secret, inner.name, outer.name, text, got)
				}
			}
		}
	}
}

// A value base64-encoded by a tool that wraps lines (MIME, Python's
// base64.encodebytes, the base64 command, openssl, PEM) is redacted
// whole, where the encoded data starts with it and where it lies
// anywhere in it: behind a prefix of each length, a break falls at every
// place of its form. Text around it, and lines of other data, are left
// as they were.
func TestRedactWrappedBase64(t *testing.T) {
	value := make([]byte, 40)
	rand.Read(value)
	value = []byte(base64.RawURLEncoding.EncodeToString(value)) // printable, as a password is
	r := NewRedactor(value)
	wrap := func(e string, width int, sep string) string {
		var lines []string
		for i := 0; i < len(e); i += width {
			lines = append(lines, e[i:min(i+width, len(e))])
		}
		return strings.Join(lines, sep) + sep
	}
	for prefix := 0; prefix < 80; prefix++ {
		data := append([]byte(strings.Repeat("#", prefix)+"\nDB_PASSWORD="), value...)
		data = append(data, "\nDB_HOST=db.internal\n"...)
		e := base64.StdEncoding.EncodeToString(data)
		for name, encoded := range map[string]string{"base64, encodebytes": wrap(e, 76, "\n"), "MIME": wrap(e, 76, "\r\n"),
			"openssl, PEM": wrap(e, 64, "\n")} {
			got := r.String("-----BEGIN-----\n" + encoded + "-----END-----")
			unwrapped := strings.NewReplacer("\r", "", "\n", "").Replace(strings.TrimSuffix(strings.TrimPrefix(got, "-----BEGIN-----\n"), "-----END-----"))
			leaked := slices.ContainsFunc(base64Edges(value), func(f base64Form) bool { return strings.Contains(unwrapped, f.form) })
			if !strings.Contains(got, "***") || leaked ||
				!strings.HasPrefix(got, "-----BEGIN-----\n") || !strings.HasSuffix(got, "-----END-----") {
				t.Fatalf("%s behind %d bytes: redacted to %q", name, prefix, got)
			}
		}
	}
	other := wrap(base64.StdEncoding.EncodeToString([]byte(strings.Repeat("unrelated data ", 20))), 76, "\n")
	if got := r.String(other); got != other {
		t.Fatalf("other data changed: %q", got)
	}
}

// forms skips the JSON and URL encoders for a value none of them changes:
// what it takes for unchanged is. Every encoder works character by
// character, so each character is tried alone.
func TestFormsSkipOnlyWhatNoEncoderChanges(t *testing.T) {
	var runes []rune
	for r := rune(0); r < 0x300; r++ {
		runes = append(runes, r)
	}
	runes = append(runes, '\u2028', '\u2029', '😀', utf8.RuneError)
	for _, r := range runes {
		s := string(r)
		if !jsonEscaped(r) {
			for _, st := range jsonStyles {
				if f := st.escape(s); f != s {
					t.Errorf("%q: not JSON-escaped, but a style writes %q", s, f)
				}
			}
		}
		if !percentEscaped(r) {
			for _, st := range percentStyles {
				if f := st.encode(s, lowerHex); f != s {
					t.Errorf("%q: not percent-escaped, but a style writes %q", s, f)
				}
			}
		}
	}
	if got := upperUnicodeEscapes(`a\\u00e9 \u00e9\\\u00ff`); got != `a\\u00e9 \u00E9\\\u00FF` {
		t.Errorf("upper-case escapes: %s", got)
	}
}

// The JSON and URL encoders' forms that Go has are Go's, to the byte.
func TestFormsMatchGo(t *testing.T) {
	values := []string{"", `pa"ss&w0rd-xyz`, "a\x00b\x1f\b\f\n\r\t\x7f", "<>&'=+/?#[]@!$()*,;: ~", "é\u2028\u2029😀", "\xff\xfe bad \xc3"}
	for range 200 {
		b := make([]byte, 24)
		rand.Read(b)
		values = append(values, string(b))
	}
	for _, s := range values {
		marshaled, _ := json.Marshal(s)
		var encoded bytes.Buffer
		enc := json.NewEncoder(&encoded)
		enc.SetEscapeHTML(false)
		_ = enc.Encode(s)
		for _, tc := range []struct {
			name, got, want string
		}{
			{"json.Marshal", jsonStyles[0].escape(s), string(marshaled[1 : len(marshaled)-1])},
			{"json.Encoder without HTML escaping", jsonStyles[1].escape(s), strings.TrimSuffix(encoded.String(), "\n")[1 : encoded.Len()-2]},
			{"url.QueryEscape", percentStyles[0].encode(s, upperHex), url.QueryEscape(s)},
			{"url.PathEscape", percentStyles[3].encode(s, upperHex), url.PathEscape(s)},
			{"URL.EscapedPath", percentStyles[4].encode(s, upperHex), (&url.URL{Path: s}).EscapedPath()},
		} {
			if tc.got != tc.want {
				t.Errorf("%s of %q: %q, want %q", tc.name, s, tc.got, tc.want)
			}
		}
	}
}

// Each of the HTML 4 entities of non-ASCII characters names its character
// as a browser (Go's html package) reads it, and none is missing: HTML
// 4.01 names 248 such characters, lang and rang left out.
func TestHTML4EntitiesMatchGo(t *testing.T) {
	m := html4Entities()
	for r, name := range m {
		if got := html.UnescapeString("&" + name + ";"); got != string(r) {
			t.Errorf("&%s; reads %q, want %q", name, got, string(r))
		}
	}
	if len(m) != 246 {
		t.Errorf("%d entities, want 246", len(m))
	}
}

// What a redactor searches for stands for the forms it redacts: each holds
// one of the strings searched for, which are fewer; a value whose forms
// share a long enough run is searched for by that run.
func TestSearchCoversForms(t *testing.T) {
	for _, tc := range []struct {
		value, first string
	}{
		{`pa"ss&w0rd-xyz`, "w0rd-xyz"},
		{`x7#K00!2mQ$9vL&4nR*8w/é"`, "x7#K00!2mQ$9vL"},
		{`P@ss!w0rd`, `P@ss!w0rd`}, // w0rd is too short to stand for it
		{"secret-value-00", "secret-value-00"},
		{"-----BEGIN KEY-----\nMIIEvAIBADANBgkqhkiG9w0B/AQEFAASCBKYwggSiAgEAAoIBAQC7+\n-----END KEY-----", "AQEFAASCBKYwggSiAgEAAoIBAQC7"},
	} {
		r := NewRedactor([]byte(tc.value))
		if r.search[0] != tc.first {
			t.Errorf("%q: searched for as %q, want %q", tc.value, r.search[0], tc.first)
		}
		if len(r.search) > len(r.needles) {
			t.Errorf("%q: %d strings searched for %d forms", tc.value, len(r.search), len(r.needles))
		}
		checkSearchCovers(t, r)
	}
}

func checkSearchCovers(t *testing.T, r *Redactor) {
	t.Helper()
	for _, n := range r.needles {
		if !slices.ContainsFunc(r.search, func(a string) bool { return strings.Contains(n, a) }) {
			t.Fatalf("form %q holds none of %q", n, r.search)
		}
	}
}

// A number equal to a value is redacted whole, to "***"; so is one
// written inside a string. Numbers below the floor, and other numbers,
// stay as they are.
func TestRedactNumbers(t *testing.T) {
	r := NewRedactor([]byte("918273645501"), []byte("4321"), []byte("not-a-number"))
	in := map[string]any{
		"int": int64(918273645501), "float": float64(918273645501), "number": json.Number("918273645501"), "go int": 918273645501,
		"text": "pin 918273645501", "short": int64(4321), "other": int64(918273645502), "list": []any{int64(918273645501), 1.5},
	}
	want := map[string]any{
		"int": Mask, "float": Mask, "number": Mask, "go int": Mask,
		"text": "pin ***", "short": int64(4321), "other": int64(918273645502), "list": []any{Mask, 1.5},
	}
	if got := r.Map(in); !reflect.DeepEqual(got, want) {
		t.Fatalf("redacted %v\nwant %v", got, want)
	}
	// A redactor without numbers leaves them alone, uncopied.
	clean := map[string]any{"n": int64(918273645501)}
	if got := NewRedactor([]byte("not-a-number")).Map(clean); reflect.ValueOf(got).UnsafePointer() != reflect.ValueOf(clean).UnsafePointer() {
		t.Fatal("a map without values was copied")
	}
}

func TestNumberForms(t *testing.T) {
	for _, tc := range []struct {
		v    any
		want []string
	}{
		{json.Number("918273645501"), []string{"918273645501"}},
		{json.Number("918273645501.0"), []string{"918273645501.0", "918273645501"}},
		{json.Number("1.5E-7"), []string{"1.5E-7", "1.5e-7"}},
		{int64(918273645501), []string{"918273645501"}},
		// JavaScript holds an integer past 2^53 as the nearest float64.
		{int64(9182736455012345678), []string{"9182736455012345678", "9182736455012346000"}},
		{1e21, []string{"1e+21"}},
		{0.000001, []string{"0.000001"}},
		{"918273645501", nil},
		{true, nil},
	} {
		if got := NumberForms(tc.v); !slices.Equal(got, tc.want) {
			t.Errorf("NumberForms(%#v) = %q, want %q", tc.v, got, tc.want)
		}
	}
}

// Reading base64 through line breaks stays linear: a text of a million
// breaks between two base64 characters (a worker's output, a webhook's
// payload) is read once, not once per break, which would not finish
// within the test binary's timeout. The text, holding no value, comes
// back as it was.
func TestUnwrapLongRunsOfBreaks(t *testing.T) {
	r := NewRedactor([]byte("a-secret-value-0123"))
	s := "a" + strings.Repeat("\n", 1<<20) + "b" + strings.Repeat("\r\nQUJD", 1<<17)
	if got := r.String(s); got != s {
		t.Fatal("text without the value changed")
	}
}

// A base64 form leaves no bit of the value at its edges: the characters
// that hold some of the value's bits beside the neighbours' are masked
// with it, whatever the value's place in the encoded data.
func TestRedactBase64Edges(t *testing.T) {
	value := make([]byte, 24)
	rand.Read(value)
	value = []byte(base64.RawURLEncoding.EncodeToString(value))
	r := NewRedactor(value)
	for _, prefix := range []string{"", "x", "xy", "xyz"} {
		for _, suffix := range []string{"", "\n", "ab", "abc"} {
			data := prefix + string(value) + suffix
			e := base64.StdEncoding.EncodeToString([]byte(data))
			got := r.String(e)
			at := strings.Index(got, Mask)
			if at < 0 || strings.Count(got, Mask) != 1 {
				t.Fatalf("%q+value+%q: redacted to %q", prefix, suffix, got)
			}
			masked := len(e) - (len(got) - len(Mask)) // characters of e the mask stands for
			if got[:at] != e[:at] || got[at+len(Mask):] != e[at+masked:] {
				t.Fatalf("%q+value+%q: %q is not %q with one range masked", prefix, suffix, got, e)
			}
			// Every character holding a bit of the value is in the range.
			first, last := 8*len(prefix)/6, (8*(len(prefix)+len(value))-1)/6
			if first < at || last >= at+masked {
				t.Errorf("%q+value+%q: characters %d..%d hold the value, %d..%d are masked: %q", prefix, suffix,
					first, last, at, at+masked-1, got)
			}
		}
	}
}

// forms returns each of a value's forms, in the order With takes them
// (which decides the search appendSearch builds), as it did before it
// encoded each base64 alignment once for both alphabets: the table is
// what it returned then, the first of each form, for values whose base64
// holds '+' and '/', of each length mod 3, of non-ASCII bytes and
// numbers.
func TestFormsUnchanged(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		value string
		want  []string
	}{
		{"secret-value-01", []string{
			"secret-value-01",
			"c2VjcmV0LXZhbHVlLTAx",
			"NlY3JldC12YWx1ZS0wM",
			"zZWNyZXQtdmFsdWUtMD",
			"7365637265742d76616c75652d3031",
			"7365637265742D76616C75652D3031",
		}},
		{"secret-value-0001", []string{
			"secret-value-0001",
			"c2VjcmV0LXZhbHVlLTAwMD",
			"NlY3JldC12YWx1ZS0wMDAx",
			"zZWNyZXQtdmFsdWUtMDAwM",
			"7365637265742d76616c75652d30303031",
			"7365637265742D76616C75652D30303031",
		}},
		{"918273645501", []string{
			"918273645501",
			"OTE4MjczNjQ1NTAx",
			"kxODI3MzY0NTUwM",
			"5MTgyNzM2NDU1MD",
			"393138323733363435353031",
		}},
		{"-1.5e-7", []string{
			"-1.5e-7",
			"LTEuNWUtN",
			"0xLjVlLT",
			"tMS41ZS03",
			"2d312e35652d37",
			"2D312E35652D37",
		}},
		{"tr0ub~4dor~~~", []string{
			"tr0ub~4dor~~~",
			"tr0ub%7E4dor%7E%7E%7E",
			"tr0ub%7e4dor%7e%7e%7e",
			"dHIwdWJ+NGRvcn5+f",
			"RyMHVifjRkb3J+fn",
			"0cjB1Yn40ZG9yfn5+",
			"dHIwdWJ-NGRvcn5-f",
			"RyMHVifjRkb3J-fn",
			"0cjB1Yn40ZG9yfn5-",
			"74723075627e34646f727e7e7e",
			"74723075627E34646F727E7E7E",
		}},
		{"\xfb\xff\xbf\xfb\xef\xbe\xff\xfe", []string{
			"\xfb\xff\xbf\xfb\xef\xbe\xff\xfe",
			"\\ufffd\\ufffd\\ufffd\\ufffd\\ufffd\\ufffd\\ufffd\\ufffd",
			"\\uFFFD\\uFFFD\\uFFFD\\uFFFD\\uFFFD\\uFFFD\\uFFFD\\uFFFD",
			"\\\\ufffd\\\\ufffd\\\\ufffd\\\\ufffd\\\\ufffd\\\\ufffd\\\\ufffd\\\\ufffd",
			"\\\\uFFFD\\\\uFFFD\\\\uFFFD\\\\uFFFD\\\\uFFFD\\\\uFFFD\\\\uFFFD\\\\uFFFD",
			"%FB%FF%BF%FB%EF%BE%FF%FE",
			"%fb%ff%bf%fb%ef%be%ff%fe",
			"ûÿ¿ûï¾ÿþ",
			"+/+/++++//",
			"v/v/vvvv/+",
			"7/7/7777//",
			"-_-_----__",
			"v_v_vvvv_-",
			"7_7_7777__",
			"fbffbffbefbefffe",
			"FBFFBFFBEFBEFFFE",
		}},
	} {
		encoded, _ := forms([]byte(tc.value))
		var got []string // as With takes them: the first of each
		for _, f := range encoded {
			if !slices.Contains(got, f) {
				got = append(got, f)
			}
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("forms(%q):\n got %q\nwant %q", tc.value, got, tc.want)
		}
	}
}
