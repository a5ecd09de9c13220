package e2e_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/flowvault/flowvault/schemas/conductor"
)

const (
	startIdemTarget = `{"name":"swi_target","tasks":[{"name":"hold","taskReferenceName":"hold","type":"WAIT"}]}`
	// The strategy comes from the input, so that one definition tries
	// each.
	startIdemStarter = `{"name":"swi_starter","tasks":[{"name":"sw","taskReferenceName":"sw","type":"START_WORKFLOW",
	  "inputParameters":{"startWorkflow":{"name":"swi_target","idempotencyKey":"order-${workflow.input.k}","idempotencyStrategy":"${workflow.input.how}"}}}]}`
)

// A START_WORKFLOW's startWorkflow.idempotencyKey and idempotencyStrategy
// (Orkes's) start the workflow as a start request with them does: it holds
// the key, FAIL and FAIL_ON_RUNNING (while the holder runs) fail a task
// whose key another workflow holds, and RETURN_EXISTING completes the task
// with the holder's id.
func TestStartWorkflowIdempotencyKey(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.register(startIdemTarget, startIdemStarter)
	run := func(how, status string) *conductor.Task {
		t.Helper()
		return taskByRef(e.waitStatus(e.start("swi_starter", map[string]any{"k": "a", "how": how}), status), "sw")
	}
	held, _ := run(conductor.IdempotencyFail, conductor.WorkflowCompleted).OutputData["workflowId"].(string)
	if got := e.workflow(held).IdempotencyKey; got != "order-a" {
		t.Fatalf("the started workflow %q holds key %q, want order-a", held, got)
	}
	for _, how := range []string{conductor.IdempotencyFail, conductor.IdempotencyFailOnRunning} {
		sw := run(how, conductor.WorkflowFailed)
		if !strings.Contains(sw.ReasonForIncompletion, `a workflow with idempotency key "order-a"`) || sw.OutputData["workflowId"] != nil {
			t.Errorf("%s: task %q, output %v; want it failed naming the key, no workflow", how, sw.ReasonForIncompletion, sw.OutputData)
		}
	}
	if got := run(conductor.IdempotencyReturnExisting, conductor.WorkflowCompleted).OutputData["workflowId"]; got != held {
		t.Errorf("RETURN_EXISTING: workflowId %v, want %s, the holder", got, held)
	}
	// The key is the definition's, shared with starts from anywhere.
	e.must(http.StatusConflict, "POST", "/api/workflow", conductor.StartWorkflowRequest{Name: "swi_target", IdempotencyKey: "order-a"})
}

// RETURN_EXISTING answers with the workflow holding the key as POST
// /api/workflow answers the starter: with it when the starter may read it.
// Starting a registered definition takes EXECUTE on it, which reads its
// executions, so a starter reads another's holder as the REST start does
// (executor.TestStartWorkflowReturnExistingAsksToRead has one who may not).
func TestStartWorkflowReturnExistingAsTheStarterReads(t *testing.T) {
	t.Parallel()
	e := newSecureEnv(t)
	e.register(startIdemTarget, startIdemStarter)
	runner, token := e.application("swi_runner", "USER")
	e.grant(runner, "WORKFLOW_DEF", "swi_starter", "EXECUTE")
	e.grant(runner, "WORKFLOW_DEF", "swi_target", "EXECUTE")
	as := e.as(token)

	admins := e.must(http.StatusOK, "POST", "/api/workflow", conductor.StartWorkflowRequest{Name: "swi_target", IdempotencyKey: "order-x"})
	if got := as.must(http.StatusOK, "POST", "/api/workflow", conductor.StartWorkflowRequest{Name: "swi_target", IdempotencyKey: "order-x",
		IdempotencyStrategy: conductor.IdempotencyReturnExisting}); got != admins {
		t.Fatalf("the REST start answers the runner %s, want %s", got, admins)
	}
	id := as.must(http.StatusOK, "POST", "/api/workflow", conductor.StartWorkflowRequest{Name: "swi_starter",
		Input: map[string]any{"k": "x", "how": conductor.IdempotencyReturnExisting}})
	if got := taskByRef(as.waitStatus(id, conductor.WorkflowCompleted), "sw").OutputData["workflowId"]; got != admins {
		t.Fatalf("the START_WORKFLOW answers the runner %v, want %s", got, admins)
	}
}
