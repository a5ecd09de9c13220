// Package nodetest starts whole flowvault nodes for end-to-end tests.
//
// It is separate from internal/testutil because node imports most of the
// repository: a testutil that imported node would make every in-package
// test of eventlog, projections, metadata or api an import cycle.
package nodetest

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/node"
	"github.com/flowvault/flowvault/projections"
)

// MasterKey is the master key test nodes share (base64 of 32 bytes), so
// that nodes on one NATS server open one keyring.
const MasterKey = "Zmxvd3ZhdWx0LXRlc3QtbWFzdGVyLWtleS0zMmJ5dGU="

// Config is a node configuration for tests: data under dir, HTTP and the
// embedded NATS server on free loopback ports, the shared test master key.
func Config(dir string) node.Config {
	cfg := node.DefaultConfig()
	cfg.DataDir = dir
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.NATSListen = "127.0.0.1:0"
	cfg.ShutdownTimeout = 10 * time.Second
	cfg.MasterKey = []byte(MasterKey)
	return cfg
}

// Start starts a node with its data in a new temporary directory, stops it
// when the test ends, and returns it with its base URL
// ("http://127.0.0.1:port").
func Start(tb testing.TB) (*node.Node, string) {
	tb.Helper()
	return StartConfig(tb, Config(filepath.Join(tb.TempDir(), "data")))
}

// StartConfig is Start with a given configuration.
func StartConfig(tb testing.TB, cfg node.Config) (*node.Node, string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := node.Start(ctx, cfg, testutil.Logger(tb))
	if err != nil {
		tb.Fatalf("start node: %v", err)
	}
	tb.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
		defer cancel()
		if err := n.Stop(sctx); err != nil {
			tb.Errorf("stop node: %v", err)
		}
	})
	return n, "http://" + n.HTTPAddr()
}

// Dump returns the contents of a stopped node's read-model store
// (projections.Store.Dump): two nodes whose dumps are equal hold the same
// read models.
func Dump(tb testing.TB, cfg node.Config) string {
	tb.Helper()
	store, err := projections.OpenStore(cfg.PebbleDir(), projections.StoreOptions{})
	if err != nil {
		tb.Fatalf("open read models: %v", err)
	}
	defer store.Close()
	var b strings.Builder
	if err := store.Dump(&b); err != nil {
		tb.Fatalf("dump read models: %v", err)
	}
	return b.String()
}
