package executor

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas/conductor"
)

func TestRateLimitOf(t *testing.T) {
	for _, tc := range []struct {
		td   *conductor.TaskDef
		n    int
		per  time.Duration
		name string
	}{
		{nil, 0, 0, "no definition"},
		{&conductor.TaskDef{}, 0, 0, "no limit"},
		{&conductor.TaskDef{RateLimitPerFrequency: 3}, 3, time.Second, "Conductor's default frequency"},
		{&conductor.TaskDef{RateLimitPerFrequency: 3, RateLimitFrequencyInSeconds: 60}, 3, time.Minute, "per minute"},
		{&conductor.TaskDef{RateLimitFrequencyInSeconds: 60}, 0, 0, "a frequency alone"},
	} {
		if n, per := rateLimitOf(tc.td); n != tc.n || per != tc.per {
			t.Errorf("%s: %d per %s, want %d per %s", tc.name, n, per, tc.n, tc.per)
		}
	}
}

// The window slides: of n takes in any per, the oldest leaving makes room
// for one more; limiters sharing a bucket (engines) share the window,
// however many take at once; task types are counted apart.
func TestRateLimiterWindow(t *testing.T) {
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, 30*time.Second)
	a, b := &rateLimiter{log: l}, &rateLimiter{log: l}
	t0 := time.UnixMilli(1_000_000)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

	for i, r := range []*rateLimiter{a, b} {
		if err := r.admit(ctx, "resize", 2, time.Second, at(100*i)); err != nil {
			t.Fatalf("take %d: %v", i, err)
		}
	}
	err := a.admit(ctx, "resize", 2, time.Second, at(500))
	var limited *RateLimitedError
	if !errors.As(err, &limited) || !limited.Until.Equal(at(1000)) || !errors.Is(err, fault.ErrUnavailable) {
		t.Fatalf("third take in the window: %v, want rate limited until %s", err, at(1000))
	}
	if err := b.admit(ctx, "other", 1, time.Second, at(500)); err != nil {
		t.Fatalf("another task type: %v", err)
	}
	// The first take leaves the window at 1000 ms: one more fits, not two.
	if err := b.admit(ctx, "resize", 2, time.Second, at(1000)); err != nil {
		t.Fatalf("take once the oldest left: %v", err)
	}
	if err := a.admit(ctx, "resize", 2, time.Second, at(1050)); !errors.As(err, &limited) || !limited.Until.Equal(at(1100)) {
		t.Fatalf("take in the slid window: %v, want rate limited until %s", err, at(1100))
	}

	// Many engines at once: exactly n get in.
	const n = 5
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		admitted int
	)
	for i := range 20 {
		r := &rateLimiter{log: l}
		if i%2 == 0 {
			r = a
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := r.admit(ctx, "burst", n, time.Hour, at(2000))
			switch {
			case err == nil:
				mu.Lock()
				admitted++
				mu.Unlock()
			case !errors.As(err, new(*RateLimitedError)):
				// Only n writes happen, so no take loses casAttempts
				// rounds of compare and set.
				t.Errorf("take: %v", err)
			}
		}()
	}
	wg.Wait()
	if admitted != n {
		t.Fatalf("%d takes admitted at once, want %d", admitted, n)
	}
}
