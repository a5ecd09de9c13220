package eventlog_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas"
)

// After a reconnection, appends and a follower's records wait for the
// check that the server holds what the log knew, not for the streams to
// be made sure of: that asks a cluster's meta leader, which may have died
// with the server the connection was on, and a request sent before
// another is elected is never answered. Here the server answers stream
// infos and gets, and no stream creation or update (its user may no
// longer send them), as a cluster without a meta leader does. Waiting
// for them, the append failed after checkWait and the record was never
// delivered.
func TestReconnectionWaitsForTheCheckNotTheMetaLeader(t *testing.T) {
	const user, pass = "engine", "engine-pass"
	var started *server.Options
	ns := testutil.StartNATS(t, t.TempDir(), 0, func(o *server.Options) {
		o.Users, started = []*server.User{{Username: user, Password: pass}}, o
	})
	cfg := eventlog.DefaultConfig()
	cfg.URL, cfg.Name, cfg.User, cfg.Password = ns.ClientURL(), "flowvault-test", user, pass
	ctx := testutil.Context(t, 40*time.Second)
	l, err := eventlog.Open(ctx, cfg, eventlog.Options{Logger: testutil.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	before, err := l.Append(ctx, "fv.wf.meta", []schemas.Envelope{testutil.NoteEnvelope(t, "before", 0)}, 0)
	if err != nil {
		t.Fatal(err)
	}
	f, err := l.Follow(ctx, "FV_WF", before)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Stop)

	opts := started.Clone()
	opts.Users = []*server.User{{Username: user, Password: pass, Permissions: &server.Permissions{
		Publish: &server.SubjectPermission{Deny: []string{"$JS.API.STREAM.CREATE.>", "$JS.API.STREAM.UPDATE.>"}}}}}
	if err := ns.ReloadOptions(opts); err != nil {
		t.Fatal(err)
	}
	reconnects := l.Conn().Stats().Reconnects
	if err := l.Conn().ForceReconnect(); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 20*time.Second, 20*time.Millisecond, func() error {
		if l.Conn().Stats().Reconnects == reconnects || !l.Conn().IsConnected() {
			return errors.New("not reconnected yet")
		}
		return nil
	})
	// The premise: the streams cannot be made sure of.
	js, err := jetstream.New(l.Conn())
	if err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(ctx, "FV_WF")
	if err != nil {
		t.Fatal(err)
	}
	uctx := testutil.Context(t, time.Second)
	if _, err := js.UpdateStream(uctx, s.CachedInfo().Config); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("stream update on the reloaded server: %v, want it unanswered", err)
	}

	after, err := l.Append(ctx, "fv.wf.meta", []schemas.Envelope{testutil.NoteEnvelope(t, "after", 1)}, eventlog.ExpectAny)
	if err != nil {
		t.Fatalf("append after the reconnection: %v", err)
	}
	rec, _, err := f.Next(ctx)
	if err != nil {
		t.Fatalf("the follower after the reconnection: %v", err)
	}
	if rec.Seq != after {
		t.Fatalf("the follower delivered record %d, want %d", rec.Seq, after)
	}
}
