//go:build unix

package node

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// LockFileName is the lock file a server (and any offline tool, such as
// `flowvault keys rotate`) holds in the data directory while it uses it.
const LockFileName = "flowvault.lock"

// LockDataDir takes an exclusive lock on the data directory dir, creating
// it (mode 0700) if needed, so that two processes never run an embedded
// NATS server or Pebble on the same files. The kernel releases the lock
// when the process dies.
func LockDataDir(dir string) (release func(), err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	path := filepath.Join(dir, LockFileName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("data dir lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("data dir %s is in use by another flowvault process (%s is locked)", dir, path)
		}
		return nil, fmt.Errorf("data dir lock: %w", err)
	}
	return func() {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}
