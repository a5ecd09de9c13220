package projections_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/projections"
)

// A read model whose consumer is lost, and cannot be made again under the
// name nats.go gives it next, follows its stream again under another and
// catches up, every record once. On a cluster, a consumer made again
// within seconds of a server's death (an engine that was connected to it
// reconnects and makes them all again at once) may be put on the dead
// server, and nats.go tried again under the same name for as long as the
// server stayed dead: the read model never caught up. Here the name is
// taken by a consumer of another configuration, which the server refuses
// to update, as it refuses the dead server's.
func TestReadModelFollowsAgainUnderANewConsumer(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, time.Minute)
	ns := testutil.StartNATS(t, t.TempDir(), 0)
	l := testutil.OpenExternalLog(t, ns)
	s := openStore(t, t.TempDir())
	defer s.Close()
	first, _ := appendNotes(t, l, 2, 5)
	r, stop := run(t, l, s, projections.RunnerConfig{})
	if err := r.WaitFor(ctx, first); err != nil {
		t.Fatal(err)
	}

	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := js.Stream(ctx, eventlog.Workflows.Name)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for name := range stream.ListConsumers(ctx).Info() {
		names = append(names, name.Name)
	}
	if len(names) != 1 || !strings.HasSuffix(names[0], "_1") {
		t.Fatalf("consumers %v, want the read model's first", names)
	}
	// nats.go names the consumers it makes again prefix_2, prefix_3...
	next := strings.TrimSuffix(names[0], "_1") + "_2"
	if _, err := js.CreateConsumer(ctx, eventlog.Workflows.Name, jetstream.ConsumerConfig{
		Name: next, AckPolicy: jetstream.AckExplicitPolicy, InactiveThreshold: time.Minute,
	}); err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteConsumer(ctx, eventlog.Workflows.Name, names[0]); err != nil {
		t.Fatal(err)
	}

	last, _ := appendNotesAs(t, l, "later", 2, 5)
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := r.WaitFor(wctx, last); err != nil {
		t.Fatalf("the read model at %d, the stream at %d: %v", r.Checkpoint(), last, err)
	}
	if got, want := noteCount(t, s), uint64(2*2*5*2); got != want {
		t.Errorf("%d notes applied, want %d: each record once", got, want)
	}
	if err := stop(); err != nil {
		t.Errorf("run: %v", err)
	}
}
