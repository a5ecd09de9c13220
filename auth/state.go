package auth

import (
	"fmt"
	"slices"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/flowvault/flowvault/projections"
	"github.com/flowvault/flowvault/schemas"
)

func msgpackUnmarshal(b []byte, v any) error { return msgpack.Unmarshal(b, v) }

// Access key statuses.
const (
	KeyActive   = "ACTIVE"
	KeyInactive = "INACTIVE"
)

// aggregate is the state of one subject: the read model stores it and the
// Store folds it from the log before deciding a change. apply is pure; an
// event that cannot apply (it contradicts the state) is an error wrapping
// projections.ErrPoison.
type aggregate interface {
	apply(ev schemas.Event) error
}

func poison(format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), projections.ErrPoison)
}

// appState is an application with its access keys.
type appState struct {
	ID         string           `msgpack:"id"`
	Name       string           `msgpack:"n"`
	Roles      []string         `msgpack:"roles,omitempty"`
	Tags       []schemas.DefTag `msgpack:"tags,omitempty"`
	Groups     []string         `msgpack:"groups,omitempty"`
	Keys       []keyState       `msgpack:"keys,omitempty"`
	CreateTime int64            `msgpack:"ct"`
	UpdateTime int64            `msgpack:"ut"`
	CreatedBy  string           `msgpack:"cb,omitempty"`
	UpdatedBy  string           `msgpack:"ub,omitempty"`
	// Deleted is only ever set in a fold: the read model drops the key.
	Deleted bool `msgpack:"-"`
}

// keyState is one access key. Hash is the argon2id hash of its secret.
type keyState struct {
	ID        string `msgpack:"id"`
	Hash      string `msgpack:"h"`
	Status    string `msgpack:"st"`
	CreatedAt int64  `msgpack:"ct"`
}

func (a *appState) exists() bool { return a.ID != "" && !a.Deleted }

func (a *appState) key(id string) (int, bool) {
	i := slices.IndexFunc(a.Keys, func(k keyState) bool { return k.ID == id })
	return i, i >= 0
}

func (a *appState) touch(at int64, by string) { a.UpdateTime, a.UpdatedBy = at, by }

func (a *appState) apply(ev schemas.Event) error {
	if _, created := ev.(*schemas.ApplicationCreated); !created && !a.exists() {
		return poison("%s for an application that does not exist", ev.EventType())
	}
	switch e := ev.(type) {
	case *schemas.ApplicationCreated:
		if a.ID != "" {
			return poison("application %s created twice", e.ID)
		}
		*a = appState{ID: e.ID, Name: e.Name, CreateTime: e.Time, UpdateTime: e.Time, CreatedBy: e.By, UpdatedBy: e.By}
	case *schemas.ApplicationUpdated:
		a.Name = e.Name
		a.touch(e.Time, e.By)
	case *schemas.ApplicationDeleted:
		a.Deleted = true
	case *schemas.ApplicationRolesSet:
		a.Roles = slices.Clone(e.Roles)
		a.touch(e.Time, e.By)
	case *schemas.ApplicationTagsSet:
		a.Tags = slices.Clone(e.Tags)
		a.touch(e.Time, e.By)
	case *schemas.ApplicationGroupsSet:
		a.Groups = slices.Clone(e.Groups)
		a.touch(e.Time, e.By)
	case *schemas.AccessKeyCreated:
		if _, dup := a.key(e.KeyID); dup {
			return poison("access key %s created twice", e.KeyID)
		}
		a.Keys = append(a.Keys, keyState{ID: e.KeyID, Hash: e.Hash, Status: KeyActive, CreatedAt: e.Time})
	case *schemas.AccessKeyStatusSet:
		i, ok := a.key(e.KeyID)
		if !ok || (e.Status != KeyActive && e.Status != KeyInactive) {
			return poison("status %q of access key %s", e.Status, e.KeyID)
		}
		a.Keys[i].Status = e.Status
	case *schemas.AccessKeyDeleted:
		i, ok := a.key(e.KeyID)
		if !ok {
			return poison("deleting unknown access key %s", e.KeyID)
		}
		a.Keys = slices.Delete(a.Keys, i, i+1)
	default:
		return poison("unexpected event %s on an application subject", ev.EventType())
	}
	return nil
}

// userState is a user.
type userState struct {
	ID         string   `msgpack:"id"`
	Name       string   `msgpack:"n"`
	Roles      []string `msgpack:"roles,omitempty"`
	Groups     []string `msgpack:"groups,omitempty"`
	CreateTime int64    `msgpack:"ct"`
	UpdateTime int64    `msgpack:"ut"`
	CreatedBy  string   `msgpack:"cb,omitempty"`
	UpdatedBy  string   `msgpack:"ub,omitempty"`
	Deleted    bool     `msgpack:"-"`
}

func (u *userState) exists() bool { return u.ID != "" && !u.Deleted }

func (u *userState) apply(ev schemas.Event) error {
	switch e := ev.(type) {
	case *schemas.UserUpserted:
		if !u.exists() {
			*u = userState{ID: e.ID, CreateTime: e.Time, CreatedBy: e.By}
		}
		u.Name, u.Roles, u.Groups = e.Name, slices.Clone(e.Roles), slices.Clone(e.Groups)
		u.UpdateTime, u.UpdatedBy = e.Time, e.By
	case *schemas.UserGroupsSet:
		if !u.exists() {
			return poison("groups of user %s, who does not exist", e.ID)
		}
		u.Groups = slices.Clone(e.Groups)
		u.UpdateTime, u.UpdatedBy = e.Time, e.By
	case *schemas.UserDeleted:
		if !u.exists() {
			return poison("deleting user %s, who does not exist", e.ID)
		}
		u.Deleted = true
	default:
		return poison("unexpected event %s on a user subject", ev.EventType())
	}
	return nil
}

// groupState is a group.
type groupState struct {
	ID            string                  `msgpack:"id"`
	Description   string                  `msgpack:"d"`
	Roles         []string                `msgpack:"roles,omitempty"`
	DefaultAccess []schemas.DefaultAccess `msgpack:"da,omitempty"`
	CreateTime    int64                   `msgpack:"ct"`
	UpdateTime    int64                   `msgpack:"ut"`
	CreatedBy     string                  `msgpack:"cb,omitempty"`
	UpdatedBy     string                  `msgpack:"ub,omitempty"`
	Deleted       bool                    `msgpack:"-"`
}

func (g *groupState) exists() bool { return g.ID != "" && !g.Deleted }

func (g *groupState) apply(ev schemas.Event) error {
	switch e := ev.(type) {
	case *schemas.GroupUpserted:
		if !g.exists() {
			*g = groupState{ID: e.ID, CreateTime: e.Time, CreatedBy: e.By}
		}
		g.Description, g.Roles, g.DefaultAccess = e.Description, slices.Clone(e.Roles), slices.Clone(e.DefaultAccess)
		g.UpdateTime, g.UpdatedBy = e.Time, e.By
	case *schemas.GroupDeleted:
		if !g.exists() {
			return poison("deleting group %s, which does not exist", e.ID)
		}
		g.Deleted = true
	default:
		return poison("unexpected event %s on a group subject", ev.EventType())
	}
	return nil
}

// grantState is every grant on one target: subject → accesses.
type grantState map[Subject][]Access

func (g grantState) apply(ev schemas.Event) error {
	e, ok := ev.(*schemas.GrantSet)
	if !ok {
		return poison("unexpected event %s on a grant subject", ev.EventType())
	}
	s := Subject{Type: e.SubjectType, ID: e.SubjectID}
	if len(e.Access) == 0 {
		delete(g, s)
		return nil
	}
	acc := make([]Access, len(e.Access))
	for i, a := range e.Access {
		acc[i] = Access(a)
	}
	g[s] = acc
	return nil
}

// idOf is the id of the aggregate an event changes (for grants: none).
func idOf(ev schemas.Event) string {
	switch e := ev.(type) {
	case *schemas.ApplicationCreated:
		return e.ID
	case *schemas.ApplicationUpdated:
		return e.ID
	case *schemas.ApplicationDeleted:
		return e.ID
	case *schemas.ApplicationRolesSet:
		return e.ID
	case *schemas.ApplicationTagsSet:
		return e.ID
	case *schemas.ApplicationGroupsSet:
		return e.ID
	case *schemas.AccessKeyCreated:
		return e.AppID
	case *schemas.AccessKeyStatusSet:
		return e.AppID
	case *schemas.AccessKeyDeleted:
		return e.AppID
	case *schemas.UserUpserted:
		return e.ID
	case *schemas.UserGroupsSet:
		return e.ID
	case *schemas.UserDeleted:
		return e.ID
	case *schemas.GroupUpserted:
		return e.ID
	case *schemas.GroupDeleted:
		return e.ID
	}
	return ""
}

// eventSubject is the subject an event belongs on; the projection refuses
// an event recorded anywhere else.
func eventSubject(ev schemas.Event) string {
	switch e := ev.(type) {
	case *schemas.ApplicationCreated, *schemas.ApplicationUpdated, *schemas.ApplicationDeleted,
		*schemas.ApplicationRolesSet, *schemas.ApplicationTagsSet, *schemas.ApplicationGroupsSet, *schemas.AccessKeyCreated,
		*schemas.AccessKeyStatusSet, *schemas.AccessKeyDeleted:
		return AppSubject(idOf(ev))
	case *schemas.UserUpserted, *schemas.UserGroupsSet, *schemas.UserDeleted:
		return UserSubject(idOf(ev))
	case *schemas.GroupUpserted, *schemas.GroupDeleted:
		return GroupSubject(idOf(ev))
	case *schemas.GrantSet:
		return GrantSubject(Target{Type: e.TargetType, ID: e.TargetID})
	}
	return ""
}

// isAuthType reports whether t is an identity or grant event (the FV_AUTH
// stream's types); other types are ignored so that a newer writer's
// additions do not stop an older reader.
func isAuthType(t string) bool {
	switch t {
	case schemas.TypeApplicationCreated, schemas.TypeApplicationUpdated, schemas.TypeApplicationDeleted,
		schemas.TypeApplicationRolesSet, schemas.TypeApplicationTagsSet, schemas.TypeAccessKeyCreated,
		schemas.TypeAccessKeyStatusSet, schemas.TypeAccessKeyDeleted, schemas.TypeUserUpserted,
		schemas.TypeUserGroupsSet, schemas.TypeUserDeleted, schemas.TypeGroupUpserted,
		schemas.TypeGroupDeleted, schemas.TypeGrantSet, schemas.TypeApplicationGroupsSet:
		return true
	}
	return false
}

// decodeRecord decodes the identity and grant events of one record and
// checks that each belongs on the record's subject.
func decodeRecord(subject string, envs []schemas.Envelope) ([]schemas.Event, error) {
	out := make([]schemas.Event, 0, len(envs))
	for _, env := range envs {
		if !isAuthType(env.Type) {
			continue
		}
		ev, err := schemas.Default.Decode(env)
		if err != nil {
			return nil, err
		}
		if want := eventSubject(ev); want != subject {
			return nil, poison("event %s %s belongs on %s", env.Type, env.ID, want)
		}
		out = append(out, ev)
	}
	return out, nil
}
