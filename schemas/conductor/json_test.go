package conductor_test

import (
	"testing"

	"github.com/flowvault/flowvault/schemas/conductor"
)

// Definitions keep their raw JSON by decoding themselves; numbers in their
// untyped fields must still come out exact, at every level of nesting.
func TestDefinitionNumbersExact(t *testing.T) {
	t.Parallel()
	const big = int64(9007199254740993) // 2^53 + 1: not a float64
	var wf conductor.WorkflowDef
	err := conductor.Unmarshal([]byte(`{"name":"w","inputTemplate":{"n":9007199254740993,"f":2.5},
		"tasks":[{"name":"s","taskReferenceName":"s","decisionCases":{"a":[{"name":"t","taskReferenceName":"t","inputParameters":{"n":[9007199254740993]}}]},
		"taskDefinition":{"name":"t","inputTemplate":{"n":9007199254740993}}}]}`), &wf)
	if err != nil {
		t.Fatal(err)
	}
	nested := wf.Tasks[0].DecisionCases["a"][0].InputParameters["n"].([]any)[0]
	for name, v := range map[string]any{
		"workflow inputTemplate": wf.InputTemplate["n"],
		"nested task input":      nested,
		"inline task definition": wf.Tasks[0].TaskDefinition.InputTemplate["n"],
	} {
		if got, ok := v.(int64); !ok || got != big {
			t.Errorf("%s = %T %v, want int64 %d", name, v, v, big)
		}
	}
	if f, ok := wf.InputTemplate["f"].(float64); !ok || f != 2.5 {
		t.Errorf("f = %T %v", wf.InputTemplate["f"], wf.InputTemplate["f"])
	}
	var td conductor.TaskDef
	if err := conductor.Unmarshal([]byte(`{"name":"t","inputTemplate":{"n":9007199254740993}}`), &td); err != nil {
		t.Fatal(err)
	}
	if got, ok := td.InputTemplate["n"].(int64); !ok || got != big {
		t.Errorf("task inputTemplate = %T %v", td.InputTemplate["n"], td.InputTemplate["n"])
	}
}

func TestDefinitionDecodeErrors(t *testing.T) {
	t.Parallel()
	for _, in := range []string{`{"name":1}`, `{"tasks":"x"}`, `{"version":"2"}`, `{"tasks":[{"inputParameters":[]}]}`} {
		var wf conductor.WorkflowDef
		if err := conductor.Unmarshal([]byte(in), &wf); err == nil {
			t.Errorf("Unmarshal(%s) succeeded", in)
		}
	}
}
