package api_test

import (
	"encoding/json"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/flowvault/flowvault/internal/nodetest"
)

// TARGET_WORKFLOW_OUTPUT (Conductor OSS's return strategy, refused with a
// 400) answers Conductor's OutputOnlyRun on execute, signal/sync and
// updateState: the target's identity, input and output, masked as every
// read is, and nothing of its tasks, variables or what blocks, whatever
// blocks.
func TestTargetWorkflowOutputAnswersTheOutputAlone(t *testing.T) {
	t.Parallel()
	_, base, token := nodetest.StartSecure(t)
	admin := client{t, base, token}
	const pin = "pin-4417-not-shown"
	send(t, admin, "POST", "/api/metadata/workflow", `{"name":"out_flow","maskedFields":["pin"],"variables":{"stage":"s"},
	  "tasks":[{"name":"gate","taskReferenceName":"gate","type":"WAIT"},{"name":"gate2","taskReferenceName":"gate2","type":"WAIT"}],
	  "outputParameters":{"said":"${gate.output.said}","pin":"${workflow.input.pin}"}}`)
	keys := []string{"correlationId", "input", "output", "requestId", "responseType", "signalTimeout", "targetWorkflowId", "targetWorkflowStatus", "workflowId"}
	// answer checks an answer and returns the workflow's id.
	answer := func(what, body, status string, output map[string]any) string {
		t.Helper()
		var got map[string]any
		if err := json.Unmarshal([]byte(body), &got); err != nil {
			t.Fatalf("%s: %v: %s", what, err, body)
		}
		id, _ := got["targetWorkflowId"].(string)
		want := map[string]any{"responseType": "TARGET_WORKFLOW_OUTPUT", "targetWorkflowStatus": status, "workflowId": id,
			"correlationId": "c-1", "input": map[string]any{"pin": "***", "x": 1.0}, "output": output, "signalTimeout": false}
		for k, v := range want {
			if !reflect.DeepEqual(got[k], v) {
				t.Errorf("%s: %s = %v, want %v", what, k, got[k], v)
			}
		}
		if ks := slices.Sorted(maps.Keys(got)); id == "" || !slices.Equal(ks, keys) {
			t.Errorf("%s: fields %q (workflow %q), want %q", what, ks, id, keys)
		}
		if strings.Contains(body, pin) {
			t.Errorf("%s shows the masked input: %s", what, body)
		}
		return id
	}
	id := answer("execute", send(t, admin, "POST", "/api/workflow/execute/out_flow/1?returnStrategy=target_workflow_output",
		`{"input":{"pin":"`+pin+`","x":1},"correlationId":"c-1"}`), "RUNNING", map[string]any{})
	answer("signal/sync", send(t, admin, "POST", "/api/tasks/"+id+"/COMPLETED/signal/sync?returnStrategy=TARGET_WORKFLOW_OUTPUT",
		`{"said":"hi"}`), "RUNNING", map[string]any{})
	answer("updateState", send(t, admin, "POST", "/api/workflow/"+id+"/state?returnStrategy=TARGET_WORKFLOW_OUTPUT",
		`{"taskReferenceName":"gate2","taskResult":{"status":"COMPLETED"}}`), "COMPLETED", map[string]any{"said": "hi", "pin": "***"})
}
