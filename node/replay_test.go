package node_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/executor"
	"github.com/flowvault/flowvault/internal/nodetest"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// A system task that a crash left running (an HTTP call under way) runs
// again once its lease expires: the executions model a start rebuilds by
// replay indexes that lease. The replay must know the system task types,
// which a process learns once: the check runs in a process of its own.
func TestReplayIndexesTheLeaseOfARunningSystemTask(t *testing.T) {
	if dir := os.Getenv("FLOWVAULT_TEST_REPLAY_DIR"); dir != "" {
		checkReplayedLease(t, dir, os.Getenv("FLOWVAULT_TEST_REPLAY_WORKFLOW"))
		return
	}
	t.Parallel()
	hang := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-hang:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(slow.Close)
	t.Cleanup(func() { close(hang) })
	cfg := nodetest.Config(filepath.Join(t.TempDir(), "data"))
	n, _ := nodetest.StartConfig(t, cfg)
	ctx := testutil.Context(t, 60*time.Second)
	var def conductor.WorkflowDef
	if err := json.Unmarshal([]byte(`{"name":"slow_call","tasks":[{"name":"call","taskReferenceName":"call","type":"HTTP",
	  "inputParameters":{"http_request":{"uri":"`+slow.URL+`","method":"GET","readTimeOut":600000}}}]}`), &def); err != nil {
		t.Fatal(err)
	}
	id, _, err := n.Executor().StartWorkflow(ctx, conductor.StartWorkflowRequest{Name: def.Name, WorkflowDef: &def}, executor.StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 20*time.Second, 20*time.Millisecond, func() error {
		w, err := n.Executor().State(ctx, id)
		if err != nil {
			return err
		}
		if t := w.LatestByRef("call"); t == nil || t.Status != conductor.TaskInProgress {
			return context.DeadlineExceeded
		}
		return nil
	})
	stop(t, n)
	if err := os.RemoveAll(cfg.PebbleDir()); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestReplayIndexesTheLeaseOfARunningSystemTask$", "-test.count=1")
	cmd.Env = append(os.Environ(), "FLOWVAULT_TEST_REPLAY_DIR="+cfg.DataDir, "FLOWVAULT_TEST_REPLAY_WORKFLOW="+id)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the check in a fresh process: %v\n%s", err, out)
	}
}

// checkReplayedLease starts a node on dir, whose read models replay the
// log, and checks that the lease of workflow id's running task is due.
func checkReplayedLease(t *testing.T, dir, id string) {
	n, _ := nodetest.StartConfig(t, nodetest.Config(dir))
	ctx := testutil.Context(t, 30*time.Second)
	due, err := n.Executions().Due(ctx, time.Now().Add(engine.SystemTaskLease+time.Minute).UnixMilli(), executor.Due{}, 100)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(due, func(d executor.Due) bool { return d.WorkflowID == id }) {
		t.Fatalf("deadlines %v: none for workflow %s, whose system task's lease was not indexed", due, id)
	}
}
