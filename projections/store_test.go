package projections_test

import (
	"bytes"
	"testing"

	"github.com/flowvault/flowvault/projections"
)

// The store keeps no write-ahead log. A commit larger than half a memtable
// takes Pebble's other path (queued as a memtable of its own, where the
// log would otherwise have held it until flushed), and a commit after it
// lands in the memtable that only Close's flush makes durable: both must
// be there after reopening.
func TestLargeCommitSurvivesClose(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	open := func() *projections.Store {
		s, err := projections.OpenStore(dir, projections.StoreOptions{MemTableSize: 64 << 10})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	large := bytes.Repeat([]byte("v"), 256<<10)
	s := open()
	if err := s.Update("notes", func(b *projections.Batch) error {
		if err := b.Set([]byte("small"), []byte("s")); err != nil {
			return err
		}
		return b.Set([]byte("large"), large)
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.Update("notes", func(b *projections.Batch) error { return b.Set([]byte("after"), []byte("a")) }); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open()
	defer s.Close()
	for key, want := range map[string][]byte{"small": []byte("s"), "large": large, "after": []byte("a")} {
		got, err := s.Reader("notes").Get([]byte(key))
		if err != nil {
			t.Fatalf("%s after reopening: %v", key, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%s after reopening: %d bytes, want %d", key, len(got), len(want))
		}
	}
}
