package projections_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
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

	js, stream := workflowsStream(ctx, t, ns)
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

	catchesUp(ctx, t, l, s, r, stop)
}

// A read model on a single server whose consumer is lost while the server
// answers no making of a consumer (its JetStream down on a full disk, or
// busy) follows again once it answers. nats.go makes the lost consumer
// again once and gives up; the runner then follows again, and that
// making, unanswered too, stopped the read model for good: the runner
// tries again only while the follower is lost (eventlog.ErrFollowerLost),
// which a single server's follow never said. Here the engine's user may
// not make consumers for a while.
func TestReadModelFollowsAgainOnceConsumersAreMade(t *testing.T) {
	t.Parallel()
	const user, pass, admin, adminPass = "engine", "engine-pass", "admin", "admin-pass"
	var started *server.Options
	ns := testutil.StartNATS(t, t.TempDir(), 0, func(o *server.Options) {
		o.Users, started = []*server.User{{Username: user, Password: pass}, {Username: admin, Password: adminPass}}, o
	})
	ctx := testutil.Context(t, 2*time.Minute)
	cfg := eventlog.DefaultConfig()
	cfg.URL, cfg.Name, cfg.User, cfg.Password = ns.ClientURL(), "flowvault-test", user, pass
	l, err := eventlog.Open(ctx, cfg, eventlog.Options{Logger: testutil.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	s := openStore(t, t.TempDir())
	defer s.Close()
	first, _ := appendNotes(t, l, 2, 5)
	logger, logs := testutil.CapturingLogger()
	r, stop := run(t, l, s, projections.RunnerConfig{Logger: logger})
	if err := r.WaitFor(ctx, first); err != nil {
		t.Fatal(err)
	}

	denied := started.Clone()
	denied.Users = []*server.User{{Username: user, Password: pass, Permissions: &server.Permissions{
		Publish: &server.SubjectPermission{Deny: []string{"$JS.API.CONSUMER.CREATE.>"}}}}, {Username: admin, Password: adminPass}}
	if err := ns.ReloadOptions(denied); err != nil {
		t.Fatal(err)
	}
	js, stream := workflowsStream(ctx, t, ns, nats.UserInfo(admin, adminPass))
	for name := range stream.ListConsumers(ctx).Info() {
		if err := js.DeleteConsumer(ctx, eventlog.Workflows.Name, name.Name); err != nil {
			t.Fatal(err)
		}
	}
	// The follower lost, and the runner's own making unanswered.
	testutil.Eventually(t, time.Minute, 100*time.Millisecond, func() error {
		if err := r.Stalled(ctx, time.Hour); err != nil {
			t.Fatalf("the read model, its consumer not made: %v", err)
		}
		if !strings.Contains(logs.String(), "read model cannot follow its stream yet") {
			return errors.New("the runner has not tried to follow again yet")
		}
		return nil
	})

	if err := ns.ReloadOptions(started.Clone()); err != nil {
		t.Fatal(err)
	}
	catchesUp(ctx, t, l, s, r, stop)
}

// workflowsStream connects to ns on a connection of its own, closed when
// the test ends, and returns the workflows stream there.
func workflowsStream(ctx context.Context, t *testing.T, ns *server.Server, opts ...nats.Option) (jetstream.JetStream, jetstream.Stream) {
	t.Helper()
	nc, err := nats.Connect(ns.ClientURL(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := js.Stream(ctx, eventlog.Workflows.Name)
	if err != nil {
		t.Fatal(err)
	}
	return js, stream
}

// catchesUp appends records after the lost consumer's and wants the read
// model of r to apply them within 30 s, every record of the stream once
// (appendNotes(2, 5) before), and its run to end cleanly at stop.
func catchesUp(ctx context.Context, t *testing.T, l *eventlog.Log, s *projections.Store, r *projections.Runner, stop func() error) {
	t.Helper()
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
