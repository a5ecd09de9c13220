package projections

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/flowvault/flowvault/fault"
)

// ErrClosed is returned by reads of a store that is closed or closing: a
// stop whose budget ran out goes on to close the store behind HTTP
// handlers still running, and Pebble panics on a closed database.
var ErrClosed = fmt.Errorf("the read models' store is closed: the server is stopping: %w", fault.ErrUnavailable)

// uses counts the reads under way on a store, so that closing it refuses
// new ones and waits for those under way. A nil *uses counts nothing: a
// snapshot's reader holds its store's use for as long as it lives.
type uses struct {
	n       atomic.Int64
	closing atomic.Bool
	once    sync.Once
	drained chan struct{}
}

func newUses() *uses { return &uses{drained: make(chan struct{})} }

// enter counts a read, or refuses it with ErrClosed once closing began.
func (u *uses) enter() error {
	if u == nil {
		return nil
	}
	u.n.Add(1)
	if u.closing.Load() {
		u.leave()
		return ErrClosed
	}
	return nil
}

// leave ends a read enter counted.
func (u *uses) leave() {
	if u == nil {
		return
	}
	// Either close sees this read gone, or this read sees close begun:
	// the last to leave after it closes drained.
	if u.n.Add(-1) == 0 && u.closing.Load() {
		u.once.Do(func() { close(u.drained) })
	}
}

// close refuses reads from now on and returns a channel closed once the
// reads under way have ended.
func (u *uses) close() <-chan struct{} {
	u.closing.Store(true)
	if u.n.Load() == 0 {
		u.once.Do(func() { close(u.drained) })
	}
	return u.drained
}
