package e2e_test

import (
	"fmt"
	"strings"
	"testing"

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
