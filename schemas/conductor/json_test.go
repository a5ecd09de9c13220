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

// A definition keeps the JSON it serves: its scalars coerced when any
// were of the wrong type, as Jackson writes back what it read (a worker's
// SDK decodes a poll's workflowTask into typed fields), everything else
// byte for byte (members flowvault does not model, order, spacing).
func TestCoercedRawJSON(t *testing.T) {
	t.Parallel()
	raw := func(t *testing.T, v interface{ json.Unmarshaler }, in string) string {
		t.Helper()
		if err := conductor.Unmarshal([]byte(in), v); err != nil {
			t.Fatal(err)
		}
		switch d := v.(type) {
		case *conductor.WorkflowDef:
			return string(d.Raw)
		case *conductor.TaskDef:
			return string(d.Raw)
		case *conductor.EventHandler:
			return string(d.Raw)
		}
		t.Fatalf("%T", v)
		return ""
	}
	for _, tt := range []struct {
		name, in, want string
		v              func() interface{ json.Unmarshaler }
	}{
		{"workflow, well typed: as given", `{"name":"w", "x-custom":{"n":"1"},"version":1,"tasks":[{"name":"a","taskReferenceName":"a"}]}`,
			`{"name":"w", "x-custom":{"n":"1"},"version":1,"tasks":[{"name":"a","taskReferenceName":"a"}]}`,
			func() interface{ json.Unmarshaler } { return new(conductor.WorkflowDef) }},
		{"workflow, its own scalars", `{"name":5,"version":"1","x":{"optional":"false"},"timeoutSeconds":"0","restartable":"TRUE","tasks":[]}`,
			`{"name":"5","version":1,"x":{"optional":"false"},"timeoutSeconds":0,"restartable":true,"tasks":[]}`,
			func() interface{ json.Unmarshaler } { return new(conductor.WorkflowDef) }},
		{"workflow, a task's scalars only", `{"name":"qs","version":1,"tasks":[{"name":"qs_task","taskReferenceName":"q1","startDelay":"0","optional":"false","retryCount":"1","inputParameters":{"n":"1"}}],"timeoutSeconds":0}`,
			`{"name":"qs","version":1,"tasks":[{"name":"qs_task","taskReferenceName":"q1","startDelay":0,"optional":false,"retryCount":1,"inputParameters":{"n":"1"}}],"timeoutSeconds":0}`,
			func() interface{ json.Unmarshaler } { return new(conductor.WorkflowDef) }},
		{"workflow, nested deep", `{"name":"w","tasks":[{"name":"s","taskReferenceName":"s","type":"SWITCH","decisionCases":{"a":[{"name":"t","taskReferenceName":"t","asyncComplete":"true","taskDefinition":{"name":"t","timeoutSeconds":"5"}}]},"cacheConfig":{"key":"k","ttlInSecond":"60"}}]}`,
			`{"name":"w","tasks":[{"name":"s","taskReferenceName":"s","type":"SWITCH","decisionCases":{"a":[{"name":"t","taskReferenceName":"t","asyncComplete":true,"taskDefinition":{"name":"t","timeoutSeconds":5}}]},"cacheConfig":{"key":"k","ttlInSecond":60}}]}`,
			func() interface{ json.Unmarshaler } { return new(conductor.WorkflowDef) }},
		{"workflow, whole floats", `{"name":"w","version":2.0,"timeoutSeconds":1e2,"tasks":[{"name":"a","taskReferenceName":"a","startDelay":-0.0,"retryCount":3.000}]}`,
			`{"name":"w","version":2,"timeoutSeconds":100,"tasks":[{"name":"a","taskReferenceName":"a","startDelay":0,"retryCount":3}]}`,
			func() interface{ json.Unmarshaler } { return new(conductor.WorkflowDef) }},
		{"workflow, keys in another case: unknown, as given", `{"name":"w","tasks":[{"name":"s","taskReferenceName":"s","type":"SWITCH","defaultCaſe":[{"name":"t","taskReferenceName":"t","OPTIONAL":"true","retryCount":"1"}],"defaultCase":[{"name":"u","taskReferenceName":"u","OPTIONAL":"true","retryCount":"1"}]}]}`,
			`{"name":"w","tasks":[{"name":"s","taskReferenceName":"s","type":"SWITCH","defaultCaſe":[{"name":"t","taskReferenceName":"t","OPTIONAL":"true","retryCount":"1"}],"defaultCase":[{"name":"u","taskReferenceName":"u","OPTIONAL":"true","retryCount":1}]}]}`,
			func() interface{ json.Unmarshaler } { return new(conductor.WorkflowDef) }},
		{"task definition", `{"name":"t", "retryCount" : "2","timeoutSeconds":"60","description":7,"u":"\u00e9<"}`,
			`{"name":"t", "retryCount" : 2,"timeoutSeconds":60,"description":"7","u":"\u00e9<"}`,
			func() interface{ json.Unmarshaler } { return new(conductor.TaskDef) }},
		{"event handler", `{"name":"h","event":"nats:x","active":"false","actions":[{"action":"complete_task","expandInlineJSON":"true","complete_task":{"n":"1"}}]}`,
			`{"name":"h","event":"nats:x","active":false,"actions":[{"action":"complete_task","expandInlineJSON":true,"complete_task":{"n":"1"}}]}`,
			func() interface{ json.Unmarshaler } { return new(conductor.EventHandler) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := raw(t, tt.v(), tt.in); got != tt.want {
				t.Errorf("Raw = %s\nwant  %s", got, tt.want)
			}
		})
	}

	// A task configuration is served as its definition has it: a poll's
	// workflowTask and the definition agree.
	var wf conductor.WorkflowDef
	if err := conductor.Unmarshal([]byte(`{"name":"qs","tasks":[{"name":"q","taskReferenceName":"q1","optional":"false","retryCount":"1"}]}`), &wf); err != nil {
		t.Fatal(err)
	}
	if b, err := json.Marshal(wf.Tasks[0]); err != nil || string(b) != `{"name":"q","taskReferenceName":"q1","optional":false,"retryCount":1}` {
		t.Errorf("workflowTask = %s, %v", b, err)
	}
	// What is read back reads the same, and is kept as it is.
	var again conductor.WorkflowDef
	if err := conductor.Unmarshal(wf.Raw, &again); err != nil || string(again.Raw) != string(wf.Raw) {
		t.Errorf("read again: %s, %v", again.Raw, err)
	}
}

// Jackson reads a number with no fraction into an integer field
// (ACCEPT_FLOAT_AS_INT): 2.0 and 1e2 are 2 and 100, whether given as a
// number or a string. A fraction, or a number no integer field holds,
// stays refused.
func TestWholeNumbersIntoIntegers(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		in   string
		want int64 // timeoutSeconds
		ok   bool
	}{
		{`{"timeoutSeconds":60.0}`, 60, true},
		{`{"timeoutSeconds":1e2}`, 100, true},
		{`{"timeoutSeconds":1.5E1}`, 15, true},
		{`{"timeoutSeconds":"60.0"}`, 60, true},
		{`{"timeoutSeconds":-2.00}`, -2, true},
		{`{"timeoutSeconds":0.0e5}`, 0, true},
		{`{"timeoutSeconds":9223372036854775807.0}`, 9223372036854775807, true},
		{`{"timeoutSeconds":1e-400}`, 0, false},
		{`{"timeoutSeconds":60.5}`, 0, false},
		{`{"timeoutSeconds":"60.5"}`, 0, false},
		{`{"timeoutSeconds":1e19}`, 0, false},
		{`{"timeoutSeconds":1e999999999999}`, 0, false},
	} {
		var td conductor.TaskDef
		err := conductor.Unmarshal([]byte(`{"name":"t",`+tt.in[1:]), &td)
		if (err == nil) != tt.ok || err == nil && td.TimeoutSeconds != tt.want {
			t.Errorf("%s: timeoutSeconds %d, err %v; want %d, ok %v", tt.in, td.TimeoutSeconds, err, tt.want, tt.ok)
		}
	}
	var res conductor.TaskResult
	if err := conductor.Unmarshal([]byte(`{"taskId":"t","workflowInstanceId":"w","status":"IN_PROGRESS","callbackAfterSeconds":1800.0}`), &res); err != nil || res.CallbackAfterSeconds != 1800 {
		t.Errorf("task result = %+v, %v", res, err)
	}
	var req conductor.StartWorkflowRequest
	if err := conductor.Unmarshal([]byte(`{"name":"w","version":1.0,"priority":5e0}`), &req); err != nil || req.Version == nil || *req.Version != 1 || req.Priority != 5 {
		t.Errorf("start request = %+v, %v", req, err)
	}
	var f struct {
		F float64 `json:"f"`
	}
	if err := conductor.Unmarshal([]byte(`{"f":"2.5"}`), &f); err != nil || f.F != 2.5 {
		t.Errorf("float field = %v, %v", f.F, err)
	}
	for _, tt := range []struct {
		in   string
		want int64
		ok   bool
	}{{"3", 3, true}, {"3.0", 3, true}, {"1e2", 100, true}, {"3.5", 0, false}, {"x", 0, false}, {"0x10", 0, false}, {"Inf", 0, false}} {
		if n, err := conductor.ParseInt(tt.in, 64); (err == nil) != tt.ok || err == nil && n != tt.want {
			t.Errorf("ParseInt(%q) = %d, %v", tt.in, n, err)
		}
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
