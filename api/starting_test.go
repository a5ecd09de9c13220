package api_test

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/flowvault/flowvault/api"
	"github.com/flowvault/flowvault/internal/testutil"
)

// A starting server answers at once, before its read models caught up:
// 503 and retryable, and in Conductor's health shape on /health, so that
// a probe tells it from a dead one (which refuses the connection).
func TestStartingAnswers503(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(api.Starting(nil, nil))
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

// A starting server's /metrics answers as a started one's does: a rebuild
// of the read models takes minutes, and their metrics tell how far it got.
// Every other path is still refused.
func TestStartingServesMetrics(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	applied := prometheus.NewCounter(prometheus.CounterOpts{Name: "starting_records_applied_total", Help: "Records applied."})
	reg.MustRegister(applied)
	applied.Add(7)
	srv := httptest.NewServer(api.Starting(reg, testutil.Logger(t)))
	defer srv.Close()
	for _, tc := range []struct {
		method, path string
		status       int
		body         string
	}{
		{"GET", "/metrics", http.StatusOK, "starting_records_applied_total 7"},
		{"POST", "/metrics", http.StatusServiceUnavailable, `"retryable":true`},
		{"GET", "/metrics/x", http.StatusServiceUnavailable, `"retryable":true`},
		{"GET", "/health", http.StatusServiceUnavailable, `"healthy":false`},
	} {
		req, err := http.NewRequest(tc.method, srv.URL+tc.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || !strings.Contains(string(body), tc.body) {
			t.Errorf("%s %s = %d %.300s, want %d with %s", tc.method, tc.path, resp.StatusCode, body, tc.status, tc.body)
		}
	}
}

// A scrape whose gathering fails is answered 500 with a generic body, the
// error (which names a file here) in the server's log alone: /metrics
// asks for no token. A started server and a starting one answer alike.
func TestFailedScrapeAnswersGenerically(t *testing.T) {
	t.Parallel()
	const cause = "open /var/lib/flowvault/data/proc-stat: permission denied"
	failing := prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) { return nil, errors.New(cause) })
	for _, tc := range []struct {
		name  string
		serve func(*slog.Logger) http.Handler
	}{
		{"started", func(l *slog.Logger) http.Handler { return api.New(api.Deps{Logger: l, Gatherer: failing}) }},
		{"starting", func(l *slog.Logger) http.Handler { return api.Starting(failing, l) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			logger, logs := testutil.CapturingLogger()
			srv := httptest.NewServer(tc.serve(logger))
			defer srv.Close()
			resp, err := http.Get(srv.URL + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			var b struct {
				Status  int    `json:"status"`
				Message string `json:"message"`
			}
			if err := json.Unmarshal(body, &b); err != nil || resp.StatusCode != http.StatusInternalServerError ||
				b.Status != http.StatusInternalServerError || b.Message != "internal error" || strings.Contains(string(body), "/var/lib") {
				t.Fatalf("GET /metrics = %d %s (%v), want 500 with a generic message", resp.StatusCode, body, err)
			}
			if !strings.Contains(logs.String(), cause) {
				t.Fatalf("the cause is not logged: %s", logs)
			}
		})
	}
}
