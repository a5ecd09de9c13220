package executions_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/projections"
	"github.com/flowvault/flowvault/projections/executions"
	"github.com/flowvault/flowvault/schemas"
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
	id := uuid.NewString()
	now := time.UnixMilli(1_800_000_000_000)
	var w *engine.Workflow
	var recs []eventlog.Record
	decide := func(trig engine.Trigger) {
		now = now.Add(time.Millisecond)
		d, err := engine.Decide(engine.Input{State: w, Trigger: trig, Now: now})
		if err != nil {
			b.Fatal(err)
		}
		envs := make([]schemas.Envelope, len(d.Events))
		for i, ev := range d.Events {
			if envs[i], err = schemas.Default.Encode(ev); err != nil {
				b.Fatal(err)
			}
		}
		*seq++
		d.State.Seq = *seq
		w = d.State
		recs = append(recs, eventlog.Record{Subject: "fv.wf." + eventlog.Token(id), Seq: *seq, Events: envs})
	}
	decide(engine.Start{WorkflowID: id, Def: def})
	for i := range n {
		task := w.Tasks[i]
		decide(engine.Take{TaskID: task.ID, WorkerID: "w", TaskType: "step"})
		decide(engine.Result{Result: conductor.TaskResult{TaskID: task.ID, WorkflowInstanceID: id, Status: conductor.TaskCompleted}})
	}
	if w.Status != conductor.WorkflowCompleted {
		b.Fatalf("workflow %s after %d records", w.Status, len(recs))
	}
	return recs
}
