package e2e_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/workers"
)

// Schemas are saved, versioned, read and removed over /api/schema by an
// admin; a definition that enforces one refuses a start whose input does
// not conform (400), fails a task whose input at hand-off does not
// (terminally: the same input fails again), fails a completion whose
// output does not (retried as its definition says), and fails a workflow
// whose output does not. What a refusal says
// names the rule, never the value: here a secret the task was handed and
// the worker echoed.
func TestSchemaEnforcement(t *testing.T) {
	t.Parallel()
	e := newSecureEnv(t)
	_, userToken := e.application("schema-user", "USER")
	user := e.as(userToken)
	raw := make([]byte, 16)
	rand.Read(raw)
	badToken, goodToken := "bad-"+hex.EncodeToString(raw[:8]), "tok-"+hex.EncodeToString(raw[8:])

	order := map[string]any{"name": "order", "version": 1, "type": "JSON", "data": map[string]any{
		"type": "object", "required": []string{"orderId"},
		"properties": map[string]any{"orderId": map[string]any{"type": "string"}, "amount": map[string]any{"type": "number", "minimum": 0}}}}
	user.must(http.StatusForbidden, "POST", "/api/schema", []any{order})
	e.must(http.StatusNoContent, "POST", "/api/schema", []any{order})
	order["data"].(map[string]any)["required"] = []string{"orderId", "amount"}
	e.must(http.StatusNoContent, "POST", "/api/schema?newVersion=true", []any{order})
	for _, bad := range []struct{ body, want string }{
		{`[{"name":"avro","type":"AVRO","data":{}}]`, "only JSON schemas"},
		{`[{"name":"remote","type":"JSON","data":{"$ref":"file:///etc/hostname"}}]`, "not loaded from files or URLs"},
		{`[{"name":"atomic_first","type":"JSON","data":{}},{"name":"bad name\u0001","type":"JSON","data":{}}]`, "[1].name"},
		{`[{"name":"x","type":"JSON","data":{"type":"strung"}}]`, "[0]"},
		{`{"name":"x"}`, "JSON"},
	} {
		if out := e.must(http.StatusBadRequest, "POST", "/api/schema", bad.body); !strings.Contains(out, bad.want) {
			t.Errorf("%s: answer %s does not say %q", bad.body, out, bad.want)
		}
	}
	e.must(http.StatusNotFound, "GET", "/api/schema/atomic_first", nil) // a list with a bad schema saves none
	var latest, first conductor.SchemaDef
	mustJSON(t, user.must(http.StatusOK, "GET", "/api/schema/order", nil), &latest)
	mustJSON(t, user.must(http.StatusOK, "GET", "/api/schema/order/1", nil), &first)
	if latest.Version != 2 || !strings.Contains(string(latest.Data), `"amount"]`) || first.Version != 1 || first.CreatedBy == "" || first.CreateTime == 0 {
		t.Fatalf("latest %+v, version 1 %+v", latest, first)
	}
	var short []conductor.SchemaDef
	mustJSON(t, user.must(http.StatusOK, "GET", "/api/schema?short=true", nil), &short)
	if len(short) != 2 || short[0].Data != nil || short[1].Version != 2 {
		t.Fatalf("short list %+v", short)
	}
	user.must(http.StatusNotFound, "GET", "/api/schema/order/3", nil)

	e.must(http.StatusNoContent, "POST", "/api/schema", []any{
		map[string]any{"name": "pay_in", "type": "JSON", "data": map[string]any{"required": []string{"token"},
			"properties": map[string]any{"token": map[string]any{"type": "string", "pattern": "^tok-"}}}},
		map[string]any{"name": "receipt", "type": "JSON", "data": map[string]any{"required": []string{"receiptId"},
			"properties": map[string]any{"_secrets": map[string]any{"additionalProperties": map[string]any{"type": "string"}}}}},
	})
	e.must(http.StatusNoContent, "POST", "/api/metadata/taskdefs", []any{map[string]any{
		"name": "schema_pay", "retryCount": 1, "retryLogic": "FIXED", "retryDelaySeconds": 0, "responseTimeoutSeconds": 30,
		"inputSchema": map[string]any{"name": "pay_in"}, "outputSchema": map[string]any{"name": "receipt", "version": 1}, "enforceSchema": true}})
	e.register(`{"name":"schema_flow","version":1,"enforceSchema":true,"inputSchema":{"name":"order","version":1,"type":"JSON"},
	  "outputSchema":{"name":"receipt"},"outputParameters":{"receiptId":"${pay.output.receiptId}","_secrets":"${pay.output._secrets}"},
	  "tasks":[{"name":"schema_pay","taskReferenceName":"pay","inputParameters":{"token":"${workflow.secrets.pay_token}","orderId":"${workflow.input.orderId}"}},
	    {"name":"schema_note","taskReferenceName":"note"}]}`)

	// The start: refused before anything is written.
	for _, input := range []map[string]any{{}, {"orderId": 7}, {"orderId": "o-1", "amount": -1}} {
		status, out := e.do("POST", "/api/workflow", conductor.StartWorkflowRequest{Name: "schema_flow", Input: input})
		if status != http.StatusBadRequest || !strings.Contains(out, "input of workflow schema_flow does not conform to schema order version 1") {
			t.Fatalf("start with %v = %d %s", input, status, out)
		}
	}

	var attempts atomic.Int32
	e.work("schema_pay", 1, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		if attempts.Add(1) == 1 {
			return workers.Output{Data: map[string]any{"echo": task.InputData["token"]}}, nil
		}
		return workers.Output{Data: map[string]any{"receiptId": "r-" + task.InputData["orderId"].(string),
			"_secrets": map[string]any{"session": "s-" + task.InputData["orderId"].(string)}}}, nil
	})

	e.work("schema_note", 1, succeed)

	// The task's input, its secret resolved: refused at hand-off, for
	// good.
	e.putSecret("pay_token", badToken)
	id := e.start("schema_flow", map[string]any{"orderId": "o-1"})
	wf := e.waitStatus(id, "FAILED")
	pay := taskByRef(wf, "pay")
	if pay.Status != conductor.TaskFailedWithTerminalError || !strings.Contains(pay.ReasonForIncompletion, `input of task pay does not conform to schema pay_in version 1: at /token: does not match pattern "^tok-"`) {
		t.Fatalf("task %s: %s", pay.Status, pay.ReasonForIncompletion)
	}
	if n := attempts.Load(); n != 0 {
		t.Fatalf("a worker was handed a refused input %d times", n)
	}

	// The worker's output: the first completion fails (it lacks
	// receiptId), the retry's passes; so does the workflow's output, which
	// copies what the retry sealed (checked as "***", as it reads).
	e.putSecret("pay_token", goodToken)
	id = e.start("schema_flow", map[string]any{"orderId": "o-2"})
	wf = e.waitStatus(id, "COMPLETED")
	if len(wf.Tasks) != 3 || wf.Tasks[0].Status != conductor.TaskFailed || wf.Tasks[1].OutputData["receiptId"] != "r-o-2" ||
		wf.Output["receiptId"] != "r-o-2" || wf.Output["_secrets"] != "***" ||
		!strings.Contains(wf.Tasks[0].ReasonForIncompletion, `output of task pay does not conform to schema receipt version 1: at /: missing "receiptId"`) {
		for _, task := range wf.Tasks {
			t.Logf("%s %s %q %v", task.ReferenceTaskName, task.Status, task.ReasonForIncompletion, task.OutputData)
		}
		t.Fatalf("want a failed attempt for the output and a completed retry")
	}
	for _, body := range []string{e.must(http.StatusOK, "GET", "/api/workflow/"+id+"?includeTasks=true", nil), e.rawLog(id)} {
		if strings.Contains(body, goodToken) || strings.Contains(body, badToken) {
			t.Fatalf("a token is in %s", body)
		}
	}

	// A workflow's output, when it would complete.
	e.register(`{"name":"schema_out","version":1,"enforceSchema":true,"outputSchema":{"name":"receipt"},
	  "outputParameters":{"total":"${workflow.input.total}"},
	  "tasks":[{"name":"note","taskReferenceName":"note","type":"SET_VARIABLE","inputParameters":{"seen":true}}]}`)
	wf = e.waitStatus(e.start("schema_out", map[string]any{"total": 3}), "FAILED")
	if wf.ReasonForIncompletion != `output of workflow schema_out does not conform to schema receipt version 1: at /: missing "receiptId"` || wf.Output["total"] != float64(3) {
		t.Fatalf("workflow output refused with %q, output %v", wf.ReasonForIncompletion, wf.Output)
	}
	// So is a TERMINATE's workflowOutput, which completes the workflow
	// with it.
	e.register(`{"name":"schema_term","version":1,"enforceSchema":true,"outputSchema":{"name":"receipt"},
	  "tasks":[{"name":"end","taskReferenceName":"end","type":"TERMINATE",
	    "inputParameters":{"terminationStatus":"COMPLETED","workflowOutput":{"total":"${workflow.input.total}"}}}]}`)
	wf = e.waitStatus(e.start("schema_term", map[string]any{"total": 4}), "FAILED")
	if wf.ReasonForIncompletion != `output of workflow schema_term does not conform to schema receipt version 1: at /: missing "receiptId"` || wf.Output["total"] != float64(4) {
		t.Fatalf("a TERMINATE's output refused with %q, output %v", wf.ReasonForIncompletion, wf.Output)
	}

	// A definition naming a schema that is gone refuses to start.
	user.must(http.StatusForbidden, "DELETE", "/api/schema/order/1", nil)
	e.must(http.StatusNoContent, "DELETE", "/api/schema/order/1", nil)
	if out := e.must(http.StatusBadRequest, "POST", "/api/workflow", conductor.StartWorkflowRequest{Name: "schema_flow", Input: map[string]any{"orderId": "o-3"}}); !strings.Contains(out, "schema order version 1 not found") {
		t.Fatalf("start naming a removed schema: %s", out)
	}
	e.must(http.StatusNoContent, "DELETE", "/api/schema/order", nil)
	e.must(http.StatusNotFound, "GET", "/api/schema/order", nil)
	e.must(http.StatusNotFound, "DELETE", "/api/schema/order", nil)

	var trail struct {
		Entries []struct{ Action, Target string }
	}
	mustJSON(t, e.must(http.StatusOK, "GET", "/api/audit", nil), &trail)
	var actions []string
	for _, en := range trail.Entries {
		if en.Target == "SCHEMA:order" {
			actions = append(actions, en.Action)
		}
	}
	if strings.Join(actions, ",") != "schema.save,schema.save,schema.remove,schema.remove" {
		t.Fatalf("audit of SCHEMA:order: %v", actions)
	}
}

func mustJSON(t testing.TB, body string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(body), v); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
}
