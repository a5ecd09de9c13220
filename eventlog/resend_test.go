package eventlog_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas"
)

// lostLeader stands in for a stream leader that crashed with the first
// send of each publish, on the subjects under prefix: the first is
// dropped (lost before it was stored) or stored with its answer dropped
// (stored, then the leader crashed before it answered), and the others
// are passed on to the stream. It records the reply subject of each send,
// by message id.
type lostLeader struct {
	mu      sync.Mutex
	replies map[string][]string
}

func newLostLeader(t *testing.T, nc *nats.Conn, prefix string, stored bool) *lostLeader {
	t.Helper()
	ll := &lostLeader{replies: map[string][]string{}}
	sink := nc.NewRespInbox() // where the answer to a stored first send goes, unheard
	sub, err := nc.Subscribe(prefix+">", func(m *nats.Msg) {
		id := m.Header.Get(jetstream.MsgIDHeader)
		ll.mu.Lock()
		ll.replies[id] = append(ll.replies[id], m.Reply)
		first := len(ll.replies[id]) == 1
		ll.mu.Unlock()
		out := &nats.Msg{Subject: strings.TrimPrefix(m.Subject, prefix), Reply: m.Reply, Header: m.Header, Data: m.Data}
		switch {
		case first && !stored:
			return
		case first:
			out.Reply = sink
		}
		_ = nc.PublishMsg(out)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	return ll
}

func (ll *lostLeader) sends(id string) []string {
	ll.mu.Lock()
	defer ll.mu.Unlock()
	return slices.Clone(ll.replies[id])
}

// sentAgain reports a publish sent more than once, each time under the
// first send's reply subject: within one attempt. A later attempt, after
// the first waited out its publishTimeout, has a reply subject of its own.
func sentAgain(replies []string) bool {
	return len(replies) > 1 && len(slices.Compact(slices.Clone(replies))) == 1
}

// A publish sent to a stream's leader as it crashed is never answered
// (the followers do not know for seconds that it is gone). The append
// sends it again, every second, under the same reply subject and message
// id, and the leader elected meanwhile stores it, or, if the first was
// stored after all, answers with its sequence: the append is answered
// within its first attempt, not after waiting out the publishTimeout (5 s)
// of an answer that never comes, and is stored once. (This single server
// checks an expectation before the message id: a repeat of a stored
// append with one is refused as a conflict, which the append resolves by
// the id; a cluster's leader answers it "duplicate".)
func TestPublishLostWithItsLeaderIsSentAgain(t *testing.T) {
	ctx := testutil.Context(t, 2*time.Minute)
	for _, tt := range []struct {
		name   string
		stored bool // the first send was stored, its answer lost
		expect bool // the append expects the subject's last sequence
		dup    bool
	}{
		{"lost before it was stored", false, true, false},
		{"stored, its answer lost", true, true, true},
		{"stored, its answer lost, no expectation", true, false, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			l := testutil.OpenLog(t, "")
			subj := "fv.wf.resent"
			before, err := l.Append(ctx, subj, []schemas.Envelope{testutil.NoteEnvelope(t, "before", 0)}, 0)
			if err != nil {
				t.Fatal(err)
			}
			ll := newLostLeader(t, l.Conn(), "lost.", tt.stored)
			eventlog.PublishesTo(l, "lost.")
			expected := eventlog.ExpectAny
			if tt.expect {
				expected = before
			}
			var dup bool
			seq, err := l.Append(ctx, subj, []schemas.Envelope{testutil.NoteEnvelope(t, "resent", 1)}, expected, eventlog.ReportDuplicate(&dup))
			if err != nil {
				t.Fatalf("append: %v", err)
			}
			if dup != tt.dup {
				t.Errorf("reported duplicate %v, want %v", dup, tt.dup)
			}
			sends := ll.sends("resent")
			if !sentAgain(sends) {
				t.Errorf("sent under reply subjects %v; want again, under the first's (within the first attempt)", sends)
			}
			recs, err := l.ReadSubject(ctx, subj, 0)
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, r := range recs {
				ids = append(ids, r.MsgID)
			}
			if !slices.Equal(ids, []string{"before", "resent"}) || recs[1].Seq != seq {
				t.Errorf("subject holds %v (last at %d), want [before resent], the append answered %d", ids, recs[len(recs)-1].Seq, seq)
			}
		})
	}
}

// A publish that is not an append (a task's announcement) is sent again
// as well when it carries a message id, and only then: without one, its
// sends could not be told apart, and one unanswered may have been stored.
func TestPublishIsSentAgainOnlyWithAnID(t *testing.T) {
	ctx := testutil.Context(t, time.Minute)
	l := testutil.OpenLog(t, "")
	ll := newLostLeader(t, l.Conn(), "lost.", false)
	eventlog.PublishesTo(l, "lost.")

	msg := nats.NewMsg("fv.task.resent")
	msg.Header.Set(jetstream.MsgIDHeader, "announce")
	msg.Data = []byte("{}")
	seq, dup, err := l.Publish(ctx, msg)
	if err != nil || seq == 0 || dup {
		t.Errorf("publish with an id: #%d duplicate %v, %v", seq, dup, err)
	}
	if sends := ll.sends("announce"); !sentAgain(sends) {
		t.Errorf("publish with an id sent under reply subjects %v; want again, under the first's", sends)
	}

	// The caller gives up before publishTimeout: the stand-in must have
	// had the one send by then.
	short, cancel := context.WithTimeout(ctx, 2500*time.Millisecond)
	defer cancel()
	if _, _, err := l.Publish(short, &nats.Msg{Subject: "fv.task.resent", Data: []byte("{}")}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("publish without an id, its send lost: %v, want the deadline", err)
	}
	if sends := ll.sends(""); len(sends) != 1 {
		t.Errorf("publish without an id sent %d times, want once", len(sends))
	}
}
