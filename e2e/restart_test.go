package e2e_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/flowvault/flowvault/internal/nodetest"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/node"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// A WAIT task survives a server restart and completes after it, also when
// its deadline passed while the server was down.
func TestWaitSurvivesRestart(t *testing.T) {
	t.Parallel()
	cfg := nodetest.Config(filepath.Join(t.TempDir(), "data"))
	n, base := nodetest.StartConfig(t, cfg)
	e := &env{t: t, node: n, base: base}
	e.register(`{"name":"sleepy","tasks":[{"name":"nap","taskReferenceName":"nap","type":"WAIT","inputParameters":{"duration":"1s"}},
	  {"name":"after","taskReferenceName":"after","type":"SET_VARIABLE","inputParameters":{"woke":true}}]}`)
	id := e.start("sleepy", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond) // the deadline passes while the server is down
	restarted := time.Now()

	n2, base2 := nodetest.StartConfig(t, cfg)
	e2 := &env{t: t, node: n2, base: base2}
	wf := e2.waitStatus(id, conductor.WorkflowCompleted)
	nap := taskByRef(wf, "nap")
	if nap.Status != conductor.TaskCompleted || time.UnixMilli(nap.EndTime).Before(restarted) || wf.Variables["woke"] != true {
		t.Fatalf("nap %s ended %s (restart at %s), variables %v", nap.Status, time.UnixMilli(nap.EndTime), restarted, wf.Variables)
	}
	e2.must(http.StatusOK, "GET", "/health", nil)
}

// A response timeout that passes while the server is down is acted on
// once after it restarts: the silent worker's task is TIMED_OUT with
// Conductor's reason and retried once, the retry linked to it.
func TestResponseTimeoutSurvivesRestart(t *testing.T) {
	t.Parallel()
	cfg := nodetest.Config(filepath.Join(t.TempDir(), "data"))
	n, base := nodetest.StartConfig(t, cfg)
	e := &env{t: t, node: n, base: base}
	e.must(http.StatusNoContent, "POST", "/api/metadata/taskdefs",
		`[{"name":"silent","retryCount":1,"retryDelaySeconds":0,"responseTimeoutSeconds":2}]`)
	e.register(`{"name":"silent_flow","tasks":[{"name":"silent","taskReferenceName":"s"}]}`)
	id := e.start("silent_flow", nil)
	var taken []*conductor.Task
	testutil.Eventually(t, 10*time.Second, 20*time.Millisecond, func() error {
		if taken = e.pollBatch("silent", "w1", 1, 100*time.Millisecond, ""); len(taken) != 1 {
			return fmt.Errorf("polled %d tasks", len(taken))
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Until(time.UnixMilli(taken[0].UpdateTime).Add(2500 * time.Millisecond))) // the timeout passes while the server is down
	restarted := time.Now()

	n2, base2 := nodetest.StartConfig(t, cfg)
	e2 := &env{t: t, node: n2, base: base2}
	var wf *conductor.Workflow
	testutil.Eventually(t, 30*time.Second, 20*time.Millisecond, func() error {
		if wf = e2.workflow(id); len(wf.Tasks) < 2 {
			return fmt.Errorf("%d tasks, want the timed-out one and its retry", len(wf.Tasks))
		}
		return nil
	})
	time.Sleep(500 * time.Millisecond) // a second firing would show by now
	wf = e2.workflow(id)
	if len(wf.Tasks) != 2 || wf.Status != conductor.WorkflowRunning {
		t.Fatalf("workflow %s with %d tasks, want RUNNING with 2", wf.Status, len(wf.Tasks))
	}
	first, retry := wf.Tasks[0], wf.Tasks[1]
	if want := "responseTimeout: 2 exceeded for the taskId: " + first.TaskID + " with Task Definition: silent"; first.TaskID != taken[0].TaskID ||
		first.Status != conductor.TaskTimedOut || first.ReasonForIncompletion != want || !first.Retried || time.UnixMilli(first.EndTime).Before(restarted) {
		t.Fatalf("timed-out task %s %s %q retried=%v ended %s (restart at %s)", first.TaskID, first.Status, first.ReasonForIncompletion,
			first.Retried, time.UnixMilli(first.EndTime), restarted)
	}
	if retry.Status != conductor.TaskScheduled || retry.RetryCount != 1 || retry.RetriedTaskID != first.TaskID || retry.Seq <= first.Seq {
		t.Fatalf("retry %s retryCount %d retriedTaskId %q seq %d (first's %d)", retry.Status, retry.RetryCount, retry.RetriedTaskID, retry.Seq, first.Seq)
	}
}

// Redaction after a restart still knows what the hand-off before it
// resolved, down to the one field of a JSON secret a task took, also when
// the secret was overwritten since (its old value's key destroyed): the
// worker's result, reported to the restarted server, is stored redacted.
func TestRedactionSurvivesRestart(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		overwrite bool
	}{{"secret unchanged", false}, {"secret overwritten", true}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			const password = "hunter2-json-field-Zx81"
			cfg := nodetest.Config(filepath.Join(t.TempDir(), "data"))
			n, base := nodetest.StartConfig(t, cfg)
			e := &env{t: t, node: n, base: base}
			e.putSecret("db", `{"user":"app","password":"`+password+`"}`)
			e.register(`{"name":"uses_db","tasks":[{"name":"db_echo","taskReferenceName":"echo","inputParameters":{"pw":"${workflow.secrets.db.password}"}}]}`)
			id := e.start("uses_db", nil)
			var task *conductor.Task
			for task == nil {
				if tasks := e.pollBatch("db_echo", "w1", 1, time.Second, ""); len(tasks) == 1 {
					task = tasks[0]
				}
			}
			if task.InputData["pw"] != password {
				t.Fatalf("the worker got %v", task.InputData["pw"])
			}
			if tc.overwrite {
				e.putSecret("db", `{"user":"app","password":"rotated-password-Qm27"}`)
			}
			e2 := restartNode(t, n, cfg)
			e2.expect(e2.call("POST", "/api/tasks", map[string]any{"taskId": task.TaskID, "workflowInstanceId": id,
				"status": "COMPLETED", "outputData": map[string]any{"echo": "the password is " + password}}, "application/json"),
				http.StatusOK, "text/plain")
			wf := e2.waitStatus(id, conductor.WorkflowCompleted)
			if got := taskByRef(wf, "echo").OutputData["echo"]; got != "the password is ***" {
				t.Fatalf("output after the restart: %v", got)
			}
			if strings.Contains(e2.rawLog(id), password) {
				t.Fatal("the log holds the password")
			}
		})
	}
}

// A task whose secret and environment references sit in lists is handed
// them resolved after a restart, as before it: the paths of its
// references are read back from the log, where msgpack decodes a list
// index as the smallest integer type that holds it, and the task failed
// for good ("l[1]: no deferred string here") when a worker took it.
func TestListReferencesResolveAfterRestart(t *testing.T) {
	t.Parallel()
	cfg := nodetest.Config(filepath.Join(t.TempDir(), "data"))
	n, base := nodetest.StartConfig(t, cfg)
	e := &env{t: t, node: n, base: base}
	const secret = "list-secret-Vb7kQ2"
	e.putSecret("lr_tok", secret)
	e.must(http.StatusOK, "PUT", "/api/environment/lr_region", "eu-west-1")
	e.register(`{"name":"list_refs","tasks":[{"name":"list_refs","taskReferenceName":"lr","inputParameters":{
	  "args":["--token","${workflow.secrets.lr_tok}"],
	  "env":["a","${workflow.env.lr_region}"],
	  "headers":[{"name":"Authorization","value":"Bearer ${workflow.secrets.lr_tok}"}],
	  "plain":"${workflow.env.lr_region}"}}]}`)
	id := e.start("list_refs", nil)
	e2 := restartNode(t, n, cfg)
	var taken []*conductor.Task
	testutil.Eventually(t, 20*time.Second, 20*time.Millisecond, func() error {
		if taken = e2.pollBatch("list_refs", "w1", 1, 100*time.Millisecond, ""); len(taken) != 1 {
			wf := e2.workflow(id)
			return fmt.Errorf("polled %d tasks; workflow %s %q", len(taken), wf.Status, wf.ReasonForIncompletion)
		}
		return nil
	})
	want := map[string]any{
		"args":    []any{"--token", secret},
		"env":     []any{"a", "eu-west-1"},
		"headers": []any{map[string]any{"name": "Authorization", "value": "Bearer " + secret}},
		"plain":   "eu-west-1",
	}
	for k, v := range want {
		if got := taken[0].InputData[k]; !reflect.DeepEqual(got, v) {
			t.Errorf("input %s = %#v, want %#v", k, got, v)
		}
	}
}

// restartNode stops n and starts a node again on the data directory of
// cfg, as a server restarted.
func restartNode(t *testing.T, n *node.Node, cfg node.Config) *env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	n2, base2 := nodetest.StartConfig(t, cfg)
	return &env{t: t, node: n2, base: base2}
}

// A rerun asked of a parent from a task of its child, after the parent's
// SUB_WORKFLOW task timed out (TIME_OUT_WF, the child left running),
// reruns the parent once: the task, waiting for the child again, times
// out again, and the engine's restart, whose recovery tells the parent
// again that the running child was rerun, leaves the parent as it ended.
func TestChildRerunActedOnOnceAcrossRestart(t *testing.T) {
	t.Parallel()
	cfg := nodetest.Config(filepath.Join(t.TempDir(), "data"))
	n, base := nodetest.StartConfig(t, cfg)
	e := &env{t: t, node: n, base: base}
	e.register(`{"name":"sra_kid","tasks":[{"name":"sra_h","taskReferenceName":"h","type":"HUMAN"}]}`,
		`{"name":"sra_parent","tasks":[{"name":"sra_sub","taskReferenceName":"sub","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"sra_kid"},
		  "taskDefinition":{"name":"sra_sub","timeoutSeconds":2,"timeoutPolicy":"TIME_OUT_WF","responseTimeoutSeconds":1,"retryCount":0}}]}`)
	id := e.start("sra_parent", nil)
	kid := e.childOf(id)
	e.waitStatus(id, conductor.WorkflowTimedOut)
	e.waitStatus(kid, conductor.WorkflowRunning) // left running
	e.must(http.StatusOK, "POST", "/api/tasks/"+kid+"/h/FAILED", map[string]any{})
	h := taskByRef(e.waitStatus(kid, conductor.WorkflowFailed), "h").TaskID
	e.must(http.StatusOK, "POST", "/api/workflow/"+id+"/rerun", map[string]any{"reRunFromTaskId": h})
	e.waitStatus(kid, conductor.WorkflowRunning)
	e.waitStatus(id, conductor.WorkflowRunning)
	ended := e.waitStatus(id, conductor.WorkflowTimedOut) // the task's timeout again
	e.waitStatus(kid, conductor.WorkflowRunning)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.Stop(ctx); err != nil {
		t.Fatal(err)
	}

	n2, base2 := nodetest.StartConfig(t, cfg)
	e2 := &env{t: t, node: n2, base: base2}
	reopened := func(outcome string) float64 {
		return testutil.MetricValue(t, n2.Registry(), "flowvault_engine_decisions_total", map[string]string{"trigger": "child_reopened", "outcome": outcome})
	}
	testutil.Eventually(t, 30*time.Second, 20*time.Millisecond, func() error {
		if reopened("noop")+reopened("appended") == 0 {
			return errors.New("the parent has not decided on the news recovery sends")
		}
		return nil
	})
	if n := reopened("appended"); n != 0 {
		t.Fatalf("the parent recorded %v decisions on the child's news after the restart, want none", n)
	}
	wf := e2.workflow(id)
	if wf.Status != conductor.WorkflowTimedOut || wf.EndTime != ended.EndTime || len(wf.Tasks) != len(ended.Tasks) {
		t.Fatalf("the parent %s, ended %d with %d tasks, want TIMED_OUT as it ended at %d with %d", wf.Status, wf.EndTime, len(wf.Tasks),
			ended.EndTime, len(ended.Tasks))
	}
}
