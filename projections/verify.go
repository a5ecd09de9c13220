package projections

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/cockroachdb/pebble/v2"

	"github.com/flowvault/flowvault/eventlog"
)

// Spec is what a rebuild needs to know of a projection: the stream it
// follows, its poison policy, and how to make a fresh instance (one that
// keeps state in memory must not share it with the running one).
type Spec struct {
	Stream string
	Poison PoisonPolicy
	New    func() Projection
}

// Snapshot is a consistent read-only view of the store: each projection's
// checkpoint and the data it covers, as of one moment.
type Snapshot struct {
	snap *pebble.Snapshot
	uses *uses
}

// Snapshot takes a snapshot of the store. Close it when done: it pins
// the data it sees, and the store's Close waits for it.
func (s *Store) Snapshot() (*Snapshot, error) {
	if err := s.uses.enter(); err != nil {
		return nil, err
	}
	return &Snapshot{snap: s.db.NewSnapshot(), uses: s.uses}, nil
}

// Close releases the snapshot.
func (s *Snapshot) Close() error {
	defer s.uses.leave()
	return s.snap.Close()
}

// Checkpoint returns projection name's checkpoint as of the snapshot.
func (s *Snapshot) Checkpoint(name string) (uint64, error) {
	v, err := get(s.snap, checkpointKey(name))
	if errors.Is(err, ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("checkpoint %s: %w", name, err)
	}
	return decodeSeq(v)
}

// Difference is one key whose value the live store and a rebuild from the
// log disagree on. It names the key (Go-quoted, as Pebble holds it) and
// hashes of the values, never the values: they may be sealed secrets.
type Difference struct {
	Key string `json:"key"`
	// Kind is "changed" (both have the key), "extra" (only the live store
	// has it) or "missing" (only the rebuild has it).
	Kind    string `json:"kind"`
	Live    string `json:"live,omitempty"`
	Rebuilt string `json:"rebuilt,omitempty"`
}

// VerifyResult is the comparison of one projection's key space.
type VerifyResult struct {
	Name       string `json:"name"`
	Stream     string `json:"stream,omitempty"`
	Checkpoint uint64 `json:"checkpoint"`
	// Keys counts the projection's live keys (data, checkpoint, parked).
	Keys        int          `json:"keys"`
	Differences int          `json:"differences"`
	Sample      []Difference `json:"sample,omitempty"`
	// Error says why the projection could not be verified; it counts as
	// drift.
	Error string `json:"error,omitempty"`
}

// Drifted reports whether the result shows a difference or an error.
func (r VerifyResult) Drifted() bool { return r.Differences > 0 || r.Error != "" }

// Unowned is the name of the VerifyResult that lists live keys outside
// the key space of every verified projection.
const Unowned = "(unowned)"

// VerifyOptions configures Verify.
type VerifyOptions struct {
	// Dir is where the temporary rebuild store is created (and removed):
	// it holds what the read models hold, sealed values included, so it
	// belongs next to them.
	Dir string
	// Sample bounds the differences listed per projection (default 20).
	Sample int
}

// verifyDirPrefix names Verify's temporary stores.
const verifyDirPrefix = "verify-"

// RemoveVerifyLeftovers removes from dir the temporary stores of
// verifications a crash interrupted: they hold copies of the read models.
// Call it only while no verification can run there (the data directory's
// lock is held and nothing serves yet).
func RemoveVerifyLeftovers(dir string) error {
	leftovers, err := filepath.Glob(filepath.Join(dir, verifyDirPrefix+"*"))
	if err != nil {
		return err
	}
	var errs []error
	for _, d := range leftovers {
		errs = append(errs, os.RemoveAll(d))
	}
	return errors.Join(errs...)
}

// Verify rebuilds every projection in specs from the log into a temporary
// store, each up to exactly the checkpoint a snapshot of live holds, and
// compares the two key spaces key by key: data, checkpoint and parked
// records. Live keys that belong to no projection in specs, and
// checkpoints of projections not in specs, are reported as drift too, so
// the whole store is accounted for. The live store keeps serving.
//
// Nothing is excluded from the comparison: the projections write only
// what they fold from the log (event times, not the clock of application;
// sequences of the records they apply), their in-memory caches (the
// executions projection's recent states) never reach Pebble, and values
// are encoded deterministically, so a rebuild is byte-identical.
func Verify(ctx context.Context, log *eventlog.Log, live *Store, specs []Spec, o VerifyOptions) ([]VerifyResult, error) {
	if o.Sample <= 0 {
		o.Sample = 20
	}
	snap, err := live.Snapshot()
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	defer snap.Close()
	dir, err := os.MkdirTemp(o.Dir, verifyDirPrefix)
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	defer os.RemoveAll(dir)
	rebuilt, err := OpenStore(dir, StoreOptions{})
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	defer rebuilt.Close()

	var out []VerifyResult
	known := map[string]bool{}
	for _, spec := range specs {
		res, err := verifyOne(ctx, log, snap, rebuilt, spec, o.Sample)
		if err != nil {
			return nil, err
		}
		known[res.Name] = true
		out = append(out, res)
	}
	unowned, err := unownedKeys(snap, known, o.Sample)
	if err != nil {
		return nil, err
	}
	if unowned.Keys > 0 {
		out = append(out, unowned)
	}
	return out, nil
}

// verifyOne rebuilds one projection up to its live checkpoint and compares.
// Failures of this projection's rebuild are reported in the result; only a
// canceled context or a store failure is an error.
func verifyOne(ctx context.Context, log *eventlog.Log, snap *Snapshot, rebuilt *Store, spec Spec, sample int) (VerifyResult, error) {
	proj := spec.New()
	res := VerifyResult{Name: proj.Name(), Stream: spec.Stream}
	cp, err := snap.Checkpoint(res.Name)
	if err != nil {
		return res, err
	}
	res.Checkpoint = cp
	if err := rebuildTo(ctx, log, rebuilt, proj, spec, cp); err != nil {
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		res.Error = err.Error()
		return res, nil
	}
	for _, r := range keyRanges(res.Name) {
		if err := diffRange(snap.snap, rebuilt.db, r[0], r[1], &res, sample); err != nil {
			return res, fmt.Errorf("verify %s: %w", res.Name, err)
		}
	}
	return res, nil
}

// rebuildTo applies spec's stream to dst up to stream sequence upTo.
func rebuildTo(ctx context.Context, log *eventlog.Log, dst *Store, proj Projection, spec Spec, upTo uint64) error {
	r := NewRunner(log, dst, proj, RunnerConfig{Stream: spec.Stream, Poison: spec.Poison, StopAt: upTo})
	if upTo == 0 {
		// Nothing applied yet: the live store still holds what a start
		// records of a read model (its layout, its stream's creation), and
		// so must the rebuild, or a node whose stream is empty drifts.
		return r.Check(ctx)
	}
	last, err := log.StreamLastSeq(ctx, spec.Stream)
	if err != nil {
		return err
	}
	if last < upTo {
		return fmt.Errorf("the read model is ahead of the log: checkpoint %d, %s ends at %d", upTo, spec.Stream, last)
	}
	if err := r.Run(ctx); err != nil {
		return fmt.Errorf("rebuild: %w", err)
	}
	if got := r.Checkpoint(); got != upTo {
		return fmt.Errorf("rebuild stopped at %d, before %d", got, upTo)
	}
	return nil
}

// keyRanges are the [lower, upper) ranges of projection name's keys: its
// data, its checkpoint, its parked records, its stream's creation and its
// layout.
func keyRanges(name string) [][2][]byte {
	data, parked := []byte(dataPrefix+name+"/"), []byte(parkedPrefix+name+"/")
	out := [][2][]byte{{data, prefixEnd(data)}, {parked, prefixEnd(parked)}}
	for _, key := range [][]byte{checkpointKey(name), []byte(streamPrefix + name), []byte(layoutPrefix + name)} {
		out = append(out, [2][]byte{key, append(bytes.Clone(key), 0)})
	}
	return out
}

// diffRange merges the live and rebuilt keys of [lo, hi) in key order.
func diffRange(live, rebuilt pebble.Reader, lo, hi []byte, res *VerifyResult, sample int) error {
	a, err := live.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return err
	}
	defer a.Close()
	b, err := rebuilt.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return err
	}
	defer b.Close()
	okA, okB := a.First(), b.First()
	for okA || okB {
		cmp := 0
		switch {
		case !okB:
			cmp = -1
		case !okA:
			cmp = 1
		default:
			cmp = bytes.Compare(a.Key(), b.Key())
		}
		switch {
		case cmp < 0:
			res.Keys++
			v, err := a.ValueAndErr()
			if err != nil {
				return err
			}
			res.add(Difference{Key: quoteKey(a.Key()), Kind: "extra", Live: valueHash(v)}, sample)
			okA = a.Next()
		case cmp > 0:
			v, err := b.ValueAndErr()
			if err != nil {
				return err
			}
			res.add(Difference{Key: quoteKey(b.Key()), Kind: "missing", Rebuilt: valueHash(v)}, sample)
			okB = b.Next()
		default:
			res.Keys++
			va, err := a.ValueAndErr()
			if err != nil {
				return err
			}
			vb, err := b.ValueAndErr()
			if err != nil {
				return err
			}
			if !bytes.Equal(va, vb) {
				res.add(Difference{Key: quoteKey(a.Key()), Kind: "changed", Live: valueHash(va), Rebuilt: valueHash(vb)}, sample)
			}
			okA, okB = a.Next(), b.Next()
		}
	}
	return errors.Join(a.Error(), b.Error())
}

func (r *VerifyResult) add(d Difference, sample int) {
	r.Differences++
	if len(r.Sample) < sample {
		r.Sample = append(r.Sample, d)
	}
}

// unownedKeys lists the live keys that no projection in known owns.
func unownedKeys(snap *Snapshot, known map[string]bool, sample int) (VerifyResult, error) {
	res := VerifyResult{Name: Unowned}
	it, err := snap.snap.NewIter(nil)
	if err != nil {
		return res, err
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		if known[owner(it.Key())] {
			continue
		}
		v, err := it.ValueAndErr()
		if err != nil {
			return res, err
		}
		res.Keys++
		res.add(Difference{Key: quoteKey(it.Key()), Kind: "extra", Live: valueHash(v)}, sample)
	}
	return res, it.Error()
}

// owner is the projection whose key space holds key ("" for none).
func owner(key []byte) string {
	k := string(key)
	for _, p := range []string{dataPrefix, parkedPrefix} {
		if rest, ok := strings.CutPrefix(k, p); ok {
			name, _, found := strings.Cut(rest, "/")
			if !found {
				return ""
			}
			return name
		}
	}
	for _, p := range []string{checkpointPrefix, streamPrefix, layoutPrefix} {
		if name, ok := strings.CutPrefix(k, p); ok {
			return name
		}
	}
	return ""
}

// maxKeyShown bounds how much of a key a report prints.
const maxKeyShown = 160

func quoteKey(k []byte) string {
	if len(k) <= maxKeyShown {
		return strconv.Quote(string(k))
	}
	return strconv.Quote(string(k[:maxKeyShown])) + "…(" + strconv.Itoa(len(k)) + " bytes)"
}

// valueHash identifies a value in a report without showing it.
func valueHash(v []byte) string {
	sum := sha256.Sum256(v)
	return "sha256:" + hex.EncodeToString(sum[:8])
}
