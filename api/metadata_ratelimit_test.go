package api_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/flowvault/flowvault/internal/nodetest"
)

// Orkes's workflow rate limit resource sets, reads and removes a
// definition's rateLimitConfig, under both spellings of its path (the
// reference's rateLimit, the JavaScript SDK's rate-limit), as a change of
// the definition: the rest of the definition is kept, the config is
// validated as a registration's, and a definition or a config that is not
// there answers 404 (the SDK reads "no limit set" from it).
func TestWorkflowRateLimitRoutes(t *testing.T) {
	t.Parallel()
	_, base := nodetest.Start(t)
	api := base + "/api/metadata/workflow"
	do(t, "POST", api, `{"name":"rl_api","description":"kept","tasks":[{"name":"t","taskReferenceName":"t"}]}`).expect(t, http.StatusNoContent)
	for _, path := range []string{"/rateLimit", "/rate-limit"} {
		t.Run(path, func(t *testing.T) {
			u := api + "/rl_api" + path
			do(t, "GET", u, "").expectError(t, http.StatusNotFound, "rl_api has no rateLimitConfig")
			// Orkes's fields alone are kept; the JavaScript SDK's type
			// also spells the limit concurrentExecutionLimit.
			do(t, "PUT", u, `{"rateLimitKey":"${workflow.correlationId}","concurrentExecLimit":2,"tag":"x"}`).expect(t, http.StatusNoContent)
			if got, want := do(t, "GET", u, "").expect(t, http.StatusOK).body, `{"concurrentExecLimit":2,"rateLimitKey":"${workflow.correlationId}"}`; got != want {
				t.Fatalf("GET = %s, want %s", got, want)
			}
			do(t, "PUT", u, `{"concurrentExecutionLimit":3}`).expect(t, http.StatusNoContent)
			if got, want := do(t, "GET", u, "").expect(t, http.StatusOK).body, `{"concurrentExecLimit":3}`; got != want {
				t.Fatalf("GET = %s, want %s", got, want)
			}
			def := decode[map[string]any](t, do(t, "GET", api+"/rl_api", "").expect(t, http.StatusOK).body)
			if def["description"] != "kept" || def["version"] != 1.0 || def["rateLimitConfig"] == nil {
				t.Fatalf("definition after PUT: %v", def)
			}
			for _, tt := range []struct{ body, want string }{
				{`{}`, "concurrentExecLimit"},
				{`{"concurrentExecLimit":null}`, "concurrentExecLimit"},
				{`{"concurrentExecLimit":1.5}`, "rateLimitConfig"},
				{`{"concurrentExecLimit":1,"rateLimitKey":"${workflow.secrets.tok}"}`, "rateLimitConfig"},
				{`{"concurrentExecLimit":1,"rateLimitKey":"` + strings.Repeat("k", 257) + `"}`, "rateLimitConfig.rateLimitKey: reads 257 bytes"},
			} {
				if r := do(t, "PUT", u, tt.body).expect(t, http.StatusBadRequest); !strings.Contains(r.body, tt.want) {
					t.Fatalf("PUT %s: %s, want it to name %s", tt.body, r.body, tt.want)
				}
			}
			do(t, "DELETE", u, "").expect(t, http.StatusNoContent)
			do(t, "GET", u, "").expectError(t, http.StatusNotFound, "has no rateLimitConfig")
			do(t, "DELETE", u, "").expect(t, http.StatusNoContent) // nothing to remove
			if def := decode[map[string]any](t, do(t, "GET", api+"/rl_api", "").body); def["rateLimitConfig"] != nil || def["description"] != "kept" {
				t.Fatalf("definition after DELETE: %v", def)
			}
			for _, m := range []string{"GET", "PUT", "DELETE"} {
				do(t, m, api+"/no_such_flow"+path, `{"concurrentExecLimit":1}`).expectError(t, http.StatusNotFound, "no_such_flow")
			}
		})
	}
	// A version named is that version's; the latest is the default.
	do(t, "POST", api, `{"name":"rl_api","version":2,"tasks":[{"name":"t","taskReferenceName":"t"}]}`).expect(t, http.StatusNoContent)
	do(t, "PUT", api+"/rl_api/rateLimit?version=1", `{"concurrentExecLimit":4}`).expect(t, http.StatusNoContent)
	do(t, "GET", api+"/rl_api/rateLimit?version=1", "").expect(t, http.StatusOK)
	do(t, "GET", api+"/rl_api/rateLimit", "").expectError(t, http.StatusNotFound, "has no rateLimitConfig")
	do(t, "PUT", api+"/rl_api/rateLimit?version=x", `{"concurrentExecLimit":4}`).expectError(t, http.StatusBadRequest, `version "x"`)
	do(t, "PUT", api+"/rl_api/rateLimit?version=9", `{"concurrentExecLimit":4}`).expectError(t, http.StatusNotFound, "version: 9")
}
