package events

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/flowvault/flowvault/executor"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// heldEngine records the message ids of the events whose workflows it
// starts, and holds the first start until release is closed (or its
// time runs out).
type heldEngine struct {
	startEngine
	first, release chan struct{}
	mu             sync.Mutex
	ids            []string
}

func (e *heldEngine) StartWorkflow(ctx context.Context, req conductor.StartWorkflowRequest, o executor.StartOptions) (string, uint64, error) {
	e.mu.Lock()
	e.ids = append(e.ids, fmt.Sprint(req.Input["conductor.event.messageId"]))
	first := len(e.ids) == 1
	e.mu.Unlock()
	if first {
		close(e.first)
		select {
		case <-e.release:
		case <-ctx.Done():
		}
	}
	return o.WorkflowID, 1, nil
}

func (e *heldEngine) started() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.ids)
}

// A listener that stops listening (its node shuts down, its engine still
// running) leaves the queue group, so that the events to come go to the
// other engines' listeners, and handles the events it took already before
// Run returns: each reached this engine alone. Run unsubscribed at once,
// which dropped every event its subscription held, unlogged and
// uncounted, and a node stopped listening only after its engine, whose
// actions then failed for want of it.
func TestStopListeningHandlesWhatItTook(t *testing.T) {
	t.Parallel()
	ns := testutil.StartNATS(t, t.TempDir(), 0)
	connect := func() *nats.Conn {
		nc, err := nats.Connect(ns.ClientURL())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		return nc
	}
	ctx := testutil.Context(t, 30*time.Second)
	eng := &heldEngine{first: make(chan struct{}), release: make(chan struct{})}
	h := &conductor.EventHandler{Name: "h", Event: "nats:orders.new", CreatedBy: "app:admin", Active: true,
		Actions: []conductor.EventAction{{Action: conductor.ActionStartWorkflow, StartWorkflow: map[string]any{"name": "target"}}}}
	nc := connect()
	l := New(context.Background(), Config{Handlers: fixedHandlers{h}, Conn: nc, Engine: eng, Authz: allowAll{}})
	if err := l.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	ran := make(chan struct{})
	go func() {
		defer close(ran)
		l.Run(runCtx)
	}()
	l.mu.Lock()
	sub := l.subs["orders.new"]
	l.mu.Unlock()

	pub := connect()
	testutil.PublishEvents(t, pub, "orders.new", "e", 0, 3)
	<-eng.first // e0's start runs, e1 and e2 wait in the subscription
	testutil.Eventually(t, 10*time.Second, 10*time.Millisecond, func() error {
		// e0 counts until its handling returns.
		if n, _, _ := sub.Pending(); n != 3 {
			return fmt.Errorf("%d events pending, want 3", n)
		}
		return nil
	})
	// Another engine's listener, in the same group.
	other := make(chan *nats.Msg, 10)
	oc := connect()
	if _, err := oc.ChanQueueSubscribe("orders.new", QueueGroup("orders.new"), other); err != nil {
		t.Fatal(err)
	}
	if err := oc.Flush(); err != nil {
		t.Fatal(err)
	}

	stop()
	testutil.Eventually(t, 10*time.Second, 10*time.Millisecond, func() error {
		if sub.IsValid() && !sub.IsDraining() {
			return fmt.Errorf("still subscribed")
		}
		return nil
	})
	if err := nc.Flush(); err != nil { // the server has this listener's leaving
		t.Fatal(err)
	}
	testutil.PublishEvents(t, pub, "orders.new", "e", 3, 6)
	for i := 3; i < 6; i++ {
		select {
		case <-other:
		case <-ctx.Done():
			t.Fatalf("the other engine got %d of the events published once this one stopped listening, want 3", i-3)
		}
	}
	close(eng.release)
	<-ran
	if got := eng.started(); !slices.Equal(got, []string{"e0", "e1", "e2"}) {
		t.Fatalf("the stopped listener handled %v, want the events it took: [e0 e1 e2]", got)
	}
}
