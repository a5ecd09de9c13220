package e2e_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/workers"
)

// Every hand-off point resolves secret references, and none stores the
// value: INLINE and JSON_JQ_TRANSFORM see it and their outputs are
// redacted, SET_VARIABLE seals it under _secrets (a later task gets it) and
// redacts it elsewhere, and a SUB_WORKFLOW's child gets it sealed in its
// input.
func TestHandOffPoints(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const value = "handoff-secret-XYZ123"
	e.putSecret("hs", value)
	e.register(`{"name":"child_uses","tasks":[{"name":"child_worker","taskReferenceName":"cw","inputParameters":{"got":"${workflow.input.token}"}}],
	  "outputParameters":{"saw":"${cw.output.saw}"}}`,
		`{"name":"handoffs","tasks":[
	  {"name":"inline","taskReferenceName":"inline","type":"INLINE","inputParameters":{"evaluatorType":"graaljs",
	    "s":"${workflow.secrets.hs}","expression":"(function(){ return {len: $.s.length, echo: $.s}; })();"}},
	  {"name":"jq","taskReferenceName":"jq","type":"JSON_JQ_TRANSFORM","inputParameters":{"s":"${workflow.secrets.hs}","queryExpression":"{n: (.s | length), same: .s}"}},
	  {"name":"setv","taskReferenceName":"setv","type":"SET_VARIABLE","inputParameters":{"_secrets":{"tok":"${workflow.secrets.hs}"},"plain":"${workflow.secrets.hs}"}},
	  {"name":"use_var","taskReferenceName":"use_var","inputParameters":{"tok":"${workflow.variables._secrets.tok}","plain":"${workflow.variables.plain}"}},
	  {"name":"child","taskReferenceName":"child","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"child_uses"},"inputParameters":{"token":"${workflow.secrets.hs}"}}]}`)
	varIn := make(chan map[string]any, 1)
	e.work("use_var", 1, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		varIn <- task.InputData
		return workers.Output{}, nil
	})
	e.work("child_worker", 1, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		return workers.Output{Data: map[string]any{"saw": task.InputData["got"] == value}}, nil
	})
	id := e.start("handoffs", nil)
	in := <-varIn
	if in["tok"] != value || in["plain"] != "***" {
		t.Fatalf("task after SET_VARIABLE got %v: want the _secrets value, and *** for the redacted plain one", in)
	}
	wf := e.waitStatus(id, conductor.WorkflowCompleted)
	inline := taskByRef(wf, "inline").OutputData["result"].(map[string]any)
	if inline["len"] != float64(len(value)) || inline["echo"] != "***" {
		t.Fatalf("INLINE output %v: it must have seen the value, and its echo must be redacted", inline)
	}
	jq := taskByRef(wf, "jq").OutputData["result"].(map[string]any)
	if jq["n"] != float64(len(value)) || jq["same"] != "***" {
		t.Fatalf("JQ output %v", jq)
	}
	child := taskByRef(wf, "child")
	if child.OutputData["saw"] != true {
		t.Fatalf("the child's worker did not get the value: %v", child.OutputData)
	}
	sub := e.workflow(child.SubWorkflowID)
	for _, id := range []string{id, child.SubWorkflowID} {
		view, _ := json.Marshal(e.workflow(id))
		if strings.Contains(string(view), value) || strings.Contains(e.rawLog(id), value) {
			t.Fatalf("workflow %s shows or logs the value: %s", id, view)
		}
	}
	if sub.Input["token"] != "***" {
		t.Fatalf("the child's input shows %v", sub.Input["token"])
	}
	// The child started with input sealed under its own secrets key, so
	// compaction must know to destroy that key when the child ends.
	sealed := false
	for _, ev := range e.events(child.SubWorkflowID) {
		_, ok := ev.(*schemas.SecretsSealed)
		sealed = sealed || ok
	}
	if !sealed {
		t.Fatal("the child's log does not record that it holds sealed secrets: it would never be compacted")
	}
}
