package harden

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

var platform = calls{mayLockAll: mayLockAll, lockAll: lockAll, undumpable: undumpable}

// capIPCLock is CAP_IPC_LOCK's bit in the capability sets.
const capIPCLock = 14

func mayLockAll() (bool, string) {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return false, fmt.Sprintf("cannot read the process's capabilities: %v", err)
	}
	if hasCap(status, capIPCLock) {
		return true, ""
	}
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_MEMLOCK, &lim); err != nil {
		return false, fmt.Sprintf("cannot read the memlock limit: %v", err)
	}
	if lim.Cur == unix.RLIM_INFINITY {
		return true, ""
	}
	return false, fmt.Sprintf("the process lacks CAP_IPC_LOCK and may lock only %d KiB (RLIMIT_MEMLOCK)", lim.Cur/1024)
}

// hasCap reports whether the effective set in a /proc/<pid>/status holds
// capability bit.
func hasCap(status []byte, bit uint) bool {
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		if v, ok := bytes.CutPrefix(sc.Bytes(), []byte("CapEff:")); ok {
			set, err := strconv.ParseUint(string(bytes.TrimSpace(v)), 16, 64)
			return err == nil && bit < 64 && set&(1<<bit) != 0
		}
	}
	return false
}

// lockAll locks pages as they are first touched (MCL_ONFAULT), so that
// the heap's reserved address space is not faulted in all at once;
// kernels before 4.4 lack it and lock mappings whole.
func lockAll() error {
	err := unix.Mlockall(unix.MCL_CURRENT | unix.MCL_FUTURE | unix.MCL_ONFAULT)
	if errors.Is(err, unix.EINVAL) {
		err = unix.Mlockall(unix.MCL_CURRENT | unix.MCL_FUTURE)
	}
	return err
}

func undumpable() error { return unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0) }
