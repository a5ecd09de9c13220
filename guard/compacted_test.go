package guard

import (
	"context"
	"testing"
	"time"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/secrets"
)

// openKeys opens a keyring on a fresh log, with a test's context.
func openKeys(t *testing.T) (context.Context, *secrets.Keys) {
	t.Helper()
	ctx := testutil.Context(t, 30*time.Second)
	return ctx, openKeysOn(ctx, t, testutil.OpenLog(t, ""), secrets.GenerateMasterKey())
}

// openTwoProcessesKeys opens the keys of two processes sharing a fresh
// log, with a test's context: each takes pooled keys from a page of its
// own.
func openTwoProcessesKeys(t *testing.T) (context.Context, *eventlog.Log, *secrets.Keys, *secrets.Keys) {
	t.Helper()
	ctx := testutil.Context(t, 30*time.Second)
	l := testutil.OpenLog(t, "")
	master := secrets.GenerateMasterKey()
	return ctx, l, openKeysOn(ctx, t, l, master), openKeysOn(ctx, t, l, master)
}

// openKeysOn opens the keys of l under master, as one process of those
// sharing the log does.
func openKeysOn(ctx context.Context, t *testing.T, l *eventlog.Log, master *secrets.MasterKey) *secrets.Keys {
	t.Helper()
	keys, err := secrets.OpenKeys(ctx, l.JetStream(), master, secrets.KeysOptions{Logger: testutil.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// A compacted workflow that runs again (restart, rerun, retry) seals what
// it seals from then on under a new key, also while its old key still
// exists: the compaction that recorded it erases that key after, or
// another engine still has it cached.
func TestCompactedWorkflowSealsUnderANewKey(t *testing.T) {
	ctx, keys := openKeys(t)
	old, err := keys.NewPooledKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var before *engine.Workflow
	for _, ev := range []schemas.Event{
		&schemas.WorkflowStarted{WorkflowID: "wf-c", Name: "w", Version: 1, Def: []byte(`{"name":"w","version":1,"tasks":[]}`), Time: 1},
		&schemas.SecretsSealed{Key: old.ID()},
		&schemas.WorkflowStatusChanged{Status: conductor.WorkflowCompleted, Time: 2},
		&schemas.WorkflowCompacted{Time: 3},
	} {
		if before, err = engine.Apply(before, ev); err != nil {
			t.Fatal(err)
		}
	}
	g := New(Config{Keys: keys})
	dec, err := g.Protect(ctx, before, engine.Decision{Events: []schemas.Event{
		&schemas.WorkflowReset{Kind: schemas.ResetRestart, Time: 4},
		&schemas.TaskScheduled{TaskID: "t-1", Ref: "t", Name: "t", Type: conductor.TaskTypeSimple, Status: conductor.TaskScheduled,
			Input: map[string]any{"_secrets": map[string]any{"v": "fresh-value-after-restart"}}, Time: 4},
	}})
	if err != nil {
		t.Fatal(err)
	}
	var sealed *schemas.SecretsSealed
	for _, ev := range dec.Events {
		if s, ok := ev.(*schemas.SecretsSealed); ok {
			sealed = s
		}
	}
	if sealed == nil || sealed.Key == "" || sealed.Key == old.ID() {
		t.Fatalf("the restart's seal recorded %+v; want a new key, not %s", sealed, old.ID())
	}
}
