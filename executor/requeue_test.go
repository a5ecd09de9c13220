package executor

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/workers"
)

// An explicit requeue (Reconcile.Requeue) is for a queue that lost its
// messages: its dispatch must land although the stream's duplicate window
// still remembers the lost message's id, which a plain reconcile reuses.
func TestExplicitRequeueIsNotADuplicate(t *testing.T) {
	l := testutil.OpenLog(t, "")
	e := startExecutor(t, l, nothingScheduled{}, Config{})
	ctx := testutil.Context(t, 30*time.Second)
	const id = "wf-requeue"
	startInline(ctx, t, e, id, `{"name":"requeued","version":1,"tasks":[{"name":"requeued_task","taskReferenceName":"t"}]}`)
	stream, err := l.JetStream().Stream(ctx, eventlog.Dispatch.Name)
	if err != nil {
		t.Fatal(err)
	}
	subj := workers.DispatchSubject("requeued_task", "")
	var first string
	testutil.Eventually(t, 20*time.Second, 20*time.Millisecond, func() error {
		m, err := stream.GetLastMsgForSubject(ctx, subj)
		if err != nil {
			return fmt.Errorf("the task was never dispatched: %w", err)
		}
		first = m.Header.Get(jetstream.MsgIDHeader)
		return nil
	})
	// The queue loses the message well within the duplicate window (a
	// NATS server restarted without it).
	if err := stream.Purge(ctx); err != nil {
		t.Fatal(err)
	}
	// Recovery's reconcile announces it under the same id: dropped.
	if _, err := e.Submit(ctx, id, engine.Reconcile{}, Meta{}); err != nil {
		t.Fatalf("reconcile: %v", err)
	}
	if _, err := e.Submit(ctx, id, engine.Reconcile{Requeue: true}, Meta{Principal: "app:operator"}); err != nil {
		t.Fatalf("requeue: %v", err)
	}
	var again string
	testutil.Eventually(t, 20*time.Second, 20*time.Millisecond, func() error {
		m, err := stream.GetLastMsgForSubject(ctx, subj)
		if err != nil {
			return fmt.Errorf("the requeued dispatch did not land: %w", err)
		}
		again = m.Header.Get(jetstream.MsgIDHeader)
		return nil
	})
	if !strings.HasPrefix(again, first+":requeue:") {
		t.Fatalf("requeued message id %q, want the first's (%q) marked as a requeue", again, first)
	}
	// The plain reconcile's message, whenever it was sent, is a duplicate:
	// only the requeue's is in the stream.
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 1 {
		t.Fatalf("dispatch stream holds %d messages after the purge, want the requeue's alone", info.State.Msgs)
	}
}
