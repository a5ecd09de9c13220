package executor

import (
	"errors"
	"testing"
	"time"

	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas"
)

// An append to a stream whose store failed a write fails with
// ErrNoStorage once an attempt went unanswered, and eventlog says that
// this is still ambiguous: the attempt may have been stored before the
// store failed. The executor must treat it so (look for the record, put
// back a take), not as a refusal that stored nothing.
func TestAppendToAFailedStoreIsAmbiguous(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	l := testutil.OpenLog(t, dir)
	ctx := testutil.Context(t, 40*time.Second)
	env := func(id string) []schemas.Envelope {
		return []schemas.Envelope{testutil.NoteEnvelope(t, id, 0)}
	}
	seq, err := l.Append(ctx, "fv.wf.store-failed", env("a"), 0)
	if err != nil {
		t.Fatal(err)
	}
	testutil.FailStreamStore(t, l, dir, "FV_WF", seq)
	_, err = l.Append(ctx, "fv.wf.store-failed-2", env("b"), 0)
	if !errors.Is(err, eventlog.ErrNoStorage) {
		t.Fatalf("append to a failed store: %v; want ErrNoStorage", err)
	}
	if !ambiguous(err) {
		t.Fatalf("ambiguous(%v) = false: an attempt that went unanswered may have been stored", err)
	}
}
