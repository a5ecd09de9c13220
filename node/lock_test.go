//go:build unix

package node

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// One process at a time uses a data directory.
func TestLockDataDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	release, err := LockDataDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := LockDataDir(dir); err == nil || !strings.Contains(err.Error(), "in use by another flowvault process") {
		t.Fatalf("second lock: %v", err)
	}
	release()
	release2, err := LockDataDir(dir)
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	release2()
}

// Removing the lock file, as an operator might remove a "stale" one, does
// not let a second process in: the directory itself is locked.
func TestLockSurvivesItsFileRemoved(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	release, err := LockDataDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	if err := os.Remove(filepath.Join(dir, LockFileName)); err != nil {
		t.Fatal(err)
	}
	if _, err := LockDataDir(dir); err == nil || !strings.Contains(err.Error(), "in use by another flowvault process") {
		t.Fatalf("a lock with the lock file removed: %v", err)
	}
}
