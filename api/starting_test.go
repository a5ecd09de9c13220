package api_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/flowvault/flowvault/api"
)

// A starting server answers at once, before its read models caught up:
// 503 and retryable, and in Conductor's health shape on /health, so that
// a probe tells it from a dead one (which refuses the connection).
func TestStartingAnswers503(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(api.Starting())
	defer srv.Close()
	for _, tc := range []struct {
		path  string
		check func(map[string]any) bool
	}{
		{"/health", func(b map[string]any) bool {
			results, _ := b["healthResults"].([]any)
			return b["healthy"] == false && len(results) == 1 && results[0].(map[string]any)["healthy"] == false
		}},
		{"/api/workflow/some-id", func(b map[string]any) bool { return b["status"] == float64(503) && b["retryable"] == true }},
	} {
		resp, err := http.Get(srv.URL + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var b map[string]any
		if err := json.Unmarshal(body, &b); err != nil || resp.StatusCode != http.StatusServiceUnavailable || !tc.check(b) ||
			resp.Header.Get("Retry-After") == "" || resp.Header.Get("Cache-Control") != "no-store" {
			t.Fatalf("%s: %d %v %s (%v)", tc.path, resp.StatusCode, resp.Header, body, err)
		}
	}
}
