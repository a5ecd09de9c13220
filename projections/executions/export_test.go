package executions

import (
	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/schemas"
)

// FoldPlainly has the projections fold records with plain engine.Apply,
// event by event, until restore: the read model they build is the
// reference engine.ApplyRecord's must equal. Tests that use it must not run in
// parallel.
func FoldPlainly() (restore func()) {
	foldRecord = foldPlain
	return func() { foldRecord = engine.ApplyRecord }
}

func foldPlain(w *engine.Workflow, events []schemas.Event) (*engine.Workflow, error) {
	for _, ev := range events {
		var err error
		if w, err = engine.Apply(w, ev); err != nil {
			return nil, err
		}
	}
	return w, nil
}

// IndexFrom has the projections fold states of n tasks or more through
// an index of their tasks until restore (see indexFrom). Tests that use
// it must not run in parallel.
func IndexFrom(n int) (restore func()) {
	was := indexFrom
	indexFrom = n
	return func() { indexFrom = was }
}

// CheckTimers has Apply hand check, after every record, the deadlines it
// counted for the state it folded (see timers), until restore. Tests that
// use it must not run in parallel.
func CheckTimers(check func(w *engine.Workflow, counted []int64)) (restore func()) {
	was := checkTimers
	checkTimers = check
	return func() { checkTimers = was }
}

// KeysRead returns how many keys of the read model reading workflow id
// took: by Workflow (withTasks) or by WorkflowHead.
func KeysRead(r *Reader, id string, withTasks bool) (int, error) {
	_, _, keys, err := r.workflowParts(id, withTasks)
	return keys, err
}

// TaskKeysRead returns how many keys of workflow wfID reading its task
// taskID by WorkflowTask took, and whether the task was where its lookup
// says (else the workflow's list was read).
func TaskKeysRead(r *Reader, wfID, taskID string) (keys int, direct bool, err error) {
	_, _, keys, direct, err = r.workflowTask(wfID, taskID)
	return keys, direct, err
}
