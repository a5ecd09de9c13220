package ratelimit

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"golang.org/x/time/rate"
)

// A flood of one kind of line writes a burst; the next line let through
// counts those left out.
func TestLinesBounded(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	l := slog.New(slog.NewTextHandler(&logs, nil))
	lines := NewLines()
	for range 1000 {
		lines.Error(l, "the same failure")
	}
	if got := strings.Count(logs.String(), "the same failure"); got < 10 || got > 20 {
		t.Fatalf("%d lines written of 1000", got)
	}
	if strings.Contains(logs.String(), "suppressed=") {
		t.Fatal("a line of the burst counts lines left out")
	}
	lines.SetLimit(rate.Inf) // as if time passed
	lines.Error(l, "the same failure, later")
	if !strings.Contains(logs.String(), "suppressed=") {
		t.Fatalf("the lines left out are not counted:\n%s", logs.String())
	}
}
