package eventlog_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/internal/leaktest"
	"github.com/flowvault/flowvault/internal/testutil"
)

// A subscription that erases what it handled leaves none of a handled
// message's bytes in its stream's files, acknowledged or rejected as
// poison, also while their block still holds a message nobody consumed.
// Acknowledged alone, a work queue's message is only marked deleted and
// its bytes stay with its block: a start command published with the
// values a workflow seals stayed in FV_CMD's files in plaintext.
func TestHandledMessagesAreErased(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ctx := testutil.Context(t, 30*time.Second)
	l, err := eventlog.Open(ctx, testutil.LogConfig(dir), eventlog.Options{Logger: testutil.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	handled := map[string][]byte{"fv.cmd.producer.erase.done": leaktest.RandomSecret(32), "fv.cmd.producer.erase.poison": leaktest.RandomSecret(32)}
	kept := leaktest.RandomSecret(32)
	js := l.JetStream()
	for _, subject := range []string{"fv.cmd.producer.erase.done", "fv.cmd.producer.erase.poison"} {
		if _, err := js.Publish(ctx, subject, handled[subject]); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := js.Publish(ctx, "fv.cmd.producer.kept", kept); err != nil {
		t.Fatal(err)
	}
	const durable = "erase-test"
	sub, err := l.Subscribe(ctx, eventlog.ConsumerConfig{Stream: eventlog.Commands.Name, Durable: durable, Filter: "fv.cmd.producer.erase.>",
		AckWait: time.Minute, MaxDeliver: -1, Erase: true},
		func(_ context.Context, d eventlog.Delivery) error {
			if strings.HasSuffix(d.Subject, ".poison") {
				return eventlog.ErrPoison
			}
			return nil
		})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Stop()
	// Both answered: each is erased before it is answered.
	cons, err := js.Consumer(ctx, eventlog.Commands.Name, durable)
	if err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, 20*time.Millisecond, func() error {
		info, err := cons.Info(ctx)
		if err != nil {
			return err
		}
		if info.AckFloor.Stream < 2 || info.NumAckPending > 0 {
			return errors.New("not answered yet")
		}
		return nil
	})
	sub.Stop()
	l.Close() // the server writes out its blocks as it stops
	dir = testutil.StreamDir(t, dir, eventlog.Commands.Name)
	for subject, value := range handled {
		sc := leaktest.New(value)
		sc.ScanDir(t, dir)
		for _, h := range sc.Hits() {
			t.Errorf("%s: its value is still in the stream's files: %s", subject, h)
		}
	}
	unread := leaktest.New(kept)
	unread.ScanDir(t, dir)
	if len(unread.Hits()) == 0 {
		t.Fatal("the message nobody consumed is not in the stream's files: the search reads the wrong files")
	}
}
