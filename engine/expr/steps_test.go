package expr

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/flowvault/flowvault/fault"
)

// chainOf is n maps nested in one another, each with a number: a deep
// scan of a deep scan visits it once per level above each.
func chainOf(n int) any {
	var v any = int64(0)
	for i := range n {
		v = map[string]any{"a": v, "x": int64(i)}
	}
	return v
}

func numbers(n, from int) []any {
	l := make([]any, n)
	for i := range l {
		l[i] = int64(from + i)
	}
	return l
}

// literalList is a filter's list of n numbers none of which numbers(…, 0)
// holds.
func literalList(n int) string {
	parts := make([]string, n)
	for i := range parts {
		parts[i] = fmt.Sprint(-i - 1)
	}
	return "[" + strings.Join(parts, ",") + "]"
}

// An expression whose work grows faster than its document is stopped at
// MaxSteps with an error naming the field and the expression, wrapping
// ErrTooCostly and fault.ErrTooLarge; without the bound each of these
// held a core for minutes (a scan of a scan of a scan of 60 KiB: 10 s at
// 4,000 levels, and at 1,000 levels the cube of it). Large documents read
// in one pass, and operators over short lists, are still evaluated.
func TestEvaluateSteps(t *testing.T) {
	objects := make([]any, 200_000)
	for i := range objects {
		objects[i] = map[string]any{"id": int64(i), "tags": []any{"a", "b"}, "name": "item"}
	}
	long := strings.Repeat("y", 1<<20)
	longs, others := make([]any, 400), make([]any, 400)
	for i := range longs {
		longs[i], others[i] = long, long[1:]+"z" // equal up to their last byte
	}
	tests := []struct {
		name  string
		input any
		expr  string
		want  any // when it is evaluated
	}{
		{name: "scan of a scan of a scan", input: chainOf(1000), expr: "${workflow.input..*..*..x.length()}"},
		{name: "scan of a scan", input: chainOf(8000), expr: "${workflow.input..*..x.length()}"},
		{name: "filter scanning in a scan", input: chainOf(8000), expr: "${workflow.input..*[?(@..x == -1)]}"},
		{name: "anyof of two long lists", input: map[string]any{"l": []any{map[string]any{"a": numbers(30_000, 0), "b": numbers(30_000, 30_000)}}},
			expr: "${workflow.input.l[?(@.a anyof @.b)]}"},
		{name: "in a long literal list", input: numbers(30_000, 0), expr: "${workflow.input[?(@ in " + literalList(30_000) + ")]}"},
		{name: "long strings compared", input: []any{map[string]any{"a": longs, "b": others}}, expr: "${workflow.input[?(@.a anyof @.b)]}"},
		{name: "size of long strings in a scan", input: chainOf(2000), expr: "${workflow.input..*..*[?(@ size 3)].length()}"},

		{name: "deep scan of 200,000 objects", input: objects, expr: "${workflow.input..id.length()}", want: int64(200_000)},
		{name: "filter over 200,000 objects", input: objects, expr: "${workflow.input[?(@.id in [1, 2, 199999] && @.tags contains 'a')].id}",
			want: []any{int64(1), int64(2), int64(199_999)}},
		{name: "sum of 200,000 ids", input: map[string]any{"l": objects}, expr: "${workflow.input.l[*].id.sum()}", want: float64(199_999) * 200_000 / 2},
		{name: "anyof of short lists", input: objects, expr: "${workflow.input[?(@.tags anyof ['b', 'c'])].length()}", want: int64(200_000)},
		{name: "scan of a scan of a short chain", input: chainOf(100), expr: "${workflow.input..*..x.length()}", want: int64(4950)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			doc := MapDoc{"workflow": map[string]any{"input": tc.input}}
			v, _, err := Evaluate(map[string]any{"field": tc.expr}, doc)
			if tc.want != nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if got := v.(map[string]any)["field"]; fmt.Sprint(got) != fmt.Sprint(tc.want) {
					t.Fatalf("got %v, want %v", got, tc.want)
				}
				return
			}
			var pe PathError
			if !errors.Is(err, ErrTooCostly) || !errors.Is(err, fault.ErrTooLarge) || !errors.As(err, &pe) || pe.Path != "field" {
				t.Fatalf("got %v, want ErrTooCostly at field", err)
			}
			shown := tc.expr
			if len(shown) > 120 {
				shown = shown[:120] + "…"
			}
			for _, want := range []string{fmt.Sprintf("%q", shown), fmt.Sprint(MaxSteps)} {
				if !strings.Contains(err.Error(), want) {
					t.Fatalf("error %q, want %s in it", err, want)
				}
			}
		})
	}
}

// The evaluations of a Budget, its Asides' included, share its steps: one
// that passes them says how many the others took, and every evaluation
// after it fails at once.
func TestBudgetSteps(t *testing.T) {
	doc := MapDoc{"workflow": map[string]any{"input": numbers(100, 0)}}
	tmpl := map[string]any{"n": "${workflow.input[?(@ >= 0)].length()}"} // 100 elements, about 4 steps each
	b := newBudget(0, 1000)
	if _, _, err := b.Evaluate(tmpl, doc); err != nil {
		t.Fatalf("first: %v", err)
	}
	if _, _, err := b.Aside().EvaluateShared(tmpl, doc); err != nil {
		t.Fatalf("aside: %v", err)
	}
	before := b.Steps()
	if before < 800 {
		t.Fatalf("two evaluations took %d steps, want at least 800", before)
	}
	_, _, err := b.Evaluate(tmpl, doc)
	if !errors.Is(err, ErrTooCostly) || !strings.Contains(err.Error(), fmt.Sprintf("with the %d steps of the evaluations before it", before)) {
		t.Fatalf("third: %v, want ErrTooCostly saying what came before", err)
	}
	if _, _, err := b.Evaluate(map[string]any{"x": "${workflow.input[0]}"}, doc); !errors.Is(err, ErrTooCostly) {
		t.Fatalf("after: %v, want ErrTooCostly", err)
	}
	if _, _, err := b.Evaluate(map[string]any{"x": "no expression"}, doc); err != nil {
		t.Fatalf("a template without expressions: %v", err)
	}
}
