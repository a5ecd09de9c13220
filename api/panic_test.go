package api_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/flowvault/flowvault/api"
	"github.com/flowvault/flowvault/internal/nodetest"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/secrets"
)

// A handler that panics is answered 500 in Conductor's error body, as
// Conductor answers an unhandled exception, not with a connection closed
// without a word (which a client reads as a network failure). Neither the
// answer nor the log quotes the panic's value, which may be a value the
// handler held; a runtime error's text, which holds none, is logged, with
// the stack.
func TestHandlerPanicAnswers500(t *testing.T) {
	t.Parallel()
	const secret = "s3cr3t-value-from-an-input"
	for _, tc := range []struct {
		name    string
		panic   func()
		wantLog string
	}{
		{"a value", func() { panic("resolved " + secret) }, "a panic of type string"},
		{"a runtime error", func() { var m map[string]string; m[secret] = secret }, "assignment to entry in nil map"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			logger, logs := testutil.CapturingLogger()
			checks := []api.Check{{Name: "nats", Probe: func(context.Context) error { tc.panic(); return nil }}}
			srv := httptest.NewServer(api.New(api.Deps{Logger: logger, Checks: checks}))
			t.Cleanup(srv.Close)
			got := client{t, srv.URL, ""}.do("GET", "/health", "")
			var body struct {
				Status  int    `json:"status"`
				Message string `json:"message"`
			}
			if err := json.Unmarshal([]byte(got.body), &body); err != nil || got.status != http.StatusInternalServerError ||
				body.Status != http.StatusInternalServerError || body.Message != "internal error" ||
				got.header.Get("Content-Type") != "application/json" || got.header.Get("Cache-Control") != "no-store" {
				t.Fatalf("GET /health = %d %v %s (%v); want 500 internal error in Conductor's JSON body", got.status, got.header, got.body, err)
			}
			line := logs.String()
			if strings.Contains(got.body+line, secret) {
				t.Fatalf("the panic's value is answered or logged: %s\n%s", got.body, line)
			}
			if !strings.Contains(line, "request handler panicked") || !strings.Contains(line, tc.wantLog) ||
				!strings.Contains(line, `"stack":`) {
				t.Fatalf("the panic is not logged as %q with its stack: %s", tc.wantLog, line)
			}
		})
	}
}

// A body over its route's limit is answered 413 and the connection
// closed, as http.MaxBytesReader has net/http do, rather than the rest of
// the body read: the limit is applied on net/http's own writer, which a
// wrapping of it (ServeHTTP's, to tell a panic's answer) must not hide.
func TestBodyOverLimitClosesConnection(t *testing.T) {
	t.Parallel()
	_, base := nodetest.Start(t)
	for _, tc := range []struct {
		method, path, ctype string
		size                int
	}{
		{"PUT", "/api/secrets/big_value", "text/plain", 6*secrets.MaxValueLen + 2 + 64},
		{"POST", "/api/metadata/workflow", "application/json", 8<<20 + 64},
	} {
		// Just over the limit: net/http would read the few bytes left
		// and keep the connection.
		req, err := http.NewRequest(tc.method, base+tc.path, strings.NewReader(strings.Repeat(" ", tc.size)))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", tc.ctype)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge || !resp.Close {
			t.Errorf("%s %s over the limit = %d, connection closed %v; want 413, closed", tc.method, tc.path, resp.StatusCode, resp.Close)
		}
	}
}

// A handler that panics once its answer began (here a scrape of /metrics,
// whose second family cannot be encoded) cannot be answered otherwise:
// its connection is cut, for the client to see the answer broken, not
// complete with an error body appended.
func TestHandlerPanicAfterAnswerBeganCutsConnection(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "a_total", Help: "a"}))
	broken := prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) {
		mfs, err := reg.Gather()
		return append(mfs, nil), err
	})
	logger, logs := testutil.CapturingLogger()
	srv := httptest.NewServer(api.New(api.Deps{Logger: logger, Gatherer: broken}))
	t.Cleanup(srv.Close)
	req, err := http.NewRequest("GET", srv.URL+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	// Uncompressed, so that the first family is written before the panic.
	req.Header.Set("Accept-Encoding", "identity")
	resp, err := http.DefaultClient.Do(req)
	if err == nil {
		b, readErr := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if readErr == nil {
			t.Fatalf("GET /metrics = %d %q, read whole; want the answer cut", resp.StatusCode, b)
		}
	}
	if !strings.Contains(logs.String(), "request handler panicked") {
		t.Fatalf("the panic is not logged: %s", logs)
	}
}
