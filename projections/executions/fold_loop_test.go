package executions_test

import (
	"bytes"
	"context"
	"fmt"
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

// recorder decides one workflow trigger by trigger and keeps its records,
// as the log would hold them.
type recorder struct {
	tb   testing.TB
	id   string
	w    *engine.Workflow
	seq  *uint64
	now  time.Time
	recs []eventlog.Record
}

func newRecorder(tb testing.TB, seq *uint64) *recorder {
	return &recorder{tb: tb, id: uuid.NewString(), seq: seq, now: time.UnixMilli(1_800_000_000_000)}
}

func (r *recorder) decide(trig engine.Trigger) {
	r.tb.Helper()
	r.now = r.now.Add(time.Millisecond)
	d, err := engine.Decide(engine.Input{State: r.w, Trigger: trig, Now: r.now})
	if err != nil {
		r.tb.Fatal(err)
	}
	if len(d.Events) == 0 {
		return
	}
	envs := make([]schemas.Envelope, len(d.Events))
	for i, ev := range d.Events {
		if envs[i], err = schemas.Default.Encode(ev); err != nil {
			r.tb.Fatal(err)
		}
	}
	*r.seq++
	d.State.Seq = *r.seq
	r.w = d.State
	r.recs = append(r.recs, eventlog.Record{Subject: "fv.wf." + eventlog.Token(r.id), Seq: *r.seq, Events: envs})
}

// work has a worker take task id and complete it with output.
func (r *recorder) work(id string, output map[string]any) {
	r.tb.Helper()
	r.decide(engine.Take{TaskID: id, WorkerID: "w", TaskType: "step"})
	r.decide(engine.Result{Result: conductor.TaskResult{TaskID: id, WorkflowInstanceID: r.id, Status: conductor.TaskCompleted, OutputData: output}})
}

func parseDef(tb testing.TB, js string) *conductor.WorkflowDef {
	tb.Helper()
	var def conductor.WorkflowDef
	if err := conductor.Unmarshal([]byte(js), &def); err != nil {
		tb.Fatal(err)
	}
	return &def
}

func itemsOf(n int) []any {
	items := make([]any, n)
	for i := range items {
		items[i] = int64(i)
	}
	return items
}

// decidedLoopRecords records a DO_WHILE over n items whose body
// (SET_VARIABLE) the decider runs alone: up to engine's yieldAfter rounds
// of iterations in one record, then a Tick's record for the rest.
func decidedLoopRecords(tb testing.TB, n int, seq *uint64) []eventlog.Record {
	tb.Helper()
	def := parseDef(tb, `{"name":"fast","version":1,"tasks":[
	 {"name":"loop","taskReferenceName":"loop","type":"DO_WHILE","items":"${workflow.input.items}",
	  "loopOver":[{"name":"set","taskReferenceName":"set","type":"SET_VARIABLE","inputParameters":{"last":"${loop.output.loopItem}"}}]}]}`)
	r := newRecorder(tb, seq)
	r.decide(engine.Start{WorkflowID: r.id, Def: def, Request: conductor.StartWorkflowRequest{Input: map[string]any{"items": itemsOf(n)}}})
	for range n {
		if r.w.Terminal() {
			break
		}
		r.decide(engine.Tick{})
	}
	if r.w.Status != conductor.WorkflowCompleted {
		tb.Fatalf("decided loop %s after %d records", r.w.Status, len(r.recs))
	}
	return r.recs
}

// storedLoop folds decidedLoopRecords of n items into a store of its own,
// and returns its reader, the workflow's id and the workflow as stored.
func storedLoop(t testing.TB, n int, seq *uint64) (*executions.Reader, string, *engine.Workflow) {
	t.Helper()
	recs := decidedLoopRecords(t, n, seq)
	store := testutil.OpenStore(t)
	applyAll(t, store, executions.NewProjection(), recs)
	r := executions.NewReader(store)
	id := recs[0].Subject[len("fv.wf."):]
	whole, err := r.Workflow(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return r, id, whole
}

// workerLoopRecords records a DO_WHILE over n items whose body a worker
// takes and completes: a few records per iteration.
func workerLoopRecords(tb testing.TB, n int, seq *uint64) []eventlog.Record {
	tb.Helper()
	def := parseDef(tb, `{"name":"slow","version":1,"tasks":[
	 {"name":"loop","taskReferenceName":"loop","type":"DO_WHILE","items":"${workflow.input.items}",
	  "loopOver":[{"name":"step","taskReferenceName":"step","inputParameters":{"i":"${loop.output.loopIndex}"}}]}]}`)
	r := newRecorder(tb, seq)
	r.decide(engine.Start{WorkflowID: r.id, Def: def, Request: conductor.StartWorkflowRequest{Input: map[string]any{"items": itemsOf(n)}}})
	for i := 1; i <= n; i++ {
		step := r.w.LatestByRef(fmt.Sprintf("step__%d", i))
		if step == nil {
			tb.Fatalf("no step of iteration %d", i)
		}
		r.work(step.ID, map[string]any{"n": int64(i)})
	}
	if r.w.Status != conductor.WorkflowCompleted {
		tb.Fatalf("worker loop %s after %d records", r.w.Status, len(r.recs))
	}
	return r.recs
}

// applyAll applies recs to proj in one batch of store.
func applyAll(tb testing.TB, store *projections.Store, proj *executions.Projection, recs []eventlog.Record) {
	tb.Helper()
	foldTimed(tb, store, proj, recs)
}

// foldTimed applies recs to proj in one batch of store and returns how
// long that took.
func foldTimed(tb testing.TB, store *projections.Store, proj *executions.Projection, recs []eventlog.Record) time.Duration {
	tb.Helper()
	start := time.Now()
	err := store.Update(executions.Name, func(batch *projections.Batch) error {
		for _, rec := range recs {
			if err := proj.Apply(batch, rec); err != nil {
				return err
			}
		}
		return nil
	})
	took := time.Since(start)
	if err != nil {
		tb.Fatal(err)
	}
	return took
}

// benchFold folds, each round, the records record makes afresh into one
// read model, and reports the folding's time per unit (record says how
// many a round holds).
func benchFold(b *testing.B, unit string, record func(seq *uint64) (recs []eventlog.Record, units int)) {
	store := testutil.OpenStore(b)
	proj := executions.NewProjection()
	var seq uint64
	units := 0
	var folding time.Duration
	for b.Loop() {
		recs, n := record(&seq)
		units += n
		folding += foldTimed(b, store, proj, recs)
	}
	b.ReportMetric(float64(folding.Nanoseconds())/float64(units), "ns/"+unit)
}

// fold applies recs to a fresh read model and returns its contents.
func fold(tb testing.TB, recs []eventlog.Record) []byte {
	tb.Helper()
	store := testutil.OpenStore(tb)
	applyAll(tb, store, executions.NewProjection(), recs)
	var dump bytes.Buffer
	if err := store.Dump(&dump); err != nil {
		tb.Fatal(err)
	}
	return dump.Bytes()
}

// The read model folds a record's loop merges into one copy of the loop's
// output instead of a copy per merge; what it stores is what folding
// each event with engine.Apply stored.
func TestFoldReusingLoopOutputStoresTheSame(t *testing.T) {
	var seq uint64
	streams := map[string][]eventlog.Record{
		// Past yieldAfter (1000 rounds): a record of many iterations,
		// then Ticks'.
		"decided loop": decidedLoopRecords(t, 1500, &seq),
		"worker loop":  workerLoopRecords(t, 200, &seq),
	}
	var all []eventlog.Record
	for _, recs := range streams {
		all = append(all, recs...)
	}
	streams["both"] = all
	sameFolds(t, streams, nil, executions.FoldPlainly, "with reuse", "with engine.Apply")
}

// sameFolds folds each stream into a fresh read model twice, under each
// of two settings (a setter returns its restore; nil: as it is), and
// fails where the two read models differ.
func sameFolds(t *testing.T, streams map[string][]eventlog.Record, set, setRef func() (restore func()), what, ref string) {
	t.Helper()
	foldUnder := func(recs []eventlog.Record, set func() func()) []byte {
		if set != nil {
			defer set()()
		}
		return fold(t, recs)
	}
	for name, recs := range streams {
		got, want := foldUnder(recs, set), foldUnder(recs, setRef)
		if !bytes.Equal(got, want) {
			t.Errorf("%s: the read model folded %s differs from the one folded %s (%d and %d bytes)", name, what, ref, len(got), len(want))
		}
		if len(got) == 0 {
			t.Fatalf("%s: empty read model", name)
		}
	}
}

// BenchmarkFoldDecidedLoop folds the records of a DO_WHILE of n
// iterations the decider runs alone, most of them in the start's record.
// The cost per iteration stays about the same at any n when a record's
// merges into the loop's output reuse one copy, and grows with n when
// each merge copies the output.
//
//	go test -run - -bench FoldDecidedLoop ./projections/executions
//
// fold=plain folds each event with engine.Apply, as before, for the
// comparison.
func BenchmarkFoldDecidedLoop(b *testing.B) {
	for _, mode := range []string{"reusing", "plain"} {
		for _, n := range []int{500, 1500, 4500} {
			b.Run(fmt.Sprintf("fold=%s/iterations=%d", mode, n), func(b *testing.B) {
				if mode == "plain" {
					b.Cleanup(executions.FoldPlainly())
				}
				benchFoldDecidedLoop(b, n)
			})
		}
	}
}

func benchFoldDecidedLoop(b *testing.B, n int) {
	benchFold(b, "iteration", func(seq *uint64) ([]eventlog.Record, int) { return decidedLoopRecords(b, n, seq), n })
}
