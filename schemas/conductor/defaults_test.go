package conductor

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// The JSON as Conductor answers a definition's minimal registration.
const (
	taskDefDefaults = `"retryCount":3,"timeoutSeconds":0,"totalTimeoutSeconds":0,"inputKeys":[],"outputKeys":[],` +
		`"timeoutPolicy":"TIME_OUT_WF","retryLogic":"FIXED","retryDelaySeconds":60,"responseTimeoutSeconds":3600,` +
		`"inputTemplate":{},"rateLimitPerFrequency":0,"rateLimitFrequencyInSeconds":1,"backoffScaleFactor":1,"enforceSchema":false`
	taskDefaults        = `"type":"SIMPLE","inputParameters":{},"startDelay":0,"optional":false,"asyncComplete":false,"permissive":false`
	workflowDefDefaults = `"inputParameters":[],"outputParameters":{},"schemaVersion":2,"restartable":true,` +
		`"workflowStatusListenerEnabled":false,"timeoutPolicy":"ALERT_ONLY","timeoutSeconds":0,"variables":{},` +
		`"inputTemplate":{},"metadata":{},"maskedFields":[]`
)

func TestWithDefaults(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, in, want string
		fill           func([]byte) []byte
	}{
		{"task definition, minimal", `{"name":"t"}`, `{"name":"t",` + taskDefDefaults + `}`, TaskDefWithDefaults},
		{"task definition, given values and unknown fields kept as given",
			`{"name":"t", "retryCount": 0,"x":{"retryCount":9},"big":12345678901234567890,"timeoutPolicy":"RETRY","responseTimeoutSeconds":5}`,
			`{"name":"t", "retryCount": 0,"x":{"retryCount":9},"big":12345678901234567890,"timeoutPolicy":"RETRY","responseTimeoutSeconds":5,` +
				`"timeoutSeconds":0,"totalTimeoutSeconds":0,"inputKeys":[],"outputKeys":[],"retryLogic":"FIXED","retryDelaySeconds":60,` +
				`"inputTemplate":{},"rateLimitPerFrequency":0,"rateLimitFrequencyInSeconds":1,"backoffScaleFactor":1,"enforceSchema":false}`,
			TaskDefWithDefaults},
		{"task definition, a key spelt in another case is not the field's", `{"name":"t","RETRYCOUNT":1,"TimeoutSeconds":60}`,
			`{"name":"t","RETRYCOUNT":1,"TimeoutSeconds":60,` + taskDefDefaults + `}`, TaskDefWithDefaults},
		{"task definition, timeoutSeconds under an hour: no default responseTimeoutSeconds", `{"name":"t","timeoutSeconds":60}`,
			`{"name":"t","timeoutSeconds":60,"retryCount":3,"totalTimeoutSeconds":0,"inputKeys":[],"outputKeys":[],` +
				`"timeoutPolicy":"TIME_OUT_WF","retryLogic":"FIXED","retryDelaySeconds":60,` +
				`"inputTemplate":{},"rateLimitPerFrequency":0,"rateLimitFrequencyInSeconds":1,"backoffScaleFactor":1,"enforceSchema":false}`,
			TaskDefWithDefaults},
		{"task configuration, nested tasks and inline definition",
			`{"name":"s","taskReferenceName":"s","type":"SWITCH","decisionCases":{"a":[{"name":"x","taskReferenceName":"x","taskDefinition":{"name":"x"}}]},` +
				`"defaultCase":[{"name":"y","taskReferenceName":"y"}],"forkTasks":[[{"name":"f","taskReferenceName":"f"}]],"loopOver":[{"name":"l","taskReferenceName":"l","type":"WAIT"}]}`,
			`{"name":"s","taskReferenceName":"s","type":"SWITCH","decisionCases":{"a":[{"name":"x","taskReferenceName":"x","taskDefinition":{"name":"x",` + taskDefDefaults + `},` + taskDefaults + `}]},` +
				`"defaultCase":[{"name":"y","taskReferenceName":"y",` + taskDefaults + `}],"forkTasks":[[{"name":"f","taskReferenceName":"f",` + taskDefaults + `}]],` +
				`"loopOver":[{"name":"l","taskReferenceName":"l","type":"WAIT","inputParameters":{},"startDelay":0,"optional":false,"asyncComplete":false,"permissive":false}],` +
				`"inputParameters":{},"startDelay":0,"optional":false,"asyncComplete":false,"permissive":false}`,
			WorkflowTaskWithDefaults},
		{"task configuration, a task's inputParameters are its own",
			`{"name":"a","taskReferenceName":"a","inputParameters":{"tasks":[{"name":"n"}],"optional":"x"}}`,
			`{"name":"a","taskReferenceName":"a","inputParameters":{"tasks":[{"name":"n"}],"optional":"x"},"type":"SIMPLE","startDelay":0,"optional":false,"asyncComplete":false,"permissive":false}`,
			WorkflowTaskWithDefaults},
		{"workflow definition, minimal", `{"name":"w","tasks":[{"name":"a","taskReferenceName":"a"}],"version":1}`,
			`{"name":"w","tasks":[{"name":"a","taskReferenceName":"a",` + taskDefaults + `}],"version":1,` + workflowDefDefaults + `}`,
			WorkflowDefWithDefaults},
		{"workflow definition, whitespace and null members kept",
			"{ \"name\" : \"w\" ,\n \"tasks\" : [ {\"name\":\"a\",\"taskReferenceName\":\"a\",\"type\":null} , null ] , \"restartable\": false, \"timeoutPolicy\": null }",
			"{ \"name\" : \"w\" ,\n \"tasks\" : [ {\"name\":\"a\",\"taskReferenceName\":\"a\",\"type\":null,\"inputParameters\":{},\"startDelay\":0,\"optional\":false,\"asyncComplete\":false,\"permissive\":false} , null ] , \"restartable\": false, \"timeoutPolicy\": null ," +
				`"inputParameters":[],"outputParameters":{},"schemaVersion":2,"workflowStatusListenerEnabled":false,"timeoutSeconds":0,"variables":{},"inputTemplate":{},"metadata":{},"maskedFields":[]}`,
			WorkflowDefWithDefaults},
		{"not an object: as it is", `[1,2]`, `[1,2]`, WorkflowDefWithDefaults},
		{"not JSON: as it is", `{"name":`, `{"name":`, TaskDefWithDefaults},
		{"empty", ``, ``, TaskDefWithDefaults},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := string(tc.fill([]byte(tc.in)))
			if got != tc.want {
				t.Fatalf("got\n%s\nwant\n%s", got, tc.want)
			}
			if tc.want != tc.in && !json.Valid([]byte(got)) {
				t.Fatalf("invalid JSON: %s", got)
			}
		})
	}
}

// A default a definition reads with is what the engine does without it:
// the definition with its defaults decodes to the same policy.
func TestWithDefaultsSamePolicy(t *testing.T) {
	t.Parallel()
	for _, raw := range []string{
		`{"name":"t"}`,
		`{"name":"t","timeoutSeconds":60}`,
		`{"name":"t","retryCount":0,"retryLogic":"LINEAR_BACKOFF","rateLimitPerFrequency":5}`,
		`{"name":"t","timeoutSeconds":7200,"pollTimeoutSeconds":10}`,
	} {
		var given, filled TaskDef
		if err := Unmarshal([]byte(raw), &given); err != nil {
			t.Fatal(err)
		}
		if err := Unmarshal(TaskDefWithDefaults([]byte(raw)), &filled); err != nil {
			t.Fatal(err)
		}
		g, f := given.Effective(false), filled.Effective(false)
		if len(g.InputTemplate) == 0 && len(f.InputTemplate) == 0 { // {} adds what none does: nothing
			g.InputTemplate, f.InputTemplate = nil, nil
		}
		if !reflect.DeepEqual(g, f) {
			t.Errorf("%s: policy %+v, with its defaults %+v", raw, g, f)
		}
	}

	raw := `{"name":"w","tasks":[{"name":"a","taskReferenceName":"a"}]}`
	var given, filled WorkflowDef
	if err := Unmarshal([]byte(raw), &given); err != nil {
		t.Fatal(err)
	}
	if err := Unmarshal(WorkflowDefWithDefaults([]byte(raw)), &filled); err != nil {
		t.Fatal(err)
	}
	task := filled.Tasks[0]
	switch {
	case filled.IsRestartable() != given.IsRestartable(),
		filled.TimeoutPolicy == TimeoutPolicyTimeOutWF, // the workflow still never times out
		len(filled.OutputParameters) != 0,              // its output still the last task's
		filled.EnforceSchema != given.EnforceSchema,
		task.TaskType() != given.Tasks[0].TaskType(), task.Optional, task.AsyncComplete, task.StartDelay != 0:
		t.Errorf("the definition reads otherwise with its defaults: %+v", filled)
	}
}

// An execution's definition and a task's configuration and definition are
// written out with their defaults, and read back as given.
func TestDefinitionJSONFields(t *testing.T) {
	t.Parallel()
	wf := Workflow{WorkflowDefinition: WorkflowDefJSON(`{"name":"w","tasks":[]}`)}
	task := Task{WorkflowTask: WorkflowTaskJSON(`{"name":"a","taskReferenceName":"a"}`), TaskDefinition: TaskDefJSON(`{"name":"a"}`)}
	b, err := json.Marshal(struct {
		W Workflow
		T Task
	}{wf, task})
	if err != nil {
		t.Fatal(err)
	}
	var back struct {
		W struct{ WorkflowDefinition map[string]any }
		T struct{ WorkflowTask, TaskDefinition map[string]any }
	}
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.W.WorkflowDefinition["timeoutPolicy"] != "ALERT_ONLY" || back.T.WorkflowTask["type"] != "SIMPLE" ||
		back.T.TaskDefinition["retryCount"] != float64(3) {
		t.Fatalf("written without defaults: %s", b)
	}

	var decoded Task
	if err := json.Unmarshal([]byte(`{"workflowTask":{"name":"a"},"taskDefinition":{"name":"b"}}`), &decoded); err != nil {
		t.Fatal(err)
	}
	if string(decoded.WorkflowTask) != `{"name":"a"}` || string(decoded.TaskDefinition) != `{"name":"b"}` {
		t.Fatalf("decoded %s, %s", decoded.WorkflowTask, decoded.TaskDefinition)
	}
	if b, _ := json.Marshal(Task{}); string(b) == "" || json.Valid(b) == false {
		t.Fatalf("a task without configuration: %s", b)
	}
}

// A definition filled once is answered from the cache alike, however the
// caller uses what it got.
func TestDefaultsCachedAlike(t *testing.T) {
	in := []byte(`{"name":"cached_task","taskReferenceName":"c"}`)
	first := WorkflowTaskWithDefaults(in)
	if want := string(fill(in, workflowTaskShape)); string(first) != want {
		t.Fatalf("filled %s, want %s", first, want)
	}
	grown := append(first, `,"more":1`...)
	grown[0] = '['
	if again := WorkflowTaskWithDefaults(in); string(again) != string(fill(in, workflowTaskShape)) {
		t.Errorf("after a caller changed its copy, the cache answers %s", again)
	}
	// The same bytes are another shape's too.
	if td := TaskDefWithDefaults(in); string(td) == string(first) || !strings.Contains(string(td), `"retryCount":3`) {
		t.Errorf("as a task definition: %s", td)
	}
}
