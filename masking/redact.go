package masking

import (
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"maps"
	"slices"
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
	// search is what holds looks for: every needle holds one of them, and
	// there are fewer (see appendSearch).
	search []string
	// numbers are the values that are JSON numbers: a number equal to one
	// is redacted whole.
	numbers map[string]bool
	// wrapped are the values' base64 forms (the standard alphabet, each
	// of the three alignments), looked for also across line breaks: the
	// tools that wrap base64 in lines (MIME, the base64 command, Python's
	// encodebytes: 76 characters; PEM and openssl: 64) break a value's
	// form wherever its place in the encoded data puts it.
	wrapped []base64Form
	// replacer is built on the first string that holds a needle: most
	// strings hold none, and a strings.Replacer over many needles costs
	// more to build, and allocates on every Replace, than a search.
	once     sync.Once
	replacer *strings.Replacer
	// key is the hash of the values a shared redactor was asked for
	// (SharedWith), zero for one that is not shared.
	key [sha256.Size]byte
}

// NewRedactor returns a redactor for values. Values shorter than MinLength
// are ignored.
func NewRedactor(values ...[]byte) *Redactor {
	return (*Redactor)(nil).With(values...)
}

// SharedRedactor returns a redactor for values that every caller asking
// for the same values, in the same order, shares: the workflows of one
// definition resolve the same secrets, and building a redactor's forms
// and search for each of them was most of what protecting their records
// cost. Redactors are immutable. The caller holds what it gets until it
// calls Release: the cache keeps a redactor while someone holds it, at
// most maxShared of them, and starts over when full.
func SharedRedactor(values [][]byte) *Redactor {
	return (*Redactor)(nil).SharedWith(values, 0)
}

// SharedWith is SharedRedactor for values when r redacts values[:n]: a
// redactor not shared yet is r extended by values[n:], whose forms alone
// are computed. A workflow's redactor grows so (a value it seals, such as
// a session its worker opened, is its own), and building all its values'
// forms again for each growth cost more than the sharing saved.
func (r *Redactor) SharedWith(values [][]byte, n int) *Redactor {
	h := sha256.New()
	var size [8]byte
	for _, v := range values {
		binary.BigEndian.PutUint64(size[:], uint64(len(v)))
		h.Write(size[:])
		h.Write(v)
	}
	var key [sha256.Size]byte
	h.Sum(key[:0])
	shared.Lock()
	if e := shared.m[key]; e != nil {
		e.holders++
		shared.Unlock()
		return e.r
	}
	shared.Unlock()
	built := r.With(values[n:]...)
	built.key = key
	shared.Lock()
	defer shared.Unlock()
	if e := shared.m[key]; e != nil { // built meanwhile by another caller
		e.holders++
		return e.r
	}
	if len(shared.m) >= maxShared {
		// Holders that never released (a memo table that started over)
		// would otherwise keep the cache full for good.
		clear(shared.m)
	}
	shared.m[key] = &sharedEntry{r: built, holders: 1}
	return built
}

// Release gives back a redactor SharedWith or SharedRedactor handed out,
// once for each time it was handed out. A redactor nobody holds leaves the
// cache: what it looks for is a workflow's plaintext, which must not stay
// in the process once no running workflow needs it (a compacted
// workflow's values are to be gone for good). The redactor itself stays
// usable by whoever still has it; it is the cache that lets go.
func (r *Redactor) Release() {
	if r == nil || r.key == ([sha256.Size]byte{}) {
		return
	}
	shared.Lock()
	defer shared.Unlock()
	// Another redactor for the same values may have replaced it (the
	// cache started over): that one is its holders'.
	if e := shared.m[r.key]; e != nil && e.r == r {
		if e.holders--; e.holders <= 0 {
			delete(shared.m, r.key)
		}
	}
}

const maxShared = 1024

type sharedEntry struct {
	r       *Redactor
	holders int
}

var shared = struct {
	sync.Mutex
	m map[[sha256.Size]byte]*sharedEntry
}{m: map[[sha256.Size]byte]*sharedEntry{}}

// With returns a redactor for r's values and values: only the new values'
// encodings are computed.
func (r *Redactor) With(values ...[]byte) *Redactor {
	out := &Redactor{}
	var old []string // sorted as needles are
	if r != nil {
		old, out.search, out.numbers = r.needles, slices.Clone(r.search), maps.Clone(r.numbers)
		out.wrapped = slices.Clone(r.wrapped)
	}
	// The new forms are checked against r's by binary search and merged
	// into them in order: a map of every needle and a sort of them all,
	// for each value a workflow adds, were about a third of what
	// extending its redactor cost.
	var added []string
	seen := map[string]bool{} // of added
	for _, v := range values {
		if len(v) < MinLength {
			continue
		}
		var fresh []string
		encoded, wrapped := forms(v)
		for _, n := range encoded {
			if _, had := slices.BinarySearchFunc(old, n, longestFirst); len(n) >= MinLength && !had && !seen[n] {
				seen[n] = true
				fresh = append(fresh, n)
			}
		}
		added = append(added, fresh...)
		out.search = appendSearch(out.search, fresh)
		for _, b := range wrapped {
			if len(b.form) >= MinLength && !slices.Contains(out.wrapped, b) {
				out.wrapped = append(out.wrapped, b)
			}
		}
		if isNumber(v) {
			if out.numbers == nil {
				out.numbers = map[string]bool{}
			}
			out.numbers[string(v)] = true
		}
	}
	slices.SortFunc(added, longestFirst)
	out.needles = make([]string, 0, len(old)+len(added))
	for len(old) > 0 && len(added) > 0 {
		if longestFirst(old[0], added[0]) < 0 {
			out.needles, old = append(out.needles, old[0]), old[1:]
		} else {
			out.needles, added = append(out.needles, added[0]), added[1:]
		}
	}
	out.needles = append(append(out.needles, old...), added...)
	return out
}

// longestFirst orders needles longest first, as the replacer must try
// them (a value's JSON-escaped form contains its plain form), then by
// text.
func longestFirst(a, b string) int {
	return cmp.Or(len(b)-len(a), strings.Compare(a, b))
}

// appendSearch adds to search what holds is to look for to find forms, the
// new forms of one value, and returns it.
//
// A value's forms are mostly the same text, written differently where the
// value has a character one encoder escapes and another does not: a
// search for each would read a text once per form. A run of at least
// anchorLength bytes that they share stands for them all: the value's
// longest run of letters, digits and -._, which every encoder leaves as
// it is; for a value without one (x7#K0!2mQ$9vL&4n), the start or end that
// forms share up to their first difference. What holds finds is only a
// hint: the replacer redacts whole forms, and a text that holds the run
// without a form comes back as it was.
func appendSearch(search, forms []string) []string {
	var left []string // forms that hold nothing searched for yet
	for _, f := range forms {
		if !slices.ContainsFunc(search, func(a string) bool { return strings.Contains(f, a) }) {
			left = append(left, f)
		}
	}
	for len(left) > 0 {
		a := anchor(left)
		search = append(search, a)
		left = slices.DeleteFunc(left, func(f string) bool { return strings.Contains(f, a) })
	}
	return search
}

// anchorLength is the shortest run of a value that stands for its forms in
// the search. Shorter runs of a secret are often words (ssword) that
// unrelated text holds, which would take such text through the replacer
// for nothing.
const anchorLength = 8

// anchor returns a substring of forms[0] for the search to look for: its
// longest run of letters, digits and -._ if it is at least anchorLength
// long; else, of forms[0] and the starts and ends it shares with the
// other forms that are that long, the one most forms hold, then the
// longest.
func anchor(forms []string) string {
	f := forms[0]
	if run := longestRun(f); len(run) >= anchorLength {
		return run
	}
	candidates := []string{f}
	for _, g := range forms[1:] {
		for _, c := range []string{commonPrefix(f, g), commonSuffix(f, g)} {
			if len(c) >= anchorLength && !slices.Contains(candidates, c) {
				candidates = append(candidates, c)
			}
		}
	}
	best, holders := "", 0
	for _, c := range candidates {
		n := 0
		for _, g := range forms {
			if strings.Contains(g, c) {
				n++
			}
		}
		if n > holders || n == holders && len(c) > len(best) {
			best, holders = c, n
		}
	}
	return best
}

// longestRun returns the longest run in s of ASCII letters, digits and
// -._, bytes that every JSON and URL encoder writes as they are.
func longestRun(s string) string {
	var best string
	start := 0
	for i := 0; i <= len(s); i++ {
		if i < len(s) && isRunByte(s[i]) {
			continue
		}
		if i-start > len(best) {
			best = s[start:i]
		}
		start = i + 1
	}
	return best
}

func isRunByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_'
}

func commonPrefix(a, b string) string {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return a[:n]
}

func commonSuffix(a, b string) string {
	n := 0
	for n < len(a) && n < len(b) && a[len(a)-1-n] == b[len(b)-1-n] {
		n++
	}
	return a[len(a)-n:]
}

// replace redacts s.
func (r *Redactor) replace(s string) string {
	held, broken := r.holds(s), strings.ContainsAny(s, "\r\n")
	if held && !broken {
		// A base64 form lies whole in a text without line breaks, where
		// the replacer finds it too: a text it leaves as it is holds
		// none, and is not read again for each base64 form. Past
		// maxSearch every text is held, and those reads, one for each
		// form of each value and part, were most of what redacting it
		// cost.
		out := r.replacerOnce().Replace(s)
		if out == s {
			return out
		}
		if len(r.wrapped) > 0 {
			s = r.redactBase64(s)
		}
		return r.cover(s)
	}
	if broken && len(r.wrapped) > 0 {
		s = r.redactBase64(s)
	}
	if held && r.replacerOnce().Replace(s) != s {
		s = r.cover(s)
	}
	return s
}

// cover masks every place in s where a needle lies, needles that overlap
// as one. The replacer, which masks the needle that starts first and
// goes on after it, finds whether s holds one: a needle starting before
// a longer one and ending within it (a part of a value, which the text
// before the value spells with the value's first characters) had the
// rest of that one left in plain text. Only a text that holds a value
// is read so, for the needles that hold a string the search finds in it
// (every needle holds one, see appendSearch): a read for each needle
// took a 16 KiB text holding one of 40 values and their parts 7 ms.
func (r *Redactor) cover(s string) string {
	var in []string // the strings searched for that s holds
	for _, a := range r.search {
		if strings.Contains(s, a) {
			in = append(in, a)
		}
	}
	var cuts [][2]int
	for _, n := range r.needles {
		if !slices.ContainsFunc(in, func(a string) bool { return strings.Contains(n, a) }) {
			continue
		}
		for from := 0; len(n) <= len(s)-from; {
			k := strings.Index(s[from:], n)
			if k < 0 {
				break
			}
			cuts = append(cuts, [2]int{from + k, from + k + len(n)})
			from += k + 1
		}
	}
	return maskCuts(s, cuts, nil)
}

// redactBase64 masks the base64 forms of the values in s with the
// characters at their edges that hold bits of a value beside the
// neighbours' (the form alone leaves them, a few of the value's bits
// each), and reads through the line breaks that wrapped base64 puts
// between two base64 characters: a form found so is masked where it lies
// in s, its breaks included.
func (r *Redactor) redactBase64(s string) string {
	js, at := joinBase64Lines(s)
	var cuts [][2]int // ranges of js to mask
	for _, w := range r.wrapped {
		for from := 0; ; {
			k := strings.Index(js[from:], w.form)
			if k < 0 {
				break
			}
			start, end := from+k, from+k+len(w.form)
			from = end
			if w.lead && start > 0 && isBase64Byte(js[start-1]) {
				start--
			}
			if w.trail && end < len(js) && isBase64Byte(js[end]) {
				end++
			}
			cuts = append(cuts, [2]int{start, end})
		}
	}
	return maskCuts(s, cuts, at)
}

// maskCuts masks the ranges cuts of s, or of the text whose bytes lie in s
// where at says (nil: s itself), ranges that overlap as one.
func maskCuts(s string, cuts [][2]int, at []int) string {
	if len(cuts) == 0 {
		return s
	}
	place := func(i int) int { // where the text's i-th byte lies in s
		if at == nil {
			return i
		}
		return at[i]
	}
	slices.SortFunc(cuts, func(a, b [2]int) int { return a[0] - b[0] })
	var b strings.Builder
	last := 0 // in s
	for _, c := range cuts {
		from, to := place(c[0]), place(c[1]-1)+1
		if from < last { // overlaps the one before
			last = max(last, to)
			continue
		}
		b.WriteString(s[last:from])
		b.WriteString(Mask)
		last = to
	}
	b.WriteString(s[last:])
	return b.String()
}

// joinBase64Lines returns s without the runs of line breaks that stand
// between two base64 characters, and where each of its bytes lies in s
// (nil when it is s).
func joinBase64Lines(s string) (string, []int) {
	if !strings.ContainsAny(s, "\r\n") {
		return s, nil
	}
	joined := make([]byte, 0, len(s))
	at := make([]int, 0, len(s)) // joined[i] is s[at[i]]
	for i := 0; i < len(s); {
		if c := s[i]; c == '\r' || c == '\n' {
			// A run of breaks is decided once: read through when base64
			// stands on both sides of it.
			end := i + 1
			for end < len(s) && (s[end] == '\r' || s[end] == '\n') {
				end++
			}
			if len(joined) > 0 && isBase64Byte(joined[len(joined)-1]) && end < len(s) && isBase64Byte(s[end]) {
				i = end
				continue
			}
			for ; i < end; i++ {
				joined = append(joined, s[i])
				at = append(at, i)
			}
			continue
		}
		joined = append(joined, s[i])
		at = append(at, i)
		i++
	}
	if len(joined) == len(s) {
		return s, nil
	}
	return string(joined), at
}

func isBase64Byte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '+' || c == '/' || c == '='
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

// holds reports whether s may contain a needle. A search per string
// searched for reads s once for each; past maxSearch of them s is cheaper
// to read once, through the replacer.
func (r *Redactor) holds(s string) bool {
	if len(s) < len(r.needles[len(r.needles)-1]) {
		return false
	}
	if len(r.search) > maxSearch {
		return true
	}
	for _, a := range r.search {
		if len(a) <= len(s) && strings.Contains(s, a) {
			return true
		}
	}
	return false
}

// maxSearch bounds the search that spares most strings the replacer: a
// search costs about 0.0125 ns a byte per string searched for and the
// replacer's pass about 1.5 ns a byte, whatever the length
// (BenchmarkRedactClean), so the search wins below about 120 of them,
// some 20 values (see appendSearch: a value of letters and digits is five).
const maxSearch = 96

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
// included), and every number that is one of the values, as encoding/json
// writes it, replaced by the string "***": a number has no part to redact,
// and turns into a string as it does in Orkes. v is not changed: the maps
// and slices that hold a secret are copied, the others are returned as
// they are.
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
	case json.Number, int, int64, float64:
		if len(r.numbers) == 0 {
			return v, false
		}
		if t, ok := numberText(x); ok && r.numbers[t] {
			return Mask, true
		}
		return v, false
	case map[string]any:
		var out map[string]any
		// Keys are named as KeyNames names them: two keys that redact to
		// the same text ({"<a>": 1, "<b>": 2}) are kept apart, as the
		// purposes of the values sealed under them name them (one of
		// them, with its value, was lost).
		var names map[string]string
		for k, e := range x {
			if names == nil && r.replace(k) != k {
				names = KeyNames(r, x)
			}
			if re, c := r.value(e); c {
				if out == nil {
					out = maps.Clone(x)
				}
				out[k] = re
			}
		}
		if names != nil {
			if out == nil {
				out = x
			}
			named := make(map[string]any, len(out))
			for k, e := range out {
				if name, ok := names[k]; ok {
					k = name
				}
				named[k] = e
			}
			return named, true
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
