package e2e_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// The published Conductor JavaScript SDK (@io-orkes/conductor-javascript
// 4.0.0, installed by `make npm-deps` in e2e/testdata/sdk) runs against a
// node: definitions, starts, TaskManager workers over batch poll and
// update-v2, failures and NonRetryableException, the TaskClient calls,
// the workflow lifecycle and the EventClient's event handlers. The script
// checks every answer itself; this test checks that it passed and what it
// left behind.
func TestConductorJavaScriptSDK(t *testing.T) {
	t.Parallel()
	dir := npmDir(t, filepath.Join("testdata", "sdk"), "@io-orkes/conductor-javascript")
	e := newEnv(t)
	ctx := testutil.Context(t, 3*time.Minute)
	cmd := exec.CommandContext(ctx, "node", "sdk.mjs")
	cmd.Dir = dir
	cmd.Env = []string{"CONDUCTOR_SERVER_URL=" + e.base, "PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	t.Logf("sdk.mjs output:\n%s", out)
	if err != nil {
		t.Fatalf("sdk.mjs: %v\n%s", err, stderr.String())
	}
	var res struct {
		Completed     []string `json:"completed"`
		Retried       string   `json:"retried"`
		Fatal         string   `json:"fatal"`
		Manual        string   `json:"manual"`
		ExecutorTasks string   `json:"executorTasks"`
		Lifecycle     string   `json:"lifecycle"`
	}
	found := false
	for sc := bufio.NewScanner(bytes.NewReader(out)); sc.Scan(); {
		if line, ok := strings.CutPrefix(sc.Text(), "RESULT "); ok {
			if err := json.Unmarshal([]byte(line), &res); err != nil {
				t.Fatalf("RESULT line: %v", err)
			}
			found = true
		}
	}
	if !found || len(res.Completed) != 22 {
		t.Fatalf("no RESULT line with 22 completed workflows in the output")
	}
	for _, id := range append(res.Completed, res.Manual, res.ExecutorTasks) {
		if wf := e.workflow(id); wf.Status != conductor.WorkflowCompleted {
			t.Errorf("workflow %s is %s", id, wf.Status)
		}
	}
	retried := e.workflow(res.Retried)
	if retried.Status != conductor.WorkflowCompleted || len(retried.Tasks) != 4 || retried.Tasks[3].Status != conductor.TaskCompleted {
		t.Errorf("retried workflow %s with %d tasks", retried.Status, len(retried.Tasks))
	}
	fatal := e.workflow(res.Fatal)
	if fatal.Status != conductor.WorkflowFailed || len(fatal.Tasks) != 1 || fatal.Tasks[0].Status != conductor.TaskFailedWithTerminalError {
		t.Errorf("fatal workflow %s with %d tasks", fatal.Status, len(fatal.Tasks))
	}
	if wf := e.workflow(res.Lifecycle); wf.Status != conductor.WorkflowCompleted || wf.Output["answer"] != float64(42) {
		t.Errorf("lifecycle workflow %s output %v", wf.Status, wf.Output)
	}
}
