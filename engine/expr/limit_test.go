package expr

import (
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/flowvault/flowvault/fault"
)

// limitDoc holds an input of about 1 KiB for templates to copy.
func limitDoc() MapDoc {
	input := map[string]any{"list": []any{int64(1), "two", 3.5, true, nil}}
	for i := range 10 {
		input[fmt.Sprintf("k%d", i)] = strings.Repeat("v", 90)
	}
	return MapDoc{"workflow": map[string]any{"input": input, "name": "db"}}
}

// fanOut is a map of n keys each holding v.
func fanOut(n int, v any) map[string]any {
	m := make(map[string]any, n)
	for i := range n {
		m[fmt.Sprintf("k%05d", i)] = v
	}
	return m
}

func list(n int, v any) []any {
	l := make([]any, n)
	for i := range l {
		l[i] = v
	}
	return l
}

// A template that copies a value many times stops at its limit with an
// error naming the field it had reached and wrapping ErrTooLarge (and
// fault.ErrTooLarge), shared or not; one that fits the limit is whole.
func TestEvaluateWithinLimit(t *testing.T) {
	const limit = 64 << 10 // 64 copies of the 1 KiB input
	tests := []struct {
		name     string
		tmpl     any
		wantPath string // "" when it fits
	}{
		{name: "keys copying the input", tmpl: fanOut(1000, "${workflow.input}"), wantPath: "k00064"},
		{name: "keys copying a string", tmpl: fanOut(1000, "${workflow.input.k1}"), wantPath: "k00642"},
		{name: "list copying the input", tmpl: map[string]any{"l": list(1000, "${workflow.input}")}, wantPath: "l[63]"},
		{name: "nested maps", tmpl: fanOut(10, fanOut(1000, "${workflow.input.list}")), wantPath: "k00002.k00112"},
		{name: "one string repeating the input", tmpl: map[string]any{"s": strings.Repeat("${workflow.input}", 1000)}, wantPath: "s"},
		{name: "one string repeating a string", tmpl: map[string]any{"s": strings.Repeat("<${workflow.input.k0}>", 1000)}, wantPath: "s"},
		{name: "text around a deferred reference", tmpl: map[string]any{"s": strings.Repeat("${workflow.input.k0}", 1000) + "${workflow.secrets.t}"}, wantPath: "s"},
		{name: "deferred references alone", tmpl: map[string]any{"s": strings.Repeat("${workflow.secrets.t}", 4000)}, wantPath: "s"},
		{name: "nested path made of values", tmpl: fanOut(1000, "${workflow.input.${workflow.input}}"), wantPath: "k00063"},
		{name: "template text", tmpl: fanOut(1000, strings.Repeat("x", 100)), wantPath: "k00585"},
		{name: "keys alone", tmpl: fanOut(10000, int64(1)), wantPath: "k05957"},
		{name: "fits", tmpl: fanOut(50, "${workflow.input}")},
		{name: "one string that fits", tmpl: map[string]any{"s": strings.Repeat("${workflow.input.k0}", 500)}},
	}
	for _, tc := range tests {
		for _, shared := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/shared=%v", tc.name, shared), func(t *testing.T) {
				eval := EvaluateWithin
				if shared {
					eval = evaluateSharedWithin
				}
				v, _, err := eval(tc.tmpl, limitDoc(), limit)
				if tc.wantPath == "" {
					if err != nil {
						t.Fatalf("refused: %v", err)
					}
					return
				}
				var pe PathError
				if !errors.Is(err, ErrTooLarge) || !errors.Is(err, fault.ErrTooLarge) || !errors.As(err, &pe) {
					t.Fatalf("got %v (value of %d keys), want ErrTooLarge", err, lenOf(v))
				}
				if pe.Path != tc.wantPath || !strings.Contains(err.Error(), fmt.Sprint(limit)) {
					t.Fatalf("error %q, want it at %s naming the limit", err, tc.wantPath)
				}
			})
		}
	}
}

func lenOf(v any) int {
	m, _ := v.(map[string]any)
	return len(m)
}

// The count is a lower bound of the result's JSON: a result is never
// refused by a limit of the size it encodes to.
func TestEvaluateWithinItsOwnSize(t *testing.T) {
	tmpls := []any{
		fanOut(20, "${workflow.input}"),
		map[string]any{"s": "a ${workflow.input} b ${workflow.input.list} ${workflow.name}", "n": int64(12345), "f": 1.5, "b": false, "z": nil},
		map[string]any{"l": []any{"${workflow.input.list}", []any{}, map[string]any{}, "${workflow.missing}"}},
		map[string]any{"d": "x ${workflow.secrets.${workflow.name}} $${y}", "q": "\"quoted\" <html> \u2028"},
		"${workflow.input}",
		testTemplate(),
	}
	for i, tmpl := range tmpls {
		for _, doc := range []MapDoc{limitDoc(), testDoc()} {
			v, _, err := Evaluate(tmpl, doc)
			if err != nil {
				t.Fatalf("%d: %v", i, err)
			}
			b, err := json.Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := EvaluateWithin(tmpl, doc, len(b)); err != nil {
				t.Errorf("%d: refused within its own size %d: %v", i, len(b), err)
			}
			if _, _, err := evaluateSharedWithin(tmpl, doc, len(b)); err != nil {
				t.Errorf("%d: shared, refused within its own size %d: %v", i, len(b), err)
			}
		}
	}
}

func testTemplate() map[string]any {
	return map[string]any{
		"id":      "${workflow.input.n}",
		"url":     "https://api.example.com/items/${workflow.input.x}?v=${workflow.variables.v}",
		"first":   "${ref.output.items[0].id}",
		"all":     "${ref.output.items}",
		"limit":   int64(10),
		"headers": map[string]any{"Authorization": "Bearer ${workflow.secrets.t}", "Accept": "application/json"},
	}
}

// A template that is one expression and nothing else yields the
// document's own value when shared, unmeasured (it adds nothing to the
// document); copied, it counts.
func TestEvaluateSharedWholeValue(t *testing.T) {
	doc := limitDoc()
	v, _, err := evaluateSharedWithin("${workflow.input}", doc, 10)
	if err != nil {
		t.Fatalf("shared whole value: %v", err)
	}
	if m, _ := v.(map[string]any); len(m) != 11 {
		t.Fatalf("got %v", v)
	}
	if _, _, err := EvaluateWithin("${workflow.input}", doc, 10); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("copied: %v, want ErrTooLarge", err)
	}
	if _, _, err := evaluateSharedWithin([]any{"${workflow.input}"}, doc, 10); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("shared in a list: %v, want ErrTooLarge", err)
	}
}

// Evaluate bounds its result by DefaultLimit: a string repeating a large
// input is refused, not built.
func TestEvaluateDefaultLimit(t *testing.T) {
	doc := MapDoc{"workflow": map[string]any{"input": strings.Repeat("x", 1<<20)}}
	tmpl := map[string]any{"s": strings.Repeat("${workflow.input}", DefaultLimit>>20+1)}
	if _, _, err := Evaluate(tmpl, doc); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("got %v, want ErrTooLarge", err)
	}
	if _, _, err := EvaluateWithin(tmpl, doc, 0); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("limit 0: got %v, want ErrTooLarge", err)
	}
}

func evaluateSharedWithin(tmpl any, doc Doc, limit int) (any, []Path, error) {
	return NewBudget(limit).EvaluateShared(tmpl, doc)
}

// Evaluations of one budget share it: each that succeeds takes what its
// result counts, one that fails takes nothing, and the error of the one
// that passes the limit says what came before it.
func TestBudgetShared(t *testing.T) {
	doc := limitDoc()
	b := NewBudget(64 << 10)
	tmpl := fanOut(20, "${workflow.input}") // about 20 KiB
	for i := range 3 {
		if _, _, err := b.Evaluate(tmpl, doc); err != nil {
			t.Fatalf("evaluation %d: %v", i, err)
		}
	}
	left := b.Left()
	if left <= 0 || left > 8<<10 {
		t.Fatalf("left %d after three of about 20 KiB", left)
	}
	_, _, err := b.Evaluate(tmpl, doc)
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), fmt.Sprintf("with the %d bytes evaluated before it", 64<<10-left)) {
		t.Fatalf("fourth: %v, want ErrTooLarge saying what came before", err)
	}
	if b.Left() != left {
		t.Fatalf("a failed evaluation took %d bytes", left-b.Left())
	}
	if _, _, err := b.Evaluate(map[string]any{"small": "${workflow.input.k0}"}, doc); err != nil || b.Left() >= left {
		t.Fatalf("small one: %v, left %d of %d", err, b.Left(), left)
	}
}

type repeatResolver string

func (r repeatResolver) Resolve(string) (any, error) { return string(r), nil }

// What references resolve to at hand-off is bounded too: a string of a
// thousand references to one 64 KiB secret is refused past DefaultLimit,
// naming its path; one value of that size is handed off.
func TestResolveDeferredLimit(t *testing.T) {
	secret := repeatResolver(strings.Repeat("s", 64<<10))
	refs := DefaultLimit/len(secret) + 1
	in := map[string]any{"a": "${workflow.secrets.one}", "b": map[string]any{"c": strings.Repeat("-${workflow.secrets.s}", refs)}}
	paths := []Path{{"a"}, {"b", "c"}}
	_, err := ResolveDeferred(in, paths, secret)
	var pe PathError
	if !errors.Is(err, ErrTooLarge) || !errors.As(err, &pe) || pe.Path != "b.c" {
		t.Fatalf("got %v, want ErrTooLarge at b.c", err)
	}
	out, err := ResolveDeferred(in, paths[:1], secret)
	if err != nil {
		t.Fatal(err)
	}
	if got := out.(map[string]any)["a"]; got != string(secret) {
		t.Fatalf("a = %.20q…", got)
	}
}

// A deep scan lists every subtree of a value: interpolated, a chain 200
// levels deep over a 64 KiB string is 200 copies of it, 12.5 MiB, refused
// before its text is made (the limit is checked on what the list may
// take), not after: the evaluation allocates far less than the text.
func TestEvaluateDeepScanInText(t *testing.T) {
	var v any = strings.Repeat("x", 64<<10)
	for range 200 {
		v = map[string]any{"n": v}
	}
	doc := MapDoc{"workflow": map[string]any{"input": v}}
	for i, tmpl := range []any{
		map[string]any{"s": "scan: ${workflow.input..*}"},
		map[string]any{"s": "scan: ${workflow.input..*} ${workflow.secrets.t}"},
		map[string]any{"s": "${workflow.input.${workflow.input..*}}"},
	} {
		var err error
		allocated := allocatedBy(func() { _, _, err = EvaluateWithin(tmpl, doc, 1<<20) })
		var pe PathError
		if !errors.Is(err, ErrTooLarge) || !errors.As(err, &pe) || pe.Path != "s" {
			t.Fatalf("%d: got %v, want ErrTooLarge at s", i, err)
		}
		if allocated > 4<<20 {
			t.Fatalf("%d: refused after allocating %d bytes", i, allocated)
		}
	}
	if _, _, err := EvaluateWithin(map[string]any{"s": "scan: ${workflow.input..*}"}, doc, 16<<20); err != nil {
		t.Fatalf("within 16 MiB: %v", err)
	}
}

// allocatedBy is the bytes f allocates.
func allocatedBy(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}
