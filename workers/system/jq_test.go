package system_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/workers/system"
)

// A jqCase is a query over input and what it comes to: a failure whose
// reason holds fails, or resultList.
type jqCase struct {
	name, query string
	input       map[string]any
	fails       string
	results     []any
}

func runJQCases(t *testing.T, b system.Budget, tests []jqCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkOutcome(t, system.JQ{Budget: b}.Execute(context.Background(), jqTask(tt.query, tt.input)), tt.fails, "resultList", tt.results)
		})
	}
}

// gojq's compiler recurses on the Go stack: a deeply nested query killed
// the process.
func TestJQSourceLimits(t *testing.T) {
	t.Parallel()
	nested := func(n int) string { return strings.Repeat("[", n) + "1" + strings.Repeat("]", n) }
	runJQCases(t, system.Budget{Time: 10 * time.Minute}, []jqCase{
		{name: "long query", query: nested(1e6), fails: "queryExpression of 2000001 bytes is over the limit of 65536 bytes"},
		{name: "nested query", query: nested(20000), fails: "queryExpression nests more than 10000 levels deep"},
		{name: "chain of operators", query: "1" + strings.Repeat("+1", 11000), fails: "queryExpression nests more than 10000 levels deep"},
		{name: "chain of negations", query: strings.Repeat("-", 20000) + "1", fails: "queryExpression nests more than 10000 levels deep"},
		{name: "nested within the limits", query: nested(300) + " | flatten", results: []any{[]any{int64(1)}}},
		{name: "long query within the limits", query: "[" + strings.Repeat("1,", 8000) + "1] | length", results: []any{int64(8001)}},
	})
}

// Single gojq steps allocated gigabytes, ran past the time budget, or built
// values too deep for the Go code that walks them. At 16 MiB, strings stop
// at 8 MiB, arrays at 1M elements, regular expressions at 64K characters
// of subject.
func TestJQStaysWithinBudget(t *testing.T) {
	const refused = "exceeds the script memory budget"
	long := map[string]any{"s": strings.Repeat("a", 2<<20)}
	runJQCases(t, system.Budget{Time: 10 * time.Minute, Memory: 16 << 20}, []jqCase{
		{name: "string repeated", query: `"x" * 100000000 | length`, fails: refused},
		{name: "string repeated by a number on the left", query: `100000000 * "x" | length`, fails: refused},
		{name: "string repeated by update", query: `.t = "x" | .t *= 100000000 | .t | length`, fails: refused},
		{name: "string repeated through _multiply", query: `_multiply("x"; 100000000) | length`, fails: refused},
		{name: "regular expression over a long string", query: `.s | test("(a*)*b")`, input: long, fails: "exceeds the limit of 1048576 for this function"},
		{name: "matches of a long string", query: `.s[:100000] | [match("a"; "g")] | length`, input: long, fails: "exceeds the limit of 65536 for this function"},
		{name: "explode of a long string", query: `.s | explode | length`, input: long, fails: "exceeds the limit"},
		// One match runs its expression's instructions at every byte, in
		// one step of Go: 1,003 instructions over 200,000 bytes took 2 s.
		{name: "large expression tested over a long string", query: `.s[:200000] | test("[ab]{1000}c")`, input: long, fails: "exceeds the limit of 33554432 steps"},
		{name: "large expression matched over a long string", query: `.s[:60000] | [match("[ab]{1000}c"; "g")] | length`, input: long, fails: "exceeds the limit of 33554432 steps"},
		{name: "large expression substituted in a long string", query: `.s[:60000] | sub("[ab]{1000}c"; "x") | length`, input: long, fails: "exceeds the limit of 33554432 steps"},
		{name: "small expression tested over a long string", query: `.s[:1000000] | test("^(a|b)+$")`, input: long, results: []any{true}},
		{name: "deep value compared", query: `reduce range(2000) as $i (0; [.]) | . == .`, fails: "value nested more than 1000 levels deep"},
		{name: "deep object", query: `reduce range(2000) as $i (0; {a: .}) | tojson`, fails: "value nested more than 1000 levels deep"},
		{name: "deep value through to_entries", query: `reduce range(2000) as $i ({}; {a: .} | to_entries | .[0])`, fails: "value nested more than 1000 levels deep"},
		{name: "long path", query: `null | setpath([range(5000) | "a"]; 1)`, fails: "path of 5000 keys exceeds the limit of 1000"},
		{name: "long stream event", query: `fromstream([[range(5000) | "a"], 1])`, fails: "path of 5000 keys exceeds the limit of 1000"},
		// A value added to itself, doubling each time.
		{name: "string doubled", query: `reduce range(40) as $i ("a"; . + .) | length`, fails: refused},
		// Which stops it first, the check of the sum or the watch of the
		// heap, is a race: an array at its element limit fills the budget.
		{name: "array doubled", query: `reduce range(40) as $i ([1, 2, 3, 4]; . + .) | length`, fails: "memory budget"},
		{name: "string doubled by update", query: `.t = "a" | reduce range(40) as $i (.; .t += .t) | .t | length`, fails: refused},
		{name: "string doubled through _add", query: `reduce range(40) as $i ("a"; _add(.; .)) | length`, fails: refused},
		// One step of Go, out of reach of the time and memory watch.
		{name: "index far past the end, updated", query: `.a[100000000] |= 1 | .a | length`, fails: "index 100000000 exceeds the limit"},
		{name: "index far past the end, assigned", query: `.a[100000000] = 1 | .a | length`, fails: "index 100000000 exceeds the limit"},
		{name: "index far past the end, picked", query: `pick(.a[100000000]) | .a | length`, fails: "index 100000000 exceeds the limit"},
		{name: "integer of millions of digits", query: `("9" * 6000000 | tonumber) as $x | 1`, fails: "characters exceeds the limit of 65536 bits"},
		{name: "integer squared", query: `reduce range(26) as $i (3; . * .) | tostring | length`, fails: "bits exceeds the limit of 65536"},
		{name: "integer read by fromjson", query: `("9" * 1000000) | fromjson | . + 1`, fails: "bits exceeds the limit of 65536"},
		{name: "index far past the end, set by path", query: `null | setpath([500000000]; 1) | length`, fails: "index 500000000 exceeds the limit"},
		{name: "index far past the end, updated by getpath", query: `getpath([100000000]) |= 1 | length`, fails: "index 100000000 exceeds the limit"},
		{name: "difference of long arrays", query: `[range(20000)] - [range(20000)] | length`, fails: "comparisons"},
		{name: "long arrays contained", query: `[range(20000)] | contains([range(20000)])`, fails: "comparisons"},
		{name: "long arrays inside", query: `[range(20000)] | inside([range(20000)])`, fails: "comparisons"},
		// One long string, many times.
		{name: "tojson", query: `("x" * 1000000) as $s | [limit(100; repeat($s))] | tojson | length`, fails: refused},
		{name: "interpolation", query: `("x" * 1000000) as $s | "\([limit(100; repeat($s))])" | length`, fails: refused},
		{name: "format", query: `("x" * 1000000) as $s | [limit(100; repeat($s))] | @csv | length`, fails: refused},
		{name: "join", query: `("x" * 1000000) as $s | [limit(100; repeat($s))] | join(",") | length`, fails: refused},
		{name: "add", query: `("x" * 1000000) as $s | [limit(100; repeat($s))] | add | length`, fails: refused},
		// 2M elements from a 20,000-element array: the check refuses them
		// while the run holds well under a megabyte, so that the heap watch
		// (which once stopped this case first, in CI) has nothing to see.
		{name: "flatten", query: `[range(20000)] as $a | [limit(100; repeat($a))] | flatten | length`, fails: refused},
		{name: "result", query: `("x" * 1000000) as $s | [limit(100; repeat($s))]`, fails: "result of more than 4194304 bytes"},
		{name: "raised value", query: `("x" * 1000000) as $s | error([limit(100; repeat($s))])`, fails: "error raised with a value of more than 4194304 bytes"},
		// Ordinary use.
		{name: "multiplications", query: `(1, 2) * (3, 4), "ab" * 2, 2 * "ab", {a: {b: 1}} * {a: {c: 2}}`,
			results: []any{int64(3), int64(6), int64(4), int64(8), "abab", "abab", map[string]any{"a": map[string]any{"b": int64(1), "c": int64(2)}}}},
		{name: "update by multiplication", query: `.a = [1, 2] | .a[] *= 10 | .a`, results: []any{[]any{int64(10), int64(20)}}},
		{name: "join with several separators", query: `["a", "b"] | join(",", ";")`, results: []any{"a,b", "a;b"}},
		{name: "strings", query: `"a-b" | split("-"), test("b"), sub("b"; "c"), "\(1 + 2)", @base64 "x\(.)"`,
			results: []any{[]any{"a", "b"}, true, "a-c", "3", "xYS1i"}},
		{name: "paths", query: `(null | setpath(["a", 0]; 1) | getpath(["a"])), ({a: 1} | getpath(["a"]) |= 5), ({} | path(getpath(["a", "b"])))`,
			results: []any{[]any{int64(1)}, map[string]any{"a": int64(5)}, []any{"a", "b"}}},
		{name: "sums", query: `1 + 2, "a" + "b", [1] + [2], {a: 1} + {b: 2}, null + 1, (.x = 1 | .x += 1 | .x), ([range(5)] | .[1:3], .[-1])`,
			results: []any{int64(3), "ab", []any{int64(1), int64(2)}, map[string]any{"a": int64(1), "b": int64(2)}, int64(1), int64(2),
				[]any{int64(1), int64(2)}, int64(4)}},
		{name: "contains and inside", query: `[1, [2]] | contains([[2]]), inside([1, [2], 3]), ("foobar" | contains("bar"))`,
			results: []any{true, true, true}},
		{name: "arithmetic", query: `10 - 3, 7 % 3, 6 / 2, ([1, 2, 3] - [2]), (("12345678901234567890123" | fromjson) + 1 | tostring)`,
			results: []any{int64(7), int64(1), int64(3), []any{int64(1), int64(3)}, "12345678901234567890124"}},
		{name: "big integers within the limit", query: `"123456789012345678901234567890" | tonumber | . * . | tostring | length`, results: []any{int64(59)}},
		{name: "nested within the limits", query: `reduce range(900) as $i (0; [.]) | flatten`, results: []any{[]any{int64(0)}}},
	})
	// Doubling an integer 70,000 times keeps 8 KB at most and makes some
	// 300 MB of garbage, 8 KB at a time: the heap watch, which reads the
	// whole process's heap, stopped it first at 16 MiB on a loaded machine
	// (CI, once). Under a budget no run of it comes near, the bits limit
	// alone stops it.
	runJQCases(t, system.Budget{Time: 10 * time.Minute, Memory: 256 << 20}, []jqCase{
		{name: "integer doubled", query: `reduce range(70000) as $i (1; . + .) | tostring | length`, fails: "bits exceeds the limit of 65536"},
	})
}

// gojq counts each match's offset from the start of its subject, in one
// step no budget interrupts: scan(".") over 250,000 characters held a core
// for two minutes. A global match whose matches times its subject's length
// is too much is refused before it runs; the guard binds the expression
// and flags as jq does, so calls keep their meaning.
func TestJQRegexWork(t *testing.T) {
	t.Parallel()
	const refused = "a global match of more than 2683 matches in a string of 200000 characters exceeds the limit"
	long := map[string]any{"s": strings.Repeat("a", 200000), "lines": strings.Repeat(strings.Repeat("a", 19999)+"\n", 10)}
	runJQCases(t, system.Budget{Time: 10 * time.Minute}, []jqCase{
		{name: "scan", query: `.s | [scan(".")] | length`, input: long, fails: refused},
		{name: "match global", query: `.s | [match("."; "g")] | length`, input: long, fails: refused},
		{name: "match global, flags in an array", query: `.s | [match([".", "g"])] | length`, input: long, fails: refused},
		{name: "capture global", query: `.s | [capture("(?<c>.)"; "g")] | length`, input: long, fails: "exceeds the limit"},
		{name: "gsub", query: `.s | gsub("a"; "b") | length`, input: long, fails: refused},
		{name: "sub global", query: `.s | sub("a"; "b"; "g") | length`, input: long, fails: refused},
		{name: "splits", query: `.s | [splits("a")] | length`, input: long, fails: refused},
		{name: "split by expression", query: `.s | split("a"; null) | length`, input: long, fails: refused},
		{name: "_match", query: `.s | _match("."; "g"; false) | length`, input: long, fails: refused},
		{name: "expression from a variable", query: `"." as $re | "g" as $g | .s | [match($re; $g)] | length`, input: long, fails: refused},
		// Ordinary use.
		{name: "few matches in a long string", query: `.lines | gsub("\n"; " ") | length`, input: long, results: []any{int64(200000)}},
		{name: "one match in a long string", query: `.s | match("a+").length`, input: long, results: []any{int64(200000)}},
		{name: "a test over a long string", query: `.s | test("b")`, input: long, results: []any{false}},
		{name: "several expressions and flags", query: `"ab" | [match("a", "b"; "g", "") | .string]`, results: []any{[]any{"a", "a", "b", "b"}}},
		{name: "several expressions, flags and replacements", query: `"aXbx" | [sub("x", "b"; "y", "z"; "g", "gi")]`,
			results: []any{[]any{"aXby", "aXbz", "ayby", "azbz", "aXyx", "aXzx", "aXyx", "aXzx"}}},
		{name: "a match's field", query: `"abc" | match("b").offset`, results: []any{int64(1)}},
		{name: "splits", query: `"a,b" | [splits(",", "b")]`, results: []any{[]any{"a", "b", "a,", ""}}},
		{name: "invalid expression", query: `"a" | [scan("(")]`, fails: "invalid regular expression"},
		{name: "not a string", query: `1 | [scan(".")]`, fails: "cannot be applied to: number"},
	})
}

// gojq's errors quote a preview of the values they are about, a prefix of
// a secret that redaction cannot recognize: none is left in the reason.
func TestJQErrorsShowNoValues(t *testing.T) {
	t.Parallel()
	const secret = "sk_live_51HxQzT8abcdefghijklmnopqrstuvwxyz0123"
	in := map[string]any{"tok": secret, "arr": []any{secret}, "obj": map[string]any{"k": secret}}
	tests := []struct{ query, want string }{
		{".tok | .a", "expected an object but got: string (***)"},
		{".arr | .a", "expected an object but got: array (***)"},
		{".obj | .[0]", "expected an array but got: object (***)"},
		{".tok | fromjson", "fromjson cannot be applied to ***: invalid character '***' looking for beginning of value"},
		{".tok | @base64d", "@base64d cannot be applied to ***: illegal base64 data"},
		{".tok | tonumber", "tonumber cannot be applied to ***: invalid number"},
		{".tok | ltrimstr(1)", "ltrimstr(***) cannot be applied to: string (***)"},
		{".tok as $t | [1] | setpath([$t]; 1)", "setpath(***; ***) cannot be applied to ***: expected an object but got: array (***)"},
		{".tok | test(\"(\")", `invalid regular expression "***": error parsing regexp: missing closing ): ` + "`***`"},
		{"\"(\" + .tok | test(.)", `invalid regular expression "***"`},
		{".tok | strptime(\"%Y\")", "strptime(***) cannot be applied to ***"},
		{".tok - 1", "cannot subtract: string (***) and number (***)"},
		{".tok | implode", "implode cannot be applied to: string (***)"},
		{".tok as $t | [1] | .[$t]", "expected an object but got: array (***)"},
		{".tok as $t | [1] | .[$t:]", "expected a number for indexing an array but got: string (***)"},
		{"[.tok] | implode", "implode cannot be applied to: array (***)"},
	}
	for _, tt := range tests {
		res := system.JQ{}.Execute(context.Background(), jqTask(tt.query, in))
		if res.Status != conductor.TaskFailed || !strings.Contains(res.ReasonForIncompletion, tt.want) {
			t.Errorf("%s: %s %q, want FAILED with %q", tt.query, res.Status, res.ReasonForIncompletion, tt.want)
		}
		if strings.Contains(res.ReasonForIncompletion+fmt.Sprint(res.OutputData), secret[:12]) {
			t.Errorf("%s: the reason or output quotes the value: %q", tt.query, res.ReasonForIncompletion)
		}
	}
	// A value the query raises is its message, whole.
	res := system.JQ{}.Execute(context.Background(), jqTask(".tok | error", in))
	if res.Status != conductor.TaskFailed || !strings.Contains(res.ReasonForIncompletion, secret) {
		t.Errorf("error(...): %s %q, want the raised value whole", res.Status, res.ReasonForIncompletion)
	}
}
