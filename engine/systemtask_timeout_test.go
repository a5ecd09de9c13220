package engine_test

import (
	"cmp"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// TestHeldSystemTaskTimesOut pins that the timeoutSeconds of a system task
// an engine runs (an HTTP call, an INLINE script), from its task
// definition or an inline taskDefinition, bounds the run, as Conductor's
// decider times out a system task under way: the task is TIMED_OUT at
// its time, before its lease would run it again, under its timeoutPolicy
// (RETRY runs a new instance, TIME_OUT_WF times the workflow out), and
// the run's result, which comes after, is late news. Before, only the
// call's own timeouts and the 5-minute lease bounded it.
func TestHeldSystemTaskTimesOut(t *testing.T) {
	lease := engine.SystemTaskLease
	reason := func(after, timeout int, policy string) string {
		return fmt.Sprintf("Task timed out after %d seconds. Timeout configured as %d seconds. Timeout policy configured to %s",
			after, timeout, policy)
	}
	httpTask := func(inline string) string {
		return `{"name":"h","tasks":[{"name":"http_call","taskReferenceName":"call","type":"HTTP",
		  "inputParameters":{"http_request":{"uri":"http://x","method":"GET"}}` + inline + `}]}`
	}
	// taskDef is the definition of a task named name (http_call if empty).
	taskDef := func(name string, timeout int, policy, more string) string {
		return fmt.Sprintf(`{"name":%q,"timeoutSeconds":%d,"timeoutPolicy":%q,"responseTimeoutSeconds":1%s}`, cmp.Or(name, "http_call"), timeout, policy, more)
	}
	inline := `{"name":"h","tasks":[{"name":"script","taskReferenceName":"call","type":"INLINE",
	  "inputParameters":{"evaluatorType":"graaljs","expression":"1"}}]}`
	for _, tc := range []struct {
		name     string
		def      string // an HTTP task's, if empty
		taskDefs []string
		// pause pauses the workflow once the task runs.
		pause bool
		// after is how long after its start the tick comes.
		after time.Duration
		// deadlines are the workflow's while the task runs (from its start).
		deadlines []time.Duration
		// state and reason are the first instance's after the tick, status
		// the workflow's.
		state, reason, status string
		// retried: a new instance is handed to the system worker.
		retried bool
	}{
		{name: "TIME_OUT_WF times the workflow out", taskDefs: []string{taskDef("", 10, "TIME_OUT_WF", "")},
			after: 10 * time.Second, deadlines: []time.Duration{10 * time.Second, lease},
			state: conductor.TaskTimedOut, reason: reason(10, 10, "TIME_OUT_WF"), status: conductor.WorkflowTimedOut},
		{name: "not before its time", taskDefs: []string{taskDef("", 10, "TIME_OUT_WF", "")}, after: 9 * time.Second,
			deadlines: []time.Duration{10 * time.Second, lease}, state: conductor.TaskInProgress, status: conductor.WorkflowRunning},
		{name: "an inline taskDefinition", def: httpTask(`,"taskDefinition":` + taskDef("", 30, "TIME_OUT_WF", "")),
			after: 31 * time.Second, deadlines: []time.Duration{30 * time.Second, lease},
			state: conductor.TaskTimedOut, reason: reason(31, 30, "TIME_OUT_WF"), status: conductor.WorkflowTimedOut},
		{name: "RETRY runs a new instance", taskDefs: []string{taskDef("", 10, "RETRY", `,"retryCount":1,"retryDelaySeconds":0`)},
			after: 12 * time.Second, deadlines: []time.Duration{10 * time.Second, lease}, retried: true,
			state: conductor.TaskTimedOut, reason: reason(12, 10, "RETRY"), status: conductor.WorkflowRunning},
		{name: "due with the lease: timed out, not run again", taskDefs: []string{taskDef("", 300, "TIME_OUT_WF", `,"retryCount":0`)},
			after: lease, deadlines: []time.Duration{lease},
			state: conductor.TaskTimedOut, reason: reason(300, 300, "TIME_OUT_WF"), status: conductor.WorkflowTimedOut},
		{name: "an INLINE script", def: inline, taskDefs: []string{taskDef("script", 2, "TIME_OUT_WF", "")},
			after: 2 * time.Second, deadlines: []time.Duration{2 * time.Second, lease},
			state: conductor.TaskTimedOut, reason: reason(2, 2, "TIME_OUT_WF"), status: conductor.WorkflowTimedOut},
		{name: "ALERT_ONLY does nothing", taskDefs: []string{taskDef("", 10, "ALERT_ONLY", "")}, after: time.Minute,
			deadlines: []time.Duration{lease}, state: conductor.TaskInProgress, status: conductor.WorkflowRunning},
		{name: "a paused workflow's task waits for resume", taskDefs: []string{taskDef("", 10, "TIME_OUT_WF", "")}, pause: true,
			after: time.Minute, deadlines: []time.Duration{lease}, state: conductor.TaskInProgress, status: conductor.WorkflowPaused},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, cmp.Or(tc.def, httpTask("")), nil, tc.taskDefs...)
			h.advance(time.Second)
			taken := h.systemTake("call")
			started := h.now
			if tc.pause {
				h.decide(engine.Pause{})
			}
			var want []int64
			for _, d := range tc.deadlines {
				want = append(want, started.Add(d).UnixMilli())
			}
			if got := engine.Deadlines(h.w); !slices.Equal(got, want) {
				t.Fatalf("deadlines while it runs %v, want %v", got, want)
			}
			h.advance(tc.after)
			d := h.decide(engine.Tick{})
			first := h.w.TaskByID(taken.ID)
			if first.Status != tc.state || first.Reason != tc.reason {
				t.Fatalf("task %s (%q), want %s (%q); tasks %v", first.Status, first.Reason, tc.state, tc.reason, h.refs())
			}
			h.wantStatus(tc.status)
			if tc.status == conductor.WorkflowTimedOut && h.w.Reason != tc.reason {
				t.Fatalf("workflow reason %q, want the task's %q", h.w.Reason, tc.reason)
			}
			// A retry due at once is handed off once, as it is scheduled:
			// the tick's pass over the tasks does not hand it off again.
			runs := effectsOf[engine.RunSystem](d)
			if tc.retried != (len(runs) == 1) || len(runs) > 1 || slices.ContainsFunc(runs, func(r engine.RunSystem) bool { return r.TaskID == taken.ID }) {
				t.Fatalf("runs after the tick %+v, want a new instance: %v", runs, tc.retried)
			}
			if tc.state == conductor.TaskInProgress {
				return
			}
			// The run that overran reports: late news, changing nothing.
			before := h.w.Status
			d = h.decide(engine.Result{Lease: taken.PollCount, Result: conductor.TaskResult{TaskID: taken.ID, WorkflowInstanceID: h.w.ID,
				WorkerID: "flowvault", Status: conductor.TaskCompleted, OutputData: map[string]any{"late": true}}})
			if r, ok := d.Reply.(engine.ResultReply); !ok || !r.Ignored || len(d.Events) != 0 {
				t.Fatalf("the overrun's result was taken: reply %+v, events %s", d.Reply, describe(d))
			}
			if first := h.w.TaskByID(taken.ID); first.Status != tc.state || h.w.Status != before {
				t.Fatalf("after the overrun's result: task %s, workflow %s", first.Status, h.w.Status)
			}
			if !tc.retried {
				return
			}
			retry := h.task("call")
			if retry.ID == taken.ID || retry.RetryCount != 1 || slices.ContainsFunc(runs, func(r engine.RunSystem) bool { return r.TaskID != retry.ID }) {
				t.Fatalf("retry %+v, handed off %+v", retry, runs)
			}
			h.system("call", conductor.TaskCompleted, map[string]any{"response": map[string]any{"statusCode": int64(200)}}, "")
			h.wantStatus(conductor.WorkflowCompleted)
		})
	}
}
