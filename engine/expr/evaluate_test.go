package expr

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/flowvault/flowvault/fault"
)

// testDoc is the document most tests read: a workflow and one task "ref".
func testDoc() MapDoc {
	return MapDoc{
		"workflow": map[string]any{
			"workflowId": "wf-1",
			"input": map[string]any{
				"x": "hello", "n": int64(42), "f": 2.5, "whole": 3.0, "big": 1e10, "small": 1e-5,
				"b": true, "nil": nil, "obj": map[string]any{"k": "v", "a": int64(1)},
				"list": []any{int64(1), "two"}, "key": "x", "ptr": "key", "one": int64(1), "name": "db", "dollar": "cost $",
				"inject":   "${workflow.secrets.admin}",
				"escaped":  "$${workflow.input.x}",
				"brace":    "a}${workflow.secrets.admin",
				"redirect": "workflow.secrets.admin",
				"space":    "key with space",
				"html":     map[string]any{"q": "<a&b>"},
				"stats":    []any{int64(2), int64(4), int64(4), int64(4), int64(5), int64(5), int64(7), int64(9)},
			},
			"variables": map[string]any{"v": int64(7)},
		},
		"ref": map[string]any{
			"taskId": "t-1",
			"input":  map[string]any{"a": "in"},
			"output": map[string]any{
				"a":              map[string]any{"b": []any{"first", "second"}},
				"key with space": "spaced",
				"it's":           "quoted",
				"items": []any{
					map[string]any{"id": int64(1), "ok": true, "price": int64(10), "name": "a", "tags": []any{"x", "y"}},
					map[string]any{"id": int64(2), "ok": false, "price": 20.5, "name": "b", "tags": []any{}},
					map[string]any{"id": int64(3), "ok": true, "price": int64(30), "name": "c", "opt": nil},
				},
			},
		},
		"CPEWF_TASK_ID": "task-9",
	}
}

func TestEvaluateString(t *testing.T) {
	t.Setenv("FLOWVAULT_EXPR_TEST_ENV", "leaked")
	ids := func(n ...int64) []any {
		out := make([]any, len(n))
		for i, v := range n {
			out[i] = v
		}
		return out
	}
	tests := []struct {
		name string
		tmpl string
		want any
	}{
		{"no expression", "plain text", "plain text"},
		{"stray braces are text", "a}b {c}", "a}b {c}"},
		{"lone dollar is text", "cost $5 $", "cost $5 $"},

		// A whole-string expression keeps the JSON type.
		{"string", "${workflow.input.x}", "hello"},
		{"int", "${workflow.input.n}", int64(42)},
		{"float", "${workflow.input.f}", 2.5},
		{"bool", "${workflow.input.b}", true},
		{"null", "${workflow.input.nil}", nil},
		{"object", "${workflow.input.obj}", map[string]any{"k": "v", "a": int64(1)}},
		{"list", "${workflow.input.list}", []any{int64(1), "two"}},
		{"workflowId", "${workflow.workflowId}", "wf-1"},
		{"variables", "${workflow.variables.v}", int64(7)},
		{"task output map", "${ref.output.a}", map[string]any{"b": []any{"first", "second"}}},
		{"task input", "${ref.input.a}", "in"},
		{"task field", "${ref.taskId}", "t-1"},
		{"CPEWF_TASK_ID", "${CPEWF_TASK_ID}", "task-9"},
		{"surrounding spaces", "${ workflow.input.x }", "hello"},
		{"explicit root", "${$.workflow.input.x}", "hello"},

		// JSONPath.
		{"index", "${ref.output.a.b[0]}", "first"},
		{"negative index", "${ref.output.a.b[-1]}", "second"},
		{"bracket key", "${ref.output['key with space']}", "spaced"},
		{"double-quoted key", `${ref.output["key with space"]}`, "spaced"},
		{"escaped quote in key", `${ref.output['it\'s']}`, "quoted"},
		{"bracket chain", "${ref['output']['a']['b'][1]}", "second"},
		{"wildcard", "${ref.output.items[*].id}", ids(1, 2, 3)},
		{"dot wildcard", "${ref.output.items.*.name}", []any{"a", "b", "c"}},
		{"slice", "${ref.output.items[0:2].id}", ids(1, 2)},
		{"slice from end", "${ref.output.items[-2:].id}", ids(2, 3)},
		{"slice to", "${ref.output.items[:1].id}", ids(1)},
		{"index union", "${ref.output.items[0,2].id}", ids(1, 3)},
		{"deep scan", "${ref.output..id}", ids(1, 2, 3)},
		{"merged members", "${ref.output.items[0]['id','name']}", map[string]any{"id": int64(1), "name": "a"}},
		{"length", "${ref.output.items.length()}", int64(3)},
		{"size", "${ref.output.items.size()}", int64(3)},
		{"size of a map", "${ref.output.items[0].size()}", int64(5)},
		{"size of a string", "${workflow.input.x.size()}", nil},
		{"length of a list selected", "${ref.output.items[*].id.length()}", int64(3)},
		{"min", "${ref.output.items[*].price.min()}", 10.0},
		{"max", "${ref.output..price.max()}", 30.0},
		{"sum", "${ref.output.items[*].price.sum()}", 60.5},
		{"avg", "${workflow.input.stats.avg()}", 5.0},
		{"stddev", "${workflow.input.stats.stddev()}", 2.0},
		{"min skips what is not a number", "${workflow.input.list.min()}", 1.0},
		{"min of no number", "${ref.output.a.b.min()}", nil},
		{"min of a map", "${workflow.input.obj.min()}", nil},
		{"min of nothing", "${workflow.input.nope.min()}", nil},
		{"embedded min is a double", "m=${ref.output.items[*].price.min()}", "m=10.0"},
		{"filter bool", "${ref.output.items[?(@.ok == true)].id}", ids(1, 3)},
		{"filter number", "${ref.output.items[?(@.price > 15)].id}", ids(2, 3)},
		{"filter float literal", "${ref.output.items[?(@.price <= 20.5)].id}", ids(1, 2)},
		{"filter string", "${ref.output.items[?(@.name == 'b')].id}", ids(2)},
		{"filter not equal", `${ref.output.items[?(@.name != "b")].id}`, ids(1, 3)},
		{"filter and", "${ref.output.items[?(@.ok == true && @.price >= 30)].id}", ids(3)},
		{"filter precedence", "${ref.output.items[?(@.id == 1 || @.id == 2 && @.ok == false)].name}", []any{"a", "b"}},
		{"filter parens", "${ref.output.items[?((@.id == 1 || @.id == 2) && @.ok == false)].name}", []any{"b"}},
		{"filter exists", "${ref.output.items[?(@.opt)].id}", ids(3)},
		{"filter exists with false value", "${ref.output.items[?(@.ok)].id}", ids(1, 2, 3)},
		{"filter null", "${ref.output.items[?(@.opt == null)].id}", ids(3)},
		{"filter on nothing", "${ref.output.items[?(@.id > 9)].id}", []any{}},
		{"filter list contains", "${ref.output.items[?(@.tags contains 'x')].id}", ids(1)},
		{"filter string contains", "${ref.output.items[?(@.name contains \"b\")].id}", ids(2)},
		{"filter string element contains", "${ref.output.a.b[?(@ contains 'sec')]}", []any{"second"}},
		{"filter in", "${ref.output.items[?(@.name in ['a', 'c'])].id}", ids(1, 3)},
		{"filter in numbers", "${ref.output.items[?(@.price in [10,20.5])].id}", ids(1, 2)},
		{"filter literal in a list path", "${ref.output.items[?('y' in @.tags)].id}", ids(1)},
		{"filter nin", "${ref.output.items[?(@.name nin ['a'])].id}", ids(2, 3)},
		{"filter size", "${ref.output.items[?(@.tags size 2)].id}", ids(1)},
		{"filter string size", "${ref.output.items[?(@.name size 1)].id}", ids(1, 2, 3)},
		{"filter empty", "${ref.output.items[?(@.tags empty true)].id}", ids(2)},
		{"filter not empty", "${ref.output.items[?(@.tags empty false)].id}", ids(1)},
		{"filter anyof", "${ref.output.items[?(@.tags anyof ['y','q'])].id}", ids(1)},
		{"filter noneof", "${ref.output.items[?(@.tags noneof ['y'])].id}", ids(2)},
		{"filter subsetof", "${ref.output.items[?(@.tags subsetof ['x','y','z'])].id}", ids(1, 2)},
		{"filter word operator on the wrong kind", "${ref.output.items[?(@.id contains 'x')].id}", []any{}},

		// Nothing to resolve: nil for definite paths, [] for indefinite ones.
		{"unknown source", "${nosuch.output.x}", nil},
		{"missing key", "${workflow.input.nope}", nil},
		{"index out of range", "${ref.output.a.b[5]}", nil},
		{"path into string", "${workflow.input.x.y}", nil},
		{"index into map", "${workflow.input[0]}", nil},
		{"invalid JSONPath", "${workflow.input[}", nil},
		{"unsupported function", "${ref.output.items.keys()}", nil},
		{"indefinite on unknown source", "${nosuch.output.items[*].id}", []any{}},
		{"no process environment", "${FLOWVAULT_EXPR_TEST_ENV}", nil},
		{"no system properties", "${user.home}", nil},

		// Blank expressions are "".
		{"empty", "${}", ""},
		{"blank", "${  }", ""},
		{"embedded empty", "a${}b", "ab"},

		// Embedded expressions interpolate.
		{"embedded string", "id-${workflow.input.x}", "id-hello"},
		{"embedded int", "n=${workflow.input.n}", "n=42"},
		{"embedded float", "f=${workflow.input.f}", "f=2.5"},
		{"embedded integral float", "f=${workflow.input.whole}", "f=3.0"},
		{"embedded large float", "f=${workflow.input.big}", "f=1.0E10"},
		{"embedded small float", "f=${workflow.input.small}", "f=1.0E-5"},
		{"embedded bool", "b=${workflow.input.b}", "b=true"},
		{"embedded null", "v=${workflow.input.nil}", "v=null"},
		{"embedded missing", "v=${workflow.input.nope}", "v=null"},
		{"embedded object", "o=${workflow.input.obj}", `o={"a":1,"k":"v"}`},
		{"embedded list", "l=${workflow.input.list}", `l=[1,"two"]`},
		{"embedded html stays", "${workflow.input.html}!", `{"q":"<a&b>"}!`},
		{"two expressions", "${workflow.input.x}${workflow.input.n}", "hello42"},

		// Nested expressions resolve first, innermost first.
		{"nested", "${workflow.input.${workflow.input.key}}", "hello"},
		{"nested twice", "${workflow.input.${workflow.input.${workflow.input.ptr}}}", "hello"},
		{"nested in brackets", "${ref.output['${workflow.input.space}']}", "spaced"},
		{"nested number", "${ref.output.a.b[${workflow.input.one}]}", "second"},

		// Escapes.
		{"escape", "$${workflow.input.x}", "${workflow.input.x}"},
		{"escape and expression", "a $${b} ${workflow.input.x}", "a ${b} hello"},
		{"escape after dollar", "$$${workflow.input.x}", "$${workflow.input.x}"},
		{"escape without close", "$${abc", "${abc"},
		{"escape does not hide a nested expression", "$${a.${workflow.input.x}}", "${a.hello}"},
		{"substituted data is not unescaped", "v=${workflow.input.escaped}", "v=$${workflow.input.x}"},
		{"whole substituted data is raw", "${workflow.input.escaped}", "$${workflow.input.x}"},
		{"substituted data is not evaluated", "v=${workflow.input.inject}", "v=${workflow.secrets.admin}"},

		// Data must not choose a deferred namespace, and a deferred
		// expression cannot feed another expression.
		{"namespace from data", "${${workflow.input.redirect}}", nil},
		{"deferred inside lookup", "${workflow.input.${workflow.secrets.k}}", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, deferred, err := Evaluate(tt.tmpl, testDoc())
			if err != nil {
				t.Fatalf("Evaluate(%q): %v", tt.tmpl, err)
			}
			if len(deferred) != 0 {
				t.Errorf("deferred = %v, want none", deferred)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Evaluate(%q) = %#v, want %#v", tt.tmpl, got, tt.want)
			}
		})
	}
}

// An aggregate is a JSON number or null: a NaN or an infinity in a task's
// input failed the workflow and made it unreadable (500 encode response).
func TestAggregateIsJSON(t *testing.T) {
	doc := MapDoc{"workflow": map[string]any{"input": map[string]any{
		"tenths": []any{0.1, 0.1, 0.1}, "sevens": []any{0.7, 0.7, 0.7, 0.7, 0.7},
		"huge": []any{1e308, 1e308}, "wide": []any{1e200, -1e200},
	}}}
	tests := []struct {
		tmpl string
		want any
	}{
		{"${workflow.input.tenths.stddev()}", 0.0},
		{"${workflow.input.sevens.stddev()}", 0.0},
		{"${workflow.input.huge.sum()}", nil},
		{"${workflow.input.huge.avg()}", nil},
		{"${workflow.input.huge.max()}", 1e308},
		{"${workflow.input.wide.stddev()}", nil},
		{"s=${workflow.input.huge.sum()}", "s=null"},
	}
	for _, tt := range tests {
		t.Run(tt.tmpl, func(t *testing.T) {
			got, _, err := Evaluate(tt.tmpl, doc)
			if err != nil {
				t.Fatalf("Evaluate: %v", err)
			}
			if got != tt.want {
				t.Errorf("Evaluate(%q) = %#v, want %#v", tt.tmpl, got, tt.want)
			}
			if _, err := json.Marshal(got); err != nil {
				t.Errorf("Evaluate(%q) = %#v: %v", tt.tmpl, got, err)
			}
		})
	}
}

// A secret or environment reference whose name, made of data, is empty
// or holds a brace is deferred without a name, for the hand-off to refuse
// (as it refuses a name that is not there): never a null.
func TestDeferredNameMadeOfBadData(t *testing.T) {
	for _, tmpl := range []string{"${workflow.secrets.${workflow.input.brace}}",
		"${workflow.env.${workflow.input.brace}}", "Bearer ${workflow.secrets.${workflow.input.brace}}"} {
		got, deferred, err := Evaluate(map[string]any{"k": tmpl}, testDoc())
		if err != nil || len(deferred) != 1 {
			t.Fatalf("Evaluate(%q) = %#v, deferred %v, %v", tmpl, got, deferred, err)
		}
		k := got.(map[string]any)["k"].(string)
		if !strings.Contains(k, "${workflow.secrets.}") && !strings.Contains(k, "${workflow.env.}") {
			t.Errorf("Evaluate(%q) = %q, want a reference without a name", tmpl, k)
		}
	}
}

func TestEvaluateTemplate(t *testing.T) {
	tmpl := map[string]any{
		"id":      "${workflow.input.n}",
		"${key}":  "keys are not evaluated",
		"num":     int64(5),
		"nothing": nil,
		"nested": map[string]any{
			"list": []any{"${workflow.input.x}", 1.5, []any{"x-${workflow.input.b}"}, map[string]any{}},
		},
	}
	want := map[string]any{
		"id":      int64(42),
		"${key}":  "keys are not evaluated",
		"num":     int64(5),
		"nothing": nil,
		"nested": map[string]any{
			"list": []any{"hello", 1.5, []any{"x-true"}, map[string]any{}},
		},
	}
	got, deferred, err := Evaluate(tmpl, testDoc())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %#v\nwant %#v", got, want)
	}
	if deferred != nil {
		t.Errorf("deferred = %v, want nil", deferred)
	}
	if got, _, _ := Evaluate(nil, testDoc()); got != nil {
		t.Errorf("Evaluate(nil) = %v", got)
	}
	if got, _, _ := Evaluate("${workflow.input.x}", nil); got != nil {
		t.Errorf("nil Doc: got %v, want nil", got)
	}
}

// The template comes from a shared definition and the result is stored, so
// neither may alias the other or the document.
func TestEvaluateCopies(t *testing.T) {
	tmpl := map[string]any{
		"obj":     "${workflow.input.obj}",
		"lit":     map[string]any{"a": []any{"b"}},
		"wild":    "${ref.output.items[*]}",
		"literal": []any{"${workflow.input.list}"},
	}
	doc := testDoc()
	before := mustJSON(t, tmpl)
	docBefore := mustJSON(t, doc)

	got, _, err := Evaluate(tmpl, doc)
	if err != nil {
		t.Fatal(err)
	}
	out := got.(map[string]any)
	out["obj"].(map[string]any)["k"] = "changed"
	out["lit"].(map[string]any)["a"].([]any)[0] = "changed"
	out["wild"].([]any)[0].(map[string]any)["id"] = "changed"
	out["literal"].([]any)[0].([]any)[0] = "changed"

	if after := mustJSON(t, tmpl); after != before {
		t.Errorf("template modified:\n%s\n%s", before, after)
	}
	if after := mustJSON(t, doc); after != docBefore {
		t.Errorf("document modified:\n%s\n%s", docBefore, after)
	}
}

// EvaluateShared yields what Evaluate yields, but a string that is one
// expression gives the document's own value, not a copy of it.
func TestEvaluateShared(t *testing.T) {
	doc := testDoc()
	list := doc["workflow"].(map[string]any)["input"].(map[string]any)["list"].([]any)
	for _, tc := range []struct {
		tmpl any
		same bool // the result is the document's list itself
	}{
		{"${workflow.input.list}", true},
		{map[string]any{"l": "${workflow.input.list}"}, false},
		{"n=${workflow.input.n}", false},
		{"${workflow.secrets.db}", false},
	} {
		shared, sharedDeferred, err := EvaluateShared(tc.tmpl, doc)
		if err != nil {
			t.Fatal(err)
		}
		copied, deferred, err := Evaluate(tc.tmpl, doc)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(shared, copied) || !reflect.DeepEqual(sharedDeferred, deferred) {
			t.Errorf("%v: shared %v %v, copied %v %v", tc.tmpl, shared, sharedDeferred, copied, deferred)
		}
		if l, ok := shared.([]any); ok && (&l[0] == &list[0]) != tc.same {
			t.Errorf("%v: shares the document's list %v, want %v", tc.tmpl, !tc.same, tc.same)
		}
	}
	if l, _, _ := Evaluate("${workflow.input.list}", doc); &l.([]any)[0] == &list[0] {
		t.Error("Evaluate shares the document's list")
	}
}

func TestEvaluateSyntaxError(t *testing.T) {
	tmpl := map[string]any{"a": map[string]any{"b": []any{"ok", "${workflow.input.x"}}}
	got, deferred, err := Evaluate(tmpl, testDoc())
	if got != nil || deferred != nil {
		t.Errorf("got %v, %v; want nil results on error", got, deferred)
	}
	var pe PathError
	if !errors.As(err, &pe) || pe.Path != "a.b[1]" {
		t.Fatalf("err = %v, want a PathError at a.b[1]", err)
	}
	if !errors.Is(err, ErrSyntax) || !errors.Is(err, fault.ErrInvalid) {
		t.Errorf("err = %v, want ErrSyntax and fault.ErrInvalid", err)
	}
}

func mustJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// A PayloadDoc is read whole from "$", as Conductor's JSONPath reads an
// event: the object itself, a deep scan or wildcard from the root, a
// filter comparing with a member of the root; the result is a copy. A
// document of sources (a workflow's) still cannot be read so: "$" alone
// is nil there.
func TestPayloadDocReadsTheRoot(t *testing.T) {
	payload := PayloadDoc{"id": "o-1", "limit": int64(5), "items": []any{
		map[string]any{"sku": "a", "n": int64(3)}, map[string]any{"sku": "b", "n": int64(9)}}}
	for _, tt := range []struct {
		expr string
		doc  Doc
		want any
	}{
		{"${$}", payload, map[string]any(payload)},
		{"${ $ }", payload, map[string]any(payload)},
		{"${$.id}", payload, "o-1"},
		{"${id}", payload, "o-1"},
		{"${$..sku}", payload, []any{"a", "b"}},
		{"${$.items[?(@.n > $.limit)].sku}", payload, []any{"b"}},
		{"${$.length()}", payload, int64(3)},
		{"${$}", MapDoc(payload), nil},
		{"${$..sku}", MapDoc(payload), nil},
		{"${$}", testDoc(), nil},
	} {
		got, _, err := Evaluate(tt.expr, tt.doc)
		if err != nil {
			t.Fatalf("%s: %v", tt.expr, err)
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s over %T = %#v, want %#v", tt.expr, tt.doc, got, tt.want)
		}
	}
	got, _, _ := Evaluate("${$}", payload)
	whole, ok := got.(map[string]any)
	if !ok {
		t.Fatalf("${$} = %#v, want the payload", got)
	}
	whole["items"].([]any)[0].(map[string]any)["sku"] = "changed"
	if payload["items"].([]any)[0].(map[string]any)["sku"] != "a" {
		t.Fatal("the result of ${$} shares the payload's values")
	}
}
