package node_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flowvault/flowvault/internal/nodetest"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/node"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// Definitions survive a restart, and a restart with the read models
// deleted serves them as soon as Start returns: the node rebuilds the
// metadata read model before it listens.
func TestMetadataSurvivesRestartAndRebuild(t *testing.T) {
	t.Parallel()
	cfg := nodetest.Config(filepath.Join(t.TempDir(), "data"))
	n, err := node.Start(context.Background(), cfg, testutil.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + n.HTTPAddr()
	for _, name := range []string{"a", "b", "c"} {
		resp, err := http.Post(base+"/api/metadata/workflow", "application/json",
			strings.NewReader(`{"name":"`+name+`","tasks":[{"name":"t","taskReferenceName":"r"}]}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("register %s: %d", name, resp.StatusCode)
		}
	}
	if _, err := n.Metadata().GetWorkflowDef(context.Background(), "b", nil); err != nil {
		t.Fatalf("Node.Metadata: %v", err)
	}
	stop(t, n)

	for _, wipe := range []bool{false, true} {
		if wipe {
			if err := os.RemoveAll(cfg.PebbleDir()); err != nil {
				t.Fatal(err)
			}
		}
		n, base := nodetest.StartConfig(t, cfg)
		status, body := get(t, base+"/api/metadata/workflow")
		if status != http.StatusOK || strings.Count(body, `"createTime":`) != 3 {
			t.Fatalf("wipe=%v: list = %d %s", wipe, status, body)
		}
		// A clean stop flushed the read models (their store keeps no
		// write-ahead log): the restart replays nothing.
		want := map[bool]float64{false: 0, true: 3}[wipe]
		if got := testutil.MetricValue(t, n.Registry(), "flowvault_projection_records_applied_total", map[string]string{"projection": "metadata"}); got != want {
			t.Fatalf("wipe=%v: the start applied %v records, want %v", wipe, got, want)
		}
		stop(t, n)
	}
}

func stop(t *testing.T, n *node.Node) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.Stop(ctx); err != nil {
		t.Fatal(err)
	}
}

// A first start that fails half-way (here its NATS port is taken) leaves
// the data dir behind; the next start is still the first to get through,
// and writes the bootstrap admin key's file as a fresh one does.
func TestFailedFirstStartStillWritesTheBootstrapFile(t *testing.T) {
	t.Parallel()
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := nodetest.SecureConfig(filepath.Join(t.TempDir(), "data"))
	cfg.NATSListen = taken.Addr().String()
	if _, err := node.Start(context.Background(), cfg, testutil.Logger(t)); err == nil {
		t.Fatal("started on a taken port")
	}
	taken.Close()
	if _, err := os.Stat(cfg.DataDir); err != nil {
		t.Fatalf("the failed start left no data dir: %v", err)
	}
	cfg.NATSListen = "127.0.0.1:0"
	n, err := node.Start(context.Background(), cfg, testutil.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer stop(t, n)
	if _, err := os.Stat(filepath.Join(cfg.DataDir, node.BootstrapFile)); err != nil {
		t.Fatalf("no bootstrap key file after the first start that got through: %v", err)
	}
}

// A data dir made empty for the server before its first start (systemd's
// StateDirectory, a container's volume) is a fresh one: the bootstrap
// admin key gets its file, which the banner alone would have left in a
// journal. One that holds anything is not.
func TestEmptyDataDirGetsTheBootstrapFile(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name     string
		contents bool
		want     bool
	}{{"empty", false, true}, {"holding a file", true, false}} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := nodetest.SecureConfig(filepath.Join(t.TempDir(), "data"))
			if err := os.Mkdir(cfg.DataDir, 0o700); err != nil {
				t.Fatal(err)
			}
			if tt.contents {
				if err := os.WriteFile(filepath.Join(cfg.DataDir, "README"), nil, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			n, err := node.Start(context.Background(), cfg, testutil.Logger(t))
			if err != nil {
				t.Fatal(err)
			}
			defer stop(t, n)
			if _, err := os.Stat(filepath.Join(cfg.DataDir, node.BootstrapFile)); (err == nil) != tt.want {
				t.Fatalf("bootstrap key file: %v, want it written: %v", err, tt.want)
			}
		})
	}
}

// The data dir and the stores are their owner's alone, also when the data
// dir existed, open to others, before the first start.
func TestStoresArePrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	for _, d := range []string{dir, filepath.Join(dir, "pebble")} {
		if err := os.MkdirAll(d, 0o777); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, 0o777); err != nil {
			t.Fatal(err)
		}
	}
	cfg := nodetest.Config(dir)
	nodetest.StartConfig(t, cfg)
	for _, d := range []string{dir, cfg.PebbleDir(), cfg.Eventlog().StoreDir} {
		info, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if perm := info.Mode().Perm(); perm != 0o700 {
			t.Errorf("%s has mode %v, want 0700", d, perm)
		}
	}
}

// A server given a master key of its own warns while dev mode's key file
// is still in its data dir: the file opens every secret.
func TestLeftoverDevKeyWarned(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	cfg := nodetest.Config(dir)
	cfg.MasterKey = nil // dev mode: the key is generated into the data dir
	n, _ := nodetest.StartConfig(t, cfg)
	ctx := testutil.Context(t, 30*time.Second)
	if err := n.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	key, err := os.ReadFile(cfg.DevKeyFile())
	if err != nil {
		t.Fatal(err)
	}
	cfg.MasterKey = []byte(strings.TrimSpace(string(key)))
	logger, logs := testutil.CapturingLogger()
	nodetest.StartLogger(t, cfg, logger)
	if !strings.Contains(logs.String(), "dev-mode master key file is still in the data dir") {
		t.Fatal("no warning of the dev key file left behind")
	}
}
