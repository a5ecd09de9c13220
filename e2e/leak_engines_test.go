package e2e_test

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/flowvault/flowvault/internal/nodetest"
	"github.com/flowvault/flowvault/masking"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// The leak hunt over two engines on one log, each deciding some of one
// workflow's steps. Engine A takes the workflow's first task, so it knows
// the workflow from then on; engine B records that task's result, which
// puts a value under _secrets, and B hands off the next tasks, resolving a
// secret and opening that value. The workers of those tasks report to A,
// echoing what they were given in their output, a reason and log lines.
// A knew the workflow from before B's records and did not look through
// them again: it stored the echoes in plain text, in the log and every
// read model. Every answer, both engines' log output, every stream, file
// and Pebble key and value is searched for each value: none holds one,
// and the outputs read "***".
func TestLeakAcrossEngines(t *testing.T) {
	t.Parallel()
	vals := map[string]string{"tok": "te-" + alnum(30), "data": "td-" + alnum(30)}
	scanners, names := scannersOf(vals)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	a := startLeakNode(ctx, t, nil)
	b := startJoinedLeakNode(ctx, t, a)
	ea, eb := a.env(t, scanners...), b.env(t, scanners...)
	// Polls are answered with the values, which the worker is to have.
	pollB := *eb
	pollB.client = nil
	ea.putSecret("tok", vals["tok"])
	ea.register(`{"name":"le_two","tasks":[{"name":"le_src","taskReferenceName":"src"},
	  {"name":"le_echo","taskReferenceName":"sec","inputParameters":{"s":"${workflow.secrets.tok}"}},
	  {"name":"le_echo","taskReferenceName":"sealed","inputParameters":{"s":"${src.output._secrets.v}"}}]}`)
	id := ea.start("le_two", nil)
	src := ea.takeOne("le_src")
	eb.completeTask(src, map[string]any{"_secrets": map[string]any{"v": vals["data"]}})
	for _, ref := range []string{"sec", "sealed"} {
		task := pollB.takeOne("le_echo")
		s, _ := task.InputData["s"].(string)
		if task.ReferenceTaskName != ref || s != vals[map[string]string{"sec": "tok", "sealed": "data"}[ref]] {
			t.Fatalf("engine B handed %s an input s of %d characters, want %s's value", task.ReferenceTaskName, len(s), ref)
		}
		ea.must(http.StatusNoContent, "POST", "/api/tasks/"+task.TaskID+"/log", "sent "+s)
		ea.must(http.StatusOK, "POST", "/api/tasks", map[string]any{"taskId": task.TaskID, "workflowInstanceId": id, "workerId": "w1",
			"status": "COMPLETED", "outputData": map[string]any{"echo": s}, "reasonForIncompletion": "took " + s,
			"logs": []map[string]any{{"log": "used " + s}}})
	}
	wf := ea.waitStatus(id, conductor.WorkflowCompleted)
	for _, ref := range []string{"sec", "sealed"} {
		if echo := taskByRef(wf, ref).OutputData["echo"]; echo != masking.Mask {
			t.Errorf("%s: the echo reads %d characters, want %q", ref, len(fmt.Sprint(echo)), masking.Mask)
		}
	}
	for _, e := range []*env{ea, eb} {
		e.must(http.StatusOK, "GET", "/api/workflow/"+id+"?includeTasks=true", nil)
		for _, tk := range wf.Tasks {
			e.must(http.StatusOK, "GET", "/api/tasks/"+tk.TaskID+"/log", nil)
		}
	}
	b.stopAndScan(t, scanners...)
	a.scanEverything(t, scanners, names)
}

// startJoinedLeakNode starts a leakNode that shares a's log
// (nodetest.JoinConfig), with a's compaction delay.
func startJoinedLeakNode(ctx context.Context, t *testing.T, a *leakNode) *leakNode {
	t.Helper()
	cfg := nodetest.JoinConfig(t, a.Node, filepath.Join(t.TempDir(), "data"))
	cfg.CompactionDelay = a.cfg.CompactionDelay
	return startLeakNodeConfig(ctx, t, cfg)
}
