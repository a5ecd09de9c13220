package guard

import (
	"sync"
	"time"
)

const (
	// warnEvery is how often a failure that repeats pass after pass is
	// logged again while it lasts.
	warnEvery = 10 * time.Minute
	// maxRepeats bounds the failures a repeats remembers: twice what a
	// pass lists.
	maxRepeats = 2 * passSize
)

// repeats tells which failures of the workflows or keys a compaction pass
// retries are worth a line: the first, then one every warnEvery while the
// same one keeps failing, with how many were left out since. A workflow
// whose compaction keeps failing, or a key that keeps failing to erase,
// for a reason that does not fail the pass (Run does not back off), is
// retried every pass, four a second: logged each time, it filled the log
// with the same line, forever. It is safe for concurrent use.
type repeats struct {
	mu   sync.Mutex
	seen map[string]*repeat
}

type repeat struct {
	logged time.Time
	left   int
}

// log reports whether a failure of id at now is to be logged, and how
// many of id's failures were not since its last line.
func (r *repeats) log(id string, now time.Time) (ok bool, left int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if p := r.seen[id]; p != nil {
		if now.Sub(p.logged) < warnEvery {
			p.left++
			return false, 0
		}
		left = p.left
		*p = repeat{logged: now}
		return true, left
	}
	if r.seen == nil {
		r.seen = map[string]*repeat{}
	}
	if len(r.seen) >= maxRepeats {
		// More failing than passes retry at once: most are long gone (a
		// workflow compacted since), and those still failing are logged
		// once more, which bounds the memory at no cost to a scan.
		clear(r.seen)
	}
	r.seen[id] = &repeat{logged: now}
	return true, 0
}
