package engine_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/engine/expr"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// fanOutDef is a workflow whose task ref copies an input of about 1 KiB
// into n keys of its input (SET_VARIABLE, or a worker's SIMPLE task), or
// whose outputParameters do.
func fanOutDef(typ string, n int, where string) string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf(`"k%05d":"${workflow.input}"`, i)
	}
	params := "{" + strings.Join(keys, ",") + "}"
	if where == "output" {
		return `{"name":"fan","version":1,"tasks":[{"name":"noop","taskReferenceName":"ref","type":"NOOP"}],"outputParameters":` + params + `}`
	}
	return `{"name":"fan","version":1,"tasks":[{"name":"step","taskReferenceName":"ref","type":"` + typ + `","inputParameters":` + params + `}]}`
}

func kibInput() map[string]any {
	in := map[string]any{}
	for i := range 10 {
		in[fmt.Sprintf("f%d", i)] = strings.Repeat("x", 100)
	}
	return in
}

// A task whose input parameters copy the workflow's input past the bound
// of a record (Input.MaxRecordBytes, DefaultMaxRecordBytes when left out)
// fails at once with a reason that names the field it had reached and the
// bound, and so does the workflow; outputParameters that do fail the
// workflow, not {} as other errors leave. 9,000 copies of 1 KiB pass the
// default 8 MiB; 900 pass a bound of 800 KiB; 700 do not.
func TestEvaluationOverTheRecordBound(t *testing.T) {
	tests := []struct {
		name, typ, where string
		n, bound         int
		wantReason       string // "" when it fits
	}{
		{name: "SIMPLE input", typ: conductor.TaskTypeSimple, n: 9000, wantReason: "input of ref: k0"},
		{name: "SET_VARIABLE input", typ: conductor.TaskTypeSetVariable, n: 9000, wantReason: "input of ref: k0"},
		{name: "SIMPLE input, given bound", typ: conductor.TaskTypeSimple, n: 900, bound: 800 << 10, wantReason: "input of ref: k00"},
		{name: "SIMPLE input within the bound", typ: conductor.TaskTypeSimple, n: 700, bound: 800 << 10},
		{name: "outputParameters", where: "output", n: 900, bound: 800 << 10, wantReason: "outputParameters of workflow fan: k00"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := &harness{t: t, now: epoch, taskDefs: map[string]*conductor.TaskDef{}}
			in := h.input(engine.Start{WorkflowID: "wf-1", Def: parseDef(t, fanOutDef(tc.typ, tc.n, tc.where)),
				Request: conductor.StartWorkflowRequest{Input: kibInput()}})
			in.MaxRecordBytes = tc.bound
			d, err := engine.Decide(in)
			if err != nil {
				t.Fatal(err)
			}
			h.w = d.State
			bound := tc.bound
			if bound == 0 {
				bound = engine.DefaultMaxRecordBytes
			}
			if tc.wantReason == "" {
				if h.w.Status != conductor.WorkflowRunning {
					t.Fatalf("workflow %s: %s", h.w.Status, h.w.Reason)
				}
				return
			}
			h.wantStatus(conductor.WorkflowFailed)
			for _, want := range []string{tc.wantReason, "expression result too large", fmt.Sprint(bound)} {
				if !strings.Contains(h.w.Reason, want) {
					t.Fatalf("reason %q, want %q in it", h.w.Reason, want)
				}
			}
			if tc.where != "output" {
				if task := h.wantTask("ref", conductor.TaskFailedWithTerminalError); len(task.Input) != 0 {
					t.Fatalf("failed task keeps an input of %d keys", len(task.Input))
				}
			}
		})
	}
}

// The bound is the decision's, not each task's: the branches of a fork
// that each copy 100 KiB fit alone, but ten of them do not fit 800 KiB
// together, and the branch that passes it fails saying so, before the
// others are built.
func TestForkBranchesOverTheRecordBound(t *testing.T) {
	keys := make([]string, 100)
	for i := range keys {
		keys[i] = fmt.Sprintf(`"k%03d":"${workflow.input}"`, i)
	}
	branches := make([]string, 10)
	for i := range branches {
		branches[i] = fmt.Sprintf(`[{"name":"step","taskReferenceName":"b%d","inputParameters":{%s}}]`, i, strings.Join(keys, ","))
	}
	def := `{"name":"forked","version":1,"tasks":[{"name":"fork","taskReferenceName":"fork","type":"FORK_JOIN","forkTasks":[` +
		strings.Join(branches, ",") + `]},{"name":"join","taskReferenceName":"join","type":"JOIN"}]}`
	h := &harness{t: t, now: epoch, taskDefs: map[string]*conductor.TaskDef{}}
	in := h.input(engine.Start{WorkflowID: "wf-1", Def: parseDef(t, def), Request: conductor.StartWorkflowRequest{Input: kibInput()}})
	in.MaxRecordBytes = 800 << 10
	d, err := engine.Decide(in)
	if err != nil {
		t.Fatal(err)
	}
	h.w = d.State
	h.wantStatus(conductor.WorkflowFailed)
	failed := 0
	for _, task := range h.w.Tasks {
		if task.Status != conductor.TaskFailedWithTerminalError {
			continue
		}
		failed++
		for _, want := range []string{"input of " + task.Ref + ": k0", "expression result too large: with the", "819200"} {
			if !strings.Contains(task.Reason, want) {
				t.Fatalf("%s: reason %q, want %q in it", task.Ref, task.Reason, want)
			}
		}
	}
	if failed == 0 {
		t.Fatalf("no branch failed: %s", h.w.Reason)
	}
}

// An expression whose work grows faster than its document (deep scans of
// deep scans over 250 nested maps, the deepest input the API takes, 3 KiB:
// hours of CPU, and a list of matches past the memory) fails its task, or the
// workflow's outputParameters, with a reason naming the field, the
// expression and the bound of steps, and so does the workflow; without
// the bound the decision did not return.
func TestEvaluationOverTheSteps(t *testing.T) {
	const hostile = "${workflow.input..*..*..*..*..x.length()}"
	var chain any = int64(0)
	for i := range 250 {
		chain = map[string]any{"a": chain, "x": int64(i)}
	}
	tests := []struct {
		name, def, wantReason string
	}{
		{name: "SIMPLE input", wantReason: "input of ref: n: ",
			def: `{"name":"costly","version":1,"tasks":[{"name":"step","taskReferenceName":"ref","type":"SIMPLE","inputParameters":{"n":"` + hostile + `"}}]}`},
		{name: "outputParameters", wantReason: "outputParameters of workflow costly: n: ",
			def: `{"name":"costly","version":1,"tasks":[{"name":"noop","taskReferenceName":"ref","type":"NOOP"}],"outputParameters":{"n":"` + hostile + `"}}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := &harness{t: t, now: epoch, taskDefs: map[string]*conductor.TaskDef{}}
			d, err := engine.Decide(h.input(engine.Start{WorkflowID: "wf-1", Def: parseDef(t, tc.def),
				Request: conductor.StartWorkflowRequest{Input: map[string]any{"c": chain}}}))
			if err != nil {
				t.Fatal(err)
			}
			h.w = d.State
			h.wantStatus(conductor.WorkflowFailed)
			for _, want := range []string{tc.wantReason, "expression evaluation too large", fmt.Sprintf("%q", hostile), fmt.Sprint(expr.MaxSteps)} {
				if !strings.Contains(h.w.Reason, want) {
					t.Fatalf("reason %q, want %s in it", h.w.Reason, want)
				}
			}
		})
	}
}

// A loop the decider runs alone reads its items again at every iteration,
// and a decision's expressions share one bound of steps: a decision that
// has taken half of them starts no new iteration and the next goes on, as
// after yieldAfter rounds, so that a loop whose items cost 90,000 steps a
// reading (a filter over 30,000 orders) runs its 200 iterations to the
// end. It failed at about the 110th, 'items: expression evaluation too
// large', as no iteration alone does.
func TestLoopSpreadsItsStepsOverDecisions(t *testing.T) {
	orders := make([]any, 30000)
	for i := range orders {
		orders[i] = map[string]any{"id": int64(i), "open": i%150 == 0}
	}
	h := newHarness(t, `{"name":"each","version":1,"tasks":[
	 {"name":"loop","taskReferenceName":"loop","type":"DO_WHILE","items":"${workflow.input.orders[?(@.open == true)].id}",
	  "loopOver":[{"name":"set","taskReferenceName":"set","type":"SET_VARIABLE","inputParameters":{"last":"${loop.output.loopItem}"}}]}]}`,
		map[string]any{"orders": orders})
	for range 20 {
		if h.w.Status != conductor.WorkflowRunning {
			break
		}
		if !engine.Pending(h.w) {
			t.Fatalf("workflow running with no iteration pending: %v", h.refs())
		}
		h.decide(engine.Tick{})
	}
	h.wantStatus(conductor.WorkflowCompleted)
	if got := h.wantTask("loop", conductor.TaskCompleted).Output["iteration"]; got != int64(200) {
		t.Fatalf("loop ended at iteration %v, want 200", got)
	}
	if got := h.w.Variables["last"]; got != int64(29850) {
		t.Fatalf("last item %v, want 29850", got)
	}
}
