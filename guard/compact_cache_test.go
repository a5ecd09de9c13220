package guard

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/executor"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/projections"
	"github.com/flowvault/flowvault/projections/executions"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// inlineOnly stores no definitions: workflows start from inline ones.
type inlineOnly struct{}

func (inlineOnly) LookupWorkflowDef(_ context.Context, name string, _ *int) (*conductor.WorkflowDef, error) {
	return nil, fault.NotFound("workflow definition %s not found", name)
}
func (inlineOnly) LookupTaskDef(context.Context, string) (*conductor.TaskDef, bool, error) {
	return nil, false, nil
}
func (inlineOnly) CheckWorkflowDef(def *conductor.WorkflowDef) error {
	return engine.ValidateWorkflowDef(def)
}
func (inlineOnly) WorkflowOwner(_ context.Context, name string) (string, error) {
	return "", fault.NotFound("workflow definition %s not found", name)
}

// recoversNothing lists no workflow as running and no deadline: an
// engine's start recovers nothing, so that only a compaction can purge.
type recoversNothing struct{}

func (recoversNothing) Due(context.Context, int64, executor.Due, int) ([]executor.Due, error) {
	return nil, nil
}
func (recoversNothing) Running(context.Context, func(wfID string) bool) error { return nil }
func (recoversNothing) ScheduledBefore(context.Context, int64, func(wfID string) bool) error {
	return nil
}

// noKeys is a key store with nothing to destroy.
type noKeys struct{}

func (noKeys) DestroyKeys(context.Context, []string) ([]string, error) { return nil, nil }

// A workflow that found a cached output secret by _masked alone (no
// _secrets, no resolved secret: it has no secrets key) and ended before
// the purge was performed (its engine stopped after recording the
// finding) is compacted all the same, and its compaction purges the
// output: nothing else would once it ended, but a hit reading it first.
// One that masks nothing has no key and is still not compacted.
func TestCompactionPurgesTheCachedOutputsAWorkflowWithoutKeyMasks(t *testing.T) {
	t.Parallel()
	for _, masked := range []bool{true, false} {
		t.Run(fmt.Sprintf("masked_%t", masked), func(t *testing.T) {
			t.Parallel()
			l := testutil.OpenLog(t, "")
			ctx := testutil.Context(t, 30*time.Second)
			store := testutil.OpenStore(t)
			runner := testutil.RunProjection(t, l, store, executions.NewProjection(), projections.RunnerConfig{Stream: eventlog.Workflows.Name})
			start := func() *executor.Executor {
				e := executor.New(l, inlineOnly{}, recoversNothing{}, executor.Config{Logger: testutil.Logger(t)})
				if err := e.Start(ctx); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(e.Stop)
				return e
			}
			submit := func(e *executor.Executor, id string, trig engine.Trigger) executor.Outcome {
				t.Helper()
				out, err := e.Submit(ctx, id, trig, executor.Meta{})
				if err != nil {
					t.Fatalf("%T: %v", trig, err)
				}
				return out
			}

			const id = "wf-masked-only"
			var def conductor.WorkflowDef
			if err := conductor.Unmarshal([]byte(`{"name":"cached","version":1,"tasks":[
			  {"name":"fetch","taskReferenceName":"fetch","inputParameters":{"k":"x"},"cacheConfig":{"key":"${k}","ttlInSecond":600}},
			  {"name":"after","taskReferenceName":"after"}]}`), &def); err != nil {
				t.Fatal(err)
			}
			a := start()
			out := submit(a, id, engine.Start{WorkflowID: id, Def: &def, CreatedBy: "alice@x"})
			fetch := out.State.LatestByRef("fetch").ID
			submit(a, id, engine.Take{TaskID: fetch, TaskType: "fetch", WorkerID: "w1"})
			submit(a, id, engine.Result{Result: conductor.TaskResult{TaskID: fetch, WorkflowInstanceID: id,
				Status: conductor.TaskCompleted, OutputData: map[string]any{"token": "masked-later"}}, TaskType: "fetch"})
			a.Stop() // its effects performed: the output cached, and read back unmasked
			kv, err := l.JetStream().KeyValue(ctx, "FV_TASK_CACHE")
			if err != nil {
				t.Fatalf("the cache bucket: %v", err)
			}
			keys, err := kv.ListKeys(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var cached []string
			for k := range keys.Keys() {
				cached = append(cached, k)
			}
			if len(cached) != 1 {
				t.Fatalf("cache entries %v, want the output of fetch", cached)
			}

			// b records the finding with no purge among its effects (no guard
			// adds it): as if its engine stopped after the append.
			b := start()
			if masked {
				vm := &schemas.ValuesMasked{Paths: []string{"task/" + fetch + "/output.token"}}
				submit(b, id, engine.ValuesFound{Masked: vm})
			}
			out = submit(b, id, engine.Terminate{Reason: "done"})
			if out.State.SealsSecrets {
				t.Fatal("the workflow has a secrets key; want one that sealed nothing under it")
			}
			if err := runner.WaitFor(ctx, out.Seq); err != nil {
				t.Fatal(err)
			}
			if _, err := kv.Get(ctx, cached[0]); err != nil {
				t.Fatalf("get before the compaction: %v, want the entry no purge took out", err)
			}

			c := &Compactor{Ended: executions.NewReader(store), Engine: b, Keys: noKeys{}, Now: time.Now, Logger: testutil.Logger(t)}
			n, _, err := c.Pass(ctx)
			if err != nil {
				t.Fatalf("compaction pass: %v", err)
			}
			w, err := b.State(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if want := map[bool]int{true: 1}[masked]; n != want || w.Compacted != masked {
				t.Errorf("the pass compacted %d, the workflow compacted %t; want it compacted only if it masks the output (masked %t): it has no key",
					n, w.Compacted, masked)
			}
			_, err = kv.Get(ctx, cached[0])
			switch {
			case masked && !errors.Is(err, jetstream.ErrKeyNotFound):
				t.Errorf("get after the compaction pass: %v, want no entry: the output found secret is still cached", err)
			case !masked && err != nil:
				t.Errorf("get after the compaction pass: %v, want the output never found secret kept", err)
			}
		})
	}
}
