package executions_test

import (
	"fmt"
	"math"
	"testing"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/projections/executions"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// forkRecords records a FORK_JOIN_DYNAMIC of n SIMPLE branches, each
// taken and completed in turn; then, with again, a restart of the ended
// workflow and a rerun from its middle branch (the task list cut, and
// grown past where it was cut), run to their end.
func forkRecords(tb testing.TB, n int, again bool, seq *uint64) []eventlog.Record {
	tb.Helper()
	def := parseDef(tb, `{"name":"dynfork","version":1,"tasks":[
	 {"name":"fork","taskReferenceName":"fork","type":"FORK_JOIN_DYNAMIC","dynamicForkTasksParam":"tasks",
	  "inputParameters":{"tasks":"${workflow.input.tasks}"}},
	 {"name":"join","taskReferenceName":"join","type":"JOIN"}]}`)
	tasks := make([]any, n)
	for i := range tasks {
		tasks[i] = map[string]any{"name": "step", "taskReferenceName": fmt.Sprintf("d%d", i)}
	}
	r := newRecorder(tb, seq)
	r.decide(engine.Start{WorkflowID: r.id, Def: def, Request: conductor.StartWorkflowRequest{Input: map[string]any{"tasks": tasks}}})
	run := func() {
		var ids []string
		for _, t := range r.w.Tasks {
			if t.Type == conductor.TaskTypeSimple && t.Status == conductor.TaskScheduled {
				ids = append(ids, t.ID)
			}
		}
		for _, id := range ids {
			r.work(id, map[string]any{"id": id})
		}
		if r.w.Status != conductor.WorkflowCompleted {
			tb.Fatalf("fork %s after %d records", r.w.Status, len(r.recs))
		}
	}
	run()
	if again {
		r.decide(engine.Restart{})
		run()
		r.decide(engine.Rerun{Request: conductor.RerunWorkflowRequest{ReRunFromTaskID: r.w.LatestByRef(fmt.Sprintf("d%d", n/2)).ID}})
		run()
	}
	return r.recs
}

// keptLoopRecords records a DO_WHILE over n items with keepLastN 2, whose
// body a worker takes and completes: each iteration past the second
// removes tasks from the middle of the list.
func keptLoopRecords(tb testing.TB, n int, seq *uint64) []eventlog.Record {
	tb.Helper()
	def := parseDef(tb, `{"name":"kept","version":1,"tasks":[
	 {"name":"loop","taskReferenceName":"loop","type":"DO_WHILE","items":"${workflow.input.items}","inputParameters":{"keepLastN":2},
	  "loopOver":[{"name":"step","taskReferenceName":"step"},{"name":"step","taskReferenceName":"other"}]}]}`)
	r := newRecorder(tb, seq)
	r.decide(engine.Start{WorkflowID: r.id, Def: def, Request: conductor.StartWorkflowRequest{Input: map[string]any{"items": itemsOf(n)}}})
	for i := 1; i <= n; i++ {
		for _, ref := range []string{"step", "other"} {
			t := r.w.LatestByRef(fmt.Sprintf("%s__%d", ref, i))
			if t == nil {
				tb.Fatalf("no %s of iteration %d", ref, i)
			}
			r.work(t.ID, nil)
		}
	}
	if r.w.Status != conductor.WorkflowCompleted {
		tb.Fatalf("kept loop %s after %d records", r.w.Status, len(r.recs))
	}
	return r.recs
}

// The read model folds a large workflow's records through an index of its
// tasks; what it stores is what folding them with a scan for each task
// stored, through cuts (a restart, a rerun, keepLastN) and growth.
func TestFoldThroughAnIndexStoresTheSame(t *testing.T) {
	var seq uint64
	streams := map[string][]eventlog.Record{
		"fork, restarted and rerun": forkRecords(t, 80, true, &seq),
		"loop with keepLastN":       keptLoopRecords(t, 60, &seq),
	}
	indexed := func() func() { return executions.IndexFrom(0) }
	scanned := func() func() { return executions.IndexFrom(math.MaxInt) }
	sameFolds(t, streams, indexed, scanned, "through an index", "with scans")
}
