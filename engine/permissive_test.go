package engine_test

import (
	"reflect"
	"testing"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// A permissive task (Conductor's WorkflowTask.permissive) that fails for
// good does not end its workflow: the task stays as it ended, what follows
// it runs, a JOIN that joins it waits for all it joins and then fails,
// and the workflow, once nothing is left to run, fails with the task's
// reason. An optional task that is also permissive is optional.
func TestPermissiveTaskFailure(t *testing.T) {
	seq := `{"name":"p","tasks":[
	 {"name":"a","taskReferenceName":"a","permissive":true},
	 {"name":"b","taskReferenceName":"b"}]}`
	t.Run("sequence", func(t *testing.T) {
		for _, status := range []string{conductor.TaskFailed, conductor.TaskFailedWithTerminalError} {
			t.Run(status, func(t *testing.T) {
				h := newHarness(t, seq, nil, `{"name":"a","retryCount":0}`)
				h.report("a", status, map[string]any{"partial": true}, "boom")
				h.wantStatus(conductor.WorkflowRunning)
				h.wantTask("a", status)
				h.wantTask("b", conductor.TaskScheduled)
				h.complete("b", nil)
				h.wantStatus(conductor.WorkflowFailed)
				if h.w.Reason != "boom" || !reflect.DeepEqual(h.w.FailedTaskRefs, []string{"a"}) {
					t.Fatalf("reason %q, failed refs %v", h.w.Reason, h.w.FailedTaskRefs)
				}
			})
		}
	})
	t.Run("retried first", func(t *testing.T) {
		h := newHarness(t, seq, nil, `{"name":"a","retryCount":1,"retryDelaySeconds":0}`)
		h.report("a", conductor.TaskFailed, nil, "first")
		h.wantTask("a", conductor.TaskScheduled) // the retry
		h.wantRefs("a", "a")
		h.report("a", conductor.TaskFailed, nil, "second")
		h.wantTask("b", conductor.TaskScheduled)
		h.complete("b", nil)
		h.wantStatus(conductor.WorkflowFailed)
		if h.w.Reason != "second" {
			t.Fatalf("reason %q, want the last attempt's", h.w.Reason)
		}
	})
	t.Run("workflow retried", func(t *testing.T) {
		h := newHarness(t, seq, nil, `{"name":"a","retryCount":0}`)
		h.report("a", conductor.TaskFailed, nil, "boom")
		h.complete("b", nil)
		h.wantStatus(conductor.WorkflowFailed)
		h.decide(engine.Retry{})
		h.wantTask("a", conductor.TaskScheduled)
		h.complete("a", nil)
		h.wantStatus(conductor.WorkflowCompleted)
		h.wantRefs("a", "b", "a")
	})
	// The task after a permissive one was skipped before it ended: the
	// skip counts once the permissive task ends, failed, as once it
	// succeeds (FuzzLifecycle found the JOIN waiting for it for good).
	t.Run("failed before a skipped task", func(t *testing.T) {
		h := newHarness(t, `{"name":"p","tasks":[
		 {"name":"fork","taskReferenceName":"fork","type":"FORK_JOIN","forkTasks":[
		   [{"name":"a","taskReferenceName":"a","permissive":true},{"name":"w","taskReferenceName":"w","type":"WAIT"}],
		   [{"name":"c","taskReferenceName":"c"}]]},
		 {"name":"join","taskReferenceName":"join","type":"JOIN","joinOn":["w","c"]}]}`, nil, `{"name":"a","retryCount":0}`)
		h.decide(engine.SkipTask{Ref: "w"})
		h.complete("c", nil)
		h.report("a", conductor.TaskFailedWithTerminalError, nil, "boom")
		h.wantTask("w", conductor.TaskSkipped)
		h.wantStatus(conductor.WorkflowFailed)
		if h.w.Reason != "boom" {
			t.Fatalf("reason %q, want the permissive task's", h.w.Reason)
		}
	})
	t.Run("failed while paused", func(t *testing.T) {
		h := newHarness(t, seq, nil, `{"name":"a","retryCount":0}`)
		h.decide(engine.Pause{})
		h.report("a", conductor.TaskFailed, nil, "boom")
		h.wantRefs("a")
		h.decide(engine.Resume{})
		h.wantStatus(conductor.WorkflowRunning)
		h.wantTask("b", conductor.TaskScheduled)
		h.complete("b", nil)
		h.wantStatus(conductor.WorkflowFailed)
	})
	t.Run("inside a loop", func(t *testing.T) {
		// A loop's iteration ends with its last task's success: the
		// failure ends the workflow, as Conductor's DO_WHILE fails.
		def := `{"name":"pl","tasks":[{"name":"loop","taskReferenceName":"loop","type":"DO_WHILE","loopCondition":"false",
		 "loopOver":[{"name":"a","taskReferenceName":"a","permissive":true},{"name":"b","taskReferenceName":"b"}]}]}`
		h := newHarness(t, def, nil, `{"name":"a","retryCount":0}`)
		h.report("a__1", conductor.TaskFailed, nil, "boom")
		h.wantStatus(conductor.WorkflowFailed)
	})
	t.Run("optional wins", func(t *testing.T) {
		def := `{"name":"p","tasks":[
		 {"name":"a","taskReferenceName":"a","permissive":true,"optional":true},
		 {"name":"b","taskReferenceName":"b"}]}`
		h := newHarness(t, def, nil, `{"name":"a","retryCount":0}`)
		h.report("a", conductor.TaskFailed, nil, "boom")
		h.wantTask("a", conductor.TaskCompletedWithErrors)
		h.complete("b", nil)
		h.wantStatus(conductor.WorkflowCompleted)
	})
	t.Run("fork", func(t *testing.T) {
		def := `{"name":"pf","tasks":[
		 {"name":"fork","taskReferenceName":"fork","type":"FORK_JOIN","forkTasks":[
		   [{"name":"a","taskReferenceName":"a","permissive":true},{"name":"a2","taskReferenceName":"a2"}],
		   [{"name":"b","taskReferenceName":"b"}]]},
		 {"name":"join","taskReferenceName":"join","type":"JOIN","joinOn":["a","b"]},
		 {"name":"z","taskReferenceName":"z"}]}`
		h := newHarness(t, def, nil, `{"name":"a","retryCount":0}`)
		h.report("a", conductor.TaskFailed, nil, "boom")
		h.wantStatus(conductor.WorkflowRunning)
		h.wantTask("a2", conductor.TaskScheduled) // its branch goes on
		h.wantTask("b", conductor.TaskScheduled)  // the other is not canceled
		h.wantTask("join", conductor.TaskInProgress)
		h.complete("a2", nil)
		h.wantTask("join", conductor.TaskInProgress) // b still runs
		h.complete("b", nil)
		j := h.wantTask("join", conductor.TaskFailed)
		if j.Reason != "boom" {
			t.Fatalf("join reason %q", j.Reason)
		}
		h.wantStatus(conductor.WorkflowFailed)
		if h.w.Reason != "boom" {
			t.Fatalf("workflow reason %q", h.w.Reason)
		}
	})
	t.Run("dynamic fork", func(t *testing.T) {
		def := `{"name":"pd","tasks":[
		 {"name":"fork","taskReferenceName":"fork","type":"FORK_JOIN_DYNAMIC","dynamicForkTasksParam":"tasks",
		  "inputParameters":{"tasks":[{"name":"a","taskReferenceName":"a1","permissive":true},{"name":"a","taskReferenceName":"a2"}]}},
		 {"name":"join","taskReferenceName":"join","type":"JOIN"},
		 {"name":"z","taskReferenceName":"z"}]}`
		h := newHarness(t, def, nil, `{"name":"a","retryCount":0}`)
		h.report("a1", conductor.TaskFailed, nil, "boom")
		h.wantTask("a2", conductor.TaskScheduled)
		h.wantTask("join", conductor.TaskInProgress)
		h.complete("a2", nil)
		h.wantTask("join", conductor.TaskFailed)
		h.wantStatus(conductor.WorkflowFailed)
	})
}
