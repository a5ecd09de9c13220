package e2e_test

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// Read-your-writes across workflows for task updates: an update that ends
// a child's last task ends the child, and the child's end moves its parent
// on (its SUB_WORKFLOW task completes, and so may the parent). Conductor
// makes those before the update answers; so does every task update path,
// a worker's result among them when it ends its workflow. Each subtest
// reads the parent once, right after the update answers: no waiting.
func TestTaskUpdatesAnswerAfterRelatedWorkflows(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.register(
		`{"name":"rt_kid","tasks":[{"name":"rt_work","taskReferenceName":"work"}]}`,
		`{"name":"rt_parent","tasks":[{"name":"sub","taskReferenceName":"sub","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"rt_kid"}}]}`,
		`{"name":"rt_wait_kid","tasks":[{"name":"rt_hold","taskReferenceName":"hold","type":"WAIT"}]}`,
		`{"name":"rt_wait_parent","tasks":[{"name":"sub","taskReferenceName":"sub","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"rt_wait_kid"}}]}`)

	// taken starts rt_parent and polls its child's task over HTTP, as a
	// worker does.
	taken := func() (parent, child string, task *conductor.Task) {
		t.Helper()
		parent = e.start("rt_parent", nil)
		child = e.childOf(parent)
		testutil.Eventually(t, 30*time.Second, 20*time.Millisecond, func() error {
			// The subtests run one at a time: the queue holds this child's
			// task only.
			if tasks := e.pollBatch("rt_work", "w1", 1, 100*time.Millisecond, ""); len(tasks) == 1 {
				if task = tasks[0]; task.WorkflowInstanceID != child {
					t.Fatalf("polled a task of %s, want one of %s", task.WorkflowInstanceID, child)
				}
				return nil
			}
			return errors.New("child's task not polled yet")
		})
		return parent, child, task
	}
	// waiting starts rt_wait_parent and waits until its child waits.
	waiting := func() (parent, child string) {
		t.Helper()
		parent = e.start("rt_wait_parent", nil)
		child = e.childOf(parent)
		e.waitStatus(child, conductor.WorkflowRunning)
		return parent, child
	}
	// completed checks, once, that the parent shows its child's end.
	completed := func(t *testing.T, parent, how string) {
		t.Helper()
		wf := e.workflow(parent)
		sub := taskByRef(wf, "sub")
		if sub == nil {
			t.Fatalf("parent %s has no SUB_WORKFLOW task", parent)
		}
		if sub.Status != conductor.TaskCompleted {
			t.Errorf("parent %s's SUB_WORKFLOW task read %s right after %s answered, want COMPLETED", parent, sub.Status, how)
		}
		if wf.Status != conductor.WorkflowCompleted {
			t.Errorf("parent %s read %s right after %s answered, want COMPLETED", parent, wf.Status, how)
		}
	}

	t.Run("a worker's result by POST /api/tasks", func(t *testing.T) {
		parent, child, task := taken()
		e.must(http.StatusOK, "POST", "/api/tasks", conductor.TaskResult{TaskID: task.TaskID, WorkflowInstanceID: child,
			WorkerID: "w1", Status: conductor.TaskCompleted})
		completed(t, parent, "the child's last result")
	})

	t.Run("a worker's result by update-v2", func(t *testing.T) {
		parent, child, task := taken()
		code, body := e.do("POST", "/api/tasks/update-v2", conductor.TaskResult{TaskID: task.TaskID, WorkflowInstanceID: child,
			WorkerID: "w1", Status: conductor.TaskCompleted})
		if code != http.StatusOK && code != http.StatusNoContent {
			t.Fatalf("update-v2: %d %s", code, body)
		}
		completed(t, parent, "the child's last update-v2")
	})

	t.Run("an update by reference name", func(t *testing.T) {
		parent, child := waiting()
		e.must(http.StatusOK, "POST", "/api/tasks/"+child+"/hold/"+conductor.TaskCompleted, map[string]any{})
		completed(t, parent, "the by-reference update of the child's WAIT")
	})

	t.Run("a signal to the parent", func(t *testing.T) {
		// The signal finds the WAIT in the child, and its answer comes
		// before the child's end reaches the parent unless it waits.
		parent, _ := waiting()
		e.must(http.StatusOK, "POST", "/api/tasks/"+parent+"/"+conductor.TaskCompleted+"/signal", map[string]any{})
		completed(t, parent, "the signal")
	})

	t.Run("a state update of the child", func(t *testing.T) {
		parent, child := waiting()
		e.must(http.StatusOK, "POST", "/api/workflow/"+child+"/state", map[string]any{
			"taskReferenceName": "hold", "taskResult": map[string]any{"status": conductor.TaskCompleted}})
		completed(t, parent, "the state update of the child")
	})
}
