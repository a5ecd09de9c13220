package eventlog

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// A follower whose iterator cannot start, its connection draining (Log.Close)
// once its consumer was made, deletes that consumer rather than leave it on
// the server until followerInactive. A single server's is made by the
// ordered consumer's Messages itself, and so on a connection draining
// already; a cluster's (here on a single server, Replicas set after Open)
// by clusterConsumer, after which the connection starts to drain: before,
// its meta leader's answer would not come. An unread message of a
// subscription of the test keeps the connection draining its
// subscriptions, when requests are still answered.
func TestAFollowerThatFailsToStartDeletesItsConsumer(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name    string
		cluster bool
	}{
		{name: "a single server's follower"},
		{name: "a cluster's follower", cluster: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l := openIn(t, t.TempDir(), false)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if _, err := l.js.Publish(ctx, "fv.wf.start", []byte("record")); err != nil {
				t.Fatal(err)
			}
			held, err := l.nc.SubscribeSync("test.held")
			if err != nil {
				t.Fatal(err)
			}
			if err := l.nc.Publish("test.held", nil); err != nil {
				t.Fatal(err)
			}
			for n, _, _ := held.Pending(); n == 0; n, _, _ = held.Pending() {
				select {
				case <-ctx.Done():
					t.Fatal("the held message never came")
				case <-time.After(10 * time.Millisecond):
				}
			}
			drain := func() {
				if err := l.nc.Drain(); err != nil {
					t.Error(err)
				}
			}
			if tt.cluster {
				l.cfg.Replicas = 3
				l.js = drainAfterCreate{JetStream: l.js, drain: drain}
			} else {
				drain()
			}

			f, err := l.Follow(ctx, Workflows.Name, 0)
			if err == nil {
				f.Stop()
				t.Fatal("followed on a draining connection")
			}
			if !errors.Is(err, nats.ErrConnectionDraining) {
				t.Fatalf("follow: %v, want the connection draining", err)
			}

			nc, err := nats.Connect(l.ns.ClientURL(), nats.InProcessServer(l.ns))
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			js, err := jetstream.New(nc)
			if err != nil {
				t.Fatal(err)
			}
			stream, err := js.Stream(ctx, Workflows.Name)
			if err != nil {
				t.Fatal(err)
			}
			names := stream.ConsumerNames(ctx)
			var left []string
			for name := range names.Name() {
				left = append(left, name)
			}
			if err := names.Err(); err != nil {
				t.Fatal(err)
			}
			if len(left) != 0 {
				t.Fatalf("consumers left on the stream: %q, want none", left)
			}
			// Let the drain end, and Close with it.
			if _, err := held.NextMsg(time.Second); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// drainAfterCreate starts the connection's drain once a consumer is made.
type drainAfterCreate struct {
	jetstream.JetStream
	drain func()
}

func (d drainAfterCreate) CreateConsumer(ctx context.Context, stream string, cfg jetstream.ConsumerConfig) (jetstream.Consumer, error) {
	cons, err := d.JetStream.CreateConsumer(ctx, stream, cfg)
	d.drain()
	return cons, err
}
