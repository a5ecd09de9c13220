package system

import (
	"context"

	"github.com/dop251/goja"
)

// CheckScript reports a syntax error in src, a JavaScript expression or
// script as conditions, SWITCH cases and INLINE tasks take.
func CheckScript(src string) error {
	_, _, err := compileJS(src)
	return err
}

// ScriptBool reads v, a condition's value, as Conductor's
// ScriptEvaluator.toBoolean does: true, or a number above zero; any other
// value is false.
func ScriptBool(v any) bool {
	switch x := v.(type) {
	case bool:
		return x
	case int64:
		return x > 0
	case float64:
		return x > 0
	}
	return false
}

// Condition evaluates src with `$` bound to scope, under b, and reports
// whether its value is truthy as a DO_WHILE's loopCondition reads it (an
// event handler's condition).
func Condition(ctx context.Context, b Budget, src string, scope map[string]any) (bool, error) {
	v, err := runJS(ctx, b, src, scope, func(_ *jsRun, v goja.Value) (any, error) { return scriptBool(v), nil })
	if err != nil {
		return false, err
	}
	return v.(bool), nil
}
