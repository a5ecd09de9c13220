package engine_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
)

const threeSimple = `{"name":"three","version":1,"tasks":[
 {"name":"a","taskReferenceName":"a_ref","type":"SIMPLE","inputParameters":{"n":"${workflow.input.n}","label":"n=${workflow.input.n}"}},
 {"name":"b","taskReferenceName":"b_ref","type":"SIMPLE","inputParameters":{"fromA":"${a_ref.output.items[1]}","whole":"${a_ref.output}"}},
 {"name":"c","taskReferenceName":"c_ref","inputParameters":{"wf":"${workflow.workflowId}","corr":"${workflow.correlationId}","escaped":"$${workflow.input.n}"}}],
 "outputParameters":{"sum":"${c_ref.output.sum}","a":"${a_ref.output.items}"}}`

func TestSimpleSequence(t *testing.T) {
	h := newHarness(t, threeSimple, map[string]any{"n": int64(7)})
	h.wantRefs("a_ref")
	a := h.wantTask("a_ref", conductor.TaskScheduled)
	if got := a.Input; !reflect.DeepEqual(got, map[string]any{"n": int64(7), "label": "n=7"}) {
		t.Fatalf("a input = %#v", got)
	}
	if ds := effectsOf[engine.Dispatch](h.last); len(ds) != 1 || ds[0].TaskType != "a" || ds[0].TaskID != a.ID {
		t.Fatalf("dispatch effects = %+v", ds)
	}
	taken := h.take("a_ref")
	if taken.Status != conductor.TaskInProgress || taken.WorkerID != "w1" || taken.PollCount != 1 {
		t.Fatalf("taken = %+v", taken)
	}
	h.complete("a_ref", map[string]any{"items": []any{"x", "y"}})
	b := h.wantTask("b_ref", conductor.TaskScheduled)
	if b.Input["fromA"] != "y" || !reflect.DeepEqual(b.Input["whole"], map[string]any{"items": []any{"x", "y"}}) {
		t.Fatalf("b input = %#v", b.Input)
	}
	h.complete("b_ref", nil)
	c := h.wantTask("c_ref", conductor.TaskScheduled)
	if c.Input["wf"] != "wf-1" || c.Input["corr"] != "corr-1" || c.Input["escaped"] != "${workflow.input.n}" {
		t.Fatalf("c input = %#v", c.Input)
	}
	h.complete("c_ref", map[string]any{"sum": int64(42)})
	h.wantStatus(conductor.WorkflowCompleted)
	if want := map[string]any{"sum": int64(42), "a": []any{"x", "y"}}; !reflect.DeepEqual(h.w.Output, want) {
		t.Fatalf("output = %#v, want %#v", h.w.Output, want)
	}
	if h.w.EndTime == 0 {
		t.Fatal("no end time")
	}
}

func TestTakeRules(t *testing.T) {
	h := newHarness(t, threeSimple, nil)
	id := h.task("a_ref").ID
	tests := []struct {
		name string
		trig engine.Take
		want error
	}{
		{"unknown task", engine.Take{TaskID: "nope"}, fault.ErrNotFound},
		{"other queue", engine.Take{TaskID: id, TaskType: "b"}, fault.ErrNotFound},
		{"system worker on a worker task", engine.Take{TaskID: id, System: true}, engine.ErrTaskGone},
	}
	for _, tt := range tests {
		_, err := h.try(tt.trig)
		if err == nil || !errorsIs(err, tt.want) {
			t.Errorf("%s: err = %v, want %v", tt.name, err, tt.want)
		}
	}
	h.take("a_ref")
	if _, err := h.try(engine.Take{TaskID: id, WorkerID: "w2"}); !errorsIs(err, engine.ErrTaskGone) {
		t.Fatalf("second take: %v", err)
	}
}

func TestLateAndDuplicateResults(t *testing.T) {
	h := newHarness(t, threeSimple, nil)
	h.complete("a_ref", map[string]any{"v": int64(1)})
	d := h.complete("a_ref", map[string]any{"v": int64(2)})
	if len(d.Events) != 0 || d.Reply != (engine.ResultReply{Ignored: true}) {
		t.Fatalf("duplicate result: events %d reply %+v", len(d.Events), d.Reply)
	}
	if h.task("a_ref").Output["v"] != int64(1) {
		t.Fatal("duplicate result changed the output")
	}
	// A worker re-sends a result whose answer it missed, logs and all:
	// nothing of it is recorded again.
	d = h.decide(engine.Result{Result: conductor.TaskResult{TaskID: h.task("a_ref").ID, Status: conductor.TaskCompleted,
		Logs: []conductor.TaskExecLog{{Log: "again"}}}})
	if len(d.Events) != 0 || d.Reply != (engine.ResultReply{Ignored: true}) {
		t.Fatalf("repeated result with logs: events %v reply %+v", d.Events, d.Reply)
	}
	_, err := h.try(engine.Result{Result: conductor.TaskResult{TaskID: "ghost", Status: conductor.TaskCompleted}})
	wantErr(t, err, fault.ErrNotFound)
	_, err = h.try(engine.Result{Result: conductor.TaskResult{TaskID: h.task("b_ref").ID, Status: "DONE"}})
	wantErr(t, err, fault.ErrInvalid)
}

// A DECISION's output also holds Conductor's caseOutput, the case in a
// list, which definitions written for Conductor read; a SWITCH's does not,
// as Conductor's.
func TestDecisionCaseOutput(t *testing.T) {
	for _, typ := range []string{conductor.TaskTypeDecision, conductor.TaskTypeSwitch} {
		h := newHarness(t, `{"name":"d","tasks":[
		 {"name":"route","taskReferenceName":"route","type":"`+typ+`","caseValueParam":"c","expression":"c",
		  "inputParameters":{"c":"${workflow.input.c}"},
		  "decisionCases":{"a":[{"name":"x","taskReferenceName":"x"}]}},
		 {"name":"after","taskReferenceName":"after","inputParameters":{"chose":"${route.output.caseOutput[0]}"}}]}`,
			map[string]any{"c": "a"})
		want := map[string]any{"evaluationResult": []any{"a"}, "selectedCase": "a"}
		if typ == conductor.TaskTypeDecision {
			want["caseOutput"] = []any{"a"}
		}
		wantOutput(t, h.wantTask("route", conductor.TaskCompleted), want)
		h.complete("x", nil)
		if got, want := h.wantTask("after", conductor.TaskScheduled).Input["chose"], want["caseOutput"]; (want == nil) != (got == nil) {
			t.Fatalf("%s: after's input chose = %v", typ, got)
		}
	}
}

func TestSwitchValueParam(t *testing.T) {
	def := `{"name":"sw","tasks":[
	 {"name":"route","taskReferenceName":"route","type":"SWITCH","evaluatorType":"value-param","expression":"carrier",
	  "inputParameters":{"carrier":"${workflow.input.carrier}"},
	  "decisionCases":{"ups":[{"name":"ship_ups","taskReferenceName":"ups"},{"name":"label","taskReferenceName":"label"}],
	                   "true":[{"name":"flag","taskReferenceName":"flag"}],
	                   "empty":[]},
	  "defaultCase":[{"name":"ship_other","taskReferenceName":"other"}]},
	 {"name":"after","taskReferenceName":"after"}]}`
	tests := []struct {
		carrier  any
		want     []string
		selected string
	}{
		{"ups", []string{"route", "ups", "label", "after"}, "ups"},
		{"dhl", []string{"route", "other", "after"}, "dhl"},
		{true, []string{"route", "flag", "after"}, "true"},
		// An empty case takes the default case, as in Conductor.
		{"empty", []string{"route", "other", "after"}, "empty"},
		{nil, []string{"route", "other", "after"}, "null"},
		{int64(7), []string{"route", "other", "after"}, "7"},
		// An object's case is its JSON, as a script SWITCH reports it.
		{map[string]any{"a": int64(1)}, []string{"route", "other", "after"}, `{"a":1}`},
	}
	for _, tt := range tests {
		h := newHarness(t, def, map[string]any{"carrier": tt.carrier})
		sw := h.wantTask("route", conductor.TaskCompleted)
		if sw.Output["selectedCase"] != tt.selected || !reflect.DeepEqual(sw.Output["evaluationResult"], []any{tt.selected}) {
			t.Fatalf("%v: switch output %v", tt.carrier, sw.Output)
		}
		for _, ref := range tt.want[1:] {
			h.complete(ref, nil)
		}
		h.wantRefs(tt.want...)
		h.wantStatus(conductor.WorkflowCompleted)
	}
}

const forkJoin = `{"name":"fj","tasks":[
 {"name":"fork","taskReferenceName":"fork","type":"FORK_JOIN","forkTasks":[
   [{"name":"a","taskReferenceName":"a"},{"name":"a2","taskReferenceName":"a2"}],
   [{"name":"b","taskReferenceName":"b"}]]},
 {"name":"join","taskReferenceName":"join","type":"JOIN","joinOn":["a2","b"]},
 {"name":"z","taskReferenceName":"z","inputParameters":{"fromJoin":"${join.output.b.v}"}}]}`

func TestForkJoin(t *testing.T) {
	h := newHarness(t, forkJoin, nil)
	h.wantRefs("fork", "a", "b", "join")
	h.wantTask("join", conductor.TaskInProgress)
	if got := len(effectsOf[engine.Dispatch](h.last)); got != 2 {
		t.Fatalf("dispatched %d tasks, want 2 (both branches)", got)
	}
	h.complete("b", map[string]any{"v": "from-b"})
	h.wantTask("join", conductor.TaskInProgress)
	h.complete("a", nil)
	h.wantTask("join", conductor.TaskInProgress)
	h.complete("a2", map[string]any{"v": int64(2)})
	j := h.wantTask("join", conductor.TaskCompleted)
	if !reflect.DeepEqual(j.Output, map[string]any{"a2": map[string]any{"v": int64(2)}, "b": map[string]any{"v": "from-b"}}) {
		t.Fatalf("join output = %v", j.Output)
	}
	if h.wantTask("z", conductor.TaskScheduled).Input["fromJoin"] != "from-b" {
		t.Fatal("z did not read the join output")
	}
	h.complete("z", nil)
	h.wantStatus(conductor.WorkflowCompleted)
}

// A JOIN that joins an optional task that failed (COMPLETED_WITH_ERRORS)
// is COMPLETED_WITH_ERRORS itself once every task it joins ended, its
// reason naming each such task, as Conductor's Join is; the workflow goes
// on. A JOIN that joins that JOIN is COMPLETED: only optional tasks count.
func TestJoinOfAFailedOptionalTask(t *testing.T) {
	nested := `{"name":"fj","tasks":[
	 {"name":"fork","taskReferenceName":"fork","type":"FORK_JOIN","forkTasks":[
	   [{"name":"f2","taskReferenceName":"f2","type":"FORK_JOIN","forkTasks":[[{"name":"a","taskReferenceName":"a","optional":true}],[{"name":"c","taskReferenceName":"c"}]]},
	    {"name":"inner","taskReferenceName":"inner","type":"JOIN","joinOn":["a","c"]}],
	   [{"name":"b","taskReferenceName":"b"}]]},
	 {"name":"join","taskReferenceName":"join","type":"JOIN","joinOn":["inner","b"]},
	 {"name":"z","taskReferenceName":"z"}]}`
	dynamic := `{"name":"dyn","tasks":[
	 {"name":"fork","taskReferenceName":"fork","type":"FORK_JOIN_DYNAMIC","optional":true,
	  "inputParameters":{"forkTaskName":"a","forkTaskInputs":[{"n":1},{"n":2}]}},
	 {"name":"join","taskReferenceName":"join","type":"JOIN"},
	 {"name":"z","taskReferenceName":"z"}]}`
	// Conductor marks the tasks optional in the forkTaskInputs form alone;
	// flowvault in both.
	dynamicList := `{"name":"dynl","tasks":[
	 {"name":"fork","taskReferenceName":"fork","type":"FORK_JOIN_DYNAMIC","optional":true,"dynamicForkTasksParam":"tasks",
	  "inputParameters":{"tasks":[{"name":"a","taskReferenceName":"a1"},{"name":"a","taskReferenceName":"a2"}]}},
	 {"name":"join","taskReferenceName":"join","type":"JOIN"},
	 {"name":"z","taskReferenceName":"z"}]}`
	for _, tc := range []struct {
		name, def string
		failed    string   // the optional task that fails
		others    []string // the tasks that complete
		join      string   // the JOIN that takes the errors
		outer     string   // a JOIN that joins it, if any
	}{
		{"fork", nested, "a", []string{"c", "b"}, "inner", "join"},
		{"dynamic fork", dynamic, "_a_0", []string{"_a_1"}, "join", ""},
		{"dynamic fork of a task list", dynamicList, "a1", []string{"a2"}, "join", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, tc.def, nil, `{"name":"a","retryCount":0}`)
			h.report(tc.failed, conductor.TaskFailed, map[string]any{"partial": true}, "boom")
			h.wantTask(tc.failed, conductor.TaskCompletedWithErrors)
			h.wantTask(tc.join, conductor.TaskInProgress) // the others are still running
			for _, ref := range tc.others {
				h.complete(ref, map[string]any{"ref": ref})
			}
			j := h.wantTask(tc.join, conductor.TaskCompletedWithErrors)
			if want := "a/" + h.task(tc.failed).ID + " completed with errors"; j.Reason != want {
				t.Fatalf("join reason %q, want %q", j.Reason, want)
			}
			if got := j.Output[tc.failed]; !reflect.DeepEqual(got, map[string]any{"partial": true}) {
				t.Fatalf("join output of %s = %v", tc.failed, got)
			}
			if tc.outer != "" {
				h.wantTask(tc.outer, conductor.TaskCompleted)
			}
			h.complete("z", nil)
			h.wantStatus(conductor.WorkflowCompleted)
		})
	}
}

func TestForkBranchFailureFailsWorkflow(t *testing.T) {
	h := newHarness(t, forkJoin, nil, `{"name":"b","retryCount":0}`)
	h.report("b", conductor.TaskFailed, nil, "boom")
	h.wantStatus(conductor.WorkflowFailed)
	h.wantTask("a", conductor.TaskCanceled)
	h.wantTask("join", conductor.TaskCanceled)
	if !reflect.DeepEqual(h.w.FailedTaskRefs, []string{"b"}) || h.w.Reason != "boom" {
		t.Fatalf("failed refs %v reason %q", h.w.FailedTaskRefs, h.w.Reason)
	}
}

// A JOIN or an EXCLUSIVE_JOIN that fails because a task it joins failed
// gives that task's reason, as Conductor's Join and ExclusiveJoin do
// (clients read it as the join's reasonForIncompletion, and the
// workflow's is the join's). The join meets such a task after a rerun
// that leaves it failed.
func TestJoinFailsWithTheReasonOfWhatFailed(t *testing.T) {
	exclusive := `{"name":"f","tasks":[
	 {"name":"fork","taskReferenceName":"fork","type":"FORK_JOIN","forkTasks":[
	   [{"name":"a1","taskReferenceName":"a1"},{"name":"a2","taskReferenceName":"a2"}],
	   [{"name":"b1","taskReferenceName":"b1"}]]},
	 {"name":"join","taskReferenceName":"join","type":"JOIN","joinOn":["a2"]},
	 {"name":"ej","taskReferenceName":"ej","type":"EXCLUSIVE_JOIN","joinOn":["b1"]}]}`
	for _, tc := range []struct {
		name, def, join string
		rerun           []string // completed after the rerun from a2
		reason, want    string
	}{
		{"join", forkTwoSteps, "join", nil, "boom", "boom"},
		{"join, no reason", forkTwoSteps, "join", nil, "", "task b1 failed"},
		{"exclusive join", exclusive, "ej", []string{"a2"}, "card declined", "card declined"},
		{"exclusive join, no reason", exclusive, "ej", []string{"a2"}, "", "task b1 failed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, tc.def, nil)
			h.complete("a1", nil)
			h.report("b1", conductor.TaskFailedWithTerminalError, nil, tc.reason)
			h.wantStatus(conductor.WorkflowFailed)
			h.decide(engine.Rerun{Request: conductor.RerunWorkflowRequest{ReRunFromTaskID: h.task("a2").ID}})
			for _, ref := range tc.rerun {
				h.complete(ref, nil)
			}
			h.wantTask("b1", conductor.TaskFailedWithTerminalError)
			if j := h.wantTask(tc.join, conductor.TaskFailed); j.Reason != tc.want {
				t.Fatalf("%s reason %q, want %q", tc.join, j.Reason, tc.want)
			}
			h.wantStatus(conductor.WorkflowFailed)
			if h.w.Reason != tc.want {
				t.Fatalf("workflow reason %q, want %q", h.w.Reason, tc.want)
			}
		})
	}
}

// Variables are bounded as Conductor bounds them: a SET_VARIABLE that
// would take them over MaxVariablesBytes fails terminally and sets nothing.
func TestSetVariableLimit(t *testing.T) {
	def := `{"name":"sv","tasks":[{"name":"sv","taskReferenceName":"sv","type":"SET_VARIABLE","inputParameters":{"big":"${workflow.input.big}"}}]}`
	h := newHarness(t, def, map[string]any{"big": strings.Repeat("x", engine.MaxVariablesBytes)})
	if sv := h.wantTask("sv", conductor.TaskFailedWithTerminalError); !strings.Contains(sv.Reason, "limit") {
		t.Fatalf("reason %q", sv.Reason)
	}
	h.wantStatus(conductor.WorkflowFailed)
	if len(h.w.Variables) != 0 {
		t.Fatalf("variables set: %d keys", len(h.w.Variables))
	}
	h = newHarness(t, def, map[string]any{"big": strings.Repeat("x", engine.MaxVariablesBytes-100)})
	h.wantStatus(conductor.WorkflowCompleted)
}

// Variables set by a caller (the variables update, a result's variables,
// as updateState sends them) are bounded as SET_VARIABLE's are: over
// MaxVariablesBytes together with those set before, the request is
// refused as too large, naming the limit, and changes nothing. Taken, they
// failed every later SET_VARIABLE of the workflow, however small.
func TestCallersVariablesLimit(t *testing.T) {
	def := `{"name":"cv","tasks":[{"name":"w","taskReferenceName":"w"},
	  {"name":"sv","taskReferenceName":"sv","type":"SET_VARIABLE","inputParameters":{"n":1}}]}`
	set := func(h *harness, vars map[string]any) error {
		_, err := h.try(engine.SetVariables{Variables: vars, By: "app:tester"})
		return err
	}
	result := func(h *harness, vars map[string]any) error {
		w := h.task("w")
		if w.Status == conductor.TaskScheduled {
			w = h.take("w")
		}
		_, err := h.try(engine.Result{Result: conductor.TaskResult{TaskID: w.ID, WorkflowInstanceID: h.w.ID, Status: conductor.TaskCompleted},
			TaskType: "w", By: "app:tester", Variables: vars})
		return err
	}
	for _, tc := range []struct {
		name string
		send func(*harness, map[string]any) error
	}{{"variables update", set}, {"result's variables", result}} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, def, nil)
			h.decide(engine.SetVariables{Variables: map[string]any{"a": strings.Repeat("x", engine.MaxVariablesBytes/2)}, By: "app:tester"})
			err := tc.send(h, map[string]any{"b": strings.Repeat("y", engine.MaxVariablesBytes/2)})
			if !errors.Is(err, fault.ErrTooLarge) || !strings.Contains(err.Error(), fmt.Sprint(engine.MaxVariablesBytes)) {
				t.Fatalf("variables over the limit: %v, want too large naming %d", err, engine.MaxVariablesBytes)
			}
			if _, ok := h.w.Variables["b"]; ok {
				t.Fatal("the refused variables were set")
			}
			if w := h.task("w"); conductor.TaskTerminal(w.Status) {
				t.Fatalf("the refused request ended task w: %s", w.Status)
			}
			if err := tc.send(h, map[string]any{"b": strings.Repeat("y", engine.MaxVariablesBytes/2-100)}); err != nil {
				t.Fatalf("variables within the limit: %v", err)
			}
		})
	}
}

func TestSetVariableAndTerminate(t *testing.T) {
	def := `{"name":"vars","variables":{"count":1},"tasks":[
	 {"name":"set","taskReferenceName":"set","type":"SET_VARIABLE","inputParameters":{"count":"${workflow.input.n}","who":"me"}},
	 {"name":"use","taskReferenceName":"use","inputParameters":{"c":"${workflow.variables.count}"}},
	 {"name":"stop","taskReferenceName":"stop","type":"TERMINATE","inputParameters":{"terminationStatus":"FAILED","terminationReason":"enough","workflowOutput":{"done":"${workflow.variables.who}"}}},
	 {"name":"never","taskReferenceName":"never"}]}`
	h := newHarness(t, def, map[string]any{"n": int64(5)})
	if !reflect.DeepEqual(h.w.Variables, map[string]any{"count": int64(5), "who": "me"}) {
		t.Fatalf("variables = %v", h.w.Variables)
	}
	if h.wantTask("use", conductor.TaskScheduled).Input["c"] != int64(5) {
		t.Fatal("use did not see the variable")
	}
	h.complete("use", nil)
	h.wantStatus(conductor.WorkflowFailed)
	if h.w.Reason != "enough" || !reflect.DeepEqual(h.w.Output, map[string]any{"done": "me"}) {
		t.Fatalf("reason %q output %v", h.w.Reason, h.w.Output)
	}
	if h.w.LatestByRef("never") != nil {
		t.Fatal("task after TERMINATE was scheduled")
	}
}

// TERMINATE as Conductor's: its output is the workflow's (a value that is
// not an object under "output"), a reason is made up when none is given,
// and a status it does not know fails the task and the workflow.
func TestTerminateTask(t *testing.T) {
	def := `{"name":"t","tasks":[{"name":"stop","taskReferenceName":"stop","type":"TERMINATE","inputParameters":{
	  "terminationStatus":"${workflow.input.status}","workflowOutput":"${workflow.input.out}"}},{"name":"never","taskReferenceName":"never"}]}`
	for _, tt := range []struct {
		status string
		out    any
		want   string // the workflow's status
		output map[string]any
		reason string
	}{
		{"COMPLETED", map[string]any{"a": int64(1)}, conductor.WorkflowCompleted, map[string]any{"a": int64(1)}, ""},
		{"TERMINATED", "plain", conductor.WorkflowTerminated, map[string]any{"output": "plain"}, "Workflow is TERMINATED by TERMINATE task: "},
		{"FAILED", nil, conductor.WorkflowFailed, map[string]any{}, "Workflow is FAILED by TERMINATE task: "},
		{"BOGUS", nil, conductor.WorkflowFailed, map[string]any{}, "given termination status is not valid"},
	} {
		h := newHarness(t, def, map[string]any{"status": tt.status, "out": tt.out})
		h.wantStatus(tt.want)
		stop := h.task("stop")
		if !reflect.DeepEqual(h.w.Output, tt.output) || !strings.HasPrefix(h.w.Reason, tt.reason) || tt.reason == "" && h.w.Reason != "" {
			t.Fatalf("%s: output %v reason %q", tt.status, h.w.Output, h.w.Reason)
		}
		if tt.status == "BOGUS" {
			if stop.Status != conductor.TaskFailedWithTerminalError {
				t.Fatalf("a bogus status left the task %s", stop.Status)
			}
		} else if stop.Status != conductor.TaskCompleted || !reflect.DeepEqual(stop.Output, tt.output) {
			t.Fatalf("%s: task %s output %v", tt.status, stop.Status, stop.Output)
		}
		if h.w.LatestByRef("never") != nil {
			t.Fatal("task after TERMINATE was scheduled")
		}
	}
}

// The failureTaskId a failure workflow gets is the task that ended the
// run, as Conductor's failedTaskId: a TERMINATE task's that ended it
// FAILED or TERMINATED (no task failed), a failed task's; a run that timed
// out names none.
func TestFailureTaskIDIsTheTaskThatEndedTheRun(t *testing.T) {
	def := `{"name":"f","failureWorkflow":"cleanup","timeoutSeconds":60,"timeoutPolicy":"TIME_OUT_WF","tasks":[
	 {"name":"a","taskReferenceName":"a","retryCount":0},
	 {"name":"stop","taskReferenceName":"stop","type":"TERMINATE","inputParameters":{"terminationStatus":"${workflow.input.status}"}}]}`
	for _, c := range []struct {
		name, status string
		end          func(h *harness)
		want         string // the reference name of the task named, "" for none
	}{
		{"TERMINATE FAILED", "FAILED", func(h *harness) { h.complete("a", nil) }, "stop"},
		{"TERMINATE TERMINATED", "TERMINATED", func(h *harness) { h.complete("a", nil) }, "stop"},
		{"task failed", "FAILED", func(h *harness) { h.report("a", conductor.TaskFailed, nil, "broken") }, "a"},
		{"timed out", "FAILED", func(h *harness) { h.advance(time.Minute); h.decide(engine.Tick{}) }, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, def, map[string]any{"status": c.status})
			h.advance(time.Second) // the run does not end when its first task starts
			c.end(h)
			h.wantFailureTaskID(c.want)
		})
	}

	// A permissive task's failure, which the workflow went on past, does
	// not end it: the task whose failure then does is the one named, as
	// its reason is the workflow's (Conductor names the task its
	// TerminateWorkflowException carries). The first failed task was.
	forked := `{"name":"f","failureWorkflow":"cleanup","tasks":[
	 {"name":"fork","taskReferenceName":"fork","type":"FORK_JOIN","forkTasks":[
	   [{"name":"p","taskReferenceName":"p","permissive":true,"retryCount":0}],
	   [{"name":"b","taskReferenceName":"b","retryCount":0},{"name":"c","taskReferenceName":"c","retryCount":0}]]},
	 {"name":"join","taskReferenceName":"join","type":"JOIN","joinOn":["p","c"]}]}`
	for _, c := range []struct {
		name string
		end  func(h *harness)
		want string
	}{
		{"a task after a permissive one failed", func(h *harness) { h.report("b", conductor.TaskFailed, nil, "b broke") }, "b"},
		{"the JOIN of a permissive one that failed", func(h *harness) { h.complete("b", nil); h.complete("c", nil) }, "join"},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, forked, nil)
			h.report("p", conductor.TaskFailed, nil, "p broke")
			h.advance(time.Second)
			c.end(h)
			h.wantStatus(conductor.WorkflowFailed)
			h.wantFailureTaskID(c.want)
		})
	}
}

// The task named is the one whose end ended the run, as Conductor's
// failedTaskId is set only from the TerminateWorkflowException of such a
// task, and only while none is named: a permissive task whose failure the
// workflow went on past is not named when the workflow's own timeout ends
// it (it was, as the first failed task), a SUB_WORKFLOW whose child was
// terminated is (its task CANCELED, the parent TERMINATED: none was), and
// a terminate request of a workflow that failed keeps the task its
// failure named (none was).
func TestFailureTaskIDOfOtherEnds(t *testing.T) {
	const permissive = `{"name":"f","failureWorkflow":"cleanup","timeoutSeconds":60,"timeoutPolicy":"TIME_OUT_WF","tasks":[
	 {"name":"p","taskReferenceName":"p","permissive":true,"retryCount":0},
	 {"name":"b","taskReferenceName":"b","retryCount":0}]}`
	const parent = `{"name":"f","failureWorkflow":"cleanup","tasks":[{"name":"child","taskReferenceName":"child","type":"SUB_WORKFLOW",
	  "subWorkflowParam":{"name":"kid","version":1}}]}`
	const timesOut = `{"name":"f","failureWorkflow":"cleanup","tasks":[{"name":"a","taskReferenceName":"a"},{"name":"b","taskReferenceName":"b"}]}`
	child := func(status string) func(h *harness) {
		return func(h *harness) {
			h.decide(engine.ChildFinished{ChildID: h.task("child").SubWorkflowID, Name: "kid", Version: 1, Status: status, Reason: "kid " + status})
		}
	}
	for _, c := range []struct {
		name, def, status string
		end               func(h *harness)
		want              string // the reference name of the task named, "" for none
	}{
		{"timed out after a permissive task failed", permissive, conductor.WorkflowTimedOut, func(h *harness) {
			h.report("p", conductor.TaskFailed, nil, "p broke")
			h.advance(time.Minute)
			h.decide(engine.Tick{})
		}, ""},
		{"a permissive task failed, then another", permissive, conductor.WorkflowFailed, func(h *harness) {
			h.report("p", conductor.TaskFailed, nil, "p broke")
			h.report("b", conductor.TaskFailed, nil, "b broke")
		}, "b"},
		{"child terminated", parent, conductor.WorkflowTerminated, child(conductor.WorkflowTerminated), "child"},
		{"child failed", parent, conductor.WorkflowFailed, child(conductor.WorkflowFailed), "child"},
		{"child timed out", parent, conductor.WorkflowTimedOut, child(conductor.WorkflowTimedOut), "child"},
		{"a task's TIME_OUT_WF", timesOut, conductor.WorkflowTimedOut, func(h *harness) {
			h.complete("a", nil)
			h.take("b")
			h.advance(time.Minute)
			h.decide(engine.Tick{})
		}, "b"},
		{"terminated once failed", timesOut, conductor.WorkflowTerminated, func(h *harness) {
			h.report("a", conductor.TaskFailed, nil, "a broke")
			h.decide(engine.Terminate{Reason: "cleanup", TriggerFailureWorkflow: true})
		}, "a"},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, c.def, nil, `{"name":"a","retryCount":0}`, `{"name":"b","retryCount":0,"timeoutSeconds":30,"timeoutPolicy":"TIME_OUT_WF"}`)
			h.advance(time.Second)
			c.end(h)
			h.wantStatus(c.status)
			h.wantFailureTaskID(c.want)
		})
	}
}

// A retry leaves the task the end named as what ended the workflow, as
// Conductor's retry leaves failedTaskId set: its next end, which names a
// task only while none is named, names the first run's task again,
// whatever ends it (the new one was named). A run whose end named none
// names its own, and a parent run again because its child was starts
// afresh, as Conductor's updateAndPushParents clears the parent's.
func TestFailureTaskIDAfterARetry(t *testing.T) {
	const def = `{"name":"f","failureWorkflow":"cleanup","timeoutSeconds":60,"timeoutPolicy":"TIME_OUT_WF","tasks":[
	 {"name":"a","taskReferenceName":"a"},{"name":"b","taskReferenceName":"b"}]}`
	const parent = `{"name":"f","failureWorkflow":"cleanup","tasks":[{"name":"child","taskReferenceName":"child","type":"SUB_WORKFLOW",
	  "subWorkflowParam":{"name":"kid","version":1}},{"name":"b","taskReferenceName":"b"}]}`
	retry := func(*harness) engine.Trigger { return engine.Retry{} }
	failA := func(h *harness) { h.report("a", conductor.TaskFailed, nil, "a broke") }
	child := func(status string) func(h *harness) {
		return func(h *harness) {
			h.decide(engine.ChildFinished{ChildID: h.task("child").SubWorkflowID, Name: "kid", Version: 1, Status: status, Reason: "kid " + status})
		}
	}
	for _, c := range []struct {
		name, def   string
		first       func(h *harness) // ends the first run
		again       func(h *harness) engine.Trigger
		second      func(h *harness) // ends the next
		want        string           // the reference name of the task named
		wantFirstOf bool             // the first run's instance of want, not the newest
	}{
		{"failed by another task", def, failA, retry, func(h *harness) {
			h.complete("a", nil)
			h.report("b", conductor.TaskFailed, nil, "b broke")
		}, "a", true},
		{"failed by the same task", def, failA, retry, failA, "a", true},
		{"terminated", def, failA, retry, func(h *harness) {
			h.decide(engine.Terminate{Reason: "cleanup", TriggerFailureWorkflow: true})
		}, "a", true},
		{"its first end named none", def, func(h *harness) {
			h.advance(time.Minute)
			h.decide(engine.Tick{})
		}, retry, failA, "a", false},
		{"a parent run again for its child", parent, child(conductor.WorkflowFailed), func(h *harness) engine.Trigger {
			h.advance(time.Second)
			return engine.ChildReopened{ChildID: h.task("child").SubWorkflowID, ResetTime: h.now.UnixMilli()}
		}, func(h *harness) {
			child(conductor.WorkflowCompleted)(h)
			h.report("b", conductor.TaskFailed, nil, "b broke")
		}, "b", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, c.def, nil, `{"name":"a","retryCount":0}`, `{"name":"b","retryCount":0}`)
			h.advance(time.Second)
			c.first(h)
			if !h.w.Terminal() {
				t.Fatalf("the first run did not end: %s", h.w.Status)
			}
			first := map[string]string{}
			for _, tk := range h.w.Tasks {
				if _, seen := first[tk.Ref]; !seen {
					first[tk.Ref] = tk.ID
				}
			}
			h.decide(c.again(h))
			h.wantStatus(conductor.WorkflowRunning)
			c.second(h)
			want := h.task(c.want).ID
			if c.wantFirstOf {
				want = first[c.want]
			}
			h.wantFailureTask(want, c.want)
		})
	}
}

// Recovery of an end starts its failure workflow again with the task the
// end named; an end recorded before ends named their task (no ftid, no
// noftid) names the one its engine named, read from the ended state (the
// TERMINATE task that ended it, else the first failed task), where it
// named none. An end that names none on purpose says so, and a task the
// ended state shows (a permissive one's earlier failure) is not named.
func TestFailureTaskIDOfARecoveredEnd(t *testing.T) {
	const def = `{"name":"f","failureWorkflow":"cleanup","timeoutSeconds":60,"timeoutPolicy":"TIME_OUT_WF","tasks":[
	 {"name":"p","taskReferenceName":"p","permissive":true},{"name":"a","taskReferenceName":"a"},
	 {"name":"stop","taskReferenceName":"stop","type":"TERMINATE","inputParameters":{"terminationStatus":"FAILED"}}]}`
	for _, c := range []struct {
		name      string
		end       func(h *harness)
		want, old string // the reference name of the task named, "" for none: by the end, by the end recorded before
	}{
		{"task failed", func(h *harness) { h.complete("p", nil); h.report("a", conductor.TaskFailed, nil, "a broke") }, "a", "a"},
		{"TERMINATE task", func(h *harness) { h.complete("p", nil); h.complete("a", nil) }, "stop", "stop"},
		{"terminate request", func(h *harness) {
			h.decide(engine.Terminate{Reason: "cleanup", TriggerFailureWorkflow: true})
		}, "", ""},
		{"timed out after a permissive task failed", func(h *harness) {
			h.report("p", conductor.TaskFailed, nil, "p broke")
			h.advance(time.Minute)
			h.decide(engine.Tick{})
		}, "", "p"},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, def, nil, `{"name":"p","retryCount":0}`, `{"name":"a","retryCount":0}`)
			h.advance(time.Second)
			c.end(h)
			h.wantFailureTaskID(c.want)
			for _, old := range []bool{false, true} {
				var w *engine.Workflow
				for _, evs := range h.history {
					for _, ev := range evs {
						if sc, ok := ev.(*schemas.WorkflowStatusChanged); ok && old {
							was := *sc
							was.FailedTaskID, was.NoFailedTask = "", false
							ev = &was
						}
						env, err := schemas.Default.Encode(ev)
						if err != nil {
							t.Fatal(err)
						}
						if ev, err = schemas.Default.Decode(env); err != nil {
							t.Fatal(err)
						}
						if w, err = engine.Apply(w, ev); err != nil {
							t.Fatal(err)
						}
					}
				}
				want := c.want
				if old {
					want = c.old
				}
				t.Logf("recovery, the end recorded before ends named their task: %v", old)
				h.last = engine.Decision{Effects: engine.Effects(w, h.now.UnixMilli())}
				h.wantFailureTaskID(want)
			}
		})
	}
}

// wantFailureTaskID checks that the last decision started one failure
// workflow, whose failureTaskId is the id of the task ref ("": none).
func (h *harness) wantFailureTaskID(ref string) {
	h.t.Helper()
	var id string
	if ref != "" {
		id = h.task(ref).ID
	}
	h.wantFailureTask(id, ref)
}

// wantFailureTask checks that the last decision started one failure
// workflow, whose failureTaskId is id ("": none), an instance of ref.
func (h *harness) wantFailureTask(id, ref string) {
	h.t.Helper()
	fw := effectsOf[engine.StartWorkflow](h.last)
	if len(fw) != 1 {
		h.t.Fatalf("%d failure workflow starts, want 1 (workflow %s)", len(fw), h.w.Status)
	}
	got, named := fw[0].Input["failureTaskId"]
	switch {
	case id == "" && named:
		h.t.Fatalf("failureTaskId %v, want none (tasks %v)", got, h.refs())
	case id != "" && got != id:
		h.t.Fatalf("failureTaskId %v, want %s's %s (tasks %v)", got, ref, id, h.refs())
	}
}

// A workflow definition's inputTemplate fills each key the start's input
// lacks or gives as null, as Conductor's getWorkflowInput (putIfAbsent)
// does; a value given, false or empty included, stays, and nothing is
// merged below the top level.
func TestWorkflowInputTemplate(t *testing.T) {
	def := `{"name":"it","inputTemplate":{"region":"eu","retries":3,"opts":{"a":1}},"tasks":[{"name":"a","taskReferenceName":"a"}]}`
	for _, c := range []struct {
		name  string
		input map[string]any
		want  map[string]any
	}{
		{"none", nil, map[string]any{"region": "eu", "retries": int64(3), "opts": map[string]any{"a": int64(1)}}},
		{"null", map[string]any{"region": nil, "retries": nil},
			map[string]any{"region": "eu", "retries": int64(3), "opts": map[string]any{"a": int64(1)}}},
		{"given", map[string]any{"region": "us", "retries": false, "opts": map[string]any{"b": int64(2)}, "x": "y"},
			map[string]any{"region": "us", "retries": false, "opts": map[string]any{"b": int64(2)}, "x": "y"}},
		{"empty", map[string]any{"region": "", "opts": map[string]any{}},
			map[string]any{"region": "", "retries": int64(3), "opts": map[string]any{}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, def, c.input)
			if !reflect.DeepEqual(h.w.Input, c.want) {
				t.Fatalf("input %v, want %v", h.w.Input, c.want)
			}
		})
	}
}

func TestWait(t *testing.T) {
	def := `{"name":"w","tasks":[{"name":"wait","taskReferenceName":"wait","type":"WAIT","inputParameters":{"duration":"${workflow.input.d}"}},{"name":"next","taskReferenceName":"next"}]}`
	tests := []struct {
		duration string
		after    time.Duration
	}{{"10s", 10 * time.Second}, {"1 days 2 hours", 26 * time.Hour}, {"5m 30s", 5*time.Minute + 30*time.Second},
		{"5m10s", 5*time.Minute + 10*time.Second}, {"1d2h", 26 * time.Hour}, {"2 mins", 2 * time.Minute}}
	for _, tt := range tests {
		h := newHarness(t, def, map[string]any{"d": tt.duration})
		h.wantTask("wait", conductor.TaskInProgress)
		if dl := engine.Deadlines(h.w); len(dl) != 1 || dl[0] != epoch.Add(tt.after).UnixMilli() {
			t.Fatalf("%s: deadlines %v", tt.duration, dl)
		}
		h.advance(tt.after - time.Millisecond)
		if d := h.decide(engine.Tick{}); len(d.Events) != 0 {
			t.Fatalf("%s: tick before the deadline changed the workflow", tt.duration)
		}
		h.advance(time.Millisecond)
		h.decide(engine.Tick{})
		h.wantTask("wait", conductor.TaskCompleted)
		h.wantTask("next", conductor.TaskScheduled)
	}

	external := newHarness(t, `{"name":"w","tasks":[{"name":"wait","taskReferenceName":"wait","type":"WAIT"}]}`, nil)
	if len(engine.Deadlines(external.w)) != 0 {
		t.Fatal("external WAIT has a deadline")
	}
	external.report("wait", conductor.TaskInProgress, map[string]any{"greet": "hi"}, "")
	if wt := external.wantTask("wait", conductor.TaskInProgress); wt.Output["greet"] != "hi" {
		t.Fatalf("IN_PROGRESS update on WAIT lost its output: %v", wt.Output)
	}
	external.complete("wait", map[string]any{"ok": true})
	external.wantStatus(conductor.WorkflowCompleted)

	// A number is no duration (seconds? milliseconds?): it fails the task
	// as the text "10" does, where it used to wait for ever.
	for _, d := range []any{"soon", "5 monkeys", "5 ms", "10", 10, true} {
		bad := newHarness(t, def, map[string]any{"d": d})
		bad.wantTask("wait", conductor.TaskFailedWithTerminalError)
		bad.wantStatus(conductor.WorkflowFailed)
		if !strings.Contains(bad.w.Reason, fmt.Sprint(d)) {
			t.Fatalf("reason %q does not name the bad duration", bad.w.Reason)
		}
	}
	// The reason quotes the whole value, which the guard redacts when it
	// is secret, and no part of it, which it would not find.
	for d, at := range map[string]string{"k3Zq-xYw 5s": "byte 0", "5s k3Zq-xYw": "byte 2", "5s k3Zq 5m": "byte 2"} {
		bad := newHarness(t, def, map[string]any{"d": d})
		bad.wantTask("wait", conductor.TaskFailedWithTerminalError)
		if strings.Count(bad.w.Reason, "k3Zq") != 1 || !strings.Contains(bad.w.Reason, "unexpected text at "+at) {
			t.Errorf("%s: reason %q, want the value quoted once and %q", d, bad.w.Reason, at)
		}
	}
}

// A WAIT until a date reads its zone the same on every engine, whatever
// the server's own zone: by offset, or by an abbreviation it knows.
func TestWaitUntil(t *testing.T) {
	def := `{"name":"w","tasks":[{"name":"wait","taskReferenceName":"wait","type":"WAIT","inputParameters":{"until":"${workflow.input.u}"}}]}`
	for until, want := range map[string]time.Time{
		"2026-12-01 10:00 UTC":   time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC),
		"2026-12-01 10:00 PST":   time.Date(2026, 12, 1, 18, 0, 0, 0, time.UTC),
		"2026-12-01 10:00 CEST":  time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC),
		"2026-12-01 10:00 +0530": time.Date(2026, 12, 1, 4, 30, 0, 0, time.UTC),
		// Offsets of under a day's hours, which Go's zone layout took
		// for names: "unknown zone".
		"2026-12-01 10:00 +0000": time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC),
		"2026-12-01 10:00 -0000": time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC),
		"2026-12-01 10:00 +0015": time.Date(2026, 12, 1, 9, 45, 0, 0, time.UTC),
		"2026-12-01 10:00 -0010": time.Date(2026, 12, 1, 10, 10, 0, 0, time.UTC),
		"2026-12-01 10:00":       time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC),
		"2026-12-02":             time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC),
	} {
		h := newHarness(t, def, map[string]any{"u": until})
		h.wantTask("wait", conductor.TaskInProgress)
		if dl := engine.Deadlines(h.w); len(dl) != 1 || dl[0] != want.UnixMilli() {
			t.Fatalf("%s: deadlines %v, want %d", until, dl, want.UnixMilli())
		}
	}
	bad := newHarness(t, def, map[string]any{"u": "2026-12-01 10:00 XYZ"})
	bad.wantTask("wait", conductor.TaskFailedWithTerminalError)
	if !strings.Contains(bad.w.Reason, "XYZ") {
		t.Fatalf("reason %q does not name the unknown zone", bad.w.Reason)
	}
	// Both, from expressions, fail the task as Conductor's WAIT does (a
	// definition that gives both literally is refused).
	both := newHarness(t, `{"name":"w","tasks":[{"name":"wait","taskReferenceName":"wait","type":"WAIT",
	  "inputParameters":{"until":"${workflow.input.u}","duration":"${workflow.input.d}"}}]}`, map[string]any{"u": "2026-12-02", "d": "2s"})
	both.wantTask("wait", conductor.TaskFailedWithTerminalError)
	if !strings.Contains(both.w.Reason, "give only one") {
		t.Fatalf("reason %q", both.w.Reason)
	}
}

func TestSubWorkflow(t *testing.T) {
	def := `{"name":"parent","tasks":[{"name":"child","taskReferenceName":"child","type":"SUB_WORKFLOW",
	  "subWorkflowParam":{"name":"kid","version":2},"inputParameters":{"x":"${workflow.input.x}"}},{"name":"after","taskReferenceName":"after","inputParameters":{"r":"${child.output.result}"}}]}`
	h := newHarness(t, def, map[string]any{"x": "hello"})
	ct := h.wantTask("child", conductor.TaskInProgress)
	starts := effectsOf[engine.StartWorkflow](h.last)
	if len(starts) != 1 || starts[0].WorkflowID != ct.SubWorkflowID || starts[0].Name != "kid" || *starts[0].Version != 2 ||
		starts[0].ParentWorkflowID != "wf-1" || starts[0].ParentWorkflowTaskID != ct.ID || starts[0].Input["x"] != "hello" ||
		starts[0].CreatedBy != "app:tester" {
		t.Fatalf("start effects = %+v", starts)
	}
	if ct.SubWorkflowID != engine.DeriveID("wf-1", "sub", ct.ID) {
		t.Fatal("child id is not derived from the parent")
	}
	// As in Conductor, the output names the child while it runs.
	if ct.Output["subWorkflowId"] != ct.SubWorkflowID || len(ct.Output) != 1 {
		t.Fatalf("running child's task output %v", ct.Output)
	}
	h.decide(engine.ChildFinished{ChildID: ct.SubWorkflowID, Status: conductor.WorkflowCompleted, Output: map[string]any{"result": "done"}})
	done := h.wantTask("child", conductor.TaskCompleted)
	if done.Output["subWorkflowId"] != ct.SubWorkflowID || h.wantTask("after", conductor.TaskScheduled).Input["r"] != "done" {
		t.Fatalf("child output %v", done.Output)
	}
	// News about a child that is no longer awaited changes nothing.
	if d := h.decide(engine.ChildFinished{ChildID: ct.SubWorkflowID, Status: conductor.WorkflowFailed}); len(d.Events) != 0 {
		t.Fatal("late child news changed the parent")
	}

	// As Conductor's, a failed task's reason names the child, and the
	// parent's says where to look.
	f := newHarness(t, def, nil)
	kid := f.task("child").SubWorkflowID
	f.decide(engine.ChildFinished{ChildID: kid, Name: "kid", Version: 2, Status: conductor.WorkflowFailed, Reason: "kid broke"})
	f.wantStatus(conductor.WorkflowFailed)
	want := "Sub workflow kid.2/" + kid + " failure reason: kid broke"
	if got := f.wantTask("child", conductor.TaskFailed).Reason; got != want {
		t.Fatalf("task reason %q, want %q", got, want)
	}
	if !strings.Contains(f.w.Reason, want) {
		t.Fatalf("reason %q", f.w.Reason)
	}

	// A terminated child cancels its task, which is not retried: the
	// parent ends TERMINATED, as in Conductor.
	term := newHarness(t, def, nil, `{"name":"child","retryCount":3}`)
	term.decide(engine.ChildFinished{ChildID: term.task("child").SubWorkflowID, Name: "kid", Version: 2, Status: conductor.WorkflowTerminated})
	canceled := term.wantTask("child", conductor.TaskCanceled)
	if canceled.Output["subWorkflowId"] != canceled.SubWorkflowID {
		t.Fatalf("canceled task's output %v", canceled.Output)
	}
	if want := "Sub workflow kid.2/" + canceled.SubWorkflowID + " failure reason: TERMINATED"; canceled.Reason != want {
		t.Fatalf("canceled task's reason %q, want %q", canceled.Reason, want)
	}
	term.wantStatus(conductor.WorkflowTerminated)
	term.wantRefs("child")

	// A child that could not start is not there to name.
	ns := newHarness(t, def, nil)
	ns.decide(engine.ChildFinished{ChildID: ns.task("child").SubWorkflowID, Status: conductor.WorkflowFailed, Reason: "no such definition", NotStarted: true})
	if failed := ns.wantTask("child", conductor.TaskFailed); failed.Output["subWorkflowId"] != nil || failed.Reason != "no such definition" {
		t.Fatalf("the task of a child that never started has output %v, reason %q", failed.Output, failed.Reason)
	}
}

func TestHTTPIsRunBySystemWorker(t *testing.T) {
	def := `{"name":"h","tasks":[{"name":"call","taskReferenceName":"call","type":"HTTP","inputParameters":{"http_request":{"uri":"http://x","method":"GET"}}}]}`
	h := newHarness(t, def, nil)
	runs := effectsOf[engine.RunSystem](h.last)
	if len(runs) != 1 || runs[0].TaskType != "HTTP" {
		t.Fatalf("effects %+v", h.last.Effects)
	}
	if _, err := h.try(engine.Take{TaskID: runs[0].TaskID, WorkerID: "worker"}); !errorsIs(err, engine.ErrTaskGone) {
		t.Fatalf("a worker took a system task: %v", err)
	}
	h.decide(engine.Take{TaskID: runs[0].TaskID, WorkerID: "flowvault", System: true})
	h.wantTask("call", conductor.TaskInProgress)
	// An engine that dies mid-call: after the lease the task runs again.
	h.advance(engine.SystemTaskLease)
	h.decide(engine.Tick{})
	h.wantTask("call", conductor.TaskScheduled)
	if len(effectsOf[engine.RunSystem](h.last)) != 1 {
		t.Fatal("expired system task not handed off again")
	}
	h.decide(engine.Take{TaskID: runs[0].TaskID, WorkerID: "flowvault", System: true})
	h.complete("call", map[string]any{"response": map[string]any{"statusCode": int64(200)}})
	h.wantStatus(conductor.WorkflowCompleted)

	// A worker of a queue that shares the task's name may not report on it.
	if _, err := h.try(engine.Result{Result: conductor.TaskResult{TaskID: runs[0].TaskID, Status: conductor.TaskCompleted}, TaskType: "call"}); !errorsIs(err, fault.ErrNotFound) {
		t.Fatalf("a worker reported on a system task: %v", err)
	}

	// With asyncComplete the call's IN_PROGRESS releases the task: no lease
	// runs it again; an update from outside completes it.
	h = newHarness(t, def, nil)
	h.decide(engine.Take{TaskID: h.task("call").ID, WorkerID: "flowvault", System: true})
	h.report("call", conductor.TaskInProgress, map[string]any{"response": map[string]any{"statusCode": int64(202)}}, "")
	if call := h.wantTask("call", conductor.TaskInProgress); call.WorkerID != "" || call.Output["response"] == nil {
		t.Fatalf("released task held by %q, output %v", call.WorkerID, call.Output)
	}
	if dl := engine.Deadlines(h.w); len(dl) != 0 {
		t.Fatalf("a released system task has deadlines %v", dl)
	}
	// Progress from outside naming a worker does not make it held again.
	h.decide(engine.Result{Result: conductor.TaskResult{TaskID: h.task("call").ID, Status: conductor.TaskInProgress,
		WorkerID: "someone", OutputData: map[string]any{"step": int64(2)}}})
	if call := h.wantTask("call", conductor.TaskInProgress); call.WorkerID != "" {
		t.Fatalf("an update from outside made the released task held by %q", call.WorkerID)
	}
	h.advance(2 * engine.SystemTaskLease)
	if d := h.decide(engine.Tick{}); len(d.Events) != 0 || len(d.Effects) != 0 {
		t.Fatalf("a tick acted on a released task: %v %v", d.Events, d.Effects)
	}
	h.complete("call", map[string]any{"done": true})
	h.wantStatus(conductor.WorkflowCompleted)
}

// An asyncComplete system task released by its system worker waits for an
// update from outside no longer than its task definition's timeoutSeconds.
func TestReleasedSystemTaskTimesOut(t *testing.T) {
	h := newHarness(t, `{"name":"h","tasks":[{"name":"http_call","taskReferenceName":"call","type":"HTTP","asyncComplete":true,
	  "inputParameters":{"http_request":{"uri":"http://x","method":"GET"}}}]}`, nil,
		`{"name":"http_call","timeoutSeconds":10,"timeoutPolicy":"TIME_OUT_WF","retryCount":0}`)
	h.decide(engine.Take{TaskID: h.task("call").ID, WorkerID: "flowvault", System: true})
	h.report("call", conductor.TaskInProgress, nil, "")
	if dl := engine.Deadlines(h.w); len(dl) != 1 || dl[0] != h.now.Add(10*time.Second).UnixMilli() {
		t.Fatalf("deadlines %v", dl)
	}
	h.advance(10 * time.Second)
	h.decide(engine.Tick{})
	h.wantTask("call", conductor.TaskTimedOut)
	h.wantStatus(conductor.WorkflowTimedOut)
}

// A system task's worker may ask to run it again later (HTTP_POLL between
// polls): IN_PROGRESS with a callback puts it back in the queue, and
// hands it off again when the callback is due; its task definition's
// timeoutSeconds, counted from its first run, still bounds it.
func TestSystemTaskCallback(t *testing.T) {
	h := newHarness(t, `{"name":"h","tasks":[{"name":"poll","taskReferenceName":"poll","type":"HTTP",
	  "inputParameters":{"http_request":{"uri":"http://x","method":"GET"}}}]}`, nil,
		`{"name":"poll","timeoutSeconds":100,"timeoutPolicy":"TIME_OUT_WF"}`)
	started := h.now
	for poll := 1; poll <= 2; poll++ {
		task := h.task("poll")
		h.decide(engine.Take{TaskID: task.ID, WorkerID: "flowvault", System: true})
		h.decide(engine.Result{Lease: poll, Result: conductor.TaskResult{TaskID: task.ID, Status: conductor.TaskInProgress, WorkerID: "flowvault",
			CallbackAfterSeconds: 30, OutputData: map[string]any{"response": map[string]any{"n": int64(poll)}}}})
		again := h.wantTask("poll", conductor.TaskScheduled)
		if again.ID != task.ID || again.AvailableAt != h.now.Add(30*time.Second).UnixMilli() || again.Output["response"] == nil {
			t.Fatalf("poll %d: task %+v", poll, again)
		}
		if runs := effectsOf[engine.RunSystem](h.last); len(runs) != 0 {
			t.Fatalf("poll %d: run again at once", poll)
		}
		want := []int64{h.now.Add(30 * time.Second).UnixMilli(), started.Add(100 * time.Second).UnixMilli()}
		if dl := engine.Deadlines(h.w); !slices.Equal(dl, want) {
			t.Fatalf("poll %d: deadlines %v, want %v", poll, dl, want)
		}
		h.advance(30 * time.Second)
		if runs := effectsOf[engine.RunSystem](h.decide(engine.Tick{})); len(runs) != 1 || runs[0].TaskID != task.ID {
			t.Fatalf("poll %d: the callback ran %v", poll, runs)
		}
	}
	// Its third run is under way when the task runs out of time.
	h.decide(engine.Take{TaskID: h.task("poll").ID, WorkerID: "flowvault", System: true})
	h.decide(engine.Result{Lease: 3, Result: conductor.TaskResult{TaskID: h.task("poll").ID, Status: conductor.TaskInProgress, WorkerID: "flowvault",
		CallbackAfterSeconds: 60}})
	h.advance(40 * time.Second)
	h.decide(engine.Tick{})
	h.wantTask("poll", conductor.TaskTimedOut)
	h.wantStatus(conductor.WorkflowTimedOut)
}

// A system task whose lease runs out again and again most likely kills
// the engines that run it (a script that overflows the stack, say): after
// MaxLeaseExpiries it fails for good instead of taking the next one down.
func TestSystemTaskThatKeepsDyingFails(t *testing.T) {
	h := newHarness(t, `{"name":"h","tasks":[{"name":"call","taskReferenceName":"call","type":"HTTP",
	  "inputParameters":{"http_request":{"uri":"http://x","method":"GET"}}}]}`, nil, `{"name":"call","retryCount":3}`)
	for i := 1; i <= engine.MaxLeaseExpiries; i++ {
		h.decide(engine.Take{TaskID: h.task("call").ID, WorkerID: "flowvault", System: true})
		h.advance(engine.SystemTaskLease)
		h.decide(engine.Tick{})
		if i < engine.MaxLeaseExpiries {
			h.wantTask("call", conductor.TaskScheduled)
		}
	}
	call := h.wantTask("call", conductor.TaskFailedWithTerminalError)
	if !strings.Contains(call.Reason, "lease expired 3 times") || len(effectsOf[engine.RunSystem](h.last)) != 0 {
		t.Fatalf("reason %q, effects %v", call.Reason, h.last.Effects)
	}
	h.wantRefs("call") // not retried
	h.wantStatus(conductor.WorkflowFailed)
}

func TestRetries(t *testing.T) {
	tests := []struct {
		name   string
		def    string
		delays []time.Duration
	}{
		{"fixed", `{"name":"t","retryCount":3,"retryLogic":"FIXED","retryDelaySeconds":2}`, []time.Duration{2 * time.Second, 2 * time.Second, 2 * time.Second}},
		{"exponential", `{"name":"t","retryCount":3,"retryLogic":"EXPONENTIAL_BACKOFF","retryDelaySeconds":1}`, []time.Duration{time.Second, 2 * time.Second, 4 * time.Second}},
		{"linear", `{"name":"t","retryCount":3,"retryLogic":"LINEAR_BACKOFF","retryDelaySeconds":1,"backoffScaleFactor":3}`, []time.Duration{3 * time.Second, 6 * time.Second, 9 * time.Second}},
		{"capped", `{"name":"t","retryCount":3,"retryLogic":"EXPONENTIAL_BACKOFF","retryDelaySeconds":4,"maxRetryDelaySeconds":5}`, []time.Duration{4 * time.Second, 5 * time.Second, 5 * time.Second}},
	}
	def := `{"name":"r","failureWorkflow":"cleanup","tasks":[{"name":"t","taskReferenceName":"t","inputParameters":{"k":"v"}}]}`
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, def, map[string]any{"orig": true}, tt.def)
			first := h.task("t")
			for i, delay := range tt.delays {
				failedAt := h.now
				h.report("t", conductor.TaskFailed, nil, "flaky")
				retry := h.wantTask("t", conductor.TaskScheduled)
				if retry.RetryCount != i+1 || retry.AvailableAt != failedAt.Add(delay).UnixMilli() || retry.Input["k"] != "v" {
					t.Fatalf("retry %d: count %d available %v (want +%s)", i+1, retry.RetryCount, time.UnixMilli(retry.AvailableAt).Sub(failedAt), delay)
				}
				if len(effectsOf[engine.Dispatch](h.last)) != 0 {
					t.Fatal("retry dispatched before its delay")
				}
				h.advance(delay)
				h.decide(engine.Tick{})
				if ds := effectsOf[engine.Dispatch](h.last); len(ds) != 1 || ds[0].TaskID != retry.ID {
					t.Fatalf("retry %d not dispatched after its delay: %+v", i+1, h.last.Effects)
				}
			}
			h.report("t", conductor.TaskFailed, nil, "still flaky")
			h.wantStatus(conductor.WorkflowFailed)
			if n := len(h.w.Tasks); n != 4 || !h.w.TaskByID(first.ID).Retried {
				t.Fatalf("%d task instances (want 4), first retried=%v", n, h.w.TaskByID(first.ID).Retried)
			}
			fw := effectsOf[engine.StartWorkflow](h.last)
			if len(fw) != 1 || fw[0].Name != "cleanup" || fw[0].Input["workflowId"] != "wf-1" || fw[0].Input["reason"] != "still flaky" ||
				fw[0].Input["failureStatus"] != "FAILED" || fw[0].Input["orig"] != true || fw[0].Input["failureTaskId"] != h.task("t").ID {
				t.Fatalf("failure workflow effect = %+v", fw)
			}
			// As Conductor: the failure workflow gets the failed one as
			// every read shows it, and the failed one names it.
			failed, _ := fw[0].Input["failedWorkflow"].(map[string]any)
			if failed["workflowId"] != "wf-1" || failed["status"] != "FAILED" || len(failed["tasks"].([]any)) != 4 {
				t.Fatalf("failedWorkflow = %v", failed)
			}
			if id := h.w.Output[engine.FailureWorkflowOutputKey]; id != fw[0].WorkflowID {
				t.Fatalf("output names failure workflow %v, started %s", id, fw[0].WorkflowID)
			}
		})
	}
}

// totalTimeoutSeconds is a budget for all of a task's attempts, counted
// from when its first attempt was scheduled: a failure (or a timeout with
// the RETRY policy) once it has passed is not retried, retries left or
// not. A retry does not start the budget again.
func TestTotalTimeoutStopsRetries(t *testing.T) {
	def := `{"name":"tt","tasks":[{"name":"t","taskReferenceName":"t"},{"name":"u","taskReferenceName":"u"}]}`
	taskDef := `{"name":"t","retryCount":5,"retryDelaySeconds":0,"totalTimeoutSeconds":100,"timeoutSeconds":60,"responseTimeoutSeconds":60,"timeoutPolicy":"RETRY"}`
	fail := func(h *harness) { h.take("t"); h.report("t", conductor.TaskFailed, nil, "flaky") }
	timeOut := func(h *harness) { h.take("t"); h.advance(60 * time.Second); h.decide(engine.Tick{}) }
	tests := []struct {
		name string
		// waits are the times before each attempt ends (by end); none:
		// two attempts, each ending as it times out.
		waits    []time.Duration
		end      func(*harness)
		retried  int    // instances retried
		workflow string // the workflow's status after the last attempt
	}{
		{"failures within the budget", []time.Duration{10 * time.Second, 80 * time.Second}, fail, 2, conductor.WorkflowRunning},
		{"failure as the budget runs out", []time.Duration{100 * time.Second}, fail, 0, conductor.WorkflowFailed},
		// The retry was scheduled 10 s in: counted from it, 95 s more
		// would be within the budget.
		{"retry's failure past the first's budget", []time.Duration{10 * time.Second, 95 * time.Second}, fail, 1, conductor.WorkflowFailed},
		{"timeouts", nil, timeOut, 1, conductor.WorkflowTimedOut},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, def, nil, taskDef)
			first := h.task("t").ScheduledTime
			attempts := len(tt.waits)
			if attempts == 0 {
				attempts = 2 // 60 s each: the second ends past the 100 s budget
			}
			for i := range attempts {
				if i < len(tt.waits) {
					h.advance(tt.waits[i])
				}
				tt.end(h)
			}
			h.wantStatus(tt.workflow)
			retried := 0
			for _, x := range h.w.Tasks {
				if x.Ref == "t" && x.Retried {
					retried++
				}
				if x.Ref == "t" && x.FirstScheduled != first {
					t.Fatalf("attempt %d: first scheduled %d, want the first attempt's %d", x.RetryCount, x.FirstScheduled, first)
				}
			}
			if retried != tt.retried {
				t.Fatalf("%d attempts retried, want %d; tasks %v", retried, tt.retried, h.refs())
			}
		})
	}
}

// The failed workflow a failure workflow gets is the masked view: its
// _secrets and _masked data read "***" there as in every read; one too
// large for the log is left out (the failure workflow reads it by id).
func TestFailedWorkflowIsMasked(t *testing.T) {
	def := `{"name":"m","failureWorkflow":"cleanup","tasks":[{"name":"a","taskReferenceName":"a"},{"name":"b","taskReferenceName":"b"}]}`
	h := newHarness(t, def, map[string]any{"_masked": "card-4242"}, `{"name":"b","retryCount":0}`)
	h.complete("a", map[string]any{"_secrets": map[string]any{"token": "tok-98f1"}, "plain": "p"})
	h.report("b", conductor.TaskFailed, nil, "broken")
	h.wantStatus(conductor.WorkflowFailed)
	fw := effectsOf[engine.StartWorkflow](h.last)
	if len(fw) != 1 {
		t.Fatalf("starts %+v", fw)
	}
	failed, err := json.Marshal(fw[0].Input["failedWorkflow"])
	if err != nil {
		t.Fatal(err)
	}
	for _, plain := range []string{"tok-98f1", "card-4242"} {
		if strings.Contains(string(failed), plain) {
			t.Fatalf("failedWorkflow shows %q: %s", plain, failed)
		}
	}
	if !strings.Contains(string(failed), `"plain":"p"`) {
		t.Fatalf("failedWorkflow lost the task's output: %s", failed)
	}

	big := strings.Repeat("x", 300<<10)
	h = newHarness(t, def, nil, `{"name":"a","retryCount":0}`)
	h.report("a", conductor.TaskFailed, map[string]any{"big": big}, "broken")
	fw = effectsOf[engine.StartWorkflow](h.last)
	if len(fw) != 1 || fw[0].Input["workflowId"] != h.w.ID {
		t.Fatalf("starts %+v", fw)
	}
	if _, ok := fw[0].Input["failedWorkflow"]; ok {
		t.Fatal("a failed workflow too large for the log was passed whole")
	}
}

// A failure workflow runs in the failed run's task domains, as Conductor
// starts it with the failed workflow's taskToDomain: its tasks go to the
// queues the domain's workers poll, however the run ended.
func TestFailureWorkflowTakesTheFailedRunsDomains(t *testing.T) {
	def := `{"name":"d","failureWorkflow":"cleanup","timeoutSeconds":60,"timeoutPolicy":"TIME_OUT_WF",
	 "tasks":[{"name":"a","taskReferenceName":"a","retryCount":0}]}`
	domains := map[string]string{"*": "blue", "notify": "green,NO_DOMAIN"}
	for _, c := range []struct {
		name string
		end  func(h *harness)
		want string
	}{
		{"failed", func(h *harness) { h.report("a", conductor.TaskFailed, nil, "broken") }, conductor.WorkflowFailed},
		{"timed out", func(h *harness) { h.advance(time.Minute); h.decide(engine.Tick{}) }, conductor.WorkflowTimedOut},
		{"terminated", func(h *harness) { h.decide(engine.Terminate{Reason: "stop", TriggerFailureWorkflow: true}) }, conductor.WorkflowTerminated},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := newHarnessStart(t, engine.Start{WorkflowID: "wf-1", Def: parseDef(t, def), CreatedBy: "app:tester",
				Request: conductor.StartWorkflowRequest{TaskToDomain: maps.Clone(domains)}})
			c.end(h)
			h.wantStatus(c.want)
			fw := effectsOf[engine.StartWorkflow](h.last)
			if len(fw) != 1 || fw[0].Name != "cleanup" {
				t.Fatalf("%d failure workflow starts (want one of cleanup)", len(fw))
			}
			if !reflect.DeepEqual(fw[0].TaskToDomain, domains) {
				t.Fatalf("failure workflow's taskToDomain %v, want %v", fw[0].TaskToDomain, domains)
			}
		})
	}
}

func TestTerminalErrorAndOptional(t *testing.T) {
	def := `{"name":"o","tasks":[{"name":"t","taskReferenceName":"t","optional":true},{"name":"u","taskReferenceName":"u"}]}`
	h := newHarness(t, def, nil, `{"name":"t","retryCount":5}`)
	h.report("t", conductor.TaskFailedWithTerminalError, nil, "no way")
	if n := len(h.w.Tasks); n != 2 {
		t.Fatalf("terminal error was retried: %v", h.refs())
	}
	h.wantTask("t", conductor.TaskCompletedWithErrors)
	h.wantTask("u", conductor.TaskScheduled)
	h.complete("u", nil)
	h.wantStatus(conductor.WorkflowCompleted)
}

func TestTimeouts(t *testing.T) {
	def := `{"name":"to","tasks":[{"name":"t","taskReferenceName":"t"}]}`
	// A poll timeout follows timeoutPolicy, as in Conductor's
	// checkTaskPollTimeout (TIME_OUT_WF is the task definition's default).
	t.Run("poll RETRY", func(t *testing.T) {
		h := newHarness(t, def, nil, `{"name":"t","retryCount":1,"retryDelaySeconds":0,"pollTimeoutSeconds":5,"timeoutPolicy":"RETRY"}`)
		h.advance(5 * time.Second)
		h.decide(engine.Tick{})
		if h.w.Tasks[0].Status != conductor.TaskTimedOut {
			t.Fatalf("tasks %v", h.refs())
		}
		h.wantTask("t", conductor.TaskScheduled) // the retry
		h.advance(5 * time.Second)
		h.decide(engine.Tick{})
		h.wantStatus(conductor.WorkflowTimedOut)
	})
	t.Run("poll TIME_OUT_WF", func(t *testing.T) {
		h := newHarness(t, def, nil, `{"name":"t","retryCount":2,"retryDelaySeconds":0,"pollTimeoutSeconds":5}`)
		h.advance(5 * time.Second)
		h.decide(engine.Tick{})
		h.wantStatus(conductor.WorkflowTimedOut)
		h.wantRefs("t")
	})
	// A WAIT named after a task definition times out by its timeoutSeconds
	// before it wakes (or with no wake-up at all), as Conductor applies a
	// definition to every task of its name.
	for _, input := range []string{`{"duration":"1 hour"}`, `{}`} {
		t.Run("WAIT "+input, func(t *testing.T) {
			h := newHarness(t, `{"name":"w","tasks":[{"name":"wait_to","taskReferenceName":"w","type":"WAIT","inputParameters":`+input+`}]}`, nil,
				`{"name":"wait_to","timeoutSeconds":2,"timeoutPolicy":"TIME_OUT_WF"}`)
			if dl := engine.Deadlines(h.w); len(dl) == 0 || dl[0] != epoch.Add(2*time.Second).UnixMilli() {
				t.Fatalf("deadlines %v", dl)
			}
			h.advance(2 * time.Second)
			h.decide(engine.Tick{})
			h.wantTask("w", conductor.TaskTimedOut)
			h.wantStatus(conductor.WorkflowTimedOut)
		})
	}
	t.Run("poll while paused", func(t *testing.T) {
		// A paused workflow's tasks do not time out until it resumes.
		h := newHarness(t, def, nil, `{"name":"t","retryCount":3,"pollTimeoutSeconds":60}`)
		h.decide(engine.Pause{})
		if dl := engine.Deadlines(h.w); len(dl) != 0 {
			t.Fatalf("a paused workflow's task has deadlines %v", dl)
		}
		h.advance(2 * time.Minute)
		h.decide(engine.Tick{})
		h.wantStatus(conductor.WorkflowPaused)
		h.decide(engine.Resume{})
		h.decide(engine.Tick{})
		h.wantStatus(conductor.WorkflowTimedOut)
	})
	t.Run("poll ALERT_ONLY", func(t *testing.T) {
		h := newHarness(t, def, nil, `{"name":"t","retryCount":2,"pollTimeoutSeconds":5,"timeoutPolicy":"ALERT_ONLY"}`)
		if dl := engine.Deadlines(h.w); len(dl) != 0 {
			t.Fatalf("an alert-only poll timeout has deadlines %v", dl)
		}
		h.advance(time.Minute)
		if d := h.decide(engine.Tick{}); len(d.Events) != 0 {
			t.Fatal("ALERT_ONLY changed the task")
		}
	})
	t.Run("response", func(t *testing.T) {
		h := newHarness(t, def, nil, `{"name":"t","retryCount":1,"retryDelaySeconds":0,"responseTimeoutSeconds":10}`)
		h.take("t")
		h.advance(8 * time.Second)
		h.decide(engine.Result{Result: conductor.TaskResult{TaskID: h.task("t").ID, Status: conductor.TaskInProgress, ExtendLease: true}})
		h.advance(8 * time.Second)
		if d := h.decide(engine.Tick{}); len(d.Events) != 0 {
			t.Fatal("timed out although the lease was extended")
		}
		h.advance(2 * time.Second)
		h.decide(engine.Tick{})
		if h.w.Tasks[0].Status != conductor.TaskTimedOut || h.task("t").Status != conductor.TaskScheduled {
			t.Fatalf("tasks %v", h.refs())
		}
		// The timed-out worker reports late: ignored.
		d := h.decide(engine.Result{Result: conductor.TaskResult{TaskID: h.w.Tasks[0].ID, Status: conductor.TaskCompleted}})
		if d.Reply != (engine.ResultReply{Ignored: true}) {
			t.Fatal("late result after response timeout was not ignored")
		}
	})
	t.Run("task timeout TIME_OUT_WF", func(t *testing.T) {
		h := newHarness(t, def, nil, `{"name":"t","retryCount":3,"timeoutSeconds":30,"timeoutPolicy":"TIME_OUT_WF","responseTimeoutSeconds":3600}`)
		h.take("t")
		h.advance(30 * time.Second)
		h.decide(engine.Tick{})
		h.wantStatus(conductor.WorkflowTimedOut)
	})
	t.Run("task timeout ALERT_ONLY", func(t *testing.T) {
		h := newHarness(t, def, nil, `{"name":"t","timeoutSeconds":30,"timeoutPolicy":"ALERT_ONLY","responseTimeoutSeconds":3600}`)
		h.take("t")
		h.advance(time.Minute)
		if d := h.decide(engine.Tick{}); len(d.Events) != 0 {
			t.Fatal("ALERT_ONLY changed the task")
		}
	})
	t.Run("paused workflow", func(t *testing.T) {
		// Its time runs on while paused, as in Conductor's decider.
		h := newHarness(t, `{"name":"to","timeoutSeconds":60,"timeoutPolicy":"TIME_OUT_WF","tasks":[{"name":"t","taskReferenceName":"t"}]}`, nil)
		h.decide(engine.Pause{})
		if dl := engine.Deadlines(h.w); len(dl) != 1 || dl[0] != epoch.Add(time.Minute).UnixMilli() {
			t.Fatalf("paused workflow's deadlines %v", dl)
		}
		h.advance(time.Minute)
		h.decide(engine.Tick{})
		h.wantStatus(conductor.WorkflowTimedOut)
	})
	t.Run("resumed workflow", func(t *testing.T) {
		// A resume gives it its whole time again, counted from the resume,
		// as Conductor's resume sets lastRetriedTime, which its decider
		// counts the workflow's timeout from.
		h := newHarness(t, `{"name":"to","timeoutSeconds":60,"timeoutPolicy":"TIME_OUT_WF","tasks":[{"name":"t","taskReferenceName":"t"}]}`, nil)
		h.advance(10 * time.Second)
		h.decide(engine.Pause{})
		h.advance(40 * time.Second)
		paused := h.w
		h.decide(engine.Resume{})
		resumed := h.now
		// A resume an earlier version recorded, without RestartsTimeout,
		// folds as it did: the time still counts from the start.
		old, err := engine.Apply(paused.Clone(), &schemas.WorkflowStatusChanged{Status: conductor.WorkflowRunning, Time: resumed.UnixMilli()})
		if err != nil {
			t.Fatal(err)
		}
		if dl := engine.Deadlines(old); len(dl) != 1 || dl[0] != epoch.Add(time.Minute).UnixMilli() || old.Conductor(true).LastRetriedTime != 0 {
			t.Fatalf("an earlier version's resume: deadlines %v, lastRetriedTime %d", dl, old.Conductor(true).LastRetriedTime)
		}
		if dl := engine.Deadlines(h.w); len(dl) != 1 || dl[0] != resumed.Add(time.Minute).UnixMilli() {
			t.Fatalf("resumed workflow's deadlines %v, want %d", dl, resumed.Add(time.Minute).UnixMilli())
		}
		if got := h.w.Conductor(true).LastRetriedTime; got != resumed.UnixMilli() {
			t.Fatalf("lastRetriedTime %d, want the resume's %d", got, resumed.UnixMilli())
		}
		h.advance(59 * time.Second)
		h.decide(engine.Tick{})
		h.wantStatus(conductor.WorkflowRunning)
		h.advance(time.Second)
		h.decide(engine.Tick{})
		h.wantStatus(conductor.WorkflowTimedOut)
	})
	t.Run("workflow", func(t *testing.T) {
		h := newHarness(t, `{"name":"to","timeoutSeconds":60,"timeoutPolicy":"TIME_OUT_WF","tasks":[{"name":"t","taskReferenceName":"t"}]}`, nil)
		h.advance(time.Minute)
		h.decide(engine.Tick{})
		h.wantStatus(conductor.WorkflowTimedOut)
		h.wantTask("t", conductor.TaskCanceled)

		// A retry gives the workflow its whole timeout again, counted from
		// the retry (lastRetriedTime), not from its start.
		h.decide(engine.Retry{})
		h.wantStatus(conductor.WorkflowRunning)
		h.advance(59 * time.Second)
		h.decide(engine.Tick{})
		h.wantStatus(conductor.WorkflowRunning)
		if dl := engine.Deadlines(h.w); len(dl) == 0 || dl[0] != h.w.LastRetriedTime+60_000 {
			t.Fatalf("deadlines %v after a retry at %d", dl, h.w.LastRetriedTime)
		}
		h.advance(time.Second)
		h.decide(engine.Tick{})
		h.wantStatus(conductor.WorkflowTimedOut)
	})
}

// Progress from a worker that no longer holds the task is ignored: its
// callback put the task back in the queue and another worker took it; a
// repeat of that progress must not hand the task out a second time.
func TestProgressFromAFormerHolder(t *testing.T) {
	h := newHarness(t, threeSimple, nil)
	id := h.task("a_ref").ID
	h.decide(engine.Take{TaskID: id, WorkerID: "A"})
	progress := engine.Result{Result: conductor.TaskResult{TaskID: id, WorkerID: "A", Status: conductor.TaskInProgress}}
	h.decide(progress)
	h.wantTask("a_ref", conductor.TaskScheduled)
	h.decide(engine.Take{TaskID: id, WorkerID: "B"})
	d := h.decide(progress)
	if len(d.Events) != 0 || d.Reply != (engine.ResultReply{Ignored: true}) {
		t.Fatalf("A's repeated progress: events %v reply %+v", d.Events, d.Reply)
	}
	if a := h.wantTask("a_ref", conductor.TaskInProgress); a.WorkerID != "B" {
		t.Fatalf("held by %q", a.WorkerID)
	}
	// The holder's progress still counts, and anyone's final result.
	h.decide(engine.Result{Result: conductor.TaskResult{TaskID: id, WorkerID: "B", Status: conductor.TaskInProgress, CallbackAfterSeconds: 5}})
	h.wantTask("a_ref", conductor.TaskScheduled)
}

// An alert-only timeout sets no deadline (flowvault raises no alert, and a
// deadline nothing acts on would stay due in the timer index), and does not
// hide the response timeout behind it.
func TestAlertOnlyTimeouts(t *testing.T) {
	h := newHarness(t, `{"name":"ao","timeoutSeconds":10,"timeoutPolicy":"ALERT_ONLY","tasks":[{"name":"t","taskReferenceName":"t"}]}`, nil,
		`{"name":"t","retryCount":0,"timeoutSeconds":20,"timeoutPolicy":"ALERT_ONLY","responseTimeoutSeconds":30}`)
	h.take("t")
	start := h.now.UnixMilli()
	if dl := engine.Deadlines(h.w); len(dl) != 1 || dl[0] != start+30_000 {
		t.Fatalf("deadlines %v, want only the response timeout at %d", dl, start+30_000)
	}
	h.advance(25 * time.Second)
	h.decide(engine.Tick{})
	h.wantStatus(conductor.WorkflowRunning)
	h.wantTask("t", conductor.TaskInProgress)
	h.advance(5 * time.Second)
	h.decide(engine.Tick{})
	h.wantTask("t", conductor.TaskTimedOut)
}

// wantTimesOutWorkflowAt ticks just before due, when task ref is still in
// progress, and at due, when its timeout ends the workflow (TIME_OUT_WF).
func (h *harness) wantTimesOutWorkflowAt(ref string, due int64) {
	h.t.Helper()
	h.now = time.UnixMilli(due - 1)
	h.decide(engine.Tick{})
	h.wantTask(ref, conductor.TaskInProgress)
	h.now = time.UnixMilli(due)
	h.decide(engine.Tick{})
	h.wantStatus(conductor.WorkflowTimedOut)
}

// A task's timeoutSeconds counts from its start plus the delay it waited
// before it could start (its startDelay, a retry's delay), as Conductor's
// checkTaskTimeout counts from startTime + startDelayInSeconds: a task
// of startDelay 60 and timeoutSeconds 30 taken as it came due has 90 s,
// not 30, a callback since or not. The reason counts from there too, and
// its startDelayInSeconds stays 60 across a callback (it showed the
// callback's due time less the scheduled time).
func TestTaskTimeoutCountsTheStartDelay(t *testing.T) {
	const timesOut = `"timeoutSeconds":30,"timeoutPolicy":"TIME_OUT_WF"`
	for _, tc := range []struct {
		name, task, taskDef string
		start               func(h *harness)
	}{
		{"a worker's task", `{"name":"a","taskReferenceName":"a","startDelay":60}`, `{"name":"a","retryCount":0,` + timesOut + `}`,
			func(h *harness) { h.advance(time.Minute); h.take("a") }},
		{"a worker's task called back", `{"name":"a","taskReferenceName":"a","startDelay":60}`, `{"name":"a","retryCount":0,` + timesOut + `}`,
			func(h *harness) {
				h.advance(time.Minute)
				h.take("a")
				h.decide(engine.Result{Result: conductor.TaskResult{TaskID: h.task("a").ID, Status: conductor.TaskInProgress, CallbackAfterSeconds: 10}})
				h.advance(10 * time.Second)
				h.take("a")
			}},
		{"a system task", `{"name":"a","taskReferenceName":"a","type":"HTTP","startDelay":60,
		   "inputParameters":{"http_request":{"uri":"http://x","method":"GET"}}}`, `{"name":"a","retryCount":0,` + timesOut + `}`,
			func(h *harness) { h.advance(time.Minute); h.systemTake("a") }},
		{"a retry's delay", `{"name":"a","taskReferenceName":"a"}`, `{"name":"a","retryCount":1,"retryDelaySeconds":60,` + timesOut + `}`,
			func(h *harness) {
				h.take("a")
				h.report("a", conductor.TaskFailed, nil, "flaky")
				h.advance(time.Minute)
				h.take("a")
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, `{"name":"d","tasks":[`+tc.task+`]}`, nil, tc.taskDef)
			tc.start(h)
			if view := h.task("a").Conductor(h.w); view.StartDelayInSeconds != 60 {
				t.Fatalf("startDelayInSeconds %d, want 60", view.StartDelayInSeconds)
			}
			due := h.task("a").StartTime + 90_000
			if dl := engine.Deadlines(h.w); !slices.Contains(dl, due) {
				t.Fatalf("deadlines %v lack the timeout 90 s after the start (%d)", dl, due)
			}
			h.wantTimesOutWorkflowAt("a", due)
			if a := h.wantTask("a", conductor.TaskTimedOut); !strings.HasPrefix(a.Reason, "Task timed out after 30 seconds.") {
				t.Fatalf("reason %q", a.Reason)
			}
		})
	}
}

// A delay cut short by a reset of the callbacks counts as what the task
// waited until then: its timeoutSeconds counts past that, not past a
// delay it never waited, which a backoffJitterMs may make years long.
func TestResetCallbacksCutsTheStartDelay(t *testing.T) {
	for _, tc := range []struct{ name, taskDef string }{
		{"a retry's delay", `{"name":"a","retryCount":1,"retryDelaySeconds":60,"timeoutSeconds":30,"timeoutPolicy":"TIME_OUT_WF"}`},
		{"a huge jitter", `{"name":"a","retryCount":1,"retryDelaySeconds":0,"backoffJitterMs":9223372036854775807,"timeoutSeconds":30,"timeoutPolicy":"TIME_OUT_WF"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, `{"name":"d","tasks":[{"name":"a","taskReferenceName":"a"}]}`, nil, tc.taskDef)
			h.take("a")
			h.report("a", conductor.TaskFailed, nil, "flaky")
			h.advance(10 * time.Second)
			h.decide(engine.ResetCallbacks{})
			h.take("a")
			if view := h.task("a").Conductor(h.w); view.StartDelayInSeconds != 10 {
				t.Fatalf("startDelayInSeconds %d, want 10", view.StartDelayInSeconds)
			}
			due := h.task("a").StartTime + 40_000
			h.wantTimesOutWorkflowAt("a", due)
		})
	}
}

// timeoutSeconds counts from the task's first IN_PROGRESS: a worker that
// keeps asking to be called back does not reset it (Conductor's per-attempt
// SLA), whether the task is in the queue or held when it runs out.
func TestTimeoutAcrossCallbacks(t *testing.T) {
	for _, held := range []bool{false, true} {
		h := newHarness(t, threeSimple, nil, `{"name":"a","retryCount":0,"timeoutSeconds":60,"timeoutPolicy":"TIME_OUT_WF"}`)
		id := h.task("a_ref").ID
		first := h.now
		for range 5 { // 50 s of callbacks
			h.decide(engine.Take{TaskID: id, WorkerID: "w"})
			h.decide(engine.Result{Result: conductor.TaskResult{TaskID: id, WorkerID: "w", Status: conductor.TaskInProgress, CallbackAfterSeconds: 10}})
			h.advance(10 * time.Second)
		}
		if a := h.task("a_ref"); a.StartTime != first.UnixMilli() {
			t.Fatalf("startTime %d, want the first take's %d", a.StartTime, first.UnixMilli())
		}
		if dl := engine.Deadlines(h.w); !slices.Contains(dl, first.UnixMilli()+60_000) {
			t.Fatalf("deadlines %v lack the timeout at %d", dl, first.UnixMilli()+60_000)
		}
		if held {
			h.decide(engine.Take{TaskID: id, WorkerID: "w"})
		}
		h.advance(10 * time.Second)
		h.decide(engine.Tick{})
		h.wantTask("a_ref", conductor.TaskTimedOut)
		h.wantStatus(conductor.WorkflowTimedOut)
	}
}

func TestCallbackAfterSeconds(t *testing.T) {
	h := newHarness(t, threeSimple, nil)
	h.take("a_ref")
	h.decide(engine.Result{Result: conductor.TaskResult{TaskID: h.task("a_ref").ID, Status: conductor.TaskInProgress,
		CallbackAfterSeconds: 30, OutputData: map[string]any{"progress": int64(50)}}})
	a := h.wantTask("a_ref", conductor.TaskScheduled)
	if a.AvailableAt != h.now.Add(30*time.Second).UnixMilli() || a.Output["progress"] != int64(50) {
		t.Fatalf("callback: available %d output %v", a.AvailableAt, a.Output)
	}
	// Not taken before its callback time, and not given up on either: an
	// engine whose clock is ahead may have announced it.
	if _, err := h.try(engine.Take{TaskID: a.ID}); !errorsIs(err, engine.ErrTaskNotYet) || !errorsIs(err, fault.ErrUnavailable) {
		t.Fatalf("take before the callback time: %v, want ErrTaskNotYet", err)
	}
	h.advance(30 * time.Second)
	h.decide(engine.Tick{})
	if len(effectsOf[engine.Dispatch](h.last)) != 1 {
		t.Fatal("not dispatched after the callback delay")
	}
	if a.CallbackAfterSeconds != 30 {
		t.Fatalf("waiting for its callback, the task shows callbackAfterSeconds %d", a.CallbackAfterSeconds)
	}
	// Taken again, the callback is over, as Conductor's poll clears it.
	if got := h.take("a_ref"); got.PollCount != 2 || got.CallbackAfterSeconds != 0 {
		t.Fatalf("poll count %d, callbackAfterSeconds %d", got.PollCount, got.CallbackAfterSeconds)
	}

	// Out of range is refused, changing nothing: one that overflowed the
	// due time would wrap round and hand the task out again at once.
	for _, secs := range []int64{-5, engine.MaxCallbackAfterSeconds + 1, math.MaxInt64} {
		_, err := h.try(engine.Result{Result: conductor.TaskResult{TaskID: h.task("a_ref").ID, Status: conductor.TaskInProgress,
			CallbackAfterSeconds: secs}})
		if !errorsIs(err, fault.ErrInvalid) || !strings.Contains(err.Error(), "callbackAfterSeconds") {
			t.Fatalf("callbackAfterSeconds %d: %v, want invalid", secs, err)
		}
	}
	h.wantTask("a_ref", conductor.TaskInProgress)
}

func TestRuntimeExpressionError(t *testing.T) {
	def := `{"name":"bad","tasks":[{"name":"t","taskReferenceName":"t","inputParameters":{"x":"${workflow.input.a"}}]}`
	h := newHarness(t, def, nil)
	h.wantTask("t", conductor.TaskFailedWithTerminalError)
	h.wantStatus(conductor.WorkflowFailed)
	if !strings.Contains(h.w.Reason, "input of t") {
		t.Fatalf("reason %q", h.w.Reason)
	}
}

func TestDeterministic(t *testing.T) {
	run := func() []string {
		h := newHarness(t, forkJoin, map[string]any{"x": int64(1)})
		h.complete("a", nil)
		h.complete("b", nil)
		var ids []string
		for _, tk := range h.w.Tasks {
			ids = append(ids, tk.ID)
		}
		return ids
	}
	if a, b := run(), run(); !reflect.DeepEqual(a, b) {
		t.Fatalf("task ids differ between identical runs:\n%v\n%v", a, b)
	}
}

// A reference name that ends like a loop iteration ("step__1") outside a
// loop is a name like any other: what follows it runs, and expressions
// find it.
func TestRefNamesLikeIterations(t *testing.T) {
	h := newHarness(t, `{"name":"w","tasks":[{"name":"s","taskReferenceName":"step__1"},
	  {"name":"s","taskReferenceName":"step__2","inputParameters":{"prev":"${step__1.output.v}"}}],
	  "outputParameters":{"v":"${step__2.output.v}"}}`, nil)
	h.complete("step__1", map[string]any{"v": "one"})
	if got := h.wantTask("step__2", conductor.TaskScheduled).Input["prev"]; got != "one" {
		t.Fatalf("step__2 input prev = %v", got)
	}
	h.complete("step__2", map[string]any{"v": "two"})
	h.wantStatus(conductor.WorkflowCompleted)
	if h.w.Output["v"] != "two" {
		t.Fatalf("output %v", h.w.Output)
	}
}

// A SUB_WORKFLOW waits out its startDelay and its retry delay before its
// child starts, as Conductor queues it (an asynchronous system task).
func TestSubWorkflowDelays(t *testing.T) {
	def := `{"name":"parent","tasks":[{"name":"child","taskReferenceName":"child","type":"SUB_WORKFLOW","startDelay":3,
	  "subWorkflowParam":{"name":"kid"}}]}`
	h := newHarness(t, def, nil, `{"name":"child","retryCount":1,"retryDelaySeconds":5}`)
	first := h.wantTask("child", conductor.TaskScheduled)
	if starts := effectsOf[engine.StartWorkflow](h.last); len(starts) != 0 || first.SubWorkflowID != "" {
		t.Fatalf("started a child before the start delay: %+v", starts)
	}
	h.advance(3 * time.Second)
	h.decide(engine.Tick{})
	first = h.wantTask("child", conductor.TaskInProgress)
	if starts := effectsOf[engine.StartWorkflow](h.last); len(starts) != 1 || starts[0].WorkflowID != first.SubWorkflowID || first.SubWorkflowID == "" ||
		first.Output["subWorkflowId"] != first.SubWorkflowID {
		t.Fatalf("after the delay: task %+v, starts %+v", first, starts)
	}

	h.decide(engine.ChildFinished{ChildID: first.SubWorkflowID, Status: conductor.WorkflowFailed, Reason: "kid broke"})
	retry := h.wantTask("child", conductor.TaskScheduled)
	if starts := effectsOf[engine.StartWorkflow](h.last); len(starts) != 0 || retry.ID == first.ID {
		t.Fatalf("retried at once: %+v", starts)
	}
	h.advance(4 * time.Second)
	if d := h.decide(engine.Tick{}); len(effectsOf[engine.StartWorkflow](d)) != 0 {
		t.Fatal("retried before retryDelaySeconds")
	}
	h.advance(time.Second)
	h.decide(engine.Tick{})
	retry = h.wantTask("child", conductor.TaskInProgress)
	starts := effectsOf[engine.StartWorkflow](h.last)
	if len(starts) != 1 || starts[0].WorkflowID != retry.SubWorkflowID || retry.SubWorkflowID == first.SubWorkflowID {
		t.Fatalf("retry: task %+v, starts %+v", retry, starts)
	}
	if dl := engine.Deadlines(h.w); len(dl) != 0 {
		t.Fatalf("deadlines %v for a task whose child runs", dl)
	}

	// Without delays the retry starts its child in the decision that
	// retries, once.
	now := newHarness(t, strings.Replace(def, `"startDelay":3,`, "", 1), nil, `{"name":"child","retryCount":1,"retryDelaySeconds":0}`)
	failed := now.wantTask("child", conductor.TaskInProgress)
	now.decide(engine.ChildFinished{ChildID: failed.SubWorkflowID, Status: conductor.WorkflowFailed})
	retry = now.wantTask("child", conductor.TaskInProgress)
	if starts := effectsOf[engine.StartWorkflow](now.last); len(starts) != 1 || starts[0].WorkflowID != retry.SubWorkflowID ||
		retry.SubWorkflowID == failed.SubWorkflowID {
		t.Fatalf("retry without delay: task %+v, starts %+v", retry, starts)
	}
}

// subWorkflowParam.workflowDefinition may be an expression: the child's
// definition comes from the workflow's data.
func TestSubWorkflowDefinitionFromExpression(t *testing.T) {
	def := `{"name":"parent","tasks":[{"name":"child","taskReferenceName":"child","type":"SUB_WORKFLOW",
	  "subWorkflowParam":{"name":"dyn","workflowDefinition":"${workflow.input.def}"}}]}`
	child := map[string]any{"name": "dyn", "tasks": []any{map[string]any{"name": "x", "taskReferenceName": "x"}}}
	for _, tt := range []struct {
		name  string
		input map[string]any
		want  string
	}{
		{"object", map[string]any{"def": child}, `{"name":"dyn","tasks":[{"name":"x","taskReferenceName":"x"}]}`},
		{"not an object", map[string]any{"def": "dyn"}, ""},
		{"absent", nil, ""},
	} {
		h := newHarness(t, def, tt.input)
		starts := effectsOf[engine.StartWorkflow](h.last)
		if len(starts) != 1 || string(starts[0].Def) != tt.want || starts[0].Name != "dyn" {
			t.Fatalf("%s: starts %+v, want definition %s", tt.name, starts, tt.want)
		}
	}
}

// A pause is the paused workflow's alone, as Conductor's pauseWorkflow:
// the child runs on, and its end updates the SUB_WORKFLOW task, which the
// parent acts on only when it is resumed.
func TestPausedParentLeavesItsChild(t *testing.T) {
	const def = `{"name":"parent","tasks":[{"name":"child","taskReferenceName":"child","type":"SUB_WORKFLOW",
	  "subWorkflowParam":{"name":"kid"}},{"name":"after","taskReferenceName":"after"}]}`
	for _, tt := range []struct {
		child, wantTask, wantStatus string
		wantRefs                    []string
	}{
		{conductor.WorkflowCompleted, conductor.TaskCompleted, conductor.WorkflowRunning, []string{"child", "after"}},
		{conductor.WorkflowFailed, conductor.TaskFailed, conductor.WorkflowFailed, []string{"child"}},
	} {
		h := newHarness(t, def, nil, `{"name":"child","retryCount":0}`)
		child := h.wantTask("child", conductor.TaskInProgress).SubWorkflowID
		if d := h.decide(engine.Pause{}); len(d.Effects) != 0 {
			t.Fatalf("%s: the pause acted on the child: %s", tt.child, describe(d))
		}
		h.decide(engine.ChildFinished{ChildID: child, Status: tt.child, Reason: "kid broke"})
		h.wantTask("child", tt.wantTask)
		h.wantStatus(conductor.WorkflowPaused)
		h.wantRefs("child")
		h.decide(engine.Resume{})
		h.wantStatus(tt.wantStatus)
		h.wantRefs(tt.wantRefs...)
	}
}

// subWorkflowParam.taskToDomain is evaluated as Conductor's
// SubWorkflowTaskMapper evaluates it: a domain may come from the
// workflow's data. What a domain may not be is refused, and the child is
// not started.
func TestSubWorkflowDomainsFromExpressions(t *testing.T) {
	const def = `{"name":"parent","tasks":[{"name":"child","taskReferenceName":"child","type":"SUB_WORKFLOW",
	  "subWorkflowParam":{"name":"kid","taskToDomain":%s}}]}`
	for _, tt := range []struct {
		name, t2d   string
		input       map[string]any
		want        map[string]string
		wantRefused string
	}{
		{"expression", `{"*":"${workflow.input.dom}","pay":"gold"}`, map[string]any{"dom": "blue"},
			map[string]string{"*": "blue", "pay": "gold"}, ""},
		{"embedded", `{"*":"${workflow.input.dom}-eu,NO_DOMAIN"}`, map[string]any{"dom": "blue"},
			map[string]string{"*": "blue-eu,NO_DOMAIN"}, ""},
		{"null is left out", `{"*":"${workflow.input.missing}","pay":"gold"}`, nil,
			map[string]string{"pay": "gold"}, ""},
		{"given empty", `{}`, nil, map[string]string{}, ""},
		// Refused before the start: the engine does not read secrets.
		{"a secret", `{"*":"${workflow.secrets.dom}"}`, nil, nil, "taskToDomain.* is sealed data, a secret or an environment value"},
		{"an environment value", `{"*":"x-${workflow.env.dom}"}`, nil, nil, "taskToDomain.* is sealed data, a secret or an environment value"},
		{"not text", `{"*":"${workflow.input.dom}"}`, map[string]any{"dom": map[string]any{"a": "b"}}, nil, "want text"},
	} {
		h := newHarness(t, fmt.Sprintf(def, tt.t2d), tt.input)
		starts := effectsOf[engine.StartWorkflow](h.last)
		if strings.Contains(tt.wantRefused, "sealed data") {
			if task := h.wantTask("child", conductor.TaskFailedWithTerminalError); len(starts) != 0 || !strings.Contains(task.Reason, tt.wantRefused) {
				t.Errorf("%s: starts %+v, reason %q, want no start and %q", tt.name, starts, task.Reason, tt.wantRefused)
			}
			continue
		}
		if len(starts) != 1 {
			t.Fatalf("%s: starts %+v", tt.name, starts)
		}
		got := starts[0]
		if tt.wantRefused != "" {
			if !strings.Contains(got.Refused, tt.wantRefused) || !strings.Contains(got.Refused, `taskToDomain "*"`) {
				t.Errorf("%s: refused %q, want it to say %q", tt.name, got.Refused, tt.wantRefused)
			}
			continue
		}
		if got.Refused != "" || !reflect.DeepEqual(got.TaskToDomain, tt.want) {
			t.Errorf("%s: taskToDomain %v (refused %q), want %v", tt.name, got.TaskToDomain, got.Refused, tt.want)
		}
	}
}

// A result about an earlier take of a task (its lease, the take's
// PollCount, is not the latest) is ignored, whatever worker id it names:
// its worker put the task back with a callback, and a later take, maybe
// by a worker sharing its id, holds it now.
func TestResultOfAnEarlierTakeIsIgnored(t *testing.T) {
	h := newHarness(t, threeSimple, nil)
	first := h.take("a_ref")
	progress := func(lease int, status string) engine.Decision {
		return h.decide(engine.Result{Lease: lease, Result: conductor.TaskResult{TaskID: first.ID, WorkerID: "w1",
			Status: status, OutputData: map[string]any{"lease": int64(lease)}}})
	}
	progress(first.PollCount, conductor.TaskInProgress) // callback 0: back to the queue
	h.wantTask("a_ref", conductor.TaskScheduled)
	second := h.take("a_ref")
	if second.PollCount == first.PollCount {
		t.Fatalf("the second take has the first's poll count %d", first.PollCount)
	}
	for _, status := range []string{conductor.TaskInProgress, conductor.TaskCompleted} {
		if d := progress(first.PollCount, status); len(d.Events) != 0 || d.Reply != (engine.ResultReply{Ignored: true}) {
			t.Fatalf("%s about the first take: events %v, reply %+v", status, d.Events, d.Reply)
		}
		h.wantTask("a_ref", conductor.TaskInProgress)
	}
	progress(second.PollCount, conductor.TaskCompleted)
	if a := h.wantTask("a_ref", conductor.TaskCompleted); a.Output["lease"] != int64(second.PollCount) {
		t.Fatalf("completed with %v", a.Output)
	}
}

// A rerun that goes through a SUB_WORKFLOW with a start delay waits for
// the child that runs again, at once: it does not wait out the delay and
// start another.
func TestRerunThroughDelayedSubWorkflow(t *testing.T) {
	def := `{"name":"parent","tasks":[{"name":"child","taskReferenceName":"child","type":"SUB_WORKFLOW","startDelay":5,
	  "subWorkflowParam":{"name":"kid"}}]}`
	h := newHarness(t, def, nil)
	h.advance(5 * time.Second)
	h.decide(engine.Tick{})
	child := h.wantTask("child", conductor.TaskInProgress).SubWorkflowID
	h.decide(engine.ChildFinished{ChildID: child, Status: conductor.WorkflowFailed, Reason: "kid broke"})
	h.wantStatus(conductor.WorkflowFailed)
	h.advance(time.Second)
	d := h.decide(engine.ChildReopened{ChildID: child, RerunUpTo: h.w.ID, ResetTime: h.now.UnixMilli()})
	h.wantStatus(conductor.WorkflowRunning)
	if got := h.wantTask("child", conductor.TaskInProgress).SubWorkflowID; got != child {
		t.Fatalf("the rerun waits for %s, want the child that runs again, %s", got, child)
	}
	if starts := effectsOf[engine.StartWorkflow](d); len(starts) != 0 {
		t.Fatalf("the rerun starts %+v", starts)
	}
}

// The engine's hand-back of a take that never reached its taker puts the
// task back to be handed out again at once: a worker task is dispatched,
// a system task run again (an IN_PROGRESS result from its worker would
// release it instead). A hand-back of an earlier take, of a task no longer
// in progress, or of a loop's condition take changes nothing.
func TestHandBack(t *testing.T) {
	handBack := func(h *harness, ref string, lease int) engine.Decision {
		return h.decide(engine.Result{HandBack: true, Lease: lease, Result: conductor.TaskResult{TaskID: h.task(ref).ID,
			Status: conductor.TaskInProgress, ReasonForIncompletion: "handed out again"}})
	}
	ignored := func(t *testing.T, d engine.Decision) {
		t.Helper()
		if len(d.Events) != 0 || d.Reply != (engine.ResultReply{Ignored: true}) {
			t.Fatalf("events %v, reply %+v; want it ignored", d.Events, d.Reply)
		}
	}
	t.Run("worker task", func(t *testing.T) {
		h := newHarness(t, threeSimple, nil)
		taken := h.take("a_ref")
		ignored(t, handBack(h, "a_ref", taken.PollCount+1))
		d := handBack(h, "a_ref", taken.PollCount)
		if a := h.wantTask("a_ref", conductor.TaskScheduled); a.Reason != "handed out again" {
			t.Fatalf("reason %q", a.Reason)
		}
		if dis := effectsOf[engine.Dispatch](d); len(dis) != 1 || dis[0].TaskID != taken.ID {
			t.Fatalf("dispatches %+v", dis)
		}
		ignored(t, handBack(h, "a_ref", taken.PollCount)) // no longer in progress
	})
	t.Run("system task", func(t *testing.T) {
		h := newHarness(t, `{"name":"sys","tasks":[{"name":"script","taskReferenceName":"script","type":"INLINE",
		  "inputParameters":{"evaluatorType":"javascript","expression":"1"}}]}`, nil)
		taken := h.systemTake("script")
		d := handBack(h, "script", taken.PollCount)
		h.wantTask("script", conductor.TaskScheduled)
		if runs := effectsOf[engine.RunSystem](d); len(runs) != 1 || runs[0].TaskID != taken.ID {
			t.Fatalf("runs %+v", runs)
		}
	})
	t.Run("loop condition", func(t *testing.T) {
		h := newHarness(t, `{"name":"loop","tasks":[{"name":"loop","taskReferenceName":"loop","type":"DO_WHILE",
		  "loopCondition":"if ($.loop['iteration'] < 2) { true; } else { false; }","loopOver":[{"name":"a","taskReferenceName":"a"}]}]}`, nil)
		h.complete("a__1", nil)
		taken := h.systemTake("loop") // to evaluate its condition
		ignored(t, handBack(h, "loop", taken.PollCount))
	})
	// A task in progress that no take holds (a JOIN waiting) has no take
	// to give back: put back to SCHEDULED, nothing would take it again.
	t.Run("never taken", func(t *testing.T) {
		h := newHarness(t, `{"name":"f","tasks":[{"name":"fork","taskReferenceName":"fork","type":"FORK_JOIN","forkTasks":[
		  [{"name":"a","taskReferenceName":"a"}]]},{"name":"join","taskReferenceName":"join","type":"JOIN","joinOn":["a"]}]}`, nil)
		h.wantTask("join", conductor.TaskInProgress)
		ignored(t, handBack(h, "join", 0))
	})
}

// A chain of workflows each started by the one before ends at
// engine.MaxDepth: a definition that starts itself, by a sub-workflow, a
// START_WORKFLOW or as its own failure workflow, would otherwise start
// workflows for ever. Each start says how deep it is; the one past the
// limit is refused, naming it.
func TestChainOfStartsEndsAtMaxDepth(t *testing.T) {
	defs := map[string]string{
		"sub workflow": `{"name":"again","tasks":[{"name":"again","taskReferenceName":"again","type":"SUB_WORKFLOW",
		  "subWorkflowParam":{"name":"again"}}]}`,
		"start workflow": `{"name":"again","tasks":[{"name":"again","taskReferenceName":"again","type":"START_WORKFLOW",
		  "inputParameters":{"startWorkflow":{"name":"again"}}}]}`,
		"failure workflow": `{"name":"again","failureWorkflow":"again","tasks":[{"name":"stop","taskReferenceName":"stop",
		  "type":"TERMINATE","inputParameters":{"terminationStatus":"FAILED"}}]}`,
	}
	for name, def := range defs {
		for _, depth := range []int{0, engine.MaxDepth - 1, engine.MaxDepth} {
			t.Run(fmt.Sprintf("%s at depth %d", name, depth), func(t *testing.T) {
				h := newHarnessStart(t, engine.Start{WorkflowID: "wf-1", Def: parseDef(t, def), CreatedBy: "app:tester", Depth: depth})
				if h.w.Depth != depth {
					t.Fatalf("the workflow is at depth %d, want %d", h.w.Depth, depth)
				}
				starts := effectsOf[engine.StartWorkflow](h.last)
				if len(starts) != 1 {
					t.Fatalf("%d starts, want 1", len(starts))
				}
				s := starts[0]
				if s.Depth != depth+1 {
					t.Fatalf("the start is at depth %d, want %d", s.Depth, depth+1)
				}
				if refused := s.Refused != ""; refused != (depth >= engine.MaxDepth) {
					t.Fatalf("at depth %d the start is refused %q", depth, s.Refused)
				}
				if s.Refused != "" && !strings.Contains(s.Refused, fmt.Sprintf("the limit is %d", engine.MaxDepth)) {
					t.Fatalf("refused %q: want the limit named", s.Refused)
				}
			})
		}
	}
}

// A WAIT shows when it wakes as Conductor's Task JSON does: the seconds
// to wait as callbackAfterSeconds, and the time as waitTimeout (Unix ms),
// kept once it has woken; one waiting for an update alone shows neither.
func TestWaitShowsWhenItWakes(t *testing.T) {
	tests := []struct {
		name      string
		input     string
		advance   time.Duration
		wantAfter int64
		wantAt    int64
	}{
		{"duration", `{"duration":"1 hours"}`, 0, 3600, epoch.Add(time.Hour).UnixMilli()},
		{"duration, woken", `{"duration":"10s"}`, 10 * time.Second, 10, epoch.Add(10 * time.Second).UnixMilli()},
		{"until, part of a second rounded up", `{"until":"2026-11-30 12:01 UTC"}`, 0, 60, epoch.Add(time.Minute).UnixMilli()},
		{"until passed", `{"until":"2026-11-30 11:00 UTC"}`, 0, 0, epoch.Add(-time.Hour).UnixMilli()},
		{"for an update", `{}`, 0, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			def := `{"name":"w","tasks":[{"name":"wait","taskReferenceName":"wait","type":"WAIT","inputParameters":` + tt.input + `},{"name":"next","taskReferenceName":"next"}]}`
			h := newHarness(t, def, nil)
			if tt.advance > 0 {
				h.advance(tt.advance)
				h.decide(engine.Tick{})
			}
			view := h.task("wait").Conductor(h.w)
			if view.CallbackAfterSeconds != tt.wantAfter || view.WaitTimeout != tt.wantAt {
				t.Fatalf("%s %s: callbackAfterSeconds %d, waitTimeout %d; want %d, %d",
					view.Status, tt.input, view.CallbackAfterSeconds, view.WaitTimeout, tt.wantAfter, tt.wantAt)
			}
			js, _ := json.Marshal(view)
			if has := strings.Contains(string(js), `"waitTimeout"`); has != (tt.wantAt != 0) {
				t.Fatalf("task JSON %s: waitTimeout present %v, want %v", js, has, tt.wantAt != 0)
			}
		})
	}
}

// A timeout's reason is Conductor's (DeciderService), on the task and, for
// a workflow timeout or a task's TIME_OUT_WF, on the workflow: failure
// workflows and alerts written for Conductor match these words.
func TestTimeoutReasons(t *testing.T) {
	def := `{"name":"to","tasks":[{"name":"t","taskReferenceName":"t"}]}`
	tests := []struct {
		name    string
		def     string
		taskDef string
		take    bool
		wait    time.Duration
		task    string // the timed-out task's reason ("": no task timed out)
		wf      string // the workflow's
		status  string
	}{
		{"task", def, `{"name":"t","retryCount":0,"timeoutSeconds":30,"responseTimeoutSeconds":30,"timeoutPolicy":"TIME_OUT_WF"}`, true, 31 * time.Second,
			"Task timed out after 31 seconds. Timeout configured as 30 seconds. Timeout policy configured to TIME_OUT_WF",
			"Task timed out after 31 seconds. Timeout configured as 30 seconds. Timeout policy configured to TIME_OUT_WF", conductor.WorkflowTimedOut},
		{"poll", def, `{"name":"t","retryCount":3,"pollTimeoutSeconds":5}`, false, 5 * time.Second,
			"Task poll timed out after 5 seconds. Poll timeout configured as 5 seconds. Timeout policy configured to TIME_OUT_WF",
			"Task poll timed out after 5 seconds. Poll timeout configured as 5 seconds. Timeout policy configured to TIME_OUT_WF", conductor.WorkflowTimedOut},
		{"poll RETRY", def, `{"name":"t","retryCount":1,"pollTimeoutSeconds":5,"timeoutPolicy":"RETRY"}`, false, 7 * time.Second,
			"Task poll timed out after 7 seconds. Poll timeout configured as 5 seconds. Timeout policy configured to RETRY", "", conductor.WorkflowRunning},
		{"response", def, `{"name":"t","retryCount":1,"responseTimeoutSeconds":10}`, true, 10 * time.Second,
			"responseTimeout: 10 exceeded for the taskId: %s with Task Definition: t", "", conductor.WorkflowRunning},
		{"workflow", `{"name":"to","timeoutSeconds":60,"timeoutPolicy":"TIME_OUT_WF","tasks":[{"name":"t","taskReferenceName":"t"}]}`, "", false, 61 * time.Second,
			"", "Workflow timed out after 61 seconds. Timeout configured as 60 seconds. Timeout policy configured to TIME_OUT_WF", conductor.WorkflowTimedOut},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var taskDefs []string
			if tt.taskDef != "" {
				taskDefs = append(taskDefs, tt.taskDef)
			}
			h := newHarness(t, tt.def, nil, taskDefs...)
			id := h.task("t").ID
			if tt.take {
				h.take("t")
			}
			h.advance(tt.wait)
			h.decide(engine.Tick{})
			h.wantStatus(tt.status)
			if want := strings.ReplaceAll(tt.wf, "%s", id); h.w.Reason != want {
				t.Fatalf("workflow reason %q, want %q", h.w.Reason, want)
			}
			if tt.task == "" {
				return
			}
			got := h.w.TaskByID(id)
			if want := strings.ReplaceAll(tt.task, "%s", id); got.Status != conductor.TaskTimedOut || got.Reason != want {
				t.Fatalf("task %s %q, want TIMED_OUT %q", got.Status, got.Reason, want)
			}
		})
	}
}

// A workflow started without a correlationId, or not as a child, gives its
// tasks null for those fields, as Conductor does: "c-null" inside text,
// and the task definition's inputTemplate value where one is given.
func TestUnsetWorkflowFieldsAreNull(t *testing.T) {
	const def = `{"name":"w","tasks":[{"name":"a","taskReferenceName":"a","inputParameters":{
		"corr":"${workflow.correlationId}","label":"c-${workflow.correlationId}","parent":"${workflow.parentWorkflowId}",
		"parentTask":"${workflow.parentWorkflowTaskId}","reason":"${workflow.reasonForIncompletion}",
		"fallback":"${workflow.correlationId}"}}]}`
	var td conductor.TaskDef
	if err := conductor.Unmarshal([]byte(`{"name":"a","inputTemplate":{"fallback":"none"}}`), &td); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		start engine.Start
		want  map[string]any
	}{
		{"unset", engine.Start{},
			map[string]any{"corr": nil, "label": "c-null", "parent": nil, "parentTask": nil, "reason": nil, "fallback": "none"}},
		{"set", engine.Start{Request: conductor.StartWorkflowRequest{CorrelationID: "c-1"}, ParentWorkflowID: "p-1", ParentWorkflowTaskID: "pt-1"},
			map[string]any{"corr": "c-1", "label": "c-c-1", "parent": "p-1", "parentTask": "pt-1", "reason": nil, "fallback": "c-1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &harness{t: t, now: epoch, taskDefs: map[string]*conductor.TaskDef{"a": &td}}
			start := tc.start
			start.WorkflowID, start.Def, start.CreatedBy = "wf-1", parseDef(t, def), "app:tester"
			h.decide(start)
			if got := h.wantTask("a", conductor.TaskScheduled).Input; !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("input = %#v, want %#v", got, tc.want)
			}
		})
	}
}

// A panic inside a decision (a defect of the decider; here, its task
// definition lookup) fails that decision with a *DeciderFault instead of
// ending the process, naming a runtime error but not any other value the
// panic carried, which could be the workflow's data.
func TestDecisionPanicFailsTheDecision(t *testing.T) {
	def := parseDef(t, `{"name":"p","tasks":[{"name":"a","taskReferenceName":"a"}]}`)
	for _, tc := range []struct {
		name    string
		panics  func()
		want    string
		notWant string
	}{
		{"runtime error", func() { var m map[string]int; m["x"] = 1 }, "assignment to entry in nil map", ""},
		{"a value", func() { panic("s3cret-payload") }, "a panic of type string", "s3cret"},
		{"an error", func() { panic(errors.New("s3cret-payload")) }, "a panic of type *errors.errorString", "s3cret"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := engine.Decide(engine.Input{Now: epoch, Trigger: engine.Start{WorkflowID: "wf-1", Def: def, CreatedBy: "app:tester"},
				TaskDef: func(string) *conductor.TaskDef { tc.panics(); return nil }})
			var df *engine.DeciderFault
			if !errors.As(err, &df) {
				t.Fatalf("err = %v, want a *DeciderFault", err)
			}
			if !strings.Contains(err.Error(), tc.want) || tc.notWant != "" && strings.Contains(err.Error(), tc.notWant) {
				t.Errorf("err = %q, want it to say %q and not %q", err, tc.want, tc.notWant)
			}
			if !strings.Contains(string(df.Stack), "TestDecisionPanicFailsTheDecision") {
				t.Errorf("stack does not show where it panicked:\n%s", df.Stack)
			}
		})
	}
}

// Of several taskToDomain entries the child may not take, the refusal
// names the same one in every decision: the first in key order.
func TestSubWorkflowDomainRefusalIsDeterministic(t *testing.T) {
	const def = `{"name":"parent","tasks":[{"name":"child","taskReferenceName":"child","type":"SUB_WORKFLOW",
	  "subWorkflowParam":{"name":"kid","taskToDomain":{"a":"${workflow.input.m}","b":"${workflow.input.m}","c":"${workflow.input.m}"}}}]}`
	for range 20 {
		h := newHarness(t, def, map[string]any{"m": map[string]any{"x": "y"}})
		starts := effectsOf[engine.StartWorkflow](h.last)
		if len(starts) != 1 || !strings.Contains(starts[0].Refused, `taskToDomain "a"`) {
			t.Fatalf("starts %+v, want one refused naming entry \"a\"", starts)
		}
	}
}

// An update by reference name (MergeOutput) sets its output over the
// task's, as Conductor's does; a worker's result replaces it.
func TestResultMergesOutputByReferenceName(t *testing.T) {
	type update struct {
		status string
		output map[string]any
		merge  bool
	}
	cases := []struct {
		name    string
		def     string
		setup   func(*harness)
		updates []update
		want    map[string]any
	}{
		{"WAIT in progress then completed", `{"name":"w","tasks":[{"name":"wait","taskReferenceName":"t","type":"WAIT"}]}`, nil,
			[]update{{conductor.TaskInProgress, map[string]any{"greet": "hi"}, true}, {conductor.TaskCompleted, map[string]any{"answer": 42}, true}},
			map[string]any{"greet": "hi", "answer": 42}},
		{"a worker's progress then completed by reference name", `{"name":"w","tasks":[{"name":"job","taskReferenceName":"t"}]}`, func(h *harness) { h.take("t") },
			[]update{{conductor.TaskInProgress, map[string]any{"a": 1, "b": 1}, false}, {conductor.TaskCompleted, map[string]any{"b": 2}, true}},
			map[string]any{"a": 1, "b": 2}},
		{"a worker's results replace", `{"name":"w","tasks":[{"name":"job","taskReferenceName":"t"}]}`, func(h *harness) { h.take("t") },
			[]update{{conductor.TaskInProgress, map[string]any{"a": 1}, false}, {conductor.TaskCompleted, map[string]any{"b": 2}, false}},
			map[string]any{"b": 2}},
		{"failed by reference name", `{"name":"w","tasks":[{"name":"wait","taskReferenceName":"t","type":"WAIT"}]}`, nil,
			[]update{{conductor.TaskInProgress, map[string]any{"a": 1}, true}, {conductor.TaskFailed, map[string]any{"why": "no"}, true}},
			map[string]any{"a": 1, "why": "no"}},
		{"HTTP with asyncComplete keeps its response", `{"name":"w","tasks":[{"name":"http_call","taskReferenceName":"t","type":"HTTP",
		  "asyncComplete":true,"inputParameters":{"http_request":{"uri":"http://x","method":"GET"}}}]}`, func(h *harness) {
			h.decide(engine.Take{TaskID: h.task("t").ID, WorkerID: "flowvault", System: true})
			h.decide(engine.Result{Lease: 1, Result: conductor.TaskResult{TaskID: h.task("t").ID, Status: conductor.TaskInProgress,
				WorkerID: "flowvault", OutputData: map[string]any{"response": "ok"}}})
		}, []update{{conductor.TaskCompleted, map[string]any{"approved": true}, true}},
			map[string]any{"response": "ok", "approved": true}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, tc.def, nil)
			if tc.setup != nil {
				tc.setup(h)
			}
			for _, u := range tc.updates {
				h.decide(engine.Result{Result: conductor.TaskResult{TaskID: h.task("t").ID, WorkflowInstanceID: h.w.ID,
					Status: u.status, OutputData: u.output}, MergeOutput: u.merge})
			}
			if got := h.task("t").Output; !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("output %v, want %v", got, tc.want)
			}
		})
	}
}

// A restarted engine takes back at once the system tasks its dead process
// held (Reclaim): what the lease's expiry does, without its 5 minutes,
// and only under the take the engine saw; a task another holder took, one
// reported, or one released is left to its holder.
func TestReclaimRunsTheTaskAgainAsTheLeaseWould(t *testing.T) {
	const def = `{"name":"h","tasks":[{"name":"call","taskReferenceName":"call","type":"HTTP",
	  "inputParameters":{"http_request":{"uri":"http://x","method":"GET"}}}]}`
	const dead = "flowvault/engine-a/boot-1"
	tests := []struct {
		name    string
		taskDef string // none when empty
		holder  string // the take's
		setup   func(h *harness)
		ask     string // the Reclaim's holder
		gone    bool
		// timedOut: the task ran out of its timeoutSeconds meanwhile; it
		// times out, as the tick due then would, rather than run again.
		timedOut bool
	}{
		{name: "held by the dead process", holder: dead, ask: dead},
		{name: "past its timeout", taskDef: `{"name":"call","timeoutSeconds":10,"timeoutPolicy":"TIME_OUT_WF"}`, holder: dead, ask: dead,
			timedOut: true, setup: func(h *harness) { h.advance(10 * time.Second) }},
		{name: "held by another", holder: "flowvault/engine-b/boot-9", ask: dead, gone: true},
		{name: "held by an older version's take", holder: "flowvault", ask: dead, gone: true},
		{name: "no holder named", holder: dead, ask: "", gone: true},
		{name: "reported before the death", holder: dead, ask: dead, gone: true, setup: func(h *harness) {
			h.complete("call", map[string]any{"done": true})
		}},
		{name: "released (asyncComplete)", holder: dead, ask: dead, gone: true, setup: func(h *harness) {
			h.decide(engine.Result{Lease: 1, Result: conductor.TaskResult{TaskID: h.task("call").ID, Status: conductor.TaskInProgress, WorkerID: dead}})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var taskDefs []string
			if tt.taskDef != "" {
				taskDefs = append(taskDefs, tt.taskDef)
			}
			h := newHarness(t, def, nil, taskDefs...)
			id := h.task("call").ID
			h.decide(engine.Take{TaskID: id, WorkerID: tt.holder, System: true})
			if tt.setup != nil {
				tt.setup(h)
			}
			before := *h.task("call")
			d, err := h.try(engine.Reclaim{TaskID: id, Holder: tt.ask})
			if tt.gone {
				if !errorsIs(err, engine.ErrTaskGone) {
					t.Fatalf("reclaim: %v, want ErrTaskGone", err)
				}
				if after := h.task("call"); after.Status != before.Status || after.WorkerID != before.WorkerID {
					t.Fatalf("task went from %s held by %q to %s held by %q", before.Status, before.WorkerID, after.Status, after.WorkerID)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.timedOut {
				if len(effectsOf[engine.RunSystem](d)) != 0 {
					t.Fatalf("a task past its timeout run again: %v", d.Effects)
				}
				h.wantTask("call", conductor.TaskTimedOut)
				h.wantStatus(conductor.WorkflowTimedOut)
				return
			}
			call := h.wantTask("call", conductor.TaskScheduled)
			if call.LeaseExpiries != 1 {
				t.Fatalf("lease expiries %d, want 1", call.LeaseExpiries)
			}
			if runs := effectsOf[engine.RunSystem](d); len(runs) != 1 || runs[0].TaskID != id {
				t.Fatalf("reclaimed task not handed off again: %v", d.Effects)
			}
		})
	}
}

// Reclaims count as lease expiries: a task that kills every engine that
// runs it fails for good after MaxLeaseExpiries, restarts or not.
func TestReclaimedTaskThatKeepsKillingFails(t *testing.T) {
	h := newHarness(t, `{"name":"h","tasks":[{"name":"call","taskReferenceName":"call","type":"HTTP",
	  "inputParameters":{"http_request":{"uri":"http://x","method":"GET"}}}]}`, nil, `{"name":"call","retryCount":3}`)
	for i := 1; i <= engine.MaxLeaseExpiries; i++ {
		holder := fmt.Sprintf("flowvault/engine-a/boot-%d", i)
		h.decide(engine.Take{TaskID: h.task("call").ID, WorkerID: holder, System: true})
		h.decide(engine.Reclaim{TaskID: h.task("call").ID, Holder: holder})
	}
	call := h.wantTask("call", conductor.TaskFailedWithTerminalError)
	if !strings.Contains(call.Reason, "lease expired 3 times") {
		t.Fatalf("reason %q", call.Reason)
	}
	h.wantStatus(conductor.WorkflowFailed)
}

// An EXCLUSIVE_JOIN none of whose tasks ran completes, with an empty
// output, once nothing runs that could still bring one; a JOIN that waits
// for it is not such a task. Before, it waited for every other running
// task, the JOIN on it among them, and the workflow stood still for ever
// (found by FuzzLifecycleExclusiveJoin: a fork branch whose SWITCH took
// its empty default case).
func TestExclusiveJoinOnNothingThatRan(t *testing.T) {
	def := `{"name":"x","tasks":[
	 {"name":"fork","taskReferenceName":"fork","type":"FORK_JOIN","forkTasks":[
	   [{"name":"sw","taskReferenceName":"sw","type":"SWITCH","evaluatorType":"value-param","expression":"c",
	     "inputParameters":{"c":"${workflow.input.c}"},"decisionCases":{"a":[{"name":"a1","taskReferenceName":"a1"}]},"defaultCase":[]},
	    {"name":"ej","taskReferenceName":"ej","type":"EXCLUSIVE_JOIN","joinOn":["a1"]}],
	   [{"name":"b1","taskReferenceName":"b1"}]]},
	 {"name":"join","taskReferenceName":"join","type":"JOIN","joinOn":["ej","b1"]},
	 {"name":"after","taskReferenceName":"after"}]}`
	h := newHarness(t, def, map[string]any{"c": "z"})
	// b1 runs in another branch, from which the flow cannot reach a1.
	if ej := h.wantTask("ej", conductor.TaskCompleted); len(ej.Output) != 0 {
		t.Fatalf("ej output %v, want none", ej.Output)
	}
	h.wantTask("b1", conductor.TaskScheduled)
	h.wantTask("join", conductor.TaskInProgress)
	h.complete("b1", nil)
	h.wantTask("join", conductor.TaskCompleted)
	h.complete("after", nil)
	h.wantStatus(conductor.WorkflowCompleted)
}

// The same inside a loop: a task of another branch of the iteration's
// fork does not lead to the EXCLUSIVE_JOIN's task by the loop's next
// iteration, which waits for the EXCLUSIVE_JOIN. Before, c1 waited for b1
// to end.
func TestExclusiveJoinOnNothingThatRanInALoop(t *testing.T) {
	def := `{"name":"x","tasks":[
	 {"name":"loop","taskReferenceName":"loop","type":"DO_WHILE","loopCondition":"$.loop['iteration'] < 1","loopOver":[
	  {"name":"fork","taskReferenceName":"fork","type":"FORK_JOIN","forkTasks":[
	    [{"name":"sw","taskReferenceName":"sw","type":"SWITCH","evaluatorType":"value-param","expression":"c",
	      "inputParameters":{"c":"${workflow.input.c}"},"decisionCases":{"a":[{"name":"a1","taskReferenceName":"a1"}]},"defaultCase":[]},
	     {"name":"ej","taskReferenceName":"ej","type":"EXCLUSIVE_JOIN","joinOn":["a1"]},
	     {"name":"c1","taskReferenceName":"c1"}],
	    [{"name":"b1","taskReferenceName":"b1"}]]},
	  {"name":"join","taskReferenceName":"join","type":"JOIN","joinOn":["c1","b1"]}]}]}`
	h := newHarness(t, def, map[string]any{"c": "z"})
	if ej := h.wantTask("ej__1", conductor.TaskCompleted); len(ej.Output) != 0 {
		t.Fatalf("ej output %v, want none", ej.Output)
	}
	h.wantTask("b1__1", conductor.TaskScheduled)
	h.complete("c1__1", nil)
	h.complete("b1__1", nil)
	h.wantTask("join__1", conductor.TaskCompleted)
	h.system("loop", conductor.TaskCompleted, nil, "")
	h.wantStatus(conductor.WorkflowCompleted)
}

// TestExclusiveJoinWaitsForWhatLeadsToItsTasks: an EXCLUSIVE_JOIN none of
// whose tasks ran yet waits while a running task can still lead to one:
// here one that precedes it in another branch, then the task itself.
func TestExclusiveJoinWaitsForWhatLeadsToItsTasks(t *testing.T) {
	def := `{"name":"x","tasks":[
	 {"name":"fork","taskReferenceName":"fork","type":"FORK_JOIN","forkTasks":[
	   [{"name":"sw","taskReferenceName":"sw","type":"SWITCH","evaluatorType":"value-param","expression":"c",
	     "inputParameters":{"c":"${workflow.input.c}"},"decisionCases":{"a":[{"name":"a1","taskReferenceName":"a1"}]},"defaultCase":[]},
	    {"name":"ej","taskReferenceName":"ej","type":"EXCLUSIVE_JOIN","joinOn":["a1","b2"]}],
	   [{"name":"b1","taskReferenceName":"b1"},{"name":"b2","taskReferenceName":"b2"}]]},
	 {"name":"join","taskReferenceName":"join","type":"JOIN","joinOn":["ej","b2"]}]}`
	h := newHarness(t, def, map[string]any{"c": "z"})
	h.wantTask("ej", conductor.TaskInProgress) // b1 leads to b2
	h.complete("b1", nil)
	h.wantTask("ej", conductor.TaskInProgress) // b2 runs
	h.complete("b2", map[string]any{"from": "b2"})
	if ej := h.wantTask("ej", conductor.TaskCompleted); ej.Output["from"] != "b2" {
		t.Fatalf("ej output %v, want b2's", ej.Output)
	}
	h.wantStatus(conductor.WorkflowCompleted)
}
