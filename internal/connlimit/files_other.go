//go:build !unix

package connlimit

// FileLimit is 0: the system has no RLIMIT_NOFILE.
func FileLimit() uint64 { return 0 }
