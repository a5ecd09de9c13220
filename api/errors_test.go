package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
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
		{fault.NotFound("workflow definition x"), http.StatusNotFound},
		{errors.New("something broke"), http.StatusInternalServerError},
	} {
		if got := statusOf(tc.err); got != tc.want {
			t.Errorf("statusOf(%v) = %d, want %d", tc.err, got, tc.want)
		}
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
