package projections

import (
	"context"
	"errors"
	"fmt"
	mathrand "math/rand/v2"
	"time"

	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/fault"
)

// Helpers for stores that write events and read their own read model
// (metadata, auth): the error kinds of a failed append, the pause after a
// lost race, and the read-your-writes wait.

// Waiter blocks until a read model has applied stream sequence seq.
// *Runner implements it.
type Waiter interface {
	WaitFor(ctx context.Context, seq uint64) error
}

var _ Waiter = (*Runner)(nil)

// AppendFault maps event log failures to fault kinds.
func AppendFault(err error) error {
	switch {
	case errors.Is(err, eventlog.ErrTooLarge):
		return fmt.Errorf("%w: %w", err, fault.ErrTooLarge)
	case errors.Is(err, eventlog.ErrConflict):
		return fmt.Errorf("too many concurrent changes, retry: %v: %w", err, fault.ErrUnavailable)
	case errors.Is(err, eventlog.ErrClosed):
		return fmt.Errorf("%w: %w", err, fault.ErrUnavailable)
	}
	return err
}

// ConflictBackoff sleeps before attempt+1 after a lost race: a random
// duration up to 2ms·2^(attempt-1), at most 100ms, so that writers
// hammering one subject spread out instead of colliding again.
func ConflictBackoff(ctx context.Context, attempt int) error {
	ceiling := min(2*time.Millisecond<<(attempt-1), 100*time.Millisecond)
	t := time.NewTimer(mathrand.N(ceiling) + time.Millisecond)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// WaitWritten gives read-your-writes: it returns once w has applied seq,
// the sequence a write to subject was appended at. A nil w does not wait.
func WaitWritten(ctx context.Context, w Waiter, subject string, seq uint64) error {
	if w == nil {
		return nil
	}
	if err := w.WaitFor(ctx, seq); err != nil {
		return fmt.Errorf("%s saved at sequence %d, but the read model has not caught up: %v: %w", subject, seq, err, fault.ErrUnavailable)
	}
	return nil
}
