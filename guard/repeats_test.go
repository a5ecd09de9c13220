package guard

import (
	"strconv"
	"testing"
	"time"
)

// repeats remembers at most maxRepeats failures, however many distinct
// workflows or keys fail: a failed compaction of each of ever more
// workflows must not grow it for good.
func TestRepeatsBounded(t *testing.T) {
	t.Parallel()
	var r repeats
	now := time.Unix(1_000_000, 0)
	for i := range 3 * maxRepeats {
		if ok, _ := r.log(strconv.Itoa(i), now); !ok {
			t.Fatalf("the first failure of %d not logged", i)
		}
	}
	if n := len(r.seen); n > maxRepeats {
		t.Fatalf("%d failures remembered, want at most %d", n, maxRepeats)
	}
}
