package e2e_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/flowvault/flowvault/schemas/conductor"
)

// A dynamic fork's INLINE takes its script from the fork's input, its
// references resolved as it is handed off: the forked task is configured
// with no script text (its configuration is the dynamic task's), and a
// secret whose quote ends the string the author wrote around it fails it
// naming what follows the quote, which reads ***, as it does for an
// INLINE of the definition.
func TestForkedInlineErrorQuotesNoSplicedName(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	name := "w" + alnum(11)
	e.putSecret("fork_quo", "p4ss'+"+name+"+'")
	e.register(`{"name":"forked_inline","tasks":[
	  {"name":"fork","taskReferenceName":"fork","type":"FORK_JOIN_DYNAMIC","dynamicForkTasksParam":"tasks","dynamicForkTasksInputParamName":"inputs",
	   "inputParameters":{"tasks":[{"name":"inl","taskReferenceName":"dq","type":"INLINE"}],
	     "inputs":{"dq":{"evaluatorType":"javascript","expression":"'${workflow.secrets.fork_quo}'.length"}}}},
	  {"name":"join","taskReferenceName":"join","type":"JOIN"}]}`)
	id := e.start("forked_inline", nil)
	wf := e.waitStatus(id, conductor.WorkflowFailed)
	dq := taskByRef(wf, "dq")
	if dq == nil || !strings.Contains(dq.ReasonForIncompletion, "ReferenceError: *** is not defined") {
		t.Errorf("the forked INLINE: %+v, want it failed with ReferenceError: *** is not defined", dq)
	}
	if view, _ := json.Marshal(wf); strings.Contains(string(view), name) {
		t.Errorf("the workflow's view names %s, the part of the secret after its quote", name)
	}
	if strings.Contains(e.rawLog(id), name) {
		t.Errorf("the workflow's log records name %s, the part of the secret after its quote", name)
	}
}
