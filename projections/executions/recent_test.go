package executions

import (
	"fmt"
	"testing"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// The cache of recent states keeps running workflows and the ended ones
// whose compaction record is still to come (it would otherwise read and
// decode the state from the store again); when full, it forgets the ended
// ones first.
func TestRecentStates(t *testing.T) {
	running := func() *engine.Workflow { return &engine.Workflow{Status: conductor.WorkflowRunning} }
	ended := func() *engine.Workflow { return &engine.Workflow{Status: conductor.WorkflowCompleted} }
	compactable := func() *engine.Workflow {
		return &engine.Workflow{Status: conductor.WorkflowCompleted, SealsSecrets: true}
	}
	tests := []struct {
		name                        string
		running, ended, compactable int
		want                        string // kinds kept, besides the one put last
	}{
		{"ended workflows with nothing to come are not kept", 2, 3, 2, "map[compactable:2 running:2]"},
		{"when full, the ended ones go first", 8, 0, 4, "map[running:8]"},
		{"then everything", 12, 0, 0, "map[]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRecentStates(12)
			kinds := map[string]string{}
			add := func(kind string, n int, w func() *engine.Workflow) {
				for i := range n {
					token := fmt.Sprintf("%s-%d", kind, i)
					kinds[token] = kind
					r.put(token, &recent{w: w()})
				}
			}
			add("running", tt.running, running)
			add("ended", tt.ended, ended)
			add("compactable", tt.compactable, compactable)
			r.put("new", &recent{w: running()})
			if _, ok := r.get("new"); !ok {
				t.Fatal("the state just put is not kept")
			}
			kept := map[string]int{}
			for token := range r.m {
				if token != "new" {
					kept[kinds[token]]++
				}
			}
			if got := fmt.Sprint(kept); got != tt.want {
				t.Fatalf("kept %s, want %s", got, tt.want)
			}
		})
	}
}
