package engine_test

import (
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"testing"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// A JOIN inside a DO_WHILE joins the tasks of its own iteration, and its
// output names them as they ran, "p__2", as Conductor's Join does (it
// appends the iteration to its joinOn inside a loop). The loop's record of
// the iteration holds that output under the JOIN's name without suffix.
func TestJoinInsideLoopNamesTheIteration(t *testing.T) {
	forked := []any{
		map[string]any{"name": "p", "taskReferenceName": "p"},
		map[string]any{"name": "q", "taskReferenceName": "q"},
	}
	for _, tc := range []struct {
		name   string
		def    string
		input  map[string]any
		joined []string
		suffix bool
	}{
		{"fork in a loop", `{"name":"f","tasks":[{"name":"loop","taskReferenceName":"loop","type":"DO_WHILE","items":[1,2],"loopOver":[
		  {"name":"fork","taskReferenceName":"fork","type":"FORK_JOIN","forkTasks":[[{"name":"p","taskReferenceName":"p"}],[{"name":"q","taskReferenceName":"q"}]]},
		  {"name":"join","taskReferenceName":"join","type":"JOIN","joinOn":["p","q"]}]}]}`, nil, []string{"p", "q"}, true},
		{"dynamic fork in a loop", `{"name":"f","tasks":[{"name":"loop","taskReferenceName":"loop","type":"DO_WHILE","items":[1,2],"loopOver":[
		  {"name":"fork","taskReferenceName":"fork","type":"FORK_JOIN_DYNAMIC","dynamicForkTasksParam":"tasks","inputParameters":{"tasks":"${workflow.input.tasks}"}},
		  {"name":"join","taskReferenceName":"join","type":"JOIN"}]}]}`, map[string]any{"tasks": forked}, []string{"p", "q"}, true},
		{"fork outside a loop", `{"name":"f","tasks":[
		  {"name":"fork","taskReferenceName":"fork","type":"FORK_JOIN","forkTasks":[[{"name":"p","taskReferenceName":"p"}],[{"name":"q","taskReferenceName":"q"}]]},
		  {"name":"join","taskReferenceName":"join","type":"JOIN","joinOn":["p","q"]}]}`, nil, []string{"p", "q"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, tc.def, tc.input)
			iterations := 1
			if tc.suffix {
				iterations = 2
			}
			for it := 1; it <= iterations; it++ {
				ref := func(r string) string {
					if tc.suffix {
						return r + "__" + strconv.Itoa(it)
					}
					return r
				}
				want := map[string]any{}
				for _, r := range tc.joined {
					out := map[string]any{"from": ref(r)}
					h.complete(ref(r), out)
					want[ref(r)] = out
				}
				wantOutput(t, h.wantTask(ref("join"), conductor.TaskCompleted), want)
				if !tc.suffix {
					continue
				}
				rec, _ := h.task("loop").Output[strconv.Itoa(it)].(map[string]any)
				if !reflect.DeepEqual(rec["join"], want) {
					t.Fatalf("iteration %d record of the join = %v, want %v", it, rec["join"], want)
				}
			}
			h.wantStatus(conductor.WorkflowCompleted)
		})
	}
}

// keepLastN (the loop's inputParameters) keeps the last N iterations: as
// an iteration ends, the loop's output drops the entries of older ones and
// the workflow their tasks, as Conductor removes them. What the removed
// tasks resolved at their hand-offs stays named on the loop, for
// redaction.
func TestDoWhileKeepLastNRemovesOldIterations(t *testing.T) {
	def := func(keep string) string {
		in := ""
		if keep != "" {
			in = `"inputParameters":{"keepLastN":` + keep + `},`
		}
		return `{"name":"keep","tasks":[{"name":"loop","taskReferenceName":"loop","type":"DO_WHILE","items":[1,2,3,4,5],` + in + `
		  "loopOver":[{"name":"a","taskReferenceName":"a"},{"name":"b","taskReferenceName":"b","inputParameters":{"a":"${a.output.n}"}}]},
		 {"name":"after","taskReferenceName":"after","inputParameters":{"lastB":"${b.output.n}"}}]}`
	}
	secret := schemas.ResolvedRef{Kind: "secret", Name: "db", Version: 1, Principal: "app:tester", GrantedBy: "creator"}
	for _, tc := range []struct {
		name string
		keep string
		kept []int // the iterations whose tasks and entries remain
	}{
		{"without keepLastN", "", []int{1, 2, 3, 4, 5}},
		{"keepLastN 2", "2", []int{4, 5}},
		{"keepLastN 1, as a string", `"1"`, []int{5}},
		{"keepLastN past the iterations", "9", []int{1, 2, 3, 4, 5}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, def(tc.keep), nil)
			var removed []string
			for it := 1; it <= 5; it++ {
				a, b := "a__"+strconv.Itoa(it), "b__"+strconv.Itoa(it)
				if it == 1 {
					h.decide(engine.Take{TaskID: h.task(a).ID, WorkerID: "w1", HandOff: &engine.HandOff{Resolved: []schemas.ResolvedRef{secret}}})
				}
				h.complete(a, map[string]any{"n": int64(it)})
				if got := h.task(b).Input["a"]; got != int64(it) {
					t.Fatalf("%s reads a's output %v", b, got)
				}
				d := h.complete(b, map[string]any{"n": int64(it)})
				for _, ev := range d.Events {
					if r, ok := ev.(*schemas.TasksRemoved); ok {
						if r.Loop != h.task("loop").ID {
							t.Fatalf("removal names loop %q", r.Loop)
						}
						removed = append(removed, r.TaskIDs...)
					}
				}
			}
			loop := h.wantTask("loop", conductor.TaskCompleted)
			want := []string{"loop"}
			entries := map[string]any{"iteration": int64(5), "loopItem": int64(5), "loopIndex": int64(4)}
			for _, it := range tc.kept {
				want = append(want, "a__"+strconv.Itoa(it), "b__"+strconv.Itoa(it))
				entries[strconv.Itoa(it)] = map[string]any{"a": map[string]any{"n": int64(it)}, "b": map[string]any{"n": int64(it)}}
			}
			h.wantRefs(append(want, "after")...)
			wantOutput(t, loop, entries)
			if got, wantN := len(removed), 2*(5-len(tc.kept)); got != wantN {
				t.Fatalf("%d tasks removed, want %d", got, wantN)
			}
			if h.task("after").Input["lastB"] != int64(5) {
				t.Fatalf("after reads %v", h.task("after").Input)
			}
			if first := tc.kept[0]; first > 1 && !slices.ContainsFunc(loop.Resolved, func(r schemas.ResolvedRef) bool { return schemas.SameRef(r, secret) }) {
				t.Fatalf("the loop does not name what its removed iterations resolved: %v", loop.Resolved)
			}
			h.complete("after", nil)
			h.wantStatus(conductor.WorkflowCompleted)
		})
	}
}

// An operator's task update of a DO_WHILE (Conductor's task update path
// takes any task's status) may end the loop when no iteration's body runs:
// its condition is due or running. The loop keeps the output the decider
// owns (iterations, their records), the update's other keys join it. While
// the body runs the update is refused: Conductor would complete the loop
// with the body still running and its records gone. Progress is for the
// condition alone to report.
func TestOperatorUpdateOfDoWhile(t *testing.T) {
	rec1 := map[string]any{"a": map[string]any{"v": "a1"}, "b": map[string]any{"v": "b1", "more": true}}
	bodyDone := func(h *harness) {
		h.complete("a__1", map[string]any{"v": "a1"})
		h.complete("b__1", map[string]any{"v": "b1", "more": true})
	}
	for _, tc := range []struct {
		name       string
		at         func(h *harness)
		status     string
		wantErr    error
		wantLoop   string
		wantStatus string
		ignored    bool
	}{
		{"body running, completed", func(*harness) {}, conductor.TaskCompleted, fault.ErrConflict, conductor.TaskInProgress, conductor.WorkflowRunning, false},
		{"body running, failed", func(*harness) {}, conductor.TaskFailed, fault.ErrConflict, conductor.TaskInProgress, conductor.WorkflowRunning, false},
		{"body half done, completed", func(h *harness) { h.complete("a__1", nil) }, conductor.TaskCompleted, fault.ErrConflict, conductor.TaskInProgress, conductor.WorkflowRunning, false},
		{"body running, progress", func(*harness) {}, conductor.TaskInProgress, nil, conductor.TaskInProgress, conductor.WorkflowRunning, true},
		{"condition due, completed", bodyDone, conductor.TaskCompleted, nil, conductor.TaskCompleted, conductor.WorkflowRunning, false},
		{"condition due, progress", bodyDone, conductor.TaskInProgress, nil, conductor.TaskScheduled, conductor.WorkflowRunning, true},
		{"condition running, completed", func(h *harness) { bodyDone(h); h.systemTake("loop") }, conductor.TaskCompleted, nil, conductor.TaskCompleted, conductor.WorkflowRunning, false},
		{"condition running, failed", func(h *harness) { bodyDone(h); h.systemTake("loop") }, conductor.TaskFailedWithTerminalError, nil, conductor.TaskFailedWithTerminalError, conductor.WorkflowFailed, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, loopDef, map[string]any{"max": int64(5)})
			tc.at(h)
			loop := h.task("loop")
			d, err := h.try(engine.Result{By: "user:ops", Result: conductor.TaskResult{TaskID: loop.ID, WorkflowInstanceID: h.w.ID, Status: tc.status,
				OutputData: map[string]any{"note": "by hand", "iteration": int64(99), "1": "x"}}})
			if tc.wantErr != nil {
				wantErr(t, err, tc.wantErr)
			} else if err != nil {
				t.Fatal(err)
			}
			h.wantTask("loop", tc.wantLoop)
			h.wantStatus(tc.wantStatus)
			if reply, _ := d.Reply.(engine.ResultReply); err == nil && reply.Ignored != tc.ignored {
				t.Fatalf("reply %+v, want ignored %v", d.Reply, tc.ignored)
			}
			if tc.wantLoop == conductor.TaskCompleted {
				wantOutput(t, h.task("loop"), map[string]any{"iteration": int64(1), "1": rec1, "note": "by hand"})
				h.wantTask("after", conductor.TaskScheduled)
			}
		})
	}
}

// A DO_WHILE of tasks the decider completes itself runs an iteration
// every round or two. Past yieldAfter rounds a decision starts no new
// iteration: the loop waits for it, due at once (Deadlines, Pending), and
// the next decision goes on. A loop over more items than the round cap of
// one decision allows completes, in decisions of bounded size.
func TestDoWhileDecidedBodyYields(t *testing.T) {
	for _, tc := range []struct {
		name      string
		items     int
		keep      int
		decisions int // at least
		tasks     int
	}{
		{"short loop, one decision", 50, 0, 1, 51},
		{"longer than a decision", 2600, 0, 5, 2601},
		{"past the round cap, keeping the last 3", 6000, 3, 11, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			def := fmt.Sprintf(`{"name":"fast","tasks":[{"name":"loop","taskReferenceName":"loop","type":"DO_WHILE","items":"${workflow.input.list}",
			  "inputParameters":{"keepLastN":%d},
			  "loopOver":[{"name":"set","taskReferenceName":"set","type":"SET_VARIABLE","inputParameters":{"last":"${loop.output.loopItem}"}}]}]}`, tc.keep)
			list := make([]any, tc.items)
			for i := range list {
				list[i] = int64(i)
			}
			h := newHarness(t, def, map[string]any{"list": list})
			decisions := 1
			for {
				// A decision of the whole loop would append three events
				// an iteration.
				if len(h.last.Events) > 4000 {
					t.Fatalf("decision %d appended %d events", decisions, len(h.last.Events))
				}
				if h.w.Status != conductor.WorkflowRunning {
					break
				}
				if !engine.Pending(h.w) {
					t.Fatalf("decision %d left the loop at iteration %d with nothing due", decisions, loopIterations(h))
				}
				if dl := engine.Deadlines(h.w); len(dl) == 0 || dl[0] > h.now.UnixMilli() {
					t.Fatalf("deadlines %v: the next iteration is due at once (%d)", dl, h.now.UnixMilli())
				}
				h.decide(engine.Tick{})
				decisions++
			}
			h.wantStatus(conductor.WorkflowCompleted)
			if h.w.Variables["last"] != int64(tc.items-1) || loopIterations(h) != int64(tc.items) {
				t.Fatalf("variables %v, iterations %d", h.w.Variables, loopIterations(h))
			}
			if decisions < tc.decisions || len(h.w.Tasks) != tc.tasks {
				t.Fatalf("%d decisions, %d tasks; want at least %d decisions and %d tasks", decisions, len(h.w.Tasks), tc.decisions, tc.tasks)
			}
			if engine.Pending(h.w) {
				t.Fatal("a completed workflow is pending")
			}
		})
	}
}

// A condition reads every task of the loop's body by its reference name,
// as Conductor's DoWhile.evaluateCondition gives it the newest instance of
// each: a task of a SWITCH branch the iteration did not take reads as the
// last iteration that ran it left it, not undefined (where $.one.o threw
// and failed the loop). What keepLastN dropped is gone, as Conductor
// removes those tasks; an input parameter of the same name gives way to
// the output, as to one of the iteration's own.
func TestLoopConditionReadsEarlierIterations(t *testing.T) {
	def := func(keep string) string {
		if keep != "" {
			keep = `"keepLastN":` + keep + `,`
		}
		return `{"name":"branchy","tasks":[{"name":"loop","taskReferenceName":"loop","type":"DO_WHILE","items":[1,2,2,1],"loopCondition":"true",
		  "inputParameters":{` + keep + `"two":"param"},
		  "loopOver":[{"name":"sw","taskReferenceName":"sw","type":"SWITCH","evaluatorType":"value-param","expression":"i",
		    "inputParameters":{"i":"${loop.output.loopItem}"},
		    "decisionCases":{"1":[{"name":"one","taskReferenceName":"one"}],"2":[{"name":"two","taskReferenceName":"two"}]}}]}]}`
	}
	for _, tc := range []struct {
		name string
		keep string
		// per iteration, the outputs the condition reads for one and two
		// (nil: absent, or the input parameter for two)
		one, two []any
	}{
		{"all iterations kept", "",
			[]any{int64(1), int64(1), int64(1), int64(4)},
			[]any{"param", int64(2), int64(3), int64(3)}},
		{"keepLastN 1", "1",
			[]any{int64(1), nil, nil, int64(4)},
			[]any{"param", int64(2), int64(3), "param"}},
		{"keepLastN 2", "2",
			[]any{int64(1), int64(1), nil, int64(4)},
			[]any{"param", int64(2), int64(3), int64(3)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, def(tc.keep), nil)
			for it, item := range []int{1, 2, 2, 1} {
				ref := map[int]string{1: "one", 2: "two"}[item] + "__" + strconv.Itoa(it+1)
				h.complete(ref, map[string]any{"n": int64(it + 1)})
				doc := h.systemTake("loop").Input
				for name, want := range map[string]any{"one": tc.one[it], "two": tc.two[it]} {
					var got any
					if out, ok := doc[name].(map[string]any); ok {
						got = out["n"]
					} else {
						got = doc[name]
					}
					if !reflect.DeepEqual(got, want) {
						t.Fatalf("iteration %d: the condition reads %s as %#v, want %#v (document %v)", it+1, name, doc[name], want, doc)
					}
				}
				h.report("loop", conductor.TaskInProgress, nil, "")
			}
			h.wantTask("loop", conductor.TaskCompleted)
			h.wantStatus(conductor.WorkflowCompleted)
		})
	}
}

// A reference with an iteration's suffix (${a__1.output.v}) reads that
// iteration's task, while the loop keeps it: Conductor keys a loop's tasks
// by their reference without the suffix, so there it reads null, and
// ${loop.output.1.a.v} is the reading both give. README says so.
func TestIterationSuffixedReference(t *testing.T) {
	def := `{"name":"iter","tasks":[
	 {"name":"loop","taskReferenceName":"loop","type":"DO_WHILE","loopCondition":"$.loop['iteration'] < 2",
	  "loopOver":[{"name":"a","taskReferenceName":"a"}]},
	 {"name":"after","taskReferenceName":"after","inputParameters":{
	  "first":"${a__1.output.v}","last":"${a.output.v}","record":"${loop.output.1.a.v}","none":"${a__3.output.v}"}}]}`
	h := newHarness(t, def, nil)
	h.complete("a__1", map[string]any{"v": "one"})
	h.system("loop", conductor.TaskInProgress, nil, "")
	h.complete("a__2", map[string]any{"v": "two"})
	h.system("loop", conductor.TaskCompleted, nil, "")
	got := h.wantTask("after", conductor.TaskScheduled).Input
	want := map[string]any{"first": "one", "last": "two", "record": "one", "none": nil}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("input %v, want %v", got, want)
	}
}

// A SUB_WORKFLOW inside a DO_WHILE starts a child of its own for every
// iteration, the child's parent task being that iteration's instance; the
// iteration's record and the condition read that child's output, and a
// task after the loop the last one's. A child failing in an iteration
// fails the workflow and cancels the loop; a retry of the workflow starts
// a new child for that iteration, a retry of the child itself (its
// news: ChildReopened) waits for the same one, and either way the loop
// goes on from that iteration. With keepLastN the task of a dropped
// iteration is gone, and late news of its child changes nothing.
func TestSubWorkflowInsideLoop(t *testing.T) {
	def := func(keep int) string {
		return `{"name":"subs","tasks":[
		 {"name":"loop","taskReferenceName":"loop","type":"DO_WHILE","loopCondition":"$.sub.result != 'r3'",
		  "inputParameters":{"keepLastN":` + strconv.Itoa(keep) + `},"loopOver":[
		   {"name":"sub","taskReferenceName":"sub","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"kid","version":1},
		    "inputParameters":{"i":"${loop.output.iteration}"}}]},
		 {"name":"after","taskReferenceName":"after","inputParameters":{"last":"${sub.output.result}"}}]}`
	}
	for _, tc := range []struct {
		name string
		keep int
		// recover, when set, brings the workflow back after the child of
		// iteration 2 failed; newChild says whether it gets a new child.
		recover  func(h *harness, failedChild string)
		newChild bool
	}{
		{name: "children complete"},
		{name: "keepLastN 1", keep: 1},
		{name: "workflow retried", recover: func(h *harness, _ string) { h.decide(engine.Retry{}) }, newChild: true},
		{name: "child retried", recover: func(h *harness, child string) {
			h.decide(engine.ChildReopened{ChildID: child, ResetTime: h.now.UnixMilli() + 1})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, def(tc.keep), nil)
			children := map[string]bool{}
			for it := 1; it <= 3; it++ {
				ref := "sub__" + strconv.Itoa(it)
				sub := h.wantTask(ref, conductor.TaskInProgress)
				starts := effectsOf[engine.StartWorkflow](h.last)
				if len(starts) != 1 || starts[0].WorkflowID != sub.SubWorkflowID || starts[0].ParentWorkflowTaskID != sub.ID ||
					starts[0].Input["i"] != int64(it) {
					t.Fatalf("iteration %d: start effects %+v for %s (%s)", it, starts, ref, sub.ID)
				}
				if children[sub.SubWorkflowID] {
					t.Fatalf("iteration %d waits for the child %s of an earlier one", it, sub.SubWorkflowID)
				}
				children[sub.SubWorkflowID] = true
				result := "r" + strconv.Itoa(it)
				if it == 2 && tc.recover != nil {
					failed := sub.SubWorkflowID
					h.decide(engine.ChildFinished{ChildID: failed, Name: "kid", Version: 1, Status: conductor.WorkflowFailed, Reason: "kid broke"})
					h.wantStatus(conductor.WorkflowFailed)
					h.wantTask("loop", conductor.TaskCanceled)
					tc.recover(h, failed)
					h.wantStatus(conductor.WorkflowRunning)
					h.wantTask("loop", conductor.TaskInProgress)
					sub = h.wantTask(ref, conductor.TaskInProgress)
					if got := sub.SubWorkflowID != failed; got != tc.newChild {
						t.Fatalf("after recovery %s waits for %s (the failed child %s); want a new child: %v", ref, sub.SubWorkflowID, failed, tc.newChild)
					}
				}
				h.decide(engine.ChildFinished{ChildID: sub.SubWorkflowID, Name: "kid", Version: 1, Status: conductor.WorkflowCompleted,
					Output: map[string]any{"result": result}})
				h.wantTask(ref, conductor.TaskCompleted)
				rec, _ := h.task("loop").Output[strconv.Itoa(it)].(map[string]any)
				if out, _ := rec["sub"].(map[string]any); out["result"] != result || out["subWorkflowId"] != sub.SubWorkflowID {
					t.Fatalf("iteration %d record %v", it, rec)
				}
				taken := h.systemTake("loop")
				if got, _ := taken.Input["sub"].(map[string]any); got["result"] != result {
					t.Fatalf("iteration %d: the condition reads $.sub = %v", it, taken.Input["sub"])
				}
				verdict := conductor.TaskInProgress
				if it == 3 {
					verdict = conductor.TaskCompleted
				}
				h.report("loop", verdict, nil, "")
			}
			h.wantTask("loop", conductor.TaskCompleted)
			if got := h.wantTask("after", conductor.TaskScheduled).Input["last"]; got != "r3" {
				t.Fatalf("after reads the last child's result %v", got)
			}
			if tc.keep == 1 {
				h.wantRefs("loop", "sub__3", "after")
				for child := range children {
					if child == h.task("sub__3").SubWorkflowID {
						continue
					}
					d := h.decide(engine.ChildFinished{ChildID: child, Name: "kid", Version: 1, Status: conductor.WorkflowFailed, Reason: "late"})
					if len(d.Events) != 0 || len(d.Effects) != 0 {
						t.Fatalf("late news of a dropped iteration's child decided %s", describe(d))
					}
				}
			}
			h.complete("after", nil)
			h.wantStatus(conductor.WorkflowCompleted)
		})
	}
}

// A JOIN after a fork one of whose branches is a DO_WHILE joins the loop:
// it waits through the iterations and completes once the loop has ended,
// with the loop's output (each iteration's record), as Conductor's Join,
// which waits for the DO_WHILE task, does. (Its joinOn cannot name a task
// of the loop: that is refused, TestValidateWorkflowDef.)
func TestJoinOnALoopInAForkBranch(t *testing.T) {
	const def = `{"name":"f","tasks":[
	  {"name":"fork","taskReferenceName":"fork","type":"FORK_JOIN","forkTasks":[
	    [{"name":"loop","taskReferenceName":"loop","type":"DO_WHILE","items":[1,2,3],"loopOver":[{"name":"x","taskReferenceName":"x"}]}],
	    [{"name":"y","taskReferenceName":"y"}]]},
	  {"name":"join","taskReferenceName":"join","type":"JOIN","joinOn":["loop","y"]},
	  {"name":"after","taskReferenceName":"after"}]}`
	if err := engine.ValidateWorkflowDef(parseDef(t, def)); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		yAt   int // y completes after this many iterations
		iters int
	}{
		{"the other branch first", 0, 3},
		{"the other branch between iterations", 2, 3},
		{"the other branch last", 3, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, def, nil)
			for it := 0; it <= tc.iters; it++ {
				if it == tc.yAt {
					h.complete("y", map[string]any{"y": true})
				}
				if it == tc.iters {
					break
				}
				h.wantTask("join", conductor.TaskInProgress)
				h.complete("x__"+strconv.Itoa(it+1), map[string]any{"i": it + 1})
			}
			out := h.wantTask("join", conductor.TaskCompleted).Output
			loop, _ := out["loop"].(map[string]any)
			for it := 1; it <= tc.iters; it++ {
				rec, _ := loop[strconv.Itoa(it)].(map[string]any)
				if x, _ := rec["x"].(map[string]any); fmt.Sprint(x["i"]) != strconv.Itoa(it) {
					t.Fatalf("the JOIN's record of iteration %d = %v, want x's output; JOIN output %v", it, rec, out)
				}
			}
			if !reflect.DeepEqual(out["y"], map[string]any{"y": true}) {
				t.Fatalf("the JOIN's y = %v", out["y"])
			}
			h.wantTask("after", conductor.TaskScheduled)
		})
	}
}
