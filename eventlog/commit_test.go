package eventlog

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// openIn opens a durable embedded log in dir.
func openIn(t *testing.T, dir string, groupCommit bool) *Log {
	t.Helper()
	cfg := DefaultConfig()
	cfg.StoreDir, cfg.Listen, cfg.GroupCommit = dir, "", groupCommit
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := Open(ctx, cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// openForCommit opens a durable embedded log in a temporary directory and
// returns it with its workflow stream's committer.
func openForCommit(t *testing.T) (*Log, *committer) {
	t.Helper()
	l := openIn(t, t.TempDir(), true)
	c := l.committers[Workflows.Name]
	if c == nil {
		t.Fatal("no committer for the workflow stream in always mode")
	}
	return l, c
}

func pending(subject, msgID string, expected uint64) *pendingAppend {
	m := &nats.Msg{Subject: subject, Data: []byte("record " + msgID), Header: nats.Header{}}
	m.Header.Set(jetstream.MsgIDHeader, msgID)
	m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(expected, 10))
	return &pendingAppend{msg: m, done: make(chan struct{})}
}

func mustBeReleased(t *testing.T, i int, p *pendingAppend) {
	t.Helper()
	select {
	case <-p.done:
	default:
		t.Fatalf("append %d not released", i)
	}
}

func storedAt(t *testing.T, l *Log, seq uint64) *jetstream.RawStreamMsg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := l.js.Stream(ctx, Workflows.Name)
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.GetMsg(ctx, seq)
	if err != nil {
		t.Fatalf("message %d: %v", seq, err)
	}
	return m
}

func TestBatchWritesEachRecordAtItsSequence(t *testing.T) {
	t.Parallel()
	l, c := openForCommit(t)
	var batch []*pendingAppend
	for i := range 5 {
		batch = append(batch, pending(fmt.Sprintf("fv.wf.batch-%d", i), fmt.Sprintf("id-%d", i), 0))
	}
	c.write(batch)
	for i, p := range batch {
		mustBeReleased(t, i, p)
		if !p.written {
			t.Fatalf("append %d not written by the batch", i)
		}
		m := storedAt(t, l, p.seq)
		if m.Subject != p.msg.Subject || string(m.Data) != string(p.msg.Data) {
			t.Fatalf("sequence %d holds %s %q, want append %d (%s)", p.seq, m.Subject, m.Data, i, p.msg.Subject)
		}
		if m.Header.Get(batchIDHeader) == "" {
			t.Fatalf("append %d was not stored as part of a batch", i)
		}
	}
	// The callers' messages are untouched, should they have to go alone.
	if h := batch[0].msg.Header.Get(batchIDHeader); h != "" {
		t.Fatalf("caller's message got batch header %q", h)
	}
}

// One stale expectation refuses the whole batch: nothing is stored, and
// every append goes back to its caller to be published alone, which is how
// the stale one learns of its conflict and the others are written.
func TestRefusedBatchGoesAlone(t *testing.T) {
	t.Parallel()
	l, c := openForCommit(t)
	batch := []*pendingAppend{
		pending("fv.wf.refused-a", "a", 0),
		pending("fv.wf.refused-b", "b", 7), // the subject is empty
		pending("fv.wf.refused-c", "c", 0),
	}
	c.write(batch)
	for i, p := range batch {
		mustBeReleased(t, i, p)
		if p.written {
			t.Fatalf("append %d reported written by a refused batch", i)
		}
	}
	if got := c.alone.Load(); got != 3 {
		t.Fatalf("%d appends counted as going alone, want 3", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, subj := range []string{"fv.wf.refused-a", "fv.wf.refused-b", "fv.wf.refused-c"} {
		if last, err := l.LastSeq(ctx, subj); err != nil || last != 0 {
			t.Fatalf("%s: last sequence %d, %v; want nothing stored", subj, last, err)
		}
	}
}

// An append whose caller gives up while it waits must not keep its place
// among those going alone once it is handed back: enough such places lost
// and the committer would wait forever for appends nobody publishes.
func TestAbandonedAppendGivesBackItsPlace(t *testing.T) {
	t.Parallel()
	c := &committer{
		queue:    make(chan *pendingAppend, 1),
		stop:     make(chan struct{}),
		released: make(chan struct{}, 1),
	}
	defer close(c.stop)
	ctx, cancel := context.WithCancel(context.Background())
	returned := make(chan error, 1)
	go func() {
		_, _, _, err := c.append(ctx, pending("fv.wf.abandoned", "x", 0).msg)
		returned <- err
	}()
	p := <-c.queue
	cancel()
	if err := <-returned; err == nil {
		t.Fatal("append returned no error after its context ended")
	}
	c.goAlone(p)
	deadline := time.After(10 * time.Second)
	for c.alone.Load() != 0 {
		select {
		case <-deadline:
			t.Fatalf("%d places still taken by an abandoned append", c.alone.Load())
		case <-time.After(time.Millisecond):
		}
	}
}

// A data directory written without group commit (an earlier version, or
// --group-commit=false) has streams that refuse atomic batches; opening it
// with group commit allows them, and the other way round.
func TestGroupCommitFollowsTheConfiguration(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	allowed := func(l *Log) bool {
		t.Helper()
		s, err := l.js.Stream(ctx, Workflows.Name)
		if err != nil {
			t.Fatal(err)
		}
		return s.CachedInfo().Config.AllowAtomicPublish
	}
	for i, groupCommit := range []bool{false, true, false} {
		l := openIn(t, dir, groupCommit)
		if got := allowed(l); got != groupCommit {
			t.Fatalf("open %d (group commit %v): stream allows atomic batches: %v", i, groupCommit, got)
		}
		if got := l.committers[Workflows.Name] != nil; got != groupCommit {
			t.Fatalf("open %d (group commit %v): committer present: %v", i, groupCommit, got)
		}
		l.Close()
	}
}

// While the stream is busy (aloneLimit appends in flight alone), a few
// appends wait for their turn to go alone: a batch of them would cost more
// than the wait. Once minBatch are waiting they go as one batch.
func TestFewWaitingAppendsGoAloneManyGoInABatch(t *testing.T) {
	t.Parallel()
	_, c := openForCommit(t)
	c.alone.Store(aloneLimit) // the stream is busy
	type result struct {
		written bool
		err     error
	}
	appendAll := func(prefix string, n int) chan result {
		out := make(chan result, n)
		for i := range n {
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				_, written, _, err := c.append(ctx, pending(fmt.Sprintf("fv.wf.%s-%d", prefix, i), fmt.Sprintf("%s-%d", prefix, i), 0).msg)
				out <- result{written, err}
			}()
		}
		return out
	}

	few := appendAll("few", 3)
	select {
	case r := <-few:
		t.Fatalf("an append was placed while the stream was busy and only 3 waited: %+v", r)
	case <-time.After(200 * time.Millisecond):
	}
	for range 3 {
		c.release() // three appends alone are done: three places
	}
	for range 3 {
		if r := <-few; r.err != nil || r.written {
			t.Fatalf("a waiting append was not handed back to go alone: %+v", r)
		}
	}

	c.alone.Store(aloneLimit)
	many := appendAll("many", minBatch)
	for range minBatch {
		if r := <-many; r.err != nil || !r.written {
			t.Fatalf("with %d waiting, an append was not written in a batch: %+v", minBatch, r)
		}
	}
}
