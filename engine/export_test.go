package engine

// IndexAlways makes every decision find tasks by reference name through
// its index, however few tasks the workflow has.
func IndexAlways() { scanBelow = 0 }

// Forgetful returns a copy of w that has forgotten what earlier decisions
// knew of its tasks (see sweep and refIndex): its next decision looks at
// every task and indexes them anew, as one on a state decoded from a read
// model does.
func Forgetful(w *Workflow) *Workflow {
	c := w.Clone()
	c.sweep, c.refs = sweep{}, nil
	return c
}

// Reown hands w's index back to w, as if no decision had taken it over:
// a benchmark decides on one state again and again, where the executor
// decides on the state each decision leaves. It holds only while no
// decision since grew the task list the index covers.
func Reown(w *Workflow) {
	if w.refs != nil {
		w.refs.owner = w
	}
}
