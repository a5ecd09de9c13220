package auth

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/google/uuid"

	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/internal/taglimit"
	"github.com/flowvault/flowvault/projections"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// AppPrefix starts the principal id of an application: "app:<id>".
const AppPrefix = "app:"

// Application is an application as the API shows it (Orkes's
// ExtendedConductorApplication); Roles are shown through /api/users.
type Application struct {
	ID         string          `json:"id"`
	Name       string          `json:"name"`
	CreatedBy  string          `json:"createdBy"`
	UpdatedBy  string          `json:"updatedBy"`
	CreateTime int64           `json:"createTime"`
	UpdateTime int64           `json:"updateTime"`
	Tags       []conductor.Tag `json:"tags,omitempty"`
	Roles      []string        `json:"-"`
	Groups     []string        `json:"-"`
}

// PrincipalID is the application's principal id, "app:<id>".
func (a Application) PrincipalID() string { return AppPrefix + a.ID }

// AccessKey is an access key as listed: never its secret nor its hash.
type AccessKey struct {
	ID        string `json:"id"`
	CreatedAt int64  `json:"createdAt"`
	Status    string `json:"status"`
}

// NewAccessKey is a created key with its secret, which is shown this once.
type NewAccessKey struct {
	ID     string `json:"id"`
	Secret string `json:"secret"`
}

// maxKeysPerApp bounds an application's access keys.
const maxKeysPerApp = 20

func (a *appState) view() Application {
	out := Application{ID: a.ID, Name: a.Name, CreatedBy: a.CreatedBy, UpdatedBy: a.UpdatedBy,
		CreateTime: a.CreateTime, UpdateTime: a.UpdateTime, Roles: slices.Clone(a.Roles), Groups: slices.Clone(a.Groups)}
	for _, t := range a.Tags {
		out.Tags = append(out.Tags, conductor.Tag{Key: t.Key, Value: t.Value})
	}
	return out
}

func keyView(k keyState) AccessKey {
	return AccessKey{ID: k.ID, CreatedAt: k.CreatedAt, Status: k.Status}
}

func appNotFound(id string) error { return fault.NotFound("Application %s not found", id) }

func keyNotFound(id string) error { return fault.NotFound("Access key %s not found", id) }

func newApp() *appState { return &appState{} }

// updateApp runs one change on an existing application, the one checked
// describes (nil: none), as the caller's access was checked on it (the
// read model's, read before the check): its creator and tags decide that
// access, and a read model that lags the log may show neither as the log
// holds them. Another state answers fault.ErrStale (409, to send again)
// before the not-found, and nothing changes.
func (s *Store) updateApp(ctx context.Context, id, by string, checked *Application, decide func(*appState) ([]schemas.Event, error)) error {
	if err := checkID("application id", id); err != nil {
		return appNotFound(id)
	}
	return update(ctx, s, AppSubject(id), by, newApp, func(a *appState) ([]schemas.Event, error) {
		if !sameApp(a, checked) {
			return nil, appChanged(id)
		}
		if !a.exists() {
			return nil, appNotFound(id)
		}
		return decide(a)
	})
}

// updatePowers is updateApp for a change that gives the application's
// powers or takes them from their holders (an access key made, paused or
// deleted; the application deleted), which the caller may make only if it
// may give every role acting as the application holds: the roles and
// groups it holds must be those checked too, or an ADMIN role given
// meanwhile would come with a key minted by who may not give it.
func (s *Store) updatePowers(ctx context.Context, id, by string, checked *Application, decide func(*appState) ([]schemas.Event, error)) error {
	return s.updateApp(ctx, id, by, checked, func(a *appState) ([]schemas.Event, error) {
		if !slices.Equal(a.Roles, checked.Roles) || !slices.Equal(a.Groups, checked.Groups) {
			return nil, appChanged(id)
		}
		return decide(a)
	})
}

// sameApp reports whether a is the application checked describes (nil:
// none) in what access to it is decided on. An application's id is never
// given again, but the time and creator are compared all the same, as a
// life is elsewhere.
func sameApp(a *appState, checked *Application) bool {
	if checked == nil || !a.exists() {
		return checked == nil && !a.exists()
	}
	return a.ID == checked.ID && a.CreateTime == checked.CreateTime && a.CreatedBy == checked.CreatedBy &&
		slices.EqualFunc(a.Tags, checked.Tags, func(t schemas.DefTag, c conductor.Tag) bool { return t.Key == c.Key && t.Value == c.Value })
}

func appChanged(id string) error {
	return fault.Stale("application %s changed while this request's access was checked: try again", id)
}

// CreateApplication creates an application named name; its creator has
// full access to it.
func (s *Store) CreateApplication(ctx context.Context, name, by string) (Application, error) {
	if err := checkID("application name", name); err != nil {
		return Application{}, err
	}
	id := uuid.NewString()
	err := update(ctx, s, AppSubject(id), by, newApp, func(a *appState) ([]schemas.Event, error) {
		if a.ID != "" {
			return nil, fault.Conflict("application %s exists", id)
		}
		return []schemas.Event{&schemas.ApplicationCreated{ID: id, Name: name, Time: s.millis(), By: by}}, nil
	})
	if err != nil {
		return Application{}, err
	}
	return s.GetApplication(ctx, id)
}

// UpdateApplication renames application checked (see updateApp).
func (s *Store) UpdateApplication(ctx context.Context, id, name, by string, checked *Application) (Application, error) {
	if err := checkID("application name", name); err != nil {
		return Application{}, err
	}
	err := s.updateApp(ctx, id, by, checked, func(a *appState) ([]schemas.Event, error) {
		return []schemas.Event{&schemas.ApplicationUpdated{ID: id, Name: name, Time: s.millis(), By: by}}, nil
	})
	if err != nil {
		return Application{}, err
	}
	return s.GetApplication(ctx, id)
}

// DeleteApplication deletes application checked (see updatePowers) with
// its access keys (their tokens stop working at once) and revokes the
// grants given to it.
func (s *Store) DeleteApplication(ctx context.Context, id, by string, checked *Application) error {
	err := s.updatePowers(ctx, id, by, checked, func(a *appState) ([]schemas.Event, error) {
		return []schemas.Event{&schemas.ApplicationDeleted{ID: id, Time: s.millis(), By: by}}, nil
	})
	if err != nil {
		return err
	}
	return s.RevokeAll(ctx, Subject{Type: SubjectUser, ID: AppPrefix + id}, "", by)
}

// GetApplication returns application id from the read model.
func (s *Store) GetApplication(ctx context.Context, id string) (Application, error) {
	a, err := s.app(id)
	if err != nil {
		return Application{}, err
	}
	return a.view(), nil
}

func (s *Store) app(id string) (*appState, error) {
	var a appState
	found, err := getValue(s.reader, appKey(id), &a)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, appNotFound(id)
	}
	return &a, nil
}

// ListApplications returns every application, by id.
func (s *Store) ListApplications(ctx context.Context) ([]Application, error) {
	out := []Application{}
	err := scanValues(s.reader, appKeyPrefix, func(v []byte) error {
		var a appState
		if err := msgpackUnmarshal(v, &a); err != nil {
			return err
		}
		out = append(out, a.view())
		return nil
	})
	return out, err
}

// SetApplicationRole adds (or, with remove, removes) a role of
// application checked (see updateApp). Whether the caller may hand out the
// role is the caller's check (CanAssignRole).
func (s *Store) SetApplicationRole(ctx context.Context, id, role string, remove bool, by string, checked *Application) error {
	if !slices.Contains(Roles, role) {
		return fault.Invalid("unknown role %q: want one of %s", role, strings.Join(Roles, ", "))
	}
	return s.updateApp(ctx, id, by, checked, func(a *appState) ([]schemas.Event, error) {
		has := slices.Contains(a.Roles, role)
		if has != remove {
			return nil, nil // nothing to change
		}
		ev := &schemas.ApplicationRolesSet{ID: id, Time: s.millis(), By: by}
		if remove {
			ev.Roles, ev.Removed = slices.DeleteFunc(slices.Clone(a.Roles), func(r string) bool { return r == role }), []string{role}
		} else {
			ev.Roles, ev.Added = append(slices.Clone(a.Roles), role), []string{role}
		}
		slices.Sort(ev.Roles)
		return []schemas.Event{ev}, nil
	})
}

// ApplicationTags returns an application's tags ([] when none).
func (s *Store) ApplicationTags(ctx context.Context, id string) ([]conductor.Tag, error) {
	a, err := s.GetApplication(ctx, id)
	if err != nil {
		return nil, err
	}
	if a.Tags == nil {
		return []conductor.Tag{}, nil
	}
	return a.Tags, nil
}

// ChangeApplicationTags adds tags to (or, with remove, removes them from)
// an application's tag set, held to what every holder's is (taglimit); a
// key is an identifier besides. A removal's tags are taken as sent
// (taglimit.Removal): one stored before the limits may still go. The
// change applies to application checked (see updateApp): a tag grant may
// be what lets the caller change the tags, and one taken away meanwhile
// must not be put back.
func (s *Store) ChangeApplicationTags(ctx context.Context, id string, tags []conductor.Tag, remove bool, by string, checked *Application) error {
	valid := taglimit.Removal(tags)
	if !remove {
		ve := &fault.ValidationError{}
		valid = taglimit.Check(ve, "", tags)
		if err := ve.Err(); err != nil {
			return err
		}
		for i, t := range tags {
			if err := checkID(fmt.Sprintf("tags[%d].key", i), t.Key); err != nil {
				return err
			}
		}
	}
	given := make([]schemas.DefTag, len(valid))
	for i, t := range valid {
		given[i] = schemas.DefTag{Key: t.Key, Value: t.Value}
	}
	return s.updateApp(ctx, id, by, checked, func(a *appState) ([]schemas.Event, error) {
		next := slices.Clone(a.Tags)
		for _, t := range given {
			if remove {
				next = slices.DeleteFunc(next, func(x schemas.DefTag) bool { return x == t })
			} else if !slices.Contains(next, t) {
				next = append(next, t)
			}
		}
		if slices.Equal(next, a.Tags) {
			return nil, nil
		}
		if err := taglimit.Fit("", "application "+id, len(a.Tags), len(next)); err != nil {
			return nil, err
		}
		return []schemas.Event{&schemas.ApplicationTagsSet{ID: id, Tags: next, Time: s.millis(), By: by}}, nil
	})
}

// CreateAccessKey creates an access key for application checked (see
// updatePowers). The secret is in the result and nowhere else: the log
// keeps only its argon2id hash.
func (s *Store) CreateAccessKey(ctx context.Context, appID, by string, checked *Application) (NewAccessKey, error) {
	key := NewAccessKey{ID: uuid.NewString(), Secret: newSecret()}
	var hash string
	err := s.updatePowers(ctx, appID, by, checked, func(a *appState) ([]schemas.Event, error) {
		if len(a.Keys) >= maxKeysPerApp {
			return nil, fault.Conflict("application %s already has %d access keys: delete one first", appID, maxKeysPerApp)
		}
		// Hashed once the key is due, not for an application refused.
		if hash == "" {
			if err := s.hash(ctx, func() { hash = hashSecret(key.Secret) }); err != nil {
				return nil, err
			}
		}
		return []schemas.Event{&schemas.AccessKeyCreated{AppID: appID, KeyID: key.ID, Hash: hash, Time: s.millis(), By: by}}, nil
	})
	if err != nil {
		return NewAccessKey{}, err
	}
	return key, nil
}

// AccessKeys lists an application's access keys, oldest first.
func (s *Store) AccessKeys(ctx context.Context, appID string) ([]AccessKey, error) {
	a, err := s.app(appID)
	if err != nil {
		return nil, err
	}
	out := make([]AccessKey, len(a.Keys))
	for i, k := range a.Keys {
		out[i] = keyView(k)
	}
	return out, nil
}

// ToggleAccessKey flips a key of application checked (see updatePowers)
// between ACTIVE and INACTIVE ("pause"). An inactive key mints no tokens,
// and the tokens it minted are refused.
func (s *Store) ToggleAccessKey(ctx context.Context, appID, keyID, by string, checked *Application) (AccessKey, error) {
	err := s.updatePowers(ctx, appID, by, checked, func(a *appState) ([]schemas.Event, error) {
		i, ok := a.key(keyID)
		if !ok {
			return nil, keyNotFound(keyID)
		}
		status := KeyInactive
		if a.Keys[i].Status == KeyInactive {
			status = KeyActive
		}
		return []schemas.Event{&schemas.AccessKeyStatusSet{AppID: appID, KeyID: keyID, Status: status, Time: s.millis(), By: by}}, nil
	})
	if err != nil {
		return AccessKey{}, err
	}
	a, err := s.app(appID)
	if err != nil {
		return AccessKey{}, err
	}
	i, ok := a.key(keyID)
	if !ok {
		return AccessKey{}, keyNotFound(keyID)
	}
	return keyView(a.Keys[i]), nil
}

// DeleteAccessKey deletes an access key of application checked (see
// updatePowers); its tokens are refused from the next request on.
func (s *Store) DeleteAccessKey(ctx context.Context, appID, keyID, by string, checked *Application) error {
	return s.updatePowers(ctx, appID, by, checked, func(a *appState) ([]schemas.Event, error) {
		if _, ok := a.key(keyID); !ok {
			return nil, keyNotFound(keyID)
		}
		return []schemas.Event{&schemas.AccessKeyDeleted{AppID: appID, KeyID: keyID, Time: s.millis(), By: by}}, nil
	})
}

// ApplicationByKey returns the application that owns access key keyID.
func (s *Store) ApplicationByKey(ctx context.Context, keyID string) (Application, error) {
	appID, err := s.reader.Get(keyKey(keyID))
	if err != nil {
		return Application{}, keyNotFound(keyID)
	}
	return s.GetApplication(ctx, string(appID))
}

// Why a key was refused; these go to logs and audit events, never to the
// client, which learns only that the credentials were not accepted.
var (
	errKeyUnknown  = errors.New("unknown access key")
	errKeyInactive = errors.New("access key is inactive")
	errKeySecret   = errors.New("wrong access key secret")
)

// VerifyAccessKey checks keyID's secret and status and returns the owning
// application. An unknown key costs one hash like a known one, so timing
// does not reveal which key ids exist. The error is errKeyUnknown,
// errKeySecret or errKeyInactive (wrapping fault.ErrUnauthorized), or a
// failure to read.
func (s *Store) VerifyAccessKey(ctx context.Context, keyID, secret string) (Application, error) {
	var a *appState
	hash := ""
	if appID, err := s.reader.Get(keyKey(keyID)); err == nil {
		if a, err = s.app(string(appID)); err != nil && !errors.Is(err, fault.ErrNotFound) {
			return Application{}, err
		}
	}
	var key keyState
	if a != nil {
		if i, ok := a.key(keyID); ok {
			key = a.Keys[i]
			hash = key.Hash
		}
	}
	var ok bool
	var verr error
	err := s.hash(ctx, func() {
		if hash == "" {
			_, _ = verifySecret(dummyHash(), secret)
			return
		}
		ok, verr = verifySecret(hash, secret)
	})
	switch {
	case err != nil:
		return Application{}, err
	case hash == "":
		return Application{}, fmt.Errorf("%w: %w", errKeyUnknown, fault.ErrUnauthorized)
	case verr != nil:
		return Application{}, fmt.Errorf("access key %s: %w", keyID, verr)
	case !ok:
		return Application{}, fmt.Errorf("%w: %w", errKeySecret, fault.ErrUnauthorized)
	case key.Status != KeyActive:
		return Application{}, fmt.Errorf("%w: %w", errKeyInactive, fault.ErrUnauthorized)
	}
	return a.view(), nil
}

// keyUsable reports whether access key keyID of application appID exists
// and is active (checked on every request that carries a token).
func (s *Store) keyUsable(appID, keyID string) (bool, error) {
	a, err := s.app(appID)
	if errors.Is(err, fault.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	i, ok := a.key(keyID)
	return ok && a.Keys[i].Status == KeyActive, nil
}

// BootstrapAppID is the id of the admin application a fresh server creates.
const BootstrapAppID = "bootstrap-admin"

// Bootstrap creates the bootstrap admin application with one access key
// when FV_AUTH holds nothing yet, and returns the key (created false:
// nothing was done). The application has a fixed id, so when several
// engines start on an empty log at once exactly one append wins; the
// others see a conflict and create nothing.
//
// keep, when not nil, is given the key before it is recorded, and its
// error stops the bootstrap: once the record is stored no later call
// makes a key, so a process that dies before Bootstrap returns has the
// key only where keep put it. After a conflict the key kept opens
// nothing.
func (s *Store) Bootstrap(ctx context.Context, keep func(NewAccessKey) error) (key NewAccessKey, created bool, err error) {
	last, err := s.log.StreamLastSeq(ctx, eventlog.Access.Name)
	if err != nil || last > 0 {
		return NewAccessKey{}, false, err
	}
	key = NewAccessKey{ID: uuid.NewString(), Secret: newSecret()}
	var hash string
	if err := s.hash(ctx, func() { hash = hashSecret(key.Secret) }); err != nil {
		return NewAccessKey{}, false, err
	}
	if keep != nil {
		if err := keep(key); err != nil {
			return NewAccessKey{}, false, err
		}
	}
	const by = "flowvault bootstrap"
	now := s.millis()
	events := []schemas.Event{
		&schemas.ApplicationCreated{ID: BootstrapAppID, Name: "Bootstrap admin", Time: now, By: by},
		&schemas.ApplicationRolesSet{ID: BootstrapAppID, Roles: []string{RoleAdmin}, Added: []string{RoleAdmin}, Time: now, By: by},
		&schemas.AccessKeyCreated{AppID: BootstrapAppID, KeyID: key.ID, Hash: hash, Time: now, By: by},
	}
	seq, err := s.append(ctx, AppSubject(BootstrapAppID), by, 0, events)
	if errors.Is(err, eventlog.ErrConflict) {
		return NewAccessKey{}, false, nil
	}
	if err != nil {
		return NewAccessKey{}, false, projections.AppendFault(err)
	}
	return key, true, s.wait(ctx, AppSubject(BootstrapAppID), seq)
}
