package metadata

import (
	"context"
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
	// ValidateEventHandler, when set, runs after the basic checks on every
	// event handler that is saved (its event, condition and actions), with
	// the same error contract.
	ValidateEventHandler func(*conductor.EventHandler) error
	// Now is the store's clock; nil is time.Now. Tests move it.
	Now func() time.Time
}

// Store registers, serves and removes workflow and task definitions and
// their tags. It is safe for concurrent use, and several Stores (one per
// engine process) may share one log.
type Store struct {
	log    *eventlog.Log
	store  *projections.Store
	reader kvReader
	waiter Waiter
	opts   Options
	logger *slog.Logger
	now    func() time.Time
	cache  *defCache
	// readModelAt is the metadata read model's position, 0 when the
	// waiter cannot tell (see New).
	readModelAt func() uint64
	updater     *projections.Updater[kvReader]
}

// New returns a Store that appends to log and reads the metadata read model
// in store. waiter is the runner of that read model (a Projection over
// eventlog.Metadata); writes wait for it so that a caller reads its own
// writes. A nil waiter skips the wait (tests of the log fallback).
func New(log *eventlog.Log, store *projections.Store, waiter Waiter, opts Options) *Store {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Store{
		log:    log,
		store:  store,
		reader: store.Reader(ProjectionName),
		waiter: waiter,
		opts:   opts,
		logger: opts.Logger.With(logkey.Component, "metadata"),
		now:    opts.Now,
		cache:  newDefCache(defCacheSize),
	}
	s.updater = projections.NewUpdater(projections.Updater[kvReader]{Log: log, Waiter: waiter, Logger: s.logger, Now: s.now,
		What: "metadata", Read: func(_ context.Context, subject string) (view, error) { return s.projectionView(subject) }, Fold: s.logView})
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

// view is the state of one subject as of a sequence: the read model's, or
// a fold of the subject read from the log.
type view = projections.View[kvReader]

// projectionView reads the subject's sequence before anything else, so
// the state read afterwards is at least as new as it. A write decided on
// newer state with an older expectation merely conflicts and retries.
func (s *Store) projectionView(subject string) (view, error) {
	seq, err := subjectSeq(s.reader, subject)
	if err != nil {
		return view{}, err
	}
	return view{KV: s.reader, Seq: seq}, nil
}

// movedSince reports whether subject has moved in the read model since
// view v of it was taken: what was read of the live read model after v's
// sequence was read may then hold parts of several states. A view folded
// from the log is one state.
func (s *Store) movedSince(v view, subject string) (bool, error) {
	if v.FromLog {
		return false, nil
	}
	seq, err := subjectSeq(s.reader, subject)
	return seq != v.Seq, err
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
	return view{KV: kv, Seq: seq, FromLog: true}, nil
}

// update runs one write on subject (see projections.Updater), pinned to
// the revision o holds for it, if any.
func (s *Store) update(ctx context.Context, subject, principal string, o *writeOptions, decide func(view) ([]schemas.Event, error)) error {
	decide, err := o.pinned(subject, decide)
	if err != nil {
		return err
	}
	seq, err := s.updater.Update(ctx, subject, principal, decide)
	if err != nil {
		return err
	}
	o.wrote(subject, seq)
	return nil
}

// millis is the event time of a change.
func (s *Store) millis() int64 { return s.now().UnixMilli() }
