package executor

import (
	"context"
	"encoding/binary"
	"math"
	"slices"
	"time"

	"github.com/flowvault/flowvault/schemas/conductor"
)

// rateLimitPerFrequency (N) and rateLimitFrequencyInSeconds (F): at most
// N of a definition's tasks are handed to workers in any F seconds, as
// Conductor's sliding window does. A take beyond them is refused until
// the oldest take of the window leaves it. Each limited definition keeps
// the times of the takes of its window in one entry of the limits bucket
// (see limits.go); a NATS server that restarts forgets the windows, and
// the limit errs on the side of more for one window.

// rateLimitOf returns a definition's limit: 0 when it has none.
func rateLimitOf(td *conductor.TaskDef) (n int, per time.Duration) {
	if td == nil || td.RateLimitPerFrequency <= 0 {
		return 0, 0
	}
	f := 1 // Conductor's default frequency
	if td.RateLimitFrequencyInSeconds > 0 {
		f = td.RateLimitFrequencyInSeconds
	}
	// A window past time.Duration's 292 years is as good as one that
	// long; wrapped, it would be negative and limit nothing.
	return td.RateLimitPerFrequency, time.Duration(min(f, int(math.MaxInt64/time.Second))) * time.Second
}

// admitRate records a take of taskType at now unless n takes are in the
// window before it.
func (l *limits) admitRate(ctx context.Context, taskType string, n int, per time.Duration, now time.Time) error {
	return l.cas(ctx, limitKey("t.", taskType), "rate limit of "+taskType, func(old []byte) ([]byte, error) {
		from := now.Add(-per).UnixMilli()
		kept := slices.DeleteFunc(decodeTimes(old), func(t int64) bool { return t <= from })
		if len(kept) >= n {
			return nil, &LimitedError{TaskType: taskType, Limit: "rateLimitPerFrequency", Until: time.UnixMilli(kept[len(kept)-n]).Add(per)}
		}
		return encodeTimes(append(kept, now.UnixMilli())), nil
	})
}

func encodeTimes(times []int64) []byte {
	b := make([]byte, 0, 8*len(times))
	for _, t := range times {
		b = binary.BigEndian.AppendUint64(b, uint64(t))
	}
	return b
}

func decodeTimes(b []byte) []int64 {
	times := make([]int64, 0, len(b)/8)
	for ; len(b) >= 8; b = b[8:] {
		times = append(times, int64(binary.BigEndian.Uint64(b)))
	}
	return times
}
