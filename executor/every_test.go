package executor

import (
	"context"
	"errors"
	"strings"
	"testing"
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
		e.every(ctx, time.Millisecond, "sweep failed", func(context.Context) error {
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
