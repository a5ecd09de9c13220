package executor

import (
	"container/list"

	"github.com/flowvault/flowvault/engine"
)

// cache is a shard's LRU of workflow states. Only the shard's goroutine
// uses it. Cached states are never modified: updates replace them.
type cache struct {
	max   int
	order *list.List // front = most recent; values are *entry
	items map[string]*list.Element
}

type entry struct {
	id string
	w  *engine.Workflow
}

func newCache(max int) *cache {
	return &cache{max: max, order: list.New(), items: make(map[string]*list.Element)}
}

func (c *cache) get(id string) (*engine.Workflow, bool) {
	el, ok := c.items[id]
	if !ok {
		return nil, false
	}
	c.order.MoveToFront(el)
	return el.Value.(*entry).w, true
}

// put caches w, unless it ended with nothing left to do: the next trigger
// of an ended workflow (a late result, a retry) is rare and can read it
// again, and each state kept is heap every collection marks. A workflow
// whose secrets await compaction stays, for its compaction.
func (c *cache) put(id string, w *engine.Workflow) {
	if w != nil && w.Terminal() && !w.AwaitsCompaction() {
		c.drop(id)
		return
	}
	if w != nil {
		_, _ = w.Def() // parse the definition now: cached states are shared read-only
	}
	if el, ok := c.items[id]; ok {
		el.Value.(*entry).w = w
		c.order.MoveToFront(el)
		return
	}
	c.items[id] = c.order.PushFront(&entry{id: id, w: w})
	for c.order.Len() > c.max {
		old := c.order.Back()
		c.order.Remove(old)
		delete(c.items, old.Value.(*entry).id)
	}
}

func (c *cache) drop(id string) {
	if el, ok := c.items[id]; ok {
		c.order.Remove(el)
		delete(c.items, id)
	}
}
