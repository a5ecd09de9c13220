package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/workers"
)

// What looks a task up in the executions model finds one a worker took
// over NATS, or one a result recorded over NATS scheduled, at once: the
// answers to takes and results do not wait for the read models, as an HTTP
// poll's does, and the worker may turn to the API (or to the sender of a
// webhook) the moment it has them.
func TestTasksJustTakenOverNATSAreFound(t *testing.T) {
	t.Parallel()
	e := newSecureEnv(t)
	token := e.plantSecret("fresh_token", "hook-")
	e.register(`{"name":"fresh_one","version":1,"tasks":[{"name":"fresh","taskReferenceName":"f","type":"SIMPLE"}]}`,
		`{"name":"fresh_hook","version":1,"tasks":[{"name":"fresh_prep","taskReferenceName":"p","type":"SIMPLE"},
		  {"name":"w","taskReferenceName":"w","type":"WAIT_FOR_WEBHOOK","inputParameters":{"matches":{"$.n":"${workflow.input.n}"}}}],
		  "outputParameters":{"got":"${w.output.n}"}}`,
		`{"name":"fresh_many","version":1,"tasks":[{"name":"w","taskReferenceName":"w","type":"WAIT_FOR_WEBHOOK","inputParameters":{"matches":{"$.all":true}}}]}`)
	const runs = 30

	// A waiting worker gets each task in the record that schedules it,
	// and asks the API about it first thing.
	type seen struct{ get, log int }
	asked := make(chan seen, runs)
	e.work("fresh", 1, func(_ context.Context, task *conductor.Task) (workers.Output, error) {
		get, _ := e.do("GET", "/api/tasks/"+task.TaskID, nil)
		log, _ := e.do("POST", "/api/tasks/"+task.TaskID+"/log", `"taken"`)
		asked <- seen{get, log}
		return workers.Output{}, nil
	})
	for range runs {
		id := e.start("fresh_one", nil)
		got := <-asked
		if got.get != http.StatusOK || got.log != http.StatusNoContent {
			t.Fatalf("the worker of %s read its task: %d, logged: %d", id, got.get, got.log)
		}
	}

	// A delivery right after the result that scheduled its task.
	hook := e.must(http.StatusOK, "POST", "/api/metadata/webhook", map[string]any{"name": "fresh", "verifier": "HEADER_BASED",
		"headers":                         map[string]string{"X-Token": "${workflow.secrets.fresh_token}"},
		"receiverWorkflowNamesToVersions": map[string]int{"fresh_hook": 1, "fresh_many": 1}})
	var c conductor.WebhookConfig
	if err := json.Unmarshal([]byte(hook), &c); err != nil {
		t.Fatal(err)
	}
	nc := e.connect("fresh_prep")
	ctx := testutil.Context(t, 30*time.Second)
	request := func(subject string, body any) {
		t.Helper()
		b, _ := json.Marshal(body)
		m, err := nc.RequestWithContext(ctx, subject, b)
		if err != nil {
			t.Fatal(err)
		}
		var reply struct{ Error *workers.Error }
		if err := json.Unmarshal(m.Data, &reply); err != nil || reply.Error != nil {
			t.Fatalf("%s: %s", subject, m.Data)
		}
	}
	for n := range 5 {
		id := e.start("fresh_hook", map[string]any{"n": n})
		prep := e.workflow(id).Tasks[0]
		request(workers.TakeSubject("fresh_prep", ""), workers.TakeRequest{TaskID: prep.TaskID, WorkflowInstanceID: id, WorkerID: "raw"})
		request(workers.ResultSubject("fresh_prep", ""), conductor.TaskResult{TaskID: prep.TaskID, WorkflowInstanceID: id, Status: conductor.TaskCompleted})
		status, body := e.deliver(c.ID, map[string]string{"X-Token": token}, fmt.Sprintf(`{"n":%d}`, n))
		var did struct{ CompletedTaskIDs []string }
		if err := json.Unmarshal([]byte(body), &did); status != http.StatusOK || err != nil || len(did.CompletedTaskIDs) != 1 {
			t.Fatalf("delivery %d, right after the result that scheduled its task: %d %s", n, status, body)
		}
		if wf := e.waitStatus(id, conductor.WorkflowCompleted); wf.Output["got"] != float64(n) {
			t.Fatalf("workflow %d output %v", n, wf.Output)
		}
	}

	// One delivery completes every task waiting for it, however many.
	const waiting = 1234
	ids := make([]string, waiting)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < waiting; i += 8 {
				ids[i] = e.start("fresh_many", nil)
			}
		})
	}
	wg.Wait()
	status, body := e.deliver(c.ID, map[string]string{"X-Token": token}, `{"all":true}`)
	var did struct{ CompletedTaskIDs []string }
	if err := json.Unmarshal([]byte(body), &did); status != http.StatusOK || err != nil || len(did.CompletedTaskIDs) != waiting {
		t.Fatalf("a delivery for %d waiting tasks completed %d: %d", waiting, len(did.CompletedTaskIDs), status)
	}
	for _, id := range ids {
		if wf := e.workflow(id); wf.Status != conductor.WorkflowCompleted {
			t.Fatalf("workflow %s is %s", id, wf.Status)
		}
	}
}
