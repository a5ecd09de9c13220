package engine_test

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/schemas/conductor"
)

func TestPauseResume(t *testing.T) {
	h := newHarness(t, threeSimple, nil)
	h.decide(engine.Pause{})
	h.wantStatus(conductor.WorkflowPaused)
	if d := h.decide(engine.Pause{}); len(d.Events) != 0 {
		t.Fatal("pausing a paused workflow changed it")
	}
	// A running task still completes, but nothing new is scheduled.
	h.complete("a_ref", nil)
	h.wantRefs("a_ref")
	h.decide(engine.Resume{})
	h.wantStatus(conductor.WorkflowRunning)
	h.wantTask("b_ref", conductor.TaskScheduled)
	_, err := h.try(engine.Resume{})
	wantErr(t, err, fault.ErrConflict)

	// A failure while paused is acted on at resume, as Conductor's decider
	// does nothing for a paused workflow: no retry is scheduled (and handed
	// out) before, and a workflow out of retries fails only then.
	for _, tt := range []struct {
		retries int
		want    string
	}{{1, conductor.WorkflowRunning}, {0, conductor.WorkflowFailed}} {
		h := newHarness(t, threeSimple, nil, fmt.Sprintf(`{"name":"a","retryCount":%d,"retryDelaySeconds":0}`, tt.retries))
		h.decide(engine.Pause{})
		d := h.report("a_ref", conductor.TaskFailed, nil, "broke")
		if len(effectsOf[engine.Dispatch](d)) != 0 || len(h.w.Tasks) != 1 {
			t.Fatalf("%d retries: a failure while paused scheduled %v", tt.retries, h.refs())
		}
		h.wantStatus(conductor.WorkflowPaused)
		d = h.decide(engine.Resume{})
		h.wantStatus(tt.want)
		if tt.retries > 0 {
			if h.wantTask("a_ref", conductor.TaskScheduled).RetryCount != 1 || len(effectsOf[engine.Dispatch](d)) != 1 {
				t.Fatalf("after resume: %v, effects %v", h.refs(), d.Effects)
			}
		}
	}

	// Only failures since the pause: a task a terminate canceled, kept by a
	// rerun from a later task, is not one.
	h = newHarness(t, `{"name":"fj","tasks":[{"name":"fork","taskReferenceName":"fork","type":"FORK_JOIN","forkTasks":[
	  [{"name":"b1","taskReferenceName":"b1"}],[{"name":"c1","taskReferenceName":"c1"},{"name":"c2","taskReferenceName":"c2"}]]},
	  {"name":"join","taskReferenceName":"join","type":"JOIN","joinOn":["b1","c2"]}]}`, nil)
	h.complete("c1", nil)
	h.decide(engine.Terminate{})
	h.wantTask("b1", conductor.TaskCanceled)
	h.decide(engine.Rerun{Request: conductor.RerunWorkflowRequest{ReRunFromTaskID: h.task("c2").ID}})
	h.advance(time.Second)
	h.decide(engine.Pause{})
	h.advance(time.Second)
	h.decide(engine.Resume{})
	h.wantStatus(conductor.WorkflowRunning)

	// A failure held in a pause belongs to that run: a rerun that keeps the
	// task does not act on it at a later resume.
	h = newHarness(t, `{"name":"fj","tasks":[{"name":"fork","taskReferenceName":"fork","type":"FORK_JOIN","forkTasks":[
	  [{"name":"b1","taskReferenceName":"b1"}],[{"name":"c1","taskReferenceName":"c1"},{"name":"c2","taskReferenceName":"c2"}]]},
	  {"name":"join","taskReferenceName":"join","type":"JOIN","joinOn":["b1","c2"]}]}`, nil)
	h.complete("c1", nil)
	h.decide(engine.Pause{})
	h.decide(engine.Terminate{})
	h.decide(engine.Rerun{Request: conductor.RerunWorkflowRequest{ReRunFromTaskID: h.task("c2").ID}})
	h.decide(engine.Pause{})
	h.decide(engine.Resume{})
	h.wantStatus(conductor.WorkflowRunning)

	// The log's order says a failure came while paused, not the clocks: an
	// engine whose clock is behind the pauser's records it all the same.
	h = newHarness(t, threeSimple, nil, `{"name":"a","retryCount":0}`)
	h.advance(time.Minute)
	h.decide(engine.Pause{})
	h.advance(-time.Second)
	h.report("a_ref", conductor.TaskFailed, nil, "broke")
	h.decide(engine.Resume{})
	h.wantStatus(conductor.WorkflowFailed)
}

func TestTerminate(t *testing.T) {
	h := newHarness(t, forkJoin, nil)
	h.complete("a", nil)
	d := h.decide(engine.Terminate{Reason: "operator"})
	h.wantStatus(conductor.WorkflowTerminated)
	if h.w.Reason != "operator" {
		t.Fatalf("reason %q", h.w.Reason)
	}
	for _, ref := range []string{"a2", "b", "join"} {
		h.wantTask(ref, conductor.TaskCanceled)
	}
	h.wantTask("a", conductor.TaskCompleted)
	if len(d.Events) == 0 {
		t.Fatal("no events")
	}
	if d := h.decide(engine.Terminate{Reason: "again"}); len(d.Events) != 0 {
		t.Fatal("terminating a terminated workflow changed it")
	}
	for _, op := range []engine.Trigger{engine.Pause{}, engine.Resume{}} {
		if _, err := h.try(op); !errorsIs(err, fault.ErrConflict) {
			t.Errorf("%T on TERMINATED: %v", op, err)
		}
	}

	done := newHarness(t, `{"name":"one","tasks":[{"name":"x","taskReferenceName":"x"}]}`, nil)
	done.complete("x", nil)
	_, err := done.try(engine.Terminate{})
	wantErr(t, err, fault.ErrConflict)

	// Only COMPLETED refuses: a FAILED workflow becomes TERMINATED, and
	// the failure workflow it started is the one a repeated start finds.
	failed := newHarness(t, `{"name":"one","failureWorkflow":"cleanup","tasks":[{"name":"x","taskReferenceName":"x"}]}`, nil,
		`{"name":"x","retryCount":0}`)
	failed.report("x", conductor.TaskFailed, nil, "down")
	failed.wantStatus(conductor.WorkflowFailed)
	first := effectsOf[engine.StartWorkflow](failed.last)
	d = failed.decide(engine.Terminate{Reason: "https://other.example/", By: "app:other"})
	failed.wantStatus(conductor.WorkflowTerminated)
	// It keeps the reason it failed with: a new one would reach its
	// failure workflow, whose start may still be on its way, as data of
	// the terminator's (who does not join an ended workflow).
	if failed.w.Reason != "down" || len(failed.w.AlsoRunsAs) != 0 {
		t.Fatalf("reason %q, also runs as %v", failed.w.Reason, failed.w.AlsoRunsAs)
	}
	again := effectsOf[engine.StartWorkflow](d)
	if len(first) != 1 || len(again) != 1 || again[0].WorkflowID != first[0].WorkflowID || again[0].Input["reason"] != "down" {
		t.Fatalf("failure workflow starts: %+v then %+v", first, again)
	}

	// A terminate starts the failure workflow only when asked to
	// (triggerFailureWorkflow, false by default as in Conductor and Orkes);
	// what it decided holds for recovery, which performs the end again.
	for _, trigger := range []bool{false, true} {
		h := newHarness(t, `{"name":"one","failureWorkflow":"cleanup","tasks":[{"name":"x","taskReferenceName":"x"}]}`, nil)
		d := h.decide(engine.Terminate{Reason: "operator", TriggerFailureWorkflow: trigger})
		recovered := 0
		for _, eff := range engine.Effects(h.w, h.now.UnixMilli()) {
			if _, ok := eff.(engine.StartWorkflow); ok {
				recovered++
			}
		}
		if started := len(effectsOf[engine.StartWorkflow](d)); (started == 1) != trigger || recovered != started {
			t.Fatalf("triggerFailureWorkflow %v: %d failure workflow starts, %d on recovery", trigger, started, recovered)
		}
	}
}

func TestLifecyclePreconditions(t *testing.T) {
	h := newHarness(t, threeSimple, nil)
	for _, op := range []engine.Trigger{engine.Restart{}, engine.Retry{}, engine.Rerun{}} {
		if _, err := h.try(op); !errorsIs(err, fault.ErrConflict) {
			t.Errorf("%T on RUNNING: err = %v, want conflict", op, err)
		}
	}
	noRestart := newHarness(t, `{"name":"nr","restartable":false,"tasks":[{"name":"x","taskReferenceName":"x"}]}`, nil)
	noRestart.complete("x", nil)
	_, err := noRestart.try(engine.Restart{})
	wantErr(t, err, fault.ErrNotFound)
	// useLatestDefinitions: the definition the restart would run decides.
	noRestart.decide(engine.Restart{Def: parseDef(t, `{"name":"nr","version":2,"tasks":[{"name":"x","taskReferenceName":"x"}]}`),
		DecidedFor: noRestart.w.Principals()})
	noRestart.wantStatus(conductor.WorkflowRunning)
	noRestart.complete("x", nil)
	_, err = noRestart.try(engine.Restart{Def: parseDef(t, `{"name":"nr","version":3,"restartable":false,"tasks":[{"name":"x","taskReferenceName":"x"}]}`),
		DecidedFor: noRestart.w.Principals()})
	wantErr(t, err, fault.ErrNotFound)
	// As Conductor's: restartable false holds back a COMPLETED run only.
	failed := newHarness(t, `{"name":"nr","restartable":false,"tasks":[{"name":"x","taskReferenceName":"x","retryCount":0}]}`, nil)
	failed.report("x", conductor.TaskFailed, nil, "broken")
	failed.wantStatus(conductor.WorkflowFailed)
	failed.decide(engine.Restart{})
	failed.wantStatus(conductor.WorkflowRunning)

	completed := newHarness(t, `{"name":"one","tasks":[{"name":"x","taskReferenceName":"x"}]}`, nil)
	completed.complete("x", nil)
	_, err = completed.try(engine.Retry{})
	wantErr(t, err, fault.ErrConflict)
}

// A restart starts the run's variables again from its definition's;
// Conductor's restart keeps those the previous run set (README says so).
func TestRestartStartsVariablesAgain(t *testing.T) {
	h := newHarness(t, `{"name":"v","variables":{"n":0,"k":"kept"},"tasks":[{"name":"x","taskReferenceName":"x"},
	 {"name":"set","taskReferenceName":"set","type":"SET_VARIABLE","inputParameters":{"n":1,"extra":true}}]}`, nil)
	h.complete("x", nil)
	h.wantStatus(conductor.WorkflowCompleted)
	if want := map[string]any{"n": int64(1), "k": "kept", "extra": true}; !reflect.DeepEqual(h.w.Variables, want) {
		t.Fatalf("variables %v, want %v", h.w.Variables, want)
	}
	h.decide(engine.Restart{})
	h.wantStatus(conductor.WorkflowRunning)
	if want := map[string]any{"n": int64(0), "k": "kept"}; !reflect.DeepEqual(h.w.Variables, want) {
		t.Fatalf("variables after restart %v, want %v", h.w.Variables, want)
	}
}

func TestRestart(t *testing.T) {
	h := newHarness(t, threeSimple, map[string]any{"n": int64(1)}, `{"name":"b","retryCount":0}`)
	h.complete("a_ref", nil)
	h.report("b_ref", conductor.TaskFailed, nil, "broken")
	h.wantStatus(conductor.WorkflowFailed)
	oldIDs := []string{h.task("a_ref").ID, h.task("b_ref").ID}
	h.decide(engine.Restart{})
	h.wantStatus(conductor.WorkflowRunning)
	h.wantRefs("a_ref")
	a := h.wantTask("a_ref", conductor.TaskScheduled)
	for _, old := range oldIDs {
		if a.ID == old {
			t.Fatal("restart reused a task id")
		}
	}
	if a.Input["n"] != int64(1) || h.w.Reason != "" || len(h.w.Output) != 0 {
		t.Fatalf("restart state: input %v reason %q output %v", a.Input, h.w.Reason, h.w.Output)
	}
	// With the latest definition.
	h.decide(engine.Terminate{})
	latest := parseDef(t, `{"name":"three","version":2,"tasks":[{"name":"z","taskReferenceName":"z"}]}`)
	h.decide(engine.Restart{Def: latest, DecidedFor: h.w.Principals()})
	h.wantRefs("z")
	if h.w.Version != 2 {
		t.Fatalf("version %d after restart with latest definition", h.w.Version)
	}
}

func TestRetryWorkflow(t *testing.T) {
	h := newHarness(t, forkJoin, nil, `{"name":"b","retryCount":0}`)
	h.complete("a", nil)
	h.complete("a2", nil)
	h.report("b", conductor.TaskFailed, nil, "down")
	h.wantStatus(conductor.WorkflowFailed)
	failed := h.task("b")
	h.decide(engine.Retry{})
	h.wantStatus(conductor.WorkflowRunning)
	if h.w.LastRetriedTime == 0 {
		t.Fatal("lastRetriedTime not set")
	}
	b := h.wantTask("b", conductor.TaskScheduled)
	if b.ID == failed.ID || b.RetryCount != 1 || b.RetriedTaskID != failed.ID || !h.w.TaskByID(failed.ID).Retried {
		t.Fatalf("retry copy %+v", b)
	}
	h.wantTask("join", conductor.TaskInProgress) // the canceled JOIN waits again
	h.wantTask("a2", conductor.TaskCompleted)    // completed work is kept
	h.complete("b", nil)
	h.complete("z", nil)
	h.wantStatus(conductor.WorkflowCompleted)
}

// A workflow's retry hands out the tasks it runs again at once, its
// tasks' startDelay already waited out, as Conductor's retry queues each
// copy with no callbackAfterSeconds. Before, each waited its startDelay
// again.
func TestRetryWaitsNoStartDelay(t *testing.T) {
	runsAgainAtOnce(t, func(h *harness) engine.Decision { return h.decide(engine.Retry{}) })
}

// So does a rerun from a task, as Conductor's rerun queues the task it
// resets with the callbackAfterSeconds it holds, none once a worker took
// it (the poll clears it). Before, it waited its startDelay again.
func TestRerunWaitsNoStartDelay(t *testing.T) {
	runsAgainAtOnce(t, func(h *harness) engine.Decision {
		return h.decide(engine.Rerun{Request: conductor.RerunWorkflowRequest{ReRunFromTaskID: h.task("a").ID}})
	})
}

// runsAgainAtOnce fails a task of startDelay 600 that fails its workflow,
// runs it again by op an hour later, and wants it handed out at once.
func runsAgainAtOnce(t *testing.T, op func(h *harness) engine.Decision) {
	t.Helper()
	for _, tc := range []struct {
		name, task string
		handedOut  func(engine.Decision, *engine.Task) bool
	}{
		{"a worker's task", `{"name":"a","taskReferenceName":"a","retryCount":0,"startDelay":600}`,
			func(d engine.Decision, a *engine.Task) bool {
				return slices.ContainsFunc(effectsOf[engine.Dispatch](d), func(e engine.Dispatch) bool { return e.TaskID == a.ID })
			}},
		{"a system task", `{"name":"a","taskReferenceName":"a","type":"HTTP","retryCount":0,"startDelay":600,
		   "inputParameters":{"http_request":{"uri":"http://x","method":"GET"}}}`,
			func(d engine.Decision, a *engine.Task) bool {
				return slices.ContainsFunc(effectsOf[engine.RunSystem](d), func(e engine.RunSystem) bool { return e.TaskID == a.ID })
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, `{"name":"r","tasks":[`+tc.task+`]}`, nil)
			h.advance(600 * time.Second)
			if a := h.task("a"); a.Type == conductor.TaskTypeHTTP {
				h.system("a", conductor.TaskFailed, nil, "down")
			} else {
				h.report("a", conductor.TaskFailed, nil, "down")
			}
			h.wantStatus(conductor.WorkflowFailed)
			h.advance(time.Hour)
			d := op(h)
			a := h.wantTask("a", conductor.TaskScheduled)
			if a.AvailableAt != h.now.UnixMilli() || a.CallbackAfterSeconds != 0 || !tc.handedOut(d, a) {
				t.Fatalf("due %v after it, callbackAfterSeconds %d, effects %+v", time.Duration(a.AvailableAt-h.now.UnixMilli())*time.Millisecond,
					a.CallbackAfterSeconds, d.Effects)
			}
		})
	}
}

// A TERMINATE that ended a workflow from inside a fork or a loop leaves
// nothing to retry: the JOIN or the loop its end canceled is reopened by
// a retry with the rest, but does not make one (Conductor's "no retryable
// tasks"), nor does a task of another branch it canceled (Conductor's
// decider would end the workflow again at once, by the TERMINATE), or the
// retry would run on past the TERMINATE.
func TestRetryAfterTerminateInside(t *testing.T) {
	const forkStop = `{"name":"f","tasks":[
			{"name":"fork","taskReferenceName":"fork","type":"FORK_JOIN","forkTasks":[
				[{"name":"a","taskReferenceName":"a"},{"name":"stop","taskReferenceName":"stop","type":"TERMINATE",
				  "inputParameters":{"terminationStatus":"FAILED"}}],
				[{"name":"c","taskReferenceName":"c"}]]},
			{"name":"join","taskReferenceName":"join","type":"JOIN","joinOn":["stop","c"]},
			{"name":"b","taskReferenceName":"b"}]}`
	for _, tc := range []struct {
		name, def string
		run       func(h *harness)
	}{
		{"fork", forkStop,
			func(h *harness) { h.complete("c", nil); h.complete("a", nil) }},
		// The TERMINATE's end canceled a task of another branch, which a
		// retry used to run again, and the workflow on past the TERMINATE.
		{"fork, another branch canceled", forkStop,
			func(h *harness) { h.complete("a", nil); h.wantTask("c", conductor.TaskCanceled) }},
		{"loop", `{"name":"l","tasks":[
			{"name":"loop","taskReferenceName":"loop","type":"DO_WHILE","loopCondition":"$.loop.iteration < 3","loopOver":[
				{"name":"a","taskReferenceName":"a"},
				{"name":"stop","taskReferenceName":"stop","type":"TERMINATE","inputParameters":{"terminationStatus":"FAILED"}}]},
			{"name":"b","taskReferenceName":"b"}]}`,
			func(h *harness) { h.complete("a__1", nil) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, tc.def, nil)
			tc.run(h)
			h.wantStatus(conductor.WorkflowFailed)
			_, err := h.try(engine.Retry{})
			wantErr(t, err, fault.ErrConflict)
			h.wantStatus(conductor.WorkflowFailed)
		})
	}
}

func TestRerun(t *testing.T) {
	t.Run("from start with new input", func(t *testing.T) {
		h := newHarness(t, threeSimple, map[string]any{"n": int64(1)})
		h.complete("a_ref", nil)
		h.decide(engine.Terminate{})
		h.decide(engine.Rerun{Request: conductor.RerunWorkflowRequest{WorkflowInput: map[string]any{"n": int64(9)}, CorrelationID: "c2"}})
		h.wantRefs("a_ref")
		if h.task("a_ref").Input["n"] != int64(9) || h.w.CorrelationID != "c2" || !reflect.DeepEqual(h.w.Input, map[string]any{"n": int64(9)}) {
			t.Fatalf("rerun input %v corr %q", h.task("a_ref").Input, h.w.CorrelationID)
		}
	})
	t.Run("from task", func(t *testing.T) {
		h := newHarness(t, threeSimple, map[string]any{"n": int64(1)})
		h.complete("a_ref", map[string]any{"items": []any{"p", "q"}})
		h.complete("b_ref", nil)
		h.complete("c_ref", nil)
		h.wantStatus(conductor.WorkflowCompleted)
		from := h.task("b_ref")
		h.decide(engine.Rerun{Request: conductor.RerunWorkflowRequest{ReRunFromTaskID: from.ID, TaskInput: map[string]any{"fresh": true}}})
		h.wantStatus(conductor.WorkflowRunning)
		h.wantRefs("a_ref", "b_ref")
		b := h.wantTask("b_ref", conductor.TaskScheduled)
		if b.ID == from.ID || !reflect.DeepEqual(b.Input, map[string]any{"fresh": true}) {
			t.Fatalf("rerun task %+v", b)
		}
		h.complete("b_ref", nil)
		h.complete("c_ref", map[string]any{"sum": int64(3)})
		h.wantStatus(conductor.WorkflowCompleted)
		_, err := h.try(engine.Rerun{Request: conductor.RerunWorkflowRequest{ReRunFromTaskID: "nope"}})
		wantErr(t, err, fault.ErrNotFound)
	})
	t.Run("keeps secret references", func(t *testing.T) {
		h := newHarness(t, `{"name":"w","tasks":[{"name":"a","taskReferenceName":"a","inputParameters":{"tok":"${workflow.secrets.t}"}}]}`, nil)
		want := h.task("a").Deferred
		h.complete("a", nil)
		h.decide(engine.Rerun{Request: conductor.RerunWorkflowRequest{ReRunFromTaskID: h.task("a").ID}})
		if got := h.task("a").Deferred; len(want) == 0 || !reflect.DeepEqual(got, want) {
			t.Fatalf("rerun task's references %v, want %v", got, want)
		}
		// A given input is data, even where it looks like a reference.
		h.complete("a", nil)
		h.decide(engine.Rerun{Request: conductor.RerunWorkflowRequest{ReRunFromTaskID: h.task("a").ID, TaskInput: map[string]any{"tok": "${workflow.secrets.t}"}}})
		if got := h.task("a").Deferred; len(got) != 0 {
			t.Fatalf("a given input has references %v", got)
		}
	})
}

func TestDeadlinesOfTerminalWorkflow(t *testing.T) {
	h := newHarness(t, `{"name":"w","timeoutSeconds":10,"timeoutPolicy":"TIME_OUT_WF","tasks":[{"name":"wait","taskReferenceName":"wait","type":"WAIT","inputParameters":{"duration":"1s"}}]}`, nil)
	if len(engine.Deadlines(h.w)) != 2 {
		t.Fatalf("deadlines %v, want the wait and the workflow timeout", engine.Deadlines(h.w))
	}
	h.decide(engine.Terminate{})
	if dl := engine.Deadlines(h.w); len(dl) != 0 {
		t.Fatalf("terminal workflow has deadlines %v", dl)
	}
}

// A child whose retry or rerun ends it again at once (a dynamic fork's
// task refused again) tells its parent it ended, not that it runs again:
// told both, the parent heard the child run again after its end, and its
// SUB_WORKFLOW task waited for a child that had ended.
func TestChildEndedAgainDoesNotReopenItsParent(t *testing.T) {
	in := map[string]any{"tasks": []any{
		map[string]any{"name": "a", "taskReferenceName": "a"},
		map[string]any{"name": "first", "taskReferenceName": "first", "inputParameters": map[string]any{"s": "${workflow.secrets.s}"}}}}
	for _, op := range []engine.Trigger{engine.Retry{}, engine.Rerun{Request: conductor.RerunWorkflowRequest{ReRunFromTaskID: "first"}}} {
		c := newHarness(t, dynForkDef, in)
		c.w.ParentWorkflowID = "parent-1"
		c.wantStatus(conductor.WorkflowFailed)
		if rerun, ok := op.(engine.Rerun); ok {
			rerun.Request.ReRunFromTaskID = c.task("first").ID
			op = rerun
		}
		d := c.decide(op)
		c.wantStatus(conductor.WorkflowFailed)
		if got := effectsOf[engine.ReopenParent](d); len(got) != 0 {
			t.Fatalf("%T: a child ended again told its parent it runs again: %+v", op, got)
		}
		if got := effectsOf[engine.NotifyParent](d); len(got) != 1 || got[0].ParentWorkflowID != "parent-1" {
			t.Fatalf("%T: parent effects %+v, want it told the child ended", op, got)
		}
	}
}

// A child that runs again (retried, restarted, rerun) tells its parent;
// the parent's failed SUB_WORKFLOW task waits for it again, the parent
// resumes, and the child's end completes it, as in Conductor.
func TestChildReopened(t *testing.T) {
	parentDef := `{"name":"parent","tasks":[
	  {"name":"fork","taskReferenceName":"fork","type":"FORK_JOIN","forkTasks":[
	    [{"name":"child","taskReferenceName":"child","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"kid"}}],
	    [{"name":"side","taskReferenceName":"side"}]]},
	  {"name":"join","taskReferenceName":"join","type":"JOIN","joinOn":["child","side"]},
	  {"name":"after","taskReferenceName":"after"}]}`

	// The child: each way of running it again tells the parent.
	for _, op := range []engine.Trigger{engine.Retry{}, engine.Restart{}, engine.Rerun{}} {
		c := newHarness(t, `{"name":"kid","tasks":[{"name":"k","taskReferenceName":"k"}]}`, nil, `{"name":"k","retryCount":0}`)
		c.w.ParentWorkflowID = "parent-1"
		c.report("k", conductor.TaskFailed, nil, "down")
		d := c.decide(op)
		if got := effectsOf[engine.ReopenParent](d); len(got) != 1 || got[0].ParentWorkflowID != "parent-1" || got[0].Child.ChildID != "wf-1" {
			t.Fatalf("%T: reopen effects %+v", op, got)
		}
		// Recovery sends it again, in case it was lost.
		if got := effectsOf[engine.ReopenParent](c.decide(engine.Reconcile{})); len(got) != 1 {
			t.Fatalf("%T: recovery reopen effects %+v", op, got)
		}
	}

	p := newHarness(t, parentDef, nil)
	child := p.task("child").SubWorkflowID
	if d := p.decide(engine.ChildReopened{ChildID: child}); len(d.Events) != 0 {
		t.Fatal("a child still awaited reopened its task")
	}
	p.decide(engine.ChildFinished{ChildID: child, Status: conductor.WorkflowFailed, Reason: "kid broke"})
	p.wantStatus(conductor.WorkflowFailed)
	p.wantTask("side", conductor.TaskCanceled)

	p.advance(time.Second)
	news := engine.ChildReopened{ChildID: child, ResetTime: p.now.UnixMilli()}
	d := p.decide(news)
	p.wantStatus(conductor.WorkflowRunning)
	if p.w.LastRetriedTime == 0 {
		t.Fatal("lastRetriedTime not set")
	}
	if ct := p.wantTask("child", conductor.TaskInProgress); ct.SubWorkflowID != child {
		t.Fatalf("the task waits for %s, want %s", ct.SubWorkflowID, child)
	}
	p.wantTask("side", conductor.TaskScheduled) // the rest is retried
	p.wantTask("join", conductor.TaskInProgress)
	if got := effectsOf[engine.CheckChild](d); len(got) != 1 || got[0].ChildID != child {
		t.Fatalf("check effects %+v: the child may have ended already", got)
	}
	if d := p.decide(news); len(d.Events) != 0 {
		t.Fatal("repeated news reopened the task again")
	}
	p.decide(engine.ChildFinished{ChildID: child, Status: conductor.WorkflowCompleted, Output: map[string]any{"r": int64(1)}})
	p.wantTask("child", conductor.TaskCompleted)
	p.complete("side", nil)
	p.complete("after", nil)
	p.wantStatus(conductor.WorkflowCompleted)

	// An optional SUB_WORKFLOW's failure did not stop the parent: nothing
	// to reopen.
	o := newHarness(t, `{"name":"opt","tasks":[{"name":"child","taskReferenceName":"child","type":"SUB_WORKFLOW","optional":true,
	  "subWorkflowParam":{"name":"kid"}},{"name":"after","taskReferenceName":"after"}]}`, nil)
	oc := o.task("child").SubWorkflowID
	o.decide(engine.ChildFinished{ChildID: oc, Status: conductor.WorkflowFailed})
	if d := o.decide(engine.ChildReopened{ChildID: oc}); len(d.Events) != 0 {
		t.Fatal("an optional task's child reopened it")
	}

	// A parent that ended, on its own (terminated by an operator, here)
	// or by a child terminated on its own, canceled the task: news of the
	// child running again from before that end, which recovery sends
	// again, does not undo it. A child restarted after its parent ended
	// was restarted explicitly (recovery does not reset): it reopens the
	// parent, as in Conductor.
	for _, byParent := range []bool{true, false} {
		q := newHarness(t, parentDef, nil)
		qc := q.task("child").SubWorkflowID
		if byParent {
			q.decide(engine.Terminate{Reason: "operator"})
		} else {
			q.decide(engine.ChildFinished{ChildID: qc, Status: conductor.WorkflowTerminated, Reason: "stopped"})
		}
		q.wantStatus(conductor.WorkflowTerminated)
		q.wantTask("child", conductor.TaskCanceled)
		if d := q.decide(engine.ChildReopened{ChildID: qc, ResetTime: q.w.EndTime}); len(d.Events) != 0 {
			t.Fatalf("terminated by the parent %v: news from before the end reopened it: %s", byParent, describe(d))
		}
		q.decide(engine.ChildReopened{ChildID: qc, ResetTime: q.w.EndTime + 1})
		q.wantStatus(conductor.WorkflowRunning)
		q.wantTask("child", conductor.TaskInProgress)
	}

	// Unless a TERMINATE ended the parent (canceling the child's task in
	// another branch): reopened, it ran on past the TERMINATE, which a
	// retry of the parent does not do either.
	q := newHarness(t, `{"name":"parent","tasks":[
	  {"name":"fork","taskReferenceName":"fork","type":"FORK_JOIN","forkTasks":[
	    [{"name":"child","taskReferenceName":"child","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"kid"}}],
	    [{"name":"side","taskReferenceName":"side"},{"name":"stop","taskReferenceName":"stop","type":"TERMINATE","inputParameters":{"terminationStatus":"FAILED"}}]]},
	  {"name":"join","taskReferenceName":"join","type":"JOIN","joinOn":["child","stop"]},
	  {"name":"after","taskReferenceName":"after"}]}`, nil)
	q.complete("side", nil)
	q.wantStatus(conductor.WorkflowFailed)
	q.wantTask("child", conductor.TaskCanceled)
	if d := q.decide(engine.ChildReopened{ChildID: q.task("child").SubWorkflowID, ResetTime: q.w.EndTime + 1}); len(d.Events) != 0 {
		t.Fatalf("the child's news reopened a parent a TERMINATE ended: %s", describe(d))
	}
	q.wantStatus(conductor.WorkflowFailed)
}

// A terminated parent's clean-up terminates its children, and recovery
// performs it again for workflows that ended shortly before a crash. A
// child an operator ran again since (its parent no longer waits for it)
// runs on: the clean-up spares a child reset after the parent ended.
func TestCleanupSparesChildResetSince(t *testing.T) {
	p := newHarness(t, `{"name":"parent","tasks":[{"name":"child","taskReferenceName":"child","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"kid"}}]}`, nil)
	p.advance(time.Minute)
	d := p.decide(engine.Terminate{Reason: "operator"})
	cleanup := effectsOf[engine.TerminateWorkflow](d)
	if len(cleanup) != 1 || cleanup[0].WorkflowID != p.task("child").SubWorkflowID || cleanup[0].ParentEnded != p.w.EndTime || p.w.EndTime == 0 {
		t.Fatalf("clean-up %+v; parent ended at %d", cleanup, p.w.EndTime)
	}
	ended := cleanup[0].ParentEnded
	kid := `{"name":"kid","tasks":[{"name":"k","taskReferenceName":"k"}]}`
	for _, tc := range []struct {
		name  string
		reset time.Duration // when the child is restarted, from the parent's end; 0: never
		want  string
	}{
		{"running child", 0, conductor.WorkflowTerminated},
		{"child restarted before the parent ended", -time.Second, conductor.WorkflowTerminated},
		{"child restarted since", time.Second, conductor.WorkflowRunning},
	} {
		c := newHarness(t, kid, nil)
		c.now = time.UnixMilli(ended)
		if tc.reset != 0 {
			c.advance(tc.reset)
			c.decide(engine.Terminate{Reason: "first run"})
			c.decide(engine.Restart{})
		}
		c.advance(time.Hour) // recovery, much later
		_, err := c.try(engine.Terminate{Reason: cleanup[0].Reason, UnlessResetAfter: ended})
		if got := c.w.Status; got != tc.want || (tc.want == conductor.WorkflowRunning) != errorsIs(err, fault.ErrConflict) {
			t.Errorf("%s: %s (%v), want %s", tc.name, got, err, tc.want)
		}
	}
}

// A rerun asked of an ancestor, from a task of its descendant: the child
// reruns from the task, and each workflow up to the ancestor reruns from
// the SUB_WORKFLOW task that ran it, which waits for the same child again.
func TestRerunThroughChild(t *testing.T) {
	c := newHarness(t, `{"name":"kid","tasks":[{"name":"k1","taskReferenceName":"k1"},{"name":"k2","taskReferenceName":"k2"}]}`, nil)
	c.w.ParentWorkflowID = "parent-1"
	c.complete("k1", nil)
	c.complete("k2", nil)
	d := c.decide(engine.Rerun{Request: conductor.RerunWorkflowRequest{ReRunFromTaskID: c.task("k2").ID}, UpTo: "grand-1"})
	c.wantRefs("k1", "k2")
	c.wantTask("k2", conductor.TaskScheduled)
	if got := effectsOf[engine.ReopenParent](d); len(got) != 1 || !reflect.DeepEqual(got[0].Child, engine.ChildReopened{ChildID: "wf-1", RerunUpTo: "grand-1", ResetTime: c.w.ResetTime}) || c.w.ResetTime == 0 {
		t.Fatalf("reopen effects %+v", got)
	}
	// Recovery, should the news be lost, tells the parent the same.
	var again []engine.ReopenParent
	for _, eff := range engine.Effects(c.w, c.now.UnixMilli()) {
		if r, ok := eff.(engine.ReopenParent); ok {
			again = append(again, r)
		}
	}
	if len(again) != 1 || !reflect.DeepEqual(again[0].Child, engine.ChildReopened{ChildID: "wf-1", RerunUpTo: "grand-1", ResetTime: c.w.ResetTime}) || c.w.ResetTime == 0 {
		t.Fatalf("recovery's reopen effects %+v", again)
	}

	p := newHarness(t, `{"name":"parent","tasks":[{"name":"sub","taskReferenceName":"sub","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"kid"}},
	  {"name":"after","taskReferenceName":"after"}]}`, nil)
	p.w.ParentWorkflowID = "grand-1"
	child := p.task("sub").SubWorkflowID
	p.decide(engine.ChildFinished{ChildID: child, Status: conductor.WorkflowCompleted})
	p.complete("after", nil)
	p.wantStatus(conductor.WorkflowCompleted)
	// A plain reopen of a completed parent changes nothing.
	p.advance(time.Second)
	if d := p.decide(engine.ChildReopened{ChildID: child, ResetTime: p.now.UnixMilli()}); len(d.Events) != 0 {
		t.Fatal("a completed parent reopened for a child's plain rerun")
	}
	d = p.decide(engine.ChildReopened{ChildID: child, RerunUpTo: "grand-1", ResetTime: p.now.UnixMilli()})
	p.wantStatus(conductor.WorkflowRunning)
	p.wantRefs("sub")
	if sub := p.wantTask("sub", conductor.TaskInProgress); sub.SubWorkflowID != child {
		t.Fatalf("the rerun task waits for %s, want %s", sub.SubWorkflowID, child)
	}
	if len(effectsOf[engine.StartWorkflow](d)) != 0 {
		t.Fatal("the rerun started a new child")
	}
	if got := effectsOf[engine.CheckChild](d); len(got) != 1 || got[0].ChildID != child {
		t.Fatalf("check effects %+v", got)
	}
	if got := effectsOf[engine.ReopenParent](d); len(got) != 1 || !reflect.DeepEqual(got[0].Child, engine.ChildReopened{ChildID: "wf-1", RerunUpTo: "grand-1", ResetTime: p.w.ResetTime}) {
		t.Fatalf("the grandparent, which the rerun was asked of, must rerun too: %+v", got)
	}
	p.decide(engine.ChildFinished{ChildID: child, Status: conductor.WorkflowCompleted})
	p.complete("after", nil)
	p.wantStatus(conductor.WorkflowCompleted)

	// The ancestor asked reruns last: its own parent hears a plain reopen.
	p.advance(time.Second)
	d = p.decide(engine.ChildReopened{ChildID: child, RerunUpTo: "wf-1", ResetTime: p.now.UnixMilli()})
	p.wantStatus(conductor.WorkflowRunning)
	if got := effectsOf[engine.ReopenParent](d); len(got) != 1 || !reflect.DeepEqual(got[0].Child, engine.ChildReopened{ChildID: "wf-1", ResetTime: p.w.ResetTime}) {
		t.Fatalf("reopen effects of the ancestor asked: %+v", got)
	}
}

// A rerun asked of an ancestor from a task of its sub-workflow carries the
// ancestor's workflowInput and correlationId (Conductor sets them on the
// workflow asked, never on the child): the child holding the task refuses
// them, unchanged, rather than take them as its own. Its task's input, and
// a rerun asked of the child itself, are its own.
func TestRerunThroughChildRefusesAncestorsData(t *testing.T) {
	for _, tc := range []struct {
		name string
		req  conductor.RerunWorkflowRequest
		upTo string
		ok   bool
	}{
		{"workflowInput", conductor.RerunWorkflowRequest{WorkflowInput: map[string]any{"v": "new"}}, "grand-1", false},
		{"correlationId", conductor.RerunWorkflowRequest{CorrelationID: "c2"}, "grand-1", false},
		{"taskInput", conductor.RerunWorkflowRequest{TaskInput: map[string]any{"v": "new"}}, "grand-1", true},
		{"asked of the child", conductor.RerunWorkflowRequest{WorkflowInput: map[string]any{"v": "new"}, CorrelationID: "c2"}, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newHarness(t, `{"name":"kid","tasks":[{"name":"k1","taskReferenceName":"k1","inputParameters":{"v":"${workflow.input.v}"}}]}`,
				map[string]any{"v": "old"})
			c.w.ParentWorkflowID = "parent-1"
			c.complete("k1", nil)
			req := tc.req
			req.ReRunFromTaskID = c.task("k1").ID
			_, err := c.try(engine.Rerun{Request: req, UpTo: tc.upTo})
			if tc.ok {
				if err != nil {
					t.Fatalf("rerun: %v", err)
				}
				c.wantTask("k1", conductor.TaskScheduled)
				return
			}
			wantErr(t, err, fault.ErrInvalid)
			c.wantStatus(conductor.WorkflowCompleted)
			if c.w.Input["v"] != "old" || c.w.CorrelationID != "corr-1" {
				t.Fatalf("the refused rerun changed the child: input %v, correlation id %q", c.w.Input, c.w.CorrelationID)
			}
		})
	}
}

// A reconcile for expired dispatches lists a task's dispatch in each pass
// after its message expired — once per DispatchAge — and nothing else.
func TestReconcileExpiredDispatches(t *testing.T) {
	h := newHarness(t, `{"name":"w","tasks":[{"name":"fork","taskReferenceName":"fork","type":"FORK_JOIN","forkTasks":[
	  [{"name":"x","taskReferenceName":"x"}],[{"name":"kid","taskReferenceName":"kid","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"k"}}]]},
	  {"name":"j","taskReferenceName":"j","type":"JOIN","joinOn":["x","kid"]}]}`, nil)
	age, every := int64(60_000), int64(10_000)
	for _, tt := range []struct {
		after int64 // ms since the task was announced
		want  int   // dispatches
	}{{0, 0}, {age - 1, 0}, {age, 1}, {age + every - 1, 1}, {age + every, 0}, {2*age + 5, 1}} {
		h.now = epoch.Add(time.Duration(tt.after) * time.Millisecond)
		d := h.decide(engine.Reconcile{DispatchAge: age, Interval: every})
		if got := effectsOf[engine.Dispatch](d); len(got) != tt.want || len(d.Effects) != tt.want {
			t.Errorf("%d ms after: effects %+v, want %d dispatch", tt.after, d.Effects, tt.want)
		}
	}
	// A plain reconcile lists every effect the state implies: the child's
	// start too (it may never have started; one that exists reports).
	d := h.decide(engine.Reconcile{})
	starts := effectsOf[engine.StartWorkflow](d)
	if len(effectsOf[engine.Dispatch](d)) != 1 || len(starts) != 1 || starts[0].WorkflowID != h.task("kid").SubWorkflowID ||
		starts[0].ParentWorkflowTaskID != h.task("kid").ID {
		t.Fatalf("plain reconcile: %+v", d.Effects)
	}
}

// Who gives a workflow data of their own joins those it runs as: its
// secrets resolve, and its children start, only where every one of them
// may. A child's such principals join its parent's with its news.
func TestRunAs(t *testing.T) {
	const def = `{"name":"w","tasks":[{"name":"a","taskReferenceName":"a"},{"name":"b","taskReferenceName":"b"},
	  {"name":"sub","taskReferenceName":"sub","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"kid"}}]}`
	for _, tc := range []struct {
		name string
		act  func(h *harness)
		want []string // who the workflow runs as afterwards
	}{
		{"variables by another", func(h *harness) {
			h.decide(engine.SetVariables{Variables: map[string]any{"v": 1}, By: "app:other"})
		}, []string{"app:tester", "app:other"}},
		{"variables by the creator", func(h *harness) {
			h.decide(engine.SetVariables{Variables: map[string]any{"v": 1}, By: "app:tester"})
		}, []string{"app:tester"}},
		{"two others, one twice", func(h *harness) {
			h.decide(engine.SetVariables{Variables: map[string]any{"v": 1}, By: "app:other"})
			h.decide(engine.SetVariables{Variables: map[string]any{"v": 2}, By: "app:third"})
			h.decide(engine.SetVariables{Variables: map[string]any{"v": 3}, By: "app:other"})
		}, []string{"app:tester", "app:other", "app:third"}},
		{"skip with output", func(h *harness) {
			h.decide(engine.SkipTask{Ref: "b", Output: map[string]any{"x": 1}, By: "app:other"})
		}, []string{"app:tester", "app:other"}},
		{"skip without data", func(h *harness) { h.decide(engine.SkipTask{Ref: "b", By: "app:other"}) }, []string{"app:tester"}},
		{"rerun with input", func(h *harness) {
			h.decide(engine.Terminate{})
			h.decide(engine.Rerun{Request: conductor.RerunWorkflowRequest{WorkflowInput: map[string]any{"n": 2}}, By: "app:other"})
		}, []string{"app:tester", "app:other"}},
		{"rerun with a correlation id", func(h *harness) {
			h.decide(engine.Terminate{})
			h.decide(engine.Rerun{Request: conductor.RerunWorkflowRequest{CorrelationID: "theirs"}, By: "app:other"})
		}, []string{"app:tester", "app:other"}},
		{"terminate with a reason", func(h *harness) {
			h.decide(engine.Terminate{Reason: "https://other.example/", By: "app:other"})
		}, []string{"app:tester", "app:other"}},
		{"terminate without one", func(h *harness) { h.decide(engine.Terminate{By: "app:other"}) }, []string{"app:tester"}},
		{"terminate of an ended workflow", func(h *harness) {
			h.report("a", conductor.TaskFailedWithTerminalError, nil, "broke")
			h.decide(engine.Terminate{Reason: "cleanup", By: "app:other"}) // nobody reads it any more
		}, []string{"app:tester"}},
		{"rerun without data", func(h *harness) {
			h.decide(engine.Terminate{})
			h.decide(engine.Rerun{Request: conductor.RerunWorkflowRequest{ReRunFromTaskID: h.task("a").ID}, By: "app:other"})
		}, []string{"app:tester"}},
		{"an operator's result", func(h *harness) {
			h.decide(engine.Result{Result: conductor.TaskResult{TaskID: h.task("a").ID, Status: conductor.TaskCompleted,
				OutputData: map[string]any{"x": 1}}, By: "app:other"})
		}, []string{"app:tester", "app:other"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, def, nil)
			tc.act(h)
			if got := h.w.Principals(); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("runs as %v, want %v", got, tc.want)
			}
			if h.w.CreatedBy != "app:tester" {
				t.Fatalf("createdBy changed to %q", h.w.CreatedBy)
			}
			// Its children start as its creator, and run as the others too.
			if h.w.Status != conductor.WorkflowRunning {
				return
			}
			if h.task("a").Status == conductor.TaskScheduled {
				h.complete("a", nil)
			}
			if h.task("b").Status == conductor.TaskScheduled {
				h.complete("b", nil)
			}
			starts := effectsOf[engine.StartWorkflow](h.last)
			if len(starts) != 1 || starts[0].CreatedBy != "app:tester" || !reflect.DeepEqual(append([]string{"app:tester"}, starts[0].AlsoRunsAs...), tc.want) {
				t.Fatalf("child starts %+v, want one run as %v", starts, tc.want)
			}
		})
	}
	t.Run("child's news", func(t *testing.T) {
		h := newHarness(t, def, nil)
		h.complete("a", nil)
		h.complete("b", nil)
		child := h.task("sub").SubWorkflowID
		h.decide(engine.ChildFinished{ChildID: child, Status: conductor.WorkflowFailed, RunsAs: []string{"app:other"}})
		h.wantStatus(conductor.WorkflowFailed)
		if got := h.w.Principals(); !reflect.DeepEqual(got, []string{"app:tester", "app:other"}) {
			t.Fatalf("a parent taking news of a child run as another runs as %v", got)
		}
		h.advance(time.Second)
		h.decide(engine.ChildReopened{ChildID: child, RunsAs: []string{"app:other", "app:third"}, ResetTime: h.now.UnixMilli()})
		h.wantStatus(conductor.WorkflowRunning)
		if got := h.w.Principals(); !reflect.DeepEqual(got, []string{"app:tester", "app:other", "app:third"}) {
			t.Fatalf("a parent reopened by a child run as others runs as %v", got)
		}
	})
	t.Run("child's state", func(t *testing.T) {
		c := newHarness(t, `{"name":"kid","tasks":[{"name":"k","taskReferenceName":"k"}]}`, nil)
		c.w.ParentWorkflowID = "parent-1"
		c.decide(engine.SetVariables{Variables: map[string]any{"v": 1}, By: "app:other"})
		d := c.complete("k", nil)
		if got := effectsOf[engine.NotifyParent](d); len(got) != 1 || !reflect.DeepEqual(got[0].Child.RunsAs, []string{"app:other"}) {
			t.Fatalf("news to the parent %+v", got)
		}
	})
	t.Run("started as others too", func(t *testing.T) {
		h := newHarnessStart(t, engine.Start{WorkflowID: "wf-2", Def: parseDef(t, def), CreatedBy: "app:tester", AlsoRunsAs: []string{"app:other", "app:tester"}})
		if got := h.w.Principals(); !reflect.DeepEqual(got, []string{"app:tester", "app:other"}) {
			t.Fatalf("a child started as others runs as %v", got)
		}
	})
}

// A retried task's parameters are evaluated again, over its failed run's
// input, as Conductor does: what changed since reaches the retry.
func TestRetryEvaluatesInputAgain(t *testing.T) {
	def := `{"name":"rv","tasks":[
	 {"name":"set1","taskReferenceName":"set1","type":"SET_VARIABLE","inputParameters":{"v":1}},
	 {"name":"fork","taskReferenceName":"fork","type":"FORK_JOIN","forkTasks":[
	  [{"name":"a","taskReferenceName":"a","inputParameters":{"v":"${workflow.variables.v}","id":"${CPEWF_TASK_ID}",
	    "pw":"${workflow.secrets.pw}"}}],
	  [{"name":"b","taskReferenceName":"b"},{"name":"set2","taskReferenceName":"set2","type":"SET_VARIABLE","inputParameters":{"v":2}}]]},
	 {"name":"join","taskReferenceName":"join","type":"JOIN","joinOn":["a","set2"]}]}`
	for _, manual := range []bool{false, true} {
		h := newHarness(t, def, nil, fmt.Sprintf(`{"name":"a","retryCount":%d,"retryDelaySeconds":0,"inputTemplate":{"region":"eu"}}`,
			map[bool]int{false: 1, true: 0}[manual]))
		first := h.wantTask("a", conductor.TaskScheduled)
		if first.Input["v"] != int64(1) || first.Input["id"] != first.ID {
			t.Fatalf("first input %v", first.Input)
		}
		h.complete("b", nil)
		h.report("a", conductor.TaskFailed, nil, "down")
		if manual {
			h.wantStatus(conductor.WorkflowFailed)
			h.decide(engine.Retry{})
		}
		retry := h.wantTask("a", conductor.TaskScheduled)
		if retry.ID == first.ID || retry.Input["v"] != int64(2) || retry.Input["id"] != retry.ID || retry.Input["region"] != "eu" {
			t.Fatalf("manual %v: retry input %v, want v 2 and its own id", manual, retry.Input)
		}
		if len(retry.Deferred) != 1 || fmt.Sprint(retry.Deferred[0]) != "[pw]" {
			t.Fatalf("manual %v: retry's hand-off references %v, want [[pw]]", manual, retry.Deferred)
		}
	}
}

// forkTwoSteps is a fork whose first branch has two steps: its JOIN is
// scheduled with the fork, before the branch's second step.
const forkTwoSteps = `{"name":"f","tasks":[
 {"name":"fork","taskReferenceName":"fork","type":"FORK_JOIN","forkTasks":[
   [{"name":"a1","taskReferenceName":"a1"},{"name":"a2","taskReferenceName":"a2"}],
   [{"name":"b1","taskReferenceName":"b1"}]]},
 {"name":"join","taskReferenceName":"join","type":"JOIN","joinOn":["a2","b1"]},
 {"name":"after","taskReferenceName":"after"}]}`

// A rerun from a task inside a fork branch reopens the JOIN it kept: what
// follows the JOIN runs once the rerun task is done, never before and
// never not at all.
func TestRerunInsideFork(t *testing.T) {
	for _, tc := range []struct {
		name string
		a2   string // how a2 ended before the rerun
	}{{"completed", conductor.TaskCompleted}, {"failed", conductor.TaskFailedWithTerminalError}} {
		h := newHarness(t, forkTwoSteps, nil)
		h.complete("a1", nil)
		h.complete("b1", map[string]any{"b": "one"})
		h.report("a2", tc.a2, nil, "")
		if tc.a2 == conductor.TaskCompleted {
			h.complete("after", nil)
		}
		h.decide(engine.Rerun{Request: conductor.RerunWorkflowRequest{ReRunFromTaskID: h.task("a2").ID}})
		h.wantStatus(conductor.WorkflowRunning)
		h.wantTask("join", conductor.TaskInProgress)
		if slices.ContainsFunc(h.w.Tasks, func(x *engine.Task) bool { return x.Ref == "after" }) {
			t.Fatalf("%s: after is scheduled before a2 ran again: %v", tc.name, h.refs())
		}
		h.complete("a2", map[string]any{"a": "two"})
		if join := h.wantTask("join", conductor.TaskCompleted); join.Output["a2"] == nil || join.Output["b1"] == nil {
			t.Fatalf("%s: join output %v", tc.name, join.Output)
		}
		h.complete("after", nil)
		h.wantStatus(conductor.WorkflowCompleted)
	}
}

// A rerun from one branch keeps the other's tasks: one the workflow's end
// canceled runs again, one that failed fails the JOIN (as Conductor's
// Join does) instead of leaving it waiting for good.
func TestRerunKeepsOtherBranches(t *testing.T) {
	h := newHarness(t, forkTwoSteps, nil)
	h.complete("a1", nil)
	h.decide(engine.Terminate{Reason: "operator"})
	h.wantTask("b1", conductor.TaskCanceled)
	h.decide(engine.Rerun{Request: conductor.RerunWorkflowRequest{ReRunFromTaskID: h.task("a2").ID}})
	h.wantTask("b1", conductor.TaskScheduled)
	h.complete("a2", nil)
	h.complete("b1", nil)
	h.complete("after", nil)
	h.wantStatus(conductor.WorkflowCompleted)

	h = newHarness(t, forkTwoSteps, nil)
	h.complete("a1", nil)
	h.report("b1", conductor.TaskFailedWithTerminalError, nil, "boom")
	h.wantStatus(conductor.WorkflowFailed)
	h.decide(engine.Rerun{Request: conductor.RerunWorkflowRequest{ReRunFromTaskID: h.task("a2").ID}})
	h.wantTask("b1", conductor.TaskFailedWithTerminalError)
	h.wantTask("join", conductor.TaskFailed)
	h.wantStatus(conductor.WorkflowFailed)
}

// dynamicForkDef forks the tasks listed in its input "tasks", joins them
// and runs "after".
const dynamicForkDef = `{"name":"d","tasks":[{"name":"fork","taskReferenceName":"fork","type":"FORK_JOIN_DYNAMIC","dynamicForkTasksParam":"tasks",
  "inputParameters":{"tasks":"${workflow.input.tasks}"}},
 {"name":"join","taskReferenceName":"join","type":"JOIN"},{"name":"after","taskReferenceName":"after"}]}`

// A rerun from a task a FORK_JOIN_DYNAMIC spawned spawns again the ones
// spawned after it, which the rerun removed: the JOIN waits for each.
func TestRerunInsideDynamicFork(t *testing.T) {
	h := newHarness(t, dynamicForkDef, map[string]any{"tasks": []any{
		map[string]any{"name": "img", "taskReferenceName": "d1"}, map[string]any{"name": "img", "taskReferenceName": "d2"}}})
	h.complete("d1", nil)
	h.complete("d2", nil)
	h.complete("after", nil)
	h.decide(engine.Rerun{Request: conductor.RerunWorkflowRequest{ReRunFromTaskID: h.task("d1").ID}})
	h.wantTask("d1", conductor.TaskScheduled)
	h.wantTask("d2", conductor.TaskScheduled)
	h.complete("d1", nil)
	h.complete("d2", nil)
	h.wantTask("join", conductor.TaskCompleted)
	h.complete("after", nil)
	h.wantStatus(conductor.WorkflowCompleted)
}

// A rerun gives the workflow its whole timeoutSeconds again, as a retry
// does: a rerun of an old workflow must not time out at the next tick.
func TestRerunRestartsTheWorkflowTimeout(t *testing.T) {
	h := newHarness(t, `{"name":"t","timeoutSeconds":60,"timeoutPolicy":"TIME_OUT_WF","tasks":[{"name":"a","taskReferenceName":"a"}]}`, nil)
	h.complete("a", nil)
	h.advance(time.Hour)
	h.decide(engine.Rerun{Request: conductor.RerunWorkflowRequest{ReRunFromTaskID: h.task("a").ID}})
	h.decide(engine.Tick{})
	h.wantStatus(conductor.WorkflowRunning)
	h.advance(time.Minute)
	h.decide(engine.Tick{})
	h.wantStatus(conductor.WorkflowTimedOut)
}

// Fail, what an executor records when the log refuses a decision, ends a
// running or paused workflow FAILED without output (but the failure
// workflow's id), cancelling what runs
// and starting the failure workflow; an ended workflow stays as it is.
func TestFail(t *testing.T) {
	def := `{"name":"f","failureWorkflow":"cleanup","outputParameters":{"o":"${a.output.x}"},
	  "tasks":[{"name":"a","taskReferenceName":"a"}]}`
	for _, paused := range []bool{false, true} {
		h := newHarness(t, def, nil)
		if paused {
			h.decide(engine.Pause{})
		}
		d := h.decide(engine.Fail{Reason: "too large"})
		h.wantStatus(conductor.WorkflowFailed)
		if h.w.Reason != "too large" || len(h.w.Output) != 1 || h.w.Output[engine.FailureWorkflowOutputKey] == nil ||
			h.task("a").Status != conductor.TaskCanceled {
			t.Fatalf("reason %q, output %v, a %s", h.w.Reason, h.w.Output, h.task("a").Status)
		}
		if starts := effectsOf[engine.StartWorkflow](d); len(starts) != 1 || starts[0].Name != "cleanup" {
			t.Fatalf("starts %+v: want the failure workflow", starts)
		}
		if d := h.decide(engine.Fail{Reason: "again"}); len(d.Events) != 0 || h.w.Reason != "too large" {
			t.Fatalf("an ended workflow failed again: %d events, reason %q", len(d.Events), h.w.Reason)
		}
	}
}

// A rerun from one branch acts again on a failure it keeps in another
// branch, as Conductor's decider does with a failed task not yet
// executed. Before the task the JOIN joins, left as it was, the JOIN
// waited for good for the branch's later task, never scheduled
// (FuzzLifecycle found it): exhausted, the failure fails the workflow
// again; one a pause held back is retried, and the workflow runs to its
// end. Of a task the JOIN joins, held back by a pause, the JOIN failed by
// it, made a plain failure by the reset, where resume would have retried
// it, or let an optional task pass.
func TestRerunActsOnFailuresKeptInOtherBranches(t *testing.T) {
	held := func(ref string, first ...string) func(h *harness) {
		return func(h *harness) {
			for _, f := range first {
				h.complete(f, nil)
			}
			h.decide(engine.Pause{})
			h.report(ref, conductor.TaskFailed, nil, ref+" broke")
			h.decide(engine.Terminate{Reason: "operator"})
		}
	}
	optionalB := strings.Replace(forkJoin, `{"name":"b","taskReferenceName":"b"}`, `{"name":"b","taskReferenceName":"b","optional":true}`, 1)
	for _, tc := range []struct {
		name     string
		def      string
		taskDef  string
		fail     func(h *harness)
		from     string
		failed   string // the task that failed
		want     string // the workflow's status after the rerun
		wantTask string // the failed task's, its newest instance
		then     []string
		wantEnd  string
	}{
		{"exhausted", forkJoin, `{"name":"a","retryCount":1}`, func(h *harness) {
			h.report("a", conductor.TaskFailedWithTerminalError, nil, "a broke")
		}, "b", "a", conductor.WorkflowFailed, conductor.TaskFailedWithTerminalError, nil, conductor.WorkflowFailed},
		{"held by a pause", forkJoin, `{"name":"a","retryCount":1}`, held("a"),
			"b", "a", conductor.WorkflowRunning, conductor.TaskScheduled, []string{"a", "a2", "b", "z"}, conductor.WorkflowCompleted},
		{"joined, held by a pause", forkJoin, `{"name":"b","retryCount":1}`, held("b", "a"),
			"a2", "b", conductor.WorkflowRunning, conductor.TaskScheduled, []string{"a2", "b", "z"}, conductor.WorkflowCompleted},
		{"joined, optional, held by a pause", optionalB, `{"name":"b","retryCount":0}`, held("b", "a"),
			"a2", "b", conductor.WorkflowRunning, conductor.TaskCompletedWithErrors, []string{"a2", "z"}, conductor.WorkflowCompleted},
		{"joined, exhausted, held by a pause", forkJoin, `{"name":"b","retryCount":0}`, held("b", "a"),
			"a2", "b", conductor.WorkflowFailed, conductor.TaskFailed, nil, conductor.WorkflowFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, tc.def, nil, tc.taskDef)
			tc.fail(h)
			h.decide(engine.Rerun{Request: conductor.RerunWorkflowRequest{ReRunFromTaskID: h.task(tc.from).ID}})
			h.wantStatus(tc.want)
			h.wantTask(tc.failed, tc.wantTask)
			for _, ref := range tc.then {
				h.complete(ref, nil)
			}
			h.wantStatus(tc.wantEnd)
			if tc.wantEnd == conductor.WorkflowFailed && h.w.Reason != tc.failed+" broke" {
				t.Fatalf("reason %q, want %s's", h.w.Reason, tc.failed)
			}
		})
	}
}

// A rerun that removes the retry of a task it keeps in another branch
// (the retry was scheduled after the task rerun from) runs that task
// again, as it runs again what the workflow's end canceled there: kept
// marked retried with nothing newer of it, the task was acted on by
// nobody, and the JOIN waited for good for the branch past it, or failed
// by it (FuzzLifecycle found the workflow stuck).
func TestRerunRunsAgainTheRetryItRemoved(t *testing.T) {
	for _, tc := range []struct {
		name     string
		failed   string // retried, its retry scheduled after the task rerun from
		from     string
		then     []string
		retryDef string
	}{
		// a1 is not joined: the JOIN waited for a2, never scheduled.
		{"not joined", "a1", "b1", []string{"a1", "a2", "b1", "after"}, `{"name":"a1","retryCount":1}`},
		// b1 is joined: the JOIN failed by it, its retry gone.
		{"joined", "b1", "a2", []string{"a2", "b1", "after"}, `{"name":"b1","retryCount":1}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, forkTwoSteps, nil, tc.retryDef)
			if tc.failed == "b1" {
				h.complete("a1", nil)
			}
			first := h.task(tc.failed)
			h.report(tc.failed, conductor.TaskFailed, nil, "flaky")
			if retry := h.wantTask(tc.failed, conductor.TaskScheduled); retry.ID == first.ID {
				t.Fatalf("%s not retried", tc.failed)
			}
			h.decide(engine.Terminate{Reason: "operator"})
			h.decide(engine.Rerun{Request: conductor.RerunWorkflowRequest{ReRunFromTaskID: h.task(tc.from).ID}})
			h.wantStatus(conductor.WorkflowRunning)
			if again := h.wantTask(tc.failed, conductor.TaskScheduled); again.RetriedTaskID != first.ID {
				t.Fatalf("%s runs again as %s, a retry of %q, want of %s", tc.failed, again.ID, again.RetriedTaskID, first.ID)
			}
			for _, ref := range tc.then {
				h.complete(ref, nil)
			}
			h.wantStatus(conductor.WorkflowCompleted)
		})
	}
}

// A rerun from a task runs it with the retryCount of the attempt rerun
// from, and the retries it has left, as Conductor's rerun resets that
// attempt in place (its retryCount and retriedTaskId untouched): a rerun
// from the last attempt of a task out of retries fails the workflow at its
// next failure, one from its first attempt (which drops the later ones)
// retries it again. Before, every rerun started the count again at 0.
func TestRerunKeepsTheAttemptsRetryCount(t *testing.T) {
	for _, tc := range []struct {
		name    string
		attempt int // the attempt rerun from, 0 the first
		// refs are the task list after the rerun, and status the
		// workflow's after the task run again fails.
		refs   []string
		status string
	}{
		{"from the last attempt", 2, []string{"a", "a", "a"}, conductor.WorkflowFailed},
		{"from the first attempt", 0, []string{"a"}, conductor.WorkflowRunning},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, `{"name":"r","tasks":[{"name":"a","taskReferenceName":"a"},{"name":"b","taskReferenceName":"b"}]}`, nil,
				`{"name":"a","retryCount":2,"retryDelaySeconds":0}`)
			var attempts []*engine.Task
			for range 3 {
				attempts = append(attempts, h.task("a"))
				h.report("a", conductor.TaskFailed, nil, "broken")
			}
			h.wantStatus(conductor.WorkflowFailed)
			from := attempts[tc.attempt]
			h.decide(engine.Rerun{Request: conductor.RerunWorkflowRequest{ReRunFromTaskID: from.ID}})
			h.wantRefs(tc.refs...)
			a := h.wantTask("a", conductor.TaskScheduled)
			if a.ID == from.ID || a.RetryCount != from.RetryCount || a.RetriedTaskID != from.RetriedTaskID {
				t.Fatalf("rerun task: retryCount %d, retriedTaskId %q; want the attempt's %d, %q", a.RetryCount, a.RetriedTaskID,
					from.RetryCount, from.RetriedTaskID)
			}
			h.report("a", conductor.TaskFailed, nil, "broken again")
			h.wantStatus(tc.status)
		})
	}
}
