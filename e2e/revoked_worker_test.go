package e2e_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/workers"
)

// revokedWorker connects a worker of taskType whose principal then loses
// its grant on the type. The principal exists, so its connection stays
// open (one whose principal is gone is closed: api
// TestWorkerCredentialsFollowTheirPrincipalsRights).
func (e *env) revokedWorker(taskType string) *nats.Conn {
	e.t.Helper()
	principal, token := e.application(taskType+"-worker", "WORKER")
	e.grant(principal, "TASK_DEF", taskType, "EXECUTE")
	var c struct{ Creds string }
	if err := json.Unmarshal([]byte(e.as(token).must(http.StatusOK, "POST", "/api/workers/credentials",
		map[string]any{"taskTypes": []string{taskType}, "name": principal})), &c); err != nil {
		e.t.Fatal(err)
	}
	nc, err := workers.Connect(e.node.Log().ClientURL(), []byte(c.Creds))
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(nc.Close)
	e.revoke(principal, "TASK_DEF", taskType, "EXECUTE")
	return nc
}

// A NATS worker whose principal lost its rights takes nothing (the take
// and poll ask again), and must not report results either: over HTTP the
// same report is refused (mayUpdateTask asks mayPoll again).
func TestRevokedNATSWorkerReportsNoResult(t *testing.T) {
	t.Parallel()
	e := newSecureEnv(t)
	e.register(`{"name":"r3_flow","tasks":[{"name":"r3_task","taskReferenceName":"t1"}],"outputParameters":{"o":"${t1.output.o}"}}`)
	nc := e.revokedWorker("r3_task")

	id := e.start("r3_flow", nil)
	// A legitimate worker (the admin over HTTP) takes the task.
	var task conductor.Task
	testutil.Eventually(t, 10*time.Second, 20*time.Millisecond, func() error {
		code, body := e.do("GET", "/api/tasks/poll/r3_task?workerid=legit", nil)
		if code != http.StatusOK || body == "" {
			return fmt.Errorf("poll: %d %s", code, body)
		}
		return json.Unmarshal([]byte(body), &task)
	})
	// The revoked worker reports on the task, naming someone else.
	body, _ := json.Marshal(workers.ResultRequest{TaskResult: conductor.TaskResult{TaskID: task.TaskID,
		WorkflowInstanceID: id, Status: conductor.TaskCompleted, WorkerID: "app:bootstrap-admin",
		OutputData: map[string]any{"o": "forged"}}})
	msg, err := nc.Request(workers.ResultSubject("r3_task", ""), body, 5*time.Second)
	if err != nil {
		t.Fatalf("result: %v", err)
	}
	var reply workers.ResultReply
	if err := json.Unmarshal(msg.Data, &reply); err != nil {
		t.Fatal(err)
	}
	if wf := e.workflow(id); reply.OK || reply.Error == nil || reply.Error.Code != workers.CodeForbidden || wf.Status != conductor.WorkflowRunning {
		t.Fatalf("a worker without its grant reported a result: reply %s, workflow %s output %v", msg.Data, wf.Status, wf.Output)
	}
}

// The same worker needs no task id from elsewhere: its credentials still
// fetch the queue's announcements, and it failed every new task of its
// type before a worker with rights took it.
func TestRevokedNATSWorkerFailsNoQueuedTask(t *testing.T) {
	t.Parallel()
	e := newSecureEnv(t)
	e.register(`{"name":"r3b_flow","tasks":[{"name":"r3b_task","taskReferenceName":"t1"}]}`)
	nc := e.revokedWorker("r3b_task")

	id := e.start("r3b_flow", nil)
	next := "$JS.API.CONSUMER.MSG.NEXT.FV_DISPATCH." + workers.ConsumerName("r3b_task", "")
	msg, err := nc.Request(next, []byte(`{"batch":1,"expires":3000000000}`), 5*time.Second)
	if err != nil {
		t.Fatalf("fetch the announcement: %v", err)
	}
	var d workers.Dispatch
	if err := json.Unmarshal(msg.Data, &d); err != nil || d.TaskID == "" {
		t.Fatalf("dispatch %q: %v", msg.Data, err)
	}
	_ = msg.Ack()
	body, _ := json.Marshal(workers.ResultRequest{TaskResult: conductor.TaskResult{TaskID: d.TaskID,
		WorkflowInstanceID: d.WorkflowInstanceID, Status: conductor.TaskFailedWithTerminalError, ReasonForIncompletion: "sabotaged"}})
	res, err := nc.Request(workers.ResultSubject("r3b_task", ""), body, 5*time.Second)
	if err != nil {
		t.Fatalf("result: %v", err)
	}
	var reply workers.ResultReply
	if err := json.Unmarshal(res.Data, &reply); err != nil {
		t.Fatal(err)
	}
	if wf := e.workflow(id); reply.Error == nil || reply.Error.Code != workers.CodeForbidden || wf.Status != conductor.WorkflowRunning {
		t.Fatalf("a worker without its grant failed a queued task: reply %s, workflow %s (%s)", res.Data, wf.Status, wf.ReasonForIncompletion)
	}
}
