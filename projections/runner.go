package projections

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/internal/logkey"
	"github.com/flowvault/flowvault/schemas"
	"github.com/vmihailenco/msgpack/v5"
)

// ErrPoison marks a record a projection can never apply. Apply must return
// it (wrapped) before writing anything for that record.
var ErrPoison = errors.New("poison record")

// Projection turns the records of one stream into read-model writes.
type Projection interface {
	// Name is the projection's key space and checkpoint name. Renaming a
	// projection rebuilds it.
	Name() string
	// Apply writes the effects of rec to b. It may read b, which sees
	// earlier writes of the same uncommitted batch. An error that wraps
	// ErrPoison, schemas.ErrCorrupt or schemas.ErrUnknownType marks rec as
	// poison; any other error stops the runner.
	Apply(b *Batch, rec eventlog.Record) error
}

// Layouter is implemented by projections that say which layout (the
// meaning of the keys and values they write) their read model is in. A
// version that changes a projection's layout raises its number: a read
// model found in an older layout, or in none (written before layouts were
// recorded), is rebuilt from its stream at start, since reads of keys it
// lacks would answer otherwise than a rebuild does; one in a newer layout
// (a downgrade) is refused. A projection that is not a Layouter is in
// layout 1.
type Layouter interface {
	Layout() int
}

func layoutOf(p Projection) int {
	if l, ok := p.(Layouter); ok {
		return l.Layout()
	}
	return 1
}

// ErrNewerLayout is a read model written by a newer version of flowvault.
var ErrNewerLayout = errors.New("read model in a newer layout")

// Resetter is implemented by projections that keep state in memory between
// records: Run calls Reset before it resumes from the stored checkpoint.
type Resetter interface {
	Reset()
}

// Flusher is implemented by projections that gather what a batch's records
// change in memory (counts) and write it once: the runner calls Flush
// before each commit, with every record of the batch applied. A record
// that fails its Apply must leave nothing for Flush.
type Flusher interface {
	Flush(b *Batch) error
}

// Committer is implemented by projections that tell readers about changes:
// the runner calls Committed, from its goroutine, after each commit of the
// projection's writes up to stream sequence seq.
type Committer interface {
	Committed(seq uint64)
}

// Batch is a projection's view of one uncommitted Pebble batch: writes and
// reads confined to the projection's key space.
type Batch struct {
	b      *pebble.Batch
	prefix []byte
}

func (b *Batch) key(k []byte) []byte {
	return append(b.prefix[:len(b.prefix):len(b.prefix)], k...)
}

// Set stores value at key.
func (b *Batch) Set(key, value []byte) error { return b.b.Set(b.key(key), value, nil) }

// Delete removes key.
func (b *Batch) Delete(key []byte) error { return b.b.Delete(b.key(key), nil) }

// Get returns a copy of key's value as of this batch, or ErrNotFound.
func (b *Batch) Get(key []byte) ([]byte, error) { return get(b.b, b.key(key)) }

// Scan calls fn for keys with prefix as of this batch; see Reader.Scan.
func (b *Batch) Scan(prefix []byte, fn func(key, value []byte) bool) error {
	return scan(b.b, b.key(prefix), len(b.prefix), false, fn)
}

// ScanRange calls fn for keys in [lower, upper) as of this batch; see
// Reader.ScanRange.
func (b *Batch) ScanRange(lower, upper []byte, fn func(key, value []byte) bool) error {
	return scanRange(b.b, b.key(lower), b.key(upper), len(b.prefix), false, fn)
}

// DeleteRange removes the keys in [lower, upper) as of this batch, one
// point deletion each (a read model's index entries: few at a time).
func (b *Batch) DeleteRange(lower, upper []byte) error {
	var keys [][]byte
	err := b.ScanRange(lower, upper, func(key, _ []byte) bool {
		keys = append(keys, slices.Clone(key))
		return true
	})
	if err != nil {
		return err
	}
	for _, k := range keys {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// PoisonPolicy says what a runner does with a record it cannot apply.
type PoisonPolicy int

const (
	// Park records the poison record under the projection's parked keys,
	// advances the checkpoint past it and continues.
	Park PoisonPolicy = iota
	// Halt commits everything before the poison record and stops the runner
	// with an error; the record stays unapplied until an operator acts.
	Halt
)

// RunnerConfig configures a Runner.
type RunnerConfig struct {
	Stream string
	Poison PoisonPolicy
	// MaxBatch bounds the records committed in one Pebble batch.
	MaxBatch int
	// StopAt, when set, makes Run return once it has committed this stream
	// sequence, applying nothing after it (a rebuild up to a given point).
	StopAt  uint64
	Logger  *slog.Logger
	Metrics *Metrics
}

// Runner feeds one stream to one projection. Run it in its own goroutine.
type Runner struct {
	log   *eventlog.Log
	store *Store
	proj  Projection
	cfg   RunnerConfig

	mu        sync.Mutex
	committed uint64
	advanced  chan struct{} // closed and replaced on every commit
	movedAt   time.Time     // of the last commit, or the start
	idle      bool          // caught up: waiting for the stream's next record
	busyAt    time.Time     // when the last wait ended
	done      chan struct{} // closed when Run returns
	runErr    error
	// gen is a sequence lock over the runner's writes to its key space
	// (see Generation): odd while one is under way.
	gen atomic.Uint64
}

// NewRunner returns a runner for proj over cfg.Stream.
func NewRunner(log *eventlog.Log, store *Store, proj Projection, cfg RunnerConfig) *Runner {
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 4096
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cfg.Logger = cfg.Logger.With(logkey.Component, "projection", logkey.Projection, proj.Name())
	return &Runner{log: log, store: store, proj: proj, cfg: cfg,
		advanced: make(chan struct{}), done: make(chan struct{})}
}

// Checkpoint returns the last committed stream sequence.
func (r *Runner) Checkpoint() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.committed
}

// Name is the name of the runner's read model.
func (r *Runner) Name() string { return r.proj.Name() }

// Generation counts the runner's writes to its read model's key space,
// odd while one is under way. Reads made between two calls that return the
// same even number saw the key space as one commit left it, and nothing
// changed it in between: a reader can keep what it read, for as long as
// the number stays, without reading the store again to find out whether
// it moved. Checkpoint cannot tell that: it moves after a commit, whose
// writes are read before it does. Writes through Store.Update are not
// counted.
func (r *Runner) Generation() uint64 { return r.gen.Load() }

// writing runs fn, which writes to the key space, with the generation odd.
func (r *Runner) writing(fn func() error) error {
	r.gen.Add(1)
	defer r.gen.Add(1)
	return fn()
}

// Lag returns how many records of its stream the read model has yet to
// apply.
func (r *Runner) Lag(ctx context.Context) (uint64, error) {
	last, err := r.log.StreamLastSeq(ctx, r.cfg.Stream)
	if err != nil {
		return 0, fmt.Errorf("read model %s: %w", r.proj.Name(), err)
	}
	return last - min(r.Checkpoint(), last), nil
}

// WaitFor blocks until the projection has committed stream sequence seq, ctx
// is done, or the runner has stopped. Writers call it after an append so that
// their next read sees their write.
func (r *Runner) WaitFor(ctx context.Context, seq uint64) error {
	for {
		r.mu.Lock()
		committed, advanced := r.committed, r.advanced
		r.mu.Unlock()
		if committed >= seq {
			return nil
		}
		select {
		case <-advanced:
		case <-r.done:
			if r.Checkpoint() >= seq {
				return nil
			}
			if r.runErr == nil {
				// Stopped with its node, not by a failure.
				return fmt.Errorf("projection %s stopped at %d before %d", r.proj.Name(), r.Checkpoint(), seq)
			}
			return fmt.Errorf("projection %s stopped at %d before %d: %w", r.proj.Name(), r.Checkpoint(), seq, r.runErr)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Stalled reports a read model that serves stale reads for good: its
// runner stopped on an error, or has committed nothing for at least d
// while its stream holds records past its checkpoint (a store that cannot
// write, its disk full). A health check asks it.
func (r *Runner) Stalled(ctx context.Context, d time.Duration) error {
	select {
	case <-r.done:
		r.mu.Lock()
		err := r.runErr
		r.mu.Unlock()
		if err != nil {
			return fmt.Errorf("read model %s stopped: %w", r.proj.Name(), err)
		}
		return nil // stopped with the node
	default:
	}
	r.mu.Lock()
	movedAt, idle := r.movedAt, r.idle
	if r.busyAt.After(movedAt) {
		movedAt = r.busyAt // idle until then: nothing to apply
	}
	r.mu.Unlock()
	if idle || movedAt.IsZero() || time.Since(movedAt) < d {
		return nil
	}
	behind, err := r.Lag(ctx)
	if err != nil || behind == 0 {
		return nil // the log's own check tells of a log out of reach
	}
	return fmt.Errorf("read model %s has applied nothing for %s, %d records behind its stream", r.proj.Name(),
		time.Since(movedAt).Round(time.Second), behind)
}

// ErrAheadOfLog is a read model whose checkpoint lies past the end of its
// stream.
var ErrAheadOfLog = errors.New("read model ahead of the log")

// Check reports whether the runner can follow its stream: the stream
// holds every record it acknowledged (eventlog.ErrLogLost) and the read
// model is not ahead of it (ErrAheadOfLog). Run checks the same; a server
// asks before it serves anything.
func (r *Runner) Check(ctx context.Context) error {
	_, _, err := r.bounds(ctx)
	return err
}

// bounds returns the checkpoint Run resumes after and the stream's last
// sequence, or why the read model cannot follow the stream.
func (r *Runner) bounds(ctx context.Context) (from, end uint64, err error) {
	name := r.proj.Name()
	had, rebuild, err := r.checkLayout()
	if err != nil {
		return 0, 0, err
	}
	if from, err = r.store.Checkpoint(name); err != nil {
		return 0, 0, err
	}
	if err := r.log.CheckKept(ctx, r.cfg.Stream); err != nil {
		return 0, 0, fmt.Errorf("projection %s: %w", name, err)
	}
	if end, err = r.log.StreamLastSeq(ctx, r.cfg.Stream); err != nil {
		return 0, 0, fmt.Errorf("projection %s: %w", name, err)
	}
	// A read model never gets ahead of its log, unless the log lost what
	// it had acknowledged: a backup restored under newer read models, an
	// external server's data lost, relaxed fsync and a power cut. Followed
	// from its checkpoint, it would skip the new records that reuse those
	// sequences, and answer reads for them at once: it refuses instead.
	if from > end {
		return 0, 0, fmt.Errorf("projection %s has applied stream %s up to sequence %d, but the stream ends at %d: "+
			"the log lost records the read model holds; rebuild the read models from the log "+
			"(stop, delete the data directory's pebble directory, start): %w", name, r.cfg.Stream, from, end, ErrAheadOfLog)
	}
	// Nor when the stream is not the one it followed: a server that lost
	// its store makes the stream again, and other engines may have
	// written past the checkpoint meanwhile, which the checks above
	// cannot tell from records it never saw.
	made, err := r.log.StreamCreated(ctx, r.cfg.Stream)
	if err != nil {
		return 0, 0, fmt.Errorf("projection %s: %w", name, err)
	}
	followed, known, err := r.store.streamMade(name)
	switch {
	case err != nil:
		return 0, 0, err
	case known && from > 0 && !followed.Equal(made):
		return 0, 0, fmt.Errorf("projection %s has applied stream %s up to sequence %d of the stream made at %s, but the stream was made again at %s: "+
			"the log lost records the read model holds; rebuild the read models from the log "+
			"(stop, delete the data directory's pebble directory, start): %w", name, r.cfg.Stream, from,
			followed.UTC().Format(time.RFC3339Nano), made.UTC().Format(time.RFC3339Nano), ErrAheadOfLog)
	}
	// A read model in an older layout is rebuilt only once the checks
	// above found the log holds what it applied: rebuilt on a log that
	// lost records, it would be wiped, and the loss go unnoticed.
	if rebuild {
		if from > 0 {
			r.cfg.Logger.Info(fmt.Sprintf("read model rebuilds from the log: written in an older layout than this version's %d", layoutOf(r.proj)),
				logkey.Layout, had, logkey.Seq, from)
		}
		if err := r.writing(func() error { return r.store.resetTo(name, layoutOf(r.proj)) }); err != nil {
			return 0, 0, err
		}
		from, known = 0, false
	}
	if !known || from == 0 {
		if err := r.store.setStreamMade(name, made); err != nil {
			return 0, 0, err
		}
	}
	return from, end, nil
}

// checkLayout reports whether the read model is in an older layout (or
// none) than its projection writes, and is to be rebuilt, and refuses
// one in a newer.
func (r *Runner) checkLayout() (had int, rebuild bool, err error) {
	name, want := r.proj.Name(), layoutOf(r.proj)
	have, known, err := r.store.layout(name)
	switch {
	case err != nil:
		return 0, false, err
	case known && have == want:
		return have, false, nil
	case known && have > want:
		return have, false, fmt.Errorf("projection %s: the read model was written in layout %d by a newer flowvault, and this version writes layout %d: "+
			"start the newer version, or rebuild the read models from the log (stop, delete the data directory's pebble directory, start): %w",
			name, have, want, ErrNewerLayout)
	}
	return have, true, nil
}

// Run applies records until ctx is done (returning nil) or a failure stops
// it. It resumes after the stored checkpoint.
func (r *Runner) Run(ctx context.Context) (err error) {
	defer func() {
		r.mu.Lock()
		r.runErr = err
		r.mu.Unlock()
		close(r.done)
	}()
	name := r.proj.Name()
	from, end, err := r.bounds(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped while it started, as in the loop below
		}
		return err
	}
	// How far behind a start finds it: nothing after a clean stop, what
	// Pebble had not flushed after a crash (the store keeps no
	// write-ahead log), everything after the store was deleted.
	r.cfg.Logger.Info("read model resumes", logkey.Stream, r.cfg.Stream, logkey.Seq, from, logkey.Count, end-from)
	r.setCommitted(from)
	r.mu.Lock()
	r.idle = true // until the first record, which may be pending already
	r.mu.Unlock()
	if r.cfg.StopAt > 0 && from >= r.cfg.StopAt {
		return nil
	}
	if rs, ok := r.proj.(Resetter); ok {
		rs.Reset()
	}
	f, err := r.follow(ctx, from)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("projection %s: %w", name, err)
	}
	defer func() { f.Stop() }() // the last one: a follower lost is replaced

	batch := &Batch{prefix: []byte(dataPrefix + name + "/")}
	var last uint64 // highest sequence written to the open batch
	n := 0
	for {
		if batch.b == nil {
			batch.b = r.store.db.NewIndexedBatch()
		}
		rec, pending, err := f.Next(ctx)
		r.mu.Lock()
		if r.idle {
			r.idle, r.busyAt = false, time.Now()
		}
		r.mu.Unlock()
		if err != nil && ctx.Err() == nil && errors.Is(err, eventlog.ErrFollowerLost) {
			r.cfg.Logger.Warn("read model follows its stream again", logkey.Stream, r.cfg.Stream, logkey.Seq, from, logkey.Err, err)
			if err := r.commit(batch, last, n); err != nil {
				return err
			}
			n = 0
			f.Stop()
			again, err := r.follow(ctx, from)
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("projection %s: %w", name, err)
			}
			f = again
			continue
		}
		if err != nil {
			batch.b.Close()
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("projection %s: %w", name, err)
		}
		if rec.Seq <= from {
			continue // redelivered after a consumer reset
		}
		if r.cfg.StopAt > 0 && rec.Seq > r.cfg.StopAt {
			return r.commit(batch, last, n) // StopAt itself is not in the stream
		}
		applyErr := rec.Err
		if applyErr == nil {
			applyErr = r.proj.Apply(batch, rec)
		}
		if applyErr != nil {
			if !isPoison(applyErr) {
				batch.b.Close()
				return fmt.Errorf("projection %s at %d: %w", name, rec.Seq, applyErr)
			}
			r.cfg.Metrics.poison(name)
			r.cfg.Logger.Error("poison record", logkey.Stream, rec.Stream, logkey.Subject, rec.Subject, logkey.Seq, rec.Seq, logkey.Err, applyErr)
			if r.cfg.Poison == Halt {
				if err := r.commit(batch, last, n); err != nil {
					return err
				}
				return fmt.Errorf("projection %s halted at %s #%d: %w", name, rec.Subject, rec.Seq, applyErr)
			}
			if err := r.park(batch, rec, applyErr); err != nil {
				batch.b.Close()
				return err
			}
		}
		last, from = rec.Seq, rec.Seq
		n++
		stop := r.cfg.StopAt > 0 && rec.Seq >= r.cfg.StopAt
		if pending == 0 || n >= r.cfg.MaxBatch || stop {
			if err := r.commit(batch, last, n); err != nil {
				return err
			}
			n = 0
			if pending == 0 {
				r.mu.Lock()
				r.idle = true
				r.mu.Unlock()
			}
		}
		if stop {
			return nil
		}
	}
}

// follow follows the stream after seq, again and again while the
// follower's consumer cannot be made (eventlog.ErrFollowerLost): on a
// cluster it is made where the meta leader puts it, which may be a server
// that died a moment ago, and there is no meta leader while the others
// elect one. It is how a follower that lost its consumer is replaced, and
// how the first is made.
func (r *Runner) follow(ctx context.Context, seq uint64) (*eventlog.Follower, error) {
	for wait := refollowWait; ; wait = min(2*wait, maxRefollowWait) {
		f, err := r.log.Follow(ctx, r.cfg.Stream, seq)
		if !errors.Is(err, eventlog.ErrFollowerLost) {
			return f, err
		}
		r.cfg.Logger.Warn("read model cannot follow its stream yet", logkey.Stream, r.cfg.Stream, logkey.Seq, seq, logkey.Err, err)
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// refollowWait and maxRefollowWait space the attempts of follow, as
// nats.go spaces its own.
const (
	refollowWait    = time.Second
	maxRefollowWait = 10 * time.Second
)

func isPoison(err error) bool {
	return errors.Is(err, ErrPoison) || errors.Is(err, schemas.ErrCorrupt) || errors.Is(err, schemas.ErrUnknownType)
}

// commit writes the checkpoint into the batch and commits both, to the
// memtable only (the store keeps no write-ahead log). The checkpoint and
// the data it covers are one batch, and after a crash Pebble holds what
// it flushed, a prefix of the committed batches: the read model can come
// back behind the log (and catches up by replay), never ahead of it and
// never half-applied. The log is the durable copy; an fsync per commit
// would halve the engine's throughput for nothing. The n records of the
// batch are counted here, by every commit: a halt's, a StopAt's.
func (r *Runner) commit(batch *Batch, seq uint64, n int) error {
	defer func() { batch.b = nil }()
	if f, ok := r.proj.(Flusher); ok {
		if err := f.Flush(batch); err != nil {
			batch.b.Close()
			return fmt.Errorf("projection %s flush at %d: %w", r.proj.Name(), seq, err)
		}
	}
	if batch.b.Empty() && seq <= r.Checkpoint() {
		return batch.b.Close()
	}
	if err := batch.b.Set(checkpointKey(r.proj.Name()), encodeSeq(seq), nil); err != nil {
		batch.b.Close()
		return err
	}
	r.gen.Add(1)
	err := batch.b.Commit(pebble.NoSync)
	r.gen.Add(1)
	if err != nil {
		batch.b.Close()
		return fmt.Errorf("projection %s commit at %d: %w", r.proj.Name(), seq, err)
	}
	batch.b.Close()
	// Counted before WaitFor may return: whoever waited for a record sees
	// it counted.
	r.cfg.Metrics.applied(r.proj.Name(), n)
	r.setCommitted(seq)
	if c, ok := r.proj.(Committer); ok {
		c.Committed(seq)
	}
	return nil
}

func (r *Runner) setCommitted(seq uint64) {
	r.mu.Lock()
	r.committed, r.movedAt = seq, time.Now()
	close(r.advanced)
	r.advanced = make(chan struct{})
	r.mu.Unlock()
}

// ParkedRecord is what the runner keeps of a record it could not apply. It
// holds no payload: a poison record may carry anything.
type ParkedRecord struct {
	Stream  string `msgpack:"stream"`
	Subject string `msgpack:"subject"`
	Seq     uint64 `msgpack:"seq"`
	MsgID   string `msgpack:"msg_id"`
	Error   string `msgpack:"error"`
}

func (r *Runner) park(batch *Batch, rec eventlog.Record, cause error) error {
	v, err := msgpack.Marshal(ParkedRecord{Stream: rec.Stream, Subject: rec.Subject, Seq: rec.Seq, MsgID: rec.MsgID, Error: cause.Error()})
	if err != nil {
		return err
	}
	return batch.b.Set(parkedKey(r.proj.Name(), rec.Seq), v, nil)
}

// Parked lists the records projection name has parked, oldest first.
func (s *Store) Parked(name string) ([]ParkedRecord, error) {
	if err := s.uses.enter(); err != nil {
		return nil, err
	}
	defer s.uses.leave()
	var out []ParkedRecord
	var derr error
	err := scan(s.db, []byte(parkedPrefix+name+"/"), 0, false, func(_, v []byte) bool {
		var p ParkedRecord
		if derr = msgpack.Unmarshal(v, &p); derr != nil {
			return false
		}
		out = append(out, p)
		return true
	})
	if err == nil {
		err = derr
	}
	return out, err
}

func checkpointKey(name string) []byte { return []byte(checkpointPrefix + name) }

func parkedKey(name string, seq uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte(parkedPrefix+name+"/"), seq)
}

func encodeSeq(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }

func decodeSeq(v []byte) (uint64, error) {
	if len(v) != 8 {
		return 0, fmt.Errorf("checkpoint: %d bytes, want 8", len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

// Metrics are the projection runners' Prometheus collectors. A nil *Metrics
// records nothing.
type Metrics struct {
	appliedTotal *prometheus.CounterVec
	poisonTotal  *prometheus.CounterVec
}

// NewMetrics registers the runner metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		appliedTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "flowvault", Subsystem: "projection", Name: "records_applied_total",
			Help: "Records committed to a read model.",
		}, []string{"projection"}),
		poisonTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "flowvault", Subsystem: "projection", Name: "poison_records_total",
			Help: "Records a projection could not apply (parked or halted on).",
		}, []string{"projection"}),
	}
	if reg != nil {
		reg.MustRegister(m.appliedTotal, m.poisonTotal)
	}
	return m
}

func (m *Metrics) applied(name string, n int) {
	if m != nil {
		m.appliedTotal.WithLabelValues(name).Add(float64(n))
	}
}

func (m *Metrics) poison(name string) {
	if m != nil {
		m.poisonTotal.WithLabelValues(name).Inc()
	}
}
