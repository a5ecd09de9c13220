package secrets

import (
	"context"

	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/internal/taglimit"
	"github.com/flowvault/flowvault/projections"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// EnvSource is what ${workflow.env.NAME} resolution needs. *Env implements
// it. Environment values are flowvault's own store (/api/environment), never
// the server process's environment.
type EnvSource interface {
	// Revision is environment value name's revision as access checks read
	// it: taken before a principal's access is checked, it ties the value
	// served to what the check saw (LookupAt).
	Revision(ctx context.Context, name string) (Revision, error)
	// LookupAt returns environment value name, as of rev, for a principal
	// whose access was checked on rev; found is false when it does not
	// exist. A value changed since (set, deleted, retagged) fails with
	// fault.ErrStale: checked again, it may be served.
	LookupAt(ctx context.Context, name string, rev Revision) (value string, found bool, err error)
}

var _ EnvSource = (*Env)(nil)

// Env keeps environment values (Orkes' environment variables) as events on
// fv.secret.env.<name> and serves them from the secrets read model. They
// are not secrets: they are stored and returned in clear, as Orkes does.
// Env is safe for concurrent use.
type Env struct {
	w *writer
}

// EnvVar is an environment value as GET /api/environment lists it.
type EnvVar struct {
	Name  string          `json:"name"`
	Value string          `json:"value"`
	Tags  []conductor.Tag `json:"tags"`
}

// NewEnv returns an Env over the same log, read model and runner as New.
func NewEnv(log *eventlog.Log, store *projections.Store, waiter Waiter, opts Options) *Env {
	return &Env{w: newWriter(log, store, waiter, opts.Logger)}
}

func envNotFound(name string) error { return fault.NotFound("environment variable %s not found", name) }

// Put sets environment value name.
func (e *Env) Put(ctx context.Context, name, value, principal string, opts ...WriteOption) error {
	if err := CheckEnvName(name); err != nil {
		return err
	}
	if err := CheckValue("environment variable", []byte(value)); err != nil {
		return err
	}
	_, err := e.w.update(ctx, EnvSubject(name), principal, func(v view) ([]schemas.Event, error) {
		cur, found, err := readEnv(v.KV, name)
		if err != nil {
			return nil, err
		}
		if found && cur.Value == value {
			return nil, nil
		}
		return []schemas.Event{&schemas.EnvValuePut{Name: name, Value: value, Time: e.w.millis(), By: principal}}, nil
	}, named("environment variable "+name, opts)...)
	return err
}

// Revision is environment value name's revision, for a write checked
// against it (see At).
func (e *Env) Revision(_ context.Context, name string) (Revision, error) {
	if err := CheckEnvName(name); err != nil {
		return Revision{}, err
	}
	return e.w.revision(EnvSubject(name), func(r kvReader) (bool, error) {
		_, found, err := readEnv(r, name)
		return found, err
	})
}

// Get returns environment value name, or fault.ErrNotFound.
func (e *Env) Get(ctx context.Context, name string) (string, error) {
	v, found, err := e.Lookup(ctx, name)
	if err != nil {
		return "", err
	}
	if !found {
		return "", envNotFound(name)
	}
	return v, nil
}

// GetAt is Get for a caller whose access was checked on rev (see
// LookupAt).
func (e *Env) GetAt(ctx context.Context, name string, rev Revision) (string, error) {
	v, found, err := e.LookupAt(ctx, name, rev)
	if err != nil {
		return "", err
	}
	if !found {
		return "", envNotFound(name)
	}
	return v, nil
}

// varAt is environment value name with its tags, for a caller whose
// access was checked on rev: read from the read model only while the
// value's state is still rev's, as LookupAt serves it, and fault.ErrStale
// otherwise. A value the read model does not hold is fault.ErrNotFound.
func (e *Env) varAt(_ context.Context, name string, rev Revision) (EnvVar, error) {
	if err := CheckEnvName(name); err != nil {
		return EnvVar{}, err
	}
	v, found, err := readEnv(e.w.reader, name)
	if err != nil {
		return EnvVar{}, err
	}
	// The reader is the live read model: the value was read before a
	// sequence that is still the revision's, read before the check.
	after, err := readSubject(e.w.reader, EnvSubject(name))
	if err != nil {
		return EnvVar{}, err
	}
	if after.Seq != rev.Seq {
		return EnvVar{}, fault.Stale("environment variable %s changed while access to it was checked: try again", name)
	}
	if !found {
		return EnvVar{}, envNotFound(name)
	}
	return EnvVar{Name: name, Value: v.Value, Tags: toConductorTags(v.Tags)}, nil
}

// TagsAt is the tags of environment value name, as GET
// /api/environment/{key}/tags answers them, for a caller whose access was
// checked on rev (see varAt).
func (e *Env) TagsAt(ctx context.Context, name string, rev Revision) ([]conductor.Tag, error) {
	v, err := e.varAt(ctx, name, rev)
	return v.Tags, err
}

// Lookup reads the read model and, when that does not know the name, the
// log (another process may have set it a moment ago). It serves whatever
// is current, checked against nothing: a value served to a principal goes
// through LookupAt.
func (e *Env) Lookup(ctx context.Context, name string) (string, bool, error) {
	return e.lookup(ctx, name, nil)
}

// LookupAt implements EnvSource. Access was checked on the read model (the
// authorizer reads a value's creator and tags there) after rev was read:
// the value is served only while its state is still rev's, so that one
// set again by another principal, retagged or untagged between the check
// and the read is not served to a principal checked on the old one.
func (e *Env) LookupAt(ctx context.Context, name string, rev Revision) (string, bool, error) {
	return e.lookup(ctx, name, &rev.Seq)
}

// lookup is Lookup, and with checked LookupAt of the revision at that
// sequence.
func (e *Env) lookup(ctx context.Context, name string, checked *uint64) (string, bool, error) {
	if err := CheckEnvName(name); err != nil {
		return "", false, err
	}
	subject := EnvSubject(name)
	v, found, err := readEnv(e.w.reader, name)
	if err != nil {
		return "", false, err
	}
	if checked != nil {
		// The reader is the live read model: a value read before a read
		// of the subject's sequence that is still the revision's (read
		// before the check) is the one the check read.
		after, err := readSubject(e.w.reader, subject)
		if err != nil {
			return "", false, err
		}
		if after.Seq != *checked {
			return "", false, fault.Stale("environment variable %s changed while access to it was checked: try again", name)
		}
	}
	if found {
		return v.Value, true, nil
	}
	// Not in the read model when access was checked: the check saw no
	// creator and no tags, so only grants that hold whatever the state
	// (by name, by role) let it through, and the log's value may be
	// served.
	fresh, err := e.w.freshView(ctx, subject)
	if err != nil {
		return "", false, err
	}
	v, found, err = readEnv(fresh.KV, name)
	return v.Value, found, err
}

// Delete deletes environment value name and returns the value it had.
func (e *Env) Delete(ctx context.Context, name, principal string, opts ...WriteOption) (string, error) {
	if err := CheckEnvName(name); err != nil {
		return "", err
	}
	var old string
	_, err := e.w.update(ctx, EnvSubject(name), principal, func(v view) ([]schemas.Event, error) {
		cur, found, err := readEnv(v.KV, name)
		if err != nil {
			return nil, err
		}
		if !found {
			return nil, envNotFound(name)
		}
		old = cur.Value
		return []schemas.Event{&schemas.EnvValueDeleted{Name: name, Time: e.w.millis(), By: principal}}, nil
	}, named("environment variable "+name, opts)...)
	if err != nil {
		// old may hold what a decide that lost its race read.
		return "", err
	}
	return old, nil
}

// PutTags adds tags; a tag whose key exists replaces that tag's value.
func (e *Env) PutTags(ctx context.Context, name string, tags []conductor.Tag, principal string, opts ...WriteOption) error {
	return e.changeTags(ctx, name, tags, principal, false, upsertTags, opts)
}

// DeleteTags removes the tags matching one of tags by key and value.
func (e *Env) DeleteTags(ctx context.Context, name string, tags []conductor.Tag, principal string, opts ...WriteOption) error {
	return e.changeTags(ctx, name, tags, principal, true, removeTags, opts)
}

func (e *Env) changeTags(ctx context.Context, name string, tags []conductor.Tag, principal string,
	removal bool, op func(cur, given []schemas.SecretTag) []schemas.SecretTag, opts []WriteOption) error {
	if err := CheckEnvName(name); err != nil {
		return err
	}
	given, err := givenTags(tags, removal)
	if err != nil {
		return err
	}
	_, err = e.w.update(ctx, EnvSubject(name), principal, func(v view) ([]schemas.Event, error) {
		cur, found, err := readEnv(v.KV, name)
		if err != nil {
			return nil, err
		}
		if !found {
			return nil, envNotFound(name)
		}
		next := op(cur.Tags, given)
		if err := taglimit.Fit("", "environment variable "+name, len(cur.Tags), len(next)); err != nil {
			return nil, err
		}
		if tagsEqual(cur.Tags, next) {
			return nil, nil
		}
		return []schemas.Event{&schemas.EnvTagsSet{Name: name, Tags: next, Time: e.w.millis(), By: principal}}, nil
	}, named("environment variable "+name, opts)...)
	return err
}

// Access is Store.Access for environment value name, read without its
// value.
func (e *Env) Access(_ context.Context, name string) (creator string, tags []conductor.Tag, err error) {
	return envAccessIn(e.w.reader, name)
}
