package engine

import (
	"fmt"
	"slices"
)

// IndexAlways makes every decision find tasks by reference name through
// its index, however few tasks the workflow has.
func IndexAlways() { scanBelow = 0 }

// Forgetful returns a copy of w that has forgotten what earlier decisions
// knew of its tasks (see sweep, refIndex and joinTally): its next decision looks at
// every task and indexes them anew, as one on a state the executor loads
// (from the read model or the log) does.
func Forgetful(w *Workflow) *Workflow {
	owned := w.refs != nil && w.refs.owner == w
	counts := w.joins != nil && w.joins.owner == w
	c := w.Clone()
	if owned {
		w.refs.owner = w // the copy forgets: w keeps its index
	}
	if counts {
		w.joins.owner = w // and its join counts
	}
	c.sweep, c.refs, c.joins = sweep{}, nil, nil
	return c
}

// Reown hands w's index back to w, as if no decision had taken it over:
// a benchmark decides on one state again and again, where the executor
// decides on the state each decision leaves. The decisions only grow
// copies of w's task list, so the index fits w or, grown past it, is
// rebuilt by its own check.
//
// Its join counts too: they hold what the decision applied to them, and
// another decision on w applies the same again, which leaves them as
// they are (a task counted as it is now is not counted again).
func Reown(w *Workflow) {
	if w.refs != nil {
		w.refs.owner = w
	}
	if w.joins != nil {
		w.joins.owner = w
	}
}

// IndexedClone returns a clone of w that owns an index of its tasks,
// built now, leaving w's own index with w.
func IndexedClone(w *Workflow) *Workflow {
	owned := w.refs != nil && w.refs.owner == w
	c := w.Clone()
	if owned {
		w.refs.owner = w
	}
	c.refs = nil
	c.indexed()
	return c
}

// IndexAgrees reports where the index w owns finds other tasks, by id or
// by reference name, than a scan of its task list finds.
func IndexAgrees(w *Workflow) error {
	if w.refs == nil || w.refs.owner != w {
		return fmt.Errorf("workflow %s owns no index", w.ID)
	}
	x := w.indexed() // as a lookup brings it up to date
	for i, t := range w.Tasks {
		if got := w.taskIndex(t.ID); got != i {
			return fmt.Errorf("task %s (%s) is at %d, its index says %d", t.ID, t.Ref, i, got)
		}
		if got, want := x.latest[t.Ref], w.LatestByRef(t.Ref); w.Tasks[got] != want {
			return fmt.Errorf("newest %s is %s, its index says %s", t.Ref, want.ID, w.Tasks[got].ID)
		}
	}
	if got, want := len(x.byID), len(w.Tasks); got != want {
		return fmt.Errorf("index holds %d ids, the list %d tasks", got, want)
	}
	return nil
}

// JoinCountsAgree reports where the join counts w owns differ from a
// count of its task list made now, and how many JOINs they count.
func JoinCountsAgree(w *Workflow) (int, error) {
	x := w.joins
	if x == nil || x.owner != w {
		return 0, nil
	}
	for ref, r := range x.refs {
		t := w.LatestByRef(ref)
		id := ""
		if t != nil {
			id = t.ID
		}
		if r.id != id || r.state != joinStateOf(t) {
			return 0, fmt.Errorf("newest %s is %q (state %d), counted as %q (state %d)", ref, id, joinStateOf(t), r.id, r.state)
		}
	}
	d := &decision{w: w}
	d.plan, _ = w.planFor()
	for join, c := range x.joins {
		want := joinCount{refs: c.refs, iteration: c.iteration}
		for _, ref := range c.refs {
			if passed := d.passedOverBranch(ref, c.iteration); passed != c.passed[ref] {
				return 0, fmt.Errorf("JOIN %s counts %s passed over %v, its branch %v", join, ref, c.passed[ref], passed)
			}
			if c.passed[ref] {
				continue
			}
			want.add(joinStateOf(w.LatestByRef(iterRef(ref, c.iteration))), 1)
		}
		if c.wait != want.wait || c.fail != want.fail {
			return 0, fmt.Errorf("JOIN %s counts %d waiting and %d failed, its tasks %d and %d", join, c.wait, c.fail, want.wait, want.fail)
		}
	}
	return len(x.joins), nil
}

// SweepAgrees reports where the sweep w holds for its next decision
// differs from a look at its task list made now: its open list ascending
// and below where it stopped, and as many quiet tasks (running, not in
// the open list) below it as it counts.
func SweepAgrees(w *Workflow) error {
	s := w.sweep
	if !s.fits(w.Tasks) {
		return nil // the next decision looks at every task
	}
	if !slices.IsSorted(s.open) || len(s.open) > 0 && s.open[len(s.open)-1] >= s.next {
		return fmt.Errorf("open list %v past the %d tasks looked at or out of order", s.open, s.next)
	}
	n := 0
	for i, t := range w.Tasks[:s.next] {
		if !slices.Contains(s.open, i) && quiet(t) {
			n++
		}
		if !slices.Contains(s.open, i) && t.Active() && !quiet(t) {
			return fmt.Errorf("task %s (%s, %s) runs, neither open nor quiet", t.Ref, t.Type, t.Status)
		}
	}
	if n != s.quiet {
		return fmt.Errorf("%d quiet tasks, the sweep counts %d", n, s.quiet)
	}
	return nil
}

// SweepCounts returns how many tasks the sweep w holds keeps open and how
// many it counts quiet.
func SweepCounts(w *Workflow) (open, quiet int) { return len(w.sweep.open), w.sweep.quiet }

// OwnsIndex reports whether w owns an index of its tasks.
func OwnsIndex(w *Workflow) bool { return w.refs != nil && w.refs.owner == w }
