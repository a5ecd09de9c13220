package e2e_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/workers"
)

// catalogueFlow uses every task type of the catalogue beyond the core:
// INLINE, JSON_JQ_TRANSFORM, a JavaScript SWITCH, DO_WHILE (a condition loop
// over a SIMPLE task, and an items loop over INLINE), DYNAMIC,
// FORK_JOIN_DYNAMIC and START_WORKFLOW.
const catalogueFlow = `{"name":"catalogue","version":1,"tasks":[
  {"name":"calc","taskReferenceName":"calc","type":"INLINE","inputParameters":{"evaluatorType":"graaljs",
    "expression":"(function(){return $.a+$.b;})();","a":"${workflow.input.a}","b":"${workflow.input.b}"}},
  {"name":"shape","taskReferenceName":"shape","type":"JSON_JQ_TRANSFORM","inputParameters":{
    "queryExpression":"{sum: .sum, squares: [.list[] | . * .]}","sum":"${calc.output.result}","list":"${workflow.input.list}"}},
  {"name":"route","taskReferenceName":"route","type":"SWITCH","evaluatorType":"javascript",
    "expression":"$.sum > 2 ? 'big' : 'small'","inputParameters":{"sum":"${calc.output.result}"},
    "decisionCases":{"big":[{"name":"mark","taskReferenceName":"mark_big","type":"INLINE",
      "inputParameters":{"evaluatorType":"javascript","expression":"'big:' + $.s","s":"${calc.output.result}"}}]},
    "defaultCase":[{"name":"mark","taskReferenceName":"mark_small","type":"INLINE",
      "inputParameters":{"evaluatorType":"javascript","expression":"'small'"}}]},
  {"name":"loop","taskReferenceName":"loop","type":"DO_WHILE","inputParameters":{"times":"${workflow.input.times}"},
    "loopCondition":"$.loop['iteration'] < $.times && $.step.double < 100",
    "loopOver":[{"name":"e2e_step","taskReferenceName":"step","inputParameters":{"i":"${loop.output.iteration}"}}]},
  {"name":"each","taskReferenceName":"each","type":"DO_WHILE","items":"${workflow.input.list}",
    "loopOver":[{"name":"tenfold","taskReferenceName":"tenfold","type":"INLINE","inputParameters":{"evaluatorType":"javascript",
      "expression":"$.x * 10","x":"${each.output.loopItem}"}}]},
  {"name":"dyn","taskReferenceName":"dyn","type":"DYNAMIC","dynamicTaskNameParam":"taskToExecute",
    "inputParameters":{"taskToExecute":"${workflow.input.dynTask}","who":"dynamic"}},
  {"name":"dfork","taskReferenceName":"dfork","type":"FORK_JOIN_DYNAMIC","dynamicForkTasksParam":"tasks",
    "dynamicForkTasksInputParamName":"inputs","inputParameters":{"tasks":"${workflow.input.forkTasks}","inputs":"${workflow.input.forkInputs}"}},
  {"name":"djoin","taskReferenceName":"djoin","type":"JOIN"},
  {"name":"starter","taskReferenceName":"starter","type":"START_WORKFLOW","inputParameters":{
    "startWorkflow":{"name":"catalogue_child","input":{"from":"${workflow.workflowId}"}}}}],
 "outputParameters":{"sum":"${calc.output.result}","shape":"${shape.output.result}","route":"${route.output.selectedCase}",
   "mark":"${mark_big.output.result}","iterations":"${loop.output.iteration}","lastDouble":"${step.output.double}",
   "tenfold":"${tenfold.output.result}","eachIterations":"${each.output.iteration}","dyn":"${dyn.output}",
   "joined":"${djoin.output}","started":"${starter.output.workflowId}"}}`

const catalogueChild = `{"name":"catalogue_child","version":1,"tasks":[
  {"name":"echo","taskReferenceName":"echo","type":"INLINE","inputParameters":{"evaluatorType":"javascript",
    "expression":"'child of ' + $.from","from":"${workflow.input.from}"}}],
 "outputParameters":{"said":"${echo.output.result}"}}`

func TestTaskCatalogue(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.register(catalogueFlow, catalogueChild)
	var steps atomic.Int64
	e.work("e2e_step", 1, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		steps.Add(1)
		i := int64(task.InputData["i"].(float64))
		return workers.Output{Data: map[string]any{"double": i * 2}}, nil
	})
	e.work("e2e_dyn", 1, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		return workers.Output{Data: map[string]any{"hello": task.InputData["who"], "ref": task.ReferenceTaskName}}, nil
	})
	e.work("e2e_fork", 2, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		return workers.Output{Data: map[string]any{"got": task.InputData["n"], "ref": task.ReferenceTaskName}}, nil
	})

	id := e.start("catalogue", map[string]any{"a": 1, "b": 2, "list": []any{1, 2, 3}, "times": 3, "dynTask": "e2e_dyn",
		"forkTasks": []any{
			map[string]any{"name": "e2e_fork", "taskReferenceName": "f1"},
			map[string]any{"name": "e2e_fork", "taskReferenceName": "f2"}},
		"forkInputs": map[string]any{"f1": map[string]any{"n": 1}, "f2": map[string]any{"n": 2}}})
	wf := e.waitStatus(id, conductor.WorkflowCompleted)

	want := map[string]any{
		"sum":   float64(3),
		"shape": map[string]any{"sum": float64(3), "squares": []any{float64(1), float64(4), float64(9)}},
		"route": "big", "mark": "big:3",
		"iterations": float64(3), "lastDouble": float64(6),
		"tenfold": float64(30), "eachIterations": float64(3),
		"dyn":    map[string]any{"hello": "dynamic", "ref": "dyn"},
		"joined": map[string]any{"f1": map[string]any{"got": float64(1), "ref": "f1"}, "f2": map[string]any{"got": float64(2), "ref": "f2"}},
	}
	started, _ := wf.Output["started"].(string)
	delete(wf.Output, "started")
	if !reflect.DeepEqual(wf.Output, want) {
		t.Fatalf("output = %#v\nwant %#v", wf.Output, want)
	}
	if n := steps.Load(); n != 3 {
		t.Fatalf("the loop body ran %d times, want 3", n)
	}

	// The tasks as Conductor shows them.
	var refs []string
	for _, task := range wf.Tasks {
		refs = append(refs, task.ReferenceTaskName)
	}
	wantRefs := "calc shape route mark_big loop step__1 step__2 step__3 each tenfold__1 tenfold__2 tenfold__3 dyn dfork f1 f2 djoin starter"
	if got := strings.Join(refs, " "); got != wantRefs {
		t.Fatalf("tasks %s\nwant  %s", got, wantRefs)
	}
	loop := taskByRef(wf, "loop")
	if loop.Iteration != 3 || loop.OutputData["iteration"] != float64(3) || loop.OutputData["2"] == nil || loop.PollCount != 3 {
		t.Fatalf("loop task = %+v", loop)
	}
	if s := taskByRef(wf, "step__2"); s.Iteration != 2 || !s.LoopOverTask || s.TaskType != "e2e_step" {
		t.Fatalf("step__2 = %+v", s)
	}
	if route := taskByRef(wf, "route"); route.Status != conductor.TaskCompleted || !strings.HasPrefix(route.WorkerID, "flowvault/") {
		t.Fatalf("route = %+v", route)
	}
	if dyn := taskByRef(wf, "dyn"); dyn.TaskType != "e2e_dyn" || dyn.TaskDefName != "e2e_dyn" || !strings.Contains(string(dyn.WorkflowTask), `"e2e_dyn"`) {
		t.Fatalf("dyn = %+v", dyn)
	}
	if fork := taskByRef(wf, "dfork"); !reflect.DeepEqual(fork.OutputData["forkedTasks"], []any{"f1", "f2"}) {
		t.Fatalf("dfork output = %v", fork.OutputData)
	}

	// The workflow START_WORKFLOW started runs on its own.
	if started == "" {
		t.Fatal("no started workflow id")
	}
	child := e.waitStatus(started, conductor.WorkflowCompleted)
	if child.Output["said"] != "child of "+id || child.ParentWorkflowID != "" {
		t.Fatalf("started workflow = %+v", child)
	}
}

// A throwing script fails the workflow with the script's error; a loop
// whose body failed resumes where it stopped on retry.
func TestScriptFailureAndLoopRetry(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.register(`{"name":"throws","tasks":[{"name":"bad","taskReferenceName":"bad","type":"INLINE",
		"inputParameters":{"evaluatorType":"graaljs","expression":"(function(){ throw new Error('no way') })()"}}]}`,
		`{"name":"loop_retry","tasks":[
		  {"name":"loop","taskReferenceName":"loop","type":"DO_WHILE","loopCondition":"$.loop.iteration < 3",
		   "loopOver":[{"name":"e2e_flaky","taskReferenceName":"flaky","inputParameters":{"i":"${loop.output.iteration}"}}]}],
		 "outputParameters":{"n":"${loop.output.iteration}","last":"${flaky.output.i}"}}`)
	e.must(http.StatusNoContent, "POST", "/api/metadata/taskdefs", `[{"name":"e2e_flaky","retryCount":0}]`)

	id := e.start("throws", nil)
	wf := e.waitStatus(id, conductor.WorkflowFailed)
	if bad := taskByRef(wf, "bad"); bad.Status != conductor.TaskFailed || !strings.Contains(bad.ReasonForIncompletion, "Error: no way") ||
		!strings.Contains(fmt.Sprint(bad.OutputData["error"]), "no way") {
		t.Fatalf("bad = %+v", bad)
	}
	if !strings.Contains(wf.ReasonForIncompletion, "no way") {
		t.Fatalf("workflow reason %q", wf.ReasonForIncompletion)
	}

	var failOnce atomic.Bool
	failOnce.Store(true)
	e.work("e2e_flaky", 1, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		if task.InputData["i"] == float64(2) && failOnce.CompareAndSwap(true, false) {
			return workers.Output{}, errors.New("transient")
		}
		return workers.Output{Data: map[string]any{"i": task.InputData["i"]}}, nil
	})
	id = e.start("loop_retry", nil)
	wf = e.waitStatus(id, conductor.WorkflowFailed)
	if loop := taskByRef(wf, "loop"); loop.Status != conductor.TaskCanceled || loop.Iteration != 2 {
		t.Fatalf("loop after the failure = %+v", loop)
	}
	e.must(http.StatusNoContent, "POST", "/api/workflow/"+id+"/retry", nil)
	wf = e.waitStatus(id, conductor.WorkflowCompleted)
	if !reflect.DeepEqual(wf.Output, map[string]any{"n": float64(3), "last": float64(3)}) {
		t.Fatalf("output after retry = %v", wf.Output)
	}
	var refs []string
	for _, task := range wf.Tasks {
		refs = append(refs, task.ReferenceTaskName+":"+task.Status)
	}
	if got := strings.Join(refs, " "); got != "loop:COMPLETED flaky__1:COMPLETED flaky__2:FAILED flaky__2:COMPLETED flaky__3:COMPLETED" {
		t.Fatalf("tasks %s", got)
	}
}

// What a loop condition deletes from $.loop leaves the loop's output, as
// the system worker reports it: at a verdict that runs another iteration
// (gone) and at the last (later).
func TestLoopConditionDeletesLeaveTheOutput(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.register(`{"name":"loop_deletes","tasks":[
	  {"name":"loop","taskReferenceName":"loop","type":"DO_WHILE",
	   "loopCondition":"if ($.loop.iteration == 1) { $.loop.keep = 1; $.loop.gone = 2; $.loop.later = 3; true } else if ($.loop.iteration == 2) { delete $.loop.gone; true } else { delete $.loop.later; false }",
	   "loopOver":[{"name":"set","taskReferenceName":"set","type":"SET_VARIABLE","inputParameters":{"i":"${loop.output.iteration}"}}]}]}`)
	wf := e.waitStatus(e.start("loop_deletes", nil), conductor.WorkflowCompleted)
	out := taskByRef(wf, "loop").OutputData
	_, gone := out["gone"]
	_, later := out["later"]
	if gone || later || out["keep"] != float64(1) || out["iteration"] != float64(3) {
		t.Fatalf("loop output %v: want keep, not gone nor later", out)
	}
}

// An HTTP task with asyncComplete stays IN_PROGRESS after its call, held
// by no engine (so no lease runs the call again, on this engine or after
// the log is read back), until an update completes it.
func TestHTTPAsyncComplete(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var calls atomic.Int64
	remote := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"accepted":true}`))
	}))
	t.Cleanup(remote.Close)
	e.register(`{"name":"async_call","tasks":[{"name":"call","taskReferenceName":"call","type":"HTTP","asyncComplete":true,
	  "inputParameters":{"http_request":{"uri":"` + remote.URL + `","method":"POST","body":{}}}}],"outputParameters":{"r":"${call.output.result}"}}`)
	id := e.start("async_call", nil)
	testutil.Eventually(t, 20*time.Second, 20*time.Millisecond, func() error {
		call := taskByRef(e.workflow(id), "call")
		if call == nil || call.Status != conductor.TaskInProgress || call.OutputData["response"] == nil {
			return fmt.Errorf("the call has not answered yet: %+v", call)
		}
		if call.WorkerID != "" {
			return fmt.Errorf("the task is still held by %q", call.WorkerID)
		}
		return nil
	})
	e.must(http.StatusOK, "POST", "/api/tasks/"+id+"/call/COMPLETED", map[string]any{"result": "done"})
	if wf := e.waitStatus(id, conductor.WorkflowCompleted); wf.Output["r"] != "done" || calls.Load() != 1 {
		t.Fatalf("output %v after %d calls", wf.Output, calls.Load())
	}
}

// An HTTP task whose headers ask for gzip (as a request copied from
// Postman does) stores the answer decoded, so that redaction finds a
// secret the server echoes: stored as the compressed bytes' text, the
// body was unreadable to expressions, and the log kept the echoed secret
// gzipped, where redaction, looking for the value, never saw it.
func TestHTTPCompressedAnswerIsStoredDecoded(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const secret = "gz-api-key-5f0c2d9e7a"
	e.putSecret("gz_api_key", secret)
	remote := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if !strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
			t.Errorf("Accept-Encoding = %q", r.Header.Get("Accept-Encoding"))
		}
		w.Header().Set("Content-Encoding", "gzip")
		z := gzip.NewWriter(w)
		json.NewEncoder(z).Encode(map[string]any{"key": r.Header.Get("X-Api-Key"), "ok": true})
		z.Close()
	}))
	t.Cleanup(remote.Close)
	e.register(`{"name":"gzip_call","tasks":[{"name":"call","taskReferenceName":"call","type":"HTTP",
	  "inputParameters":{"http_request":{"uri":"` + remote.URL + `","method":"GET",
	    "headers":{"Accept-Encoding":"gzip, deflate, br","X-Api-Key":"${workflow.secrets.gz_api_key}"}}}}],
	 "outputParameters":{"ok":"${call.output.response.body.ok}"}}`)
	id := e.start("gzip_call", nil)
	wf := e.waitStatus(id, conductor.WorkflowCompleted)
	if wf.Output["ok"] != true {
		t.Errorf("output = %v, want ok true read from the decoded body", wf.Output)
	}
	if body, _ := taskByRef(wf, "call").OutputData["response"].(map[string]any)["body"].(map[string]any); body["key"] != "***" || len(body) != 2 {
		t.Errorf("body = %#v", body)
	}
	for _, r := range e.records(id) {
		for _, ev := range e.recordEvents(r) {
			u, ok := ev.(*schemas.TaskUpdated)
			if !ok {
				continue
			}
			resp, _ := u.Output["response"].(map[string]any)
			s, ok := resp["body"].(string)
			if !ok {
				continue
			}
			z, err := gzip.NewReader(strings.NewReader(s))
			if err != nil {
				continue
			}
			if plain, _ := io.ReadAll(z); bytes.Contains(plain, []byte(secret)) {
				t.Errorf("record %d holds the secret gzipped: %q", r.Seq, plain)
			}
		}
	}
}

// A JOIN whose branches never end, and a DO_WHILE whose body never does,
// are held to their task definition's timeoutSeconds on the embedded
// server, as Conductor's decider holds every pending task with a
// definition: each is TIMED_OUT with Conductor's reason, its workflow
// (TIME_OUT_WF) too, and the tasks it waited for are canceled. Before, the
// JOIN waited for ever. An optional DO_WHILE that times out cancels the
// body task a worker holds, and the workflow completes with the task after
// the loop: the worker's late report changes nothing. Before, the body ran
// on, its report scheduled the next step of the ended loop, and the
// workflow waited for them.
func TestControlTasksTimeOut(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.must(http.StatusNoContent, "POST", "/api/metadata/taskdefs",
		`[{"name":"ct_join","timeoutSeconds":2,"timeoutPolicy":"TIME_OUT_WF","responseTimeoutSeconds":1},
		  {"name":"ct_loop","timeoutSeconds":2,"timeoutPolicy":"RETRY","retryCount":2,"responseTimeoutSeconds":1}]`)
	e.register(`{"name":"ct_join_flow","tasks":[
	    {"name":"fork","taskReferenceName":"fork","type":"FORK_JOIN","forkTasks":[[{"name":"ct_p","taskReferenceName":"p"}],[{"name":"ct_q","taskReferenceName":"q"}]]},
	    {"name":"ct_join","taskReferenceName":"join","type":"JOIN","joinOn":["p","q"]}]}`,
		`{"name":"ct_loop_flow","tasks":[{"name":"ct_loop","taskReferenceName":"loop","type":"DO_WHILE",
	    "loopCondition":"$.loop['iteration'] < 3","loopOver":[{"name":"ct_body","taskReferenceName":"body"}]}]}`)
	for _, tc := range []struct {
		flow, ref, policy string
		waitedFor         []string
	}{
		{"ct_join_flow", "join", "TIME_OUT_WF", []string{"p", "q"}},
		{"ct_loop_flow", "loop", "RETRY", []string{"body__1"}},
	} {
		wf := e.waitStatus(e.start(tc.flow, nil), conductor.WorkflowTimedOut)
		held := taskByRef(wf, tc.ref)
		if held.Status != conductor.TaskTimedOut || !strings.HasPrefix(held.ReasonForIncompletion, "Task timed out after ") ||
			!strings.HasSuffix(held.ReasonForIncompletion, "Timeout configured as 2 seconds. Timeout policy configured to "+tc.policy) ||
			wf.ReasonForIncompletion != held.ReasonForIncompletion {
			t.Fatalf("%s: %s %s (%q), workflow's reason %q", tc.flow, tc.ref, held.Status, held.ReasonForIncompletion, wf.ReasonForIncompletion)
		}
		for _, ref := range tc.waitedFor {
			if task := taskByRef(wf, ref); task.Status != conductor.TaskCanceled {
				t.Fatalf("%s: %s %s, want CANCELED", tc.flow, ref, task.Status)
			}
		}
		n := 0
		for _, task := range wf.Tasks {
			if task.ReferenceTaskName == tc.ref {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("%s: %d instances of %s: a built-in task is never retried", tc.flow, n, tc.ref)
		}
	}

	e.must(http.StatusNoContent, "POST", "/api/metadata/taskdefs",
		`[{"name":"ct_optional_loop","timeoutSeconds":2,"timeoutPolicy":"RETRY","responseTimeoutSeconds":1}]`)
	e.register(`{"name":"ct_optional_loop_flow","tasks":[{"name":"ct_optional_loop","taskReferenceName":"loop","type":"DO_WHILE","optional":true,
	    "loopCondition":"$.loop['iteration'] < 3","loopOver":[{"name":"ct_step1","taskReferenceName":"step1"},{"name":"ct_step2","taskReferenceName":"step2"}]},
	    {"name":"ct_after","taskReferenceName":"after"}]}`)
	id := e.start("ct_optional_loop_flow", nil)
	held := e.takeOne("ct_step1")
	after := e.takeOne("ct_after") // scheduled once the loop timed out
	// The late report: refused or ignored, it schedules nothing.
	e.do("POST", "/api/tasks", map[string]any{"taskId": held.TaskID, "workflowInstanceId": id, "status": "COMPLETED"})
	e.completeTask(after, nil)
	wf := e.waitStatus(id, conductor.WorkflowCompleted)
	if loop := taskByRef(wf, "loop"); loop.Status != conductor.TaskCompletedWithErrors {
		t.Fatalf("the optional loop %s (%q)", loop.Status, loop.ReasonForIncompletion)
	}
	if step := taskByRef(wf, "step1__1"); step.Status != conductor.TaskCanceled || step.ReasonForIncompletion != "DO_WHILE loop timed out" {
		t.Fatalf("the body task %s (%q), want CANCELED", step.Status, step.ReasonForIncompletion)
	}
	if step := taskByRef(wf, "step2__1"); step != nil {
		t.Fatalf("the ended loop's next step was scheduled: %s", step.Status)
	}
}
