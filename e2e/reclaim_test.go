package e2e_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

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
	var calls atomic.Int64
	called := make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			called <- struct{}{}
			<-r.Context().Done() // held until the server that called is gone
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"ok":true}`)
	}))
	t.Cleanup(srv.Close)

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
	held := taskByRef(e.workflow(id), "call")
	if held.Status != conductor.TaskInProgress || !strings.HasPrefix(held.WorkerID, "flowvault/") {
		t.Fatalf("task %s held by %q", held.Status, held.WorkerID)
	}
	p.kill()

	p.start(s.base)
	wf := e.waitStatus(id, conductor.WorkflowCompleted)
	task := taskByRef(wf, "call")
	if calls.Load() != 2 || task.WorkerID == held.WorkerID || !strings.HasPrefix(task.WorkerID, held.WorkerID[:strings.LastIndex(held.WorkerID, "/")+1]) {
		t.Fatalf("%d calls; completed under %q, taken by %q before the kill", calls.Load(), task.WorkerID, held.WorkerID)
	}
}
