package node_test

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/flowvault/flowvault/internal/nodetest"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/node"
)

// With --dev, a bootstrap replaces a bootstrap admin key file left by an
// earlier log (the data dir's log was wiped, the file was not): the file
// must hold the live key, or the CLI signs in with a dead one for good,
// since the next start does not bootstrap again.
func TestDevBootstrapReplacesAStaleKeyFile(t *testing.T) {
	t.Parallel()
	cfg := nodetest.SecureConfig(filepath.Join(t.TempDir(), "data"))
	cfg.Dev = true
	path := filepath.Join(cfg.DataDir, node.BootstrapFile)
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	const stale = `{"keyId":"dead","keySecret":"dead-secret"}` + "\n"
	if err := os.WriteFile(path, []byte(stale), 0o644); err != nil {
		t.Fatal(err)
	}
	_, base := nodetest.StartConfig(t, cfg)

	id, secret := nodetest.BootstrapKey(t, cfg)
	if id == "dead" {
		t.Fatalf("%s still holds the stale key", path)
	}
	nodetest.MintToken(t, base, id, secret) // fails the test unless the key is live
	info, err := os.Stat(path)
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("%s: %v, mode %v; want 0600", path, err, info.Mode().Perm())
	}
	assertNoTempFiles(t, cfg.DataDir, node.BootstrapFile)
}

// WritePrivateFile replaces a file whole, with mode 0600, and a failed
// write leaves neither a changed file nor its temporary file behind.
func TestWritePrivateFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "creds")
	for _, data := range []string{"first", "second, longer than the first"} {
		if err := node.WritePrivateFile(path, []byte(data)); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(path)
		if err != nil || string(got) != data {
			t.Fatalf("read back %q, %v; want %q", got, err, data)
		}
		if info, _ := os.Stat(path); info.Mode().Perm() != 0o600 {
			t.Fatalf("mode %v, want 0600", info.Mode().Perm())
		}
	}
	// A directory in the way: the rename fails after the data was written.
	busy := filepath.Join(dir, "busy")
	if err := os.MkdirAll(filepath.Join(busy, "inside"), 0o700); err != nil {
		t.Fatal(err)
	}
	err := node.WritePrivateFile(busy, []byte("seed"))
	if err == nil || !strings.Contains(err.Error(), "write "+busy) {
		t.Fatalf("write over a directory: %v; want an error naming it", err)
	}
	assertNoTempFiles(t, dir, "busy")
	assertNoTempFiles(t, dir, "creds")
}

// assertNoTempFiles fails when dir holds a temporary file of name.
func assertNoTempFiles(t *testing.T, dir, name string) {
	t.Helper()
	left, err := filepath.Glob(filepath.Join(dir, "."+name+".*"))
	if err != nil || len(left) > 0 {
		t.Fatalf("temporary files left in %s: %v %v", dir, left, err)
	}
}

// blockedWriter blocks its first write until released.
type blockedWriter struct {
	once    sync.Once
	reached chan struct{}
	release chan struct{}
}

func (w *blockedWriter) Write(p []byte) (int, error) {
	w.once.Do(func() {
		close(w.reached)
		<-w.release
	})
	return len(p), nil
}

// A first start that dies once its bootstrap is recorded leaves the
// bootstrap admin key in its file: the next start finds the record and
// makes no key, so a key not in the file by then is gone. The start is
// held as it shows the key, and its data dir copied then, as a kill -9
// would leave it; the copy starts, and its file holds a live key.
func TestFirstStartThatDiesAfterBootstrapLeavesTheKey(t *testing.T) {
	t.Parallel()
	cfg := nodetest.SecureConfig(filepath.Join(t.TempDir(), "data"))
	banner := &blockedWriter{reached: make(chan struct{}), release: make(chan struct{})}
	cfg.BootstrapOutput = banner
	type started struct {
		n   *node.Node
		err error
	}
	done := make(chan started, 1)
	go func() {
		n, err := node.Start(context.Background(), cfg, testutil.Logger(t))
		done <- started{n, err}
	}()
	select {
	case <-banner.reached:
	case s := <-done:
		if s.err == nil {
			stop(t, s.n)
		}
		t.Fatalf("the start showed no bootstrap key: %v", s.err)
	}
	crashed := filepath.Join(t.TempDir(), "data")
	out, err := exec.Command("cp", "-a", cfg.DataDir, crashed).CombinedOutput()
	close(banner.release)
	s := <-done
	if s.err != nil {
		t.Fatal(s.err)
	}
	stop(t, s.n)
	if err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}

	again := cfg
	again.DataDir, again.BootstrapOutput = crashed, io.Discard
	_, base := nodetest.StartConfig(t, again)
	id, secret := nodetest.BootstrapKey(t, again)
	nodetest.MintToken(t, base, id, secret) // fails the test unless the key is live
}
