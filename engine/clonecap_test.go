package engine_test

import (
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// A decision copies its workflow's task list once, the task it schedules
// included: the result of a task in a row of n, which schedules the next,
// allocates about one list of n pointers, not that and a larger one for
// the append. Decided without the harness, whose checks allocate.
func TestADecisionCopiesTheTaskListOnce(t *testing.T) {
	const n = 4000
	tasks := make([]string, n)
	for i := range tasks {
		tasks[i] = fmt.Sprintf(`{"name":"step","taskReferenceName":"s%d"}`, i)
	}
	def := parseDef(t, `{"name":"seq","version":1,"tasks":[`+strings.Join(tasks, ",")+`]}`)
	decide := func(w *engine.Workflow, trig engine.Trigger) *engine.Workflow {
		t.Helper()
		d, err := engine.Decide(engine.Input{State: w, Trigger: trig, Now: epoch})
		if err != nil {
			t.Fatal(err)
		}
		return d.State
	}
	w := decide(nil, engine.Start{WorkflowID: "wf-1", Def: def})
	// The list grows to n-1 tasks, the last taken.
	for i := range n - 2 {
		id := w.Tasks[i].ID
		w = decide(w, engine.Take{TaskID: id, WorkerID: "w1"})
		w = decide(w, engine.Result{Result: conductor.TaskResult{TaskID: id, WorkflowInstanceID: w.ID, Status: conductor.TaskCompleted}})
	}
	last := w.Tasks[n-2].ID
	w = decide(w, engine.Take{TaskID: last, WorkerID: "w1"})
	in := engine.Input{State: w, Now: epoch, Trigger: engine.Result{Result: conductor.TaskResult{TaskID: last, WorkflowInstanceID: w.ID, Status: conductor.TaskCompleted}}}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	d, err := engine.Decide(in)
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.State.Tasks) != n {
		t.Fatalf("%d tasks after the result, want the next scheduled: %d", len(d.State.Tasks), n)
	}
	list := uint64(8 * n)
	if got := after.TotalAlloc - before.TotalAlloc; got > list+list/2 {
		t.Errorf("the result allocated %d bytes, a list of %d tasks is %d: the list copied twice", got, n, list)
	}
}
