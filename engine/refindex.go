package engine

// refIndex finds a decision's tasks by reference name. A decision asks,
// for every finished task, whether its successor exists, and a scan of
// the task list for each made deciding over n tasks O(n²).
type refIndex struct {
	latest map[string]int // reference name → index of its newest instance
	n      int            // the task list's first n tasks are indexed
	last   *Task          // the n-th task when it was indexed
}

// scanBelow is the task count up to which scanning the list is cheaper
// than building its index.
var scanBelow = 32

// latest returns the newest instance of the task with reference name ref,
// or nil: Workflow.LatestByRef, from the index.
func (d *decision) latest(ref string) *Task {
	ts, x := d.w.Tasks, &d.refs
	if len(ts) <= scanBelow {
		return d.w.LatestByRef(ref)
	}
	// Within a decision the task list grows, has a task replaced by its
	// changed copy at the same index (same reference name), or is cut by
	// a reset, after which any task at the indexed length is one
	// appended since: an object the index has not seen.
	if x.latest == nil || len(ts) < x.n || x.n > 0 && ts[x.n-1] != x.last {
		x.latest, x.n = make(map[string]int, len(ts)), 0
	}
	for ; x.n < len(ts); x.n++ {
		x.latest[ts[x.n].Ref] = x.n
	}
	if x.n > 0 {
		x.last = ts[x.n-1]
	}
	if i, ok := x.latest[ref]; ok {
		return ts[i]
	}
	return nil
}
