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

// TestChildRunAgainReopensOnce pins that news of a child run again, by
// its retry or by a rerun asked of the parent from a task of it, reopens
// a parent its SUB_WORKFLOW task's own timeout ended once: the task,
// waiting again, times out again and leaves the child running, and
// recovery sends the child's news again (Effects). The parent ended
// after that news: it runs again only for a run of the child an operator
// asks after that end.
func TestChildRunAgainReopensOnce(t *testing.T) {
	const (
		kidDef   = `{"name":"kid","version":1,"tasks":[{"name":"k","taskReferenceName":"k"}]}`
		timeOut  = `{"name":"child","timeoutSeconds":60,"timeoutPolicy":"TIME_OUT_WF","responseTimeoutSeconds":30,"retryCount":0}`
		outOfTry = `{"name":"child","timeoutSeconds":60,"timeoutPolicy":"RETRY","responseTimeoutSeconds":30,"retryCount":0}`
	)
	for _, tc := range []struct {
		name     string
		inline   string
		taskDefs []string
		rerun    bool // a rerun asked of the parent, else the child's retry
	}{
		{"retry, TIME_OUT_WF", timeOut, nil, false},
		{"rerun through the child, TIME_OUT_WF", timeOut, nil, true},
		{"retry, RETRY out of retries", "", []string{outOfTry}, false},
		{"rerun through the child, RETRY out of retries", "", []string{outOfTry}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := newHarness(t, subTimeoutDef(tc.inline), nil, tc.taskDefs...)
			kid := p.startChild("sw", kidDef)
			timesOut := func() {
				t.Helper()
				p.advance(61 * time.Second)
				p.decide(engine.Tick{})
				p.wantStatus(conductor.WorkflowTimedOut)
				wantNoTerminate(t, "the timeout", p.last.Effects)
			}
			// An operator's run of the child, ended as the parent ignores.
			runAgain := func() engine.ChildReopened {
				t.Helper()
				p.advance(time.Minute)
				kid.now = p.now
				kid.report("k", conductor.TaskFailedWithTerminalError, nil, "down")
				tellEnd(p, kid)
				p.advance(time.Minute)
				kid.now = p.now
				var trig engine.Trigger = engine.Retry{Ancestors: []*engine.Workflow{p.w}}
				if tc.rerun {
					trig = engine.Rerun{Request: conductor.RerunWorkflowRequest{ReRunFromTaskID: kid.task("k").ID}, UpTo: p.w.ID,
						Ancestors: []*engine.Workflow{p.w}}
				}
				reopen := effectsOf[engine.ReopenParent](kid.decide(trig))
				if len(reopen) != 1 || reopen[0].ParentWorkflowID != p.w.ID {
					t.Fatalf("reopen effects %+v", reopen)
				}
				return reopen[0].Child
			}
			timesOut()
			news := runAgain()
			p.decide(news)
			p.wantStatus(conductor.WorkflowRunning)
			if ct := p.wantTask("sw", conductor.TaskInProgress); ct.SubWorkflowID != kid.w.ID {
				t.Fatalf("the task waits for %s, want %s", ct.SubWorkflowID, kid.w.ID)
			}
			timesOut()

			kid.now = p.now
			again := effectsOf[engine.ReopenParent](engine.Decision{Effects: engine.Effects(kid.w, kid.now.UnixMilli())})
			if len(again) != 1 || !reflect.DeepEqual(again[0].Child, news) {
				t.Fatalf("recovery's reopen effects %+v, want the news again: %+v", again, news)
			}
			if d := p.decide(again[0].Child); len(d.Events) != 0 || len(d.Effects) != 0 {
				t.Fatalf("the parent acted again on news it acted on before its end: %s", describe(d))
			}
			p.wantStatus(conductor.WorkflowTimedOut)

			p.decide(runAgain())
			p.wantStatus(conductor.WorkflowRunning)
			p.wantTask("sw", conductor.TaskInProgress)
		})
	}
}

// TestGrandchildRunAgainReopensOnce pins the same up a chain: a
// grandparent whose SUB_WORKFLOW task timed out while the workflow below
// ran on (past its permissive task's failure, or paused holding it back)
// runs again for a grandchild an operator retried after that end, the
// news coming through the workflow below, which was not reset itself;
// timed out again, it ignores the news recovery sends again.
func TestGrandchildRunAgainReopensOnce(t *testing.T) {
	const (
		topDef  = `{"name":"top","tasks":[{"name":"mid","taskReferenceName":"mid","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"mid"},"taskDefinition":{"name":"mid","timeoutSeconds":60,"timeoutPolicy":"TIME_OUT_WF","responseTimeoutSeconds":30,"retryCount":0}}]}`
		midDef  = `{"name":"mid","tasks":[{"name":"leaf","taskReferenceName":"leaf","type":"SUB_WORKFLOW","permissive":%t,"subWorkflowParam":{"name":"leaf"}},{"name":"b","taskReferenceName":"b"}]}`
		leafDef = `{"name":"leaf","tasks":[{"name":"k","taskReferenceName":"k"}]}`
	)
	for _, tc := range []struct {
		name       string
		permissive bool
		pause      bool
	}{
		{"mid ran on past its permissive task", true, false},
		{"mid paused, holding the failure back", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			top := newHarness(t, topDef, nil)
			mid := top.startChild("mid", fmt.Sprintf(midDef, tc.permissive))
			leaf := mid.startChild("leaf", leafDef)
			at := func(d time.Duration) {
				top.advance(d)
				mid.now, leaf.now = top.now, top.now
			}
			timesOut := func() {
				t.Helper()
				at(61 * time.Second)
				top.decide(engine.Tick{})
				top.wantStatus(conductor.WorkflowTimedOut)
			}
			timesOut()
			at(time.Second)
			if tc.pause {
				mid.decide(engine.Pause{})
			}
			leaf.report("k", conductor.TaskFailedWithTerminalError, nil, "down")
			tellEnd(mid, leaf)
			at(time.Minute)
			if n := reopenUp(leaf.decide(engine.Retry{Ancestors: []*engine.Workflow{mid.w, top.w}}), mid, top); n != 2 {
				t.Fatalf("%d ancestors took the news, want 2", n)
			}
			top.wantStatus(conductor.WorkflowRunning)
			top.wantTask("mid", conductor.TaskInProgress)
			timesOut()

			recorded := len(top.history)
			again := engine.Decision{Effects: engine.Effects(leaf.w, leaf.now.UnixMilli())}
			if n := reopenUp(again, mid, top); n != 2 {
				t.Fatalf("recovery's news reached %d ancestors, want 2", n)
			}
			if n := len(top.history) - recorded; n != 0 || top.w.Status != conductor.WorkflowTimedOut {
				t.Fatalf("the grandparent, %s, recorded %d decisions for news it acted on before its end: tasks %v", top.w.Status, n, top.refs())
			}
		})
	}
}
