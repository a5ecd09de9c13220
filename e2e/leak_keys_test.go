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

// The leak hunt over the keys a start keeps and shows, and the answers
// added alongside: a webhook's idempotency key read from a payload field
// its workflow copies into a _secrets block or names in maskedFields, a
// workflow rate limit key read from an input a task takes under _secrets
// (or from a correlation id it takes so), BLOCKING_TASK,
// BLOCKING_TASK_INPUT and BLOCKING_TASK_LIST answers of execute, updateState and signal/sync on a
// HUMAN task whose output holds _secrets data and a copy of it, the
// variables limit's refusal (413) of variables holding _secrets data, a
// registration refused for misplaced secret and environment references,
// and task searches by executionTime and queueWaitTime: every answer,
// the log, /metrics, every stream, file and Pebble key and value is
// searched for each value, and none holds one. The keys were kept in
// plain text in the start's record, shown by the execution beside an
// input that read "***", searched and indexed: such a start is refused
// now (the delivery starts nothing, the start answers 400).
func TestLeakOnStartKeys(t *testing.T) {
	t.Parallel()
	envValue := "ev" + alnum(30) // environment values are no secret: not looked for everywhere
	h := startHunt(t, "tok", "hooksec", "hookmsk", "rlkey", "bt", "vars", "srch")
	e, vals := h.e, h.vals
	e.must(http.StatusOK, "PUT", "/api/environment/lt_env", envValue)
	hooktok := "hooktok-" + alnum(20)
	e.putSecret("hooktok", hooktok)
	expect := expectStatus(t)

	// Registration refusals naming misplaced references.
	st, body := e.do("POST", "/api/metadata/workflow", `{"name":"lt_bad","tasks":[{"name":"lt_echo","taskReferenceName":"a",
	  "inputParameters":{"a":"${$.workflow.secrets.tok}","b":"${$.concat('k-', $.workflow.env.lt_env)}","c":"${workflow.input.${workflow.secrets.tok}}"}}]}`)
	expect("register misplaced", st, body, 400)
	if strings.Contains(body, envValue) || !strings.Contains(body, "workflow.secrets.tok") || !strings.Contains(body, "workflow.env.lt_env") {
		t.Errorf("registration refused: %s", body)
	}

	e.work("lt_echo", 4, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		return workers.Output{Data: map[string]any{"ok": true}}, nil
	})

	// Webhook idempotency keys reading what the workflow seals.
	e.register(`{"name":"lt_hook","tasks":[{"name":"lt_echo","taskReferenceName":"a","inputParameters":{"_secrets":{"t":"${workflow.input.tok}"}}}]}`,
		`{"name":"lt_hookm","maskedFields":["mk"],"tasks":[{"name":"lt_echo","taskReferenceName":"a","inputParameters":{"x":1}}]}`)
	var ids []string
	hooks := 0
	for _, c := range []struct{ wf, key, body string }{
		{"lt_hook", "${workflow.input.tok}", `{"tok":"` + vals["hooksec"] + `"}`},
		{"lt_hookm", "${workflow.input.mk}", `{"mk":"` + vals["hookmsk"] + `"}`},
	} {
		var hook conductor.WebhookConfig
		e.decode(http.StatusOK, "POST", "/api/metadata/webhook", map[string]any{"name": "lth_" + c.wf, "verifier": "HEADER_BASED",
			"headers": map[string]string{"X-T": "${workflow.secrets.hooktok}"}, "workflowsToStart": map[string]any{c.wf: 1, "idempotencyKey": c.key}}, &hook)
		st, body = e.deliver(hook.ID, map[string]string{"X-T": hooktok}, c.body)
		expect("deliver "+c.wf, st, body, 200)
		hooks++
		var out struct{ WorkflowIDs []string }
		mustJSON(t, body, &out)
		if len(out.WorkflowIDs) != 0 {
			t.Errorf("delivery to %s started %v with a key of sealed data", c.wf, out.WorkflowIDs)
		}
	}
	if got := testutil.MetricValue(t, e.node.Registry(), "flowvault_webhook_deliveries_total", map[string]string{"outcome": "partial"}); got != float64(hooks) {
		t.Errorf("partial deliveries %v, want %d", got, hooks)
	}

	// A workflow rate limit's key read from an input field a task then
	// copies into a _secrets block.
	e.register(`{"name":"lt_rl","rateLimitConfig":{"rateLimitKey":"${workflow.input.k}","concurrentExecLimit":2},
	  "tasks":[{"name":"lt_echo","taskReferenceName":"a","inputParameters":{"_secrets":{"t":"${workflow.input.k}"}}}]}`,
		`{"name":"lt_rlm","maskedFields":["k"],"rateLimitConfig":{"rateLimitKey":"${workflow.input.k}","concurrentExecLimit":2},
	  "tasks":[{"name":"lt_echo","taskReferenceName":"a"}]}`,
		`{"name":"lt_rlc","rateLimitConfig":{"rateLimitKey":"${workflow.correlationId}","concurrentExecLimit":2},
	  "tasks":[{"name":"lt_echo","taskReferenceName":"a","inputParameters":{"_secrets":{"t":"${workflow.correlationId}"}}}]}`)
	st, body = e.do("POST", "/api/workflow/lt_rl", map[string]any{"k": vals["rlkey"]})
	expect("start lt_rl", st, body, 400)
	st, body = e.do("POST", "/api/workflow/lt_rlm", map[string]any{"k": vals["rlkey"]})
	expect("start lt_rlm", st, body, 400)
	st, body = e.do("POST", "/api/workflow", map[string]any{"name": "lt_rlc", "correlationId": vals["rlkey"]})
	expect("start lt_rlc", st, body, 400)

	// BLOCKING_TASK answers of a HUMAN task holding _secrets output.
	e.register(`{"name":"lt_bt","tasks":[{"name":"h","taskReferenceName":"h","type":"HUMAN","inputParameters":{"s":"${workflow.secrets.tok}"}},
	  {"name":"h2","taskReferenceName":"h2","type":"HUMAN","inputParameters":{"d":"${h.output._secrets.x}"}}]}`)
	for _, strat := range []string{"BLOCKING_TASK", "BLOCKING_TASK_INPUT", "BLOCKING_TASK_LIST"} {
		st, body = e.do("POST", "/api/workflow/execute/lt_bt/1?waitForSeconds=10&returnStrategy="+strat, map[string]any{"input": map[string]any{}})
		expect("execute "+strat, st, body, 200)
		i := strings.Index(body, `"targetWorkflowId":"`)
		if i < 0 {
			t.Fatalf("no target: %s", body)
		}
		id := body[i+20 : i+56]
		ids = append(ids, id)
		st, body = e.do("POST", "/api/workflow/"+id+"/state?returnStrategy="+strat, map[string]any{"taskReferenceName": "h",
			"taskResult": map[string]any{"status": "IN_PROGRESS", "outputData": map[string]any{"_secrets": map[string]any{"x": vals["bt"]}, "copy": vals["bt"]}}})
		expect("state IN_PROGRESS "+strat, st, body, 200)
		st, body = e.do("POST", "/api/workflow/"+id+"/state?returnStrategy="+strat, map[string]any{"taskReferenceName": "h",
			"taskResult": map[string]any{"status": "COMPLETED", "outputData": map[string]any{"_secrets": map[string]any{"x": vals["bt"]}, "copy": vals["bt"]}}})
		expect("state COMPLETED "+strat, st, body, 200)
		st, body = e.do("POST", "/api/tasks/"+id+"/IN_PROGRESS/signal/sync?returnStrategy="+strat, map[string]any{"_secrets": map[string]any{"x": vals["bt"]}, "c2": vals["bt"]})
		expect("signal IN_PROGRESS "+strat, st, body, 200)
		st, body = e.do("POST", "/api/tasks/"+id+"/COMPLETED/signal/sync?returnStrategy="+strat, map[string]any{"_secrets": map[string]any{"x": vals["bt"]}, "c2": vals["bt"]})
		expect("signal COMPLETED "+strat, st, body, 200)
	}

	// The variables limit's refusal.
	e.register(`{"name":"lt_vars","tasks":[{"name":"h","taskReferenceName":"h","type":"HUMAN"}]}`)
	vid := e.start("lt_vars", map[string]any{})
	ids = append(ids, vid)
	st, body = e.do("POST", "/api/workflow/"+vid+"/variables", map[string]any{"_secrets": map[string]any{"v": vals["vars"]}, "note": vals["vars"], "pad": strings.Repeat("x", 300<<10)})
	expect("variables over", st, body, 413)
	st, body = e.do("POST", "/api/workflow/"+vid+"/state", map[string]any{"taskReferenceName": "h",
		"variables":  map[string]any{"_secrets": map[string]any{"v": vals["vars"]}, "note": vals["vars"], "pad": strings.Repeat("x", 300<<10)},
		"taskResult": map[string]any{"status": "COMPLETED", "outputData": map[string]any{"_secrets": map[string]any{"y": vals["vars"]}}}})
	expect("state variables over", st, body, 413)

	// Task search by executionTime and queueWaitTime.
	e.register(`{"name":"lt_srch","tasks":[{"name":"lt_echo","taskReferenceName":"a","inputParameters":{"_secrets":{"t":"${workflow.input.s}"},"p":"${workflow.secrets.tok}"}},
	  {"name":"h","taskReferenceName":"h","type":"HUMAN","inputParameters":{"c":"${a.output.ok}"}}]}`)
	sid := e.start("lt_srch", map[string]any{"s": vals["srch"]})
	ids = append(ids, sid)
	testutil.Eventually(t, 20*time.Second, 50*time.Millisecond, func() error {
		if wf := e.workflow(sid); len(wf.Tasks) < 2 {
			return fmt.Errorf("%d tasks", len(wf.Tasks))
		}
		return nil
	})
	for _, q := range []string{
		"/api/tasks/search?query=executionTime%3E%3D0&sort=executionTime:DESC&size=100",
		"/api/tasks/search?query=queueWaitTime%3E%3D0&sort=queueWaitTime:ASC&size=100",
		"/api/tasks/search-v2?query=executionTime%3E%3D0&sort=executionTime:DESC&size=100",
		"/api/workflow/search?freeText=*&size=100",
	} {
		e.must(http.StatusOK, "GET", q, nil)
	}
	for _, id := range ids {
		e.must(http.StatusOK, "GET", "/api/workflow/"+id+"?includeTasks=true", nil)
	}
	e.must(http.StatusOK, "GET", "/metrics", nil)
	e.must(http.StatusOK, "GET", "/api/audit", nil)
	h.scan(t)
}
