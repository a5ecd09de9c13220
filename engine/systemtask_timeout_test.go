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
	reason := timeoutReason
	httpTask := func(inline string) string {
		return `{"name":"h","tasks":[{"name":"http_call","taskReferenceName":"call","type":"HTTP",
		  "inputParameters":{"http_request":{"uri":"http://x","method":"GET"}}` + inline + `}]}`
	}
	// taskDef is the definition of a task named name (http_call if empty).
	taskDef := func(name string, timeout int, policy, more string) string {
		return timeoutTaskDef(cmp.Or(name, "http_call"), timeout, policy, more)
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

// timeoutReason is a task's reason for its timeoutSeconds, Conductor's.
func timeoutReason(after, timeout int, policy string) string {
	return fmt.Sprintf("Task timed out after %d seconds. Timeout configured as %d seconds. Timeout policy configured to %s",
		after, timeout, policy)
}

// timeoutTaskDef is the definition of a task named name with a
// timeoutSeconds, a timeoutPolicy and more fields.
func timeoutTaskDef(name string, timeout int, policy, more string) string {
	return fmt.Sprintf(`{"name":%q,"timeoutSeconds":%d,"timeoutPolicy":%q,"responseTimeoutSeconds":1%s}`, name, timeout, policy, more)
}

// TestPendingControlTaskTimesOut pins that a JOIN, an EXCLUSIVE_JOIN, a
// DO_WHILE and a START_WORKFLOW are held to their task definition's
// timeoutSeconds (a definition registered under the task's name, or an
// inline taskDefinition), counted from their start, as Conductor's decider
// holds every pending task with a definition
// (DeciderService.checkTaskTimeout): under TIME_OUT_WF the workflow times
// out; a JOIN or DO_WHILE under RETRY is TIMED_OUT and, built in, never
// retried, so the workflow times out, unless it is optional
// (COMPLETED_WITH_ERRORS, the workflow goes on); a START_WORKFLOW under
// RETRY starts again. A DO_WHILE is held while its body runs and while its
// condition does; what runs of its body when it times out is canceled, by
// the workflow's end or, for an optional loop the workflow goes on past, at
// once (before, it ran on, the rest of its iteration scheduled after it,
// and the workflow waited for it). ALERT_ONLY does nothing, a paused
// workflow's task waits for resume, and the definition's
// responseTimeoutSeconds does not apply (Conductor's response timeout
// spares them: see README, Retries and timeouts). Before, a JOIN waited for
// ever past its timeout, and a loop's applied only while its condition
// waited to be handed out.
func TestPendingControlTaskTimesOut(t *testing.T) {
	reason, taskDef := timeoutReason, timeoutTaskDef
	join := func(more string) string {
		return `{"name":"j","tasks":[
		  {"name":"fork","taskReferenceName":"fork","type":"FORK_JOIN","forkTasks":[[{"name":"p","taskReferenceName":"p"}],[{"name":"q","taskReferenceName":"q"}]]},
		  {"name":"join_all","taskReferenceName":"join","type":"JOIN","joinOn":["p","q"]` + more + `},
		  {"name":"after","taskReferenceName":"after"}]}`
	}
	loop := `{"name":"l","tasks":[{"name":"looping","taskReferenceName":"loop","type":"DO_WHILE",
	  "loopCondition":"$.loop['iteration'] < 3","loopOver":[{"name":"b","taskReferenceName":"b"}]}]}`
	// An optional loop of two steps, a task after it.
	optionalLoop := `{"name":"l","tasks":[{"name":"looping","taskReferenceName":"loop","type":"DO_WHILE","optional":true,
	  "loopCondition":"$.loop['iteration'] < 3","loopOver":[{"name":"b","taskReferenceName":"b"},{"name":"c","taskReferenceName":"c"}]},
	  {"name":"after","taskReferenceName":"after"}]}`
	// The EXCLUSIVE_JOIN is scheduled once the JOIN on p completes, and
	// waits for q.
	exclusive := func(more string) string {
		return `{"name":"e","tasks":[
		  {"name":"fork","taskReferenceName":"fork","type":"FORK_JOIN","forkTasks":[[{"name":"p","taskReferenceName":"p"}],[{"name":"q","taskReferenceName":"q"}]]},
		  {"name":"join_p","taskReferenceName":"join","type":"JOIN","joinOn":["p"]},
		  {"name":"join_one","taskReferenceName":"ej","type":"EXCLUSIVE_JOIN","joinOn":["q"]` + more + `},
		  {"name":"after","taskReferenceName":"after"}]}`
	}
	completeP := func(h *harness) { h.complete("p", nil) }
	takeBody := func(h *harness) { h.take("b__1") }
	starter := `{"name":"s","tasks":[{"name":"starter","taskReferenceName":"start","type":"START_WORKFLOW",
	  "inputParameters":{"startWorkflow":{"name":"other","version":1}}}]}`
	for _, tc := range []struct {
		name     string
		def      string
		taskDefs []string
		// ref is the task held to its timeout.
		ref string
		// at brings the task where it is held, from the workflow's start.
		at func(h *harness)
		// pause pauses the workflow then.
		pause bool
		// after is how long after the task's start the tick comes.
		after time.Duration
		// due: the timeout is among the workflow's deadlines.
		due bool
		// state and reason are the task's after the tick, status the
		// workflow's.
		state, reason, status string
		// next is a task the workflow went on to, SCHEDULED; ends are the
		// tasks that end after it, in another branch.
		next string
		ends []string
		// canceled are the tasks of a loop's iteration the timeout
		// canceled, with that reason.
		canceled []string
		why      string
		// restarted: a new instance of the task starts its workflow again.
		restarted bool
	}{
		{name: "a JOIN, TIME_OUT_WF", def: join(""), taskDefs: []string{taskDef("join_all", 60, "TIME_OUT_WF", "")}, ref: "join",
			after: time.Minute, due: true, state: conductor.TaskTimedOut, reason: reason(60, 60, "TIME_OUT_WF"), status: conductor.WorkflowTimedOut},
		{name: "a JOIN, not before its time nor by its response timeout", def: join(""), taskDefs: []string{taskDef("join_all", 60, "TIME_OUT_WF", "")},
			ref: "join", after: 59 * time.Second, due: true, state: conductor.TaskInProgress, status: conductor.WorkflowRunning},
		{name: "a JOIN's inline taskDefinition", def: join(`,"taskDefinition":` + taskDef("join_all", 30, "TIME_OUT_WF", "")), ref: "join",
			after: 31 * time.Second, due: true, state: conductor.TaskTimedOut, reason: reason(31, 30, "TIME_OUT_WF"), status: conductor.WorkflowTimedOut},
		{name: "a JOIN under RETRY is not retried", def: join(""), taskDefs: []string{taskDef("join_all", 60, "RETRY", `,"retryCount":2,"retryDelaySeconds":0`)},
			ref: "join", after: time.Minute, due: true, state: conductor.TaskTimedOut, reason: reason(60, 60, "RETRY"), status: conductor.WorkflowTimedOut},
		{name: "an optional JOIN under RETRY lets the workflow go on", def: join(`,"optional":true`),
			taskDefs: []string{taskDef("join_all", 60, "RETRY", `,"retryCount":2,"retryDelaySeconds":0`)}, ref: "join", after: time.Minute, due: true,
			state: conductor.TaskCompletedWithErrors, reason: reason(60, 60, "RETRY"), status: conductor.WorkflowRunning, next: "after", ends: []string{"p", "q"}},
		{name: "an EXCLUSIVE_JOIN, TIME_OUT_WF", def: exclusive(""), taskDefs: []string{taskDef("join_one", 60, "TIME_OUT_WF", "")}, ref: "ej",
			at: completeP, after: time.Minute, due: true, state: conductor.TaskTimedOut, reason: reason(60, 60, "TIME_OUT_WF"), status: conductor.WorkflowTimedOut},
		{name: "an EXCLUSIVE_JOIN, not before its time", def: exclusive(""), taskDefs: []string{taskDef("join_one", 60, "TIME_OUT_WF", "")}, ref: "ej",
			at: completeP, after: 59 * time.Second, due: true, state: conductor.TaskInProgress, status: conductor.WorkflowRunning},
		{name: "an optional EXCLUSIVE_JOIN under RETRY lets the workflow go on", def: exclusive(`,"optional":true`),
			taskDefs: []string{taskDef("join_one", 60, "RETRY", `,"retryCount":2,"retryDelaySeconds":0`)}, ref: "ej", at: completeP, after: time.Minute, due: true,
			state: conductor.TaskCompletedWithErrors, reason: reason(60, 60, "RETRY"), status: conductor.WorkflowRunning, next: "after", ends: []string{"q"}},
		{name: "a JOIN under ALERT_ONLY", def: join(""), taskDefs: []string{taskDef("join_all", 60, "ALERT_ONLY", "")}, ref: "join",
			after: time.Hour, state: conductor.TaskInProgress, status: conductor.WorkflowRunning},
		{name: "a paused workflow's JOIN waits for resume", def: join(""), taskDefs: []string{taskDef("join_all", 60, "TIME_OUT_WF", "")}, ref: "join",
			pause: true, after: time.Hour, state: conductor.TaskInProgress, status: conductor.WorkflowPaused},
		{name: "a DO_WHILE while its body runs", def: loop, taskDefs: []string{taskDef("looping", 60, "TIME_OUT_WF", "")}, ref: "loop",
			after: time.Minute, due: true, state: conductor.TaskTimedOut, reason: reason(60, 60, "TIME_OUT_WF"), status: conductor.WorkflowTimedOut,
			canceled: []string{"b__1"}, why: "workflow TIMED_OUT"},
		{name: "a DO_WHILE under RETRY while its body runs", def: loop, taskDefs: []string{taskDef("looping", 60, "RETRY", "")}, ref: "loop",
			at: takeBody, after: time.Minute, due: true, state: conductor.TaskTimedOut, reason: reason(60, 60, "RETRY"), status: conductor.WorkflowTimedOut,
			canceled: []string{"b__1"}, why: "workflow TIMED_OUT"},
		{name: "an optional DO_WHILE's body is canceled and the workflow goes on", def: optionalLoop, taskDefs: []string{taskDef("looping", 60, "RETRY", "")},
			ref: "loop", at: takeBody, after: time.Minute, due: true, state: conductor.TaskCompletedWithErrors, reason: reason(60, 60, "RETRY"),
			status: conductor.WorkflowRunning, next: "after", canceled: []string{"b__1"}, why: "DO_WHILE loop timed out"},
		{name: "an optional DO_WHILE's scheduled body is canceled", def: optionalLoop, taskDefs: []string{taskDef("looping", 60, "RETRY", "")},
			ref: "loop", after: time.Minute, due: true, state: conductor.TaskCompletedWithErrors, reason: reason(60, 60, "RETRY"),
			status: conductor.WorkflowRunning, next: "after", canceled: []string{"b__1"}, why: "DO_WHILE loop timed out"},
		{name: "an optional DO_WHILE in its second step", def: optionalLoop, taskDefs: []string{taskDef("looping", 60, "RETRY", "")}, ref: "loop",
			at: func(h *harness) {
				h.complete("b__1", nil)
				h.take("c__1")
			},
			after: time.Minute, due: true, state: conductor.TaskCompletedWithErrors, reason: reason(60, 60, "RETRY"),
			status: conductor.WorkflowRunning, next: "after", canceled: []string{"c__1"}, why: "DO_WHILE loop timed out"},
		{name: "a DO_WHILE while its condition runs", def: loop, taskDefs: []string{taskDef("looping", 60, "RETRY", "")}, ref: "loop",
			at: func(h *harness) {
				h.advance(10 * time.Second)
				h.complete("b__1", nil)
				h.systemTake("loop")
			},
			after: time.Minute, due: true, state: conductor.TaskTimedOut, reason: reason(60, 60, "RETRY"), status: conductor.WorkflowTimedOut},
		{name: "a DO_WHILE in its second iteration", def: loop, taskDefs: []string{taskDef("looping", 60, "TIME_OUT_WF", "")}, ref: "loop",
			at: func(h *harness) {
				h.complete("b__1", nil)
				h.system("loop", conductor.TaskInProgress, nil, "")
				h.wantTask("b__2", conductor.TaskScheduled)
			},
			after: 61 * time.Second, due: true, state: conductor.TaskTimedOut, reason: reason(61, 60, "TIME_OUT_WF"), status: conductor.WorkflowTimedOut},
		{name: "a START_WORKFLOW waiting for its start", def: starter, taskDefs: []string{taskDef("starter", 10, "TIME_OUT_WF", "")}, ref: "start",
			after: 10 * time.Second, due: true, state: conductor.TaskTimedOut, reason: reason(10, 10, "TIME_OUT_WF"), status: conductor.WorkflowTimedOut},
		{name: "a START_WORKFLOW under RETRY starts again", def: starter,
			taskDefs: []string{taskDef("starter", 10, "RETRY", `,"retryCount":1,"retryDelaySeconds":0`)}, ref: "start", after: 10 * time.Second, due: true,
			state: conductor.TaskTimedOut, reason: reason(10, 10, "RETRY"), status: conductor.WorkflowRunning, restarted: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, tc.def, nil, tc.taskDefs...)
			if tc.at != nil {
				tc.at(h)
			}
			held := h.task(tc.ref)
			started := time.UnixMilli(held.StartTime)
			if held.StartTime == 0 {
				t.Fatalf("%s not started: %+v", tc.ref, held)
			}
			if tc.pause {
				h.decide(engine.Pause{})
			}
			h.now = started.Add(tc.after)
			deadline := started.Add(time.Duration(policyTimeout(h, tc.ref)) * time.Second).UnixMilli()
			if got := slices.Contains(engine.Deadlines(h.w), deadline); got != tc.due {
				t.Fatalf("timeout among the deadlines %v: %v, want %v", engine.Deadlines(h.w), got, tc.due)
			}
			d := h.decide(engine.Tick{})
			first := h.w.TaskByID(held.ID)
			if first.Status != tc.state || first.Reason != tc.reason {
				t.Fatalf("%s %s (%q), want %s (%q); tasks %v", tc.ref, first.Status, first.Reason, tc.state, tc.reason, h.refs())
			}
			h.wantStatus(tc.status)
			if tc.status == conductor.WorkflowTimedOut && h.w.Reason != tc.reason {
				t.Fatalf("workflow reason %q, want the task's %q", h.w.Reason, tc.reason)
			}
			// What a loop's iteration left running ended with the loop:
			// the workflow went on, or ended, without it.
			for _, ref := range tc.canceled {
				if c := h.wantTask(ref, conductor.TaskCanceled); c.Reason != tc.why {
					t.Fatalf("%s canceled as %q, want %q", ref, c.Reason, tc.why)
				}
			}
			for _, x := range h.w.Tasks {
				if x.Iteration > 0 && x.Active() && conductor.TaskTerminal(tc.state) {
					t.Fatalf("%s %s after its loop ended; tasks %v", x.Ref, x.Status, h.refs())
				}
			}
			if tc.status == conductor.WorkflowRunning {
				// Its worker's late report changes nothing: the next step
				// of the iteration is not scheduled.
				for _, ref := range tc.canceled {
					before := len(h.w.Tasks)
					d, _ := h.try(engine.Result{Result: conductor.TaskResult{TaskID: h.task(ref).ID, WorkflowInstanceID: h.w.ID,
						Status: conductor.TaskCompleted}})
					if len(d.Events) != 0 || len(h.w.Tasks) != before {
						t.Fatalf("the late report of %s was taken: events %s; tasks %v", ref, describe(d), h.refs())
					}
				}
			}
			if tc.next != "" {
				// The branches the JOIN gave up on end as news no task
				// waits for; the workflow ends with the task after it.
				h.wantTask(tc.next, conductor.TaskScheduled)
				for _, ref := range tc.ends {
					h.complete(ref, nil)
				}
				h.wantTask(tc.ref, tc.state)
				h.complete(tc.next, nil)
				h.wantStatus(conductor.WorkflowCompleted)
			}
			// A built-in control task is never retried; a START_WORKFLOW
			// under RETRY is, and its new instance starts a new workflow.
			instances := 0
			for _, x := range h.w.Tasks {
				if x.Ref == tc.ref {
					instances++
				}
			}
			starts := effectsOf[engine.StartWorkflow](d)
			if want := map[bool]int{true: 2, false: 1}[tc.restarted]; instances != want || len(starts) != want-1 {
				t.Fatalf("%d instances of %s, starts %+v, want %d; tasks %v", instances, tc.ref, starts, want, h.refs())
			}
			if tc.restarted {
				again := h.task(tc.ref)
				if again.Status != conductor.TaskInProgress || again.RetryCount != 1 || starts[0].StartTaskID != again.ID ||
					starts[0].WorkflowID == first.Output["workflowId"] {
					t.Fatalf("new instance %+v, start %+v", again, starts[0])
				}
			}
			if tc.ref != "start" || tc.state == conductor.TaskInProgress {
				return
			}
			// The start under way reports: late news, changing nothing.
			before := h.w.Status
			d, err := h.try(engine.Result{Result: conductor.TaskResult{TaskID: held.ID, WorkflowInstanceID: h.w.ID,
				Status: conductor.TaskCompleted, OutputData: map[string]any{"workflowId": first.Output["workflowId"]}}})
			if r, ok := d.Reply.(engine.ResultReply); err == nil && (!ok || !r.Ignored || len(d.Events) != 0) {
				t.Fatalf("the late start's report was taken: reply %+v, events %s", d.Reply, describe(d))
			}
			if h.w.TaskByID(held.ID).Status != tc.state || h.w.Status != before {
				t.Fatalf("after the late start's report: task %s, workflow %s", h.w.TaskByID(held.ID).Status, h.w.Status)
			}
		})
	}
}

// policyTimeout is the timeoutSeconds task ref was scheduled under.
func policyTimeout(h *harness, ref string) int64 {
	return int64(h.task(ref).Policy.TimeoutSeconds)
}

// TestTimedOutLoopsIterationStaysEnded pins what becomes of the iteration
// an optional DO_WHILE gave up on as it timed out (its running tasks
// canceled, the workflow gone on past the loop): a retry of the workflow,
// or a rerun from a task after the loop, does not run them again, since
// no loop waits for them, and a SUB_WORKFLOW among them has its child
// terminated, whose retry does not reopen the task. A permissive loop's
// iteration is canceled too, but the loop, TIMED_OUT, is run again by a
// retry, and its iteration with it.
func TestTimedOutLoopsIterationStaysEnded(t *testing.T) {
	def := func(more string, body string) string {
		return `{"name":"l","tasks":[{"name":"looping","taskReferenceName":"loop","type":"DO_WHILE"` + more + `,
		  "loopCondition":"$.loop['iteration'] < 3","loopOver":[` + body + `]},
		  {"name":"after","taskReferenceName":"after"}]}`
	}
	steps := `{"name":"b","taskReferenceName":"b"},{"name":"c","taskReferenceName":"c"}`
	child := `{"name":"kid","taskReferenceName":"b","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"kid"}}`
	// A fork whose JOIN the loop's timeout cancels with its branches.
	fork := `{"name":"fork","taskReferenceName":"fork","type":"FORK_JOIN","forkTasks":[[{"name":"b","taskReferenceName":"b"}],[{"name":"c","taskReferenceName":"c"}]]},
	  {"name":"join","taskReferenceName":"join","type":"JOIN","joinOn":["b","c"]}`
	defs := []string{timeoutTaskDef("looping", 60, "RETRY", ""), `{"name":"after","retryCount":0}`}
	for _, tc := range []struct {
		name, def string
		// again runs the ended workflow again.
		again func(h *harness)
		// rerun: the iteration runs again, in the loop reopened.
		rerun bool
	}{
		{name: "retry", def: def(`,"optional":true`, steps), again: func(h *harness) { h.decide(engine.Retry{}) }},
		{name: "rerun from the task after the loop", def: def(`,"optional":true`, steps), again: func(h *harness) {
			h.decide(engine.Rerun{Request: conductor.RerunWorkflowRequest{ReRunFromTaskID: h.task("after").ID}})
		}},
		{name: "rerun from the task after a loop of a fork", def: def(`,"optional":true`, fork), again: func(h *harness) {
			h.decide(engine.Rerun{Request: conductor.RerunWorkflowRequest{ReRunFromTaskID: h.task("after").ID}})
		}},
		{name: "a permissive loop's retry", def: def(`,"permissive":true`, steps), again: func(h *harness) { h.decide(engine.Retry{}) }, rerun: true},
		{name: "a child's retry", def: def(`,"optional":true`, child), again: func(h *harness) {
			h.advance(time.Second)
			if d := h.decide(engine.ChildReopened{ChildID: h.task("b__1").SubWorkflowID, ResetTime: h.now.UnixMilli()}); len(d.Events) != 0 {
				t.Fatalf("the child's retry reopened its task: %s", describe(d))
			}
			h.decide(engine.Retry{})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, tc.def, nil, defs...)
			body := h.task("b__1")
			if body.Type != conductor.TaskTypeSubWorkflow {
				h.take("b__1")
			}
			h.now = time.UnixMilli(h.task("loop").StartTime).Add(time.Minute)
			d := h.decide(engine.Tick{})
			h.wantTask("b__1", conductor.TaskCanceled)
			h.wantStatus(conductor.WorkflowRunning)
			if body.SubWorkflowID != "" {
				if got := effectsOf[engine.TerminateWorkflow](d); len(got) != 1 || got[0].WorkflowID != body.SubWorkflowID {
					t.Fatalf("terminate effects %+v, want the child %s terminated", got, body.SubWorkflowID)
				}
				// Recovery terminates it again, in case that was lost.
				if got := effectsOf[engine.TerminateWorkflow](h.decide(engine.Reconcile{})); len(got) != 1 || got[0].WorkflowID != body.SubWorkflowID {
					t.Fatalf("recovery's terminate effects %+v", got)
				}
			}
			h.report("after", conductor.TaskFailed, nil, "down")
			h.wantStatus(conductor.WorkflowFailed)
			// A retry with resumeSubworkflowTasks looks here for the child
			// to retry: not one of the iteration given up on.
			if f := h.w.FirstFailed(); !tc.rerun && (f == nil || f.Ref != "after") {
				t.Fatalf("first failed task %+v, want after", f)
			}
			tc.again(h)
			h.wantStatus(conductor.WorkflowRunning)
			instances := 0
			for _, x := range h.w.Tasks {
				if x.Ref == "b__1" {
					instances++
				}
			}
			if !tc.rerun {
				if instances != 1 {
					t.Fatalf("the canceled iteration ran again: tasks %v", h.refs())
				}
				h.wantTask("after", conductor.TaskScheduled)
				h.complete("after", nil)
				h.wantStatus(conductor.WorkflowCompleted)
				return
			}
			if instances != 2 {
				t.Fatalf("the permissive loop's iteration did not run again: tasks %v", h.refs())
			}
			h.wantTask("loop", conductor.TaskInProgress)
			h.wantTask("b__1", conductor.TaskScheduled)
		})
	}
}

// TestPausedSystemTaskBetweenRunsWaitsForResume pins that a system task
// back in the queue between runs (its worker asked to be called back, as
// HTTP_POLL does, or its engine died and its lease ran out) is not timed
// out by its timeoutSeconds while its workflow is paused, as one under way
// is not: Conductor's decider returns for a paused workflow before it
// checks its tasks' timeouts. A tick while paused (the callback coming
// due) timed it out, and under TIME_OUT_WF timed the paused workflow out.
// It is handed out again, as Conductor's system task worker runs a paused
// workflow's tasks, and times out once the workflow is resumed.
func TestPausedSystemTaskBetweenRunsWaitsForResume(t *testing.T) {
	def := `{"name":"h","tasks":[{"name":"poll","taskReferenceName":"poll","type":"HTTP",
	  "inputParameters":{"http_request":{"uri":"http://x","method":"GET"}}}]}`
	for _, tc := range []struct {
		name string
		// back puts the taken task back in the queue.
		back func(h *harness, taken *engine.Task)
	}{
		{"called back", func(h *harness, taken *engine.Task) {
			h.decide(engine.Result{Lease: taken.PollCount, Result: conductor.TaskResult{TaskID: taken.ID, Status: conductor.TaskInProgress,
				WorkerID: "flowvault", CallbackAfterSeconds: 600}})
		}},
		{"its lease expired", func(h *harness, _ *engine.Task) {
			h.advance(engine.SystemTaskLease)
			h.decide(engine.Tick{})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, def, nil, timeoutTaskDef("poll", 400, "TIME_OUT_WF", ""))
			taken := h.systemTake("poll")
			started := h.now
			tc.back(h, taken)
			h.wantTask("poll", conductor.TaskScheduled)
			h.decide(engine.Pause{})
			h.advance(started.Add(600 * time.Second).Sub(h.now))
			d := h.decide(engine.Tick{})
			h.wantStatus(conductor.WorkflowPaused)
			wantRunSystem(t, d, h.wantTask("poll", conductor.TaskScheduled))
			h.decide(engine.Resume{})
			h.decide(engine.Tick{})
			h.wantTask("poll", conductor.TaskTimedOut)
			h.wantStatus(conductor.WorkflowTimedOut)
		})
	}
}
