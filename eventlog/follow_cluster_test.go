package eventlog

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// heldDeletes holds each consumer's deletion until release is closed, as
// a consumer's server that died does: its deletion goes unanswered.
type heldDeletes struct {
	jetstream.JetStream
	asked   chan string
	release chan struct{}
	ended   atomic.Bool
}

func (h *heldDeletes) DeleteConsumer(ctx context.Context, stream, name string) error {
	defer h.ended.Store(true)
	h.asked <- name
	select {
	case <-h.release:
		return h.JetStream.DeleteConsumer(ctx, stream, name)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// A cluster's follower that was lost is stopped by its reader before it
// follows again; its consumer's server may have died with it, and the
// deletion goes unanswered. Stop returns while the deletion is under way,
// which ends by itself; a follower stopped otherwise (its reader done)
// returns once its consumer is gone, as tests that count consumers after
// Stop expect.
func TestStopOfALostClusterFollowerDoesNotWaitForItsDeletion(t *testing.T) {
	t.Parallel()
	l := openIn(t, t.TempDir(), false)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := l.js.Publish(ctx, "fv.wf.lost", []byte("record")); err != nil {
		t.Fatal(err)
	}
	js := l.js
	for _, tt := range []struct {
		name string
		lost bool
	}{
		{name: "lost", lost: true},
		{name: "stopped", lost: false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cons, err := l.js.CreateConsumer(ctx, Workflows.Name, jetstream.ConsumerConfig{AckPolicy: jetstream.AckNonePolicy})
			if err != nil {
				t.Fatal(err)
			}
			it, err := cons.Messages()
			if err != nil {
				t.Fatal(err)
			}
			name := cons.CachedInfo().Name
			f := &Follower{l: l, stream: Workflows.Name, cons: cons, it: it, next: make(chan delivered, 1),
				done: make(chan struct{}), cluster: true}
			if !tt.lost {
				f.Stop()
				if _, err := js.Consumer(ctx, Workflows.Name, name); !errors.Is(err, jetstream.ErrConsumerNotFound) {
					t.Fatalf("consumer after Stop: %v, want it deleted", err)
				}
				return
			}
			f.next <- delivered{err: nats.ErrNoHeartbeat}
			if _, _, err := f.Next(ctx); !errors.Is(err, ErrFollowerLost) {
				t.Fatalf("Next: %v, want the follower lost", err)
			}
			held := &heldDeletes{JetStream: js, asked: make(chan string, 1), release: make(chan struct{})}
			l.js = held
			t.Cleanup(func() { l.js = js })
			f.Stop()
			if asked := <-held.asked; asked != name {
				t.Fatalf("deleted %s, want %s", asked, name)
			}
			if held.ended.Load() {
				t.Fatal("Stop returned once its consumer's deletion had ended; want it to return while the deletion is unanswered")
			}
			close(held.release)
			for !held.ended.Load() {
				if ctx.Err() != nil {
					t.Fatal("the deletion did not end once answered")
				}
				time.Sleep(10 * time.Millisecond)
			}
			if _, err := js.Consumer(ctx, Workflows.Name, name); !errors.Is(err, jetstream.ErrConsumerNotFound) {
				t.Fatalf("consumer after its deletion was answered: %v, want it deleted", err)
			}
		})
	}
}

// A cluster's follower makes its consumer once the meta leader, which
// makes consumers, answers: one sent while there is none, after the meta
// leader died and before another is elected, is never answered, and a
// server that knows it has none answers 10008. Here a stand-in answers
// the meta leader's questions with 10008 twice, then passes the third on
// to the server.
func TestAClusterFollowerWaitsForAMetaLeader(t *testing.T) {
	t.Parallel()
	l := openIn(t, t.TempDir(), false)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const standIn = "test.meta.INFO"
	l.metaAPI = standIn
	var mu sync.Mutex
	var seen []string
	see := func(what string) {
		mu.Lock()
		seen = append(seen, what)
		mu.Unlock()
	}
	asked := 0
	meta, err := l.nc.Subscribe(standIn, func(m *nats.Msg) {
		asked++
		if asked <= 2 {
			see("no leader")
			_ = m.Respond([]byte(`{"type":"io.nats.jetstream.api.v1.account_info_response","error":{"code":503,"err_code":10008,"description":"JetStream system temporarily unavailable"}}`))
			return
		}
		see("leader")
		_ = l.nc.PublishRequest(accountInfoAPI, m.Reply, m.Data)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = meta.Unsubscribe() })
	creates, err := l.nc.Subscribe("$JS.API.CONSUMER.CREATE.>", func(*nats.Msg) { see("create") })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = creates.Unsubscribe() })
	if err := l.nc.Flush(); err != nil {
		t.Fatal(err)
	}

	if _, err := l.clusterConsumer(ctx, Workflows.Name, 0); err != nil {
		t.Fatalf("consumer once a meta leader answered: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"no leader", "no leader", "leader", "create"}; !slices.Equal(seen, want) {
		t.Fatalf("saw %q, want %q", seen, want)
	}
}
