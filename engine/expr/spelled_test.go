package expr

import (
	"encoding/json"
	"strings"
	"testing"
)

// Spelled tells a template whose value is the document's from one that
// adds text of its own; where the template holds "hunter2", evaluating it
// shows whether that text reaches the value, as Spelled says it does.
func TestSpelled(t *testing.T) {
	t.Parallel()
	doc := PayloadDoc{"x": "v", "n": []any{1.0, 2.0}, "k": "x", "o": "(", "q": "('", "c": "')", "f": "concat"}
	for _, tc := range []struct {
		s    string
		want bool
	}{
		{"", true},
		{"hunter2", true},
		{"${x}", false},
		{" ${x} ", true},
		{"${ x }", false},
		{"${x}${n}", false},
		{"${$}", false},
		{"${}", false},
		{"${${k}}", false},
		{"hunter2 ${x}", true},
		{"${x}hunter2", true},
		{"$${hunter2}", true},
		{"$${x}${x}", true},
		{"${x", true},
		{"${$.n.length()}", false},
		{"${$.n.index(1)}", false},
		{"${$.x.concat('hunter2')}", true},
		{"${x.concat($.x)}", false},
		{"${x.concat($.n.append('hunter2'))}", true},
		{"${$.n.sum(4)}", true},
		{"${${k}.concat('hunter2')}", true},
		// A path the event completes: its text may open a function
		// before the path's own text, and quote or close an argument
		// after it.
		{"${$.x.concat${o}'hunter2')}", true},
		{"${$.x.concat${q}hunter2${c}}", true},
		{"${$.x.${f}('hunter2')}", true},
		{"${$.${k}}", false},
		{"${$.${k}.hunter2}", false},
		{"${$['${k}']}", false},
		{"${$.n[${k}].${k}}", false},
		{"${$['hunter2']}", false},
		{"${$.n[?(@ == 'hunter2')]}", false},
	} {
		if got := Spelled(tc.s); got != tc.want {
			t.Errorf("Spelled(%q) = %v, want %v", tc.s, got, tc.want)
		}
		if !strings.Contains(tc.s, "hunter2") {
			continue
		}
		v, _, err := Evaluate(tc.s, doc)
		b, _ := json.Marshal(v)
		if err == nil && strings.Contains(string(b), "hunter2") != tc.want {
			t.Errorf("Evaluate(%q) = %s, which Spelled = %v does not tell", tc.s, b, tc.want)
		}
	}
}
