package expr

import (
	"errors"
	"reflect"
	"slices"
	"testing"
)

// FuzzEvaluate checks that Evaluate never panics, is deterministic, agrees
// with Validate, never modifies its template, and that data substituted from
// the document never reaches the Resolver.
func FuzzEvaluate(f *testing.F) {
	for _, s := range []string{
		"", "plain", "${workflow.input.x}", "id-${workflow.input.n}", "${", "$${", "$$${", "}",
		"${workflow.input.${workflow.input.key}}", "${ref.output.items[?(@.ok == true && @.price > 1)].id}",
		"${ref.output..id}", "${ref.output.items[-1:].name}", "${workflow.secrets.${workflow.input.name}.x}",
		"Bearer ${workflow.secrets.t} ${workflow.input.x}", "${workflow.env.e.$.f}", "${}", "a{${b}}c",
		"${ref.output['key with space']}", "${ref.output.items.length()}", "${ref.output.items[0,1]['id','name']}",
	} {
		f.Add(s, s)
	}
	f.Fuzz(func(t *testing.T, tmplStr, data string) {
		doc := testDoc()
		input := doc["workflow"].(map[string]any)["input"].(map[string]any)
		input["x"] = data
		input["key"] = data
		tmpl := map[string]any{
			"a": tmplStr,
			"b": []any{tmplStr, "Bearer ${workflow.secrets.t} ${workflow.input.x}", map[string]any{"c": tmplStr}},
			"d": "${workflow.secrets.${workflow.input.x}} ${workflow.input.x}",
		}
		before := mustJSON(t, tmpl)

		v1, d1, err1 := Evaluate(tmpl, doc)
		v2, d2, err2 := Evaluate(tmpl, doc)
		if !reflect.DeepEqual(v1, v2) || !reflect.DeepEqual(d1, d2) || !sameError(err1, err2) {
			t.Fatalf("non-deterministic: %#v %v %v / %#v %v %v", v1, d1, err1, v2, d2, err2)
		}
		if verr := Validate(tmplStr); (verr == nil) != (err1 == nil) {
			t.Fatalf("Validate = %v but Evaluate = %v", verr, err1)
		}
		if after := mustJSON(t, tmpl); after != before {
			t.Fatalf("template modified")
		}
		if err1 != nil {
			if !errors.Is(err1, ErrSyntax) {
				t.Fatalf("non-syntax error %v", err1)
			}
			return
		}
		r := &fakeResolver{values: map[string]any{}}
		if _, err := ResolveDeferred(v1, d1, r); err != nil && !errors.Is(err, errNoSecret) {
			t.Fatalf("ResolveDeferred: %v", err)
		}
		// The template names workflow.secrets.t and workflow.secrets.<x>,
		// plus whatever tmplStr itself names; data can add nothing else.
		allowed := []string{"workflow.secrets.t"}
		if dv, _, _ := Evaluate("${workflow.secrets.${workflow.input.x}}", doc); dv != nil {
			allowed = append(allowed, dv.(string)[2:len(dv.(string))-1])
		}
		for _, body := range r.calls {
			if !slices.Contains(allowed, body) && !fromTemplate(t, tmplStr, body, doc) {
				t.Fatalf("resolver asked for %q, which only data names", body)
			}
		}
	})
}

// fromTemplate reports whether tmplStr by itself yields the deferred body.
func fromTemplate(t *testing.T, tmplStr, body string, doc Doc) bool {
	t.Helper()
	v, d, err := Evaluate(tmplStr, doc)
	if err != nil || len(d) == 0 {
		return false
	}
	r := &fakeResolver{values: map[string]any{}}
	_, _ = ResolveDeferred(v, d, r) // only the calls matter
	return slices.Contains(r.calls, body)
}

func sameError(a, b error) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Error() == b.Error()
}

func BenchmarkEvaluate(b *testing.B) {
	doc := testDoc()
	tmpl := map[string]any{
		"id":      "${workflow.input.n}",
		"url":     "https://api.example.com/items/${workflow.input.x}?v=${workflow.variables.v}",
		"first":   "${ref.output.items[0].id}",
		"limit":   int64(10),
		"headers": map[string]any{"Authorization": "Bearer ${workflow.secrets.t}", "Accept": "application/json"},
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := Evaluate(tmpl, doc); err != nil {
			b.Fatal(err)
		}
	}
}
