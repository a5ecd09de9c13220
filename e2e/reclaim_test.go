package e2e_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flowvault/flowvault/internal/nodetest"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/node"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// A server killed (SIGKILL) while it ran an HTTP task takes the task back
// as it starts again, and calls again: before, the task stayed
// IN_PROGRESS for its whole 5-minute lease, the restarted server unable
// to tell its dead process from a slow engine. The test's patience is
// well inside that lease, which no timer of the restarted server ends
// sooner: the completion is the take-back's.
func TestRestartedServerTakesBackTheSystemTaskItWasKilledIn(t *testing.T) {
	t.Parallel()
	srv, calls, called := holdsFirstCall(t)

	s := newServerSetup(t)
	p := &serverProc{t: t, log: s.log, args: s.args("--insecure-dev")}
	p.start(s.base)
	t.Cleanup(p.kill)
	e := &env{t: t, base: s.base, patience: 90 * time.Second}
	e.register(`{"name":"reclaim_flow","tasks":[{"name":"call","taskReferenceName":"call","type":"HTTP",
	  "inputParameters":{"http_request":{"uri":"` + srv.URL + `","method":"GET"}}}]}`)
	id := e.start("reclaim_flow", nil)
	select {
	case <-called:
	case <-time.After(60 * time.Second):
		t.Fatal("the HTTP task never called")
	}
	// The take is recorded before the call; the read model may show it
	// a moment after.
	var held *conductor.Task
	testutil.Eventually(t, 30*time.Second, 20*time.Millisecond, func() error {
		if held = taskByRef(e.workflow(id), "call"); held.Status != conductor.TaskInProgress || !strings.HasPrefix(held.WorkerID, "flowvault/") {
			return fmt.Errorf("task %s held by %q", held.Status, held.WorkerID)
		}
		return nil
	})
	p.kill()

	p.start(s.base)
	wf := e.waitStatus(id, conductor.WorkflowCompleted)
	task := taskByRef(wf, "call")
	if calls.Load() != 2 || task.WorkerID == held.WorkerID || !strings.HasPrefix(task.WorkerID, held.WorkerID[:strings.LastIndex(held.WorkerID, "/")+1]) {
		t.Fatalf("%d calls; completed under %q, taken by %q before the kill", calls.Load(), task.WorkerID, held.WorkerID)
	}
}

// Two engines on one NATS server: engine A, a process of its own, runs
// an HTTP task whose server never answers. A copy of A's data directory
// (its engine.id, which is what a copy shares with A that matters here),
// started next to A, scans and leaves A's task alone: A answers. A is
// then killed; B, alive all along, takes the task back once A's presence
// runs out (30 s), well before the task's 5-minute lease, and calls
// again; the workflow completes. Before, a copy took A's live task at
// its start, and B waited out the lease.
func TestLiveEngineTakesBackTheSystemTaskOfAKilledOne(t *testing.T) {
	t.Parallel()
	srv, calls, called := holdsFirstCall(t)

	b, baseB := nodetest.Start(t)
	eb := &env{t: t, node: b, base: baseB, patience: 90 * time.Second}
	c, err := b.NATS().EngineCredentials()
	if err != nil {
		t.Fatal(err)
	}
	bin := buildFlowvault(t)
	dir := t.TempDir()
	logFile, err := os.Create(filepath.Join(dir, "a.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { logFile.Close() })
	httpPort := testutil.FreePort(t)
	baseA := "http://127.0.0.1:" + strconv.Itoa(httpPort)
	dataA := filepath.Join(dir, "data")
	a := &serverProc{t: t, log: logFile, args: []string{bin, "server", "--data", dataA,
		"--http", "127.0.0.1:" + strconv.Itoa(httpPort), "--nats", b.Log().ClientURL(), "--nats-creds", nodetest.CredsFile(t, c),
		"--log-format", "json", "--insecure-dev"}}
	a.env = append(os.Environ(), "FLOWVAULT_MASTER_KEY="+nodetest.MasterKey)
	a.start(baseA)
	t.Cleanup(a.kill) // before B stops: cleanups run last-in first-out
	ea := &env{t: t, base: baseA, patience: 90 * time.Second}

	ea.register(`{"name":"presence_flow","tasks":[{"name":"call","taskReferenceName":"call","type":"HTTP",
	  "inputParameters":{"http_request":{"uri":"` + srv.URL + `","method":"GET"}}}]}`)
	id := ea.start("presence_flow", nil) // A decides the start, and runs the task
	select {
	case <-called:
	case <-time.After(60 * time.Second):
		t.Fatal("the HTTP task never called")
	}
	engineA, err := os.ReadFile(filepath.Join(dataA, node.EngineIDFileName))
	if err != nil {
		t.Fatal(err)
	}
	// B reads its own read model, which may not hold A's take yet.
	var held *conductor.Task
	testutil.Eventually(t, 30*time.Second, 20*time.Millisecond, func() error {
		var wf *conductor.Workflow
		if err := eb.hasStatus(id, conductor.WorkflowRunning, &wf); err != nil {
			return err
		}
		if held = taskByRef(wf, "call"); held.Status != conductor.TaskInProgress {
			return fmt.Errorf("task %s at B", held.Status)
		}
		return nil
	})
	if !strings.HasPrefix(held.WorkerID, "flowvault/"+string(engineA)+"/") {
		t.Fatalf("task %s held by %q, not by engine A (%s)", held.Status, held.WorkerID, engineA)
	}

	copyDir := filepath.Join(t.TempDir(), "copy")
	if err := os.MkdirAll(copyDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(copyDir, node.EngineIDFileName), engineA, 0o600); err != nil {
		t.Fatal(err)
	}
	_, baseCopy := nodetest.StartConfig(t, nodetest.JoinConfig(t, b, copyDir))
	ecopy := &env{t: t, base: baseCopy}
	deadline := time.Now().Add(60 * time.Second)
	for ecopy.engineMetric("flowvault_engine_reclaim_scans_total") == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the copy never scanned for tasks to take back")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if task := taskByRef(eb.workflow(id), "call"); task.Status != conductor.TaskInProgress || task.WorkerID != held.WorkerID || calls.Load() != 1 {
		t.Fatalf("a copy of A's data directory took A's live task: %s held by %q, %d calls", task.Status, task.WorkerID, calls.Load())
	}

	a.kill()
	wf := eb.waitStatus(id, conductor.WorkflowCompleted)
	if task := taskByRef(wf, "call"); calls.Load() != 2 || task.WorkerID == held.WorkerID {
		t.Fatalf("%d calls; completed under %q, taken by %q before the kill", calls.Load(), task.WorkerID, held.WorkerID)
	}
}

// holdsFirstCall serves HTTP calls: the first is held, unanswered, until
// the caller is gone (called tells when it came); the others are
// answered. calls counts them.
func holdsFirstCall(t *testing.T) (srv *httptest.Server, calls *atomic.Int64, called chan struct{}) {
	calls, called = new(atomic.Int64), make(chan struct{}, 1)
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			called <- struct{}{}
			<-r.Context().Done()
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"ok":true}`)
	}))
	t.Cleanup(srv.Close)
	return srv, calls, called
}
