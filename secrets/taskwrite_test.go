package secrets

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/projections"
)

// countingReader counts the read model reads a Store makes.
type countingReader struct {
	kvReader
	mu    sync.Mutex
	gets  []string
	scans []string
}

func (c *countingReader) Get(key []byte) ([]byte, error) {
	c.mu.Lock()
	c.gets = append(c.gets, string(key))
	c.mu.Unlock()
	return c.kvReader.Get(key)
}

func (c *countingReader) Scan(prefix []byte, fn func(key, value []byte) bool) error {
	c.mu.Lock()
	c.scans = append(c.scans, string(prefix))
	c.mu.Unlock()
	return c.kvReader.Scan(prefix, fn)
}

// WrittenByTask finds the version a task wrote among many, by other tasks
// and through the API, in a lookup or two: no scan, no version read
// (a secret rotated every minute has half a million versions a year, and
// every UPDATE_SECRET of it read them all). A process whose read model
// lags reads the log. A version deleted since still counts as written.
func TestWrittenByTaskReadsOneEntry(t *testing.T) {
	p := newProc(t, nil, nil, false)
	ctx := testutil.Context(t, 120*time.Second)
	const versions = 60
	for i := range versions {
		var opts []WriteOption
		if i%3 != 0 { // every third through the API
			opts = append(opts, ByTask("wf-1", fmt.Sprintf("task-%d", i)))
		}
		if _, err := p.s.Put(ctx, "rotated", []byte(fmt.Sprintf("value-%d", i)), "admin", opts...); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := p.s.Put(ctx, "other", []byte("x"), "admin", ByTask("wf-1", "task-99")); err != nil {
		t.Fatal(err)
	}
	lagging := newProc(t, p.log, p.keys.mk, true)
	type lookup struct {
		wf, task    string
		wantVersion int
		wantFound   bool
	}
	lookups := []lookup{
		{"wf-1", "task-1", 2, true},
		{"wf-1", "task-41", 42, true},
		{"wf-1", "task-59", 60, true},
		{"wf-1", "task-3", 0, false},  // an API write's turn
		{"wf-2", "task-41", 0, false}, // another workflow's task of that id
		{"wf-1", "task-99", 0, false}, // wrote another secret
	}
	check := func(t *testing.T, s *Store, lookups []lookup) {
		t.Helper()
		for _, l := range lookups {
			v, found, err := s.WrittenByTask(ctx, "rotated", l.wf, l.task)
			if err != nil || found != l.wantFound || v != l.wantVersion {
				t.Errorf("WrittenByTask(%s, %s) = %d, %v, %v; want %d, %v", l.wf, l.task, v, found, err, l.wantVersion, l.wantFound)
			}
		}
	}
	reads := &countingReader{kvReader: p.s.w.reader}
	p.s.w.reader = reads
	check(t, p.s, lookups)
	if len(reads.scans) != 0 || len(reads.gets) > 2*len(lookups) {
		t.Errorf("%d lookups scanned %q and read %d keys, want no scan and at most two keys each", len(lookups), reads.scans, len(reads.gets))
	}
	for _, k := range reads.gets {
		if strings.HasPrefix(k, versionKeyPrefix) {
			t.Errorf("a lookup read version %q", k)
		}
	}
	check(t, lagging.s, lookups)

	if err := p.s.Delete(ctx, "rotated", "admin"); err != nil {
		t.Fatal(err)
	}
	deleted := []lookup{{"wf-1", "task-41", 42, true}, {"wf-1", "task-3", 0, false}}
	check(t, p.s, deleted)
	check(t, lagging.s, deleted)
}

// layoutOne is the secrets projection as flowvault wrote it before the
// task index: layout 1.
type layoutOne struct{ Projection }

func (layoutOne) Layout() int { return 1 }

// A read model of the layout before the task index (here: written in
// layout 1, its t/ keys removed) finds no version by task; at the next
// start it is rebuilt from the log, indexing the versions written before
// the upgrade, and is what a rebuild from nothing makes.
func TestTaskIndexRebuiltAtUpgrade(t *testing.T) {
	p := newProc(t, nil, nil, true)
	ctx := testutil.Context(t, 60*time.Second)
	if _, err := p.s.Put(ctx, "rotated", []byte("first"), "admin", ByTask("wf-1", "task-1")); err != nil {
		t.Fatal(err)
	}
	if _, err := p.s.Put(ctx, "rotated", []byte("second"), "admin"); err != nil {
		t.Fatal(err)
	}
	last, err := p.log.StreamLastSeq(ctx, eventlog.Secrets.Name)
	if err != nil {
		t.Fatal(err)
	}
	cfg := projections.RunnerConfig{Stream: eventlog.Secrets.Name, Poison: projections.Park, Logger: testutil.Logger(t)}
	testutil.CatchUpOnce(t, p.log, p.pebble, layoutOne{}, cfg, last)
	err = p.pebble.Update(ProjectionName, func(b *projections.Batch) error {
		var keys [][]byte
		if err := b.Scan([]byte(taskKeyPrefix), func(k, _ []byte) bool {
			keys = append(keys, bytes.Clone(k))
			return true
		}); err != nil {
			return err
		}
		if len(keys) == 0 {
			return fmt.Errorf("no t/ key to remove")
		}
		for _, k := range keys {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, found, err := p.s.WrittenByTask(ctx, "rotated", "wf-1", "task-1"); found || err != nil {
		t.Fatalf("a layout-1 read model: WrittenByTask = %v, %v; want not found", found, err)
	}

	testutil.CatchUpOnce(t, p.log, p.pebble, Projection{}, cfg, last)
	if v, found, err := p.s.WrittenByTask(ctx, "rotated", "wf-1", "task-1"); v != 1 || !found || err != nil {
		t.Fatalf("upgraded: WrittenByTask = %d, %v, %v; want version 1", v, found, err)
	}
	fresh := testutil.OpenStore(t)
	testutil.CatchUpOnce(t, p.log, fresh, Projection{}, cfg, last)
	var upgraded, rebuilt bytes.Buffer
	if err := p.pebble.Dump(&upgraded); err != nil {
		t.Fatal(err)
	}
	if err := fresh.Dump(&rebuilt); err != nil {
		t.Fatal(err)
	}
	if upgraded.String() != rebuilt.String() {
		t.Fatalf("upgraded read model differs from a rebuild\nupgraded:\n%s\nrebuilt:\n%s", upgraded.String(), rebuilt.String())
	}
}
