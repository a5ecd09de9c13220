package executions

import (
	"maps"
	"slices"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/projections"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// timers counts a workflow's deadlines (engine.Deadlines) by time, as the
// deadline index holds them for the state last stored: how many of its
// parts (the workflow, each task) need each time. A record changes a few
// tasks, and Apply replaces a task it changes, never changes one in
// place: the deadlines of a task the record left as it was are those
// counted, and the record's changes come down to those of the tasks it
// replaced or appended. A walk over every running task at each record
// cost a large fork most of its fold.
//
// A task's deadlines depend on it and on its workflow's status, which a
// record rarely changes (a pause, a resume, the end): counting anew then
// is simpler than keeping a count per status. A DO_WHILE's depend on the
// task list too (whether it holds the next iteration's first task, see
// engine.TaskDeadlines), so the loops' are computed anew at each record,
// with the workflow's own.
type timers struct {
	known bool
	// status is the workflow's when the tasks' deadlines were counted.
	status string
	count  map[int64]int
	// loops are the indexes of the DO_WHILE tasks; own is what they and
	// the workflow added to count.
	loops []int
	own   []int64
}

// timerChange is what a record changed of a workflow's timers: for each
// time it touched, whether the index held it before (count > 0). The
// projection keeps one for every workflow's records, which one goroutine
// folds in turn.
type timerChange struct {
	was   map[int64]bool
	times []int64
	buf   []int64 // a task's deadlines
}

// checkTimers, set by tests, is handed after every record the state
// folded and the deadlines counted for it (see CheckTimers).
var checkTimers func(w *engine.Workflow, counted []int64)

// recount counts w's deadlines anew; buf is scratch, handed back.
func (c *timers) recount(w *engine.Workflow, buf []int64) []int64 {
	c.known, c.status, c.loops, c.count, c.own = true, w.Status, c.loops[:0], nil, c.own[:0]
	if w.Terminal() {
		return buf
	}
	for i, t := range w.Tasks {
		if t.Type == conductor.TaskTypeDoWhile {
			c.loops = append(c.loops, i)
			continue
		}
		buf = engine.TaskDeadlines(w, t, buf[:0])
		for _, at := range buf {
			c.count = counted(c.count, at, 1)
		}
	}
	for _, at := range c.ownOf(w) {
		c.count = counted(c.count, at, 1)
	}
	return buf
}

// counted counts at n more times in count, made when first needed: most
// workflows need none.
func counted(count map[int64]int, at int64, n int) map[int64]int {
	if count == nil {
		count = make(map[int64]int)
	}
	if count[at] += n; count[at] == 0 {
		delete(count, at)
	}
	return count
}

// ownOf sets c.own to the deadlines of w's own and of its loops.
func (c *timers) ownOf(w *engine.Workflow) []int64 {
	c.own = engine.WorkflowDeadlines(w, c.own[:0])
	for _, i := range c.loops {
		c.own = engine.TaskDeadlines(w, w.Tasks[i], c.own)
	}
	return c.own
}

// add counts at n more times, noting in ch whether the index held it
// before.
func (c *timers) add(ch *timerChange, at int64, n int) {
	ch.note(at, c.count[at] > 0)
	c.count = counted(c.count, at, n)
}

// note notes that the index held at before the change, or did not, unless
// the change touched at already.
func (ch *timerChange) note(at int64, held bool) {
	if _, ok := ch.was[at]; !ok {
		ch.was[at] = held
		ch.times = append(ch.times, at)
	}
}

// sorted returns the distinct deadlines counted, in order.
func (c *timers) sorted() []int64 { return slices.Sorted(maps.Keys(c.count)) }

// storeTimers brings c, the deadlines of the state before the record
// (match's), to those of w, and writes the index entries of the times
// that came or went.
func (p *Projection) storeTimers(b *projections.Batch, w *engine.Workflow, match taskMatch, c *timers) error {
	ch := &p.timerChange
	if ch.was == nil {
		ch.was = make(map[int64]bool)
	}
	clear(ch.was)
	ch.times = ch.times[:0]
	if !c.known || !match.aligned || c.status != w.Status || w.Terminal() {
		for at := range c.count {
			ch.note(at, true)
		}
		ch.buf = c.recount(w, ch.buf)
		for at := range c.count {
			ch.note(at, false)
		}
	} else {
		for _, at := range c.own {
			c.add(ch, at, -1)
		}
		for _, i := range match.changed {
			t := w.Tasks[i]
			was := match.was(i, t)
			if t.Type == conductor.TaskTypeDoWhile {
				if was == nil {
					c.loops = append(c.loops, i)
				}
				continue
			}
			// The status is the same: was needs what it needed.
			if was != nil {
				ch.buf = engine.TaskDeadlines(w, was, ch.buf[:0])
				for _, at := range ch.buf {
					c.add(ch, at, -1)
				}
			}
			ch.buf = engine.TaskDeadlines(w, t, ch.buf[:0])
			for _, at := range ch.buf {
				c.add(ch, at, 1)
			}
		}
		for _, at := range c.ownOf(w) {
			c.add(ch, at, 1)
		}
	}
	if checkTimers != nil {
		checkTimers(w, c.sorted())
	}
	// In order, as a whole list's replacement wrote them.
	slices.Sort(ch.times)
	for _, at := range ch.times {
		switch now := c.count[at] > 0; {
		case now == ch.was[at]:
		case now:
			if err := b.Set(dueKey(at, w.ID), nil); err != nil {
				return err
			}
			p.delta.Timers++
		default:
			if err := b.Delete(dueKey(at, w.ID)); err != nil {
				return err
			}
			p.delta.Timers--
		}
	}
	return nil
}

// dropTimers deletes every index entry of c, a removed workflow's.
func (p *Projection) dropTimers(b *projections.Batch, wfID string, c *timers) error {
	for _, at := range c.sorted() {
		if err := b.Delete(dueKey(at, wfID)); err != nil {
			return err
		}
		p.delta.Timers--
	}
	*c = timers{}
	return nil
}
