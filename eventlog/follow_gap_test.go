package eventlog

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// A cluster's follower, whose consumer makes nothing again by itself
// (clusterConsumer), is lost at the first record delivered past a gap in
// its consumer's sequence (one delivered but never received), so that its
// reader follows again from its last record rather than skip one. A
// single server's follower leaves gaps to nats.go's ordered consumer,
// which makes itself again at one before delivering past it.
func TestAClusterFollowerIsLostAtAGap(t *testing.T) {
	t.Parallel()
	l := openIn(t, t.TempDir(), false)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for range 3 {
		if _, err := l.js.Publish(ctx, "fv.wf.gap", []byte("record")); err != nil {
			t.Fatal(err)
		}
	}
	cons, err := l.js.CreateConsumer(ctx, Workflows.Name, jetstream.ConsumerConfig{AckPolicy: jetstream.AckNonePolicy})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.FetchNoWait(3)
	if err != nil {
		t.Fatal(err)
	}
	var msgs []jetstream.Msg
	for m := range batch.Messages() {
		msgs = append(msgs, m)
	}
	if len(msgs) != 3 {
		t.Fatalf("fetched %d records, want 3", len(msgs))
	}
	for _, tt := range []struct {
		name     string
		cluster  bool
		wantLost bool
	}{
		{name: "a cluster's follower", cluster: true, wantLost: true},
		{name: "a single server's follower", cluster: false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := &Follower{l: l, stream: Workflows.Name, next: make(chan delivered, 1), done: make(chan struct{}), cluster: tt.cluster}
			f.next <- delivered{m: msgs[0]}
			if rec, _, err := f.Next(ctx); err != nil || rec.Seq != 1 {
				t.Fatalf("first record %d (%v), want 1", rec.Seq, err)
			}
			f.next <- delivered{m: msgs[2]} // the second delivered elsewhere
			rec, _, err := f.Next(ctx)
			if lost := errors.Is(err, ErrFollowerLost); lost != tt.wantLost {
				t.Fatalf("record %d after a gap: %v; want lost %v", rec.Seq, err, tt.wantLost)
			}
		})
	}
}
