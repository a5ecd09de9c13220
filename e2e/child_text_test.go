package e2e_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/masking"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/workers"
)

// Text a workflow gives another one (a SUB_WORKFLOW's input, a
// START_WORKFLOW's startWorkflow.input) that embeds a value it sealed
// ("Bearer ${src.output._secrets.token}") reaches the started workflow's
// task with the value, as a worker task of the starter gets it, whether the
// value was sealed by the decision that starts the workflow or an earlier
// one. The started workflow holds the text sealed: its views read "***",
// and neither workflow's records hold the value in plain text.
func TestTextEmbeddingSealedDataReachesAStartedWorkflow(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const secret = "ct-plain-secret-Qm4xV8"
	e.putSecret("ct_plain", secret)
	e.register(`{"name":"ct_child","tasks":[{"name":"ct_sink","taskReferenceName":"sink","inputParameters":{
	  "k":"${workflow.input.k}","auth":"${workflow.input.auth}","token":"${workflow.input.token}","mixed":"${workflow.input.mixed}"}}]}`)
	input := `{"k":"${workflow.input.k}","auth":"Bearer ${src.output._secrets.token}","token":"${src.output._secrets.token}",
	  "mixed":"${workflow.secrets.ct_plain}:${src.output._secrets.token}"}`
	sub := `{"name":"sub","taskReferenceName":"sub","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"ct_child"},"inputParameters":` + input + `}`
	start := `{"name":"start","taskReferenceName":"start","type":"START_WORKFLOW","inputParameters":{"startWorkflow":{"name":"ct_child","input":` + input + `}}}`
	pause := `{"name":"pause","taskReferenceName":"pause","type":"WAIT","inputParameters":{"duration":"1 seconds"}},`
	rows := []struct {
		name, tasks string
		sub         bool
	}{
		// The decision that takes in the token starts the workflow.
		{name: "sub", tasks: sub, sub: true},
		{name: "start", tasks: start},
		// A later one does: the starter's input holds a reference to
		// the sealed value.
		{name: "sublater", tasks: pause + sub, sub: true},
		{name: "startlater", tasks: pause + start},
	}
	tokens := map[string]string{}
	for _, r := range rows {
		tokens[r.name] = "ct-token-" + r.name + "-Hw7pL2"
		e.register(`{"name":"ct_` + r.name + `","tasks":[{"name":"ct_src","taskReferenceName":"src","inputParameters":{"k":"${workflow.input.k}"}},` + r.tasks + `]}`)
	}
	e.work("ct_src", 2, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		k, _ := task.InputData["k"].(string)
		return workers.Output{Data: map[string]any{"_secrets": map[string]any{"token": tokens[k]}}}, nil
	})
	got := make(chan map[string]any, len(rows))
	e.work("ct_sink", 2, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		got <- task.InputData
		// The secret alone, which no key of the child's input holds
		// whole.
		mixed, _ := task.InputData["mixed"].(string)
		secretPart, _, _ := strings.Cut(mixed, ":")
		return workers.Output{Data: map[string]any{"echo": "used " + secretPart}}, nil
	})
	ids := map[string]string{}
	for _, r := range rows {
		ids[r.name] = e.start("ct_"+r.name, map[string]any{"k": r.name})
	}
	received := map[string]map[string]any{}
	deadline := time.After(60 * time.Second)
	for len(received) < len(rows) {
		select {
		case in := <-got:
			received[fmt.Sprint(in["k"])] = in
		case <-deadline:
			t.Fatalf("the started workflows' tasks got %v", received)
		}
	}
	for _, r := range rows {
		token := tokens[r.name]
		want := map[string]any{"auth": "Bearer " + token, "token": token, "mixed": secret + ":" + token}
		for k, v := range want {
			if received[r.name][k] != v {
				t.Errorf("%s: the started workflow's task got %s = %v, want %v", r.name, k, received[r.name][k], v)
			}
		}
		parent := e.waitStatus(ids[r.name], conductor.WorkflowCompleted)
		var child string
		if r.sub {
			child = taskByRef(parent, "sub").SubWorkflowID
		} else {
			child, _ = taskByRef(parent, "start").OutputData["workflowId"].(string)
		}
		cw := e.waitStatus(child, conductor.WorkflowCompleted)
		if echo := taskByRef(cw, "sink").OutputData["echo"]; echo != "used "+masking.Mask {
			t.Errorf("%s: the started workflow's task's echo of the secret reads %v, want it redacted", r.name, echo)
		}
		for _, k := range []string{"auth", "token", "mixed"} {
			if cw.Input[k] != masking.Mask {
				t.Errorf("%s: the started workflow's input %s reads %v, want %s", r.name, k, cw.Input[k], masking.Mask)
			}
			if v := taskByRef(cw, "sink").InputData[k]; v != masking.Mask {
				t.Errorf("%s: the started workflow's task's input %s reads %v, want %s", r.name, k, v, masking.Mask)
			}
		}
		for what, id := range map[string]string{"starter": ids[r.name], "started": child} {
			view := e.must(http.StatusOK, "GET", "/api/workflow/"+id+"?includeTasks=true", nil)
			records := e.rawLog(id)
			for _, v := range []string{token, secret} {
				if strings.Contains(view, v) {
					t.Errorf("%s: the %s workflow's view holds %q: %s", r.name, what, v, view)
				}
				if strings.Contains(records, v) {
					t.Errorf("%s: the %s workflow's records hold %q", r.name, what, v)
				}
			}
		}
	}
}

// A child started again with text made of its parent's sealed data gets
// the value as the first child did: a retry of its SUB_WORKFLOW task (the
// task definition's retryCount) and a restart of the parent (whose first
// task seals a new value); a rerun after the parent's compaction hands
// "***". A child's task that echoes the value alone, which no key of the
// child's input holds whole, has its output redacted.
func TestTextEmbeddingSealedDataReachesARetriedChild(t *testing.T) {
	t.Parallel()
	e := compactingEnv(t, 3*time.Second)
	e.must(http.StatusNoContent, "POST", "/api/metadata/taskdefs",
		`[{"name":"cr_sub","retryCount":1,"retryLogic":"FIXED","retryDelaySeconds":0},{"name":"cr_sink","retryCount":0}]`)
	e.register(`{"name":"cr_child","tasks":[{"name":"cr_sink","taskReferenceName":"sink","inputParameters":{"auth":"${workflow.input.auth}"}}]}`,
		`{"name":"cr_parent","tasks":[{"name":"cr_src","taskReferenceName":"src"},
		  {"name":"cr_sub","taskReferenceName":"sub","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"cr_child"},
		   "inputParameters":{"auth":"Bearer ${src.output._secrets.token}"}}]}`)
	var runs atomic.Int32
	var tokens []string
	var mu sync.Mutex
	e.work("cr_src", 1, func(context.Context, *conductor.Task) (workers.Output, error) {
		token := fmt.Sprintf("cr-token-%d-Jd5sW1", runs.Add(1))
		mu.Lock()
		tokens = append(tokens, token)
		mu.Unlock()
		return workers.Output{Data: map[string]any{"_secrets": map[string]any{"token": token}}}, nil
	})
	got := make(chan string, 8)
	var sinks atomic.Int32
	e.work("cr_sink", 1, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		auth, _ := task.InputData["auth"].(string)
		got <- auth
		if sinks.Add(1) == 1 {
			return workers.Output{}, errors.New("first attempt fails")
		}
		return workers.Output{Data: map[string]any{"echo": "used " + strings.TrimPrefix(auth, "Bearer ")}}, nil
	})
	next := func(what, want string) {
		t.Helper()
		select {
		case auth := <-got:
			if auth != want {
				t.Errorf("%s: the child's task got %q, want %q", what, auth, want)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("%s: no child's task ran", what)
		}
	}
	var children []string
	childDone := func(what string, wf *conductor.Workflow) {
		t.Helper()
		for _, task := range wf.Tasks {
			if task.ReferenceTaskName == "sub" {
				children = append(children, task.SubWorkflowID) // the failed one too
			}
		}
		cw := e.waitStatus(taskByRef(wf, "sub").SubWorkflowID, conductor.WorkflowCompleted)
		if echo := taskByRef(cw, "sink").OutputData["echo"]; echo != "used "+masking.Mask {
			t.Errorf("%s: the child's task's echo reads %v, want it redacted", what, echo)
		}
	}
	id := e.start("cr_parent", nil)
	next("first child", "Bearer cr-token-1-Jd5sW1")
	next("the retry's child", "Bearer cr-token-1-Jd5sW1")
	childDone("the retry's child", e.waitStatus(id, conductor.WorkflowCompleted))

	e.must(http.StatusNoContent, "POST", "/api/workflow/"+id+"/restart", nil)
	next("the restart's child", "Bearer cr-token-2-Jd5sW1")
	childDone("the restart's child", e.waitStatus(id, conductor.WorkflowCompleted))

	// Compacted since the restart, which ran it under a new key.
	testutil.Eventually(t, 30*time.Second, 100*time.Millisecond, func() error {
		compacted := false
		for _, ev := range e.events(id) {
			switch ev.(type) {
			case *schemas.WorkflowReset:
				compacted = false
			case *schemas.WorkflowCompacted:
				compacted = true
			}
		}
		if !compacted {
			return errors.New("the restart is not compacted yet")
		}
		return nil
	})
	e.must(http.StatusOK, "POST", "/api/workflow/"+id+"/rerun", conductor.RerunWorkflowRequest{ReRunFromTaskID: taskByRef(e.workflow(id), "sub").TaskID})
	next("the rerun's child after compaction", "Bearer "+masking.Mask)
	wf := e.waitStatus(id, conductor.WorkflowCompleted)
	children = append(children, taskByRef(wf, "sub").SubWorkflowID)
	e.waitStatus(children[len(children)-1], conductor.WorkflowCompleted)

	mu.Lock()
	defer mu.Unlock()
	for _, wfID := range append([]string{id}, children...) {
		view := e.must(http.StatusOK, "GET", "/api/workflow/"+wfID+"?includeTasks=true", nil)
		records := e.rawLog(wfID)
		for _, token := range tokens {
			if strings.Contains(view, token) || strings.Contains(records, token) {
				t.Errorf("workflow %s holds %s (view or records)", wfID, token)
			}
		}
	}
}
