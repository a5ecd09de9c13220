package engine

// IndexAlways makes every decision find tasks by reference name through
// its index, however few tasks the workflow has.
func IndexAlways() { scanBelow = 0 }

// WithoutSweep returns a copy of w that has forgotten what earlier
// decisions knew of its tasks (see sweep): its next decision looks at
// every task, as a state folded from the log does.
func WithoutSweep(w *Workflow) *Workflow {
	c := w.Clone()
	c.sweep = sweep{}
	return c
}
