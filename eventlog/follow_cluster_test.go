package eventlog

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

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
	created := make(chan struct{}, 1)
	creates, err := l.nc.Subscribe("$JS.API.CONSUMER.CREATE.>", func(*nats.Msg) {
		see("create")
		select {
		case created <- struct{}{}:
		default:
		}
	})
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
	// This subscription hears the request on its own goroutine: make
	// test's load once had the consumer made before it had.
	select {
	case <-created:
	case <-ctx.Done():
		t.Fatal("the consumer's making was not heard")
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"no leader", "no leader", "leader", "create"}; !slices.Equal(seen, want) {
		t.Fatalf("saw %q, want %q", seen, want)
	}
}
