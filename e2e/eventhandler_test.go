package e2e_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/flowvault/flowvault/auth"
	"github.com/flowvault/flowvault/internal/nodetest"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/workers"
)

// correlated returns the workflows of name with correlation id corr.
func (e *env) correlated(name, corr string) []conductor.Workflow {
	e.t.Helper()
	var out []conductor.Workflow
	if err := json.Unmarshal([]byte(e.must(http.StatusOK, "GET", "/api/workflow/"+name+"/correlated/"+corr+"?includeClosed=true", nil)), &out); err != nil {
		e.t.Fatal(err)
	}
	return out
}

// waitCorrelated waits for the one workflow of name with correlation id
// corr and returns its id.
func (e *env) waitCorrelated(name, corr string) string {
	e.t.Helper()
	var id string
	testutil.Eventually(e.t, 30*time.Second, 20*time.Millisecond, func() error {
		wfs := e.correlated(name, corr)
		if len(wfs) != 1 {
			return fmt.Errorf("%d workflows %s correlated %s, want 1", len(wfs), name, corr)
		}
		id = wfs[0].WorkflowID
		return nil
	})
	return id
}

// An EVENT task's event reaches the handlers of its subject: a handler
// whose condition holds starts a workflow with the event's data and
// completes a task another workflow waits in, as the admin who saved it;
// one whose condition fails does nothing. The same event published again
// runs no action again (counted as duplicates), an event that is not JSON or names a workflow that
// does not exist runs nothing and stops nothing, and a handler whose
// principal lost the right to start runs nothing.
func TestEventHandlers(t *testing.T) {
	t.Parallel()
	e := newSecureEnv(t)
	e.register(`{"name":"order_placed","tasks":[{"name":"announce","taskReferenceName":"announce","type":"EVENT","sink":"nats:orders.placed",
	  "inputParameters":{"orderId":"${workflow.input.orderId}","amount":"${workflow.input.amount}","waiter":"${workflow.input.waiter}"}}]}`,
		`{"name":"fulfil","tasks":[{"name":"note","taskReferenceName":"note","type":"SET_VARIABLE","inputParameters":{"order":"${workflow.input.orderId}"}}],
	  "outputParameters":{"order":"${workflow.input.orderId}","from":"${workflow.input.from}"}}`,
		`{"name":"approval","tasks":[{"name":"wait_payment","taskReferenceName":"wait_payment","type":"WAIT"}],
	  "outputParameters":{"paid":"${wait_payment.output.paid}"}}`,
		`{"name":"marker","tasks":[{"name":"m","taskReferenceName":"m","type":"SET_VARIABLE","inputParameters":{"x":1}}]}`)
	e.must(http.StatusNoContent, "POST", "/api/event", `[{"name":"big_orders","event":"nats:orders.placed","active":true,
	  "condition":"$.amount > 100",
	  "actions":[
	    {"action":"start_workflow","start_workflow":{"name":"fulfil","correlationId":"${orderId}","input":{"orderId":"${orderId}","from":"${workflowInstanceId}","event":"${$}"}}},
	    {"action":"complete_task","complete_task":{"workflowId":"${waiter}","taskRefName":"wait_payment","output":{"paid":"${amount}"}}}]},
	  {"name":"z_marker","event":"nats:orders.placed","active":true,
	   "actions":[{"action":"start_workflow","start_workflow":{"name":"marker","correlationId":"${orderId}"}}]}]`)

	waiter := e.start("approval", nil)
	e.waitStatus(waiter, conductor.WorkflowRunning)
	small := e.waitStatus(e.start("order_placed", map[string]any{"orderId": "o-small", "amount": 50, "waiter": waiter}), conductor.WorkflowCompleted)
	e.waitCorrelated("marker", "o-small") // the event was handled: every handler of it ran
	if got := e.correlated("fulfil", "o-small"); len(got) != 0 {
		t.Fatalf("a false condition started %d workflows", len(got))
	}
	big := e.waitStatus(e.start("order_placed", map[string]any{"orderId": "o-big", "amount": 500, "waiter": waiter}), conductor.WorkflowCompleted)
	fulfil := e.waitStatus(e.waitCorrelated("fulfil", "o-big"), conductor.WorkflowCompleted)
	if fulfil.Output["order"] != "o-big" || fulfil.Output["from"] != big.WorkflowID {
		t.Fatalf("started with output %v, want the event's order and workflow (%s)", fulfil.Output, big.WorkflowID)
	}
	// "${$}" is the whole event, as Conductor's JSONPath reads it.
	if ev, _ := fulfil.Input["event"].(map[string]any); ev["orderId"] != "o-big" || ev["workflowInstanceId"] != big.WorkflowID || ev["workflowType"] != "order_placed" {
		t.Fatalf("started with the event %v, want the EVENT task's whole payload", fulfil.Input["event"])
	}
	// Conductor's Workflow.event and WorkflowSummary.event: the handler's
	// event; a client's start has none.
	if fulfil.Event != "nats:orders.placed" || big.Event != "" {
		t.Fatalf("the started workflow shows the event %q, the client's %q: want the handler's and none", fulfil.Event, big.Event)
	}
	for id, want := range map[string]string{fulfil.WorkflowID: "nats:orders.placed", big.WorkflowID: ""} {
		var found conductor.SearchResult[conductor.WorkflowSummary]
		q := "/api/workflow/search?query=" + url.QueryEscape("workflowId = "+id)
		if err := json.Unmarshal([]byte(e.must(http.StatusOK, "GET", q, nil)), &found); err != nil {
			t.Fatal(err)
		}
		if len(found.Results) != 1 || found.Results[0].Event != want {
			t.Fatalf("search for %s found %+v, want it with the event %q", id, found.Results, want)
		}
	}
	announce := taskByRef(big, "announce")
	if fulfil.Input["conductor.event.name"] != "nats:orders.placed" || fulfil.Input["conductor.event.messageId"] != announce.TaskID {
		t.Fatalf("started with input %v, want Conductor's conductor.event.name and .messageId (%s)", fulfil.Input, announce.TaskID)
	}
	if admin := e.workflow(small.WorkflowID).CreatedBy; fulfil.CreatedBy != admin || admin == "" {
		t.Fatalf("started by %q, want the handler's admin %q", fulfil.CreatedBy, admin)
	}
	approved := e.waitStatus(waiter, conductor.WorkflowCompleted)
	if paid, _ := approved.Output["paid"].(float64); paid != 500 {
		t.Fatalf("the waiting task was completed with %v, want the big order's amount", approved.Output)
	}
	if out := taskByRef(approved, "wait_payment").OutputData; out["conductor.event.name"] != "nats:orders.placed" || out["conductor.event.messageId"] != announce.TaskID {
		t.Fatalf("the waiting task's output %v lacks the event's name and message id", out)
	}

	// The engine's publisher sends the same event again (as after a crash
	// between publishing and recording), then something that is not JSON.
	pubCreds, err := e.node.NATS().EventPublisherCredentials()
	if err != nil {
		t.Fatal(err)
	}
	pub := nodetest.Connect(t, e.node, pubCreds)
	again := &nats.Msg{Subject: "orders.placed", Header: nats.Header{}}
	again.Header.Set(nats.MsgIdHdr, announce.TaskID)
	again.Header.Set(workers.EventHeader, announce.TaskID)
	again.Data, _ = json.Marshal(map[string]any{"orderId": "o-big", "amount": 500, "waiter": waiter, "workflowInstanceId": big.WorkflowID})
	if err := pub.PublishMsg(again); err != nil {
		t.Fatal(err)
	}
	publishEvent(t, pub, "orders.placed", []byte("not json"))
	forged, _ := json.Marshal(map[string]any{"orderId": "o-forged", "amount": 1, "workflowInstanceId": "no-such-workflow"})
	publishEvent(t, pub, "orders.placed", forged)
	last, _ := json.Marshal(map[string]any{"orderId": "o-last", "amount": 1})
	publishEvent(t, pub, "orders.placed", last)
	e.waitCorrelated("marker", "o-last") // handled after the two before it
	if got := e.correlated("fulfil", "o-big"); len(got) != 1 {
		t.Fatalf("the event published again started %d workflows in all, want 1", len(got))
	}
	if got := e.correlated("marker", "o-forged"); len(got) != 0 {
		t.Fatalf("an event naming an unknown workflow ran its handlers")
	}

	// A handler saved by an admin who is one no more runs nothing.
	opsID, opsToken := e.application("ops", "ADMIN")
	e.as(opsToken).must(http.StatusNoContent, "POST", "/api/event", `{"name":"m_ops","event":"nats:orders.placed","active":true,
	  "actions":[{"action":"start_workflow","start_workflow":{"name":"fulfil","correlationId":"ops-${orderId}"}}]}`)
	e.must(http.StatusOK, "DELETE", "/api/applications/"+strings.TrimPrefix(opsID, "app:")+"/roles/ADMIN", nil)
	e.waitStatus(e.start("order_placed", map[string]any{"orderId": "o-ops", "amount": 1}), conductor.WorkflowCompleted)
	e.waitCorrelated("marker", "o-ops")
	if got := e.correlated("fulfil", "ops-o-ops"); len(got) != 0 {
		t.Fatalf("a handler whose principal lost ADMIN started %d workflows", len(got))
	}
	// What an operator sees of it all.
	for _, m := range []struct {
		action, outcome string
		want            float64
	}{
		{"", "event_refused", 2},           // not JSON; a workflow that does not exist
		{"", "condition_false", 3},         // o-small, o-last, o-ops
		{"start_workflow", "failed", 1},    // m_ops
		{"complete_task", "ran", 1},        // o-big
		{"complete_task", "duplicate", 1},  // o-big again
		{"start_workflow", "duplicate", 2}, // o-big again: big_orders's and z_marker's
	} {
		if got := testutil.MetricValue(t, e.node.Registry(), "flowvault_event_handler_runs_total",
			map[string]string{"action": m.action, "outcome": m.outcome}); got != m.want {
			t.Errorf("runs %s/%s = %v, want %v", m.action, m.outcome, got, m.want)
		}
	}
	var trail struct {
		Entries []struct{ Principal, Action, Target string }
	}
	if err := json.Unmarshal([]byte(e.must(http.StatusOK, "GET", "/api/audit?principal="+opsID, nil)), &trail); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(trail.Entries, struct{ Principal, Action, Target string }{opsID, "eventhandler.save", "EVENT_HANDLER:m_ops"}) {
		t.Fatalf("trail %+v", trail.Entries)
	}
}

// The other actions: fail a waiting task, terminate a workflow, set its
// variables (with a payload string parsed as JSON first), each as the
// event says.
func TestEventHandlerActions(t *testing.T) {
	t.Parallel()
	e := newSecureEnv(t)
	e.register(`{"name":"waits","tasks":[{"name":"w","taskReferenceName":"w","type":"WAIT"}]}`)
	e.must(http.StatusNoContent, "POST", "/api/event", `[
	  {"name":"fail","event":"nats:ops.commands","active":true,"condition":"$.kind == 'fail'",
	   "actions":[{"action":"fail_task","fail_task":{"workflowId":"${target}","taskRefName":"w","output":{"why":"${why}"}}}]},
	  {"name":"stop","event":"nats:ops.commands","active":true,"condition":"$.kind == 'terminate'",
	   "actions":[{"action":"terminate_workflow","terminate_workflow":{"workflowId":"${target}","terminationReason":"${why}"}}]},
	  {"name":"vars","event":"nats:ops.*","active":true,"condition":"$.kind == 'vars'",
	   "actions":[{"action":"update_workflow_variables","expandInlineJSON":true,
	     "update_workflow_variables":{"workflowId":"${target}","variables":{"note":"${why}","n":"${detail.n}"}}}]},
	  {"name":"inactive","event":"nats:ops.commands","active":false,
	   "actions":[{"action":"terminate_workflow","terminate_workflow":{"workflowId":"${target}"}}]}]`)
	failed, stopped, noted := e.start("waits", nil), e.start("waits", nil), e.start("waits", nil)
	for _, id := range []string{failed, stopped, noted} {
		e.waitStatus(id, conductor.WorkflowRunning)
	}
	creds, err := e.node.NATS().EventPublisherCredentials()
	if err != nil {
		t.Fatal(err)
	}
	pub := nodetest.Connect(t, e.node, creds)
	for _, ev := range []map[string]any{
		{"kind": "fail", "target": failed, "why": "card declined"},
		{"kind": "terminate", "target": stopped, "why": "cancelled by the customer"},
		{"kind": "vars", "target": noted, "why": "gift wrap", "detail": `{"n":3}`},
	} {
		b, _ := json.Marshal(ev)
		publishEvent(t, pub, "ops.commands", b)
	}
	wf := e.waitStatus(failed, conductor.WorkflowFailed)
	if w := taskByRef(wf, "w"); w.Status != conductor.TaskFailed || w.OutputData["why"] != "card declined" {
		t.Fatalf("task %s output %v", w.Status, w.OutputData)
	}
	if wf := e.waitStatus(stopped, conductor.WorkflowTerminated); wf.ReasonForIncompletion != "cancelled by the customer" {
		t.Fatalf("terminated with reason %q", wf.ReasonForIncompletion)
	}
	testutil.Eventually(t, 30*time.Second, 20*time.Millisecond, func() error {
		wf := e.workflow(noted)
		if n, _ := wf.Variables["n"].(float64); wf.Variables["note"] != "gift wrap" || n != 3 {
			return fmt.Errorf("variables %v", wf.Variables)
		}
		return nil
	})
	if wf := e.workflow(noted); wf.Status != conductor.WorkflowRunning {
		t.Fatalf("the inactive handler acted: %s", wf.Status)
	}
}

// A start_workflow action's inline definition is the started workflow's:
// its expressions read that workflow's input as it runs, not the event
// (evaluated over the event, ${workflow.input.orderId} was null before
// the workflow started). The conductor.event.* keys the server adds to
// its input are not judged by an input schema that allows no other keys.
func TestEventHandlerInlineDefinitionKeepsItsExpressions(t *testing.T) {
	t.Parallel()
	e := newSecureEnv(t)
	e.must(http.StatusNoContent, "POST", "/api/event", `[{"name":"inline_expr","event":"nats:inline.expr","active":true,
	   "actions":[{"action":"start_workflow","start_workflow":{"name":"inline_expr_run","correlationId":"${orderId}","input":{"orderId":"${orderId}"},
	     "workflowDef":{"enforceSchema":true,"inputSchema":{"name":"inline_order","type":"JSON","data":{"type":"object",
	         "properties":{"orderId":{"type":"string"}},"required":["orderId"],"additionalProperties":false}},
	       "tasks":[{"name":"note","taskReferenceName":"note","type":"SET_VARIABLE","inputParameters":{"seen":"${workflow.input.orderId}"}}],
	       "outputParameters":{"order":"${workflow.input.orderId}","seen":"${workflow.variables.seen}"}}}}]}]`)
	creds, err := e.node.NATS().EventPublisherCredentials()
	if err != nil {
		t.Fatal(err)
	}
	publishEvent(t, nodetest.Connect(t, e.node, creds), "inline.expr", []byte(`{"orderId":"o-7"}`))
	wf := e.waitStatus(e.waitCorrelated("inline_expr_run", "o-7"), conductor.WorkflowCompleted)
	if wf.Output["order"] != "o-7" || wf.Output["seen"] != "o-7" {
		t.Fatalf("output %v, want order and seen o-7", wf.Output)
	}
}

// A handler acts for the workflow that published the event as well as
// for its own principal: an admin's handler starts nothing that the
// publisher may not start, and what it starts runs as the publisher, so
// a user's event never borrows the admin's rights (its secrets).
func TestEventHandlerActsForPublisher(t *testing.T) {
	t.Parallel()
	e := newSecureEnv(t)
	e.register(`{"name":"shop_order","tasks":[{"name":"announce","taskReferenceName":"announce","type":"EVENT","sink":"nats:shop.orders",
	  "inputParameters":{"orderId":"${workflow.input.orderId}"}}]}`,
		`{"name":"ship","tasks":[{"name":"s","taskReferenceName":"s","type":"SET_VARIABLE","inputParameters":{"x":1}}]}`,
		`{"name":"marker","tasks":[{"name":"m","taskReferenceName":"m","type":"SET_VARIABLE","inputParameters":{"x":1}}]}`)
	e.must(http.StatusNoContent, "POST", "/api/event", `[
	  {"name":"ship_it","event":"nats:shop.orders","active":true,
	   "actions":[{"action":"start_workflow","start_workflow":{"name":"ship","correlationId":"${orderId}"}}]},
	  {"name":"z_marker","event":"nats:shop.orders","active":true,
	   "actions":[{"action":"start_workflow","start_workflow":{"name":"marker","correlationId":"${orderId}"}}]}]`)
	shop, shopToken := e.application("shop", "USER")
	e.grant(shop, "WORKFLOW_DEF", "shop_order", "EXECUTE")
	e.grant(shop, "WORKFLOW_DEF", "marker", "EXECUTE")
	as := e.as(shopToken)

	e.waitStatus(as.start("shop_order", map[string]any{"orderId": "o-1"}), conductor.WorkflowCompleted)
	if marker := e.workflow(e.waitCorrelated("marker", "o-1")); marker.CreatedBy != shop {
		t.Fatalf("the marker runs as %q, want the publisher %q", marker.CreatedBy, shop)
	}
	if got := e.correlated("ship", "o-1"); len(got) != 0 {
		t.Fatalf("a publisher without EXECUTE on ship had %d started for it", len(got))
	}
	e.grant(shop, "WORKFLOW_DEF", "ship", "EXECUTE")
	e.waitStatus(as.start("shop_order", map[string]any{"orderId": "o-2"}), conductor.WorkflowCompleted)
	if ship := e.workflow(e.waitCorrelated("ship", "o-2")); ship.CreatedBy != shop {
		t.Fatalf("ship runs as %q, want the publisher %q", ship.CreatedBy, shop)
	}
}

// A handler's action that gives a workflow data (completing its task,
// setting its variables) gives it the data of every principal it acts
// for: the publishing workflow's (its starter and its definition's
// author) and the handler's. Each joins those the target runs as, so a
// secret named by that data resolves only where every one of them may.
func TestEventHandlerActionsJoinEveryPrincipal(t *testing.T) {
	t.Parallel()
	e := newSecureEnv(t)
	owner, ownerToken := e.application("owner", "USER")
	starter, starterToken := e.application("starter", "USER")
	author, authorToken := e.application("author", "USER")
	e.as(ownerToken).register(`{"name":"waiter","tasks":[{"name":"w","taskReferenceName":"w","type":"WAIT"}]}`)
	e.as(authorToken).register(`{"name":"publisher","tasks":[{"name":"e","taskReferenceName":"e","type":"EVENT","sink":"nats:ev.done",
	  "inputParameters":{"wf":"${workflow.input.wf}","name":"team_token"}}]}`)
	e.grant(starter, "WORKFLOW_DEF", "publisher", "EXECUTE")
	e.grant(starter, "WORKFLOW_DEF", "waiter", "EXECUTE")
	e.grant(author, "WORKFLOW_DEF", "waiter", "EXECUTE")
	e.must(http.StatusNoContent, "POST", "/api/event", `[{"name":"done","event":"nats:ev.done","active":true,
	  "actions":[{"action":"complete_task","complete_task":{"workflowId":"${wf}","taskRefName":"w","output":{"name":"${name}"}}},
	             {"action":"update_workflow_variables","update_workflow_variables":{"workflowId":"${wf}","variables":{"v":1}}}]}]`)

	waiter := e.as(ownerToken).start("waiter", nil)
	e.waitStatus(e.as(starterToken).start("publisher", map[string]any{"wf": waiter}), conductor.WorkflowCompleted)
	e.waitStatus(waiter, conductor.WorkflowCompleted)
	joined := map[string]bool{}
	for _, ev := range e.events(waiter) {
		if r, ok := ev.(*schemas.WorkflowRunAs); ok {
			joined[r.Principal] = true
		}
	}
	if !joined[starter] || !joined[author] || joined[owner] {
		t.Fatalf("the waiter runs as %v besides its owner %s, want the starter %s and the author %s", joined, owner, starter, author)
	}
}

// publishEvent publishes data on subject as the engines' EVENT task
// does, marked as its (workers.EventHeader), and returns once the server
// has it.
func publishEvent(t *testing.T, nc *nats.Conn, subject string, data []byte) {
	t.Helper()
	m := nats.NewMsg(subject)
	m.Data = data
	m.Header.Set(workers.EventHeader, "test-event")
	if err := nc.PublishMsg(m); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
}

// A worker names the subject its request's answer goes to, and the
// server, which maps it across the service import, checks it against
// nothing: an answer aimed at a handler's subject reached the listener as
// an event, and a worker with credentials for one task type ran an
// admin's handler, as often as it liked (a start_workflow as the admin).
// The engine sees only the mapped reply and cannot refuse it; the
// listener runs handlers on what EVENT tasks published alone. The
// worker's own requests are answered as before.
func TestAnswersAimedAtAHandlerRunNothing(t *testing.T) {
	t.Parallel()
	e := newSecureEnv(t)
	e.register(`{"name":"aim_marker","tasks":[{"name":"m","taskReferenceName":"m","type":"SET_VARIABLE","inputParameters":{"x":1}}]}`,
		`{"name":"aim_announce","tasks":[{"name":"a","taskReferenceName":"a","type":"EVENT","sink":"nats:aim.ready"}]}`)
	// Saved together, their subjects are subscribed to in one sync, in
	// order: once aim.ready's handler ran, aim.orders is listened to.
	e.must(http.StatusNoContent, "POST", "/api/event", `[
	  {"name":"aim_handler","event":"nats:aim.orders","active":true,
	   "actions":[{"action":"start_workflow","start_workflow":{"name":"aim_marker","correlationId":"aimed"}}]},
	  {"name":"aim_ready","event":"nats:aim.ready","active":true,
	   "actions":[{"action":"start_workflow","start_workflow":{"name":"aim_marker","correlationId":"ready"}}]}]`)
	nc, err := workers.Connect(e.node.Log().ClientURL(), e.workerCredentials("aim_task"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	testutil.Eventually(t, 30*time.Second, 50*time.Millisecond, func() error {
		e.waitStatus(e.start("aim_announce", nil), conductor.WorkflowCompleted)
		if len(e.correlated("aim_marker", "ready")) == 0 {
			return fmt.Errorf("no event handled yet")
		}
		return nil
	})
	refused := func() float64 {
		return testutil.MetricValue(t, e.node.Registry(), "flowvault_event_handler_runs_total",
			map[string]string{"action": "", "outcome": "event_refused"})
	}
	before := refused()
	poll, _ := json.Marshal(workers.PollRequest{WorkerID: "w", WaitMs: 0})
	take, _ := json.Marshal(workers.TakeRequest{TaskID: "no-task", WorkflowInstanceID: "no-wf", WorkerID: "w"})
	aimed := []struct {
		subject string
		body    []byte
	}{{workers.PollSubject("aim_task", ""), poll}, {workers.TakeSubject("aim_task", ""), take}}
	for _, a := range aimed {
		if err := nc.PublishRequest(a.subject, "aim.orders", a.body); err != nil {
			t.Fatal(err)
		}
		// The same request with an inbox of its own is answered.
		if _, err := nc.Request(a.subject, a.body, 15*time.Second); err != nil {
			t.Fatalf("%s: %v", a.subject, err)
		}
	}
	testutil.Eventually(t, 30*time.Second, 20*time.Millisecond, func() error {
		if got := len(e.correlated("aim_marker", "aimed")); got != 0 {
			t.Fatalf("the aimed answers started %d workflows as the handler's principal", got)
		}
		if got := refused() - before; got < float64(len(aimed)) {
			return fmt.Errorf("%v of the %d aimed answers refused", got, len(aimed))
		}
		return nil
	})
}

// A handler saved without this node's API (through another engine, here
// its store) reaches the listener all the same: the definitions' read
// model tells it.
func TestEventHandlerSavedElsewhere(t *testing.T) {
	t.Parallel()
	e := newSecureEnv(t)
	e.register(`{"name":"marker","tasks":[{"name":"m","taskReferenceName":"m","type":"SET_VARIABLE","inputParameters":{"x":1}}]}`)
	var h conductor.EventHandler
	if err := json.Unmarshal([]byte(`{"name":"elsewhere","event":"nats:elsewhere.saved","active":true,
	  "actions":[{"action":"start_workflow","start_workflow":{"name":"marker","correlationId":"elsewhere"}}]}`), &h); err != nil {
		t.Fatal(err)
	}
	if err := e.node.Metadata().AddEventHandlers(testutil.Context(t, 30*time.Second), []*conductor.EventHandler{&h}, "app:"+auth.BootstrapAppID); err != nil {
		t.Fatal(err)
	}
	creds, err := e.node.NATS().EventPublisherCredentials()
	if err != nil {
		t.Fatal(err)
	}
	pub := nodetest.Connect(t, e.node, creds)
	// Events sent before the listener subscribed are lost (at most once):
	// send until one is handled.
	testutil.Eventually(t, 30*time.Second, 50*time.Millisecond, func() error {
		publishEvent(t, pub, "elsewhere.saved", []byte(`{}`))
		if n := len(e.correlated("marker", "elsewhere")); n == 0 {
			return fmt.Errorf("no event handled yet")
		}
		return nil
	})
}

// A handler's failures are logged by kind, never by their text, which
// quotes the event: a condition's script error names the value it choked
// on, an action's the workflow name it took from the event.
func TestEventHandlerFailuresLogNoEventData(t *testing.T) {
	t.Parallel()
	logger, logs := testutil.CapturingLogger()
	n, base := nodetest.StartLogger(t, nodetest.Config(t.TempDir()), logger)
	e := &env{t: t, node: n, base: base}
	const planted = "planted-event-data-7Hq2"
	e.register(`{"name":"announces","tasks":[{"name":"e","taskReferenceName":"e","type":"EVENT","sink":"nats:quiet.x",
	  "inputParameters":{"tok":"${workflow.input.tok}"}}]}`,
		`{"name":"handled","tasks":[{"name":"m","taskReferenceName":"m","type":"SET_VARIABLE","inputParameters":{"x":1}}]}`)
	e.must(http.StatusNoContent, "POST", "/api/event", `[
	  {"name":"a_throws","event":"nats:quiet.x","active":true,"condition":"$.tok.nope()","actions":[{"action":"start_workflow","start_workflow":{"name":"handled"}}]},
	  {"name":"b_names","event":"nats:quiet.x","active":true,"actions":[{"action":"start_workflow","start_workflow":{"name":"${tok}"}}]},
	  {"name":"z_marker","event":"nats:quiet.x","active":true,"actions":[{"action":"start_workflow","start_workflow":{"name":"handled","correlationId":"done"}}]}]`)
	e.waitStatus(e.start("announces", map[string]any{"tok": planted}), conductor.WorkflowCompleted)
	e.waitCorrelated("handled", "done") // handlers run in order: the two before it ran
	out := logs.String()
	for _, want := range []string{"event handler condition failed", "event handler action failed"} {
		if !strings.Contains(out, want) {
			t.Fatalf("the log has no %q", want)
		}
	}
	if strings.Contains(out, planted) {
		t.Fatal("the log quotes the event's data")
	}
}

// A subject longer than a NATS protocol line may carry would close the
// connection it is sent on for good, and with it every engine's events
// (and, sharing it, the log's appends): an EVENT task whose sink names one
// fails alone, a handler listening to one is refused, and events flow on.
// A handler written nats:<subject>:<queue>, as Conductor's NATS module
// writes one, listens to the subject, where such a sink publishes.
func TestEventSubjectsNATSCannotCarry(t *testing.T) {
	t.Parallel()
	e := newSecureEnv(t)
	long := "orders." + strings.Repeat("x", 5000)
	e.register(`{"name":"announce_any","tasks":[{"name":"a","taskReferenceName":"a","type":"EVENT","sink":"nats:${workflow.input.subj}",
	  "inputParameters":{"orderId":"${workflow.input.orderId}"}}]}`,
		`{"name":"marker","tasks":[{"name":"m","taskReferenceName":"m","type":"SET_VARIABLE","inputParameters":{"x":1}}]}`)
	status, body := e.do("POST", "/api/event", `{"name":"too_long","event":"nats:`+long+`","active":true,
	  "actions":[{"action":"start_workflow","start_workflow":{"name":"marker"}}]}`)
	if status != http.StatusBadRequest || !strings.Contains(body, "at most 1024") {
		t.Fatalf("a handler of a %d-byte subject: %d %.300s", len(long), status, body)
	}
	e.must(http.StatusNoContent, "POST", "/api/event", `{"name":"queued","event":"nats:orders.queued:billing","active":true,
	  "actions":[{"action":"start_workflow","start_workflow":{"name":"marker","correlationId":"${orderId}"}}]}`)

	failed := e.waitStatus(e.start("announce_any", map[string]any{"subj": long, "orderId": "o-long"}), conductor.WorkflowFailed)
	if reason := taskByRef(failed, "a").ReasonForIncompletion; !strings.Contains(reason, "at most 1024") {
		t.Fatalf("the EVENT task failed with %q", reason)
	}
	e.waitStatus(e.start("announce_any", map[string]any{"subj": "orders.queued:billing", "orderId": "o-after"}), conductor.WorkflowCompleted)
	e.waitCorrelated("marker", "o-after")
}

// A node that shuts down gracefully handles the events its listener took
// before it stops: it leaves the queue groups (the events after go to
// the other engines) and handles what its subscriptions hold while its
// engine still runs, before it stops the engine. It left them only once
// the engine had stopped, and then at once: the events waiting in its
// subscriptions were dropped, unlogged and uncounted, and those handled
// as the engine stopped failed ("unavailable"), each lost, for no other
// engine gets an event one took.
func TestGracefulStopHandlesTheEventsItTook(t *testing.T) {
	t.Parallel()
	logger, logs := testutil.CapturingLogger()
	n, base := nodetest.StartLogger(t, nodetest.Config(t.TempDir()), logger)
	e := &env{t: t, node: n, base: base}
	e.register(`{"name":"marker","tasks":[{"name":"m","taskReferenceName":"m","type":"SET_VARIABLE","inputParameters":{"x":1}}]}`)
	e.must(http.StatusNoContent, "POST", "/api/event", `[{"name":"on_stop","event":"nats:stopping.events","active":true,
	  "actions":[{"action":"start_workflow","start_workflow":{"name":"marker"}}]}]`)
	c, err := n.NATS().EventPublisherCredentials()
	if err != nil {
		t.Fatal(err)
	}
	pub := nodetest.Connect(t, n, c)
	// Each start writes to the log a few times: most of them still wait
	// in the listener's subscription when the node stops.
	const events = 100
	testutil.PublishEvents(t, pub, "stopping.events", "event-", 0, events)
	if err := n.Stop(testutil.Context(t, 30*time.Second)); err != nil {
		t.Fatal(err)
	}
	out := logs.String()
	ran, failed := strings.Count(out, `"msg":"event handler action ran"`), strings.Count(out, `"msg":"event handler action failed"`)
	if ran != events || failed != 0 {
		t.Fatalf("%d of the %d events taken before the stop ran, %d failed: want all ran", ran, events, failed)
	}
}
