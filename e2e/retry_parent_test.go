package e2e_test

import (
	"context"
	"errors"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/workers"
)

// retryIfRetriedByParent=false (Orkes) refuses to retry a sub-workflow
// whose parent has since moved on to a new child; by default, and while
// the parent still waits for it, the retry goes ahead.
func TestRetryIfRetriedByParent(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.must(http.StatusNoContent, "POST", "/api/metadata/taskdefs", `[{"name":"rp_work","retryCount":0}]`)
	e.register(`{"name":"rp_kid","tasks":[{"name":"rp_work","taskReferenceName":"w"}]}`,
		`{"name":"rp_mother","tasks":[{"name":"sub","taskReferenceName":"sub","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"rp_kid"}}]}`)
	var fail atomic.Bool
	fail.Store(true)
	e.work("rp_work", 2, func(context.Context, *conductor.Task) (workers.Output, error) {
		if fail.Load() {
			return workers.Output{}, errors.New("broken")
		}
		return workers.Output{}, nil
	})

	// The parent still waits for its failed child: a refusing retry goes
	// ahead, and reopens the parent.
	id := e.start("rp_mother", nil)
	kid := taskByRef(e.waitStatus(id, conductor.WorkflowFailed), "sub").SubWorkflowID
	e.waitStatus(kid, conductor.WorkflowFailed)
	e.must(http.StatusNoContent, "POST", "/api/workflow/"+kid+"/retry?retryIfRetriedByParent=false", nil)
	e.waitStatus(kid, conductor.WorkflowFailed)
	e.waitStatus(id, conductor.WorkflowFailed)

	// The parent retried with a new child: the old one is refused with
	// the flag, and retried without it.
	e.must(http.StatusNoContent, "POST", "/api/workflow/"+id+"/retry", nil)
	e.waitStatus(id, conductor.WorkflowFailed)
	if now := taskByRef(e.workflow(id), "sub").SubWorkflowID; now == kid {
		t.Fatalf("the parent's retry kept child %s", kid)
	}
	if got := e.fails(http.StatusConflict, "POST", "/api/workflow/"+kid+"/retry?retryIfRetriedByParent=false", nil); got.Message == "" {
		t.Fatal("refusal without a message")
	}
	if st := e.workflow(kid).Status; st != conductor.WorkflowFailed {
		t.Fatalf("refused retry left the child %s", st)
	}
	e.fails(http.StatusBadRequest, "POST", "/api/workflow/"+kid+"/retry?retryIfRetriedByParent=perhaps", nil)
	fail.Store(false)
	e.must(http.StatusNoContent, "POST", "/api/workflow/"+kid+"/retry", nil)
	e.waitStatus(kid, conductor.WorkflowCompleted)
	if st := e.workflow(id).Status; st != conductor.WorkflowFailed {
		t.Fatalf("the parent took news of a child it no longer waits for: %s", st)
	}
}

// A retry with resumeSubworkflowTasks, or a rerun from a child's task,
// asked of a workflow that has not ended is refused (409) as a plain one
// is: Conductor checks the workflow asked before it looks into its
// children. The ended child is left as it was, not run again under a
// parent that is paused (its failure waiting for the resume) or that has
// gone on past it.
func TestRetryAndRerunIntoChildOfUnendedParent(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.must(http.StatusNoContent, "POST", "/api/metadata/taskdefs", `[{"name":"ue_work","retryCount":0}]`)
	e.register(`{"name":"ue_kid","tasks":[{"name":"ue_work","taskReferenceName":"w"}]}`,
		`{"name":"ue_mother","tasks":[{"name":"sub","taskReferenceName":"sub","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"ue_kid"}},
		  {"name":"ue_work","taskReferenceName":"after"}]}`)
	childOf := func(id string) string {
		var kid string
		testutil.Eventually(t, 30*time.Second, 20*time.Millisecond, func() error {
			sub := taskByRef(e.workflow(id), "sub")
			if sub == nil || sub.SubWorkflowID == "" {
				return errors.New("no child yet")
			}
			kid = sub.SubWorkflowID
			return nil
		})
		e.waitStatus(kid, conductor.WorkflowRunning)
		return kid
	}

	// Paused, its child failed meanwhile.
	id := e.start("ue_mother", nil)
	kid := childOf(id)
	e.must(http.StatusNoContent, "PUT", "/api/workflow/"+id+"/pause", nil)
	e.must(http.StatusOK, "POST", "/api/tasks/"+kid+"/w/FAILED", map[string]any{})
	e.waitStatus(kid, conductor.WorkflowFailed)
	e.fails(http.StatusConflict, "POST", "/api/workflow/"+id+"/retry?resumeSubworkflowTasks=true", nil)
	if k := e.workflow(kid); k.Status != conductor.WorkflowFailed || len(k.Tasks) != 1 {
		t.Fatalf("a refused retry left the child %s with %d tasks", k.Status, len(k.Tasks))
	}
	e.waitStatus(id, conductor.WorkflowPaused)

	// Running past its completed child.
	id = e.start("ue_mother", nil)
	kid = childOf(id)
	e.must(http.StatusOK, "POST", "/api/tasks/"+kid+"/w/COMPLETED", map[string]any{})
	e.waitStatus(kid, conductor.WorkflowCompleted)
	testutil.Eventually(t, 30*time.Second, 20*time.Millisecond, func() error {
		if taskByRef(e.workflow(id), "after") == nil {
			return errors.New("the parent has not gone on yet")
		}
		return nil
	})
	w := taskByRef(e.workflow(kid), "w").TaskID
	e.fails(http.StatusConflict, "POST", "/api/workflow/"+id+"/rerun", map[string]any{"reRunFromTaskId": w})
	if k := e.workflow(kid); k.Status != conductor.WorkflowCompleted || len(k.Tasks) != 1 {
		t.Fatalf("a refused rerun left the child %s with %d tasks", k.Status, len(k.Tasks))
	}
	e.waitStatus(id, conductor.WorkflowRunning)
}
