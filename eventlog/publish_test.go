package eventlog

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestPublishRetryPolicy drives publish's retries with scripted answers of
// the server. What matters most is what the caller learns of an append
// whose outcome is unknown: once an attempt may have been stored, a later
// attempt that was never sent must not hide it, or the executor takes a
// stored decision for a lost one.
func TestPublishRetryPolicy(t *testing.T) {
	t.Parallel()
	conflict := &jetstream.APIError{ErrorCode: jetstream.JSErrCodeStreamWrongLastSequence, Description: "wrong last sequence: 7"}
	inProcess := &jetstream.APIError{ErrorCode: jsErrCodeDuplicateInProcess, Description: "duplicate message id is in process"}
	full := &jetstream.APIError{ErrorCode: jsErrCodeInsufficientResources, Description: "insufficient resources"}
	refused := errors.New("nats: permissions violation")
	notSent := nats.ErrReconnectBufExceeded
	// Healthz's words (streamWriteError) for the two ways a store fails.
	diskFull := errors.New("embedded nats: JetStream stream '$G > FV_WF' write error: write /data/nats/jetstream/FV_WF/msgs/1.blk: no space left on device")
	noFiles := errors.New("embedded nats: JetStream stream '$G > FV_WF' write error: open /data/nats/jetstream/FV_WF/msgs/2.blk: too many open files")

	tests := []struct {
		name     string
		answers  []error // one an attempt; past the end, the last again
		wantSeq  uint64
		broken   error // the store's write error, asked after an unanswered attempt
		wantErr  error // errors.Is
		alsoErr  error // errors.Is
		notErr   error // !errors.Is
		attempts int
	}{
		{name: "answered", answers: []error{nil}, wantSeq: 42, attempts: 1},
		{name: "timeout then answered", answers: []error{nats.ErrTimeout, nil}, wantSeq: 42, attempts: 2},
		{name: "duplicate in process waits for its outcome", answers: []error{inProcess, inProcess, nil}, wantSeq: 42, attempts: 3},
		{name: "timeout then never sent keeps the timeout", answers: []error{nats.ErrTimeout, notSent}, wantErr: nats.ErrTimeout, attempts: 8},
		{name: "never sent is not ambiguous", answers: []error{notSent}, wantErr: notSent, notErr: nats.ErrTimeout, attempts: 8},
		{name: "timeouts to the end", answers: []error{nats.ErrTimeout}, wantErr: nats.ErrTimeout, attempts: 8},
		{name: "conflict is final", answers: []error{conflict}, wantErr: ErrConflict, attempts: 1},
		{name: "full server is final", answers: []error{full}, wantErr: ErrNoStorage, attempts: 1},
		{name: "refusal is final", answers: []error{refused}, wantErr: refused, attempts: 1},
		{name: "a store failed on a full disk", answers: []error{context.DeadlineExceeded}, broken: diskFull,
			wantErr: ErrNoStorage, alsoErr: ErrStoreFailed, notErr: ErrOutOfFiles, attempts: 1},
		{name: "a store failed out of file descriptors is not out of storage", answers: []error{context.DeadlineExceeded}, broken: noFiles,
			wantErr: ErrOutOfFiles, alsoErr: ErrStoreFailed, notErr: ErrNoStorage, attempts: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			attempts := 0
			send := func(context.Context, *nats.Msg) (uint64, bool, error) {
				err := tt.answers[min(attempts, len(tt.answers)-1)]
				attempts++
				if err != nil {
					return 0, false, err
				}
				return 42, false, nil
			}
			logger := slog.New(slog.NewTextHandler(io.Discard, nil))
			var broken func() error
			if tt.broken != nil {
				broken = func() error { return tt.broken }
			}
			seq, _, err := publishUntilAnswered(context.Background(), nats.NewMsg("fv.test"), send, broken, logger)
			if attempts != tt.attempts {
				t.Errorf("%d attempts, want %d", attempts, tt.attempts)
			}
			if tt.wantErr == nil {
				if err != nil || seq != tt.wantSeq {
					t.Fatalf("publish = %d, %v; want %d", seq, err, tt.wantSeq)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("publish error %v, want one that is %v", err, tt.wantErr)
			}
			if tt.alsoErr != nil && !errors.Is(err, tt.alsoErr) {
				t.Fatalf("publish error %v, want one that is %v too", err, tt.alsoErr)
			}
			if tt.notErr != nil && errors.Is(err, tt.notErr) {
				t.Fatalf("publish error %v is %v", err, tt.notErr)
			}
			// Every caller reads it in a 503: no account, no path.
			if tt.broken != nil && (strings.Contains(err.Error(), "$G") || strings.Contains(err.Error(), "/data/")) {
				t.Fatalf("publish error %q quotes the store's write error", err)
			}
		})
	}
}

// TestPublishStopsWithItsContext: a caller that gives up is not held for
// the remaining attempts.
func TestPublishStopsWithItsContext(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	attempts := 0
	send := func(context.Context, *nats.Msg) (uint64, bool, error) {
		attempts++
		if attempts == 2 {
			cancel()
		}
		return 0, false, nats.ErrTimeout
	}
	_, _, err := publishUntilAnswered(ctx, nats.NewMsg("fv.test"), send, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err == nil || attempts != 2 {
		t.Fatalf("publish = %v after %d attempts, want an error after 2", err, attempts)
	}
}
