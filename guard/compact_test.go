package guard

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/executor"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/masking"
	"github.com/flowvault/flowvault/projections/executions"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/secrets"
)

// compactionLog stands in for the read model's compaction list, the engine
// and the key store: a workflow leaves the list when its compaction is
// recorded, unless the list lags.
type compactionLog struct {
	mu        sync.Mutex
	due       []string
	compacted map[string]bool
	destroyed map[string]bool
	lags      bool // the list still shows compacted workflows
}

func newCompactionLog(n int) *compactionLog {
	l := &compactionLog{compacted: map[string]bool{}, destroyed: map[string]bool{}}
	for i := range n {
		l.due = append(l.due, fmt.Sprintf("wf-%05d", i))
	}
	return l
}

func (l *compactionLog) AwaitingCompaction(_ context.Context, _ int64, after executions.Ended, limit int) ([]executions.Ended, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []executions.Ended
	for _, id := range l.due {
		if len(out) == limit {
			break
		}
		if id <= after.WorkflowID {
			continue
		}
		if l.lags || !l.compacted[id] {
			out = append(out, executions.Ended{WorkflowID: id})
		}
	}
	return out, nil
}

func (l *compactionLog) Submit(_ context.Context, wfID string, _ engine.Trigger, _ executor.Meta) (executor.Outcome, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	appended := !l.compacted[wfID]
	l.compacted[wfID] = true
	return executor.Outcome{State: &engine.Workflow{ID: wfID, SecretsKey: "key-" + wfID}, Appended: appended}, nil
}

func (l *compactionLog) DestroyKeys(_ context.Context, ids []string) ([]string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, id := range ids {
		l.destroyed[id] = true
	}
	return nil, nil
}

// A pass compacts as many workflows as it lists and says whether more may
// be due, so that a backlog goes in back-to-back passes; a pass that finds
// only workflows compacted already (the list lags the log) compacts none,
// and the next waits for the tick.
func TestCompactionPasses(t *testing.T) {
	ctx := context.Background()
	l := newCompactionLog(passSize + 100)
	c := &Compactor{Ended: l, Engine: l, Keys: l, Now: time.Now}
	for _, want := range []struct {
		compacted int
		more      bool
	}{{passSize, true}, {100, false}, {0, false}} {
		n, more, err := c.Pass(ctx)
		if err != nil || n != want.compacted || more != want.more {
			t.Fatalf("pass: %d compacted, more %v, %v; want %d, %v", n, more, err, want.compacted, want.more)
		}
	}
	if len(l.destroyed) != passSize+100 {
		t.Fatalf("%d keys destroyed, want %d", len(l.destroyed), passSize+100)
	}

	l.lags = true
	if n, more, err := c.Pass(ctx); err != nil || n != 0 || !more {
		t.Fatalf("a pass over a lagging list: %d compacted, more %v, %v; want none compacted", n, more, err)
	}
}

// refusingLog is a compactionLog whose log takes no writes (out of
// storage): every compaction fails as unavailable.
type refusingLog struct {
	*compactionLog
	mu    sync.Mutex
	calls int
}

func (l *refusingLog) Submit(_ context.Context, wfID string, _ engine.Trigger, _ executor.Meta) (executor.Outcome, error) {
	l.mu.Lock()
	l.calls++
	l.mu.Unlock()
	return executor.Outcome{}, fmt.Errorf("workflow %s: append: %w", wfID, eventlog.ErrNoStorage)
}

// A pass over a log out of storage stops at the first refusal instead of
// trying (and logging) every due workflow, says why once, and the next
// waits longer: a full disk is not also flooded with a line per workflow
// four times a second.
func TestCompactionStopsWhileTheLogRefusesWrites(t *testing.T) {
	ctx := context.Background()
	var logs bytes.Buffer
	l := &refusingLog{compactionLog: newCompactionLog(passSize)}
	c := &Compactor{Ended: l, Engine: l, Keys: l, Now: time.Now, Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	n, more, err := c.Pass(ctx)
	if !errors.Is(err, fault.ErrUnavailable) || n != 0 || more {
		t.Fatalf("pass over a full log: %d compacted, more %v, %v; want none, no more, unavailable", n, more, err)
	}
	if l.calls > compactors {
		t.Fatalf("%d compactions tried of %d due; want the pass stopped at the first refusal (at most %d in flight)", l.calls, passSize, compactors)
	}
	if strings.Contains(logs.String(), "compaction failed") {
		t.Fatalf("a line per refused workflow:\n%.500s", logs.String())
	}

	// Run backs off: each failing pass doubles the wait before the next,
	// up to a bound, instead of trying every workflow four times a second.
	c.Interval = 50 * time.Millisecond
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var waits []time.Duration
	c.After = answering(12, cancel, &waits)
	c.Run(rctx)
	want := []time.Duration{50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond,
		1600 * time.Millisecond, 3200 * time.Millisecond, 6400 * time.Millisecond, 12800 * time.Millisecond, 25600 * time.Millisecond, 30 * time.Second, 30 * time.Second}
	if !slices.Equal(waits, want) {
		t.Errorf("waits between failing passes %v, want %v", waits, want)
	}
}

// answering is a Compactor.After that answers at once, records in waits
// each wait Run asks for, and cancels Run at the n-th.
func answering(n int, cancel context.CancelFunc, waits *[]time.Duration) func(time.Duration) <-chan time.Time {
	return func(d time.Duration) <-chan time.Time {
		if *waits = append(*waits, d); len(*waits) == n {
			cancel()
		}
		ready := make(chan time.Time, 1)
		ready <- time.Time{}
		return ready
	}
}

// foldingEngine decides and folds triggers on the states it holds, as an
// executor does, appending nowhere.
type foldingEngine struct {
	mu     sync.Mutex
	states map[string]*engine.Workflow
}

func (e *foldingEngine) Submit(_ context.Context, wfID string, trig engine.Trigger, _ executor.Meta) (executor.Outcome, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	w := e.states[wfID].Clone()
	dec, err := engine.Decide(engine.Input{State: w, Trigger: trig, Now: time.UnixMilli(100)})
	if err != nil {
		return executor.Outcome{}, err
	}
	for _, ev := range dec.Events {
		if w, err = engine.Apply(w, ev); err != nil {
			return executor.Outcome{}, err
		}
	}
	e.states[wfID] = w
	return executor.Outcome{State: w, Appended: len(dec.Events) > 0}, nil
}

// countingKeys records the erasures it is asked for.
type countingKeys struct {
	KeyDestroyer
	mu    sync.Mutex
	calls [][]string
}

func (k *countingKeys) DestroyKeys(ctx context.Context, ids []string) ([]string, error) {
	k.mu.Lock()
	k.calls = append(k.calls, slices.Clone(ids))
	k.mu.Unlock()
	return k.KeyDestroyer.DestroyKeys(ctx, ids)
}

// A workflow whose recorded key cannot be erased (an id no key can have)
// keeps no other workflow's key: the pass erases the keys of the rest of
// its batch, says which one it could not, and the next pass does not try
// it again. DestroyKeys stopped at it, and every later pass carried the
// whole batch, first, into the same stop.
func TestCompactionErasesTheKeysBehindOneItCannot(t *testing.T) {
	t.Parallel()
	ctx, keys := openKeys(t)
	const bad = "wf.bad..secrets"
	states := map[string]*engine.Workflow{"wf-0-bad": endedSealing(t, "wf-0-bad", bad)}
	list := newCompactionLog(0)
	list.due = []string{"wf-0-bad"}
	var good []string
	for i := range 3 {
		dk, err := keys.NewPooledKey(ctx)
		if err != nil {
			t.Fatal(err)
		}
		wfID := fmt.Sprintf("wf-%d-good", i+1)
		states[wfID] = endedSealing(t, wfID, dk.ID())
		list.due = append(list.due, wfID)
		good = append(good, dk.ID())
	}
	var logs bytes.Buffer
	counted := &countingKeys{KeyDestroyer: keys}
	c := &Compactor{Ended: list, Engine: &foldingEngine{states: states}, Keys: counted, Now: time.Now,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	if n, _, err := c.Pass(ctx); err != nil || n != len(list.due) {
		t.Fatalf("the pass compacted %d, %v; want all %d compacted", n, err, len(list.due))
	}
	for _, id := range good {
		if _, err := keys.DataKey(ctx, id); !errors.Is(err, secrets.ErrKeyDestroyed) {
			t.Errorf("key %s after the pass: %v, want it destroyed", id, err)
		}
	}
	if line := logs.String(); !strings.Contains(line, "erasing keys of compacted workflows failed") || !strings.Contains(line, bad) {
		t.Errorf("the pass logged %q; want the key it could not erase named", line)
	}
	list.due = nil // the read model lists them no more
	if _, _, err := c.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	if len(counted.calls) != 1 {
		t.Errorf("the key store was asked to erase %q; want one batch, the key that cannot be erased not carried", counted.calls)
	}
}

// endedSealing is the state of workflow wfID, completed, whose log
// recorded its secrets key.
func endedSealing(t *testing.T, wfID, key string) *engine.Workflow {
	t.Helper()
	return applyAll(t, nil,
		&schemas.WorkflowStarted{WorkflowID: wfID, Name: "w", Version: 1, Def: []byte(`{"name":"w","version":1,"tasks":[]}`), Time: 1},
		&schemas.SecretsSealed{Key: key},
		&schemas.WorkflowStatusChanged{Status: conductor.WorkflowCompleted, Time: 2})
}

// A key whose page is damaged (its wrapped value does not open) is not
// tried again by every pass, four a second, as a key the store kept for a
// reason that passes is: the pass logs it and leaves it to the sweep,
// which erases it once the page is restored.
func TestCompactionLeavesADamagedPageToTheSweep(t *testing.T) {
	t.Parallel()
	ctx, l, keys, other := openTwoProcessesKeys(t)
	damaged, err := keys.NewPooledKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	good, err := other.NewPooledKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	kv, stored := keyEntry(ctx, t, l, damaged.ID())
	wrapped := slices.Clone(stored.Value())
	wrapped[len(wrapped)-1] ^= 1
	if _, err := kv.Put(ctx, stored.Key(), wrapped); err != nil {
		t.Fatal(err)
	}

	list := newCompactionLog(0)
	list.due = []string{"wf-d", "wf-g"}
	states := map[string]*engine.Workflow{"wf-d": endedSealing(t, "wf-d", damaged.ID()), "wf-g": endedSealing(t, "wf-g", good.ID())}
	counted := &countingKeys{KeyDestroyer: keys}
	logger, logs := testutil.CapturingLogger()
	c := &Compactor{Ended: list, Engine: &foldingEngine{states: states}, Keys: counted, Now: time.Now, Logger: logger}
	if n, _, err := c.Pass(ctx); err != nil || n != 2 {
		t.Fatalf("the pass compacted %d, %v; want both compacted", n, err)
	}
	list.due = nil // the read model lists them no more
	for range 3 {
		if _, _, err := c.Pass(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if len(counted.calls) != 1 {
		t.Errorf("the key store was asked to erase %q; want one batch, the damaged page's key not tried again", counted.calls)
	}
	page, _ := strings.CutSuffix(damaged.ID(), ".0")
	if line := logs.String(); !strings.Contains(line, "erasing keys of compacted workflows failed") || !strings.Contains(line, page) {
		t.Errorf("the pass logged %s; want the damaged page %s named", line, page)
	}
	wantErased(ctx, t, keys, good.ID())

	// Restored, the page has its key erased by the next sweep.
	if _, err := kv.Put(ctx, stored.Key(), stored.Value()); err != nil {
		t.Fatal(err)
	}
	c.Listed, c.States = keys, &heldKeys{holders: map[string]string{damaged.ID(): "wf-d"}}
	if n, err := c.Sweep(ctx); err != nil || n != 1 {
		t.Errorf("the sweep after the page's repair erased %d, %v; want its key erased", n, err)
	}
	wantErased(ctx, t, keys, damaged.ID())
}

// A damaged page's key that the read model, lagging, names again at every
// pass is logged once, then once every warnEvery with the lines left out,
// as a key carried to the next pass is: each such pass logged it, four a
// second while the projection is held up.
func TestCompactionLogsADamagedPageOnceWhileTheListLags(t *testing.T) {
	t.Parallel()
	ctx, l, keys, _ := openTwoProcessesKeys(t)
	dk, err := keys.NewPooledKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	damagePage(ctx, t, l.JetStream(), dk.ID())
	c := passesOverALaggingList(ctx, t, map[string]*engine.Workflow{"wf-d": endedSealing(t, "wf-d", dk.ID())}, keys)
	if len(c.unerased) != 0 {
		t.Errorf("keys carried to the next pass %q, want none: the sweep erases a damaged page's", c.unerased)
	}
}

// keepingKeys fails to erase one key, once, as a key store error would.
type keepingKeys struct {
	KeyDestroyer
	id    string
	mu    sync.Mutex
	calls [][]string
}

func (k *keepingKeys) DestroyKeys(ctx context.Context, ids []string) ([]string, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.calls = append(k.calls, slices.Clone(ids))
	if len(k.calls) > 1 || !slices.Contains(ids, k.id) {
		return k.KeyDestroyer.DestroyKeys(ctx, ids)
	}
	kept, err := k.KeyDestroyer.DestroyKeys(ctx, slices.DeleteFunc(slices.Clone(ids), func(id string) bool { return id == k.id }))
	return append(kept, k.id), errors.Join(err, fmt.Errorf("destroy data key %s: %w", k.id, context.DeadlineExceeded))
}

// The next pass tries again only the keys the previous one could not
// erase, not its whole batch.
func TestCompactionCarriesOnlyTheKeysItCouldNotErase(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l := newCompactionLog(5)
	keys := &keepingKeys{KeyDestroyer: l, id: "key-wf-00002"}
	c := &Compactor{Ended: l, Engine: l, Keys: keys, Now: time.Now, Logger: testutil.Logger(t)}
	if n, _, err := c.Pass(ctx); !errors.Is(err, context.DeadlineExceeded) || n != 5 {
		t.Fatalf("the first pass: %d compacted, %v; want 5, the key store's timeout", n, err)
	}
	if _, _, err := c.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	want := [][]string{{"key-wf-00000", "key-wf-00001", "key-wf-00002", "key-wf-00003", "key-wf-00004"}, {"key-wf-00002"}}
	slices.Sort(keys.calls[0])
	if !slices.EqualFunc(keys.calls, want, slices.Equal) {
		t.Errorf("erasures asked %q, want %q", keys.calls, want)
	}
	if len(l.destroyed) != 5 {
		t.Errorf("%d keys destroyed, want 5", len(l.destroyed))
	}
}

// A workflow compacted with no secrets key (only for the purges of the
// cached outputs it masks), which its state tells by a compaction that
// shredded nothing, costs the key store nothing: the pass erased a key
// named after it, which does not exist, two reads each. One with a key
// still has it erased: the key its log recorded, or, for one that sealed
// data before workflow.secrets_sealed existed, the key named after it.
func TestCompactionErasesOnlyTheKeysWorkflowsHave(t *testing.T) {
	ctx, keys := openKeys(t)
	const value = "sk-erase-or-not-40917"
	g := New(Config{Keys: keys, Authz: allowAll{}, Secrets: fakeSecrets{"tok": value}})
	def := []byte(`{"name":"k","version":1,"tasks":[{"name":"e","taskReferenceName":"e","inputParameters":{"k":"x"},"cacheConfig":{"key":"${k}","ttlInSecond":600}}]}`)
	for _, tc := range []struct {
		name  string
		ended func(wfID string) *engine.Workflow
		// erased is the key the pass erases; "" for none.
		erased func(w *engine.Workflow) string
	}{
		{"no_key", func(wfID string) *engine.Workflow {
			return applyAll(t, nil,
				&schemas.WorkflowStarted{WorkflowID: wfID, Name: "k", Version: 1, Def: def},
				&schemas.TaskScheduled{TaskID: "e1", Ref: "e", Name: "e", Type: "SIMPLE", Status: "SCHEDULED", Input: map[string]any{"k": "x"}, Time: 1},
				&schemas.TaskUpdated{TaskID: "e1", Status: "COMPLETED", Output: map[string]any{"v": value}, Time: 2},
				&schemas.ValuesMasked{Paths: []string{"task/e1/output.v"}})
		}, func(*engine.Workflow) string { return "" }},
		{"secrets_key", func(wfID string) *engine.Workflow {
			return protectAndFold(ctx, t, g, nil,
				&schemas.WorkflowStarted{WorkflowID: wfID, Name: "k", Version: 1, Def: def},
				&schemas.TaskScheduled{TaskID: "e1", Ref: "e", Name: "e", Type: "SIMPLE", Status: "SCHEDULED",
					Input: map[string]any{"k": "x", masking.KeySecrets: map[string]any{"t": value}}, Time: 1})
		}, func(w *engine.Workflow) string { return w.SecretsKey }},
		// A child whose input was sealed under the key named after it,
		// folded without the workflow.secrets_sealed that names it, as a
		// log written before it existed holds it.
		{"secrets_key_recorded_nowhere", func(wfID string) *engine.Workflow {
			in, refs, err := g.PrepareChild(ctx, engine.StartWorkflow{WorkflowID: wfID, From: "parent", CreatedBy: "admin",
				Input: map[string]any{"token": "${workflow.secrets.tok}"}, InputDeferred: [][]any{{"token"}}})
			if err != nil {
				t.Fatal(err)
			}
			dec, err := g.Protect(ctx, nil, engine.Decision{Events: []schemas.Event{&schemas.WorkflowStarted{WorkflowID: wfID, Name: "k", Version: 1,
				CreatedBy: "admin", ParentWorkflowID: "parent", Def: def, Input: in, Resolved: refs}}})
			if err != nil {
				t.Fatal(err)
			}
			return applyAll(t, nil, slices.DeleteFunc(dec.Events, func(ev schemas.Event) bool {
				_, sealed := ev.(*schemas.SecretsSealed)
				return sealed
			})...)
		}, func(w *engine.Workflow) string { return keyID(w.ID, masking.KindSecrets) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wfID := "wf-erase-" + tc.name
			w := applyAll(t, tc.ended(wfID), &schemas.WorkflowStatusChanged{Status: conductor.WorkflowTerminated, Reason: "stop", Time: 3})
			if !w.AwaitsCompaction() {
				t.Fatal("the workflow does not await compaction")
			}
			want := tc.erased(w)
			if want != "" {
				if _, err := keys.DataKey(ctx, want); err != nil {
					t.Fatalf("its key before the pass: %v", err)
				}
			}
			list := newCompactionLog(0)
			list.due = []string{wfID}
			counted := &countingKeys{KeyDestroyer: keys}
			c := &Compactor{Ended: list, Engine: &foldingEngine{states: map[string]*engine.Workflow{wfID: w}}, Keys: counted, Now: time.Now, Logger: testutil.Logger(t)}
			if n, _, err := c.Pass(ctx); err != nil || n != 1 {
				t.Fatalf("the pass compacted %d, %v; want the workflow compacted", n, err)
			}
			var calls [][]string
			if want != "" {
				calls = [][]string{{want}}
			}
			if !slices.EqualFunc(counted.calls, calls, slices.Equal) {
				t.Errorf("the pass asked the key store to erase %q, want %q", counted.calls, calls)
			}
			if want == "" {
				return
			}
			if _, err := keys.DataKey(ctx, want); !errors.Is(err, secrets.ErrKeyDestroyed) {
				t.Errorf("its key after the pass: %v, want it destroyed", err)
			}
		})
	}
}

// A key store that does not answer (its connection closed, a server not
// reached) fails the pass, so that Run waits longer before the next, as
// for a log that takes no writes. A key that fails alone does not, and
// the connection's errors, which the key store passes on as they are,
// read as such a key's: every pass, four a second, asked the key store
// again for the key it kept, and logged that it failed.
func TestCompactionBacksOffWhileTheKeyStoreIsUnreachable(t *testing.T) {
	t.Parallel()
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, 30*time.Second)
	keys, err := secrets.OpenKeys(ctx, l.JetStream(), secrets.GenerateMasterKey(), secrets.KeysOptions{Logger: testutil.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	list := newCompactionLog(1)
	if _, err := keys.NewDataKey(ctx, "key-wf-00000"); err != nil {
		t.Fatal(err)
	}
	l.Close()

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var waits []time.Duration
	c := &Compactor{Ended: list, Engine: list, Keys: keys, Interval: time.Second, Now: time.Now, Logger: testutil.Logger(t),
		After: answering(4, cancel, &waits)}
	c.Run(runCtx)
	if want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second}; !slices.Equal(waits, want) {
		t.Errorf("waits between passes %v, want %v", waits, want)
	}
	if !slices.Equal(c.unerased, []string{"key-wf-00000"}) {
		t.Errorf("keys kept for the next pass %q, want the one it could not erase", c.unerased)
	}
}
