package eventlog

import (
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flowvault/flowvault/fault"
)

var (
	// ErrConflict is returned by Append when the subject's last sequence is
	// not the one the caller expected: another writer got there first. The
	// caller should reload the aggregate and decide again.
	ErrConflict = errors.New("append conflict")

	// ErrTooLarge is returned when a record exceeds the log's maximum
	// message size. Nothing was written.
	ErrTooLarge = errors.New("record too large")

	// ErrTooDeep is returned when a record nests data deeper than the
	// log's readers read (schemas.CheckRecord). Nothing was written.
	ErrTooDeep = errors.New("record nested too deep")

	// ErrNotFound is returned when a subject or sequence holds no record.
	ErrNotFound = errors.New("not found")

	// ErrClosed is returned by operations on a closed Log.
	ErrClosed = errors.New("event log closed")

	// ErrInvalidSubject is returned for subjects outside flowvault's streams
	// or with characters NATS does not allow in a subject token.
	ErrInvalidSubject = errors.New("invalid subject")

	// ErrNoStorage is returned when the NATS server has no room left for
	// the record (JetStream's insufficient resources): nothing was
	// written, and an embedded server, whose limit is set when it
	// starts, takes writes again after a restart with more room. It is
	// also wrapped into the ambiguous error of an append to a stream whose
	// store failed a write (a full disk), which takes nothing until the
	// server restarts, or an embedded one's store restarts once the disk
	// has room (recover.go), and returned alone, at once, for the appends
	// to that stream after it: nothing of them is sent.
	ErrNoStorage = fmt.Errorf("the event log's server is out of storage: %w", fault.ErrUnavailable)

	// ErrOutOfFiles takes ErrNoStorage's place in the error of an append
	// to a stream whose store failed a write because the process had no
	// file descriptor left (EMFILE, ENFILE), not because the disk was
	// full: more disk space would not help. The store takes nothing until
	// the server restarts all the same.
	ErrOutOfFiles = fmt.Errorf("the event log's server ran out of open files: %w", fault.ErrUnavailable)

	// ErrStoreFailed is wrapped, with ErrNoStorage or ErrOutOfFiles, by the error of an
	// append to a stream whose store failed a write after an attempt of
	// it went unanswered: that attempt may have been stored before the
	// store failed, so whether the record was stored is unknown (where
	// ErrNoStorage alone says nothing was).
	ErrStoreFailed = errors.New("the stream's store failed a write")
)

// ConflictError describes a failed optimistic-concurrency check.
// Actual is the subject's last sequence when the server reported it, or 0
// when it did not (a concurrent publish to the subject was still in flight).
type ConflictError struct {
	Subject  string
	Expected uint64
	Actual   uint64
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("conflict on %s: expected last sequence %d, log has %d", e.Subject, e.Expected, e.Actual)
}

// Unwrap makes errors.Is(err, ErrConflict) hold.
func (e *ConflictError) Unwrap() error { return ErrConflict }

// Unavailable reports an error of the connection to the NATS server, not
// of the request: the server is out of reach (disconnected, reconnecting,
// closing) or did not answer in time. The request may be sent again once
// it is back; for a write, whether it was stored may be unknown (see the
// executor's ambiguous).
func Unavailable(err error) bool {
	for _, e := range []error{nats.ErrConnectionClosed, nats.ErrConnectionReconnecting, nats.ErrConnectionDraining,
		nats.ErrReconnectBufExceeded, nats.ErrNoServers, nats.ErrNoResponders, nats.ErrTimeout, nats.ErrDisconnected,
		jetstream.ErrNoStreamResponse} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// NoStorage returns err as an ErrNoStorage when it is JetStream's refusal
// of a write for want of storage (insufficient resources), as a key-value
// bucket's write answers at the server's limit; any other error as it is.
// Appends say so themselves (publishUntilAnswered); a bucket's write did
// not, and the API answered it as an internal error (500, not retryable)
// where nothing was written and the client may try again.
func NoStorage(err error) error {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode == jsErrCodeInsufficientResources {
		return fmt.Errorf("%w: %s", ErrNoStorage, apiErr.Description)
	}
	return err
}
