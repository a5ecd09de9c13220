package conductor

import (
	"encoding/json"
	"reflect"
	"testing"
)

// normalizeValue runs at every level of a nested definition; the levels
// below have normalized their own numbers already (each decodes itself),
// and walking them again, their raw JSON byte by byte included, made the
// whole decode cost grow with the cube of the depth.
func TestNormalizeStopsAtSelfDecodedValues(t *testing.T) {
	t.Parallel()
	holder := struct {
		Task  WorkflowTask
		Tasks []WorkflowTask
		Input map[string]any
	}{
		Task:  WorkflowTask{InputParameters: map[string]any{"n": json.Number("1")}},
		Tasks: []WorkflowTask{{InputParameters: map[string]any{"n": json.Number("2")}}},
		Input: map[string]any{"n": json.Number("3")},
	}
	normalizeValue(reflect.ValueOf(&holder))
	if _, ok := holder.Task.InputParameters["n"].(json.Number); !ok {
		t.Errorf("a task's own input was walked again: %T", holder.Task.InputParameters["n"])
	}
	if _, ok := holder.Tasks[0].InputParameters["n"].(json.Number); !ok {
		t.Errorf("a listed task's input was walked again: %T", holder.Tasks[0].InputParameters["n"])
	}
	if n, ok := holder.Input["n"].(int64); !ok || n != 3 {
		t.Errorf("the holder's own number = %T %v, want int64 3", holder.Input["n"], holder.Input["n"])
	}
}
