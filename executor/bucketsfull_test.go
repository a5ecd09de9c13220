//go:build linux

package executor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/internal/testutil"
)

// The executor's buckets whose store failed a write on a full disk refuse
// writes as the log refuses appends, and take them again once the disk
// has room, without a restart. A take's limits write fails with
// ErrNoStorage (unavailable: a retryable 503) before the time its take
// gives it runs out, and the next at once; a cached output is dropped (a
// cache: the task runs again) and said so once, not failed and tried
// again for the 5 minutes of its effect; a heartbeat that keeps failing
// is logged once, not at each beat. Unguarded, each write waited out its
// caller's time: the limits' the minute given here, for "context
// deadline exceeded", and the cache's put failed.
func TestBucketWritesOnAFullDisk(t *testing.T) {
	// The cache bucket's reservation, a quarter of the store, fits the disk.
	l, disk, child := testutil.SmallDiskLog(t, 32<<20, func(cfg *eventlog.Config) { cfg.MaxStore = 16 << 20 })
	if !child {
		return
	}
	ctx := testutil.Context(t, 6*time.Minute)
	logger, logs := testutil.CapturingLogger()
	e := New(l, noDefinitions{}, nothingScheduled{}, Config{Logger: logger, PresenceTTL: 1200 * time.Millisecond})
	beats := make(chan struct{}, 1)
	e.passed = func(map[string]bool) {
		select {
		case beats <- struct{}{}:
		default:
		}
	}
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer e.Stop()

	expired := false // the last write's time ran out
	admit := func(now time.Time) error {
		wctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		err := e.limits.admitRate(wctx, "full_disk", 1<<20, time.Hour, now)
		expired = wctx.Err() != nil
		return err
	}
	output := map[string]any{"pad": strings.Repeat("o", 4<<10)}
	cache := func(i int) error {
		_, err := e.outputs.put(ctx, engine.CacheOutput{Key: fmt.Sprintf("full-%d", i), Output: output, ExpiresAt: time.Now().Add(time.Hour).UnixMilli()})
		return err
	}
	now := time.Now()
	if err := admit(now); err != nil {
		t.Fatalf("a take's rate limit with room: %v", err)
	}
	if err := cache(0); err != nil {
		t.Fatalf("a cached output with room: %v", err)
	}

	filler := filepath.Join(disk, "filler")
	testutil.FillDisk(t, filler, 0)
	// Each take adds its time to the key's value, which meets the end of
	// the disk soon.
	err := testutil.UntilRefused(t, "take's rate limit write", func(i int) error { return admit(now.Add(time.Duration(i) * time.Millisecond)) })
	if !errors.Is(err, eventlog.ErrNoStorage) || !errors.Is(err, fault.ErrUnavailable) {
		t.Fatalf("a take's rate limit write on a full disk: %v; want ErrNoStorage, unavailable", err)
	}
	if expired {
		t.Fatalf("a take's rate limit write on a full disk waited out the minute it was given: %v", err)
	}
	if err := admit(now.Add(time.Hour)); !errors.Is(err, eventlog.ErrNoStorage) ||
		!strings.Contains(err.Error(), "stream KV_"+limitsBucket+" failed a write and stores nothing until its disk has room again") {
		t.Fatalf("a take's rate limit write after its store failed: %v; want ErrNoStorage at once", err)
	}

	const notCached = "task outputs not cached until the cache's store has room"
	for i := 1; !strings.Contains(logs.String(), notCached); i++ {
		if i == 5000 {
			t.Fatal("5000 cached outputs on a full disk and none refused")
		}
		if err := cache(i); err != nil {
			t.Fatalf("cached output %d on a full disk: %v; want it dropped", i, err)
		}
	}
	for i := range 3 {
		if err := cache(-i); err != nil {
			t.Fatalf("a cached output after the cache's store failed: %v; want it dropped", err)
		}
	}
	if n := strings.Count(logs.String(), notCached); n != 1 {
		t.Fatalf("the cache's refusals said %d times, want once", n)
	}

	// The heartbeats, every 200 ms, meet the end of the disk too; the
	// ones after go on, refused at once, and unsaid.
	const notRefreshed = "this engine's presence not refreshed"
	testutil.Eventually(t, 2*time.Minute, 100*time.Millisecond, func() error {
		if !strings.Contains(logs.String(), notRefreshed) {
			return errors.New("no heartbeat failed on the full disk")
		}
		return nil
	})
	for range 5 {
		select {
		case <-beats:
		case <-ctx.Done():
			t.Fatal("no heartbeat after the first failed")
		}
	}
	if n := strings.Count(logs.String(), notRefreshed); n != 1 {
		t.Fatalf("the heartbeats' failures logged %d times, want once:\n%s", n, logs)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 2*time.Minute, 200*time.Millisecond, func() error {
		return admit(now.Add(2 * time.Hour))
	})
	if err := cache(-100); err != nil {
		t.Fatalf("a cached output once the disk has room: %v", err)
	}
	if _, _, _, ok := e.outputs.get(ctx, "full--100", time.Now().UnixMilli()); !ok || !strings.Contains(logs.String(), "task outputs cached again") {
		t.Fatal("an output cached once the disk has room is not there, or not said so")
	}
	testutil.Eventually(t, time.Minute, 100*time.Millisecond, func() error {
		if !strings.Contains(logs.String(), "works again after failing: "+notRefreshed) {
			return errors.New("the heartbeats do not work again")
		}
		return nil
	})
}
