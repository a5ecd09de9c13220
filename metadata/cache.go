package metadata

import (
	"sync"
	"time"

	"github.com/flowvault/flowvault/schemas/conductor"
)

// defCacheSize bounds the parsed definitions kept for the hot path.
const defCacheSize = 4096

// cacheKey names one lookup: a workflow version (0: the latest) or a task
// definition.
type cacheKey struct {
	task    bool
	name    string
	version int
}

// cacheEntry is a parsed definition and the subject sequence of the state
// it was read from. It is current as long as the read model's sequence for
// the subject is not greater, and certainly while the read model has
// applied nothing since at.
type cacheEntry struct {
	seq uint64
	// at is the read model's position (Store.readModelAt) when the entry
	// was last known current; 0: unknown.
	at uint64
	wf *conductor.WorkflowDef
	td *conductor.TaskDef
	// checked is when the log last said that a task definition the read
	// model lacks does not exist (LookupTaskDef): the entry answers "none"
	// for absentRecheck after it.
	checked time.Time
}

// defCache holds parsed definitions so that the engine's hot path does not
// parse JSON. Entries are replaced, never mutated.
type defCache struct {
	mu  sync.Mutex
	max int
	m   map[cacheKey]cacheEntry
}

func newDefCache(max int) *defCache {
	return &defCache{max: max, m: make(map[cacheKey]cacheEntry)}
}

// get returns the entry for k if it reflects subject sequence seq or later.
func (c *defCache) get(k cacheKey, seq uint64) (cacheEntry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[k]
	if !ok || e.seq < seq {
		return cacheEntry{}, false
	}
	return e, true
}

// unchanged returns the entry for k if the read model has applied nothing
// since it was last known current: then no read is needed to trust it.
func (c *defCache) unchanged(k cacheKey, at uint64) (cacheEntry, bool) {
	if at == 0 {
		return cacheEntry{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[k]
	return e, ok && e.at == at
}

// recheck claims the log's lookup of a task definition whose cached
// "none" e has expired: the first caller gets true and the entry is
// renewed, so that the callers after it answer "none" rather than all
// asking the log at once.
func (c *defCache) recheck(k cacheKey, e cacheEntry, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	cur, ok := c.m[k]
	if !ok {
		return true // made room for another: nobody holds the name's lookup
	}
	if cur.td != nil || cur.seq != e.seq || !cur.checked.Equal(e.checked) {
		return false
	}
	cur.checked = now
	c.m[k] = cur
	return true
}

// put stores e unless a newer entry is already there. When the cache is
// full an arbitrary entry makes room.
func (c *defCache) put(k cacheKey, e cacheEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.m[k]; ok && old.seq > e.seq {
		return
	}
	if _, ok := c.m[k]; !ok && len(c.m) >= c.max {
		for victim := range c.m {
			delete(c.m, victim)
			break
		}
	}
	c.m[k] = e
}
