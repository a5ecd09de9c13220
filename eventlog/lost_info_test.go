package eventlog_test

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas"
)

// A stream info request sent to a stream's leader as it crashed is never
// answered either: the streams' check after a reconnection asks again,
// and goes on once the leader elected meanwhile answers. Waiting for the
// lost request held the check 5 s, and appends behind it (checkWait).
func TestStreamInfoLostWithItsLeaderIsAskedAgain(t *testing.T) {
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, time.Minute)
	if _, err := l.Append(ctx, "fv.wf.info", []schemas.Envelope{testutil.NoteEnvelope(t, "info", 0)}, 0); err != nil {
		t.Fatal(err)
	}
	nc := l.Conn()
	var mu sync.Mutex
	asked := map[string]int{}
	sub, err := nc.Subscribe("lost.INFO.>", func(m *nats.Msg) {
		stream := strings.TrimPrefix(m.Subject, "lost.INFO.")
		mu.Lock()
		asked[stream]++
		n := asked[stream]
		mu.Unlock()
		if n%2 == 1 {
			return // the first of each request goes with its leader
		}
		_ = nc.PublishRequest(eventlog.StreamInfoAPI+stream, m.Reply, m.Data)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	eventlog.StreamInfoTo(l, "lost.INFO.")

	if err := eventlog.CheckStreams(ctx, l); err != nil {
		t.Fatalf("check: %v", err)
	}
	if last, err := l.StreamLastSeq(ctx, "FV_WF"); err != nil || last == 0 {
		t.Errorf("last sequence of FV_WF: %d, %v", last, err)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, s := range eventlog.AllStreams {
		if s.Kind == eventlog.EventStream && asked[s.Name] < 2 {
			t.Errorf("%s asked %d times, want the lost request and another", s.Name, asked[s.Name])
		}
	}
}
