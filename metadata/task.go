package metadata

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/internal/logkey"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// RegisterTaskDefs creates or replaces each task definition (POST
// /api/metadata/taskdefs). Like Conductor OSS, an existing definition is
// replaced rather than refused: SDKs and test suites register the same
// task definitions on every run, and TaskHandler only POSTs after its GET
// failed. Replacing keeps createTime and createdBy. Every definition is
// validated before anything is written; an empty list is invalid. The
// definitions are then stored one by one (each has its own subject): if
// storing one fails, those before it stay stored. At pins each write to
// its name's checked revision.
func (s *Store) RegisterTaskDefs(ctx context.Context, defs []*conductor.TaskDef, principal string, opts ...WriteOption) error {
	if len(defs) == 0 {
		return fault.Invalid("task definition list must not be empty")
	}
	regs := make([]registration, len(defs))
	ve := &fault.ValidationError{}
	for i, def := range defs {
		reg, err := prepareTask(def, fmt.Sprintf("[%d]", i))
		if err := collect(ve, err); err != nil {
			return err
		}
		regs[i] = reg
	}
	if err := ve.Err(); err != nil {
		return err
	}
	o := writeOpts(opts)
	for i, reg := range regs {
		if err := s.putTask(ctx, reg, principal, o); err != nil {
			if errors.Is(err, fault.ErrConflict) {
				return err // it names the definition
			}
			return fmt.Errorf("task definition %s: %w", reg.name, err)
		}
		if o.onWritten != nil {
			o.onWritten(i)
		}
	}
	return nil
}

// UpdateTaskDef creates or replaces one task definition (PUT
// /api/metadata/taskdefs). It must create: the SDK's TaskHandler uses it to
// register the definitions of its workers.
func (s *Store) UpdateTaskDef(ctx context.Context, def *conductor.TaskDef, principal string, opts ...WriteOption) error {
	reg, err := prepareTask(def, "")
	if err != nil {
		return err
	}
	return s.putTask(ctx, reg, principal, writeOpts(opts))
}

func (s *Store) putTask(ctx context.Context, reg registration, principal string, o *writeOptions) error {
	return s.update(ctx, TaskSubject(reg.name), principal, o, func(v view) ([]schemas.Event, error) {
		now := s.millis()
		events := []schemas.Event{&schemas.TaskDefRegistered{Name: reg.name, Def: reg.raw, Time: now, By: principal}}
		tagEv, err := registrationTags(v, KindTask, reg, now, principal)
		if err != nil {
			return nil, err
		}
		if tagEv != nil {
			events = append(events, tagEv)
		}
		return events, nil
	})
}

// GetTaskDef returns task definition name from the read model, or
// fault.ErrNotFound. def.Raw is the JSON to return.
func (s *Store) GetTaskDef(ctx context.Context, name string) (*conductor.TaskDef, error) {
	return taskDefIn(s.reader, name)
}

// taskDefIn reads task definition name in r, or fault.ErrNotFound.
func taskDefIn(r kvReader, name string) (*conductor.TaskDef, error) {
	d, found, err := readDef(r, taskKey(name))
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, taskNotFound(name)
	}
	return parseTask(d.JSON)
}

// ListTaskDefs returns every task definition, sorted by name.
func (s *Store) ListTaskDefs(ctx context.Context) ([]*conductor.TaskDef, error) {
	return listAll(s.reader, taskKeyPrefix, "task definitions", parseTask)
}

// FindTaskDefsAt is the task definition name, with its tags when f asks
// for them, if f selects it (none if not), for a caller whose access to it
// was checked on rev (see readAt).
func (s *Store) FindTaskDefsAt(_ context.Context, name string, f TagFilter, rev Revision) ([]*conductor.TaskDef, error) {
	var defs []*conductor.TaskDef
	err := s.readAt(KindTask, name, rev, func(r kvReader) error {
		// A key, not a prefix: t/<name> is also the start of longer names.
		d, found, err := readDef(r, taskKey(name))
		if err != nil || !found {
			return err
		}
		td, err := parseTask(d.JSON)
		if err == nil {
			defs, err = withTagsOf(r, KindTask, f, []*conductor.TaskDef{td}, taskTags)
		}
		return err
	})
	return defs, err
}

// DefNames returns the names of the definitions of kind that f selects
// by tag (every name without a tag in f), sorted, as the snapshot holds
// them: a listing decides its caller's access to each (DefAccess) and
// reads its definitions (Unpinned) in the snapshot too.
func (sn *Snapshot) DefNames(kind Kind, f TagFilter) ([]string, error) {
	if err := checkKind(kind); err != nil {
		return nil, err
	}
	if f.byTag() {
		return tagged(sn.kv, kind, f)
	}
	prefix := taskKeyPrefix
	if kind == KindWorkflow {
		prefix = workflowKeyPrefix
	}
	var names []string
	err := sn.kv.Scan([]byte(prefix), func(k, _ []byte) bool {
		name := string(k[len(prefix):])
		if kind == KindWorkflow {
			var ok bool
			if name, _, ok = parseWorkflowKey(k); !ok {
				return true // not a key workflowKey writes
			}
		}
		if len(names) == 0 || names[len(names)-1] != name {
			names = append(names, name)
		}
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("list %s names: %w", kind, err)
	}
	return names, nil
}

func taskTags(td *conductor.TaskDef) (string, *[]conductor.Tag) { return td.Name, &td.Tags }

// DeleteTaskDef removes task definition name and its tags. An unknown name
// fails with fault.ErrNotFound.
func (s *Store) DeleteTaskDef(ctx context.Context, name string, principal string, opts ...WriteOption) error {
	return s.update(ctx, TaskSubject(name), principal, writeOpts(opts), func(v view) ([]schemas.Event, error) {
		_, exists, err := readDef(v.KV, taskKey(name))
		if err != nil {
			return nil, err
		}
		if !exists {
			return nil, taskNotFound(name)
		}
		return []schemas.Event{&schemas.TaskDefRemoved{Name: name, Time: s.millis(), By: principal}}, nil
	})
}

// LookupTaskDef is GetTaskDef for the engine's hot path, with the cache and
// log fallback of LookupWorkflowDef. An unregistered task is not an error
// (Conductor runs SIMPLE tasks without a definition): found is false. The
// returned definition is shared: callers must not modify it.
func (s *Store) LookupTaskDef(ctx context.Context, name string) (*conductor.TaskDef, bool, error) {
	subject := TaskSubject(name)
	key := cacheKey{task: true, name: name}
	now := s.now()
	// Read before the read model, so that what is read is at least as new.
	at := s.readModelAt()
	if e, ok := s.cache.unchanged(key, at); ok && e.current(now) {
		return e.td, e.td != nil, nil
	}
	v, err := s.projectionView(subject)
	if err != nil {
		return nil, false, err
	}
	if e, ok := s.cache.get(key, v.Seq); ok {
		if e.current(now) {
			e.at = at
			s.cache.put(key, e)
			return e.td, e.td != nil, nil
		}
		if !s.cache.recheck(key, e, now) {
			// Another lookup asks the log now; until it answers, the
			// "none" it renewed holds here too. Every decision that
			// scheduled the name in the meantime asked the log at once,
			// a read each (in the benchmark, dozens a second for each of
			// its three task names).
			return nil, false, nil
		}
	}
	// A task definition the read model lacks is looked up in the log, as a
	// workflow definition is, and the log's "none" holds for
	// absentRecheck: most SIMPLE tasks have no definition, and this is the
	// engine's hot path. Without it, a definition registered on another
	// engine was left out of every task this one scheduled until its read
	// model applied it, seconds when it lagged (a failover test's retries
	// ran on the defaults, a minute apart where their definition said
	// 3 s).
	d, found, err := readDef(v.KV, taskKey(name))
	if err != nil {
		return nil, false, err
	}
	if !found && registrable(name) {
		lv, err := s.logView(ctx, subject)
		if err != nil {
			return nil, false, err
		}
		if d, found, err = readDef(lv.KV, taskKey(name)); err != nil {
			return nil, false, err
		}
		if found {
			v = lv
			s.logger.Debug("definition read from the log ahead of the read model", logkey.Subject, subject, logkey.Seq, v.Seq)
		}
	}
	if !found {
		s.cache.put(key, cacheEntry{seq: v.Seq, at: at, checked: now})
		return nil, false, nil
	}
	td, err := parseTask(d.JSON)
	if err != nil {
		return nil, false, err
	}
	s.cache.put(key, cacheEntry{seq: v.Seq, at: at, td: td})
	return td, true, nil
}

// absentRecheck is how long the log's word that a task definition does
// not exist holds before LookupTaskDef asks it again.
const absentRecheck = time.Second

// current reports whether a cached task definition lookup still holds at
// now: a definition does (until the subject changes), a "none" for
// absentRecheck after the log said so.
func (e cacheEntry) current(now time.Time) bool {
	return e.td != nil || now.Sub(e.checked) < absentRecheck
}

func taskNotFound(name string) error {
	return fault.NotFound("No such taskType found by name: %s", name)
}

// parseTask decodes stored JSON; the result's Raw is that JSON.
func parseTask(b []byte) (*conductor.TaskDef, error) {
	var td conductor.TaskDef
	if err := conductor.Unmarshal(b, &td); err != nil {
		return nil, fmt.Errorf("parse stored task definition: %w", err)
	}
	return &td, nil
}
