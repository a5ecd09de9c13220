package guard

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/executor"
	"github.com/flowvault/flowvault/internal/logkey"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/projections"
	"github.com/flowvault/flowvault/projections/executions"
	"github.com/flowvault/flowvault/schemas"
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
// ones are tried once a round of the list, their failures logged. Passes
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
		// Both attempts within warnEvery: one line (TestRepeatedFailuresLoggedOnceAnInterval).
		if got := strings.Count(logs.String(), `"msg":"compaction failed","workflow_id":"`+id+`"`); got != 1 {
			t.Errorf("%d lines say the compaction of %s failed, want one for its %d attempts", got, id, f.tried[id])
		}
		if _, err := keys.DataKey(ctx, secretsKey[id]); err != nil {
			t.Errorf("the key of %s, whose compaction failed: %v; want it kept", id, err)
		}
	}
}

// damagedKeys fails to erase one key at every attempt, for a reason the
// key store does not know to last (a damaged page's is left to the sweep,
// TestCompactionLeavesADamagedPageToTheSweep), and erases the others. It
// keeps the key as often as it is named, as the key store does.
type damagedKeys struct {
	KeyDestroyer
	id    string
	mu    sync.Mutex
	tried int
}

var errDamagedPage = errors.New("key page damaged")

func (k *damagedKeys) DestroyKeys(ctx context.Context, ids []string) ([]string, error) {
	if !slices.Contains(ids, k.id) {
		return k.KeyDestroyer.DestroyKeys(ctx, ids)
	}
	k.mu.Lock()
	k.tried++
	k.mu.Unlock()
	rest := slices.DeleteFunc(slices.Clone(ids), func(id string) bool { return id == k.id })
	kept, err := k.KeyDestroyer.DestroyKeys(ctx, rest)
	named := slices.Repeat([]string{k.id}, len(ids)-len(rest))
	return append(kept, named...), errors.Join(err, fmt.Errorf("destroy data key %s: %w", k.id, errDamagedPage))
}

// A workflow whose compaction fails, or a key that fails to erase, at
// every pass for a reason that does not fail the pass is retried every
// pass, and its failure logged the first time, then once every warnEvery
// with how many were left out: each was logged every pass, four a second,
// forever.
func TestRepeatedFailuresLoggedOnceAnInterval(t *testing.T) {
	t.Parallel()
	const passes = 5
	for _, tc := range []struct {
		name string
		line string // the line that says it failed
		// compactor returns a Compactor over l whose every pass fails at
		// the same workflow or key, and how many times it was tried.
		compactor func(l *compactionLog) (*Compactor, func() int)
	}{
		{"a workflow's compaction", `"msg":"compaction failed","workflow_id":"wf-00002"`, func(l *compactionLog) (*Compactor, func() int) {
			f := &failingCompactions{Submitter: l, failing: map[string]bool{"wf-00002": true}, tried: map[string]int{}}
			return &Compactor{Ended: l, Engine: f, Keys: l}, func() int { return f.tried["wf-00002"] }
		}},
		{"a key's erasure", `"msg":"erasing keys of compacted workflows failed"`, func(l *compactionLog) (*Compactor, func() int) {
			k := &damagedKeys{KeyDestroyer: l, id: "key-wf-00002"}
			return &Compactor{Ended: l, Engine: l, Keys: k}, func() int { return k.tried }
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l := newCompactionLog(5)
			c, tried := tc.compactor(l)
			logger, logs := testutil.CapturingLogger()
			now := time.Unix(1_000_000, 0)
			c.Logger, c.Now = logger, func() time.Time { return now }
			pass := func() {
				t.Helper()
				if _, _, err := c.Pass(context.Background()); err != nil {
					t.Fatal(err)
				}
				now = now.Add(250 * time.Millisecond)
			}
			for range passes {
				pass()
			}
			if n := tried(); n != passes {
				t.Errorf("tried %d times in %d passes, want every pass", n, passes)
			}
			if n := strings.Count(logs.String(), tc.line); n != 1 {
				t.Errorf("%d lines say it failed in %d passes, want 1:\n%s", n, passes, logs.String())
			}
			now = now.Add(warnEvery)
			pass()
			if n := strings.Count(logs.String(), tc.line); n != 2 {
				t.Errorf("%d lines say it failed, want 2 once warnEvery passed:\n%s", n, logs.String())
			}
			if want := fmt.Sprintf(`"suppressed":%d}`, passes-1); !strings.Contains(logs.String(), want) {
				t.Errorf("the second line does not say %d failures were left out (%s):\n%s", passes-1, want, logs.String())
			}
			if len(l.destroyed) != 4 {
				t.Errorf("%d keys destroyed, want the 4 of the other workflows", len(l.destroyed))
			}
		})
	}
}

// A key a pass cannot erase is carried to the next pass once, however
// often the read model, lagging, lists its workflow again: each listing
// named the key again besides the one carried, DestroyKeys kept every
// copy, and every pass over the lagging list carried one more, asked the
// key store to erase it once more, and counted each copy's failure among
// those left out of the log.
func TestCompactionCarriesAKeyItCouldNotEraseOnce(t *testing.T) {
	t.Parallel()
	ctx, keys := openKeys(t)
	dk, err := keys.NewPooledKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	states := map[string]*engine.Workflow{"wf-a": applyAll(t, nil,
		&schemas.WorkflowStarted{WorkflowID: "wf-a", Name: "w", Version: 1, Def: []byte(`{"name":"w","version":1,"tasks":[]}`), Time: 1},
		&schemas.SecretsSealed{Key: dk.ID()},
		&schemas.WorkflowStatusChanged{Status: conductor.WorkflowCompleted, Time: 2})}
	// A damaged page's key is not carried (the sweep erases it once the
	// page reads again): this one fails for a reason the store does not
	// know to last.
	counted := &countingKeys{KeyDestroyer: &damagedKeys{KeyDestroyer: keys, id: dk.ID()}}
	c := passesOverALaggingList(ctx, t, states, counted)
	for i, ids := range counted.calls {
		if n := strings.Count(strings.Join(ids, " "), dk.ID()); n != 1 {
			t.Errorf("pass %d asked to erase %s %d times, want once", i+1, dk.ID(), n)
		}
	}
	if !slices.Equal(c.unerased, []string{dk.ID()}) {
		t.Errorf("keys carried to the next pass %q, want %s once", c.unerased, dk.ID())
	}
}

// passesOverALaggingList runs four passes over the ended workflows states,
// which a lagging list names at each, the last warnEvery after the
// others, and wants the key that keys fails to erase logged at the first
// and the last, the second line leaving out the two passes between.
func passesOverALaggingList(ctx context.Context, t *testing.T, states map[string]*engine.Workflow, keys KeyDestroyer) *Compactor {
	t.Helper()
	list := newCompactionLog(0)
	list.due, list.lags = slices.Sorted(maps.Keys(states)), true
	logger, logs := testutil.CapturingLogger()
	now := time.Unix(1_000_000, 0)
	c := &Compactor{Ended: list, Engine: &foldingEngine{states: states}, Keys: keys, Logger: logger, Now: func() time.Time { return now }}
	const passes = 4
	for i := range passes {
		if i == passes-1 {
			now = now.Add(warnEvery)
		}
		if _, _, err := c.Pass(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if lines := logs.Records("erasing keys of compacted workflows failed"); len(lines) != 2 || lines[1][logkey.Suppressed] != 2.0 {
		t.Errorf("logged %v; want two lines, the second leaving out the 2 passes between them", lines)
	}
	return c
}
