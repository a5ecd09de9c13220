package projections

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/flowvault/flowvault/internal/logkey"
	"github.com/flowvault/flowvault/internal/ratelimit"
)

// ErrNotFound is returned by reads of absent keys.
var ErrNotFound = errors.New("not found")

// Key space layout. Every projection owns dataPrefix+name+"/"; the runner
// owns the checkpoint and parked keys. Nothing else writes to the store.
const (
	dataPrefix       = "p/"
	checkpointPrefix = "c/"
	streamPrefix     = "s/" // when the stream a read model follows was made
	parkedPrefix     = "x/"
	layoutPrefix     = "l/" // the layout a read model was written in (Layouter)
)

// Store is the Pebble database that holds every read model.
type Store struct {
	db   *pebble.DB
	fs   *backoffFS
	uses *uses
}

// StoreOptions configures OpenStore.
type StoreOptions struct {
	Logger *slog.Logger
	// FS replaces the operating system's file system (crash tests).
	FS vfs.FS
	// MemTableSize replaces the memtable's 64 MiB: what a crash loses at
	// most, and tests make small to see flushes.
	MemTableSize uint64
}

// OpenStore opens (creating if needed) the read-model database in dir.
func OpenStore(dir string, o StoreOptions) (*Store, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	fs := newBackoffFS(cmp.Or[vfs.FS](o.FS, vfs.Default))
	opts := &pebble.Options{
		Logger: pebbleLogger{o.Logger.With(logkey.Component, "pebble"), ratelimit.NewLines()},
		FS:     fs,
		// Read models rewrite a workflow's document on each of its records,
		// seconds apart: in a large memtable the superseded versions die
		// before they are flushed, instead of being compacted level after
		// level (7% of the engine benchmark's CPU with the 4 MiB default, 1% with
		// this).
		MemTableSize: cmp.Or(o.MemTableSize, 64<<20),
		// Everything here is derived from the log, which is the durable
		// copy: a write-ahead log would make durable what replay restores
		// anyway. Without it a crash loses the memtables (a consistent
		// prefix of the commits stays: a flush holds whole batches, in
		// order), the read models come back behind the log and catch up
		// by replay, at most two memtables' worth. Writing the WAL was 9%
		// of the engine benchmark's CPU (relaxed, 3 alternating pairs:
		// 1.16 against 1.05 ms a workflow).
		DisableWAL: true,
		// The log's appends wait for fsync on the same disk. On ext4 an
		// fsync also waits for other files' data the journal has come to
		// depend on, so a memtable flush written out in a few large bursts
		// held appends for 100-300 ms every 15 s at 300 workflows/s.
		// Asking the kernel to write it back every 32 KiB keeps little
		// pending. In 4 paired runs of fvbench's sustained load, 3 had a
		// lower p99 (46-83 ms against 91-134 ms) and 4 to 13 times fewer
		// workflows over 100 ms; the fourth was even.
		BytesPerSync: 32 << 10,
		// The default 8 MiB block cache holds a few seconds of documents:
		// a workflow's compaction, the API's reads of recent executions and
		// the snapshots the executor starts from on a cache miss would read
		// and decompress blocks from the files again.
		Cache: pebble.NewCache(128 << 20),
	}
	defer opts.Cache.Unref() // the DB holds its own reference
	// Bloom filters on every level: the hot path looks up keys that are
	// often absent (a task type with no definition, a workflow's first
	// record), and without a filter a miss searches every level's index.
	for i := range opts.Levels {
		opts.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
	}
	db, err := pebble.Open(dir, opts)
	if err != nil {
		return nil, fmt.Errorf("open pebble %s: %w", dir, err)
	}
	return &Store{db: db, fs: fs, uses: newUses()}, nil
}

// Close flushes the memtables, so that a clean restart replays nothing,
// and closes the database. A flush that fails (the disk full) is not
// waited for: Pebble would try it again until the process ends, and a
// stop ran out its whole budget at 100% CPU. The memtables are then lost,
// as in a crash, and replay makes them again at the next start. Reads
// under way are waited for, and later ones refused (ErrClosed): a stop
// past its budget closes the store while HTTP handlers still run.
func (s *Store) Close() error {
	<-s.uses.close()
	failed := s.fs.failures()
	flushed, err := s.db.AsyncFlush()
	if err != nil {
		s.db.Close()
		return fmt.Errorf("flush pebble: %w", err)
	}
	select {
	case <-flushed:
	case <-failed:
		return errors.Join(errors.New("flush pebble: a write failed (see the log): the read models replay what they had not flushed at the next start"), s.Abandon())
	}
	return s.Abandon()
}

// Abandon closes the store without flushing it: its directory is gone,
// and a flush into it would be tried again until the process ends. The
// memtables are lost, as in a crash; replay makes them again. Reads are
// waited for and refused as Close does.
func (s *Store) Abandon() error {
	<-s.uses.close()
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close pebble: %w", err)
	}
	return nil
}

// Checkpoint returns the last stream sequence projection name has committed.
func (s *Store) Checkpoint(name string) (uint64, error) {
	if err := s.uses.enter(); err != nil {
		return 0, err
	}
	defer s.uses.leave()
	return checkpointIn(s.db, name)
}

// ReaderAt returns a reader over projection name's data as one commit
// left it, with that commit's checkpoint: what it reads holds every record
// up to the checkpoint and none after it. Close releases it; until then
// the store's Close waits for it.
func (s *Store) ReaderAt(name string) (r Reader, checkpoint uint64, close func() error, err error) {
	if err := s.uses.enter(); err != nil {
		return Reader{}, 0, nil, err
	}
	snap := s.db.NewSnapshot()
	release := func() error {
		defer s.uses.leave()
		return snap.Close()
	}
	if checkpoint, err = checkpointIn(snap, name); err != nil {
		_ = release()
		return Reader{}, 0, nil, err
	}
	return Reader{r: snap, prefix: []byte(dataPrefix + name + "/")}, checkpoint, release, nil
}

func checkpointIn(r pebble.Reader, name string) (uint64, error) {
	v, closer, err := r.Get(checkpointKey(name))
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("checkpoint %s: %w", name, err)
	}
	defer closer.Close()
	return decodeSeq(v)
}

// streamMade returns when the stream projection name follows was made, as
// recorded by setStreamMade, and whether it was.
func (s *Store) streamMade(name string) (time.Time, bool, error) {
	v, closer, err := s.db.Get([]byte(streamPrefix + name))
	if errors.Is(err, pebble.ErrNotFound) {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, fmt.Errorf("stream of %s: %w", name, err)
	}
	defer closer.Close()
	ns, err := decodeSeq(v)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("stream of %s: %w", name, err)
	}
	return time.Unix(0, int64(ns)), true, nil
}

func (s *Store) setStreamMade(name string, made time.Time) error {
	if err := s.db.Set([]byte(streamPrefix+name), encodeSeq(uint64(made.UnixNano())), pebble.NoSync); err != nil {
		return fmt.Errorf("stream of %s: %w", name, err)
	}
	return nil
}

// layout returns the layout projection name's read model was written in,
// and whether one was recorded: a read model written before layouts were
// recorded has none.
func (s *Store) layout(name string) (int, bool, error) {
	v, closer, err := s.db.Get([]byte(layoutPrefix + name))
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("layout of %s: %w", name, err)
	}
	defer closer.Close()
	l, err := decodeSeq(v)
	if err != nil {
		return 0, false, fmt.Errorf("layout of %s: %w", name, err)
	}
	return int(l), true, nil
}

// resetTo deletes everything of projection name's read model (its data,
// checkpoint, parked records and stream) and records layout, in one
// batch: its runner replays the stream from the start. Lost in a crash
// before the store flushed, it is made again at the next start.
func (s *Store) resetTo(name string, layout int) error {
	b := s.db.NewBatch()
	defer b.Close()
	for _, r := range keyRanges(name) {
		if err := b.DeleteRange(r[0], r[1], nil); err != nil {
			return fmt.Errorf("reset %s: %w", name, err)
		}
	}
	if err := b.Set([]byte(layoutPrefix+name), encodeSeq(uint64(layout)), nil); err != nil {
		return fmt.Errorf("reset %s: %w", name, err)
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("reset %s: %w", name, err)
	}
	return nil
}

// Update runs fn on a batch of projection name's key space and commits
// it: migrations and repairs of a read model. A projection may keep some
// of its data in memory; run it while that projection's runner is stopped,
// or on keys the projection reads from the store each time. Like every
// commit to the store it is durable once flushed: a crash before that loses
// it with the projections' own commits, which replay then makes again.
func (s *Store) Update(name string, fn func(*Batch) error) error {
	if err := s.uses.enter(); err != nil {
		return fmt.Errorf("update %s: %w", name, err)
	}
	defer s.uses.leave()
	b := &Batch{b: s.db.NewIndexedBatch(), prefix: []byte(dataPrefix + name + "/")}
	defer b.b.Close()
	if err := fn(b); err != nil {
		return fmt.Errorf("update %s: %w", name, err)
	}
	if err := b.b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("update %s: %w", name, err)
	}
	return nil
}

// Reader reads one projection's key space.
type Reader struct {
	r      pebble.Reader
	prefix []byte
	// uses counts each read of the live store; nil for a snapshot, which
	// holds its use while it lives.
	uses *uses
}

// Reader returns a reader over projection name's committed data.
func (s *Store) Reader(name string) Reader {
	return Reader{r: s.db, prefix: []byte(dataPrefix + name + "/"), uses: s.uses}
}

// Get returns a copy of the value stored at key, or ErrNotFound.
func (r Reader) Get(key []byte) ([]byte, error) {
	if err := r.uses.enter(); err != nil {
		return nil, err
	}
	defer r.uses.leave()
	return get(r.r, append(r.prefix[:len(r.prefix):len(r.prefix)], key...))
}

func get(r pebble.Reader, key []byte) ([]byte, error) {
	v, closer, err := r.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	defer closer.Close()
	return bytes.Clone(v), nil
}

// Scan calls fn for every key with the given prefix, in key order, until fn
// returns false. Keys and values are only valid during the call.
func (r Reader) Scan(prefix []byte, fn func(key, value []byte) bool) error {
	if err := r.uses.enter(); err != nil {
		return err
	}
	defer r.uses.leave()
	return scan(r.r, append(r.prefix[:len(r.prefix):len(r.prefix)], prefix...), len(r.prefix), false, fn)
}

// ScanReverse is Scan in descending key order.
func (r Reader) ScanReverse(prefix []byte, fn func(key, value []byte) bool) error {
	if err := r.uses.enter(); err != nil {
		return err
	}
	defer r.uses.leave()
	return scan(r.r, append(r.prefix[:len(r.prefix):len(r.prefix)], prefix...), len(r.prefix), true, fn)
}

// ScanRange calls fn for every key in [lower, upper), in ascending key
// order or, with reverse, descending, until fn returns false. A nil upper
// means every key after lower that the reader can see.
func (r Reader) ScanRange(lower, upper []byte, reverse bool, fn func(key, value []byte) bool) error {
	if err := r.uses.enter(); err != nil {
		return err
	}
	defer r.uses.leave()
	lo := append(r.prefix[:len(r.prefix):len(r.prefix)], lower...)
	hi := prefixEnd(r.prefix)
	if upper != nil {
		hi = append(r.prefix[:len(r.prefix):len(r.prefix)], upper...)
	}
	return scanRange(r.r, lo, hi, len(r.prefix), reverse, fn)
}

// scan iterates the keys with prefix, stripping the first strip bytes of
// each key before calling fn.
func scan(r pebble.Reader, prefix []byte, strip int, reverse bool, fn func(key, value []byte) bool) error {
	return scanRange(r, prefix, prefixEnd(prefix), strip, reverse, fn)
}

func scanRange(r pebble.Reader, lower, upper []byte, strip int, reverse bool, fn func(key, value []byte) bool) error {
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return err
	}
	defer it.Close()
	first, next := it.First, it.Next
	if reverse {
		first, next = it.Last, it.Prev
	}
	for ok := first(); ok; ok = next() {
		v, err := it.ValueAndErr()
		if err != nil {
			return err
		}
		if !fn(it.Key()[strip:], v) {
			break
		}
	}
	return it.Error()
}

// prefixEnd returns the smallest key greater than every key with prefix p.
func prefixEnd(p []byte) []byte {
	end := bytes.Clone(p)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil // p is all 0xff: no upper bound
}

// Dump writes every key and value of the store, in order, to w. Two stores
// with the same dump hold the same read models; rebuild checks compare dumps.
func (s *Store) Dump(w io.Writer) error {
	if err := s.uses.enter(); err != nil {
		return err
	}
	defer s.uses.leave()
	it, err := s.db.NewIter(nil)
	if err != nil {
		return err
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintf(w, "%q=%q\n", it.Key(), v); err != nil {
			return err
		}
	}
	return it.Error()
}

// pebbleLogger adapts Pebble's printf logger to slog. Its error lines
// are bounded: Pebble retries a failing flush or compaction at once, and
// logged each failure, hundreds a second on a full disk or a data
// directory removed under it.
type pebbleLogger struct {
	l      *slog.Logger
	errors *ratelimit.Lines
}

func (p pebbleLogger) Infof(format string, args ...any) { p.l.Debug(fmt.Sprintf(format, args...)) }
func (p pebbleLogger) Errorf(format string, args ...any) {
	p.errors.Error(p.l, fmt.Sprintf(format, args...))
}
func (p pebbleLogger) Fatalf(format string, args ...any) {
	// Pebble calls Fatalf on invariant violations and expects no return.
	p.l.Error(fmt.Sprintf(format, args...))
	panic(fmt.Sprintf(format, args...))
}
