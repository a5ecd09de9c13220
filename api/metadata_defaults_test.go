package api_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/flowvault/flowvault/internal/nodetest"
)

// A definition registered without Conductor's defaulted fields reads with
// them, as Conductor answers it (the JavaScript SDK's TaskDef requires
// timeoutSeconds and totalTimeoutSeconds, its WorkflowDef timeoutSeconds):
// GET, the lists, an execution's workflowDefinition, its tasks'
// workflowTask and taskDefinition and a poll; fields it does not model
// kept as given. What is read registers again as it is.
func TestDefinitionsReadWithDefaults(t *testing.T) {
	t.Parallel()
	_, base := nodetest.Start(t)
	api := base + "/api"

	do(t, "POST", api+"/metadata/taskdefs", `[{"name":"dflt_task","x-extra":{"k":1}},{"name":"dflt_short","timeoutSeconds":60}]`).
		expect(t, http.StatusNoContent)
	do(t, "POST", api+"/metadata/workflow", `{"name":"dflt_wf","tasks":[{"name":"dflt_task","taskReferenceName":"a"}]}`).
		expect(t, http.StatusNoContent)

	taskDef := decode[map[string]any](t, do(t, "GET", api+"/metadata/taskdefs/dflt_task", "").expect(t, http.StatusOK).body)
	short := decode[map[string]any](t, do(t, "GET", api+"/metadata/taskdefs/dflt_short", "").expect(t, http.StatusOK).body)
	wfDef := decode[map[string]any](t, do(t, "GET", api+"/metadata/workflow/dflt_wf", "").expect(t, http.StatusOK).body)
	taskList := decode[[]map[string]any](t, do(t, "GET", api+"/metadata/taskdefs", "").expect(t, http.StatusOK).body)
	wfList := decode[[]map[string]any](t, do(t, "GET", api+"/metadata/workflow", "").expect(t, http.StatusOK).body)
	if len(taskList) != 2 || taskList[1]["name"] != "dflt_task" || len(wfList) != 1 {
		t.Fatalf("lists: task definitions %v, workflow definitions %v", taskList, wfList)
	}

	wantTaskDef := map[string]any{"retryCount": 3.0, "timeoutSeconds": 0.0, "totalTimeoutSeconds": 0.0, "retryLogic": "FIXED",
		"retryDelaySeconds": 60.0, "timeoutPolicy": "TIME_OUT_WF", "responseTimeoutSeconds": 3600.0, "backoffScaleFactor": 1.0}
	wantTask := map[string]any{"type": "SIMPLE", "optional": false, "asyncComplete": false, "permissive": false, "startDelay": 0.0}
	wantWF := map[string]any{"timeoutSeconds": 0.0, "timeoutPolicy": "ALERT_ONLY", "restartable": true, "schemaVersion": 2.0}
	check := func(what string, got map[string]any, want map[string]any) {
		t.Helper()
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s: %s = %v, want %v (%v)", what, k, got[k], v, got)
			}
		}
	}
	check("GET taskdefs/dflt_task", taskDef, wantTaskDef)
	check("GET taskdefs", taskList[1], wantTaskDef)
	check("GET workflow/dflt_wf", wfDef, wantWF)
	check("GET workflow", wfList[0], wantWF)
	check("GET workflow/dflt_wf tasks[0]", wfDef["tasks"].([]any)[0].(map[string]any), wantTask)
	if mustJSON(t, taskDef["x-extra"]) != `{"k":1}` {
		t.Errorf("unknown field not kept: %v", taskDef)
	}
	// The hour responseTimeoutSeconds defaults to is more than its
	// timeoutSeconds allows: left out, so that the definition read back
	// registers again.
	if _, ok := short["responseTimeoutSeconds"]; ok || short["timeoutSeconds"] != 60.0 {
		t.Errorf("dflt_short reads %v", short)
	}
	if _, ok := wfDef["enforceSchema"]; ok {
		t.Errorf("enforceSchema given a default the engine does not keep: %v", wfDef)
	}
	do(t, "PUT", api+"/metadata/taskdefs", mustJSON(t, short)).expect(t, http.StatusNoContent)
	do(t, "PUT", api+"/metadata/taskdefs", mustJSON(t, taskDef)).expect(t, http.StatusNoContent)
	do(t, "POST", api+"/metadata/workflow?overwrite=true", mustJSON(t, wfDef)).expect(t, http.StatusNoContent)

	started := do(t, "POST", api+"/workflow/dflt_wf", `{}`)
	if started.status != http.StatusOK {
		t.Fatalf("start: %d %s", started.status, started.body)
	}
	id := started.body
	var polled []map[string]any
	for deadline := time.Now().Add(20 * time.Second); len(polled) == 0 && time.Now().Before(deadline); {
		polled = decode[[]map[string]any](t, do(t, "GET", api+"/tasks/poll/batch/dflt_task?workerid=w&timeout=500", "").expect(t, http.StatusOK).body)
	}
	if len(polled) != 1 {
		t.Fatalf("polled %d tasks", len(polled))
	}
	check("poll workflowTask", polled[0]["workflowTask"].(map[string]any), wantTask)
	check("poll taskDefinition", polled[0]["taskDefinition"].(map[string]any), wantTaskDef)

	exec := decode[map[string]any](t, do(t, "GET", api+"/workflow/"+id+"?includeTasks=true", "").expect(t, http.StatusOK).body)
	check("execution workflowDefinition", exec["workflowDefinition"].(map[string]any), wantWF)
	task := exec["tasks"].([]any)[0].(map[string]any)
	check("execution task workflowTask", task["workflowTask"].(map[string]any), wantTask)
	check("execution task taskDefinition", task["taskDefinition"].(map[string]any), wantTaskDef)
}
