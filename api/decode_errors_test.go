package api_test

import (
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/flowvault/flowvault/internal/nodetest"
)

// goTypes matches what names a Go type or field rather than JSON: the
// texts of encoding/json's type errors, package-qualified names, the
// local types definitions decode through, an embedded struct's name.
var goTypes = regexp.MustCompile(`Go (value|struct)|of type|\b(api|auth|conductor|json)\.[A-Za-z]|map\[|interface \{|\bplain\b|StartWorkflowRequest\.|webhookConfig`)

// A body (or a query parameter) of JSON of the wrong kind is answered 400
// saying what was expected, in JSON's terms, and where: never the Go type
// that decodes it, as Conductor names what it expected.
func TestWrongKindOfJSONSaysWhatWasExpected(t *testing.T) {
	t.Parallel()
	_, base, token := nodetest.StartSecure(t)
	admin := client{t, base, token}
	for _, tc := range []struct {
		name, method, path, body string
		want                     string // in the answer
	}{
		{"workflow input", "POST", "/api/workflow/x", `[]`, `"body: must be an object, not a JSON array"`},
		{"start request", "POST", "/api/workflow", `"x"`, `"body: must be an object, not a JSON string"`},
		{"synchronous start", "POST", "/api/workflow/execute/x/1", `true`, `"body: must be an object, not a JSON bool"`},
		{"rerun", "POST", "/api/workflow/w1/rerun", `[]`, `"body: must be an object, not a JSON array"`},
		{"skip", "PUT", "/api/workflow/w1/skiptask/ref", `1`, `"body: must be an object, not a JSON number"`},
		{"skip's query", "PUT", "/api/workflow/w1/skiptask/ref?taskInput=%5B1%5D", ``, `"query parameter taskInput: must be an object, not a JSON array"`},
		{"signal", "POST", "/api/tasks/w1/COMPLETED/signal", `[]`, `"body: must be an object, not a JSON array"`},
		{"task result", "POST", "/api/tasks", `[]`, `"body: must be an object, not a JSON array"`},
		{"a definition", "POST", "/api/metadata/workflow", `[]`, `"body: must be an object, not a JSON array"`},
		{"definitions", "PUT", "/api/metadata/workflow", `{}`, `"body: must be an array, not a JSON object"`},
		{"definitions' items", "PUT", "/api/metadata/workflow", `[1]`, `"body: each item must be an object, not a JSON number"`},
		{"a task's field", "PUT", "/api/metadata/workflow", `[{"name":"w","tasks":[{"name":[]}]}]`,
			`{"path":"tasks.name","message":"must be a string, not a JSON array"}`},
		{"task definitions", "POST", "/api/metadata/taskdefs", `"x"`, `"body: must be an array, not a JSON string"`},
		{"a task definition", "PUT", "/api/metadata/taskdefs", `[]`, `"body: must be an object, not a JSON array"`},
		{"event handler", "PUT", "/api/event", `[]`, `"body: must be an object, not a JSON array"`},
		{"webhook", "POST", "/api/metadata/webhook", `1`, `"body: must be an object, not a JSON number"`},
		{"webhook's field", "POST", "/api/metadata/webhook", `{"name":[]}`, `{"path":"name","message":"must be a string, not a JSON array"}`},
		{"test request's field", "POST", "/api/workflow/test", `{"name":[]}`, `{"path":"name","message":"must be a string, not a JSON array"}`},
		{"schedule", "POST", "/api/scheduler/schedules", `[]`, `"body: must be an object, not a JSON array"`},
		{"schedule names", "PUT", "/api/scheduler/bulk/pause", `{}`, `"body: must be an array, not a JSON object"`},
		{"secret's tags", "PUT", "/api/secrets/k/tags", `"x"`, `"body: must be a tag or an array of tags, not a JSON string"`},
		{"secret's tags' items", "PUT", "/api/secrets/k/tags", `[1]`, `"body: each item must be an object, not a JSON number"`},
		{"environment value's tags", "DELETE", "/api/environment/k/tags", `null`, `"body: must be a tag or an array of tags, not a JSON null"`},
		{"schemas", "POST", "/api/schema", `{}`, `"body: must be an array, not a JSON object"`},
		{"application", "POST", "/api/applications", `[]`, `"body: must be an object, not a JSON array"`},
		{"user", "PUT", "/api/users/u", `"x"`, `"body: must be an object, not a JSON string"`},
		{"group members", "POST", "/api/groups/g/users", `[{}]`, `"body: each item must be a string, not a JSON object"`},
		{"grant", "POST", "/api/auth/authorization", `[]`, `"body: must be an object, not a JSON array"`},
		{"token", "POST", "/api/token", `[]`, `"body: must be an object, not a JSON array"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := admin.do(tc.method, tc.path, tc.body)
			if got.status != http.StatusBadRequest || !strings.Contains(got.body, tc.want) {
				t.Errorf("%s %s %s = %d %s, want 400 with %s", tc.method, tc.path, tc.body, got.status, got.body, tc.want)
			}
			if m := goTypes.FindString(got.body); m != "" {
				t.Errorf("%s %s %s names a Go type (%q): %s", tc.method, tc.path, tc.body, m, got.body)
			}
		})
	}
}
