package executions

import (
	"context"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/projections/executions/query"
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

// PageKeysRead returns how many keys of workflow id reading a page of its
// tasks by WorkflowTaskPage took.
func PageKeysRead(r *Reader, id string, match func(string) bool, start, count int) (int, error) {
	_, _, _, _, keys, err := r.workflowTaskPage(id, match, start, count)
	return keys, err
}

// WholeTaskReads returns a reader of r's store whose task searches read
// every task of the workflows they find tasks of, as they did before a
// task was read alone: the answers the searches must give.
func WholeTaskReads(r *Reader) *Reader {
	return &Reader{r: r.r, store: r.store, wholeTasks: true}
}

// TaskSearchKeysRead returns how many keys of workflows SearchTasks took
// to answer s.
func TaskSearchKeysRead(r *Reader, s query.Search) (int, error) {
	_, c, err := r.searchPage(context.Background(), s, func(c *wfCache, w *engine.Workflow, t *engine.Task) { c.view(w, t) })
	if c == nil {
		return 0, err
	}
	return c.keys, err
}

// ReadWholeUpTo has task searches read whole the workflows of up to n
// tasks until restore (see readWholeUpTo). Tests that use it must not run
// in parallel.
func ReadWholeUpTo(n int) (restore func()) {
	was := readWholeUpTo
	readWholeUpTo = n
	return func() { readWholeUpTo = was }
}

// TaskKey is the read model's key of workflow id's i-th task.
func TaskKey(id string, i int) []byte { return taskKey(eventlog.Token(id), i) }
