package e2e_test

import (
	"net/http"
	"reflect"
	"testing"

	"github.com/flowvault/flowvault/schemas/conductor"
)

// A JSON_JQ_TRANSFORM whose query is its registered task definition's
// inputTemplate registers and runs, as in Conductor, whose registration
// reads the definition; it was refused (400, queryExpression missing).
func TestScriptFromTaskDefinitionTemplate(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.must(http.StatusNoContent, "POST", "/api/metadata/taskdefs",
		`[{"name":"to_names","inputTemplate":{"queryExpression":"[.users[].name]"}}]`)
	e.register(`{"name":"names","tasks":[
	  {"name":"to_names","taskReferenceName":"j","type":"JSON_JQ_TRANSFORM","inputParameters":{"users":"${workflow.input.users}"}}],
	  "outputParameters":{"names":"${j.output.result}"}}`)
	id := e.start("names", map[string]any{"users": []any{map[string]any{"name": "ada"}, map[string]any{"name": "bob"}}})
	wf := e.waitStatus(id, conductor.WorkflowCompleted)
	if got := wf.Output["names"]; !reflect.DeepEqual(got, []any{"ada", "bob"}) {
		t.Fatalf("output names = %#v", got)
	}
	// Without a definition that gives it, the query is still missing.
	e.must(http.StatusBadRequest, "POST", "/api/metadata/workflow", `{"name":"nameless","tasks":[
	  {"name":"no_such_def","taskReferenceName":"j","type":"JSON_JQ_TRANSFORM","inputParameters":{"users":[]}}]}`)
}
