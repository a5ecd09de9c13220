package metadata

import (
	"cmp"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/internal/logkey"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// CheckWorkflowDef validates a definition that runs without being
// registered (a start's or a sub-workflow's inline workflowDef) as
// registration would, but for its version: nothing is stored under it.
func (s *Store) CheckWorkflowDef(def *conductor.WorkflowDef) error {
	_, err := checkWorkflow(def, "", s.opts.ValidateWorkflow, false)
	return err
}

// RegisterWorkflowDef creates version def.Version (1 when absent) of
// workflow def.Name, or with NewVersion the version after the latest.
// When that version exists it is replaced if overwrite is set, and the
// call fails with fault.ErrConflict otherwise. Invalid definitions fail
// with a *fault.ValidationError naming JSON paths.
// principal is who registers ("" when unknown); At pins the write to the
// revision of def.Name that principal's access was checked on.
//
// The stored JSON is def.Raw when set (a definition decoded from JSON),
// otherwise def's encoding.
func (s *Store) RegisterWorkflowDef(ctx context.Context, def *conductor.WorkflowDef, overwrite bool, principal string, opts ...WriteOption) error {
	reg, err := prepareWorkflow(def, "", s.opts.ValidateWorkflow)
	if err != nil {
		return err
	}
	return s.putWorkflow(ctx, reg, overwrite, principal, writeOpts(opts))
}

// PutWorkflowDefs creates each definition (PUT /api/metadata/workflow),
// replacing a version that exists if overwrite is set; without it, that
// definition fails with fault.ErrConflict. Every definition is validated
// first: one invalid definition fails the call with a
// *fault.ValidationError whose paths start with the definition's index
// ("[1].tasks[0].name") and nothing is written. Failures to store are reported per name in the
// response; a pinned write (At, one revision per name) whose name changed
// since its check is such a failure.
func (s *Store) PutWorkflowDefs(ctx context.Context, defs []*conductor.WorkflowDef, overwrite bool, principal string, opts ...WriteOption) (*conductor.BulkResponse, error) {
	if len(defs) == 0 {
		return nil, fault.Invalid("workflow definition list must not be empty")
	}
	regs := make([]registration, len(defs))
	ve := &fault.ValidationError{}
	for i, def := range defs {
		reg, err := prepareWorkflow(def, fmt.Sprintf("[%d]", i), s.opts.ValidateWorkflow)
		if err := collect(ve, err); err != nil {
			return nil, err
		}
		regs[i] = reg
	}
	if err := ve.Err(); err != nil {
		return nil, err
	}
	resp := conductor.NewBulkResponse()
	o := writeOpts(opts)
	for i, reg := range regs {
		if err := s.putWorkflow(ctx, reg, overwrite, principal, o); err != nil {
			if errors.Is(err, fault.ErrStale) && o.onStale != nil {
				o.onStale(i)
			}
			resp.BulkErrorResults[reg.name] = fault.Message(err)
			continue
		}
		resp.BulkSuccessfulResults = append(resp.BulkSuccessfulResults, reg.name)
	}
	return resp, nil
}

// collect adds a validation error's fields to ve and returns other errors.
func collect(ve *fault.ValidationError, err error) error {
	if err == nil {
		return nil
	}
	if v, ok := err.(*fault.ValidationError); ok {
		ve.Fields = append(ve.Fields, v.Fields...)
		return nil
	}
	return err
}

func (s *Store) putWorkflow(ctx context.Context, reg registration, overwrite bool, principal string, o *writeOptions) error {
	return s.update(ctx, WorkflowSubject(reg.name), principal, o, func(v view) ([]schemas.Event, error) {
		version := reg.version
		if o.newVersion {
			versions, err := workflowVersions(v.KV, reg.name)
			if err != nil {
				return nil, err
			}
			if len(versions) > 0 {
				version = versions[len(versions)-1] + 1
			}
			if !validVersion(version) {
				return nil, fault.Conflict("Workflow %s has version %d, the highest there may be", reg.name, version-1)
			}
		}
		_, exists, err := readDef(v.KV, workflowKey(reg.name, version))
		if err != nil {
			return nil, err
		}
		if exists && !overwrite {
			return nil, fault.Conflict("Workflow with %s.%d already exists!", reg.name, version)
		}
		raw := reg.raw
		if version != reg.version {
			// So that the log's record says which version it is, as the
			// read model (which sets "version" from the event) does.
			if raw, err = mergeObject(raw, []field{intField(jsonVersion, int64(version))}); err != nil {
				return nil, fmt.Errorf("set version of workflow definition %s: %w", reg.name, err)
			}
		}
		now := s.millis()
		events := []schemas.Event{&schemas.WorkflowDefRegistered{
			Name: reg.name, Version: version, Def: raw, Time: now, By: principal,
		}}
		tagEv, err := registrationTags(v, KindWorkflow, reg, now, principal)
		if err != nil {
			return nil, err
		}
		if tagEv != nil {
			events = append(events, tagEv)
		}
		return events, nil
	})
}

// jsonRateLimitConfig is the key of a definition SetWorkflowRateLimit changes.
const jsonRateLimitConfig = "rateLimitConfig"

// SetWorkflowRateLimit sets the rateLimitConfig of version *version of
// workflow name (its latest when nil) to cfg, or removes it when cfg is
// nil: Orkes's PUT and DELETE /api/metadata/workflow/{name}/rateLimit.
// The change is a registration of the definition so changed, validated as
// one and recorded as one, so that the log says who changed the limit and
// the lines of the name's workflows follow it as they follow any
// re-registration. Removing a config the definition does not hold writes
// nothing. Unknown names and versions fail with fault.ErrNotFound.
func (s *Store) SetWorkflowRateLimit(ctx context.Context, name string, version *int, cfg map[string]any, principal string, opts ...WriteOption) error {
	var set []field
	if cfg != nil {
		b, err := json.Marshal(cfg)
		if err != nil {
			return fault.Invalid("rateLimitConfig: %v", err)
		}
		set = []field{{key: jsonRateLimitConfig, value: b}}
	}
	return s.update(ctx, WorkflowSubject(name), principal, writeOpts(opts), func(v view) ([]schemas.Event, error) {
		d, found, err := findWorkflow(v.KV, name, version)
		if err != nil {
			return nil, err
		}
		if !found {
			return nil, WorkflowNotFound(name, version)
		}
		cur, err := parseWorkflow(d.JSON)
		if err != nil {
			return nil, err
		}
		if cfg == nil && cur.RateLimitConfig == nil {
			return nil, nil
		}
		// The read model's own keys are set again from the event.
		drop := []string{jsonCreateTime, jsonUpdateTime, jsonCreatedBy, jsonUpdatedBy}
		if cfg == nil {
			drop = append(drop, jsonRateLimitConfig)
		}
		raw, err := mergeObject(d.JSON, set, drop...)
		if err != nil {
			return nil, fmt.Errorf("rate limit of workflow definition %s: %w", name, err)
		}
		next, err := parseWorkflow(raw)
		if err != nil {
			return nil, err
		}
		reg, err := prepareWorkflow(next, "", s.opts.ValidateWorkflow)
		if err != nil {
			return nil, err
		}
		return []schemas.Event{&schemas.WorkflowDefRegistered{
			Name: reg.name, Version: reg.version, Def: reg.raw, Time: s.millis(), By: principal,
		}}, nil
	})
}

// GetWorkflowDef returns version *version of workflow name, or its latest
// version when version is nil, from the read model. Unknown names and
// versions fail with fault.ErrNotFound. def.Raw is the JSON to return.
func (s *Store) GetWorkflowDef(ctx context.Context, name string, version *int) (*conductor.WorkflowDef, error) {
	d, found, err := findWorkflow(s.reader, name, version)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, WorkflowNotFound(name, version)
	}
	return parseWorkflow(d.JSON)
}

// ListWorkflowDefs returns every version of every workflow, sorted by
// name, then version.
func (s *Store) ListWorkflowDefs(ctx context.Context) ([]*conductor.WorkflowDef, error) {
	return listAll(s.reader, workflowKeyPrefix, "workflow definitions", parseWorkflow)
}

// WorkflowFilter selects and shapes what FindWorkflowDefsAt returns, as
// Orkes's GET /api/metadata/workflow does. With only a name it selects
// every version of that workflow, whole.
type WorkflowFilter struct {
	// Name is the workflow whose versions are read.
	Name string
	TagFilter
	// Short returns each definition without its tasks (an empty list).
	Short bool
}

// FindWorkflowDefsAt returns the versions of workflow f.Name that f
// selects and shapes, sorted by version, for a caller whose access to it
// was checked on rev (see readAt).
func (s *Store) FindWorkflowDefsAt(_ context.Context, f WorkflowFilter, rev Revision) ([]*conductor.WorkflowDef, error) {
	var defs []*conductor.WorkflowDef
	err := s.readAt(KindWorkflow, f.Name, rev, func(r kvReader) (err error) {
		defs, err = findWorkflowDefs(r, f)
		return err
	})
	return defs, err
}

// findWorkflowDefs reads the versions of workflow f.Name that f selects
// and shapes.
func findWorkflowDefs(r kvReader, f WorkflowFilter) ([]*conductor.WorkflowDef, error) {
	var stored []storedDef
	var derr error
	err := r.Scan(workflowPrefix(f.Name), func(_, v []byte) bool {
		var d storedDef
		d, _, derr = decodeStored(slices.Clone(v))
		stored = append(stored, d)
		return derr == nil
	})
	if err = cmp.Or(err, derr); err != nil {
		return nil, fmt.Errorf("list versions of workflow %s: %w", f.Name, err)
	}
	out := make([]*conductor.WorkflowDef, 0, len(stored))
	for _, d := range stored {
		def := d.JSON
		if f.Short {
			var err error
			if def, err = mergeObject(def, []field{{key: "tasks", value: []byte("[]")}}); err != nil {
				return nil, fmt.Errorf("shorten stored workflow definition: %w", err)
			}
		}
		wf, err := parseWorkflow(def)
		if err != nil {
			return nil, err
		}
		out = append(out, wf)
	}
	return withTagsOf(r, KindWorkflow, f.TagFilter, out, func(wf *conductor.WorkflowDef) (string, *[]conductor.Tag) {
		return wf.Name, &wf.Tags
	})
}

// DeleteWorkflowDef removes one version of workflow name. Unknown names and
// versions fail with fault.ErrNotFound. Removing the last version also
// removes the name's tags.
func (s *Store) DeleteWorkflowDef(ctx context.Context, name string, version int, principal string, opts ...WriteOption) error {
	return s.update(ctx, WorkflowSubject(name), principal, writeOpts(opts), func(v view) ([]schemas.Event, error) {
		_, exists, err := readDef(v.KV, workflowKey(name, version))
		if err != nil {
			return nil, err
		}
		if !exists || !validVersion(version) {
			return nil, WorkflowNotFound(name, &version)
		}
		return []schemas.Event{&schemas.WorkflowDefRemoved{Name: name, Version: version, Time: s.millis(), By: principal}}, nil
	})
}

// LookupWorkflowDef is GetWorkflowDef for the engine's hot path. It answers
// from a cache of parsed definitions that the read model's subject sequence
// keeps current, and when the read model has no such definition it reads
// the subject from the log: another engine may have registered it a moment
// ago. The returned definition is shared: callers must not modify it.
func (s *Store) LookupWorkflowDef(ctx context.Context, name string, version *int) (*conductor.WorkflowDef, error) {
	subject := WorkflowSubject(name)
	key := cacheKey{name: name}
	if version != nil {
		if !validVersion(*version) {
			return nil, WorkflowNotFound(name, version)
		}
		key.version = *version
	}
	// Read before the read model, so that what is read is at least as new.
	at := s.readModelAt()
	if e, ok := s.cache.unchanged(key, at); ok {
		return e.wf, nil
	}
	v, err := s.projectionView(subject)
	if err != nil {
		return nil, err
	}
	if e, ok := s.cache.get(key, v.Seq); ok {
		e.at = at
		s.cache.put(key, e)
		return e.wf, nil
	}
	d, found, err := findWorkflow(v.KV, name, version)
	if err != nil {
		return nil, err
	}
	if !found && registrable(name) {
		if v, err = s.logView(ctx, subject); err != nil {
			return nil, err
		}
		if d, found, err = findWorkflow(v.KV, name, version); err != nil {
			return nil, err
		}
		if found {
			s.logger.Debug("definition read from the log ahead of the read model", logkey.Subject, subject, logkey.Seq, v.Seq)
		}
	}
	if !found {
		return nil, WorkflowNotFound(name, version)
	}
	wf, err := parseWorkflow(d.JSON)
	if err != nil {
		return nil, err
	}
	s.cache.put(key, cacheEntry{seq: v.Seq, at: at, wf: wf})
	return wf, nil
}

// findWorkflow reads one version, or the latest when version is nil.
func findWorkflow(r kvReader, name string, version *int) (storedDef, bool, error) {
	return findVersion(r, workflowPrefix(name), version)
}

// findVersion reads the version of a versioned definition (a workflow's,
// a schema's: keys of prefix and a uint32 BE version), or the latest when
// version is nil.
func findVersion(r kvReader, prefix []byte, version *int) (storedDef, bool, error) {
	if version != nil {
		if !validVersion(*version) {
			return storedDef{}, false, nil
		}
		return readDef(r, binary.BigEndian.AppendUint32(slices.Clip(prefix), uint32(*version)))
	}
	var last []byte
	err := r.Scan(prefix, func(_, v []byte) bool {
		last = append(last[:0], v...)
		return true
	})
	if err != nil || last == nil {
		return storedDef{}, false, err
	}
	return decodeStored(last)
}

// WorkflowNotFound is Conductor's answer for a definition that does not
// exist (or that the caller may not read: the same answer).
func WorkflowNotFound(name string, version *int) error {
	if version == nil {
		return fault.NotFound("No such workflow found by name: %s", name)
	}
	return fault.NotFound("No such workflow found by name: %s, version: %d", name, *version)
}

// parseWorkflow decodes stored JSON; the result's Raw is that JSON.
func parseWorkflow(b []byte) (*conductor.WorkflowDef, error) {
	var wf conductor.WorkflowDef
	if err := conductor.UnmarshalStored(b, &wf); err != nil {
		return nil, fmt.Errorf("parse stored workflow definition: %w", err)
	}
	return &wf, nil
}
