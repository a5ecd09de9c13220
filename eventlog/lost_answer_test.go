package eventlog

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestLostAnswersEndBeforeTheCallersDeadline: a request whose answer is
// lost (the server that would give it went away in a failover; here a
// subscriber that never answers) fails once its own timeout ends, not at
// its caller's deadline, which for an executor's effect is minutes away.
// A stop waited for such a dispatch for its whole grace.
func TestLostAnswersEndBeforeTheCallersDeadline(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		call func(ctx context.Context, l *Log) error
	}{
		{name: "publish", call: func(ctx context.Context, l *Log) error {
			_, _, err := l.Publish(ctx, nats.NewMsg("lost.publish"))
			return err
		}},
		{name: "read", call: func(ctx context.Context, l *Log) error {
			l.directAPI = "lost.direct."
			_, err := l.ReadSubject(ctx, "fv.wf.lost", 0)
			return err
		}},
		{name: "last", call: func(ctx context.Context, l *Log) error {
			l.directAPI = "lost.direct."
			_, err := l.LastSeq(ctx, "fv.wf.lost")
			return err
		}},
		{name: "record", call: func(ctx context.Context, l *Log) error {
			l.directAPI = "lost.direct."
			_, _, err := l.recordAt(ctx, Workflows.Name, 1)
			return err
		}},
		{name: "consumer", call: func(ctx context.Context, l *Log) error {
			// The JetStream API behind a prefix that nothing answers.
			js, err := jetstream.NewWithAPIPrefix(l.nc, "lost.API")
			if err != nil {
				return err
			}
			l.js = js
			_, err = l.EnsureConsumer(ctx, ConsumerConfig{Stream: Dispatch.Name, Durable: "lost", Filter: "fv.dispatch.lost"})
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l := openIn(t, t.TempDir(), false)
			sub, err := l.nc.SubscribeSync("lost.>")
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Unsubscribe()
			// Far longer than any request waits for its answer, short
			// enough that the test fails rather than hangs without them.
			ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
			defer cancel()
			err = tt.call(ctx, l)
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("err = %v, want the request's deadline exceeded", err)
			}
			if ctx.Err() != nil {
				t.Fatalf("the request waited for its answer until the caller's deadline: %v", err)
			}
			if _, err := sub.NextMsg(time.Second); err != nil {
				t.Fatalf("the request was not sent: %v", err)
			}
		})
	}
}
