package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// The machines these figures come from are virtual: a hypervisor that runs
// other guests on the same cores takes time from this one ("steal" in
// /proc/stat), and a run during which it took a fifth of the machine
// measures the neighbours as much as the code. Each run reports the share
// of the machine's CPU time stolen while it ran, where Linux counts it.

// hostTimes are the machine's CPU time counters, in clock ticks.
type hostTimes struct {
	steal, total uint64
	ok           bool
}

// readHostTimes reads the machine's counters from /proc/stat.
func readHostTimes() hostTimes {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return hostTimes{}
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return parseHostTimes(line)
}

// parseHostTimes reads /proc/stat's first line: "cpu" then user nice
// system idle iowait irq softirq steal, in clock ticks (guest time is
// counted in user already, and later fields are guest times).
func parseHostTimes(line string) hostTimes {
	fields := strings.Fields(line)
	if len(fields) < 9 || fields[0] != "cpu" {
		return hostTimes{}
	}
	var t hostTimes
	for i, f := range fields[1:9] {
		v, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			return hostTimes{}
		}
		t.total += v
		if i == 7 {
			t.steal = v
		}
	}
	t.ok = true
	return t
}

// stealSince renders the share of the machine's CPU time stolen since
// before ("  steal 3%"), or nothing where it is not counted.
func stealSince(before hostTimes) string {
	after := readHostTimes()
	if !before.ok || !after.ok || after.total <= before.total || after.steal < before.steal {
		return ""
	}
	return fmt.Sprintf("  steal %.0f%%", 100*float64(after.steal-before.steal)/float64(after.total-before.total))
}
