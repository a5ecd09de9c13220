package node_test

import (
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flowvault/flowvault/internal/nodetest"
	"github.com/flowvault/flowvault/node"
)

// A data directory removed, or its lock file replaced, under a running
// server fails the node (Run stops it and the process exits non-zero):
// what it would acknowledge next goes into files no start opens again.
func TestNodeFailsWhenItsDataDirGoes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		remove func(dir string) error
	}{
		{"the directory removed", os.RemoveAll},
		{"the lock file replaced", func(dir string) error {
			lock := filepath.Join(dir, node.LockFileName)
			if err := os.Remove(lock); err != nil {
				return err
			}
			return os.WriteFile(lock, nil, 0o600)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(t.TempDir(), "data")
			n, base := nodetest.StartConfig(t, nodetest.Config(dir))
			if code, body := get(t, base+"/health"); code != http.StatusOK {
				t.Fatalf("health before: %d %s", code, body)
			}
			select {
			case <-n.Failed():
				t.Fatalf("failed before anything changed: %v", n.Err())
			default:
			}
			if err := tc.remove(dir); err != nil {
				t.Fatal(err)
			}
			select {
			case <-n.Failed():
			case <-time.After(30 * time.Second):
				t.Fatal("the node did not fail")
			}
			if err := n.Err(); !errors.Is(err, node.ErrDataDirGone) {
				t.Fatalf("the node failed with %v, want ErrDataDirGone", err)
			}
			if code, body := get(t, base+"/health"); code == http.StatusOK || !strings.Contains(body, "data dir") {
				t.Fatalf("health after: %d %s", code, body)
			}
		})
	}
}
