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
		// Moved out of the way in one step, as rm -rf leaves it to the
		// node: os.RemoveAll walking it raced the server, which made a
		// stream's files in it meanwhile ("directory not empty", under
		// make test's load).
		{"the directory removed", func(dir string) error { return os.Rename(dir, dir+".removed") }},
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
			failedWith(t, n, base, node.ErrDataDirGone, "data dir")
		})
	}
}

// failedWith waits for n to fail with want, and its health check to say
// so (healthSays in the answer).
func failedWith(t *testing.T, n *node.Node, base string, want error, healthSays string) {
	t.Helper()
	select {
	case <-n.Failed():
	case <-time.After(30 * time.Second):
		t.Fatalf("the node did not fail (want %v)", want)
	}
	if err := n.Err(); !errors.Is(err, want) {
		t.Fatalf("the node failed with %v, want %v", err, want)
	}
	if code, body := get(t, base+"/health"); code == http.StatusOK || !strings.Contains(body, healthSays) {
		t.Fatalf("health after the failure: %d %s", code, body)
	}
}
