package engine_test

import (
	"reflect"
	"testing"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// A skipped task is created at once with the given data, and the workflow
// passes over it only when it gets there.
func TestSkipTask(t *testing.T) {
	h := newHarness(t, threeSimple, nil)
	h.decide(engine.SkipTask{Ref: "b_ref", Input: map[string]any{"i": int64(1)}, Output: map[string]any{"o": "x"}})
	h.wantRefs("a_ref", "b_ref")
	b := h.wantTask("b_ref", conductor.TaskSkipped)
	if !reflect.DeepEqual(b.Output, map[string]any{"o": "x"}) || !reflect.DeepEqual(b.Input, map[string]any{"i": int64(1)}) {
		t.Fatalf("skipped task data %v %v", b.Input, b.Output)
	}
	// c_ref is not scheduled before a_ref is done.
	h.decide(engine.Tick{})
	h.wantRefs("a_ref", "b_ref")
	h.complete("a_ref", map[string]any{"items": []any{int64(1), int64(2)}})
	h.wantRefs("a_ref", "b_ref", "c_ref")
	h.complete("c_ref", map[string]any{"sum": int64(3)})
	h.wantStatus(conductor.WorkflowCompleted)

	for _, tc := range []struct {
		ref  string
		kind error
	}{{"a_ref", fault.ErrConflict}, {"nope", fault.ErrInvalid}} {
		h := newHarness(t, threeSimple, nil)
		_, err := h.try(engine.SkipTask{Ref: tc.ref})
		wantErr(t, err, tc.kind)
	}
	_, err := h.try(engine.SkipTask{Ref: "c_ref"})
	wantErr(t, err, fault.ErrConflict) // completed workflow
}

// Skipping the last task of a fork branch lets the join complete once the
// rest of the branch is done.
func TestSkipInForkAndChain(t *testing.T) {
	h := newHarness(t, forkJoin, nil)
	h.decide(engine.SkipTask{Ref: "z"})
	h.decide(engine.SkipTask{Ref: "a2"})
	h.complete("b", map[string]any{"v": int64(1)})
	h.wantTask("join", conductor.TaskInProgress)
	h.complete("a", nil)
	h.wantTask("join", conductor.TaskCompleted)
	h.wantStatus(conductor.WorkflowCompleted)
}

func TestRemove(t *testing.T) {
	h := newHarness(t, threeSimple, nil)
	_, err := h.try(engine.Remove{Archive: true})
	wantErr(t, err, fault.ErrInvalid)

	h.decide(engine.Remove{Archive: true, Terminate: true, Reason: "cleanup"})
	if !h.w.Removed || !h.w.Archived || h.w.Status != conductor.WorkflowTerminated || h.w.Reason != "cleanup" {
		t.Fatalf("removed %v archived %v status %s reason %q", h.w.Removed, h.w.Archived, h.w.Status, h.w.Reason)
	}
	for _, trig := range []engine.Trigger{engine.Tick{}, engine.Reconcile{}, engine.Restart{}, engine.Remove{}} {
		_, err := h.try(trig)
		wantErr(t, err, fault.ErrNotFound)
	}

	running := newHarness(t, threeSimple, nil)
	d := running.decide(engine.Remove{})
	if !running.w.Removed || running.w.Archived || running.w.Status != conductor.WorkflowRunning || len(d.Effects) != 0 {
		t.Fatalf("hard remove of a running workflow: %+v effects %v", running.w, d.Effects)
	}
}

func TestResetCallbacks(t *testing.T) {
	h := newHarness(t, threeSimple, nil)
	h.take("a_ref")
	h.decide(engine.Result{Result: conductor.TaskResult{TaskID: h.task("a_ref").ID, Status: conductor.TaskInProgress, CallbackAfterSeconds: 60}})
	if a := h.task("a_ref"); a.AvailableAt <= h.now.UnixMilli() {
		t.Fatal("no callback delay")
	}
	d := h.decide(engine.ResetCallbacks{})
	if a := h.task("a_ref"); a.AvailableAt != h.now.UnixMilli() || a.CallbackAfterSeconds != 0 {
		t.Fatalf("after reset: available %d callback %d", a.AvailableAt, a.CallbackAfterSeconds)
	}
	if len(effectsOf[engine.Dispatch](d)) != 1 {
		t.Fatalf("effects %v", d.Effects)
	}
}

// A skipped SWITCH chose no case: the task after it runs next, not its
// default case (Conductor continues after a skipped task).
func TestSkipSwitch(t *testing.T) {
	h := newHarness(t, `{"name":"s","tasks":[{"name":"t1","taskReferenceName":"t1"},
	  {"name":"sw","taskReferenceName":"sw","type":"SWITCH","evaluatorType":"value-param","expression":"k","inputParameters":{"k":"a"},
	   "decisionCases":{"a":[{"name":"ca","taskReferenceName":"ca"}]},"defaultCase":[{"name":"dflt","taskReferenceName":"dflt"}]},
	  {"name":"t3","taskReferenceName":"t3"}]}`, nil)
	h.decide(engine.SkipTask{Ref: "sw"})
	h.complete("t1", nil)
	h.wantRefs("t1", "sw", "t3")
	h.complete("t3", nil)
	h.wantStatus(conductor.WorkflowCompleted)
}
