package executions_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/projections"
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
			store := testutil.OpenStore(b)
			proj := executions.NewProjection()
			var def conductor.WorkflowDef
			tasks := make([]string, n)
			for i := range tasks {
				tasks[i] = fmt.Sprintf(`{"name":"step","taskReferenceName":"step%d"}`, i)
			}
			js := `{"name":"steps","version":1,"tasks":[` + strings.Join(tasks, ",") + `]}`
			if err := conductor.Unmarshal([]byte(js), &def); err != nil {
				b.Fatal(err)
			}
			var seq uint64
			records := 0
			var folding time.Duration
			for b.Loop() {
				recs := sequentialRecords(b, &def, n, &seq)
				records += len(recs)
				start := time.Now()
				err := store.Update(executions.Name, func(batch *projections.Batch) error {
					for _, rec := range recs {
						if err := proj.Apply(batch, rec); err != nil {
							return err
						}
					}
					return nil
				})
				folding += time.Since(start)
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(folding.Nanoseconds())/float64(records), "ns/record")
		})
	}
}

// sequentialRecords decides one workflow of def through its n tasks and
// returns its records, numbered from *seq on.
func sequentialRecords(b *testing.B, def *conductor.WorkflowDef, n int, seq *uint64) []eventlog.Record {
	r := newRecorder(b, seq)
	r.decide(engine.Start{WorkflowID: r.id, Def: def})
	for i := range n {
		task := r.w.Tasks[i]
		r.decide(engine.Take{TaskID: task.ID, WorkerID: "w", TaskType: "step"})
		r.decide(engine.Result{Result: conductor.TaskResult{TaskID: task.ID, WorkflowInstanceID: r.id, Status: conductor.TaskCompleted}})
	}
	if r.w.Status != conductor.WorkflowCompleted {
		b.Fatalf("workflow %s after %d records", r.w.Status, len(r.recs))
	}
	return r.recs
}
