package metadata

import (
	"context"
	"errors"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/flowvault/flowvault/projections"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// DefAccess returns what access to the workflow or task definition name
// follows besides the grants on it: its owner and its tags, read from one
// state of the name. A workflow's owner is who registered its first
// version while it had none: a new version's createdBy is whoever
// registered it, which UPDATE allows, and ownership (full access, every
// execution) is not UPDATE's to pass on, nor is it passed to the next
// version's creator when the first is deleted. A task definition's is its
// createdBy, which replacing it keeps.
//
// When the read model has no definition under name both are read from
// the log, as LookupWorkflowDef and LookupTaskDef read a definition:
// another engine may have registered it a moment ago, and its owner's
// start (a schedule's fire, which a refusal pauses) or a worker's poll of
// its task type would be refused. The log is the name's latest state, so
// a name deleted and registered again answers with its new owner and
// none of its former tags. Unknown names fail with fault.ErrNotFound.
func (s *Store) DefAccess(ctx context.Context, kind Kind, name string) (owner string, tags []conductor.Tag, err error) {
	if err := checkKind(kind); err != nil {
		return "", nil, err
	}
	v, owner, err := s.accessView(ctx, kind, name)
	if err != nil {
		return "", nil, err
	}
	stored, err := readTags(v.KV, kind, name)
	if err != nil {
		return "", nil, err
	}
	// Owner and tags read apart from a name that moved meanwhile may be
	// two owners': its log is one state.
	subject := subjectOf(kind, name)
	moved, err := s.movedSince(v, subject)
	if err != nil {
		return "", nil, err
	}
	if !moved {
		return owner, conductorTags(stored), nil
	}
	if v, err = s.logView(ctx, subject); err != nil {
		return "", nil, err
	}
	owner, tags, found, err := defAccessIn(v.KV, kind, name)
	if err == nil && !found {
		err = defNotFound(kind, name)
	}
	return owner, tags, err
}

// WorkflowOwner is the owner of workflow name as DefAccess reads it: a
// start of an inline definition checks, as it is recorded, that its
// name's owner is still the one its access was decided on. Unknown names
// fail with fault.ErrNotFound.
func (s *Store) WorkflowOwner(ctx context.Context, name string) (string, error) {
	_, owner, err := s.accessView(ctx, KindWorkflow, name)
	return owner, err
}

// TaskDefForAccess returns task definition name as an access decision on
// it reads its creator (DefAccess): from the read model or, when that
// lacks it, from the log. A workflow that would hand tasks of that name
// to workers asks it whose workers they would be (api.TaskHandOff).
func (s *Store) TaskDefForAccess(ctx context.Context, name string) (*conductor.TaskDef, error) {
	v, _, err := s.accessView(ctx, KindTask, name)
	if err != nil {
		return nil, err
	}
	return taskDefIn(v.KV, name)
}

// accessView returns the state of definition name that access to it is
// decided on, and its owner there: the read model's, or the subject
// folded from the log when the read model has no definition under name.
// Unknown names fail with fault.ErrNotFound.
func (s *Store) accessView(ctx context.Context, kind Kind, name string) (view, string, error) {
	subject := subjectOf(kind, name)
	v, err := s.projectionView(subject)
	if err != nil {
		return view{}, "", err
	}
	owner, found, err := defOwner(v.KV, kind, name)
	if err == nil && !found && registrable(name) {
		// The log is asked only when it holds records the read model has
		// not applied, so that a check on a name registered nowhere (every
		// CREATE of a new one, an execution of a deleted workflow, a poll
		// of a type without a definition) costs one request, not a read of
		// the subject.
		var last uint64
		if last, err = s.log.LastSeq(ctx, subject); err != nil {
			return view{}, "", fmt.Errorf("owner of %s: %w", describe(kind, name), err)
		}
		if last == v.Seq {
			return view{}, "", defNotFound(kind, name)
		}
		if v, err = s.logView(ctx, subject); err != nil {
			return view{}, "", err
		}
		owner, found, err = defOwner(v.KV, kind, name)
	}
	if err != nil {
		return view{}, "", err
	}
	if !found {
		return view{}, "", defNotFound(kind, name)
	}
	return v, owner, nil
}

// DefAccess is Store.DefAccess in the snapshot: the owner and tags of
// definition name as the snapshot holds them, for a listing that decides
// its caller's access to name on the state it reads name's definitions
// in. The log is not asked for a name the snapshot lacks (it holds no
// state of the snapshot's): that fails with fault.ErrNotFound.
func (sn *Snapshot) DefAccess(kind Kind, name string) (owner string, tags []conductor.Tag, err error) {
	if err := checkKind(kind); err != nil {
		return "", nil, err
	}
	owner, tags, found, err := defAccessIn(sn.kv, kind, name)
	if err != nil {
		return "", nil, err
	}
	if !found {
		return "", nil, defNotFound(kind, name)
	}
	return owner, tags, nil
}

// defAccessIn reads the owner and tags of definition name in r; found is
// false while no definition is stored under it, and then no tags are read.
func defAccessIn(r kvReader, kind Kind, name string) (owner string, tags []conductor.Tag, found bool, err error) {
	if owner, found, err = defOwner(r, kind, name); err != nil || !found {
		return "", nil, false, err
	}
	stored, err := readTags(r, kind, name)
	if err != nil {
		return "", nil, false, err
	}
	return owner, conductorTags(stored), true, nil
}

// defOwner reads the owner of definition name; found is false while no
// definition (no version of a workflow) is stored under it.
func defOwner(r kvReader, kind Kind, name string) (owner string, found bool, err error) {
	key := ownerKey(name)
	if kind == KindTask {
		key = taskKey(name)
	}
	b, err := r.Get(key)
	if errors.Is(err, projections.ErrNotFound) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	if kind == KindTask {
		return taskCreator(b)
	}
	return string(b), true, nil
}

// storedCreator is the one field of a storedDef an access decision reads.
type storedCreator struct {
	CreatedBy string `msgpack:"cb,omitempty"`
}

// taskCreator reads the creator of the stored task definition v, skipping
// its other fields: decoding the whole storedDef copies the definition's
// JSON, on every poll decided on its creator or its tags.
func taskCreator(v []byte) (string, bool, error) {
	var c storedCreator
	if err := msgpack.Unmarshal(v, &c); err != nil {
		return "", false, fmt.Errorf("decode stored definition: %w", err)
	}
	return c.CreatedBy, true, nil
}

// Startable is a registered workflow definition with what access to
// starting it is decided on, its name's owner and tags, all read in one
// state of the name (LookupStartable).
type Startable struct {
	Def   *conductor.WorkflowDef
	Owner string
	Tags  []conductor.Tag
}

// LookupStartable returns version *version of workflow name, or its
// latest version when version is nil, with its name's owner and tags in
// the same state: a start decides its caller's access on them and then
// runs that definition, so that a name deleted and registered again by
// someone else between the two does not run the new owner's definition on
// a decision made on the old one's. It reads as LookupWorkflowDef does:
// the read model, or the log when the read model lacks the definition.
// The returned definition is shared: callers must not modify it. Unknown
// names and versions fail with fault.ErrNotFound.
func (s *Store) LookupStartable(ctx context.Context, name string, version *int) (Startable, error) {
	// As LookupWorkflowDef: version 0 would read the latest's cache entry.
	if version != nil && !validVersion(*version) {
		return Startable{}, WorkflowNotFound(name, version)
	}
	subject := WorkflowSubject(name)
	v, err := s.projectionView(subject)
	if err != nil {
		return Startable{}, err
	}
	st, found, err := s.startableIn(v, name, version)
	if err == nil && found {
		// Read in several reads of the live read model: a name that moved
		// meanwhile may have answered one owner's definition with
		// another's ownership. Its log is one state.
		var moved bool
		moved, err = s.movedSince(v, subject)
		found = !moved
	}
	if err == nil && !found && registrable(name) {
		if v, err = s.logView(ctx, subject); err == nil {
			st, found, err = s.startableIn(v, name, version)
		}
	}
	if err != nil {
		return Startable{}, err
	}
	if !found {
		return Startable{}, WorkflowNotFound(name, version)
	}
	return st, nil
}

// startableIn reads the Startable of LookupStartable in v; found is false
// while v holds no such definition.
func (s *Store) startableIn(v view, name string, version *int) (Startable, bool, error) {
	owner, tags, found, err := defAccessIn(v.KV, KindWorkflow, name)
	if err != nil || !found {
		return Startable{}, false, err
	}
	key := cacheKey{name: name}
	if version != nil {
		key.version = *version
	}
	// Only an entry of this very state: a newer one may be another
	// owner's definition.
	if e, ok := s.cache.get(key, v.Seq); ok && e.seq == v.Seq && e.wf != nil {
		return Startable{Def: e.wf, Owner: owner, Tags: tags}, true, nil
	}
	d, found, err := findWorkflow(v.KV, name, version)
	if err != nil || !found {
		return Startable{}, false, err
	}
	wf, err := parseWorkflow(d.JSON)
	if err != nil {
		return Startable{}, false, err
	}
	s.cache.put(key, cacheEntry{seq: v.Seq, wf: wf})
	return Startable{Def: wf, Owner: owner, Tags: tags}, true, nil
}
