package e2e_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/flowvault/flowvault/internal/leaktest"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/workers"
)

// The leak hunt over the read paths that compute what they answer: a
// secret, a field the definition masks and a worker's _secrets value reach
// an INLINE script (which echoes the secret as a member's name, inside
// text, URL-encoded and in JSON text), a SET_VARIABLE, a javascript
// SWITCH, a DO_WHILE's condition and its iterations, a dynamic fork's
// inputs, a SUB_WORKFLOW and a START_WORKFLOW, an EVENT whose handler
// starts a workflow, an HTTP task's uri, header and body, a worker's
// failure reason, a log line posted to a task through the API, a
// TERMINATE's workflowOutput and a failure workflow's input. Workers echo
// what they are handed raw, base64, URL-encoded, in JSON text, inside
// text and as a map key. While a task holds the workflow, after its end
// and after its compaction, the pending tasks of a type
// (/api/admin/task), the queues and their poll data, the running and
// correlated lists, the task searches (v1 and v2) and the workflow
// searches by tasks, each task and its log,
// the event handlers, the schedule executions, the audit trail and
// /metrics are read; then every REST response, the log output, every
// stream's messages, every file of the data dir and every Pebble key and
// value is searched for each value: none holds one.
func TestLeakOnReadPaths(t *testing.T) {
	t.Parallel()
	vals := map[string]string{
		"tok":  "hk-" + alnum(24),
		"card": "cd-" + alnum(20),
		"data": "dt-" + alnum(20),
	}
	scanners, names := scannersOf(vals)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	n := startLeakNode(ctx, t, nil)
	e := n.env(t, scanners...)
	raw := *e
	raw.client = nil
	e.putSecret("tok", vals["tok"])

	sent := make(chan string, 1)
	remote := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		select {
		case sent <- r.Header.Get("X-S"):
		default:
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"uri": r.RequestURI, "h": r.Header.Get("X-S"), "body": string(body)})
	}))
	defer remote.Close()

	echo := func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		s := fmt.Sprint(task.InputData["s"])
		js, _ := json.Marshal(map[string]string{"s": s})
		return workers.Output{Data: map[string]any{
			"echo": s, "b64": base64.StdEncoding.EncodeToString([]byte(s)), "url": "https://x/?t=" + url.QueryEscape(s),
			"json": string(js), "big": "before " + s + " after", "keyed": map[string]any{s: 1},
			"_secrets": map[string]any{"v": vals["data"]},
		}, Logs: []string{"used " + s}}, nil
	}
	e.work("hk_echo", 4, echo)
	e.work("hk_fail", 2, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		return workers.Output{}, fmt.Errorf("rejected %s: %w", task.InputData["s"], workers.ErrTerminal)
	})
	hold := make(chan struct{})
	e.work("hk_hold", 2, func(ctx context.Context, task *conductor.Task) (workers.Output, error) {
		select {
		case <-hold:
		case <-ctx.Done():
		}
		return workers.Output{Data: map[string]any{"s": task.InputData["s"]}}, nil
	})

	sec := "${workflow.secrets.tok}"
	e.register(
		`{"name":"hk_fwf","tasks":[{"name":"hk_echo","taskReferenceName":"e","inputParameters":{"s":"${workflow.input.reason}"}}]}`,
		`{"name":"hk_child","tasks":[{"name":"hk_echo","taskReferenceName":"c","inputParameters":{"s":"${workflow.input.s}"}}],
		  "outputParameters":{"o":"${c.output.echo}","d":"${c.output._secrets.v}"}}`,
		`{"name":"hk_evtwf","tasks":[{"name":"hk_echo","taskReferenceName":"c","inputParameters":{"s":"${workflow.input.p}"}}]}`,
		`{"name":"hk_main","maskedFields":["card"],"failureWorkflow":"hk_fwf","tasks":[
		  {"name":"hk_echo","taskReferenceName":"src","inputParameters":{"s":"`+sec+`"}},
		  {"name":"hk_echo","taskReferenceName":"cardecho","inputParameters":{"s":"${workflow.input.card}"}},
		  {"name":"inl","taskReferenceName":"inl","type":"INLINE","inputParameters":{"evaluatorType":"graaljs","s":"`+sec+`","c":"${workflow.input.card}",
		    "expression":"(function(){ var o = {}; o[$.s] = 1; return {v: $.s, c: $.c, k: o, t: 'x' + $.s + 'y', u: encodeURIComponent($.s), j: JSON.stringify({a: $.s})}; })()"}},
		  {"name":"sv","taskReferenceName":"sv","type":"SET_VARIABLE","inputParameters":{"v":"`+sec+`","w":"pre-`+sec+`","c":"${workflow.input.card}","d":"${src.output._secrets.v}"}},
		  {"name":"sw","taskReferenceName":"sw","type":"SWITCH","evaluatorType":"javascript","expression":"$.s.length > 3 ? 'long' : 'short'",
		    "inputParameters":{"s":"`+sec+`"},"decisionCases":{"long":[{"name":"hk_echo","taskReferenceName":"long","inputParameters":{"s":"long `+sec+`"}}]},"defaultCase":[]},
		  {"name":"loop","taskReferenceName":"loop","type":"DO_WHILE","inputParameters":{"s":"`+sec+`"},
		    "loopCondition":"if ($.loop['iteration'] < 2 && $.s.length > 3) { true; } else { false; }",
		    "loopOver":[{"name":"hk_echo","taskReferenceName":"le","inputParameters":{"s":"`+sec+`"}}]},
		  {"name":"df","taskReferenceName":"df","type":"FORK_JOIN_DYNAMIC","forkTaskName":"hk_echo",
		    "inputParameters":{"forkTaskName":"hk_echo","forkTaskInputs":[{"s":"`+sec+`"},{"s":"${src.output.echo}"},{"s":"${workflow.input.card}"}]}},
		  {"name":"dj","taskReferenceName":"dj","type":"JOIN"},
		  {"name":"sub","taskReferenceName":"sub","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"hk_child"},"inputParameters":{"s":"`+sec+`"}},
		  {"name":"stw","taskReferenceName":"stw","type":"START_WORKFLOW","inputParameters":{"startWorkflow":{"name":"hk_child","input":{"s":"`+sec+`"}}}},
		  {"name":"evt","taskReferenceName":"evt","type":"EVENT","sink":"nats:hk.evt","optional":true,"inputParameters":{"p":"${src.output.echo}","q":"${src.output._secrets.v}","c":"${workflow.input.card}"}},
		  {"name":"http","taskReferenceName":"http","type":"HTTP","inputParameters":{"http_request":{"uri":"`+remote.URL+`/p/`+sec+`?q=`+sec+`","method":"POST",
		    "headers":{"X-S":"`+sec+`"},"body":{"s":"`+sec+`","c":"${workflow.input.card}"}}}},
		  {"name":"hk_fail","taskReferenceName":"fail","optional":true,"inputParameters":{"s":"`+sec+`"}},
		  {"name":"hk_hold","taskReferenceName":"hold","inputParameters":{"s":"`+sec+`"}},
		  {"name":"term","taskReferenceName":"term","type":"TERMINATE","inputParameters":{"terminationStatus":"FAILED","terminationReason":"stopped",
		    "workflowOutput":{"o":"${src.output.echo}","d":"${src.output._secrets.v}","c":"${workflow.input.card}"}}}],
		  "outputParameters":{"o":"${src.output.echo}","v":"${workflow.variables.v}"}}`,
	)
	e.must(http.StatusNoContent, "POST", "/api/event", `[{"name":"hk_h","event":"nats:hk.evt","active":true,"condition":"$.p.length > 0",
	  "actions":[{"action":"start_workflow","start_workflow":{"name":"hk_evtwf","correlationId":"hk","input":{"p":"${p}","q":"${q}"}}}]}]`)

	id := e.start("hk_main", map[string]any{"card": vals["card"], "n": 1})
	testutil.Eventually(t, 30*time.Second, 50*time.Millisecond, func() error {
		w := e.workflow(id)
		if h := taskByRef(w, "hold"); h == nil || h.Status != conductor.TaskInProgress {
			var st []string
			for _, tk := range w.Tasks {
				st = append(st, tk.ReferenceTaskName+":"+tk.Status+":"+tk.ReasonForIncompletion)
			}
			return fmt.Errorf("hold not in progress: %s %s %v", w.Status, w.ReasonForIncompletion, st)
		}
		return nil
	})
	wf := e.workflow(id)
	hid := taskByRef(wf, "hold").TaskID
	raw.must(http.StatusNoContent, "POST", "/api/tasks/"+hid+"/log", "raw log "+vals["tok"])
	// every read path while it runs
	paths := []string{
		"/api/workflow/" + id + "?includeTasks=true", "/api/workflow/" + id + "/status?includeOutput=true&includeVariables=true",
		"/api/workflow/search?freeText=*&size=100", "/api/workflow/search-v2?freeText=*", "/api/tasks/search?freeText=*&size=100",
		"/api/tasks/search-v2?freeText=*&size=100", "/api/workflow/search-by-tasks?freeText=*&size=100",
		"/api/workflow/search-by-tasks-v2?freeText=*&size=100", "/api/workflow/" + id + "/tasks", "/api/admin/task/hk_hold", "/api/tasks/queue/all/verbose", "/api/tasks/queue/polldata/all",
		"/api/tasks/queue/polldata?taskType=hk_hold", "/api/tasks/queue/sizes?taskType=hk_hold",
		"/api/workflow/running/hk_main", "/api/workflow/hk_evtwf/correlated/hk?includeClosed=true&includeTasks=true",
		"/api/event", "/api/audit", "/metrics", "/api/scheduler/search/executions",
	}
	for _, p := range paths {
		e.must(http.StatusOK, "GET", p, nil)
	}
	for _, tk := range wf.Tasks {
		e.must(http.StatusOK, "GET", "/api/tasks/"+tk.TaskID, nil)
		e.must(http.StatusOK, "GET", "/api/tasks/"+tk.TaskID+"/log", nil)
	}
	close(hold)
	end := e.waitStatus(id, conductor.WorkflowFailed)
	if got := <-sent; got != vals["tok"] {
		t.Error("the HTTP task did not send the resolved secret")
	}
	// Each path ran as planned: the secret and the masked field reached
	// every task, which the hunt would otherwise not test.
	want := map[string]string{"fail": conductor.TaskCompletedWithErrors, "long": conductor.TaskCompleted, "le__2": conductor.TaskCompleted,
		"_hk_echo_2": conductor.TaskCompleted, "sub": conductor.TaskCompleted, "stw": conductor.TaskCompleted, "evt": conductor.TaskCompleted,
		"http": conductor.TaskCompleted, "hold": conductor.TaskCompleted, "term": conductor.TaskCompleted}
	for ref, status := range want {
		if tk := taskByRef(end, ref); tk == nil || tk.Status != status {
			t.Errorf("task %s: %+v, want %s", ref, tk, status)
		}
	}
	if inl := taskByRef(end, "inl"); inl.OutputData["result"] == nil {
		t.Errorf("the INLINE task: output %v", inl.OutputData)
	}
	testutil.Eventually(t, 60*time.Second, 100*time.Millisecond, func() error {
		out := e.must(http.StatusOK, "GET", "/api/workflow/search?freeText=*&size=100", nil)
		if strings.Count(out, `"hk_fwf"`) == 0 || strings.Count(out, `"hk_evtwf"`) == 0 {
			return fmt.Errorf("no fwf/evtwf yet")
		}
		return nil
	})
	for _, p := range paths {
		e.must(http.StatusOK, "GET", p, nil)
	}
	var list struct {
		Results []struct {
			WorkflowID string `json:"workflowId"`
		} `json:"results"`
	}
	json.Unmarshal([]byte(e.must(http.StatusOK, "GET", "/api/workflow/search?freeText=*&size=100", nil)), &list)
	for _, r := range list.Results {
		w := e.workflow(r.WorkflowID)
		for _, tk := range w.Tasks {
			e.must(http.StatusOK, "GET", "/api/tasks/"+tk.TaskID, nil)
			e.must(http.StatusOK, "GET", "/api/tasks/"+tk.TaskID+"/log", nil)
		}
	}
	e.waitCompacted(id)
	for _, p := range paths {
		e.must(http.StatusOK, "GET", p, nil)
	}
	n.scanEverything(t, scanners, names)
}

// scannersOf returns a scanner for each of vals and, at the same index,
// the name scanEverything reports its hits under.
func scannersOf(vals map[string]string) ([]*leaktest.Scanner, []string) {
	var scanners []*leaktest.Scanner
	var names []string
	for k, v := range vals {
		scanners = append(scanners, leaktest.New([]byte(v)))
		names = append(names, k)
	}
	return scanners, names
}
