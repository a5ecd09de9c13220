//go:build unix

package main

import (
	"io/fs"
	"os"
	"syscall"
)

// ownedByAnother reports whether another user owns a file, and which.
func ownedByAnother(info fs.FileInfo) (uid int, other bool) {
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return int(st.Uid), int(st.Uid) != os.Getuid()
}
