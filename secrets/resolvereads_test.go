package secrets

import (
	"errors"
	"testing"
	"time"

	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/internal/testutil"
)

// A resolution at hand-off (Revision, the access check, ResolveAt) of a
// secret resolved before reads nothing from the read model while nothing
// was written to it: each read is a lookup in a Pebble memtable the
// executions read model keeps large, three of them a secret. A write to
// the read model (another secret's) makes the next resolution read it
// again, and one to the secret itself between the revision and the read
// is still refused as stale.
func TestResolutionReadsNothingWhileTheReadModelStays(t *testing.T) {
	p := newProc(t, nil, nil, false)
	ctx := testutil.Context(t, 30*time.Second)
	for _, name := range []string{"db", "other"} {
		if _, err := p.s.Put(ctx, name, []byte("value-of-"+name), "app:user"); err != nil {
			t.Fatal(err)
		}
	}
	counted := &countingReader{kvReader: p.s.w.reader}
	p.s.w.reader = counted
	reads := func() int {
		counted.mu.Lock()
		defer counted.mu.Unlock()
		return len(counted.gets) + len(counted.scans)
	}
	resolve := func() (string, int, error) {
		before := reads()
		rev, err := p.s.Revision(ctx, "db")
		if err != nil || !rev.Exists {
			t.Fatalf("revision %+v, %v", rev, err)
		}
		v, _, err := p.s.ResolveAt(ctx, "db", rev)
		return string(v), reads() - before, err
	}
	for i, want := range []int{6, 0, 0} { // the first fills the cache
		v, reads, err := resolve()
		if err != nil || v != "value-of-db" {
			t.Fatalf("resolution %d: %q %v", i, v, err)
		}
		if reads != want {
			t.Errorf("resolution %d read the read model %d times, want %d", i, reads, want)
		}
	}
	if _, err := p.s.Put(ctx, "other", []byte("value-of-other-2"), "app:user"); err != nil {
		t.Fatal(err)
	}
	if v, reads, err := resolve(); err != nil || v != "value-of-db" || reads == 0 {
		t.Fatalf("after a write to the read model: %q, %d reads, %v; want the value read again", v, reads, err)
	}
	rev, err := p.s.Revision(ctx, "db")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.s.Put(ctx, "db", []byte("value-of-db-2"), "app:admin"); err != nil {
		t.Fatal(err)
	}
	if v, _, err := p.s.ResolveAt(ctx, "db", rev); !errors.Is(err, fault.ErrStale) || v != nil {
		t.Fatalf("written after the revision: %q %v, want nothing and fault.ErrStale", v, err)
	}
}
