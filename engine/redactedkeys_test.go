package engine_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// A child's idempotency key read from a value stored redacted ("***": a
// variable a SET_VARIABLE set from a secret, from _secrets data or from a
// masked field, a worker's output echoing one) fails the task, naming
// the field: the child started keyed "***" (or "k-***"), a key every such
// workflow shared. The template's own "***" is the definition's text, and
// a key read from plain data goes with the start as before.
func TestChildKeysReadingRedactedValuesAreRefused(t *testing.T) {
	const sub = `{"name":"p","tasks":[{"name":"src","taskReferenceName":"src"},
	  {"name":"sv","taskReferenceName":"sv","type":"SET_VARIABLE","inputParameters":{"v":"${src.output.tok}","id":"${src.output.id}"}},
	  {"name":"kid","taskReferenceName":"kid","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"kid","idempotencyKey":%q}}]}`
	const start = `{"name":"p","tasks":[{"name":"src","taskReferenceName":"src"},
	  {"name":"sv","taskReferenceName":"sv","type":"SET_VARIABLE","inputParameters":{"v":"${src.output.tok}","id":"${src.output.id}"}},
	  {"name":"kid","taskReferenceName":"kid","type":"START_WORKFLOW","inputParameters":{"startWorkflow":%s}}]}`
	startKey := func(key string) string {
		return fmt.Sprintf(start, fmt.Sprintf(`{"name":"kid","idempotencyKey":%q}`, key))
	}
	// What the guard stored of a worker's output echoing a secret.
	output := map[string]any{"tok": "***", "bearer": "Bearer ***", "id": "o-7",
		"req": map[string]any{"name": "kid", "idempotencyKey": "***"}}
	for _, tt := range []struct {
		name, def, field string
		wantKey          string // when not refused
	}{
		{"SUB_WORKFLOW, a variable", fmt.Sprintf(sub, "${workflow.variables.v}"), "subWorkflowParam.idempotencyKey", ""},
		{"SUB_WORKFLOW, a variable in text", fmt.Sprintf(sub, "k-${workflow.variables.v}"), "subWorkflowParam.idempotencyKey", ""},
		{"SUB_WORKFLOW, an output in text", fmt.Sprintf(sub, "${src.output.bearer}"), "subWorkflowParam.idempotencyKey", ""},
		{"START_WORKFLOW, a variable", startKey("${workflow.variables.v}"), "startWorkflow.idempotencyKey", ""},
		{"START_WORKFLOW, a variable in text", startKey("pre-${workflow.variables.v}"), "startWorkflow.idempotencyKey", ""},
		{"START_WORKFLOW, the request read whole", fmt.Sprintf(start, `"${src.output.req}"`), "startWorkflow.idempotencyKey", ""},
		{"SUB_WORKFLOW, plain", fmt.Sprintf(sub, "k-${workflow.variables.id}"), "", "k-o-7"},
		{"SUB_WORKFLOW, the definition's ***", fmt.Sprintf(sub, "***-${workflow.variables.id}"), "", "***-o-7"},
		{"START_WORKFLOW, plain", startKey("${workflow.variables.id}"), "", "o-7"},
		{"START_WORKFLOW, the definition's ***", startKey("***-${workflow.variables.id}"), "", "***-o-7"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, tt.def, nil)
			d := h.complete("src", output)
			starts := effectsOf[engine.StartWorkflow](d)
			if tt.field != "" {
				task := h.wantTask("kid", conductor.TaskFailedWithTerminalError)
				if len(starts) != 0 || !strings.Contains(task.Reason, tt.field+" reads a value kept as") {
					t.Fatalf("starts %+v, reason %q, want none and one naming %s", starts, task.Reason, tt.field)
				}
				return
			}
			if len(starts) != 1 || starts[0].IdempotencyKey != tt.wantKey || starts[0].Refused != "" {
				t.Fatalf("starts %+v, want one keyed %q", starts, tt.wantKey)
			}
		})
	}
}

// A SUB_WORKFLOW's key is read again when its child starts after a
// delay: a variable redacted meanwhile refuses the start, naming the
// field.
func TestDelayedChildKeyReadingARedactedValueIsRefused(t *testing.T) {
	h := newHarness(t, `{"name":"p","tasks":[{"name":"kid","taskReferenceName":"kid","type":"SUB_WORKFLOW","startDelay":5,
	  "subWorkflowParam":{"name":"kid","idempotencyKey":"k-${workflow.variables.v}"}}]}`, nil)
	h.decide(engine.SetVariables{Variables: map[string]any{"v": "***"}, By: "app:tester"})
	h.advance(5 * time.Second)
	d := h.decide(engine.Tick{})
	starts := effectsOf[engine.StartWorkflow](d)
	if len(starts) != 1 || starts[0].IdempotencyKey != "" || !strings.Contains(starts[0].Refused, "subWorkflowParam.idempotencyKey reads a value kept as") {
		t.Fatalf("starts %+v, want one refused naming subWorkflowParam.idempotencyKey", starts)
	}
}
