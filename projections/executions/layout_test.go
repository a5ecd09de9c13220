package executions_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/projections"
	"github.com/flowvault/flowvault/projections/executions"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// laidOutAs is the executions projection as an earlier flowvault wrote
// it, in layout layout.
type laidOutAs struct {
	*executions.Projection
	layout int
}

func (p laidOutAs) Layout() int { return p.layout }

// A read model written before the fold of workflow.upgraded kept what an
// upgrade leaves of the cacheConfig a completed task ran under is rebuilt
// from the log at the next start: the executor starts its decisions, and
// so the purges of a cached output found secret, from the state the read
// model holds. Layout 8 lacked the key a task completed under
// (engine.Task.CacheKeys), which its purges would miss; layout 9 the mark
// of the tasks whose keys an upgrade onto a definition that does not
// parse kept (engine.Task.KeysKept), which the compaction would look for
// through the whole cache.
func TestCacheKeysOfAnUpgradeRebuiltAtUpgrade(t *testing.T) {
	t.Parallel()
	const v2 = `{"name":"cached","version":2,"tasks":[
	 {"name":"fetch","taskReferenceName":"fetch","inputParameters":{"url":"${workflow.input.url}"},"cacheConfig":{"key":"v2:${url}","ttlInSecond":60}},
	 {"name":"gate","taskReferenceName":"gate","type":"WAIT"}]}`
	tests := []struct {
		name   string
		layout int    // the read model's, which lacks what strip takes out
		def    string // the definition the upgrade brings in
		strip  func(*engine.Task)
	}{
		{"another key", 8, v2, func(task *engine.Task) { task.CacheKeys = nil }},
		{"a definition that does not parse", 9, `{"name":"cached","tasks":"none"}`, func(task *engine.Task) { task.KeysKept = false }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			var v1 conductor.WorkflowDef
			if err := conductor.Unmarshal([]byte(`{"name":"cached","version":1,"tasks":[
			 {"name":"fetch","taskReferenceName":"fetch","inputParameters":{"url":"${workflow.input.url}"},"cacheConfig":{"key":"${url}","ttlInSecond":60}},
			 {"name":"gate","taskReferenceName":"gate","type":"WAIT"}]}`), &v1); err != nil {
				t.Fatal(err)
			}
			id := uuid.NewString()
			f.decide(id, engine.Start{WorkflowID: id, Def: &v1, Request: conductor.StartWorkflowRequest{Input: map[string]any{"url": "https://a"}}})
			f.decide(id, engine.Result{Result: conductor.TaskResult{TaskID: f.states[id].Tasks[0].ID, WorkflowInstanceID: id,
				Status: conductor.TaskCompleted, OutputData: map[string]any{"token": "t"}}})
			f.upgrade(id, tt.def)
			want := f.states[id].Tasks[0]
			keys := func(task *engine.Task) string {
				return fmt.Sprintf("cache keys %q, kept %v", task.CacheKeys, task.KeysKept)
			}
			stripped := *want
			if tt.strip(&stripped); keys(&stripped) == keys(want) {
				t.Fatalf("the fold left %s: nothing the layout lacks", keys(want))
			}
			last := f.states[id].Seq

			// The read model as the version before wrote it.
			store := testutil.OpenStore(t)
			cfg := projections.RunnerConfig{Stream: eventlog.Workflows.Name, Logger: testutil.Logger(t)}
			testutil.CatchUpOnce(t, f.log, store, laidOutAs{executions.NewProjection(), tt.layout}, cfg, last)
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
				tt.strip(&task)
				if v, err = msgpack.Marshal(&task); err != nil {
					return err
				}
				return b.Set(taskKey, v)
			})
			if err != nil {
				t.Fatal(err)
			}
			read := func() *engine.Task {
				t.Helper()
				w, err := executions.NewReader(store).Workflow(context.Background(), id)
				if err != nil {
					t.Fatal(err)
				}
				return w.Tasks[0]
			}
			if got := read(); keys(got) != keys(&stripped) {
				t.Fatalf("the layout-%d read model's task has %s, want %s", tt.layout, keys(got), keys(&stripped))
			}

			testutil.CatchUpOnce(t, f.log, store, executions.NewProjection(), cfg, last)
			if got := read(); keys(got) != keys(want) {
				t.Fatalf("upgraded: the task has %s, want %s, as a rebuild folds them", keys(got), keys(want))
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
		})
	}
}

// upgrade appends to workflow id's log a workflow.upgraded onto def as it
// is, which need not parse (as an earlier version could record it).
func (f *fixture) upgrade(id, def string) {
	f.t.Helper()
	f.now = f.now.Add(time.Millisecond)
	ev := &schemas.WorkflowUpgraded{Def: []byte(def), Time: f.now.UnixMilli()}
	rec := testutil.Record(f.t, "fv.wf."+eventlog.Token(id), 0, ev)
	rec.Events[0].ID = uuid.NewString()
	ctx := testutil.Context(f.t, 10*time.Second)
	seq, err := f.log.Append(ctx, rec.Subject, rec.Events, f.states[id].Seq)
	if err != nil {
		f.t.Fatal(err)
	}
	w, err := engine.ApplyRecord(f.states[id], []schemas.Event{ev})
	if err != nil {
		f.t.Fatal(err)
	}
	w.Seq = seq
	f.states[id] = w
	if err := f.runner.WaitFor(ctx, seq); err != nil {
		f.t.Fatal(err)
	}
}
