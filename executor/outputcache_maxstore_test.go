package executor

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/internal/testutil"
)

// A node started with a --nats-max-store the server accepts (at least 16
// MiB) can still make its task output cache: the bucket's size limit is
// reserved against the server's store, and a reservation of 256 MiB
// under a bound of 64 MiB fails with "insufficient storage resources
// available" at every cacheConfig task, for good.
func TestOutputCacheUnderASmallMaxStore(t *testing.T) {
	t.Parallel()
	ctx, l := openBoundedLog(t, 64<<20)
	c := &outputCache{log: l}
	if _, err := c.bucket(ctx); err != nil {
		t.Fatalf("under a max store of %d bytes: %v", l.MaxStore(), err)
	}
}

// openBoundedLog opens an embedded log whose store is bounded to
// maxStore bytes, closed when the test ends, and a context for the test.
func openBoundedLog(t *testing.T, maxStore int64) (context.Context, *eventlog.Log) {
	t.Helper()
	cfg := testutil.LogConfig(t.TempDir())
	cfg.MaxStore = maxStore
	ctx := testutil.Context(t, 30*time.Second)
	l, err := eventlog.Open(ctx, cfg, eventlog.Options{Logger: testutil.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return ctx, l
}

// Whatever use of the cache is an engine's first, a lookup, a write or a
// purge (a decision's, recovery's, the compaction's), leaves the cache
// bucket as it is: an engine under another --nats-max-store made it with
// another size limit, and the first use made it again, updating the limit
// to this engine's, which a server whose store does not fit the new limit
// refuses, and with it every use of the cache on that engine.
func TestOutputCacheKeepsTheBucketAsMade(t *testing.T) {
	t.Parallel()
	const key = "k"
	for _, tc := range []struct {
		name string
		use  func(context.Context, *outputCache) error
		want bool // the entry under key after the use
	}{
		{"get", func(ctx context.Context, c *outputCache) error {
			if _, _, _, ok := c.get(ctx, key, 0); !ok {
				return errors.New("no hit")
			}
			return nil
		}, true},
		{"put", func(ctx context.Context, c *outputCache) error {
			rev, err := c.put(ctx, engine.CacheOutput{Key: key, Output: map[string]any{"v": "again"}, ExpiresAt: 1, WorkflowID: "w", TaskID: "t"})
			if err == nil && rev == 0 {
				err = errors.New("not stored")
			}
			return err
		}, true},
		{"drop", func(ctx context.Context, c *outputCache) error { return c.drop(ctx, key) }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, l := openBoundedLog(t, 64<<20)
			// As an engine under a bound of 32 MiB made it.
			made := cacheBytes(32 << 20)
			kv, err := l.JetStream().CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: cacheBucket, History: 1, TTL: cacheMaxAge,
				MaxBytes: made, Storage: jetstream.FileStorage})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := kv.Put(ctx, key, []byte(`{"expiresAt":1,"output":{"v":"cached"}}`)); err != nil {
				t.Fatal(err)
			}
			c := &outputCache{log: l, logger: testutil.Logger(t), counts: newMetrics(prometheus.NewRegistry()).cache}
			if err := tc.use(ctx, c); err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			_, err = kv.Get(ctx, key)
			if got := !errors.Is(err, jetstream.ErrKeyNotFound); got != tc.want {
				t.Errorf("get after the %s: %v, want an entry %v", tc.name, err, tc.want)
			}
			st, err := l.JetStream().Stream(ctx, "KV_"+cacheBucket)
			if err != nil {
				t.Fatal(err)
			}
			if got := st.CachedInfo().Config.MaxBytes; got != made {
				t.Errorf("the bucket's size limit after the %s: %d bytes, want %d, as it was made (this engine's would be %d)",
					tc.name, got, made, cacheBytes(l.MaxStore()))
			}
		})
	}
}
