package ratelimit

import (
	"log/slog"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/flowvault/flowvault/internal/logkey"
)

// Lines bounds the error lines of one kind a logger writes: a burst of
// ten, then about one a second. Those left out are counted in the next
// line written (logkey.Suppressed), or, when no line follows within
// CountAfter, in a line of their own: a flood that ends must still say
// how long it ran. A cause that repeats for every request, connection or
// retry (refused connections, a full disk) must not fill the log, least
// of all a log on the same disk.
type Lines struct {
	limit      *rate.Limiter
	suppressed atomic.Int64
}

// CountAfter is how long after the first line left out its count is
// written, if no line let through has written it by then.
const CountAfter = 2 * time.Second

// NewLines returns a bound of a burst of ten lines, then one a second.
func NewLines() *Lines { return &Lines{limit: rate.NewLimiter(1, 10)} }

// Error writes msg to l at error level, unless over the bound.
func (b *Lines) Error(l *slog.Logger, msg string) {
	if !b.limit.Allow() {
		if b.suppressed.Add(1) == 1 {
			time.AfterFunc(CountAfter, func() {
				if left := b.suppressed.Swap(0); left > 0 {
					l.Error(msg, logkey.Suppressed, left)
				}
			})
		}
		return
	}
	if left := b.suppressed.Swap(0); left > 0 {
		l.Error(msg, logkey.Suppressed, left)
		return
	}
	l.Error(msg)
}

// SetLimit changes the rate lines are let through at (rate.Inf: all).
func (b *Lines) SetLimit(r rate.Limit) { b.limit.SetLimit(r) }
