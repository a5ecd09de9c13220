package engine_test

import (
	"strconv"
	"testing"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// Apply and the decider find a task by id through the state's index: after
// every event that adds, replaces or removes tasks (a task's retry, a
// DO_WHILE's iterations past keepLastN removed, the workflow's retry,
// rerun and restart), the index must find each task where the list holds
// it, whether it was brought up to date after each event or only after
// all of a decision's (a cut and a regrowth past the length it covered).
func TestTaskIndexFollowsEveryEvent(t *testing.T) {
	h := newHarness(t, `{"name":"idx","version":1,"tasks":[
	 {"name":"loop","taskReferenceName":"loop","type":"DO_WHILE","items":[1,2,3,4],"inputParameters":{"keepLastN":1},
	  "loopOver":[{"name":"a","taskReferenceName":"a"}]},
	 {"name":"t","taskReferenceName":"t"}]}`, nil, `{"name":"t","retryCount":1,"retryDelaySeconds":0}`)
	seen := map[string]bool{}
	decide := func(step string, trig engine.Trigger) {
		t.Helper()
		before := h.w
		d := h.decide(trig)
		w, lazy := engine.IndexedClone(before), engine.IndexedClone(before)
		for i, ev := range d.Events {
			var err error
			if lazy, err = engine.Apply(lazy, ev); err != nil {
				t.Fatalf("%s, event %d: %v", step, i, err)
			}
		}
		if err := engine.IndexAgrees(lazy); err != nil {
			t.Fatalf("%s, after its %d events: %v", step, len(d.Events), err)
		}
		for i, ev := range d.Events {
			var err error
			if w, err = engine.Apply(w, ev); err != nil {
				t.Fatalf("%s, event %d: %v", step, i, err)
			}
			if err := engine.IndexAgrees(w); err != nil {
				t.Fatalf("%s, after event %d (%s): %v", step, i, ev.EventType(), err)
			}
			switch e := ev.(type) {
			case *schemas.TasksRemoved:
				seen["removed"] = true
			case *schemas.TaskScheduled:
				if e.RetriedTaskID != "" {
					seen["task retry"] = true
				}
			case *schemas.WorkflowReset:
				seen[string(e.Kind)] = true
			}
		}
	}
	for it := 1; it <= 4; it++ {
		a := "a__" + strconv.Itoa(it)
		decide("take "+a, engine.Take{TaskID: h.task(a).ID, WorkerID: "w1"})
		decide("complete "+a, result(h, a, conductor.TaskCompleted))
	}
	decide("fail t", result(h, "t", conductor.TaskFailed))
	decide("fail t again", result(h, "t", conductor.TaskFailed))
	h.wantStatus(conductor.WorkflowFailed)
	decide("retry", engine.Retry{})
	decide("complete t", result(h, "t", conductor.TaskCompleted))
	h.wantStatus(conductor.WorkflowCompleted)
	decide("rerun", engine.Rerun{Request: conductor.RerunWorkflowRequest{ReRunFromTaskID: h.task("t").ID}})
	decide("complete t", result(h, "t", conductor.TaskCompleted))
	decide("restart", engine.Restart{})
	h.wantTask("a__1", conductor.TaskScheduled)
	for _, want := range []string{"removed", "task retry", string(schemas.ResetRetry), string(schemas.ResetRerun), string(schemas.ResetRestart)} {
		if !seen[want] {
			t.Errorf("no %s among the events folded", want)
		}
	}
}

func result(h *harness, ref, status string) engine.Result {
	return engine.Result{Result: conductor.TaskResult{TaskID: h.task(ref).ID, WorkflowInstanceID: h.w.ID, Status: status}}
}

// The executor's shard looks up the task of a take or a result on the
// state the decision before left (TaskByIDDeciding), which owns the index
// that decision built: it finds what a scan finds, on that state, on one
// whose index the next decision's Clone took over, and on the clone.
func TestTaskByIDDecidingFindsWhatAScanFinds(t *testing.T) {
	const n = 40 // past the scan's bound, with the fork and the JOIN
	h := newHarness(t, benchForkDef, map[string]any{"tasks": dynamicForkTasks(n)})
	agree := func(step string, w *engine.Workflow) {
		t.Helper()
		for _, task := range w.Tasks {
			if got := w.TaskByIDDeciding(task.ID); got != w.TaskByID(task.ID) {
				t.Fatalf("%s: task %s (%s) found as %v", step, task.ID, task.Ref, got)
			}
		}
		if got := w.TaskByIDDeciding("no-such-task"); got != nil {
			t.Fatalf("%s: an unknown id found %s", step, got.Ref)
		}
	}
	for i := range n {
		ref := "d" + strconv.Itoa(i)
		h.take(ref)
		if !engine.OwnsIndex(h.w) {
			t.Fatalf("after the take of %s the state owns no index", ref)
		}
		agree("after the take of "+ref, h.w)
		before := h.w
		h.complete(ref, nil)
		agree("the state before the result of "+ref, before)
		agree("after the result of "+ref, h.w)
	}
	h.wantStatus(conductor.WorkflowCompleted)
}
