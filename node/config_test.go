package node

import (
	"os"
	"runtime/debug"
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
