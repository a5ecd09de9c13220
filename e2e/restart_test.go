package e2e_test

import (
	"context"
	"net/http"
	"path/filepath"
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
