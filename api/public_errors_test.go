package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/flowvault/flowvault/auth"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/webhooks"
)

// failingReceiver fails every delivery with err.
type failingReceiver struct{ err error }

func (f failingReceiver) Deliver(context.Context, string, http.Header, []byte) (*webhooks.Delivered, error) {
	return nil, f.err
}

// A delivery the server failed is answered with a generic message, a 503
// as a 500: its sender is nobody the server knows, and the error's text
// names internals (streams, subjects, what the NATS server answered); the
// server's log has it, with the webhook's path. A sender's own mistake is
// still answered with what it was.
func TestWebhookServerErrorsAnswerGenerically(t *testing.T) {
	t.Parallel()
	const detail = "stream FV_AUDIT: nats: timeout"
	for _, tc := range []struct {
		name      string
		err       error
		status    int
		message   string
		retryable bool
	}{
		{"internal", fmt.Errorf("webhook w1: record the read of its verifier's secret: %s", detail), http.StatusInternalServerError, "internal error", false},
		{"unavailable", fmt.Errorf("webhook w1: read: %w: %s", fault.ErrUnavailable, detail), http.StatusServiceUnavailable, "service unavailable", true},
		{"not found", fault.NotFound("webhook w1 not found"), http.StatusNotFound, "webhook w1 not found", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rec, logs := deliverTo(failingReceiver{tc.err})
			var body errorBody
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
				t.Fatal(err)
			}
			if rec.Code != tc.status || body.Message != tc.message || body.Retryable != tc.retryable {
				t.Fatalf("answered %d %s, want %d %q (retryable %v)", rec.Code, rec.Body, tc.status, tc.message, tc.retryable)
			}
			if tc.status < 500 {
				return
			}
			if strings.Contains(rec.Body.String(), "FV_AUDIT") {
				t.Fatalf("the answer names internals: %s", rec.Body)
			}
			if !strings.Contains(logs.String(), detail) || !strings.Contains(logs.String(), "/webhook/w1") {
				t.Fatalf("the log lacks the error or the webhook: %s", logs)
			}
		})
	}
}

// failingTokens fails every token request with issue and every
// authentication with authenticate.
type failingTokens struct{ issue, authenticate error }

func (f failingTokens) Issue(context.Context, string, string, int64, string) (string, error) {
	return "", f.issue
}

func (f failingTokens) Authenticate(context.Context, string) (auth.Principal, auth.Claims, error) {
	return auth.Principal{}, auth.Claims{}, f.authenticate
}

// A request the server failed before it knew who made it (minting a
// token, authenticating one) is answered with a generic message, a 503 as
// a 500: the error's text names internals (streams, what the NATS server
// answered), and the server's log has it, with the path. A caller's own
// mistake, a refused key or token, is still answered with what it was.
func TestUnauthenticatedServerErrorsAnswerGenerically(t *testing.T) {
	t.Parallel()
	const detail = "stream FV_AUDIT: nats: timeout"
	unavailable := fmt.Errorf("record token audit event: %s: %w", detail, fault.ErrUnavailable)
	const mint, read = "POST /api/token", "GET /api/metadata/workflow"
	for _, tc := range []struct {
		name      string
		request   string
		err       error
		status    int
		message   string
		code      string
		retryable bool
	}{
		{"token unavailable", mint, unavailable, http.StatusServiceUnavailable, "service unavailable", "", true},
		{"token internal", mint, fmt.Errorf("sign: %s", detail), http.StatusInternalServerError, "internal error", "", false},
		{"token refused", mint, auth.ErrBadCredentials, http.StatusUnauthorized, auth.ErrBadCredentials.Error(), "", false},
		{"authentication unavailable", read, fmt.Errorf("access key: %s: %w", detail, fault.ErrUnavailable),
			http.StatusServiceUnavailable, "service unavailable", "", true},
		{"authentication refused", read, &auth.TokenError{Code: auth.CodeExpiredToken, Reason: "token expired"},
			http.StatusUnauthorized, "token expired", auth.CodeExpiredToken, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			logger, logs := testutil.CapturingLogger()
			s := New(Deps{Logger: logger, Tokens: failingTokens{issue: tc.err, authenticate: tc.err}})
			method, path, _ := strings.Cut(tc.request, " ")
			req := httptest.NewRequest(method, path, strings.NewReader(`{"keyId":"app-key","keySecret":"s3cret"}`))
			req.Header.Set(AuthHeader, "a-token")
			rec := httptest.NewRecorder()
			s.ServeHTTP(rec, req)
			var body errorBody
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
				t.Fatalf("%v: %s", err, rec.Body)
			}
			if rec.Code != tc.status || !strings.Contains(body.Message, tc.message) || body.Error != tc.code || body.Retryable != tc.retryable {
				t.Fatalf("answered %d %s, want %d %q (code %q, retryable %v)", rec.Code, rec.Body, tc.status, tc.message, tc.code, tc.retryable)
			}
			if tc.status < 500 {
				return
			}
			if body.Message != tc.message || strings.Contains(rec.Body.String(), "FV_AUDIT") {
				t.Fatalf("the answer names internals: %s", rec.Body)
			}
			if !strings.Contains(logs.String(), detail) || !strings.Contains(logs.String(), path) {
				t.Fatalf("the log lacks the error or the path: %s", logs)
			}
		})
	}
}

// partReceiver answers every delivery with what it did and err.
type partReceiver struct{ err error }

func (p partReceiver) Deliver(context.Context, string, http.Header, []byte) (*webhooks.Delivered, error) {
	return &webhooks.Delivered{Started: []string{}, Completed: []string{}}, p.err
}

// A delivery whose starts its idempotency key refused is a sender's retry
// coming to what the key is there for: logged at INFO, where a delivery
// that could not do something is a WARN. Both are answered 200 with what
// they did.
func TestDuplicateWebhookDeliveryIsNoWarning(t *testing.T) {
	t.Parallel()
	logged := map[string]error{
		`"level":"INFO"`: fmt.Errorf("%w: start a: a workflow with idempotency key \"k\" exists", webhooks.ErrDuplicate),
		`"level":"WARN"`: fmt.Errorf("start a: %w", fault.ErrForbidden),
	}
	for level, err := range logged {
		rec, logs := deliverTo(partReceiver{err})
		if rec.Code != http.StatusOK || !strings.Contains(logs.String(), level) || !strings.Contains(logs.String(), "start a: ") {
			t.Errorf("%v: answered %d, logged %s; want 200, logged at %s with the error", err, rec.Code, logs, level)
		}
	}
}

// deliverTo delivers {"a":1} to webhook w1 of a server whose receiver is
// r, and returns the answer and what the server logged.
func deliverTo(r WebhookReceiver) (*httptest.ResponseRecorder, *testutil.LogBuffer) {
	logger, logs := testutil.CapturingLogger()
	s := &Server{deps: Deps{WebhookReceiver: r, Logger: logger}}
	req := httptest.NewRequest(http.MethodPost, "/webhook/w1", strings.NewReader(`{"a":1}`))
	req.SetPathValue("id", "w1")
	rec := httptest.NewRecorder()
	s.deliverWebhook(rec, req)
	return rec, logs
}
