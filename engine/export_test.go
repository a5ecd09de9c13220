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
