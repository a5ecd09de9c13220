package engine

import "fmt"

// IndexAlways makes every decision find tasks by reference name through
// its index, however few tasks the workflow has.
func IndexAlways() { scanBelow = 0 }

// Forgetful returns a copy of w that has forgotten what earlier decisions
// knew of its tasks (see sweep and refIndex): its next decision looks at
// every task and indexes them anew, as one on a state the executor loads
// (from the read model or the log) does.
func Forgetful(w *Workflow) *Workflow {
	owned := w.refs != nil && w.refs.owner == w
	c := w.Clone()
	if owned {
		w.refs.owner = w // the copy forgets: w keeps its index
	}
	c.sweep, c.refs = sweep{}, nil
	return c
}

// Reown hands w's index back to w, as if no decision had taken it over:
// a benchmark decides on one state again and again, where the executor
// decides on the state each decision leaves. The decisions only grow
// copies of w's task list, so the index fits w or, grown past it, is
// rebuilt by its own check.
func Reown(w *Workflow) {
	if w.refs != nil {
		w.refs.owner = w
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
