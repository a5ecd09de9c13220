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
// everything: its grant, then its application. Its connection stays open.
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
	e.must(http.StatusOK, "DELETE", "/api/applications/"+principal[len("app:"):], nil)
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
	// The revoked worker's connection is still open (only subscribe
	// credentials are disconnected), and it reports on the task.
	body, _ := json.Marshal(workers.ResultRequest{TaskResult: conductor.TaskResult{TaskID: task.TaskID,
		WorkflowInstanceID: id, Status: conductor.TaskCompleted, WorkerID: "app:bootstrap-admin",
		OutputData: map[string]any{"o": "forged"}}})
	msg, err := nc.Request(workers.ResultSubject("r3_task", ""), body, 5*time.Second)
	if err != nil {
		t.Logf("refused: %v", err) // its connection was closed: fine
		msg = &nats.Msg{}
	}
	var reply workers.ResultReply
	_ = json.Unmarshal(msg.Data, &reply)
	wf := e.workflow(id)
	if reply.OK || wf.Status == conductor.WorkflowCompleted {
		t.Fatalf("a worker whose application was deleted reported a result: reply %s, workflow %s output %v",
			msg.Data, wf.Status, wf.Output)
	}
}

// The same worker needs no task id from elsewhere: its credentials still
// fetch the queue's dispatch messages, and it fails every new task of its
// type before a worker with rights takes it.
func TestRevokedNATSWorkerFailsNoQueuedTask(t *testing.T) {
	t.Parallel()
	e := newSecureEnv(t)
	e.register(`{"name":"r3b_flow","tasks":[{"name":"r3b_task","taskReferenceName":"t1"}]}`)
	nc := e.revokedWorker("r3b_task")

	id := e.start("r3b_flow", nil)
	next := "$JS.API.CONSUMER.MSG.NEXT.FV_DISPATCH." + workers.ConsumerName("r3b_task", "")
	msg, err := nc.Request(next, []byte(`{"batch":1,"expires":3000000000}`), 5*time.Second)
	if err != nil {
		// Refused the dispatch (a gate that closed its connection): the
		// workflow goes on untouched.
		if wf := e.workflow(id); wf.Status != conductor.WorkflowRunning {
			t.Fatalf("workflow %s (%s)", wf.Status, wf.ReasonForIncompletion)
		}
		return
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
	wf := e.workflow(id)
	if wf.Status == conductor.WorkflowFailed {
		t.Fatalf("a deleted application's worker failed a queued task: reply %s, workflow %s (%s)", res.Data, wf.Status, wf.ReasonForIncompletion)
	}
}

// A refused look-up of an application by one of its access keys answers
// 404 (the caller learns nothing about the key), but the refusal is a
// security decision like any 403: it belongs in the trail.
func TestHiddenKeyLookupRefusalIsAudited(t *testing.T) {
	t.Parallel()
	e := newSecureEnv(t)
	prober, proberToken := e.application("r3-prober", "USER")
	var app struct{ ID string }
	if err := json.Unmarshal([]byte(e.must(http.StatusOK, "POST", "/api/applications", map[string]string{"name": "r3-target"})), &app); err != nil {
		t.Fatal(err)
	}
	var key struct{ ID string }
	if err := json.Unmarshal([]byte(e.must(http.StatusOK, "POST", "/api/applications/"+app.ID+"/accessKeys", nil)), &key); err != nil {
		t.Fatal(err)
	}
	e.as(proberToken).fails(http.StatusNotFound, "GET", "/api/applications/key/"+key.ID, nil)
	testutil.Eventually(t, 10*time.Second, 50*time.Millisecond, func() error {
		var trail struct {
			Entries []struct{ Principal, Action, Target string }
		}
		if err := json.Unmarshal([]byte(e.must(http.StatusOK, "GET", "/api/audit?principal="+prober, nil)), &trail); err != nil {
			return err
		}
		for _, en := range trail.Entries {
			if en.Action == "access.deny" && en.Target == "APPLICATION:"+app.ID {
				return nil
			}
		}
		return fmt.Errorf("no access.deny of APPLICATION:%s by %s in the trail: %+v", app.ID, prober, trail.Entries)
	})
}
