package e2e_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/workers"
)

// retryIfRetriedByParent=false (Orkes) refuses to retry a sub-workflow
// whose parent has since moved on to a new child; by default, and while
// the parent still waits for it, the retry goes ahead. The parent, which
// ended by its new child, waits for the one retried.
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

	// The parent retried with a new child, which failed it again: the old
	// one is refused with the flag, and retried without it, in the new
	// one's place.
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
	if sub := taskByRef(e.waitStatus(id, conductor.WorkflowCompleted), "sub"); sub.SubWorkflowID != kid || sub.Status != conductor.TaskCompleted {
		t.Fatalf("the parent completed by task sub %s of child %s, want COMPLETED by %s", sub.Status, sub.SubWorkflowID, kid)
	}
}

// A SUB_WORKFLOW task its task definition's retryCount retried with a new
// child, whose old child an operator retries: while the parent runs, it
// waits for the new child and the old one runs on its own (Conductor
// reopens the old task beside the new one); once the parent has ended by
// the new child, the old one's retry makes it run again, failed names
// cleared, a new instance of the task waiting for the old child (where
// Conductor's parent ends again at once, by the new child's task).
func TestRetryOfAChildItsTaskRetried(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.must(http.StatusNoContent, "POST", "/api/metadata/taskdefs", `[{"name":"tr_sub","retryCount":1,"retryDelaySeconds":0}]`)
	e.register(`{"name":"tr_kid","tasks":[{"name":"h","taskReferenceName":"h","type":"HUMAN"}]}`,
		`{"name":"tr_mother","tasks":[{"name":"tr_sub","taskReferenceName":"sub","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"tr_kid"}}]}`)
	subs := func(wf *conductor.Workflow) []*conductor.Task { return instancesOf(wf, "sub") }
	id := e.start("tr_mother", nil)
	var old, kid string
	testutil.Eventually(t, 30*time.Second, 20*time.Millisecond, func() error {
		if s := subs(e.workflow(id)); len(s) == 0 || s[0].SubWorkflowID == "" {
			return errors.New("no child yet")
		}
		old = subs(e.workflow(id))[0].SubWorkflowID
		return nil
	})
	e.waitStatus(old, conductor.WorkflowRunning)
	e.must(http.StatusOK, "POST", "/api/tasks/"+old+"/h/FAILED", map[string]any{})
	e.waitStatus(old, conductor.WorkflowFailed)
	testutil.Eventually(t, 30*time.Second, 20*time.Millisecond, func() error {
		s := subs(e.workflow(id))
		if len(s) != 2 || s[1].SubWorkflowID == "" {
			return fmt.Errorf("the task's retry has no child yet: %d instances", len(s))
		}
		kid = s[1].SubWorkflowID
		return nil
	})
	e.waitStatus(kid, conductor.WorkflowRunning)

	// Running: the retry answers once the parent has taken the news.
	e.must(http.StatusNoContent, "POST", "/api/workflow/"+old+"/retry", nil)
	e.waitStatus(old, conductor.WorkflowRunning)
	if s := subs(e.waitStatus(id, conductor.WorkflowRunning)); len(s) != 2 || s[0].Status != conductor.TaskFailed ||
		s[1].Status != conductor.TaskInProgress || s[1].SubWorkflowID != kid {
		t.Fatalf("the running parent took the old child's news: %d instances of sub, the last %s waiting for %s, want 2, IN_PROGRESS for %s",
			len(s), s[len(s)-1].Status, s[len(s)-1].SubWorkflowID, kid)
	}
	e.must(http.StatusOK, "POST", "/api/tasks/"+old+"/h/FAILED", map[string]any{})
	e.waitStatus(old, conductor.WorkflowFailed)

	// Ended by the new child: the old one's retry takes its place.
	e.must(http.StatusOK, "POST", "/api/tasks/"+kid+"/h/FAILED", map[string]any{})
	if wf := e.waitStatus(id, conductor.WorkflowFailed); len(wf.FailedReferenceTaskNames) == 0 {
		t.Fatal("the failed parent names no failed task")
	}
	e.must(http.StatusNoContent, "POST", "/api/workflow/"+old+"/retry", nil)
	wf := e.waitStatus(id, conductor.WorkflowRunning)
	if s := subs(wf); len(s) != 3 || s[2].Status != conductor.TaskInProgress || s[2].SubWorkflowID != old || s[2].RetriedTaskID != s[1].TaskID {
		t.Fatalf("the parent run again with %d instances of sub, the last %s waiting for %s, want 3, IN_PROGRESS for %s retrying the second",
			len(s), s[len(s)-1].Status, s[len(s)-1].SubWorkflowID, old)
	}
	if len(wf.FailedReferenceTaskNames) != 0 || len(wf.FailedTaskNames) != 0 {
		t.Errorf("failed names kept: %v, %v", wf.FailedReferenceTaskNames, wf.FailedTaskNames)
	}
	e.must(http.StatusOK, "POST", "/api/tasks/"+old+"/h/COMPLETED", map[string]any{})
	if s := subs(e.waitStatus(id, conductor.WorkflowCompleted)); s[len(s)-1].SubWorkflowID != old || s[len(s)-1].Status != conductor.TaskCompleted {
		t.Fatalf("the parent completed by sub %s of %s, want COMPLETED by %s", s[len(s)-1].Status, s[len(s)-1].SubWorkflowID, old)
	}
	if st := e.workflow(kid).Status; st != conductor.WorkflowFailed {
		t.Errorf("the new child is %s, want FAILED as it ended", st)
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

// What a parent went on past stays ended however deep it is asked for:
// a retry, restart or rerun of a workflow is refused (409) when it, or an
// ancestor its reopening would run again, is the child of a SUB_WORKFLOW
// task its parent went on past (a jump passed over it, or its DO_WHILE
// gave up on its iteration), as that child's own is. The parent ignores
// its news, so the work would run for nothing. A grandchild of a jumped
// task is refused, and so is the jumped child's retry with
// resumeSubworkflowTasks, which retries the grandchild; the same shape
// whose top workflow an operator terminated is retried through, each
// workflow running again. retryIfRetriedByParent=false with
// resumeSubworkflowTasks looks at the parent of the workflow asked, not of
// the descendant it retries.
func TestRetriesOfWhatAParentWentOnPast(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.register(`{"name":"po_leaf","tasks":[{"name":"h","taskReferenceName":"h","type":"HUMAN"}]}`,
		`{"name":"po_mid","tasks":[{"name":"leaf","taskReferenceName":"leaf","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"po_leaf"}}]}`,
		`{"name":"po_top","tasks":[{"name":"mid","taskReferenceName":"mid","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"po_mid"}},
		  {"name":"after","taskReferenceName":"after","type":"HUMAN"}]}`)
	childOf := func(id, ref string) string {
		var kid string
		testutil.Eventually(t, 30*time.Second, 20*time.Millisecond, func() error {
			sub := taskByRef(e.workflow(id), ref)
			if sub == nil || sub.SubWorkflowID == "" {
				return fmt.Errorf("workflow %s has no child at %s yet", id, ref)
			}
			kid = sub.SubWorkflowID
			return nil
		})
		e.waitStatus(kid, conductor.WorkflowRunning)
		return kid
	}
	// line starts po_top and returns it, its child and its grandchild,
	// each running.
	line := func() (top, mid, leaf string) {
		top = e.start("po_top", nil)
		mid = childOf(top, "mid")
		return top, mid, childOf(mid, "leaf")
	}

	// Each on a line of its own, jumped past: one taken would reopen it.
	for _, c := range []struct {
		name string
		// grandchild: asked of the grandchild, else of the child.
		grandchild   bool
		path, ending string
		body         any
	}{
		{"the jumped child's retry", false, "/retry", "would not wait for a retry of it", nil},
		{"the jumped child's retry into its grandchild", false, "/retry?resumeSubworkflowTasks=true", "would not wait for a retry of it", nil},
		{"the grandchild's retry", true, "/retry", "run again by a retry of workflow %s below it", nil},
		{"the grandchild's restart", true, "/restart", "run again by a restart of workflow %s below it", nil},
		{"the grandchild's rerun", true, "/rerun", "run again by a rerun of workflow %s below it", map[string]any{}},
	} {
		top, mid, leaf := line()
		e.must(http.StatusOK, "POST", "/api/workflow/"+top+"/jump/after", nil)
		e.waitStatus(mid, conductor.WorkflowTerminated)
		e.waitStatus(leaf, conductor.WorkflowTerminated)
		asked := mid
		ending := c.ending
		if c.grandchild {
			asked, ending = leaf, fmt.Sprintf(c.ending, leaf)
		}
		status, got := e.refusal("POST", "/api/workflow/"+asked+c.path, c.body)
		if want := "workflow " + mid + " is the sub-workflow of task mid "; status != http.StatusConflict || !strings.Contains(got, want) ||
			!strings.Contains(got, "which a jump passed over (jumped to after)") || !strings.Contains(got, ending) ||
			!strings.HasSuffix(got, "rerun "+top+" from that task instead") {
			t.Errorf("%s: %d %q, want 409 naming the jumped task", c.name, status, got)
			continue
		}
		for _, id := range []string{mid, leaf} {
			if wf := e.workflow(id); wf.Status != conductor.WorkflowTerminated || len(wf.Tasks) != 1 {
				t.Errorf("%s: workflow %s is %s with %d tasks after the refusal, want TERMINATED with 1", c.name, id, wf.Status, len(wf.Tasks))
			}
		}
	}

	// An operator's terminate: each workflow waits for its child again.
	top, mid, leaf := line()
	e.must(http.StatusNoContent, "DELETE", "/api/workflow/"+top, nil)
	e.waitStatus(mid, conductor.WorkflowTerminated)
	e.waitStatus(leaf, conductor.WorkflowTerminated)
	e.must(http.StatusNoContent, "POST", "/api/workflow/"+leaf+"/retry", nil)
	for _, id := range []string{leaf, mid, top} {
		e.waitStatus(id, conductor.WorkflowRunning)
	}

	// retryIfRetriedByParent=false with resumeSubworkflowTasks is about
	// the workflow asked: its parent, retried with a new child, refuses
	// it, though the grandchild retried has a parent that waits for it.
	top, mid, leaf = line()
	e.must(http.StatusOK, "POST", "/api/tasks/"+leaf+"/h/FAILED", map[string]any{})
	e.waitStatus(top, conductor.WorkflowFailed)
	e.must(http.StatusNoContent, "POST", "/api/workflow/"+top+"/retry", nil)
	e.waitStatus(top, conductor.WorkflowRunning)
	status, got := e.refusal("POST", "/api/workflow/"+mid+"/retry?resumeSubworkflowTasks=true&retryIfRetriedByParent=false", nil)
	if want := "workflow " + mid + " is a sub-workflow its parent " + top + " no longer waits for"; status != http.StatusConflict || !strings.HasPrefix(got, want) {
		t.Errorf("retry into the grandchild of a child its parent moved on from: %d %q, want 409: %s", status, got, want)
	}
	for _, id := range []string{mid, leaf} {
		if wf := e.workflow(id); wf.Status != conductor.WorkflowFailed {
			t.Errorf("workflow %s is %s after the refusal, want FAILED", id, wf.Status)
		}
	}
}

// A DO_WHILE that timed out and was optional gave up on its iteration:
// the workflow went on past it. The child of that iteration's
// SUB_WORKFLOW task, terminated, is not retried, restarted or rerun
// (409): nothing waits for it.
func TestRetryOfAnAbandonedIterationsChild(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.must(http.StatusNoContent, "POST", "/api/metadata/taskdefs",
		`[{"name":"po_loop","timeoutSeconds":2,"timeoutPolicy":"RETRY","responseTimeoutSeconds":1}]`)
	e.register(`{"name":"po_iter","tasks":[{"name":"h","taskReferenceName":"h","type":"HUMAN"}]}`,
		`{"name":"po_loop_flow","tasks":[{"name":"po_loop","taskReferenceName":"loop","type":"DO_WHILE","optional":true,"loopCondition":"$.loop['iteration'] < 3",
		    "loopOver":[{"name":"sub","taskReferenceName":"lsub","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"po_iter"}}]},
		  {"name":"after","taskReferenceName":"after","type":"HUMAN"}]}`)
	id := e.start("po_loop_flow", nil)
	testutil.Eventually(t, 30*time.Second, 100*time.Millisecond, func() error {
		if taskByRef(e.workflow(id), "after") == nil {
			return errors.New("the loop has not timed out")
		}
		return nil
	})
	kid := taskByRef(e.workflow(id), "lsub__1").SubWorkflowID
	e.waitStatus(kid, conductor.WorkflowTerminated)
	for _, c := range []struct {
		op, path string
		body     any
	}{
		{"retry", "/retry", nil},
		{"restart", "/restart", nil},
		{"rerun", "/rerun", map[string]any{}},
	} {
		status, got := e.refusal("POST", "/api/workflow/"+kid+c.path, c.body)
		if want := "workflow " + kid + " is the sub-workflow of task lsub__1 "; status != http.StatusConflict || !strings.Contains(got, want) ||
			!strings.Contains(got, "which its DO_WHILE loop gave up on in iteration 1") ||
			!strings.Contains(got, "would not wait for a "+c.op+" of it; rerun "+id+" from that task instead") {
			t.Errorf("%s: %d %q, want 409 naming the iteration given up on", c.op, status, got)
		}
	}
	if wf := e.workflow(kid); wf.Status != conductor.WorkflowTerminated || len(wf.Tasks) != 1 {
		t.Errorf("the child is %s with %d tasks after the refusals, want TERMINATED with 1", wf.Status, len(wf.Tasks))
	}
	e.waitStatus(id, conductor.WorkflowRunning)
}

// refusal sends a request and returns its status and the message of the
// error it answers ("" if none): unlike fails, a request taken does not end
// the test, so that each of a table's rows reports.
func (e *env) refusal(method, path string, body any) (int, string) {
	e.t.Helper()
	status, out := e.do(method, path, body)
	var er conductor.ErrorResponse
	_ = json.Unmarshal([]byte(out), &er)
	return status, er.Message
}

// A grandchild's retry clears its grandparent's failed task names, as
// Conductor's updateAndPushParents clears every ancestor's: here the
// grandparent kept those of its end before its own retry, its child
// running on past the permissive task the grandchild failed.
func TestGrandchildRetryClearsGrandparentsFailedNames(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.register(`{"name":"gn_leaf","tasks":[{"name":"gn_k","taskReferenceName":"k","type":"HUMAN"}]}`,
		`{"name":"gn_mid","tasks":[{"name":"gn_leaf","taskReferenceName":"sub","type":"SUB_WORKFLOW","permissive":true,"subWorkflowParam":{"name":"gn_leaf"}},
		  {"name":"gn_h","taskReferenceName":"h","type":"HUMAN"}]}`,
		`{"name":"gn_top","tasks":[{"name":"gn_x","taskReferenceName":"x","type":"HUMAN"},
		  {"name":"gn_mid","taskReferenceName":"sub","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"gn_mid"}}]}`)
	id := e.start("gn_top", nil)
	e.waitStatus(id, conductor.WorkflowRunning)
	e.must(http.StatusOK, "POST", "/api/tasks/"+id+"/x/FAILED", map[string]any{})
	e.waitStatus(id, conductor.WorkflowFailed)
	e.must(http.StatusNoContent, "POST", "/api/workflow/"+id+"/retry", nil)
	e.waitStatus(id, conductor.WorkflowRunning)
	e.must(http.StatusOK, "POST", "/api/tasks/"+id+"/x/COMPLETED", map[string]any{})
	mid := e.childOf(id)
	leaf := e.childOf(mid)
	e.waitStatus(leaf, conductor.WorkflowRunning)
	e.must(http.StatusOK, "POST", "/api/tasks/"+leaf+"/k/FAILED", map[string]any{})
	testutil.Eventually(t, 30*time.Second, 20*time.Millisecond, func() error {
		if taskByRef(e.workflow(mid), "h") == nil {
			return errors.New("mid has not gone on past its failed task yet")
		}
		return nil
	})
	if wf := e.waitStatus(id, conductor.WorkflowRunning); !slices.Equal(wf.FailedReferenceTaskNames, []string{"x"}) {
		t.Fatalf("the retried grandparent names failed tasks %v, want [x] kept by its retry", wf.FailedReferenceTaskNames)
	}

	e.must(http.StatusNoContent, "POST", "/api/workflow/"+leaf+"/retry", nil)
	e.waitStatus(leaf, conductor.WorkflowRunning)
	testutil.Eventually(t, 30*time.Second, 20*time.Millisecond, func() error {
		if wf := e.workflow(id); len(wf.FailedReferenceTaskNames) != 0 || len(wf.FailedTaskNames) != 0 {
			return fmt.Errorf("the grandparent keeps failed task names %v and %v", wf.FailedReferenceTaskNames, wf.FailedTaskNames)
		}
		return nil
	})
	if wf := e.workflow(id); wf.Status != conductor.WorkflowRunning || taskByRef(wf, "sub").Status != conductor.TaskInProgress {
		t.Fatalf("the grandparent is %s, its task sub %s: want it RUNNING, waiting for its child as before", wf.Status, taskByRef(wf, "sub").Status)
	}
	e.must(http.StatusOK, "POST", "/api/tasks/"+leaf+"/k/COMPLETED", map[string]any{})
	e.waitStatus(leaf, conductor.WorkflowCompleted)
	e.must(http.StatusOK, "POST", "/api/tasks/"+mid+"/h/COMPLETED", map[string]any{})
	e.waitStatus(id, conductor.WorkflowCompleted)
}

// instancesOf returns wf's instances of task ref, oldest first.
func instancesOf(wf *conductor.Workflow, ref string) []*conductor.Task {
	var out []*conductor.Task
	for _, t := range wf.Tasks {
		if t.ReferenceTaskName == ref {
			out = append(out, t)
		}
	}
	return out
}

// A rerun of a parent from a task of the child of a SUB_WORKFLOW task
// instance its retryCount retried since: the API finds the task there, as
// Conductor's rerun looks in the child of every instance, where it
// answered 404; the child reruns, and the parent from that instance,
// dropping the newer one, so that one instance waits for the child rerun.
func TestRerunFromTheChildOfARetriedInstance(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.must(http.StatusNoContent, "POST", "/api/metadata/taskdefs", `[{"name":"rri_sub","retryCount":1,"retryDelaySeconds":0}]`)
	e.register(`{"name":"rri_kid","tasks":[{"name":"rri_h","taskReferenceName":"h","type":"HUMAN"}]}`,
		`{"name":"rri_parent","tasks":[{"name":"rri_sub","taskReferenceName":"sub","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"rri_kid"}}]}`)
	id := e.start("rri_parent", nil)
	old := e.childOf(id)
	e.waitStatus(old, conductor.WorkflowRunning)
	e.must(http.StatusOK, "POST", "/api/tasks/"+old+"/h/FAILED", map[string]any{})
	var kid string
	testutil.Eventually(t, 30*time.Second, 20*time.Millisecond, func() error {
		s := instancesOf(e.workflow(id), "sub")
		if len(s) != 2 || s[1].SubWorkflowID == "" {
			return fmt.Errorf("the task's retry has no child yet: %d instances", len(s))
		}
		kid = s[1].SubWorkflowID
		return nil
	})
	e.waitStatus(kid, conductor.WorkflowRunning)
	e.must(http.StatusOK, "POST", "/api/tasks/"+kid+"/h/FAILED", map[string]any{})
	e.waitStatus(id, conductor.WorkflowFailed)

	h := taskByRef(e.waitStatus(old, conductor.WorkflowFailed), "h").TaskID
	e.must(http.StatusOK, "POST", "/api/workflow/"+id+"/rerun", map[string]any{"reRunFromTaskId": h})
	e.waitStatus(old, conductor.WorkflowRunning)
	if s := instancesOf(e.waitStatus(id, conductor.WorkflowRunning), "sub"); len(s) != 1 || s[0].Status != conductor.TaskInProgress || s[0].SubWorkflowID != old {
		t.Fatalf("the parent rerun with %d instances of sub, the last %s waiting for %s, want 1, IN_PROGRESS for %s",
			len(s), s[len(s)-1].Status, s[len(s)-1].SubWorkflowID, old)
	}
	e.must(http.StatusOK, "POST", "/api/tasks/"+old+"/h/COMPLETED", map[string]any{})
	if sub := taskByRef(e.waitStatus(id, conductor.WorkflowCompleted), "sub"); sub.SubWorkflowID != old || sub.Status != conductor.TaskCompleted {
		t.Fatalf("the parent completed by task sub %s of child %s, want COMPLETED by %s", sub.Status, sub.SubWorkflowID, old)
	}
}
