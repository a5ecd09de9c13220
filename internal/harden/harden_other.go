//go:build !linux

package harden

import (
	"errors"
	"fmt"
	"runtime"
)

var platform = calls{
	mayLockAll: func() (bool, string) {
		return false, fmt.Sprintf("memory locking is not implemented on %s", runtime.GOOS)
	},
	lockAll:    func() error { return errors.ErrUnsupported },
	undumpable: func() error { return errors.ErrUnsupported },
}
