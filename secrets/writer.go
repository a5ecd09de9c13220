package secrets

import (
	"context"
	"log/slog"
	"time"

	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/fault"
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

// writer runs the writes of Store and Env (see projections.Updater), and
// the reads that must see the latest write.
type writer struct {
	log     *eventlog.Log
	store   *projections.Store
	reader  kvReader
	logger  *slog.Logger
	now     func() time.Time
	updater *projections.Updater[kvReader]
}

func newWriter(log *eventlog.Log, store *projections.Store, waiter Waiter, logger *slog.Logger) *writer {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	w := &writer{log: log, store: store, reader: store.Reader(ProjectionName), logger: logger.With(logkey.Component, "secrets"), now: time.Now}
	w.updater = projections.NewUpdater(projections.Updater[kvReader]{Log: log, Waiter: waiter, Logger: w.logger, Now: w.now,
		What: "secrets", Read: func(_ context.Context, subject string) (view, error) { return w.projectionView(subject) }, Fold: w.logView})
	return w
}

// view is the state of one subject as of a sequence.
type view = projections.View[kvReader]

// projectionView reads the subject's state from the read model.
func (w *writer) projectionView(subject string) (view, error) {
	st, err := readSubject(w.reader, subject)
	if err != nil {
		return view{}, err
	}
	return view{KV: w.reader, Seq: st.Seq}, nil
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
	return view{KV: kv, Seq: seq, FromLog: true}, nil
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
	if last <= v.Seq {
		return v, nil
	}
	return w.logView(ctx, subject)
}

// update runs one write on subject and returns the sequence it appended
// (0: nothing to do).
func (w *writer) update(ctx context.Context, subject, principal string, decide func(view) ([]schemas.Event, error), opts ...WriteOption) (uint64, error) {
	o := collect(opts)
	if o.at == nil {
		return w.updater.Update(ctx, subject, principal, decide)
	}
	return w.updater.Update(ctx, subject, principal, func(v view) ([]schemas.Event, error) {
		// The last record applied, as Revision counts: a view folded from
		// the log also counts a record the read model set aside as
		// unreadable, which would refuse every write for good.
		st, err := readSubject(v.KV, subject)
		if err != nil {
			return nil, err
		}
		if st.Seq != *o.at {
			return nil, fault.Stale("%s changed while the request was checked: send it again", o.what)
		}
		return decide(v)
	})
}

// Revision is the state of a secret or environment value that a write's
// access was checked against: the sequence of its subject's last record
// as the read model (which access checks read) holds it, 0 for none, and
// whether it has a value.
type Revision struct {
	Seq    uint64
	Exists bool
}

// WriteOption changes a write.
type WriteOption func(*writeOptions)

type writeOptions struct {
	at   *uint64
	what string
	// workflow and task name the workflow task that writes (ByTask).
	workflow, task string
}

func collect(opts []WriteOption) writeOptions {
	var o writeOptions
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// At makes a write apply only to the revision its access was checked
// against. Checked on one state and written on another (created, deleted
// or retagged by someone else in between), a write would be decided on
// access its writer may not have: it fails with fault.ErrConflict instead.
func At(rev Revision) WriteOption {
	return func(o *writeOptions) { o.at = &rev.Seq }
}

// ByTask records on a secret's new version the workflow task that wrote
// it (UPDATE_SECRET): the audit trail's secret.put entry names them,
// where a write through the API by the same principal names neither.
func ByTask(workflowID, taskID string) WriteOption {
	return func(o *writeOptions) { o.workflow, o.task = workflowID, taskID }
}

// named names what a write changes, for its conflict.
func named(what string, opts []WriteOption) []WriteOption {
	return append(opts, func(o *writeOptions) { o.what = what })
}

// revision reads a subject's revision from the read model; exists reports
// whether the view holds a value.
func (w *writer) revision(subject string, exists func(kvReader) (bool, error)) (Revision, error) {
	v, err := w.projectionView(subject)
	if err != nil {
		return Revision{}, err
	}
	found, err := exists(v.KV)
	return Revision{Seq: v.Seq, Exists: found}, err
}

func (w *writer) millis() int64 { return w.now().UnixMilli() }
