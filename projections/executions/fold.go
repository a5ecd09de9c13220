package executions

import (
	"fmt"
	"maps"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/schemas"
)

// foldRecord applies one record's events to w (engine.Apply), but makes
// the output merges itself: a DO_WHILE's output holds an entry per
// iteration and is merged into at every one, and engine.Apply copies the
// map at each merge, so a record of n iterations (a loop the decider runs
// alone does up to a thousand in one decision) cost O(n²) to fold. The
// first merge into a task's output in the record copies it; the record's
// later merges into that task go into the copy. Nothing outside the fold
// holds the copy: the state before the record (snapshot, recent.tasks)
// holds the map it copied, and the tasks that held the copy in between
// are replaced in w by Apply's own copies. The engine makes the same
// reuse within one decision (engine/apply.go, fresh).
//
// It is a variable so that tests fold the same records with plain
// engine.Apply and compare the read models.
var foldRecord = foldReusing

// foldReusing is foldRecord's implementation: what the events hold is
// applied as engine.Apply would, and the state is the same.
func foldReusing(w *engine.Workflow, events []schemas.Event) (*engine.Workflow, error) {
	// The output maps this fold made, by task id. One that no longer is
	// its task's output (an event replaced it) is not reused.
	var own map[string]map[string]any
	for _, ev := range events {
		up, merge := ev.(*schemas.TaskUpdated)
		var t *engine.Task
		if merge && up.MergeOutput && !up.KeepOutput && w != nil {
			t = w.TaskByID(up.TaskID)
		}
		if t == nil {
			if !keepsOutputs(ev) {
				// A reset, removal or compaction may hand a map to
				// another task, or rewrite it: make no assumption past it.
				own = nil
			}
			var err error
			if w, err = engine.Apply(w, ev); err != nil {
				return nil, err
			}
			continue
		}
		out, ok := own[up.TaskID]
		if !ok || !engine.SameMap(out, t.Output) {
			out = make(map[string]any, len(t.Output)+len(up.Output))
			maps.Copy(out, t.Output)
			if own == nil {
				own = map[string]map[string]any{}
			}
			own[up.TaskID] = out
		}
		maps.Copy(out, up.Output)
		for _, k := range up.DropOutput {
			delete(out, k)
		}
		// The rest of the update (status, times, worker) is Apply's: it
		// leaves the output as it is and replaces the task by a copy.
		rest := *up
		rest.MergeOutput, rest.KeepOutput, rest.Output, rest.DropOutput = false, true, nil, nil
		var err error
		if w, err = engine.Apply(w, &rest); err != nil {
			return nil, err
		}
		updated := w.TaskByID(up.TaskID)
		if updated == nil || updated == t {
			return nil, fmt.Errorf("workflow %s: update of task %s left no copy of it to merge into", w.ID, up.TaskID)
		}
		updated.Output = out
	}
	return w, nil
}

// keepsOutputs reports whether ev leaves the tasks' output maps where
// they are: it changes one task's status or log, adds a task with an
// output of its own, or changes the workflow's head.
func keepsOutputs(ev schemas.Event) bool {
	switch ev.(type) {
	case *schemas.TaskUpdated, *schemas.TaskStarted, *schemas.TaskScheduled, *schemas.TaskLogged,
		*schemas.VariablesUpdated, *schemas.WorkflowStatusChanged:
		return true
	}
	return false
}
