// Package nodetest starts whole flowvault nodes for end-to-end tests.
//
// It is separate from internal/testutil because node imports most of the
// repository: a testutil that imported node would make every in-package
// test of eventlog, projections, metadata or api an import cycle.
package nodetest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/natsauth"
	"github.com/flowvault/flowvault/node"
	"github.com/flowvault/flowvault/projections"
)

// MasterKey is the master key test nodes share (base64 of 32 bytes), so
// that nodes on one NATS server open one keyring.
const MasterKey = "Zmxvd3ZhdWx0LXRlc3QtbWFzdGVyLWtleS0zMmJ5dGU="

// Config is a node configuration for tests: data under dir, HTTP and the
// embedded NATS server on free loopback ports, the shared test master key,
// and authentication off (Insecure): tests of other features call the API
// without tokens.
// SecureConfig and StartSecure turn it on.
func Config(dir string) node.Config {
	cfg := node.DefaultConfig()
	cfg.DataDir = dir
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.NATSListen = "127.0.0.1:0"
	cfg.ShutdownTimeout = 10 * time.Second
	cfg.MasterKey = []byte(MasterKey)
	cfg.Insecure = true
	cfg.BootstrapOutput = io.Discard
	return cfg
}

// SecureConfig is Config with authentication on.
func SecureConfig(dir string) node.Config {
	cfg := Config(dir)
	cfg.Insecure = false
	return cfg
}

// StartSecure starts a node with authentication on, in a new temporary
// directory, and returns it with its base URL and a token of the bootstrap
// admin application.
func StartSecure(tb testing.TB) (*node.Node, string, string) {
	tb.Helper()
	cfg := SecureConfig(filepath.Join(tb.TempDir(), "data"))
	n, base := StartConfig(tb, cfg)
	return n, base, AdminToken(tb, cfg, base)
}

// BootstrapKey reads the bootstrap admin key a fresh node wrote to its
// data directory.
func BootstrapKey(tb testing.TB, cfg node.Config) (keyID, keySecret string) {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join(cfg.DataDir, node.BootstrapFile))
	if err != nil {
		tb.Fatalf("bootstrap key: %v", err)
	}
	var k struct{ KeyID, KeySecret string }
	if err := json.Unmarshal(b, &k); err != nil || k.KeyID == "" || k.KeySecret == "" {
		tb.Fatalf("bootstrap key file %s: %v", b, err)
	}
	return k.KeyID, k.KeySecret
}

// AdminToken mints a token with the bootstrap admin key of the node
// started with cfg at base.
func AdminToken(tb testing.TB, cfg node.Config, base string) string {
	tb.Helper()
	id, secret := BootstrapKey(tb, cfg)
	return MintToken(tb, base, id, secret)
}

// MintToken calls POST /api/token and returns the token.
func MintToken(tb testing.TB, base, keyID, keySecret string) string {
	tb.Helper()
	body, _ := json.Marshal(map[string]string{"keyId": keyID, "keySecret": keySecret})
	res, err := http.Post(base+"/api/token", "application/json", bytes.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	defer res.Body.Close()
	var out struct{ Token string }
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil || res.StatusCode != http.StatusOK || out.Token == "" {
		tb.Fatalf("POST /api/token = %d (%v)", res.StatusCode, err)
	}
	return out.Token
}

// Start starts a node with its data in a new temporary directory, stops it
// when the test ends, and returns it with its base URL
// ("http://127.0.0.1:port", https with a certificate).
func Start(tb testing.TB) (*node.Node, string) {
	tb.Helper()
	return StartConfig(tb, Config(filepath.Join(tb.TempDir(), "data")))
}

// StartConfig is Start with a given configuration.
func StartConfig(tb testing.TB, cfg node.Config) (*node.Node, string) {
	tb.Helper()
	return StartLogger(tb, cfg, testutil.Logger(tb))
}

// StartLogger is StartConfig with a given logger.
func StartLogger(tb testing.TB, cfg node.Config, logger *slog.Logger) (*node.Node, string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := node.Start(ctx, cfg, logger)
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
	return n, n.URL()
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

// WorkerConn connects to n's embedded NATS server as a worker of
// taskTypes: with the permissions POST /api/workers/credentials would
// grant, so tests exercise the real ones. It closes when the test ends.
func WorkerConn(tb testing.TB, n *node.Node, taskTypes ...string) *nats.Conn {
	tb.Helper()
	c, err := n.WorkerCredentials(taskTypes...)
	if err != nil {
		tb.Fatal(err)
	}
	return Connect(tb, n, c)
}

// EngineConn connects to n's embedded NATS server with an engine's
// credentials: every permission of the account (read every stream,
// publish commands). Use it only where a test must act as the engine or
// a producer; workers use WorkerConn.
func EngineConn(tb testing.TB, n *node.Node) *nats.Conn {
	tb.Helper()
	c, err := n.NATS().EngineCredentials()
	if err != nil {
		tb.Fatal(err)
	}
	return Connect(tb, n, c)
}

// Connect connects to n's embedded NATS server with c, reconnecting for
// ever, and closes the connection when the test ends.
func Connect(tb testing.TB, n *node.Node, c *natsauth.Credentials, opts ...nats.Option) *nats.Conn {
	tb.Helper()
	opts = append(append(c.Options(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond)), opts...)
	nc, err := nats.Connect(n.Log().ClientURL(), opts...)
	if err != nil {
		tb.Fatalf("connect to nats: %v", err)
	}
	tb.Cleanup(nc.Close)
	return nc
}

// CredsFile writes c as a .creds file (0600) into a new temporary
// directory and returns its path.
func CredsFile(tb testing.TB, c *natsauth.Credentials) string {
	tb.Helper()
	b, err := c.File()
	if err != nil {
		tb.Fatal(err)
	}
	path := filepath.Join(tb.TempDir(), "nats.creds")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		tb.Fatal(err)
	}
	return path
}

// JoinConfig is the configuration of a second engine, with its data
// under dir, that shares a's NATS server (and master key): scale-out on
// one log. It connects with engine credentials a's server trusts.
func JoinConfig(tb testing.TB, a *node.Node, dir string) node.Config {
	tb.Helper()
	c, err := a.NATS().EngineCredentials()
	if err != nil {
		tb.Fatal(err)
	}
	cfg := Config(dir)
	cfg.NATSURL = a.Log().ClientURL()
	cfg.NATSCreds = CredsFile(tb, c)
	return cfg
}
