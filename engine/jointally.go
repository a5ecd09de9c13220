package engine

import (
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// joinTally counts, for each JOIN a decision looked at, how many of the
// tasks it waits for have not ended and how many failed for good, so that
// the end of one branch of a fork of n costs the JOIN O(1) until the
// last: looking at every branch at each branch's end made a fork O(n²).
//
// The counts are kept by Apply, one state's at a time as refIndex is (its
// owner; Clone hands it on), across the events that append a task or
// change one's status: whatever else happens (a reset, a removal, a pause
// or resume, an upgrade, the end), Apply drops it and the next decision
// counts again. A state loaded from the read model or the log has none.
// The counts only tell a JOIN that waits from one that may go on: the
// latter is then looked at whole, as every JOIN once was, which builds
// its output (or names the task that failed it) from the tasks.
type joinTally struct {
	owner *Workflow
	joins map[string]*joinCount // JOIN task id → its counts
	refs  map[string]*joinedRef // reference name, iteration's suffix included → what is counted of it
}

// joinCount counts the tasks one JOIN waits for, each as often as its
// joinRefs name it.
type joinCount struct {
	refs      []string // the JOIN's joinRefs when counted
	iteration int
	wait      int // not ended yet (or none), or failed while paused
	fail      int // ended unsuccessfully, and not held for resume
	// passed are the refs of branches a jump passed over, left out of
	// the counts: only a reset or a jump, which drop the counts, changes
	// which they are.
	passed map[string]bool
}

// joinedRef is the newest instance of a reference name a JOIN waits for,
// as counted.
type joinedRef struct {
	id    string // "" while it has none
	state joinState
	by    []*joinCount // the JOINs that count it, once per naming
}

type joinState uint8

const (
	joinWaits joinState = iota
	joinFails
	joinEnded // succeeded: evaluateJoin still asks whether a SKIPPED one is reached
)

// joinStateOf is what evaluateJoin makes of t, the newest instance of a
// task a JOIN waits for (nil: none yet).
func joinStateOf(t *Task) joinState {
	switch {
	case t == nil:
		return joinWaits
	case unsuccessful(t.Status) && !t.Held:
		return joinFails
	case !conductor.TaskSuccessful(t.Status):
		return joinWaits
	}
	return joinEnded
}

func (c *joinCount) add(s joinState, n int) {
	switch s {
	case joinWaits:
		c.wait += n
	case joinFails:
		c.fail += n
	}
}

func (r *joinedRef) move(id string, s joinState) {
	if r.id == id && r.state == s {
		return
	}
	for _, c := range r.by {
		c.add(r.state, -1)
		c.add(s, 1)
	}
	r.id, r.state = id, s
}

// joinWaits reports whether join, which waits for refs (see joinRefs),
// has a task to wait for and none that failed it: evaluateJoin need not
// look at them one by one. passed are the refs it does not wait for
// (passedOverBranch).
func (d *decision) joinWaits(join *Task, refs []string) (waits bool, passed map[string]bool) {
	x := d.w.joins
	if x == nil || x.owner != d.w {
		x = &joinTally{owner: d.w, joins: map[string]*joinCount{}, refs: map[string]*joinedRef{}}
		d.w.joins = x
	}
	c := x.joins[join.ID]
	if c != nil && !sameRefs(c.refs, refs) {
		// Another list than the one counted (the fork it follows was
		// scheduled again): count everything again.
		*x = joinTally{owner: d.w, joins: map[string]*joinCount{}, refs: map[string]*joinedRef{}}
		c = nil
	}
	if c == nil {
		c = &joinCount{refs: refs, iteration: join.Iteration}
		for _, ref := range refs {
			if d.passedOverBranch(ref, join.Iteration) {
				if c.passed == nil {
					c.passed = map[string]bool{}
				}
				c.passed[ref] = true
				continue
			}
			ref = iterRef(ref, join.Iteration)
			r := x.refs[ref]
			if r == nil {
				t := d.latest(ref)
				r = &joinedRef{state: joinStateOf(t)}
				if t != nil {
					r.id = t.ID
				}
				x.refs[ref] = r
			}
			r.by = append(r.by, c)
			c.add(r.state, 1)
		}
		x.joins[join.ID] = c
	}
	return c.fail == 0 && c.wait > 0, c.passed
}

// sameRefs reports whether a and b are one list: joinRefs hands out the
// definition's joinOn or the fork's Forked, never a copy.
func sameRefs(a, b []string) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

// followJoins keeps w's join counts across ev (see joinTally), or drops
// them.
func (w *Workflow) followJoins(ev schemas.Event) {
	x := w.joins
	if x == nil {
		return
	}
	if x.owner != w {
		w.joins = nil
		return
	}
	var t *Task
	switch e := ev.(type) {
	case *schemas.TaskScheduled:
		t = w.Tasks[len(w.Tasks)-1] // the newest instance of its reference name
	case *schemas.TaskStarted:
		t = w.task(e.TaskID)
	case *schemas.TaskUpdated:
		t = w.task(e.TaskID)
	case *schemas.TaskLogged, *schemas.VariablesUpdated, *schemas.ValuesMasked, *schemas.SecretsSealed, *schemas.WorkflowRunAs:
		return
	default:
		w.joins = nil
		return
	}
	if t == nil {
		w.joins = nil
		return
	}
	r := x.refs[t.Ref]
	if r == nil {
		return
	}
	if _, scheduled := ev.(*schemas.TaskScheduled); scheduled || r.id == t.ID {
		r.move(t.ID, joinStateOf(t))
	}
}
