package system_test

import (
	"encoding/json"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/flowvault/flowvault/executor"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/masking"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/workers"
	"github.com/flowvault/flowvault/workers/system"
)

// counted is a NATS connection that counts what is published on it.
type counted struct {
	*nats.Conn
	published atomic.Int64
}

func (c *counted) PublishMsg(m *nats.Msg) error {
	c.published.Add(1)
	return c.Conn.PublishMsg(m)
}

func eventTask(input map[string]any) *conductor.Task {
	return &conductor.Task{TaskID: "task-1", ReferenceTaskName: "notify", TaskType: conductor.TaskTypeEvent,
		WorkflowInstanceID: "wf-1", WorkflowType: "shop", CorrelationID: "corr-1", InputData: input}
}

// An EVENT publishes its input with its workflow's identity as one JSON
// message, with the task's id as the message id, and completes with the
// event as its output; sealed values go out as "***".
func TestEventPublishes(t *testing.T) {
	t.Parallel()
	ctx := executor.WithWorkflowVersion(testutil.Context(t, 30*time.Second), 3)
	nc := testutil.OpenLog(t, "").Conn()
	sub, err := nc.SubscribeSync("orders.created")
	if err != nil {
		t.Fatal(err)
	}
	ev := system.Event{Conn: nc}
	res := ev.Execute(ctx, eventTask(map[string]any{"sink": "nats:orders.created", "order": 7,
		"_secrets": map[string]any{"card": &masking.Sealed{Kind: masking.KindSecrets}}}))
	if res.Status != conductor.TaskCompleted {
		t.Fatalf("result %+v", res)
	}
	m, err := sub.NextMsg(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if id := m.Header.Get(nats.MsgIdHdr); id != "task-1" {
		t.Errorf("message id %q", id)
	}
	if mark := m.Header.Get(workers.EventHeader); mark != "task-1" {
		t.Errorf("%s %q, want the task's id", workers.EventHeader, mark)
	}
	var got map[string]any
	if err := json.Unmarshal(m.Data, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"sink": "nats:orders.created", "order": 7.0, "_secrets": map[string]any{"card": masking.Mask},
		"workflowInstanceId": "wf-1", "workflowType": "shop", "workflowVersion": 3.0, "correlationId": "corr-1"}
	if !jsonEqual(got, want) {
		t.Errorf("event %s", m.Data)
	}
	want["event_produced"] = "nats:orders.created"
	if !jsonEqual(res.OutputData, want) {
		t.Errorf("output %v", res.OutputData)
	}

	// A large integer stays exact in the output, as in the event.
	res = ev.Execute(ctx, eventTask(map[string]any{"sink": "nats:orders.created", "id": int64(9007199254740993)}))
	if res.OutputData["id"] != int64(9007199254740993) {
		t.Errorf("output id %#v", res.OutputData["id"])
	}
	if m, err := sub.NextMsg(10 * time.Second); err != nil || !strings.Contains(string(m.Data), `"id":9007199254740993`) {
		t.Errorf("event with a large integer: %v %v", m, err)
	}

	// A workflow without a correlationId sends null, as Conductor does.
	uncorrelated := eventTask(map[string]any{"sink": "nats:orders.created"})
	uncorrelated.CorrelationID = ""
	res = ev.Execute(ctx, uncorrelated)
	if v, ok := res.OutputData["correlationId"]; !ok || v != nil {
		t.Errorf("output correlationId of a workflow without one: %#v", res.OutputData["correlationId"])
	}
	if m, err := sub.NextMsg(10 * time.Second); err != nil || !strings.Contains(string(m.Data), `"correlationId":null`) {
		t.Errorf("event of a workflow without a correlationId: %v %v", m, err)
	}

	res = ev.Execute(ctx, eventTask(map[string]any{"sink": "nats:orders.created", "asyncComplete": true}))
	if res.Status != conductor.TaskInProgress {
		t.Errorf("asyncComplete: %+v", res)
	}
	if _, err := sub.NextMsg(10 * time.Second); err != nil {
		t.Errorf("asyncComplete: %v", err)
	}

	// Conductor's NATS module names a queue group after the subject.
	res = ev.Execute(ctx, eventTask(map[string]any{"sink": "nats:orders.created:billing"}))
	if res.Status != conductor.TaskCompleted || res.OutputData["event_produced"] != "nats:orders.created:billing" {
		t.Errorf("sink with a queue group: %+v", res)
	}
	if m, err := sub.NextMsg(10 * time.Second); err != nil || m.Subject != "orders.created" {
		t.Errorf("sink with a queue group: %v %v", m, err)
	}
}

// A sink that is not nats:<subject>, or names a subject of flowvault's,
// the server's or an inbox, fails the task for good and publishes nothing.
func TestEventRefusesSinks(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, 30*time.Second)
	nc := &counted{Conn: testutil.OpenLog(t, "").Conn()}
	ev := system.Event{Conn: nc}
	for _, sink := range []any{nil, "", "conductor", "conductor:shipped", "sqs:queue", "kafka:topic", "nats:", "nats:fv.cmd.start.w.p",
		"nats:fv.wf.forged", "nats:$JS.API.STREAM.NAMES", "nats:_INBOX.x", "nats:orders.*", "nats:orders..x", 42} {
		res := ev.Execute(ctx, eventTask(map[string]any{"sink": sink}))
		if res.Status != conductor.TaskFailedWithTerminalError || !strings.Contains(res.ReasonForIncompletion, "EVENT task notify") {
			t.Errorf("sink %v: %+v", sink, res)
		}
	}
	if n := nc.published.Load(); n != 0 {
		t.Fatalf("%d messages published", n)
	}
	big := strings.Repeat("x", int(nc.MaxPayload())+1)
	res := ev.Execute(ctx, eventTask(map[string]any{"sink": "nats:orders.big", "blob": big}))
	if res.Status != conductor.TaskFailedWithTerminalError || !strings.Contains(res.ReasonForIncompletion, "maximum payload") {
		t.Fatalf("an event over the server's max payload: %s %.200s", res.Status, res.ReasonForIncompletion)
	}
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}
