package projections

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	mathrand "math/rand/v2"
	"time"

	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/schemas"
)

// Helpers for stores that write events and read their own read model
// (metadata, secrets, schedules, auth): the envelopes of an append, the
// error kinds of a failed append, the pause after a lost race, and the
// read-your-writes wait. Updater (update.go) puts them together into one
// write loop, which all of them but auth run.

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
	case errors.Is(err, eventlog.ErrTooDeep):
		return fmt.Errorf("%w: %w", err, fault.ErrInvalid)
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

// Envelopes encodes the events of one append to subject. Each id derives
// from the request (cause), the subject, the expectation and the content:
// a retried publish of the same append carries the same ids and is
// deduplicated.
func Envelopes(cause, subject string, expected uint64, principal string, now time.Time, events []schemas.Event) ([]schemas.Envelope, error) {
	envs := make([]schemas.Envelope, len(events))
	for i, ev := range events {
		env, err := schemas.Default.Encode(ev)
		if err != nil {
			return nil, err
		}
		h := sha256.New()
		h.Write([]byte(cause))
		h.Write([]byte{0})
		h.Write([]byte(subject))
		h.Write(binary.BigEndian.AppendUint64(nil, expected))
		h.Write(binary.BigEndian.AppendUint32(nil, uint32(i)))
		h.Write([]byte(env.Type))
		h.Write([]byte{0})
		h.Write(env.Data)
		env.ID = hex.EncodeToString(h.Sum(nil)[:16])
		env.Time = now.UnixNano()
		env.CausationID = cause
		env.Principal = principal
		envs[i] = env
	}
	return envs, nil
}
