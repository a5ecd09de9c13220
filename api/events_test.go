package api_test

import (
	"bytes"
	"cmp"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flowvault/flowvault/auth"
	"github.com/flowvault/flowvault/internal/nodetest"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/metadata"
	"github.com/flowvault/flowvault/schemas"
)

// Server-owned keys of a stored event handler; everything else is the
// client's.
var handlerServerKeys = []string{"createdBy", "updatedBy", "createTime", "updateTime"}

// Handlers as clients send them: an unknown extra field, a number past
// 2^53, tags and an inactive handler, posted out of name order.
const (
	ehOrders = `{"name":"eh_orders","event":"nats:orders.created","condition":"$.amount > 10","evaluatorType":"javascript",` +
		`"actions":[{"action":"start_workflow","start_workflow":{"name":"fulfil","version":2,"correlationId":"${orderId}",` +
		`"input":{"order":"${orderId}","big":9007199254740993}}}],` +
		`"active":true,"description":"start fulfilment","tags":[{"key":"team","value":"orders"}],"x-extra":{"k":[1,2.5,"s"]}}`
	ehPaid = `{"name":"eh_paid","event":"nats:orders.created","evaluatorType":"graaljs",` +
		`"actions":[{"action":"complete_task","complete_task":{"workflowId":"${wf}","taskRefName":"pay_ref","output":{"paid":true}},"expandInlineJSON":true},` +
		`{"action":"update_workflow_variables","update_workflow_variables":{"workflowId":"${wf}","variables":{"paid":"${amount}"},"appendArray":false}}],` +
		`"active":false,"orgId":"o1"}`
)

// handlerJSON decodes one handler, numbers kept exact.
func handlerJSON(t *testing.T, s string) map[string]any {
	t.Helper()
	var m map[string]any
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("decode %s: %v", s, err)
	}
	return m
}

// handlerList decodes a list of handlers, numbers kept exact.
func handlerList(t *testing.T, s string) []map[string]any {
	t.Helper()
	var l []map[string]any
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	if err := dec.Decode(&l); err != nil {
		t.Fatalf("decode %s: %v", s, err)
	}
	return l
}

// clientPart is a stored handler without its server-owned keys.
func clientPart(h map[string]any) map[string]any {
	out := make(map[string]any, len(h))
	for k, v := range h {
		if !slices.Contains(handlerServerKeys, k) {
			out[k] = v
		}
	}
	return out
}

// sameJSON reports whether a and b encode the same JSON value.
func sameJSON(a, b any) bool {
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && bytes.Equal(ja, jb)
}

// handlerNames lists the handlers' names in order.
func handlerNames(hs []map[string]any) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i], _ = h["name"].(string)
	}
	return out
}

// millisOf reads a server-owned time.
func millisOf(t *testing.T, h map[string]any, key string) int64 {
	t.Helper()
	n, ok := h[key].(json.Number)
	if !ok {
		t.Fatalf("%s = %#v in %v", key, h[key], h)
	}
	v, err := n.Int64()
	if err != nil || v <= 0 {
		t.Fatalf("%s = %s", key, n)
	}
	return v
}

// validationPaths returns the paths of an error body's validationErrors,
// sorted.
func validationPaths(t *testing.T, e map[string]any) []string {
	t.Helper()
	var paths []string
	list, _ := e["validationErrors"].([]any)
	for _, v := range list {
		f, _ := v.(map[string]any)
		p, ok := f["path"].(string)
		if !ok {
			t.Fatalf("validation error without a path: %v", v)
		}
		if m, _ := f["message"].(string); m == "" {
			t.Fatalf("validation error at %s without a message", p)
		}
		paths = append(paths, p)
	}
	slices.Sort(paths)
	return paths
}

// The round trip of two handlers: listed by name with the client's JSON
// verbatim plus who saved them and when, found by name and by event
// (active ones only unless asked), replaced by PUT keeping who created
// it, removed by DELETE.
func TestEventHandlerRoutes(t *testing.T) {
	t.Parallel()
	_, base, token := nodetest.StartSecure(t)
	admin := client{t, base, token}
	bootstrap := "app:" + auth.BootstrapAppID

	admin.must(http.StatusNoContent, "POST", "/api/event", "["+ehPaid+","+ehOrders+"]")

	all := handlerList(t, admin.must(http.StatusOK, "GET", "/api/event", ""))
	if got := handlerNames(all); !slices.Equal(got, []string{"eh_orders", "eh_paid"}) {
		t.Fatalf("GET /api/event names %v, want sorted by name", got)
	}
	sent := map[string]string{"eh_orders": ehOrders, "eh_paid": ehPaid}
	for _, h := range all {
		name := h["name"].(string)
		if want := handlerJSON(t, sent[name]); !sameJSON(clientPart(h), want) {
			t.Errorf("%s stored as\n%v\nwant the client's JSON\n%v", name, clientPart(h), want)
		}
		if h["createdBy"] != bootstrap || h["updatedBy"] != bootstrap {
			t.Errorf("%s createdBy %v updatedBy %v, want %s", name, h["createdBy"], h["updatedBy"], bootstrap)
		}
		if c, u := millisOf(t, h, "createTime"), millisOf(t, h, "updateTime"); c != u {
			t.Errorf("%s createTime %d updateTime %d differ on creation", name, c, u)
		}
	}
	if big := all[0]["actions"].([]any)[0].(map[string]any)["start_workflow"].(map[string]any)["input"].(map[string]any)["big"]; big != json.Number("9007199254740993") {
		t.Errorf("big number came back as %v", big)
	}

	for _, tt := range []struct {
		name, path string
		want       []string
	}{
		{"by name", "/api/event/handler/eh_paid", nil},
		{"event, active only by default", "/api/event/nats:orders.created", []string{"eh_orders"}},
		{"event escaped as the SDKs send it", "/api/event/" + url.PathEscape("nats:orders.created"), []string{"eh_orders"}},
		{"event, activeOnly=true", "/api/event/nats:orders.created?activeOnly=true", []string{"eh_orders"}},
		{"event, activeOnly=false", "/api/event/nats:orders.created?activeOnly=false", []string{"eh_orders", "eh_paid"}},
		{"another event", "/api/event/nats:orders.shipped?activeOnly=false", []string{}},
		{"the event without its queue type", "/api/event/orders.created?activeOnly=false", []string{}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			body := admin.must(http.StatusOK, "GET", tt.path, "")
			if tt.want == nil {
				if h := handlerJSON(t, body); !sameJSON(h, all[1]) {
					t.Fatalf("GET by name %v, want what the list shows %v", h, all[1])
				}
				return
			}
			got := handlerList(t, body)
			if !slices.Equal(handlerNames(got), tt.want) {
				t.Fatalf("handlers %v, want %v", handlerNames(got), tt.want)
			}
			for _, h := range got {
				if i := slices.IndexFunc(all, func(a map[string]any) bool { return a["name"] == h["name"] }); !sameJSON(h, all[i]) {
					t.Fatalf("handler %v differs from the list's %v", h, all[i])
				}
			}
		})
	}
	admin.do("GET", "/api/event/nats:orders.created?activeOnly=maybe", "").expectError(t, http.StatusBadRequest, "activeOnly")
	// Orkes's paths of event executions and messages, queue configuration
	// and incoming events, not served, are not taken for handlers of an
	// event of that name, nor answered 405 (the JavaScript SDK's
	// EventClient calls each of them with these methods).
	for _, tt := range []struct{ method, path string }{
		{"GET", "/api/event/execution"},
		{"GET", "/api/event/execution/eh_paid"},
		{"GET", "/api/event/message?from=0"},
		{"GET", "/api/event/message/nats:orders.created"},
		{"GET", "/api/event/queue/config"},
		{"GET", "/api/event/queue/config/sqs/orders"},
		{"PUT", "/api/event/queue/config/sqs/orders"},
		{"DELETE", "/api/event/queue/config/sqs/orders"},
		{"POST", "/api/event/queue/connectivity"},
		{"POST", "/api/event/handleIncomingEvent"},
		// Conductor's external payload storage, which the SDKs' legacy
		// clients ask for: not taken for a workflow or a task id.
		{"GET", "/api/workflow/externalstoragelocation?path=p&operation=READ&payloadType=WORKFLOW_INPUT"},
		{"GET", "/api/tasks/externalstoragelocation?path=p&operation=READ&payloadType=TASK_OUTPUT"},
	} {
		admin.do(tt.method, tt.path, "{}").expectError(t, http.StatusNotFound, "not served")
	}

	// PUT by another admin: the change shows, createdBy and createTime
	// stay, updatedBy is the new one; a forged createdBy is ignored.
	opsID, _, _, opsToken := newApp(t, admin, "ops", "ADMIN")
	ops := client{t, base, opsToken}
	before := handlerJSON(t, admin.must(http.StatusOK, "GET", "/api/event/handler/eh_paid", ""))
	changed := strings.Replace(strings.Replace(ehPaid, `"active":false`, `"active":true,"condition":"$.amount >= 100","createdBy":"mallory","createTime":1`, 1),
		`"evaluatorType":"graaljs"`, `"evaluatorType":"javascript"`, 1)
	ops.must(http.StatusNoContent, "PUT", "/api/event", changed)
	after := handlerJSON(t, admin.must(http.StatusOK, "GET", "/api/event/handler/eh_paid", ""))
	wantClient := clientPart(handlerJSON(t, changed))
	if !sameJSON(clientPart(after), wantClient) {
		t.Errorf("after PUT\n%v\nwant\n%v", clientPart(after), wantClient)
	}
	if after["createdBy"] != bootstrap || after["updatedBy"] != "app:"+opsID {
		t.Errorf("after PUT createdBy %v updatedBy %v, want %s and app:%s", after["createdBy"], after["updatedBy"], bootstrap, opsID)
	}
	if millisOf(t, after, "createTime") != millisOf(t, before, "createTime") || millisOf(t, after, "updateTime") < millisOf(t, before, "updateTime") {
		t.Errorf("times before %v/%v after %v/%v", before["createTime"], before["updateTime"], after["createTime"], after["updateTime"])
	}
	if got := handlerNames(handlerList(t, admin.must(http.StatusOK, "GET", "/api/event/nats:orders.created", ""))); !slices.Equal(got, []string{"eh_orders", "eh_paid"}) {
		t.Errorf("active handlers after PUT %v", got)
	}

	// DELETE: gone from every read; a second DELETE and a GET are 404.
	admin.must(http.StatusNoContent, "DELETE", "/api/event/eh_orders", "")
	admin.do("GET", "/api/event/handler/eh_orders", "").expectError(t, http.StatusNotFound, "EventHandler with name eh_orders not found!")
	admin.do("DELETE", "/api/event/eh_orders", "").expectError(t, http.StatusNotFound, "EventHandler with name eh_orders not found!")
	if got := handlerNames(handlerList(t, admin.must(http.StatusOK, "GET", "/api/event", ""))); !slices.Equal(got, []string{"eh_paid"}) {
		t.Errorf("after DELETE %v", got)
	}
	if got := handlerNames(handlerList(t, admin.must(http.StatusOK, "GET", "/api/event/nats:orders.created?activeOnly=false", ""))); !slices.Equal(got, []string{"eh_paid"}) {
		t.Errorf("by event after DELETE %v", got)
	}
	// The name is free again, and a new handler is new: created now, by
	// whoever created it this time.
	ops.must(http.StatusNoContent, "POST", "/api/event", "["+ehOrders+"]")
	again := handlerJSON(t, admin.must(http.StatusOK, "GET", "/api/event/handler/eh_orders", ""))
	if again["createdBy"] != "app:"+opsID || millisOf(t, again, "createTime") < millisOf(t, all[0], "createTime") {
		t.Errorf("re-created handler %v", again)
	}
	admin.must(http.StatusNoContent, "DELETE", "/api/event/eh_paid", "")
	admin.must(http.StatusNoContent, "DELETE", "/api/event/eh_orders", "")
	if got := admin.must(http.StatusOK, "GET", "/api/event", ""); got != "[]" {
		t.Errorf("GET /api/event with no handlers = %s, want []", got)
	}
}

// A handler's tags live in its JSON: adding and removing them saves the
// handler again, every other byte of it as the client sent it.
func TestEventHandlerTags(t *testing.T) {
	t.Parallel()
	n, base, token := nodetest.StartSecure(t)
	admin := client{t, base, token}
	admin.must(http.StatusNoContent, "POST", "/api/event", "["+ehOrders+","+ehPaid+"]")
	before := handlerJSON(t, admin.must(http.StatusOK, "GET", "/api/event/handler/eh_orders", ""))
	tags := func(name string) string {
		t.Helper()
		return admin.must(http.StatusOK, "GET", "/api/event/"+name+"/tags", "")
	}
	if got := tags("eh_orders"); got != `[{"key":"team","value":"orders"}]` {
		t.Fatalf("tags as posted = %s", got)
	}
	if got := tags("eh_paid"); got != `[]` {
		t.Fatalf("tags of a handler without = %s", got)
	}
	for _, step := range []struct{ method, body, want string }{
		{"PUT", `[{"key":"env","value":"prod"},{"key":"team","value":"orders"}]`, `[{"key":"team","value":"orders"},{"key":"env","value":"prod"}]`},
		{"PUT", `{"key":"env","value":"dev"}`, `[{"key":"team","value":"orders"},{"key":"env","value":"prod"},{"key":"env","value":"dev"}]`},
		{"DELETE", `[{"key":"env","value":"dev"},{"key":"env","value":"none"}]`, `[{"key":"team","value":"orders"},{"key":"env","value":"prod"}]`},
		{"DELETE", `{"key":"team","value":"orders"}`, `[{"key":"env","value":"prod"}]`},
	} {
		admin.must(http.StatusNoContent, step.method, "/api/event/eh_orders/tags", step.body)
		if got := tags("eh_orders"); got != step.want {
			t.Fatalf("after %s %s: tags %s, want %s", step.method, step.body, got, step.want)
		}
	}
	after := handlerJSON(t, admin.must(http.StatusOK, "GET", "/api/event/handler/eh_orders", ""))
	want := clientPart(before)
	want["tags"] = []any{map[string]any{"key": "env", "value": "prod"}}
	if !sameJSON(clientPart(after), want) {
		t.Fatalf("handler after its tags changed\n%v\nwant\n%v", clientPart(after), want)
	}
	if millisOf(t, after, "createTime") != millisOf(t, before, "createTime") {
		t.Fatalf("createTime changed: %v then %v", before["createTime"], after["createTime"])
	}
	// The log records the handler as a client would send it: the keys the
	// server adds to what it shows are not part of it.
	recs, err := n.Log().ReadSubject(testutil.Context(t, 10*time.Second), metadata.EventHandlerSubject("eh_orders"), 0)
	if err != nil || len(recs) == 0 {
		t.Fatalf("the handler's records: %d, %v", len(recs), err)
	}
	last := recs[len(recs)-1]
	ev, err := schemas.Default.Decode(last.Events[len(last.Events)-1])
	saved, ok := ev.(*schemas.EventHandlerSaved)
	if err != nil || !ok {
		t.Fatalf("last event %T, %v", ev, err)
	}
	if logged := handlerJSON(t, string(saved.Def)); !sameJSON(logged, want) {
		t.Fatalf("logged handler\n%v\nwant\n%v", logged, want)
	}

	for _, tt := range []struct {
		name, method, path, body string
		status                   int
		// names is what the message names, or for a 400 with field
		// errors, the path of the one at fault.
		names string
	}{
		{"unknown handler", "GET", "/api/event/no_such/tags", "", http.StatusNotFound, "no_such"},
		{"unknown handler, add", "PUT", "/api/event/no_such/tags", `[{"key":"a","value":"b"}]`, http.StatusNotFound, "no_such"},
		{"unknown handler, remove", "DELETE", "/api/event/no_such/tags", `[{"key":"a","value":"b"}]`, http.StatusNotFound, "no_such"},
		{"empty key", "PUT", "/api/event/eh_orders/tags", `[{"key":"a","value":"b"},{"key":"","value":"c"}]`, http.StatusBadRequest, "[1].key"},
		{"malformed", "PUT", "/api/event/eh_orders/tags", `[{"key":"a"`, http.StatusBadRequest, ""},
		{"null", "PUT", "/api/event/eh_orders/tags", `null`, http.StatusBadRequest, ""},
		{"no body", "DELETE", "/api/event/eh_orders/tags", ``, http.StatusBadRequest, ""},
		{"neither handler nor tags", "GET", "/api/event/eh_orders/other", "", http.StatusNotFound, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res := admin.do(tt.method, tt.path, tt.body)
			if e := res.expectError(t, tt.status, ""); e["validationErrors"] != nil {
				if paths := validationPaths(t, e); !slices.Equal(paths, []string{tt.names}) {
					t.Fatalf("field errors at %v, want %s", paths, tt.names)
				}
				return
			}
			res.expectError(t, tt.status, tt.names)
		})
	}
	if got := tags("eh_orders"); got != `[{"key":"env","value":"prod"}]` {
		t.Fatalf("refused changes changed the tags: %s", got)
	}
}

// POST takes one handler as Conductor OSS does, as well as a list.
func TestEventHandlerPostOne(t *testing.T) {
	t.Parallel()
	_, base, token := nodetest.StartSecure(t)
	admin := client{t, base, token}

	admin.must(http.StatusNoContent, "POST", "/api/event", "  \n"+ehOrders)
	got := handlerJSON(t, admin.must(http.StatusOK, "GET", "/api/event/handler/eh_orders", ""))
	if !sameJSON(clientPart(got), handlerJSON(t, ehOrders)) {
		t.Fatalf("stored %v", got)
	}
	if got := handlerNames(handlerList(t, admin.must(http.StatusOK, "GET", "/api/event", ""))); !slices.Equal(got, []string{"eh_orders"}) {
		t.Fatalf("listed %v", got)
	}
	admin.do("POST", "/api/event", ehOrders).expectError(t, http.StatusConflict, "EventHandler with name eh_orders already exists!")
	e := admin.do("POST", "/api/event", strings.Replace(ehPaid, "nats:", "sqs:", 1)).expectError(t, http.StatusBadRequest, "")
	if paths := validationPaths(t, e); len(paths) != 1 || !strings.HasSuffix(paths[0], "event") {
		t.Fatalf("paths %v, want the event named", paths)
	}
	admin.do("GET", "/api/event/handler/eh_paid", "").expect(t, http.StatusNotFound)

	// "$${...}" is the text "${...}", not a secret reference.
	escaped := asJSON(t, withAction("start_workflow", map[string]any{"name": "fulfil", "input": map[string]any{"doc": "write $${workflow.secrets.x} in the definition"}}))
	admin.must(http.StatusNoContent, "POST", "/api/event", escaped)
	if got := handlerJSON(t, admin.must(http.StatusOK, "GET", "/api/event/handler/bad", "")); !sameJSON(clientPart(got), handlerJSON(t, escaped)) {
		t.Fatalf("stored %v", got)
	}
}

// badHandler is a valid handler named "bad" with fields replaced or, for
// a nil value, removed.
func badHandler(set map[string]any) map[string]any {
	h := map[string]any{
		"name": "bad", "event": "nats:orders.created", "active": true,
		"actions": []any{map[string]any{"action": "start_workflow", "start_workflow": map[string]any{"name": "fulfil"}}},
	}
	for k, v := range set {
		if v == nil {
			delete(h, k)
		} else {
			h[k] = v
		}
	}
	return h
}

// withAction is badHandler with one action.
func withAction(action string, params any) map[string]any {
	a := map[string]any{"action": action}
	if params != nil {
		a[action] = params
	}
	return badHandler(map[string]any{"actions": []any{a}})
}

func asJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Handlers that cannot run are refused with the problem's JSON path, and
// nothing of a refused list is stored.
func TestEventHandlerBadInput(t *testing.T) {
	t.Parallel()
	_, base, token := nodetest.StartSecure(t)
	admin := client{t, base, token}
	admin.must(http.StatusNoContent, "POST", "/api/event", "["+ehOrders+"]")
	stored := admin.must(http.StatusOK, "GET", "/api/event", "")

	list := func(hs ...map[string]any) string { return asJSON(t, hs) }
	start := func(params map[string]any) map[string]any { return withAction("start_workflow", params) }
	ok := badHandler(map[string]any{"name": "fine"})
	for _, tt := range []struct {
		name   string
		method string // POST unless set
		body   string
		status int
		msg    string   // part of the message
		paths  []string // the validation errors' paths, sorted
	}{
		{name: "malformed JSON", body: `[{"name":`, status: 400, msg: "malformed JSON"},
		{name: "malformed single object", body: `{"name":"bad",}`, status: 400, msg: "malformed JSON"},
		{name: "trailing data", body: list(ok) + `]`, status: 400, msg: "malformed JSON"},
		{name: "empty body", body: "", status: 400, msg: "request body is empty"},
		{name: "blank body", body: " \n ", status: 400, msg: "request body is empty"},
		{name: "empty list", body: `[]`, status: 400, msg: "must not be empty"},
		{name: "null", body: `null`, status: 400, msg: "must not be empty"},
		{name: "a string", body: `"bad"`, status: 400, msg: "body: must be an array, not a JSON string"},
		{name: "null in the list", body: `[null]`, status: 400, paths: []string{"[0]"}},
		{name: "missing name", body: list(badHandler(map[string]any{"name": nil})), status: 400, paths: []string{"[0].name"}},
		{name: "control character in the name", body: list(badHandler(map[string]any{"name": "a\x01b"})), status: 400, paths: []string{"[0].name"}},
		{name: "no event", body: list(badHandler(map[string]any{"event": nil})), status: 400, paths: []string{"[0].event"}},
		{name: "sqs event", body: list(badHandler(map[string]any{"event": "sqs:queue"})), status: 400, paths: []string{"[0].event"}},
		{name: "reserved subject", body: list(badHandler(map[string]any{"event": "nats:fv.x"})), status: 400, paths: []string{"[0].event"}},
		{name: "reserved $ subject", body: list(badHandler(map[string]any{"event": "nats:$JS.API.x"})), status: 400, paths: []string{"[0].event"}},
		{name: "no subject", body: list(badHandler(map[string]any{"event": "nats:"})), status: 400, paths: []string{"[0].event"}},
		{name: "empty token", body: list(badHandler(map[string]any{"event": "nats:orders..created"})), status: 400, paths: []string{"[0].event"}},
		{name: "> not last", body: list(badHandler(map[string]any{"event": "nats:orders.>.x"})), status: 400, paths: []string{"[0].event"}},
		{name: "unknown action", body: list(withAction("send_email", map[string]any{"to": "x"})), status: 400, paths: []string{"[0].actions[0].action"}},
		{name: "no actions", body: list(badHandler(map[string]any{"actions": []any{}})), status: 400, paths: []string{"[0].actions"}},
		{name: "actions absent", body: list(badHandler(map[string]any{"actions": nil})), status: 400, paths: []string{"[0].actions"}},
		{name: "start_workflow without parameters", body: list(withAction("start_workflow", nil)), status: 400, paths: []string{"[0].actions[0].start_workflow"}},
		{name: "start_workflow without name", body: list(start(map[string]any{"version": 1})), status: 400, paths: []string{"[0].actions[0].start_workflow"}},
		{name: "start_workflow with an empty name", body: list(start(map[string]any{"name": ""})), status: 400, paths: []string{"[0].actions[0].start_workflow"}},
		{name: "complete_task with only workflowId", body: list(withAction("complete_task", map[string]any{"workflowId": "${wf}"})), status: 400, paths: []string{"[0].actions[0].complete_task"}},
		{name: "fail_task with only taskRefName", body: list(withAction("fail_task", map[string]any{"taskRefName": "r"})), status: 400, paths: []string{"[0].actions[0].fail_task"}},
		{name: "terminate_workflow without workflowId", body: list(withAction("terminate_workflow", map[string]any{"terminationReason": "x"})), status: 400, paths: []string{"[0].actions[0].terminate_workflow"}},
		{name: "update_workflow_variables without variables", body: list(withAction("update_workflow_variables", map[string]any{"workflowId": "${wf}"})), status: 400, paths: []string{"[0].actions[0].update_workflow_variables"}},
		{name: "appendArray", body: list(withAction("update_workflow_variables", map[string]any{"workflowId": "${wf}", "variables": map[string]any{"a": 1}, "appendArray": true})),
			status: 400, paths: []string{"[0].actions[0].update_workflow_variables.appendArray"}},
		{name: "appendArray as a string", body: list(withAction("update_workflow_variables", map[string]any{"workflowId": "${wf}", "variables": map[string]any{"a": 1}, "appendArray": "true"})),
			status: 400, paths: []string{"[0].actions[0].update_workflow_variables.appendArray"}},
		{name: "a parameter of the wrong type", body: list(start(map[string]any{"name": "fulfil", "input": "text", "version": "${v}"})),
			status: 400, paths: []string{"[0].actions[0].start_workflow.input"}},
		{name: "an inline definition without tasks", body: list(start(map[string]any{"name": "fulfil", "workflowDef": map[string]any{"name": "fulfil", "tasks": []any{}}})),
			status: 400, paths: []string{"[0].actions[0].start_workflow.workflowDef.tasks"}},
		{name: "an inline definition's unknown task type", body: list(start(map[string]any{"name": "${which}", "workflowDef": map[string]any{
			"tasks": []any{map[string]any{"name": "t", "taskReferenceName": "t", "type": "NO_SUCH_TYPE"}}}})),
			status: 400, paths: []string{"[0].actions[0].start_workflow.workflowDef.tasks[0].type"}},
		{name: "an inline definition that is text", body: list(start(map[string]any{"name": "fulfil", "workflowDef": "text"})),
			status: 400, paths: []string{"[0].actions[0].start_workflow.workflowDef"}},
		{name: "condition does not compile", body: list(badHandler(map[string]any{"condition": "$.a >"})), status: 400, paths: []string{"[0].condition"}},
		{name: "python", body: list(badHandler(map[string]any{"evaluatorType": "python", "condition": "$.a > 1"})), status: 400, paths: []string{"[0].evaluatorType"}},
		{name: "secret in a parameter", body: list(start(map[string]any{"name": "fulfil", "input": map[string]any{"k": "${workflow.secrets.x}"}})),
			status: 400, paths: []string{"[0].actions[0].start_workflow.input.k"}},
		{name: "secret with a leading space", body: list(start(map[string]any{"name": "fulfil", "input": map[string]any{"k": "${ workflow.secrets.x}"}})),
			status: 400, paths: []string{"[0].actions[0].start_workflow.input.k"}},
		{name: "secret named by an expression", body: list(start(map[string]any{"name": "fulfil", "input": map[string]any{"k": []any{"a", "x${workflow.secrets.${which}}"}}})),
			status: 400, paths: []string{"[0].actions[0].start_workflow.input.k[1]"}},
		{name: "environment value", body: list(withAction("terminate_workflow", map[string]any{"workflowId": "${wf}", "terminationReason": "${workflow.env.region}"})),
			status: 400, paths: []string{"[0].actions[0].terminate_workflow.terminationReason"}},
		{name: "unterminated ${", body: list(start(map[string]any{"name": "fulfil", "input": map[string]any{"k": "${orderId"}})),
			status: 400, paths: []string{"[0].actions[0].start_workflow.input.k"}},
		{name: "every problem of a handler", body: list(badHandler(map[string]any{"event": "sqs:q", "condition": "$.a >", "actions": []any{}})),
			status: 400, paths: []string{"[0].actions", "[0].condition", "[0].event"}},
		{name: "problems of two handlers", body: list(badHandler(map[string]any{"name": "b1", "event": "sqs:q"}), badHandler(map[string]any{"name": "b2", "evaluatorType": "python"})),
			status: 400, paths: []string{"[0].event", "[1].evaluatorType"}},
		{name: "the second invalid stores neither", body: list(ok, badHandler(map[string]any{"event": "nats:"})), status: 400, paths: []string{"[1].event"}},
		{name: "the same name twice", body: list(ok, badHandler(map[string]any{"name": "fine"})), status: 400, paths: []string{"[1].name"}},
		{name: "an existing name", body: list(badHandler(map[string]any{"name": "eh_orders", "description": "changed"})), status: 409, msg: "EventHandler with name eh_orders already exists!"},
		{name: "an existing name after a new one", body: list(ok, badHandler(map[string]any{"name": "eh_orders"})), status: 409, msg: "EventHandler with name eh_orders already exists!"},
		{name: "PUT unknown", method: "PUT", body: asJSON(t, ok), status: 404, msg: "EventHandler with name fine not found!"},
		{name: "PUT invalid", method: "PUT", body: asJSON(t, badHandler(map[string]any{"name": "eh_orders", "event": "sqs:q"})), status: 400, paths: []string{"event"}},
		{name: "PUT a list", method: "PUT", body: list(badHandler(map[string]any{"name": "eh_orders"})), status: 400, msg: "body: must be an object, not a JSON array"},
		{name: "PUT empty", method: "PUT", body: "", status: 400, msg: "request body is empty"},
		{name: "PUT null", method: "PUT", body: "null", status: 400},
		{name: "PUT without a name", method: "PUT", body: asJSON(t, badHandler(map[string]any{"name": nil})), status: 400, paths: []string{"name"}},
		{name: "DELETE unknown", method: "DELETE", body: "", status: 404, msg: "EventHandler with name bad not found!"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			method, path := cmp.Or(tt.method, "POST"), "/api/event"
			if method == "DELETE" {
				path = "/api/event/bad"
			}
			e := admin.do(method, path, tt.body).expectError(t, tt.status, tt.msg)
			if paths := validationPaths(t, e); !slices.Equal(paths, tt.paths) {
				t.Errorf("validation paths %v, want %v (%v)", paths, tt.paths, e["validationErrors"])
			}
		})
		if got := admin.must(http.StatusOK, "GET", "/api/event", ""); got != stored {
			t.Errorf("%s: handlers changed by a refused request:\n%s\nwant\n%s", tt.name, got, stored)
			// Put things back for the next rows.
			for _, h := range handlerList(t, got) {
				if h["name"] != "eh_orders" {
					admin.must(http.StatusNoContent, "DELETE", "/api/event/"+url.PathEscape(h["name"].(string)), "")
				}
			}
			admin.must(http.StatusNoContent, "PUT", "/api/event", ehOrders)
			stored = admin.must(http.StatusOK, "GET", "/api/event", "")
		}
	}
}

// Event handlers are the ADMIN role's: an application with another role
// is refused every route (and changes nothing), a request without a token
// is unauthenticated.
func TestEventHandlerAccess(t *testing.T) {
	t.Parallel()
	_, base, token := nodetest.StartSecure(t)
	admin := client{t, base, token}
	admin.must(http.StatusNoContent, "POST", "/api/event", "["+ehOrders+"]")
	stored := admin.must(http.StatusOK, "GET", "/api/event", "")
	_, _, _, userToken := newApp(t, admin, "user", "USER")
	_, _, _, metaToken := newApp(t, admin, "meta", "METADATA_MANAGER")
	_, _, _, workerToken := newApp(t, admin, "worker", "WORKER")

	fresh := strings.Replace(ehOrders, "eh_orders", "eh_new", 1)
	routes := []struct{ method, path, body string }{
		{"GET", "/api/event", ""},
		{"POST", "/api/event", "[" + fresh + "]"},
		{"POST", "/api/event", fresh},
		{"PUT", "/api/event", strings.Replace(ehOrders, `"active":true`, `"active":false`, 1)},
		{"GET", "/api/event/handler/eh_orders", ""},
		{"GET", "/api/event/handler/no_such", ""},
		{"GET", "/api/event/nats:orders.created", ""},
		{"GET", "/api/event/nats:orders.created?activeOnly=false", ""},
		{"DELETE", "/api/event/eh_orders", ""},
		{"DELETE", "/api/event/no_such", ""},
		{"GET", "/api/event/eh_orders/tags", ""},
		{"PUT", "/api/event/eh_orders/tags", `[{"key":"k","value":"v"}]`},
		{"DELETE", "/api/event/eh_orders/tags", `[{"key":"team","value":"orders"}]`},
	}
	for _, who := range []struct {
		name   string
		token  string
		status int
	}{
		{"USER", userToken, http.StatusForbidden},
		{"METADATA_MANAGER", metaToken, http.StatusForbidden},
		{"WORKER", workerToken, http.StatusForbidden},
		{"no token", "", http.StatusUnauthorized},
		{"bad token", "not-a-token", http.StatusUnauthorized},
	} {
		t.Run(who.name, func(t *testing.T) {
			c := client{t, base, who.token}
			for _, r := range routes {
				res := c.do(r.method, r.path, r.body)
				if res.status != who.status {
					t.Errorf("%s %s: status %d, want %d: %s", r.method, r.path, res.status, who.status, res.body)
					continue
				}
				res.expectError(t, who.status, "")
				if strings.Contains(res.body, "eh_orders") && r.method == "GET" {
					t.Errorf("%s %s refused but shows a handler: %s", r.method, r.path, res.body)
				}
			}
			if got := admin.must(http.StatusOK, "GET", "/api/event", ""); got != stored {
				t.Fatalf("handlers changed by refused requests:\n%s\nwant\n%s", got, stored)
			}
		})
	}
}

// Names and events are path segments: any name is found and removed by
// its escaped form, and a pattern event is listed under itself.
func TestEventHandlerNamesInPaths(t *testing.T) {
	t.Parallel()
	_, base, token := nodetest.StartSecure(t)
	admin := client{t, base, token}
	for _, tt := range []struct{ name, event string }{
		{"orders.v2", "nats:orders.*"},
		{"team/hook", "nats:orders.>"},
		{"with space", "nats:a.b"},
		{"ünïcode-名前", "nats:a.b"},
		{"%2F", "nats:a.b"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := asJSON(t, badHandler(map[string]any{"name": tt.name, "event": tt.event}))
			admin.must(http.StatusNoContent, "POST", "/api/event", h)
			got := handlerJSON(t, admin.must(http.StatusOK, "GET", "/api/event/handler/"+url.PathEscape(tt.name), ""))
			if got["name"] != tt.name || got["event"] != tt.event {
				t.Fatalf("GET %q = %v", tt.name, got)
			}
			listed := handlerList(t, admin.must(http.StatusOK, "GET", "/api/event/"+url.PathEscape(tt.event), ""))
			if !slices.Contains(handlerNames(listed), tt.name) {
				t.Fatalf("GET by event %s: %v", tt.event, handlerNames(listed))
			}
			admin.must(http.StatusNoContent, "PUT", "/api/event", strings.Replace(h, `"active":true`, `"active":false`, 1))
			admin.must(http.StatusNoContent, "DELETE", "/api/event/"+url.PathEscape(tt.name), "")
			admin.do("GET", "/api/event/handler/"+url.PathEscape(tt.name), "").expect(t, http.StatusNotFound)
		})
	}
	if got := admin.must(http.StatusOK, "GET", "/api/event", ""); got != "[]" {
		t.Fatalf("left behind: %s", got)
	}
}
