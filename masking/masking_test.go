package masking

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestKeys(t *testing.T) {
	in := map[string]any{
		"a":        "visible",
		"_secrets": map[string]any{"token": "t0k"},
		"nested":   []any{map[string]any{"_masked": "x", "b": int64(1)}},
	}
	got := Keys(in)
	want := map[string]any{"a": "visible", "_secrets": "***", "nested": []any{map[string]any{"_masked": "***", "b": int64(1)}}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Keys = %#v", got)
	}
	if in["_secrets"].(map[string]any)["token"] != "t0k" {
		t.Fatal("Keys changed its input")
	}
	f := Fields(map[string]any{"input1": "a", "input2": "b", "_secrets": "c"}, []string{"input1"})
	if !reflect.DeepEqual(f, map[string]any{"input1": "***", "input2": "b", "_secrets": "***"}) {
		t.Fatalf("Fields = %v", f)
	}
}

func randomSecret(t *testing.T) string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)[:24] + "/+ \"é"
}

// Every encoding of a secret, embedded anywhere, is redacted.
func TestRedactForms(t *testing.T) {
	s := randomSecret(t)
	r := NewRedactor([]byte(s))
	js, _ := json.Marshal(s)
	tests := map[string]string{
		"plain":        "token=" + s + ";",
		"json":         `{"k":` + string(js) + `}`,
		"query":        "https://api?k=" + url.QueryEscape(s) + "&x=1",
		"path":         "/v1/" + url.PathEscape(s) + "/x",
		"base64":       base64.StdEncoding.EncodeToString([]byte(s)),
		"base64 url":   base64.URLEncoding.EncodeToString([]byte(s)),
		"base64 in +1": base64.StdEncoding.EncodeToString([]byte("a" + s + "zz")),
		"base64 in +2": base64.StdEncoding.EncodeToString([]byte("ab" + s)),
		"basic auth":   "Basic " + base64.StdEncoding.EncodeToString([]byte("user:"+s)),
		"hex":          "sent " + hex.EncodeToString([]byte("\x01"+s+"\n")),
		"hex upper":    fmt.Sprintf("sent %X", "ab"+s),
	}
	for name, text := range tests {
		out := r.String(text)
		if !strings.Contains(out, Mask) {
			t.Errorf("%s: %q not redacted", name, text)
		}
		encoded, _ := forms([]byte(s))
		for _, f := range encoded {
			if len(f) >= MinLength && strings.Contains(out, f) {
				t.Errorf("%s: %q still contains a form of the secret", name, out)
			}
		}
	}
}

// Values below the floor are not looked for, so unrelated data survives;
// values at the floor are.
func TestRedactFloor(t *testing.T) {
	short := NewRedactor([]byte("CX12"))
	if got := short.String("customer CX1234"); got != "customer CX1234" {
		t.Fatalf("a short secret mangled unrelated data: %q", got)
	}
	atFloor := NewRedactor([]byte("abc123"))
	if got := atFloor.String("key abc123!"); got != "key ***!" {
		t.Fatalf("a secret at the floor was not redacted: %q", got)
	}
	var nilR *Redactor
	if nilR.String("x") != "x" || !nilR.Empty() {
		t.Fatal("nil redactor")
	}
}

// Of values that overlap, the longest is redacted whole; text that holds
// none comes back as it was.
func TestRedactSeveral(t *testing.T) {
	// A redactor grown value by value redacts as one made at once: the
	// longer value first, though it came last.
	for name, r := range map[string]*Redactor{
		"at once": NewRedactor([]byte("secret-one"), []byte("secret-one-longer"), []byte("another-value")),
		"grown":   NewRedactor([]byte("secret-one")).With([]byte("short")).With([]byte("another-value"), []byte("secret-one-longer")),
	} {
		for text, want := range map[string]string{
			"x secret-one-longer y":      "x *** y",
			"x secret-one y":             "x *** y",
			"another-value/secret-one":   "***/***",
			"nothing to hide, secret-on": "nothing to hide, secret-on",
			"short":                      "short",
		} {
			if got := r.String(text); got != want {
				t.Errorf("%s: String(%q) = %q, want %q", name, text, got, want)
			}
		}
	}
}

// A redactor grown value by value holds the needles of one made at once,
// each once, longest first: the merge of the new forms into the old keeps
// the replacer's order.
func TestRedactorGrownKeepsNeedleOrder(t *testing.T) {
	values := [][]byte{[]byte("secret-one"), []byte(`p@ss w!rd&"é/Tr0ub4dor`), []byte("918273645501"),
		[]byte("secret-one-longer"), []byte("c2VjcmV0LW9uZQ"), []byte("secret-one")}
	whole := NewRedactor(values...)
	grown := NewRedactor()
	for _, v := range values {
		grown = grown.With(v)
	}
	pairs := NewRedactor(values[:2]...).With(values[2:4]...).With(values[4:]...)
	for name, r := range map[string]*Redactor{"whole": whole, "grown": grown, "pairs": pairs} {
		want := slices.Clone(r.needles)
		slices.SortFunc(want, func(a, b string) int {
			if len(a) != len(b) {
				return len(b) - len(a)
			}
			return strings.Compare(a, b)
		})
		if !slices.Equal(r.needles, want) || len(slices.Compact(want)) != len(r.needles) {
			t.Errorf("%s: needles %q are not each once, longest first", name, r.needles)
		}
		if !slices.Equal(r.needles, whole.needles) {
			t.Errorf("%s: needles %q, made at once %q", name, r.needles, whole.needles)
		}
	}
}

// Many values take the replacer's single pass; what it redacts is the
// same.
func TestRedactManyValuesLongText(t *testing.T) {
	var values [][]byte
	for i := range 60 {
		values = append(values, []byte(fmt.Sprintf("secret-value-%02d", i)))
	}
	r := NewRedactor(values...)
	if len(r.search) <= maxSearch {
		t.Fatalf("%d strings searched for: the search, not the replacer, would read the text", len(r.search))
	}
	filler := strings.Repeat("nothing to hide here. ", 400)
	if got := r.String(filler); got != filler {
		t.Fatal("a long text without a secret changed")
	}
	text := filler + "secret-value-37" + filler + base64.StdEncoding.EncodeToString([]byte("secret-value-02"))
	if got, want := r.String(text), filler+"***"+filler+"***"; got != want {
		t.Fatalf("long text redacted to ...%q, want ...%q", got[len(got)-40:], want[len(want)-40:])
	}
}

func TestRedactValue(t *testing.T) {
	s := randomSecret(t)
	r := NewRedactor([]byte(s))
	clean := map[string]any{"a": "nothing to hide", "n": []any{"x"}}
	in := map[string]any{"echo": s, "list": []any{"Bearer " + s, int64(3)}, s: "as a key", "clean": clean,
		"deep": map[string]any{"k": []any{map[string]any{"v": s}}}}
	out := r.Map(in)
	b, _ := json.Marshal(out)
	if strings.Contains(string(b), s[:12]) {
		t.Fatalf("redacted value still holds the secret: %s", b)
	}
	if out["list"].([]any)[1] != int64(3) || in["echo"] != s || in["list"].([]any)[0] != "Bearer "+s ||
		in["deep"].(map[string]any)["k"].([]any)[0].(map[string]any)["v"] != s || in[s] != "as a key" {
		t.Fatal("non-strings changed, or the input was modified")
	}
	// What holds no secret is not copied.
	if reflect.ValueOf(out["clean"]).UnsafePointer() != reflect.ValueOf(clean).UnsafePointer() {
		t.Fatal("a map without secrets was copied")
	}
	if got := r.Map(clean); reflect.ValueOf(got).UnsafePointer() != reflect.ValueOf(clean).UnsafePointer() {
		t.Fatal("a map without secrets was copied")
	}
}

func FuzzRedact(f *testing.F) {
	f.Add("secret-value-1", "prefix secret-value-1 suffix")
	f.Fuzz(func(t *testing.T, secret, text string) {
		r := NewRedactor([]byte(secret))
		out := r.String(text)
		if len(secret) >= MinLength && strings.Contains(out, secret) {
			t.Fatalf("%q survives in %q", secret, out)
		}
		if !r.Empty() {
			checkSearchCovers(t, r)
		}
	})
}

// Callers that ask for the same values share one redactor; other values,
// or the same in another order, get their own, and each redacts its own.
func TestSharedRedactor(t *testing.T) {
	a, b := []byte("shared-secret-one"), []byte("shared-secret-two")
	r1 := SharedRedactor([][]byte{a, b})
	if r2 := SharedRedactor([][]byte{[]byte("shared-secret-one"), []byte("shared-secret-two")}); r2 != r1 {
		t.Fatal("the same values built a second redactor")
	}
	if SharedRedactor([][]byte{b, a}) == r1 || SharedRedactor([][]byte{a}) == r1 {
		t.Fatal("other values share the redactor of a and b")
	}
	// Lengths are part of the key: "ab"+"c" is not "a"+"bc".
	if SharedRedactor([][]byte{[]byte("secret-ab"), []byte("c-secret")}) == SharedRedactor([][]byte{[]byte("secret-a"), []byte("bc-secret")}) {
		t.Fatal("values split differently share a redactor")
	}
	if got := r1.String("a shared-secret-two b"); got != "a *** b" {
		t.Fatalf("redacted %q", got)
	}
	if got := SharedRedactor([][]byte{a}).String("shared-secret-two"); got != "shared-secret-two" {
		t.Fatalf("a redactor for a redacted b: %q", got)
	}

	// Extending r1 by a value of one workflow's own redacts all three, and
	// is shared with whoever asks for the same three, however built.
	own := []byte("session-of-one-workflow")
	grown := r1.SharedWith([][]byte{a, b, own}, 2)
	if grown == r1 {
		t.Fatal("extending a redactor returned it unchanged")
	}
	if got := grown.String("shared-secret-one shared-secret-two session-of-one-workflow"); got != "*** *** ***" {
		t.Fatalf("the extended redactor redacted %q", got)
	}
	if SharedRedactor([][]byte{a, b, own}) != grown {
		t.Fatal("the same three values built a second redactor")
	}
	if r1.String("session-of-one-workflow") != "session-of-one-workflow" {
		t.Fatal("extending a shared redactor changed it")
	}
}

// A shared redactor stays cached while someone holds it and leaves the
// cache with its last holder: a workflow's values are not kept in the
// process once nothing running needs them.
func TestSharedRedactorRelease(t *testing.T) {
	values := [][]byte{[]byte("released-secret-one"), []byte("released-secret-two")}
	first := SharedRedactor(values)
	second := SharedRedactor(values)
	if second != first {
		t.Fatal("the same values built a second redactor")
	}
	first.Release()
	if third := SharedRedactor(values); third != first {
		t.Fatal("a redactor still held left the cache")
	} else {
		third.Release()
	}
	second.Release()
	again := SharedRedactor(values)
	defer again.Release()
	if again == first {
		t.Fatal("a redactor nobody holds stayed in the cache")
	}
	if got := first.String("released-secret-one"); got != Mask {
		t.Fatalf("a released redactor redacted %q", got)
	}
	// Releasing one that is not shared, or twice, changes nothing.
	NewRedactor(values...).Release()
	(*Redactor)(nil).Release()
	first.Release()
	if SharedRedactor(values) != again {
		t.Fatal("a stale release dropped its successor")
	}
	again.Release()
}
