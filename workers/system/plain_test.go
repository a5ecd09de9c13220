package system

import (
	"context"
	"reflect"
	"testing"

	"github.com/dop251/goja"
)

// A plain script is one whose syntax tree holds nothing but reads of $
// and operators: it runs without the prelude. Anything that could reach
// a guarded built-in is not plain.
func TestPlainScripts(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		src   string
		plain bool
	}{
		{"$.loop['iteration'] < $.n", true},
		{"if ($.loop['iteration'] < $.value) { true; } else { false; }", true},
		{"$.a ? $.b : 'x'", true},
		{"`n=${$.n}`", true},
		{"({a: $.x, b: [1, 2, -$.n], k: !$.y})", true},
		{"typeof $.x === 'string' && $.x.length > 3", true},
		{"$.x?.y ?? Infinity", true},
		{"$.a, $.b; ;", true},
		{"void 0 === undefined || NaN !== NaN", true},
		{"'k' in $.o", true},
		{"(function(){ return $.a; })()", false},
		{"$.a.b()", false},
		{"$.s.repeat(1e9)", false},
		{"new Array(5)", false},
		{"$.a = 1", false},
		{"$.a += 1", false},
		{"$.a++", false},
		{"delete $.a", false},
		{"Math.max(1, 2)", false},
		{"[...$.arr]", false},
		{"({...$.o})", false},
		{"/x/.test($.s)", false},
		{"String.raw`x`", false},
		{"$.t`x`", false},
		{"$ instanceof Object", false},
		{"for (;;) {}", false},
		{"var x = 1; x", false},
		{"let x = 1", false},
		{"this", false},
		{"globalThis", false},
		{"({get a() { return 1; }})", false},
		{"({a() { return 1; }})", false},
		{"({$})", false},
		{"({'a b': 1, 2: $.x, c: {d: []}})", true},
		{"({[$.k]: 1})", false},
		{"({__proto__: [].constructor.prototype, length: 4e9}) + ''", false},
		{"({'__proto__': $.o})", false},
		{"({toJSON: ''.constructor.prototype.repeat})", false},
		{"({toString: $.f}) + ''", false},
		{"({valueOf: $.f}) < 1", false},
		{"x => x", false},
		{"console.log(1)", false},
		{"label: $.a", false},
		{"try { $.a } catch (e) {}", false},
		{"throw $.a", false},
		{"class A {}", false},
		{"eval('1')", false},
	} {
		_, traits, err := parseJS("script", tt.src)
		if err != nil {
			t.Fatalf("%s: %v", tt.src, err)
		}
		if traits.plain != tt.plain {
			t.Errorf("%s: plain %v, want %v", tt.src, traits.plain, tt.plain)
		}
	}
}

// A plain script gives the same result, or the same error, without the
// prelude as with it.
func TestPlainScriptsRunAsGuarded(t *testing.T) {
	t.Parallel()
	scope := map[string]any{"n": int64(3), "s": "text", "x": 1.5, "arr": []any{int64(1), "b", []any{int64(2)}},
		"o": map[string]any{"k": "v", "nested": map[string]any{"deep": true}}, "nil": nil, "loop": lazyJSON(loopOutput())}
	for _, src := range []string{
		"$.loop['iteration'] < $.n",
		"if ($.loop.iteration > $.n) { 'more'; } else { 'less'; }",
		"$.loop['2'].step.tags",
		"$.loop",
		"$.o",
		"({a: $.arr, b: `${$.arr}`, c: $.o + '', d: $.x * 2, e: $.s[1], f: -$.nil, g: $.missing})",
		"[$.n / 0, -$.n / 0, 0 / 0, 2 ** 60, 0.1 + 0.2, 1e21, -0]",
		"$.o.nested.deep && typeof $.arr",
		"$.missing.field",
		"$.nil.field",
		"$.loop.nope?.deeper ?? 'none'",
		"$.arr.length + $.s.length",
	} {
		_, traits, err := compileJS(src)
		if err != nil || !traits.plain {
			t.Fatalf("%s: plain %v, %v", src, traits.plain, err)
		}
		fast, fastErr := runTraits(t, src, scope, traits)
		guarded, guardedErr := runTraits(t, src, scope, scriptTraits{})
		if !reflect.DeepEqual(fast, guarded) || (fastErr == nil) != (guardedErr == nil) ||
			fastErr != nil && fastErr.Error() != guardedErr.Error() {
			t.Errorf("%s: plain %#v (%v), guarded %#v (%v)", src, fast, fastErr, guarded, guardedErr)
		}
	}
}

// runTraits runs src as runJS does, as a script of the given traits.
func runTraits(t *testing.T, src string, scope map[string]any, traits scriptTraits) (any, error) {
	t.Helper()
	prog, _, err := compileJS(src)
	if err != nil {
		t.Fatal(err)
	}
	b := Budget{}.withDefaults()
	run := scriptHeap.begin(uint64(b.Memory))
	defer scriptHeap.end(run)
	return runProgram(context.Background(), b, run, prog, traits, scope, func(r *jsRun, v goja.Value) (any, error) { return r.toJSON(v) })
}
