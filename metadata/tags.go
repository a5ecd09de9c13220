package metadata

import (
	"context"
	"slices"

	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// GetTags returns the tags of workflow or task definition name ([] when it
// has none). An unknown definition fails with fault.ErrNotFound.
func (s *Store) GetTags(ctx context.Context, kind Kind, name string) ([]conductor.Tag, error) {
	if err := checkKind(kind); err != nil {
		return nil, err
	}
	exists, err := defExists(s.reader, kind, name)
	if err != nil {
		return nil, err
	}
	if !exists {
		return nil, defNotFound(kind, name)
	}
	tags, err := readTags(s.reader, kind, name)
	if err != nil {
		return nil, err
	}
	out := make([]conductor.Tag, len(tags))
	for i, t := range tags {
		out[i] = conductor.Tag{Key: t.Key, Value: t.Value}
	}
	return out, nil
}

// AddTags adds tags to a definition's tag set; tags it already has are
// kept once. A tag is a key/value pair and a key may carry several values.
func (s *Store) AddTags(ctx context.Context, kind Kind, name string, tags []conductor.Tag, principal string) error {
	return s.changeTags(ctx, kind, name, tags, principal, func(cur, given []schemas.DefTag) []schemas.DefTag {
		next := slices.Clone(cur)
		for _, t := range given {
			next = addTag(next, t)
		}
		return next
	})
}

// SetTags replaces a definition's tag set with tags.
func (s *Store) SetTags(ctx context.Context, kind Kind, name string, tags []conductor.Tag, principal string) error {
	return s.changeTags(ctx, kind, name, tags, principal, func(_, given []schemas.DefTag) []schemas.DefTag {
		return given
	})
}

// DeleteTags removes tags (matching key and value) from a definition's tag
// set. Tags it does not have are ignored.
func (s *Store) DeleteTags(ctx context.Context, kind Kind, name string, tags []conductor.Tag, principal string) error {
	return s.changeTags(ctx, kind, name, tags, principal, func(cur, given []schemas.DefTag) []schemas.DefTag {
		return slices.DeleteFunc(slices.Clone(cur), func(t schemas.DefTag) bool { return slices.Contains(given, t) })
	})
}

// changeTags appends the tag set that op computes from the current set and
// the given tags, unless it equals the current set. The definition must
// exist.
func (s *Store) changeTags(ctx context.Context, kind Kind, name string, tags []conductor.Tag, principal string,
	op func(cur, given []schemas.DefTag) []schemas.DefTag) error {
	if err := checkKind(kind); err != nil {
		return err
	}
	ve := &fault.ValidationError{}
	given := checkTags(ve, "", tags)
	if err := ve.Err(); err != nil {
		return err
	}
	return s.update(ctx, subjectOf(kind, name), principal, func(v view) ([]schemas.Event, error) {
		exists, err := defExists(v.KV, kind, name)
		if err != nil {
			return nil, err
		}
		if !exists {
			return nil, defNotFound(kind, name)
		}
		cur, err := readTags(v.KV, kind, name)
		if err != nil {
			return nil, err
		}
		next := op(cur, given)
		if slices.Equal(cur, next) {
			return nil, nil
		}
		return []schemas.Event{&schemas.DefTagsSet{Kind: string(kind), Name: name, Tags: next, Time: s.millis(), By: principal}}, nil
	})
}

// registrationTags is the DefTagsSet event for the tags a registration
// carries, or nil when they change nothing.
func registrationTags(v view, kind Kind, reg registration, now int64, principal string) (schemas.Event, error) {
	if reg.tags == nil {
		return nil, nil
	}
	cur, err := readTags(v.KV, kind, reg.name)
	if err != nil {
		return nil, err
	}
	next := reg.tags
	if !reg.overwriteTags {
		next = slices.Clone(cur)
		for _, t := range reg.tags {
			next = addTag(next, t)
		}
	}
	if slices.Equal(cur, next) {
		return nil, nil
	}
	return &schemas.DefTagsSet{Kind: string(kind), Name: reg.name, Tags: next, Time: now, By: principal}, nil
}

// addTag appends t unless tags already holds it.
func addTag(tags []schemas.DefTag, t schemas.DefTag) []schemas.DefTag {
	if slices.Contains(tags, t) {
		return tags
	}
	return append(tags, t)
}

func checkKind(kind Kind) error {
	if kind != KindWorkflow && kind != KindTask {
		return fault.Invalid("definition kind %q: want %q or %q", kind, KindWorkflow, KindTask)
	}
	return nil
}

func subjectOf(kind Kind, name string) string {
	if kind == KindTask {
		return TaskSubject(name)
	}
	return WorkflowSubject(name)
}

// defExists reports whether a task definition, or any version of a
// workflow, is stored under name.
func defExists(r kvReader, kind Kind, name string) (bool, error) {
	if kind == KindTask {
		_, found, err := readDef(r, taskKey(name))
		return found, err
	}
	found := false
	err := r.Scan(workflowPrefix(name), func(_, _ []byte) bool {
		found = true
		return false
	})
	return found, err
}

func defNotFound(kind Kind, name string) error {
	if kind == KindTask {
		return taskNotFound(name)
	}
	return WorkflowNotFound(name, nil)
}
