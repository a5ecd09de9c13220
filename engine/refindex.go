package engine

// refIndex finds a decision's tasks by reference name. A decision asks,
// for every finished task, whether its successor exists, and a scan of
// the task list for each made deciding over n tasks O(n²); building the
// index anew in every decision made a workflow of n tasks O(n²) still.
//
// The index stays with the state a decision leaves, for the next one, and
// with the states folded from it. It is one state's at a time, its owner:
// Clone hands it on to the copy, which is the state the next decision
// changes, and a state that no longer owns it builds its own. Two states
// that went apart from one (a decision whose append lost to another
// engine's, and the state caught up with the log instead) never share it:
// task ids are derived, so the same id at the same place in both lists
// would not tell that the lists differ.
type refIndex struct {
	owner  *Workflow
	latest map[string]int // reference name → index of its newest instance
	byID   map[string]int // task id → index (see Workflow.taskIndex)
	n      int            // the task list's first n tasks are indexed
	lastID string         // the id of the n-th task when it was indexed
	maxSeq int            // the highest Seq of the indexed tasks
}

// scanBelow is the task count up to which scanning the list is cheaper
// than building its index.
var scanBelow = 32

// latest returns the newest instance of the task with reference name ref,
// or nil: Workflow.LatestByRef, from the index.
func (d *decision) latest(ref string) *Task {
	ts := d.w.Tasks
	if len(ts) <= scanBelow {
		return d.w.LatestByRef(ref)
	}
	if i, ok := d.w.indexed().latest[ref]; ok {
		return ts[i]
	}
	return nil
}

// OwnIndex makes w own an index of its tasks, through which Apply then
// finds the task an event names (the index is built at the first lookup
// past scanBelow tasks, and kept up to date by its own check) instead of
// a scan that meets a branch in the middle of a fork after half the list.
// It is for a state one goroutine folds record after record, as the
// executions read model does its recent states: a state loaded to fold
// one record would pay for all of the index to find one task. A Clone
// takes the index over, as it does a decision's.
func (w *Workflow) OwnIndex() {
	if w.refs == nil || w.refs.owner != w {
		w.refs = &refIndex{owner: w}
	}
}

// indexed brings the state's index up to date with its task list and
// returns it.
func (w *Workflow) indexed() *refIndex {
	ts, x := w.Tasks, w.refs
	if x == nil || x.owner != w {
		x = &refIndex{owner: w}
		w.refs = x
	}
	// The task list of one state grows, has a task replaced by its
	// changed copy at the same index (same id and reference name), or is
	// cut (a reset, a DO_WHILE's iterations past keepLastN), after which
	// the task at the indexed length, if any, is another one: ids never
	// repeat within one workflow's history. Comparing ids rather than
	// objects keeps the index across the copies Apply makes of the newest
	// task, which a pointer check rebuilt every time.
	if x.latest == nil || len(ts) < x.n || x.n > 0 && ts[x.n-1].ID != x.lastID {
		x.latest, x.byID, x.n, x.maxSeq = make(map[string]int, len(ts)), make(map[string]int, len(ts)), 0, 0
	}
	for ; x.n < len(ts); x.n++ {
		x.latest[ts[x.n].Ref] = x.n
		x.byID[ts[x.n].ID] = x.n
		x.maxSeq = max(x.maxSeq, ts[x.n].Seq)
	}
	if x.n > 0 {
		x.lastID = ts[x.n-1].ID
	}
	return x
}
