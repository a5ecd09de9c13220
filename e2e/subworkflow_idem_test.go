package e2e_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// A SUB_WORKFLOW's subWorkflowParam.idempotencyKey and idempotencyStrategy
// start its child as a start request with them does: the child holds the
// key, FAIL and FAIL_ON_RUNNING fail a task whose key another workflow
// holds (running, for FAIL_ON_RUNNING), and RETURN_EXISTING waits for the
// workflow holding it when its own parent started it (a retried task gets
// the child it had), failing the task otherwise.
func TestSubWorkflowIdempotencyKey(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	parent := func(name, kid, key, strategy string) string {
		return fmt.Sprintf(`{"name":%q,"tasks":[{"name":"kid","taskReferenceName":"kid","type":"SUB_WORKFLOW",
		  "subWorkflowParam":{"name":%q,"idempotencyKey":%q,"idempotencyStrategy":%q}}]}`, name, kid, key, strategy)
	}
	e.register(`{"name":"idem_done","outputParameters":{"v":"done"},
	  "tasks":[{"name":"n","taskReferenceName":"n","type":"SET_VARIABLE","inputParameters":{"a":1}}]}`,
		`{"name":"idem_broken","tasks":[{"name":"end","taskReferenceName":"end","type":"TERMINATE",
	  "inputParameters":{"terminationStatus":"FAILED","terminationReason":"broken"}}]}`,
		parent("idem_fail", "idem_done", "order-${workflow.input.k}", "FAIL"),
		parent("idem_running", "idem_done", "order-${workflow.input.k}", "FAIL_ON_RUNNING"),
		parent("idem_existing", "idem_broken", "order-${workflow.input.k}", "RETURN_EXISTING"))

	// FAIL: the child holds the key; another parent's child with it does
	// not start.
	first := e.waitStatus(e.start("idem_fail", map[string]any{"k": "a"}), conductor.WorkflowCompleted)
	kid := taskByRef(first, "kid").SubWorkflowID
	if got := e.workflow(kid).IdempotencyKey; got != "order-a" {
		t.Fatalf("child %s holds idempotency key %q, want order-a", kid, got)
	}
	second := e.waitStatus(e.start("idem_fail", map[string]any{"k": "a"}), conductor.WorkflowFailed)
	if task := taskByRef(second, "kid"); task.Status != conductor.TaskFailed ||
		!strings.Contains(task.ReasonForIncompletion, `a workflow with idempotency key "order-a" exists`) || task.SubWorkflowID == kid {
		t.Fatalf("second start with the key: task %s %q (child %s), want FAILED naming the key", task.Status, task.ReasonForIncompletion, task.SubWorkflowID)
	}

	// FAIL_ON_RUNNING: the workflow holding the key ended, so a new child
	// starts, and holds it.
	again := e.waitStatus(e.start("idem_running", map[string]any{"k": "a"}), conductor.WorkflowCompleted)
	if next := taskByRef(again, "kid").SubWorkflowID; next == kid || e.workflow(next).IdempotencyKey != "order-a" {
		t.Fatalf("FAIL_ON_RUNNING after the holder ended: child %s, want a new one holding the key", next)
	}

	// RETURN_EXISTING: a retry of the parent waits for the child its
	// first run started, which failed: it fails again, and no second child
	// runs.
	id := e.start("idem_existing", map[string]any{"k": "b"})
	broken := taskByRef(e.waitStatus(id, conductor.WorkflowFailed), "kid").SubWorkflowID
	e.must(http.StatusNoContent, "POST", "/api/workflow/"+id+"/retry", nil)
	testutil.Eventually(t, 30*time.Second, 20*time.Millisecond, func() error {
		wf := e.workflow(id)
		var kids []string
		for _, task := range wf.Tasks {
			kids = append(kids, task.Status+":"+task.SubWorkflowID)
		}
		if wf.Status != conductor.WorkflowFailed || len(wf.Tasks) != 2 || wf.Tasks[1].Status != conductor.TaskFailed {
			return fmt.Errorf("after retry: %s, tasks %v", wf.Status, kids)
		}
		if wf.Tasks[1].SubWorkflowID != broken || wf.Tasks[1].OutputData["subWorkflowId"] != broken {
			return fmt.Errorf("the retried task waits for %s, want %s, the child holding the key", wf.Tasks[1].SubWorkflowID, broken)
		}
		return nil
	})
	// Another parent's task does not wait for it: it would never hear.
	other := e.waitStatus(e.start("idem_existing", map[string]any{"k": "b"}), conductor.WorkflowFailed)
	if task := taskByRef(other, "kid"); task.SubWorkflowID == broken || !strings.Contains(task.ReasonForIncompletion, "which this workflow did not start") {
		t.Fatalf("another parent with the key: task waits for %s, reason %q", task.SubWorkflowID, task.ReasonForIncompletion)
	}
}

// A key from a secret is refused before the child starts: the key is
// shown, searched and indexed in plain text.
func TestSubWorkflowIdempotencyKeyFromASecret(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const value = "idem-secret-value-4c9e21"
	e.putSecret("idem_key", value)
	e.register(`{"name":"idem_kid","tasks":[{"name":"n","taskReferenceName":"n","type":"SET_VARIABLE","inputParameters":{"a":1}}]}`,
		`{"name":"idem_secret","tasks":[{"name":"kid","taskReferenceName":"kid","type":"SUB_WORKFLOW",
	  "subWorkflowParam":{"name":"idem_kid","idempotencyKey":"${workflow.secrets.idem_key}"}}]}`)
	id := e.waitStatus(e.start("idem_secret", nil), conductor.WorkflowFailed).WorkflowID
	body := e.must(http.StatusOK, "GET", "/api/workflow/"+id+"?includeTasks=true", nil)
	if !strings.Contains(body, "subWorkflowParam.idempotencyKey is sealed data, a secret or an environment value") || strings.Contains(body, value) {
		t.Fatalf("workflow %s", body)
	}
	if body := e.must(http.StatusOK, "GET", "/api/workflow/search?query=workflowType%3Didem_kid", nil); !strings.Contains(body, `"totalHits":0`) {
		t.Fatalf("a child started: %s", body)
	}
}
