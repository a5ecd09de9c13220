package engine_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// A workflow whose definition enforces its outputSchema completes only
// with an output that conforms; one that does not fails, with the check's
// reason; a check that cannot tell fails the decision, to be tried again.
// A TERMINATE task that completes the workflow is held to it too: its
// workflowOutput is the workflow's output (it used to complete with any).
func TestOutputSchema(t *testing.T) {
	const enforced = `{"name":"wf","version":1,"enforceSchema":true,"outputSchema":{"name":"receipt"},
	  "outputParameters":{"receiptId":"${a.output.id}"},"tasks":[{"name":"a","taskReferenceName":"a"}]}`
	const terminated = `{"name":"wf","version":1,"enforceSchema":true,"outputSchema":{"name":"receipt"},
	  "tasks":[{"name":"a","taskReferenceName":"a"},{"name":"t","taskReferenceName":"t","type":"TERMINATE",
	    "inputParameters":{"terminationStatus":"COMPLETED","workflowOutput":{"receiptId":"${a.output.id}"}}}]}`
	for _, tc := range []struct {
		name, def  string
		check      error
		wantStatus string
		wantErr    error
	}{
		{"conforms", enforced, nil, conductor.WorkflowCompleted, nil},
		{"does not conform", enforced, fault.Invalid(`does not conform to schema receipt: at /: missing "receiptId"`), conductor.WorkflowFailed, nil},
		{"cannot tell", enforced, fmt.Errorf("read schema receipt: %w", fault.ErrUnavailable), conductor.WorkflowRunning, fault.ErrUnavailable},
		{"not enforced", strings.Replace(enforced, `"enforceSchema":true`, `"enforceSchema":false`, 1), errors.New("must not be asked"), conductor.WorkflowCompleted, nil},
		{"terminated: conforms", terminated, nil, conductor.WorkflowCompleted, nil},
		{"terminated: does not conform", terminated, fault.Invalid(`does not conform to schema receipt: at /: missing "receiptId"`), conductor.WorkflowFailed, nil},
		{"terminated: cannot tell", terminated, fmt.Errorf("read schema receipt: %w", fault.ErrUnavailable), conductor.WorkflowRunning, fault.ErrUnavailable},
		{"terminated: not enforced", strings.Replace(terminated, `"enforceSchema":true`, `"enforceSchema":false`, 1), errors.New("must not be asked"), conductor.WorkflowCompleted, nil},
		// A workflow that ends otherwise than COMPLETED has no output to
		// hold to the schema.
		{"terminated as failed", strings.Replace(terminated, `"terminationStatus":"COMPLETED"`, `"terminationStatus":"FAILED"`, 1), errors.New("must not be asked"), conductor.WorkflowFailed, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, tc.def, nil)
			var checked map[string]any
			h.checkOutput = func(def *conductor.WorkflowDef, output map[string]any) error {
				if def.OutputSchema == nil || def.OutputSchema.Name != "receipt" {
					t.Fatalf("checked against %+v", def.OutputSchema)
				}
				checked = output
				return tc.check
			}
			h.take("a")
			_, err := h.try(engine.Result{Result: conductor.TaskResult{TaskID: h.task("a").ID, WorkflowInstanceID: h.w.ID,
				Status: conductor.TaskCompleted, OutputData: map[string]any{"id": "r-1"}}})
			if !errors.Is(err, tc.wantErr) || (err == nil) != (tc.wantErr == nil) {
				t.Fatalf("decision error %v, want %v", err, tc.wantErr)
			}
			h.wantStatus(tc.wantStatus)
			if tc.wantStatus == conductor.WorkflowRunning {
				return
			}
			if h.w.Output["receiptId"] != "r-1" {
				t.Fatalf("output %v", h.w.Output)
			}
			if tc.check != nil && tc.check.Error() == "must not be asked" {
				if checked != nil {
					t.Fatalf("checked %v", checked)
				}
				return
			}
			if checked["receiptId"] != "r-1" {
				t.Fatalf("checked %v", checked)
			}
			if tc.wantStatus == conductor.WorkflowFailed && h.w.Reason != `output of workflow wf does not conform to schema receipt: at /: missing "receiptId"` {
				t.Fatalf("reason %q", h.w.Reason)
			}
		})
	}
}
