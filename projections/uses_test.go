package projections_test

import (
	"errors"
	"testing"
	"time"

	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/projections"
)

// Closing the store waits for the reads under way (a snapshot's reader
// here) and refuses those after it began, each way a reader reaches the
// store: Pebble panics on a closed database.
func TestCloseWaitsForReadsAndRefusesLaterOnes(t *testing.T) {
	t.Parallel()
	s, err := projections.OpenStore(t.TempDir(), projections.StoreOptions{Logger: testutil.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Update("p", func(b *projections.Batch) error { return b.Set([]byte("k"), []byte("v")) }); err != nil {
		t.Fatal(err)
	}
	held, _, release, err := s.ReaderAt("p")
	if err != nil {
		t.Fatal(err)
	}
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	live := s.Reader("p")
	testutil.Eventually(t, 10*time.Second, time.Millisecond, func() error {
		if _, err := live.Get([]byte("k")); !errors.Is(err, projections.ErrClosed) {
			return errors.New("reads still taken")
		}
		return nil
	})
	reads := map[string]error{
		"scan":       live.Scan(nil, func(_, _ []byte) bool { return true }),
		"reverse":    live.ScanReverse(nil, func(_, _ []byte) bool { return true }),
		"range":      live.ScanRange(nil, nil, false, func(_, _ []byte) bool { return true }),
		"update":     s.Update("p", func(*projections.Batch) error { return nil }),
		"checkpoint": func() error { _, err := s.Checkpoint("p"); return err }(),
		"reader at":  func() error { _, _, _, err := s.ReaderAt("p"); return err }(),
		"snapshot":   func() error { _, err := s.Snapshot(); return err }(),
		"parked":     func() error { _, err := s.Parked("p"); return err }(),
	}
	for name, err := range reads {
		if !errors.Is(err, projections.ErrClosed) || !errors.Is(err, fault.ErrUnavailable) {
			t.Errorf("%s once closing began = %v, want ErrClosed (unavailable)", name, err)
		}
	}
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) while a reader still read", err)
	default:
	}
	if v, err := held.Get([]byte("k")); err != nil || string(v) != "v" {
		t.Fatalf("the reader under way read %q, %v", v, err)
	}
	if err := release(); err != nil {
		t.Fatal(err)
	}
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
}
