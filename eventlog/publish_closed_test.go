package eventlog

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"

	"github.com/nats-io/nats.go"
)

// An attempt that may have been stored (a timeout), then a connection
// that closes (Log.Close at shutdown): the answer keeps the timeout, so
// that callers read the append as maybe stored, not as never stored.
func TestTimeoutThenClosedKeepsTheTimeout(t *testing.T) {
	attempts := 0
	send := func(context.Context, *nats.Msg) (uint64, bool, error) {
		attempts++
		if attempts == 1 {
			return 0, false, nats.ErrTimeout
		}
		return 0, false, nats.ErrConnectionClosed
	}
	_, _, err := publishUntilAnswered(context.Background(), nats.NewMsg("fv.test"), send, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if !errors.Is(err, nats.ErrTimeout) || errors.Is(err, nats.ErrConnectionClosed) {
		t.Fatalf("publish error %v: want the earlier timeout (outcome unknown), not a plain %v", err, nats.ErrConnectionClosed)
	}
}

// An attempt that may have been stored, then a log found lost: the answer
// keeps both, so that callers read the append as maybe stored and the
// log as lost.
func TestTimeoutThenLostKeepsBoth(t *testing.T) {
	attempts := 0
	send := func(context.Context, *nats.Msg) (uint64, bool, error) {
		attempts++
		if attempts == 1 {
			return 0, false, nats.ErrTimeout
		}
		return 0, false, fmt.Errorf("stream FV_WF: %w", ErrLogLost)
	}
	_, _, err := publishUntilAnswered(context.Background(), nats.NewMsg("fv.test"), send, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if !errors.Is(err, nats.ErrTimeout) || !errors.Is(err, ErrLogLost) {
		t.Fatalf("publish error %v: want the earlier timeout and ErrLogLost", err)
	}
}
