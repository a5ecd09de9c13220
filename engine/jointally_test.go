package engine_test

import (
	"fmt"
	"testing"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// loopedFork runs a fork of p and q, joined, in each of three iterations
// of a DO_WHILE; keep is the loop's inputParameters.
func loopedFork(keep string) string {
	return `{"name":"f","tasks":[{"name":"loop","taskReferenceName":"loop","type":"DO_WHILE","items":[1,2,3],` + keep + `"loopOver":[
	  {"name":"fork","taskReferenceName":"fork","type":"FORK_JOIN","forkTasks":[[{"name":"p","taskReferenceName":"p"}],[{"name":"q","taskReferenceName":"q"}]]},
	  {"name":"join","taskReferenceName":"join","type":"JOIN","joinOn":["p","q"]}]}]}`
}

// The counts of what each JOIN waits for, which Apply keeps from one
// decision to the next, agree with a count of the task list made anew
// after every decision (the harness checks it, see try) through every
// event that adds, removes or replaces a task a JOIN waits for. Each case
// also checks, while a JOIN waits, that it was counted: the agreement is
// checked on counts that exist.
func TestJoinCountsFollowEveryChange(t *testing.T) {
	loopRun := func(h *harness, counted func(string)) {
		for it := 1; it <= 3; it++ {
			h.complete(fmt.Sprintf("p__%d", it), map[string]any{"it": it})
			counted(fmt.Sprintf("iteration %d, p done", it))
			h.complete(fmt.Sprintf("q__%d", it), nil)
			h.wantTask(fmt.Sprintf("join__%d", it), conductor.TaskCompleted)
		}
	}
	// lastA2 ends forkTwoSteps, whose JOIN waits for a2 alone.
	lastA2 := func(h *harness) {
		h.wantTask("join", conductor.TaskInProgress)
		h.complete("a2", nil)
		h.wantTask("join", conductor.TaskCompleted)
		h.complete("after", nil)
	}
	for _, tc := range []struct {
		name     string
		def      string
		input    map[string]any
		taskDefs []string
		run      func(h *harness, counted func(string))
	}{
		{"retry inside a fork", forkTwoSteps, nil, []string{`{"name":"a2","retryCount":1,"retryDelaySeconds":0}`}, func(h *harness, counted func(string)) {
			h.complete("a1", nil)
			counted("a1 done")
			h.report("a2", conductor.TaskFailed, nil, "boom")
			h.wantTask("a2", conductor.TaskScheduled) // its retry
			counted("a2 retried")
			h.complete("b1", nil)
			counted("b1 done")
			lastA2(h)
		}},
		{"rerun inside a fork", forkTwoSteps, nil, nil, func(h *harness, counted func(string)) {
			h.complete("a1", nil)
			h.complete("b1", nil)
			h.report("a2", conductor.TaskFailedWithTerminalError, nil, "boom")
			h.wantStatus(conductor.WorkflowFailed)
			h.decide(engine.Rerun{Request: conductor.RerunWorkflowRequest{ReRunFromTaskID: h.task("a2").ID}})
			counted("rerun from a2")
			lastA2(h)
		}},
		{"restart", forkTwoSteps, nil, nil, func(h *harness, counted func(string)) {
			for _, ref := range []string{"a1", "a2", "b1", "after"} {
				h.complete(ref, nil)
			}
			h.wantStatus(conductor.WorkflowCompleted)
			h.decide(engine.Restart{})
			counted("restarted")
			h.complete("a1", nil)
			h.complete("b1", nil)
			counted("a1 and b1 done again")
			lastA2(h)
		}},
		{"failure while paused", forkTwoSteps, nil, []string{`{"name":"b1","retryCount":1,"retryDelaySeconds":0}`}, func(h *harness, counted func(string)) {
			h.complete("a1", nil)
			h.decide(engine.Pause{})
			h.report("b1", conductor.TaskFailed, nil, "boom")
			h.decide(engine.Resume{})
			h.wantTask("b1", conductor.TaskScheduled) // its retry, at resume
			counted("b1 retried at resume")
			h.complete("a2", nil)
			counted("a2 done")
			h.complete("b1", nil)
			h.wantTask("join", conductor.TaskCompleted)
			h.complete("after", nil)
		}},
		{"fork in a loop", loopedFork(""), nil, nil, loopRun},
		{"fork in a loop with keepLastN", loopedFork(`"inputParameters":{"keepLastN":1},`), nil, nil, loopRun},
		{"dynamic fork in a loop with keepLastN", `{"name":"f","tasks":[{"name":"loop","taskReferenceName":"loop","type":"DO_WHILE","items":[1,2,3],
		  "inputParameters":{"keepLastN":1,"tasks":"${workflow.input.tasks}"},"loopOver":[
		  {"name":"fork","taskReferenceName":"fork","type":"FORK_JOIN_DYNAMIC","dynamicForkTasksParam":"tasks","inputParameters":{"tasks":"${workflow.input.tasks}"}},
		  {"name":"join","taskReferenceName":"join","type":"JOIN"}]}]}`,
			map[string]any{"tasks": []any{map[string]any{"name": "p", "taskReferenceName": "p"}, map[string]any{"name": "q", "taskReferenceName": "q"}}},
			nil, loopRun},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, tc.def, tc.input, tc.taskDefs...)
			tc.run(h, func(step string) {
				t.Helper()
				switch n, err := engine.JoinCountsAgree(h.w); {
				case err != nil:
					t.Fatalf("%s: %v", step, err)
				case n == 0:
					t.Fatalf("%s: no JOIN counted; tasks %v", step, h.refs())
				}
			})
			h.wantStatus(conductor.WorkflowCompleted)
		})
	}
}

// States that went apart from one never share its join counts: the
// decision whose append lost took them over, and the state caught up
// with the log instead counts anew, from its own tasks.
func TestJoinCountsStayWithOneState(t *testing.T) {
	h := newHarness(t, forkTwoSteps, nil)
	h.complete("a1", nil)
	counted := func(step string, w *engine.Workflow, want bool) {
		t.Helper()
		switch n, err := engine.JoinCountsAgree(w); {
		case err != nil:
			t.Fatalf("%s: %v", step, err)
		case (n > 0) != want:
			t.Fatalf("%s: %d JOINs counted, want some: %v", step, n, want)
		}
	}
	base := h.w
	counted("before", base, true)
	lost, err := engine.Decide(h.input(engine.Result{Result: conductor.TaskResult{TaskID: h.task("a2").ID, WorkflowInstanceID: base.ID, Status: conductor.TaskCompleted}}))
	if err != nil {
		t.Fatal(err)
	}
	counted("the decision that lost", lost.State, true)
	counted("the state it was made on", base, false)

	// Another engine's record: b1 ended, a2 did not.
	h.complete("b1", nil)
	counted("caught up", h.w, true)
	h.wantTask("join", conductor.TaskInProgress)
	h.complete("a2", nil)
	h.wantTask("join", conductor.TaskCompleted)
}
