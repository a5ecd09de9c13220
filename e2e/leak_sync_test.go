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

// The leak hunt over the synchronous answers' fields added with
// BLOCKING_TASK_LIST and over the paths changed alongside them. Variables
// set from a secret, from a task's _secrets output, from a maskedFields
// input and from a child's _secrets input, in a parent and in the child
// that blocks, read through every strategy's targetWorkflowVariables
// (and variables, blockingTaskId, tasks); a blocking HUMAN task updated
// with a reasonForIncompletion quoting the secret and _secrets data,
// read through the TaskRun's reasonForIncompletion, and its retry
// (retriedTaskId); a restart refused by its idempotency key (409) and
// starts refused by a held key, of workflows holding _secrets input;
// children's idempotency keys and rate limit keys read from variables
// set from sealed data and from sealed data (each refused, naming its
// field); a
// webhook delivery sent again (a duplicate, logged at INFO) with a
// _secrets payload; an optional DO_WHILE whose timeout cancels its
// iteration's child holding the secret; a registration and an inline
// start refused for variables over the limit (413) holding _secrets
// data; the secrets lists, queue sizes, /health and /metrics: every
// answer, the log, every stream, file and Pebble key and value is
// searched for each value, and none holds one.
func TestLeakOnSyncAnswersAndKeys(t *testing.T) {
	t.Parallel()
	h := startHunt(t, "tok", "data", "mk", "upd", "idem", "hook", "big")
	e, vals := h.e, h.vals
	hooktok := "hooktok-" + alnum(20)
	e.putSecret("hooktok", hooktok)
	expect := expectStatus(t)
	e.work("lq_echo", 4, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		return workers.Output{Data: map[string]any{"ok": true, "_secrets": map[string]any{"v": vals["data"]}}}, nil
	})

	// Variables from sealed data in the target and in the child that
	// blocks, read through every strategy.
	sec := "${workflow.secrets.tok}"
	e.register(`{"name":"lq_child","tasks":[
	  {"name":"sv","taskReferenceName":"csv","type":"SET_VARIABLE","inputParameters":{"ck":"`+sec+`","ci":"${workflow.input._secrets.c}"}},
	  {"name":"ch","taskReferenceName":"ch","type":"HUMAN","inputParameters":{"s":"`+sec+`","c":"${workflow.input._secrets.c}"}}]}`,
		`{"name":"lq_main","maskedFields":["mk"],"tasks":[
	  {"name":"lq_echo","taskReferenceName":"a","inputParameters":{"s":"`+sec+`"}},
	  {"name":"sv","taskReferenceName":"sv","type":"SET_VARIABLE","inputParameters":{"fromSecret":"`+sec+`","fromData":"${a.output._secrets.v}",
	    "fromMasked":"${workflow.input.mk}","_secrets":{"s":"`+sec+`"}}},
	  {"name":"sub","taskReferenceName":"sub","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"lq_child"},
	    "inputParameters":{"_secrets":{"c":"${a.output._secrets.v}"}}},
	  {"name":"h","taskReferenceName":"h","type":"HUMAN","inputParameters":{"s":"`+sec+`","d":"${a.output._secrets.v}"}}]}`)
	var ids []string
	for _, strat := range []string{"TARGET_WORKFLOW", "BLOCKING_WORKFLOW", "BLOCKING_TASK", "BLOCKING_TASK_INPUT", "BLOCKING_TASK_LIST"} {
		var run conductor.WorkflowRun
		e.decode(http.StatusOK, "POST", "/api/workflow/execute/lq_main/1?waitForSeconds=10&returnStrategy="+strat,
			map[string]any{"input": map[string]any{"mk": vals["mk"]}}, &run)
		ids = append(ids, run.TargetWorkflowID)
		tv := run.TargetWorkflowVariables
		for _, k := range []string{"fromSecret", "fromData", "fromMasked", "_secrets"} {
			if tv[k] != "***" {
				t.Errorf("%s: targetWorkflowVariables %s = %v, want ***", strat, k, tv[k])
			}
		}
		if run.ResponseType != strat || run.TargetWorkflowStatus != conductor.WorkflowRunning {
			t.Errorf("%s: answered %s, target %s", strat, run.ResponseType, run.TargetWorkflowStatus)
		}
		switch strat {
		case "BLOCKING_WORKFLOW":
			if run.BlockingTaskReferenceName != "ch" || run.WorkflowID == run.TargetWorkflowID || run.Variables["ck"] != "***" || run.Variables["ci"] != "***" {
				t.Errorf("%s: blocking %q in %s, variables %v", strat, run.BlockingTaskReferenceName, run.WorkflowID, run.Variables)
			}
		case "BLOCKING_TASK", "BLOCKING_TASK_INPUT":
			if run.ReferenceTaskName != "ch" {
				t.Errorf("%s: blocking %q", strat, run.ReferenceTaskName)
			}
		case "BLOCKING_TASK_LIST":
			if len(run.Tasks) != 1 || run.Tasks[0].ReferenceTaskName != "ch" {
				t.Errorf("%s: tasks %v", strat, run.Tasks)
			}
		}
	}
	if len(ids) != 5 {
		t.Fatalf("started %d workflows, want 5", len(ids))
	}

	// A reason quoting the secret and sealed data, read through the
	// TaskRun: the child's HUMAN task, then the parent's, failed and
	// retried.
	child := taskByRef(e.workflow(ids[0]), "sub").SubWorkflowID
	quote := "saw " + vals["tok"] + " and " + vals["data"] + " and " + vals["upd"]
	for _, strat := range []string{"BLOCKING_TASK", "BLOCKING_TASK_INPUT", "BLOCKING_TASK_LIST", "BLOCKING_WORKFLOW"} {
		st, body := e.do("POST", "/api/workflow/"+child+"/state?returnStrategy="+strat, map[string]any{"taskReferenceName": "ch",
			"variables":  map[string]any{"_secrets": map[string]any{"u": vals["upd"]}, "note": "v " + vals["upd"]},
			"taskResult": map[string]any{"status": "IN_PROGRESS", "reasonForIncompletion": quote, "outputData": map[string]any{"_secrets": map[string]any{"x": vals["upd"]}}}})
		expect("child state "+strat, st, body, 200)
	}
	var run conductor.WorkflowRun
	e.decode(http.StatusOK, "POST", "/api/workflow/"+child+"/state?returnStrategy=BLOCKING_TASK", map[string]any{"taskReferenceName": "ch",
		"taskResult": map[string]any{"status": "IN_PROGRESS", "reasonForIncompletion": quote}}, &run)
	if run.ReferenceTaskName != "ch" || !strings.HasPrefix(run.ReasonForIncompletion, "saw ") || !strings.Contains(run.ReasonForIncompletion, "***") {
		t.Errorf("the TaskRun of ch: %q, reason %q", run.ReferenceTaskName, run.ReasonForIncompletion)
	}
	st, body := e.do("POST", "/api/tasks/"+child+"/COMPLETED/signal/sync?returnStrategy=BLOCKING_TASK",
		map[string]any{"_secrets": map[string]any{"x": vals["upd"]}})
	expect("child signal", st, body, 200)
	e.decode(http.StatusOK, "POST", "/api/workflow/"+ids[0]+"/state?returnStrategy=BLOCKING_TASK", map[string]any{"taskReferenceName": "h",
		"taskResult": map[string]any{"status": "FAILED_WITH_TERMINAL_ERROR", "reasonForIncompletion": quote}}, &run)
	e.waitStatus(ids[0], conductor.WorkflowFailed)
	e.must(http.StatusNoContent, "POST", "/api/workflow/"+ids[0]+"/retry", nil)
	e.decode(http.StatusOK, "POST", "/api/tasks/"+ids[0]+"/IN_PROGRESS/signal/sync?returnStrategy=BLOCKING_TASK",
		map[string]any{"_secrets": map[string]any{"x": vals["upd"]}}, &run)
	if run.ReferenceTaskName != "h" || run.RetriedTaskID == "" {
		t.Errorf("the retried h's TaskRun: %q, retriedTaskId %q", run.ReferenceTaskName, run.RetriedTaskID)
	}
	for _, strat := range []string{"TARGET_WORKFLOW", "BLOCKING_WORKFLOW", "BLOCKING_TASK_LIST"} {
		st, body = e.do("POST", "/api/tasks/"+ids[0]+"/IN_PROGRESS/signal/sync?returnStrategy="+strat,
			map[string]any{"_secrets": map[string]any{"x": vals["upd"]}})
		expect("signal "+strat, st, body, 200)
	}

	// Idempotency keys refusing starts and a restart of workflows whose
	// input holds _secrets data.
	e.register(`{"name":"lq_key","tasks":[{"name":"h","taskReferenceName":"h","type":"HUMAN","inputParameters":{"i":"${workflow.input._secrets.i}"}}]}`)
	key := "key-" + alnum(12)
	keyed := func(strategy string) (int, string) {
		return e.do("POST", "/api/workflow", map[string]any{"name": "lq_key", "idempotencyKey": key, "idempotencyStrategy": strategy,
			"input": map[string]any{"_secrets": map[string]any{"i": vals["idem"]}}})
	}
	st, first := keyed("FAIL_ON_RUNNING")
	expect("keyed start", st, first, 200)
	st, body = keyed("FAIL_ON_RUNNING")
	expect("keyed start while it runs", st, body, 409)
	e.must(http.StatusNoContent, "DELETE", "/api/workflow/"+first, nil)
	e.waitStatus(first, conductor.WorkflowTerminated)
	st, second := keyed("FAIL_ON_RUNNING")
	expect("keyed start once it ended", st, second, 200)
	st, body = e.do("POST", "/api/workflow/"+first+"/restart", nil)
	expect("restart while another runs with the key", st, body, 409)
	if !strings.Contains(body, `is RUNNING`) {
		t.Errorf("restart refused: %s", body)
	}
	st, body = keyed("FAIL")
	expect("FAIL start", st, body, 409)
	ids = append(ids, first, second)

	// Keys of the workflows a SUB_WORKFLOW or a START_WORKFLOW starts,
	// read from variables set from a secret, from _secrets data and from
	// a maskedFields input, and from such data itself: kept in the
	// child's record and in the read model's list of each key's
	// workflows (h/).
	e.register(`{"name":"lq_key_child","tasks":[{"name":"lq_echo","taskReferenceName":"a"}]}`,
		`{"name":"lq_key_rl","rateLimitConfig":{"rateLimitKey":"${workflow.input.t}","concurrentExecLimit":5},"tasks":[{"name":"lq_echo","taskReferenceName":"a"}]}`,
		`{"name":"lq_keys","maskedFields":["mk"],"tasks":[
	  {"name":"lq_echo","taskReferenceName":"a"},
	  {"name":"sv","taskReferenceName":"sv","type":"SET_VARIABLE","inputParameters":{"vs":"`+sec+`","vd":"${a.output._secrets.v}","vm":"${workflow.input.mk}"}},
	  {"name":"sub","taskReferenceName":"k1","type":"SUB_WORKFLOW","optional":true,"subWorkflowParam":{"name":"lq_key_child","idempotencyKey":"${workflow.variables.vs}"}},
	  {"name":"sub","taskReferenceName":"k2","type":"SUB_WORKFLOW","optional":true,"subWorkflowParam":{"name":"lq_key_child","idempotencyKey":"${workflow.variables.vd}"}},
	  {"name":"sub","taskReferenceName":"k3","type":"SUB_WORKFLOW","optional":true,"subWorkflowParam":{"name":"lq_key_child","idempotencyKey":"k-${workflow.variables.vm}"}},
	  {"name":"st","taskReferenceName":"k4","type":"START_WORKFLOW","optional":true,"inputParameters":{"startWorkflow":{"name":"lq_key_child","idempotencyKey":"${workflow.variables.vs}"}}},
	  {"name":"st","taskReferenceName":"k5","type":"START_WORKFLOW","optional":true,"inputParameters":{"startWorkflow":{"name":"lq_key_child","idempotencyKey":"${a.output._secrets.v}"}}},
	  {"name":"st","taskReferenceName":"k6","type":"START_WORKFLOW","optional":true,"inputParameters":{"startWorkflow":{"name":"lq_key_child","idempotencyKey":"${workflow.input.mk}"}}},
	  {"name":"st","taskReferenceName":"k7","type":"START_WORKFLOW","optional":true,"inputParameters":{"startWorkflow":{"name":"lq_key_child","idempotencyKey":"pre-${workflow.variables.vd}"}}},
	  {"name":"sub","taskReferenceName":"k8","type":"SUB_WORKFLOW","optional":true,"subWorkflowParam":{"name":"lq_key_rl"},"inputParameters":{"t":"${workflow.variables.vm}"}},
	  {"name":"st","taskReferenceName":"k9","type":"START_WORKFLOW","optional":true,"inputParameters":{"startWorkflow":{"name":"lq_key_rl","input":{"t":"r-${workflow.variables.vs}"}}}}]}`)
	kid := e.start("lq_keys", map[string]any{"mk": vals["mk"]})
	kwf := e.waitStatus(kid, conductor.WorkflowCompleted)
	ids = append(ids, kid)
	// Every one is refused, naming its field: those read from variables
	// holding "***" (every key but k1's read in a later decision than
	// the one setting them) started their children keyed "***", "k-***"
	// or "pre-***", which every such child shared.
	for ref, field := range map[string]string{"k1": "subWorkflowParam.idempotencyKey", "k2": "subWorkflowParam.idempotencyKey",
		"k3": "subWorkflowParam.idempotencyKey", "k4": "startWorkflow.idempotencyKey", "k5": "startWorkflow.idempotencyKey",
		"k6": "startWorkflow.idempotencyKey", "k7": "startWorkflow.idempotencyKey",
		"k8": "rateLimitConfig.rateLimitKey", "k9": "rateLimitConfig.rateLimitKey"} {
		tk := taskByRef(kwf, ref)
		if tk.Status != conductor.TaskCompletedWithErrors || !strings.Contains(tk.ReasonForIncompletion, field) {
			t.Errorf("%s, its key read from a secret or sealed data, is %s (%q), want refused naming %s", ref, tk.Status, tk.ReasonForIncompletion, field)
		}
	}
	for _, tk := range kwf.Tasks {
		cid, _ := tk.OutputData["subWorkflowId"].(string)
		if c, _ := tk.OutputData["workflowId"].(string); c != "" {
			cid = c
		}
		if cid != "" {
			e.waitStatus(cid, conductor.WorkflowCompleted)
			ids = append(ids, cid)
		}
	}

	// A webhook delivery sent again, its key held.
	e.register(`{"name":"lq_hook","tasks":[{"name":"lq_echo","taskReferenceName":"a","inputParameters":{"_secrets":{"p":"${workflow.input._secrets.p}"}}}]}`)
	var hook conductor.WebhookConfig
	e.decode(http.StatusOK, "POST", "/api/metadata/webhook", map[string]any{"name": "lqh", "verifier": "HEADER_BASED",
		"headers": map[string]string{"X-T": "${workflow.secrets.hooktok}"}, "workflowsToStart": map[string]any{"lq_hook": 1, "idempotencyKey": "${workflow.input.id}",
			"idempotencyStrategy": "FAIL"}}, &hook)
	payload := `{"id":"d-` + alnum(8) + `","_secrets":{"p":"` + vals["hook"] + `"}}`
	for i := range 2 {
		st, body = e.deliver(hook.ID, map[string]string{"X-T": hooktok}, payload)
		expect(fmt.Sprint("deliver ", i), st, body, 200)
		if strings.Contains(body, vals["hook"]) {
			t.Errorf("delivery %d answered %s", i, body)
		}
	}
	if got := testutil.MetricValue(t, e.node.Registry(), "flowvault_webhook_deliveries_total", map[string]string{"outcome": "duplicate"}); got != 1 {
		t.Errorf("duplicate deliveries %v, want 1", got)
	}
	if !strings.Contains(h.logs.String(), "webhook delivery was a duplicate") {
		t.Error("the duplicate delivery was not logged")
	}

	// An optional DO_WHILE timing out with its iteration's child holding
	// the secret.
	e.must(http.StatusNoContent, "POST", "/api/metadata/taskdefs",
		`[{"name":"lq_loop","timeoutSeconds":2,"timeoutPolicy":"RETRY","responseTimeoutSeconds":1}]`)
	e.register(`{"name":"lq_loop_child","tasks":[{"name":"h","taskReferenceName":"h","type":"HUMAN","inputParameters":{"s":"`+sec+`","c":"${workflow.input._secrets.c}"}}]}`,
		`{"name":"lq_loop_flow","tasks":[{"name":"lq_echo","taskReferenceName":"a"},
	  {"name":"lq_loop","taskReferenceName":"loop","type":"DO_WHILE","optional":true,"loopCondition":"$.loop['iteration'] < 3",
	    "loopOver":[{"name":"sub","taskReferenceName":"lsub","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"lq_loop_child"},
	      "inputParameters":{"_secrets":{"c":"${a.output._secrets.v}"}}}]},
	  {"name":"after","taskReferenceName":"after","type":"HUMAN"}]}`)
	lid := e.start("lq_loop_flow", nil)
	ids = append(ids, lid)
	testutil.Eventually(t, 30*time.Second, 100*time.Millisecond, func() error {
		wf := e.workflow(lid)
		if after := taskByRef(wf, "after"); after == nil {
			return fmt.Errorf("the loop has not timed out: %s", wf.Status)
		}
		return nil
	})
	loopChild := taskByRef(e.workflow(lid), "lsub__1").SubWorkflowID
	if wf := e.waitStatus(loopChild, conductor.WorkflowTerminated); !strings.Contains(wf.ReasonForIncompletion, "timed out") {
		t.Errorf("the abandoned iteration's child: %q", wf.ReasonForIncompletion)
	}
	ids = append(ids, loopChild)

	// Definitions refused for their variables.
	pad := strings.Repeat("x", 256<<10)
	def := map[string]any{"name": "lq_big", "variables": map[string]any{"_secrets": map[string]any{"b": vals["big"]}, "note": vals["big"], "pad": pad},
		"tasks": []any{map[string]any{"name": "h", "taskReferenceName": "h", "type": "HUMAN"}}}
	st, body = e.do("POST", "/api/metadata/workflow", def)
	expect("register big variables", st, body, 413)
	st, body = e.do("POST", "/api/workflow", map[string]any{"name": "lq_big", "workflowDef": def})
	expect("inline start big variables", st, body, 413)

	// The lists and scrapes changed today.
	for _, p := range []string{"/api/secrets-v2", "/api/secrets/v2", "/api/tasks/queue/sizes?taskType=lq_echo,ch,h", "/health", "/metrics", "/api/audit",
		"/api/workflow/search?freeText=*&size=100"} {
		e.must(http.StatusOK, "GET", p, nil)
	}
	e.must(http.StatusOK, "GET", "/api/secrets", nil)
	e.must(http.StatusOK, "POST", "/api/secrets", nil)
	for _, id := range append(ids, child) {
		e.must(http.StatusOK, "GET", "/api/workflow/"+id+"?includeTasks=true", nil)
	}
	h.scan(t)
}
