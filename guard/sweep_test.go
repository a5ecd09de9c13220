package guard

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/internal/logkey"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/masking"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/secrets"
)

// noWorkflows is a WorkflowState that knows no workflow and no key holder.
type noWorkflows struct{}

func (noWorkflows) Workflow(context.Context, string) (*engine.Workflow, error) {
	return nil, fault.ErrNotFound
}
func (noWorkflows) KeyHolder(context.Context, string) (string, bool, error) { return "", false, nil }
func (noWorkflows) RemovedAwaitingCompaction(context.Context, string) (bool, error) {
	return false, nil
}

// The start-up sweep erases the revision of a key page that a crash left
// behind its rewrite (which no listing of live keys names), and keeps the
// page's live revision.
func TestSweepErasesRevisionsACrashLeft(t *testing.T) {
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, 30*time.Second)
	keys := openKeysOn(ctx, t, l, secrets.GenerateMasterKey())
	dk, err := keys.NewPooledKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	kv, old := keyEntry(ctx, t, l, dk.ID())
	// A rewrite whose erasure of the revision it replaced did not happen.
	if _, err := kv.Update(ctx, old.Key(), old.Value(), old.Revision()); err != nil {
		t.Fatal(err)
	}
	stream, err := l.JetStream().Stream(ctx, "KV_"+kv.Bucket())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.GetMsg(ctx, old.Revision()); err != nil {
		t.Fatalf("the replaced revision before the sweep: %v", err)
	}

	c := &Compactor{Keys: keys, Listed: keys, States: noWorkflows{}}
	if _, err := c.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.GetMsg(ctx, old.Revision()); !errors.Is(err, jetstream.ErrMsgNotFound) {
		t.Fatalf("the replaced revision after the sweep: %v, want it erased", err)
	}
	keys.ClearCache()
	if _, err := keys.DataKey(ctx, dk.ID()); err != nil {
		t.Fatalf("the live key after the sweep: %v", err)
	}
}

// keyEntry returns the bucket of data key id (its page's, for a pooled
// key) and the entry that holds it.
func keyEntry(ctx context.Context, t *testing.T, l *eventlog.Log, id string) (jetstream.KeyValue, jetstream.KeyValueEntry) {
	t.Helper()
	bucket, key := secrets.DataKeyEntry(id)
	kv, err := l.JetStream().KeyValue(ctx, bucket)
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	return kv, e
}

// sweptKeys is a KeyLister and WorkflowState of one workflow, compacted,
// whose key a dead engine left: it counts the listings.
type sweptKeys struct {
	noWorkflows
	listings int
}

func (k *sweptKeys) DataKeyIDs(context.Context, string) (map[string]time.Time, error) {
	k.listings++
	return map[string]time.Time{"wf.left." + string(masking.KindSecrets): {}}, nil
}
func (*sweptKeys) PooledKeyIDs(context.Context) ([]string, error) { return nil, nil }
func (*sweptKeys) EraseSuperseded(context.Context) (int, error)   { return 0, nil }
func (*sweptKeys) EraseDamagedPage(context.Context, string) (bool, error) {
	return false, nil
}
func (*sweptKeys) Workflow(_ context.Context, id string) (*engine.Workflow, error) {
	return &engine.Workflow{ID: id, Status: conductor.WorkflowCompleted, Compacted: true}, nil
}

// Run sweeps for keys of compacted workflows every SweepEvery, between its
// passes: the key of a workflow another engine compacted and died before
// erasing goes without an engine's start.
func TestRunSweepsForKeysLeftBehind(t *testing.T) {
	l := newCompactionLog(0)
	keys := &sweptKeys{}
	now := time.Unix(0, 0)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ticks := 0
	c := &Compactor{Ended: l, Engine: l, Keys: l, Listed: keys, States: keys, SweepEvery: 10 * time.Minute,
		Interval: time.Minute, Now: func() time.Time { return now }, Logger: slog.New(slog.DiscardHandler),
		After: func(time.Duration) <-chan time.Time {
			// A tick a minute; the 25th ends the run.
			if ticks++; ticks == 25 {
				cancel()
			}
			now = now.Add(time.Minute)
			ready := make(chan time.Time, 1)
			ready <- now
			return ready
		}}
	c.Run(ctx)
	if keys.listings != 2 {
		t.Errorf("%d sweeps in 24 minutes, want 2 (one every 10)", keys.listings)
	}
	if !l.destroyed["wf.left."+string(masking.KindSecrets)] {
		t.Errorf("the key a dead engine left was not erased: destroyed %v", l.destroyed)
	}
}

// removedChild is a KeyLister and WorkflowState of a child whose start
// sealed its input under the key named after it, recorded with the start
// (holder), then removed without an archive and compacted by an engine
// that died before erasing the key; or, without holder, a child whose
// start is not in the read model yet.
type removedChild struct {
	noWorkflows
	holder, awaiting bool
}

func (removedChild) DataKeyIDs(context.Context, string) (map[string]time.Time, error) {
	return map[string]time.Time{keyID("kid", masking.KindSecrets): {}}, nil
}
func (removedChild) PooledKeyIDs(context.Context) ([]string, error) { return nil, nil }
func (removedChild) EraseSuperseded(context.Context) (int, error)   { return 0, nil }
func (removedChild) EraseDamagedPage(context.Context, string) (bool, error) {
	return false, nil
}
func (c removedChild) KeyHolder(_ context.Context, id string) (string, bool, error) {
	if c.holder && id == keyID("kid", masking.KindSecrets) {
		return "kid", true, nil
	}
	return "", false, nil
}
func (c removedChild) RemovedAwaitingCompaction(context.Context, string) (bool, error) {
	return c.awaiting, nil
}

// The sweep erases the key named after a workflow that its log recorded
// and that was removed, once no compaction is due: the key of a child
// removed without an archive stayed for good when the engine that
// compacted it died before erasing it (its state is gone, which the sweep
// read as a start not applied yet), and with it every _secrets value the
// child's log holds. A removed child still due, and a workflow whose log
// has not recorded the key, keep it.
func TestSweepErasesTheKeyOfARemovedChild(t *testing.T) {
	for _, tc := range []struct {
		name   string
		state  removedChild
		erased bool
	}{
		{"removed and compacted", removedChild{holder: true}, true},
		{"removed, compaction due", removedChild{holder: true, awaiting: true}, false},
		{"start not applied yet", removedChild{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newCompactionLog(0)
			c := &Compactor{Keys: l, Listed: tc.state, States: tc.state}
			n, err := c.Sweep(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if erased := l.destroyed[keyID("kid", masking.KindSecrets)]; erased != tc.erased || n != len(l.destroyed) {
				t.Errorf("erased %v (%d), want %v", l.destroyed, n, tc.erased)
			}
		})
	}
}

// A sweep that erases some keys and fails on another says how many it
// erased in its warning, at start-up and between passes: it logged the
// warning or the count, and since DestroyKeys goes past a key it cannot
// erase, the count of one that failed was never logged.
func TestSweepThatFailsSaysHowManyItErased(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		sweep func(ctx context.Context, c *Compactor)
	}{
		{"at start-up", func(ctx context.Context, c *Compactor) { c.SweepAndLog(ctx) }},
		{"between passes", func(ctx context.Context, c *Compactor) {
			ctx, cancel := context.WithCancel(ctx)
			defer cancel()
			l := newCompactionLog(0)
			now := time.Unix(0, 0)
			c.Ended, c.Engine, c.SweepEvery, c.Now = l, l, time.Minute, func() time.Time { return now }
			c.After = func(time.Duration) <-chan time.Time {
				if now != time.Unix(0, 0) {
					cancel() // the second wait: after one sweep
				}
				now = now.Add(time.Minute)
				ready := make(chan time.Time, 1)
				ready <- now
				return ready
			}
			c.Run(ctx)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, keys := openKeys(t)
			var good []string
			for _, wfID := range []string{"wf-a", "wf-b", "wf-c"} {
				dk, err := keys.NewDataKey(ctx, keyID(wfID, masking.KindSecrets))
				if err != nil {
					t.Fatal(err)
				}
				good = append(good, dk.ID())
			}
			kept := good[2]
			good = good[:2]
			logger, logs := testutil.CapturingLogger()
			c := &Compactor{Keys: &keepingKeys{KeyDestroyer: keys, id: kept}, Listed: keys, States: &sweptKeys{}, Logger: logger}
			tc.sweep(ctx, c)
			wantErased(ctx, t, keys, good...)
			if got := logs.String(); !strings.Contains(got, `"msg":"compaction sweep failed","count":2,`) || !strings.Contains(got, kept) {
				t.Errorf("the sweep logged %s; want its warning to name %s and count the 2 keys it erased", got, kept)
			}
		})
	}
}

// heldKeys is sweptKeys whose pooled keys are held by the workflows
// holders names, those live names running and sealing under their key,
// and whose reads of those unread names fail.
type heldKeys struct {
	sweptKeys
	holders      map[string]string // pooled key id → workflow
	live, unread map[string]bool
}

func (k *heldKeys) KeyHolder(_ context.Context, id string) (string, bool, error) {
	wfID, ok := k.holders[id]
	return wfID, ok, nil
}

func (k *heldKeys) Workflow(ctx context.Context, id string) (*engine.Workflow, error) {
	if k.unread[id] {
		return nil, errReadModel
	}
	for key, wfID := range k.holders {
		if wfID == id && k.live[id] {
			return &engine.Workflow{ID: id, Status: conductor.WorkflowRunning, SealsSecrets: true, SecretsKey: key}, nil
		}
	}
	return k.sweptKeys.Workflow(ctx, id)
}

// A key page the sweep cannot read (damaged) keeps no other key: the
// sweep erases the named keys of compacted workflows and the pooled keys
// of the pages it can read, and its warning names the page and counts
// what it erased. Listing the pooled keys failed on the page, and the
// sweep returned before erasing anything.
func TestSweepGoesPastADamagedKeyPage(t *testing.T) {
	t.Parallel()
	ctx, l, keys, other := openTwoProcessesKeys(t)
	var spent []string
	for _, wfID := range []string{"wf-a", "wf-b"} {
		dk, err := keys.NewDataKey(ctx, keyID(wfID, masking.KindSecrets))
		if err != nil {
			t.Fatal(err)
		}
		spent = append(spent, dk.ID())
	}
	damaged, err := keys.NewPooledKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pooled, err := other.NewPooledKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	spent = append(spent, pooled.ID())
	damagePage(ctx, t, l.JetStream(), damaged.ID())
	page := damaged.ID()[:strings.LastIndexByte(damaged.ID(), '.')]

	logger, logs := testutil.CapturingLogger()
	states := &heldKeys{holders: map[string]string{damaged.ID(): "wf-p", pooled.ID(): "wf-q"}, live: map[string]bool{"wf-p": true}}
	c := &Compactor{Keys: keys, Listed: keys, States: states, Logger: logger}
	c.SweepAndLog(ctx)
	wantErased(ctx, t, keys, spent...)
	if got := logs.String(); !strings.Contains(got, `"msg":"compaction sweep failed","count":3,`) || !strings.Contains(got, page) {
		t.Errorf("the sweep logged %s; want its warning to name page %s and count the 3 keys it erased", got, page)
	}
}

// damagePage overwrites the page of pooled key id with garbage in its KV
// bucket, as damage would: no key of the page can be unwrapped since.
func damagePage(ctx context.Context, t *testing.T, js jetstream.JetStream, id string) {
	t.Helper()
	bucket, key := secrets.DataKeyEntry(id)
	kv, err := js.KeyValue(ctx, bucket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, key, []byte("garbage")); err != nil {
		t.Fatal(err)
	}
}

// misnamedKeys lists, besides a real key store's keys, ids no key can
// have, as a damaged record would name them.
type misnamedKeys struct {
	*secrets.Keys
	named, pooled string
}

func (k misnamedKeys) DataKeyIDs(ctx context.Context, prefix string) (map[string]time.Time, error) {
	ids, err := k.Keys.DataKeyIDs(ctx, prefix)
	ids[k.named] = time.Time{}
	return ids, err
}

func (k misnamedKeys) PooledKeyIDs(ctx context.Context) ([]string, error) {
	ids, err := k.Keys.PooledKeyIDs(ctx)
	return append(ids, k.pooled), err
}

// A sweep counts the keys it erased, not the ids that cannot name a key,
// which it names in its error: it counted every id it asked to erase but
// those DestroyKeys kept, and DestroyKeys keeps no invalid id.
func TestSweepCountsOnlyTheKeysItErased(t *testing.T) {
	t.Parallel()
	ctx, keys := openKeys(t)
	dk, err := keys.NewDataKey(ctx, keyID("wf-a", masking.KindSecrets))
	if err != nil {
		t.Fatal(err)
	}
	listed := misnamedKeys{Keys: keys, named: "wf.bad..s", pooled: "kp.x.64"}
	states := &heldKeys{holders: map[string]string{listed.pooled: "wf-p"}}
	c := &Compactor{Keys: keys, Listed: listed, States: states}
	n, err := c.Sweep(ctx)
	if n != 1 || !errors.Is(err, secrets.ErrInvalidKeyID) || !strings.Contains(err.Error(), listed.named) || !strings.Contains(err.Error(), listed.pooled) {
		t.Errorf("the sweep erased %d, %v; want 1 erased and both invalid ids named", n, err)
	}
	wantErased(ctx, t, keys, dk.ID())
}

// wantErased fails t for each key of ids that keys, its cache cleared,
// still opens after a sweep.
func wantErased(ctx context.Context, t *testing.T, keys *secrets.Keys, ids ...string) {
	t.Helper()
	keys.ClearCache()
	for _, id := range ids {
		if _, err := keys.DataKey(ctx, id); !errors.Is(err, secrets.ErrKeyDestroyed) {
			t.Errorf("key %s after the sweep: %v, want it destroyed", id, err)
		}
	}
}

// errReadModel is every read that failingReadModel fails.
var errReadModel = errors.New("read model unreadable")

// failingReadModel is a read model of compacted workflows, those removed
// gone, whose reads fail for the keys (KeyHolder) and workflows
// (Workflow, RemovedAwaitingCompaction) fails names.
type failingReadModel struct {
	holders map[string]string // pooled key → workflow
	removed map[string]bool
	fails   map[string]bool
}

func (m failingReadModel) Workflow(_ context.Context, id string) (*engine.Workflow, error) {
	switch {
	case m.fails[id] && !m.removed[id]:
		return nil, errReadModel
	case m.removed[id]:
		return nil, fault.ErrNotFound
	}
	return &engine.Workflow{ID: id, Status: conductor.WorkflowCompleted, Compacted: true}, nil
}

func (m failingReadModel) KeyHolder(_ context.Context, id string) (string, bool, error) {
	if m.fails[id] {
		return "", false, errReadModel
	}
	if wfID, ok := m.holders[id]; ok {
		return wfID, true, nil
	}
	if rest, ok := strings.CutPrefix(id, "wf."); ok && m.removed[strings.TrimSuffix(rest, "."+string(masking.KindSecrets))] {
		return strings.TrimSuffix(rest, "."+string(masking.KindSecrets)), true, nil
	}
	return "", false, nil
}

func (m failingReadModel) RemovedAwaitingCompaction(_ context.Context, id string) (bool, error) {
	if m.fails[id] {
		return false, errReadModel
	}
	return false, nil
}

// unlistedNames is a real key store whose listing of the keys named after
// workflows fails, as one whose bucket does not answer.
type unlistedNames struct{ *secrets.Keys }

var errListing = errors.New("key bucket does not answer")

func (unlistedNames) DataKeyIDs(context.Context, string) (map[string]time.Time, error) {
	return nil, errListing
}

// unerasedRevisions is a real key store whose erasure of the revisions a
// crash left behind fails.
type unerasedRevisions struct{ *secrets.Keys }

var errErasure = errors.New("superseded revisions not erased")

func (unerasedRevisions) EraseSuperseded(context.Context) (int, error) { return 0, errErasure }

// A sweep goes past a listing of the key store that fails, an erasure of
// superseded revisions that fails, and a key whose holder or workflow the
// read model cannot read: it erases the spent keys it listed and could
// judge, keeps the key it could not judge (its workflow may still need
// it), and fails naming what it could not list, erase or read. It
// returned at the first such failure, before erasing anything.
func TestSweepGoesPastAListingThatFails(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		// unlisted lists no named key; unerased fails to erase
		// superseded revisions; fails names the key (by its index:
		// pooled 0 and 1, named 2 to 4) or workflow whose reads fail.
		unlisted, unerased bool
		fails              string
		// kept are the keys (by index) the sweep keeps, want what its
		// error says.
		kept []int
		want error
	}{
		{name: "named keys unlisted", unlisted: true, kept: []int{2, 3, 4}, want: errListing},
		{name: "superseded revisions unerased", unerased: true, want: errErasure},
		{name: "a pooled key's holder unread", fails: "key 0", kept: []int{0}, want: errReadModel},
		{name: "a named key's holder unread", fails: "key 2", kept: []int{2}, want: errReadModel},
		{name: "a workflow's state unread", fails: "wf-q", kept: []int{1}, want: errReadModel},
		{name: "a removed workflow unread", fails: "wf-gone", kept: []int{4}, want: errReadModel},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, keys := openKeys(t)
			var ids []string
			for range 2 {
				dk, err := keys.NewPooledKey(ctx)
				if err != nil {
					t.Fatal(err)
				}
				ids = append(ids, dk.ID())
			}
			for _, wfID := range []string{"wf-a", "wf-b", "wf-gone"} {
				dk, err := keys.NewDataKey(ctx, keyID(wfID, masking.KindSecrets))
				if err != nil {
					t.Fatal(err)
				}
				ids = append(ids, dk.ID())
			}
			m := failingReadModel{holders: map[string]string{ids[0]: "wf-p", ids[1]: "wf-q"},
				removed: map[string]bool{"wf-gone": true}, fails: map[string]bool{}}
			failing := tc.fails
			if i, ok := strings.CutPrefix(tc.fails, "key "); ok {
				failing = ids[int(i[0]-'0')]
			}
			m.fails[failing] = true
			var listed KeyLister = keys
			switch {
			case tc.unlisted:
				listed = unlistedNames{keys}
			case tc.unerased:
				listed = unerasedRevisions{keys}
			}
			c := &Compactor{Keys: keys, Listed: listed, States: m}
			n, err := c.Sweep(ctx)
			var spent, kept []string
			for i, id := range ids {
				if slices.Contains(tc.kept, i) {
					kept = append(kept, id)
				} else {
					spent = append(spent, id)
				}
			}
			if n != len(spent) || !errors.Is(err, tc.want) {
				t.Errorf("the sweep erased %d, %v; want %d erased and %v", n, err, len(spent), tc.want)
			}
			if err != nil && tc.fails != "" && !strings.Contains(err.Error(), failing) {
				t.Errorf("the sweep failed with %v; want %s named", err, failing)
			}
			wantErased(ctx, t, keys, spent...)
			for _, id := range kept {
				if _, err := keys.DataKey(ctx, id); err != nil {
					t.Errorf("key %s, unlisted or unjudged, after the sweep: %v; want it kept", id, err)
				}
			}
		})
	}
}

// oneWorkflow is a read model of one workflow, in the state it is given.
type oneWorkflow struct {
	noWorkflows
	w *engine.Workflow
}

func (o oneWorkflow) Workflow(_ context.Context, id string) (*engine.Workflow, error) {
	if id != o.w.ID {
		return nil, fault.ErrNotFound
	}
	return o.w, nil
}

// A running workflow that sealed a session under the key named after it
// before workflow.secrets_sealed existed, and whose rerun dropped the task
// that held it, keeps its key: its state holds the session as the dropped
// task's reference (Workflow.Resolved), from which an engine started since
// learns what to redact. The sweep took a state whose data held nothing
// sealed for one done with its key and erased it, a later task's _secrets
// went under a pooled key, and either way a worker of the old run echoing
// the session in a later task's log was kept in plain text.
func TestSweepKeepsTheKeyARunningWorkflowsDroppedTaskSealedUnder(t *testing.T) {
	t.Parallel()
	ctx, keys := openKeys(t)
	const wfID, session = "wf-legacy", "sess-legacy-77319420"
	config := Config{Keys: keys, Authz: allowAll{}, Secrets: fakeSecrets{"tok": "tok-legacy-55120987"}}
	g := New(config)
	// What an engine from before workflow.secrets_sealed recorded: the
	// same events, none naming the key.
	protect := func(w *engine.Workflow, events ...schemas.Event) *engine.Workflow {
		t.Helper()
		dec, err := g.Protect(ctx, w, engine.Decision{Events: events})
		if err != nil {
			t.Fatal(err)
		}
		return applyAll(t, w, slices.DeleteFunc(dec.Events, func(ev schemas.Event) bool {
			_, sealed := ev.(*schemas.SecretsSealed)
			return sealed
		})...)
	}
	in, refs, err := g.PrepareChild(ctx, engine.StartWorkflow{WorkflowID: wfID, From: "parent", CreatedBy: "admin",
		Input: map[string]any{"token": "${workflow.secrets.tok}"}, InputDeferred: [][]any{{"token"}}})
	if err != nil {
		t.Fatal(err)
	}
	w := protect(nil, &schemas.WorkflowStarted{WorkflowID: wfID, Name: "k", Version: 1, CreatedBy: "admin", ParentWorkflowID: "parent",
		Def: []byte(`{"name":"k","version":1,"tasks":[{"name":"t","taskReferenceName":"t"}]}`), Input: in, Resolved: refs})
	w = applyAll(t, w, &schemas.TaskScheduled{TaskID: "t-1", Ref: "t", Name: "t", Type: conductor.TaskTypeSimple, Status: conductor.TaskScheduled, Time: 1})
	w = protect(w, &schemas.TaskUpdated{TaskID: "t-1", Status: conductor.TaskCompleted,
		Output: map[string]any{masking.KeySecrets: map[string]any{"session": session}}, Time: 2})
	if w.SealsSecrets || w.SecretsKey != "" {
		t.Fatalf("the workflow records its key (%t, %q); want it recorded nowhere", w.SealsSecrets, w.SecretsKey)
	}
	w = applyAll(t, w,
		&schemas.WorkflowReset{Kind: schemas.ResetRerun, KeepBeforeSeq: w.TaskByID("t-1").Seq, SetInput: true, Input: map[string]any{"token": "none"}, Time: 3},
		&schemas.TaskScheduled{TaskID: "t-2", Ref: "t", Name: "t", Type: conductor.TaskTypeSimple, Status: conductor.TaskScheduled, Time: 3})

	c := &Compactor{Keys: keys, Listed: keys, States: oneWorkflow{w: w}}
	if _, err := c.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	keys.ClearCache()
	if _, err := keys.DataKey(ctx, keyID(wfID, masking.KindSecrets)); err != nil {
		t.Errorf("the key of %s, running, after the sweep: %v; want it kept", wfID, err)
	}
	if ended := applyAll(t, w, &schemas.WorkflowStatusChanged{Status: conductor.WorkflowCompleted, Time: 4}); !ended.AwaitsCompaction() {
		t.Error("ended, the workflow does not await compaction; want it to, for its key to go then")
	}

	// A later task's _secrets go under that key too: under a key taken
	// from the pool, recorded as the workflow's, redaction opened the
	// dropped task's reference with that key, and learned nothing.
	dec, err := g.Protect(ctx, w, engine.Decision{Events: []schemas.Event{&schemas.TaskUpdated{TaskID: "t-2", Status: conductor.TaskInProgress,
		Output: map[string]any{masking.KeySecrets: map[string]any{"next": "sess-next-44018236"}}, Time: 4}}})
	if err != nil {
		t.Fatal(err)
	}
	if w = applyAll(t, w, dec.Events...); w.SecretsKey != keyID(wfID, masking.KindSecrets) {
		t.Errorf("the later task's _secrets sealed under %q; want the key named after the workflow", w.SecretsKey)
	}
	dec, err = New(config).Protect(ctx, w, engine.Decision{Events: []schemas.Event{
		&schemas.TaskLogged{TaskID: "t-2", Lines: []string{"resumed " + session}, Times: []int64{5}}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range dec.Events {
		if logged, ok := ev.(*schemas.TaskLogged); ok && strings.Contains(strings.Join(logged.Lines, "\n"), session) {
			t.Errorf("an engine started after the sweep recorded the log line %q; want the session redacted", logged.Lines)
		}
	}
}

// A damaged key page that no live workflow holds a key of is erased whole,
// every revision of it: its spent keys cannot be zeroed in it, and AES-GCM
// leaves a page with a flipped bit open to whoever has the master key and
// skips the tag. One a live workflow holds a key of, or one the read
// model cannot say of, is kept, and so is one wrapped under a term the
// keyring does not hold, which a keyring reload may open. Another
// engine's healthy page under the same term shows that the keyring's term
// is the one that wrapped it (see TestSweepKeepsThePagesOfAReplacedKeyring).
// The sweep kept every damaged page, named in its warning; it logs the
// erasure of one, which it did not when no workflow recorded a key of it.
func TestSweepErasesADamagedPageNoLiveWorkflowHolds(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		// damage changes the page's stored value.
		damage func(v []byte)
		// wf-b, holding a key of the page, runs, or cannot be read.
		live, unread bool
		// unrecorded: no workflow recorded a key of the page.
		unrecorded bool
		kept       string // what the sweep's error says of a page it keeps
	}{
		{"a flipped bit, every key spent", flipBit, false, false, false, ""},
		{"a broken tag, every key spent", func(v []byte) { v[len(v)-1] ^= 0x01 }, false, false, false, ""},
		{"a flipped bit, no key recorded", flipBit, false, false, true, ""},
		{"a flipped bit, a key live", flipBit, true, false, false, "kept while live workflows hold 1 of its keys (wf-b the first)"},
		{"a flipped bit, a key unjudged", flipBit, false, true, false, "the read model did not say whether key"},
		{"an unknown term, every key spent", func(v []byte) { copy(v, []byte{0xff, 0xff, 0xff, 0xff}) }, false, false, false, "unknown key term"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, l, keys, other := openTwoProcessesKeys(t)
			if _, err := other.NewPooledKey(ctx); err != nil {
				t.Fatal(err)
			}
			holders := map[string]string{}
			for _, wfID := range []string{"wf-a", "wf-b"} {
				dk, err := keys.NewPooledKey(ctx)
				if err != nil {
					t.Fatal(err)
				}
				holders[dk.ID()] = wfID
			}
			var first string
			for id, wfID := range holders {
				if wfID == "wf-a" {
					first = id
				}
			}
			// wf-a's compaction zeroed its slot before the damage.
			if kept, err := keys.DestroyKeys(ctx, []string{first}); err != nil {
				t.Fatal(kept, err)
			}
			kv, e := keyEntry(ctx, t, l, first)
			intact := slices.Clone(e.Value())
			damaged := slices.Clone(intact)
			tc.damage(damaged)
			if _, err := kv.Put(ctx, e.Key(), damaged); err != nil {
				t.Fatal(err)
			}

			spent := 2
			if tc.unrecorded {
				spent = 0
				holders = nil
			}
			states := &heldKeys{holders: holders, live: map[string]bool{"wf-b": tc.live}, unread: map[string]bool{"wf-b": tc.unread}}
			logger, logs := testutil.CapturingLogger()
			c := &Compactor{Keys: keys, Listed: keys, States: states, Logger: logger}
			n, err := c.Sweep(ctx)
			page := first[:strings.LastIndexByte(first, '.')]
			stored := pageMessages(ctx, t, l, kv.Bucket(), e.Key(), intact, damaged)
			logged := logs.Records(erasedPageMsg)
			if tc.kept == "" {
				if n != spent || err != nil || stored != 0 {
					t.Fatalf("the sweep erased %d, %v, and %d messages of the stream hold page %s; want it erased whole, %d spent keys with it", n, err, stored, page, spent)
				}
				if len(logged) != 1 || logged[0][logkey.Page] != page || logged[0][logkey.Count] != float64(spent) {
					t.Errorf("the sweep logged %v of the pages it erased; want page %s, count %d", logged, page, spent)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), page) || !strings.Contains(err.Error(), tc.kept) || stored != 1 {
				t.Fatalf("the sweep erased %d, %v, and %d messages of the stream hold page %s; want it kept, its damaged revision alone, and the error to name it and say %q", n, err, stored, page, tc.kept)
			}
		})
	}
}

// erasedPageMsg is the line the sweep logs for a damaged page it erased.
const erasedPageMsg = "erased a damaged key page whole, as no live workflow held a key of it; count: the keys of compacted workflows erased with it"

// A keyring whose entry was replaced (purged, and a new keyring created,
// which starts at term 1 again) opens no page the old one wrapped, under
// "term 1" as they were: the pages are not damaged, and the sweep keeps
// them, logging an error naming the term, before the new keyring wraps
// anything and after: its own pages open under term 1, but the old pages
// were stored before its term 1 was created. Once the old keyring is put
// back, a key of such a page, one its engine handed out after the sweep
// too, opens what it sealed. The sweep erased the page whole, as no
// workflow recorded a key of it, and logged nothing: the values sealed
// under its keys read as *** for good.
func TestSweepKeepsThePagesOfAReplacedKeyring(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, 30*time.Second)
	l := testutil.OpenLog(t, "")
	mk := secrets.GenerateMasterKey()
	again, err := secrets.ParseMasterKey(string(mk.Text()))
	if err != nil {
		t.Fatal(err)
	}
	a := openKeysOn(ctx, t, l, mk)
	before, err := a.NewPooledKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	main, err := l.JetStream().KeyValue(ctx, secrets.KeyBucket)
	if err != nil {
		t.Fatal(err)
	}
	ring, err := main.Get(ctx, "keyring")
	if err != nil {
		t.Fatal(err)
	}
	if err := main.Purge(ctx, "keyring"); err != nil {
		t.Fatal(err)
	}
	logger, logs := testutil.CapturingLogger()
	b, err := secrets.OpenKeys(ctx, l.JetStream(), secrets.GenerateMasterKey(), secrets.KeysOptions{Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	c := &Compactor{Keys: b, Listed: b, States: &heldKeys{}, Logger: logger}
	page := before.ID()[:strings.LastIndexByte(before.ID(), '.')]
	bucket, key := secrets.DataKeyEntry(before.ID())
	for _, when := range []string{"before it wraps a key", "after"} {
		if when == "after" {
			if _, err := b.NewPooledKey(ctx); err != nil {
				t.Fatal(err)
			}
		}
		n, err := c.Sweep(ctx)
		if stored := pageMessages(ctx, t, l, bucket, key); n != 0 || !errors.Is(err, secrets.ErrKeyringMismatch) || !strings.Contains(err.Error(), page) || stored != 1 {
			t.Fatalf("%s, the new keyring's sweep erased %d, %v, and %d messages hold page %s; want it kept, and an error naming it and saying the keyring does not match", when, n, err, stored, page)
		}
	}
	warned := logs.Records("key pages do not open under a keyring term that does not match the key store (the keyring replaced, by a new one starting at term 1 again?): they are kept; put the keyring back to open them")
	if len(warned) != 2 || warned[0]["level"] != "ERROR" || warned[0][logkey.Version] != 1.0 || warned[0][logkey.Page] != page || len(logs.Records(erasedPageMsg)) != 0 {
		t.Errorf("the sweeps logged %s; want an error naming term 1 and page %s each time, and no page erased", logs, page)
	}

	after, err := a.NewPooledKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sealed := after.Seal([]byte("p"), []byte("v"))
	if _, err := main.Put(ctx, "keyring", ring.Value()); err != nil {
		t.Fatal(err)
	}
	restored := openKeysOn(ctx, t, l, again)
	for _, dk := range []*secrets.DataKey{before, after} {
		if _, err := restored.DataKey(ctx, dk.ID()); err != nil {
			t.Errorf("with the keyring put back, key %s: %v; want it to open", dk.ID(), err)
		}
	}
	if dk, err := restored.DataKey(ctx, after.ID()); err == nil {
		if v, err := dk.Open([]byte("p"), sealed); err != nil || string(v) != "v" {
			t.Errorf("with the keyring put back, key %s opens what it sealed: %q, %v", after.ID(), v, err)
		}
	}
}

// flipBit flips a bit of the ciphertext within the wrapped value v.
func flipBit(v []byte) { v[len(v)/2] ^= 0x10 }

// pageMessages counts the messages of bucket's stream that are key's, or
// hold a part of any of values, reading every message the stream still
// has.
func pageMessages(ctx context.Context, t *testing.T, l *eventlog.Log, bucket, key string, values ...[]byte) int {
	t.Helper()
	stream, err := l.JetStream().Stream(ctx, "KV_"+bucket)
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && seq > 0; seq++ {
		m, err := stream.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		holds := strings.HasSuffix(m.Subject, "."+key)
		for _, v := range values {
			holds = holds || bytes.Contains(m.Data, v[len(v)/4:len(v)/2])
		}
		if holds {
			n++
		}
	}
	return n
}

// A key shard whose stream is gone keeps only its own keys: the sweep
// erases the spent keys of every other shard, those behind it too, and
// fails naming it. The listings stopped at it and the sweep erased no key
// of a shard after it.
func TestSweepGoesPastAKeyShardThatFails(t *testing.T) {
	t.Parallel()
	ctx, l, keys, _ := openTwoProcessesKeys(t)
	var spent []string
	for _, wfID := range []string{"wf-a", "wf-b", "wf-c", "wf-d"} {
		dk, err := keys.NewDataKey(ctx, keyID(wfID, masking.KindSecrets))
		if err != nil {
			t.Fatal(err)
		}
		spent = append(spent, dk.ID())
	}
	pooled, err := keys.NewPooledKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	spent = append(spent, pooled.ID())
	used := map[string]bool{}
	for _, id := range spent {
		bucket, _ := secrets.DataKeyEntry(id)
		used[bucket] = true
	}
	// The first shard that holds none of the keys fails, so that some are
	// in shards listed after it.
	failing, behind := "", 0
	for i := range 16 { // the shards FV_KEYS_WF00 to WF15
		name := fmt.Sprintf("%s_WF%02d", secrets.KeyBucket, i)
		switch {
		case failing == "" && !used[name]:
			failing = name
		case failing != "" && used[name]:
			behind++
		}
	}
	if behind == 0 {
		t.Fatalf("no key in a shard after %s: %v", failing, used)
	}
	if err := l.JetStream().DeleteStream(ctx, "KV_"+failing); err != nil {
		t.Fatal(err)
	}
	states := &heldKeys{holders: map[string]string{pooled.ID(): "wf-p"}}
	c := &Compactor{Keys: keys, Listed: keys, States: states}
	n, err := c.Sweep(ctx)
	if n != len(spent) || err == nil || !strings.Contains(err.Error(), failing) {
		t.Errorf("the sweep erased %d, %v; want %d erased and %s named", n, err, len(spent), failing)
	}
	wantErased(ctx, t, keys, spent...)
}
