package guard

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/secrets"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/schemas"
)

// The decision of a result in a workflow that has resolved a secret: the
// task's end and the next task's schedule, neither sealing anything, both
// scanned for the resolved value. The secrets workload of fvbench pays
// this on two of its three results.
func BenchmarkProtectTaskEvents(b *testing.B) {
	ctx := context.Background()
	g := New(Config{})
	before, err := engine.Apply(nil, &schemas.WorkflowStarted{WorkflowID: "wf-1", Name: "w", Version: 1,
		Def: []byte(`{"name":"w","version":1,"tasks":[]}`), Input: map[string]any{"i": 1}})
	if err != nil {
		b.Fatal(err)
	}
	g.memoFor("wf-1").add([]byte("bench-password-9a07c3e2"))
	events := []schemas.Event{
		&schemas.TaskUpdated{TaskID: "t1", Status: "COMPLETED", Output: map[string]any{"v": 12345}, Time: 1},
		&schemas.TaskScheduled{TaskID: "t2", Ref: "c", Name: "bench_c", Type: "SIMPLE", Input: map[string]any{"prev": 12345}, Time: 1},
	}
	for b.Loop() {
		dec, err := g.Protect(ctx, before, engine.Decision{Events: events})
		if err != nil || len(dec.Events) != 2 {
			b.Fatal(dec.Events, err)
		}
	}
}

// BenchmarkProtectSecretsWorkflow runs what the guard does for one workflow
// of fvbench's secrets workload, decided by the engine: its start, the
// hand-off of the task that resolves two secrets, the result that returns
// a session under _secrets, and the rest, each decision protected and
// folded as the executor does. Each iteration is a workflow of its own,
// with a session of its own, as in the benchmark: what is reported is the
// guard's cost of one secrets workflow (go test -bench SecretsWorkflow
// ./guard).
func BenchmarkProtectSecretsWorkflow(b *testing.B) {
	ctx := context.Background()
	l := testutil.OpenLog(b, "")
	keys, err := secrets.OpenKeys(ctx, l.JetStream(), secrets.GenerateMasterKey(), secrets.KeysOptions{Logger: testutil.Logger(b)})
	if err != nil {
		b.Fatal(err)
	}
	g := New(Config{Keys: keys, Authz: allowAll{},
		Secrets: fakeSecrets{"bench_user": "bench-user-4f1d", "bench_password": "bench-password-9a07c3e2"}})
	var def conductor.WorkflowDef
	err = conductor.Unmarshal([]byte(`{"name":"bench_secrets","version":1,"tasks":[
 {"name":"bench_a","taskReferenceName":"a","inputParameters":{"i":"${workflow.input.i}"}},
 {"name":"bench_b","taskReferenceName":"b","inputParameters":{"prev":"${a.output.v}",
   "user":"${workflow.secrets.bench_user}","password":"${workflow.secrets.bench_password}"}},
 {"name":"bench_c","taskReferenceName":"c","inputParameters":{"prev":"${b.output.v}"}}]}`), &def)
	if err != nil {
		b.Fatal(err)
	}
	now := time.Unix(1_700_000_000, 0)
	step := func(w *engine.Workflow, tr engine.Trigger) *engine.Workflow {
		dec, err := engine.Decide(engine.Input{State: w, Trigger: tr, Now: now})
		if err != nil {
			b.Fatal(err)
		}
		decided := dec.State
		if dec, err = g.Protect(ctx, w, dec); err != nil {
			b.Fatal(err)
		}
		if dec.State != decided {
			return dec.State // folded by Protect, kept as the executor keeps it
		}
		if w != nil {
			w = w.Clone()
		}
		for _, ev := range dec.Events {
			if w, err = engine.Apply(w, ev); err != nil {
				b.Fatal(err)
			}
		}
		return w
	}
	run := func(ref string, w *engine.Workflow) *engine.Workflow {
		t := w.LatestByRef(ref)
		input, resolved, err := g.Prepare(ctx, w, t)
		if err != nil {
			b.Fatal(err)
		}
		w = step(w, engine.Take{TaskID: t.ID, WorkerID: "bench", TaskType: t.Name, HandOff: &engine.HandOff{Resolved: resolved}})
		out := map[string]any{"v": 1}
		if input != nil {
			out["_secrets"] = map[string]any{"session": "session-" + w.ID}
		}
		return step(w, engine.Result{Result: conductor.TaskResult{WorkflowInstanceID: w.ID, TaskID: t.ID,
			Status: conductor.TaskCompleted, OutputData: out}})
	}
	i := 0
	for b.Loop() {
		i++
		w := step(nil, engine.Start{WorkflowID: fmt.Sprintf("wf-%08d", i), Def: &def, CreatedBy: "user:bench",
			Request: conductor.StartWorkflowRequest{Name: "bench_secrets", Input: map[string]any{"i": i}}})
		for _, ref := range []string{"a", "b", "c"} {
			w = run(ref, w)
		}
		if w.Status != conductor.WorkflowCompleted {
			b.Fatalf("workflow %s", w.Status)
		}
	}
}
