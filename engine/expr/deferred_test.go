package expr

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestEvaluateDeferred(t *testing.T) {
	tests := []struct {
		name         string
		tmpl         any
		want         any
		wantDeferred []Path
	}{
		{"whole secret", "${workflow.secrets.token}", "${workflow.secrets.token}", []Path{{}}},
		{"embedded secret", "Bearer ${workflow.secrets.token}", "Bearer ${workflow.secrets.token}", []Path{{}}},
		{"secret field", "${workflow.secrets.db.password}", "${workflow.secrets.db.password}", []Path{{}}},
		{"env", "${workflow.env.region}", "${workflow.env.region}", []Path{{}}},
		{"env JSONPath", "${workflow.env.cfg.$.field}", "${workflow.env.cfg.$.field}", []Path{{}}},
		{"nested name", "${workflow.secrets.${workflow.input.name}}", "${workflow.secrets.db}", []Path{{}}},
		{"nested name with field", "u=${workflow.secrets.${workflow.input.name}.user}", "u=${workflow.secrets.db.user}", []Path{{}}},
		{"trimmed", "${ workflow.secrets.token }", "${workflow.secrets.token}", []Path{{}}},
		// A name that is itself deferred is not known before the hand-off,
		// which refuses a reference without a name.
		{"name from an environment value", "Bearer ${workflow.secrets.${workflow.env.region}_key}", "Bearer ${workflow.secrets.}", []Path{{}}},
		{"name from a secret", "${workflow.secrets.${workflow.secrets.token}}", "${workflow.secrets.}", []Path{{}}},
		{"environment name from a secret", "${workflow.env.${workflow.secrets.token}}", "${workflow.env.}", []Path{{}}},
		{"mixed with values", "${workflow.input.x}:${workflow.secrets.t}:${workflow.input.n}", "hello:${workflow.secrets.t}:42", []Path{{}}},
		{
			"nested in map",
			map[string]any{"http_request": map[string]any{
				"uri":     "https://x/${workflow.input.x}",
				"headers": map[string]any{"Authorization": "Bearer ${workflow.secrets.t}"},
			}},
			map[string]any{"http_request": map[string]any{
				"uri":     "https://x/hello",
				"headers": map[string]any{"Authorization": "Bearer ${workflow.secrets.t}"},
			}},
			[]Path{{"http_request", "headers", "Authorization"}},
		},
		{
			"nested in slice, in key order",
			map[string]any{"b": []any{"a", map[string]any{"k": []any{"x", "${workflow.env.e}"}}}, "a": "${workflow.secrets.s}"},
			map[string]any{"b": []any{"a", map[string]any{"k": []any{"x", "${workflow.env.e}"}}}, "a": "${workflow.secrets.s}"},
			[]Path{{"a"}, {"b", 1, "k", 1}},
		},

		// The deferred encoding: literal "${" and data are escaped.
		{"template escape kept", "$${x} ${workflow.secrets.t}", "$${x} ${workflow.secrets.t}", []Path{{}}},
		{"injected expression escaped", "Bearer ${workflow.secrets.t} ${workflow.input.inject}", "Bearer ${workflow.secrets.t} $${workflow.secrets.admin}", []Path{{}}},
		{"dollar before expression", "${workflow.input.dollar}${workflow.secrets.t}", "cost $$${workflow.secrets.t}", []Path{{}}},
		{"plain dollars untouched", "$5 $$ ${workflow.secrets.t}", "$5 $$ ${workflow.secrets.t}", []Path{{}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, deferred, err := Evaluate(tt.tmpl, testDoc())
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("value = %#v, want %#v", got, tt.want)
			}
			if !reflect.DeepEqual(deferred, tt.wantDeferred) {
				t.Errorf("deferred = %#v, want %#v", deferred, tt.wantDeferred)
			}
		})
	}
}

// fakeResolver serves fixed values and records every body it is asked for.
type fakeResolver struct {
	values map[string]any
	calls  []string
}

var errNoSecret = errors.New("no such secret")

func (r *fakeResolver) Resolve(body string) (any, error) {
	r.calls = append(r.calls, body)
	v, ok := r.values[body]
	if !ok {
		return nil, errNoSecret
	}
	return v, nil
}

func newResolver() *fakeResolver {
	return &fakeResolver{values: map[string]any{
		"workflow.secrets.t":     "tok",
		"workflow.secrets.admin": "ADMIN",
		"workflow.secrets.json":  map[string]any{"user": "u", "password": "p"},
		"workflow.secrets.nil":   nil,
		"workflow.env.port":      int64(5432),
		"workflow.env.ratio":     0.5,
		"workflow.env.cfg.$.f":   "F",
	}}
}

func TestResolveDeferred(t *testing.T) {
	tests := []struct {
		name string
		tmpl string
		want any
	}{
		{"whole string", "${workflow.secrets.t}", "tok"},
		{"whole map keeps type", "${workflow.secrets.json}", map[string]any{"user": "u", "password": "p"}},
		{"whole int keeps type", "${workflow.env.port}", int64(5432)},
		{"whole nil", "${workflow.secrets.nil}", nil},
		{"embedded", "Bearer ${workflow.secrets.t}", "Bearer tok"},
		{"embedded int", "db:${workflow.env.port}", "db:5432"},
		{"embedded float", "r=${workflow.env.ratio}", "r=0.5"},
		{"embedded map", "j=${workflow.secrets.json}", `j={"password":"p","user":"u"}`},
		{"embedded nil is empty", "[${workflow.secrets.nil}]", "[]"},
		{"two", "${workflow.secrets.t}/${workflow.secrets.t}", "tok/tok"},
		{"env JSONPath body", "f=${workflow.env.cfg.$.f}", "f=F"},
		{"escape unescaped", "$${x} ${workflow.secrets.t}", "${x} tok"},
		{"dollar before expression", "${workflow.input.dollar}${workflow.secrets.t}", "cost $tok"},
		{"plain dollars", "$5 $$ ${workflow.secrets.t}", "$5 $$ tok"},
		{"data dollars", "${workflow.input.escaped} ${workflow.secrets.t}", "$${workflow.input.x} tok"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, deferred, err := Evaluate(map[string]any{"k": tt.tmpl}, testDoc())
			if err != nil {
				t.Fatal(err)
			}
			stored := mustJSON(t, v)
			got, err := ResolveDeferred(v, deferred, newResolver())
			if err != nil {
				t.Fatal(err)
			}
			if want := map[string]any{"k": tt.want}; !reflect.DeepEqual(got, want) {
				t.Errorf("got %#v, want %#v", got, want)
			}
			if after := mustJSON(t, v); after != stored {
				t.Errorf("ResolveDeferred modified its input: %s -> %s", stored, after)
			}
		})
	}
}

func TestResolveDeferredOnlyGivenPaths(t *testing.T) {
	value := map[string]any{
		"a": "$${x} ${workflow.secrets.t}",
		"b": "$${x} ${workflow.secrets.t}",
		"c": []any{int64(1), "${workflow.secrets.t}"},
	}
	got, err := ResolveDeferred(value, []Path{{"a"}, {"c", 1}, {"a"}}, newResolver())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"a": "${x} tok", "b": "$${x} ${workflow.secrets.t}", "c": []any{int64(1), "tok"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %#v, want %#v", got, want)
	}
	got.(map[string]any)["c"].([]any)[0] = "changed"
	if value["c"].([]any)[0] != int64(1) {
		t.Error("result aliases the input")
	}
}

// A path read back from the log or a state snapshot has its list indices
// decoded by msgpack as the smallest integer type that holds them, not as
// the int Evaluate wrote: each still reaches its element (a task whose
// reference sat in a list failed "no deferred string here" when handed
// off after a restart).
func TestResolveDeferredDecodedIndices(t *testing.T) {
	long := make([]any, 301)
	long[300] = "x ${workflow.secrets.t}"
	value := map[string]any{"l": []any{"a", "${workflow.secrets.t}"}, "long": long,
		"nested": []any{map[string]any{"h": []any{"Bearer ${workflow.secrets.t}"}}}}
	tests := []struct {
		name string
		path Path
		want any
	}{
		{"int", Path{"l", 1}, "tok"},
		{"int8", Path{"l", int8(1)}, "tok"},
		{"int16", Path{"l", int16(1)}, "tok"},
		{"int32", Path{"l", int32(1)}, "tok"},
		{"int64", Path{"l", int64(1)}, "tok"},
		{"uint8", Path{"l", uint8(1)}, "tok"},
		{"uint16 past a byte", Path{"long", uint16(300)}, "x tok"},
		{"uint32", Path{"l", uint32(1)}, "tok"},
		{"uint64", Path{"l", uint64(1)}, "tok"},
		{"nested", Path{"nested", int8(0), "h", int8(0)}, "Bearer tok"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ResolveDeferred(value, []Path{tt.path}, newResolver())
			if err != nil {
				t.Fatal(err)
			}
			if v, _ := tt.path.In(got); v != tt.want {
				t.Errorf("%s reads %#v, want %#v", tt.path, v, tt.want)
			}
		})
	}
	for _, step := range []any{-1, int8(-1), 2, uint8(2), "1", 1.0} {
		if _, err := ResolveDeferred(value, []Path{{"l", step}}, newResolver()); !errors.Is(err, ErrNoDeferredString) {
			t.Errorf("step %#v: err = %v, want ErrNoDeferredString", step, err)
		}
	}
}

func TestResolveDeferredErrors(t *testing.T) {
	value := map[string]any{
		"h":    map[string]any{"Authorization": "Bearer ${workflow.secrets.missing}"},
		"n":    int64(1),
		"bad":  "${workflow.input.x}",
		"open": "${workflow.secrets.x",
	}
	tests := []struct {
		name     string
		path     Path
		wantPath string
		wantIs   error
	}{
		{"resolver error", Path{"h", "Authorization"}, "h.Authorization", errNoSecret},
		{"not a string", Path{"n"}, "n", nil},
		{"no such path", Path{"h", "x", 3}, "h.x[3]", nil},
		{"not deferred", Path{"bad"}, "bad", errMalformed},
		{"unterminated", Path{"open"}, "open", errMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newResolver()
			_, err := ResolveDeferred(value, []Path{tt.path}, r)
			var pe PathError
			if !errors.As(err, &pe) || pe.Path != tt.wantPath {
				t.Fatalf("err = %v, want a PathError at %s", err, tt.wantPath)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("err = %v, want it to wrap %v", err, tt.wantIs)
			}
			if tt.name == "not deferred" && len(r.calls) != 0 {
				t.Errorf("resolver called with %v for a non-deferred body", r.calls)
			}
		})
	}
}

// TestInjection shows that data substituted from the document can never
// become a deferred expression, whatever it contains.
func TestInjection(t *testing.T) {
	doc := testDoc()
	input := doc["workflow"].(map[string]any)["input"].(map[string]any)
	input["x"] = "${workflow.secrets.admin}"
	input["n"] = "x}${workflow.secrets.admin"
	input["dollars"] = "$$${workflow.secrets.admin}$"
	input["ns"] = "workflow.secrets.admin"

	tests := []struct {
		name string
		tmpl string
		want any
	}{
		{"embedded next to a secret", "Bearer ${workflow.secrets.t} ${workflow.input.x}", "Bearer tok ${workflow.secrets.admin}"},
		{"whole value", "${workflow.input.x}", "${workflow.secrets.admin}"},
		{"dollars next to a secret", "${workflow.input.dollars}${workflow.secrets.t}", "$$${workflow.secrets.admin}$tok"},
		{"choosing the namespace", "${${workflow.input.ns}} ${workflow.secrets.t}", "null tok"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, deferred, err := Evaluate(map[string]any{"k": tt.tmpl}, doc)
			if err != nil {
				t.Fatal(err)
			}
			r := newResolver()
			got, err := ResolveDeferred(v, deferred, r)
			if err != nil {
				t.Fatal(err)
			}
			if want := map[string]any{"k": tt.want}; !reflect.DeepEqual(got, want) {
				t.Errorf("got %#v, want %#v", got, want)
			}
			if slices.Contains(r.calls, "workflow.secrets.admin") {
				t.Errorf("the admin secret was resolved: calls %v", r.calls)
			}
		})
	}
	// Data that closes the name defers a reference without one, which
	// resolves nothing: the resolver refuses it.
	v, deferred, err := Evaluate(map[string]any{"k": "${workflow.secrets.${workflow.input.n}}"}, doc)
	if err != nil {
		t.Fatal(err)
	}
	r := newResolver()
	if _, err := ResolveDeferred(v, deferred, r); err == nil || !reflect.DeepEqual(r.calls, []string{"workflow.secrets."}) {
		t.Fatalf("closing the secret name: calls %v, %v", r.calls, err)
	}
}

// DeferSealed replaces a value's occurrences in a string's literal text by
// deferred reads, keeping the encoding exact around "$" and "{", leaving
// the string's own deferred expressions as they are.
func TestDeferSealed(t *testing.T) {
	for _, tc := range []struct {
		name, s string
		encoded bool
		want    string
		changed bool
	}{
		{"plain", "Bearer tok-123456", false, "Bearer ${sealed:r}", true},
		{"twice", "tok-123456/tok-123456", false, "${sealed:r}/${sealed:r}", true},
		{"absent", "nothing here", false, "nothing here", false},
		{"dollar before", "cost $tok-123456", false, "cost $$${sealed:r}", true},
		{"literal braces kept", "${x} tok-123456", false, "$${x} ${sealed:r}", true},
		{"encoded, with a secret", "${workflow.secrets.k}:tok-123456", true, "${workflow.secrets.k}:${sealed:r}", true},
		{"encoded, absent", "${workflow.secrets.k}", true, "${workflow.secrets.k}", false},
	} {
		got, changed := DeferSealed(tc.s, tc.encoded, "tok-123456", "r")
		if got != tc.want || changed != tc.changed {
			t.Errorf("%s: DeferSealed(%q) = %q, %v; want %q, %v", tc.name, tc.s, got, changed, tc.want, tc.changed)
		}
		if !changed {
			continue
		}
		// Resolved, the text comes back with the value in place.
		out, err := ResolveDeferred(map[string]any{"v": got}, []Path{{"v"}}, resolverFunc(func(body string) (any, error) {
			if body == SealedPrefix+"r" {
				return "tok-123456", nil
			}
			return "<" + body + ">", nil
		}))
		want := strings.ReplaceAll(tc.s, "${workflow.secrets.k}", "<workflow.secrets.k>")
		if err != nil || out.(map[string]any)["v"] != want {
			t.Errorf("%s: resolved to %v, %v; want %q", tc.name, out, err, want)
		}
	}
	if _, changed := DeferSealed("a tok-123456", false, "tok-123456", "r{}"); changed {
		t.Error("a reference with braces was written into an expression")
	}
}

type resolverFunc func(body string) (any, error)

func (f resolverFunc) Resolve(body string) (any, error) { return f(body) }
