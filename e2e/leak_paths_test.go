package e2e_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/masking"
	"github.com/flowvault/flowvault/node"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/workers"
)

// The leak hunt over the paths a secret takes around a workflow's failure
// and end. Workers echo two secrets (one plain, one with JSON's special
// characters) into their failure reasons, outputs, log lines and JSON log
// lines quoting JSON: a JOIN fails with the reason of a failed branch
// (after a rerun), and its workflow's failure workflow is handed them; a
// dynamic fork forks tasks given an echoed value, its forkedTasks shown
// in its input, and another a secret its definition gives the task, which
// the task is handed and echoes; a worker's task waits IN_PROGRESS with a reason and a
// callback, its lease is extended with another reason and an operator
// updates it by reference name; SUB_WORKFLOWs take their idempotencyKey
// from an echoed value, a task's input, a variable set from a secret in
// the same decision, a secret, sealed data and expressions on them (a
// key a secret reached fails the task; one reading a secret as a
// function's argument is refused at registration), and their name from
// such a variable. A workflow resolving the same secret holds its task while
// those run and end, and fails after. A workflow is terminated under a
// worker that then logs and fails, retried and rerun after its end but
// before its compaction, restarted after it. Every REST response, the log
// output, /metrics, every stream's messages, every file of the data dir
// and every Pebble key and value is searched for each value: none holds
// one.
func TestLeakAroundTheEnd(t *testing.T) {
	t.Parallel()
	vals := map[string]string{
		"tok": "lk-" + alnum(24),
		"jsn": `pa"ss\w0rd-` + alnum(16) + `</x>&é`,
	}
	scanners, names := scannersOf(vals)

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	// Long enough for a retry and a rerun between an end and its
	// compaction.
	n := startLeakNode(ctx, t, func(cfg *node.Config) { cfg.CompactionDelay = 6 * time.Second })
	e := n.env(t, scanners...)
	for k, v := range vals {
		e.putSecret(k, v)
	}
	// Polls are answered with the values, which the worker is to have.
	raw := *e
	raw.client = nil

	// echoed is every way a worker repeats s: as is, in a JSON log line
	// quoting the JSON body it sent, and Go-quoted.
	echoed := func(s string) (string, []string) {
		body, _ := json.Marshal(map[string]string{"auth": s})
		line, _ := json.Marshal(map[string]string{"msg": "sent", "body": string(body)})
		return "rejected " + s, []string{"sent " + s, string(line), fmt.Sprintf("quoted %q", s)}
	}
	logObjects := func(lines []string) []map[string]any {
		var out []map[string]any
		for _, l := range lines {
			out = append(out, map[string]any{"log": l})
		}
		return out
	}
	e.work("lk_fail", 2, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		reason, _ := echoed(fmt.Sprint(task.InputData["s"]))
		return workers.Output{}, fmt.Errorf("%s: %w", reason, workers.ErrTerminal)
	})
	// handed is what lk_echo was handed as "s", by workflow and reference
	// name.
	var handedMu sync.Mutex
	handed := map[string]string{}
	e.work("lk_echo", 4, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		s := fmt.Sprint(task.InputData["s"])
		handedMu.Lock()
		handed[task.WorkflowInstanceID+"/"+task.ReferenceTaskName] = s
		handedMu.Unlock()
		_, logs := echoed(s)
		return workers.Output{Data: map[string]any{"echo": s, "in": task.InputData}, Logs: logs}, nil
	})
	e.work("lk_src", 2, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		s := fmt.Sprint(task.InputData["s"])
		return workers.Output{Data: map[string]any{"echo": s,
			"tasks":    []any{map[string]any{"name": "lk_echo", "taskReferenceName": "d1"}, map[string]any{"name": "lk_echo", "taskReferenceName": "d2"}},
			"inputs":   map[string]any{"d1": map[string]any{"s": s}, "d2": map[string]any{"s": "x " + s}},
			"_secrets": map[string]any{"v": s, "inputs": []any{map[string]any{"s": s}}}}}, nil
	})

	secretIn := func(name string) string { return `{"s":"${workflow.secrets.` + name + `}"}` }
	e.register(
		`{"name":"lk_fwf","tasks":[{"name":"lk_echo","taskReferenceName":"e","inputParameters":{"s":"${workflow.input.reason}"}}]}`,
		`{"name":"lk_join","failureWorkflow":"lk_fwf","tasks":[
		  {"name":"f","taskReferenceName":"f","type":"FORK_JOIN","forkTasks":[
		    [{"name":"a1","taskReferenceName":"a1","type":"SET_VARIABLE","inputParameters":{"x":1}},{"name":"lk_echo","taskReferenceName":"a2","inputParameters":{"s":"plain"}}],
		    [{"name":"lk_fail","taskReferenceName":"b1","inputParameters":`+secretIn("tok")+`}],
		    [{"name":"lk_fail","taskReferenceName":"b2","inputParameters":`+secretIn("jsn")+`}]]},
		  {"name":"j","taskReferenceName":"j","type":"JOIN","joinOn":["a2","b1","b2"]}]}`,
		`{"name":"lk_dyn","tasks":[
		  {"name":"lk_src","taskReferenceName":"src","inputParameters":`+secretIn("tok")+`},
		  {"name":"df","taskReferenceName":"df","type":"FORK_JOIN_DYNAMIC","dynamicForkTasksParam":"tasks","dynamicForkTasksInputParamName":"inputs",
		   "inputParameters":{"tasks":"${src.output.tasks}","inputs":"${src.output.inputs}"}},
		  {"name":"dj","taskReferenceName":"dj","type":"JOIN"},
		  {"name":"df2","taskReferenceName":"df2","type":"FORK_JOIN_DYNAMIC","forkTaskName":"lk_echo",
		   "inputParameters":{"forkTaskName":"lk_echo","forkTaskInputs":[`+secretIn("jsn")+`,{"s":"${src.output.echo}"}]}},
		  {"name":"dj2","taskReferenceName":"dj2","type":"JOIN"}]}`,
		`{"name":"lk_cb","tasks":[{"name":"lk_cb","taskReferenceName":"cb","inputParameters":{"s":"${workflow.secrets.tok}","j":"${workflow.secrets.jsn}"}}]}`,
		`{"name":"lk_child","tasks":[{"name":"lk_echo","taskReferenceName":"c","inputParameters":`+secretIn("jsn")+`}]}`,
		`{"name":"lk_hold","tasks":[{"name":"lk_hold","taskReferenceName":"h","inputParameters":`+secretIn("tok")+`}]}`,
		`{"name":"lk_subname","tasks":[
		  {"name":"sv","taskReferenceName":"sv","type":"SET_VARIABLE","inputParameters":{"v":"${workflow.secrets.tok}"}},
		  {"name":"s","taskReferenceName":"s","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"${workflow.variables.v}"}}]}`,
	)
	keys := map[string]string{
		"echo":     "${src.output.echo}",
		"input":    "${src.input.s}",
		"var":      "${workflow.variables.v}",
		"secret":   "k-${workflow.secrets.tok}",
		"sealed":   "${src.output._secrets.v}",
		"concat":   "${$.concat('k-', $.src.input.s)}",
		"fwdinput": "${fwd.input.s}",
	}
	subKeyed := func(k, key string) string {
		return `{"name":"lk_sub_` + k + `","tasks":[
		  {"name":"lk_src","taskReferenceName":"src","inputParameters":` + secretIn("tok") + `},
		  {"name":"sv","taskReferenceName":"sv","type":"SET_VARIABLE","inputParameters":{"v":"${workflow.secrets.tok}"}},
		  {"name":"fwd","taskReferenceName":"fwd","type":"SET_VARIABLE","inputParameters":{"s":"${src.output._secrets.v}"}},
		  {"name":"s","taskReferenceName":"s","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"lk_child","idempotencyKey":"` + key + `","idempotencyStrategy":"RETURN_EXISTING"}}]}`
	}
	for k, key := range keys {
		e.register(subKeyed(k, key))
	}
	// A secret read as a function's argument reads null there (the key
	// was "k-", every run's): refused at registration.
	if out := e.must(http.StatusBadRequest, "POST", "/api/metadata/workflow?overwrite=true",
		subKeyed("concat2", "${$.concat('k-', $.workflow.secrets.tok)}")); !strings.Contains(out, "subWorkflowParam.idempotencyKey") {
		t.Errorf("a key concatenating a secret refused with %s, not naming the field", out)
	}

	// A JOIN failed by its branches, and the failure workflow handed its
	// reason.
	joinID := e.start("lk_join", nil)
	e.waitStatus(joinID, conductor.WorkflowFailed)
	// Rerun from the branch that did not fail: the JOIN meets the failed
	// branches.
	testutil.Eventually(t, 20*time.Second, 50*time.Millisecond, func() error {
		if wf := e.workflow(joinID); taskByRef(wf, "b1") == nil || taskByRef(wf, "b2") == nil || !conductor.TaskTerminal(taskByRef(wf, "b2").Status) || !conductor.TaskTerminal(taskByRef(wf, "b1").Status) {
			return errors.New("the branches have not both ended")
		}
		return nil
	})
	jwf := e.workflow(joinID)
	e.must(http.StatusOK, "POST", "/api/workflow/"+joinID+"/rerun", map[string]any{"reRunFromTaskId": taskByRef(jwf, "a2").TaskID})
	testutil.Eventually(t, 20*time.Second, 50*time.Millisecond, func() error {
		if jwf = e.workflow(joinID); jwf.Status != conductor.WorkflowFailed || taskByRef(jwf, "j").Status != conductor.TaskFailed {
			var tasks []string
			for _, tk := range jwf.Tasks {
				tasks = append(tasks, tk.ReferenceTaskName+":"+tk.Status)
			}
			return fmt.Errorf("after the rerun: %s, tasks %v", jwf.Status, tasks)
		}
		return nil
	})
	if j := taskByRef(jwf, "j"); j == nil || !strings.Contains(j.ReasonForIncompletion, "rejected "+masking.Mask) {
		t.Errorf("the JOIN: %+v", j)
	}
	dynID := e.start("lk_dyn", nil)
	if df := taskByRef(e.waitStatus(dynID, conductor.WorkflowCompleted), "df"); df == nil || fmt.Sprint(df.InputData["forkedTasks"]) != "[d1 d2]" {
		t.Errorf("the dynamic fork: %+v", df)
	}
	// The secret the definition gives df2's first task is handed to it
	// resolved.
	handedMu.Lock()
	got := handed[dynID+"/_lk_echo_0"]
	handedMu.Unlock()
	if got != vals["jsn"] {
		t.Errorf("df2's task _lk_echo_0 was handed %d bytes, not the jsn secret", len(got))
	}

	// A task waiting for its callback, with a reason: its lease extended
	// with another, then updated by reference name.
	cbID := e.start("lk_cb", nil)
	var cb *conductor.Task
	testutil.Eventually(t, 20*time.Second, 50*time.Millisecond, func() error {
		_, body := raw.do("GET", "/api/tasks/poll/lk_cb?workerid=w1", nil)
		if body == "" {
			return errors.New("nothing to poll")
		}
		cb = decodeTask(t, body)
		return nil
	})
	tok := fmt.Sprint(cb.InputData["s"])
	if tok != vals["tok"] {
		t.Fatal("the polled task was not handed the secret")
	}
	_, logs := echoed(tok)
	e.must(http.StatusOK, "POST", "/api/tasks", map[string]any{"taskId": cb.TaskID, "workflowInstanceId": cbID, "workerId": "w1",
		"status": "IN_PROGRESS", "reasonForIncompletion": "waiting for " + tok, "callbackAfterSeconds": 600, "logs": logObjects(logs),
		"outputData": map[string]any{"progress": tok}})
	e.must(http.StatusNoContent, "POST", "/api/tasks/update-v2", map[string]any{"taskId": cb.TaskID, "workflowInstanceId": cbID, "workerId": "w1",
		"extendLease": true, "reasonForIncompletion": "still waiting for " + vals["jsn"] + " " + tok})
	e.must(http.StatusOK, "POST", "/api/tasks/"+cbID+"/cb/IN_PROGRESS", map[string]any{"note": "operator"})
	if got := taskByRef(e.workflow(cbID), "cb"); !strings.Contains(got.ReasonForIncompletion, masking.Mask) {
		t.Errorf("the task updated by reference: reason %q", got.ReasonForIncompletion)
	}
	e.must(http.StatusOK, "POST", "/api/tasks/"+cbID+"/cb/COMPLETED", map[string]any{"done": tok})
	e.waitStatus(cbID, conductor.WorkflowCompleted)

	poll := func(workerID string) *conductor.Task {
		var task *conductor.Task
		testutil.Eventually(t, 20*time.Second, 50*time.Millisecond, func() error {
			_, body := raw.do("GET", "/api/tasks/poll/lk_hold?workerid="+workerID, nil)
			if body == "" {
				return errors.New("nothing to poll")
			}
			task = decodeTask(t, body)
			return nil
		})
		return task
	}
	failHeld := func(task *conductor.Task) {
		s := fmt.Sprint(task.InputData["s"])
		if s != vals["tok"] {
			t.Fatalf("the held task was handed %d bytes, not the secret", len(s))
		}
		reason, logs := echoed(s)
		for _, l := range logs {
			// Taken, or refused once the workflow is compacted (a slow
			// machine may get there first).
			if status, body := e.do("POST", "/api/tasks/"+task.TaskID+"/log", l); status != http.StatusNoContent && status != http.StatusConflict {
				t.Errorf("late log line: %d %s", status, body)
			}
		}
		status, body := e.do("POST", "/api/tasks", map[string]any{"taskId": task.TaskID, "workflowInstanceId": task.WorkflowInstanceID, "workerId": task.WorkerID,
			"status": "FAILED_WITH_TERMINAL_ERROR", "reasonForIncompletion": reason, "logs": logObjects(logs), "outputData": map[string]any{"echo": s}})
		if status != http.StatusOK && status != http.StatusConflict {
			t.Errorf("late result: %d %s", status, body)
		}
	}
	// A workflow resolving what the SUB_WORKFLOWs' parents resolve holds
	// its task while they run and end (their redactors shared, then given
	// back), and fails after.
	sharerID := e.start("lk_hold", nil)
	sharer := poll("w1")

	// SUB_WORKFLOWs keyed on what the parent knows.
	subIDs := map[string]string{"name": e.start("lk_subname", nil)}
	for k := range keys {
		subIDs[k] = e.start("lk_sub_"+k, nil)
	}
	for k, id := range subIDs {
		testutil.Eventually(t, 30*time.Second, 50*time.Millisecond, func() error {
			if wf := e.workflow(id); wf.Status == conductor.WorkflowRunning {
				return fmt.Errorf("lk_sub_%s still runs", k)
			}
			return nil
		})
		wf := e.workflow(id)
		// A key a secret or sealed data reached is refused, in the
		// decision that resolves it too (a variable set from a secret).
		switch k {
		case "var", "secret", "sealed", "fwdinput":
			if s := taskByRef(wf, "s"); s == nil || !strings.HasPrefix(s.Status, conductor.TaskFailed) || !strings.Contains(s.ReasonForIncompletion, "idempotencyKey") {
				t.Errorf("lk_sub_%s: %+v, want the SUB_WORKFLOW failed naming its idempotencyKey", k, s)
			}
		}
	}

	failHeld(sharer)
	e.waitStatus(sharerID, conductor.WorkflowFailed)

	// A workflow terminated under its worker, which then logs and fails;
	// retried and rerun after its end, before its compaction; restarted
	// after it.
	holdID := e.start("lk_hold", nil)
	held := poll("w2")
	e.must(http.StatusNoContent, "DELETE", "/api/workflow/"+holdID+"?reason="+url.QueryEscape("stop"), nil)
	e.waitStatus(holdID, conductor.WorkflowTerminated)
	failHeld(held)
	e.must(http.StatusNoContent, "POST", "/api/workflow/"+holdID+"/retry", nil)
	failHeld(poll("w3"))
	e.waitStatus(holdID, conductor.WorkflowFailed)
	e.must(http.StatusOK, "POST", "/api/workflow/"+holdID+"/rerun", map[string]any{})
	failHeld(poll("w4"))
	e.waitStatus(holdID, conductor.WorkflowFailed)
	e.waitCompacted(holdID)
	e.must(http.StatusNoContent, "POST", "/api/workflow/"+holdID+"/restart", nil)
	held = poll("w5")
	e.must(http.StatusNoContent, "DELETE", "/api/workflow/"+holdID+"?reason=again", nil)
	e.waitStatus(holdID, conductor.WorkflowTerminated)
	failHeld(held)

	for _, path := range []string{
		"/api/workflow/search?freeText=*&size=100", "/api/workflow/search-v2?freeText=*&size=100", "/api/tasks/search?freeText=*&size=100",
		"/api/secrets", "/metrics", "/api/audit",
	} {
		e.must(http.StatusOK, "GET", path, nil)
	}
	for _, sum := range e.search("/api/workflow/search?freeText=*&size=100").Results {
		// The failure workflow resolves nothing: it has nothing to
		// compact.
		if sum.WorkflowType != "lk_fwf" {
			e.waitCompacted(sum.WorkflowID)
		}
		e.must(http.StatusOK, "GET", "/api/workflow/"+sum.WorkflowID+"/status?includeOutput=true&includeVariables=true", nil)
		for _, tk := range e.workflow(sum.WorkflowID).Tasks {
			e.must(http.StatusOK, "GET", "/api/tasks/"+tk.TaskID, nil)
			e.must(http.StatusOK, "GET", "/api/tasks/"+tk.TaskID+"/log", nil)
		}
	}
	n.scanEverything(t, scanners, names)
}
