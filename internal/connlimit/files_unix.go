//go:build unix

package connlimit

import "syscall"

// FileLimit is the process's soft RLIMIT_NOFILE, 0 when it cannot be read
// or is unlimited (RLIM_INFINITY, all ones on every system).
func FileLimit() uint64 {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0
	}
	cur := uint64(lim.Cur) // int64 on some systems
	if cur >= 1<<62 {
		return 0
	}
	return cur
}
