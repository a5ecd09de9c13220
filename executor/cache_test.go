package executor

import (
	"testing"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// The cache keeps running workflows and ended ones whose compaction is to
// come, and lets an ended workflow with nothing left to do go, even one it
// held while it ran.
func TestCacheKeepsWhatHasMoreToDo(t *testing.T) {
	tests := []struct {
		name string
		w    *engine.Workflow
		kept bool
	}{
		{"running", &engine.Workflow{Status: conductor.WorkflowRunning}, true},
		{"ended", &engine.Workflow{Status: conductor.WorkflowCompleted}, false},
		{"ended, secrets to compact", &engine.Workflow{Status: conductor.WorkflowFailed, SealsSecrets: true}, true},
		{"ended and compacted", &engine.Workflow{Status: conductor.WorkflowCompleted, SealsSecrets: true, Compacted: true}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCache(4)
			c.put("wf", &engine.Workflow{Status: conductor.WorkflowRunning})
			c.put("wf", tt.w)
			got, ok := c.get("wf")
			if ok != tt.kept || ok && got != tt.w {
				t.Fatalf("cached %v (%v), want kept=%v", ok, got, tt.kept)
			}
		})
	}
}
