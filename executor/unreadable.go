package executor

import (
	"sync"

	"github.com/flowvault/flowvault/internal/logkey"
)

// maxUnreadable bounds the workflows remembered as stuck on an unreadable
// definition: past it the memory starts over, and each is warned of once
// more, rather than growing with a damaged log.
const maxUnreadable = 10000

// unreadable remembers the workflows whose recorded definition a decision
// found not to parse (engine.ErrUnreadableDef).
type unreadable struct {
	mu   sync.Mutex
	seen map[string]bool
}

// first reports whether wfID was not known to be stuck, and remembers it.
func (u *unreadable) first(wfID string) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.seen[wfID] {
		return false
	}
	if u.seen == nil || len(u.seen) >= maxUnreadable {
		u.seen = map[string]bool{}
	}
	u.seen[wfID] = true
	return true
}

// stuckUnreadable tells an operator, once, of workflow wfID, whose
// recorded definition a decision on trigger found not to parse. Every
// timer scan and recovery asks it again and is refused as a conflict,
// which they take quietly: the workflow would wait for good unseen. The
// line names it and no more: the parser's text may quote the definition.
func (e *Executor) stuckUnreadable(wfID, trigger string) {
	if !e.unreadable.first(wfID) {
		return
	}
	e.metrics.unreadable.Inc()
	e.cfg.Logger.Warn("workflow stuck: its recorded definition cannot be read; terminate or remove it",
		logkey.WorkflowID, wfID, logkey.Trigger, trigger)
}
