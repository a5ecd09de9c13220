package node

import (
	"os"
	"runtime/debug"
	"strings"
	"testing"
)

// TuneRuntime sets the configured GC target, unless $GOGC chose one. Not
// parallel: the GC target is the process's.
func TestTuneRuntime(t *testing.T) {
	restore := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(restore) })
	gogc, had := os.LookupEnv("GOGC")
	os.Unsetenv("GOGC")
	t.Cleanup(func() {
		if had {
			os.Setenv("GOGC", gogc)
		}
	})

	c := DefaultConfig()
	c.GCPercent = 250
	c.TuneRuntime()
	if got := debug.SetGCPercent(100); got != 250 {
		t.Fatalf("GC target %d, want the configured 250", got)
	}
	t.Setenv("GOGC", "150")
	c.TuneRuntime()
	if got := debug.SetGCPercent(100); got != 100 {
		t.Fatalf("GC target %d with $GOGC set, want it left alone (100)", got)
	}
}

// Validate refuses an HTTP address whose port is not a number from 0 to
// 65535 (net.SplitHostPort alone passes any text after the colon), so that
// it fails before the data directory is opened, not at listen time.
func TestValidateHTTPAddr(t *testing.T) {
	t.Parallel()
	tests := []struct {
		addr string
		ok   bool
	}{
		{"127.0.0.1:8080", true},
		{"127.0.0.1:0", true},
		{"127.0.0.1:65535", true},
		{":8080", true},
		{"[::1]:8080", true},
		{"localhost:80", true},
		{"127.0.0.1:99999", false},
		{"127.0.0.1:65536", false},
		{"127.0.0.1:-1", false},
		{"127.0.0.1:abc", false},
		{"127.0.0.1:http", false},
		{"127.0.0.1:", false},
		{"127.0.0.1", false},
		{"", false},
	}
	for _, tt := range tests {
		c := DefaultConfig()
		c.HTTPAddr = tt.addr
		err := c.Validate()
		switch {
		case tt.ok && err != nil:
			t.Errorf("HTTPAddr %q: %v; want valid", tt.addr, err)
		case !tt.ok && (err == nil || !strings.Contains(err.Error(), "http address")):
			t.Errorf("HTTPAddr %q: %v; want an http address error", tt.addr, err)
		}
	}
}
