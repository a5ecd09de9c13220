package eventlog_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas"
)

func notes(t *testing.T, prefix string, n int) []schemas.Envelope {
	t.Helper()
	out := make([]schemas.Envelope, n)
	for i := range out {
		out[i] = testutil.NoteEnvelope(t, fmt.Sprintf("%s-%d", prefix, i), i)
	}
	return out
}

func TestAppendRead(t *testing.T) {
	t.Parallel()
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, 30*time.Second)
	subj := "fv.wf.append-read"

	seq1, err := l.Append(ctx, subj, notes(t, "a", 3), 0)
	if err != nil {
		t.Fatal(err)
	}
	seq2, err := l.Append(ctx, subj, notes(t, "b", 1), seq1)
	if err != nil {
		t.Fatal(err)
	}
	if seq2 <= seq1 {
		t.Fatalf("sequences not increasing: %d then %d", seq1, seq2)
	}
	// A record on another subject must not show up.
	if _, err := l.Append(ctx, "fv.wf.other", notes(t, "c", 1), 0); err != nil {
		t.Fatal(err)
	}

	recs, err := l.ReadSubject(ctx, subj, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(recs), 2; got != want {
		t.Fatalf("records = %d, want %d", got, want)
	}
	if got, want := len(recs[0].Events), 3; got != want {
		t.Fatalf("events in first record = %d, want %d", got, want)
	}
	for i, env := range recs[0].Events {
		ev, err := schemas.Default.Decode(env)
		if err != nil {
			t.Fatal(err)
		}
		if got := ev.(*testutil.Note).N; got != i {
			t.Fatalf("event %d carries N=%d", i, got)
		}
	}
	if recs[0].Seq != seq1 || recs[1].Seq != seq2 || recs[0].MsgID != "a-0" {
		t.Fatalf("records = %+v", recs)
	}
	after, err := l.ReadSubject(ctx, subj, seq1)
	if err != nil || len(after) != 1 || after[0].Seq != seq2 {
		t.Fatalf("read after %d = %v, %v", seq1, after, err)
	}
	last, err := l.LastSeq(ctx, subj)
	if err != nil || last != seq2 {
		t.Fatalf("last = %d, %v; want %d", last, err, seq2)
	}
	if last, err := l.LastSeq(ctx, "fv.wf.empty"); err != nil || last != 0 {
		t.Fatalf("last of empty subject = %d, %v", last, err)
	}
}

// A subject with more records than one direct-get batch reads completely.
func TestReadSubjectManyBatches(t *testing.T) {
	t.Parallel()
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, 60*time.Second)
	const n = 700
	var seq uint64
	var err error
	for i := 0; i < n; i++ {
		if seq, err = l.Append(ctx, "fv.wf.long", notes(t, fmt.Sprintf("r%d", i), 1), seq); err != nil {
			t.Fatal(err)
		}
	}
	recs, err := l.ReadSubject(ctx, "fv.wf.long", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != n {
		t.Fatalf("read %d records, want %d", len(recs), n)
	}
	for i := 1; i < n; i++ {
		if recs[i].Seq <= recs[i-1].Seq {
			t.Fatalf("out of order at %d", i)
		}
	}
}

// FirstRecord reads a subject's first record alone, past other
// subjects' records before and between, and finds none on an empty one.
func TestFirstRecord(t *testing.T) {
	t.Parallel()
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, 30*time.Second)
	if _, err := l.Append(ctx, "fv.wf.other", notes(t, "o", 1), 0); err != nil {
		t.Fatal(err)
	}
	var seq uint64
	var err error
	for i := range 3 {
		if seq, err = l.Append(ctx, "fv.wf.first", notes(t, fmt.Sprintf("f%d", i), 2), seq); err != nil {
			t.Fatal(err)
		}
	}
	rec, found, err := l.FirstRecord(ctx, "fv.wf.first")
	if err != nil || !found || rec.Subject != "fv.wf.first" || len(rec.Events) != 2 || rec.Events[0].ID != "f0-0" {
		t.Fatalf("first record: %+v, %v, %v", rec, found, err)
	}
	if _, found, err := l.FirstRecord(ctx, "fv.wf.none"); err != nil || found {
		t.Fatalf("empty subject: found %v, %v", found, err)
	}
}

func TestAppendConflict(t *testing.T) {
	t.Parallel()
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, 30*time.Second)
	subj := "fv.wf.conflict"

	seq1, err := l.Append(ctx, subj, notes(t, "first", 1), 0)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		expected uint64
	}{
		{"create-only on a non-empty subject", 0},
		{"stale", seq1 - 1},
		{"future", seq1 + 10},
	}
	for i, tt := range tests {
		_, err := l.Append(ctx, subj, notes(t, fmt.Sprintf("late%d", i), 1), tt.expected)
		var ce *eventlog.ConflictError
		if !errors.As(err, &ce) || !errors.Is(err, eventlog.ErrConflict) {
			t.Fatalf("%s: err = %v, want a ConflictError", tt.name, err)
		}
		if ce.Actual != seq1 || ce.Expected != tt.expected {
			t.Fatalf("%s: conflict = %+v, want actual %d expected %d", tt.name, ce, seq1, tt.expected)
		}
	}
	recs, _ := l.ReadSubject(ctx, subj, 0)
	if len(recs) != 1 {
		t.Fatalf("conflicting appends wrote: %d records", len(recs))
	}
	// ExpectAny skips the check.
	if _, err := l.Append(ctx, subj, notes(t, "any", 1), eventlog.ExpectAny); err != nil {
		t.Fatal(err)
	}
}

// Regression for nats-server#4320: concurrent appends with the same
// expectation must not both succeed. With 64 writers most of them are
// gathered into atomic batches (group commit), which the server refuses
// as a whole; each append then goes alone and learns its own outcome.
func TestAppendConcurrentOneWins(t *testing.T) {
	t.Parallel()
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, 60*time.Second)
	for _, writers := range []int{8, 64} {
		for r := 0; r < 20; r++ {
			subj := fmt.Sprintf("fv.wf.race-%d-%d", writers, r)
			base, err := l.Append(ctx, subj, notes(t, fmt.Sprintf("base%d-%d", writers, r), 1), 0)
			if err != nil {
				t.Fatal(err)
			}
			var wins, conflicts atomic.Int32
			var wg sync.WaitGroup
			start := make(chan struct{})
			for w := 0; w < writers; w++ {
				wg.Add(1)
				go func(w int) {
					defer wg.Done()
					<-start
					_, err := l.Append(ctx, subj, notes(t, fmt.Sprintf("r%d-%d-w%d", writers, r, w), 1), base)
					switch {
					case err == nil:
						wins.Add(1)
					case errors.Is(err, eventlog.ErrConflict):
						conflicts.Add(1)
					default:
						t.Error(err)
					}
				}(w)
			}
			close(start)
			wg.Wait()
			if wins.Load() != 1 || conflicts.Load() != int32(writers-1) {
				t.Fatalf("%d writers, round %d: %d wins, %d conflicts; want 1 and %d", writers, r, wins.Load(), conflicts.Load(), writers-1)
			}
			recs, _ := l.ReadSubject(ctx, subj, 0)
			if len(recs) != 2 {
				t.Fatalf("%d writers, round %d: %d records, want 2", writers, r, len(recs))
			}
		}
	}
}

// Many concurrent appends, enough to be gathered into batches (group
// commit), each land at the sequence they were acknowledged with, in the
// order each subject's writer chained them.
func TestAppendUnderLoad(t *testing.T) {
	t.Parallel()
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, 60*time.Second)
	const writers, subjects, perSubject = 64, 10, 3
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for s := range subjects {
				subj := fmt.Sprintf("fv.wf.load-%d-%d", w, s)
				var seqs []uint64
				var last uint64
				for i := range perSubject {
					seq, err := l.Append(ctx, subj, notes(t, fmt.Sprintf("load-%d-%d-%d", w, s, i), 1), last)
					if err != nil {
						t.Errorf("%s append %d: %v", subj, i, err)
						return
					}
					seqs, last = append(seqs, seq), seq
				}
				recs, err := l.ReadSubject(ctx, subj, 0)
				if err != nil {
					t.Error(err)
					return
				}
				if len(recs) != perSubject {
					t.Errorf("%s: %d records, want %d", subj, len(recs), perSubject)
					return
				}
				for i, r := range recs {
					if r.Seq != seqs[i] || r.MsgID != fmt.Sprintf("load-%d-%d-%d-0", w, s, i) {
						t.Errorf("%s record %d: seq %d id %s; acknowledged as %d", subj, i, r.Seq, r.MsgID, seqs[i])
					}
				}
			}
		}()
	}
	wg.Wait()
}

// A retried append (same message id) is a no-op that returns the original
// sequence, even though its expectation is now stale, and says it was one.
func TestAppendDedup(t *testing.T) {
	t.Parallel()
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, 30*time.Second)
	subj := "fv.wf.dedup"
	evs := notes(t, "cmd-42", 2)
	dup := true
	seq, err := l.Append(ctx, subj, evs, 0, eventlog.ReportDuplicate(&dup))
	if err != nil || dup {
		t.Fatalf("first append: duplicate %v, %v", dup, err)
	}
	for i := 0; i < 3; i++ {
		dup = false
		again, err := l.Append(ctx, subj, evs, 0, eventlog.ReportDuplicate(&dup))
		if err != nil || again != seq || !dup {
			t.Fatalf("retry %d = %d, duplicate %v, %v; want %d, true, nil", i, again, dup, err, seq)
		}
	}
	// Same cause, explicit id, different payload: still the original.
	dup = false
	again, err := l.Append(ctx, subj, notes(t, "other", 1), 0, eventlog.WithMsgID("cmd-42-0"), eventlog.ReportDuplicate(&dup))
	if err != nil || again != seq || !dup {
		t.Fatalf("explicit id retry = %d, duplicate %v, %v", again, dup, err)
	}
	recs, _ := l.ReadSubject(ctx, subj, 0)
	if len(recs) != 1 {
		t.Fatalf("%d records after retries, want 1", len(recs))
	}
}

// Publish stores a message that is not an event once per message id,
// and a subject no stream takes is an error, not a lost message.
func TestPublish(t *testing.T) {
	t.Parallel()
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, 30*time.Second)
	msg := func(id string) *nats.Msg {
		m := nats.NewMsg("fv.task.publish-test")
		m.Data = []byte(`{"taskId":"t1"}`)
		m.Header.Set(jetstream.MsgIDHeader, id)
		return m
	}
	seq, dup, err := l.Publish(ctx, msg("t1:1"))
	if err != nil || dup || seq == 0 {
		t.Fatalf("Publish = %d, %v, %v", seq, dup, err)
	}
	if again, dup, err := l.Publish(ctx, msg("t1:1")); err != nil || !dup || again != seq {
		t.Fatalf("the same id again = %d, duplicate %v, %v; want %d, true", again, dup, err, seq)
	}
	if next, dup, err := l.Publish(ctx, msg("t1:2")); err != nil || dup || next <= seq {
		t.Fatalf("another id = %d, duplicate %v, %v; want after %d", next, dup, err, seq)
	}
	if _, _, err := l.Publish(ctx, nats.NewMsg("nowhere.publish-test")); !errors.Is(err, jetstream.ErrNoStreamResponse) {
		t.Fatalf("a subject without a stream: %v, want ErrNoStreamResponse", err)
	}
}

func TestAppendRejectsBadInput(t *testing.T) {
	t.Parallel()
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, 30*time.Second)
	big := testutil.NoteEnvelope(t, "big", 1)
	big.Data = bytes.Repeat([]byte{0xc0}, 9<<20)
	noID := testutil.NoteEnvelope(t, "", 1)
	tests := []struct {
		name    string
		subject string
		events  []schemas.Envelope
		want    error
	}{
		{"too large", "fv.wf.big", []schemas.Envelope{big}, eventlog.ErrTooLarge},
		{"outside every stream", "elsewhere.x", notes(t, "x", 1), eventlog.ErrInvalidSubject},
		{"wildcard", "fv.wf.*", notes(t, "y", 1), eventlog.ErrInvalidSubject},
		{"empty token", "fv.wf..x", notes(t, "z", 1), eventlog.ErrInvalidSubject},
		{"no events", "fv.wf.none", nil, nil},
		{"no id", "fv.wf.noid", []schemas.Envelope{noID}, nil},
	}
	for _, tt := range tests {
		_, err := l.Append(ctx, tt.subject, tt.events, 0)
		if err == nil || (tt.want != nil && !errors.Is(err, tt.want)) {
			t.Errorf("%s: err = %v, want %v", tt.name, err, tt.want)
		}
	}
	if last, _ := l.LastSeq(ctx, "fv.wf.big"); last != 0 {
		t.Fatalf("oversized record was written at %d", last)
	}
}

// A message that is not a record (published around the log) is returned
// with Err set, and the records around it still read.
func TestReadPoisonMessage(t *testing.T) {
	t.Parallel()
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, 30*time.Second)
	subj := "fv.wf.poison"
	if _, err := l.Append(ctx, subj, notes(t, "ok1", 1), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := l.JetStream().Publish(ctx, subj, []byte("{not a record")); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(ctx, subj, notes(t, "ok2", 1), eventlog.ExpectAny); err != nil {
		t.Fatal(err)
	}
	recs, err := l.ReadSubject(ctx, subj, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 3 || recs[0].Err != nil || recs[2].Err != nil {
		t.Fatalf("records = %+v", recs)
	}
	if !errors.Is(recs[1].Err, schemas.ErrCorrupt) {
		t.Fatalf("poison record err = %v, want ErrCorrupt", recs[1].Err)
	}
}

func TestReplayAfterRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ctx := testutil.Context(t, 60*time.Second)
	l := testutil.OpenLog(t, dir)
	var seq uint64
	var err error
	for i := 0; i < 10; i++ {
		if seq, err = l.Append(ctx, "fv.wf.restart", notes(t, fmt.Sprintf("e%d", i), 1), seq); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()

	l = testutil.OpenLog(t, dir)
	recs, err := l.ReadSubject(ctx, "fv.wf.restart", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 10 || recs[9].Seq != seq {
		t.Fatalf("after restart: %d records, last %d; want 10, %d", len(recs), recs[len(recs)-1].Seq, seq)
	}
	// The restarted log keeps the subject's sequence for the next append, and
	// the duplicate window survives the restart.
	if _, err := l.Append(ctx, "fv.wf.restart", notes(t, "e9", 1), seq-1); err != nil {
		t.Fatalf("retry of last append after restart: %v", err)
	}
	if _, err := l.Append(ctx, "fv.wf.restart", notes(t, "e10", 1), seq); err != nil {
		t.Fatal(err)
	}
}

func TestFollow(t *testing.T) {
	t.Parallel()
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, 30*time.Second)
	var seqs []uint64
	for i := 0; i < 5; i++ {
		seq, err := l.Append(ctx, fmt.Sprintf("fv.meta.f%d", i), notes(t, fmt.Sprintf("m%d", i), 1), 0)
		if err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, seq)
	}
	f, err := l.Follow(ctx, eventlog.Metadata.Name, seqs[1])
	if err != nil {
		t.Fatal(err)
	}
	defer f.Stop()
	for i := 2; i < 5; i++ {
		rec, pending, err := f.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if rec.Seq != seqs[i] || pending != uint64(4-i) {
			t.Fatalf("record %d: seq %d pending %d; want %d, %d", i, rec.Seq, pending, seqs[i], 4-i)
		}
	}
	// Live appends arrive too.
	seq, err := l.Append(ctx, "fv.meta.live", notes(t, "live", 1), 0)
	if err != nil {
		t.Fatal(err)
	}
	rec, _, err := f.Next(ctx)
	if err != nil || rec.Seq != seq {
		t.Fatalf("live record = %d, %v; want %d", rec.Seq, err, seq)
	}
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if _, _, err := f.Next(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next on a caught-up follower = %v, want deadline exceeded", err)
	}
}

// A stopped follower leaves no consumer on the server: an engine that
// stops, or restarts, takes its read models' consumers with it, rather
// than leave them to lapse minutes later.
func TestStoppedFollowerLeavesNoConsumer(t *testing.T) {
	t.Parallel()
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, 30*time.Second)
	seq, err := l.Append(ctx, "fv.meta.one", notes(t, "one", 1), 0)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := l.JetStream().Stream(ctx, eventlog.Metadata.Name)
	if err != nil {
		t.Fatal(err)
	}
	consumers := func() int {
		t.Helper()
		n := 0
		for range stream.ConsumerNames(ctx).Name() {
			n++
		}
		return n
	}
	before := consumers()
	f, err := l.Follow(ctx, eventlog.Metadata.Name, 0)
	if err != nil {
		t.Fatal(err)
	}
	if rec, _, err := f.Next(ctx); err != nil || rec.Seq != seq {
		t.Fatalf("first record = %d, %v", rec.Seq, err)
	}
	if got := consumers(); got != before+1 {
		t.Fatalf("%d consumers while following, want %d", got, before+1)
	}
	f.Stop()
	if got := consumers(); got != before {
		t.Fatalf("%d consumers after the follower stopped, want %d", got, before)
	}
}

// Two subscribers on one durable consumer share the work: every message is
// handled exactly once, a failing handler gets a redelivery, and a poison
// message is dropped without stopping the others.
func TestSubscribeDurable(t *testing.T) {
	t.Parallel()
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, 60*time.Second)
	const n = 200
	var mu sync.Mutex
	handled := map[string]int{}
	failedOnce := map[string]bool{}
	var poison atomic.Int32
	handle := func(_ context.Context, d eventlog.Delivery) error {
		body := string(d.Data)
		if strings.HasPrefix(body, "poison") {
			poison.Add(1)
			return fmt.Errorf("cannot parse %q: %w", body, eventlog.ErrPoison)
		}
		mu.Lock()
		defer mu.Unlock()
		if body == "cmd-7" && !failedOnce[body] {
			failedOnce[body] = true
			return errors.New("transient")
		}
		handled[body]++
		return nil
	}
	cfg := eventlog.ConsumerConfig{Stream: eventlog.Commands.Name, Durable: "test_workers", Filter: "fv.cmd.producer.test.>", AckWait: 5 * time.Second, MaxDeliver: -1}
	for i := 0; i < 2; i++ {
		sub, err := l.Subscribe(ctx, cfg, handle)
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Stop()
	}
	for i := 0; i < n; i++ {
		if _, err := l.JetStream().Publish(ctx, "fv.cmd.producer.test.x", []byte(fmt.Sprintf("cmd-%d", i))); err != nil {
			t.Fatal(err)
		}
		if i == n/2 {
			if _, err := l.JetStream().Publish(ctx, "fv.cmd.producer.test.x", []byte("poison!")); err != nil {
				t.Fatal(err)
			}
		}
	}
	testutil.Eventually(t, 20*time.Second, 20*time.Millisecond, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(handled) != n {
			return fmt.Errorf("handled %d of %d", len(handled), n)
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	for body, c := range handled {
		if c != 1 {
			t.Errorf("%s handled %d times", body, c)
		}
	}
	if !failedOnce["cmd-7"] || poison.Load() != 1 {
		t.Fatalf("failed once: %v, poison deliveries: %d", failedOnce["cmd-7"], poison.Load())
	}
}

func TestToken(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"order_flow-2", "order_flow-2"},
		{"a.b", "a%2Eb"},
		{"a b*>", "a%20b%2A%3E"},
		{"100%", "100%25"},
		{"", "%00"},
	}
	for _, tt := range tests {
		if got := eventlog.Token(tt.in); got != tt.want {
			t.Errorf("Token(%q) = %q, want %q", tt.in, got, tt.want)
		}
		if back, err := eventlog.Untoken(tt.want); err != nil || back != tt.in {
			t.Errorf("Untoken(%q) = %q, %v; want %q", tt.want, back, err, tt.in)
		}
	}
	for _, bad := range []string{"a%2", "%zz", "%"} {
		if _, err := eventlog.Untoken(bad); err == nil {
			t.Errorf("Untoken(%q) accepted", bad)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	mod := func(f func(*eventlog.Config)) eventlog.Config {
		c := eventlog.DefaultConfig()
		f(&c)
		return c
	}
	tests := []struct {
		name string
		cfg  eventlog.Config
		ok   bool
	}{
		{"default", eventlog.DefaultConfig(), true},
		{"relaxed", mod(func(c *eventlog.Config) { c.Fsync = eventlog.FsyncRelaxed }), true},
		{"external", mod(func(c *eventlog.Config) { c.URL = "nats://127.0.0.1:4222"; c.StoreDir = "" }), true},
		{"bad fsync", mod(func(c *eventlog.Config) { c.Fsync = "sometimes" }), false},
		{"bad listen", mod(func(c *eventlog.Config) { c.Listen = "localhost" }), false},
		{"two auth forms", mod(func(c *eventlog.Config) { c.User = "u"; c.Token = "t" }), false},
		{"replicas", mod(func(c *eventlog.Config) { c.Replicas = 0 }), false},
		{"no store", mod(func(c *eventlog.Config) { c.StoreDir = "" }), false},
		{"external with a client certificate", mod(func(c *eventlog.Config) {
			c.URL, c.ClientCertFile, c.ClientKeyFile, c.CAFile = "tls://nats.internal:4222", "c.pem", "k.pem", "ca.pem"
		}), true},
		{"client certificate without key", mod(func(c *eventlog.Config) { c.URL, c.ClientCertFile = "tls://nats.internal:4222", "c.pem" }), false},
		{"client certificate for the embedded server", mod(func(c *eventlog.Config) { c.ClientCertFile, c.ClientKeyFile = "c.pem", "k.pem" }), false},
		{"CA for the embedded server", mod(func(c *eventlog.Config) { c.CAFile = "ca.pem" }), false},
		{"record format 1", mod(func(c *eventlog.Config) { c.RecordFormat = schemas.RecordFormat1 }), true},
		{"no record format", mod(func(c *eventlog.Config) { c.RecordFormat = 0 }), false},
		{"a record format this version does not write", mod(func(c *eventlog.Config) { c.RecordFormat = schemas.LatestRecordFormat + 1 }), false},
		{"max store", mod(func(c *eventlog.Config) { c.MaxStore = 1 << 30 }), true},
		{"negative max store", mod(func(c *eventlog.Config) { c.MaxStore = -1 }), false},
		{"max store in gigabytes given as bytes", mod(func(c *eventlog.Config) { c.MaxStore = 20 }), false},
		{"max store of an external server", mod(func(c *eventlog.Config) { c.URL, c.MaxStore = "nats://127.0.0.1:4222", 1<<30 }), false},
	}
	for _, tt := range tests {
		if err := tt.cfg.Validate(); (err == nil) != tt.ok {
			t.Errorf("%s: Validate() = %v, want ok=%v", tt.name, err, tt.ok)
		}
	}
}

// Appends write the newest record format the configuration allows, so
// that engines of an older version sharing the log can read them, and a
// record reads back the same in either.
func TestAppendWritesTheConfiguredRecordFormat(t *testing.T) {
	t.Parallel()
	for _, format := range []schemas.RecordFormat{schemas.RecordFormat1, schemas.RecordFormat2} {
		t.Run(fmt.Sprint(format), func(t *testing.T) {
			t.Parallel()
			ctx := testutil.Context(t, 30*time.Second)
			cfg := testutil.LogConfig(t.TempDir())
			cfg.RecordFormat = format
			l, err := eventlog.Open(ctx, cfg, eventlog.Options{Logger: testutil.Logger(t)})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			// One decision: its events share their metadata, as the
			// executor writes them, and fit either format.
			envs := notes(t, "d", 2)
			envs[0].ID, envs[1].ID, envs[1].Time = "d", "d/1", envs[0].Time
			const subject = "fv.wf.format"
			if _, err := l.Append(ctx, subject, envs, 0); err != nil {
				t.Fatal(err)
			}
			stream, err := l.JetStream().Stream(ctx, eventlog.Workflows.Name)
			if err != nil {
				t.Fatal(err)
			}
			raw, err := stream.GetLastMsgForSubject(ctx, subject)
			if err != nil {
				t.Fatal(err)
			}
			if got := schemas.RecordFormat(raw.Data[0]); got != format {
				t.Fatalf("record written in format %d, want %d", got, format)
			}
			recs, err := l.ReadSubject(ctx, subject, 0)
			if err != nil || len(recs) != 1 {
				t.Fatalf("read %d records, %v", len(recs), err)
			}
			if got := recs[0].Events; len(got) != 2 || got[1].ID != "d/1" || !bytes.Equal(got[1].Data, envs[1].Data) {
				t.Fatalf("read back %+v, want %+v", got, envs)
			}
		})
	}
}

// An append while the server is away fails, and stays failed: the
// connection keeps no publish to send once it is back, which would store
// a record its caller was told was not (a start answered 503, then
// started all the same, and started again by the caller's retry).
func TestAppendWhileDisconnectedIsNotSentLater(t *testing.T) {
	dir := t.TempDir()
	ns := testutil.StartNATS(t, dir, 0)
	l := testutil.OpenExternalLog(t, ns)
	ns.Shutdown()
	ns.WaitForShutdown()
	// Time for all its attempts (about a second of backoff): the last
	// one's error is the answer.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := l.Append(ctx, "fv.wf.away", []schemas.Envelope{testutil.NoteEnvelope(t, "while-away", 1)}, 0)
	switch {
	case err == nil:
		t.Fatal("an append while the server was down succeeded")
	case !strings.Contains(err.Error(), "NATS server is out of reach") || !eventlog.Unavailable(err) && !errors.Is(err, context.DeadlineExceeded):
		// nats.go's own words ("outbound buffer limit exceeded") read as load.
		t.Fatalf("an append while the server was down: %v; want it to say the server is out of reach, retryably", err)
	}
	testutil.RestartNATS(t, ns, dir)
	testutil.Eventually(t, 20*time.Second, 50*time.Millisecond, func() error {
		if !l.Conn().IsConnected() {
			return errors.New("not connected again")
		}
		return nil
	})
	// A record appended after the reconnection comes first.
	rctx := testutil.Context(t, 10*time.Second)
	if _, err := l.Append(rctx, "fv.wf.away", []schemas.Envelope{testutil.NoteEnvelope(t, "after", 1)}, 0); err != nil {
		t.Fatalf("append after the reconnection: %v", err)
	}
	recs, err := l.ReadSubject(rctx, "fv.wf.away", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || recs[0].Events[0].ID != testutil.NoteEnvelope(t, "after", 1).ID {
		t.Fatalf("%d records on the subject, want only the one appended after the reconnection", len(recs))
	}
}

// A server out of storage refuses appends with a clear, retryable error
// (a 503 at the API), not one the API reads as an internal error.
func TestAppendToAFullServer(t *testing.T) {
	ns := testutil.StartNATS(t, t.TempDir(), 0, func(o *server.Options) { o.JetStreamMaxStore = 1 << 20 })
	l := testutil.OpenExternalLog(t, ns)
	err := testutil.FillLog(t, l)
	if !errors.Is(err, eventlog.ErrNoStorage) || !errors.Is(err, fault.ErrUnavailable) {
		t.Fatalf("append to a full server: %v", err)
	}
}

// The embedded server stores no more than MaxStore: past it, appends
// fail as on a full disk.
func TestAppendPastMaxStore(t *testing.T) {
	t.Parallel()
	cfg := testutil.LogConfig(t.TempDir())
	cfg.Fsync, cfg.MaxStore = eventlog.FsyncRelaxed, 16<<20
	ctx := testutil.Context(t, 60*time.Second)
	l, err := eventlog.Open(ctx, cfg, eventlog.Options{Logger: testutil.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	if err := l.StoreFull(); err != nil {
		t.Fatalf("StoreFull of an empty store: %v", err)
	}
	stored := 0
	for ; stored < 1000; stored++ {
		env, encErr := schemas.Default.Encode(&testutil.Note{Text: strings.Repeat("x", 64<<10)})
		if encErr != nil {
			t.Fatal(encErr)
		}
		env.ID = fmt.Sprintf("fill-%d", stored)
		if _, err = l.Append(ctx, fmt.Sprintf("fv.wf.fill%d", stored), []schemas.Envelope{env}, 0); err != nil {
			break
		}
	}
	if !errors.Is(err, eventlog.ErrNoStorage) {
		t.Fatalf("append %d of 64 KiB past a 16 MiB bound: %v; want ErrNoStorage", stored+1, err)
	}
	if stored < 128 {
		t.Fatalf("refused after %d records of 64 KiB, under half the bound", stored)
	}
	if err := l.StoreFull(); err == nil || !strings.Contains(err.Error(), "over its bound of 16777216") {
		t.Fatalf("StoreFull at the bound = %v; want it over its bound", err)
	}
}

// A stream whose store failed a write (here: its directory gone, as on a
// disk that filled up) stores and acknowledges nothing more until the
// server restarts; StorageError says so, for the health check.
func TestStorageErrorAfterAFailedWrite(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	l := testutil.OpenLog(t, dir)
	ctx := testutil.Context(t, 40*time.Second)
	if err := l.StorageError(ctx); err != nil {
		t.Fatalf("a fresh store: %v", err)
	}
	seq, err := l.Append(ctx, "fv.wf.storage-error", notes(t, "a", 1), 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(ctx, "fv.wf.storage-error", notes(t, "b", 1), seq); err != nil {
		t.Fatal(err)
	}
	testutil.FailStreamStore(t, l, dir, "FV_WF", seq)
	// The next append is neither stored nor answered; once an attempt
	// went unanswered it fails saying why, rather than trying again for
	// 40 s. (The context would allow them all.)
	_, err = l.Append(ctx, "fv.wf.storage-error-2", notes(t, "c", 1), 0)
	if !errors.Is(err, eventlog.ErrNoStorage) || !strings.Contains(err.Error(), "FV_WF") {
		t.Fatalf("an append to a stream that failed a write: %v; want ErrNoStorage naming the stream", err)
	}
	if ctx.Err() != nil {
		t.Fatal("the append tried until the test's deadline")
	}
	err = l.StorageError(ctx)
	if err == nil || !strings.Contains(err.Error(), "FV_WF") {
		t.Fatalf("StorageError after a failed write = %v; want the stream's write error", err)
	}
}

// nats-server's health check reports each stream being made as one that
// "could not be recovered" (its directory is there before the stream);
// StorageError, which /health asks, does not take that for a failed
// store: a health probe while a bucket was made answered 503.
func TestStorageErrorWhileStreamsAreMade(t *testing.T) {
	t.Parallel()
	l := testutil.OpenLog(t, t.TempDir())
	ctx := testutil.Context(t, 60*time.Second)
	made := make(chan error, 1)
	go func() {
		for i := range 20 {
			cfg := jetstream.KeyValueConfig{Bucket: fmt.Sprintf("MADE_%d", i), Storage: jetstream.FileStorage}
			if _, err := l.JetStream().CreateKeyValue(ctx, cfg); err != nil {
				made <- err
				return
			}
		}
		made <- nil
	}()
	for probes := 1; ; probes++ {
		if err := l.StorageError(ctx); err != nil {
			t.Fatalf("probe %d, while buckets are made: %v", probes, err)
		}
		select {
		case err := <-made:
			if err != nil {
				t.Fatal(err)
			}
			return
		default:
		}
	}
}

// A stream's directory that the store found when it started, and a stream
// it did not recover, is an error at once; one made since is a stream
// being made, however long its making takes: under make test's load, a
// bucket's outlasted the 2 s StorageError used to give it, and a healthy
// log's probe failed. The directories stand for a stream that never
// loads.
func TestStorageErrorOfAStreamNotRecovered(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		before bool // the directory is there when the store starts
		left   bool // made since, and left without its stream past the grace
	}{
		{"there at the start", true, false},
		{"made since", false, false},
		// A making that failed and left its directory, counted once it
		// outlasts the grace: it was never counted.
		{"made since, left", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			streams := filepath.Join(testutil.LogConfig(dir).StoreDir, "jetstream", "$G", "streams")
			if tc.before {
				l := testutil.OpenLog(t, dir)
				l.Close()
				if err := os.MkdirAll(filepath.Join(streams, "NEVER"), 0o750); err != nil {
					t.Fatal(err)
				}
			}
			l := testutil.OpenLog(t, dir)
			if !tc.before {
				if err := os.MkdirAll(filepath.Join(streams, "NEVER"), 0o750); err != nil {
					t.Fatal(err)
				}
			}
			if tc.left {
				made := time.Now().Add(-2 * eventlog.MakingGrace)
				eventlog.StartedStoreAt(l, made.Add(-time.Minute))
				if err := os.Chtimes(filepath.Join(streams, "NEVER"), made, made); err != nil {
					t.Fatal(err)
				}
			}
			want := tc.before || tc.left
			err := l.StorageError(testutil.Context(t, 30*time.Second))
			if got := err != nil; got != want || got && !strings.Contains(err.Error(), "NEVER' could not be recovered") {
				t.Fatalf("StorageError: %v; want an error %v", err, want)
			}
		})
	}
}

// nats-server's health check asks whether the server is ready for
// connections with a 1 ms bound, and fails it when its goroutine is
// descheduled inside that millisecond: a healthy log's probe failed so in
// CI. Eight probes at a time on two cores lose it a few times a second.
func TestStorageErrorOutlastsTheReadinessRace(t *testing.T) {
	t.Parallel()
	l := testutil.OpenLog(t, t.TempDir())
	ctx := testutil.Context(t, 60*time.Second)
	var probes, failed atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for n := probes.Add(1); n <= 300_000; n = probes.Add(1) {
				if err := l.StorageError(ctx); err != nil {
					if failed.Add(1) == 1 {
						t.Errorf("probe %d of a healthy log: %v", n, err)
					}
				}
			}
		})
	}
	wg.Wait()
	if n := failed.Load(); n > 0 {
		t.Errorf("%d of 300,000 probes failed", n)
	}
}

// Once an append found a stream's store failed, the next ones to it are
// refused at once, sent to no one, and say that nothing was stored (not
// ErrStoreFailed, whose outcome is unknown); without it each waited out
// one unanswered publish. A stream made anew, which nats-server keeps no
// write error for, is written to again.
func TestAppendToAFailedStoreIsRefusedAtOnce(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	l := testutil.OpenLog(t, dir)
	ctx := testutil.Context(t, 40*time.Second)
	seq, err := l.Append(ctx, "fv.wf.failed-store", notes(t, "a", 1), 0)
	if err != nil {
		t.Fatal(err)
	}
	s, err := l.JetStream().Stream(ctx, eventlog.Workflows.Name)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	testutil.FailStreamStore(t, l, dir, eventlog.Workflows.Name, seq)
	if _, err := l.Append(ctx, "fv.wf.failed-store-1", notes(t, "b", 1), 0); !errors.Is(err, eventlog.ErrStoreFailed) {
		t.Fatalf("the first append after the failure: %v; want ErrStoreFailed (it was sent, unanswered)", err)
	}

	watch, err := l.ConnectInProcess()
	if err != nil {
		t.Fatal(err)
	}
	defer watch.Close()
	sent, err := watch.SubscribeSync("fv.wf.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := watch.Flush(); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		_, err := l.Append(ctx, fmt.Sprintf("fv.wf.failed-store-%d", i+2), notes(t, fmt.Sprintf("c%d", i), 1), 0)
		if !errors.Is(err, eventlog.ErrNoStorage) || errors.Is(err, eventlog.ErrStoreFailed) || !strings.Contains(err.Error(), "FV_WF") {
			t.Fatalf("append %d to a store known failed: %v; want ErrNoStorage, not ErrStoreFailed, naming the stream", i+2, err)
		}
		if strings.Contains(err.Error(), "$G") || strings.Contains(err.Error(), dir) {
			t.Fatalf("append %d: %q quotes the store's write error", i+2, err)
		}
	}
	if err := l.Conn().Flush(); err != nil {
		t.Fatal(err)
	}
	if err := watch.Flush(); err != nil {
		t.Fatal(err)
	}
	if n, _, _ := sent.Pending(); n != 0 {
		t.Fatalf("%d appends to a store known failed were sent", n)
	}

	// The stream made anew, as a restart does.
	if err := l.JetStream().DeleteStream(ctx, eventlog.Workflows.Name); err != nil {
		t.Fatal(err)
	}
	if _, err := l.JetStream().CreateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	seq, err = l.Append(ctx, "fv.wf.failed-store-again", notes(t, "d", 1), 0)
	if err != nil {
		t.Fatalf("an append to the stream made anew: %v", err)
	}
	if recs, err := l.ReadSubject(ctx, "fv.wf.failed-store-again", 0); err != nil || len(recs) != 1 || recs[0].Seq != seq {
		t.Fatalf("the stream made anew holds %v (%v), want the append at %d", recs, err, seq)
	}
}

// A guarded write answered as its store is found failed, after it waited
// publishTimeout, returns its answer: the look that ends a write still
// unanswered must not turn one answered into a failure ("no answer",
// whether it was stored unknown), which its caller takes as not done (a
// limit's count taken, an event's claim made, and the take or the action
// refused). Here the write sends a record its stream's failed store does
// not answer, and its own answer comes as its context ends.
func TestGuardWriteAnsweredAsItsStoreIsFoundFailed(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	l := testutil.OpenLog(t, dir)
	ctx := testutil.Context(t, time.Minute)
	seq, err := l.Append(ctx, "fv.wf.guard-answered", notes(t, "a", 1), 0)
	if err != nil {
		t.Fatal(err)
	}
	testutil.FailStreamStore(t, l, dir, "FV_WF", seq)
	err = l.GuardWrite(ctx, "FV_WF", func(ctx context.Context) error {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		if _, err := l.JetStream().Publish(pctx, "fv.wf.guard-answered", []byte("b")); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("a record sent to a failed store: %v, want it unanswered", err)
		}
		<-ctx.Done()
		return nil
	})
	if err != nil {
		t.Fatalf("a write answered: %v", err)
	}
	if ctx.Err() != nil {
		t.Fatal("the write's context was not cut when its store was found failed")
	}
}

// A subject past MaxSubjectLen is refused by every operation that names
// one, before anything is sent: the NATS server closes a connection whose
// protocol line is past its max_control_line (4 KiB by default), and the
// log's connection is every append's and read's. The log works on after.
func TestOverlongSubjectRefused(t *testing.T) {
	t.Parallel()
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, 30*time.Second)
	long := "fv.wf." + strings.Repeat("n", 1<<20)
	for name, op := range map[string]func() error{
		"append": func() error { _, err := l.Append(ctx, long, notes(t, "long", 1), 0); return err },
		"last":   func() error { _, err := l.LastSeq(ctx, long); return err },
		"read":   func() error { _, err := l.ReadSubject(ctx, long, 0); return err },
		"first":  func() error { _, _, err := l.FirstRecord(ctx, long); return err },
		"scan": func() error {
			return l.Scan(ctx, eventlog.ScanOptions{Subject: long}, func(eventlog.Record) error { return nil })
		},
	} {
		if err := op(); !errors.Is(err, eventlog.ErrInvalidSubject) {
			t.Errorf("%s: err = %.200v, want ErrInvalidSubject", name, err)
		}
		if len(fmt.Sprint(op())) > 4096 {
			t.Errorf("%s: the error quotes the subject whole", name)
		}
	}
	if _, err := l.Append(ctx, "fv.wf.after", notes(t, "after", 1), 0); err != nil {
		t.Fatalf("append after the refusals: %v", err)
	}
}
