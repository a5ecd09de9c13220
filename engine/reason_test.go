package engine_test

import (
	"strings"
	"testing"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// A reasonForIncompletion given in a task result (a worker's, an update
// of a WAIT or a HUMAN task) is shown cut to 500 characters, as
// Conductor's TaskResult cuts it, while the state keeps it whole (see
// ShownReason); an engine's reason for a system task is shown whole.
func TestWorkerReasonShownCutTo500(t *testing.T) {
	long := strings.Repeat("r", 700)
	def := `{"name":"r","tasks":[
		{"name":"w","taskReferenceName":"w","optional":true,"retryCount":0},
		{"name":"wait","taskReferenceName":"wait","type":"WAIT","optional":true},
		{"name":"human","taskReferenceName":"human","type":"HUMAN","optional":true},
		{"name":"j","taskReferenceName":"j","type":"JSON_JQ_TRANSFORM","inputParameters":{"queryExpression":"."}}]}`
	h := newHarness(t, def, nil)
	h.take("w")
	h.report("w", conductor.TaskFailed, nil, long)
	h.report("wait", conductor.TaskFailed, nil, long)
	h.report("human", conductor.TaskFailed, nil, long)
	for _, ref := range []string{"w", "wait", "human"} {
		task := h.task(ref)
		if task.Reason != long {
			t.Fatalf("%s: the state keeps %d characters of the reason, want %d", ref, len(task.Reason), len(long))
		}
		for name, view := range map[string]*conductor.Task{"read view": task.Conductor(h.w), "hand-off view": task.HandOffView(h.w)} {
			if got := view.ReasonForIncompletion; got != long[:500] {
				t.Errorf("%s, %s: reason of %d characters, want 500", ref, name, len(got))
			}
		}
	}
	h.storedAs("j", func(j *engine.Task) { j.Reason = long })
	if got := h.task("j").Conductor(h.w).ReasonForIncompletion; got != long {
		t.Errorf("a system task's reason is shown with %d characters, want %d", len(got), len(long))
	}
}
