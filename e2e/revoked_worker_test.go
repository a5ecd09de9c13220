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
// its grant on the type, and returns once the server has closed the
// connection: credentials beyond their principal's rights are refused
// (api TestWorkerCredentialsFollowTheirPrincipalsRights).
func (e *env) revokedWorker(taskType string) *nats.Conn {
	e.t.Helper()
	principal, token := e.application(taskType+"-worker", "WORKER")
	e.grant(principal, "TASK_DEF", taskType, "EXECUTE")
	var c struct{ Creds string }
	if err := json.Unmarshal([]byte(e.as(token).must(http.StatusOK, "POST", "/api/workers/credentials",
		map[string]any{"taskTypes": []string{taskType}, "name": principal})), &c); err != nil {
		e.t.Fatal(err)
	}
	closed := make(chan struct{})
	nc, err := workers.Connect(e.node.Log().ClientURL(), []byte(c.Creds), nats.NoReconnect(),
		nats.ClosedHandler(func(*nats.Conn) { close(closed) }), nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(nc.Close)
	e.revoke(principal, "TASK_DEF", taskType, "EXECUTE")
	<-closed // the test binary's timeout catches a connection left open
	return nc
}

// A NATS worker whose principal lost its grant can neither report on a
// task nor drain the type's queue: its announcements were fetched and
// acknowledged by such a worker, and rightful workers did not see them
// until they were sent again, a day later. The task reaches the rightful
// worker; the engine asks each take and result again too, for the moment
// before the connection closes (executor TestTakeCheckRefusesTheSender).
func TestRevokedNATSWorkerDrainsNoQueue(t *testing.T) {
	t.Parallel()
	e := newSecureEnv(t)
	e.register(`{"name":"r3_flow","tasks":[{"name":"r3_task","taskReferenceName":"t1"}],"outputParameters":{"o":"${t1.output.o}"}}`)
	nc := e.revokedWorker("r3_task")

	id := e.start("r3_flow", nil)
	next := "$JS.API.CONSUMER.MSG.NEXT.FV_DISPATCH." + workers.ConsumerName("r3_task", "")
	if _, err := nc.Request(next, []byte(`{"batch":1,"expires":1000000000}`), 2*time.Second); err == nil {
		t.Fatal("a worker without its grant fetched the queue")
	}
	body, _ := json.Marshal(workers.ResultRequest{TaskResult: conductor.TaskResult{TaskID: "any", WorkflowInstanceID: id,
		Status: conductor.TaskFailedWithTerminalError, ReasonForIncompletion: "sabotaged"}})
	if _, err := nc.Request(workers.ResultSubject("r3_task", ""), body, 2*time.Second); err == nil {
		t.Fatal("a worker without its grant reported a result")
	}
	// A legitimate worker (the admin over HTTP) takes the task.
	testutil.Eventually(t, 10*time.Second, 20*time.Millisecond, func() error {
		code, body := e.do("GET", "/api/tasks/poll/r3_task?workerid=legit", nil)
		if code != http.StatusOK || body == "" {
			return fmt.Errorf("poll: %d %s", code, body)
		}
		return nil
	})
	if wf := e.workflow(id); wf.Status != conductor.WorkflowRunning || wf.Tasks[0].Status != conductor.TaskInProgress {
		t.Fatalf("workflow %s, task %s", wf.Status, wf.Tasks[0].Status)
	}
}
