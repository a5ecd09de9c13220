package expr

import (
	"errors"
	"strings"
	"testing"
)

// A secret or environment value read where the engine evaluates the
// expression is refused naming the value, and why: it reads null there.
// Secrets and environment values alike, a reference of its own is not.
func TestMisplacedDeferredNamesTheValue(t *testing.T) {
	for _, tc := range []struct{ expr, names string }{
		{"${workflow.env.region}", ""},
		{"Bearer ${workflow.secrets.tok} for ${workflow.input.user}", ""},
		{"${workflow.secrets.db.password}", ""},
		{"${workflow.env.${workflow.secrets.token}}", ""}, // refused at hand-off
		{"${$.workflow.input.list.sum()}", ""},
		{"${$.concat($.workflow.env.region, '-')}", "workflow.env.region is read as a path"},
		{"${workflow.input.list.append($.workflow.secrets.extra)}", "workflow.secrets.extra is read as a path"},
		{"${workflow.input.a[?(@.b[?(@.c == $.workflow.secrets.s)] empty false)]}", "workflow.secrets.s is read as a path"},
		{"${workflow.input.a[?(!(@.c == $.workflow.env.e))]}", "workflow.env.e is read as a path"},
		{"${$.workflow.env.region}", "workflow.env.region is read as a path"},
		{"${workflow['secrets']['tok']}", "workflow.secrets.tok is read as a path"},
		{"id-${workflow.input.${workflow.env.key}}", "${workflow.env.key} is nested in another expression"},
	} {
		errs := MisplacedDeferred(map[string]any{"x": []any{tc.expr}})
		if tc.names == "" {
			if len(errs) != 0 {
				t.Errorf("%s: %v", tc.expr, errs)
			}
			continue
		}
		if len(errs) != 1 || errs[0].Path != "x[0]" || !errors.Is(errs[0], ErrDeferredInPath) ||
			!strings.Contains(errs[0].Error(), tc.names) || !strings.Contains(errs[0].Error(), "reads null") {
			t.Errorf("%s: %v, want x[0] refused naming %q", tc.expr, errs, tc.names)
		}
	}
}
