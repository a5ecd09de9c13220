package e2e_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/workers"
)

// A start whose correlation id (or idempotency key) is, or holds, a value
// the start seals (its own _secrets data, a masked field) is refused, 400
// naming the field, never the value: the correlation id was kept in the
// start's record and shown in plain text by GET /api/workflow/{id}, the
// searches and the correlated lookups, beside an input reading "***".
// Every answer, the log, every stream, file and Pebble key and value is
// searched for each value, and none holds one. A SUB_WORKFLOW's child
// sealing its parent's correlation id shows it as "***", as it did.
func TestLeakOnSealedCorrelationIDs(t *testing.T) {
	t.Parallel()
	h := startHunt(t, "corr", "ctext", "cmask", "qcorr", "idem")
	e, vals := h.e, h.vals
	expect := expectStatus(t)
	e.work("sc_echo", 2, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		return workers.Output{Data: map[string]any{"ok": true}}, nil
	})
	e.register(`{"name":"sc_plain","tasks":[{"name":"sc_echo","taskReferenceName":"a"}]}`,
		`{"name":"sc_masked","maskedFields":["mk"],"tasks":[{"name":"sc_echo","taskReferenceName":"a"}]}`,
		`{"name":"sc_child","tasks":[{"name":"sc_echo","taskReferenceName":"a"}]}`,
		`{"name":"sc_parent","tasks":[{"name":"sc_echo","taskReferenceName":"a"},
		  {"name":"sub","taskReferenceName":"sub","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"sc_child"},
		  "inputParameters":{"_secrets":{"c":"${workflow.correlationId}"}}}]}`,
		`{"name":"sc_first","tasks":[{"name":"sc_echo","taskReferenceName":"a","inputParameters":{"_secrets":{"c":"${workflow.correlationId}"}}}]}`)

	for _, c := range []struct {
		what, field string
		req         conductor.StartWorkflowRequest
	}{
		{"correlation id of its _secrets data", "correlationId", conductor.StartWorkflowRequest{Name: "sc_plain",
			Input: map[string]any{"_secrets": map[string]any{"tok": vals["corr"]}}, CorrelationID: vals["corr"]}},
		{"correlation id holding it in text", "correlationId", conductor.StartWorkflowRequest{Name: "sc_plain",
			Input: map[string]any{"_secrets": map[string]any{"tok": vals["ctext"]}}, CorrelationID: "order-" + vals["ctext"]}},
		{"correlation id of a masked field", "correlationId", conductor.StartWorkflowRequest{Name: "sc_masked",
			Input: map[string]any{"mk": vals["cmask"]}, CorrelationID: vals["cmask"]}},
		{"idempotency key of its _secrets data", "idempotencyKey", conductor.StartWorkflowRequest{Name: "sc_plain",
			Input: map[string]any{"_secrets": map[string]any{"tok": vals["idem"]}}, IdempotencyKey: vals["idem"]}},
	} {
		st, body := e.do("POST", "/api/workflow", c.req)
		expect(c.what, st, body, http.StatusBadRequest)
		if !strings.Contains(body, c.field) {
			t.Errorf("%s: refused %s, want it naming %s", c.what, body, c.field)
		}
		if !strings.Contains(body, `"message":"start workflow `+c.req.Name+`: its `+c.field) {
			t.Errorf("%s: refused %s, want the guard's words alone", c.what, body)
		}
	}
	// The start by name, its correlation id in the query.
	st, body := e.do("POST", "/api/workflow/sc_plain?correlationId="+url.QueryEscape(vals["qcorr"]),
		map[string]any{"_secrets": map[string]any{"tok": vals["qcorr"]}})
	expect("start by name", st, body, http.StatusBadRequest)
	if !strings.Contains(body, "correlationId") {
		t.Errorf("start by name refused %s, want it naming correlationId", body)
	}
	for _, v := range []string{vals["corr"], vals["ctext"], vals["cmask"], vals["qcorr"]} {
		var found []conductor.Workflow
		e.decode(http.StatusOK, "GET", "/api/workflow/sc_plain/correlated/"+url.PathEscape(v), nil, &found)
		if len(found) != 0 {
			t.Errorf("%d workflows started correlated by a value sealed", len(found))
		}
	}

	// A child sealing its parent's plain correlation id (not a hunted
	// value: the parent shows it) shows "***" for it.
	// A start whose first task takes its correlation id under _secrets
	// seals it in the start's own decision: refused, as a rate limit
	// key reading it is.
	const parentCorr = "pc-7f3a91d2e4"
	st, body = e.do("POST", "/api/workflow", conductor.StartWorkflowRequest{Name: "sc_first", CorrelationID: parentCorr})
	expect("first task sealing the correlation id", st, body, http.StatusBadRequest)
	if !strings.Contains(body, "correlationId") || strings.Contains(body, parentCorr) {
		t.Errorf("first task sealing the correlation id: refused %s, want it naming correlationId, not the value", body)
	}
	pid := e.must(http.StatusOK, "POST", "/api/workflow", conductor.StartWorkflowRequest{Name: "sc_parent", CorrelationID: parentCorr})
	pwf := e.waitStatus(pid, conductor.WorkflowCompleted)
	cid, _ := taskByRef(pwf, "sub").OutputData["subWorkflowId"].(string)
	if got := e.workflow(cid).CorrelationID; got != "***" {
		t.Errorf("child %q shows correlation id %q, want ***: its input seals it", cid, got)
	}
	h.scan(t)
}

// A rerun's correlation id is the workflow's from then on, kept in the
// reset's record and shown, searched and correlated in plain text as a
// start's is: one that is, or holds, a value the workflow seals (a masked
// field, its _secrets data, a masked field of the rerun's own input) is
// refused, 400 naming the field, never the value, as a start's is. It was
// recorded: GET /api/workflow/{id} showed it beside an input reading
// "***". A plain one is taken as before. Every answer, the log, every
// stream, file and Pebble key and value is searched for each value.
func TestLeakOnSealedRerunCorrelationIDs(t *testing.T) {
	t.Parallel()
	h := startHunt(t, "rmask", "rtext", "rnew", "rtask")
	e, vals := h.e, h.vals
	expect := expectStatus(t)
	e.work("sc_echo", 2, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		return workers.Output{Data: map[string]any{"ok": true}}, nil
	})
	e.register(`{"name":"sc_plain","tasks":[{"name":"sc_echo","taskReferenceName":"a"}]}`,
		`{"name":"sc_masked","maskedFields":["mk"],"tasks":[{"name":"sc_echo","taskReferenceName":"a"}]}`)
	// Each refusal on a workflow of its own: one that took its rerun runs
	// again, and takes none until it ends.
	for _, c := range []struct {
		what, name string
		input      map[string]any
		req        conductor.RerunWorkflowRequest
		fromTask   bool
	}{
		{"its masked field", "sc_masked", map[string]any{"mk": vals["rmask"]}, conductor.RerunWorkflowRequest{CorrelationID: vals["rmask"]}, false},
		{"text holding its _secrets data", "sc_plain", map[string]any{"_secrets": map[string]any{"tok": vals["rtext"]}},
			conductor.RerunWorkflowRequest{CorrelationID: "order-" + vals["rtext"]}, false},
		{"a masked field of the rerun's input", "sc_masked", map[string]any{"mk": "plain-enough"},
			conductor.RerunWorkflowRequest{WorkflowInput: map[string]any{"mk": vals["rnew"]}, CorrelationID: vals["rnew"]}, false},
		{"its masked field, from a task", "sc_masked", map[string]any{"mk": vals["rtask"]}, conductor.RerunWorkflowRequest{CorrelationID: vals["rtask"]}, true},
	} {
		id := e.start(c.name, c.input)
		wf := e.waitStatus(id, conductor.WorkflowCompleted)
		if c.fromTask {
			c.req.ReRunFromTaskID = taskByRef(wf, "a").TaskID
		}
		st, body := e.do("POST", "/api/workflow/"+id+"/rerun", c.req)
		expect(c.what, st, body, http.StatusBadRequest)
		if !strings.Contains(body, "correlationId") {
			t.Errorf("%s: refused %s, want it naming correlationId", c.what, body)
		}
		if got := e.workflow(id).CorrelationID; got != "" {
			t.Errorf("%s: the workflow shows a correlation id of %d characters, want none", c.what, len(got))
		}
	}
	for _, name := range []string{"sc_plain", "sc_masked"} {
		for _, v := range vals {
			var found []conductor.Workflow
			e.decode(http.StatusOK, "GET", "/api/workflow/"+name+"/correlated/"+url.PathEscape(v), nil, &found)
			if len(found) != 0 {
				t.Errorf("%d %s workflows correlated by a value sealed", len(found), name)
			}
		}
	}
	const corr = "rerun-corr-5b7e2c"
	id := e.start("sc_masked", map[string]any{"mk": "plain-enough"})
	e.waitStatus(id, conductor.WorkflowCompleted)
	e.must(http.StatusOK, "POST", "/api/workflow/"+id+"/rerun", conductor.RerunWorkflowRequest{CorrelationID: corr})
	if got := e.waitStatus(id, conductor.WorkflowCompleted).CorrelationID; got != corr {
		t.Errorf("a rerun with a plain correlation id shows %q, want %q", got, corr)
	}
	h.scan(t)
}
