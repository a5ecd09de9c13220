package e2e_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/flowvault/flowvault/schemas/conductor"
)

// An HTTP_POLL task calls again, a polling interval apart, until its
// termination condition holds, with a secret resolved into its header at
// every call; its task definition's timeoutSeconds ends a poll that never
// succeeds.
func TestHTTPPollTask(t *testing.T) {
	t.Parallel()
	var calls atomic.Int64
	var badAuth atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer poll-token-123" {
			badAuth.Add(1)
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"state":%q,"n":%d}`, map[bool]string{true: "done", false: "running"}[calls.Load() >= 2], calls.Add(1))
	}))
	t.Cleanup(srv.Close)

	e := newEnv(t)
	e.putSecret("poll_token", "poll-token-123")
	e.must(http.StatusNoContent, "POST", "/api/metadata/taskdefs", `[{"name":"never_done","timeoutSeconds":3,"timeoutPolicy":"TIME_OUT_WF"}]`)
	e.register(`{"name":"poll_flow","tasks":[{"name":"wait_job","taskReferenceName":"wait_job","type":"HTTP_POLL","inputParameters":{"http_request":{
	    "uri":"`+srv.URL+`","method":"GET","headers":{"Authorization":"Bearer ${workflow.secrets.poll_token}"},
	    "terminationCondition":"(function(){ return $.output.response.body.state == 'done'; })();",
	    "pollingInterval":1,"pollingStrategy":"FIXED"}}}],
	  "outputParameters":{"n":"${wait_job.output.response.body.n}"}}`,
		`{"name":"poll_forever","tasks":[{"name":"never_done","taskReferenceName":"p","type":"HTTP_POLL","inputParameters":{
	    "uri":"`+srv.URL+`","method":"GET","terminationCondition":"false","pollingInterval":1}}]}`)

	id := e.start("poll_flow", nil)
	wf := e.waitStatus(id, conductor.WorkflowCompleted)
	task := taskByRef(wf, "wait_job")
	if fmt.Sprint(wf.Output["n"]) != "3" || task.PollCount != 3 || task.Status != conductor.TaskCompleted || badAuth.Load() != 0 {
		t.Fatalf("output %v, poll count %d, status %s, %d calls without the secret", wf.Output, task.PollCount, task.Status, badAuth.Load())
	}
	if input := task.InputData["http_request"].(map[string]any)["headers"].(map[string]any)["Authorization"]; input != "Bearer ${workflow.secrets.poll_token}" {
		t.Fatalf("stored header %v", input)
	}

	id = e.start("poll_forever", nil)
	wf = e.waitStatus(id, conductor.WorkflowTimedOut)
	if task := taskByRef(wf, "p"); task.Status != conductor.TaskTimedOut || task.PollCount < 2 {
		t.Fatalf("task %s after %d polls", task.Status, task.PollCount)
	}
}
