// Package harden keeps the memory of a server process, which holds secret
// values in the clear while it works with them, out of the places it
// could be read back from: swap, where a page written out stays on disk
// after the process is gone, and core dumps, debuggers and
// /proc/<pid>/mem, through which processes of the same user read it.
//
// Apply locks every page of the process in memory (mlockall), now and as
// it grows, when the process may lock all its memory: as root, with
// CAP_IPC_LOCK, or with an unlimited memlock limit. Anything less would
// let it start and then fail to map memory once it passed the limit.
// And it marks the process not dumpable: no core dump, and no ptrace or
// /proc/<pid>/mem access but by root (ssh-agent does the same).
package harden

import (
	"errors"
	"fmt"
)

// Mode says whether the process's memory must, may or must not be locked.
type Mode string

const (
	// Auto locks memory when the process may lock all of it, and reports
	// why not otherwise.
	Auto Mode = "auto"
	// Require refuses to go on with memory that cannot be locked.
	Require Mode = "require"
	// Off leaves memory unlocked (the process is still made undumpable).
	Off Mode = "off"
)

// Validate reports a mode that is none of the above.
func (m Mode) Validate() error {
	switch m {
	case Auto, Require, Off:
		return nil
	}
	return fmt.Errorf("mlock %q: want auto, require or off", string(m))
}

// ErrNotLocked is returned by Apply in Require mode when memory cannot be
// locked.
var ErrNotLocked = errors.New("memory cannot be locked")

// Report is what Apply did.
type Report struct {
	// Locked: every page of the process is locked in memory, and every
	// page it maps later will be.
	Locked bool
	// NotLocked says why memory is not locked, unless Mode is Off.
	NotLocked string
	// Undumpable: no core dump, and no tracing or reading of the
	// process's memory but by root.
	Undumpable bool
}

// Apply hardens the calling process for the rest of its life. A server
// calls it once, first thing: pages already swapped out stay on disk.
// Tests and tools that embed a node do not.
func Apply(mode Mode) (Report, error) { return apply(mode, platform) }

// calls are the operating system's side of Apply.
type calls struct {
	// mayLockAll reports whether the process may lock all its memory,
	// and why not.
	mayLockAll func() (bool, string)
	lockAll    func() error
	undumpable func() error
}

func apply(mode Mode, c calls) (Report, error) {
	if err := mode.Validate(); err != nil {
		return Report{}, err
	}
	r := Report{Undumpable: c.undumpable() == nil}
	if mode == Off {
		return r, nil
	}
	ok, why := c.mayLockAll()
	if ok {
		err := c.lockAll()
		if err == nil {
			r.Locked = true
			return r, nil
		}
		why = "mlockall: " + err.Error()
	}
	r.NotLocked = why
	if mode == Require {
		return r, fmt.Errorf("%w: %s", ErrNotLocked, why)
	}
	return r, nil
}
