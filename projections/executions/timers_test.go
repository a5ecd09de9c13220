package executions_test

import (
	"context"
	"fmt"
	"math"
	"slices"
	"testing"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/executor"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/projections"
	"github.com/flowvault/flowvault/projections/executions"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// The read model counts a workflow's deadlines record by record (a task
// the record left as it was needs what it needed): after every record,
// its deadline index holds what a walk over the state finds, through
// takes and results of tasks with timeouts, a WAIT, a pause and a resume,
// a decided loop that yields between its iterations, a terminate, a
// restart that drops the tasks, and a removal, each step folded in its
// own batch (the recent state kept) and, in a second pass, each folded
// by a projection that loads the state from the store first.
func TestTimerIndexFollowsEveryRecord(t *testing.T) {
	timed := parseDef(t, `{"name":"timed","version":1,"timeoutSeconds":600,"timeoutPolicy":"TIME_OUT_WF","tasks":[
	 {"name":"fork","taskReferenceName":"fork","type":"FORK_JOIN","forkTasks":[
	  [{"name":"step","taskReferenceName":"a","taskDefinition":{"name":"step","responseTimeoutSeconds":30,"timeoutSeconds":60,"pollTimeoutSeconds":20}}],
	  [{"name":"step","taskReferenceName":"b","taskDefinition":{"name":"step","responseTimeoutSeconds":40,"timeoutSeconds":90}}],
	  [{"name":"wait","taskReferenceName":"w","type":"WAIT","inputParameters":{"duration":"5 seconds"}}]]},
	 {"name":"join","taskReferenceName":"join","type":"JOIN","joinOn":["a","b","w"]},
	 {"name":"loop","taskReferenceName":"loop","type":"DO_WHILE","items":"${workflow.input.items}",
	  "loopOver":[{"name":"set","taskReferenceName":"set","type":"SET_VARIABLE","inputParameters":{"last":"${loop.output.loopItem}"}}]},
	 {"name":"step","taskReferenceName":"c","taskDefinition":{"name":"step","responseTimeoutSeconds":50}}]}`)
	for _, reload := range []bool{false, true} {
		t.Run(fmt.Sprintf("reload=%v", reload), func(t *testing.T) {
			store := testutil.OpenStore(t)
			reader := executions.NewReader(store)
			proj := executions.NewProjection()
			var seq uint64
			r := newRecorder(t, &seq)
			step := func(what string, trig engine.Trigger) {
				t.Helper()
				n := len(r.recs)
				r.decide(trig)
				if len(r.recs) == n {
					return
				}
				if reload {
					proj = executions.NewProjection()
				}
				if err := store.Update(executions.Name, func(b *projections.Batch) error { return proj.Apply(b, r.recs[n]) }); err != nil {
					t.Fatalf("%s: %v", what, err)
				}
				due, err := reader.Due(context.Background(), math.MaxInt64/2, executor.Due{}, 1<<20)
				if err != nil {
					t.Fatal(err)
				}
				var got []int64
				for _, d := range due {
					if d.WorkflowID == r.id {
						got = append(got, d.At)
					}
				}
				want := engine.Deadlines(r.w)
				if r.w.Removed && !r.w.Archived {
					want = nil
				}
				if !slices.Equal(got, want) {
					t.Errorf("%s: the index holds %v, the state's deadlines are %v", what, got, want)
				}
			}
			work := func(ref string) {
				t.Helper()
				id := r.w.LatestByRef(ref).ID
				step("take "+ref, engine.Take{TaskID: id, WorkerID: "w", TaskType: "step"})
				step("result "+ref, engine.Result{Result: conductor.TaskResult{TaskID: id, WorkflowInstanceID: r.id, Status: conductor.TaskCompleted}})
			}
			step("start", engine.Start{WorkflowID: r.id, Def: timed, Request: conductor.StartWorkflowRequest{Input: map[string]any{"items": itemsOf(1500)}}})
			id := r.w.LatestByRef("a").ID
			step("take a", engine.Take{TaskID: id, WorkerID: "w", TaskType: "step"})
			step("pause", engine.Pause{})
			step("resume", engine.Resume{})
			step("result a", engine.Result{Result: conductor.TaskResult{TaskID: id, WorkflowInstanceID: r.id, Status: conductor.TaskCompleted}})
			work("b")
			r.now = r.now.Add(6e9) // the WAIT's time
			for i := 0; r.w.LatestByRef("c") == nil; i++ {
				if i > 10 {
					t.Fatal("the loop did not end")
				}
				step(fmt.Sprintf("tick %d", i), engine.Tick{})
			}
			step("terminate", engine.Terminate{Reason: "enough"})
			step("restart", engine.Restart{})
			work("a")
			step("remove", engine.Remove{Terminate: true})
		})
	}
}
