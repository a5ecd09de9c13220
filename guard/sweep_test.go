package guard

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/internal/testutil"
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
	keys, err := secrets.OpenKeys(ctx, l.JetStream(), secrets.GenerateMasterKey(), secrets.KeysOptions{Logger: testutil.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	dk, err := keys.NewPooledKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	bucket, key := secrets.DataKeyEntry(dk.ID())
	kv, err := l.JetStream().KeyValue(ctx, bucket)
	if err != nil {
		t.Fatal(err)
	}
	old, err := kv.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	// A rewrite whose erasure of the revision it replaced did not happen.
	if _, err := kv.Update(ctx, key, old.Value(), old.Revision()); err != nil {
		t.Fatal(err)
	}
	stream, err := l.JetStream().Stream(ctx, "KV_"+bucket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.GetMsg(ctx, old.Revision()); err != nil {
		t.Fatalf("the replaced revision before the sweep: %v", err)
	}

	c := &Compactor{Keys: keys}
	if _, err := c.Sweep(ctx, keys, noWorkflows{}); err != nil {
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
