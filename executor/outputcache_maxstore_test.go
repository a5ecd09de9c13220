package executor

import (
	"context"
	"testing"
	"time"

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
	cfg := testutil.LogConfig(t.TempDir())
	cfg.MaxStore = 64 << 20
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := eventlog.Open(ctx, cfg, eventlog.Options{Logger: testutil.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c := &outputCache{log: l}
	if _, err := c.bucket(ctx); err != nil {
		t.Fatalf("under a max store of %d bytes: %v", cfg.MaxStore, err)
	}
}
