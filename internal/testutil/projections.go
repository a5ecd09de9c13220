package testutil

import (
	"context"
	"testing"
	"time"

	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/projections"
	"github.com/flowvault/flowvault/schemas"
)

// Record is the record at seq of subject holding events, as a projection
// gets it.
func Record(tb testing.TB, subject string, seq uint64, events ...schemas.Event) eventlog.Record {
	tb.Helper()
	rec := eventlog.Record{Subject: subject, Seq: seq}
	for _, ev := range events {
		env, err := schemas.Default.Encode(ev)
		if err != nil {
			tb.Fatal(err)
		}
		rec.Events = append(rec.Events, env)
	}
	return rec
}

// OpenStore opens a read-model store in a temporary directory, closed when
// the test ends.
func OpenStore(tb testing.TB) *projections.Store {
	tb.Helper()
	s, err := projections.OpenStore(tb.TempDir(), projections.StoreOptions{Logger: Logger(tb)})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

// RunProjection runs proj over cfg.Stream into store until the test ends,
// and fails the test if the runner stopped with an error.
func RunProjection(tb testing.TB, l *eventlog.Log, store *projections.Store, proj projections.Projection, cfg projections.RunnerConfig) *projections.Runner {
	tb.Helper()
	if cfg.Logger == nil {
		cfg.Logger = Logger(tb)
	}
	r := projections.NewRunner(l, store, proj, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("projection %s: %v", proj.Name(), err)
		}
	})
	return r
}

// CatchUpOnce runs proj over cfg.Stream into store until it has applied
// seq, then stops it: the read model of an engine that lags from then on.
func CatchUpOnce(tb testing.TB, l *eventlog.Log, store *projections.Store, proj projections.Projection, cfg projections.RunnerConfig, seq uint64) {
	tb.Helper()
	r := projections.NewRunner(l, store, proj, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	err := r.WaitFor(Context(tb, 10*time.Second), seq)
	cancel()
	if rerr := <-done; rerr != nil {
		tb.Fatal(rerr)
	}
	if err != nil {
		tb.Fatal(err)
	}
}
