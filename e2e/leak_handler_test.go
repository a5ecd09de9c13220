package e2e_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/flowvault/flowvault/internal/nodetest"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/workers"
)

// An event handler's start is sealed as any start is: a handler naming
// its workflow by an expression ("${flow}") and one naming it, each
// giving a masked field from the event, start workflows whose input
// reads "***" for it. A handler naming its workflow by an expression and
// setting the masked field to data of its own is refused, 400 naming the
// field. Every answer, the log, every stream, file and Pebble key and
// value is searched for each value, and none holds one. The refused
// handler was taken unchecked: the metadata log and read model held its
// value in plain text.
func TestLeakOnHandlerStarts(t *testing.T) {
	t.Parallel()
	h := startHunt(t, "hexpr", "hnamed", "hlit")
	e, vals := h.e, h.vals
	expect := expectStatus(t)
	e.work("hs_echo", 2, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		return workers.Output{Data: map[string]any{"ok": true}}, nil
	})
	e.register(`{"name":"hs_masked","maskedFields":["pw"],"tasks":[{"name":"hs_echo","taskReferenceName":"a","inputParameters":{"p":"${workflow.input.pw}"}}]}`)

	st, body := e.do("POST", "/api/event", `{"name":"hs_lit","event":"nats:hs.evt","active":true,"actions":[
	  {"action":"start_workflow","start_workflow":{"name":"${flow}","input":{"pw":"`+vals["hlit"]+`"}}}]}`)
	expect("a handler naming its workflow by an expression, with pw of its own", st, body, http.StatusBadRequest)
	if !strings.Contains(body, "actions[0].start_workflow.input.pw") {
		t.Errorf("refused %s, want it naming actions[0].start_workflow.input.pw", body)
	}
	e.must(http.StatusNoContent, "POST", "/api/event", `[
	  {"name":"hs_expr","event":"nats:hs.evt","active":true,"actions":[
	    {"action":"start_workflow","start_workflow":{"name":"${flow}","correlationId":"hs-expr","input":{"pw":"${expr}"}}}]},
	  {"name":"hs_named","event":"nats:hs.evt","active":true,"actions":[
	    {"action":"start_workflow","start_workflow":{"name":"hs_masked","correlationId":"hs-named","input":{"pw":"${named}${suffix}"}}}]}]`)

	creds, err := e.node.NATS().EventPublisherCredentials()
	if err != nil {
		t.Fatal(err)
	}
	event, _ := json.Marshal(map[string]any{"flow": "hs_masked", "expr": vals["hexpr"], "named": vals["hnamed"], "suffix": "-x"})
	publishEvent(t, nodetest.Connect(t, e.node, creds), "hs.evt", event)
	for _, corr := range []string{"hs-expr", "hs-named"} {
		wf := e.waitStatus(e.waitCorrelated("hs_masked", corr), conductor.WorkflowCompleted)
		if wf.Input["pw"] != "***" {
			t.Errorf("the workflow %s started shows pw %v, want ***", corr, wf.Input["pw"])
		}
	}
	h.scan(t)
}
