package expr

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestCompilePathErrors(t *testing.T) {
	for _, p := range []string{
		"", "x", "$.", "$..", "$.a..", "$[", "$[1", "$['a", "$['a'", "$[a]", "$[1:2:3]", "$[x:]",
		"$.a.nosuch()", "$.a.length(1)", "$.a.index()", "$.a.concat(1,)", "$.a.concat(@.b", "$.a.concat(x)", "$.length().a", "$[?(@.a == )]", "$[?(@.a == 1]", "$[?(1)]", "$[?(@.a ==  'x)]",
		"$[?(@.a =~ 'x')]", "$[?(@.a =~ /x)]", "$[?(@.a =~ /(?<=x)y/)]", "$[?(@.a =~ /x/z)]", "$[?(@.a == /x/)]", "$[?(!1)]", "$[?(@.a in [1)]", "$[?(@.a in [@.b])]", "$[?(@.a in [1 2])]", "$[?((@.a)]", "$[?(@.a) @.b]", "$a",
		"$['a',", "$['a', ", "$['a', b]",
		// Lists nest no deeper than parentheses: four million "[" (a
		// definition under the API's 4 MiB) overflowed the stack, a
		// fatal error that ended the server.
		"$[?(@.a in " + strings.Repeat("[", 33) + strings.Repeat("]", 33) + ")]",
		"$[?(@.a in " + strings.Repeat("[", 4<<20) + ")]",
		// Filters in a filter's paths count too: 2,000 of them compiled
		// in quadratic time, and deeper ones overflowed the stack.
		"$" + strings.Repeat("[?(@.b", 33) + " == 1" + strings.Repeat(")]", 33),
		"$" + strings.Repeat("[?(@.b", 2000) + " == 1" + strings.Repeat(")]", 2000),
		// So do negations, each a call deeper.
		"$[?(" + strings.Repeat("!", 40) + "(@.a))]",
		"$[?(" + strings.Repeat("!", 4<<20) + "(@.a))]",
		"$[?(!(@.a)]", "$[?(!)]",
	} {
		if _, err := compilePath(p, '$'); !errors.Is(err, errPath) {
			t.Errorf("compilePath(%q) = %v, want errPath", p, err)
		}
	}
}

// A list nested as deep as parentheses may be still compiles.
func TestCompilePathNestedList(t *testing.T) {
	p := "$[?(@.a in " + strings.Repeat("[", 32) + strings.Repeat("]", 32) + ")]"
	if _, err := compilePath(p, '$'); err != nil {
		t.Errorf("compilePath(32 nested lists) = %v", err)
	}
}

func TestJSONPathEval(t *testing.T) {
	root := map[string]any{
		"a": []any{int64(10), int64(20), int64(30), int64(40)},
		"m": map[string]any{"y": int64(2), "x": int64(1)},
		"n": map[string]any{"k": map[string]any{"k": "deep"}},
		"s": "str",
		"f": map[string]any{"ok": true, "v": "self"},
	}
	tests := []struct {
		path   string
		want   any
		wantOK bool
	}{
		{"$", root, true},
		{"$.a[1]", int64(20), true},
		{"$.a[-4]", int64(10), true},
		{"$.a[-5]", nil, false},
		{"$.a[4]", nil, false},
		{"$.a[1:3]", []any{int64(20), int64(30)}, true},
		{"$.a[-1:]", []any{int64(40)}, true},
		{"$.a[:-3]", []any{int64(10)}, true},
		{"$.a[3:1]", []any{}, false},
		{"$.a[-9:9]", []any{int64(10), int64(20), int64(30), int64(40)}, true},
		{"$.a[ 0 , 3 ]", []any{int64(10), int64(40)}, true},
		{"$.m.*", []any{int64(1), int64(2)}, true},
		{"$.m[*]", []any{int64(1), int64(2)}, true},
		{"$.s[*]", []any{}, false},
		{"$.n..k", []any{map[string]any{"k": "deep"}, "deep"}, true},
		{"$.n..*", []any{map[string]any{"k": "deep"}, "deep"}, true},
		{"$.a.length()", int64(4), true},
		{"$.m.length()", int64(2), true},
		{"$.s.length()", nil, true},
		{"$.a[?(@ > 15)]", []any{int64(20), int64(30), int64(40)}, true},
		{"$.f[?(@.ok == true)].v", []any{"self"}, true},
		{"$.f[?(@.ok == false)].v", []any{}, false},
		{"$.m['x','nope']", map[string]any{"x": int64(1)}, true},
		{"$['m','n'].x", []any{int64(1)}, true},
		{"$.['s']", "str", true},
	}
	for _, tt := range tests {
		jp, err := compilePath(tt.path, '$')
		if err != nil {
			t.Errorf("compilePath(%q): %v", tt.path, err)
			continue
		}
		got, ok := jp.eval(root, newWork(MaxSteps))
		if !reflect.DeepEqual(got, tt.want) || ok != tt.wantOK {
			t.Errorf("%s = %#v, %v; want %#v, %v", tt.path, got, ok, tt.want, tt.wantOK)
		}
	}
}
