package engine_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// A SUB_WORKFLOW's subWorkflowParam.idempotencyKey, evaluated, and its
// strategy go with the child's start; a key from a secret is refused
// before any start, since the key is shown and searched in plain text.
func TestSubWorkflowIdempotencyKeyGoesWithTheStart(t *testing.T) {
	def := `{"name":"parent","tasks":[{"name":"kid","taskReferenceName":"kid","type":"SUB_WORKFLOW",
	  "subWorkflowParam":{"name":"kid","idempotencyKey":%q,"idempotencyStrategy":"RETURN_EXISTING"}}]}`
	for _, tt := range []struct {
		name, key       string
		wantKey, reason string
	}{
		{"literal", "order", "order", ""},
		{"expression", "order-${workflow.input.id}", "order-7", ""},
		{"null", "${workflow.input.missing}", "", ""},
		{"number", "${workflow.input.id}", "7", ""},
		{"secret", "${workflow.secrets.k}", "", "subWorkflowParam.idempotencyKey is sealed data, a secret or an environment value"},
		{"not text", "${workflow.input.obj}", "", "subWorkflowParam.idempotencyKey: want text or a number"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, fmt.Sprintf(def, tt.key), map[string]any{"id": 7, "obj": map[string]any{"a": 1}})
			starts := effectsOf[engine.StartWorkflow](h.last)
			if strings.Contains(tt.reason, "sealed") {
				task := h.wantTask("kid", conductor.TaskFailedWithTerminalError)
				if len(starts) != 0 || !strings.Contains(task.Reason, tt.reason) {
					t.Fatalf("starts %+v, reason %q, want none and %q", starts, task.Reason, tt.reason)
				}
				return
			}
			if len(starts) != 1 {
				t.Fatalf("starts %+v, want one", starts)
			}
			s := starts[0]
			if s.IdempotencyKey != tt.wantKey || s.IdempotencyStrategy != conductor.IdempotencyReturnExisting ||
				!strings.Contains(s.Refused, tt.reason) || (tt.reason == "") != (s.Refused == "") {
				t.Fatalf("start key %q strategy %q refused %q, want %q, RETURN_EXISTING, %q", s.IdempotencyKey, s.IdempotencyStrategy,
					s.Refused, tt.wantKey, tt.reason)
			}
		})
	}
}

// With RETURN_EXISTING, a SUB_WORKFLOW whose key another child of its
// workflow holds waits for that child (ChildExisting), and its end
// finishes every task waiting for it: two branches of a fork with one key
// both complete with the one child's output.
func TestChildExistingWaitsForTheChildHoldingTheKey(t *testing.T) {
	sub := func(ref string) string {
		return `{"name":"` + ref + `","taskReferenceName":"` + ref + `","type":"SUB_WORKFLOW",
		  "subWorkflowParam":{"name":"kid","idempotencyKey":"k","idempotencyStrategy":"RETURN_EXISTING"}}`
	}
	h := newHarness(t, `{"name":"parent","tasks":[
	  {"name":"fork","taskReferenceName":"fork","type":"FORK_JOIN","forkTasks":[[`+sub("a")+`],[`+sub("b")+`]]},
	  {"name":"join","taskReferenceName":"join","type":"JOIN","joinOn":["a","b"]}]}`, nil)
	a, b := h.wantTask("a", conductor.TaskInProgress), h.wantTask("b", conductor.TaskInProgress)
	if a.SubWorkflowID == b.SubWorkflowID {
		t.Fatalf("the two tasks start one child %s", a.SubWorkflowID)
	}
	d := h.decide(engine.ChildExisting{ChildID: b.SubWorkflowID, ExistingID: a.SubWorkflowID})
	b = h.wantTask("b", conductor.TaskInProgress)
	checks := effectsOf[engine.CheckChild](d)
	if b.SubWorkflowID != a.SubWorkflowID || b.Output["subWorkflowId"] != a.SubWorkflowID ||
		len(checks) != 1 || checks[0].ChildID != a.SubWorkflowID {
		t.Fatalf("b after ChildExisting: %+v, checks %+v; want it waiting for %s", b, checks, a.SubWorkflowID)
	}
	// News for a child the task no longer waits for changes nothing.
	if d := h.decide(engine.ChildExisting{ChildID: "gone", ExistingID: a.SubWorkflowID}); len(d.Events) != 0 {
		t.Fatalf("late news recorded %d events", len(d.Events))
	}

	h.decide(engine.ChildFinished{ChildID: a.SubWorkflowID, Name: "kid", Version: 1, Status: conductor.WorkflowCompleted,
		Output: map[string]any{"v": "done"}})
	h.wantStatus(conductor.WorkflowCompleted)
	for _, ref := range []string{"a", "b"} {
		task := h.wantTask(ref, conductor.TaskCompleted)
		if task.Output["v"] != "done" || task.Output["subWorkflowId"] != a.SubWorkflowID {
			t.Fatalf("%s output %v", ref, task.Output)
		}
	}
}

// An idempotencyStrategy other than Conductor's three is refused when
// the definition is registered, as in a start request.
func TestValidateSubWorkflowIdempotencyStrategy(t *testing.T) {
	def := parseDef(t, `{"name":"parent","tasks":[{"name":"kid","taskReferenceName":"kid","type":"SUB_WORKFLOW",
	  "subWorkflowParam":{"name":"kid","idempotencyKey":"k","idempotencyStrategy":"RETURN_LATEST"}}]}`)
	err := engine.ValidateWorkflowDef(def)
	if err == nil || !strings.Contains(err.Error(), "subWorkflowParam.idempotencyStrategy") {
		t.Fatalf("validate: %v, want a refusal naming subWorkflowParam.idempotencyStrategy", err)
	}
}
