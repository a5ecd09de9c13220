package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/workers"
)

// decode sends a request that must answer want and decodes its JSON body.
func (e *env) decode(want int, method, path string, body, out any) {
	e.t.Helper()
	raw := e.must(want, method, path, body)
	// Decode into a zero value: json.Unmarshal merges into existing maps.
	v := reflect.ValueOf(out).Elem()
	v.Set(reflect.Zero(v.Type()))
	if err := json.Unmarshal([]byte(raw), out); err != nil {
		e.t.Fatalf("%s %s: %v in %s", method, path, err, raw)
	}
}

// fails sends a request that must fail with status and Conductor's JSON
// error body.
func (e *env) fails(status int, method, path string, body any) conductor.ErrorResponse {
	e.t.Helper()
	var er conductor.ErrorResponse
	e.decode(status, method, path, body, &er)
	if er.Status != status || er.Message == "" {
		e.t.Fatalf("%s %s: error body %+v", method, path, er)
	}
	return er
}

const waitFlow = `{"name":"wait_flow","version":1,"tasks":[
 {"name":"setv","taskReferenceName":"setv","type":"SET_VARIABLE","inputParameters":{"stage":"waiting"}},
 {"name":"gate","taskReferenceName":"gate","type":"WAIT"},
 {"name":"after","taskReferenceName":"after","type":"SET_VARIABLE","inputParameters":{"stage":"done"}}],
 "outputParameters":{"stage":"${workflow.variables.stage}"}}`

const twoSimple = `{"name":"two_simple","version":1,"tasks":[
 {"name":"first","taskReferenceName":"first_ref","inputParameters":{"x":"${workflow.input.x}"}},
 {"name":"second","taskReferenceName":"second_ref","inputParameters":{"y":"${first_ref.output.y}"}}],
 "outputParameters":{"y":"${first_ref.output.y}","z":"${second_ref.output.z}"}}`

// Synchronous execution returns as soon as the workflow is terminal, waits
// in a WAIT task, or has finished the task it was asked to wait for.
func TestExecuteSync(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.register(waitFlow, twoSimple, `{"name":"child_wait","version":1,"tasks":[
	  {"name":"first","taskReferenceName":"child_first","inputParameters":{"x":"${workflow.input.x}"}},
	  {"name":"gate","taskReferenceName":"child_gate","type":"WAIT"}]}`,
		`{"name":"parent_flow","version":1,"tasks":[{"name":"sub","taskReferenceName":"sub_ref","type":"SUB_WORKFLOW",
	  "subWorkflowParam":{"name":"child_wait"},"inputParameters":{"x":"${workflow.input.x}"}}]}`)
	e.work("first", 2, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		return workers.Output{Data: map[string]any{"y": fmt.Sprint(task.InputData["x"], "!")}}, nil
	})

	// A WAIT task blocks: the answer comes at once, RUNNING.
	var run conductor.WorkflowRun
	e.decode(http.StatusOK, "POST", "/api/workflow/execute/wait_flow/1?requestId=req-1&waitUntilTaskRef=", map[string]any{"input": map[string]any{"a": 1}, "correlationId": "c-exec"}, &run)
	if run.ResponseType != "TARGET_WORKFLOW" || run.RequestID != "req-1" || run.Status != "RUNNING" || run.TargetWorkflowStatus != "RUNNING" ||
		run.WorkflowID == "" || run.TargetWorkflowID != run.WorkflowID || run.CorrelationID != "c-exec" || run.Input["a"] != float64(1) ||
		run.Variables["stage"] != "waiting" || len(run.Tasks) != 2 || run.Tasks[1].Status != "IN_PROGRESS" || run.CreateTime == 0 {
		t.Fatalf("run = %+v", run)
	}
	// The task strategies describe the blocking task.
	var blocking conductor.WorkflowRun
	e.decode(http.StatusOK, "POST", "/api/workflow/execute/wait_flow/1?returnStrategy=BLOCKING_TASK&consistency=SYNCHRONOUS", conductor.StartWorkflowRequest{}, &blocking)
	if blocking.ResponseType != "BLOCKING_TASK" || blocking.ReferenceTaskName != "gate" || blocking.TaskType != "WAIT" || blocking.TaskID == "" || blocking.Status != "IN_PROGRESS" {
		t.Fatalf("blocking task run = %+v", blocking)
	}
	// BLOCKING_TASK_LIST (the Java SDK's) answers it in tasks.
	var list conductor.WorkflowRun
	e.decode(http.StatusOK, "POST", "/api/workflow/execute/wait_flow/1?returnStrategy=BLOCKING_TASK_LIST", conductor.StartWorkflowRequest{}, &list)
	if list.ResponseType != "BLOCKING_TASK_LIST" || list.TaskID != "" || len(list.Tasks) != 1 || list.Tasks[0].ReferenceTaskName != "gate" ||
		list.Tasks[0].TaskType != "WAIT" || list.Tasks[0].Status != "IN_PROGRESS" || list.Tasks[0].WorkflowInstanceID != list.WorkflowID {
		t.Fatalf("blocking task list run = %+v", list)
	}
	// A wait that runs out with no task blocking answers the strategy
	// asked for and no task, not TARGET_WORKFLOW: the SDKs' getBlockingTask
	// refuses that answer.
	for _, strategy := range []string{"BLOCKING_TASK", "BLOCKING_TASK_INPUT", "BLOCKING_TASK_LIST"} {
		var none conductor.WorkflowRun
		e.decode(http.StatusOK, "POST", "/api/workflow/execute/two_simple/1?waitForSeconds=1&returnStrategy="+strategy, map[string]any{"input": map[string]any{"x": "n"}}, &none)
		if none.ResponseType != strategy || !none.SignalTimeout || none.TaskID != "" || none.RetryCount != nil || len(none.Tasks) != 0 ||
			none.WorkflowID == "" || none.WorkflowID != none.TargetWorkflowID || none.Status != "RUNNING" || none.Input["x"] != "n" {
			t.Fatalf("%s ran out: %+v", strategy, none)
		}
	}

	// waitUntilTaskRef: return when first_ref is done, not when the wait
	// runs out (the second task has no worker: the run stays RUNNING
	// either way, so only the time can tell).
	began := time.Now()
	e.decode(http.StatusOK, "POST", "/api/workflow/execute/two_simple/1?waitUntilTaskRef=first_ref&waitForSeconds=20", map[string]any{"input": map[string]any{"x": "a"}}, &run)
	if d := time.Since(began); d >= 20*time.Second {
		t.Fatalf("waitUntilTaskRef answered when the wait ran out, after %s", d)
	}
	if run.Status != "RUNNING" || taskNamed(run.Tasks, "first_ref") == nil || taskNamed(run.Tasks, "first_ref").Status != "COMPLETED" {
		t.Fatalf("run = %+v", run)
	}
	// ... also when the task is in a sub-workflow.
	began = time.Now()
	e.decode(http.StatusOK, "POST", "/api/workflow/execute/parent_flow/1?waitUntilTaskRef=nope,child_first&waitForSeconds=20&returnStrategy=BLOCKING_WORKFLOW",
		map[string]any{"input": map[string]any{"x": "b"}}, &run)
	if d := time.Since(began); d > 5*time.Second || run.ResponseType != "BLOCKING_WORKFLOW" || run.WorkflowID == run.TargetWorkflowID {
		t.Fatalf("after %s: run = %+v", d, run)
	}
	if first := taskNamed(run.Tasks, "child_first"); first == nil || first.Status != "COMPLETED" {
		t.Fatalf("child tasks %+v", run.Tasks)
	}

	// waitForSeconds bounds the wait.
	began = time.Now()
	e.decode(http.StatusOK, "POST", "/api/workflow/execute/two_simple/1?waitForSeconds=1&waitUntilTaskRef=second_ref", map[string]any{}, &run)
	if d := time.Since(began); d < time.Second || d > 5*time.Second || run.Status != "RUNNING" {
		t.Fatalf("after %s: %s", d, run.Status)
	}

	// Completion is noticed without polling delays.
	e.work("second", 1, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		return workers.Output{Data: map[string]any{"z": 26}}, nil
	})
	began = time.Now()
	e.decode(http.StatusOK, "POST", "/api/workflow/execute/two_simple/1", map[string]any{"input": map[string]any{"x": "c"}}, &run)
	if d := time.Since(began); d > 5*time.Second || run.Status != "COMPLETED" || !reflect.DeepEqual(run.Output, map[string]any{"y": "c!", "z": float64(26)}) {
		t.Fatalf("after %s: %+v", d, run)
	}

	// The Orkes by-name form answers with the output.
	var out map[string]any
	e.decode(http.StatusOK, "POST", "/api/workflow/execute/two_simple", map[string]any{"x": "d"}, &out)
	if out["y"] != "d!" {
		t.Fatalf("output %v", out)
	}
	e.decode(http.StatusOK, "GET", "/api/workflow/execute/two_simple?version=1&x=e", nil, &out)
	if out["y"] != "e!" {
		t.Fatalf("output %v", out)
	}

	for _, c := range []struct {
		status       int
		method, path string
		body         any
	}{
		{400, "POST", "/api/workflow/execute/two_simple/one", map[string]any{}},
		{400, "POST", "/api/workflow/execute/two_simple/1?waitForSeconds=-1", map[string]any{}},
		{400, "POST", "/api/workflow/execute/two_simple/1?waitForSeconds=soon", map[string]any{}},
		{400, "POST", "/api/workflow/execute/two_simple/1?returnStrategy=EVERYTHING", map[string]any{}},
		{400, "POST", "/api/workflow/execute/two_simple/1?consistency=EVENTUAL", map[string]any{}},
		{400, "POST", "/api/workflow/execute/two_simple/1", `{"input":`},
		{400, "POST", "/api/workflow/execute/two_simple/1", `{"input":"not an object"}`},
		{400, "POST", "/api/workflow/execute/two_simple/1", map[string]any{"priority": 100}},
		{404, "POST", "/api/workflow/execute/no_such_flow/1", map[string]any{}},
		{404, "POST", "/api/workflow/execute/two_simple/9", map[string]any{}},
		{400, "POST", "/api/workflow/execute/two_simple", `[1]`},
		{400, "GET", "/api/workflow/execute/two_simple?version=x", nil},
	} {
		e.fails(c.status, c.method, c.path, c.body)
	}
}

func taskNamed(tasks []*conductor.Task, ref string) *conductor.Task {
	for _, t := range tasks {
		if t.ReferenceTaskName == ref {
			return t
		}
	}
	return nil
}

// The test endpoint simulates with mocks and stores nothing.
func TestWorkflowTestEndpoint(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// conductor-api.md §5.10: a definition registered by name only.
	e.register(`{"name":"mock_flow","version":1,"tasks":[{"name":"simple","taskReferenceName":"simple_ref","type":"SIMPLE"}],
	  "outputParameters":{"message":"${simple_ref.output.message}"}}`)
	var wf conductor.Workflow
	e.decode(http.StatusOK, "POST", "/api/workflow/test", `{"name":"mock_flow","taskRefToMockOutput":{"simple_ref":[{"status":"COMPLETED","output":{"message":"Mocked message"}}]}}`, &wf)
	if wf.Status != "COMPLETED" || !reflect.DeepEqual(wf.Output, map[string]any{"message": "Mocked message"}) {
		t.Fatalf("status %s output %#v", wf.Status, wf.Output)
	}
	e.fails(http.StatusNotFound, "GET", "/api/workflow/"+wf.WorkflowID, nil)

	// Mocks are used in order: a failure is retried with the next one,
	// after the task definition's delay on a virtual clock.
	e.must(http.StatusNoContent, "POST", "/api/metadata/taskdefs", `[{"name":"flaky_sim","retryCount":2,"retryDelaySeconds":30}]`)
	inline := `{"name":"sim_inline","tasks":[
	  {"name":"flaky_sim","taskReferenceName":"flaky","inputParameters":{"v":"${workflow.input.v}"}},
	  {"name":"route","taskReferenceName":"route","type":"SWITCH","evaluatorType":"value-param","expression":"c",
	   "inputParameters":{"c":"${flaky.output.carrier}"},
	   "decisionCases":{"ups":[{"name":"setv","taskReferenceName":"setv","type":"SET_VARIABLE","inputParameters":{"via":"ups"}}]},
	   "defaultCase":[{"name":"other","taskReferenceName":"other","type":"TERMINATE","inputParameters":{"terminationStatus":"FAILED"}}]},
	  {"name":"fork","taskReferenceName":"fork","type":"FORK_JOIN","forkTasks":[
	    [{"name":"left","taskReferenceName":"left"}],
	    [{"name":"gate","taskReferenceName":"gate","type":"WAIT"}]]},
	  {"name":"join","taskReferenceName":"join","type":"JOIN","joinOn":["left","gate"]},
	  {"name":"sub","taskReferenceName":"sub","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"mock_flow"}}],
	 "outputParameters":{"via":"${workflow.variables.via}","left":"${left.output.n}","gate":"${gate.output.opened}","child":"${sub.output.message}"}}`
	req := fmt.Sprintf(`{"name":"sim_inline","workflowDef":%s,"input":{"v":1},
	  "taskRefToMockOutput":{"flaky":[{"status":"FAILED","output":{}},{"status":"COMPLETED","output":{"carrier":"ups"},"executionTime":5}],
	    "gate":[{"status":"COMPLETED","output":{"opened":true}}]},
	  "subWorkflowTestRequest":{"sub":{"name":"mock_flow","taskRefToMockOutput":{"simple_ref":[{"status":"COMPLETED","output":{"message":"from child"}}]}}}}`, inline)
	e.decode(http.StatusOK, "POST", "/api/workflow/test", req, &wf)
	want := map[string]any{"via": "ups", "left": nil, "gate": true, "child": "from child"}
	if wf.Status != "COMPLETED" || !reflect.DeepEqual(wf.Output, want) {
		t.Fatalf("status %s (%s) output %#v tasks %v", wf.Status, wf.ReasonForIncompletion, wf.Output, refsOf(wf.Tasks))
	}
	if f := wf.Tasks[0]; f.Status != "FAILED" || wf.Tasks[1].RetryCount != 1 || wf.Tasks[1].StartTime-f.EndTime < 30000 {
		t.Fatalf("retry: %+v then %+v", f, wf.Tasks[1])
	}

	// Without mocks, tasks complete with empty output.
	e.decode(http.StatusOK, "POST", "/api/workflow/test", `{"name":"mock_flow","version":1}`, &wf)
	if wf.Status != "COMPLETED" || len(wf.Tasks) != 1 || wf.Tasks[0].Status != "COMPLETED" {
		t.Fatalf("unmocked: %s %v", wf.Status, refsOf(wf.Tasks))
	}
	// Operators run for real, as in Conductor's test: a script SWITCH
	// picks its case, a loop runs until its condition says so, an INLINE
	// computes; a mock, when given, still stands in for one.
	scripts := `{"name":"sim_scripts","tasks":[
	  {"name":"pick","taskReferenceName":"pick","type":"SWITCH","evaluatorType":"javascript","expression":"$.v > 10 ? 'big' : 'small'",
	   "inputParameters":{"v":"${workflow.input.v}"},
	   "decisionCases":{"big":[{"name":"setv","taskReferenceName":"setv","type":"SET_VARIABLE","inputParameters":{"size":"big"}}]},
	   "defaultCase":[{"name":"setd","taskReferenceName":"setd","type":"SET_VARIABLE","inputParameters":{"size":"default"}}]},
	  {"name":"loop","taskReferenceName":"loop","type":"DO_WHILE","loopCondition":"$.loop.iteration < $.max",
	   "inputParameters":{"max":"${workflow.input.max}"},
	   "loopOver":[{"name":"double","taskReferenceName":"double","type":"INLINE",
	     "inputParameters":{"evaluatorType":"javascript","expression":"$.i * 2","i":"${loop.output.iteration}"}}]},
	  {"name":"mocked","taskReferenceName":"mocked","type":"INLINE","inputParameters":{"evaluatorType":"javascript","expression":"1"}}],
	 "outputParameters":{"size":"${workflow.variables.size}","iterations":"${loop.output.iteration}","last":"${double.output.result}",
	   "mocked":"${mocked.output.result}"}}`
	e.decode(http.StatusOK, "POST", "/api/workflow/test", fmt.Sprintf(`{"name":"sim_scripts","workflowDef":%s,"input":{"v":20,"max":3},
	  "taskRefToMockOutput":{"mocked":[{"status":"COMPLETED","output":{"result":"from the mock"}}]}}`, scripts), &wf)
	want = map[string]any{"size": "big", "iterations": 3.0, "last": 6.0, "mocked": "from the mock"}
	if wf.Status != "COMPLETED" || !reflect.DeepEqual(wf.Output, want) {
		t.Fatalf("scripts: status %s (%s) output %#v tasks %v", wf.Status, wf.ReasonForIncompletion, wf.Output, refsOf(wf.Tasks))
	}

	// A terminal failure mock fails the workflow.
	e.decode(http.StatusOK, "POST", "/api/workflow/test", `{"name":"mock_flow","taskRefToMockOutput":{"simple_ref":[{"status":"FAILED_WITH_TERMINAL_ERROR","output":{"e":1}}]}}`, &wf)
	if wf.Status != "FAILED" || wf.Tasks[0].Status != "FAILED_WITH_TERMINAL_ERROR" {
		t.Fatalf("terminal failure: %s %v", wf.Status, refsOf(wf.Tasks))
	}

	for _, c := range []struct {
		status int
		body   string
	}{
		{400, `{"name":`},
		{400, `[]`},
		{400, ``},
		{400, `{}`},
		{400, `{"name":"mock_flow","taskRefToMockOutput":{"simple_ref":{"status":"COMPLETED"}}}`},
		{400, `{"name":"mock_flow","taskRefToMockOutput":{"simple_ref":[{"status":"SKIPPED"}]}}`},
		{400, `{"name":"bad","workflowDef":{"name":"bad","tasks":[{"name":"x","taskReferenceName":"x","type":"NO_SUCH_TYPE"}]}}`},
		{404, `{"name":"no_such_flow"}`},
		{404, `{"name":"mock_flow","version":7}`},
	} {
		e.fails(c.status, "POST", "/api/workflow/test", c.body)
	}
}

func refsOf(tasks []*conductor.Task) []string {
	var out []string
	for _, t := range tasks {
		out = append(out, t.ReferenceTaskName+":"+t.Status)
	}
	return out
}

const threeGated = `{"name":"three_gated","version":1,"tasks":[
 {"name":"g1","taskReferenceName":"g1","type":"WAIT"},
 {"name":"mid","taskReferenceName":"mid"},
 {"name":"last","taskReferenceName":"last","type":"SET_VARIABLE","inputParameters":{"seen":"${mid.output.o}"}}],
 "outputParameters":{"seen":"${workflow.variables.seen}"}}`

// Skipping a task that is not scheduled yet records it SKIPPED at once;
// the workflow passes over it when it gets there.
func TestSkipTask(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.register(threeGated)
	id := e.start("three_gated", nil)
	e.must(http.StatusNoContent, "PUT", "/api/workflow/"+id+"/skiptask/mid", map[string]any{"taskInput": map[string]any{"i": 1}, "taskOutput": map[string]any{"o": "skipped!"}})
	wf := e.workflow(id)
	mid := taskByRef(wf, "mid")
	if mid == nil || mid.Status != "SKIPPED" || mid.OutputData["o"] != "skipped!" || mid.InputData["i"] != float64(1) || taskByRef(wf, "last") != nil {
		t.Fatalf("tasks %v", refsOf(wf.Tasks))
	}
	// Conductor OSS binds the request from the query.
	id2 := e.start("three_gated", nil)
	e.must(http.StatusNoContent, "PUT", "/api/workflow/"+id2+"/skiptask/mid?taskOutput=%7B%22o%22%3A%22q%22%7D", nil)
	if o := taskByRef(e.workflow(id2), "mid").OutputData["o"]; o != "q" {
		t.Fatalf("query-bound output %v", o)
	}

	e.fails(http.StatusConflict, "PUT", "/api/workflow/"+id+"/skiptask/g1", nil)  // already scheduled
	e.fails(http.StatusConflict, "PUT", "/api/workflow/"+id+"/skiptask/mid", nil) // already skipped
	e.fails(http.StatusBadRequest, "PUT", "/api/workflow/"+id+"/skiptask/nope", nil)
	e.fails(http.StatusBadRequest, "PUT", "/api/workflow/"+id+"/skiptask/last", `{"taskOutput":`)
	e.fails(http.StatusBadRequest, "PUT", "/api/workflow/"+id+"/skiptask/last", `{"taskOutput":[1]}`)
	e.fails(http.StatusBadRequest, "PUT", "/api/workflow/"+id+"/skiptask/last?taskInput=notjson", nil)
	e.fails(http.StatusNotFound, "PUT", "/api/workflow/no-such-id/skiptask/mid", nil)

	// Only a RUNNING workflow's tasks can be skipped.
	e.must(http.StatusNoContent, "DELETE", "/api/workflow/"+id2+"?reason=done", nil)
	e.fails(http.StatusConflict, "PUT", "/api/workflow/"+id2+"/skiptask/last", nil)

	// The skipped task is passed over once the WAIT before it ends.
	e.register(`{"name":"nap_skip","version":1,"tasks":[
	  {"name":"nap","taskReferenceName":"nap","type":"WAIT","inputParameters":{"duration":"1s"}},
	  {"name":"mid","taskReferenceName":"mid"},
	  {"name":"last","taskReferenceName":"last","type":"SET_VARIABLE","inputParameters":{"seen":"${mid.output.o}"}}],
	  "outputParameters":{"seen":"${workflow.variables.seen}"}}`)
	id3 := e.start("nap_skip", nil)
	e.must(http.StatusNoContent, "PUT", "/api/workflow/"+id3+"/skiptask/mid", map[string]any{"taskOutput": map[string]any{"o": "passed"}})
	wf = e.waitStatus(id3, "COMPLETED")
	if wf.Output["seen"] != "passed" || len(wf.Tasks) != 3 {
		t.Fatalf("output %v tasks %v", wf.Output, refsOf(wf.Tasks))
	}
}

// Remove with and without archive, and terminate-remove.
func TestRemoveWorkflow(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.register(waitFlow)
	start := func(cid string) string {
		return e.must(http.StatusOK, "POST", "/api/workflow", conductor.StartWorkflowRequest{Name: "wait_flow", CorrelationID: cid})
	}
	running := start("rm-c")
	e.fails(http.StatusBadRequest, "DELETE", "/api/workflow/"+running+"/remove", nil) // archive needs a terminal workflow
	e.fails(http.StatusBadRequest, "DELETE", "/api/workflow/"+running+"/remove?archiveWorkflow=maybe", nil)
	e.must(http.StatusNoContent, "DELETE", "/api/workflow/"+running+"?reason=stop", nil)

	// Archived: still readable and searchable, but gone from correlation
	// lookups, and no operation applies any more.
	e.must(http.StatusNoContent, "DELETE", "/api/workflow/"+running+"/remove?archiveWorkflow=true", nil)
	if wf := e.workflow(running); wf.Status != "TERMINATED" || wf.ReasonForIncompletion != "stop" {
		t.Fatalf("archived: %s %q", wf.Status, wf.ReasonForIncompletion)
	}
	if n := e.searchCount("workflowId = " + running); n != 1 {
		t.Fatalf("archived workflow found %d times", n)
	}
	var corr []conductor.Workflow
	e.decode(http.StatusOK, "GET", "/api/workflow/wait_flow/correlated/rm-c?includeClosed=true", nil, &corr)
	if len(corr) != 0 {
		t.Fatalf("archived workflow in correlation lookup: %d", len(corr))
	}
	e.fails(http.StatusNotFound, "POST", "/api/workflow/"+running+"/restart", nil)
	e.fails(http.StatusNotFound, "DELETE", "/api/workflow/"+running+"/remove", nil)

	// Without archive: gone everywhere.
	hard := start("rm-c")
	e.must(http.StatusNoContent, "DELETE", "/api/workflow/"+hard+"/remove?archiveWorkflow=false", nil) // running is fine
	e.fails(http.StatusNotFound, "GET", "/api/workflow/"+hard, nil)
	e.fails(http.StatusNotFound, "GET", "/api/workflow/"+hard+"/status", nil)
	if n := e.searchCount("workflowId = " + hard); n != 0 {
		t.Fatalf("removed workflow found %d times", n)
	}
	if n := e.searchCount(`correlationId = "rm-c"`); n != 1 {
		t.Fatalf("correlation rm-c: %d hits, want the archived one", n)
	}

	// terminate-remove ends a running workflow and archives it.
	tr := start("rm-d")
	e.must(http.StatusNoContent, "DELETE", "/api/workflow/"+tr+"/terminate-remove?reason=cleanup", nil)
	if wf := e.workflow(tr); wf.Status != "TERMINATED" || wf.ReasonForIncompletion != "cleanup" {
		t.Fatalf("terminate-remove: %s %q", wf.Status, wf.ReasonForIncompletion)
	}
	tr2 := start("rm-d")
	e.must(http.StatusNoContent, "DELETE", "/api/workflow/"+tr2+"/terminate-remove?archiveWorkflow=false", nil)
	e.fails(http.StatusNotFound, "GET", "/api/workflow/"+tr2, nil)
	e.fails(http.StatusNotFound, "DELETE", "/api/workflow/no-such-id/remove", nil)
	e.fails(http.StatusNotFound, "DELETE", "/api/workflow/no-such-id/terminate-remove", nil)
}

// searchCount returns totalHits of a workflow search.
func (e *env) searchCount(query string) int64 {
	e.t.Helper()
	var res conductor.SearchResult[conductor.WorkflowSummary]
	e.decode(http.StatusOK, "GET", "/api/workflow/search?query="+urlEscape(query), nil, &res)
	return res.TotalHits
}

func urlEscape(s string) string {
	r := strings.NewReplacer(" ", "%20", `"`, "%22", "=", "%3D", "(", "%28", ")", "%29", ",", "%2C", ">", "%3E", "<", "%3C", "*", "%2A", ":", "%3A")
	return r.Replace(s)
}

func TestVariablesDecideTasks(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.register(waitFlow)
	id := e.start("wait_flow", nil)
	var wf conductor.Workflow
	e.decode(http.StatusOK, "POST", "/api/workflow/"+id+"/variables", map[string]any{"extra": 7, "stage": "updated"}, &wf)
	if wf.WorkflowID != id || wf.Variables["extra"] != float64(7) || wf.Variables["stage"] != "updated" || len(wf.Tasks) != 2 {
		t.Fatalf("variables %v tasks %d", wf.Variables, len(wf.Tasks))
	}
	e.fails(http.StatusBadRequest, "POST", "/api/workflow/"+id+"/variables", `{"a":`)
	e.fails(http.StatusBadRequest, "POST", "/api/workflow/"+id+"/variables", `[1,2]`)
	e.fails(http.StatusBadRequest, "POST", "/api/workflow/"+id+"/variables", `null`)
	e.fails(http.StatusBadRequest, "POST", "/api/workflow/"+id+"/variables", ``)
	e.fails(http.StatusNotFound, "POST", "/api/workflow/no-such-id/variables", map[string]any{"a": 1})

	// Task list with paging and a status filter.
	var page struct {
		TotalHits int64              `json:"totalHits"`
		Results   []*conductor.Task  `json:"results"`
		Summary   map[string]float64 `json:"summary"`
	}
	e.decode(http.StatusOK, "GET", "/api/workflow/"+id+"/tasks?start=1&count=5", nil, &page)
	if page.TotalHits != 2 || len(page.Results) != 1 || page.Results[0].ReferenceTaskName != "gate" || page.Summary["IN_PROGRESS"] != 1 {
		t.Fatalf("tasks page %+v", page)
	}
	e.decode(http.StatusOK, "GET", "/api/workflow/"+id+"/tasks?status=COMPLETED", nil, &page)
	if page.TotalHits != 1 || page.Results[0].ReferenceTaskName != "setv" {
		t.Fatalf("completed tasks %+v", page)
	}
	e.fails(http.StatusBadRequest, "GET", "/api/workflow/"+id+"/tasks?start=-1", nil)
	e.fails(http.StatusBadRequest, "GET", "/api/workflow/"+id+"/tasks?count=x", nil)
	e.fails(http.StatusNotFound, "GET", "/api/workflow/no-such-id/tasks", nil)

	e.must(http.StatusNoContent, "PUT", "/api/workflow/decide/"+id, nil)
	e.must(http.StatusNoContent, "POST", "/api/workflow/"+id+"/resetcallbacks", nil)
	e.fails(http.StatusNotFound, "PUT", "/api/workflow/decide/no-such-id", nil)
	e.fails(http.StatusNotFound, "POST", "/api/workflow/no-such-id/resetcallbacks", nil)
	e.fails(http.StatusNotFound, "PUT", "/api/workflow/"+id+"/nonsense", nil)

	e.must(http.StatusNoContent, "DELETE", "/api/workflow/"+id, nil)
	e.fails(http.StatusConflict, "POST", "/api/workflow/"+id+"/variables", map[string]any{"a": 1})

	// Start by name and version.
	id2 := e.must(http.StatusOK, "POST", "/api/workflow/start/wait_flow/1?correlationId=sv", map[string]any{"k": "v"})
	if wf := e.workflow(id2); wf.CorrelationID != "sv" || wf.Input["k"] != "v" || wf.WorkflowVersion != 1 {
		t.Fatalf("started %+v", wf)
	}
	e.fails(http.StatusBadRequest, "POST", "/api/workflow/start/wait_flow/x", nil)
	e.fails(http.StatusNotFound, "POST", "/api/workflow/start/wait_flow/3", nil)
}

func TestBulk(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.register(waitFlow)
	a, b := e.start("wait_flow", nil), e.start("wait_flow", nil)
	var res conductor.BulkResponse
	bulk := func(method, op string, ids ...string) {
		t.Helper()
		res = conductor.BulkResponse{}
		e.decode(http.StatusOK, method, "/api/workflow/bulk/"+op, ids, &res)
	}
	bulk("PUT", "pause", a, b, "no-such-id")
	if !reflect.DeepEqual(res.BulkSuccessfulResults, []string{a, b}) || len(res.BulkErrorResults) != 1 || res.BulkErrorResults["no-such-id"] == "" {
		t.Fatalf("pause: %+v", res)
	}
	if e.workflow(a).Status != "PAUSED" {
		t.Fatal("not paused")
	}
	bulk("PUT", "resume", a, b)
	bulk("POST", "terminate?reason=bulk", a)
	if wf := e.workflow(a); wf.Status != "TERMINATED" || wf.ReasonForIncompletion != "bulk" || len(res.BulkSuccessfulResults) != 1 {
		t.Fatalf("terminate: %s %+v", wf.Status, res)
	}
	bulk("POST", "retry", a, b) // b is running: retry is refused for it
	if !reflect.DeepEqual(res.BulkSuccessfulResults, []string{a}) || res.BulkErrorResults[b] == "" {
		t.Fatalf("retry: %+v", res)
	}
	bulk("POST", "terminate", a, b)
	bulk("POST", "restart?useLatestDefinitions=true", a)
	if e.workflow(a).Status != "RUNNING" || len(res.BulkSuccessfulResults) != 1 {
		t.Fatalf("restart: %+v", res)
	}
	bulk("POST", "delete", a, b)
	if len(res.BulkSuccessfulResults) != 2 {
		t.Fatalf("delete: %+v", res)
	}
	e.fails(http.StatusNotFound, "GET", "/api/workflow/"+a, nil)

	many := make([]string, 1001)
	for i := range many {
		many[i] = fmt.Sprint(i)
	}
	for _, body := range []any{`[`, `{"ids":[]}`, `[{},[]]`, many, ``} {
		e.fails(http.StatusBadRequest, "PUT", "/api/workflow/bulk/pause", body)
		e.fails(http.StatusBadRequest, "POST", "/api/workflow/bulk/terminate", body)
	}
	e.fails(http.StatusBadRequest, "POST", "/api/workflow/bulk/restart?useLatestDefinitions=perhaps", []string{a})
	// No ids at all is refused, as Conductor's @NotEmpty list is.
	e.fails(http.StatusBadRequest, "POST", "/api/workflow/bulk/retry", []string{})
}

func TestRunningAndCorrelated(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.register(waitFlow, strings.Replace(waitFlow, `"version":1`, `"version":2`, 1))
	start := func(version int, cid string) string {
		return e.must(http.StatusOK, "POST", "/api/workflow", conductor.StartWorkflowRequest{Name: "wait_flow", Version: &version, CorrelationID: cid})
	}
	r1, r2, v2 := start(1, "c1"), start(1, "c2"), start(2, "c1")
	done := start(1, "c1")
	e.must(http.StatusNoContent, "DELETE", "/api/workflow/"+done, nil)

	var ids []string
	e.decode(http.StatusOK, "GET", "/api/workflow/running/wait_flow", nil, &ids)
	if !sameSet(ids, []string{r1, r2}) {
		t.Fatalf("running v1 = %v, want %v", ids, []string{r1, r2})
	}
	e.decode(http.StatusOK, "GET", "/api/workflow/running/wait_flow?version=2", nil, &ids)
	if !reflect.DeepEqual(ids, []string{v2}) {
		t.Fatalf("running v2 = %v", ids)
	}
	e.decode(http.StatusOK, "GET", fmt.Sprintf("/api/workflow/running/wait_flow?startTime=%d&endTime=%d", time.Now().Add(time.Hour).UnixMilli(), time.Now().Add(2*time.Hour).UnixMilli()), nil, &ids)
	if len(ids) != 0 {
		t.Fatalf("running in the future = %v", ids)
	}
	e.decode(http.StatusOK, "GET", "/api/workflow/running/no_such_flow", nil, &ids)
	if ids == nil || len(ids) != 0 {
		t.Fatalf("running of unknown name = %v", ids)
	}
	e.fails(http.StatusBadRequest, "GET", "/api/workflow/running/wait_flow?version=x", nil)
	e.fails(http.StatusBadRequest, "GET", "/api/workflow/running/wait_flow?startTime=yesterday", nil)

	var list []conductor.Workflow
	e.decode(http.StatusOK, "GET", "/api/workflow/wait_flow/correlated/c1", nil, &list)
	if len(list) != 2 || !sameSet([]string{list[0].WorkflowID, list[1].WorkflowID}, []string{r1, v2}) || len(list[0].Tasks) != 0 {
		t.Fatalf("correlated c1 (open) = %d", len(list))
	}
	e.decode(http.StatusOK, "GET", "/api/workflow/wait_flow/correlated/c1?includeClosed=true&includeTasks=true", nil, &list)
	if len(list) != 3 || len(list[0].Tasks) == 0 {
		t.Fatalf("correlated c1 (all) = %d", len(list))
	}
	var byCID map[string][]conductor.Workflow
	e.decode(http.StatusOK, "POST", "/api/workflow/wait_flow/correlated?includeClosed=false", []string{"c1", "c2", "c3"}, &byCID)
	if len(byCID["c1"]) != 2 || len(byCID["c2"]) != 1 || byCID["c3"] == nil || len(byCID["c3"]) != 0 {
		t.Fatalf("correlated by name = %v", byCID)
	}
	e.decode(http.StatusOK, "POST", "/api/workflow/correlated/batch?includeClosed=true", map[string]any{"correlationIds": []string{"c1", "c1", "c1"}, "workflowNames": []string{"wait_flow", "other"}}, &byCID)
	if len(byCID) != 1 || len(byCID["c1"]) != 3 {
		t.Fatalf("correlated batch, an id listed thrice = %v", byCID)
	}
	e.decode(http.StatusOK, "POST", "/api/workflow/correlated/batch", map[string]any{"correlationIds": []string{"c2"}, "workflowNames": []string{"other"}}, &byCID)
	if len(byCID["c2"]) != 0 {
		t.Fatalf("correlated batch of another name = %d", len(byCID["c2"]))
	}
	for _, c := range []struct {
		method, path string
		body         any
	}{
		{"POST", "/api/workflow/correlated/batch", `{"workflowNames":["wait_flow"]}`},
		{"POST", "/api/workflow/correlated/batch", `{"correlationIds":"c1"}`},
		{"POST", "/api/workflow/correlated/batch", `{`},
		{"POST", "/api/workflow/wait_flow/correlated", `"c1"`},
		{"POST", "/api/workflow/wait_flow/correlated", ``},
		{"GET", "/api/workflow/wait_flow/correlated/c1?includeClosed=sometimes", nil},
		{"GET", "/api/workflow/wait_flow/correlated/c1?includeTasks=1x", nil},
	} {
		e.fails(http.StatusBadRequest, c.method, c.path, c.body)
	}
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	seen := map[string]int{}
	for _, x := range a {
		seen[x]++
	}
	for _, x := range b {
		if seen[x] == 0 {
			return false
		}
		seen[x]--
	}
	return true
}

// A graceful shutdown ends synchronous executions with the state they
// have instead of waiting out waitForSeconds.
func TestExecuteEndsOnShutdown(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.register(twoSimple)
	type result struct {
		status int
		body   string
	}
	done := make(chan result, 1)
	go func() {
		res, err := http.Post(e.base+"/api/workflow/execute/two_simple/1?waitForSeconds=120", "application/json", strings.NewReader(`{}`))
		if err != nil {
			done <- result{0, err.Error()}
			return
		}
		defer res.Body.Close()
		var run conductor.WorkflowRun
		_ = json.NewDecoder(res.Body).Decode(&run)
		done <- result{res.StatusCode, run.Status}
	}()
	testutil.Eventually(t, 10*time.Second, 20*time.Millisecond, func() error {
		if e.searchCount("workflowType = two_simple") == 0 {
			return fmt.Errorf("not started yet")
		}
		return nil
	})
	// A stop that waited for the execution would run out of its context
	// and fail.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.node.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if r := <-done; r.status != http.StatusOK || r.body != "RUNNING" {
		t.Fatalf("execute answered %d %s", r.status, r.body)
	}
}

// The synchronous answers and /status mask as GET /api/workflow/{id}
// does: an input that went into _secrets, and the _secrets blocks of
// output and variables, read "***".
func TestSynchronousViewsMask(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const value = "sync-view-value-555"
	e.register(`{"name":"masked_sync","version":1,"tasks":[
	  {"name":"keep","taskReferenceName":"keep","type":"SET_VARIABLE","inputParameters":{"_secrets":{"k":"${workflow.input.pw}"}}}],
	  "outputParameters":{"_secrets":{"k":"${workflow.input.pw}"},"plain":"ok"}}`)
	var run conductor.WorkflowRun
	body := e.must(http.StatusOK, "POST", "/api/workflow/execute/masked_sync/1", map[string]any{"input": map[string]any{"pw": value}})
	if err := json.Unmarshal([]byte(body), &run); err != nil {
		t.Fatal(err)
	}
	if run.Status != conductor.WorkflowCompleted || run.Input["pw"] != "***" || run.Output["_secrets"] != "***" ||
		run.Output["plain"] != "ok" || run.Variables["_secrets"] != "***" {
		t.Fatalf("run = %s", body)
	}
	for _, got := range []string{
		body,
		e.must(http.StatusOK, "GET", "/api/workflow/"+run.WorkflowID+"/status?includeOutput=true&includeVariables=true", nil),
		e.must(http.StatusOK, "POST", "/api/workflow/execute/masked_sync", map[string]any{"pw": value}),
	} {
		if strings.Contains(got, value) || !strings.Contains(got, `"_secrets":"***"`) {
			t.Errorf("answer %s", got)
		}
	}
}

// Orkes's signal completes the task a workflow waits in (in it, or in a
// sub-workflow), with the body as its output; the synchronous form then
// waits as an execution does and answers a SignalResponse. updateState
// sets variables and reports a task by reference name, then answers a
// WorkflowRun. A HUMAN task waits for a signal as a WAIT does.
func TestSignalAndUpdateState(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.register(waitFlow, `{"name":"two_waits","version":1,"tasks":[
	  {"name":"gate1","taskReferenceName":"gate1","type":"WAIT"},{"name":"gate2","taskReferenceName":"gate2","type":"HUMAN"}],
	  "outputParameters":{"a":"${gate1.output.a}","b":"${gate2.output.b}"}}`,
		`{"name":"sig_child","version":1,"tasks":[{"name":"gate","taskReferenceName":"gate","type":"WAIT"}],"outputParameters":{"c":"${gate.output.c}"}}`,
		`{"name":"sig_parent","version":1,"tasks":[{"name":"sub","taskReferenceName":"sub","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"sig_child"}}],
		  "outputParameters":{"c":"${sub.output.c}"}}`)

	id := e.start("two_waits", nil)
	e.waitStatus(id, conductor.WorkflowRunning)
	// /status answers the output and variables asked for, empty or not.
	for query, want := range map[string][]string{"": nil, "?includeOutput=true&includeVariables=true": {`"output":{}`, `"variables":{}`}} {
		body := e.must(http.StatusOK, "GET", "/api/workflow/"+id+"/status"+query, nil)
		if strings.Contains(body, "output") != (want != nil) || want != nil && (!strings.Contains(body, want[0]) || !strings.Contains(body, want[1])) {
			t.Fatalf("status%s = %s", query, body)
		}
	}
	var run conductor.WorkflowRun
	e.decode(http.StatusOK, "POST", "/api/tasks/"+id+"/COMPLETED/signal/sync?returnStrategy=BLOCKING_TASK", map[string]any{"a": 1}, &run)
	if run.ResponseType != "BLOCKING_TASK" || run.ReferenceTaskName != "gate2" || run.TaskType != "HUMAN" || run.Status != "IN_PROGRESS" || run.TargetWorkflowID != id {
		t.Fatalf("signal answered %+v; want the next blocking task, gate2", run)
	}
	if got := e.must(http.StatusOK, "POST", "/api/tasks/"+id+"/COMPLETED/signal", map[string]any{"b": 2}); got != "" {
		t.Fatalf("async signal answered %q", got)
	}
	if wf := e.waitStatus(id, conductor.WorkflowCompleted); !reflect.DeepEqual(wf.Output, map[string]any{"a": float64(1), "b": float64(2)}) {
		t.Fatalf("output %v", wf.Output)
	}

	// Into a sub-workflow.
	parent := e.start("sig_parent", nil)
	e.waitStatus(taskByRef(e.workflow(parent), "sub").SubWorkflowID, conductor.WorkflowRunning)
	e.decode(http.StatusOK, "POST", "/api/tasks/"+parent+"/COMPLETED/signal/sync", map[string]any{"c": "deep"}, &run)
	if run.ResponseType != "TARGET_WORKFLOW" || run.WorkflowID != parent || run.Status != "COMPLETED" || run.Output["c"] != "deep" {
		t.Fatalf("signal through a sub-workflow answered %+v", run)
	}

	// Nothing to signal, a bad status, an unknown workflow.
	e.fails(http.StatusConflict, "POST", "/api/tasks/"+parent+"/COMPLETED/signal/sync", map[string]any{})
	e.fails(http.StatusBadRequest, "POST", "/api/tasks/"+parent+"/DONE/signal", map[string]any{})
	e.fails(http.StatusNotFound, "POST", "/api/tasks/no-such-workflow/COMPLETED/signal", map[string]any{})

	// updateState: variables, then a result by reference name; the answer
	// waits until the workflow completes.
	id = e.start("wait_flow", nil)
	e.waitStatus(id, conductor.WorkflowRunning)
	e.decode(http.StatusOK, "POST", "/api/workflow/"+id+"/state?requestId=req-3", map[string]any{"variables": map[string]any{"extra": "v"}}, &run)
	if run.RequestID != "req-3" || run.Status != "RUNNING" || run.Variables["extra"] != "v" {
		t.Fatalf("variables update answered %+v", run)
	}
	e.decode(http.StatusOK, "POST", "/api/workflow/"+id+"/state?requestId=req-4", map[string]any{"taskReferenceName": "gate",
		"taskResult": map[string]any{"status": "COMPLETED", "outputData": map[string]any{"o": 1}}}, &run)
	if run.Status != "COMPLETED" || run.Output["stage"] != "done" || taskNamed(run.Tasks, "gate").OutputData["o"] != float64(1) {
		t.Fatalf("state update answered %+v", run)
	}
	e.fails(http.StatusBadRequest, "POST", "/api/workflow/"+id+"/state?requestId=req-5", map[string]any{"taskReferenceName": "gate"})
	e.fails(http.StatusNotFound, "POST", "/api/workflow/"+id+"/state?requestId=req-6", map[string]any{"taskReferenceName": "nope",
		"taskResult": map[string]any{"status": "COMPLETED"}})
}

// An updateState the engine refuses, for any part of it, changes nothing:
// its variables and its result are one decision, so a result refused
// after the variables were set (a callbackAfterSeconds out of range, a
// DO_WHILE whose body runs) no longer leaves them set. One for a task or
// workflow that has ended is refused (409), as a signal is, instead of
// answering 200 for a result the engine ignored.
func TestStateUpdateRefusedChangesNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.register(`{"name":"su_gate","version":1,"tasks":[{"name":"h","taskReferenceName":"h","type":"HUMAN"},
	  {"name":"later","taskReferenceName":"later","type":"WAIT"}],"outputParameters":{"x":"${workflow.variables.x}"}}`,
		`{"name":"su_loop","version":1,"tasks":[{"name":"loop","taskReferenceName":"loop","type":"DO_WHILE","loopCondition":"false",
	  "loopOver":[{"name":"g","taskReferenceName":"g","type":"WAIT"}]}]}`)
	statuses := func(wf *conductor.Workflow) string {
		var b strings.Builder
		fmt.Fprintf(&b, "%s:", wf.Status)
		for _, t := range wf.Tasks {
			fmt.Fprintf(&b, " %s=%s", t.ReferenceTaskName, t.Status)
		}
		return b.String()
	}
	tests := []struct {
		name   string
		def    string
		setup  func(id string)
		ref    string
		result map[string]any
		want   int
	}{
		{name: "taken", def: "su_gate", ref: "h", result: map[string]any{"status": "COMPLETED"}, want: http.StatusOK},
		{name: "callbackAfterSeconds out of range", def: "su_gate", ref: "h",
			result: map[string]any{"status": "COMPLETED", "callbackAfterSeconds": -5}, want: http.StatusBadRequest},
		{name: "unknown status", def: "su_gate", ref: "h", result: map[string]any{"status": "DONE"}, want: http.StatusBadRequest},
		{name: "workerId too long", def: "su_gate", ref: "h",
			result: map[string]any{"status": "COMPLETED", "workerId": strings.Repeat("w", 257)}, want: http.StatusBadRequest},
		{name: "unknown reference", def: "su_gate", ref: "nope", result: map[string]any{"status": "COMPLETED"}, want: http.StatusNotFound},
		{name: "task ended", def: "su_gate", ref: "h", result: map[string]any{"status": "FAILED"}, want: http.StatusConflict,
			setup: func(id string) { e.must(http.StatusOK, "POST", "/api/tasks/"+id+"/COMPLETED/signal", map[string]any{}) }},
		{name: "workflow ended", def: "su_gate", ref: "h", result: map[string]any{"status": "COMPLETED"}, want: http.StatusConflict,
			setup: func(id string) { e.must(http.StatusNoContent, "DELETE", "/api/workflow/"+id+"?reason=stop", nil) }},
		{name: "DO_WHILE whose body runs", def: "su_loop", ref: "loop", result: map[string]any{"status": "COMPLETED"}, want: http.StatusConflict},
		{name: "DO_WHILE progress", def: "su_loop", ref: "loop", result: map[string]any{"status": "IN_PROGRESS"}, want: http.StatusConflict},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := e.start(tt.def, nil)
			e.waitStatus(id, conductor.WorkflowRunning)
			if tt.setup != nil {
				tt.setup(id)
			}
			before := statuses(e.workflow(id))
			status, body := e.do("POST", "/api/workflow/"+id+"/state?requestId=r1&waitForSeconds=0", map[string]any{
				"variables": map[string]any{"x": 1}, "taskReferenceName": tt.ref, "taskResult": tt.result})
			if status != tt.want {
				t.Fatalf("state update = %d %s, want %d", status, body, tt.want)
			}
			wf := e.workflow(id)
			if tt.want == http.StatusOK {
				if wf.Variables["x"] != float64(1) || taskNamed(wf.Tasks, tt.ref).Status != "COMPLETED" {
					t.Fatalf("taken: variables %v, %s", wf.Variables, statuses(wf))
				}
				return
			}
			if _, set := wf.Variables["x"]; set || statuses(wf) != before {
				t.Fatalf("refused (%d %s), the update still changed the workflow: variables %v, %s (was %s)",
					status, body, wf.Variables, statuses(wf), before)
			}
		})
	}
}

// Signals sent at once to a workflow waiting in one task: one completes
// it, the others are refused (409), never answered 200 for a result the
// engine ignored as late.
func TestConcurrentSignalsOneWins(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.register(`{"name":"one_gate","version":1,"tasks":[{"name":"gate","taskReferenceName":"gate","type":"HUMAN"}]}`)
	for round := range 20 {
		id := e.start("one_gate", nil)
		e.waitStatus(id, conductor.WorkflowRunning)
		codes := make(chan int, 3)
		for _, status := range []string{"COMPLETED", "FAILED", "COMPLETED"} {
			go func() {
				code, _ := e.do("POST", "/api/tasks/"+id+"/"+status+"/signal", map[string]any{"round": round})
				codes <- code
			}()
		}
		won := 0
		for range 3 {
			switch code := <-codes; code {
			case http.StatusOK:
				won++
			case http.StatusConflict:
			default:
				t.Fatalf("round %d: a signal answered %d", round, code)
			}
		}
		if won != 1 {
			t.Fatalf("round %d: %d signals answered 200, one task took one of them", round, won)
		}
	}
}

// A synchronous wait on a paused workflow answers at once, with the
// state the signal (or the pause) left: a paused workflow schedules
// nothing until an operator resumes it, and the wait sat out its
// waitForSeconds (up to ten minutes) for a state that could not change.
// The answer is Conductor's once its wait ran out: the target's state,
// signalTimeout set. So for a signal into a child its parent waits for,
// paused, and for an execution paused while it waits for a worker.
func TestSynchronousWaitOnAPause(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.register(waitFlow,
		`{"name":"held_child","version":1,"tasks":[{"name":"gate","taskReferenceName":"gate","type":"WAIT"},
		  {"name":"after","taskReferenceName":"after","type":"SET_VARIABLE","inputParameters":{"stage":"done"}}]}`,
		`{"name":"held_parent","version":1,"tasks":[{"name":"sub","taskReferenceName":"sub","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"held_child"}}]}`,
		`{"name":"held_work","version":1,"tasks":[{"name":"held_w","taskReferenceName":"w","type":"SIMPLE"},{"name":"gate","taskReferenceName":"gate","type":"WAIT"}]}`)
	// A wait the pause does not end runs out of this client's patience,
	// far short of waitForSeconds, instead of the test's.
	answer := func(path string, body any) (conductor.WorkflowRun, error) {
		var run conductor.WorkflowRun
		js, _ := json.Marshal(body)
		res, err := (&http.Client{Timeout: time.Minute}).Post(e.base+path, "application/json", strings.NewReader(string(js)))
		if err != nil {
			return run, fmt.Errorf("POST %s: %w: the wait did not end on the pause", path, err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		if res.StatusCode != http.StatusOK || json.Unmarshal(b, &run) != nil {
			return run, fmt.Errorf("POST %s = %d %s", path, res.StatusCode, b)
		}
		return run, nil
	}

	t.Run("signal", func(t *testing.T) {
		id := e.start("wait_flow", nil)
		e.waitStatus(id, conductor.WorkflowRunning)
		e.must(http.StatusNoContent, "PUT", "/api/workflow/"+id+"/pause", nil)
		run, err := answer("/api/tasks/"+id+"/COMPLETED/signal/sync?waitForSeconds=600&returnStrategy=BLOCKING_TASK", map[string]any{"a": 1})
		if err != nil {
			t.Fatal(err)
		}
		if run.ResponseType != "BLOCKING_TASK" || run.TaskID != "" || run.WorkflowID != id || run.Status != "PAUSED" || !run.SignalTimeout {
			t.Fatalf("signal answered %+v", run)
		}
		if gate := taskByRef(e.workflow(id), "gate"); gate.Status != "COMPLETED" || gate.OutputData["a"] != float64(1) {
			t.Fatalf("gate %s %v after the signal", gate.Status, gate.OutputData)
		}
	})
	t.Run("signal into a paused child", func(t *testing.T) {
		parent := e.start("held_parent", nil)
		child := ""
		testutil.Eventually(t, 30*time.Second, 10*time.Millisecond, func() error {
			if child = taskByRef(e.workflow(parent), "sub").SubWorkflowID; child == "" {
				return fmt.Errorf("no child yet")
			}
			if _, body := e.do("GET", "/api/workflow/"+child, nil); !strings.Contains(body, `"status":"IN_PROGRESS"`) {
				return fmt.Errorf("child not waiting yet: %s", body)
			}
			return nil
		})
		e.must(http.StatusNoContent, "PUT", "/api/workflow/"+child+"/pause", nil)
		run, err := answer("/api/tasks/"+parent+"/COMPLETED/signal/sync?waitForSeconds=600", map[string]any{"c": 1})
		if err != nil {
			t.Fatal(err)
		}
		if run.WorkflowID != parent || run.Status != "RUNNING" || !run.SignalTimeout {
			t.Fatalf("signal answered %+v", run)
		}
		if wf := e.workflow(child); wf.Status != conductor.WorkflowPaused || taskByRef(wf, "gate").Status != "COMPLETED" || len(wf.Tasks) != 1 {
			t.Fatalf("child %s with %d tasks after the signal", wf.Status, len(wf.Tasks))
		}
	})
	t.Run("execute", func(t *testing.T) {
		type result struct {
			run conductor.WorkflowRun
			err error
		}
		runs := make(chan result, 1)
		go func() {
			run, err := answer("/api/workflow/execute/held_work/1?waitForSeconds=600", map[string]any{})
			runs <- result{run, err}
		}()
		task := e.takeOne("held_w")
		e.must(http.StatusNoContent, "PUT", "/api/workflow/"+task.WorkflowInstanceID+"/pause", nil)
		r := <-runs
		if r.err != nil {
			t.Fatal(r.err)
		}
		if run := r.run; run.WorkflowID != task.WorkflowInstanceID || run.Status != "PAUSED" || !run.SignalTimeout {
			t.Fatalf("execute answered %+v", run)
		}
	})
}

// A start with an idempotency key (in the body, or for the by-name starts
// in X-Idempotency-key and X-on-conflict headers) follows its strategy on
// the second start: FAIL refuses it, RETURN_EXISTING answers the first id,
// FAIL_ON_RUNNING refuses it while the first runs.
func TestIdempotentStart(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.register(waitFlow)
	startWith := func(how, key, strategy string) (int, string) {
		if how == "body" {
			return e.do("POST", "/api/workflow", conductor.StartWorkflowRequest{Name: "wait_flow", IdempotencyKey: key, IdempotencyStrategy: strategy})
		}
		path := map[string]string{"by name": "/api/workflow/wait_flow", "by version": "/api/workflow/start/wait_flow/1"}[how]
		req, _ := http.NewRequest("POST", e.base+path, strings.NewReader(`{}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Idempotency-key", key)
		if strategy != "" {
			req.Header.Set("X-on-conflict", strategy)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, how := range []string{"body", "by name", "by version"} {
		for _, strategy := range []string{"", "FAIL", "RETURN_EXISTING", "FAIL_ON_RUNNING"} {
			t.Run(how+" "+strategy, func(t *testing.T) {
				key := "key-" + how + "-" + strategy
				code, first := startWith(how, key, strategy)
				if code != http.StatusOK {
					t.Fatalf("first start: %d %s", code, first)
				}
				code, second := startWith(how, key, strategy)
				switch strategy {
				case "RETURN_EXISTING":
					if code != http.StatusOK || second != first {
						t.Fatalf("second start: %d %s, want the first id %s", code, second, first)
					}
				default:
					if code != http.StatusConflict {
						t.Fatalf("second start: %d %s, want 409", code, second)
					}
				}
				if strategy != "FAIL_ON_RUNNING" {
					return
				}
				e.must(http.StatusNoContent, "DELETE", "/api/workflow/"+first, nil)
				e.waitStatus(first, conductor.WorkflowTerminated)
				code, third := startWith(how, key, strategy)
				if code != http.StatusOK || third == first {
					t.Fatalf("start after the first ended: %d %s", code, third)
				}
				// A later record of the first workflow (a log line) leaves
				// the key with the latest start: after it ends, the key
				// starts a fourth.
				e.must(http.StatusNoContent, "DELETE", "/api/workflow/"+third, nil)
				e.waitStatus(third, conductor.WorkflowTerminated)
				e.must(http.StatusNoContent, "POST", "/api/tasks/"+e.workflow(first).Tasks[0].TaskID+"/log", `"a late line"`)
				e.workflow(first) // read-your-writes: the log line is applied
				code, fourth := startWith(how, key, strategy)
				if code != http.StatusOK || fourth == first || fourth == third {
					t.Fatalf("start after the third ended: %d %s", code, fourth)
				}
				// Removed, the latest start leaves the key to a fifth, not
				// to the first's id again.
				e.must(http.StatusNoContent, "DELETE", "/api/workflow/"+fourth, nil)
				e.waitStatus(fourth, conductor.WorkflowTerminated)
				e.must(http.StatusNoContent, "DELETE", "/api/workflow/"+fourth+"/remove?archiveWorkflow=false", nil)
				if code, fifth := startWith(how, key, strategy); code != http.StatusOK || fifth == first || fifth == fourth {
					t.Fatalf("start after the fourth was removed: %d %s", code, fifth)
				}
			})
		}
	}
	if code, body := startWith("by name", "key-bad", "SOMETIMES"); code != http.StatusBadRequest || !strings.Contains(body, "SOMETIMES") {
		t.Fatalf("an unknown strategy: %d %s", code, body)
	}
}

// The workflow an idempotency key names is the one last started with it,
// but an older one runs with the key again once restarted: FAIL_ON_RUNNING
// refuses a start while any workflow with the key runs or is paused, and
// FAIL while one exists, also once the key's last workflow was removed.
func TestIdempotentStartSeesEveryRunningWorkflow(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	start, end, first := keyedWaitFlows(e, "order-7")
	second := e.mustStart(start("FAIL_ON_RUNNING"))
	end(second)
	e.must(http.StatusNoContent, "POST", "/api/workflow/"+first+"/restart", nil)
	e.waitStatus(first, conductor.WorkflowRunning)
	for _, tc := range []struct {
		step, strategy, want string
	}{
		{"restarted", "FAIL_ON_RUNNING", `a workflow with idempotency key \"order-7\" is RUNNING`},
		{"paused", "FAIL_ON_RUNNING", `a workflow with idempotency key \"order-7\" is PAUSED`},
		{"the key's last removed", "FAIL", `a workflow with idempotency key \"order-7\" exists`},
	} {
		switch tc.step {
		case "paused":
			e.must(http.StatusNoContent, "PUT", "/api/workflow/"+first+"/pause", nil)
			e.waitStatus(first, conductor.WorkflowPaused)
		case "the key's last removed":
			e.must(http.StatusNoContent, "DELETE", "/api/workflow/"+second+"/remove?archiveWorkflow=false", nil)
		}
		if code, body := start(tc.strategy); code != http.StatusConflict || !strings.Contains(body, tc.want) || strings.Contains(body, first) {
			t.Fatalf("%s: a %s start answered %d %s, want 409 %s (naming no workflow)", tc.step, tc.strategy, code, body, tc.want)
		}
	}
	end(first)
	if code, body := start("FAIL_ON_RUNNING"); code != http.StatusOK || body == first || body == second {
		t.Fatalf("once none runs: %d %s, want a new workflow", code, body)
	}
}

// keyedWaitFlows registers wait_flow and returns a start of it with
// idempotency key and a strategy, a terminate that waits for its end, and
// the id of a first workflow with the key, started under FAIL_ON_RUNNING
// and ended.
func keyedWaitFlows(e *env, key string) (start func(strategy string) (int, string), end func(id string), first string) {
	e.t.Helper()
	e.register(waitFlow)
	start = func(strategy string) (int, string) {
		return e.do("POST", "/api/workflow", conductor.StartWorkflowRequest{Name: "wait_flow", IdempotencyKey: key, IdempotencyStrategy: strategy})
	}
	end = func(id string) {
		e.must(http.StatusNoContent, "DELETE", "/api/workflow/"+id, nil)
		e.waitStatus(id, conductor.WorkflowTerminated)
	}
	first = e.mustStart(start("FAIL_ON_RUNNING"))
	end(first)
	return start, end, first
}

// mustStart is the id a start answered, which must be 200.
func (e *env) mustStart(code int, id string) string {
	e.t.Helper()
	if code != http.StatusOK {
		e.t.Fatalf("start answered %d %s, want 200", code, id)
	}
	return id
}

// The workflows of an idempotency key beyond its last one: a restart or
// retry of an ended one is refused while another with the key runs, as a
// FAIL_ON_RUNNING start is; RETURN_EXISTING answers the one that runs, not
// the key's last one that ended; and once the last one was removed, FAIL
// refuses a start while an older one with the key is there, ended or not,
// as Orkes's FAIL refuses while any workflow with the key exists, and
// RETURN_EXISTING answers that one.
func TestIdempotencyKeyBeyondItsLastWorkflow(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	start, end, first := keyedWaitFlows(e, "order-8")
	second := e.mustStart(start("FAIL_ON_RUNNING"))
	for _, op := range []string{"restart", "retry"} {
		code, body := e.do("POST", "/api/workflow/"+first+"/"+op, nil)
		if want := `a workflow with idempotency key \"order-8\" is RUNNING`; code != http.StatusConflict || !strings.Contains(body, want) || strings.Contains(body, second) {
			t.Fatalf("%s of the ended one while another runs with its key: %d %s, want 409 %s (naming no workflow)", op, code, body, want)
		}
	}
	if wf := e.workflow(first); wf.Status != conductor.WorkflowTerminated {
		t.Fatalf("refused, the ended one is %s", wf.Status)
	}
	end(second)
	e.must(http.StatusNoContent, "POST", "/api/workflow/"+first+"/restart", nil)
	e.waitStatus(first, conductor.WorkflowRunning)
	if code, body := start("RETURN_EXISTING"); code != http.StatusOK || body != first {
		t.Fatalf("RETURN_EXISTING with the older one running, the last ended: %d %s, want the running one %s (the last is %s)", code, body, first, second)
	}
	end(first)
	e.must(http.StatusNoContent, "DELETE", "/api/workflow/"+second+"/remove?archiveWorkflow=false", nil)
	if code, body := start("FAIL"); code != http.StatusConflict || !strings.Contains(body, `a workflow with idempotency key \"order-8\" exists`) || strings.Contains(body, first) {
		t.Fatalf("FAIL with the last removed and an older one ended: %d %s, want 409 (naming no workflow)", code, body)
	}
	if code, body := start("RETURN_EXISTING"); code != http.StatusOK || body != first {
		t.Fatalf("RETURN_EXISTING with the last removed and an older one ended: %d %s, want %s", code, body, first)
	}
	e.must(http.StatusNoContent, "DELETE", "/api/workflow/"+first+"/remove?archiveWorkflow=false", nil)
	if code, body := start("FAIL"); code != http.StatusOK || body == first || body == second {
		t.Fatalf("FAIL once none is there: %d %s, want a new workflow", code, body)
	}
}

// An upgrade moves a running workflow to another version of its
// definition: the new tasks before the one it waits in are skipped with
// the output given, and the rest runs as the new version says.
func TestUpgradeWorkflow(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.register(threeGated)
	id := e.start("three_gated", map[string]any{"old": true})
	stays := e.start("three_gated", nil)
	e.register(`{"name":"three_gated","version":2,"tasks":[
	  {"name":"pre","taskReferenceName":"pre"},
	  {"name":"g1","taskReferenceName":"g1","type":"WAIT"},
	  {"name":"last","taskReferenceName":"last","type":"SET_VARIABLE","inputParameters":{"seen":"${pre.output.o}","in":"${workflow.input.new}"}}],
	  "outputParameters":{"seen":"${workflow.variables.seen}","in":"${workflow.variables.in}"}}`)
	e.register(`{"name":"three_gated","version":3,"tasks":[{"name":"mid","taskReferenceName":"mid"}]}`)

	e.must(http.StatusOK, "POST", "/api/workflow/"+id+"/upgrade", map[string]any{"name": "three_gated", "version": 2,
		"taskOutput": map[string]any{"pre": map[string]any{"o": "given"}}, "workflowInput": map[string]any{"new": "yes"}})
	wf := e.workflow(id)
	pre := taskByRef(wf, "pre")
	if wf.WorkflowVersion != 2 || wf.Input["new"] != "yes" || wf.Input["old"] != nil || pre == nil || pre.Status != "SKIPPED" || pre.OutputData["o"] != "given" {
		t.Fatalf("upgraded: version %d input %v tasks %v", wf.WorkflowVersion, wf.Input, refsOf(wf.Tasks))
	}
	e.must(http.StatusOK, "POST", "/api/tasks/"+id+"/g1/COMPLETED", map[string]any{})
	wf = e.waitStatus(id, "COMPLETED")
	if wf.Output["seen"] != "given" || wf.Output["in"] != "yes" || taskByRef(wf, "mid") != nil {
		t.Fatalf("output %v tasks %v", wf.Output, refsOf(wf.Tasks))
	}

	for _, c := range []struct {
		status int
		id     string
		body   any
	}{
		{http.StatusBadRequest, stays, `{"name":`},
		{http.StatusBadRequest, stays, map[string]any{"version": 2}},                             // no name
		{http.StatusBadRequest, stays, map[string]any{"name": "three_gated", "version": 3}},      // g1, which it waits in, is gone
		{http.StatusBadRequest, stays, map[string]any{"name": "three_gated", "taskOutput": 1}},   // not a map of outputs
		{http.StatusNotFound, stays, map[string]any{"name": "three_gated", "version": 7}},        // no such version
		{http.StatusNotFound, "no-such-id", map[string]any{"name": "three_gated", "version": 2}}, // no such workflow
		{http.StatusConflict, id, map[string]any{"name": "three_gated", "version": 2}},           // completed
	} {
		e.fails(c.status, "POST", "/api/workflow/"+c.id+"/upgrade", c.body)
	}
	if wf := e.workflow(stays); wf.WorkflowVersion != 1 || len(wf.Tasks) != 1 {
		t.Fatalf("refused upgrades changed the workflow: version %d tasks %v", wf.WorkflowVersion, refsOf(wf.Tasks))
	}
}

// A jump moves a running workflow to a task of its top-level list: forward,
// past tasks it never runs, or back, running again what follows.
func TestJumpToTask(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.register(strings.Replace(threeGated, "three_gated", "jumpy", 1))

	fwd := e.start("jumpy", nil)
	e.must(http.StatusOK, "POST", "/api/workflow/"+fwd+"/jump/last", map[string]any{"seen": "jumped"})
	wf := e.waitStatus(fwd, "COMPLETED")
	if g1 := taskByRef(wf, "g1"); wf.Output["seen"] != "jumped" || g1.Status != "CANCELED" || g1.ReasonForIncompletion != "jumped to last" || taskByRef(wf, "mid") != nil {
		t.Fatalf("forward: output %v tasks %v", wf.Output, refsOf(wf.Tasks))
	}

	back := e.start("jumpy", nil)
	e.must(http.StatusOK, "POST", "/api/tasks/"+back+"/g1/COMPLETED", map[string]any{})
	e.must(http.StatusOK, "POST", "/api/tasks/"+back+"/mid/IN_PROGRESS", map[string]any{"o": "first"})
	e.must(http.StatusOK, "POST", "/api/workflow/"+back+"/jump/g1", nil)
	if wf := e.workflow(back); !slices.Equal(refsOf(wf.Tasks), []string{"g1:IN_PROGRESS"}) {
		t.Fatalf("back: tasks %v", refsOf(wf.Tasks))
	}
	e.must(http.StatusOK, "POST", "/api/tasks/"+back+"/g1/COMPLETED", map[string]any{})
	e.must(http.StatusOK, "POST", "/api/tasks/"+back+"/mid/COMPLETED", map[string]any{"o": "second"})
	if wf := e.waitStatus(back, "COMPLETED"); wf.Output["seen"] != "second" {
		t.Fatalf("back: output %v tasks %v", wf.Output, refsOf(wf.Tasks))
	}

	running := e.start("jumpy", nil)
	for _, c := range []struct {
		status int
		path   string
		body   any
	}{
		{http.StatusBadRequest, running + "/jump/nope", nil},
		{http.StatusBadRequest, running + "/jump/last", `{"seen":`},
		{http.StatusNotFound, "no-such-id/jump/last", nil},
		{http.StatusConflict, fwd + "/jump/g1", nil}, // completed
		{http.StatusNotFound, running + "/leap/last", nil},
	} {
		e.fails(c.status, "POST", "/api/workflow/"+c.path, c.body)
	}
	if wf := e.workflow(running); !slices.Equal(refsOf(wf.Tasks), []string{"g1:IN_PROGRESS"}) {
		t.Fatalf("refused jumps changed the workflow: %v", refsOf(wf.Tasks))
	}
}

// A workflow started without a correlationId reads ${workflow.correlationId}
// as null, as Conductor does ("c-null" inside text), and one that is not a
// child its parentWorkflowId; a child reads its parent's id and the
// correlationId it inherits.
func TestUnsetWorkflowFieldsAreNull(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const fields = `{"corr":"${workflow.correlationId}","label":"c-${workflow.correlationId}","parent":"${workflow.parentWorkflowId}"}`
	e.register(`{"name":"nv_child","version":1,"tasks":[{"name":"seen","taskReferenceName":"seen","type":"SET_VARIABLE","inputParameters":`+fields+`}],
	  "outputParameters":`+fields+`}`,
		`{"name":"nv_parent","version":1,"tasks":[{"name":"seen","taskReferenceName":"seen","type":"SET_VARIABLE","inputParameters":`+fields+`},
	  {"name":"sub","taskReferenceName":"sub","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"nv_child","version":1}}],
	  "outputParameters":`+fields+`}`)
	for _, tc := range []struct {
		name, corr string
		want       map[string]any
	}{
		{"no correlationId", "", map[string]any{"corr": nil, "label": "c-null", "parent": nil}},
		{"a correlationId", "c-9", map[string]any{"corr": "c-9", "label": "c-c-9", "parent": nil}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := map[string]any{"name": "nv_parent"}
			if tc.corr != "" {
				start["correlationId"] = tc.corr
			}
			id := e.must(http.StatusOK, "POST", "/api/workflow", start)
			wf := e.waitStatus(id, conductor.WorkflowCompleted)
			// Decoded from the API's JSON: a null must be there, as null.
			var raw struct {
				Output map[string]any `json:"output"`
				Tasks  []struct {
					ReferenceTaskName string         `json:"referenceTaskName"`
					InputData         map[string]any `json:"inputData"`
					SubWorkflowID     string         `json:"subWorkflowId"`
				} `json:"tasks"`
			}
			e.decode(http.StatusOK, "GET", "/api/workflow/"+id+"?includeTasks=true", nil, &raw)
			if !reflect.DeepEqual(raw.Output, tc.want) || len(raw.Tasks) != 2 || !reflect.DeepEqual(raw.Tasks[0].InputData, tc.want) {
				t.Fatalf("parent output %v, tasks %+v; want %v", raw.Output, raw.Tasks, tc.want)
			}
			child := taskByRef(wf, "sub").SubWorkflowID
			wantChild := maps.Clone(tc.want)
			wantChild["parent"] = id
			e.waitStatus(child, conductor.WorkflowCompleted)
			e.decode(http.StatusOK, "GET", "/api/workflow/"+child+"?includeTasks=true", nil, &raw)
			if !reflect.DeepEqual(raw.Output, wantChild) || len(raw.Tasks) != 1 || !reflect.DeepEqual(raw.Tasks[0].InputData, wantChild) {
				t.Fatalf("child output %v, tasks %+v; want %v", raw.Output, raw.Tasks, wantChild)
			}
		})
	}
}
