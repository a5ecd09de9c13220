package projections

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// Bounds of the wait before a new file once a write failed.
const (
	minWriteBackoff = 10 * time.Millisecond
	maxWriteBackoff = time.Second
)

// backoffSleep waits before a new file; tests replace it.
var backoffSleep = time.Sleep

// backoffFS slows Pebble down where it does not slow down itself: a flush
// that fails (the disk full) is tried again at once and without end
// (pebble's flush: "TODO: count consecutive flush errors and backoff"), a
// new table file created and removed some 1,500 times a second, one core
// at 100% for as long as the disk stays full. After a failed write, each
// new file waits first, 10 ms doubling up to a second, until a file is
// written and synced whole again. A file is created outside Pebble's mutex, so the wait
// holds neither reads nor commits.
type backoffFS struct {
	vfs.FS
	mu     sync.Mutex
	delay  time.Duration // 0 while writes succeed
	failed chan struct{} // closed at the next failed write
}

func newBackoffFS(fs vfs.FS) *backoffFS {
	return &backoffFS{FS: fs, failed: make(chan struct{})}
}

// failures is closed at the next write that fails.
func (fs *backoffFS) failures() <-chan struct{} {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return fs.failed
}

// fail records a failed write.
func (fs *backoffFS) fail() {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.delay = min(max(2*fs.delay, minWriteBackoff), maxWriteBackoff)
	close(fs.failed)
	fs.failed = make(chan struct{})
}

// synced records a file whose every write and sync succeeded.
func (fs *backoffFS) synced() {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.delay = 0
}

func (fs *backoffFS) Create(name string, category vfs.DiskWriteCategory) (vfs.File, error) {
	fs.mu.Lock()
	d := fs.delay
	fs.mu.Unlock()
	if d > 0 {
		backoffSleep(d)
	}
	f, err := fs.FS.Create(name, category)
	if err != nil {
		fs.fail()
		return nil, err
	}
	return &backoffFile{File: f, fs: fs}, nil
}

// backoffFile reports its writes' outcomes to its backoffFS. A sync that
// follows a failed write of the same file ends no backoff: Pebble syncs
// the file it gives up on, and that sync succeeds.
type backoffFile struct {
	vfs.File
	fs     *backoffFS
	failed atomic.Bool
}

// wrote records the outcome of one of the file's writes.
func (f *backoffFile) wrote(err error) error {
	if err != nil {
		f.failed.Store(true)
		f.fs.fail()
	}
	return err
}

// synced records the outcome of a sync of the whole file.
func (f *backoffFile) synced(err error) error {
	if err != nil {
		return f.wrote(err)
	}
	if !f.failed.Load() {
		f.fs.synced()
	}
	return nil
}

func (f *backoffFile) Write(p []byte) (int, error) {
	n, err := f.File.Write(p)
	return n, f.wrote(err)
}

func (f *backoffFile) WriteAt(p []byte, off int64) (int, error) {
	n, err := f.File.WriteAt(p, off)
	return n, f.wrote(err)
}

// Preallocate's failure is no failed write: Pebble ignores it (an
// advisory fallocate, which some file systems do not support), and counted
// it would hold every new file of such a disk for a second.
func (f *backoffFile) Preallocate(off, length int64) error {
	return f.File.Preallocate(off, length)
}

func (f *backoffFile) Sync() error { return f.synced(f.File.Sync()) }

func (f *backoffFile) SyncData() error { return f.synced(f.File.SyncData()) }

func (f *backoffFile) SyncTo(length int64) (bool, error) {
	full, err := f.File.SyncTo(length)
	if err != nil {
		return full, f.wrote(err)
	}
	if full {
		return full, f.synced(nil)
	}
	return full, nil
}
