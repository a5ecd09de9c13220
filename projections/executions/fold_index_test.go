package executions_test

import (
	"bytes"
	"fmt"
	"math"
	"testing"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/internal/testutil"
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

// The read model writes, for a state it kept from the record before, the
// tasks a record replaced or appended and their index entries, found by
// their places; what it stores is what it stores for a state it loads
// from the store at each record, whose every task it compares with what
// was stored.
func TestFoldOfTheChangedTasksStoresTheSame(t *testing.T) {
	var seq uint64
	streams := map[string][]eventlog.Record{
		"fork, restarted and rerun": forkRecords(t, 80, true, &seq),
		"loop with keepLastN":       keptLoopRecords(t, 30, &seq),
		"worker loop":               workerLoopRecords(t, 30, &seq),
		"decided loop":              decidedLoopRecords(t, 1200, &seq),
	}
	for name, recs := range streams {
		if got, want := fold(t, recs), foldReloading(t, recs); !bytes.Equal(got, want) {
			t.Errorf("%s: the read model folded with the state kept differs from the one folded with the state loaded at each record (%d and %d bytes)", name, len(got), len(want))
		}
	}
}

// foldReloading applies each of recs to a fresh read model in a batch of
// its own, through a projection made for it, and returns the contents.
func foldReloading(tb testing.TB, recs []eventlog.Record) []byte {
	tb.Helper()
	store := testutil.OpenStore(tb)
	for _, rec := range recs {
		applyAll(tb, store, executions.NewProjection(), []eventlog.Record{rec})
	}
	var dump bytes.Buffer
	if err := store.Dump(&dump); err != nil {
		tb.Fatal(err)
	}
	return dump.Bytes()
}
