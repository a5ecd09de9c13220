package projections_test

import (
	"errors"
	"testing"
	"time"

	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/projections"
)

// A read model in an older layout (or none: every data dir written before
// layouts were recorded) whose log lost records it holds is refused as one
// in the current layout is: a rebuild at start must not wipe it and carry
// on over what is left of the log (a node whose NATS store was lost, or
// restored from an older backup, started for the first time by the
// version that records layouts).
func TestOlderLayoutAheadOfTheLogRefuses(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		forget bool // no layout recorded, as a version before layouts
		layout int  // the layout it was written in
	}{
		{"no layout recorded", true, 1},
		{"an older layout", false, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := testutil.Context(t, time.Minute)
			long := testutil.OpenLog(t, "")
			last, events := appendNotes(t, long, 1, 10)
			s := openStore(t, t.TempDir())
			defer s.Close()
			follow(t, long, s, laidOut{layout: tc.layout}, last)
			if tc.forget {
				if err := projections.ForgetLayout(s, "notes"); err != nil {
					t.Fatal(err)
				}
			}
			short := testutil.OpenLog(t, "") // the log, having lost all but its first records
			appendNotes(t, short, 1, 3)
			r := projections.NewRunner(short, s, laidOut{layout: 2}, projections.RunnerConfig{Stream: eventlog.Workflows.Name})
			if err := r.Check(ctx); !errors.Is(err, projections.ErrAheadOfLog) {
				t.Errorf("Check = %v, want ErrAheadOfLog", err)
			}
			if got := noteCount(t, s); got != uint64(events) {
				t.Errorf("the read model counts %d, it held %d: wiped on a log that lost records", got, events)
			}
		})
	}
}

// Nor is one rebuilt on a stream made again since it followed it.
func TestOlderLayoutOfAnotherStreamRefuses(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, time.Minute)
	first := testutil.OpenLog(t, "")
	last, events := appendNotes(t, first, 1, 5)
	s := openStore(t, t.TempDir())
	defer s.Close()
	follow(t, first, s, laidOut{layout: 1}, last)
	if err := projections.ForgetLayout(s, "notes"); err != nil {
		t.Fatal(err)
	}
	again := testutil.OpenLog(t, "") // made again, and written past the checkpoint
	appendNotes(t, again, 1, 12)
	r := projections.NewRunner(again, s, laidOut{layout: 1}, projections.RunnerConfig{Stream: eventlog.Workflows.Name})
	if err := r.Check(ctx); !errors.Is(err, projections.ErrAheadOfLog) {
		t.Errorf("Check = %v, want ErrAheadOfLog saying the stream was made again", err)
	}
	if got := noteCount(t, s); got != uint64(events) {
		t.Errorf("the read model counts %d, it held %d: wiped", got, events)
	}
}
