package projections

import (
	"context"
	"crypto/rand"
	"errors"
	"log/slog"
	"time"

	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/internal/logkey"
	"github.com/flowvault/flowvault/schemas"
)

// View is the state of one subject as of sequence Seq: read from the read
// model, or (FromLog) folded from the log.
type View[KV any] struct {
	KV      KV
	Seq     uint64
	FromLog bool
}

// Updater runs the writes of a store that appends events to subjects
// (metadata, secrets, schedules): decide on the state Read gives (the
// store's read model, or for schedules the log), append with that state's
// sequence as the expectation, and on a conflict decide again on the state
// folded from the log. Writes to one subject are serialized within a
// process, so only processes race on a name.
type Updater[KV any] struct {
	Log    *eventlog.Log
	Waiter Waiter // nil: no read-your-writes wait (tests of the log fallback)
	Logger *slog.Logger
	Now    func() time.Time
	// What names the store in log lines ("metadata changed").
	What string
	// Read returns the state a write decides on first, Fold the log's
	// state, which a write decides on again after losing a race. A store
	// that always decides on the log's state reads with Fold too.
	Read func(ctx context.Context, subject string) (View[KV], error)
	Fold func(ctx context.Context, subject string) (View[KV], error)

	locks *SubjectLocks
}

// NewUpdater returns u ready to use.
func NewUpdater[KV any](u Updater[KV]) *Updater[KV] {
	if u.Logger == nil {
		u.Logger = slog.New(slog.DiscardHandler)
	}
	if u.Now == nil {
		u.Now = time.Now
	}
	u.locks = NewSubjectLocks()
	return &u
}

// maxUpdateAttempts bounds how often a write decides again after losing a
// race.
const maxUpdateAttempts = 10

// Update runs one write on subject and returns the sequence it appended (0:
// nothing to do). decide turns a state into the events of the write; none
// and no error means there is nothing to do. A decision that appends
// nothing (a refusal or a no-op) on a state not folded from the log is
// only trusted once the log confirms that the state was current. After the
// append Update waits for the read model, still holding the subject's lock,
// so that the caller's next read, and this process's next write to the
// subject, see the write.
func (u *Updater[KV]) Update(ctx context.Context, subject, principal string, decide func(View[KV]) ([]schemas.Event, error)) (uint64, error) {
	unlock, err := u.locks.Lock(ctx, subject)
	if err != nil {
		return 0, err
	}
	defer unlock()
	cause := rand.Text()
	fromLog := false
	for attempt := 1; ; attempt++ {
		var v View[KV]
		if fromLog {
			v, err = u.Fold(ctx, subject)
		} else {
			v, err = u.Read(ctx, subject)
		}
		if err != nil {
			return 0, err
		}
		events, derr := decide(v)
		if len(events) == 0 {
			if !v.FromLog {
				last, err := u.Log.LastSeq(ctx, subject)
				if err != nil {
					return 0, AppendFault(err)
				}
				if last != v.Seq {
					fromLog = true
					continue
				}
			}
			return 0, derr
		}
		envs, err := Envelopes(cause, subject, v.Seq, principal, u.Now(), events)
		if err != nil {
			return 0, err
		}
		seq, err := u.Log.Append(ctx, subject, envs, v.Seq)
		if errors.Is(err, eventlog.ErrConflict) && attempt < maxUpdateAttempts {
			u.Logger.Debug(u.What+" write lost a race, deciding again", logkey.Subject, subject, logkey.Err, err)
			fromLog = true
			if err := ConflictBackoff(ctx, attempt); err != nil {
				return 0, err
			}
			continue
		}
		if err != nil {
			return 0, AppendFault(err)
		}
		u.Logger.Info(u.What+" changed", logkey.Subject, subject, logkey.Seq, seq, logkey.Event, envs[0].Type, logkey.Principal, principal)
		return seq, WaitWritten(ctx, u.Waiter, subject, seq)
	}
}
