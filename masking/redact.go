package masking

import (
	"encoding/base64"
	"encoding/json"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
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
	// needles are the forms looked for, longest first.
	needles []string
	// replacer is built on the first string that holds a needle: most
	// strings hold none, and a strings.Replacer over many needles costs
	// more to build, and allocates on every Replace, than a search.
	once     sync.Once
	replacer *strings.Replacer
}

// NewRedactor returns a redactor for values. Values shorter than MinLength
// are ignored.
func NewRedactor(values ...[]byte) *Redactor {
	return (*Redactor)(nil).With(values...)
}

// With returns a redactor for r's values and values: only the new values'
// encodings are computed.
func (r *Redactor) With(values ...[]byte) *Redactor {
	seen := map[string]bool{}
	if r != nil {
		for _, n := range r.needles {
			seen[n] = true
		}
	}
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
	return &Redactor{needles: needles}
}

// replace redacts s.
func (r *Redactor) replace(s string) string {
	if !r.holds(s) {
		return s
	}
	return r.replacerOnce().Replace(s)
}

// replacerOnce returns the replacer, built on first use.
func (r *Redactor) replacerOnce() *strings.Replacer {
	r.once.Do(func() {
		pairs := make([]string, 0, 2*len(r.needles))
		for _, n := range r.needles {
			pairs = append(pairs, n, Mask)
		}
		r.replacer = strings.NewReplacer(pairs...)
	})
	return r.replacer
}

// holds reports whether s may contain a needle. A search per needle reads
// s once for each; past searchNeedles needles s is cheaper to read once,
// through the replacer.
func (r *Redactor) holds(s string) bool {
	if len(s) < len(r.needles[len(r.needles)-1]) {
		return false
	}
	if len(r.needles) > searchNeedles {
		return true
	}
	for _, n := range r.needles {
		if len(n) <= len(s) && strings.Contains(s, n) {
			return true
		}
	}
	return false
}

// searchNeedles bounds the search that spares most strings the replacer:
// a search costs about 0.0125 ns a byte per needle and the replacer's pass
// about 1.5 ns a byte, whatever the length (BenchmarkRedactClean), so the
// search wins below about 120 needles, some 15 values.
const searchNeedles = 96

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
func (r *Redactor) Empty() bool { return r == nil || len(r.needles) == 0 }

// String redacts s.
func (r *Redactor) String(s string) string {
	if r.Empty() {
		return s
	}
	return r.replace(s)
}

// Value returns a JSON-like value with every string redacted (map keys
// included). v is not changed: the maps and slices that hold a secret are
// copied, the others are returned as they are.
func (r *Redactor) Value(v any) any {
	if r.Empty() {
		return v
	}
	out, _ := r.value(v)
	return out
}

// value redacts v and reports whether anything changed.
func (r *Redactor) value(v any) (any, bool) {
	switch x := v.(type) {
	case string:
		s := r.replace(x)
		return s, s != x
	case map[string]any:
		var out map[string]any
		for k, e := range x {
			rk, e2 := r.replace(k), e
			changed := rk != k
			if re, c := r.value(e); c {
				e2, changed = re, true
			}
			if !changed {
				continue
			}
			if out == nil {
				out = make(map[string]any, len(x))
				for k0, e0 := range x {
					out[k0] = e0
				}
			}
			delete(out, k)
			out[rk] = e2
		}
		if out == nil {
			return x, false
		}
		return out, true
	case []any:
		var out []any
		for i, e := range x {
			re, c := r.value(e)
			if !c {
				continue
			}
			if out == nil {
				out = slices.Clone(x)
			}
			out[i] = re
		}
		if out == nil {
			return x, false
		}
		return out, true
	}
	return v, false
}

// Map is Value for a map, keeping nil as nil.
func (r *Redactor) Map(m map[string]any) map[string]any {
	if m == nil || r.Empty() {
		return m
	}
	return r.Value(m).(map[string]any)
}
