package executions

import (
	"fmt"
	"testing"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// A full cache forgets ended workflows first, except those whose compaction
// record is still to come: that record would otherwise read and decode the
// state from the store again.
func TestRecentStatesKeepWhatAwaitsCompaction(t *testing.T) {
	tests := []struct {
		name                        string
		running, ended, compactable int
		wantKept                    []string // kinds that survive the eviction
	}{
		{"ended plain workflows go first", 4, 4, 4, []string{"running", "compactable"}},
		{"then the compactable ones", 2, 1, 9, []string{"running"}},
		{"then everything", 12, 0, 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRecentStates(12)
			kinds := map[string]string{}
			add := func(kind string, n int, w func() *engine.Workflow) {
				for i := range n {
					token := fmt.Sprintf("%s-%d", kind, i)
					kinds[token] = kind
					r.put(token, w())
				}
			}
			add("running", tt.running, func() *engine.Workflow { return &engine.Workflow{Status: conductor.WorkflowRunning} })
			add("ended", tt.ended, func() *engine.Workflow { return &engine.Workflow{Status: conductor.WorkflowCompleted} })
			add("compactable", tt.compactable, func() *engine.Workflow {
				return &engine.Workflow{Status: conductor.WorkflowCompleted, SealsSecrets: true}
			})
			r.put("new", &engine.Workflow{Status: conductor.WorkflowRunning})
			if _, ok := r.get("new"); !ok {
				t.Fatal("the state just put is not kept")
			}
			kept := map[string]int{}
			for token := range r.m {
				if token != "new" {
					kept[kinds[token]]++
				}
			}
			want := map[string]int{}
			for _, k := range tt.wantKept {
				want[k] = map[string]int{"running": tt.running, "ended": tt.ended, "compactable": tt.compactable}[k]
			}
			if fmt.Sprint(kept) != fmt.Sprint(want) {
				t.Fatalf("kept %v, want %v", kept, want)
			}
		})
	}
}
