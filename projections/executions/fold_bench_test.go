package executions_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/masking"
	"github.com/flowvault/flowvault/projections/executions"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// BenchmarkFoldSequentialTasks folds workflows of n SIMPLE tasks in a
// row, each taken and completed in turn, into the read model: 2n+1
// records a workflow.
// A record costs about the same at any n when the read model writes what
// changed, and grows with n when it writes the whole state.
//
//	go test -run - -bench FoldSequentialTasks ./projections/executions
func BenchmarkFoldSequentialTasks(b *testing.B) {
	for _, n := range []int{3, 30, 300} {
		b.Run(fmt.Sprintf("tasks=%d", n), func(b *testing.B) {
			var def conductor.WorkflowDef
			tasks := make([]string, n)
			for i := range tasks {
				tasks[i] = fmt.Sprintf(`{"name":"step","taskReferenceName":"step%d"}`, i)
			}
			js := `{"name":"steps","version":1,"tasks":[` + strings.Join(tasks, ",") + `]}`
			if err := conductor.Unmarshal([]byte(js), &def); err != nil {
				b.Fatal(err)
			}
			benchFold(b, "record", func(seq *uint64) ([]eventlog.Record, int) {
				recs := sequentialRecords(b, &def, n, seq)
				return recs, len(recs)
			})
		})
	}
}

// sequentialRecords decides one workflow of def through its n tasks and
// returns its records, numbered from *seq on.
func sequentialRecords(b *testing.B, def *conductor.WorkflowDef, n int, seq *uint64) []eventlog.Record {
	r := newRecorder(b, seq)
	r.decide(engine.Start{WorkflowID: r.id, Def: def})
	for i := range n {
		r.work(r.w.Tasks[i].ID, nil)
	}
	if r.w.Status != conductor.WorkflowCompleted {
		b.Fatalf("workflow %s after %d records", r.w.Status, len(r.recs))
	}
	return r.recs
}

// BenchmarkFoldCompaction folds the compaction record of a workflow of
// fvbench's secrets workload (three tasks, the second's output holding a
// sealed session) into the read model, which holds the workflow from its
// earlier records, as it does for the compaction delay: what the read
// model pays for a workflow's compaction (go test -run - -bench
// FoldCompaction -benchmem ./projections/executions).
func BenchmarkFoldCompaction(b *testing.B) {
	store := testutil.OpenStore(b)
	proj := executions.NewProjection()
	def := parseDef(b, `{"name":"bench_secrets","version":1,"tasks":[
	 {"name":"bench_a","taskReferenceName":"a","inputParameters":{"i":"${workflow.input.i}"}},
	 {"name":"bench_b","taskReferenceName":"b","inputParameters":{"prev":"${a.output.v}"}},
	 {"name":"bench_c","taskReferenceName":"c","inputParameters":{"prev":"${b.output.v}"}}]}`)
	var seq uint64
	for b.Loop() {
		b.StopTimer()
		r := newRecorder(b, &seq)
		r.decide(engine.Start{WorkflowID: r.id, Def: def, Request: conductor.StartWorkflowRequest{Input: map[string]any{"i": 1}}})
		for _, ref := range []string{"a", "b", "c"} {
			task := r.w.LatestByRef(ref)
			r.decide(engine.Take{TaskID: task.ID, WorkerID: "w", TaskType: task.Name})
			out := map[string]any{"v": 1}
			if ref == "b" {
				out["_secrets"] = map[string]any{"session": &masking.Sealed{Kind: masking.KindSecrets, Purpose: "wf/" + r.id + "/session", Ciphertext: make([]byte, 60)}}
			}
			r.decide(engine.Result{Result: conductor.TaskResult{TaskID: task.ID, WorkflowInstanceID: r.id, Status: conductor.TaskCompleted, OutputData: out}})
		}
		applyAll(b, store, proj, r.recs)
		r.recs = r.recs[:0]
		r.decide(engine.Compact{})
		if len(r.recs) != 1 || !r.w.Compacted {
			b.Fatalf("compaction recorded %d records", len(r.recs))
		}
		b.StartTimer()
		applyAll(b, store, proj, r.recs)
	}
}

// BenchmarkFoldBigFork folds workflows of a FORK_JOIN_DYNAMIC of n SIMPLE
// branches, each taken and completed in turn, into the read model: 2n+1
// records a workflow, each naming one branch of the n (the JOIN's last
// one all of them).
//
//	go test -run - -bench FoldBigFork ./projections/executions
func BenchmarkFoldBigFork(b *testing.B) {
	for _, n := range []int{500, 5000} {
		b.Run(fmt.Sprintf("branches=%d", n), func(b *testing.B) {
			benchFold(b, "record", func(seq *uint64) ([]eventlog.Record, int) {
				recs := forkRecords(b, n, false, seq)
				return recs, len(recs)
			})
		})
	}
}
