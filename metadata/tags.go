package metadata

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/internal/taglimit"
	"github.com/flowvault/flowvault/projections"
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
	return conductorTags(tags), nil
}

func conductorTags(tags []schemas.DefTag) []conductor.Tag {
	out := make([]conductor.Tag, len(tags))
	for i, t := range tags {
		out[i] = conductor.Tag{Key: t.Key, Value: t.Value}
	}
	return out
}

// TagFilter selects definitions by their name's tags and adds those tags,
// as Orkes's GET /api/metadata/workflow and /taskdefs read tagKey,
// tagValue and metadata. The zero filter selects every definition,
// without tags.
type TagFilter struct {
	// TagKey and TagValue, when either is set, select the definitions
	// whose name holds a tag of that key and that value (an unset one
	// matches any): one tag must match both.
	TagKey, TagValue string
	// Tags sets each definition's Tags to its name's tags ([] when it has
	// none); its Raw stays as stored, which holds none.
	Tags bool
}

func (f TagFilter) byTag() bool { return f.TagKey != "" || f.TagValue != "" }

// tagged lists the names of kind holding a tag f selects, in order.
func tagged(r kvReader, kind Kind, f TagFilter) ([]string, error) {
	prefix := tagsKey(kind, "")
	var names []string
	var derr error
	err := r.Scan(prefix, func(k, v []byte) bool {
		var tags []schemas.DefTag
		if derr = msgpack.Unmarshal(v, &tags); derr != nil {
			return false
		}
		if hasTag(tags, f.TagKey, f.TagValue) {
			names = append(names, string(k[len(prefix):]))
		}
		return true
	})
	if err = cmp.Or(err, derr); err != nil {
		return nil, fmt.Errorf("list %s tags: %w", kind, err)
	}
	return names, nil
}

// hasTag reports whether tags hold one of key and value ("" matching any).
func hasTag(tags []schemas.DefTag, key, value string) bool {
	return slices.ContainsFunc(tags, func(t schemas.DefTag) bool {
		return (key == "" || t.Key == key) && (value == "" || t.Value == value)
	})
}

// withTagsOf applies f's tags to defs, sorted by name: it drops those
// whose name holds no tag f selects (read by name, or whose tags changed
// since the tag sets were read) and, asked for tags, sets each one's. of
// gives a definition's name and its Tags.
func withTagsOf[D any](r kvReader, kind Kind, f TagFilter, defs []D, of func(D) (string, *[]conductor.Tag)) ([]D, error) {
	if !f.byTag() && !f.Tags {
		return defs, nil
	}
	out := defs[:0]
	var tags []schemas.DefTag
	tagsOf := "" // no definition's name
	for _, d := range defs {
		name, dst := of(d)
		if name != tagsOf {
			var err error
			if tags, err = readTags(r, kind, name); err != nil {
				return nil, fmt.Errorf("read tags of %s %s: %w", kind, name, err)
			}
			tagsOf = name
		}
		if f.byTag() && !hasTag(tags, f.TagKey, f.TagValue) {
			continue
		}
		if f.Tags {
			*dst = conductorTags(tags)
		}
		out = append(out, d)
	}
	return out, nil
}

// AddTags adds tags to a definition's tag set; tags it already has are
// kept once. A tag is a key/value pair and a key may carry several values.
func (s *Store) AddTags(ctx context.Context, kind Kind, name string, tags []conductor.Tag, principal string, opts ...WriteOption) error {
	return s.changeTags(ctx, kind, name, tags, principal, opts, false, withTags)
}

// withTags is cur with the tags of given it lacks.
func withTags(cur, given []schemas.DefTag) []schemas.DefTag {
	next := slices.Clone(cur)
	for _, t := range given {
		next = addTag(next, t)
	}
	return next
}

// withoutTags is cur without the tags of given.
func withoutTags(cur, given []schemas.DefTag) []schemas.DefTag {
	return slices.DeleteFunc(slices.Clone(cur), func(t schemas.DefTag) bool { return slices.Contains(given, t) })
}

// SetTags replaces a definition's tag set with tags.
func (s *Store) SetTags(ctx context.Context, kind Kind, name string, tags []conductor.Tag, principal string, opts ...WriteOption) error {
	return s.changeTags(ctx, kind, name, tags, principal, opts, false, func(_, given []schemas.DefTag) []schemas.DefTag {
		return given
	})
}

// DeleteTags removes tags (matching key and value) from a definition's tag
// set. Tags it does not have are ignored.
func (s *Store) DeleteTags(ctx context.Context, kind Kind, name string, tags []conductor.Tag, principal string, opts ...WriteOption) error {
	return s.changeTags(ctx, kind, name, tags, principal, opts, true, withoutTags)
}

// changeTags appends the tag set that op computes from the current set and
// the given tags, unless it equals the current set. The definition must
// exist. A tag grants access: a write pinned by At must not tag a
// definition other than the one its access was checked on. A removal's
// tags are taken as sent (givenTags).
func (s *Store) changeTags(ctx context.Context, kind Kind, name string, tags []conductor.Tag, principal string, opts []WriteOption,
	removal bool, op func(cur, given []schemas.DefTag) []schemas.DefTag) error {
	if err := checkKind(kind); err != nil {
		return err
	}
	given, err := givenTags(tags, removal)
	if err != nil {
		return err
	}
	return s.update(ctx, subjectOf(kind, name), principal, writeOpts(opts), func(v view) ([]schemas.Event, error) {
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
		if err := taglimit.Fit("", fmt.Sprintf("%s definition %s", kind, name), len(cur), len(next)); err != nil {
			return nil, err
		}
		return []schemas.Event{&schemas.DefTagsSet{Kind: string(kind), Name: name, Tags: next, Time: s.millis(), By: principal}}, nil
	})
}

// givenTags is the tags of a tag change: an addition's held to the limits
// (checkTags), a removal's as sent (taglimit.Removal), so that a tag
// stored before the limits may still be removed by naming it.
func givenTags(tags []conductor.Tag, removal bool) ([]schemas.DefTag, error) {
	if removal {
		return defTags(taglimit.Removal(tags)), nil
	}
	ve := &fault.ValidationError{}
	given := checkTags(ve, "", tags)
	return given, ve.Err()
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
	if err := taglimit.Fit(jsonTags, fmt.Sprintf("%s definition %s", kind, reg.name), len(cur), len(next)); err != nil {
		return nil, err
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
		// A key lookup: whether the definition is there, not what it
		// holds, which decoding would copy on every access check.
		_, err := r.Get(taskKey(name))
		if errors.Is(err, projections.ErrNotFound) {
			return false, nil
		}
		return err == nil, err
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

// TagSet is the tag set of one definition name.
type TagSet struct {
	Kind Kind
	Name string
	Tags []conductor.Tag
}

// ListTags returns the tag set of every tagged definition name, by kind,
// then name, each set in its stored order. Callers filter it by what their
// caller may read: a tag set is part of its definition.
func (s *Store) ListTags(ctx context.Context) ([]TagSet, error) {
	return listTags(s.reader)
}

// ListTags is Store.ListTags in the snapshot, for a listing that decides
// its caller's access to each name there too (DefAccess).
func (sn *Snapshot) ListTags() ([]TagSet, error) { return listTags(sn.kv) }

func listTags(r kvReader) ([]TagSet, error) {
	var out []TagSet
	var decodeErr error
	err := r.Scan([]byte(tagsKeyPrefix), func(k, v []byte) bool {
		kind, name, ok := strings.Cut(string(k[len(tagsKeyPrefix):]), "/")
		if !ok {
			return true // not a key tagsKey writes
		}
		var tags []schemas.DefTag
		if err := msgpack.Unmarshal(v, &tags); err != nil {
			decodeErr = fmt.Errorf("decode tags of %s %s: %w", kind, name, err)
			return false
		}
		out = append(out, TagSet{Kind: Kind(kind), Name: name, Tags: conductorTags(tags)})
		return true
	})
	if err == nil {
		err = decodeErr
	}
	if err != nil {
		return nil, fmt.Errorf("list definition tags: %w", err)
	}
	return out, nil
}
