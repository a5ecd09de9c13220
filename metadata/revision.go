package metadata

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// Revision is the state of a definition name that a write's access was
// checked against: the sequence of the last record of the name's subject
// as the read model (which access checks read) holds it, 0 for none, and
// whether a definition (a task definition, or any version of a workflow)
// is stored under the name.
//
// Access to a definition follows its name's existence (CREATE or UPDATE),
// its tags and its creator, all of which live on that one subject, so the
// subject's sequence pins every one of them.
type Revision struct {
	Seq    uint64
	Exists bool

	subject string
	what    string
	// unpinned is the snapshot Unpinned's reads; nil for a revision
	// read, which pins reads and writes to a state.
	unpinned kvReader
}

// Snapshot is the read model as one moment left it, which a listing reads
// in: its names (DefNames, ListTags), what its caller's access to each is
// decided on (DefAccess) and each one's definitions (Unpinned). A read of
// the live read model is pinned to the state a check was made on, and is
// stale once the name moves; in a snapshot the check and the read see one
// state, which no change moves, so the listing is one state of every name
// it lists, never a name's versions from before a change with its tags
// from after it, nor a name from before a change with the definitions
// from after it. One snapshot serves a whole listing. Close releases it.
type Snapshot struct {
	kv    kvReader
	close func() error
}

// Snapshot takes a Snapshot of the read model. Close it when done: it
// keeps what it sees from being compacted away, and the read model's
// store waits for it to close.
func (s *Store) Snapshot(context.Context) (*Snapshot, error) {
	r, _, release, err := s.store.ReaderAt(ProjectionName)
	if err != nil {
		return nil, fmt.Errorf("snapshot of the metadata read model: %w", err)
	}
	return &Snapshot{kv: r, close: release}, nil
}

// Close releases the snapshot: its Unpinned revisions are read at no more.
func (sn *Snapshot) Close() error { return sn.close() }

// Unpinned is the revision a listing reads name's definitions at: the
// snapshot, the state its caller's access was decided on (DefAccess), or
// needed none, without the sequence reads before and after that tie a
// read of the live read model to the state a check was made on. Its Seq
// and Exists say nothing. A write At it fails as one At no revision of
// its name does: a write is checked on the state it applies to.
func (sn *Snapshot) Unpinned(kind Kind, name string) Revision {
	return Revision{subject: subjectOf(kind, name), what: describe(kind, name), unpinned: sn.kv}
}

// Revision returns the revision of definition name, for a write checked
// against it (see At). Read it before checking access: the check then
// reads a state at least as new, and a write whose check saw a newer state
// than its revision merely conflicts.
func (s *Store) Revision(_ context.Context, kind Kind, name string) (Revision, error) {
	if err := checkKind(kind); err != nil {
		return Revision{}, err
	}
	subject := subjectOf(kind, name)
	v, err := s.projectionView(subject)
	if err != nil {
		return Revision{}, err
	}
	exists, err := defExists(v.KV, kind, name)
	if err != nil {
		return Revision{}, fmt.Errorf("revision of %s: %w", describe(kind, name), err)
	}
	return Revision{Seq: v.Seq, Exists: exists, subject: subject, what: describe(kind, name)}, nil
}

// WriteOption changes a write.
type WriteOption func(*writeOptions)

type writeOptions struct {
	// checked is, per subject a write may change, the sequence its access
	// was checked at; nil when the write is not pinned.
	checked map[string]uint64
	what    map[string]string
	// onStale is told the definitions of a bulk refused as changed
	// while checked (fault.ErrStale), by their index in the bulk.
	onStale func(i int)
	// onWritten is told each definition of a bulk written, by its index.
	onWritten func(i int)
	// newVersion stores a workflow registration as its name's next version.
	newVersion bool
}

// NewVersion has a workflow registration (RegisterWorkflowDef, each
// definition of PutWorkflowDefs) store its definition as the version after
// its name's latest, whatever version it names, as Orkes's newVersion
// does; a name without versions gets the version it names. The version is
// decided on the state the write applies to, so concurrent registrations
// of one name get versions of their own.
func NewVersion() WriteOption {
	return func(o *writeOptions) { o.newVersion = true }
}

// OnStale has a bulk registration (PutWorkflowDefs) report each definition
// it refused because its name changed while its access was being checked
// (fault.ErrStale), by its index in the bulk: the caller may check those
// again and send them again.
func OnStale(f func(i int)) WriteOption {
	return func(o *writeOptions) { o.onStale = f }
}

// OnWritten has a bulk registration (RegisterTaskDefs), which writes its
// definitions one at a time, report each it wrote, by its index in the
// bulk: one refused after others were written leaves those written.
func OnWritten(f func(i int)) WriteOption {
	return func(o *writeOptions) { o.onWritten = f }
}

// noRevision is a sequence no subject reaches: a write pinned to it always
// conflicts.
const noRevision = math.MaxUint64

// At makes a write apply only to the revisions its access was checked
// against: one per definition name the write changes. Checked on one state
// and applied to another (the name created, deleted and re-created, or
// re-tagged by someone else in between), a write would be decided on
// access its writer may not have: it fails with fault.ErrConflict instead,
// and writes nothing. Within one call (a bulk registration), a name's
// revision follows the call's own writes to it.
//
// A pinned write to a name At was given no revision for (Unpinned's is
// none) fails. Two different revisions of one name pin it to neither: the
// write conflicts.
func At(revs ...Revision) WriteOption {
	return func(o *writeOptions) {
		if o.checked == nil {
			o.checked = make(map[string]uint64, len(revs))
			o.what = make(map[string]string, len(revs))
		}
		for _, r := range revs {
			if r.unpinned != nil {
				continue
			}
			if seq, ok := o.checked[r.subject]; ok && seq != r.Seq {
				o.checked[r.subject] = noRevision
				continue
			}
			o.checked[r.subject] = r.Seq
			o.what[r.subject] = r.what
		}
	}
}

func writeOpts(opts []WriteOption) *writeOptions {
	o := &writeOptions{}
	for _, opt := range opts {
		opt(o)
	}
	return o
}

// pinned wraps decide so that it refuses a state other than the checked
// revision of subject. It is decide itself for a write that is not pinned.
func (o *writeOptions) pinned(subject string, decide func(view) ([]schemas.Event, error)) (func(view) ([]schemas.Event, error), error) {
	if o.checked == nil {
		return decide, nil
	}
	at, ok := o.checked[subject]
	if !ok {
		return nil, fmt.Errorf("write to %s without the revision its access was checked on", subject)
	}
	return func(v view) ([]schemas.Event, error) {
		// The last record applied, as Revision counts it, not v.Seq: a
		// view folded from the log also counts a record the read model
		// parked as unreadable, which would refuse every write for good.
		cur, err := subjectSeq(v.KV, subject)
		if err != nil {
			return nil, err
		}
		if cur != at {
			return nil, changedWhileChecked(o.what[subject])
		}
		return decide(v)
	}, nil
}

// wrote moves subject's pin to seq, the call's own write: later writes of
// the same call to that name were checked together with it.
func (o *writeOptions) wrote(subject string, seq uint64) {
	if o.checked != nil && seq != 0 {
		o.checked[subject] = seq
	}
}

// changedWhileChecked is the answer to a write whose definition changed
// between its access check and its append.
func changedWhileChecked(what string) error {
	if what == "" {
		what = "the definition"
	}
	return fault.Stale("%s changed while this request's access was being checked; nothing was written: send the request again", what)
}

// describe names a definition in messages.
func describe(kind Kind, name string) string {
	if kind == KindTask {
		return "task definition " + name
	}
	return "workflow definition " + name
}

// GetWorkflowDefAt is GetWorkflowDef for a caller whose access to name
// was checked on rev (see readAt).
func (s *Store) GetWorkflowDefAt(_ context.Context, name string, version *int, rev Revision) (*conductor.WorkflowDef, error) {
	var d storedDef
	err := s.readAt(KindWorkflow, name, rev, func(r kvReader) error {
		var found bool
		var err error
		if d, found, err = findWorkflow(r, name, version); err == nil && !found {
			err = WorkflowNotFound(name, version)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return parseWorkflow(d.JSON)
}

// GetTaskDefAt is GetTaskDef for a caller whose access to name was
// checked on rev (see readAt).
func (s *Store) GetTaskDefAt(_ context.Context, name string, rev Revision) (*conductor.TaskDef, error) {
	var d storedDef
	err := s.readAt(KindTask, name, rev, func(r kvReader) error {
		var found bool
		var err error
		if d, found, err = readDef(r, taskKey(name)); err == nil && !found {
			err = taskNotFound(name)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return parseTask(d.JSON)
}

// GetTagsAt is GetTags for a caller whose access to name was checked on
// rev (see readAt).
func (s *Store) GetTagsAt(_ context.Context, kind Kind, name string, rev Revision) ([]conductor.Tag, error) {
	if err := checkKind(kind); err != nil {
		return nil, err
	}
	var tags []schemas.DefTag
	err := s.readAt(kind, name, rev, func(r kvReader) error {
		// A pinned revision that found the definition needs no look for
		// it: readAt answers only while the name is still at rev, where
		// the definition is as rev found it.
		exists, err := true, error(nil)
		if rev.unpinned != nil || !rev.Exists {
			exists, err = defExists(r, kind, name)
		}
		if err == nil && !exists {
			err = defNotFound(kind, name)
		}
		if err == nil {
			tags, err = readTags(r, kind, name)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return conductorTags(tags), nil
}

// readAt runs read on the read model for a caller whose access to
// definition name was checked on rev, and answers what it read only while
// the name is still at rev: a definition deleted and registered again, or
// re-tagged, by someone else while the caller was checked is not shown to
// a caller allowed on the one before (fault.ErrStale, to send again), as
// a write is not applied to it (At). What read finds missing is answered
// so only once the name is known not to have moved either. At Unpinned
// it reads the revision's snapshot, one state of the whole read model.
func (s *Store) readAt(kind Kind, name string, rev Revision, read func(kvReader) error) error {
	subject := subjectOf(kind, name)
	if rev.subject != subject {
		return fmt.Errorf("read of %s at the revision of %q", describe(kind, name), rev.subject)
	}
	if rev.unpinned != nil {
		return read(rev.unpinned)
	}
	readErr := read(s.reader)
	if readErr != nil && !errors.Is(readErr, fault.ErrNotFound) {
		return readErr
	}
	// The reader is the live read model, whose subject sequence moves
	// with every record of the name: what was read before a sequence that
	// is still the revision's, read before the check, is the revision's.
	after, err := subjectSeq(s.reader, subject)
	if err != nil {
		return err
	}
	if after != rev.Seq {
		return fault.Stale("%s changed while this request's access was being checked: send the request again", rev.what)
	}
	return readErr
}
