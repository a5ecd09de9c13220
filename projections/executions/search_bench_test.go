package executions_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/projections/executions"
	"github.com/flowvault/flowvault/projections/executions/query"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// BenchmarkSearchTasksFreeText searches the tasks of one workflow, a
// DO_WHILE of n iterations of a FORK_JOIN_DYNAMIC of one task and its
// JOIN, by free text, which renders each of its tasks: what a fork's and a
// JOIN's view show of the others is found once for the workflow.
func BenchmarkSearchTasksFreeText(b *testing.B) {
	def := parseDef(b, `{"name":"loopfork","version":1,"tasks":[
	 {"name":"loop","taskReferenceName":"loop","type":"DO_WHILE","items":"${workflow.input.items}",
	  "loopOver":[{"name":"fork","taskReferenceName":"fork","type":"FORK_JOIN_DYNAMIC","dynamicForkTasksParam":"tasks",
	    "inputParameters":{"tasks":"${workflow.input.tasks}"}},
	   {"name":"join","taskReferenceName":"join","type":"JOIN"}]}]}`)
	tasks := []any{map[string]any{"name": "set", "taskReferenceName": "s", "type": "SET_VARIABLE", "inputParameters": map[string]any{"x": 1}}}
	for _, n := range []int{500, 5000} {
		b.Run(fmt.Sprintf("iterations=%d", n), func(b *testing.B) {
			var seq uint64
			r := newRecorder(b, &seq)
			r.decide(engine.Start{WorkflowID: r.id, Def: def, Request: conductor.StartWorkflowRequest{Input: map[string]any{"items": itemsOf(n), "tasks": tasks}}})
			for i := 0; !r.w.Terminal() && i < 10*n; i++ {
				r.decide(engine.Tick{})
			}
			if r.w.Status != conductor.WorkflowCompleted {
				b.Fatalf("loop %s", r.w.Status)
			}
			store := testutil.OpenStore(b)
			applyAll(b, store, executions.NewProjection(), r.recs)
			reader := executions.NewReader(store)
			s := query.Search{Query: "workflowId = " + r.id, FreeText: "s__1", Size: 10}
			if total, _, err := reader.SearchTasks(context.Background(), s); err != nil || total == 0 {
				b.Fatalf("%d tasks found by %q: %v", total, s.FreeText, err)
			}
			s.FreeText = "nothing-matches"
			b.ResetTimer()
			for range b.N {
				if total, _, err := reader.SearchTasks(context.Background(), s); err != nil || total != 0 {
					b.Fatalf("%d found, %v", total, err)
				}
			}
		})
	}
}

// BenchmarkSearchWorkflowsFreeText searches 2,000 workflows, each a
// DO_WHILE of n SET_VARIABLE tasks, by a free text none holds: the search
// reads every one of them.
func BenchmarkSearchWorkflowsFreeText(b *testing.B) {
	def := parseDef(b, `{"name":"ft","version":1,"tasks":[{"name":"loop","taskReferenceName":"loop","type":"DO_WHILE",
	 "items":"${workflow.input.items}","loopOver":[{"name":"s","taskReferenceName":"s","type":"SET_VARIABLE","inputParameters":{"x":1}}]}]}`)
	const workflows = 2000
	for _, n := range []int{1, 20} {
		b.Run(fmt.Sprintf("tasks=%d", n), func(b *testing.B) {
			var seq uint64
			var recs []eventlog.Record
			for range workflows {
				r := newRecorder(b, &seq)
				r.decide(engine.Start{WorkflowID: r.id, Def: def, Request: conductor.StartWorkflowRequest{Input: map[string]any{"items": itemsOf(n)}}})
				for i := 0; !r.w.Terminal() && i < 10*n; i++ {
					r.decide(engine.Tick{})
				}
				recs = append(recs, r.recs...)
			}
			store := testutil.OpenStore(b)
			applyAll(b, store, executions.NewProjection(), recs)
			reader := executions.NewReader(store)
			s := query.Search{FreeText: "nothing-matches", Size: 10}
			b.ResetTimer()
			for range b.N {
				if total, _, err := reader.SearchWorkflows(context.Background(), s); err != nil || total != 0 {
					b.Fatalf("%d found, %v", total, err)
				}
			}
		})
	}
}
