package api_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flowvault/flowvault/api"
	"github.com/flowvault/flowvault/auth"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// An event handler is stored and shown as given, as a schedule is, so a
// start_workflow action whose input sets a field the workflow masks to
// data of the handler's own is refused, and such a field, masked since,
// reads "***" in every read of handlers; a field given from the event
// ("${pw}") is the started workflow's to seal, and is taken and shown as
// written. Both look the definition up: a lookup that fails (the read
// model lacks the definition and the log does not answer) fails the
// request, unavailable. Handlers were stored and shown as given: the
// save kept the masked field in plain text in the metadata log and read
// model, and every read showed it.
func TestEventHandlerMasking(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, time.Minute)
	md := maskedFlowMetadata(ctx, t)
	failing := &atomic.Bool{}
	srv := httptest.NewServer(api.New(api.Deps{
		Logger:        testutil.Logger(t),
		Definitions:   failingLookup{Store: md, failing: failing},
		EventHandlers: md,
		Authorizer:    auth.NewAuthorizer(&fixedGrants{}),
		Tokens:        tokenPrincipals{"admin-token": {ID: pinAdmin, Roles: []string{auth.RoleAdmin}}},
	}))
	t.Cleanup(srv.Close)
	admin := client{t, srv.URL, "admin-token"}

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
	fromEvent := handler("pays", `{"name":"masked_flow","input":{"pw":"${pw}","n":1}}`)
	if got := admin.do("POST", "/api/event", fromEvent); got.status != http.StatusNoContent {
		t.Fatalf("POST of a handler giving pw from the event = %d %s, want 204", got.status, got.body)
	}
	if got := admin.do("PUT", "/api/event", literal); got.status != http.StatusBadRequest ||
		!strings.Contains(got.body, "actions[0].start_workflow.input.pw") || strings.Contains(got.body, secret) {
		t.Errorf("PUT %s = %d %s, want 400 naming actions[0].start_workflow.input.pw", literal, got.status, got.body)
	}

	// Stored before the definition came to mask pw.
	old := handler("paid_before", `{"name":"masked_flow","input":{"pw":"`+secret+`","n":1}}`)
	var stored conductor.EventHandler
	if err := conductor.Unmarshal([]byte(old), &stored); err != nil {
		t.Fatal(err)
	}
	if err := md.AddEventHandlers(ctx, []*conductor.EventHandler{&stored}, pinAdmin); err != nil {
		t.Fatal(err)
	}
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
			if path != "/api/event/handler/paid_before" && !strings.Contains(got.body, `"pw":"${pw}"`) {
				t.Errorf("GET %s = %s, want the handler giving pw from the event shown as written", path, got.body)
			}
		})
	}
}
