package e2e_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/flowvault/flowvault/internal/leaktest"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/workers"
)

// A task's name, reference name and domain are its queue, its workers'
// subject and what searches show, as they are: a decision that would name
// a task with a value the workflow resolved (a DYNAMIC task or a dynamic
// fork's branch named after a worker's echo, a variable a SET_VARIABLE
// set from a secret) is not recorded. The result that brought the value
// fails its task for good instead, and nothing anywhere holds the value.
func TestTaskNamedWithASecretIsRefused(t *testing.T) {
	t.Parallel()
	tok := "lk-" + alnum(24)
	scanners := []*leaktest.Scanner{leaktest.New([]byte(tok))}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	n := startLeakNode(ctx, t, nil)
	e := n.env(t, scanners...)
	e.putSecret("tok", tok)
	e.work("ln_src", 2, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		s := fmt.Sprint(task.InputData["s"])
		return workers.Output{Data: map[string]any{
			"tasks":  []any{map[string]any{"name": "ln_branch", "taskReferenceName": "d_" + s}},
			"inputs": map[string]any{"d_" + s: map[string]any{}},
			"name":   "n_" + s}}, nil
	})
	e.work("ln_branch", 2, func(context.Context, *conductor.Task) (workers.Output, error) {
		return workers.Output{Data: map[string]any{"ok": true}}, nil
	})
	e.register(`{"name":"ln_fork","tasks":[
		  {"name":"ln_src","taskReferenceName":"src","inputParameters":{"s":"${workflow.secrets.tok}"}},
		  {"name":"df","taskReferenceName":"df","type":"FORK_JOIN_DYNAMIC","dynamicForkTasksParam":"tasks","dynamicForkTasksInputParamName":"inputs",
		   "inputParameters":{"tasks":"${src.output.tasks}","inputs":"${src.output.inputs}"}},
		  {"name":"dj","taskReferenceName":"dj","type":"JOIN"}]}`,
		`{"name":"ln_dynamic","tasks":[
		  {"name":"ln_src","taskReferenceName":"src","inputParameters":{"s":"${workflow.secrets.tok}"}},
		  {"name":"dt","taskReferenceName":"dt","type":"DYNAMIC","dynamicTaskNameParam":"tn","inputParameters":{"tn":"${src.output.name}"}}]}`,
		`{"name":"ln_variable","tasks":[
		  {"name":"sv","taskReferenceName":"sv","type":"SET_VARIABLE","inputParameters":{"v":"${workflow.secrets.tok}"}},
		  {"name":"dt","taskReferenceName":"dt","type":"DYNAMIC","dynamicTaskNameParam":"tn","inputParameters":{"tn":"${workflow.variables.v}"}}]}`)
	for _, tc := range []struct{ name, refused string }{
		{"ln_fork", "src"},
		{"ln_dynamic", "src"},
		{"ln_variable", "sv"},
	} {
		wf := e.waitStatus(e.start(tc.name, nil), conductor.WorkflowFailed)
		var refused *conductor.Task
		for _, tk := range wf.Tasks {
			if tk.ReferenceTaskName == tc.refused {
				refused = tk
			}
		}
		switch {
		case len(wf.Tasks) != 1 || refused == nil:
			t.Fatalf("%s: tasks %v; want %s alone, its successor never scheduled", tc.name, taskRefs(wf), tc.refused)
		case refused.Status != conductor.TaskFailedWithTerminalError || !strings.Contains(refused.ReasonForIncompletion, "would be named"):
			t.Fatalf("%s: %s %s %q; want it failed for good, saying a task would be named with a secret value",
				tc.name, tc.refused, refused.Status, refused.ReasonForIncompletion)
		}
	}
	e.must(http.StatusOK, "GET", "/api/workflow/search?freeText=*&size=100", nil)
	e.must(http.StatusOK, "GET", "/api/tasks/search?freeText=*&size=100", nil)
	e.must(http.StatusOK, "GET", "/api/tasks/queue/all/verbose", nil)
	e.must(http.StatusOK, "GET", "/metrics", nil)
	n.scanEverything(t, scanners, []string{"tok"})
}

func taskRefs(wf *conductor.Workflow) []string {
	var refs []string
	for _, tk := range wf.Tasks {
		refs = append(refs, tk.ReferenceTaskName+" "+tk.Status)
	}
	return refs
}
