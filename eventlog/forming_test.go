package eventlog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
)

// WhileForming asks again, on a cluster, while the answer is a forming
// cluster's (no meta leader, no peers to place on) or none within an
// attempt's bound, and stops at any other answer, at success, or when
// its context ends; a single server has no election to wait out, and is
// asked once.
func TestWhileForming(t *testing.T) {
	t.Parallel()
	noLeader := &jetstream.APIError{Code: 503, ErrorCode: jsErrCodeClusterNotAvailable, Description: "JetStream system temporarily unavailable"}
	noPeers := &jetstream.APIError{Code: 500, ErrorCode: jsErrCodeNoPeers, Description: "no suitable peers for placement"}
	refused := &jetstream.APIError{Code: 400, ErrorCode: 10058, Description: "stream name already in use with a different configuration"}
	unanswered := func(ctx context.Context) error {
		<-ctx.Done() // an attempt bounded by formingAttempt, not by the caller
		return fmt.Errorf("make bucket: %w", ctx.Err())
	}
	for _, tc := range []struct {
		name     string
		replicas int
		answers  []func(context.Context) error // the attempts' answers, the last repeated
		want     error
		attempts int
	}{
		{"an election, then a leader", 3, answers(noLeader, noLeader, nil), nil, 3},
		{"no peers yet", 3, answers(noPeers, nil), nil, 2},
		{"an attempt unanswered", 3, []func(context.Context) error{unanswered, answers(nil)[0]}, nil, 2},
		{"refused", 3, answers(refused, nil), refused, 1},
		{"a single server", 1, answers(noLeader, nil), noLeader, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l := &Log{cfg: Config{Replicas: tc.replicas}, logger: slog.New(slog.DiscardHandler)}
			attempts := 0
			err := l.WhileForming(t.Context(), "bucket not made yet", func(ctx context.Context) error {
				if _, ok := ctx.Deadline(); !ok && tc.replicas > 1 {
					t.Error("an attempt on a cluster without a bound of its own")
				}
				answer := tc.answers[min(attempts, len(tc.answers)-1)]
				attempts++
				return answer(ctx)
			})
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("WhileForming = %v, want %v", err, tc.want)
			}
			if attempts != tc.attempts {
				t.Fatalf("%d attempts, want %d", attempts, tc.attempts)
			}
		})
	}

	t.Run("the caller's context ends", func(t *testing.T) {
		t.Parallel()
		l := &Log{cfg: Config{Replicas: 3}, logger: slog.New(slog.DiscardHandler)}
		ctx, cancel := context.WithCancel(t.Context())
		attempts := 0
		err := l.WhileForming(ctx, "bucket not made yet", func(context.Context) error {
			if attempts++; attempts == 2 {
				cancel()
			}
			return noLeader
		})
		if !errors.Is(err, noLeader) || attempts != 2 {
			t.Fatalf("WhileForming = %v after %d attempts, want the forming answer after 2", err, attempts)
		}
	})
}

// answers returns attempts that answer errs in turn.
func answers(errs ...error) []func(context.Context) error {
	out := make([]func(context.Context) error, len(errs))
	for i, err := range errs {
		out[i] = func(context.Context) error { return err }
	}
	return out
}
