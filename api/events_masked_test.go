package api_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flowvault/flowvault/api"
	"github.com/flowvault/flowvault/auth"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/metadata"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// An event handler is stored and shown as given, as a schedule is, so a
// start_workflow action whose input sets a field the workflow masks to
// data of the handler's own is refused, and such a field, masked since,
// reads "***" in every read of handlers; a field given from the event
// ("${pw}", expressions and nothing else) is the started workflow's to
// seal, and is taken and shown as written; text beside an expression, or
// escaped ("$${"), or a literal a function adds, is the handler's own,
// refused and masked as a plain value is. A handler whose workflow an
// expression names may start any workflow, and one whose version an
// expression gives any version of it: a field any of them masks is
// refused and masked. Both look the definition up: a lookup that fails
// (the read model lacks the definition and the log does not answer), or a
// list of them, fails the request, unavailable. Handlers were stored and
// shown as given: the save kept the masked field in plain text in the
// metadata log and read model, and every read showed it.
func TestEventHandlerMasking(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, time.Minute)
	md := maskedFlowMetadata(ctx, t)
	// Masked by its first version only.
	for _, js := range []string{`{"name":"versioned_flow","version":1,"maskedFields":["pw"],"tasks":[{"name":"w","taskReferenceName":"w","type":"WAIT"}]}`,
		`{"name":"versioned_flow","version":2,"tasks":[{"name":"w","taskReferenceName":"w","type":"WAIT"}]}`} {
		var def conductor.WorkflowDef
		if err := conductor.Unmarshal([]byte(js), &def); err != nil {
			t.Fatal(err)
		}
		if err := md.RegisterWorkflowDef(ctx, &def, true, pinAdmin); err != nil {
			t.Fatal(err)
		}
	}
	failing := &atomic.Bool{}
	admin := handlerAdmin(t, md, failingLookup{Store: md, failing: failing})

	const secret = "hunter2-value"
	handler := func(name, start string) string {
		return `{"name":"` + name + `","event":"nats:pay.done","active":true,"actions":[{"action":"start_workflow","start_workflow":` + start + `}]}`
	}
	literal := handler("pays", `{"name":"masked_flow","input":{"pw":"`+secret+`","n":1}}`)
	// An inline definition is not looked up: refused either way.
	for _, save := range []struct {
		body, field string
		whenFailing int
	}{
		{literal, "[0].actions[0].start_workflow.input.pw", http.StatusServiceUnavailable},
		{"[" + literal + "]", "[0].actions[0].start_workflow.input.pw", http.StatusServiceUnavailable},
		{handler("pays", `{"name":"masked_flow","version":"1","input":{"pw":{"nested":["`+secret+`"]}}}`),
			"[0].actions[0].start_workflow.input.pw", http.StatusServiceUnavailable},
		// Text beside an expression, or escaped as text ("$${"), is
		// the handler's own.
		{handler("pays", `{"name":"masked_flow","input":{"pw":"`+secret+` ${pw}"}}`), "[0].actions[0].start_workflow.input.pw", http.StatusServiceUnavailable},
		{handler("pays", `{"name":"masked_flow","input":{"pw":"$${`+secret+`}"}}`), "[0].actions[0].start_workflow.input.pw", http.StatusServiceUnavailable},
		{handler("pays", `{"name":"masked_flow","input":{"pw":"${$.pw.concat('`+secret+`')}"}}`), "[0].actions[0].start_workflow.input.pw",
			http.StatusServiceUnavailable},
		// A workflow an expression names may be any: a field any
		// definition masks is refused.
		{handler("pays", `{"name":"${flow}","input":{"pw":"`+secret+`","n":1}}`), "[0].actions[0].start_workflow.input.pw", http.StatusServiceUnavailable},
		{handler("pays", `{"name":"masked_${kind}","version":"${v}","input":{"pw":"`+secret+`"}}`), "[0].actions[0].start_workflow.input.pw",
			http.StatusServiceUnavailable},
		// As may a version an expression gives: any of the name's.
		{handler("pays", `{"name":"versioned_flow","version":"${v}","input":{"pw":"`+secret+`"}}`), "[0].actions[0].start_workflow.input.pw",
			http.StatusServiceUnavailable},
		{handler("pays", `{"name":"inline","workflowDef":{"name":"inline","maskedFields":["pw"],"tasks":[{"name":"w","taskReferenceName":"w","type":"WAIT"}]},`+
			`"input":{"pw":"`+secret+`"}}`), "[0].actions[0].start_workflow.input.pw", http.StatusBadRequest},
	} {
		failing.Store(true)
		if got := admin.do("POST", "/api/event", save.body); got.status != save.whenFailing || strings.Contains(got.body, secret) {
			t.Errorf("POST %s with the lookup failing = %d %s, want %d", save.body, got.status, got.body, save.whenFailing)
		}
		failing.Store(false)
		if got := admin.do("POST", "/api/event", save.body); got.status != http.StatusBadRequest || !strings.Contains(got.body, save.field) ||
			strings.Contains(got.body, secret) {
			t.Errorf("POST %s = %d %s, want 400 naming %s", save.body, got.status, got.body, save.field)
		}
	}
	if got := admin.do("GET", "/api/event/handler/pays", ""); got.status != http.StatusNotFound {
		t.Fatalf("a refused save stored the handler: GET = %d %s", got.status, got.body)
	}
	fromEvent := handler("pays", `{"name":"masked_flow","input":{"pw":"${pw}${$.pin}","n":1}}`)
	if got := admin.do("POST", "/api/event", fromEvent); got.status != http.StatusNoContent {
		t.Fatalf("POST of a handler giving pw from the event = %d %s, want 204", got.status, got.body)
	}
	// Named by an expression, with data of its own no definition masks.
	if got := admin.do("POST", "/api/event", handler("any_flow", `{"name":"${flow}","input":{"pw":"${pw}","n":1,"source":"stripe"}}`)); got.status != http.StatusNoContent {
		t.Fatalf("POST of a handler naming its workflow by an expression, pw from the event = %d %s, want 204", got.status, got.body)
	}
	if got := admin.do("POST", "/api/event", handler("second_version", `{"name":"versioned_flow","version":2,"input":{"pw":"plain-enough"}}`)); got.status != http.StatusNoContent {
		t.Fatalf("POST of a handler setting pw of a version that does not mask it = %d %s, want 204", got.status, got.body)
	}
	if got := admin.do("PUT", "/api/event", literal); got.status != http.StatusBadRequest ||
		!strings.Contains(got.body, "actions[0].start_workflow.input.pw") || strings.Contains(got.body, secret) {
		t.Errorf("PUT %s = %d %s, want 400 naming actions[0].start_workflow.input.pw", literal, got.status, got.body)
	}

	// Stored before the definition came to mask pw.
	storeHandler(ctx, t, md, handler("paid_before", `{"name":"masked_flow","input":{"pw":"`+secret+`","n":1}}`))
	storeHandler(ctx, t, md, handler("beside_before", `{"name":"masked_flow","input":{"pw":"${pw}`+secret+`"}}`))
	storeHandler(ctx, t, md, handler("named_before", `{"name":"${flow}","input":{"pw":"`+secret+`"}}`))
	storeHandler(ctx, t, md, handler("versioned_before", `{"name":"versioned_flow","version":"${v}","input":{"pw":"`+secret+`"}}`))
	for _, path := range []string{"/api/event", "/api/event/handler/paid_before", "/api/event/nats:pay.done?activeOnly=false"} {
		t.Run(path, func(t *testing.T) {
			failing.Store(true)
			if got := admin.do("GET", path, ""); got.status != http.StatusServiceUnavailable || strings.Contains(got.body, secret) {
				t.Errorf("with the lookup failing: GET %s = %d %s, want 503", path, got.status, got.body)
			}
			failing.Store(false)
			got := admin.do("GET", path, "")
			if got.status != http.StatusOK || strings.Contains(got.body, secret) || !strings.Contains(got.body, `"pw":"***"`) || !strings.Contains(got.body, `"n":1`) {
				t.Errorf("GET %s = %d %s, want pw masked and n shown", path, got.status, got.body)
			}
			if path != "/api/event/handler/paid_before" && !strings.Contains(got.body, `"pw":"${pw}${$.pin}"`) {
				t.Errorf("GET %s = %s, want the handler giving pw from the event shown as written", path, got.body)
			}
		})
	}
}

// An event handler is stored and shown as given, as a schedule is, so an
// action whose parameters hold _secrets or _masked data of the handler's
// own is refused, naming the key, and such data stored before reads
// "***" in every read of handlers, text beside an expression or escaped
// ("$${") included; a _secrets block given from the event ("${token}") is the started workflow's to seal, and is taken and shown
// as written, as is an inline workflowDef, definition text. Handlers
// were stored and shown as given: the data stayed in plain text in the
// metadata log and read model, and every read showed it.
func TestEventHandlerSecretKeys(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, time.Minute)
	_, md := openMetadata(t)
	admin := handlerAdmin(t, md, md)

	const secret = "hunter2-value"
	handler := func(name, action, params string) string {
		return `{"name":"` + name + `","event":"nats:pay.keys","active":true,"actions":[{"action":"` + action + `","` + action + `":` + params + `}]}`
	}
	start := func(input string) string {
		return handler("keys", conductor.ActionStartWorkflow, `{"name":"plain_flow","input":`+input+`}`)
	}
	for _, save := range []struct {
		name, body, field string
	}{
		{"_secrets", start(`{"_secrets":{"token":"` + secret + `"}}`), "[0].actions[0].start_workflow.input._secrets"},
		{"nested _masked", start(`{"order":{"lines":[{"_masked":["` + secret + `"]}]}}`), "[0].actions[0].start_workflow.input.order.lines[0]._masked"},
		{"under an empty name", start(`{"":{"_masked":"` + secret + `"}}`), "[0].actions[0].start_workflow.input.._masked"},
		{"beside an expression", start(`{"_secrets":{"token":"${token}","pin":"` + secret + `"}}`), "[0].actions[0].start_workflow.input._secrets"},
		{"text beside an expression", start(`{"_secrets":{"token":"` + secret + `-${token}"}}`), "[0].actions[0].start_workflow.input._secrets"},
		{"escaped", start(`{"_masked":"$${` + secret + `}"}`), "[0].actions[0].start_workflow.input._masked"},
		{"list", "[" + start(`{"_secrets":{"token":"`+secret+`"}}`) + "]", "[0].actions[0].start_workflow.input._secrets"},
		{"complete_task", handler("keys", conductor.ActionCompleteTask, `{"workflowId":"${wf}","taskRefName":"w","output":{"_secrets":{"k":"`+secret+`"}}}`),
			"[0].actions[0].complete_task.output._secrets"},
		{"update_workflow_variables", handler("keys", conductor.ActionUpdateWorkflowVariables, `{"workflowId":"${wf}","variables":{"_masked":"`+secret+`"}}`),
			"[0].actions[0].update_workflow_variables.variables._masked"},
	} {
		t.Run(save.name, func(t *testing.T) {
			if got := admin.do("POST", "/api/event", save.body); got.status != http.StatusBadRequest || !strings.Contains(got.body, save.field) ||
				strings.Contains(got.body, secret) {
				t.Errorf("POST %s = %d %s, want 400 naming %s", save.body, got.status, got.body, save.field)
			}
			if got := admin.do("GET", "/api/event/handler/keys", ""); got.status != http.StatusNotFound {
				t.Errorf("a refused save stored the handler: GET = %d %s", got.status, got.body)
				admin.do("DELETE", "/api/event/keys", "") // for the next case's save
			}
		})
	}
	fromEvent := start(`{"_secrets":{"token":"${token}","pin":"${$.pin}${$.suffix}"},"n":1}`)
	if got := admin.do("POST", "/api/event", fromEvent); got.status != http.StatusNoContent {
		t.Fatalf("POST of a handler giving _secrets from the event = %d %s, want 204", got.status, got.body)
	}
	inline := handler("inline", conductor.ActionStartWorkflow, `{"name":"inline","workflowDef":{"name":"inline","tasks":[`+
		`{"name":"w","taskReferenceName":"w","type":"WAIT","inputParameters":{"_secrets":{"x":"definition-text"}}}]}}`)
	if got := admin.do("POST", "/api/event", inline); got.status != http.StatusNoContent {
		t.Fatalf("POST of a handler whose inline workflowDef holds a _secrets block = %d %s, want 204", got.status, got.body)
	}
	literal := start(`{"_secrets":{"token":"` + secret + `"}}`)
	if got := admin.do("PUT", "/api/event", literal); got.status != http.StatusBadRequest ||
		!strings.Contains(got.body, "actions[0].start_workflow.input._secrets") || strings.Contains(got.body, secret) {
		t.Errorf("PUT %s = %d %s, want 400 naming actions[0].start_workflow.input._secrets", literal, got.status, got.body)
	}

	// Stored before saves refused it.
	storeHandler(ctx, t, md, `{"name":"kept_before","event":"nats:pay.keys","active":true,"actions":[`+
		`{"action":"start_workflow","start_workflow":{"name":"plain_flow","input":{"_secrets":{"token":"`+secret+`"},"n":2}}},`+
		`{"action":"complete_task","complete_task":{"workflowId":"${wf}","taskRefName":"w","output":{"o":{"_masked":"`+secret+`"}}}}]}`)
	for _, path := range []string{"/api/event", "/api/event/handler/kept_before", "/api/event/nats:pay.keys?activeOnly=false"} {
		t.Run(path, func(t *testing.T) {
			got := admin.do("GET", path, "")
			if got.status != http.StatusOK || strings.Contains(got.body, secret) || !strings.Contains(got.body, `"_secrets":"***"`) ||
				!strings.Contains(got.body, `"o":{"_masked":"***"}`) || !strings.Contains(got.body, `"n":2`) {
				t.Errorf("GET %s = %d %s, want _secrets and _masked masked, n shown", path, got.status, got.body)
			}
			if path != "/api/event/handler/kept_before" &&
				(!strings.Contains(got.body, `"_secrets":{"token":"${token}","pin":"${$.pin}${$.suffix}"}`) || !strings.Contains(got.body, `"x":"definition-text"`)) {
				t.Errorf("GET %s = %s, want the handler giving _secrets from the event, and the inline definition, shown as written", path, got.body)
			}
		})
	}
}

// handlerAdmin serves the event handler API over md, looking definitions
// up in defs, and returns an ADMIN's client of it.
func handlerAdmin(t *testing.T, md *metadata.Store, defs api.DefinitionLookup) client {
	srv := httptest.NewServer(api.New(api.Deps{
		Logger:        testutil.Logger(t),
		Definitions:   defs,
		EventHandlers: md,
		Authorizer:    auth.NewAuthorizer(&fixedGrants{}),
		Tokens:        tokenPrincipals{"admin-token": {ID: pinAdmin, Roles: []string{auth.RoleAdmin}}},
	}))
	t.Cleanup(srv.Close)
	return client{t, srv.URL, "admin-token"}
}

// storeHandler stores the handler js in md as it is, past the API's
// checks: one saved before they refused it.
func storeHandler(ctx context.Context, t *testing.T, md *metadata.Store, js string) {
	t.Helper()
	var h conductor.EventHandler
	if err := conductor.Unmarshal([]byte(js), &h); err != nil {
		t.Fatal(err)
	}
	if err := md.AddEventHandlers(ctx, []*conductor.EventHandler{&h}, pinAdmin); err != nil {
		t.Fatal(err)
	}
}
