package testutil

import (
	"context"
	"testing"

	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/projections"
)

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
