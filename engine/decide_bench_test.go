package engine_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// BenchmarkDecideLongWorkflow decides the result of the last of n SIMPLE
// tasks in a row, the n-1 before it completed, the result of the last
// of n branches of a FORK_JOIN (or FORK_JOIN_DYNAMIC) whose JOIN waits on
// all of them, and the result of the last iteration of a DO_WHILE over n
// items, and the start of a DO_WHILE over n items that the decider runs
// alone. A decision's cost should grow with n no faster than the state it
// folds.
//
//	go test -run - -bench DecideLongWorkflow ./engine
func BenchmarkDecideLongWorkflow(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("sequential=%d", n), func(b *testing.B) {
			tasks := make([]string, n)
			for i := range tasks {
				tasks[i] = fmt.Sprintf(`{"name":"step","taskReferenceName":"s%d"}`, i)
			}
			h := newHarness(b, `{"name":"seq","version":1,"tasks":[`+strings.Join(tasks, ",")+`]}`, nil)
			for i := range n - 1 {
				h.take(fmt.Sprintf("s%d", i))
				h.complete(fmt.Sprintf("s%d", i), nil)
			}
			benchResult(b, h, fmt.Sprintf("s%d", n-1))
		})
		b.Run(fmt.Sprintf("fork=%d", n), func(b *testing.B) {
			branches, refs := make([]string, n), make([]string, n)
			for i := range branches {
				refs[i] = fmt.Sprintf(`"b%d"`, i)
				branches[i] = fmt.Sprintf(`[{"name":"step","taskReferenceName":"b%d"}]`, i)
			}
			h := newHarness(b, `{"name":"fork","version":1,"tasks":[
			 {"name":"fork","taskReferenceName":"fork","type":"FORK_JOIN","forkTasks":[`+strings.Join(branches, ",")+`]},
			 {"name":"join","taskReferenceName":"join","type":"JOIN","joinOn":[`+strings.Join(refs, ",")+`]}]}`, nil)
			for i := range n - 1 {
				h.take(fmt.Sprintf("b%d", i))
				h.complete(fmt.Sprintf("b%d", i), nil)
			}
			benchResult(b, h, fmt.Sprintf("b%d", n-1))
		})
		b.Run(fmt.Sprintf("dynamicFork=%d", n), func(b *testing.B) {
			h := newHarness(b, benchForkDef, map[string]any{"tasks": dynamicForkTasks(n)})
			for i := range n - 1 {
				h.take(fmt.Sprintf("d%d", i))
				h.complete(fmt.Sprintf("d%d", i), nil)
			}
			benchResult(b, h, fmt.Sprintf("d%d", n-1))
		})
		b.Run(fmt.Sprintf("decidedLoop=%d", n), func(b *testing.B) {
			// The start of a loop of n SET_VARIABLE iterations, run by the
			// decider alone (up to yieldAfter rounds in one decision).
			items := make([]any, n)
			for i := range items {
				items[i] = int64(i)
			}
			def := parseDef(b, `{"name":"fast","version":1,"tasks":[
			 {"name":"loop","taskReferenceName":"loop","type":"DO_WHILE","items":"${workflow.input.items}",
			  "loopOver":[{"name":"set","taskReferenceName":"set","type":"SET_VARIABLE","inputParameters":{"last":"${loop.output.loopItem}"}}]}]}`)
			in := engine.Input{Trigger: engine.Start{WorkflowID: "wf-1", Def: def, Request: conductor.StartWorkflowRequest{Input: map[string]any{"items": items}}}, Now: epoch}
			for b.Loop() {
				if _, err := engine.Decide(in); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("loop=%d", n), func(b *testing.B) {
			items := make([]any, n)
			for i := range items {
				items[i] = int64(i)
			}
			h := newHarness(b, `{"name":"loop","version":1,"tasks":[
			 {"name":"loop","taskReferenceName":"loop","type":"DO_WHILE","items":"${workflow.input.items}",
			  "loopOver":[{"name":"step","taskReferenceName":"step"}]}]}`, map[string]any{"items": items})
			for i := 1; i < n; i++ {
				h.take(fmt.Sprintf("step__%d", i))
				h.complete(fmt.Sprintf("step__%d", i), nil)
			}
			benchResult(b, h, fmt.Sprintf("step__%d", n))
		})
	}
}

// benchForkDef forks the SIMPLE tasks of its input's tasks and joins them
// (dynamicForkTasks).
const benchForkDef = `{"name":"dynfork","version":1,"tasks":[
 {"name":"fork","taskReferenceName":"fork","type":"FORK_JOIN_DYNAMIC","dynamicForkTasksParam":"tasks",
  "inputParameters":{"tasks":"${workflow.input.tasks}"}},
 {"name":"join","taskReferenceName":"join","type":"JOIN"}]}`

// dynamicForkTasks are n SIMPLE tasks d0 to d<n-1>.
func dynamicForkTasks(n int) []any {
	tasks := make([]any, n)
	for i := range tasks {
		tasks[i] = map[string]any{"name": "step", "taskReferenceName": fmt.Sprintf("d%d", i)}
	}
	return tasks
}

// benchResult decides, over and over, the completion of the task ref of
// h's workflow, which must then complete.
func benchResult(b *testing.B, h *harness, ref string) {
	t := h.take(ref)
	in := h.input(engine.Result{Result: conductor.TaskResult{TaskID: t.ID, WorkflowInstanceID: h.w.ID, Status: conductor.TaskCompleted}})
	for b.Loop() {
		engine.Reown(h.w)
		d, err := engine.Decide(in)
		if err != nil {
			b.Fatal(err)
		}
		if d.State.Status != conductor.WorkflowCompleted {
			b.Fatalf("workflow %s after the last result", d.State.Status)
		}
	}
}

// BenchmarkDecideBigFork decides the result of the middle branch of a
// FORK_JOIN_DYNAMIC of n SIMPLE branches, every branch taken and the
// first half completed: a decision in the middle of a large fork, which
// finds the branch by id, looks at the JOIN and at the branches still
// running. It also asks Pending of the state that decision leaves, as the
// executor does after each. Neither cost should grow much with n.
//
//	go test -run - -bench DecideBigFork ./engine
func BenchmarkDecideBigFork(b *testing.B) {
	for _, n := range []int{500, 5000} {
		w, ids := takenFork(b, n)
		for i := range n / 2 {
			w = decideOn(b, w, engine.Result{Result: conductor.TaskResult{TaskID: ids[i], WorkflowInstanceID: w.ID, Status: conductor.TaskCompleted}})
		}
		in := engine.Input{State: w, Now: epoch, Trigger: engine.Result{Result: conductor.TaskResult{TaskID: ids[n/2], WorkflowInstanceID: w.ID, Status: conductor.TaskCompleted}}}
		var after *engine.Workflow
		b.Run(fmt.Sprintf("result/dynamicFork=%d", n), func(b *testing.B) {
			for b.Loop() {
				engine.Reown(w)
				d, err := engine.Decide(in)
				if err != nil {
					b.Fatal(err)
				}
				if len(d.Events) != 1 {
					b.Fatalf("%d events for a branch's result, want its update alone", len(d.Events))
				}
				after = d.State
			}
		})
		b.Run(fmt.Sprintf("pending/dynamicFork=%d", n), func(b *testing.B) {
			for b.Loop() {
				if engine.Pending(after) {
					b.Fatal("a fork of SIMPLE branches pending")
				}
			}
		})
	}
}

// takenFork decides a FORK_JOIN_DYNAMIC of n SIMPLE branches d0 to
// d<n-1> and the take of each, and returns the state the last take leaves
// and the branches' ids. Decided without the harness's checks, which cost
// more than the decisions at this size.
func takenFork(b *testing.B, n int) (*engine.Workflow, []string) {
	w := decideOn(b, nil, engine.Start{WorkflowID: "wf-1", Def: parseDef(b, benchForkDef), Request: conductor.StartWorkflowRequest{Input: map[string]any{"tasks": dynamicForkTasks(n)}}})
	ids := make([]string, n)
	for i := range n {
		ids[i] = w.LatestByRef(fmt.Sprintf("d%d", i)).ID
		w = decideOn(b, w, engine.Take{TaskID: ids[i], WorkerID: "w1"})
	}
	return w, ids
}

// decideOn decides trig on w and returns the state the decision leaves.
func decideOn(b *testing.B, w *engine.Workflow, trig engine.Trigger) *engine.Workflow {
	d, err := engine.Decide(engine.Input{State: w, Trigger: trig, Now: epoch})
	if err != nil {
		b.Fatalf("%T: %v", trig, err)
	}
	return d.State
}

// BenchmarkForkBranchEnds runs a whole FORK_JOIN_DYNAMIC of n SIMPLE
// branches, each taken and completed in turn, through the decider as the
// executor does (each decision on the state the one before left), and
// reports the cost per branch: the JOIN is looked at on each of the 2n
// decisions, and should cost each of them O(1) until the last.
//
//	go test -run - -bench ForkBranchEnds ./engine
func BenchmarkForkBranchEnds(b *testing.B) {
	for _, n := range []int{500, 5000} {
		def, tasks := parseDef(b, benchForkDef), dynamicForkTasks(n)
		b.Run(fmt.Sprintf("dynamicFork=%d", n), func(b *testing.B) {
			for b.Loop() {
				w := decideOn(b, nil, engine.Start{WorkflowID: "wf-1", Def: def, Request: conductor.StartWorkflowRequest{Input: map[string]any{"tasks": tasks}}})
				ids := map[string]string{}
				for _, t := range w.Tasks {
					ids[t.Ref] = t.ID
				}
				runThrough(b, w, n, func(_ *engine.Workflow, i int) string { return ids[fmt.Sprintf("d%d", i)] })
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/branch")
		})
	}
}

// runThrough takes and completes n tasks in turn, each decision on the
// state the one before left (w first), as the executor decides: id names
// the i-th task on the state the decisions so far left. The last must
// complete the workflow.
func runThrough(b *testing.B, w *engine.Workflow, n int, id func(w *engine.Workflow, i int) string) {
	for i := range n {
		tid := id(w, i)
		w = decideOn(b, w, engine.Take{TaskID: tid, WorkerID: "w1"})
		w = decideOn(b, w, engine.Result{Result: conductor.TaskResult{TaskID: tid, WorkflowInstanceID: w.ID, Status: conductor.TaskCompleted}})
	}
	if w.Status != conductor.WorkflowCompleted {
		b.Fatalf("workflow %s after the last task", w.Status)
	}
}

// BenchmarkApplyMiddleBranch folds an update of the middle branch of a
// FORK_JOIN_DYNAMIC of n SIMPLE branches into a state that scans for the
// task and one that owns an index of its tasks (Workflow.OwnIndex), as
// the read model's recent states of n >= 512 tasks do.
//
//	go test -run - -bench ApplyMiddleBranch ./engine
func BenchmarkApplyMiddleBranch(b *testing.B) {
	for _, n := range []int{500, 5000} {
		def, tasks := parseDef(b, benchForkDef), dynamicForkTasks(n)
		w := decideOn(b, nil, engine.Start{WorkflowID: "wf-1", Def: def, Request: conductor.StartWorkflowRequest{Input: map[string]any{"tasks": tasks}}})
		mid := w.LatestByRef(fmt.Sprintf("d%d", n/2)).ID
		for _, indexed := range []bool{false, true} {
			state := engine.Forgetful(w)
			if indexed {
				state.OwnIndex()
			}
			ev := &schemas.TaskUpdated{TaskID: mid, Status: conductor.TaskInProgress, Time: epoch.UnixMilli()}
			b.Run(fmt.Sprintf("indexed=%v/dynamicFork=%d", indexed, n), func(b *testing.B) {
				for b.Loop() {
					if _, err := engine.Apply(state, ev); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkTaskEnds runs a whole workflow through the decider as the
// executor does (each decision on the state the one before left), each
// task taken and completed in turn, and reports the cost per task: a row
// of n SIMPLE tasks, and a DO_WHILE of n iterations of one SIMPLE task
// (with keepLastN, and without, whose output keeps an entry per
// iteration). Past the workflow's start, a task should cost about the
// same at any n.
//
//	go test -run - -bench TaskEnds ./engine
func BenchmarkTaskEnds(b *testing.B) {
	loop := func(keep string) string {
		return `{"name":"loop","version":1,"tasks":[
		 {"name":"loop","taskReferenceName":"loop","type":"DO_WHILE","items":"${workflow.input.items}",` + keep + `
		  "loopOver":[{"name":"step","taskReferenceName":"step"}]}]}`
	}
	for _, n := range []int{500, 5000} {
		tasks := make([]string, n)
		items := make([]any, n)
		for i := range tasks {
			tasks[i] = fmt.Sprintf(`{"name":"step","taskReferenceName":"s%d"}`, i)
			items[i] = int64(i)
		}
		for _, c := range []struct {
			name, def string
			ref       func(i int) string
		}{
			{"sequential", `{"name":"seq","version":1,"tasks":[` + strings.Join(tasks, ",") + `]}`, func(i int) string { return fmt.Sprintf("s%d", i) }},
			{"loop", loop(""), func(i int) string { return fmt.Sprintf("step__%d", i+1) }},
			{"loopKeepLast", loop(`"inputParameters":{"keepLastN":2},`), func(i int) string { return fmt.Sprintf("step__%d", i+1) }},
		} {
			def := parseDef(b, c.def)
			b.Run(fmt.Sprintf("%s=%d", c.name, n), func(b *testing.B) {
				for b.Loop() {
					w := decideOn(b, nil, engine.Start{WorkflowID: "wf-1", Def: def, Request: conductor.StartWorkflowRequest{Input: map[string]any{"items": items}}})
					runThrough(b, w, n, func(w *engine.Workflow, i int) string {
						t := w.LatestByRef(c.ref(i))
						if t == nil {
							b.Fatalf("no task %s", c.ref(i))
						}
						return t.ID
					})
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/task")
			})
		}
	}
}

// BenchmarkTaskByID finds the middle branch of a FORK_JOIN_DYNAMIC of n
// SIMPLE branches, all taken, on the state the last take left: by a scan
// (TaskByID, for a state other goroutines read) and through the index
// that state owns (TaskByIDDeciding, the executor's shard before its next
// decision).
//
//	go test -run - -bench TaskByID ./engine
func BenchmarkTaskByID(b *testing.B) {
	for _, n := range []int{500, 5000} {
		w, ids := takenFork(b, n)
		mid := ids[n/2]
		for _, c := range []struct {
			name string
			find func(string) *engine.Task
		}{{"scan", w.TaskByID}, {"deciding", w.TaskByIDDeciding}} {
			b.Run(fmt.Sprintf("%s/dynamicFork=%d", c.name, n), func(b *testing.B) {
				for b.Loop() {
					if c.find(mid) == nil {
						b.Fatal("the middle branch not found")
					}
				}
			})
		}
	}
}
