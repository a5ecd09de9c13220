package conductor_test

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/flowvault/flowvault/schemas/conductor"
)

// Conductor's Jackson matches a member to a field by its exact name: one
// named in another case ("NAME", "Status", the long s of "taſkId") is a
// property it does not know, beside the field's own member or alone. It
// sets nothing, is not coerced, and a model that keeps its JSON keeps it
// as given. A member spelt with escapes is the field's when its text is
// the name, and the keys of a map (an input, _secrets) are data.
func TestNamesMatchedExactly(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		in   string
		v    func() any
		// got is what the value read of the members in question; raw, when
		// set, the JSON the value keeps (want: in).
		got  func(v any) any
		want any
		raw  func(v any) []byte
	}{
		{"workflow definition, beside the field's", `{"name":"a","Name":"b","NAME":"c","version":1,"Version":7,"tasks":[],"TimeoutSeconds":"x"}`,
			func() any { return new(conductor.WorkflowDef) },
			func(v any) any { d := v.(*conductor.WorkflowDef); return []any{d.Name, d.Version, d.TimeoutSeconds} },
			[]any{"a", 1, int64(0)},
			func(v any) []byte { return v.(*conductor.WorkflowDef).Raw }},
		{"workflow definition, alone", `{"NAME":"x","tasks":[],"maſkedFields":["p"],"Tags":[{"key":"k","value":"v"}]}`,
			func() any { return new(conductor.WorkflowDef) },
			func(v any) any { d := v.(*conductor.WorkflowDef); return []any{d.Name, d.MaskedFields, d.Tags} },
			[]any{"", []string(nil), []conductor.Tag(nil)},
			func(v any) []byte { return v.(*conductor.WorkflowDef).Raw }},
		{"workflow definition, escaped and nested", `{"n\u0061me":"w","tasks":[],"tags":[{"key":"k","KEY":"x","Value":"v"}],"MaskedFields":["p"]}`,
			func() any { return new(conductor.WorkflowDef) },
			func(v any) any { d := v.(*conductor.WorkflowDef); return []any{d.Name, d.Tags, d.MaskedFields} },
			[]any{"w", []conductor.Tag{{Key: "k"}}, []string(nil)},
			func(v any) []byte { return v.(*conductor.WorkflowDef).Raw }},
		{"workflow task, in a definition", `{"name":"t","taskReferenceName":"t","InputParameters":{"p":1},"inputParameters":{"q":2},"OPTIONAL":"true",` +
			`"subWorkflowParam":{"name":"c","Name":"d","VERSION":"2"},"taskDefinition":{"name":"t","RetryCount":9}}`,
			func() any { return new(conductor.WorkflowTask) },
			func(v any) any {
				wt := v.(*conductor.WorkflowTask)
				return []any{wt.InputParameters, wt.Optional, wt.SubWorkflowParam.Name, wt.SubWorkflowParam.Version, wt.TaskDefinition.RetryCount}
			},
			[]any{map[string]any{"q": int64(2)}, false, "c", (*int)(nil), (*int)(nil)},
			func(v any) []byte { b, _ := json.Marshal(v); return b }},
		{"task definition, beside the field's", `{"name":"t","retryCount":1,"RetryCount":5,"retrycount":6}`,
			func() any { return new(conductor.TaskDef) },
			func(v any) any { return *v.(*conductor.TaskDef).RetryCount }, 1,
			func(v any) []byte { return v.(*conductor.TaskDef).Raw }},
		{"task definition, alone", `{"name":"t","RETRYCOUNT":5,"ResponseTimeoutSeconds":"soon"}`,
			func() any { return new(conductor.TaskDef) },
			func(v any) any { d := v.(*conductor.TaskDef); return []any{d.RetryCount, d.ResponseTimeoutSeconds} },
			[]any{(*int)(nil), (*int64)(nil)},
			func(v any) []byte { return v.(*conductor.TaskDef).Raw }},
		{"start request, beside the field's", `{"name":"w","Name":"x","version":2,"Version":3,"input":{"Name":"kept","name":"too","_secrets":{"K":"a","k":"b"}},` +
			`"workflowDef":{"name":"inline","NAME":"no","tasks":[]}}`,
			func() any { return new(conductor.StartWorkflowRequest) },
			func(v any) any {
				r := v.(*conductor.StartWorkflowRequest)
				return []any{r.Name, *r.Version, r.Input, r.WorkflowDef.Name, string(r.WorkflowDef.Raw)}
			},
			[]any{"w", 2, map[string]any{"Name": "kept", "name": "too", "_secrets": map[string]any{"K": "a", "k": "b"}},
				"inline", `{"name":"inline","NAME":"no","tasks":[]}`},
			nil},
		{"start request, alone", `{"NAME":"x","CorrelationId":"c","Input":{"a":1},"PRIORITY":"high"}`,
			func() any { return new(conductor.StartWorkflowRequest) },
			func(v any) any {
				r := v.(*conductor.StartWorkflowRequest)
				return []any{r.Name, r.CorrelationID, r.Input, r.Priority}
			},
			[]any{"", "", map[string]any(nil), 0},
			nil},
		{"task result, beside the field's", `{"taskId":"t1","TaskId":"t2","status":"COMPLETED","Status":"FAILED","outputData":{"Status":"kept"}}`,
			func() any { return new(conductor.TaskResult) },
			func(v any) any { r := v.(*conductor.TaskResult); return []any{r.TaskID, r.Status, r.OutputData} },
			[]any{"t1", "COMPLETED", map[string]any{"Status": "kept"}},
			nil},
		{"task result, after values of every kind", `{"outputData":{"a":"}]\\\"{,","b":[1,{"c":"]"},[]],"n":-1.5e3,"t":true,"z":null,"e":{}} ,"Status":"FAILED",` +
			`"reasonForIncompletion":7 , "ReasonForIncompletion":"no","callbackAfterSeconds":2.0,"status":"COMPLETED","logs":[{"log":"l","Log":"no"}],"TaskId":"x"}`,
			func() any { return new(conductor.TaskResult) },
			func(v any) any {
				r := v.(*conductor.TaskResult)
				return []any{r.Status, r.ReasonForIncompletion, r.CallbackAfterSeconds, r.OutputData["a"], r.OutputData["n"], r.Logs[0].Log, r.TaskID}
			},
			[]any{"COMPLETED", "7", int64(2), `}]\"{,`, -1500.0, "l", ""},
			nil},
		{"task result, alone", `{"TASKID":"t2","WorkflowInstanceId":"w","taſkId":"t3","CallbackAfterSeconds":"later"}`,
			func() any { return new(conductor.TaskResult) },
			func(v any) any {
				r := v.(*conductor.TaskResult)
				return []any{r.TaskID, r.WorkflowInstanceID, r.CallbackAfterSeconds}
			},
			[]any{"", "", int64(0)},
			nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			unmarshals := map[string]func([]byte, any) error{"Unmarshal": conductor.Unmarshal, "UnmarshalStored": conductor.UnmarshalStored}
			if _, ok := tc.v().(*conductor.TaskResult); ok {
				unmarshals["UnmarshalNew"] = conductor.UnmarshalNew
			}
			for name, unmarshal := range unmarshals {
				v := tc.v()
				if err := unmarshal([]byte(tc.in), v); err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				if got := tc.got(v); !reflect.DeepEqual(got, tc.want) {
					t.Errorf("%s: got %#v, want %#v", name, got, tc.want)
				}
				if tc.raw != nil {
					if raw := tc.raw(v); string(raw) != tc.in {
						t.Errorf("%s: kept %s, want it as given", name, raw)
					}
				}
			}
		})
	}
}
