package e2e_test

import (
	"net/http"
	"testing"

	"github.com/flowvault/flowvault/schemas/conductor"
)

// An upgrade onto a version whose maskedFields names a field of the
// workflow input it gives seals that field, as a start of that version
// does: the input was sealed by the fields of the version it ran before,
// which named none, so the value went into the upgrade's record, the
// read models and the files in plain text, which views showed as "***"
// and compaction could not destroy. Every answer, the log, every
// stream, file and Pebble key and value is searched for the value.
func TestLeakOnUpgradeOntoMaskedFields(t *testing.T) {
	t.Parallel()
	h := startHunt(t, "upcard")
	e, vals := h.e, h.vals
	e.register(`{"name":"up_masked","version":1,"tasks":[{"name":"g","taskReferenceName":"g","type":"WAIT"}]}`,
		`{"name":"up_masked","version":2,"maskedFields":["card"],"tasks":[{"name":"g","taskReferenceName":"g","type":"WAIT"}]}`)
	v1 := 1
	id := e.must(http.StatusOK, "POST", "/api/workflow", conductor.StartWorkflowRequest{Name: "up_masked", Version: &v1,
		Input: map[string]any{"plain": "yes"}})
	e.must(http.StatusOK, "POST", "/api/workflow/"+id+"/upgrade", map[string]any{"name": "up_masked", "version": 2,
		"workflowInput": map[string]any{"card": vals["upcard"]}})
	if wf := e.workflow(id); wf.WorkflowVersion != 2 || wf.Input["card"] != "***" {
		t.Fatalf("upgraded: version %d, card %v, want 2 and ***", wf.WorkflowVersion, wf.Input["card"])
	}
	e.must(http.StatusOK, "POST", "/api/tasks/"+id+"/g/COMPLETED", map[string]any{})
	e.waitStatus(id, conductor.WorkflowCompleted)
	h.scan(t)
}
