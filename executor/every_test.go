package executor

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/flowvault/flowvault/internal/testutil"
)

// A pass that keeps failing is logged at its first failure (and then once
// a minute), not at every pass: the rate limits' sweep, each second, on a
// full disk, logged a warning a second. The pass that works again says
// so, with how many failed.
func TestEveryLogsARunOfFailuresOnce(t *testing.T) {
	logger, logs := testutil.CapturingLogger()
	e := &Executor{cfg: Config{Logger: logger}}
	ctx, cancel := context.WithCancel(context.Background())
	passes := 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.every(ctx, func() time.Duration { return time.Millisecond }, "sweep failed", func(context.Context) error {
			passes++
			switch {
			case passes <= 50:
				return errors.New("no room")
			case passes == 60:
				cancel()
			}
			return nil
		})
	}()
	<-done
	out := logs.String()
	if n := strings.Count(out, `"msg":"sweep failed"`); n != 1 {
		t.Errorf("50 failed passes in a row logged %d warnings, want 1:\n%s", n, out)
	}
	if !strings.Contains(out, `"msg":"works again after failing: sweep failed","count":50`) {
		t.Errorf("the pass that worked again is not logged with the 50 failures:\n%s", out)
	}
}

// every keeps to the interval as a pass changes it: the presence
// heartbeat follows its bucket's TTL (followTTL). The clock is synctest's:
// the passes come at exact times, not at the machine's.
func TestEveryFollowsItsInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := &Executor{cfg: Config{Logger: testutil.Logger(t)}}
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		start, interval := time.Now(), time.Minute
		var at []time.Duration
		e.every(ctx, func() time.Duration { return interval }, "pass failed", func(context.Context) error {
			at = append(at, time.Since(start))
			switch len(at) {
			case 1:
				interval = time.Second
			case 3:
				cancel()
			}
			return nil
		})
		want := []time.Duration{time.Minute, time.Minute + time.Second, time.Minute + 2*time.Second}
		if !slices.Equal(at, want) {
			t.Errorf("passes at %v, want %v: every second once the first pass changed the interval from a minute", at, want)
		}
	})
}
