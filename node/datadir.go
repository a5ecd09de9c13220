package node

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"
)

// ErrDataDirGone is the failure of a node whose data directory, or the
// lock file in it, was removed or replaced while it ran.
var ErrDataDirGone = errors.New("the data directory was removed or replaced under the running server")

// dataDirWatch tells whether the data directory a node locked at start
// is still the one its path names. Removed under a running server (rm -rf
// of a "stale" directory, a volume unmounted), the stores go on writing
// into files no one can open again: every write acknowledged after it is
// lost at the next start. PostgreSQL checks its postmaster.pid the same
// way.
type dataDirWatch struct {
	dir       string
	dirID     fileID
	lockID    fileID
	checkEach time.Duration
}

func newDataDirWatch(dir string) (*dataDirWatch, error) {
	w := &dataDirWatch{dir: dir, checkEach: time.Second}
	var err error
	if w.dirID, err = idOf(dir); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	if w.lockID, err = idOf(filepath.Join(dir, LockFileName)); err != nil {
		return nil, fmt.Errorf("data dir lock: %w", err)
	}
	return w, nil
}

// check returns ErrDataDirGone, saying what changed, or nil.
func (w *dataDirWatch) check() error {
	for _, f := range []struct {
		path string
		id   fileID
	}{{w.dir, w.dirID}, {filepath.Join(w.dir, LockFileName), w.lockID}} {
		id, err := idOf(f.path)
		switch {
		case err != nil:
			return fmt.Errorf("%w: %s: %v", ErrDataDirGone, f.path, err)
		case id != f.id:
			return fmt.Errorf("%w: %s is another file than the one locked at start", ErrDataDirGone, f.path)
		}
	}
	return nil
}

// run checks every checkEach until ctx ends, and calls gone once with the
// first change it finds.
func (w *dataDirWatch) run(ctx context.Context, gone func(error)) {
	t := time.NewTicker(w.checkEach)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := w.check(); err != nil {
			gone(err)
			return
		}
	}
}
