package e2e_test

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// deliver posts body to webhook id as a sender would: no token, its own
// headers.
func (e *env) deliver(id string, header map[string]string, body string) (int, string) {
	e.t.Helper()
	req, err := http.NewRequest("POST", e.base+"/webhook/"+id, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	out, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(out)
}

// plantSecret puts a random value, prefix and 32 hex digits, as secret
// name, and returns it.
func (e *env) plantSecret(name, prefix string) string {
	e.t.Helper()
	raw := make([]byte, 16)
	rand.Read(raw)
	value := prefix + hex.EncodeToString(raw)
	e.putSecret(name, value)
	return value
}

// A webhook verifies each delivery with a secret it names, starts its
// workflows with the payload as input and completes the WAIT_FOR_WEBHOOK
// tasks whose matches the payload meets; the secret shows nowhere.
func TestWebhooks(t *testing.T) {
	t.Parallel()
	e := newSecureEnv(t)
	token := e.plantSecret("hook_token", "hook-")
	e.register(`{"name":"hook_started","version":1,"tasks":[{"name":"s","taskReferenceName":"s","type":"SET_VARIABLE",
	   "inputParameters":{"who":"${workflow.input.sender.login}"}}],"outputParameters":{"who":"${workflow.variables.who}"}}`,
		`{"name":"hook_waiter","version":1,"tasks":[{"name":"w","taskReferenceName":"w","type":"WAIT_FOR_WEBHOOK",
	   "inputParameters":{"matches":{"$['event']['type']":"push","$.repo":"${workflow.input.repo}"}}}],
	   "outputParameters":{"got":"${w.output.event.id}"}}`)
	forA := e.start("hook_waiter", map[string]any{"repo": "a"})
	forB := e.start("hook_waiter", map[string]any{"repo": "b"})

	var seen []string // every answer, searched for the token at the end
	save := func(want int, method, path string, body any) conductor.WebhookConfig {
		t.Helper()
		out := e.must(want, method, path, body)
		seen = append(seen, out)
		var c conductor.WebhookConfig
		if err := json.Unmarshal([]byte(out), &c); err != nil {
			t.Fatal(err)
		}
		return c
	}
	byHeader := save(http.StatusOK, "POST", "/api/metadata/webhook", map[string]any{"name": "gh", "verifier": "HEADER_BASED",
		"headers":          map[string]string{"X-Hook-Token": "${workflow.secrets.hook_token}"},
		"workflowsToStart": map[string]int{"hook_started": 1}, "receiverWorkflowNamesToVersions": map[string]int{"hook_waiter": 1}})
	if len(byHeader.ID) != 36 || byHeader.CreatedBy == "" || byHeader.Headers["X-Hook-Token"] != "${workflow.secrets.hook_token}" {
		t.Fatalf("created %+v", byHeader)
	}
	// Orkes's webhook tags: PUT adds, DELETE removes, GET lists.
	tags := "/api/metadata/webhook/" + byHeader.ID + "/tags"
	if got := e.must(http.StatusOK, "GET", tags, nil); got != "[]" {
		t.Fatalf("a new webhook's tags: %s", got)
	}
	e.must(http.StatusNoContent, "PUT", tags, []map[string]string{{"key": "team", "value": "hooks"}, {"key": "env", "value": "dev"}})
	e.must(http.StatusNoContent, "PUT", tags, []map[string]string{{"key": "team", "value": "hooks"}})
	e.must(http.StatusNoContent, "DELETE", tags, []map[string]string{{"key": "env", "value": "dev"}})
	if got, want := e.must(http.StatusOK, "GET", tags, nil), `[{"key":"team","value":"hooks"}]`; got != want {
		t.Fatalf("tags after adding two, one again, and removing one: %s, want %s", got, want)
	}
	if c := save(http.StatusOK, "GET", "/api/metadata/webhook/"+byHeader.ID, nil); len(c.Tags) != 1 || c.Headers["X-Hook-Token"] != byHeader.Headers["X-Hook-Token"] {
		t.Fatalf("the webhook after tagging: %+v", c)
	}
	e.must(http.StatusNotFound, "PUT", "/api/metadata/webhook/nope/tags", []map[string]string{{"key": "k", "value": "v"}})

	for _, c := range []struct {
		header map[string]string
		body   string
		status int
	}{
		{map[string]string{"X-Hook-Token": token}, `{"pad":"` + strings.Repeat("x", 1<<20) + `"}`, http.StatusRequestEntityTooLarge},
		{nil, `{"repo":"a"}`, http.StatusUnauthorized},
		{map[string]string{"X-Hook-Token": token + "x"}, `{"repo":"a"}`, http.StatusUnauthorized},
		{map[string]string{"X-Hook-Token": token}, `not json`, http.StatusBadRequest},
	} {
		status, body := e.deliver(byHeader.ID, c.header, c.body)
		seen = append(seen, body)
		if status != c.status {
			t.Fatalf("delivery with %v: %d %s, want %d", c.header, status, body, c.status)
		}
	}
	status, body := e.deliver(byHeader.ID, map[string]string{"X-Hook-Token": token},
		`{"event":{"type":"push","id":7},"repo":"a","sender":{"login":"octo"}}`)
	seen = append(seen, body)
	var did struct{ WorkflowIDs, CompletedTaskIDs []string }
	if err := json.Unmarshal([]byte(body), &did); status != http.StatusOK || err != nil || len(did.WorkflowIDs) != 1 || len(did.CompletedTaskIDs) != 1 {
		t.Fatalf("delivery: %d %s", status, body)
	}
	if wf := e.waitStatus(did.WorkflowIDs[0], "COMPLETED"); wf.Output["who"] != "octo" || wf.CreatedBy != byHeader.CreatedBy {
		t.Fatalf("started workflow: output %v created by %s", wf.Output, wf.CreatedBy)
	}
	if wf := e.waitStatus(forA, "COMPLETED"); wf.Output["got"] != float64(7) {
		t.Fatalf("waiting workflow: output %v", wf.Output)
	}
	if wf := e.workflow(forB); wf.Status != "RUNNING" {
		t.Fatalf("a workflow whose matches the delivery did not meet is %s", wf.Status)
	}

	// Signed with HMAC-SHA256, as GitHub signs.
	signed := save(http.StatusOK, "POST", "/api/metadata/webhook", map[string]any{"name": "signed", "verifier": "HMAC_BASED",
		"headerKey": "X-Hub-Signature-256", "secretValue": "${workflow.secrets.hook_token}",
		"receiverWorkflowNamesToVersions": map[string]int{"hook_waiter": 1}})
	payload := `{"event":{"type":"push","id":8},"repo":"b"}`
	mac := hmac.New(sha256.New, []byte(token))
	mac.Write([]byte(payload))
	if status, body := e.deliver(signed.ID, map[string]string{"X-Hub-Signature-256": "sha256=" + hex.EncodeToString(mac.Sum(nil))}, payload+" "); status != http.StatusUnauthorized {
		t.Fatalf("a body other than the signed one: %d %s", status, body)
	}
	if status, body := e.deliver(signed.ID, map[string]string{"X-Hub-Signature-256": "sha256=" + hex.EncodeToString(mac.Sum(nil))}, payload); status != http.StatusOK {
		t.Fatalf("signed delivery: %d %s", status, body)
	}
	if wf := e.waitStatus(forB, "COMPLETED"); wf.Output["got"] != float64(8) {
		t.Fatalf("waiting workflow: output %v", wf.Output)
	}

	// A webhook whose secret is gone refuses every delivery.
	missing := save(http.StatusOK, "POST", "/api/metadata/webhook", map[string]any{"name": "missing", "verifier": "HEADER_BASED",
		"headers": map[string]string{"X-Token": "${workflow.secrets.no_such_secret}"}, "workflowsToStart": map[string]int{"hook_started": 1}})
	if status, body := e.deliver(missing.ID, map[string]string{"X-Token": ""}, `{}`); status != http.StatusUnauthorized || strings.Contains(body, "no_such_secret") {
		t.Fatalf("delivery to a webhook without its secret: %d %s", status, body)
	}

	for _, bad := range []map[string]any{
		{"name": "literal", "verifier": "HEADER_BASED", "headers": map[string]string{"X-Token": token}, "workflowsToStart": map[string]int{"hook_started": 1}},
		{"name": "slack", "verifier": "SLACK_BASED", "workflowsToStart": map[string]int{"hook_started": 1}},
		{"name": "nothing", "verifier": "HMAC_BASED", "headerKey": "X-Sig", "secretValue": "${workflow.secrets.hook_token}"},
		// secretKey, which nothing reads, takes a reference too: a secret
		// pasted there is not stored, nor shown back.
		{"name": "pasted", "verifier": "HMAC_BASED", "headerKey": "X-Sig", "secretKey": token, "secretValue": "${workflow.secrets.hook_token}",
			"workflowsToStart": map[string]int{"hook_started": 1}},
		{"verifier": "HMAC_BASED", "headerKey": "X-Sig", "secretValue": "${workflow.secrets.hook_token}", "workflowsToStart": map[string]int{"hook_started": 1}},
	} {
		status, body := e.do("POST", "/api/metadata/webhook", bad)
		seen = append(seen, body)
		if status != http.StatusBadRequest {
			t.Fatalf("saved %v: %d %s", bad, status, body)
		}
	}

	// Read, list, replace, remove.
	if got := save(http.StatusOK, "GET", "/api/metadata/webhook/"+signed.ID, nil); got.Name != "signed" || got.SecretValue != "${workflow.secrets.hook_token}" {
		t.Fatalf("read back %+v", got)
	}
	// Replaced by another admin, whom its deliveries act as from then on.
	otherAdmin, adminToken := e.application("hook-admin", "ADMIN")
	replacedJSON := e.as(adminToken).must(http.StatusOK, "PUT", "/api/metadata/webhook/"+signed.ID, map[string]any{"name": "signed2",
		"verifier": "HMAC_BASED", "headerKey": "X-Sig", "secretValue": "${workflow.secrets.hook_token}", "workflowsToStart": map[string]int{"hook_started": 1}})
	seen = append(seen, replacedJSON)
	var replaced conductor.WebhookConfig
	if err := json.Unmarshal([]byte(replacedJSON), &replaced); err != nil {
		t.Fatal(err)
	}
	if replaced.ID != signed.ID || replaced.Name != "signed2" || replaced.CreatedBy != signed.CreatedBy || replaced.UpdatedBy != otherAdmin {
		t.Fatalf("replaced %+v", replaced)
	}
	payload = `{"sender":{"login":"again"}}`
	mac = hmac.New(sha256.New, []byte(token))
	mac.Write([]byte(payload))
	status, body = e.deliver(signed.ID, map[string]string{"X-Sig": hex.EncodeToString(mac.Sum(nil))}, payload)
	if err := json.Unmarshal([]byte(body), &did); status != http.StatusOK || err != nil || len(did.WorkflowIDs) != 1 {
		t.Fatalf("delivery to the replaced webhook: %d %s", status, body)
	}
	if wf := e.waitStatus(did.WorkflowIDs[0], "COMPLETED"); wf.CreatedBy != otherAdmin || wf.Output["who"] != "again" {
		t.Fatalf("started by the replaced webhook: created by %s (want %s), output %v", wf.CreatedBy, otherAdmin, wf.Output)
	}
	list := e.must(http.StatusOK, "GET", "/api/metadata/webhook", nil)
	seen = append(seen, list)
	if strings.Count(list, `"id"`) != 3 {
		t.Fatalf("list %s", list)
	}
	e.must(http.StatusNoContent, "DELETE", "/api/metadata/webhook/"+signed.ID, nil)
	e.fails(http.StatusNotFound, "DELETE", "/api/metadata/webhook/"+signed.ID, nil)
	e.fails(http.StatusNotFound, "PUT", "/api/metadata/webhook/"+signed.ID, map[string]any{"name": "x", "verifier": "HMAC_BASED",
		"headerKey": "X-Sig", "secretValue": "${workflow.secrets.hook_token}", "workflowsToStart": map[string]int{"hook_started": 1}})
	if status, _ := e.deliver(signed.ID, nil, payload); status != http.StatusNotFound {
		t.Fatalf("delivery to a removed webhook: %d", status)
	}
	_, userToken := e.application("hook-user", "USER")
	e.as(userToken).fails(http.StatusForbidden, "GET", "/api/metadata/webhook", nil)

	// The trail says who saved the webhooks, and each read of the
	// verifiers' secret for a verified delivery (four: the one that was
	// not JSON too), by whoever saved the webhook last, from the webhook;
	// refused deliveries wrote nothing.
	var trail struct {
		Entries []struct {
			Action, Target string
			Detail         map[string]string
		}
	}
	out := e.must(http.StatusOK, "GET", "/api/audit?limit=1000", nil)
	seen = append(seen, out)
	if err := json.Unmarshal([]byte(out), &trail); err != nil {
		t.Fatal(err)
	}
	saves, reads := 0, 0
	for _, en := range trail.Entries {
		switch {
		case en.Action == "webhook.save" && strings.HasPrefix(en.Target, "WEBHOOK:"):
			saves++
		case en.Action == "secret.read" && en.Target == "SECRET_NAME:hook_token" && strings.HasPrefix(en.Detail["addr"], "webhook "):
			reads++
		}
	}
	// Four saves, and two changes of tags (a PUT of tags it had is none).
	if saves != 6 || reads != 4 {
		t.Fatalf("trail: %d webhook saves, %d reads of the secret by webhooks", saves, reads)
	}

	for outcome, want := range map[string]float64{"done": 3, "unverified": 4, "invalid": 1, "unknown": 1, "partial": 0} {
		if got := testutil.MetricValue(t, e.node.Registry(), "flowvault_webhook_deliveries_total", map[string]string{"outcome": outcome}); got != want {
			t.Errorf("deliveries_total{outcome=%q} = %v, want %v", outcome, got, want)
		}
	}

	for _, s := range seen {
		if strings.Contains(s, token) {
			t.Fatalf("an answer holds the token: %s", s)
		}
	}
}

// Stripe's and Slack's signed deliveries: a Stripe event signed with the
// endpoint's secret starts the webhook's workflow, one signed six minutes
// ago is refused however well signed; Slack's check of a new request URL
// is answered with its challenge, and starts nothing.
func TestTimestampedWebhooks(t *testing.T) {
	t.Parallel()
	e := newSecureEnv(t)
	signing := e.plantSecret("signing", "whsec_")
	e.register(`{"name":"paid","version":1,"tasks":[{"name":"s","taskReferenceName":"s","type":"SET_VARIABLE",
	   "inputParameters":{"invoice":"${workflow.input.data.object.id}"}}],"outputParameters":{"invoice":"${workflow.variables.invoice}"}}`)
	sign := func(prefix, body string) string {
		mac := hmac.New(sha256.New, []byte(signing))
		mac.Write([]byte(prefix + body))
		return hex.EncodeToString(mac.Sum(nil))
	}
	var stripe, slack conductor.WebhookConfig
	mustJSON(t, e.must(http.StatusOK, "POST", "/api/metadata/webhook", map[string]any{"name": "stripe", "verifier": "STRIPE",
		"secretValue": "${workflow.secrets.signing}", "workflowsToStart": map[string]int{"paid": 1}}), &stripe)
	mustJSON(t, e.must(http.StatusOK, "POST", "/api/metadata/webhook", map[string]any{"name": "slack", "verifier": "SLACK_BASED",
		"secretValue": "${workflow.secrets.signing}", "workflowsToStart": map[string]int{"paid": 1}}), &slack)

	event := `{"type":"invoice.paid","data":{"object":{"id":"in_123"}}}`
	now := strconv.FormatInt(time.Now().Unix(), 10)
	stale := strconv.FormatInt(time.Now().Add(-6*time.Minute).Unix(), 10)
	if status, out := e.deliver(stripe.ID, map[string]string{"Stripe-Signature": "t=" + stale + ",v1=" + sign(stale+".", event)}, event); status != http.StatusUnauthorized {
		t.Fatalf("a stale Stripe delivery: %d %s", status, out)
	}
	status, out := e.deliver(stripe.ID, map[string]string{"Stripe-Signature": "t=" + now + ",v1=" + sign(now+".", event)}, event)
	var done struct{ WorkflowIDs []string }
	if status != http.StatusOK || json.Unmarshal([]byte(out), &done) != nil || len(done.WorkflowIDs) != 1 {
		t.Fatalf("a Stripe delivery: %d %s", status, out)
	}
	if wf := e.waitStatus(done.WorkflowIDs[0], "COMPLETED"); wf.Output["invoice"] != "in_123" {
		t.Fatalf("output %v", wf.Output)
	}

	check := `{"token":"legacy","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}`
	headers := map[string]string{"X-Slack-Request-Timestamp": now, "X-Slack-Signature": "v0=" + sign("v0:"+now+":", check)}
	status, out = e.deliver(slack.ID, headers, check)
	var answer struct {
		Challenge   string
		WorkflowIDs []string
	}
	if status != http.StatusOK || json.Unmarshal([]byte(out), &answer) != nil || answer.Challenge != "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P" || len(answer.WorkflowIDs) != 0 {
		t.Fatalf("Slack's URL check: %d %s", status, out)
	}
	headers["X-Slack-Signature"] = "v0=" + sign("v0:"+now+":", event)
	if status, out := e.deliver(slack.ID, headers, check); status != http.StatusUnauthorized {
		t.Fatalf("a URL check signed for another body: %d %s", status, out)
	}
}

// A WAIT_FOR_WEBHOOK's matches is compared as the workflow gave it: built
// from masked input (maskedFields) or from a value the workflow sealed,
// it meets the delivery that carries that value, though every read path
// shows "***", and an id past 2^53 in it meets its own delivery, not one
// for the double nearest it. A matches that is not an object takes no
// delivery, where it took every one.
func TestWebhookMatchesReadWhatTheWorkflowGave(t *testing.T) {
	t.Parallel()
	e := newSecureEnv(t)
	token := e.plantSecret("hook_token", "hook-")
	e.register(`{"name":"by_email","maskedFields":["email"],"tasks":[{"name":"w","taskReferenceName":"w","type":"WAIT_FOR_WEBHOOK",
	   "inputParameters":{"matches":{"$.customer":"${workflow.input.email}"}}}],"outputParameters":{"got":"${w.output.n}"}}`,
		`{"name":"by_secret","tasks":[{"name":"w","taskReferenceName":"w","type":"WAIT_FOR_WEBHOOK",
	   "inputParameters":{"matches":{"$.customer":"${workflow.input.email}"},"_secrets":{"email":"${workflow.input.email}"}}}],
	   "outputParameters":{"got":"${w.output.n}"}}`,
		`{"name":"by_id","maskedFields":["id"],"tasks":[{"name":"w","taskReferenceName":"w","type":"WAIT_FOR_WEBHOOK",
	   "inputParameters":{"matches":{"$.id":"${workflow.input.id}"}}}],"outputParameters":{"got":"${w.output.n}"}}`,
		`{"name":"malformed","tasks":[{"name":"w","taskReferenceName":"w","type":"WAIT_FOR_WEBHOOK",
	   "inputParameters":{"matches":"${workflow.input.m}"}}]}`)
	hook := e.must(http.StatusOK, "POST", "/api/metadata/webhook", map[string]any{"name": "crm", "verifier": "HEADER_BASED",
		"headers":                         map[string]string{"X-Hook-Token": "${workflow.secrets.hook_token}"},
		"receiverWorkflowNamesToVersions": map[string]int{"by_email": 1, "by_secret": 1, "by_id": 1, "malformed": 1}})
	var c conductor.WebhookConfig
	if err := json.Unmarshal([]byte(hook), &c); err != nil {
		t.Fatal(err)
	}
	masked := e.start("by_email", map[string]any{"email": "ann@example.com"})
	sealed := e.start("by_secret", map[string]any{"email": "bob@example.com"})
	byID := e.start("by_id", map[string]any{"id": json.Number("9007199254740993")})
	garbled := []string{e.start("malformed", map[string]any{"m": "garbage"}), e.start("malformed", map[string]any{"m": []any{"$.type", "x"}})}
	for _, id := range append([]string{masked, sealed, byID}, garbled...) {
		testutil.Eventually(t, 30*time.Second, 20*time.Millisecond, func() error {
			if w := taskByRef(e.workflow(id), "w"); w == nil || w.Status != conductor.TaskInProgress {
				return fmt.Errorf("workflow %s does not wait for its webhook yet", id)
			}
			return nil
		})
	}
	if shown := e.must(http.StatusOK, "GET", "/api/workflow/"+masked, nil); strings.Contains(shown, "ann@example.com") {
		t.Fatalf("the masked address shows: %s", shown)
	}

	deliver := func(body string) []string {
		t.Helper()
		status, out := e.deliver(c.ID, map[string]string{"X-Hook-Token": token}, body)
		var did struct{ CompletedTaskIDs []string }
		if err := json.Unmarshal([]byte(out), &did); status != http.StatusOK || err != nil {
			t.Fatalf("delivery %s: %d %s", body, status, out)
		}
		return did.CompletedTaskIDs
	}
	if done := deliver(`{"customer":"someone@example.com","n":0}`); len(done) != 0 {
		t.Fatalf("a delivery that meets no matches completed %v", done)
	}
	if done := deliver(`{"customer":"ann@example.com","n":1}`); len(done) != 1 {
		t.Fatalf("the masked address's delivery completed %v", done)
	}
	if done := deliver(`{"customer":"bob@example.com","n":2}`); len(done) != 1 {
		t.Fatalf("the sealed address's delivery completed %v", done)
	}
	if done := deliver(`{"id":9007199254740992,"n":3}`); len(done) != 0 {
		t.Fatalf("a delivery for the id's nearest double completed %v", done)
	}
	if done := deliver(`{"id":9007199254740993,"n":4}`); len(done) != 1 {
		t.Fatalf("the masked id's delivery completed %v", done)
	}
	if wf := e.waitStatus(byID, conductor.WorkflowCompleted); wf.Output["got"] != float64(4) {
		t.Fatalf("by id: output %v", wf.Output)
	}
	if wf := e.waitStatus(masked, conductor.WorkflowCompleted); wf.Output["got"] != float64(1) {
		t.Fatalf("masked: output %v", wf.Output)
	}
	if wf := e.waitStatus(sealed, conductor.WorkflowCompleted); wf.Output["got"] != float64(2) {
		t.Fatalf("sealed: output %v", wf.Output)
	}
	for _, id := range garbled {
		if wf := e.workflow(id); wf.Status != conductor.WorkflowRunning {
			t.Fatalf("a task whose matches is not an object took a delivery: %s", wf.Status)
		}
	}
}

// A delivery reports the WAIT_FOR_WEBHOOK tasks it completed, and only
// those: one whose task definition enforces an outputSchema the payload
// does not conform to is FAILED by it, and the delivery, answered 200
// without it, is counted partly done; a conforming payload completes the
// next workflow's task.
func TestWebhookReportsOnlyTasksItCompleted(t *testing.T) {
	t.Parallel()
	e := newSecureEnv(t)
	token := e.plantSecret("hook_token", "hook-")
	e.must(http.StatusNoContent, "POST", "/api/schema", []any{map[string]any{"name": "hook_out", "type": "JSON",
		"data": map[string]any{"type": "object", "required": []string{"must"}}}})
	e.must(http.StatusNoContent, "POST", "/api/metadata/taskdefs", []any{map[string]any{"name": "hookw", "retryCount": 0,
		"responseTimeoutSeconds": 30, "outputSchema": map[string]any{"name": "hook_out"}, "enforceSchema": true}})
	e.register(`{"name":"hook_checked","version":1,"tasks":[{"name":"hookw","taskReferenceName":"w","type":"WAIT_FOR_WEBHOOK",
	   "inputParameters":{"matches":{"$.order":"${workflow.input.order}"}}}]}`)
	var hook conductor.WebhookConfig
	mustJSON(t, e.must(http.StatusOK, "POST", "/api/metadata/webhook", map[string]any{"name": "checked", "verifier": "HEADER_BASED",
		"headers":                         map[string]string{"X-Hook-Token": "${workflow.secrets.hook_token}"},
		"receiverWorkflowNamesToVersions": map[string]int{"hook_checked": 1}}), &hook)
	refused := e.start("hook_checked", map[string]any{"order": "a"})
	taken := e.start("hook_checked", map[string]any{"order": "b"})
	for _, id := range []string{refused, taken} {
		testutil.Eventually(t, 30*time.Second, 20*time.Millisecond, func() error {
			if w := taskByRef(e.workflow(id), "w"); w == nil || w.Status != conductor.TaskInProgress {
				return fmt.Errorf("workflow %s does not wait for its webhook yet", id)
			}
			return nil
		})
	}

	deliver := func(body string) []string {
		t.Helper()
		status, out := e.deliver(hook.ID, map[string]string{"X-Hook-Token": token}, body)
		var did struct{ WorkflowIDs, CompletedTaskIDs []string }
		if err := json.Unmarshal([]byte(out), &did); status != http.StatusOK || err != nil {
			t.Fatalf("delivery %s: %d %s", body, status, out)
		}
		return did.CompletedTaskIDs
	}
	if done := deliver(`{"order":"a","other":1}`); len(done) != 0 {
		t.Fatalf("a payload the task's outputSchema refuses: completed %v", done)
	}
	wf := e.waitStatus(refused, conductor.WorkflowFailed)
	if w := taskByRef(wf, "w"); w.Status != conductor.TaskFailed || !strings.Contains(w.ReasonForIncompletion, `does not conform to schema hook_out`) {
		t.Fatalf("the refused task: %s %q", w.Status, w.ReasonForIncompletion)
	}
	done := deliver(`{"order":"b","must":true}`)
	wf = e.waitStatus(taken, conductor.WorkflowCompleted)
	if w := taskByRef(wf, "w"); len(done) != 1 || done[0] != w.TaskID {
		t.Fatalf("a conforming payload completed %v, want [%s]", done, w.TaskID)
	}
	for outcome, want := range map[string]float64{"done": 1, "partial": 1} {
		if got := testutil.MetricValue(t, e.node.Registry(), "flowvault_webhook_deliveries_total", map[string]string{"outcome": outcome}); got != want {
			t.Errorf("deliveries_total{outcome=%q} = %v, want %v", outcome, got, want)
		}
	}
}

// Orkes's idempotency entries of workflowsToStart: the key, read from each
// delivery's payload, makes a delivery sent again start nothing new;
// RETURN_EXISTING answers the workflow the first started, FAIL (the
// default) refuses the start. Another payload's key starts another.
func TestWebhookIdempotencyKey(t *testing.T) {
	t.Parallel()
	e := newSecureEnv(t)
	token := e.plantSecret("hook_token", "hook-")
	e.register(`{"name":"hook_once","version":1,"tasks":[{"name":"s","taskReferenceName":"s","type":"SET_VARIABLE",
	   "inputParameters":{"id":"${workflow.input.id}"}}]}`,
		`{"name":"hook_fail","version":1,"tasks":[{"name":"s","taskReferenceName":"s","type":"SET_VARIABLE",
	   "inputParameters":{"id":"${workflow.input.id}"}}]}`)
	save := func(workflowsToStart string) (conductor.WebhookConfig, map[string]any) {
		t.Helper()
		out := e.must(http.StatusOK, "POST", "/api/metadata/webhook", `{"name":"once","verifier":"HEADER_BASED",
			"headers":{"X-Hook-Token":"${workflow.secrets.hook_token}"},"workflowsToStart":`+workflowsToStart+`}`)
		var c conductor.WebhookConfig
		var raw struct{ WorkflowsToStart map[string]any }
		mustJSON(t, out, &c)
		mustJSON(t, out, &raw)
		// Read back as Orkes shows it, once saved too.
		var again struct{ WorkflowsToStart map[string]any }
		mustJSON(t, e.must(http.StatusOK, "GET", "/api/metadata/webhook/"+c.ID, nil), &again)
		if fmt.Sprint(again.WorkflowsToStart) != fmt.Sprint(raw.WorkflowsToStart) {
			t.Fatalf("read back %v, saved %v", again.WorkflowsToStart, raw.WorkflowsToStart)
		}
		return c, raw.WorkflowsToStart
	}
	deliver := func(hook, body string) []string {
		t.Helper()
		status, out := e.deliver(hook, map[string]string{"X-Hook-Token": token}, body)
		var did struct{ WorkflowIDs []string }
		if err := json.Unmarshal([]byte(out), &did); status != http.StatusOK || err != nil {
			t.Fatalf("delivery %s: %d %s", body, status, out)
		}
		return did.WorkflowIDs
	}

	returning, shown := save(`{"hook_once":1,"idempotencyKey":"${workflow.input.id}","idempotencyStrategy":"RETURN_EXISTING"}`)
	if want := `map[hook_once:1 idempotencyKey:${workflow.input.id} idempotencyStrategy:RETURN_EXISTING]`; fmt.Sprint(shown) != want {
		t.Fatalf("answered workflowsToStart %v, want %s", shown, want)
	}
	first := deliver(returning.ID, `{"id":"evt_1"}`)
	again := deliver(returning.ID, `{"id":"evt_1"}`)
	other := deliver(returning.ID, `{"id":"evt_2"}`)
	if len(first) != 1 || len(again) != 1 || again[0] != first[0] || len(other) != 1 || other[0] == first[0] {
		t.Fatalf("RETURN_EXISTING: started %v, then %v for the same payload, %v for another", first, again, other)
	}
	for id, key := range map[string]string{first[0]: "evt_1", other[0]: "evt_2"} {
		if wf := e.waitStatus(id, conductor.WorkflowCompleted); wf.IdempotencyKey != key {
			t.Fatalf("workflow %s: idempotency key %q, want %q", id, wf.IdempotencyKey, key)
		}
	}

	failing, _ := save(`{"hook_fail":0,"idempotencyKey":"order-${workflow.input.id}"}`)
	first = deliver(failing.ID, `{"id":"evt_1"}`)
	again = deliver(failing.ID, `{"id":"evt_1"}`)
	other = deliver(failing.ID, `{"id":"evt_2"}`)
	if len(first) != 1 || len(again) != 0 || len(other) != 1 || other[0] == first[0] {
		t.Fatalf("FAIL: started %v, then %v for the same payload, %v for another", first, again, other)
	}
	if wf := e.waitStatus(first[0], conductor.WorkflowCompleted); wf.IdempotencyKey != "order-evt_1" {
		t.Fatalf("workflow %s: idempotency key %q", first[0], wf.IdempotencyKey)
	}
	// Refused as any start a delivery makes is: answered with what it did
	// (nothing), and the server's log says why; counted a duplicate, what
	// a sender's retry is expected to come to, not partly done.
	for outcome, want := range map[string]float64{"done": 5, "duplicate": 1, "partial": 0} {
		if got := testutil.MetricValue(t, e.node.Registry(), "flowvault_webhook_deliveries_total", map[string]string{"outcome": outcome}); got != want {
			t.Errorf("deliveries_total{outcome=%q} = %v, want %v", outcome, got, want)
		}
	}

	// A key is stored and shown as text: one that reads a secret, or a
	// strategy Orkes does not have, is refused when saved.
	for _, bad := range []string{
		`{"hook_once":1,"idempotencyKey":"${workflow.input.id}-${workflow.secrets.hook_token}"}`,
		`{"hook_once":1,"idempotencyKey":"${workflow.env.region}"}`,
		`{"hook_once":1,"idempotencyKey":"${workflow.input.id}","idempotencyStrategy":"RETURN_EXISTNG"}`,
	} {
		out := e.must(http.StatusBadRequest, "POST", "/api/metadata/webhook", `{"name":"bad","verifier":"HEADER_BASED",
			"headers":{"X-Hook-Token":"${workflow.secrets.hook_token}"},"workflowsToStart":`+bad+`}`)
		if !strings.Contains(out, "workflowsToStart.idempotency") || strings.Contains(out, token) {
			t.Fatalf("saving %s: %s", bad, out)
		}
	}
}
