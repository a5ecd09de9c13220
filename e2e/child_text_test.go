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

	"github.com/flowvault/flowvault/internal/nodetest"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/masking"
	"github.com/flowvault/flowvault/node"
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

// A child's task that echoes alone a value of its parent's sealed data,
// which the child's input holds in text sealed whole ("Bearer
// ${src.output._secrets.token}"), has it redacted also when the node
// restarted between the hand-off and the echo: the child's memo, rebuilt
// from its state, knew the whole text alone, and the child's records and
// read models held the echo in plain text. Text made of the parent's
// _masked data alone is the child's _masked data: after the child's
// compaction a restart of the child still hands it, where the _secrets
// text reads "***".
func TestRebuiltChildRedactsItsParentsSealedDataInText(t *testing.T) {
	t.Parallel()
	e, cfg := compactingNode(t, 2*time.Second)
	const token, note = "rc-token-Wq83nB5x", "rc-masked-Tz46pK9d"
	e.register(`{"name":"rc_child","tasks":[{"name":"rc_sink","taskReferenceName":"sink","inputParameters":{
	  "auth":"${workflow.input.auth}","note":"${workflow.input.note}"}}]}`,
		`{"name":"rc_parent","tasks":[{"name":"rc_src","taskReferenceName":"src"},
		  {"name":"sub","taskReferenceName":"sub","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"rc_child"},
		   "inputParameters":{"auth":"Bearer ${src.output._secrets.token}","note":"note ${src.output._masked.note}"}}]}`)
	id := e.start("rc_parent", nil)
	e.completeTask(e.takeOne("rc_src"), map[string]any{"_secrets": map[string]any{"token": token}, "_masked": map[string]any{"note": note}})
	sink := e.takeOne("rc_sink")
	if sink.InputData["auth"] != "Bearer "+token || sink.InputData["note"] != "note "+note {
		t.Fatalf("the child's task got %v", sink.InputData)
	}
	child := sink.WorkflowInstanceID
	stop := func(n *node.Node) {
		t.Helper()
		// Each stop its own budget: one shared with the run between them
		// ran out on a loaded machine before the second began.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := n.Stop(ctx); err != nil {
			t.Fatal(err)
		}
	}
	stop(e.node)

	n, base := nodetest.StartConfig(t, cfg)
	e = &env{t: t, node: n, base: base}
	e.completeTask(sink, map[string]any{"echo": token, "echoNote": note})
	cw := e.waitStatus(child, conductor.WorkflowCompleted)
	for k, v := range taskByRef(cw, "sink").OutputData {
		if v != masking.Mask {
			t.Errorf("after the restart the child's task's %s reads %v, want %s", k, v, masking.Mask)
		}
	}
	e.waitStatus(id, conductor.WorkflowCompleted)

	// Compacted: the _secrets text is gone, the _masked one stays.
	e.waitCompacted(child)
	e.must(http.StatusNoContent, "POST", "/api/workflow/"+child+"/restart", nil)
	again := e.takeOne("rc_sink")
	if again.InputData["auth"] != masking.Mask || again.InputData["note"] != "note "+note {
		t.Errorf("a restart of the child after its compaction handed its task %v, want auth %s and the _masked text", again.InputData, masking.Mask)
	}
	e.completeTask(again, map[string]any{"echoNote": note})
	e.waitStatus(child, conductor.WorkflowCompleted)
	e.waitStatus(id, conductor.WorkflowCompleted)

	for _, wfID := range []string{id, child} {
		view := e.must(http.StatusOK, "GET", "/api/workflow/"+wfID+"?includeTasks=true", nil)
		records := e.rawLog(wfID)
		for _, v := range []string{token, note} {
			if strings.Contains(view, v) {
				t.Errorf("workflow %s's view holds %s: %s", wfID, v, view)
			}
			if strings.Contains(records, v) {
				t.Errorf("workflow %s's records hold %s", wfID, v)
			}
		}
	}
	stop(n)
	dump := nodetest.Dump(t, cfg)
	for _, v := range []string{token, note} {
		if strings.Contains(dump, v) {
			t.Errorf("the read models hold %s", v)
		}
	}
}

// Text made of a parent's sealed data inside a _secrets block of its
// SUB_WORKFLOW's input ("_secrets":{"auth":"Bearer
// ${src.output._secrets.token}"}) reaches the child's task as the text
// with the value, whether the decision that starts the child sealed the
// value or an earlier one did: sealed once, not a ciphertext or a
// reference to the parent's sealed value.
func TestTextEmbeddingSealedDataInASecretsBlockReachesAChild(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.register(`{"name":"cs_child","tasks":[{"name":"cs_sink","taskReferenceName":"sink","inputParameters":{
	  "k":"${workflow.input.k}","_secrets":{"auth":"${workflow.input._secrets.auth}"}}}]}`)
	sub := `{"name":"sub","taskReferenceName":"sub","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"cs_child"},
	  "inputParameters":{"k":"${workflow.input.k}","_secrets":{"auth":"Bearer ${src.output._secrets.token}"}}}`
	pause := `{"name":"pause","taskReferenceName":"pause","type":"WAIT","inputParameters":{"duration":"1 seconds"}},`
	rows := map[string]string{"now": sub, "later": pause + sub}
	for name, tasks := range rows {
		e.register(`{"name":"cs_` + name + `","tasks":[{"name":"cs_src","taskReferenceName":"src","inputParameters":{"k":"${workflow.input.k}"}},` + tasks + `]}`)
	}
	token := func(k string) string { return "cs-token-" + k + "-Rn52vJ" }
	e.work("cs_src", 2, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		k, _ := task.InputData["k"].(string)
		return workers.Output{Data: map[string]any{"_secrets": map[string]any{"token": token(k)}}}, nil
	})
	got := make(chan map[string]any, len(rows))
	e.work("cs_sink", 2, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		got <- task.InputData
		return workers.Output{}, nil
	})
	ids := map[string]string{}
	for name := range rows {
		ids[name] = e.start("cs_"+name, map[string]any{"k": name})
	}
	for range rows {
		select {
		case in := <-got:
			k, _ := in["k"].(string)
			if block, _ := in["_secrets"].(map[string]any); block["auth"] != "Bearer "+token(k) {
				t.Errorf("%s: the child's task got %v, want _secrets.auth %q", k, in, "Bearer "+token(k))
			}
		case <-time.After(60 * time.Second):
			t.Fatal("no child's task ran")
		}
	}
	for name, id := range ids {
		parent := e.waitStatus(id, conductor.WorkflowCompleted)
		child := taskByRef(parent, "sub").SubWorkflowID
		e.waitStatus(child, conductor.WorkflowCompleted)
		for _, wfID := range []string{id, child} {
			view := e.must(http.StatusOK, "GET", "/api/workflow/"+wfID+"?includeTasks=true", nil)
			if strings.Contains(view, token(name)) || strings.Contains(e.rawLog(wfID), token(name)) {
				t.Errorf("%s: workflow %s holds the token (view or records)", name, wfID)
			}
		}
	}
}

// Text made of a parent's sealed data inside a block the parent seals
// ("_secrets":{"auth":"Bearer ${src.output._secrets.token}"}), scheduled by
// a decision after the one that sealed the token, is stored sealed whole.
// A rerun from the SUB_WORKFLOW task starts its new child from that
// stored text, as recovery does after a crash between the parent's record
// and the child's start: the child's task gets the text with the value,
// as the first child's did, and no record or view holds it.
func TestTextInASealedBlockReachesARerunsChild(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const token = "rb-token-Hs61pQ2w"
	e.register(`{"name":"rb_child","tasks":[{"name":"rb_sink","taskReferenceName":"sink","inputParameters":{
	  "_secrets":{"auth":"${workflow.input._secrets.auth}"}}}]}`,
		`{"name":"rb_parent","tasks":[{"name":"rb_src","taskReferenceName":"src"},
		  {"name":"pause","taskReferenceName":"pause","type":"WAIT","inputParameters":{"duration":"1 seconds"}},
		  {"name":"sub","taskReferenceName":"sub","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"rb_child"},
		   "inputParameters":{"_secrets":{"auth":"Bearer ${src.output._secrets.token}"}}}]}`)
	e.work("rb_src", 1, func(context.Context, *conductor.Task) (workers.Output, error) {
		return workers.Output{Data: map[string]any{"_secrets": map[string]any{"token": token}}}, nil
	})
	got := make(chan any, 4)
	e.work("rb_sink", 1, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		block, _ := task.InputData["_secrets"].(map[string]any)
		got <- block["auth"]
		return workers.Output{}, nil
	})
	next := func(what string) {
		t.Helper()
		select {
		case auth := <-got:
			if auth != "Bearer "+token {
				t.Errorf("%s: the child's task got _secrets.auth %v, want %q", what, auth, "Bearer "+token)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("%s: no child's task ran", what)
		}
	}
	id := e.start("rb_parent", nil)
	next("the first child")
	first := taskByRef(e.waitStatus(id, conductor.WorkflowCompleted), "sub")
	e.must(http.StatusOK, "POST", "/api/workflow/"+id+"/rerun", conductor.RerunWorkflowRequest{ReRunFromTaskID: first.TaskID})
	next("the rerun's child")
	second := taskByRef(e.waitStatus(id, conductor.WorkflowCompleted), "sub")
	if second.SubWorkflowID == first.SubWorkflowID {
		t.Fatalf("the rerun started no new child: %s", second.SubWorkflowID)
	}
	for _, wfID := range []string{id, first.SubWorkflowID, second.SubWorkflowID} {
		e.waitStatus(wfID, conductor.WorkflowCompleted)
		view := e.must(http.StatusOK, "GET", "/api/workflow/"+wfID+"?includeTasks=true", nil)
		if strings.Contains(view, token) || strings.Contains(e.rawLog(wfID), token) {
			t.Errorf("workflow %s holds the token (view or records)", wfID)
		}
	}
}
