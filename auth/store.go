package auth

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/internal/logkey"
	"github.com/flowvault/flowvault/projections"
	"github.com/flowvault/flowvault/schemas"
)

// Waiter blocks until the read model has applied stream sequence seq.
// *projections.Runner implements it.
type Waiter = projections.Waiter

// Store keeps identities (applications and their access keys, users,
// groups) and grants as events on FV_AUTH and reads them from the auth read
// model. Writes decide on the subject's state folded from the log and
// append with that subject's last sequence as the expectation, so two
// writers (in one process or several) never lose each other's change; a
// conflict folds again and decides again. Every write waits for the read
// model, so the writer's next read sees it. Safe for concurrent use.
type Store struct {
	log    *eventlog.Log
	reader projections.Reader
	waiter Waiter
	logger *slog.Logger
	now    func() time.Time
	// hashing bounds concurrent argon2id computations (19 MiB each).
	hashing chan struct{}
}

// NewStore returns a Store over log and the auth read model in store.
// waiter is the runner of Projection over eventlog.Access; nil skips
// read-your-writes waits (tests).
func NewStore(log *eventlog.Log, store *projections.Store, waiter Waiter, logger *slog.Logger) *Store {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Store{log: log, reader: store.Reader(ProjectionName), waiter: waiter,
		logger: logger.With(logkey.Component, "auth"), now: time.Now, hashing: make(chan struct{}, 2)}
}

// maxAttempts bounds how often a write decides again after losing a race.
const maxAttempts = 10

// fold reads subject from the log into st and returns its last sequence.
func (s *Store) fold(ctx context.Context, subject string, st aggregate) (uint64, error) {
	recs, err := s.log.ReadSubject(ctx, subject, 0)
	if err != nil {
		return 0, projections.AppendFault(err)
	}
	var seq uint64
	for _, rec := range recs {
		seq = rec.Seq
		if rec.Err != nil {
			return 0, fmt.Errorf("%s: %w", subject, rec.Err)
		}
		events, err := decodeRecord(subject, rec.Events)
		if err != nil {
			return 0, fmt.Errorf("%s #%d: %w", subject, rec.Seq, err)
		}
		for _, ev := range events {
			if err := st.apply(ev); err != nil {
				return 0, fmt.Errorf("%s #%d: %w", subject, rec.Seq, err)
			}
		}
	}
	return seq, nil
}

// update folds subject into a fresh state, lets decide turn it into the
// events of one change (none: nothing to do, or a refusal in err), appends
// them expecting the folded sequence, and waits for the read model. A lost
// race starts over.
func update[S aggregate](ctx context.Context, s *Store, subject, by string, fresh func() S, decide func(S) ([]schemas.Event, error)) error {
	for attempt := 1; ; attempt++ {
		st := fresh()
		seq, err := s.fold(ctx, subject, st)
		if err != nil {
			return err
		}
		events, err := decide(st)
		if err != nil || len(events) == 0 {
			return err
		}
		appended, err := s.append(ctx, subject, by, seq, events)
		if errors.Is(err, eventlog.ErrConflict) && attempt < maxAttempts {
			s.logger.Debug("auth write lost a race, deciding again", logkey.Subject, subject)
			if err := projections.ConflictBackoff(ctx, attempt); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return projections.AppendFault(err)
		}
		s.logger.Info("access control changed", logkey.Subject, subject, logkey.Seq, appended,
			logkey.Event, events[0].EventType(), logkey.Principal, by)
		return s.wait(ctx, subject, appended)
	}
}

// append writes events to subject as one record.
func (s *Store) append(ctx context.Context, subject, by string, expected uint64, events []schemas.Event) (uint64, error) {
	cause := rand.Text()
	envs := make([]schemas.Envelope, len(events))
	for i, ev := range events {
		env, err := schemas.Default.Encode(ev)
		if err != nil {
			return 0, err
		}
		env.ID = cause + "/" + strconv.Itoa(i)
		env.Time = s.now().UnixNano()
		env.CausationID = cause
		env.Principal = by
		envs[i] = env
	}
	return s.log.Append(ctx, subject, envs, expected)
}

// wait gives read-your-writes: the caller's next read sees seq.
func (s *Store) wait(ctx context.Context, subject string, seq uint64) error {
	if s.waiter == nil {
		return nil
	}
	return projections.WaitWritten(ctx, s.waiter, subject, seq)
}

// millis is the event time of a change.
func (s *Store) millis() int64 { return s.now().UnixMilli() }

// hash computes an argon2id hash, at most two at a time.
func (s *Store) hash(ctx context.Context, fn func()) error {
	select {
	case s.hashing <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-s.hashing }()
	fn()
	return nil
}

// scanValues decodes every value under prefix with decode.
func scanValues(r kvReader, prefix string, decode func(v []byte) error) error {
	var derr error
	err := r.Scan([]byte(prefix), func(_, v []byte) bool {
		derr = decode(v)
		return derr == nil
	})
	if err == nil {
		err = derr
	}
	return err
}
