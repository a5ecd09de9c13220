package engine_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/masking"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// The node registers these system task types (workers/system); the tests
// play the system worker's part.
func init() {
	for _, typ := range []string{conductor.TaskTypeInline, conductor.TaskTypeLambda, conductor.TaskTypeJSONJQ,
		conductor.TaskTypeSwitch, conductor.TaskTypeDecision, conductor.TaskTypeDoWhile, conductor.TaskTypeEvent, conductor.TaskTypeUpdateSecret} {
		engine.RegisterSystemWorkerType(typ)
	}
}

// systemTake takes a task as an engine's system worker and returns what the
// worker is handed.
func (h *harness) systemTake(ref string) *engine.Task {
	h.t.Helper()
	d := h.decide(engine.Take{TaskID: h.task(ref).ID, WorkerID: "flowvault", System: true})
	return d.Reply.(*engine.Task)
}

// system plays the system worker on ref: take, then report.
func (h *harness) system(ref, status string, out map[string]any, reason string) *engine.Task {
	h.t.Helper()
	taken := h.systemTake(ref)
	h.report(ref, status, out, reason)
	return taken
}

func wantRunSystem(t *testing.T, d engine.Decision, task *engine.Task) {
	t.Helper()
	for _, e := range effectsOf[engine.RunSystem](d) {
		if e.TaskID == task.ID && e.TaskType == task.Type {
			return
		}
	}
	t.Fatalf("no RunSystem for %s (%s) in %+v", task.Ref, task.Type, d.Effects)
}

func wantOutput(t *testing.T, task *engine.Task, want map[string]any) {
	t.Helper()
	if !reflect.DeepEqual(task.Output, want) {
		t.Fatalf("%s output = %#v\nwant %#v", task.Ref, task.Output, want)
	}
}

func TestScriptTasksRunInSystemWorker(t *testing.T) {
	def := `{"name":"scripts","tasks":[
	 {"name":"add","taskReferenceName":"add","type":"INLINE","inputParameters":{"evaluatorType":"graaljs",
	  "expression":"(function(){return $.a+$.b;})();","a":"${workflow.input.a}","b":2}},
	 {"name":"jq","taskReferenceName":"jq","type":"JSON_JQ_TRANSFORM","inputParameters":{"queryExpression":".x + 1","x":"${add.output.result}"}},
	 {"name":"after","taskReferenceName":"after","inputParameters":{"v":"${jq.output.result}"}}]}`
	h := newHarness(t, def, map[string]any{"a": int64(1)})
	add := h.wantTask("add", conductor.TaskScheduled)
	wantRunSystem(t, h.last, add)
	if len(effectsOf[engine.Dispatch](h.last)) != 0 {
		t.Fatal("a script task was dispatched to workers")
	}
	if _, err := h.try(engine.Take{TaskID: add.ID, WorkerID: "w"}); !errors.Is(err, engine.ErrTaskGone) {
		t.Fatalf("a worker took an INLINE task: %v", err)
	}
	taken := h.system("add", conductor.TaskCompleted, map[string]any{"result": int64(3)}, "")
	if taken.Input["a"] != int64(1) || taken.Input["expression"] == nil {
		t.Fatalf("INLINE handed over with input %v", taken.Input)
	}
	jq := h.wantTask("jq", conductor.TaskScheduled)
	wantRunSystem(t, h.last, jq)
	if jq.Input["x"] != int64(3) {
		t.Fatalf("jq input %v", jq.Input)
	}
	h.system("jq", conductor.TaskCompleted, map[string]any{"result": int64(4), "resultList": []any{int64(4)}}, "")
	if got := h.wantTask("after", conductor.TaskScheduled).Input["v"]; got != int64(4) {
		t.Fatalf("after input v = %v", got)
	}

	// A failing script fails its task, and the workflow with it.
	h = newHarness(t, def, nil)
	h.system("add", conductor.TaskFailed, map[string]any{"error": "ReferenceError: x"}, "INLINE add: ReferenceError: x")
	h.wantStatus(conductor.WorkflowFailed)
	if h.w.Reason != "INLINE add: ReferenceError: x" || !slices.Equal(h.w.FailedTaskRefs, []string{"add"}) {
		t.Fatalf("reason %q failed %v", h.w.Reason, h.w.FailedTaskRefs)
	}
}

func TestScriptSwitch(t *testing.T) {
	def := `{"name":"sw","tasks":[
	 {"name":"route","taskReferenceName":"route","type":"SWITCH","evaluatorType":"javascript",
	  "expression":"$.n > 5 ? 'big' : 'small'","inputParameters":{"n":"${workflow.input.n}"},
	  "decisionCases":{"big":[{"name":"big","taskReferenceName":"big"}]},
	  "defaultCase":[{"name":"small","taskReferenceName":"small"}]},
	 {"name":"dec","taskReferenceName":"dec","type":"DECISION","caseExpression":"$.n % 2 == 0 ? 'even' : 'odd'",
	  "inputParameters":{"n":"${workflow.input.n}"},"decisionCases":{"even":[{"name":"even","taskReferenceName":"even"}]}},
	 {"name":"last","taskReferenceName":"last"}]}`
	h := newHarness(t, def, map[string]any{"n": int64(8)})
	route := h.wantTask("route", conductor.TaskScheduled)
	wantRunSystem(t, h.last, route)
	h.system("route", conductor.TaskCompleted, map[string]any{"evaluationResult": []any{"big"}, "selectedCase": "big"}, "")
	h.complete("big", nil)
	dec := h.wantTask("dec", conductor.TaskScheduled)
	wantRunSystem(t, h.last, dec)
	h.system("dec", conductor.TaskCompleted, map[string]any{"evaluationResult": []any{"even"}, "selectedCase": "even"}, "")
	h.complete("even", nil)
	h.complete("last", nil)
	h.wantStatus(conductor.WorkflowCompleted)
	h.wantRefs("route", "big", "dec", "even", "last")

	// An evaluator nobody implements fails at once.
	bad := strings.Replace(def, `"evaluatorType":"javascript"`, `"evaluatorType":"python"`, 1)
	h = newHarness(t, bad, map[string]any{"n": int64(1)})
	h.wantTask("route", conductor.TaskFailedWithTerminalError)
	h.wantStatus(conductor.WorkflowFailed)

	// A DECISION with a caseExpression takes its case from it, its
	// caseValueParam notwithstanding, as Conductor's DecisionTaskMapper
	// does; the value-param case ("8") went down the default case.
	both := strings.Replace(def, `"caseExpression":`, `"caseValueParam":"n","caseExpression":`, 1)
	h = newHarness(t, both, map[string]any{"n": int64(8)})
	h.system("route", conductor.TaskCompleted, map[string]any{"evaluationResult": []any{"big"}, "selectedCase": "big"}, "")
	h.complete("big", nil)
	wantRunSystem(t, h.last, h.wantTask("dec", conductor.TaskScheduled))
}

// loopDef: a loop over two SIMPLE tasks, then a task reading the last
// iteration's output and the loop's.
const loopDef = `{"name":"loop","tasks":[
 {"name":"loop","taskReferenceName":"loop","type":"DO_WHILE","inputParameters":{"max":"${workflow.input.max}"},
  "loopCondition":"$.loop['iteration'] < $.max && $.b.more",
  "loopOver":[
   {"name":"a","taskReferenceName":"a","inputParameters":{"i":"${loop.output.iteration}"}},
   {"name":"b","taskReferenceName":"b","inputParameters":{"fromA":"${a.output.v}"}}]},
 {"name":"after","taskReferenceName":"after","inputParameters":{"lastB":"${b.output.v}","n":"${loop.output.iteration}"}}]}`

// wantLoopChange checks that decision d updated the loop with the keys of
// its output in change alone.
func wantLoopChange(t *testing.T, d engine.Decision, loopID string, change map[string]any) {
	t.Helper()
	for _, ev := range d.Events {
		if u, ok := ev.(*schemas.TaskUpdated); ok && u.TaskID == loopID {
			if !u.MergeOutput || !reflect.DeepEqual(u.Output, change) {
				t.Fatalf("loop update: merge %v, output %v; want the change %v", u.MergeOutput, u.Output, change)
			}
			return
		}
	}
	t.Fatal("the decision did not update the loop")
}

func TestDoWhileCondition(t *testing.T) {
	h := newHarness(t, loopDef, map[string]any{"max": int64(5)})
	loop := h.wantTask("loop", conductor.TaskInProgress)
	wantOutput(t, loop, map[string]any{"iteration": int64(1)})
	if a := h.wantTask("a__1", conductor.TaskScheduled); a.Input["i"] != int64(1) || a.Iteration != 1 {
		t.Fatalf("a__1 = %+v", a)
	}
	h.complete("a__1", map[string]any{"v": "a1"})
	if b := h.wantTask("b__1", conductor.TaskScheduled); b.Input["fromA"] != "a1" {
		t.Fatalf("b__1 input %v", b.Input)
	}
	d := h.complete("b__1", map[string]any{"v": "b1", "more": true})

	// The iteration ended: the loop waits for its condition, evaluated by
	// the system worker over the document the decider hands it.
	loop = h.wantTask("loop", conductor.TaskScheduled)
	wantRunSystem(t, d, loop)
	rec1 := map[string]any{"a": map[string]any{"v": "a1"}, "b": map[string]any{"v": "b1", "more": true}}
	wantOutput(t, loop, map[string]any{"iteration": int64(1), "1": rec1})
	if dl := engine.Deadlines(h.w); len(dl) != 0 {
		t.Fatalf("deadlines while scheduled: %v", dl)
	}
	taken := h.systemTake("loop")
	wantDoc := map[string]any{"max": int64(5), "loop": map[string]any{"iteration": int64(1), "1": rec1},
		"a": map[string]any{"v": "a1"}, "b": map[string]any{"v": "b1", "more": true}}
	if !reflect.DeepEqual(taken.Input, wantDoc) {
		t.Fatalf("condition document = %#v\nwant %#v", taken.Input, wantDoc)
	}
	if h.task("loop").Input["max"] != int64(5) || h.task("loop").Input["loop"] != nil {
		t.Fatal("the condition document was stored as the loop's input")
	}
	// While the condition runs, the system task lease applies.
	if dl := engine.Deadlines(h.w); len(dl) != 1 || dl[0] != h.now.Add(engine.SystemTaskLease).UnixMilli() {
		t.Fatalf("deadlines while evaluating: %v", dl)
	}
	h.report("loop", conductor.TaskInProgress, map[string]any{"iteration": int64(1)}, "")
	wantOutput(t, h.wantTask("loop", conductor.TaskInProgress), map[string]any{"iteration": int64(2), "1": rec1})
	// The loop's events carry what changed in its output, not all of it.
	wantLoopChange(t, h.last, h.task("loop").ID, map[string]any{"iteration": int64(2)})
	if a := h.wantTask("a__2", conductor.TaskScheduled); a.Input["i"] != int64(2) {
		t.Fatalf("a__2 input %v", a.Input)
	}
	// A long body is not a stuck system task.
	if dl := engine.Deadlines(h.w); len(dl) != 0 {
		t.Fatalf("deadlines while the body runs: %v", dl)
	}
	h.complete("a__2", map[string]any{"v": "a2"})
	h.complete("b__2", map[string]any{"v": "b2", "more": false})
	wantLoopChange(t, h.last, h.task("loop").ID, map[string]any{"2": map[string]any{"a": map[string]any{"v": "a2"}, "b": map[string]any{"v": "b2", "more": false}}})
	// The condition may keep values in the loop's output; the decider's
	// keys are its own.
	h.system("loop", conductor.TaskCompleted, map[string]any{"iteration": int64(99), "1": "x", "storage": int64(7)}, "")
	loop = h.wantTask("loop", conductor.TaskCompleted)
	rec2 := map[string]any{"a": map[string]any{"v": "a2"}, "b": map[string]any{"v": "b2", "more": false}}
	wantOutput(t, loop, map[string]any{"iteration": int64(2), "1": rec1, "2": rec2, "storage": int64(7)})
	if loop.PollCount != 2 || loop.StartTime != loop.ScheduledTime || loop.EndTime == 0 {
		t.Fatalf("loop polls %d start %d scheduled %d end %d", loop.PollCount, loop.StartTime, loop.ScheduledTime, loop.EndTime)
	}
	after := h.wantTask("after", conductor.TaskScheduled)
	if after.Input["lastB"] != "b2" || after.Input["n"] != int64(2) {
		t.Fatalf("after input %v", after.Input)
	}
	h.complete("after", nil)
	h.wantStatus(conductor.WorkflowCompleted)
	h.wantRefs("loop", "a__1", "b__1", "a__2", "b__2", "after")
	rendered := loop.Conductor(h.w)
	if rendered.Iteration != 2 || h.task("a__2").Conductor(h.w).LoopOverTask != true {
		t.Fatalf("rendered iteration %d", rendered.Iteration)
	}
}

// A condition's report drops from the loop's output the members of
// $[loopRef] it deleted (Result.DropOutput), but for the decider's keys;
// the loop's event names only those the output held. An operator's update
// drops nothing.
func TestDoWhileConditionDrops(t *testing.T) {
	h := newHarness(t, loopDef, map[string]any{"max": int64(5)})
	loopID := h.task("loop").ID
	verdict := func(status string, out map[string]any, drop ...string) engine.Decision {
		h.t.Helper()
		h.systemTake("loop")
		return h.decide(engine.Result{Result: conductor.TaskResult{TaskID: loopID, WorkflowInstanceID: h.w.ID,
			Status: status, OutputData: out}, DropOutput: drop})
	}
	iterate := func(n string) {
		h.t.Helper()
		h.complete("a__"+n, map[string]any{"v": "a" + n})
		h.complete("b__"+n, map[string]any{"v": "b" + n, "more": true})
	}
	iterate("1")
	verdict(conductor.TaskInProgress, map[string]any{"keep": int64(1), "gone": int64(2), "last": int64(3)})
	iterate("2")
	d := verdict(conductor.TaskInProgress, map[string]any{"set": true}, "gone", "never", "iteration", "1", "loopItem")
	var dropped []string
	for _, ev := range d.Events {
		if u, ok := ev.(*schemas.TaskUpdated); ok && u.TaskID == loopID {
			dropped = u.DropOutput
		}
	}
	if !reflect.DeepEqual(dropped, []string{"gone"}) {
		t.Fatalf("the loop's event drops %v, want [gone]", dropped)
	}
	loop := h.wantTask("loop", conductor.TaskInProgress)
	if _, ok := loop.Output["gone"]; ok || loop.Output["keep"] != int64(1) || loop.Output["set"] != true ||
		loop.Output["iteration"] != int64(3) || loop.Output["1"] == nil || loop.Output["2"] == nil {
		t.Fatalf("loop output after the second verdict: %v", loop.Output)
	}
	iterate("3")
	verdict(conductor.TaskCompleted, nil, "last")
	loop = h.wantTask("loop", conductor.TaskCompleted)
	if _, ok := loop.Output["last"]; ok || loop.Output["keep"] != int64(1) || loop.Output["iteration"] != int64(3) || loop.Output["3"] == nil {
		t.Fatalf("loop output after the last verdict: %v", loop.Output)
	}
}

func TestDoWhileItems(t *testing.T) {
	def := `{"name":"items","tasks":[
	 {"name":"loop","taskReferenceName":"loop","type":"DO_WHILE","items":"${workflow.input.list}",
	  "inputParameters":{"keepLastN":2},
	  "loopOver":[{"name":"work","taskReferenceName":"work","inputParameters":{"item":"${loop.output.loopItem}","i":"${loop.output.loopIndex}"}}]},
	 {"name":"after","taskReferenceName":"after"}]}`
	h := newHarness(t, def, map[string]any{"list": []any{"x", "y", "z", "w"}})
	for i, item := range []string{"x", "y", "z", "w"} {
		ref := "work__" + string(rune('1'+i))
		w := h.wantTask(ref, conductor.TaskScheduled)
		if w.Input["item"] != item || w.Input["i"] != int64(i) {
			t.Fatalf("%s input %v", ref, w.Input)
		}
		d := h.complete(ref, map[string]any{"done": item})
		if len(effectsOf[engine.RunSystem](d)) != 0 {
			t.Fatal("an items loop without a condition went to the system worker")
		}
	}
	loop := h.wantTask("loop", conductor.TaskCompleted)
	wantOutput(t, loop, map[string]any{"iteration": int64(4), "loopItem": "w", "loopIndex": int64(3),
		"3": map[string]any{"work": map[string]any{"done": "z"}}, "4": map[string]any{"work": map[string]any{"done": "w"}}})
	h.wantTask("after", conductor.TaskScheduled)

	// An empty list runs no iteration.
	h = newHarness(t, def, map[string]any{"list": []any{}})
	wantOutput(t, h.wantTask("loop", conductor.TaskCompleted), map[string]any{"iteration": int64(0)})
	h.wantRefs("loop", "after")

	// Not a list: the loop fails.
	h = newHarness(t, def, map[string]any{"list": "nope"})
	h.wantTask("loop", conductor.TaskFailedWithTerminalError)
	h.wantStatus(conductor.WorkflowFailed)

	// With a condition too, the items still bound the loop; the condition
	// sees the current item as $.item and $.index.
	cond := strings.Replace(def, `"items":`, `"loopCondition":"true","items":`, 1)
	h = newHarness(t, cond, map[string]any{"list": []any{"x", "y"}})
	h.complete("work__1", nil)
	taken := h.system("loop", conductor.TaskInProgress, nil, "")
	if taken.Input["item"] != "x" || taken.Input["index"] != int64(0) {
		t.Fatalf("condition document %v", taken.Input)
	}
	h.complete("work__2", nil)
	h.system("loop", conductor.TaskInProgress, nil, "")
	h.wantTask("loop", conductor.TaskCompleted)
	h.wantRefs("loop", "work__1", "work__2", "after")
}

func TestDoWhileWithBranchesInside(t *testing.T) {
	def := `{"name":"inside","tasks":[
	 {"name":"loop","taskReferenceName":"loop","type":"DO_WHILE","items":[1,2],
	  "loopOver":[
	   {"name":"sw","taskReferenceName":"sw","type":"SWITCH","expression":"i","inputParameters":{"i":"${loop.output.loopItem}"},
	    "decisionCases":{"1":[{"name":"one","taskReferenceName":"one"}]}},
	   {"name":"fork","taskReferenceName":"fork","type":"FORK_JOIN","forkTasks":[[{"name":"p","taskReferenceName":"p"}],[{"name":"q","taskReferenceName":"q"}]]},
	   {"name":"join","taskReferenceName":"join","type":"JOIN","joinOn":["p","q"]}]},
	 {"name":"after","taskReferenceName":"after"}]}`
	h := newHarness(t, def, nil)
	h.complete("one__1", nil)
	h.complete("p__1", map[string]any{"p": int64(1)})
	h.complete("q__1", map[string]any{"q": int64(1)})
	// The JOIN names the tasks it joined as they ran, as Conductor's does.
	wantOutput(t, h.wantTask("join__1", conductor.TaskCompleted), map[string]any{"p__1": map[string]any{"p": int64(1)}, "q__1": map[string]any{"q": int64(1)}})
	// Iteration 2 takes the empty default branch of the SWITCH.
	h.wantTask("sw__2", conductor.TaskCompleted)
	h.complete("q__2", nil)
	h.wantTask("loop", conductor.TaskInProgress)
	h.complete("p__2", nil)
	h.wantTask("loop", conductor.TaskCompleted)
	h.complete("after", nil)
	h.wantStatus(conductor.WorkflowCompleted)
	h.wantRefs("loop", "sw__1", "one__1", "fork__1", "p__1", "q__1", "join__1", "sw__2", "fork__2", "p__2", "q__2", "join__2", "after")
	rec := h.task("loop").Output["2"].(map[string]any)
	if len(rec) != 5 || rec["join"] == nil {
		t.Fatalf("iteration 2 record %v", rec)
	}
}

func TestDoWhileFailuresAndRetry(t *testing.T) {
	// The condition fails: the loop fails; retry evaluates it again.
	h := newHarness(t, loopDef, map[string]any{"max": int64(5)})
	h.complete("a__1", nil)
	h.complete("b__1", map[string]any{"more": true})
	h.system("loop", conductor.TaskFailedWithTerminalError, nil, "DO_WHILE loop: unable to evaluate loopCondition: TypeError")
	h.wantTask("loop", conductor.TaskFailedWithTerminalError)
	h.wantStatus(conductor.WorkflowFailed)
	if h.w.Reason != "DO_WHILE loop: unable to evaluate loopCondition: TypeError" {
		t.Fatalf("reason %q", h.w.Reason)
	}
	d := h.decide(engine.Retry{})
	wantRunSystem(t, d, h.wantTask("loop", conductor.TaskScheduled))
	h.system("loop", conductor.TaskInProgress, nil, "")
	h.complete("a__2", nil)
	h.complete("b__2", nil)
	h.system("loop", conductor.TaskCompleted, nil, "")
	h.complete("after", nil)
	h.wantStatus(conductor.WorkflowCompleted)
	if n := len(h.w.Tasks); n != 6 {
		t.Fatalf("retry scheduled new loop instances: %v", h.refs())
	}

	// A body task fails: the workflow fails, retry resumes the loop with a
	// new instance of the task.
	h = newHarness(t, loopDef, map[string]any{"max": int64(5)}, `{"name":"b","retryCount":0}`)
	h.complete("a__1", nil)
	h.complete("b__1", map[string]any{"more": true})
	h.system("loop", conductor.TaskInProgress, nil, "")
	h.complete("a__2", nil)
	h.report("b__2", conductor.TaskFailed, nil, "boom")
	h.wantStatus(conductor.WorkflowFailed)
	h.wantTask("loop", conductor.TaskCanceled)
	h.decide(engine.Retry{})
	h.wantTask("loop", conductor.TaskInProgress)
	b := h.wantTask("b__2", conductor.TaskScheduled)
	if b.RetryCount != 1 || b.Iteration != 2 {
		t.Fatalf("retried b__2 = %+v", b)
	}
	h.complete("b__2", map[string]any{"more": false})
	h.system("loop", conductor.TaskCompleted, nil, "")
	wantOutput(t, h.task("loop"), map[string]any{"iteration": int64(2),
		"1": map[string]any{"a": map[string]any{}, "b": map[string]any{"more": true}},
		"2": map[string]any{"a": map[string]any{}, "b": map[string]any{"more": false}}})
	h.complete("after", nil)
	h.wantStatus(conductor.WorkflowCompleted)
}

func TestDoWhileRerunAndRestart(t *testing.T) {
	h := newHarness(t, loopDef, map[string]any{"max": int64(5)})
	for i, more := range []bool{true, true, false} {
		n := string(rune('1' + i))
		h.complete("a__"+n, map[string]any{"v": "a" + n})
		h.complete("b__"+n, map[string]any{"v": "b" + n, "more": more})
		verdict := conductor.TaskInProgress
		if !more {
			verdict = conductor.TaskCompleted
		}
		h.system("loop", verdict, nil, "")
	}
	h.complete("after", nil)
	h.wantStatus(conductor.WorkflowCompleted)

	// Rerun from the second iteration's first task: the loop reopens at
	// iteration 2 and runs on from there.
	h.decide(engine.Rerun{Request: conductor.RerunWorkflowRequest{ReRunFromTaskID: h.task("a__2").ID}})
	h.wantStatus(conductor.WorkflowRunning)
	loop := h.wantTask("loop", conductor.TaskInProgress)
	if loopOut := loop.Output; loopOut["iteration"] != int64(2) || loopOut["1"] == nil || loopOut["2"] != nil || loopOut["3"] != nil {
		t.Fatalf("reopened loop output %v", loopOut)
	}
	if loop.EndTime != 0 {
		t.Fatal("a reopened loop kept its end time")
	}
	h.wantRefs("loop", "a__1", "b__1", "a__2")
	h.complete("a__2", map[string]any{"v": "again"})
	h.complete("b__2", map[string]any{"more": false})
	h.system("loop", conductor.TaskCompleted, nil, "")
	if got := h.wantTask("after", conductor.TaskScheduled).Input["n"]; got != int64(2) {
		t.Fatalf("after the rerun the loop ran %v iterations", got)
	}
	h.complete("after", nil)
	h.wantStatus(conductor.WorkflowCompleted)

	// Rerun from a middle task of an iteration.
	h.decide(engine.Rerun{Request: conductor.RerunWorkflowRequest{ReRunFromTaskID: h.task("b__1").ID}})
	h.wantRefs("loop", "a__1", "b__1")
	h.complete("b__1", map[string]any{"more": false})
	h.system("loop", conductor.TaskCompleted, nil, "")
	h.complete("after", nil)
	h.wantStatus(conductor.WorkflowCompleted)

	// Terminate mid-loop, then restart: it all starts over.
	h = newHarness(t, loopDef, map[string]any{"max": int64(5)})
	h.complete("a__1", nil)
	h.complete("b__1", map[string]any{"more": true})
	h.system("loop", conductor.TaskInProgress, nil, "")
	h.decide(engine.Terminate{Reason: "stop"})
	h.wantTask("loop", conductor.TaskCanceled)
	h.decide(engine.Restart{})
	h.wantRefs("loop", "a__1")
	wantOutput(t, h.wantTask("loop", conductor.TaskInProgress), map[string]any{"iteration": int64(1)})
}

func TestDoWhileLeaseAndPause(t *testing.T) {
	h := newHarness(t, loopDef, map[string]any{"max": int64(5)})
	h.complete("a__1", nil)
	h.complete("b__1", map[string]any{"more": true})
	h.systemTake("loop") // the engine evaluating it dies
	h.advance(engine.SystemTaskLease)
	d := h.decide(engine.Tick{})
	wantRunSystem(t, d, h.wantTask("loop", conductor.TaskScheduled))
	// A verdict for a loop that is not evaluating is ignored.
	d = h.report("loop", conductor.TaskInProgress, nil, "")
	if d.Reply != (engine.ResultReply{Ignored: true}) || len(d.Events) != 0 {
		t.Fatalf("stray verdict: %+v", d)
	}
	// Paused: the verdict is recorded, the next iteration waits.
	h.decide(engine.Pause{})
	h.system("loop", conductor.TaskInProgress, nil, "")
	h.wantRefs("loop", "a__1", "b__1")
	h.decide(engine.Resume{})
	h.wantTask("a__2", conductor.TaskScheduled)

	// Recovery hands a loop awaiting its condition off again.
	h.complete("a__2", nil)
	h.complete("b__2", nil)
	found := false
	for _, e := range engine.Effects(h.w, h.now.UnixMilli()) {
		if rs, ok := e.(engine.RunSystem); ok && rs.TaskID == h.task("loop").ID {
			found = true
		}
	}
	if !found {
		t.Fatal("Effects does not hand off a loop awaiting its condition")
	}
}

func TestDynamic(t *testing.T) {
	def := `{"name":"dyn","tasks":[
	 {"name":"dyn","taskReferenceName":"dyn","type":"DYNAMIC","dynamicTaskNameParam":"taskToExecute",
	  "inputParameters":{"taskToExecute":"${workflow.input.task}","x":"${workflow.input.x}"}},
	 {"name":"next","taskReferenceName":"next","inputParameters":{"y":"${dyn.output.y}"}}]}`
	h := newHarness(t, def, map[string]any{"task": "resize", "x": int64(1)}, `{"name":"resize","retryCount":1,"retryDelaySeconds":0}`)
	dyn := h.wantTask("dyn", conductor.TaskScheduled)
	if dyn.Name != "resize" || dyn.Type != conductor.TaskTypeSimple || dyn.Input["x"] != int64(1) || len(dyn.Config) == 0 || dyn.Policy.RetryCount != 1 {
		t.Fatalf("dynamic task = %+v", dyn)
	}
	if ds := effectsOf[engine.Dispatch](h.last); len(ds) != 1 || ds[0].TaskType != "resize" {
		t.Fatalf("dispatch %+v", ds)
	}
	if wt := dyn.Conductor(h.w).WorkflowTask; !strings.Contains(string(wt), `"name":"resize"`) {
		t.Fatalf("rendered configuration %s", wt)
	}
	if c := dyn.Conductor(h.w); c.TaskType != "resize" || c.TaskDefName != "resize" {
		t.Fatalf("rendered taskType %q taskDefName %q, want Conductor's: the name", c.TaskType, c.TaskDefName)
	}
	// A retry keeps the resolved task.
	h.report("dyn", conductor.TaskFailed, nil, "flaky")
	retried := h.wantTask("dyn", conductor.TaskScheduled)
	if retried.Name != "resize" || retried.RetryCount != 1 {
		t.Fatalf("retried dynamic task = %+v", retried)
	}
	h.complete("dyn", map[string]any{"y": "done"})
	if got := h.wantTask("next", conductor.TaskScheduled).Input["y"]; got != "done" {
		t.Fatalf("next input %v", got)
	}

	// A system task type runs as that type.
	h = newHarness(t, def, map[string]any{"task": "HTTP"})
	dyn = h.wantTask("dyn", conductor.TaskScheduled)
	if c := dyn.Conductor(h.w); dyn.Type != conductor.TaskTypeHTTP || c.TaskType != "HTTP" || c.TaskDefName != "HTTP" {
		t.Fatalf("type %s, rendered taskType %q taskDefName %q", dyn.Type, c.TaskType, c.TaskDefName)
	}
	wantRunSystem(t, h.last, dyn)

	// A name without a task definition waits for its workers.
	h = newHarness(t, def, map[string]any{"task": "undefined_task"})
	h.wantTask("dyn", conductor.TaskScheduled)
	if ds := effectsOf[engine.Dispatch](h.last); len(ds) != 1 || ds[0].TaskType != "undefined_task" {
		t.Fatalf("dispatch %+v", ds)
	}

	// No name: the task fails.
	for _, task := range []any{nil, "", int64(5), "FORK_JOIN", "DYNAMIC"} {
		h = newHarness(t, def, map[string]any{"task": task})
		h.wantTask("dyn", conductor.TaskFailedWithTerminalError)
		h.wantStatus(conductor.WorkflowFailed)
	}
}

const dynForkDef = `{"name":"dynfork","tasks":[
 {"name":"fork","taskReferenceName":"fork","type":"FORK_JOIN_DYNAMIC","dynamicForkTasksParam":"tasks",
  "dynamicForkTasksInputParamName":"inputs","inputParameters":{"tasks":"${workflow.input.tasks}","inputs":"${workflow.input.inputs}"}},
 {"name":"join","taskReferenceName":"join","type":"JOIN"},
 {"name":"after","taskReferenceName":"after","inputParameters":{"joined":"${join.output}"}}]}`

func TestForkJoinDynamic(t *testing.T) {
	tasks := []any{
		map[string]any{"name": "img", "taskReferenceName": "img_1", "inputParameters": map[string]any{"wf": "${workflow.workflowId}", "k": "own"}},
		map[string]any{"name": "calc", "taskReferenceName": "calc_1", "type": "INLINE", "inputParameters": map[string]any{"expression": "1"}},
	}
	inputs := map[string]any{"img_1": map[string]any{"k": "given", "size": int64(3)}}
	h := newHarness(t, dynForkDef, map[string]any{"tasks": tasks, "inputs": inputs})
	fork := h.wantTask("fork", conductor.TaskCompleted)
	wantOutput(t, fork, map[string]any{"forkedTasks": []any{"img_1", "calc_1"}, "forkedTaskInputs": inputs})
	img := h.wantTask("img_1", conductor.TaskScheduled)
	if !reflect.DeepEqual(img.Input, map[string]any{"wf": "wf-1", "k": "given", "size": int64(3)}) || img.ParentTaskID != fork.ID || len(img.Config) == 0 {
		t.Fatalf("img_1 = %+v", img)
	}
	calc := h.wantTask("calc_1", conductor.TaskScheduled)
	wantRunSystem(t, h.last, calc)
	h.wantTask("join", conductor.TaskInProgress)
	h.complete("img_1", map[string]any{"url": "u"})
	h.wantTask("join", conductor.TaskInProgress)
	h.system("calc_1", conductor.TaskCompleted, map[string]any{"result": int64(1)}, "")
	join := h.wantTask("join", conductor.TaskCompleted)
	wantOutput(t, join, map[string]any{"img_1": map[string]any{"url": "u"}, "calc_1": map[string]any{"result": int64(1)}})
	h.complete("after", nil)
	h.wantStatus(conductor.WorkflowCompleted)
	h.wantRefs("fork", "img_1", "calc_1", "join", "after")

	// No inputs map: each task runs with its own inputParameters (Conductor
	// fails the workflow).
	h = newHarness(t, dynForkDef, map[string]any{"tasks": tasks})
	if in := h.wantTask("img_1", conductor.TaskScheduled).Input; !reflect.DeepEqual(in, map[string]any{"wf": "wf-1", "k": "own"}) {
		t.Fatalf("img_1 input without an inputs map: %v", in)
	}

	// Nothing to fork: the JOIN completes at once.
	h = newHarness(t, dynForkDef, map[string]any{"tasks": []any{}})
	wantOutput(t, h.wantTask("join", conductor.TaskCompleted), map[string]any{})
	h.wantTask("after", conductor.TaskScheduled)

	// Bad lists fail the fork.
	for name, bad := range map[string]any{
		"not a list":    "x",
		"null":          nil, // a path that finds nothing is not an empty list
		"no reference":  []any{map[string]any{"name": "n"}},
		"duplicate":     []any{map[string]any{"name": "n", "taskReferenceName": "r"}, map[string]any{"name": "n", "taskReferenceName": "r"}},
		"definition":    []any{map[string]any{"name": "n", "taskReferenceName": "after"}},
		"container":     []any{map[string]any{"name": "n", "taskReferenceName": "r", "type": "FORK_JOIN"}},
		"unknown type":  []any{map[string]any{"name": "n", "taskReferenceName": "r", "type": "KAFKA_PUBLISH"}},
		"inputs of ref": []any{map[string]any{"name": "n", "taskReferenceName": "r"}},
	} {
		in := map[string]any{"tasks": bad}
		if name == "inputs of ref" {
			in["inputs"] = map[string]any{"r": "not an object"}
		}
		h = newHarness(t, dynForkDef, in)
		if f := h.task("fork"); f.Status != conductor.TaskFailedWithTerminalError || f.Reason == "" {
			t.Errorf("%s: fork %s (%s)", name, f.Status, f.Reason)
		}
		h.wantStatus(conductor.WorkflowFailed)
	}

	// OSS's simple form: forkTaskName and forkTaskInputs.
	simple := `{"name":"simple","tasks":[
	 {"name":"fork","taskReferenceName":"fork","type":"FORK_JOIN_DYNAMIC",
	  "inputParameters":{"forkTaskName":"resize","forkTaskInputs":[{"w":1},"plain"]}},
	 {"name":"join","taskReferenceName":"join","type":"JOIN"}]}`
	h = newHarness(t, simple, nil)
	if in := h.wantTask("_resize_0", conductor.TaskScheduled).Input; !reflect.DeepEqual(in, map[string]any{"w": int64(1), "__index": int64(0)}) {
		t.Fatalf("_resize_0 input %v", in)
	}
	if in := h.wantTask("_resize_1", conductor.TaskScheduled).Input; !reflect.DeepEqual(in, map[string]any{"input": "plain", "__index": int64(1)}) {
		t.Fatalf("_resize_1 input %v", in)
	}
	h.complete("_resize_0", nil)
	h.complete("_resize_1", nil)
	h.wantStatus(conductor.WorkflowCompleted)
}

// A FORK_JOIN_DYNAMIC with forkTaskInputs forks them when the input holds
// no list under its dynamicForkTasksParam, as Conductor's documented
// examples configure it ("dynamicForkTasksParam": "dynamicTasks" beside
// forkTaskName and forkTaskInputs): Conductor reads forkTaskInputs first.
// A list given there is forked instead (README).
func TestForkTaskInputsBesideATaskListParam(t *testing.T) {
	for _, tc := range []struct {
		name, params string
		want         []string
	}{
		{"no task list param", ``, []string{"_resize_0", "_resize_1"}},
		{"param without a list", `"dynamicForkTasksParam":"dynamicTasks","dynamicForkTasksInputParamName":"dynamicTasksInput",`,
			[]string{"_resize_0", "_resize_1"}},
		{"param with a list", `"dynamicForkTasksParam":"tasks",`, []string{"listed"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			def := `{"name":"df","tasks":[{"name":"fork","taskReferenceName":"fork","type":"FORK_JOIN_DYNAMIC",` + tc.params + `
			  "inputParameters":{"forkTaskName":"resize","forkTaskInputs":[{"w":1},"plain"],"tasks":[{"name":"resize","taskReferenceName":"listed"}]}},
			 {"name":"join","taskReferenceName":"join","type":"JOIN"}]}`
			h := newHarness(t, def, nil)
			h.wantTask("fork", conductor.TaskCompleted)
			for _, ref := range tc.want {
				h.complete(ref, nil)
			}
			h.wantTask("join", conductor.TaskCompleted)
			h.wantRefs(append(append([]string{"fork"}, tc.want...), "join")...)
			h.wantStatus(conductor.WorkflowCompleted)
		})
	}
}

// A fork renders as Conductor's mappers record it: type and name FORK, a
// dynamic one with forkedTasks in its input, as its output shows them (a
// reference name redaction replaced reads "***" in both); the state keeps
// the fork's own type for the decider.
func TestForkRendersAsConductorsFork(t *testing.T) {
	list := map[string]any{"tasks": []any{map[string]any{"name": "w", "taskReferenceName": "w1"}, map[string]any{"name": "w", "taskReferenceName": "w2"}}}
	for _, tc := range []struct {
		name, def string
		input     map[string]any
		redacted  bool
		forked    any // the input's forkedTasks; nil: none
	}{
		{"static", forkJoin, nil, false, nil},
		{"dynamic", dynamicForkDef, list, false, []any{"w1", "w2"}},
		{"dynamic, a reference redacted", dynamicForkDef, list, true, []any{"***", "w2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, tc.def, tc.input)
			if tc.redacted {
				h.storedAs("fork", func(c *engine.Task) {
					c.Output = map[string]any{"forkedTasks": []any{"***", "w2"}, "forkedTaskInputs": map[string]any{}}
				})
			}
			fork := h.task("fork")
			got := fork.Conductor(h.w)
			if got.TaskType != "FORK" || got.TaskDefName != "FORK" || fork.Type == "FORK" {
				t.Fatalf("taskType %q, taskDefName %q (state's type %q): want FORK shown, the state's kept", got.TaskType, got.TaskDefName, fork.Type)
			}
			if forked, ok := got.InputData["forkedTasks"]; !reflect.DeepEqual(forked, tc.forked) || ok != (tc.forked != nil) {
				t.Fatalf("inputData %v: want forkedTasks %v", got.InputData, tc.forked)
			}
			if tc.forked != nil && (!reflect.DeepEqual(got.OutputData["forkedTasks"], tc.forked) || fork.Input["forkedTasks"] != nil) {
				t.Fatalf("outputData %v, stored input %v: want the output as stored, the stored input without forkedTasks", got.OutputData, fork.Input)
			}
		})
	}
}

// A dynamic fork shows Conductor's forkedTaskDefs in its input, which
// Conductor's UI draws the forked tasks from: the workflowTask of each
// task it forked, in its order, as the task's own view shows it (a
// retried task's latest instance), in the workflow's view and alone.
func TestDynamicForkShowsForkedTaskDefs(t *testing.T) {
	list := []any{map[string]any{"name": "w", "taskReferenceName": "w1", "inputParameters": map[string]any{"k": "v"}},
		map[string]any{"name": "w", "taskReferenceName": "w2", "type": "WAIT"}}
	for _, tc := range []struct {
		name  string
		tasks []any
		retry bool
		want  []string // the reference names of forkedTaskDefs
	}{
		{"forked", list, false, []string{"w1", "w2"}},
		{"a forked task retried", list, true, []string{"w1", "w2"}},
		{"nothing forked", []any{}, false, []string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, dynamicForkDef, map[string]any{"tasks": tc.tasks}, `{"name":"w","retryCount":1}`)
			if tc.retry {
				first := h.task("w1").ID
				h.report("w1", conductor.TaskFailed, nil, "again")
				if h.task("w1").ID == first {
					t.Fatal("w1 was not retried")
				}
			}
			fork := h.task("fork")
			var whole *conductor.Task
			for _, ct := range h.w.Conductor(true).Tasks {
				if ct.TaskID == fork.ID {
					whole = ct
				}
			}
			for view, got := range map[string]*conductor.Task{"alone": fork.Conductor(h.w), "in the workflow": whole} {
				defs, ok := got.InputData["forkedTaskDefs"].([]any)
				if !ok || len(defs) != len(tc.want) {
					t.Fatalf("%s: forkedTaskDefs %v, want %d", view, got.InputData["forkedTaskDefs"], len(tc.want))
				}
				for i, ref := range tc.want {
					b, err := json.Marshal(defs[i])
					if err != nil {
						t.Fatal(err)
					}
					own, _ := json.Marshal(h.task(ref).Conductor(h.w).WorkflowTask)
					var wt conductor.WorkflowTask
					if err := json.Unmarshal(b, &wt); err != nil || wt.TaskReferenceName != ref || string(b) != string(own) {
						t.Fatalf("%s: forkedTaskDefs[%d] %s (%v), want %s's workflowTask %s", view, i, b, err, ref, own)
					}
				}
			}
			if _, ok := fork.Input["forkedTaskDefs"]; ok {
				t.Fatalf("stored input %v: forkedTaskDefs is the view's", fork.Input)
			}
		})
	}
}

// Expressions read a fork, a JOIN and an EXCLUSIVE_JOIN as their views
// show them, as Conductor's ParametersUtils reads the tasks its mappers
// made: ${fork.taskType} and ${fork.taskDefName} are FORK, a JOIN's are
// JOIN, ${fork.input.forkedTasks} the tasks a dynamic fork forked and
// ${join.input.joinOn} what the JOIN waits for.
func TestExpressionsReadTasksAsShown(t *testing.T) {
	read := `{"name":"after","taskReferenceName":"after","inputParameters":{
	  "ft":"${fork.taskType}","fd":"${fork.taskDefName}","fi":"${fork.input.forkedTasks}",
	  "jt":"${join.taskType}","jd":"${join.taskDefName}","jo":"${join.input.joinOn}","jx":"${join.input.joinOn.length()}"}}`
	dynamic := `{"name":"d","tasks":[{"name":"fork","taskReferenceName":"fork","type":"FORK_JOIN_DYNAMIC","dynamicForkTasksParam":"tasks",
	  "inputParameters":{"tasks":"${workflow.input.tasks}"}},
	 {"name":"join","taskReferenceName":"join","type":"JOIN"},` + read + `]}`
	static := `{"name":"s","tasks":[{"name":"fork","taskReferenceName":"fork","type":"FORK_JOIN","forkTasks":[
	   [{"name":"w","taskReferenceName":"w1"}],[{"name":"w","taskReferenceName":"w2"}]]},
	 {"name":"join","taskReferenceName":"join","type":"JOIN","joinOn":["w1","w2"]},` + read + `]}`
	exclusive := `{"name":"e","tasks":[
	 {"name":"sw","taskReferenceName":"sw","type":"SWITCH","expression":"c","inputParameters":{"c":"a"},
	  "decisionCases":{"a":[{"name":"w","taskReferenceName":"w1"}]}},
	 {"name":"join","taskReferenceName":"join","type":"EXCLUSIVE_JOIN","joinOn":["w1"],"defaultExclusiveJoinTask":["w2"]},
	 {"name":"after","taskReferenceName":"after","inputParameters":{"jt":"${join.taskType}","jd":"${join.taskDefName}",
	  "jo":"${join.input.joinOn}","jdef":"${join.input.defaultExclusiveJoinTask}"}}]}`
	tasks := []any{map[string]any{"name": "w", "taskReferenceName": "w1"}, map[string]any{"name": "w", "taskReferenceName": "w2"}}
	refs := []any{"w1", "w2"}
	for _, tc := range []struct {
		name, def string
		complete  []string
		want      map[string]any
	}{
		{"dynamic fork", dynamic, []string{"w1", "w2"}, map[string]any{"ft": "FORK", "fd": "FORK", "fi": refs,
			"jt": "JOIN", "jd": "JOIN", "jo": refs, "jx": int64(2)}},
		{"static fork", static, []string{"w1", "w2"}, map[string]any{"ft": "FORK", "fd": "FORK", "fi": nil,
			"jt": "JOIN", "jd": "JOIN", "jo": refs, "jx": int64(2)}},
		{"exclusive join", exclusive, []string{"w1"}, map[string]any{"jt": "EXCLUSIVE_JOIN", "jd": "EXCLUSIVE_JOIN",
			"jo": []any{"w1"}, "jdef": []any{"w2"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, tc.def, map[string]any{"tasks": tasks})
			for _, ref := range tc.complete {
				h.complete(ref, nil)
			}
			got := h.wantTask("after", conductor.TaskScheduled).Input
			for k, want := range tc.want {
				if !reflect.DeepEqual(got[k], want) {
					t.Errorf("%s = %#v, want %#v (input %v)", k, got[k], want, got)
				}
			}
		})
	}
}

// A JOIN and an EXCLUSIVE_JOIN show what they wait for in their input,
// and their type as their name, as Conductor's mappers make them (its UI
// draws a dynamic fork's tasks from the JOIN's joinOn): the definition's
// joinOn, after a FORK_JOIN_DYNAMIC the tasks it forked as the fork shows
// them, and an EXCLUSIVE_JOIN's defaultExclusiveJoinTask. The stored input
// stays empty.
func TestJoinRendersAsConductorsJoin(t *testing.T) {
	exclusive := func(defaults string) string {
		return `{"name":"ej","tasks":[
		 {"name":"sw","taskReferenceName":"sw","type":"SWITCH","expression":"c","inputParameters":{"c":"a"},
		  "decisionCases":{"a":[{"name":"a","taskReferenceName":"a"}],"b":[{"name":"b","taskReferenceName":"b"}]}},
		 {"name":"ej","taskReferenceName":"ej","type":"EXCLUSIVE_JOIN","joinOn":["a","b"]` + defaults + `}]}`
	}
	list := map[string]any{"tasks": []any{map[string]any{"name": "w", "taskReferenceName": "w1"}, map[string]any{"name": "w", "taskReferenceName": "w2"}}}
	for _, tc := range []struct {
		name, def, ref, typ string
		input               map[string]any
		redacted            bool
		want                map[string]any
	}{
		{"static", forkJoin, "join", "JOIN", nil, false, map[string]any{"joinOn": []any{"a2", "b"}}},
		{"dynamic", dynamicForkDef, "join", "JOIN", list, false, map[string]any{"joinOn": []any{"w1", "w2"}}},
		{"dynamic, a reference redacted", dynamicForkDef, "join", "JOIN", list, true, map[string]any{"joinOn": []any{"***", "w2"}}},
		{"dynamic, nothing forked", dynamicForkDef, "join", "JOIN", map[string]any{"tasks": []any{}}, false, map[string]any{"joinOn": []any{}}},
		{"exclusive", exclusive(""), "ej", "EXCLUSIVE_JOIN", nil, false, map[string]any{"joinOn": []any{"a", "b"}}},
		{"exclusive with defaults", exclusive(`,"defaultExclusiveJoinTask":["b"]`), "ej", "EXCLUSIVE_JOIN", nil, false,
			map[string]any{"joinOn": []any{"a", "b"}, "defaultExclusiveJoinTask": []any{"b"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, tc.def, tc.input)
			if tc.redacted {
				h.storedAs("fork", func(c *engine.Task) {
					c.Output = map[string]any{"forkedTasks": []any{"***", "w2"}, "forkedTaskInputs": map[string]any{}}
				})
			}
			if tc.typ == conductor.TaskTypeExclusiveJoin {
				h.complete("a", nil)
			}
			join := h.task(tc.ref)
			var whole *conductor.Task
			for _, ct := range h.w.Conductor(true).Tasks {
				if ct.TaskID == join.ID {
					whole = ct
				}
			}
			// The task alone (GET /api/tasks/{id}, a task search) and the
			// workflow's list find the fork each their own way.
			for view, got := range map[string]*conductor.Task{"alone": join.Conductor(h.w), "in the workflow": whole} {
				if got.TaskType != tc.typ || got.TaskDefName != tc.typ {
					t.Fatalf("%s: taskType %q, taskDefName %q: want %s", view, got.TaskType, got.TaskDefName, tc.typ)
				}
				if !reflect.DeepEqual(got.InputData, tc.want) {
					t.Fatalf("%s: inputData %v, want %v", view, got.InputData, tc.want)
				}
			}
			if len(join.Input) != 0 || join.Name != tc.ref {
				t.Fatalf("stored input %v, name %q: want them as the definition gave them", join.Input, join.Name)
			}
		})
	}
}

func TestForkJoinDynamicInLoop(t *testing.T) {
	def := `{"name":"loopfork","tasks":[
	 {"name":"loop","taskReferenceName":"loop","type":"DO_WHILE","items":[["a","b"],["c"]],
	  "loopOver":[
	   {"name":"fork","taskReferenceName":"fork","type":"FORK_JOIN_DYNAMIC","dynamicForkTasksParam":"tasks",
	    "inputParameters":{"tasks":"${workflow.input.tasks}"}},
	   {"name":"join","taskReferenceName":"join","type":"JOIN"}]}]}`
	tasks := []any{map[string]any{"name": "w", "taskReferenceName": "w1"}, map[string]any{"name": "w", "taskReferenceName": "w2"}}
	h := newHarness(t, def, map[string]any{"tasks": tasks})
	h.complete("w1__1", nil)
	h.complete("w2__1", nil)
	h.wantTask("join__1", conductor.TaskCompleted)
	h.complete("w2__2", nil)
	h.wantTask("loop", conductor.TaskInProgress)
	h.complete("w1__2", map[string]any{"last": true})
	h.wantStatus(conductor.WorkflowCompleted)
	if rec := h.task("loop").Output["2"].(map[string]any); len(rec) != 4 {
		t.Fatalf("iteration 2 record %v", rec)
	}
	// Rerun from a forked task inside the loop reopens its iteration.
	h.decide(engine.Rerun{Request: conductor.RerunWorkflowRequest{ReRunFromTaskID: h.task("w2__2").ID}})
	h.wantTask("loop", conductor.TaskInProgress)
	h.complete("w2__2", nil)
	h.wantStatus(conductor.WorkflowCompleted)
}

func TestStartWorkflowTask(t *testing.T) {
	def := `{"name":"starter","tasks":[
	 {"name":"start","taskReferenceName":"start","type":"START_WORKFLOW","inputParameters":{"startWorkflow":{
	  "name":"other","version":2,"correlationId":"c-${workflow.input.n}","input":{"n":"${workflow.input.n}"}}}},
	 {"name":"next","taskReferenceName":"next","inputParameters":{"started":"${start.output.workflowId}"}}]}`
	h := newHarness(t, def, map[string]any{"n": int64(4)})
	// The task waits for the executor's word that the workflow started.
	st := h.wantTask("start", conductor.TaskInProgress)
	id := engine.DeriveID("wf-1", "start", st.ID)
	wantOutput(t, st, map[string]any{"workflowId": id})
	two := 2
	want := engine.StartWorkflow{WorkflowID: id, Name: "other", Version: &two, Input: map[string]any{"n": int64(4)},
		CorrelationID: "c-4", CreatedBy: "app:tester", From: "wf-1", StartTaskID: st.ID, Depth: 1}
	if got := effectsOf[engine.StartWorkflow](h.last); len(got) != 1 || !reflect.DeepEqual(got[0], want) {
		t.Fatalf("start effects %+v\nwant %+v", got, want)
	}
	// Recovery starts it again (idempotent: the id is the same).
	var again []engine.StartWorkflow
	for _, e := range engine.Effects(h.w, h.now.UnixMilli()) {
		if s, ok := e.(engine.StartWorkflow); ok {
			again = append(again, s)
		}
	}
	if len(again) != 1 || !reflect.DeepEqual(again[0], want) {
		t.Fatalf("recovery effects %+v", again)
	}
	h.complete("start", map[string]any{"workflowId": id})
	if h.wantTask("next", conductor.TaskScheduled).Input["started"] != id {
		t.Fatal("next does not see the started workflow's id")
	}
	for _, e := range engine.Effects(h.w, h.now.UnixMilli()) {
		if _, ok := e.(engine.StartWorkflow); ok {
			t.Fatal("recovery starts a workflow its START_WORKFLOW saw started")
		}
	}
	// One an older engine completed when it scheduled it may never have
	// started its workflow: recovery starts it.
	legacy, err := engine.Apply(nil, &schemas.WorkflowStarted{WorkflowID: "wf-old", Name: "starter", Version: 1,
		Def: []byte(def), CreatedBy: "app:tester", Time: 1})
	if err == nil {
		legacy, err = engine.Apply(legacy, &schemas.TaskScheduled{TaskID: "t-old", Ref: "start", Name: "start", Type: conductor.TaskTypeStartWorkflow,
			Status: conductor.TaskCompleted, Seq: 1, Input: map[string]any{"startWorkflow": map[string]any{"name": "other"}},
			Output: map[string]any{"workflowId": "started-old"}, Time: 1})
	}
	if err != nil {
		t.Fatal(err)
	}
	var legacyStarts []engine.StartWorkflow
	for _, e := range engine.Effects(legacy, 2) {
		if s, ok := e.(engine.StartWorkflow); ok {
			legacyStarts = append(legacyStarts, s)
		}
	}
	if len(legacyStarts) != 1 || legacyStarts[0].WorkflowID != "started-old" {
		t.Fatalf("recovery of an older START_WORKFLOW: %+v", legacyStarts)
	}
	// A start that failed fails the task.
	h = newHarness(t, def, map[string]any{"n": int64(4)})
	h.report("start", conductor.TaskFailedWithTerminalError, nil, "workflow other could not start: not found")
	h.wantStatus(conductor.WorkflowFailed)
	if h.w.LatestByRef("next") != nil {
		t.Fatal("next ran after the start failed")
	}

	h = newHarness(t, strings.Replace(def, `"name":"other",`, ``, 1), map[string]any{"n": int64(4)})
	h.wantTask("start", conductor.TaskFailedWithTerminalError)
	h.wantStatus(conductor.WorkflowFailed)
}

// A START_WORKFLOW request without a correlationId or taskToDomain takes
// its starter's, as Conductor's StartWorkflow does; one that names them
// keeps its own.
func TestStartWorkflowInheritsCorrelationAndDomains(t *testing.T) {
	for _, c := range []struct {
		name, request string
		wantCorr      string
		wantDomains   map[string]string
	}{
		{"neither", `{"name":"other"}`, "corr-1", map[string]string{"w": "dom1"}},
		{"blank", `{"name":"other","correlationId":" ","taskToDomain":{}}`, "corr-1", map[string]string{"w": "dom1"}},
		{"own", `{"name":"other","correlationId":"c-own","taskToDomain":{"x":"dom2"}}`, "c-own", map[string]string{"x": "dom2"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			def := parseDef(t, `{"name":"starter","tasks":[{"name":"start","taskReferenceName":"start","type":"START_WORKFLOW",
			 "inputParameters":{"startWorkflow":`+c.request+`}}]}`)
			h := newHarnessStart(t, engine.Start{WorkflowID: "wf-1", Def: def, CreatedBy: "app:tester",
				Request: conductor.StartWorkflowRequest{CorrelationID: "corr-1", TaskToDomain: map[string]string{"w": "dom1"}}})
			h.wantTask("start", conductor.TaskInProgress)
			got := effectsOf[engine.StartWorkflow](h.last)
			if len(got) != 1 || got[0].CorrelationID != c.wantCorr || !reflect.DeepEqual(got[0].TaskToDomain, c.wantDomains) {
				t.Fatalf("start effects %+v\nwant correlationId %q, taskToDomain %v", got, c.wantCorr, c.wantDomains)
			}
		})
	}
}

func TestExclusiveJoin(t *testing.T) {
	def := `{"name":"ej","tasks":[
	 {"name":"sw","taskReferenceName":"sw","type":"SWITCH","expression":"c","inputParameters":{"c":"${workflow.input.c}"},
	  "decisionCases":{"a":[{"name":"a","taskReferenceName":"a"}],"b":[{"name":"b","taskReferenceName":"b"}]}},
	 {"name":"ej","taskReferenceName":"ej","type":"EXCLUSIVE_JOIN","joinOn":["a","b"]}]}`
	for _, c := range []string{"a", "b"} {
		h := newHarness(t, def, map[string]any{"c": c})
		h.complete(c, map[string]any{"from": c})
		wantOutput(t, h.wantTask("ej", conductor.TaskCompleted), map[string]any{"from": c})
		h.wantStatus(conductor.WorkflowCompleted)
	}
	// Neither branch ran: nothing to wait for.
	h := newHarness(t, def, map[string]any{"c": "none"})
	h.wantTask("ej", conductor.TaskCompleted)
	h.wantStatus(conductor.WorkflowCompleted)
}

// A HUMAN task waits for an update from outside, as Conductor's does: no
// worker queue, no deadline, progress keeps it waiting, a result ends it.
// HUMAN and WAIT_FOR_WEBHOOK tasks are in progress from their start until
// someone outside updates them.
func TestTasksAwaitingOutside(t *testing.T) {
	for _, typ := range []string{conductor.TaskTypeHuman, conductor.TaskTypeWaitForWebhook} {
		t.Run(typ, func(t *testing.T) { testAwaitingOutside(t, typ) })
	}
}

func testAwaitingOutside(t *testing.T, typ string) {
	def := `{"name":"approve","tasks":[{"name":"review","taskReferenceName":"review","type":"` + typ + `","inputParameters":{"doc":"${workflow.input.doc}"}},
	 {"name":"next","taskReferenceName":"next"}]}`
	h := newHarness(t, def, map[string]any{"doc": "d-1"})
	if got := h.wantTask("review", conductor.TaskInProgress); got.Input["doc"] != "d-1" {
		t.Fatalf("review input %v", got.Input)
	}
	if ds := effectsOf[engine.Dispatch](h.last); len(ds) != 0 {
		t.Fatalf("a %s task was dispatched to workers: %+v", typ, ds)
	}
	if dl := engine.Deadlines(h.w); len(dl) != 0 {
		t.Fatalf("a %s task has deadlines %v", typ, dl)
	}
	if d, err := h.try(engine.Take{TaskID: h.task("review").ID, WorkerID: "w1"}); err == nil {
		t.Fatalf("a worker took a %s task: %+v", typ, d.Reply)
	}
	h.report("review", conductor.TaskInProgress, map[string]any{"draft": "ok so far"}, "")
	if got := h.wantTask("review", conductor.TaskInProgress); got.Output["draft"] != "ok so far" {
		t.Fatalf("progress lost its output: %v", got.Output)
	}
	h.complete("review", map[string]any{"approved": true})
	h.wantTask("next", conductor.TaskScheduled)

	// Its task definition's timeoutSeconds applies, counted from its start.
	timed := newHarness(t, def, map[string]any{"doc": "d-3"}, `{"name":"review","timeoutSeconds":60,"timeoutPolicy":"TIME_OUT_WF"}`)
	if dl := engine.Deadlines(timed.w); len(dl) != 1 || dl[0] != epoch.Add(time.Minute).UnixMilli() {
		t.Fatalf("deadlines %v, want the task's timeout a minute after its start", dl)
	}
	timed.advance(time.Minute)
	timed.decide(engine.Tick{})
	timed.wantTask("review", conductor.TaskTimedOut)
	timed.wantStatus(conductor.WorkflowTimedOut)

	rejected := newHarness(t, def, map[string]any{"doc": "d-2"})
	rejected.report("review", conductor.TaskFailed, nil, "rejected by alice")
	rejected.wantStatus(conductor.WorkflowFailed)
	if !strings.Contains(rejected.w.Reason, "rejected by alice") {
		t.Fatalf("reason %q", rejected.w.Reason)
	}
}

func TestValidateNewTaskTypes(t *testing.T) {
	simple := `{"name":"s","taskReferenceName":"s"}`
	tests := []struct {
		name, task, want string
	}{
		{"loop without condition", `{"name":"l","taskReferenceName":"l","type":"DO_WHILE","loopOver":[` + simple + `]}`, "tasks[0].loopCondition"},
		{"loop with items", `{"name":"l","taskReferenceName":"l","type":"DO_WHILE","items":"${workflow.input.x}","loopOver":[` + simple + `]}`, ""},
		{"loop with bad items", `{"name":"l","taskReferenceName":"l","type":"DO_WHILE","items":5,"loopOver":[` + simple + `]}`, "tasks[0].items"},
		{"nested loop", `{"name":"l","taskReferenceName":"l","type":"DO_WHILE","loopCondition":"false","loopOver":[
			{"name":"m","taskReferenceName":"m","type":"DO_WHILE","loopCondition":"false","loopOver":[` + simple + `]}]}`, "tasks[0].loopOver[0].type"},
		{"inline", `{"name":"i","taskReferenceName":"i","type":"INLINE","inputParameters":{"evaluatorType":"graaljs"}}`, "tasks[0].inputParameters.expression"},
		{"lambda", `{"name":"i","taskReferenceName":"i","type":"LAMBDA"}`, "tasks[0].inputParameters.scriptExpression"},
		{"jq", `{"name":"j","taskReferenceName":"j","type":"JSON_JQ_TRANSFORM","inputParameters":{"x":1}}`, "tasks[0].inputParameters.queryExpression"},
		{"dynamic", `{"name":"d","taskReferenceName":"d","type":"DYNAMIC"}`, "tasks[0].dynamicTaskNameParam"},
		{"dynamic fork", `{"name":"f","taskReferenceName":"f","type":"FORK_JOIN_DYNAMIC"},{"name":"j","taskReferenceName":"j","type":"JOIN"}`, "tasks[0].dynamicForkTasksParam"},
		{"dynamic fork simple", `{"name":"f","taskReferenceName":"f","type":"FORK_JOIN_DYNAMIC","inputParameters":{"forkTaskName":"x","forkTaskInputs":[]}},{"name":"j","taskReferenceName":"j","type":"JOIN"}`, ""},
		{"start workflow", `{"name":"s","taskReferenceName":"s","type":"START_WORKFLOW","inputParameters":{"startWorkflow":{"version":1}}}`, "tasks[0].inputParameters.startWorkflow.name"},
		{"start workflow missing", `{"name":"s","taskReferenceName":"s","type":"START_WORKFLOW"}`, "tasks[0].inputParameters.startWorkflow"},
		{"javascript switch", `{"name":"w","taskReferenceName":"w","type":"SWITCH","evaluatorType":"graaljs","decisionCases":{"a":[]}}`, "tasks[0].expression"},
		{"unknown evaluator", `{"name":"w","taskReferenceName":"w","type":"SWITCH","evaluatorType":"python","expression":"x","decisionCases":{"a":[]}}`, "tasks[0].evaluatorType"},
		{"switch without cases", `{"name":"w","taskReferenceName":"w","type":"SWITCH","expression":"x","decisionCases":{},"defaultCase":[` + simple + `]}`, "tasks[0].decisionCases"},
		{"event", `{"name":"e","taskReferenceName":"e","type":"EVENT","sink":"nats:orders.${workflow.input.region}"}`, ""},
		{"event without sink", `{"name":"e","taskReferenceName":"e","type":"EVENT"}`, "tasks[0].sink"},
		{"event with a broken sink", `{"name":"e","taskReferenceName":"e","type":"EVENT","sink":"nats:${workflow.input.x"}`, "tasks[0].sink"},
		{"exclusive join", `{"name":"e","taskReferenceName":"e","type":"EXCLUSIVE_JOIN","joinOn":["nope"],"defaultExclusiveJoinTask":["gone"]}`, "tasks[0].joinOn[0] tasks[0].defaultExclusiveJoinTask[0]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := engine.ValidateWorkflowDef(parseDef(t, `{"name":"v","tasks":[`+tt.task+`]}`))
			var paths []string
			var ve *fault.ValidationError
			if errors.As(err, &ve) {
				for _, f := range ve.Fields {
					paths = append(paths, f.Path)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(paths, " "); got != tt.want {
				t.Fatalf("paths = %q, want %q (%v)", got, tt.want, err)
			}
		})
	}
}

// An EVENT runs in a system worker (workers/system.Event publishes), with
// its sink in its input, evaluated there as Conductor does, so that it
// may name the subject from the workflow's data.
func TestEventTask(t *testing.T) {
	def := `{"name":"notify","tasks":[
	 {"name":"announce","taskReferenceName":"announce","type":"EVENT","sink":"nats:orders.${workflow.input.region}",
	  "inputParameters":{"order":"${workflow.input.order}","sink":"ignored"}}]}`
	h := newHarness(t, def, map[string]any{"region": "eu", "order": int64(7)})
	ev := h.wantTask("announce", conductor.TaskScheduled)
	wantRunSystem(t, h.last, ev)
	if len(effectsOf[engine.Dispatch](h.last)) != 0 {
		t.Fatal("an EVENT was dispatched to workers")
	}
	taken := h.system("announce", conductor.TaskCompleted, map[string]any{"event_produced": "nats:orders.eu"}, "")
	if taken.Input["sink"] != "nats:orders.eu" || taken.Input["order"] != int64(7) {
		t.Fatalf("EVENT handed over with input %v", taken.Input)
	}
	h.wantStatus(conductor.WorkflowCompleted)
}

// A loop body that never reaches a system task cannot spin a decision
// forever: a loop of decided tasks over many items still ends.
func TestDoWhileDecidedBody(t *testing.T) {
	def := `{"name":"fast","tasks":[
	 {"name":"loop","taskReferenceName":"loop","type":"DO_WHILE","items":"${workflow.input.list}",
	  "loopOver":[{"name":"set","taskReferenceName":"set","type":"SET_VARIABLE","inputParameters":{"last":"${loop.output.loopItem}"}}]}]}`
	list := make([]any, 50)
	for i := range list {
		list[i] = int64(i)
	}
	h := newHarness(t, def, map[string]any{"list": list})
	h.wantStatus(conductor.WorkflowCompleted)
	if h.w.Variables["last"] != int64(49) || loopIterations(h) != 50 {
		t.Fatalf("variables %v iterations %d", h.w.Variables, loopIterations(h))
	}
	h.advance(time.Second)
}

func loopIterations(h *harness) int64 {
	n, _ := h.task("loop").Output["iteration"].(int64)
	return n
}

// Without outputParameters, a workflow's output is the output of the last
// task in its list, as in Conductor: for a workflow that ends in a
// DO_WHILE, the loop's last task, not the loop, which ends after it.
func TestDefaultOutputIsTheLastTasks(t *testing.T) {
	h := newHarness(t, `{"name":"w","tasks":[{"name":"loop","taskReferenceName":"loop","type":"DO_WHILE",
	  "loopCondition":"false","loopOver":[{"name":"a","taskReferenceName":"a"}]}]}`, nil)
	h.complete("a__1", map[string]any{"v": "from a"})
	h.advance(time.Millisecond)
	h.system("loop", conductor.TaskCompleted, nil, "")
	h.wantStatus(conductor.WorkflowCompleted)
	if !reflect.DeepEqual(h.w.Output, map[string]any{"v": "from a"}) {
		t.Fatalf("output %v, want a__1's", h.w.Output)
	}
}

// Conductor never retries its built-in control tasks, whatever retryCount
// a task definition of their name gives.
func TestBuiltInTasksAreNotRetried(t *testing.T) {
	h := newHarness(t, `{"name":"sw","tasks":[{"name":"route","taskReferenceName":"route","type":"SWITCH","evaluatorType":"javascript",
	  "expression":"$.n.boom()","inputParameters":{"n":1},"decisionCases":{"x":[{"name":"x","taskReferenceName":"x"}]}}]}`,
		nil, `{"name":"route","retryCount":2,"retryDelaySeconds":0}`)
	h.system("route", conductor.TaskFailed, nil, "TypeError")
	h.wantRefs("route")
	h.wantStatus(conductor.WorkflowFailed)
}

// A FORK_JOIN_DYNAMIC may not fork a reference name that reads as an
// iteration of one of the definition's tasks ("x__1" of x): the decider
// would take it for that task and run what follows x.
func TestDynamicForkRefLikeIteration(t *testing.T) {
	def := `{"name":"d","tasks":[{"name":"fork","taskReferenceName":"fork","type":"FORK_JOIN_DYNAMIC","dynamicForkTasksParam":"tasks",
	  "inputParameters":{"tasks":"${workflow.input.tasks}"}},
	 {"name":"join","taskReferenceName":"join","type":"JOIN"},{"name":"x","taskReferenceName":"x"},{"name":"y","taskReferenceName":"y"}]}`
	h := newHarness(t, def, map[string]any{"tasks": []any{map[string]any{"name": "img", "taskReferenceName": "x__1"}}})
	if fork := h.wantTask("fork", conductor.TaskFailedWithTerminalError); !strings.Contains(fork.Reason, "x__1") {
		t.Fatalf("reason %q", fork.Reason)
	}
	h.wantStatus(conductor.WorkflowFailed)
}

// The condition document names the expressions the hand-off resolves (a
// secret in the loop's inputParameters), but never one whose place an
// iteration's output took: that is a worker's data, not the author's.
func TestLoopConditionInputDeferred(t *testing.T) {
	h := newHarness(t, `{"name":"l","tasks":[{"name":"loop","taskReferenceName":"loop","type":"DO_WHILE",
	  "inputParameters":{"k":"${workflow.secrets.lim}","a":"${workflow.secrets.other}"},"loopCondition":"true",
	  "loopOver":[{"name":"a","taskReferenceName":"a"}]}]}`, nil)
	h.complete("a__1", map[string]any{"v": "${workflow.secrets.admin}"})
	doc, deferred := engine.LoopConditionInput(h.w, h.task("loop"))
	if !reflect.DeepEqual(deferred, [][]any{{"k"}}) {
		t.Fatalf("deferred %v, want only [k]", deferred)
	}
	if doc["k"] != "${workflow.secrets.lim}" || !reflect.DeepEqual(doc["a"], map[string]any{"v": "${workflow.secrets.admin}"}) {
		t.Fatalf("document %v", doc)
	}
}

// The branch a SWITCH took is recorded apart from its output, which
// protection may change: a case value equal to a secret the workflow
// resolved reads "***" there. With the output so redacted, the workflow
// goes on in the branch it took, not also into the default case; as it
// does for a case a system worker evaluated, and for the default case.
func TestSwitchBranchOutlivesRedactedOutput(t *testing.T) {
	const cases = `"decisionCases":{"production-eu":[{"name":"b","taskReferenceName":"b"},{"name":"c","taskReferenceName":"c"}]},
	  "defaultCase":[{"name":"d","taskReferenceName":"d"},{"name":"e","taskReferenceName":"e"}]`
	for _, tc := range []struct {
		name, sw, env string
		script        bool
		first, next   string
	}{
		{"value-param", `"evaluatorType":"value-param","expression":"env"`, "production-eu", false, "b", "c"},
		{"script", `"evaluatorType":"javascript","expression":"$.env"`, "production-eu", true, "b", "c"},
		{"default case", `"evaluatorType":"value-param","expression":"env"`, "staging-us-east", false, "d", "e"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, `{"name":"sw","tasks":[{"name":"sw","taskReferenceName":"sw","type":"SWITCH",`+tc.sw+`,
			  "inputParameters":{"env":"${workflow.input.env}"},`+cases+`}]}`, map[string]any{"env": tc.env})
			if tc.script {
				h.system("sw", conductor.TaskCompleted, map[string]any{"evaluationResult": []any{tc.env}, "selectedCase": tc.env}, "")
			}
			h.wantTask("sw", conductor.TaskCompleted)
			h.wantTask(tc.first, conductor.TaskScheduled)
			// As protection stores it when the case value is a resolved
			// secret's.
			h.storedAs("sw", func(c *engine.Task) {
				c.Output = map[string]any{"evaluationResult": []any{"***"}, "selectedCase": "***"}
			})
			h.complete(tc.first, nil)
			h.wantRefs("sw", tc.first, tc.next)
		})
	}
}

// The JOIN after a FORK_JOIN_DYNAMIC waits for the tasks the fork
// recorded, not for the list in its output: a reference name equal to a
// secret the workflow resolved reads "***" there once protection has
// redacted it, and a JOIN waiting for "***" would wait for ever.
func TestDynamicJoinOutlivesRedactedFork(t *testing.T) {
	h := newHarness(t, dynamicForkDef, map[string]any{"tasks": []any{
		map[string]any{"name": "deploy", "taskReferenceName": "production-eu"}, map[string]any{"name": "deploy", "taskReferenceName": "staging-us"}}})
	h.wantTask("fork", conductor.TaskCompleted)
	if got := h.task("fork").Forked; !slices.Equal(got, []string{"production-eu", "staging-us"}) {
		t.Fatalf("fork recorded %v", got)
	}
	// As protection stores it when "production-eu" is a resolved secret's
	// value.
	h.storedAs("fork", func(c *engine.Task) {
		c.Output = map[string]any{"forkedTasks": []any{"***", "staging-us"}, "forkedTaskInputs": map[string]any{}}
		c.Input = map[string]any{"tasks": []any{
			map[string]any{"name": "deploy", "taskReferenceName": "***"}, map[string]any{"name": "deploy", "taskReferenceName": "staging-us"}}}
	})
	h.complete("production-eu", nil)
	h.wantTask("join", conductor.TaskInProgress)
	h.complete("staging-us", nil)
	h.wantTask("join", conductor.TaskCompleted)
	h.complete("after", nil)
	h.wantStatus(conductor.WorkflowCompleted)

	// A rerun inside the fork would spawn from the redacted input a task
	// the JOIN does not wait for: refused, and nothing changes.
	// So would one from the fork itself, with its stored input.
	for _, from := range []string{"staging-us", "fork"} {
		_, err := h.try(engine.Rerun{Request: conductor.RerunWorkflowRequest{ReRunFromTaskID: h.task(from).ID}})
		if !errors.Is(err, fault.ErrConflict) || !strings.Contains(err.Error(), "FORK_JOIN_DYNAMIC fork") {
			t.Fatalf("rerun from %s in the redacted fork: %v, want a conflict naming the fork", from, err)
		}
		h.wantStatus(conductor.WorkflowCompleted)
	}
	// Given a new input, the fork forks what it names.
	h.decide(engine.Rerun{Request: conductor.RerunWorkflowRequest{ReRunFromTaskID: h.task("fork").ID, TaskInput: map[string]any{"tasks": []any{
		map[string]any{"name": "deploy", "taskReferenceName": "canary"}}}}})
	h.wantTask("canary", conductor.TaskScheduled)
	h.complete("canary", nil)
	h.wantTask("join", conductor.TaskCompleted)
}

// A taskToDomain entry may list fallbacks, as in Conductor: a task goes to
// the first domain whose workers polled lately, else to the last listed,
// NO_DOMAIN standing for the queue without one; "*" covers the tasks
// without an entry of their own. Retries choose again.
func TestTaskDomainFallbacks(t *testing.T) {
	def := `{"name":"d","tasks":[{"name":"a","taskReferenceName":"a"}]}`
	start := func(t *testing.T, t2d map[string]string, active ...string) *harness {
		h := &harness{t: t, now: epoch, taskDefs: map[string]*conductor.TaskDef{}, active: map[string]bool{}}
		for _, q := range active {
			h.active[q] = true
		}
		one := 1
		h.taskDefs["a"] = &conductor.TaskDef{Name: "a", RetryCount: &one}
		h.decide(engine.Start{WorkflowID: "wf-1", Def: parseDef(t, def), CreatedBy: "app:tester",
			Request: conductor.StartWorkflowRequest{TaskToDomain: t2d}})
		return h
	}
	for _, tc := range []struct {
		name   string
		t2d    map[string]string
		active []string
		want   string
	}{
		{"single", map[string]string{"a": "blue"}, nil, "blue"},
		{"single NO_DOMAIN", map[string]string{"a": "NO_DOMAIN"}, []string{"a/NO_DOMAIN"}, ""},
		{"first active", map[string]string{"a": "blue, green"}, []string{"a/blue", "a/green"}, "blue"},
		{"second active", map[string]string{"a": "blue,green,red"}, []string{"a/green"}, "green"},
		{"none active: the last", map[string]string{"a": "blue,green"}, nil, "green"},
		{"none active: NO_DOMAIN last", map[string]string{"a": "blue,no_domain"}, []string{"b/blue"}, ""},
		{"NO_DOMAIN is never active", map[string]string{"a": "NO_DOMAIN,blue"}, []string{"a/NO_DOMAIN"}, "blue"},
		{"star", map[string]string{"*": "blue,NO_DOMAIN"}, []string{"a/blue"}, "blue"},
		{"own entry over star", map[string]string{"*": "blue", "a": "green,NO_DOMAIN"}, nil, ""},
		{"no entry", map[string]string{"b": "blue"}, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := start(t, tc.t2d, tc.active...)
			if got := h.wantTask("a", conductor.TaskScheduled).Domain; got != tc.want {
				t.Fatalf("domain %q, want %q", got, tc.want)
			}
			if ds := effectsOf[engine.Dispatch](h.last); len(ds) != 1 || ds[0].Domain != tc.want {
				t.Fatalf("dispatches %+v, want one to domain %q", ds, tc.want)
			}
		})
	}

	// The first attempt went to the last fallback; its retry goes where
	// workers have shown up since.
	h := start(t, map[string]string{"a": "blue,NO_DOMAIN"})
	if got := h.task("a").Domain; got != "" {
		t.Fatalf("first attempt in domain %q", got)
	}
	h.active["a/blue"] = true
	h.report("a", conductor.TaskFailed, nil, "try again")
	if got := h.wantTask("a", conductor.TaskScheduled).Domain; got != "blue" {
		t.Fatalf("retry in domain %q, want blue", got)
	}
}

// A system task has no domain, as Conductor's setTaskDomains gives none:
// it runs in the engine, from no worker's queue. "*" and an entry naming
// it leave it without one; the worker task beside it gets its domain.
func TestSystemTasksHaveNoDomain(t *testing.T) {
	def := `{"name":"d","tasks":[{"name":"setv","taskReferenceName":"setv","type":"SET_VARIABLE","inputParameters":{"x":1}},
	  {"name":"a","taskReferenceName":"a"},{"name":"hold","taskReferenceName":"hold","type":"WAIT"}]}`
	for _, t2d := range []map[string]string{{"*": "blue"}, {"*": "blue", "setv": "green", "hold": "green"}} {
		h := &harness{t: t, now: epoch, taskDefs: map[string]*conductor.TaskDef{}, active: map[string]bool{}}
		h.decide(engine.Start{WorkflowID: "wf-1", Def: parseDef(t, def), CreatedBy: "app:tester",
			Request: conductor.StartWorkflowRequest{TaskToDomain: t2d}})
		if got := h.wantTask("setv", conductor.TaskCompleted).Domain; got != "" {
			t.Errorf("%v: SET_VARIABLE in domain %q", t2d, got)
		}
		if got := h.wantTask("a", conductor.TaskScheduled).Domain; got != "blue" {
			t.Errorf("%v: the worker task in domain %q, want blue", t2d, got)
		}
		h.complete("a", nil)
		if got := h.wantTask("hold", conductor.TaskInProgress).Domain; got != "" {
			t.Errorf("%v: WAIT in domain %q", t2d, got)
		}
	}
}

// A reader that renders many tasks of a workflow (an execution's tasks, a
// task search) renders each as its own view shows it: the forks, their
// forked tasks and the JOINs of a loop's iterations, a forked task retried,
// a JOIN and a fork rendered before or after the other.
func TestTaskViewsShowWhatEachViewShows(t *testing.T) {
	def := `{"name":"lf","tasks":[{"name":"loop","taskReferenceName":"loop","type":"DO_WHILE","items":"${workflow.input.items}",
	  "loopOver":[{"name":"fork","taskReferenceName":"fork","type":"FORK_JOIN_DYNAMIC","dynamicForkTasksParam":"tasks",
	    "inputParameters":{"tasks":"${workflow.input.tasks}"}},
	   {"name":"join","taskReferenceName":"join","type":"JOIN"}]},
	 {"name":"ej","taskReferenceName":"ej","type":"EXCLUSIVE_JOIN","joinOn":["nothing"],"defaultExclusiveJoinTask":["w1"]}]}`
	tasks := []any{map[string]any{"name": "w", "taskReferenceName": "w1", "inputParameters": map[string]any{"k": "v"}},
		map[string]any{"name": "w", "taskReferenceName": "w2"}}
	h := newHarness(t, def, map[string]any{"items": []any{"a", "b"}, "tasks": tasks}, `{"name":"w","retryCount":1}`)
	h.report("w1__1", conductor.TaskFailed, nil, "again")
	for _, ref := range []string{"w1__1", "w2__1", "w1__2", "w2__2"} {
		h.complete(ref, map[string]any{"done": ref})
	}
	if len(h.w.Tasks) != 11 {
		t.Fatalf("%d tasks: %v", len(h.w.Tasks), h.refs())
	}
	forward, backward := h.w.TaskViews(), h.w.TaskViews()
	for i := range h.w.Tasks {
		// The second renders the last task first: what it found for it
		// serves every other.
		j := len(h.w.Tasks) - 1 - i
		for _, c := range []struct {
			view func(*engine.Task) *conductor.Task
			t    *engine.Task
		}{{forward, h.w.Tasks[i]}, {backward, h.w.Tasks[j]}} {
			want, err := json.Marshal(c.t.Conductor(h.w))
			if err != nil {
				t.Fatal(err)
			}
			got, err := json.Marshal(c.view(c.t))
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != string(want) {
				t.Errorf("%s: rendered among the others %s, alone %s", c.t.Ref, got, want)
			}
		}
	}
	for i, ct := range h.w.Conductor(true).Tasks {
		got, _ := json.Marshal(ct)
		want, _ := json.Marshal(h.w.Tasks[i].Conductor(h.w))
		if string(got) != string(want) {
			t.Errorf("%s: in the workflow's view %s, alone %s", ct.ReferenceTaskName, got, want)
		}
	}
	fork := h.task("fork__2")
	if defs, _ := forward(fork).InputData["forkedTaskDefs"].([]any); len(defs) != 2 {
		t.Fatalf("fork__2 forkedTaskDefs %v", forward(fork).InputData["forkedTaskDefs"])
	}
	if joinOn, _ := forward(h.task("join__1")).InputData["joinOn"].([]any); len(joinOn) != 2 {
		t.Fatalf("join__1 joinOn %v", forward(h.task("join__1")).InputData["joinOn"])
	}
}

// A task that ends the workflow as soon as a fork schedules it (a
// TERMINATE, a task failed as it is scheduled) first in a branch, or
// among a dynamic fork's tasks, cancels the fork's other tasks and its
// JOIN, as in Conductor, whose mappers make them all before any runs.
// They used to be missing from the execution: the workflow ended before
// they were scheduled.
func TestWorkflowEndedAsAForkStartsCancelsTheRest(t *testing.T) {
	const static = `{"name":"f","tasks":[
		{"name":"fork","taskReferenceName":"fork","type":"FORK_JOIN","forkTasks":[
			[{"name":"a","taskReferenceName":"a"}],
			[FIRST],
			[{"name":"c","taskReferenceName":"c"}]]},
		{"name":"join","taskReferenceName":"join","type":"JOIN","joinOn":["a","first","c"]},
		{"name":"after","taskReferenceName":"after"}]}`
	terminate := func(status string) string {
		return `{"name":"first","taskReferenceName":"first","type":"TERMINATE","inputParameters":{"terminationStatus":"` + status +
			`","workflowOutput":{"by":"first"}}}`
	}
	// A DYNAMIC task whose name its input does not give fails as it is
	// scheduled.
	const unnamed = `{"name":"first","taskReferenceName":"first","type":"DYNAMIC","dynamicTaskNameParam":"n","inputParameters":{"n":null}}`
	for _, tc := range []struct {
		name, def  string
		input      map[string]any
		status     string
		first      string
		refs, rest []string
	}{
		{name: "TERMINATE COMPLETED in a branch", def: strings.Replace(static, "FIRST", terminate("COMPLETED"), 1),
			status: conductor.WorkflowCompleted, first: conductor.TaskCompleted,
			refs: []string{"fork", "a", "first", "c", "join"}, rest: []string{"a", "c", "join"}},
		{name: "TERMINATE FAILED in a branch", def: strings.Replace(static, "FIRST", terminate("FAILED"), 1),
			status: conductor.WorkflowFailed, first: conductor.TaskCompleted,
			refs: []string{"fork", "a", "first", "c", "join"}, rest: []string{"a", "c", "join"}},
		{name: "a branch's task failed as scheduled", def: strings.Replace(static, "FIRST", unnamed, 1),
			status: conductor.WorkflowFailed, first: conductor.TaskFailedWithTerminalError,
			refs: []string{"fork", "a", "first", "c", "join"}, rest: []string{"a", "c", "join"}},
		{name: "a dynamic fork's task failed as scheduled", def: dynForkDef,
			input: map[string]any{"tasks": []any{
				map[string]any{"name": "a", "taskReferenceName": "a"},
				// The workflow's data may not reference secrets.
				map[string]any{"name": "first", "taskReferenceName": "first", "inputParameters": map[string]any{"s": "${workflow.secrets.s}"}},
				map[string]any{"name": "c", "taskReferenceName": "c"}}},
			status: conductor.WorkflowFailed, first: conductor.TaskFailedWithTerminalError,
			refs: []string{"fork", "a", "first", "c", "join"}, rest: []string{"a", "c", "join"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, tc.def, tc.input)
			h.wantStatus(tc.status)
			h.wantRefs(tc.refs...)
			h.wantTask("first", tc.first)
			for _, ref := range tc.rest {
				h.wantTask(ref, conductor.TaskCanceled)
			}
			if tc.first == conductor.TaskCompleted {
				// The canceled tasks run again on a retry only if the
				// workflow would not run on past the TERMINATE.
				_, err := h.try(engine.Retry{})
				wantErr(t, err, fault.ErrConflict)
				h.wantStatus(tc.status)
				if tc.status == conductor.WorkflowCompleted && !reflect.DeepEqual(h.w.Output, map[string]any{"by": "first"}) {
					t.Fatalf("output = %v, want the TERMINATE's workflowOutput", h.w.Output)
				}
			}
		})
	}
}

// A dynamic fork's task refused as it is scheduled (its configuration,
// from data, reaches secrets) keeps its configuration, as every forked
// task does: the fork's forkedTaskDefs lists it and its own view shows
// it (the references as text, never a value). Whatever runs it again (a
// retry, a rerun from it or from another of the fork's tasks) refuses it
// again for the same reason, never hands it out, and ends the workflow
// once the rest is scheduled, which it cancels. A retry used to skip it
// (no configuration) and fail the JOIN on it; with one, it would have
// been handed out with its references as text; a rerun from another
// forked task left the tasks after it scheduled, and handed out, in the
// FAILED workflow.
func TestForkedTaskRefusedAsScheduled(t *testing.T) {
	sealed := &masking.Sealed{Kind: masking.KindSecrets, Purpose: "p", Ciphertext: []byte{1}}
	for _, refusal := range []struct {
		name   string
		params map[string]any
		input  map[string]any // the workflow's, beside the task list
	}{
		{name: "secret", params: map[string]any{"s": "${workflow.secrets.s}"}},
		{name: "environment value", params: map[string]any{"s": "Bearer ${workflow.env.region}"}},
		{name: "sealed data", params: map[string]any{"s": "${workflow.input._secrets.k}"},
			input: map[string]any{"_secrets": map[string]any{"k": sealed}}},
	} {
		start := func(t *testing.T) *harness {
			t.Helper()
			in := map[string]any{"tasks": []any{
				map[string]any{"name": "a", "taskReferenceName": "a"},
				map[string]any{"name": "first", "taskReferenceName": "first", "inputParameters": refusal.params},
				map[string]any{"name": "c", "taskReferenceName": "c"}}}
			for k, v := range refusal.input {
				in[k] = v
			}
			return newHarness(t, dynForkDef, in)
		}
		t.Run(refusal.name+", shown", func(t *testing.T) {
			h := start(t)
			h.wantStatus(conductor.WorkflowFailed)
			first := h.wantTask("first", conductor.TaskFailedWithTerminalError)
			if !strings.Contains(first.Reason, "configured by the workflow's data") {
				t.Fatalf("reason %q", first.Reason)
			}
			view := h.task("fork").Conductor(h.w)
			defs, _ := view.InputData["forkedTaskDefs"].([]any)
			var refs []string
			var shown any
			for _, d := range defs {
				var wt map[string]any
				if err := json.Unmarshal(d.(conductor.WorkflowTaskJSON), &wt); err != nil {
					t.Fatal(err)
				}
				refs = append(refs, wt["taskReferenceName"].(string))
				if wt["taskReferenceName"] == "first" {
					shown = wt["inputParameters"]
				}
			}
			if !reflect.DeepEqual(refs, []string{"a", "first", "c"}) {
				t.Fatalf("forkedTaskDefs lists %v, want [a first c]", refs)
			}
			if want := any(refusal.params); !reflect.DeepEqual(shown, want) {
				t.Fatalf("forkedTaskDefs shows first's inputParameters %v, want %v", shown, want)
			}
			if own := first.Conductor(h.w).WorkflowTask; string(own) != string(defs[1].(conductor.WorkflowTaskJSON)) {
				t.Fatalf("first's workflowTask %s, its fork shows %s", own, defs[1])
			}
		})
		for _, again := range []struct {
			name string
			trig func(h *harness) engine.Trigger
		}{
			{"retry", func(*harness) engine.Trigger { return engine.Retry{} }},
			{"rerun from it", func(h *harness) engine.Trigger {
				return engine.Rerun{Request: conductor.RerunWorkflowRequest{ReRunFromTaskID: h.task("first").ID}}
			}},
			{"rerun from it with an input", func(h *harness) engine.Trigger {
				return engine.Rerun{Request: conductor.RerunWorkflowRequest{ReRunFromTaskID: h.task("first").ID, TaskInput: map[string]any{"s": "plain"}}}
			}},
			{"rerun from the task before it", func(h *harness) engine.Trigger {
				return engine.Rerun{Request: conductor.RerunWorkflowRequest{ReRunFromTaskID: h.task("a").ID}}
			}},
		} {
			t.Run(refusal.name+", "+again.name, func(t *testing.T) {
				h := start(t)
				reason := h.task("first").Reason
				d := h.decide(again.trig(h))
				for _, ev := range d.Events {
					if s, ok := ev.(*schemas.TaskScheduled); ok && s.Ref == "first" && s.Status != conductor.TaskFailedWithTerminalError {
						t.Fatalf("first scheduled %s with input %v", s.Status, s.Input)
					}
				}
				h.wantStatus(conductor.WorkflowFailed)
				if first := h.wantTask("first", conductor.TaskFailedWithTerminalError); first.Reason != reason {
					t.Fatalf("refused again for %q, want %q", first.Reason, reason)
				}
				for _, ref := range []string{"a", "c", "join"} {
					h.wantTask(ref, conductor.TaskCanceled)
				}
				for _, task := range h.w.Tasks {
					if task.Active() {
						t.Fatalf("%s %s in the %s workflow", task.Ref, task.Status, h.w.Status)
					}
				}
			})
		}
	}
}

// An optional (or permissive) dynamic fork's task refused as it is
// scheduled lets the JOIN go on, as that task's failure does otherwise:
// optional, COMPLETED_WITH_ERRORS; permissive, left FAILED_WITH_TERMINAL_ERROR
// while the rest runs, and the JOIN and the workflow then fail with its
// reason. It used to fail the workflow at once, its configuration, which
// says so, not kept.
func TestOptionalForkedTaskRefusedAsScheduled(t *testing.T) {
	for _, tc := range []struct {
		flag, first, join, status string
	}{
		{"optional", conductor.TaskCompletedWithErrors, conductor.TaskCompletedWithErrors, conductor.WorkflowCompleted},
		{"permissive", conductor.TaskFailedWithTerminalError, conductor.TaskFailed, conductor.WorkflowFailed},
	} {
		t.Run(tc.flag, func(t *testing.T) {
			h := newHarness(t, dynForkDef, map[string]any{"tasks": []any{
				map[string]any{"name": "a", "taskReferenceName": "a"},
				map[string]any{"name": "first", "taskReferenceName": "first", tc.flag: true, "inputParameters": map[string]any{"s": "${workflow.secrets.s}"}}}})
			h.wantStatus(conductor.WorkflowRunning)
			first := h.wantTask("first", tc.first)
			if !strings.Contains(first.Reason, "configured by the workflow's data") {
				t.Fatalf("reason %q", first.Reason)
			}
			h.complete("a", nil)
			h.wantTask("join", tc.join)
			if tc.status == conductor.WorkflowCompleted {
				h.complete("after", nil)
			}
			h.wantStatus(tc.status)
			if tc.status == conductor.WorkflowFailed && h.w.Reason != first.Reason {
				t.Fatalf("workflow failed for %q, want first's reason %q", h.w.Reason, first.Reason)
			}
		})
	}
}

// A loop's condition that an engine's dead process was evaluating is
// taken back (Reclaim) as its lease's end would take it; while its body
// runs the loop is the decider's, whoever took its last condition, and
// there is nothing to take back.
func TestDoWhileConditionReclaimed(t *testing.T) {
	h := newHarness(t, loopDef, map[string]any{"max": int64(5)})
	h.complete("a__1", nil)
	h.complete("b__1", map[string]any{"more": true})
	const dead, next = "flowvault/engine-a/boot-1", "flowvault/engine-a/boot-2"
	h.decide(engine.Take{TaskID: h.task("loop").ID, WorkerID: dead, System: true})
	d := h.decide(engine.Reclaim{TaskID: h.task("loop").ID, Holder: dead})
	wantRunSystem(t, d, h.wantTask("loop", conductor.TaskScheduled))
	h.decide(engine.Take{TaskID: h.task("loop").ID, WorkerID: next, System: true})
	h.report("loop", conductor.TaskInProgress, nil, "")
	h.wantTask("a__2", conductor.TaskScheduled)
	if _, err := h.try(engine.Reclaim{TaskID: h.task("loop").ID, Holder: h.task("loop").WorkerID}); !errorsIs(err, engine.ErrTaskGone) {
		t.Fatalf("a loop whose body runs taken back: %v", err)
	}
}
