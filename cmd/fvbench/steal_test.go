package main

import "testing"

func TestParseHostTimes(t *testing.T) {
	for _, tc := range []struct {
		line         string
		ok           bool
		steal, total uint64
	}{
		{"cpu  100 2 30 400 5 0 6 57 0 0", true, 57, 600},
		{"cpu  100 2 30 400 5 0 6 57", true, 57, 600},
		{"cpu  100 2 30 400 5 0 6", false, 0, 0}, // a kernel without steal
		{"cpu0 100 2 30 400 5 0 6 57 0 0", false, 0, 0},
		{"cpu  100 2 30 x 5 0 6 57 0 0", false, 0, 0},
		{"", false, 0, 0},
	} {
		got := parseHostTimes(tc.line)
		if got.ok != tc.ok || got.steal != tc.steal || got.total != tc.total {
			t.Errorf("parseHostTimes(%q) = %+v, want ok %v steal %d total %d", tc.line, got, tc.ok, tc.steal, tc.total)
		}
	}
	before := hostTimes{steal: 0, total: 1000, ok: true}
	if s := stealSince(hostTimes{}); s != "" {
		t.Errorf("stealSince(unknown) = %q, want nothing", s)
	}
	if after := readHostTimes(); after.ok {
		if s := stealSince(before); s == "" {
			t.Errorf("stealSince after a readable /proc/stat = nothing")
		}
	}
}
