package e2e_test

import (
	"context"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flowvault/flowvault/internal/nodetest"
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
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := n.Stop(ctx); err != nil {
				t.Fatal(err)
			}

			n2, base2 := nodetest.StartConfig(t, cfg)
			e2 := &env{t: t, node: n2, base: base2}
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
