package masking

import (
	"encoding/base64"
	"encoding/json"
	"net/url"
	"sort"
	"strings"
)

// MinLength is the shortest value redaction looks for. Shorter values (a
// secret "on", a PIN "1234") would turn unrelated data into "***" all over
// an execution; values this short are not protected by redaction, only by
// being kept out of outputs in the first place. Documented in the README.
const MinLength = 6

// Redactor replaces known secret values, in every encoding it knows, with
// "***". It is immutable and safe for concurrent use. The zero value and a
// nil *Redactor redact nothing.
type Redactor struct {
	r *strings.Replacer
}

// NewRedactor returns a redactor for values. Values shorter than MinLength
// are ignored.
func NewRedactor(values ...[]byte) *Redactor {
	seen := map[string]bool{}
	for _, v := range values {
		if len(v) < MinLength {
			continue
		}
		for _, n := range forms(v) {
			if len(n) >= MinLength {
				seen[n] = true
			}
		}
	}
	if len(seen) == 0 {
		return &Redactor{}
	}
	needles := make([]string, 0, len(seen))
	for n := range seen {
		needles = append(needles, n)
	}
	// Longest first: a value's JSON-escaped form contains its plain form.
	sort.Slice(needles, func(i, j int) bool {
		if len(needles[i]) != len(needles[j]) {
			return len(needles[i]) > len(needles[j])
		}
		return needles[i] < needles[j]
	})
	pairs := make([]string, 0, 2*len(needles))
	for _, n := range needles {
		pairs = append(pairs, n, Mask)
	}
	return &Redactor{r: strings.NewReplacer(pairs...)}
}

// forms are the encodings of v redaction looks for.
func forms(v []byte) []string {
	s := string(v)
	out := []string{s}
	if js, err := json.Marshal(s); err == nil {
		out = append(out, string(js[1:len(js)-1])) // JSON-escaped, without quotes
	}
	out = append(out, url.QueryEscape(s), url.PathEscape(s), strings.ReplaceAll(url.QueryEscape(s), "+", "%20"))
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding} {
		out = append(out, base64Forms(enc, v)...)
	}
	return out
}

// base64Forms returns the characters that encode v whatever its offset in a
// longer base64-encoded stream: at each of the three byte alignments, the
// encoded characters whose bits come from v alone.
func base64Forms(enc *base64.Encoding, v []byte) []string {
	var out []string
	for k := 0; k < 3; k++ {
		buf := make([]byte, k+len(v))
		copy(buf[k:], v)
		e := enc.EncodeToString(buf)
		from := (8*k + 5) / 6
		to := 8 * (k + len(v)) / 6
		if to > from {
			out = append(out, e[from:to])
		}
	}
	return out
}

// Empty reports whether the redactor knows no values.
func (r *Redactor) Empty() bool { return r == nil || r.r == nil }

// String redacts s.
func (r *Redactor) String(s string) string {
	if r.Empty() {
		return s
	}
	return r.r.Replace(s)
}

// Value returns a copy of a JSON-like value with every string redacted (map
// keys included). v is not changed.
func (r *Redactor) Value(v any) any {
	if r.Empty() {
		return v
	}
	switch x := v.(type) {
	case string:
		return r.String(x)
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[r.String(k)] = r.Value(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = r.Value(e)
		}
		return out
	}
	return v
}

// Map is Value for a map, keeping nil as nil.
func (r *Redactor) Map(m map[string]any) map[string]any {
	if m == nil || r.Empty() {
		return m
	}
	return r.Value(m).(map[string]any)
}
