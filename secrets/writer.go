package secrets

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
)

// Waiter blocks until the read model has applied stream sequence seq.
// *projections.Runner implements it.
type Waiter interface {
	WaitFor(ctx context.Context, seq uint64) error
}

var _ Waiter = (*projections.Runner)(nil)

// writer runs the writes of Store and Env, as package metadata does: decide
// on the read model's state of one subject, append with that state's
// sequence as the expectation, and on a conflict decide again on the state
// folded from the log. Writes to one subject are serialized within a
// process, so only processes race on a name.
type writer struct {
	log    *eventlog.Log
	reader projections.Reader
	waiter Waiter
	logger *slog.Logger
	now    func() time.Time

	locks *projections.SubjectLocks
}

func newWriter(log *eventlog.Log, store *projections.Store, waiter Waiter, logger *slog.Logger) *writer {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	w := &writer{log: log, reader: store.Reader(ProjectionName), waiter: waiter,
		logger: logger.With(logkey.Component, "secrets"), now: time.Now, locks: projections.NewSubjectLocks()}
	return w
}

// view is the state of one subject as of sequence seq.
type view struct {
	kv      kvReader
	seq     uint64
	fromLog bool
}

// projectionView reads the subject's state from the read model.
func (w *writer) projectionView(subject string) (view, error) {
	st, err := readSubject(w.reader, subject)
	if err != nil {
		return view{}, err
	}
	return view{kv: w.reader, seq: st.Seq}, nil
}

// logView folds subject from the log, bypassing the read model. Records the
// projection would park are skipped the same way.
func (w *writer) logView(ctx context.Context, subject string) (view, error) {
	kv, seq, err := projections.FoldSubject(ctx, w.log, subject,
		func(kv projections.MemKV, rec eventlog.Record) error { return applyRecord(kv, rec) },
		func(rec eventlog.Record, err error) {
			w.logger.Warn("skipping unreadable secrets record", logkey.Subject, rec.Subject, logkey.Seq, rec.Seq, logkey.Err, err)
		})
	if err != nil {
		return view{}, projections.AppendFault(err)
	}
	return view{kv: kv, seq: seq, fromLog: true}, nil
}

// freshView is the read model's view of subject, or the log's when the log
// holds records the read model has not applied yet (another process wrote
// a moment ago). Reads that must not miss a write use it.
func (w *writer) freshView(ctx context.Context, subject string) (view, error) {
	v, err := w.projectionView(subject)
	if err != nil {
		return view{}, err
	}
	last, err := w.log.LastSeq(ctx, subject)
	if err != nil {
		return view{}, projections.AppendFault(err)
	}
	if last <= v.seq {
		return v, nil
	}
	return w.logView(ctx, subject)
}

const maxAttempts = 10

type decideFunc func(v view) ([]schemas.Event, error)

// update runs one write on subject and returns the sequence it appended
// (0: nothing to do). After the append it waits for the read model, so
// that the caller's next read sees the write.
func (w *writer) update(ctx context.Context, subject, principal string, decide decideFunc) (uint64, error) {
	unlock, err := w.locks.Lock(ctx, subject)
	if err != nil {
		return 0, err
	}
	defer unlock()
	cause := rand.Text()
	fromLog := false
	for attempt := 1; ; attempt++ {
		var v view
		if fromLog {
			v, err = w.logView(ctx, subject)
		} else {
			v, err = w.projectionView(subject)
		}
		if err != nil {
			return 0, err
		}
		events, derr := decide(v)
		if len(events) == 0 {
			if !fromLog {
				last, err := w.log.LastSeq(ctx, subject)
				if err != nil {
					return 0, projections.AppendFault(err)
				}
				if last != v.seq {
					fromLog = true
					continue
				}
			}
			return 0, derr
		}
		envs, err := projections.Envelopes(cause, subject, v.seq, principal, w.now(), events)
		if err != nil {
			return 0, err
		}
		seq, err := w.log.Append(ctx, subject, envs, v.seq)
		if errors.Is(err, eventlog.ErrConflict) && attempt < maxAttempts {
			w.logger.Debug("secrets write lost a race, deciding again", logkey.Subject, subject, logkey.Err, err)
			fromLog = true
			if err := projections.ConflictBackoff(ctx, attempt); err != nil {
				return 0, err
			}
			continue
		}
		if err != nil {
			return 0, projections.AppendFault(err)
		}
		w.logger.Info("secrets changed", logkey.Subject, subject, logkey.Seq, seq, logkey.Event, envs[0].Type, logkey.Principal, principal)
		return seq, projections.WaitWritten(ctx, w.waiter, subject, seq)
	}
}

func (w *writer) millis() int64 { return w.now().UnixMilli() }
