package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/flowvault/flowvault/internal/leaktest"
	"github.com/flowvault/flowvault/internal/nodetest"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/masking"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/workers"
)

// Sealed data where it moves between tasks and workflows: out of a fork's
// branches through its JOIN, out of a loop's iterations (keepLastN) to a
// SWITCH's case, out of a child into its parent (read once the child is
// compacted) and from a parent into its child, into a failure workflow and
// a TERMINATE's output, a variable, a dynamic fork's inputs, an EVENT and a
// START_WORKFLOW. Each downstream task gets the real value (an EVENT
// "***"); every read path, the log, the streams, the Pebble store and the
// files hold none, and a rerun after compaction hands out "***" for
// _secrets data and the value for _masked data.
func TestSealedDataAcrossStructures(t *testing.T) {
	t.Parallel()
	names := []string{"fork_a", "fork_b", "masked_fork", "loop1", "loop2", "loop3", "parent", "child", "masked_child", "fail", "fail_in", "misc"}
	values := map[string]string{}
	scanners := map[string]*leaktest.Scanner{}
	for _, n := range names {
		values[n] = n + "-" + string(leaktest.RandomSecret(24))
		scanners[n] = leaktest.New([]byte(values[n]))
	}

	dir := filepath.Join(t.TempDir(), "data")
	cfg := nodetest.Config(dir)
	cfg.CompactionDelay = time.Second
	logger, logs := testutil.CapturingLogger()
	n, base := nodetest.StartLogger(t, cfg, logger)
	e := &env{t: t, node: n, base: base}
	e.register(
		`{"name":"ss_fork","tasks":[
		  {"name":"fork","taskReferenceName":"fork","type":"FORK_JOIN","forkTasks":[
		    [{"name":"ss_src","taskReferenceName":"fa","inputParameters":{"k":"fork_a","m":"masked_fork"}}],
		    [{"name":"ss_src","taskReferenceName":"fb","inputParameters":{"k":"fork_b"}}]]},
		  {"name":"join","taskReferenceName":"join","type":"JOIN","joinOn":["fa","fb"]},
		  {"name":"ss_sink","taskReferenceName":"use","inputParameters":{"k":"fork","v":"${join.output.fa._secrets.x}",
		    "w":"${join.output.fb._secrets.x}","m":"${join.output.fa._masked.m}"}}],
		  "outputParameters":{"j":"${join.output}","v":"${join.output.fa._secrets.x}"}}`,
		`{"name":"ss_loop","tasks":[
		  {"name":"loop","taskReferenceName":"loop","type":"DO_WHILE","inputParameters":{"keepLastN":2},
		   "loopCondition":"$.loop['iteration'] < 3","loopOver":[{"name":"ss_src","taskReferenceName":"ls","inputParameters":{"k":"loop"}}]},
		  {"name":"sw","taskReferenceName":"sw","type":"SWITCH","evaluatorType":"value-param","expression":"x",
		   "inputParameters":{"x":"${ls.output._secrets.x}"},"decisionCases":{"none":[{"name":"n","taskReferenceName":"n","type":"NOOP"}]},
		   "defaultCase":[{"name":"ss_sink","taskReferenceName":"use","inputParameters":{"k":"loop","v":"${ls.output._secrets.x}","all":"${loop.output}"}}]}],
		  "outputParameters":{"l":"${loop.output}"}}`,
		`{"name":"ss_child","tasks":[
		  {"name":"ss_sink","taskReferenceName":"cin","inputParameters":{"k":"child_in","v":"${workflow.input._secrets.p}"}},
		  {"name":"ss_src","taskReferenceName":"cs","inputParameters":{"k":"child","m":"masked_child"}}],
		  "outputParameters":{"_secrets":{"x":"${cs.output._secrets.x}"},"_masked":{"m":"${cs.output._masked.m}"},"copied":"${workflow.input._secrets.p}"}}`,
		`{"name":"ss_parent","tasks":[
		  {"name":"ss_src","taskReferenceName":"ps","inputParameters":{"k":"parent"}},
		  {"name":"child","taskReferenceName":"sub","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"ss_child"},
		   "inputParameters":{"_secrets":{"p":"${ps.output._secrets.x}"}}},
		  {"name":"hold","taskReferenceName":"hold","type":"WAIT"},
		  {"name":"ss_sink","taskReferenceName":"use","inputParameters":{"k":"sub","v":"${sub.output._secrets.x}","m":"${sub.output._masked.m}","copied":"${sub.output.copied}"}}],
		  "outputParameters":{"cx":"${sub.output._secrets.x}","c":"${sub.output}","_secrets":{"y":"${sub.output._secrets.x}"}}}`,
		`{"name":"ss_fails","failureWorkflow":"ss_cleanup","tasks":[
		  {"name":"ss_src","taskReferenceName":"fs","inputParameters":{"k":"fail"}},
		  {"name":"term","taskReferenceName":"term","type":"TERMINATE","inputParameters":{"terminationStatus":"FAILED",
		    "workflowOutput":{"_secrets":{"x":"${fs.output._secrets.x}"},"plain":"${fs.output._secrets.x}"}}}]}`,
		`{"name":"ss_cleanup","tasks":[{"name":"ss_sink","taskReferenceName":"clean","inputParameters":{"k":"cleanup","v":"${workflow.input._secrets.in}"}}]}`,
		`{"name":"ss_started","tasks":[{"name":"ss_sink","taskReferenceName":"st","inputParameters":{"k":"started","v":"${workflow.input._secrets.v}","p":"${workflow.input.plain}"}}]}`,
		`{"name":"ss_misc","tasks":[
		  {"name":"ss_src","taskReferenceName":"ms","inputParameters":{"k":"misc"}},
		  {"name":"setv","taskReferenceName":"setv","type":"SET_VARIABLE","inputParameters":{"_secrets":{"v":"${ms.output._secrets.x}"},"copy":"${ms.output._secrets.x}"}},
		  {"name":"ss_sink","taskReferenceName":"var","inputParameters":{"k":"var","v":"${workflow.variables._secrets.v}","c":"${workflow.variables.copy}"}},
		  {"name":"dfork","taskReferenceName":"dfork","type":"FORK_JOIN_DYNAMIC","dynamicForkTasksParam":"tasks","dynamicForkTasksInputParamName":"inputs",
		   "inputParameters":{"tasks":[{"name":"ss_sink","taskReferenceName":"d1"}],"inputs":{"d1":{"k":"dyn","v":"${ms.output._secrets.x}"}}}},
		  {"name":"djoin","taskReferenceName":"djoin","type":"JOIN"},
		  {"name":"ev","taskReferenceName":"ev","type":"EVENT","sink":"nats:ssmask.ev","inputParameters":{"v":"${ms.output._secrets.x}","_secrets":{"y":"${ms.output._secrets.x}"}}},
		  {"name":"sw","taskReferenceName":"sw","type":"START_WORKFLOW","inputParameters":{"startWorkflow":{"name":"ss_started",
		    "input":{"_secrets":{"v":"${ms.output._secrets.x}"},"plain":"${ms.output._secrets.x}"}}}}],
		  "outputParameters":{"vars":"${workflow.variables}","d":"${djoin.output}"}}`)

	var mu sync.Mutex
	loops := 0
	e.work("ss_src", 2, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		k, _ := task.InputData["k"].(string)
		if k == "loop" {
			mu.Lock()
			loops++
			k = fmt.Sprintf("loop%d", loops)
			mu.Unlock()
		}
		out := map[string]any{"_secrets": map[string]any{"x": values[k]}}
		if m, ok := task.InputData["m"].(string); ok {
			out["_masked"] = map[string]any{"m": values[m]}
		}
		return workers.Output{Data: out}, nil
	})
	got := make(chan map[string]any, 32)
	e.work("ss_sink", 2, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		got <- task.InputData
		return workers.Output{}, nil
	})
	received := map[string]map[string]any{}
	// expect waits for the input of the sink task k and compares the keys
	// of want with it.
	expect := func(what, k string, want map[string]any) map[string]any {
		t.Helper()
		deadline := time.After(30 * time.Second)
		for received[k] == nil {
			select {
			case in := <-got:
				received[fmt.Sprint(in["k"])] = in
			case <-deadline:
				t.Fatalf("%s: no task got %s's input (got %v)", what, k, received)
			}
		}
		in := received[k]
		delete(received, k)
		for key, v := range want {
			if in[key] != v {
				t.Errorf("%s: task %s got %s = %v, want %v", what, k, key, in[key], v)
			}
		}
		return in
	}
	var c struct{ Creds string }
	if err := json.Unmarshal([]byte(e.must(http.StatusOK, "POST", "/api/workers/credentials",
		map[string]any{"subscribe": []string{"ssmask.>"}, "name": "ss-events"})), &c); err != nil {
		t.Fatal(err)
	}
	nc, err := workers.Connect(n.Log().ClientURL(), []byte(c.Creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	events, err := nc.SubscribeSync("ssmask.ev")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	event := func(what string) {
		t.Helper()
		msg, err := events.NextMsg(20 * time.Second)
		if err != nil {
			t.Fatalf("%s: no event: %v", what, err)
		}
		var ev map[string]any
		if err := json.Unmarshal(msg.Data, &ev); err != nil || ev["v"] != masking.Mask || ev["_secrets"].(map[string]any)["y"] != masking.Mask {
			t.Errorf("%s: the EVENT published %s (%v)", what, msg.Data, err)
		}
	}

	fork := e.start("ss_fork", nil)
	expect("fork", "fork", map[string]any{"v": values["fork_a"], "w": values["fork_b"], "m": values["masked_fork"]})
	loop := e.start("ss_loop", nil)
	all, _ := expect("loop", "loop", map[string]any{"v": values["loop3"]})["all"].(map[string]any)
	if _, kept := all["1"]; kept || all["3"] == nil {
		t.Errorf("the loop's output keeps iterations %v, want the last 2", all)
	}
	parent := e.start("ss_parent", nil)
	expect("sub-workflow input", "child_in", map[string]any{"v": values["parent"]})
	// The parent's task reads the child's output once the child's own key
	// is destroyed: what it holds is sealed under the parent's.
	// completeHold completes the parent's WAIT once it waits.
	completeHold := func(id string) {
		t.Helper()
		var hold *conductor.Task
		testutil.Eventually(t, 20*time.Second, 20*time.Millisecond, func() error {
			if hold = taskByRef(e.workflow(id), "hold"); hold == nil || hold.Status != conductor.TaskInProgress {
				return fmt.Errorf("the parent does not wait yet")
			}
			return nil
		})
		e.must(http.StatusOK, "POST", "/api/tasks", conductor.TaskResult{TaskID: hold.TaskID, WorkflowInstanceID: id, Status: conductor.TaskCompleted})
	}
	e.waitCompacted(e.childOf(parent))
	completeHold(parent)
	expect("sub-workflow output", "sub", map[string]any{"v": values["child"], "m": values["masked_child"], "copied": masking.Mask})
	fails := e.start("ss_fails", map[string]any{"_secrets": map[string]any{"in": values["fail_in"]}})
	expect("failure workflow", "cleanup", map[string]any{"v": values["fail_in"]})
	misc := e.start("ss_misc", nil)
	expect("variables", "var", map[string]any{"v": values["misc"], "c": values["misc"]})
	expect("dynamic fork", "dyn", map[string]any{"v": values["misc"]})
	expect("START_WORKFLOW", "started", map[string]any{"v": values["misc"], "p": values["misc"]})
	event("EVENT")

	// Every workflow, the ones the engine started included, ends and is
	// compacted.
	ids := []string{fork, loop, parent, fails, misc}
	e.waitStatus(fork, conductor.WorkflowCompleted)
	e.waitStatus(loop, conductor.WorkflowCompleted)
	e.waitStatus(parent, conductor.WorkflowCompleted)
	e.waitStatus(misc, conductor.WorkflowCompleted)
	failed := e.waitStatus(fails, conductor.WorkflowFailed)
	ids = append(ids, failed.Output["conductor.failure_workflow"].(string))
	started, _ := taskByRef(e.workflow(misc), "sw").OutputData["workflowId"].(string)
	ids = append(ids, e.childOf(parent), started)
	paths := []string{"/api/workflow/search?freeText=*&size=100", "/api/workflow/search-v2?freeText=*&size=100", "/api/tasks/search?freeText=*&size=100"}
	for _, id := range ids {
		e.waitStatus(id, e.workflow(id).Status)
		e.waitCompacted(id)
		paths = append(paths, "/api/workflow/"+id+"?includeTasks=true", "/api/workflow/"+id+"/status?includeOutput=true&includeVariables=true")
		for _, task := range e.workflow(id).Tasks {
			paths = append(paths, "/api/tasks/"+task.TaskID)
		}
	}
	for _, p := range paths {
		body := e.must(http.StatusOK, "GET", p, nil)
		for _, sc := range scanners {
			sc.Scan("http "+p, []byte(body))
		}
	}

	// Reruns after compaction: _secrets data is gone, _masked data stays.
	for _, rr := range []struct {
		id, from string
		want     map[string]map[string]any
	}{
		{fork, "use", map[string]map[string]any{"fork": {"v": masking.Mask, "w": masking.Mask, "m": values["masked_fork"]}}},
		{loop, "use", map[string]map[string]any{"loop": {"v": masking.Mask}}},
		{parent, "use", map[string]map[string]any{"sub": {"v": masking.Mask, "m": values["masked_child"]}}},
		{parent, "sub", map[string]map[string]any{"child_in": {"v": masking.Mask}, "sub": {"v": values["child"]}}},
		{misc, "setv", map[string]map[string]any{"var": {"v": masking.Mask, "c": masking.Mask}, "dyn": {"v": masking.Mask},
			"started": {"v": masking.Mask, "p": masking.Mask}}},
	} {
		wf := e.workflow(rr.id)
		e.must(http.StatusOK, "POST", "/api/workflow/"+rr.id+"/rerun", conductor.RerunWorkflowRequest{ReRunFromTaskID: taskByRef(wf, rr.from).TaskID})
		if rr.from == "sub" {
			completeHold(rr.id)
		}
		keys := make([]string, 0, len(rr.want))
		for k := range rr.want {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			expect("rerun of "+wf.WorkflowName+" from "+rr.from, k, rr.want[k])
		}
		e.waitStatus(rr.id, conductor.WorkflowCompleted)
	}
	event("EVENT rerun")

	js := n.Log().JetStream()
	for _, sc := range scanners {
		sc.ScanStreams(t, js)
	}
	if err := n.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		sc := scanners[name]
		sc.Scan("log output", []byte(logs.String()))
		sc.ScanPebble(t, cfg.PebbleDir())
		sc.ScanDir(t, dir)
		t.Log(name)
		sc.Check(t)
	}
}
