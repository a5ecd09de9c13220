package harden

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// childEnv makes the test binary, run again, apply a mode to itself and
// report what the kernel says of it: locking and dumpability are for the
// whole process and for good, not for a test's.
const childEnv = "FLOWVAULT_HARDEN_TEST_CHILD"

type childReport struct {
	Report   Report
	Err      string
	VmLckKiB int
	Dumpable int
}

func TestMain(m *testing.M) {
	if mode, ok := os.LookupEnv(childEnv); ok {
		os.Exit(runChild(Mode(mode)))
	}
	os.Exit(m.Run())
}

func runChild(mode Mode) int {
	rep, err := Apply(mode)
	out := childReport{Report: rep}
	if err != nil {
		out.Err = err.Error()
	}
	// Memory the process touches after Apply is locked too.
	grown := make([]byte, 64<<20)
	for i := range grown {
		grown[i] = byte(i)
	}
	status, _ := os.ReadFile("/proc/self/status")
	for line := range strings.Lines(string(status)) {
		if v, ok := strings.CutPrefix(line, "VmLck:"); ok {
			fmt.Sscanf(strings.TrimSpace(v), "%d kB", &out.VmLckKiB)
		}
	}
	d, _ := unix.PrctlRetInt(unix.PR_GET_DUMPABLE, 0, 0, 0, 0)
	out.Dumpable = d
	json.NewEncoder(os.Stdout).Encode(out)
	return 0
}

func runApply(t *testing.T, mode Mode) childReport {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+string(mode))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, stderr.Bytes())
	}
	var r childReport
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("child said %q: %v", out, err)
	}
	return r
}

func TestApplyLocksAndHidesTheProcess(t *testing.T) {
	t.Parallel()
	if ok, why := mayLockAll(); !ok {
		// The suite runs as root (CI and make test); elsewhere this says
		// why the positive case cannot run, and checks the refusal.
		r := runApply(t, Require)
		if r.Report.Locked || !strings.Contains(r.Err, ErrNotLocked.Error()) || r.Report.NotLocked != why {
			t.Fatalf("require without the right to lock: %+v", r)
		}
		t.Fatalf("this test needs a process that may lock its memory (root or CAP_IPC_LOCK): %s", why)
	}
	for _, mode := range []Mode{Auto, Require} {
		t.Run(string(mode), func(t *testing.T) {
			t.Parallel()
			r := runApply(t, mode)
			if r.Err != "" || !r.Report.Locked || !r.Report.Undumpable {
				t.Fatalf("%+v", r)
			}
			// The 64 MiB the child touched after Apply are among its
			// locked pages.
			if r.VmLckKiB < 64<<10 {
				t.Fatalf("VmLck %d kB, want at least 65536", r.VmLckKiB)
			}
			if r.Dumpable != 0 {
				t.Fatalf("dumpable %d, want 0", r.Dumpable)
			}
		})
	}
	t.Run("off", func(t *testing.T) {
		t.Parallel()
		r := runApply(t, Off)
		if r.Err != "" || r.Report.Locked || r.VmLckKiB != 0 || r.Dumpable != 0 || !r.Report.Undumpable {
			t.Fatalf("%+v: want unlocked, undumpable", r)
		}
	})
}

func TestHasCap(t *testing.T) {
	t.Parallel()
	status := func(eff string) []byte {
		return []byte("Name:\tflowvault\nCapInh:\t0000000000000000\nCapPrm:\t000001ffffffffff\nCapEff:\t" + eff + "\nCapBnd:\t000001ffffffffff\n")
	}
	tests := []struct {
		status []byte
		want   bool
	}{
		{status("000001fffeffffff"), true},
		{status("0000000000004000"), true}, // CAP_IPC_LOCK alone
		{status("0000000000003fff"), false},
		{status("0000000000000000"), false},
		{status("garbage"), false},
		{[]byte("Name:\tx\n"), false},
	}
	for _, tt := range tests {
		if got := hasCap(tt.status, capIPCLock); got != tt.want {
			t.Errorf("hasCap(%q) = %v, want %v", tt.status, got, tt.want)
		}
	}
}
