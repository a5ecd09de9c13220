package e2e_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/workers"
)

// The leak hunt over the paths that answer what they changed or ran: a
// secret, values a worker, a signal, a state update, a task update by
// reference and a webhook delivery put under _secrets, and a value a
// simulation's mock holds under _secrets. Synchronous executions under
// each returnStrategy (BLOCKING_TASK_INPUT and BLOCKING_TASK_LIST: a HUMAN
// task's input holds the secret, a _secrets block of it and copies of
// _secrets values), signal/sync, updateState refused (400) and again once
// its task ended (409), a task update by reference (sync, and again: 404),
// a signal to an ended workflow, results whose reason and logs quote their
// own _secrets value, POST /api/workflow/test copying a mock's _secrets
// value into a variable, the output, an INLINE script and another task's
// input, and a webhook delivery whose workflow puts its payload under
// _secrets: every answer, the log, every stream, file and Pebble key and
// value is searched for each value, and none holds one. The simulation
// showed the mock's value as it is, where a run shows "***".
func TestLeakOnAnswersOfChanges(t *testing.T) {
	t.Parallel()
	h := startHunt(t, "tok", "data", "sig", "upd", "vars", "rsync", "sim", "hook", "own", "own2")
	e, vals := h.e, h.vals
	hooktok := "hooktok-" + alnum(20)
	e.putSecret("hooktok", hooktok)
	expect := expectStatus(t)
	e.work("ls_echo", 4, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		s := fmt.Sprint(task.InputData["s"])
		return workers.Output{Data: map[string]any{"echo": s, "_secrets": map[string]any{"v": vals["data"]}}}, nil
	})
	sec := "${workflow.secrets.tok}"
	e.register(`{"name":"ls_main","tasks":[
	  {"name":"ls_echo","taskReferenceName":"a","inputParameters":{"s":"` + sec + `"}},
	  {"name":"h","taskReferenceName":"h","type":"HUMAN","inputParameters":{"s":"` + sec + `","_secrets":{"t":"` + sec + `"},"d":"${a.output._secrets.v}","e":"${a.output.echo}","in":"${workflow.input._secrets.i}"}},
	  {"name":"w2","taskReferenceName":"w2","type":"WAIT","inputParameters":{"d":"${a.output._secrets.v}","prev":"${h.output._secrets.x}"}},
	  {"name":"w3","taskReferenceName":"w3","type":"HUMAN","inputParameters":{"d":"${w2.output._secrets.y}"}}],
	  "outputParameters":{"d":"${a.output._secrets.v}","x":"${h.output._secrets.x}","y":"${w2.output._secrets.y}"}}`)
	var ids []string
	for _, strat := range []string{"TARGET_WORKFLOW", "BLOCKING_WORKFLOW", "BLOCKING_TASK", "BLOCKING_TASK_INPUT", "BLOCKING_TASK_LIST", "TARGET_WORKFLOW_OUTPUT"} {
		st, body := e.do("POST", "/api/workflow/execute/ls_main/1?waitForSeconds=10&returnStrategy="+strat,
			map[string]any{"input": map[string]any{"_secrets": map[string]any{"i": vals["sig"]}}})
		expect("execute "+strat, st, body, 200)
		i := strings.Index(body, `"targetWorkflowId":"`)
		if i >= 0 {
			ids = append(ids, body[i+20:i+56])
		}
	}
	if len(ids) != 6 {
		t.Fatalf("started %d workflows, want 6", len(ids))
	}
	id := ids[0]
	st, body := e.do("POST", "/api/tasks/"+id+"/COMPLETED/signal/sync?returnStrategy=BLOCKING_TASK_INPUT", map[string]any{"_secrets": map[string]any{"x": vals["sig"]}, "p": 1})
	expect("signal sync", st, body, 200)
	// updateState refusals
	st, body = e.do("POST", "/api/workflow/"+id+"/state", map[string]any{"taskReferenceName": "w2", "variables": map[string]any{"_secrets": map[string]any{"z": vals["vars"]}, "vv": 1},
		"taskResult": map[string]any{"status": "COMPLETED", "callbackAfterSeconds": -5, "outputData": map[string]any{"_secrets": map[string]any{"y": vals["upd"]}}}})
	expect("state refused", st, body, 400)
	st, body = e.do("POST", "/api/workflow/"+id+"/state?returnStrategy=BLOCKING_TASK_INPUT", map[string]any{"taskReferenceName": "w2", "variables": map[string]any{"_secrets": map[string]any{"z": vals["vars"]}, "vv": 1},
		"taskResult": map[string]any{"status": "COMPLETED", "outputData": map[string]any{"_secrets": map[string]any{"y": vals["upd"]}}}})
	expect("state ok", st, body, 200)
	st, body = e.do("POST", "/api/workflow/"+id+"/state", map[string]any{"taskReferenceName": "w2", "variables": map[string]any{"_secrets": map[string]any{"z": vals["vars"]}, "vv": 1},
		"taskResult": map[string]any{"status": "COMPLETED", "outputData": map[string]any{"_secrets": map[string]any{"y": vals["upd"]}}}})
	expect("state again 409", st, body, 409)
	st, body = e.do("POST", "/api/tasks/"+id+"/w3/COMPLETED/sync", map[string]any{"_secrets": map[string]any{"r": vals["rsync"]}, "plain": vals["rsync"][:5]})
	expect("task sync", st, body, 200)
	st, body = e.do("POST", "/api/tasks/"+id+"/w3/COMPLETED/sync", map[string]any{"_secrets": map[string]any{"r": vals["rsync"]}})
	expect("task sync again", st, body, 404)
	// signal on an ended workflow, with _secrets
	st, body = e.do("POST", "/api/tasks/"+id+"/COMPLETED/signal/sync", map[string]any{"_secrets": map[string]any{"x": vals["sig"]}})
	expect("signal ended", st, body, 409)
	// a result whose reason and logs quote its own _secrets
	var h2 *conductor.Task
	for _, tk := range e.workflow(ids[2]).Tasks {
		if tk.ReferenceTaskName == "h" {
			h2 = tk
		}
	}
	st, body = e.do("POST", "/api/tasks", map[string]any{"workflowInstanceId": ids[2], "taskId": h2.TaskID, "status": "FAILED_WITH_TERMINAL_ERROR",
		"reasonForIncompletion": "bad " + vals["own"], "logs": []any{map[string]any{"log": "saw " + vals["own"]}}, "outputData": map[string]any{"_secrets": map[string]any{"x": vals["own"]}}})
	expect("own reason", st, body, 200)
	st, body = e.do("POST", "/api/workflow/"+ids[3]+"/state", map[string]any{"taskReferenceName": "h", "variables": map[string]any{"note": "v " + vals["own2"], "_secrets": map[string]any{"z": vals["own2"]}},
		"taskResult": map[string]any{"status": "FAILED_WITH_TERMINAL_ERROR", "reasonForIncompletion": "bad " + vals["own2"], "outputData": map[string]any{"_secrets": map[string]any{"x": vals["own2"]}}}})
	expect("own2 state", st, body, 200)
	e.waitStatus(ids[2], "FAILED")
	e.waitStatus(ids[3], "FAILED")
	e.do("GET", "/api/workflow/"+ids[2]+"?includeTasks=true", nil)
	e.do("GET", "/api/workflow/"+ids[3]+"?includeTasks=true", nil)
	e.do("GET", "/api/tasks/"+h2.TaskID+"/log", nil)
	e.do("GET", "/api/tasks/search?freeText=*&size=100", nil)
	// simulation
	st, body = e.do("POST", "/api/workflow/test", `{"name":"ls_sim","workflowDef":{"name":"ls_sim","tasks":[
	  {"name":"ls_echo","taskReferenceName":"m","inputParameters":{"s":"`+sec+`"}},
	  {"name":"sv","taskReferenceName":"sv","type":"SET_VARIABLE","inputParameters":{"k":"${m.output._secrets.v}"}},
	  {"name":"inl","taskReferenceName":"inl","type":"INLINE","inputParameters":{"evaluatorType":"graaljs","v":"${m.output._secrets.v}","expression":"'got ' + $.v"}},
	  {"name":"ls_echo","taskReferenceName":"n","inputParameters":{"s":"${m.output._secrets.v}","t":"pre ${m.output._secrets.v}"}}],
	  "outputParameters":{"d":"${m.output._secrets.v}","s":"`+sec+`"}},
	  "input":{"_secrets":{"i":"`+vals["sim"]+`"},"c":"${workflow.input._secrets.i}"},
	  "taskRefToMockOutput":{"m":[{"status":"COMPLETED","output":{"_secrets":{"v":"`+vals["sim"]+`"}}}],"n":[{"status":"COMPLETED","output":{"o":1}}]}}`)
	expect("simulate", st, body, 200)
	if !strings.Contains(body, `"output":{"d":"***"`) {
		t.Errorf("the simulation's output: %.300s", body)
	}

	// webhook
	e.register(`{"name":"ls_hook","tasks":[{"name":"ls_echo","taskReferenceName":"a","inputParameters":{"s":"x","_secrets":{"t":"${workflow.input.tok}"}}}]}`)
	var hook conductor.WebhookConfig
	e.decode(http.StatusOK, "POST", "/api/metadata/webhook", map[string]any{"name": "lsh", "verifier": "HEADER_BASED",
		"headers": map[string]string{"X-T": "${workflow.secrets.hooktok}"}, "workflowsToStart": map[string]int{"ls_hook": 1}}, &hook)
	st, body = e.deliver(hook.ID, map[string]string{"X-T": hooktok}, `{"tok":"`+vals["hook"]+`","n":1}`)
	expect("deliver", st, body, 200)
	if strings.Contains(body, vals["hook"]) {
		t.Error("delivery answer shows hook")
	}
	st, body = e.deliver(hook.ID, map[string]string{"X-T": hooktok}, `{"tok":"`+vals["hook"]+`","n":1`)
	expect("deliver bad", st, body, 400)
	if strings.Contains(body, vals["hook"]) {
		t.Error("delivery answer shows hook")
	}
	testutil.Eventually(t, 20*time.Second, 50*time.Millisecond, func() error {
		out := e.must(http.StatusOK, "GET", "/api/workflow/search?query=workflowType%3Dls_hook&size=100", nil)
		if !strings.Contains(out, "ls_hook") || strings.Contains(out, "RUNNING") {
			return fmt.Errorf("wait %s", out)
		}
		return nil
	})
	e.must(http.StatusOK, "GET", "/metrics", nil)
	e.must(http.StatusOK, "GET", "/api/audit", nil)
	for _, id := range ids {
		e.do("GET", "/api/workflow/"+id+"?includeTasks=true", nil)
	}
	h.scan(t)
}

// expectStatus returns a check that each path a hunt drives ran as
// planned (answered want): the hunt tests nothing otherwise.
func expectStatus(t *testing.T) func(what string, status int, body string, want int) {
	return func(what string, status int, body string, want int) {
		t.Helper()
		if status != want {
			t.Errorf("%s: %d %.300s, want %d", what, status, body, want)
		}
	}
}
