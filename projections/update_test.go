package projections_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/projections"
	"github.com/flowvault/flowvault/schemas"
)

// An Updater decides on the read model's state and, when that state turns
// out stale (a lost race, or a no-op the log does not confirm), decides
// again on the log's.
func TestUpdaterDecidesAgainOnTheLog(t *testing.T) {
	errRefused := errors.New("refused")
	note := []schemas.Event{&testutil.Note{Text: "write", N: 1}}
	tests := []struct {
		name string
		// stale: the read model lags one record behind the log; logOnly:
		// the store reads the log's state first too (Read is Fold).
		stale, logOnly bool
		decide         func(v projections.View[struct{}]) ([]schemas.Event, error)
		// wantViews are the views decide saw, as "model" or "log".
		wantViews []string
		wantSeq   uint64 // 0: nothing appended
		wantErr   error
	}{
		{"current state, write", false, false, func(projections.View[struct{}]) ([]schemas.Event, error) { return note, nil },
			[]string{"model"}, 2, nil},
		{"stale state loses the race", true, false, func(projections.View[struct{}]) ([]schemas.Event, error) { return note, nil },
			[]string{"model", "log"}, 2, nil},
		{"current state, refusal", false, false, func(projections.View[struct{}]) ([]schemas.Event, error) { return nil, errRefused },
			[]string{"model"}, 0, errRefused},
		{"a no-op on the log's state stands", false, true, func(projections.View[struct{}]) ([]schemas.Event, error) { return nil, nil },
			[]string{"log"}, 0, nil},
		{"stale state, a no-op the log does not confirm", true, false, func(v projections.View[struct{}]) ([]schemas.Event, error) {
			if !v.FromLog {
				return nil, nil
			}
			return note, nil
		}, []string{"model", "log"}, 2, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l := testutil.OpenLog(t, "")
			ctx := testutil.Context(t, time.Minute)
			const subject = "fv.wf.updater"
			if _, err := l.Append(ctx, subject, []schemas.Envelope{testutil.NoteEnvelope(t, "first", 0)}, 0); err != nil {
				t.Fatal(err)
			}
			model := uint64(1)
			if tt.stale {
				model = 0
			}
			fold := func(ctx context.Context, subject string) (projections.View[struct{}], error) {
				seq, err := l.LastSeq(ctx, subject)
				return projections.View[struct{}]{Seq: seq, FromLog: true}, err
			}
			read := func(context.Context, string) (projections.View[struct{}], error) {
				return projections.View[struct{}]{Seq: model}, nil
			}
			if tt.logOnly {
				read = fold
			}
			u := projections.NewUpdater(projections.Updater[struct{}]{Log: l, What: "test", Read: read, Fold: fold})
			var views []string
			seq, err := u.Update(ctx, subject, "user:test", func(v projections.View[struct{}]) ([]schemas.Event, error) {
				if v.FromLog {
					views = append(views, "log")
				} else {
					views = append(views, "model")
				}
				return tt.decide(v)
			})
			if !errors.Is(err, tt.wantErr) || seq != tt.wantSeq {
				t.Fatalf("Update = %d, %v; want %d, %v", seq, err, tt.wantSeq, tt.wantErr)
			}
			if !slices.Equal(views, tt.wantViews) {
				t.Fatalf("decided on %v, want %v", views, tt.wantViews)
			}
			last, err := l.LastSeq(ctx, subject)
			if err != nil {
				t.Fatal(err)
			}
			if want := max(tt.wantSeq, 1); last != want {
				t.Fatalf("subject at %d, want %d", last, want)
			}
		})
	}
}
