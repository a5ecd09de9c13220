package engine

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
