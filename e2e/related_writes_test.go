package e2e_test

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// Read-your-writes across workflows: a lifecycle write answers once what
// it does to the workflows it is directly related to (a parent reopened
// or ended, children terminated or started, a failure workflow started)
// is readable, as Conductor does those synchronously. Each subtest reads
// the related workflow once, right after the write answers: no waiting.
func TestLifecycleWritesAnswerAfterRelatedWorkflows(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.register(
		`{"name":"rw_kid","tasks":[{"name":"rw_hold","taskReferenceName":"hold","type":"WAIT"}]}`,
		`{"name":"rw_parent","tasks":[{"name":"sub","taskReferenceName":"sub","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"rw_kid"}}]}`,
		`{"name":"rw_top","tasks":[{"name":"sub","taskReferenceName":"sub","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"rw_parent"}}]}`,
		`{"name":"rw_cleanup","tasks":[{"name":"rw_hold","taskReferenceName":"hold","type":"WAIT"}]}`,
		`{"name":"rw_fragile","failureWorkflow":"rw_cleanup","tasks":[{"name":"rw_hold","taskReferenceName":"hold","type":"WAIT"}]}`)

	// status reads a workflow once.
	status := func(id string) string {
		t.Helper()
		return e.workflow(id).Status
	}
	// running starts a parent and returns it with its running child.
	running := func(name string) (parent, child string) {
		t.Helper()
		parent = e.start(name, nil)
		return parent, e.childOf(parent)
	}
	// failedChain starts rw_top and fails the WAIT of its grandchild:
	// top, parent and kid all end FAILED.
	failedChain := func() (top, parent, kid string) {
		t.Helper()
		top, parent = running("rw_top")
		kid = e.childOf(parent)
		e.waitStatus(kid, conductor.WorkflowRunning)
		e.must(http.StatusOK, "POST", "/api/tasks/"+kid+"/hold/"+conductor.TaskFailedWithTerminalError, map[string]any{})
		e.waitStatus(top, conductor.WorkflowFailed)
		e.waitStatus(parent, conductor.WorkflowFailed)
		e.waitStatus(kid, conductor.WorkflowFailed)
		return top, parent, kid
	}

	t.Run("terminate ends the children", func(t *testing.T) {
		parent, child := running("rw_top")
		grandchild := e.childOf(child)
		e.waitStatus(grandchild, conductor.WorkflowRunning)
		e.must(http.StatusNoContent, "DELETE", "/api/workflow/"+parent+"?reason=op", nil)
		if got := status(child); got != conductor.WorkflowTerminated {
			t.Errorf("child %s read %s right after its parent's terminate answered, want TERMINATED", child, got)
		}
		if got := status(grandchild); got != conductor.WorkflowTerminated {
			t.Errorf("grandchild %s read %s right after the terminate answered, want TERMINATED", grandchild, got)
		}
	})

	t.Run("terminate-remove ends the children", func(t *testing.T) {
		parent, child := running("rw_parent")
		e.waitStatus(child, conductor.WorkflowRunning)
		e.must(http.StatusNoContent, "DELETE", "/api/workflow/"+parent+"/terminate-remove", nil)
		if got := status(child); got != conductor.WorkflowTerminated {
			t.Errorf("child %s read %s right after terminate-remove answered, want TERMINATED", child, got)
		}
	})

	t.Run("bulk terminate ends the children", func(t *testing.T) {
		parent, child := running("rw_parent")
		e.waitStatus(child, conductor.WorkflowRunning)
		var res conductor.BulkResponse
		e.decode(http.StatusOK, "POST", "/api/workflow/bulk/terminate", []string{parent}, &res)
		if len(res.BulkSuccessfulResults) != 1 {
			t.Fatalf("bulk terminate: %+v", res)
		}
		if got := status(child); got != conductor.WorkflowTerminated {
			t.Errorf("child %s read %s right after the bulk terminate answered, want TERMINATED", child, got)
		}
	})

	t.Run("terminate of a child ends its parent", func(t *testing.T) {
		parent, child := running("rw_parent")
		e.waitStatus(child, conductor.WorkflowRunning)
		e.must(http.StatusNoContent, "DELETE", "/api/workflow/"+child+"?reason=op", nil)
		if got := status(parent); got == conductor.WorkflowRunning {
			t.Errorf("parent %s read RUNNING right after its only child's terminate answered", parent)
		}
	})

	t.Run("terminate starts the failure workflow asked for", func(t *testing.T) {
		id := e.start("rw_fragile", nil)
		e.must(http.StatusNoContent, "DELETE", "/api/workflow/"+id+"?reason=op&triggerFailureWorkflow=true", nil)
		var res struct{ TotalHits int }
		q := "/api/workflow/search?query=" + url.QueryEscape("workflowType = rw_cleanup") + "&freeText=" + id
		e.decode(http.StatusOK, "GET", q, nil, &res)
		if res.TotalHits != 1 {
			t.Errorf("%d failure workflows found right after the terminate answered, want 1", res.TotalHits)
		}
	})

	t.Run("retry with resumeSubworkflowTasks reopens the parents", func(t *testing.T) {
		top, parent, kid := failedChain()
		e.must(http.StatusNoContent, "POST", "/api/workflow/"+top+"/retry?resumeSubworkflowTasks=true", nil)
		for _, id := range []string{top, parent, kid} {
			if got := status(id); got != conductor.WorkflowRunning {
				t.Errorf("workflow %s read %s right after the retry answered, want RUNNING", id, got)
			}
		}
	})

	t.Run("retry of a child reopens its parents", func(t *testing.T) {
		top, parent, kid := failedChain()
		e.must(http.StatusNoContent, "POST", "/api/workflow/"+kid+"/retry", nil)
		for _, id := range []string{parent, top} {
			if got := status(id); got != conductor.WorkflowRunning {
				t.Errorf("ancestor %s read %s right after the child's retry answered, want RUNNING", id, got)
			}
		}
	})

	t.Run("plain retry starts a new child", func(t *testing.T) {
		_, parent, kid := failedChain()
		e.must(http.StatusNoContent, "POST", "/api/workflow/"+parent+"/retry", nil)
		next := taskByRef(e.workflow(parent), "sub").SubWorkflowID
		if next == "" || next == kid {
			t.Fatalf("the retried parent waits for %q; its failed child was %s", next, kid)
		}
		if code, body := e.do("GET", "/api/workflow/"+next, nil); code != http.StatusOK {
			t.Errorf("new child %s read %d %s right after the retry answered", next, code, body)
		}
	})

	t.Run("rerun from a child's task reopens the parent", func(t *testing.T) {
		parent, child := running("rw_parent")
		e.waitStatus(child, conductor.WorkflowRunning)
		e.must(http.StatusOK, "POST", "/api/tasks/"+child+"/hold/COMPLETED", map[string]any{})
		e.waitStatus(parent, conductor.WorkflowCompleted)
		hold := taskByRef(e.workflow(child), "hold").TaskID
		e.must(http.StatusOK, "POST", "/api/workflow/"+parent+"/rerun", map[string]any{"reRunFromTaskId": hold})
		if got := status(parent); got != conductor.WorkflowRunning {
			t.Errorf("parent %s read %s right after the rerun from its child's task answered, want RUNNING", parent, got)
		}
	})

	t.Run("rerun of a child reopens its parent", func(t *testing.T) {
		parent, child := running("rw_parent")
		e.waitStatus(child, conductor.WorkflowRunning)
		e.must(http.StatusOK, "POST", "/api/tasks/"+child+"/hold/"+conductor.TaskFailedWithTerminalError, map[string]any{})
		e.waitStatus(parent, conductor.WorkflowFailed)
		e.must(http.StatusOK, "POST", "/api/workflow/"+child+"/rerun", map[string]any{})
		if got := status(parent); got != conductor.WorkflowRunning {
			t.Errorf("parent %s read %s right after its child's rerun answered, want RUNNING", parent, got)
		}
	})

	t.Run("restart of a child reopens its parent", func(t *testing.T) {
		parent, child := running("rw_parent")
		e.waitStatus(child, conductor.WorkflowRunning)
		e.must(http.StatusNoContent, "DELETE", "/api/workflow/"+parent+"?reason=op", nil)
		e.waitStatus(child, conductor.WorkflowTerminated)
		e.must(http.StatusNoContent, "POST", "/api/workflow/"+child+"/restart", nil)
		if got := status(parent); got != conductor.WorkflowRunning {
			t.Errorf("parent %s read %s right after its child's restart answered, want RUNNING", parent, got)
		}
	})

	t.Run("restart starts the child", func(t *testing.T) {
		parent, child := running("rw_parent")
		e.waitStatus(child, conductor.WorkflowRunning)
		e.must(http.StatusNoContent, "DELETE", "/api/workflow/"+parent+"?reason=op", nil)
		e.waitStatus(child, conductor.WorkflowTerminated)
		e.must(http.StatusNoContent, "POST", "/api/workflow/"+parent+"/restart", nil)
		next := taskByRef(e.workflow(parent), "sub").SubWorkflowID
		if next == "" || next == child {
			t.Fatalf("the restarted parent waits for %q; its first child was %s", next, child)
		}
		if code, body := e.do("GET", "/api/workflow/"+next, nil); code != http.StatusOK {
			t.Errorf("new child %s read %d %s right after the restart answered", next, code, body)
		}
	})
}

// childOf waits until the SUB_WORKFLOW task "sub" of workflow id names
// its child, and returns the child's id.
func (e *env) childOf(id string) string {
	e.t.Helper()
	var child string
	testutil.Eventually(e.t, 30*time.Second, 20*time.Millisecond, func() error {
		if sub := taskByRef(e.workflow(id), "sub"); sub != nil && sub.SubWorkflowID != "" {
			child = sub.SubWorkflowID
			return nil
		}
		return errors.New("no child yet")
	})
	testutil.Eventually(e.t, 30*time.Second, 20*time.Millisecond, func() error {
		if code, body := e.do("GET", "/api/workflow/"+child, nil); code != http.StatusOK {
			return fmt.Errorf("child %s: %d %s", child, code, body)
		}
		return nil
	})
	return child
}
