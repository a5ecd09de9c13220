package conductor_test

import (
	"encoding/json"
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
	for _, in := range []string{`{"name":{}}`, `{"tasks":"x"}`, `{"version":"two"}`, `{"version":"2.5"}`, `{"version":true}`,
		`{"tasks":[{"inputParameters":[]}]}`, `{"tasks":[{"retryCount":"x"}]}`, `{"restartable":"yes"}`} {
		var wf conductor.WorkflowDef
		if err := conductor.Unmarshal([]byte(in), &wf); err == nil {
			t.Errorf("Unmarshal(%s) succeeded", in)
		}
	}
}

// Scalars of the wrong type are coerced as Jackson does (Conductor's
// reader): a number or a boolean given as a string, a number or a boolean
// where a string goes, at any depth, definitions' own decoding included.
func TestScalarsCoerced(t *testing.T) {
	t.Parallel()
	var wf conductor.WorkflowDef
	err := conductor.Unmarshal([]byte(`{"name":7,"version":"2","restartable":"false","timeoutSeconds":" 60 ",
		"inputTemplate":{"keep":"3"},
		"tasks":[{"name":"s","taskReferenceName":"s","retryCount":"4","optional":"TRUE","startDelay":"5",
			"taskDefinition":{"name":"s","retryCount":"6","rateLimitPerFrequency":"2"},
			"decisionCases":{"a":[{"name":"t","taskReferenceName":"t","retryCount":"1"}]}}]}`), &wf)
	if err != nil {
		t.Fatal(err)
	}
	task := wf.Tasks[0]
	for _, c := range []struct {
		field     string
		got, want any
	}{
		{"name", wf.Name, "7"},
		{"version", wf.Version, 2},
		{"restartable", wf.IsRestartable(), false},
		{"timeoutSeconds", wf.TimeoutSeconds, int64(60)},
		{"inputTemplate.keep (untyped: kept)", wf.InputTemplate["keep"], "3"},
		{"tasks[0].retryCount", *task.RetryCount, 4},
		{"tasks[0].optional", task.Optional, true},
		{"tasks[0].startDelay", task.StartDelay, int64(5)},
		{"tasks[0].taskDefinition.retryCount", *task.TaskDefinition.RetryCount, 6},
		{"tasks[0].decisionCases.a[0].retryCount", *task.DecisionCases["a"][0].RetryCount, 1},
	} {
		if c.got != c.want {
			t.Errorf("%s = %#v, want %#v", c.field, c.got, c.want)
		}
	}
	var req conductor.StartWorkflowRequest
	if err := conductor.Unmarshal([]byte(`{"name":"w","version":"3","priority":"9","correlationId":12345,"input":{"n":"1"}}`), &req); err != nil {
		t.Fatal(err)
	}
	if req.Version == nil || *req.Version != 3 || req.Priority != 9 || req.CorrelationID != "12345" || req.Input["n"] != "1" {
		t.Errorf("start request = %+v", req)
	}
}

// A body is one JSON value: anything after it, a stray closing bracket
// included, is refused.
func TestUnmarshalTrailingData(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		in string
		ok bool
	}{
		{`[{"name":"a"}]`, true},
		{" [{\"name\":\"a\"}] \n\t", true},
		{`[{"name":"a"}]]`, false},
		{`[{"name":"a"}]}`, false},
		{`[{"name":"a"}] []`, false},
		{`[{"name":"a"}] 1`, false},
		{`[{"name":"a"}] x`, false},
	} {
		var defs []conductor.TaskDef
		if err := conductor.Unmarshal([]byte(tt.in), &defs); (err == nil) != tt.ok {
			t.Errorf("Unmarshal(%q) = %v, want ok %v", tt.in, err, tt.ok)
		}
	}
	var m map[string]any
	if err := conductor.Unmarshal([]byte(`{"a":1}}`), &m); err == nil {
		t.Errorf("Unmarshal of an object with a stray } succeeded")
	}
}

// Whatever the bytes, Unmarshal returns, for every body the API decodes
// with it; what it accepts, encoding/json writes back and Unmarshal reads
// again.
func FuzzUnmarshal(f *testing.F) {
	for _, s := range []string{`{"name":7,"version":"2","tasks":[{"name":"s","taskReferenceName":"s","retryCount":"4"}]}`,
		`{"name":"w","version":"3","priority":"9","correlationId":12345,"input":{"n":"1"}}`,
		`{"taskId":"t","workflowInstanceId":"w","status":"COMPLETED","outputData":{"n":12345678901234567890,"f":1.5e300}}`,
		`[{"name":"x","inputKeys":["a"],"timeoutSeconds":"10"}]`, `{"a":[[[{"b":null}]]]}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		targets := []func() any{
			func() any { return new(conductor.WorkflowDef) },
			func() any { return new(conductor.StartWorkflowRequest) },
			func() any { return new(conductor.TaskResult) },
			func() any { return new([]conductor.TaskDef) },
			func() any { return new(map[string]any) },
		}
		for _, target := range targets {
			v := target()
			if conductor.Unmarshal(data, v) != nil {
				continue
			}
			again, err := json.Marshal(v)
			if err != nil {
				continue // a float the decoder accepted that JSON cannot hold is not the question here
			}
			if err := conductor.Unmarshal(again, target()); err != nil {
				t.Fatalf("%T decoded from %q, written as %s, does not decode: %v", v, data, again, err)
			}
		}
	})
}
