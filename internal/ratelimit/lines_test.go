package ratelimit

import (
	"bytes"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

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

// A flood that ends still says how many lines it left out, though no
// line follows to count them.
func TestLinesCountedWhenTheFloodEnds(t *testing.T) {
	t.Parallel()
	var logs lockedBuffer
	l := slog.New(slog.NewTextHandler(&logs, nil))
	lines := NewLines()
	for range 1000 {
		lines.Error(l, "the same failure")
	}
	deadline := time.Now().Add(10 * CountAfter)
	for !strings.Contains(logs.String(), "suppressed=") {
		if time.Now().After(deadline) {
			t.Fatalf("the lines left out are never counted:\n%s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	written, left := 0, 0
	for line := range strings.Lines(logs.String()) {
		written++
		if _, n, ok := strings.Cut(strings.TrimSpace(line), "suppressed="); ok {
			v, err := strconv.Atoi(n)
			if err != nil {
				t.Fatalf("count %q: %v", n, err)
			}
			left += v
		}
	}
	if written+left-1 != 1000 {
		t.Fatalf("%d lines written and %d counted as left out, of 1000:\n%s", written, left, logs.String())
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
