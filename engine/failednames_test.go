package engine_test

import (
	"reflect"
	"testing"
	"time"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// A workflow's failedReferenceTaskNames and failedTaskNames are
// Conductor's: every end (COMPLETED and TERMINATED too) adds each task
// FAILED or FAILED_WITH_TERMINAL_ERROR, an instance retried since among
// them, and not one TIMED_OUT (its terminate and completeWorkflow); a
// retry and a restart keep them, for the run to show and its end to add
// to, and a rerun and a parent run again because its child was, ended or
// still running, clear them (its rerun and updateAndPushParents). The two
// are sets apart, in the order first added.
func TestFailedTaskNames(t *testing.T) {
	const seq = `{"name":"f","tasks":[{"name":"a","taskReferenceName":"a"},{"name":"b","taskReferenceName":"b"}]}`
	const twice = `{"name":"f","tasks":[{"name":"a","taskReferenceName":"a1","permissive":true},{"name":"a","taskReferenceName":"a2"}]}`
	const parent = `{"name":"f","tasks":[{"name":"child","taskReferenceName":"child","type":"SUB_WORKFLOW",
	  "subWorkflowParam":{"name":"kid","version":1}}]}`
	const permissiveChild = `{"name":"f","tasks":[{"name":"a","taskReferenceName":"a"},{"name":"child","taskReferenceName":"child",
	  "type":"SUB_WORKFLOW","permissive":true,"subWorkflowParam":{"name":"kid","version":1}},{"name":"b","taskReferenceName":"b"}]}`
	const retriedOnce, once = `{"name":"a","retryCount":1,"retryDelaySeconds":0}`, `{"name":"a","retryCount":0}`
	const timesOut = `{"name":"a","retryCount":0,"timeoutSeconds":30,"responseTimeoutSeconds":30}`
	failA := func(h *harness) { h.report("a", conductor.TaskFailed, nil, "a broke") }
	retriedA := func(h *harness) { failA(h); h.complete("a", nil) }
	failB := func(h *harness) { h.report("b", conductor.TaskFailedWithTerminalError, nil, "b broke") }
	completeAB := func(h *harness) { h.complete("a", nil); h.complete("b", nil) }
	retry := func(h *harness) { h.decide(engine.Retry{}) }
	restart := func(h *harness) { h.decide(engine.Restart{}) }
	for _, c := range []struct {
		name, def, taskDef string
		run                []func(h *harness)
		status             string
		refs, names        []string
	}{
		{"failed, a task retried before", seq, retriedOnce, []func(*harness){retriedA, failB},
			conductor.WorkflowFailed, []string{"a", "b"}, []string{"a", "b"}},
		{"completed, a task retried before", seq, retriedOnce, []func(*harness){retriedA, func(h *harness) { h.complete("b", nil) }},
			conductor.WorkflowCompleted, []string{"a"}, []string{"a"}},
		{"terminated, a task retried before", seq, retriedOnce, []func(*harness){failA, func(h *harness) {
			h.decide(engine.Terminate{Reason: "stop"})
		}}, conductor.WorkflowTerminated, []string{"a"}, []string{"a"}},
		{"a task timed out", seq, timesOut, []func(*harness){func(h *harness) {
			h.take("a")
			h.advance(31 * time.Second)
			h.decide(engine.Tick{})
		}}, conductor.WorkflowTimedOut, []string{}, []string{}},
		{"two tasks of one definition", twice, once, []func(*harness){func(h *harness) {
			h.report("a1", conductor.TaskFailed, nil, "a1 broke")
			h.report("a2", conductor.TaskFailed, nil, "a2 broke")
		}}, conductor.WorkflowFailed, []string{"a1", "a2"}, []string{"a"}},
		{"running after a retry", seq, once, []func(*harness){failA, retry},
			conductor.WorkflowRunning, []string{"a"}, []string{"a"}},
		{"failed again after a retry", seq, once, []func(*harness){failA, retry, func(h *harness) { h.complete("a", nil); failB(h) }},
			conductor.WorkflowFailed, []string{"a", "b"}, []string{"a", "b"}},
		{"running after a restart", seq, once, []func(*harness){failA, restart},
			conductor.WorkflowRunning, []string{"a"}, []string{"a"}},
		{"completed after a restart", seq, once, []func(*harness){failA, restart, completeAB},
			conductor.WorkflowCompleted, []string{"a"}, []string{"a"}},
		{"running after a rerun", seq, once, []func(*harness){failA, func(h *harness) { h.decide(engine.Rerun{}) }},
			conductor.WorkflowRunning, []string{}, []string{}},
		{"a parent run again for its child", parent, once, []func(*harness){func(h *harness) {
			h.decide(engine.ChildFinished{ChildID: h.task("child").SubWorkflowID, Name: "kid", Version: 1,
				Status: conductor.WorkflowFailed, Reason: "kid failed"})
			h.wantFailedNames([]string{"child"}, []string{"child"})
			h.advance(time.Second)
			h.decide(engine.ChildReopened{ChildID: h.task("child").SubWorkflowID, ResetTime: h.now.UnixMilli()})
		}}, conductor.WorkflowRunning, []string{}, []string{}},
		{"a running parent run again for its child", permissiveChild, once, []func(*harness){failA, retry, func(h *harness) {
			h.complete("a", nil)
			h.decide(engine.ChildFinished{ChildID: h.task("child").SubWorkflowID, Name: "kid", Version: 1,
				Status: conductor.WorkflowFailed, Reason: "kid failed"})
			h.wantStatus(conductor.WorkflowRunning) // the permissive task's failure goes on to b
			h.wantFailedNames([]string{"a"}, []string{"a"})
			h.decide(engine.ChildReopened{ChildID: h.task("child").SubWorkflowID})
			if h.task("child").Status != conductor.TaskInProgress || h.w.FailedTaskID != "" {
				h.t.Errorf("child %s, failed task %q kept from before the retry; want IN_PROGRESS and none", h.task("child").Status, h.w.FailedTaskID)
			}
		}}, conductor.WorkflowRunning, []string{}, []string{}},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, c.def, nil, c.taskDef, `{"name":"b","retryCount":0}`)
			h.advance(time.Second)
			for _, step := range c.run {
				step(h)
			}
			h.wantStatus(c.status)
			h.wantFailedNames(c.refs, c.names)
		})
	}
}

// wantFailedNames checks the workflow's failedReferenceTaskNames and
// failedTaskNames as its JSON shows them.
func (h *harness) wantFailedNames(refs, names []string) {
	h.t.Helper()
	view := h.w.Conductor(false)
	if !reflect.DeepEqual(view.FailedReferenceTaskNames, refs) || !reflect.DeepEqual(view.FailedTaskNames, names) {
		h.t.Fatalf("failedReferenceTaskNames %q, failedTaskNames %q, want %q and %q; tasks %v",
			view.FailedReferenceTaskNames, view.FailedTaskNames, refs, names, h.refs())
	}
}
