//go:build !unix

package node

import "os"

// LockFileName is the lock file a server holds in the data directory.
const LockFileName = "flowvault.lock"

// LockDataDir creates dir; this platform has no advisory file locks, so it
// does not guard against a second process.
func LockDataDir(dir string) (release func(), err error) {
	return func() {}, os.MkdirAll(dir, 0o700)
}

// fileID identifies the file a path names; this platform's is existence
// alone.
type fileID struct{}

func idOf(path string) (fileID, error) {
	_, err := os.Stat(path)
	return fileID{}, err
}
