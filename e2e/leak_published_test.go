package e2e_test

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/internal/nodetest"
	"github.com/flowvault/flowvault/internal/testutil"
)

// A start published with a value its workflow seals (its input's
// _secrets) leaves it nowhere once the command is handled, the command
// stream's files included: acknowledged, the command was only marked
// deleted, and its bytes stayed in its block's file in plaintext for as
// long as the block held a command nobody had consumed yet.
func TestPublishedStartLeavesNoPlaintext(t *testing.T) {
	t.Parallel()
	h := startHunt(t, "sealed")
	h.e.register(`{"name":"pub_sealed","tasks":[{"name":"h","taskReferenceName":"h","type":"WAIT"}]}`)
	js, err := jetstream.New(nodetest.EngineConn(t, h.Node))
	if err != nil {
		t.Fatal(err)
	}
	ctx := testutil.Context(t, time.Minute)
	start := &nats.Msg{Subject: "fv.cmd.start.pub_sealed", Header: nats.Header{jetstream.MsgIDHeader: []string{"sealed-1"}},
		Data: []byte(`{"input":{"_secrets":{"v":"` + h.vals["sealed"] + `"}}}`)}
	if _, err := js.PublishMsg(ctx, start); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "fv.cmd.producer.unread", []byte("a command nobody consumes")); err != nil {
		t.Fatal(err)
	}
	h.e.waitStatus(engine.DeriveID("start-command", "sealed-1"), "RUNNING")
	// Handled: erased, then acknowledged, which leaves the unread one.
	h.e.waitCommandsLeft(1)
	h.scan(t)
}
