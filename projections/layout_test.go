package projections_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/projections"
)

// laidOut is noteProjection in another layout.
type laidOut struct {
	noteProjection
	layout int
}

func (p laidOut) Layout() int { return p.layout }

// A read model written in an older layout than its projection's, or in
// none (by a version from before layouts were recorded), is rebuilt from
// the log at start: what the older layout wrote and the newer does not
// (a key the projection no longer maintains) is gone, nothing is applied
// twice, and the result is what a rebuild gives. One in a newer layout (a
// downgrade) is refused, and left as it is.
func TestReadModelLayouts(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name    string
		written int  // the layout the read model is written in
		forget  bool // as a version that recorded no layout wrote it
		now     int  // the projection's layout at the next start
	}{
		{"older layout", 1, false, 2},
		{"no layout recorded", 1, true, 1},
		{"the same layout", 2, false, 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l := testutil.OpenLog(t, "")
			last, events := appendNotes(t, l, 2, 5)
			s := openStore(t, t.TempDir())
			defer s.Close()
			follow(t, l, s, laidOut{layout: tt.written}, last)
			// What the older layout kept and the newer one does not.
			if err := s.Update("notes", func(b *projections.Batch) error { return b.Set([]byte("retired"), []byte("x")) }); err != nil {
				t.Fatal(err)
			}
			if tt.forget {
				if err := projections.ForgetLayout(s, "notes"); err != nil {
					t.Fatal(err)
				}
			}
			follow(t, l, s, laidOut{layout: tt.now}, last)
			_, err := s.Reader("notes").Get([]byte("retired"))
			rebuilt := errors.Is(err, projections.ErrNotFound)
			if want := tt.written != tt.now || tt.forget; rebuilt != want {
				t.Fatalf("rebuilt %v (the retired key: %v), want %v", rebuilt, err, want)
			}
			if got := noteCount(t, s); got != uint64(events) {
				t.Fatalf("count %d, want %d: records applied twice or skipped", got, events)
			}
			if cp, _ := s.Checkpoint("notes"); cp != last {
				t.Fatalf("checkpoint %d, want %d", cp, last)
			}
			if !rebuilt {
				return
			}
			fresh := openStore(t, t.TempDir())
			defer fresh.Close()
			follow(t, l, fresh, laidOut{layout: tt.now}, last)
			if got, want := dump(t, s), dump(t, fresh); got != want {
				t.Fatalf("rebuilt at start:\n%s\nrebuilt from nothing:\n%s", got, want)
			}
		})
	}
}

func TestReadModelInANewerLayoutRefuses(t *testing.T) {
	t.Parallel()
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, time.Minute)
	last, events := appendNotes(t, l, 1, 5)
	s := openStore(t, t.TempDir())
	defer s.Close()
	follow(t, l, s, laidOut{layout: 3}, last)
	r := projections.NewRunner(l, s, laidOut{layout: 2}, projections.RunnerConfig{Stream: eventlog.Workflows.Name})
	err := r.Check(ctx)
	if !errors.Is(err, projections.ErrNewerLayout) || !strings.Contains(err.Error(), "layout 3") || !strings.Contains(err.Error(), "newer") {
		t.Fatalf("Check = %v, want ErrNewerLayout naming layout 3", err)
	}
	if got := noteCount(t, s); got != uint64(events) {
		t.Fatalf("the refused read model counts %d, want %d as it was", got, events)
	}
}

// follow runs proj over the workflows stream into s up to seq, and stops.
func follow(t *testing.T, l *eventlog.Log, s *projections.Store, proj projections.Projection, seq uint64) {
	t.Helper()
	r := projections.NewRunner(l, s, proj, projections.RunnerConfig{Stream: eventlog.Workflows.Name, StopAt: seq})
	if err := r.Run(testutil.Context(t, time.Minute)); err != nil {
		t.Fatal(err)
	}
	if cp := r.Checkpoint(); cp != seq {
		t.Fatalf("stopped at %d, want %d", cp, seq)
	}
}
