package expr

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// Jayway's functions and filter operators, on the cases of json-path's
// own tests where there are some (NestedFunctionTest,
// SequentialPathFunctionTest, JSONEntityPathFunctionTest).
func TestJaywayFunctionsAndFilters(t *testing.T) {
	doc := MapDoc{
		"workflow": map[string]any{"input": map[string]any{
			"numbers": []any{int64(1), int64(2), int64(3), int64(4), int64(5), int64(6), int64(7), int64(8), int64(9), int64(10)},
			"text":    []any{"a", "b", "c", "d", "e", "f"},
			"mixed":   []any{"a", int64(1), nil, "b", 2.5},
			"one":     []any{"only"},
			"empty":   []any{},
			"first":   "Ada",
			"last":    "Lovelace",
			"n":       int64(3),
			"min":     int64(3),
			"obj":     map[string]any{"b": int64(1), "a": int64(2)},
			"strnum":  []any{"1", "2"},
			"users": []any{
				map[string]any{"name": "ann", "email": "Ann@Example.com", "age": int64(30), "tags": []any{"x", "y"}},
				map[string]any{"name": "bob", "email": "bob@test.org", "age": int64(17), "tags": []any{}},
				map[string]any{"name": "cy", "age": int64(45), "tags": []any{"y"}},
			},
		}},
	}
	tests := []struct {
		name, tmpl string
		want       any
	}{
		// keys, concat, append: the known gap, each gave null.
		{"keys sorted", "${workflow.input.obj.keys()}", []any{"a", "b"}},
		{"keys of a list", "${workflow.input.text.keys()}", nil},
		{"keys embedded", "k=${workflow.input.obj.keys()}", `k=["a","b"]`},
		{"concat of a list's strings", "${workflow.input.text.concat()}", "abcdef"},
		{"concat skips what is not a string", "${workflow.input.mixed.concat()}", "ab"},
		{"concat with arguments", `${workflow.input.text.concat("-", 1, 2.5, null, true)}`, "abcdef-12.5true"},
		{"concat of paths from the root", `${$.concat($.workflow.input.first, " ", @.workflow.input.last)}`, "Ada Lovelace"},
		{"concat of a path that is a list", `${$.concat($.workflow.input.one)}`, `["only"]`},
		{"concat on a string ignores it", `${workflow.input.first.concat("!")}`, "!"},
		{"concat on a missing key", `${workflow.input.nope.concat("!")}`, nil},
		{"concat embedded", `x=${workflow.input.text.concat('!')}`, "x=abcdef!"},
		{"append", `${workflow.input.text.append("g", 1)}`, []any{"a", "b", "c", "d", "e", "f", "g", int64(1)}},
		{"append a list as one element", `${workflow.input.one.append(['x'])}`, []any{"only", []any{"x"}}},
		{"append a path", `${workflow.input.one.append($.workflow.input.n)}`, []any{"only", int64(3)}},
		{"append to what is not a list", `${workflow.input.first.append("x")}`, "Ada"},
		{"append leaves the document alone", `${workflow.input.one.length()}`, int64(1)},
		// The root's model is no value: "$" cannot be enumerated.
		{"append to the root", `${$.append("x")}`, nil},
		{"append to the root, embedded", `x=${$.append("x")}`, "x=null"},
		{"append the root's append", `${workflow.input.one.append($.append("x"))}`, []any{"only", nil}},
		// first, last, index.
		{"first", "${workflow.input.numbers.first()}", int64(1)},
		{"last", "${workflow.input.numbers.last()}", int64(10)},
		{"last of one", "${workflow.input.one.last()}", "only"},
		{"index", "${workflow.input.text.index(1)}", "b"},
		{"index from the end", "${workflow.input.text.index(-1)}", "f"},
		{"index by a path", "${workflow.input.text.index($.workflow.input.n)}", "d"},
		{"index out of range", "${workflow.input.text.index(6)}", nil},
		{"first of empty", "${workflow.input.empty.first()}", nil},
		{"first of a string", "${workflow.input.first.first()}", nil},
		// Numeric functions with arguments.
		{"avg of min and max", "${$.avg($.workflow.input.numbers.min(), $.workflow.input.numbers.max())}", 5.5},
		{"sum with arguments", "${workflow.input.numbers.sum($.workflow.input.numbers.min(), $.workflow.input.numbers.max())}", 66.0},
		{"sum of a path that is a list", "${$.sum($.workflow.input.users[*].age)}", 92.0},
		{"sum of numbers as strings", "${workflow.input.strnum.sum()}", nil},
		{"max with a literal list", "${$.max([4, 9], 2)}", 9.0},
		// length() on a string is null, as in Jayway.
		{"length of a string", "${workflow.input.first.length()}", nil},
		// Filters.
		{"regex", "${workflow.input.users[?(@.name =~ /a.*/)].name}", []any{"ann"}},
		{"regex matches the whole value", "${workflow.input.users[?(@.name =~ /n/)].name}", []any{}},
		{"regex flag i", "${workflow.input.users[?(@.email =~ /.*@example\\.com/i)].name}", []any{"ann"}},
		{"regex on a number", "${workflow.input.users[?(@.age =~ /[0-9]{2}/)].name}", []any{"ann", "bob", "cy"}},
		{"regex on a list", "${workflow.input.users[?(@.tags =~ /x/)].name}", []any{"ann"}},
		{"regex on a missing key", "${workflow.input.users[?(@.email =~ /.*/)].name}", []any{"ann", "bob"}},
		{"not exists", "${workflow.input.users[?(!@.email)].name}", []any{"cy"}},
		// Jayway's "!" before anything but a path negates it.
		{"negated group", "${workflow.input.users[?(!(@.age > 20 && @.tags.length() > 0))].name}", []any{"bob"}},
		{"negated match", "${workflow.input.users[?(!(@.email =~ /.*@test\\.org/))].name}", []any{"ann", "cy"}},
		{"double negation", "${workflow.input.users[?(!!(@.age < 18))].name}", []any{"bob"}},
		{"negation binds tighter than &&", "${workflow.input.users[?(!(@.age < 18) && @.age < 40)].name}", []any{"ann"}},
		{"root in a filter", "${workflow.input.users[?(@.age > $.workflow.input.min.length())].name}", []any{}},
		{"root value in a filter", "${workflow.input.users[?(@.age < $.workflow.input.users[0].age)].name}", []any{"bob"}},
		{"function in a filter", "${workflow.input.users[?(@.tags.length() >= 1)].name}", []any{"ann", "cy"}},
		{"function with arguments in a filter", "${workflow.input.users[?(@.tags.concat('-') == 'xy-')].name}", []any{"ann"}},
		{"function in a filter, embedded", "n=${workflow.input.users[?(@.tags.length() == 0)].name}", `n=["bob"]`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, _, err := Evaluate(tc.tmpl, doc)
			if err != nil {
				t.Fatalf("Evaluate(%q): %v", tc.tmpl, err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Evaluate(%q) = %#v, want %#v", tc.tmpl, got, tc.want)
			}
		})
	}
}

// A function's work is the evaluation's: a concat or append over a long
// list, or a concat whose text passes the result's bound, fails it.
func TestFunctionWorkBounded(t *testing.T) {
	long := make([]any, 200_000)
	for i := range long {
		long[i] = "abcdefgh"
	}
	doc := MapDoc{"workflow": map[string]any{"input": map[string]any{"l": long, "s": strings.Repeat("x", 1<<20),
		"ls": []any{map[string]any{"s": strings.Repeat("ab", 1<<19), "short": "ab"}}}}}
	// A pattern's match runs its instructions over each byte: a megabyte
	// is 32,768 steps to read, and a second of CPU for this one to match.
	alts := make([]string, 300)
	for i := range alts {
		alts[i] = fmt.Sprintf("[a-c]%dy", i)
	}
	manyAlts := "${workflow.input.ls[?(@.s =~ /(?:" + strings.Join(alts, "|") + "|.)*z/)].s}"
	// Compiling one is work too, at each evaluation, on however short a
	// value: 8,000 alternatives took a tenth of a second.
	alts = make([]string, 8000)
	for i := range alts {
		alts[i] = fmt.Sprintf("[a-c]%dy", i)
	}
	compiled := "${workflow.input.ls[?(@.short =~ /(?:" + strings.Join(alts, "|") + "|.)*z/)].s}"
	for _, tmpl := range []string{"${workflow.input.l.concat()}", "${workflow.input.l.append(1)}", "${$.max($.workflow.input.l)}", manyAlts, compiled} {
		b := newBudget(0, 100_000)
		if _, _, err := b.Evaluate(tmpl, doc); !errors.Is(err, ErrTooCostly) {
			t.Errorf("%.100s within 100,000 steps: %v, want ErrTooCostly", tmpl, err)
		}
	}
	args := strings.Repeat("$.workflow.input.s,", 99) + "$.workflow.input.s"
	if _, _, err := EvaluateWithin("${$.concat("+args+")}", doc, 10<<20); !errors.Is(err, ErrTooLarge) {
		t.Errorf("concat of 100 MiB within 10 MiB: %v, want ErrTooLarge", err)
	}
}
