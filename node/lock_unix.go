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
// when the process dies. It locks the directory itself, which no one can
// delete while it holds the data, and the lock file in it, which older
// versions lock: a lock on the file alone was lost to anyone who removed
// a "stale" lock file, and a second process then opened the same stores.
func LockDataDir(dir string) (release func(), err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("data dir lock: %w", err)
	}
	if err := flock(d, dir, dir); err != nil {
		d.Close()
		return nil, err
	}
	path := filepath.Join(dir, LockFileName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		unlock(d)
		return nil, fmt.Errorf("data dir lock: %w", err)
	}
	if err := flock(f, dir, path); err != nil {
		f.Close()
		unlock(d)
		return nil, err
	}
	return func() {
		unlock(f)
		unlock(d)
	}, nil
}

// flock locks f (what, in data directory dir) exclusively, or says who
// holds it.
func flock(f *os.File, dir, what string) error {
	err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return fmt.Errorf("data dir %s is in use by another flowvault process (%s is locked)", dir, what)
	}
	if err != nil {
		return fmt.Errorf("data dir lock: %w", err)
	}
	return nil
}

func unlock(f *os.File) {
	syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	f.Close()
}

// fileID identifies the file a path names now: a path removed and made
// again names another.
type fileID struct{ dev, ino uint64 }

func idOf(path string) (fileID, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileID{}, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileID{}, nil
	}
	return fileID{dev: uint64(st.Dev), ino: st.Ino}, nil
}
