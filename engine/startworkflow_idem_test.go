package engine_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// A START_WORKFLOW's startWorkflow.idempotencyKey and idempotencyStrategy
// (Orkes's) go with the start, the key as the input resolved it; a key
// from a secret or sealed data, an object, or a strategy nobody knows
// fails the task before any start, saying which field.
func TestStartWorkflowIdempotencyKeyGoesWithTheStart(t *testing.T) {
	def := `{"name":"starter","tasks":[{"name":"src","taskReferenceName":"src"},
	  {"name":"start","taskReferenceName":"start","type":"START_WORKFLOW","inputParameters":{"startWorkflow":{
	   "name":"other","idempotencyKey":%q,"idempotencyStrategy":%q}}}]}`
	for _, tt := range []struct {
		name, key, strategy string
		wantKey, reason     string
	}{
		{"literal", "order", "RETURN_EXISTING", "order", ""},
		{"expression", "order-${workflow.input.id}", "FAIL_ON_RUNNING", "order-7", ""},
		{"number", "${workflow.input.id}", "", "7", ""},
		{"null", "${workflow.input.missing}", "FAIL", "", ""},
		{"strategy from an expression", "order", "${src.output.how}", "order", ""},
		{"a secret", "${workflow.secrets.k}", "FAIL", "", "startWorkflow.idempotencyKey is sealed data, a secret or an environment value"},
		{"sealed data", "${src.output._secrets.k}", "FAIL", "", "startWorkflow.idempotencyKey is sealed data, a secret or an environment value"},
		{"sealed data in text", "order-${src.output._secrets.k}", "FAIL", "", "startWorkflow.idempotencyKey is sealed data, a secret or an environment value"},
		{"an object", "${workflow.input.obj}", "FAIL", "", "startWorkflow.idempotencyKey: want text or a number"},
		{"an unknown strategy", "order", "${src.output.bad}", "", "startWorkflow.idempotencyStrategy RETURN_LATEST: want FAIL, RETURN_EXISTING or FAIL_ON_RUNNING"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, fmt.Sprintf(def, tt.key, tt.strategy), map[string]any{"id": 7, "obj": map[string]any{"a": 1}})
			d := h.complete("src", map[string]any{"how": "RETURN_EXISTING", "bad": "RETURN_LATEST", "_secrets": map[string]any{"k": "key-value-9"}})
			starts := effectsOf[engine.StartWorkflow](d)
			if tt.reason != "" {
				task := h.wantTask("start", conductor.TaskFailedWithTerminalError)
				if len(starts) != 0 || !strings.Contains(task.Reason, tt.reason) || strings.Contains(task.Reason, "key-value-9") {
					t.Fatalf("starts %+v, reason %q, want none and %q", starts, task.Reason, tt.reason)
				}
				return
			}
			h.wantTask("start", conductor.TaskInProgress)
			wantStrategy := tt.strategy
			if strings.Contains(wantStrategy, "${") {
				wantStrategy = conductor.IdempotencyReturnExisting
			}
			if len(starts) != 1 || starts[0].IdempotencyKey != tt.wantKey || starts[0].IdempotencyStrategy != wantStrategy || starts[0].Refused != "" {
				t.Fatalf("starts %+v, want one with key %q, strategy %q", starts, tt.wantKey, wantStrategy)
			}
			// Recovery starts it again with the same key.
			var again []engine.StartWorkflow
			for _, e := range engine.Effects(h.w, h.now.UnixMilli()) {
				if s, ok := e.(engine.StartWorkflow); ok {
					again = append(again, s)
				}
			}
			if len(again) != 1 || again[0].IdempotencyKey != tt.wantKey || again[0].IdempotencyStrategy != wantStrategy {
				t.Fatalf("recovery starts %+v", again)
			}
		})
	}
}

// Under RETURN_EXISTING the executor completes the task with the workflow
// holding the key: its workflowId is that one's, not the id derived for
// the start that did not happen, and the next task reads it.
func TestStartWorkflowCompletesWithTheWorkflowHoldingTheKey(t *testing.T) {
	h := newHarness(t, `{"name":"starter","tasks":[
	  {"name":"start","taskReferenceName":"start","type":"START_WORKFLOW","inputParameters":{"startWorkflow":{
	   "name":"other","idempotencyKey":"k","idempotencyStrategy":"RETURN_EXISTING"}}},
	  {"name":"next","taskReferenceName":"next","inputParameters":{"started":"${start.output.workflowId}"}}]}`, nil)
	derived, _ := h.wantTask("start", conductor.TaskInProgress).Output["workflowId"].(string)
	h.complete("start", map[string]any{"workflowId": "holder-1"})
	if got := h.wantTask("start", conductor.TaskCompleted).Output["workflowId"]; got != "holder-1" || derived == "holder-1" {
		t.Fatalf("workflowId %v, want holder-1 (derived %s)", got, derived)
	}
	if got := h.wantTask("next", conductor.TaskScheduled).Input["started"]; got != "holder-1" {
		t.Fatalf("next reads %v", got)
	}
}

// A literal idempotencyStrategy other than Conductor's three is refused
// when the definition is registered, as in a start request; one from an
// expression is checked when the task runs.
func TestValidateStartWorkflowIdempotencyStrategy(t *testing.T) {
	for strategy, refused := range map[string]bool{"RETURN_LATEST": true, "RETURN_EXISTING": false, "${workflow.input.s}": false} {
		def := parseDef(t, `{"name":"starter","tasks":[{"name":"start","taskReferenceName":"start","type":"START_WORKFLOW",
		  "inputParameters":{"startWorkflow":{"name":"other","idempotencyKey":"k","idempotencyStrategy":"`+strategy+`"}}}]}`)
		err := engine.ValidateWorkflowDef(def)
		if refused != (err != nil) || refused && !strings.Contains(err.Error(), "inputParameters.startWorkflow.idempotencyStrategy") {
			t.Errorf("%s: validate %v, want refused %v naming startWorkflow.idempotencyStrategy", strategy, err, refused)
		}
	}
}
