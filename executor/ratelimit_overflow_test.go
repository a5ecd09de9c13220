package executor

import (
	"testing"

	"github.com/flowvault/flowvault/schemas/conductor"
)

// A rateLimitFrequencyInSeconds past time.Duration's 292 years (accepted
// by validation) is a window as long as one can be, not one that wrapped
// to negative and limits nothing.
func TestRateLimitWindowDoesNotOverflow(t *testing.T) {
	n, per := rateLimitOf(&conductor.TaskDef{RateLimitPerFrequency: 1, RateLimitFrequencyInSeconds: 10_000_000_000})
	if n != 1 || per <= 0 {
		t.Fatalf("limit %d per %v: the window overflowed", n, per)
	}
}
