package engine_test

import (
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// subTimeoutDef is a parent whose SUB_WORKFLOW task has taskDef (an inline
// taskDefinition, if not empty) and a task after it.
func subTimeoutDef(taskDef string) string {
	inline := ""
	if taskDef != "" {
		inline = `,"taskDefinition":` + taskDef
	}
	return `{"name":"parent","tasks":[{"name":"child","taskReferenceName":"sw","type":"SUB_WORKFLOW",
	  "subWorkflowParam":{"name":"kid","version":1}` + inline + `},{"name":"after","taskReferenceName":"after"}]}`
}

// wantNoTerminate fails if effects end a workflow: whatever ended the
// SUB_WORKFLOW task (its own timeout, or its child's), the child is not
// terminated, as Conductor leaves it.
func wantNoTerminate(t *testing.T, what string, effects []engine.Effect) {
	t.Helper()
	for _, e := range effects {
		if term, ok := e.(engine.TerminateWorkflow); ok {
			t.Fatalf("%s: terminates workflow %s (%s)", what, term.WorkflowID, term.Reason)
		}
	}
}

// TestSubWorkflowTaskTimeout pins that a SUB_WORKFLOW task's timeoutSeconds
// (its task definition's, or an inline taskDefinition's) applies as
// Conductor's decider applies it to every pending task with a definition:
// TIME_OUT_WF times the parent out, RETRY starts a new child, ALERT_ONLY
// and a paused parent do nothing. The child is never terminated (Conductor
// cancels only non-terminal tasks, and the task is TIMED_OUT): it runs on,
// and its end is news no task waits for. A child that timed out on its own
// leaves its task TIMED_OUT too, and is not terminated either.
func TestSubWorkflowTaskTimeout(t *testing.T) {
	start := epoch.UnixMilli()
	reason := func(after, timeout int, policy string) string {
		return fmt.Sprintf("Task timed out after %d seconds. Timeout configured as %d seconds. Timeout policy configured to %s",
			after, timeout, policy)
	}
	for _, tc := range []struct {
		name     string
		inline   string // the task's inline taskDefinition
		taskDefs []string
		run      func(h *harness)
		// deadlines are Deadlines of the parent as the child starts.
		deadlines []int64
		status    string // the parent's, at the end
		// taskState and reason are the first task instance's.
		taskState string
		reason    string
		// children is how many children were started.
		children int
	}{
		{
			name:      "inline TIME_OUT_WF times the parent out",
			inline:    `{"name":"child","timeoutSeconds":60,"timeoutPolicy":"TIME_OUT_WF","responseTimeoutSeconds":30}`,
			run:       func(h *harness) { h.advance(61 * time.Second); h.decide(engine.Tick{}) },
			deadlines: []int64{start + 60_000},
			status:    conductor.WorkflowTimedOut, taskState: conductor.TaskTimedOut, reason: reason(61, 60, "TIME_OUT_WF"), children: 1,
		},
		{
			name:      "not before its time",
			inline:    `{"name":"child","timeoutSeconds":60,"timeoutPolicy":"TIME_OUT_WF","responseTimeoutSeconds":30}`,
			run:       func(h *harness) { h.advance(59 * time.Second); h.decide(engine.Tick{}) },
			deadlines: []int64{start + 60_000},
			status:    conductor.WorkflowRunning, taskState: conductor.TaskInProgress, children: 1,
		},
		{
			name:      "registered RETRY starts a new child",
			taskDefs:  []string{`{"name":"child","timeoutSeconds":60,"timeoutPolicy":"RETRY","responseTimeoutSeconds":30,"retryCount":1,"retryDelaySeconds":0}`},
			run:       func(h *harness) { h.advance(60 * time.Second); h.decide(engine.Tick{}) },
			deadlines: []int64{start + 60_000},
			status:    conductor.WorkflowRunning, taskState: conductor.TaskTimedOut, reason: reason(60, 60, "RETRY"), children: 2,
		},
		{
			name:      "RETRY out of retries times the parent out",
			taskDefs:  []string{`{"name":"child","timeoutSeconds":60,"timeoutPolicy":"RETRY","responseTimeoutSeconds":30,"retryCount":0}`},
			run:       func(h *harness) { h.advance(60 * time.Second); h.decide(engine.Tick{}) },
			deadlines: []int64{start + 60_000},
			status:    conductor.WorkflowTimedOut, taskState: conductor.TaskTimedOut, reason: reason(60, 60, "RETRY"), children: 1,
		},
		{
			name:   "ALERT_ONLY does nothing",
			inline: `{"name":"child","timeoutSeconds":60,"timeoutPolicy":"ALERT_ONLY","responseTimeoutSeconds":30}`,
			run:    func(h *harness) { h.advance(time.Hour); h.decide(engine.Tick{}) },
			status: conductor.WorkflowRunning, taskState: conductor.TaskInProgress, children: 1,
		},
		{
			name:   "a paused parent's task waits for resume",
			inline: `{"name":"child","timeoutSeconds":60,"timeoutPolicy":"TIME_OUT_WF","responseTimeoutSeconds":30}`,
			run: func(h *harness) {
				h.decide(engine.Pause{})
				h.advance(time.Hour)
				h.decide(engine.Tick{})
				if got := engine.Deadlines(h.w); len(got) != 0 {
					h.t.Fatalf("paused parent's deadlines %v", got)
				}
			},
			deadlines: []int64{start + 60_000},
			status:    conductor.WorkflowPaused, taskState: conductor.TaskInProgress, children: 1,
		},
		{
			name:     "the child's own timeout times the task out, child not terminated",
			taskDefs: []string{`{"name":"child","timeoutSeconds":600,"timeoutPolicy":"TIME_OUT_WF","responseTimeoutSeconds":30,"retryCount":0}`},
			run: func(h *harness) {
				h.advance(30 * time.Second)
				h.decide(engine.ChildFinished{ChildID: h.task("sw").SubWorkflowID, Name: "kid", Version: 1, Status: conductor.WorkflowTimedOut,
					Reason: "Workflow timed out after 30 seconds. Timeout configured as 30 seconds. Timeout policy configured to TIME_OUT_WF"})
			},
			deadlines: []int64{start + 600_000},
			status:    conductor.WorkflowTimedOut, taskState: conductor.TaskTimedOut, children: 1,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, subTimeoutDef(tc.inline), nil, tc.taskDefs...)
			first := h.wantTask("sw", conductor.TaskInProgress)
			kid := first.SubWorkflowID
			if got := engine.Deadlines(h.w); !reflect.DeepEqual(got, tc.deadlines) && (len(got) != 0 || len(tc.deadlines) != 0) {
				t.Fatalf("deadlines %v, want %v", got, tc.deadlines)
			}
			children := len(effectsOf[engine.StartWorkflow](h.last))
			tc.run(h)
			h.wantStatus(tc.status)
			got := h.w.TaskByID(first.ID)
			if got.Status != tc.taskState || tc.reason != "" && got.Reason != tc.reason {
				t.Fatalf("task %s (%s), want %s (%s); tasks %v", got.Status, got.Reason, tc.taskState, tc.reason, h.refs())
			}
			if tc.status == conductor.WorkflowTimedOut && tc.reason != "" && h.w.Reason != tc.reason {
				t.Fatalf("parent's reason %q, want the task's %q", h.w.Reason, tc.reason)
			}
			wantNoTerminate(t, "the decision", h.last.Effects)
			// Nor does recovery, from the state the decisions left.
			wantNoTerminate(t, "recovery", engine.Effects(h.w, h.now.UnixMilli()))
			children += len(effectsOf[engine.StartWorkflow](h.last))
			if children != tc.children {
				t.Fatalf("%d children started, want %d; tasks %v", children, tc.children, h.refs())
			}
			if tc.children == 2 {
				retry := h.wantTask("sw", conductor.TaskInProgress)
				if retry.ID == first.ID || retry.SubWorkflowID == kid || retry.SubWorkflowID == "" {
					t.Fatalf("the retry waits for child %s, the timed-out task's was %s", retry.SubWorkflowID, kid)
				}
				// The old child's end is news no task waits for; the new
				// one's completes the task.
				if d := h.decide(engine.ChildFinished{ChildID: kid, Status: conductor.WorkflowCompleted}); len(d.Events) != 0 {
					t.Fatalf("the timed-out task's child changed its parent: %s", describe(d))
				}
				h.decide(engine.ChildFinished{ChildID: retry.SubWorkflowID, Status: conductor.WorkflowCompleted})
				h.wantTask("sw", conductor.TaskCompleted)
				h.wantTask("after", conductor.TaskScheduled)
				return
			}
			if tc.status == conductor.WorkflowTimedOut {
				// The parent has ended: the child's end changes nothing.
				if d := h.decide(engine.ChildFinished{ChildID: kid, Status: conductor.WorkflowCompleted}); len(d.Events) != 0 {
					t.Fatalf("the child's end changed the timed-out parent: %s", describe(d))
				}
			}
		})
	}
}

// TestReopenedSubWorkflowTaskTimesOutAfresh pins that a SUB_WORKFLOW task
// its parent reopens for a child an operator ran again counts its
// timeoutSeconds from that retry, as the parent's own timeout does:
// counted from its first start, it would time out at once and leave the
// child it waits for again behind.
func TestReopenedSubWorkflowTaskTimesOutAfresh(t *testing.T) {
	h := newHarness(t, subTimeoutDef(`{"name":"child","timeoutSeconds":60,"timeoutPolicy":"TIME_OUT_WF","responseTimeoutSeconds":30,"retryCount":0}`), nil)
	kid := h.task("sw").SubWorkflowID
	h.advance(50 * time.Second)
	h.decide(engine.ChildFinished{ChildID: kid, Name: "kid", Version: 1, Status: conductor.WorkflowFailed, Reason: "kid broke"})
	h.wantStatus(conductor.WorkflowFailed)

	h.advance(time.Hour)
	reopened := h.now.UnixMilli()
	h.decide(engine.ChildReopened{ChildID: kid, ResetTime: reopened})
	h.wantStatus(conductor.WorkflowRunning)
	h.wantTask("sw", conductor.TaskInProgress)
	if got, want := engine.Deadlines(h.w), []int64{reopened + 60_000}; !reflect.DeepEqual(got, want) {
		t.Fatalf("deadlines %v, want %v", got, want)
	}
	h.advance(time.Second)
	h.decide(engine.Tick{})
	h.wantTask("sw", conductor.TaskInProgress)

	h.advance(59 * time.Second)
	h.decide(engine.Tick{})
	h.wantStatus(conductor.WorkflowTimedOut)
	want := "Task timed out after 60 seconds. Timeout configured as 60 seconds. Timeout policy configured to TIME_OUT_WF"
	if got := h.wantTask("sw", conductor.TaskTimedOut).Reason; got != want {
		t.Fatalf("reason %q, want %q", got, want)
	}
	wantNoTerminate(t, "the timeout", h.last.Effects)
}
