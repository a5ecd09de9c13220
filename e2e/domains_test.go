package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
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

// An application whose only right to a task type is a DOMAIN grant works
// the type's tasks in that domain over HTTP, polling and reporting as any
// worker does, and is refused as Orkes refuses a worker without EXECUTE
// (403) on the queue without domain and on another domain's; a result on
// a task outside its domain reads as a missing task.
func TestDomainGrantOverHTTP(t *testing.T) {
	t.Parallel()
	e := newSecureEnv(t)
	e.must(http.StatusNoContent, "POST", "/api/metadata/taskdefs", []map[string]any{{"name": "dgh_task"}})
	e.register(`{"name":"dgh_flow","version":1,"tasks":[{"name":"dgh_task","taskReferenceName":"t"}],"outputParameters":{"by":"${t.output.by}"}}`)
	principal, token := e.application("dgh-eu-worker", "WORKER")
	e.grant(principal, "DOMAIN", "eu", "EXECUTE")
	w := e.as(token)
	start := func(taskToDomain map[string]string) string {
		t.Helper()
		return e.must(http.StatusOK, "POST", "/api/workflow", map[string]any{"name": "dgh_flow", "taskToDomain": taskToDomain})
	}
	inEU, plain, inUS := start(map[string]string{"dgh_task": "eu"}), start(nil), start(map[string]string{"dgh_task": "us"})

	var task conductor.Task
	if err := json.Unmarshal([]byte(w.must(http.StatusOK, "GET", "/api/tasks/poll/dgh_task?domain=eu&workerid=eu-1&timeout=10000", nil)), &task); err != nil {
		t.Fatal(err)
	}
	if task.WorkflowInstanceID != inEU || task.Domain != "eu" {
		t.Fatalf("polled %+v, want the task of %s in eu", task, inEU)
	}
	w.must(http.StatusOK, "POST", "/api/tasks", conductor.TaskResult{TaskID: task.TaskID, WorkflowInstanceID: inEU, WorkerID: "eu-1",
		Status: conductor.TaskCompleted, OutputData: map[string]any{"by": "eu"}})
	if wf := e.waitStatus(inEU, conductor.WorkflowCompleted); wf.Output["by"] != "eu" {
		t.Fatalf("output %v", wf.Output)
	}

	for _, path := range []string{
		"/api/tasks/poll/dgh_task?workerid=eu-1&timeout=0",
		"/api/tasks/poll/batch/dgh_task?workerid=eu-1&timeout=0",
		"/api/tasks/poll/dgh_task?domain=us&workerid=eu-1&timeout=0",
		"/api/tasks/poll/batch/dgh_task?domain=us&workerid=eu-1&timeout=0",
	} {
		if er := w.fails(http.StatusForbidden, "GET", path, nil); !strings.Contains(er.Message, principal) {
			t.Errorf("GET %s: %q does not name the principal", path, er.Message)
		}
	}
	for _, id := range []string{plain, inUS} {
		other := taskByRef(e.workflow(id), "t")
		if other.Status != conductor.TaskScheduled {
			t.Fatalf("task of %s (domain %q) is %s after the refused polls", id, other.Domain, other.Status)
		}
		w.fails(http.StatusNotFound, "POST", "/api/tasks", conductor.TaskResult{TaskID: other.TaskID, WorkflowInstanceID: id,
			WorkerID: "eu-1", Status: conductor.TaskCompleted})
	}
}
