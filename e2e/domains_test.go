package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/workers"
)

// taskToDomain fallbacks, as Conductor documents them: "alpha,beta,NO_DOMAIN"
// puts a task in the first domain whose workers polled in the last 10
// seconds (over HTTP or NATS), else in the queue without a domain.
func TestTaskDomainFallbacks(t *testing.T) {
	t.Parallel()
	e := newSecureEnv(t)
	e.register(`{"name":"tdf_flow","version":1,"tasks":[{"name":"tdf_task","taskReferenceName":"t"}],"outputParameters":{"by":"${t.output.by}"}}`)
	start := func() string {
		t.Helper()
		return e.must(http.StatusOK, "POST", "/api/workflow", map[string]any{"name": "tdf_flow",
			"taskToDomain": map[string]string{"tdf_task": "alpha, beta, NO_DOMAIN"}})
	}
	// pollDomain polls as a worker of domain, waiting up to waitMs for a
	// task (its announcement follows the start's answer).
	pollDomain := func(domain string, waitMs int) []*conductor.Task {
		t.Helper()
		var tasks []*conductor.Task
		if err := json.Unmarshal([]byte(e.must(http.StatusOK, "GET", "/api/tasks/poll/batch/tdf_task?workerid=http-"+domain+"&domain="+domain+"&timeout="+fmt.Sprint(waitMs), nil)), &tasks); err != nil {
			t.Fatal(err)
		}
		return tasks
	}

	// No worker anywhere: the queue without a domain.
	id := start()
	if got := taskByRef(e.workflow(id), "t").Domain; got != "" {
		t.Fatalf("with no workers: domain %q", got)
	}

	// An HTTP worker of beta has polled: beta.
	pollDomain("beta", 0)
	id = start()
	if got := taskByRef(e.workflow(id), "t").Domain; got != "beta" {
		t.Fatalf("after a poll of beta: domain %q", got)
	}
	tasks := pollDomain("beta", 10000)
	if len(tasks) != 1 || tasks[0].WorkflowInstanceID != id || tasks[0].Domain != "beta" {
		t.Fatalf("beta's worker polled %+v", tasks)
	}
	e.must(http.StatusOK, "POST", "/api/tasks", conductor.TaskResult{TaskID: tasks[0].TaskID, WorkflowInstanceID: id,
		Status: conductor.TaskCompleted, OutputData: map[string]any{"by": "beta"}})
	if wf := e.waitStatus(id, conductor.WorkflowCompleted); wf.Output["by"] != "beta" {
		t.Fatalf("output %v", wf.Output)
	}

	// A Go worker of alpha, first in the list, polls over NATS: alpha.
	nc, err := workers.Connect(e.node.Log().ClientURL(), e.workerCredentialsIn([]string{"alpha"}, "tdf_task"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	runWorkerConfig(t, nc, workers.WorkerConfig{TaskType: "tdf_task", Domain: "alpha", WorkerID: "go-alpha"},
		func(_ context.Context, task *conductor.Task) (workers.Output, error) {
			return workers.Output{Data: map[string]any{"by": task.Domain}}, nil
		})
	testutil.Eventually(t, 20*time.Second, 100*time.Millisecond, func() error {
		id := start()
		if got := taskByRef(e.workflow(id), "t").Domain; got != "alpha" {
			return fmt.Errorf("domain %q before the alpha worker's first poll", got)
		}
		if wf := e.waitStatus(id, conductor.WorkflowCompleted); wf.Output["by"] != "alpha" {
			t.Fatalf("output %v", wf.Output)
		}
		return nil
	})
}
