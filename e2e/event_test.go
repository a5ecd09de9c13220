package e2e_test

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/workers"
)

// An EVENT task publishes to the NATS subject its sink names, where a
// consumer whose credentials an admin asked for receives it: the
// workflow's data, with what the workflow sealed as "***". A task that
// references a secret fails for good, and publishes nothing, since every
// subscriber would get the value; only admins may subscribe.
func TestEventTask(t *testing.T) {
	t.Parallel()
	e := newSecureEnv(t)
	raw := make([]byte, 16)
	rand.Read(raw)
	secret, card := "tok-"+hex.EncodeToString(raw[:8]), "card-"+hex.EncodeToString(raw[8:])
	e.must(http.StatusOK, "PUT", "/api/secrets/event_token", secret)
	e.register(`{"name":"announce","tasks":[{"name":"announce","taskReferenceName":"announce","type":"EVENT",
	  "sink":"nats:orders.${workflow.input.region}",
	  "inputParameters":{"order":"${workflow.input.order}","card":"${workflow.input._secrets.card}"}}],
	  "outputParameters":{"sent":"${announce.output.event_produced}"}}`,
		`{"name":"announce_token","tasks":[{"name":"announce","taskReferenceName":"announce","type":"EVENT",
	  "sink":"nats:orders.eu","inputParameters":{"token":"${workflow.secrets.event_token}"}}]}`,
		`{"name":"announce_sealed_token","tasks":[{"name":"announce","taskReferenceName":"announce","type":"EVENT",
	  "sink":"nats:orders.eu","inputParameters":{"_secrets":{"token":"${workflow.secrets.event_token}"}}}]}`)

	_, userToken := e.application("not-an-admin", "USER")
	if code, body := e.as(userToken).do("POST", "/api/workers/credentials", map[string]any{"subscribe": []string{"orders.>"}}); code != http.StatusForbidden {
		t.Fatalf("a non-admin asked for event credentials: %d %s", code, body)
	}
	if code, body := e.do("POST", "/api/workers/credentials", map[string]any{"subscribe": []string{">"}}); code != http.StatusBadRequest || !strings.Contains(body, "subscribe[0]") {
		t.Fatalf("credentials for every subject: %d %s", code, body)
	}
	var c struct{ Creds string }
	if err := json.Unmarshal([]byte(e.must(http.StatusOK, "POST", "/api/workers/credentials",
		map[string]any{"subscribe": []string{"orders.>"}, "name": "order-events"})), &c); err != nil {
		t.Fatal(err)
	}
	// The audit trail says who may read which events.
	var trail struct {
		Entries []struct {
			Action string
			Detail map[string]string
		}
	}
	if err := json.Unmarshal([]byte(e.must(http.StatusOK, "GET", "/api/audit", nil)), &trail); err != nil {
		t.Fatal(err)
	}
	audited := false
	for _, en := range trail.Entries {
		audited = audited || en.Action == "nats.credentials" && en.Detail["subscribe"] == "orders.>" && en.Detail["name"] == "order-events"
	}
	if !audited {
		t.Fatalf("no audit entry of the event credentials in %+v", trail.Entries)
	}
	nc, err := workers.Connect(e.node.Log().ClientURL(), []byte(c.Creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	sub, err := nc.SubscribeSync("orders.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil || nc.LastError() != nil {
		t.Fatalf("subscribe: %v %v", err, nc.LastError())
	}

	// First the refused one: had it published, its event would arrive
	// before the next workflow's, on the same publisher's connection.
	refused := e.waitStatus(e.start("announce_token", nil), conductor.WorkflowFailed)
	task := taskByRef(refused, "announce")
	if task.Status != conductor.TaskFailedWithTerminalError || !strings.Contains(task.ReasonForIncompletion, "secret event_token is not resolved for an EVENT task") {
		t.Fatalf("EVENT with a secret: %s %q", task.Status, task.ReasonForIncompletion)
	}
	if refs := e.refusals(refused.WorkflowID); len(refs) != 1 || refs[0].Name != "event_token" {
		t.Fatalf("the refusal's record: %+v", refs)
	}
	// The same reference inside a _secrets block, which an EVENT does not
	// open, is refused saying so.
	refused = e.waitStatus(e.start("announce_sealed_token", nil), conductor.WorkflowFailed)
	task = taskByRef(refused, "announce")
	if task.Status != conductor.TaskFailedWithTerminalError ||
		!strings.Contains(task.ReasonForIncompletion, "_secrets.token refers to a secret, environment or sealed value inside sealed data") {
		t.Fatalf("EVENT with a secret in _secrets: %s %q", task.Status, task.ReasonForIncompletion)
	}

	id := e.start("announce", map[string]any{"region": "eu", "order": 7, "_secrets": map[string]any{"card": card}})
	wf := e.waitStatus(id, conductor.WorkflowCompleted)
	if wf.Output["sent"] != "nats:orders.eu" {
		t.Fatalf("output %v", wf.Output)
	}
	m, err := sub.NextMsg(20 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(m.Data, &got); err != nil {
		t.Fatal(err)
	}
	if m.Subject != "orders.eu" || got["workflowInstanceId"] != id || got["workflowType"] != "announce" || got["workflowVersion"] != 1.0 ||
		got["order"] != 7.0 || got["card"] != "***" || got["sink"] != "nats:orders.eu" {
		t.Fatalf("event on %s: %s", m.Subject, m.Data)
	}
	for _, v := range []string{secret, card} {
		if strings.Contains(string(m.Data), v) {
			t.Fatalf("the event carries a secret value: %s", m.Data)
		}
	}
	// The refused one never ran: its hand-off failed.
	if n := testutil.MetricValue(t, e.node.Registry(), "flowvault_engine_system_tasks_total",
		map[string]string{"type": "EVENT", "status": conductor.TaskCompleted}); n != 1 {
		t.Fatalf("%v EVENT tasks counted", n)
	}
}
