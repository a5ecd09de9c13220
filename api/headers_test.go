package api_test

import (
	"net/http"
	"testing"

	"github.com/flowvault/flowvault/internal/nodetest"
)

// No answer may be kept by a cache on the way (a polled task carries
// resolved secret values; every answer, data access control decided on),
// errors and unrouted paths included, nor read by a browser as another
// type than it says.
func TestNoAnswerIsCached(t *testing.T) {
	t.Parallel()
	_, base := nodetest.Start(t)
	do(t, "PUT", base+"/api/secrets/cached_or_not", "some-value-1234").expect(t, http.StatusOK)
	for _, tt := range []struct{ method, path, body string }{
		{"GET", "/api/secrets/cached_or_not", ""},
		{"GET", "/api/metadata/workflow", ""},
		{"GET", "/api/tasks/poll/batch/nothing_queued?timeout=1", ""},
		{"GET", "/api/workflow/no-such-workflow", ""},
		{"POST", "/api/workflow", "{"},
		{"GET", "/api/no/such/endpoint", ""},
	} {
		r := do(t, tt.method, base+tt.path, tt.body)
		if cc, ct := r.header.Get("Cache-Control"), r.header.Get("X-Content-Type-Options"); cc != "no-store" || ct != "nosniff" {
			t.Errorf("%s %s (%d): Cache-Control %q, X-Content-Type-Options %q", tt.method, tt.path, r.status, cc, ct)
		}
	}
}
