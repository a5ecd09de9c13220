package guard

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/executor"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/projections"
	"github.com/flowvault/flowvault/projections/executions"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/secrets"
)

// errPurgeRefused is the failure of every compaction of failingCompactions'
// workflows.
var errPurgeRefused = errors.New("the cache refuses the purge")

// failingCompactions is the engine, but for the compactions of some
// workflows, which fail at every attempt, as they do while the cache keeps
// refusing a purge or a definition no longer parses.
type failingCompactions struct {
	Submitter
	failing map[string]bool
	mu      sync.Mutex
	tried   map[string]int
}

func (f *failingCompactions) Submit(ctx context.Context, wfID string, trig engine.Trigger, meta executor.Meta) (executor.Outcome, error) {
	if !f.failing[wfID] {
		return f.Submitter.Submit(ctx, wfID, trig, meta)
	}
	f.mu.Lock()
	f.tried[wfID]++
	f.mu.Unlock()
	return executor.Outcome{}, fmt.Errorf("workflow %s: purge its cached outputs: %w", wfID, errPurgeRefused)
}

// Workflows whose compaction keeps failing, more than a pass lists and the
// oldest on the list, do not keep those that ended after them from their
// compaction: a pass goes on after the last workflow the one before tried,
// and from the oldest again once it reached the end, so that the failing
// ones are tried once a round of the list, each failure logged. Passes
// that started from the oldest each time listed the failing ones alone,
// and the others' secrets keys were never destroyed.
func TestCompactionGoesPastWorkflowsThatKeepFailing(t *testing.T) {
	t.Parallel()
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, time.Minute)
	keys, err := secrets.OpenKeys(ctx, l.JetStream(), secrets.GenerateMasterKey(), secrets.KeysOptions{Logger: testutil.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	store := testutil.OpenStore(t)
	runner := testutil.RunProjection(t, l, store, executions.NewProjection(), projections.RunnerConfig{Stream: eventlog.Workflows.Name})
	e := executor.New(l, inlineOnly{}, recoversNothing{}, executor.Config{Logger: testutil.Logger(t)})
	e.SetProtector(New(Config{Keys: keys}))
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Stop)

	var def conductor.WorkflowDef
	if err := conductor.Unmarshal([]byte(`{"name":"sealed","version":1,"tasks":[{"name":"t","taskReferenceName":"t"}]}`), &def); err != nil {
		t.Fatal(err)
	}
	submit := func(id string, trig engine.Trigger) executor.Outcome {
		t.Helper()
		out, err := e.Submit(ctx, id, trig, executor.Meta{})
		if err != nil {
			t.Fatalf("%s %T: %v", id, trig, err)
		}
		return out
	}
	// Each ends with its task's _secrets output sealed under its key, the
	// failing ones first: ended in the same millisecond, their ids sort
	// first too.
	const passSize, failing, good = 4, 6, 3
	var ids []string
	for i := range failing {
		ids = append(ids, fmt.Sprintf("wf-a-failing-%d", i))
	}
	for i := range good {
		ids = append(ids, fmt.Sprintf("wf-b-good-%d", i))
	}
	secretsKey := map[string]string{}
	var last uint64
	for _, id := range ids {
		task := submit(id, engine.Start{WorkflowID: id, Def: &def, CreatedBy: "alice@x"}).State.LatestByRef("t").ID
		submit(id, engine.Take{TaskID: task, TaskType: "t", WorkerID: "w1"})
		out := submit(id, engine.Result{Result: conductor.TaskResult{TaskID: task, WorkflowInstanceID: id, Status: conductor.TaskCompleted,
			OutputData: map[string]any{"_secrets": map[string]any{"token": "token-of-" + id}}}, TaskType: "t"})
		if !out.State.Terminal() || !out.State.AwaitsCompaction() {
			t.Fatalf("%s: %s, awaits compaction %t; want it ended with its output sealed", id, out.State.Status, out.State.AwaitsCompaction())
		}
		secretsKey[id], last = out.State.SecretsKey, out.Seq
	}
	if err := runner.WaitFor(ctx, last); err != nil {
		t.Fatal(err)
	}

	logger, logs := testutil.CapturingLogger()
	f := &failingCompactions{Submitter: e, failing: map[string]bool{}, tried: map[string]int{}}
	for _, id := range ids[:failing] {
		f.failing[id] = true
	}
	c := &Compactor{Ended: executions.NewReader(store), Engine: f, Keys: keys, Now: time.Now, Logger: logger, passSize: passSize}
	// Two rounds of the list: four failing; two failing and two good; the
	// last good; four failing again; the last two failing again.
	var compacted []int
	for range 5 {
		n, _, err := c.Pass(ctx)
		if err != nil {
			t.Fatalf("pass %d: %v", len(compacted)+1, err)
		}
		compacted = append(compacted, n)
	}
	if want := []int{0, 2, 1, 0, 0}; !slices.Equal(compacted, want) {
		t.Errorf("compacted by each pass %v, want %v", compacted, want)
	}

	keys.ClearCache()
	for _, id := range ids[failing:] {
		w, err := e.State(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := keys.DataKey(ctx, secretsKey[id]); !w.Compacted || !errors.Is(err, secrets.ErrKeyDestroyed) {
			t.Errorf("%s, behind %d workflows whose compaction fails (a pass lists %d): compacted %t, its key: %v; want it compacted, its key destroyed",
				id, failing, passSize, w.Compacted, err)
		}
	}
	for _, id := range ids[:failing] {
		if f.tried[id] != 2 {
			t.Errorf("compaction of %s tried %d times in two rounds of the list, want 2", id, f.tried[id])
		}
		if got := strings.Count(logs.String(), `"msg":"compaction failed","workflow_id":"`+id+`"`); got != f.tried[id] {
			t.Errorf("%d lines say the compaction of %s failed, want one per attempt (%d)", got, id, f.tried[id])
		}
		if _, err := keys.DataKey(ctx, secretsKey[id]); err != nil {
			t.Errorf("the key of %s, whose compaction failed: %v; want it kept", id, err)
		}
	}
}
