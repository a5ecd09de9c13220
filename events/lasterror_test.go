package events

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// fixedHandlers answers every read with its handlers.
type fixedHandlers []*conductor.EventHandler

func (f fixedHandlers) EventHandlers(context.Context) ([]*conductor.EventHandler, error) {
	return f, nil
}

func handlerOn(subject string) *conductor.EventHandler {
	return &conductor.EventHandler{Name: "on_" + strings.ReplaceAll(subject, ".", "_"), Event: "nats:" + subject, Active: true,
		Actions: []conductor.EventAction{{Action: conductor.ActionStartWorkflow}}}
}

// A Sync fails only when the server refuses one of its subscriptions: an
// error the connection met before (a slow consumer dropping a burst's
// excess, a refusal of a subject no handler listens to any longer) stays
// its last error, and each Sync after it failed, at a node's start and
// at every handler's save.
func TestSyncFailsOnlyForItsOwnRefusals(t *testing.T) {
	t.Parallel()
	ns := testutil.StartNATS(t, t.TempDir(), 0, func(o *server.Options) {
		o.Users = []*server.User{{Username: "listener", Password: "pw", Permissions: &server.Permissions{
			Publish:   &server.SubjectPermission{Allow: []string{">"}},
			Subscribe: &server.SubjectPermission{Allow: []string{"allowed.>", "burst"}}}}}
	})
	ctx := testutil.Context(t, 30*time.Second)
	connect := func(t *testing.T) *nats.Conn {
		nc, err := nats.Connect(ns.ClientURL(), nats.UserInfo("listener", "pw"),
			nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		return nc
	}
	sync := func(nc *nats.Conn, subjects ...string) error {
		var hs fixedHandlers
		for _, s := range subjects {
			hs = append(hs, handlerOn(s))
		}
		return New(context.Background(), Config{Handlers: hs, Conn: nc}).Sync(ctx)
	}

	t.Run("after a slow consumer", func(t *testing.T) {
		nc := connect(t)
		sub, err := nc.Subscribe("burst", func(*nats.Msg) { time.Sleep(time.Millisecond) })
		if err != nil {
			t.Fatal(err)
		}
		if err := sub.SetPendingLimits(1, -1); err != nil {
			t.Fatal(err)
		}
		for range 100 {
			if err := nc.Publish("burst", nil); err != nil {
				t.Fatal(err)
			}
		}
		testutil.Eventually(t, 10*time.Second, 10*time.Millisecond, func() error {
			if !errors.Is(nc.LastError(), nats.ErrSlowConsumer) {
				return errors.New("no slow consumer yet")
			}
			return nil
		})
		if err := sync(nc, "allowed.orders"); err != nil {
			t.Fatalf("Sync after a slow consumer: %v", err)
		}
	})
	t.Run("a subject refused", func(t *testing.T) {
		nc := connect(t)
		err := sync(nc, "allowed.orders", "denied.orders")
		if !errors.Is(err, nats.ErrPermissionViolation) || !strings.Contains(err.Error(), "denied.orders") {
			t.Fatalf("Sync with a refused subject: %v; want the refusal, naming it", err)
		}
		// Its handler gone, the next Sync is not failed by the old refusal.
		if err := sync(nc, "allowed.orders"); err != nil {
			t.Fatalf("Sync once the refused subject is not listened to: %v", err)
		}
	})
}
