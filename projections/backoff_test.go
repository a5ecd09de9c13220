package projections

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
)

// fullDisk is a file system whose table files take no more writes while
// it is on, as on a disk that filled up.
func fullDisk() (vfs.FS, *errorfs.Toggle) {
	on := &errorfs.Toggle{Injector: errorfs.InjectorFunc(func(op errorfs.Op) error {
		if op.Kind == errorfs.OpFileWrite && strings.HasSuffix(op.Path, ".sst") {
			return errorfs.ErrInjected
		}
		return nil
	})}
	return errorfs.Wrap(vfs.NewMem(), on), on
}

// fill writes n keys of 1 KiB through the store.
func fill(t *testing.T, s *Store, n int) {
	t.Helper()
	if err := s.Update("p", func(b *Batch) error {
		for i := range n {
			if err := b.Set(fmt.Appendf(nil, "k%06d", i), make([]byte, 1<<10)); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// A stop on a full disk does not wait for a flush that cannot succeed:
// Pebble tries it again until the process ends, and Close waited with it,
// so that a stop used up its whole budget (15 s, one core at 100%) and
// ended with "the budget ran out while stopping the read models' store".
// Close says why it did not flush; what it held is replayed at the next
// start.
func TestCloseOnAFullDisk(t *testing.T) {
	fs, on := fullDisk()
	s, err := OpenStore("pebble", StoreOptions{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	fill(t, s, 100)
	on.On()
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	select {
	case err := <-closed:
		if err == nil || !strings.Contains(err.Error(), "flush pebble") {
			t.Fatalf("Close on a full disk: %v; want the flush's failure", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Close on a full disk never returned: it waits for a flush Pebble tries again without end")
	}
}

// A flush that fails is tried again after a wait that grows, not at once
// and without end.
func TestFailedFlushBacksOff(t *testing.T) {
	var mu sync.Mutex
	var waits []time.Duration
	backoffSleep = func(d time.Duration) {
		mu.Lock()
		waits = append(waits, d)
		mu.Unlock()
	}
	t.Cleanup(func() { backoffSleep = time.Sleep })
	fs, on := fullDisk()
	s, err := OpenStore("pebble", StoreOptions{FS: fs, MemTableSize: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	on.On()
	// Past the memtable: a flush is due, and fails. Writes then stall
	// once the memtables are full, as they would on a full disk.
	written := make(chan struct{})
	go func() {
		defer close(written)
		for range 20 {
			s.Update("p", func(b *Batch) error { return b.Set([]byte("k"), make([]byte, 10<<10)) })
		}
	}()
	got := func() []time.Duration {
		mu.Lock()
		defer mu.Unlock()
		return append([]time.Duration(nil), waits...)
	}
	deadline := time.Now().Add(time.Minute)
	for len(got()) < 10 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	w := got()
	if len(w) < 10 {
		t.Fatalf("the failing flush waited %d times before its next attempt (%v); want a wait before each", len(w), w)
	}
	if w[0] != minWriteBackoff || w[9] != maxWriteBackoff || w[2] <= w[1] {
		t.Fatalf("waits before the attempts of a failing flush: %v; want %v doubling up to %v", w, minWriteBackoff, maxWriteBackoff)
	}
	on.Off() // the flush succeeds, and the stalled writes go on
	<-written
	if err := s.Abandon(); err != nil {
		t.Fatal(err)
	}
}

// A preallocation refused (a file system without fallocate) is not a
// failed write: Pebble goes on without it, and so do the next files.
func TestRefusedPreallocationIsNoFailure(t *testing.T) {
	waited := false
	backoffSleep = func(time.Duration) { waited = true }
	t.Cleanup(func() { backoffSleep = time.Sleep })
	refuse := errorfs.InjectorFunc(func(op errorfs.Op) error {
		if op.Kind == errorfs.OpFilePreallocate {
			return errorfs.ErrInjected
		}
		return nil
	})
	fs := newBackoffFS(errorfs.Wrap(vfs.NewMem(), refuse))
	for i := range 2 {
		f, err := fs.Create(fmt.Sprintf("%06d.sst", i), vfs.WriteCategoryUnspecified)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Preallocate(0, 4096); err == nil {
			t.Fatal("the injected preallocation failure did not come")
		}
		if _, err := f.Write([]byte("table")); err != nil {
			t.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if waited {
		t.Fatal("a file after a refused preallocation waited as after a failed write")
	}
}
