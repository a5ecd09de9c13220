package projections_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/projections"
	"github.com/flowvault/flowvault/schemas"
)

// noteProjection indexes test notes by event id and keeps a running count,
// read-modify-written on every event so that a record applied twice (or
// skipped) shows up as a wrong count.
type noteProjection struct{}

func (noteProjection) Name() string { return "notes" }

func (noteProjection) Apply(b *projections.Batch, rec eventlog.Record) error {
	for _, env := range rec.Events {
		ev, err := schemas.Default.Decode(env)
		if err != nil {
			return err
		}
		n, ok := ev.(*testutil.Note)
		if !ok {
			return fmt.Errorf("unexpected %T: %w", ev, projections.ErrPoison)
		}
		if err := b.Set([]byte("note/"+env.ID), []byte(fmt.Sprintf("%s@%d", n.Text, rec.Seq))); err != nil {
			return err
		}
	}
	var count uint64
	v, err := b.Get([]byte("count"))
	switch {
	case err == nil:
		count = binary.BigEndian.Uint64(v)
	case !errors.Is(err, projections.ErrNotFound):
		return err
	}
	count += uint64(len(rec.Events))
	return b.Set([]byte("count"), binary.BigEndian.AppendUint64(nil, count))
}

func noteCount(t testing.TB, s *projections.Store) uint64 {
	t.Helper()
	v, err := s.Reader("notes").Get([]byte("count"))
	if errors.Is(err, projections.ErrNotFound) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return binary.BigEndian.Uint64(v)
}

func openStore(t testing.TB, dir string) *projections.Store {
	t.Helper()
	s, err := projections.OpenStore(dir, projections.StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// run starts a runner in the background and returns it with a stop func
// that waits for Run to return and reports its error.
func run(t testing.TB, l *eventlog.Log, s *projections.Store, cfg projections.RunnerConfig) (*projections.Runner, func() error) {
	t.Helper()
	if cfg.Stream == "" {
		cfg.Stream = eventlog.Workflows.Name
	}
	r := projections.NewRunner(l, s, noteProjection{}, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- r.Run(ctx) }()
	var stopped bool
	var runErr error
	stop := func() error {
		if !stopped {
			cancel()
			runErr = <-errc
			stopped = true
		}
		return runErr
	}
	t.Cleanup(func() { stop() })
	return r, stop
}

func appendNotes(t testing.TB, l *eventlog.Log, subjects, perSubject int) (last uint64, events int) {
	t.Helper()
	return appendNotesAs(t, l, "", subjects, perSubject)
}

// appendNotesAs is appendNotes by another engine: records of ids and on
// subjects of their own, named after engine.
func appendNotesAs(t testing.TB, l *eventlog.Log, engine string, subjects, perSubject int) (last uint64, events int) {
	t.Helper()
	ctx := testutil.Context(t, time.Minute)
	for s := 0; s < subjects; s++ {
		var seq uint64
		for i := 0; i < perSubject; i++ {
			evs := []schemas.Envelope{
				testutil.NoteEnvelope(t, fmt.Sprintf("%ss%d-%d-a", engine, s, i), i),
				testutil.NoteEnvelope(t, fmt.Sprintf("%ss%d-%d-b", engine, s, i), i),
			}
			var err error
			if seq, err = l.Append(ctx, fmt.Sprintf("fv.wf.%sp%d", engine, s), evs, seq); err != nil {
				t.Fatal(err)
			}
			last, events = max(last, seq), events+2
		}
	}
	return last, events
}

func dump(t testing.TB, s *projections.Store) string {
	t.Helper()
	var b bytes.Buffer
	if err := s.Dump(&b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// Deleting the Pebble directory and replaying gives byte-identical contents.
func TestRebuildIsIdentical(t *testing.T) {
	t.Parallel()
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, time.Minute)
	dir := filepath.Join(t.TempDir(), "pebble")
	last, events := appendNotes(t, l, 7, 30)

	s := openStore(t, dir)
	r, stop := run(t, l, s, projections.RunnerConfig{MaxBatch: 13})
	if err := r.WaitFor(ctx, last); err != nil {
		t.Fatal(err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	before := dump(t, s)
	if got := noteCount(t, s); got != uint64(events) {
		t.Fatalf("count = %d, want %d", got, events)
	}
	s.Close()

	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, dir)
	defer s.Close()
	// A different batch size must not change the result.
	r, stop = run(t, l, s, projections.RunnerConfig{MaxBatch: 1000})
	if err := r.WaitFor(ctx, last); err != nil {
		t.Fatal(err)
	}
	stop()
	after := dump(t, s)
	if before != after {
		t.Fatalf("rebuilt store differs:\nbefore %d bytes\nafter  %d bytes", len(before), len(after))
	}
	if !strings.Contains(after, "note/s6-29-b") {
		t.Fatal("dump lacks the last note")
	}
}

// A runner stopped part-way resumes after its checkpoint without applying
// anything twice.
func TestResumeFromCheckpoint(t *testing.T) {
	t.Parallel()
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, time.Minute)
	dir := t.TempDir()
	s := openStore(t, dir)
	last1, ev1 := appendNotes(t, l, 3, 10)
	r, stop := run(t, l, s, projections.RunnerConfig{})
	if err := r.WaitFor(ctx, last1); err != nil {
		t.Fatal(err)
	}
	stop()
	// The store keeps no write-ahead log: closing it must flush, or the
	// checkpoint would be gone.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, dir)
	defer s.Close()
	if cp, _ := s.Checkpoint("notes"); cp != last1 {
		t.Fatalf("checkpoint = %d, want %d", cp, last1)
	}

	var seq uint64
	for i := 0; i < 5; i++ {
		var err error
		if seq, err = l.Append(ctx, "fv.wf.later", []schemas.Envelope{testutil.NoteEnvelope(t, fmt.Sprintf("later%d", i), i)}, seq); err != nil {
			t.Fatal(err)
		}
	}
	r, stop = run(t, l, s, projections.RunnerConfig{})
	if err := r.WaitFor(ctx, seq); err != nil {
		t.Fatal(err)
	}
	stop()
	if got, want := noteCount(t, s), uint64(ev1+5); got != want {
		t.Fatalf("count = %d, want %d", got, want)
	}
}

func publishPoison(t testing.TB, l *eventlog.Log, subject string) uint64 {
	t.Helper()
	ack, err := l.JetStream().Publish(testutil.Context(t, 10*time.Second), subject, []byte("\x01\xff garbage"))
	if err != nil {
		t.Fatal(err)
	}
	return ack.Sequence
}

func TestPoisonRecord(t *testing.T) {
	t.Parallel()
	for _, policy := range []struct {
		name   string
		policy projections.PoisonPolicy
		// applied is what records_applied_total counts: a halt's commit
		// of the records before the poison one counts them too.
		applied float64
	}{{"park", projections.Park, 5}, {"halt", projections.Halt, 3}} {
		t.Run(policy.name, func(t *testing.T) {
			t.Parallel()
			l := testutil.OpenLog(t, "")
			ctx := testutil.Context(t, time.Minute)
			s := openStore(t, t.TempDir())
			defer s.Close()
			before, _ := appendNotes(t, l, 1, 3)
			bad := publishPoison(t, l, "fv.wf.p0")
			after, err := l.Append(ctx, "fv.wf.p1", []schemas.Envelope{testutil.NoteEnvelope(t, "after", 1)}, 0)
			if err != nil {
				t.Fatal(err)
			}

			reg := prometheus.NewRegistry()
			logger, logs := testutil.CapturingLogger()
			r, stop := run(t, l, s, projections.RunnerConfig{Poison: policy.policy, Logger: logger, Metrics: projections.NewMetrics(reg)})

			switch policy.policy {
			case projections.Park:
				if err := r.WaitFor(ctx, after); err != nil {
					t.Fatal(err)
				}
				parked, err := s.Parked("notes")
				if err != nil || len(parked) != 1 || parked[0].Seq != bad || parked[0].Subject != "fv.wf.p0" {
					t.Fatalf("parked = %+v, %v; want one record at %d", parked, err, bad)
				}
				if got := noteCount(t, s); got != 7 {
					t.Fatalf("count = %d, want 7 (the records around the poison one)", got)
				}
			case projections.Halt:
				err := r.WaitFor(ctx, after)
				if err == nil || !strings.Contains(err.Error(), "halted") {
					t.Fatalf("WaitFor past a halt = %v, want the halt error", err)
				}
				if runErr := stop(); !errors.Is(runErr, schemas.ErrCorrupt) {
					t.Fatalf("Run = %v, want ErrCorrupt", runErr)
				}
				if cp, _ := s.Checkpoint("notes"); cp != before {
					t.Fatalf("checkpoint = %d, want %d (just before the poison record)", cp, before)
				}
				if got := noteCount(t, s); got != 6 {
					t.Fatalf("count = %d, want 6", got)
				}
			}
			if got := testutil.MetricValue(t, reg, "flowvault_projection_poison_records_total", map[string]string{"projection": "notes"}); got != 1 {
				t.Fatalf("poison metric = %v, want 1", got)
			}
			if got := testutil.MetricValue(t, reg, "flowvault_projection_records_applied_total", map[string]string{"projection": "notes"}); got != policy.applied {
				t.Fatalf("records applied = %v, want %v", got, policy.applied)
			}
			if !strings.Contains(logs.String(), `"msg":"poison record"`) || !strings.Contains(logs.String(), fmt.Sprintf(`"seq":%d`, bad)) {
				t.Fatalf("no poison log line for seq %d in:\n%s", bad, logs.String())
			}
		})
	}
}

func TestWaitForCancelled(t *testing.T) {
	t.Parallel()
	l := testutil.OpenLog(t, "")
	s := openStore(t, t.TempDir())
	defer s.Close()
	r, _ := run(t, l, s, projections.RunnerConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := r.WaitFor(ctx, 1_000_000); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitFor(unreached) = %v", err)
	}
}

// WaitFor on a runner stopped with its node, not by a failure, says so:
// it quoted the missing failure as "%!w(<nil>)", which a write's answer
// carried (WaitWritten).
func TestWaitForStoppedRunner(t *testing.T) {
	t.Parallel()
	l := testutil.OpenLog(t, "")
	s := openStore(t, t.TempDir())
	defer s.Close()
	r, stop := run(t, l, s, projections.RunnerConfig{})
	if err := stop(); err != nil {
		t.Fatalf("Run = %v", err)
	}
	err := r.WaitFor(testutil.Context(t, 30*time.Second), 1_000_000)
	if err == nil || strings.Contains(err.Error(), "%!") || !strings.Contains(err.Error(), "stopped") {
		t.Fatalf("WaitFor(unreached) on a stopped runner = %v", err)
	}
}

// A runner stopped while it starts (its checks of the log under way) stops
// without an error, as one stopped while it follows does: a node stopped
// a moment after it started logged its read models as failed.
func TestStopWhileStarting(t *testing.T) {
	t.Parallel()
	l := testutil.OpenLog(t, "")
	s := openStore(t, t.TempDir())
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r := projections.NewRunner(l, s, noteProjection{}, projections.RunnerConfig{Stream: eventlog.Workflows.Name})
	if err := r.Run(ctx); err != nil {
		t.Fatalf("Run stopped before it started = %v, want nil", err)
	}
}

// A read model whose checkpoint lies past the end of its stream (the log
// lost records it had acknowledged) is not followed: new records would
// reuse the sequences it holds, be skipped, and be waited for in vain.
func TestReadModelAheadOfTheLogRefuses(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := openStore(t, dir)
	defer s.Close()
	ctx := testutil.Context(t, time.Minute)
	long := testutil.OpenLog(t, "")
	last, _ := appendNotes(t, long, 1, 10)
	r, stop := run(t, long, s, projections.RunnerConfig{})
	if err := r.WaitFor(ctx, last); err != nil {
		t.Fatal(err)
	}
	stop()

	short := testutil.OpenLog(t, "") // the same log, having lost all but its first records
	shortLast, _ := appendNotes(t, short, 1, 3)
	r, stop = run(t, short, s, projections.RunnerConfig{})
	if err := r.WaitFor(ctx, shortLast); err == nil {
		t.Fatal("a wait for a record the read model never applied returned")
	}
	if err := stop(); !errors.Is(err, projections.ErrAheadOfLog) || !strings.Contains(err.Error(), "rebuild") {
		t.Fatalf("Run returned %v, want ErrAheadOfLog saying to rebuild", err)
	}
}

// Nor is a read model followed on a stream made again since it followed
// it, when others wrote past its checkpoint meanwhile (an external server
// that lost its store, several engines on it): the sequences it is past
// hold records it never applied.
func TestReadModelOfAnotherStreamRefuses(t *testing.T) {
	t.Parallel()
	s := openStore(t, t.TempDir())
	defer s.Close()
	ctx := testutil.Context(t, time.Minute)
	first := testutil.OpenLog(t, "")
	last, _ := appendNotes(t, first, 1, 5)
	r, stop := run(t, first, s, projections.RunnerConfig{})
	if err := r.WaitFor(ctx, last); err != nil {
		t.Fatal(err)
	}
	stop()

	again := testutil.OpenLog(t, "") // made again, and written past the checkpoint
	appendNotes(t, again, 1, 12)
	r = projections.NewRunner(again, s, noteProjection{}, projections.RunnerConfig{Stream: eventlog.Workflows.Name})
	if err := r.Check(ctx); !errors.Is(err, projections.ErrAheadOfLog) || !strings.Contains(err.Error(), "made again") {
		t.Fatalf("Check = %v, want ErrAheadOfLog saying the stream was made again", err)
	}

	// The same stream, reopened, is followed on.
	dir := t.TempDir()
	s2 := openStore(t, t.TempDir())
	defer s2.Close()
	kept := testutil.OpenLog(t, dir)
	last, _ = appendNotes(t, kept, 1, 3)
	r, stop = run(t, kept, s2, projections.RunnerConfig{})
	if err := r.WaitFor(ctx, last); err != nil {
		t.Fatal(err)
	}
	stop()
	kept.Close()
	reopened := testutil.OpenLog(t, dir)
	r = projections.NewRunner(reopened, s2, noteProjection{}, projections.RunnerConfig{Stream: eventlog.Workflows.Name})
	if err := r.Check(ctx); err != nil {
		t.Fatalf("the same stream reopened: %v", err)
	}
}

// gated is noteProjection that applies nothing until open is closed: a
// store that cannot write.
type gated struct {
	noteProjection
	open chan struct{}
}

func (g gated) Apply(b *projections.Batch, rec eventlog.Record) error {
	<-g.open
	return g.noteProjection.Apply(b, rec)
}

// failing is a projection whose every apply fails (not a poison record).
type failing struct{ noteProjection }

func (failing) Apply(*projections.Batch, eventlog.Record) error {
	return errors.New("store refused the write")
}

// Stalled tells a health check of a read model that applies nothing
// while records wait, and of one whose runner stopped on an error; not of
// one that keeps up, nor of one with nothing to apply.
func TestStalled(t *testing.T) {
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, 30*time.Second)
	g := gated{open: make(chan struct{})}
	r := projections.NewRunner(l, openStore(t, t.TempDir()), g, projections.RunnerConfig{Stream: eventlog.Workflows.Name})
	runCtx, cancel := context.WithCancel(ctx)
	ran := make(chan error, 1)
	go func() { ran <- r.Run(runCtx) }()
	release := sync.OnceFunc(func() { close(g.open) })
	defer func() {
		release()
		cancel()
		<-ran
	}()
	const stall = 50 * time.Millisecond
	time.Sleep(2 * stall)
	if err := r.Stalled(ctx, stall); err != nil {
		t.Fatalf("a read model with nothing to apply reported %v", err)
	}
	appendNotes(t, l, 1, 1)
	testutil.Eventually(t, 10*time.Second, 10*time.Millisecond, func() error {
		if err := r.Stalled(ctx, stall); err == nil || !strings.Contains(err.Error(), "has applied nothing") {
			return fmt.Errorf("stalled read model reported %v", err)
		}
		return nil
	})
	release()
	testutil.Eventually(t, 10*time.Second, 10*time.Millisecond, func() error { return r.Stalled(ctx, time.Hour) })

	f := projections.NewRunner(l, openStore(t, t.TempDir()), failing{}, projections.RunnerConfig{Stream: eventlog.Workflows.Name})
	if err := f.Run(ctx); err == nil {
		t.Fatal("a projection whose applies fail ran on")
	}
	if err := f.Stalled(ctx, time.Hour); err == nil || !strings.Contains(err.Error(), "store refused the write") {
		t.Fatalf("a stopped read model reported %v", err)
	}
}

// flushingNotes is noteProjection keeping its count in memory between
// commits: Flush writes it once a batch.
type flushingNotes struct {
	pending uint64
	flushes int
}

func (*flushingNotes) Name() string { return "notes" }

func (p *flushingNotes) Apply(b *projections.Batch, rec eventlog.Record) error {
	for _, env := range rec.Events {
		ev, err := schemas.Default.Decode(env)
		if err != nil {
			return err
		}
		if _, ok := ev.(*testutil.Note); !ok {
			return fmt.Errorf("unexpected %T: %w", ev, projections.ErrPoison)
		}
	}
	p.pending += uint64(len(rec.Events))
	return nil
}

func (p *flushingNotes) Flush(b *projections.Batch) error {
	if p.pending == 0 {
		return nil
	}
	p.flushes++
	var count uint64
	if v, err := b.Get([]byte("count")); err == nil {
		count = binary.BigEndian.Uint64(v)
	} else if !errors.Is(err, projections.ErrNotFound) {
		return err
	}
	count, p.pending = count+p.pending, 0
	return b.Set([]byte("count"), binary.BigEndian.AppendUint64(nil, count))
}

// A Flusher's writes go into each commit with the records they sum up,
// once a batch, and a poison record between them counts for nothing.
func TestFlusherWritesOnceACommit(t *testing.T) {
	t.Parallel()
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, time.Minute)
	s := openStore(t, t.TempDir())
	defer s.Close()
	appendNotes(t, l, 2, 5)
	publishPoison(t, l, "fv.wf.p0")
	last, events := appendNotesAs(t, l, "x", 1, 3)

	p := &flushingNotes{}
	r := projections.NewRunner(l, s, p, projections.RunnerConfig{Stream: eventlog.Workflows.Name, MaxBatch: 4, Poison: projections.Park})
	runCtx, cancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() { errc <- r.Run(runCtx) }()
	if err := r.WaitFor(ctx, last); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if got, want := noteCount(t, s), uint64(2*5*2+events); got != want {
		t.Fatalf("count = %d, want %d", got, want)
	}
	// 14 records, 4 a batch at most: at least 4 commits, and never a
	// write per record.
	if p.flushes < 4 || p.flushes >= 13 {
		t.Fatalf("%d flushes for 13 good records in batches of 4", p.flushes)
	}
}

// ReaderAt reads one commit: its data and checkpoint stay as they were
// while later commits land, so that a count read with it holds exactly
// the records up to its checkpoint.
func TestReaderAtReadsOneCommit(t *testing.T) {
	t.Parallel()
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, time.Minute)
	s := openStore(t, t.TempDir())
	defer s.Close()
	first, events := appendNotes(t, l, 1, 3)
	r, stop := run(t, l, s, projections.RunnerConfig{})
	if err := r.WaitFor(ctx, first); err != nil {
		t.Fatal(err)
	}
	at, cp, release, err := s.ReaderAt("notes")
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	last, _ := appendNotesAs(t, l, "x", 1, 3)
	if err := r.WaitFor(ctx, last); err != nil {
		t.Fatal(err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	v, err := at.Get([]byte("count"))
	if err != nil {
		t.Fatal(err)
	}
	if got := binary.BigEndian.Uint64(v); cp != first || got != uint64(events) {
		t.Fatalf("ReaderAt: checkpoint %d count %d, want %d and %d (the later commits' %d events left out)", cp, got, first, events, noteCount(t, s)-uint64(events))
	}
}

// generationNotes records the runner's generation just before each commit
// (Flush) and just after it (Committed).
type generationNotes struct {
	noteProjection
	r      func() *projections.Runner
	mu     sync.Mutex
	before []uint64
	after  []uint64
}

func (p *generationNotes) Flush(*projections.Batch) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.before = append(p.before, p.r().Generation())
	return nil
}

func (p *generationNotes) Committed(uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.after = append(p.after, p.r().Generation())
}

// Each commit moves the generation, by one as its write starts and one as
// it ends: a reader that sees the same even generation before and after
// its reads (the secrets store's cache) read no commit's writes halfway,
// and missed none.
func TestGenerationMovesWithEveryCommit(t *testing.T) {
	l := testutil.OpenLog(t, "")
	s := openStore(t, t.TempDir())
	p := &generationNotes{}
	r := projections.NewRunner(l, s, p, projections.RunnerConfig{Stream: eventlog.Workflows.Name})
	p.r = func() *projections.Runner { return r }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	for i := range 3 {
		last, _ := appendNotes(t, l, 1, 1)
		if err := r.WaitFor(testutil.Context(t, 30*time.Second), last); err != nil {
			t.Fatal(err)
		}
		// Committed follows the commit's setCommitted, which WaitFor
		// waits for: it may come a moment after.
		var before, after []uint64
		testutil.Eventually(t, 10*time.Second, time.Millisecond, func() error {
			p.mu.Lock()
			before, after = slices.Clone(p.before), slices.Clone(p.after)
			p.mu.Unlock()
			if len(after) == 0 || len(before) != len(after) {
				return fmt.Errorf("append %d: generations before commits %v, after %v", i, before, after)
			}
			return nil
		})
		for j := range after {
			if before[j]%2 != 0 || after[j] != before[j]+2 {
				t.Fatalf("append %d: commit %d moved the generation from %d to %d, want an even one to the next even", i, j, before[j], after[j])
			}
			if j > 0 && before[j] != after[j-1] {
				t.Fatalf("append %d: the generation moved from %d to %d between commits", i, after[j-1], before[j])
			}
		}
		if g := r.Generation(); g != after[len(after)-1] {
			t.Fatalf("append %d: generation %d after the last commit, %d now", i, after[len(after)-1], g)
		}
	}
}
