package executor

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/internal/testutil"
)

// A drop purges the key's entry once: a key with no entry (never cached,
// or dropped before, as a workflow's later news names the same output
// again) gets no purge marker of its own in the bucket's stream, nor a
// count of an output dropped.
func TestOutputCacheDropsOnlyAnEntry(t *testing.T) {
	t.Parallel()
	rows := []struct {
		name        string
		cached      bool
		drops       int
		wantLastSeq uint64 // the bucket's stream's: the entry, then its marker
		wantDropped float64
	}{
		{name: "entry", cached: true, drops: 1, wantLastSeq: 2, wantDropped: 1},
		{name: "entry_dropped_twice", cached: true, drops: 2, wantLastSeq: 2, wantDropped: 1},
		{name: "no_entry", drops: 1, wantLastSeq: 0, wantDropped: 0},
	}
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			reg := prometheus.NewRegistry()
			c := &outputCache{log: testutil.OpenLog(t, ""), logger: testutil.Logger(t), counts: newMetrics(reg).cache}
			const key = "k"
			if r.cached {
				if err := c.put(ctx, engine.CacheOutput{Key: key, Output: map[string]any{"v": "found-secret-later"}, ExpiresAt: time.Now().Add(time.Hour).UnixMilli()}); err != nil {
					t.Fatal(err)
				}
			}
			for range r.drops {
				if err := c.drop(ctx, key); err != nil {
					t.Fatalf("drop: %v", err)
				}
			}
			kv, err := c.bucket(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := kv.Get(ctx, key); !errors.Is(err, jetstream.ErrKeyNotFound) {
				t.Errorf("get after the drop: %v, want no entry", err)
			}
			s, err := c.log.JetStream().Stream(ctx, "KV_"+cacheBucket)
			if err != nil {
				t.Fatal(err)
			}
			if got := s.CachedInfo().State.LastSeq; got != r.wantLastSeq {
				t.Errorf("the bucket's stream's last sequence is %d, want %d", got, r.wantLastSeq)
			}
			if got := testutil.MetricValue(t, reg, "flowvault_engine_task_cache_total", map[string]string{"result": "dropped"}); got != r.wantDropped {
				t.Errorf("task_cache_total{result=\"dropped\"} = %v, want %v", got, r.wantDropped)
			}
		})
	}
}
