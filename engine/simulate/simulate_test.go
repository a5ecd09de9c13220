package simulate_test

import (
	"context"
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/engine/simulate"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/workers/system"
)

// defs is a registry of definitions by name.
type defs map[string]string

func (d defs) LookupWorkflowDef(_ context.Context, name string, _ *int) (*conductor.WorkflowDef, error) {
	js, ok := d[name]
	if !ok {
		return nil, fault.NotFound("workflow definition %s not found", name)
	}
	var def conductor.WorkflowDef
	if err := conductor.Unmarshal([]byte(js), &def); err != nil {
		return nil, err
	}
	return &def, nil
}

var registry = defs{
	"child": `{"name":"child","tasks":[{"name":"work","taskReferenceName":"work"}],"outputParameters":{"w":"${work.output.w}"}}`,
	"parent": `{"name":"parent","tasks":[
	  {"name":"poll","taskReferenceName":"poll","inputParameters":{"x":"${workflow.input.x}"}},
	  {"name":"nap","taskReferenceName":"nap","type":"WAIT","inputParameters":{"duration":"1 hours"}},
	  {"name":"sub","taskReferenceName":"sub","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"child"}}],
	 "outputParameters":{"polls":"${poll.output.n}","child":"${sub.output.w}"}}`,
}

func run(t *testing.T, req string) *conductor.Workflow {
	t.Helper()
	var r conductor.WorkflowTestRequest
	if err := conductor.Unmarshal([]byte(req), &r); err != nil {
		t.Fatal(err)
	}
	w, err := simulate.Run(context.Background(), r, simulate.Options{Defs: registry, Now: time.UnixMilli(1_800_000_000_000)})
	if err != nil {
		t.Fatal(err)
	}
	return w.Conductor(true)
}

// IN_PROGRESS mocks send a worker task back to its queue; the next mock
// answers the next poll. An unmocked child runs with empty outputs.
func TestRun(t *testing.T) {
	wf := run(t, `{"name":"parent","input":{"x":1},"taskRefToMockOutput":{"poll":[
	  {"status":"IN_PROGRESS","output":{"n":1}},{"status":"IN_PROGRESS","output":{"n":2}},{"status":"COMPLETED","output":{"n":3}}]}}`)
	if wf.Status != conductor.WorkflowCompleted || !reflect.DeepEqual(wf.Output, map[string]any{"polls": int64(3), "child": nil}) {
		t.Fatalf("status %s output %#v", wf.Status, wf.Output)
	}
	if poll := wf.Tasks[0]; poll.PollCount != 3 || poll.InputData["x"] != int64(1) {
		t.Fatalf("poll %+v", poll)
	}
	wf = run(t, `{"name":"parent","subWorkflowTestRequest":{"sub":{"taskRefToMockOutput":{"work":[{"status":"COMPLETED","output":{"w":"ok"}}]}}}}`)
	if wf.Output["child"] != "ok" {
		t.Fatalf("child output %#v", wf.Output)
	}
	// A failing child fails its parent.
	wf = run(t, `{"name":"parent","subWorkflowTestRequest":{"sub":{"taskRefToMockOutput":{"work":[{"status":"FAILED_WITH_TERMINAL_ERROR"}]}}}}`)
	if wf.Status != conductor.WorkflowFailed || wf.Tasks[2].Status != conductor.TaskFailed {
		t.Fatalf("status %s tasks %+v", wf.Status, wf.Tasks)
	}
}

// A START_WORKFLOW's target is not run; its start is taken to succeed, or
// fails as a mock says.
func TestStartWorkflowIsTakenToStart(t *testing.T) {
	registry := `{"name":"starter","tasks":[{"name":"st","taskReferenceName":"st","type":"START_WORKFLOW",
	  "inputParameters":{"startWorkflow":{"name":"child"}}},{"name":"after","taskReferenceName":"after"}],
	  "outputParameters":{"started":"${st.output.workflowId}"}}`
	wf := run(t, `{"name":"starter","workflowDef":`+registry+`}`)
	if wf.Status != conductor.WorkflowCompleted || wf.Output["started"] == nil || wf.Output["started"] == "" {
		t.Fatalf("status %s output %#v", wf.Status, wf.Output)
	}
	wf = run(t, `{"name":"starter","workflowDef":`+registry+`,"taskRefToMockOutput":{"st":[{"status":"FAILED_WITH_TERMINAL_ERROR"}]}}`)
	if wf.Status != conductor.WorkflowFailed {
		t.Fatalf("a failed start: status %s", wf.Status)
	}
}

// A loop of decided tasks longer than one decision runs (the decider
// yields between iterations): the simulation goes on with it, as the
// executor's tick does, rather than stop with the workflow running.
func TestLongDecidedLoop(t *testing.T) {
	for _, n := range []int{3, 1500} {
		items := make([]string, n)
		for i := range items {
			items[i] = strconv.Itoa(i)
		}
		def := `{"name":"fast","tasks":[{"name":"loop","taskReferenceName":"loop","type":"DO_WHILE","items":"${workflow.input.list}",
		  "loopOver":[{"name":"set","taskReferenceName":"set","type":"SET_VARIABLE","inputParameters":{"last":"${loop.output.loopItem}"}}]}]}`
		wf := run(t, `{"name":"fast","workflowDef":`+def+`,"input":{"list":[`+strings.Join(items, ",")+`]}}`)
		if wf.Status != conductor.WorkflowCompleted || wf.Variables["last"] != int64(n-1) {
			t.Fatalf("%d items: status %s variables %v", n, wf.Status, wf.Variables)
		}
	}
}

// Options.Hide is handed each value a run would seal, wherever the
// simulation found it: a mock's _secrets and _masked values (of a
// simulated child's task too, which its parent sees only through the
// child's output), the input's, its maskedFields and the input fields the
// definition copies into a _secrets block, a number as its JSON. Plain
// data, and values the simulation never meets, are not.
func TestHideIsHandedWhatARunSeals(t *testing.T) {
	reg := defs{
		"kid": `{"name":"kid","tasks":[{"name":"kw","taskReferenceName":"kw"}],"outputParameters":{"k":"${kw.output._secrets.k}"}}`,
		"hider": `{"name":"hider","maskedFields":["card"],"tasks":[
		  {"name":"m","taskReferenceName":"m","inputParameters":{"_secrets":{"t":"${workflow.input.tok}"}}},
		  {"name":"sv","taskReferenceName":"sv","type":"SET_VARIABLE","inputParameters":{"v":"${m.output._secrets.v}","n":"${m.output._masked.n}"}},
		  {"name":"sub","taskReferenceName":"sub","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"kid"}}],
		 "outputParameters":{"v":"${m.output._secrets.v}","k":"${sub.output.k}"}}`,
	}
	var r conductor.WorkflowTestRequest
	req := `{"name":"hider","input":{"tok":"input-copied","card":"masked-field","_secrets":{"i":"input-secret"},"plain":"plain-input"},
	  "taskRefToMockOutput":{"m":[{"status":"COMPLETED","output":{"_secrets":{"v":"mock-secret"},"_masked":{"n":123456789},"o":"plain-output"}}]},
	  "subWorkflowTestRequest":{"sub":{"taskRefToMockOutput":{"kw":[{"status":"COMPLETED","output":{"_secrets":{"k":"child-secret"}}}]}}}}`
	if err := conductor.Unmarshal([]byte(req), &r); err != nil {
		t.Fatal(err)
	}
	hidden := map[string]bool{}
	w, err := simulate.Run(context.Background(), r, simulate.Options{Defs: reg, Now: time.UnixMilli(1_800_000_000_000),
		Hide: func(plain []byte) { hidden[string(plain)] = true }})
	if err != nil {
		t.Fatal(err)
	}
	if w.Status != conductor.WorkflowCompleted || w.Output["k"] != "child-secret" {
		t.Fatalf("status %s output %v: the values did not go where the test looks", w.Status, w.Output)
	}
	for _, tc := range []struct {
		value  string
		hidden bool
	}{
		{"mock-secret", true},
		{"123456789", true},
		{"child-secret", true},
		{"input-secret", true},
		{"masked-field", true},
		{"input-copied", true},
		{"plain-input", false},
		{"plain-output", false},
	} {
		if hidden[tc.value] != tc.hidden {
			t.Errorf("%s: hidden %v, want %v (hidden: %v)", tc.value, hidden[tc.value], tc.hidden, hidden)
		}
	}
}

// A loop condition changes the loop's output in place, as Conductor's,
// which is handed the output map itself: what it deletes from $.loop
// leaves the output, whether the loop goes on (IN_PROGRESS) or ends, and
// what it deletes then sets again stays. The decider's keys stay whatever
// it does to them. The first iteration stores {storage: {count: 1, keep:
// 'k'}, gone: 'x'}; the second runs each case's script, whose value says
// whether a third, which changes nothing, runs.
func TestLoopConditionDeletes(t *testing.T) {
	engine.RegisterSystemWorkerType(conductor.TaskTypeDoWhile) // as the executor does, given a LoopCondition
	cases := []struct {
		name, script string
		want         map[string]any // the loop's output but for the decider's keys
	}{
		{"top-level member", "delete $.loop.gone; false",
			map[string]any{"storage": map[string]any{"count": int64(1), "keep": "k"}}},
		{"top-level member, loop goes on", "delete $.loop.gone; true",
			map[string]any{"storage": map[string]any{"count": int64(1), "keep": "k"}}},
		{"nested member", "delete $.loop.storage.count; false",
			map[string]any{"storage": map[string]any{"keep": "k"}, "gone": "x"}},
		{"deleted then set again", "delete $.loop.gone; $.loop.gone = 'y'; false",
			map[string]any{"storage": map[string]any{"count": int64(1), "keep": "k"}, "gone": "y"}},
		{"set then deleted", "$.loop.fresh = 1; delete $.loop.fresh; false",
			map[string]any{"storage": map[string]any{"count": int64(1), "keep": "k"}, "gone": "x"}},
		{"member that is not there", "delete $.loop.never; false",
			map[string]any{"storage": map[string]any{"count": int64(1), "keep": "k"}, "gone": "x"}},
		{"all of them", "Object.keys($.loop).forEach(function (k) { delete $.loop[k] }); true",
			map[string]any{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cond := `if ($.loop.iteration == 1) { $.loop.storage = {count: 1, keep: 'k'}; $.loop.gone = 'x'; true }` +
				` else if ($.loop.iteration == 2) { ` + tc.script + ` } else { false }`
			def, _ := json.Marshal(map[string]any{"name": "deletes", "tasks": []any{map[string]any{
				"name": "loop", "taskReferenceName": "loop", "type": "DO_WHILE", "loopCondition": cond,
				"loopOver": []any{map[string]any{"name": "set", "taskReferenceName": "set", "type": "SET_VARIABLE",
					"inputParameters": map[string]any{"i": "${loop.output.iteration}"}}}}}})
			var r conductor.WorkflowTestRequest
			if err := conductor.Unmarshal([]byte(`{"name":"deletes","workflowDef":`+string(def)+`}`), &r); err != nil {
				t.Fatal(err)
			}
			w, err := simulate.Run(context.Background(), r, simulate.Options{Defs: registry, Now: time.UnixMilli(1_800_000_000_000),
				Operators: map[string]simulate.Operator{conductor.TaskTypeDoWhile: system.LoopCondition{}}})
			if err != nil {
				t.Fatal(err)
			}
			wf := w.Conductor(true)
			loop := wf.Tasks[0]
			if wf.Status != conductor.WorkflowCompleted || loop.Status != conductor.TaskCompleted {
				t.Fatalf("workflow %s, loop %s (%s)", wf.Status, loop.Status, loop.ReasonForIncompletion)
			}
			got := map[string]any{}
			for k, v := range loop.OutputData {
				if !conductor.DoWhileOwnedKey(k) {
					got[k] = v
				}
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("loop output %#v, want %#v", got, tc.want)
			}
			if n := loop.OutputData["iteration"]; n != int64(2) && n != int64(3) || loop.OutputData["1"] == nil {
				t.Errorf("the decider's keys changed: %#v", loop.OutputData)
			}
		})
	}
}
