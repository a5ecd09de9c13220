package executor

import (
	"context"
	"errors"
	"testing"

	"github.com/flowvault/flowvault/fault"
)

// folded is a read model that has folded the starts up to asOf.
type folded struct {
	count int
	asOf  uint64
}

func (f *folded) RunningOf(context.Context, string) (int, uint64, error) { return f.count, f.asOf, nil }

// The quota counts the starts it admitted that the read model has not
// folded yet, and forgets them once it has: a lagging read model lets
// no principal past the limit.
func TestQuotaCountsStartsNotFolded(t *testing.T) {
	rm := &folded{}
	q := newQuota(3, rm)
	ctx := context.Background()
	admit := func(p string) (func(uint64), error) { return q.admit(ctx, p) }
	for seq := uint64(1); seq <= 3; seq++ {
		release, err := admit("alice")
		if err != nil {
			t.Fatalf("start %d: %v", seq, err)
		}
		release(seq)
	}
	if _, err := admit("alice"); !errors.Is(err, fault.ErrRateLimited) {
		t.Fatalf("a fourth start while the read model folded none: %v, want refused", err)
	}
	if _, err := admit("bob"); err != nil {
		t.Fatalf("another principal: %v", err)
	}
	// Folded: counted by the read model, no longer by the quota.
	rm.count, rm.asOf = 3, 3
	if _, err := admit("alice"); !errors.Is(err, fault.ErrRateLimited) {
		t.Fatalf("a fourth start once folded: %v, want refused", err)
	}
	rm.count = 2 // one ended
	release, err := admit("alice")
	if err != nil {
		t.Fatalf("a start once one ended: %v", err)
	}
	if _, err := admit("alice"); !errors.Is(err, fault.ErrRateLimited) {
		t.Fatalf("a start while another is checked: %v, want refused", err)
	}
	release(0) // not appended after all
	if _, err := admit("alice"); err != nil {
		t.Fatalf("a start once the other was given up: %v", err)
	}
}
