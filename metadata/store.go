package metadata

import (
	"context"
	"crypto/rand"
	"errors"
	"log/slog"
	"time"

	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/internal/logkey"
	"github.com/flowvault/flowvault/projections"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// Kind says which sort of definition a tag operation addresses.
type Kind string

// Definition kinds.
const (
	KindWorkflow Kind = schemas.DefKindWorkflow
	KindTask     Kind = schemas.DefKindTask
)

// Waiter blocks until the read model has applied stream sequence seq.
// *projections.Runner implements it.
type Waiter = projections.Waiter

// Options carries New's optional collaborators.
type Options struct {
	// Logger receives one line per change. Nil logs nowhere.
	Logger *slog.Logger
	// ValidateWorkflow, when set, runs after the basic checks on every
	// workflow definition that is registered (the engine's full validation:
	// task types, duplicate references, FORK without JOIN, expressions).
	// Return a *fault.ValidationError naming JSON paths; any other error is
	// reported as invalid input too.
	ValidateWorkflow func(*conductor.WorkflowDef) error
}

// Store registers, serves and removes workflow and task definitions and
// their tags. It is safe for concurrent use, and several Stores (one per
// engine process) may share one log.
type Store struct {
	log    *eventlog.Log
	reader projections.Reader
	waiter Waiter
	opts   Options
	logger *slog.Logger
	now    func() time.Time
	cache  *defCache
	// readModelAt is the metadata read model's position, 0 when the
	// waiter cannot tell (see New).
	readModelAt func() uint64

	// locks serialize this Store's writes per subject, so that only
	// writers in different processes race on a name.
	locks *projections.SubjectLocks
}

// New returns a Store that appends to log and reads the metadata read model
// in store. waiter is the runner of that read model (a Projection over
// eventlog.Metadata); writes wait for it so that a caller reads its own
// writes. A nil waiter skips the wait (tests of the log fallback).
func New(log *eventlog.Log, store *projections.Store, waiter Waiter, opts Options) *Store {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Store{
		log:    log,
		reader: store.Reader(ProjectionName),
		waiter: waiter,
		opts:   opts,
		logger: opts.Logger.With(logkey.Component, "metadata"),
		now:    time.Now,
		cache:  newDefCache(defCacheSize),
		locks:  projections.NewSubjectLocks(),
	}
	s.readModelAt = func() uint64 { return 0 }
	if r, ok := waiter.(checkpointer); ok {
		// Offset by one, so that 0 keeps meaning "unknown".
		s.readModelAt = func() uint64 { return r.Checkpoint() + 1 }
	}
	return s
}

// checkpointer is a read model runner that tells how far it has applied
// its stream (projections.Runner).
type checkpointer interface{ Checkpoint() uint64 }

// view is the state of one subject as of sequence seq: the read model, or
// a fold of the subject read from the log.
type view struct {
	kv  kvReader
	seq uint64
}

// projectionView reads the subject's sequence before anything else, so
// the state read afterwards is at least as new as seq. A write decided on
// newer state with an older expectation merely conflicts and retries.
func (s *Store) projectionView(subject string) (view, error) {
	seq, err := subjectSeq(s.reader, subject)
	if err != nil {
		return view{}, err
	}
	return view{kv: s.reader, seq: seq}, nil
}

// logView folds subject from the log, bypassing the read model. Records
// the projection would park are skipped the same way.
func (s *Store) logView(ctx context.Context, subject string) (view, error) {
	kv, seq, err := projections.FoldSubject(ctx, s.log, subject,
		func(kv projections.MemKV, rec eventlog.Record) error { return applyRecord(kv, rec) },
		func(rec eventlog.Record, err error) {
			s.logger.Warn("skipping unreadable metadata record", logkey.Subject, rec.Subject, logkey.Seq, rec.Seq, logkey.Err, err)
		})
	if err != nil {
		return view{}, projections.AppendFault(err)
	}
	return view{kv: kv, seq: seq}, nil
}

// maxAttempts bounds how often a write decides again after losing a race.
const maxAttempts = 10

// decideFunc turns the current state of a subject into the events of one
// write. Returning no events and no error means there is nothing to do.
type decideFunc func(v view) ([]schemas.Event, error)

// update runs one write on subject: decide on the read model's state,
// append with its sequence as the expectation, and on a conflict decide
// again on the state read from the log. A decision that appends nothing
// (a refusal or a no-op) is only trusted once the log confirms that the
// state it saw was current. After the append, update waits for the read
// model to apply it, still holding the subject's lock, so that this Store's
// next write to the subject decides on fresh state.
func (s *Store) update(ctx context.Context, subject, principal string, decide decideFunc) error {
	unlock, err := s.locks.Lock(ctx, subject)
	if err != nil {
		return err
	}
	defer unlock()
	cause := rand.Text()
	fromLog := false
	for attempt := 1; ; attempt++ {
		var v view
		var err error
		if fromLog {
			v, err = s.logView(ctx, subject)
		} else {
			v, err = s.projectionView(subject)
		}
		if err != nil {
			return err
		}
		events, derr := decide(v)
		if len(events) == 0 {
			if !fromLog {
				last, err := s.log.LastSeq(ctx, subject)
				if err != nil {
					return projections.AppendFault(err)
				}
				if last != v.seq {
					fromLog = true
					continue
				}
			}
			return derr
		}
		envs, err := projections.Envelopes(cause, subject, v.seq, principal, s.now(), events)
		if err != nil {
			return err
		}
		seq, err := s.log.Append(ctx, subject, envs, v.seq)
		if errors.Is(err, eventlog.ErrConflict) && attempt < maxAttempts {
			s.logger.Debug("metadata write lost a race, deciding again", logkey.Subject, subject, logkey.Err, err)
			fromLog = true
			if err := projections.ConflictBackoff(ctx, attempt); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return projections.AppendFault(err)
		}
		s.logger.Info("metadata changed", logkey.Subject, subject, logkey.Seq, seq, logkey.Event, envs[0].Type, logkey.Principal, principal)
		return s.wait(ctx, subject, seq)
	}
}

// wait gives read-your-writes: the caller's next read sees seq.
func (s *Store) wait(ctx context.Context, subject string, seq uint64) error {
	return projections.WaitWritten(ctx, s.waiter, subject, seq)
}

// millis is the event time of a change.
func (s *Store) millis() int64 { return s.now().UnixMilli() }
