package executions_test

import (
	"bytes"
	"context"
	"slices"
	"testing"

	"github.com/google/uuid"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/projections"
	"github.com/flowvault/flowvault/projections/executions"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// layoutEight is the executions projection as flowvault wrote it before
// an upgrade's fold kept the cacheConfig keys of the definition a task
// completed under (engine.Task.CacheKeys): layout 8.
type layoutEight struct{ *executions.Projection }

func (layoutEight) Layout() int { return 8 }

// A read model written before the fold of workflow.upgraded kept the
// cacheConfig key a task completed under (here: written in layout 8, the
// key taken out of the stored task, as that version stored it) is rebuilt
// from the log at the next start: the executor starts its decisions, and
// so the purges of a cached output found secret, from the state the read
// model holds, which would key them by the version the workflow runs now
// alone.
func TestCacheKeysOfAnUpgradeRebuiltAtUpgrade(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	parse := func(def string) *conductor.WorkflowDef {
		var d conductor.WorkflowDef
		if err := conductor.Unmarshal([]byte(def), &d); err != nil {
			t.Fatal(err)
		}
		return &d
	}
	id := uuid.NewString()
	f.decide(id, engine.Start{WorkflowID: id, Def: parse(`{"name":"cached","version":1,"tasks":[
	 {"name":"fetch","taskReferenceName":"fetch","inputParameters":{"url":"${workflow.input.url}"},"cacheConfig":{"key":"${url}","ttlInSecond":60}},
	 {"name":"gate","taskReferenceName":"gate","type":"WAIT"}]}`),
		Request: conductor.StartWorkflowRequest{Input: map[string]any{"url": "https://a"}}})
	f.decide(id, engine.Result{Result: conductor.TaskResult{TaskID: f.states[id].Tasks[0].ID, WorkflowInstanceID: id,
		Status: conductor.TaskCompleted, OutputData: map[string]any{"token": "t"}}})
	f.decide(id, engine.Upgrade{Def: parse(`{"name":"cached","version":2,"tasks":[
	 {"name":"fetch","taskReferenceName":"fetch","inputParameters":{"url":"${workflow.input.url}"},"cacheConfig":{"key":"v2:${url}","ttlInSecond":60}},
	 {"name":"gate","taskReferenceName":"gate","type":"WAIT"}]}`), DecidedFor: f.states[id].Principals()})
	want := []string{"${url}"}
	if got := f.states[id].Tasks[0].CacheKeys; !slices.Equal(got, want) {
		t.Fatalf("the fold kept cache keys %q, want %q", got, want)
	}
	last := f.states[id].Seq

	// The read model as the version before wrote it.
	store := testutil.OpenStore(t)
	cfg := projections.RunnerConfig{Stream: eventlog.Workflows.Name, Logger: testutil.Logger(t)}
	testutil.CatchUpOnce(t, f.log, store, layoutEight{executions.NewProjection()}, cfg, last)
	taskKey := []byte("w/" + id + "\x00t\x00\x00\x00\x00")
	err := store.Update(executions.Name, func(b *projections.Batch) error {
		v, err := b.Get(taskKey)
		if err != nil {
			return err
		}
		var task engine.Task
		if err := msgpack.Unmarshal(v, &task); err != nil {
			return err
		}
		task.CacheKeys = nil
		if v, err = msgpack.Marshal(&task); err != nil {
			return err
		}
		return b.Set(taskKey, v)
	})
	if err != nil {
		t.Fatal(err)
	}
	read := func() []string {
		t.Helper()
		w, err := executions.NewReader(store).Workflow(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		return w.Tasks[0].CacheKeys
	}
	if got := read(); len(got) != 0 {
		t.Fatalf("the layout-8 read model's task has cache keys %q, want none", got)
	}

	testutil.CatchUpOnce(t, f.log, store, executions.NewProjection(), cfg, last)
	if got := read(); !slices.Equal(got, want) {
		t.Fatalf("upgraded: the task's cache keys %q, want %q, as a rebuild folds them", got, want)
	}
	fresh := testutil.OpenStore(t)
	testutil.CatchUpOnce(t, f.log, fresh, executions.NewProjection(), cfg, last)
	var upgraded, rebuilt bytes.Buffer
	if err := store.Dump(&upgraded); err != nil {
		t.Fatal(err)
	}
	if err := fresh.Dump(&rebuilt); err != nil {
		t.Fatal(err)
	}
	if upgraded.String() != rebuilt.String() {
		t.Fatalf("upgraded read model differs from a rebuild\nupgraded:\n%s\nrebuilt:\n%s", upgraded.String(), rebuilt.String())
	}
}
