package workers

import (
	"math"
	"testing"
	"time"

	"github.com/flowvault/flowvault/schemas/conductor"
)

// A running task's lease is extended every half of its response timeout,
// at least every 100 ms, and at most every 12 hours: a timeout past
// time.Duration's 292 years must not wrap to a negative period.
func TestLeaseEvery(t *testing.T) {
	for _, tt := range []struct {
		timeout int64
		want    time.Duration
	}{
		{0, 100 * time.Millisecond},
		{60, 30 * time.Second},
		{3600, 30 * time.Minute},
		{7 * 24 * 3600, 12 * time.Hour},
		{math.MaxInt64, 12 * time.Hour},
	} {
		if got := leaseEvery(&conductor.Task{ResponseTimeoutSeconds: tt.timeout}); got != tt.want {
			t.Errorf("response timeout %d s: lease extended every %s, want %s", tt.timeout, got, tt.want)
		}
	}
}
