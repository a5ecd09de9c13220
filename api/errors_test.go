package api

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/fault"
)

// A request the NATS server was out of reach for answers 503, which
// clients read as "try again", never 500 "internal error": the write
// failed while the connection was away (and was not sent later), a read
// found no server.
func TestStatusOfUnavailable(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err  error
		want int
	}{
		{fmt.Errorf("workflow x: append fv.wf.x: %w", nats.ErrReconnectBufExceeded), http.StatusServiceUnavailable},
		{fmt.Errorf("read: %w", nats.ErrConnectionClosed), http.StatusServiceUnavailable},
		{fmt.Errorf("lookup: %w", nats.ErrNoResponders), http.StatusServiceUnavailable},
		{fmt.Errorf("append: %w", eventlog.ErrNoStorage), http.StatusServiceUnavailable},
		{fmt.Errorf("wait: %w", context.DeadlineExceeded), http.StatusServiceUnavailable},
		{fmt.Errorf("wait: %w", context.Canceled), http.StatusServiceUnavailable},
		{fault.NotFound("workflow definition x"), http.StatusNotFound},
		{errors.New("something broke"), http.StatusInternalServerError},
	} {
		if got := statusOf(tc.err); got != tc.want {
			t.Errorf("statusOf(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}

// A request whose client closed its connection while it waited is no
// server failure: it is not logged as an error, and what it answers (if
// anyone reads it) is a retryable 503, not 500 "internal error".
func TestClientCanceledIsNoServerError(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		canceled  bool
		err       error
		wantError bool
	}{
		{"client gone", true, fmt.Errorf("workflow x: wait: %w", context.Canceled), false},
		{"canceled inside, client there", false, fmt.Errorf("workflow x: wait: %w", context.Canceled), true},
		{"server failure, client gone", true, errors.New("something broke"), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs bytes.Buffer
			s := &Server{deps: Deps{Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}}
			ctx, cancel := context.WithCancel(context.Background())
			if tc.canceled {
				cancel()
			} else {
				defer cancel()
			}
			r := httptest.NewRequestWithContext(ctx, "POST", "/api/workflow/execute/x/1", nil)
			w := httptest.NewRecorder()
			s.writeError(w, r, tc.err)
			if got := strings.Contains(logs.String(), "level=ERROR"); got != tc.wantError {
				t.Errorf("logged at ERROR: %v, want %v (log %q)", got, tc.wantError, logs.String())
			}
			if w.Code == http.StatusServiceUnavailable && !strings.Contains(w.Body.String(), `"retryable":true`) {
				t.Errorf("503 not retryable: %s", w.Body)
			}
			if errors.Is(tc.err, context.Canceled) && w.Code != http.StatusServiceUnavailable {
				t.Errorf("status %d, want 503: %s", w.Code, w.Body)
			}
		})
	}
}

func TestNesting(t *testing.T) {
	for _, tc := range []struct {
		body string
		want int
	}{
		{`{}`, 1},
		{`{"a":[1,{"b":[]}]}`, 4},
		{`{"a":"[[[[{{{{"}`, 1},
		{`{"a":"\"[[[","b":["\\"]}`, 2},
		{strings.Repeat("[", 300) + strings.Repeat("]", 300), 300},
	} {
		if got := nesting([]byte(tc.body)); got != tc.want {
			t.Errorf("nesting(%.40s) = %d, want %d", tc.body, got, tc.want)
		}
	}
}
