package e2e_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/engine/expr"
	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// A definition whose task copies its input into thousands of keys, past
// what one record of the log holds, fails that task and its workflow with
// a reason naming the field and the bound, before the copies are built
// (a hundred thousand keys of a modest input were gigabytes, and the
// engine was killed for its memory); the engine goes on serving other
// workflows.
func TestInputParametersOverTheRecordBound(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	keys := make([]string, 9000) // of a 1 KiB input: over 8 MiB
	for i := range keys {
		keys[i] = fmt.Sprintf(`"k%05d":"${workflow.input}"`, i)
	}
	e.register(`{"name":"fan_out","version":1,"tasks":[{"name":"fan_step","taskReferenceName":"fan","type":"SIMPLE",
		"inputParameters":{`+strings.Join(keys, ",")+`}}]}`,
		`{"name":"fan_small","version":1,"tasks":[{"name":"fan_step","taskReferenceName":"one","type":"SIMPLE",
		"inputParameters":{"copy":"${workflow.input}"}}]}`)
	input := map[string]any{}
	for i := range 10 {
		input[fmt.Sprintf("f%d", i)] = strings.Repeat("x", 100)
	}
	id := e.start("fan_out", input)
	wf := e.waitStatus(id, conductor.WorkflowFailed)
	task := taskByRef(wf, "fan")
	if task == nil || task.Status != conductor.TaskFailedWithTerminalError {
		t.Fatalf("task: %+v", task)
	}
	for _, want := range []string{"input of fan: k0", "expression result too large", fmt.Sprint(eventlog.DefaultConfig().MaxRecordBytes)} {
		if !strings.Contains(task.ReasonForIncompletion, want) || !strings.Contains(wf.ReasonForIncompletion, want) {
			t.Fatalf("task's reason %q, workflow's %q: want %q in both", task.ReasonForIncompletion, wf.ReasonForIncompletion, want)
		}
	}

	e.work("fan_step", 1, succeed)
	other := e.start("fan_small", input)
	e.waitStatus(other, conductor.WorkflowCompleted)
}

// A definition whose expression costs more than its input's size (deep
// scans of deep scans over 250 nested maps, the deepest input the API
// takes, 3 KiB: hours of CPU, and a list of matches past the memory) fails its task and workflow with a reason naming the
// expression and the bound of steps; the engine goes on serving other
// workflows.
func TestExpressionOverTheSteps(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const hostile = "${workflow.input..*..*..*..*..x.length()}"
	e.register(`{"name":"costly","version":1,"tasks":[{"name":"costly_step","taskReferenceName":"scan","type":"SIMPLE",
		"inputParameters":{"n":"`+hostile+`"}}]}`,
		`{"name":"cheap","version":1,"tasks":[{"name":"costly_step","taskReferenceName":"one","type":"SIMPLE",
		"inputParameters":{"n":"${workflow.input..x.length()}"}}]}`)
	var chain any = 0
	for i := range 250 {
		chain = map[string]any{"a": chain, "x": i}
	}
	input := map[string]any{"c": chain}
	id := e.start("costly", input)
	wf := e.waitStatus(id, conductor.WorkflowFailed)
	task := taskByRef(wf, "scan")
	if task == nil || task.Status != conductor.TaskFailedWithTerminalError {
		t.Fatalf("task: %+v", task)
	}
	for _, want := range []string{"input of scan: n", "expression evaluation too large", fmt.Sprintf("%q", hostile), fmt.Sprint(expr.MaxSteps)} {
		if !strings.Contains(task.ReasonForIncompletion, want) || !strings.Contains(wf.ReasonForIncompletion, want) {
			t.Fatalf("task's reason %q, workflow's %q: want %s in both", task.ReasonForIncompletion, wf.ReasonForIncompletion, want)
		}
	}

	e.work("costly_step", 1, succeed)
	other := e.start("cheap", input)
	e.waitStatus(other, conductor.WorkflowCompleted)
}

// Variables a caller sets over HTTP (the variables update, updateState's
// variables) are bounded as a SET_VARIABLE's are: over 256 KiB together,
// the request answers 413 naming the limit and changes nothing, and the
// workflow's SET_VARIABLE still runs. Taken, they failed it.
func TestCallersVariablesOverTheLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.register(`{"name":"vars_big","tasks":[{"name":"h","taskReferenceName":"h","type":"HUMAN"},
	  {"name":"sv","taskReferenceName":"sv","type":"SET_VARIABLE","inputParameters":{"n":1}}]}`)
	id := e.start("vars_big", nil)
	big := `{"v":"` + strings.Repeat("x", engine.MaxVariablesBytes) + `"}`
	for path, body := range map[string]string{
		"/api/workflow/" + id + "/variables":              big,
		"/api/workflow/" + id + "/state?waitForSeconds=0": `{"taskReferenceName":"h","taskResult":{"status":"COMPLETED"},"variables":` + big + `}`,
	} {
		status, out := e.do("POST", path, body)
		if status != http.StatusRequestEntityTooLarge || !strings.Contains(out, fmt.Sprint(engine.MaxVariablesBytes)) {
			t.Fatalf("POST %s with %d bytes of variables: %d %.300s, want 413 naming the limit", path, len(big), status, out)
		}
	}
	if wf := e.workflow(id); len(wf.Variables) != 0 || taskByRef(wf, "h").Status != conductor.TaskInProgress {
		t.Fatalf("refused requests changed the workflow: %d variables, h %s", len(wf.Variables), taskByRef(wf, "h").Status)
	}
	e.must(http.StatusOK, "POST", "/api/tasks/"+id+"/h/COMPLETED", `{}`)
	e.waitStatus(id, conductor.WorkflowCompleted)
}
