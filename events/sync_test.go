package events

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// versionedHandlers answers each read with the handlers saved so far; the
// first read, once it has read, waits for release before it answers, as a
// read slowed down after it looked would.
type versionedHandlers struct {
	mu      sync.Mutex
	saved   []*conductor.EventHandler
	reads   int
	read    chan struct{} // closed once the first read has read
	release chan struct{}
}

func (v *versionedHandlers) EventHandlers(context.Context) ([]*conductor.EventHandler, error) {
	v.mu.Lock()
	out := v.saved
	v.reads++
	first := v.reads == 1
	v.mu.Unlock()
	if first {
		close(v.read)
		<-v.release
	}
	return out, nil
}

// A Sync that read the handlers before a change does not undo a Sync of
// the change that answered first: the listener ends with the newer ones.
func TestSyncsApplyInTheOrderTheyRead(t *testing.T) {
	t.Parallel()
	ns := testutil.StartNATS(t, t.TempDir(), 0)
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	handlers := &versionedHandlers{read: make(chan struct{}), release: make(chan struct{})}
	l := New(context.Background(), Config{Handlers: handlers, Conn: nc})
	ctx := testutil.Context(t, 30*time.Second)

	older := make(chan error, 1)
	go func() { older <- l.Sync(ctx) }() // reads no handlers, then waits
	<-handlers.read
	handlers.mu.Lock()
	handlers.saved = []*conductor.EventHandler{{Name: "h", Event: "nats:orders.new", Active: true,
		Actions: []conductor.EventAction{{Action: conductor.ActionStartWorkflow}}}}
	handlers.mu.Unlock()
	newer := make(chan error, 1)
	go func() { newer <- l.Sync(ctx) }() // the Sync a save answers after
	// Let the newer Sync finish first if it can; a listener that orders
	// them holds it until the older one is done.
	select {
	case err := <-newer:
		newer <- err
	case <-time.After(time.Second):
	}
	close(handlers.release)
	for _, c := range []chan error{older, newer} {
		if err := <-c; err != nil {
			t.Fatal(err)
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.handlers["orders.new"]) != 1 || l.subs["orders.new"] == nil {
		t.Fatalf("after both Syncs the listener has handlers %v and subscriptions %v; want the saved handler's", l.handlers, l.subs)
	}
}

// A Sync waiting for another to finish gives up when its context ends: a
// caller (the API answering a save) is not held by a read that hangs.
func TestSyncWaitEndsWithItsContext(t *testing.T) {
	t.Parallel()
	ns := testutil.StartNATS(t, t.TempDir(), 0)
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	handlers := &versionedHandlers{read: make(chan struct{}), release: make(chan struct{})}
	l := New(context.Background(), Config{Handlers: handlers, Conn: nc})
	first := make(chan error, 1)
	go func() { first <- l.Sync(testutil.Context(t, 30*time.Second)) }()
	<-handlers.read // the first Sync holds its turn, its read hanging

	ctx, cancel := context.WithCancel(context.Background())
	second := make(chan error, 1)
	go func() { second <- l.Sync(ctx) }()
	cancel()
	if err := <-second; !errors.Is(err, context.Canceled) {
		t.Fatalf("a Sync whose context ended while it waited returned %v, want context.Canceled", err)
	}
	close(handlers.release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if err := l.Sync(testutil.Context(t, 30*time.Second)); err != nil {
		t.Fatalf("a Sync after the one that gave up: %v", err)
	}
}
