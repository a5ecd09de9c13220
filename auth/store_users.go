package auth

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/schemas"
)

// User is a user, or an application seen as a user (ApplicationUser, id
// "app:<id>").
type User struct {
	ID              string
	Name            string
	Roles           []string
	Groups          []string
	ApplicationUser bool
}

// Group is a group of users. Its roles stack onto its members' roles;
// DefaultAccess is the access it gets on what its members create.
type Group struct {
	ID            string
	Description   string
	Roles         []string
	DefaultAccess map[string][]Access
}

// UserRequest is PUT /api/users/{id} (Orkes's UpsertUserRequest).
type UserRequest struct {
	Name   string   `json:"name"`
	Roles  []string `json:"roles"`
	Groups []string `json:"groups"`
}

// GroupRequest is PUT /api/groups/{id} (Orkes's UpsertGroupRequest).
type GroupRequest struct {
	Description   string              `json:"description"`
	Roles         []string            `json:"roles"`
	DefaultAccess map[string][]string `json:"defaultAccess"`
}

// DefaultAccessTypes are the target types a group's default access may
// name.
var DefaultAccessTypes = []string{TargetWorkflowDef, TargetTaskDef, TargetWorkflowSchedule}

func userNotFound(id string) error  { return fault.NotFound("User %s not found", id) }
func groupNotFound(id string) error { return fault.NotFound("Group %s not found", id) }

func newUser() *userState   { return &userState{} }
func newGroup() *groupState { return &groupState{} }

// checkRoles validates and normalises role names (upper case, sorted,
// once each).
func checkRoles(roles []string) ([]string, error) {
	out := make([]string, 0, len(roles))
	for _, r := range roles {
		r = strings.ToUpper(strings.TrimSpace(r))
		if !slices.Contains(Roles, r) {
			return nil, fault.Invalid("unknown role %q: want one of %s", r, strings.Join(Roles, ", "))
		}
		if !slices.Contains(out, r) {
			out = append(out, r)
		}
	}
	slices.Sort(out)
	return out, nil
}

// UpsertUser creates or replaces a user: name, roles and groups (which
// must exist). Ids starting with "app:" are reserved for applications.
func (s *Store) UpsertUser(ctx context.Context, id string, req UserRequest, by string) (User, error) {
	if err := checkID("user id", id); err != nil {
		return User{}, err
	}
	if strings.HasPrefix(id, AppPrefix) {
		return User{}, fault.Invalid("Prefix '%s' is reserved for applications", AppPrefix)
	}
	if strings.TrimSpace(req.Name) == "" {
		return User{}, fault.Invalid("name: the user's name must not be empty")
	}
	roles, err := checkRoles(req.Roles)
	if err != nil {
		return User{}, err
	}
	groups := slices.Clone(req.Groups)
	slices.Sort(groups)
	groups = slices.Compact(groups)
	for _, g := range groups {
		if _, err := s.group(g); err != nil {
			return User{}, err
		}
	}
	if err := s.startClean(ctx, Subject{Type: SubjectUser, ID: id}, by); err != nil {
		return User{}, err
	}
	err = update(ctx, s, UserSubject(id), by, newUser, func(*userState) ([]schemas.Event, error) {
		return []schemas.Event{&schemas.UserUpserted{ID: id, Name: req.Name, Roles: roles, Groups: groups, Time: s.millis(), By: by}}, nil
	})
	if err != nil {
		return User{}, err
	}
	return s.GetUser(ctx, id)
}

// GetUser returns user id, or the application "app:<id>" as a user.
func (s *Store) GetUser(ctx context.Context, id string) (User, error) {
	if appID, ok := strings.CutPrefix(id, AppPrefix); ok {
		a, err := s.app(appID)
		if errors.Is(err, fault.ErrNotFound) {
			return User{}, userNotFound(id)
		}
		if err != nil {
			return User{}, err
		}
		return appUser(a), nil
	}
	u, err := s.user(id)
	if err != nil {
		return User{}, err
	}
	return u.view(), nil
}

func appUser(a *appState) User {
	return User{ID: AppPrefix + a.ID, Name: a.Name, Roles: slices.Clone(a.Roles), Groups: slices.Clone(a.Groups), ApplicationUser: true}
}

func (u *userState) view() User {
	return User{ID: u.ID, Name: u.Name, Roles: slices.Clone(u.Roles), Groups: slices.Clone(u.Groups)}
}

func (s *Store) user(id string) (*userState, error) {
	var u userState
	found, err := getValue(s.reader, userKey(id), &u)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, userNotFound(id)
	}
	return &u, nil
}

// ListUsers returns every user by id, and with apps every application as
// a user too.
func (s *Store) ListUsers(ctx context.Context, apps bool) ([]User, error) {
	out := []User{}
	err := scanValues(s.reader, userKeyPrefix, func(v []byte) error {
		var u userState
		if err := msgpackUnmarshal(v, &u); err != nil {
			return err
		}
		out = append(out, u.view())
		return nil
	})
	if err != nil || !apps {
		return out, err
	}
	err = scanValues(s.reader, appKeyPrefix, func(v []byte) error {
		var a appState
		if err := msgpackUnmarshal(v, &a); err != nil {
			return err
		}
		out = append(out, appUser(&a))
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, err
}

// DeleteUser deletes a user and revokes the grants given to it.
func (s *Store) DeleteUser(ctx context.Context, id, by string) error {
	if strings.HasPrefix(id, AppPrefix) {
		return fault.Invalid("%s is an application: delete it with DELETE /api/applications/%s", id, strings.TrimPrefix(id, AppPrefix))
	}
	if err := checkID("user id", id); err != nil {
		return userNotFound(id)
	}
	err := update(ctx, s, UserSubject(id), by, newUser, func(u *userState) ([]schemas.Event, error) {
		if !u.exists() {
			return nil, userNotFound(id)
		}
		return []schemas.Event{&schemas.UserDeleted{ID: id, Time: s.millis(), By: by}}, nil
	})
	if err != nil {
		return err
	}
	return s.RevokeAll(ctx, Subject{Type: SubjectUser, ID: id}, "", by)
}

// UpsertGroup creates or replaces a group.
func (s *Store) UpsertGroup(ctx context.Context, id string, req GroupRequest, by string) (Group, error) {
	if err := checkID("group id", id); err != nil {
		return Group{}, err
	}
	roles, err := checkRoles(req.Roles)
	if err != nil {
		return Group{}, err
	}
	var defaults []schemas.DefaultAccess
	for tt, accs := range req.DefaultAccess {
		if !slices.Contains(DefaultAccessTypes, tt) {
			return Group{}, fault.Invalid("defaultAccess: target type %q: want one of %s", tt, strings.Join(DefaultAccessTypes, ", "))
		}
		parsed, err := parseAccesses(accs)
		if err != nil {
			return Group{}, fault.Invalid("defaultAccess.%s: %v", tt, err)
		}
		defaults = append(defaults, schemas.DefaultAccess{TargetType: tt, Access: accessStrings(parsed)})
	}
	sort.Slice(defaults, func(i, j int) bool { return defaults[i].TargetType < defaults[j].TargetType })
	if err := s.startClean(ctx, Subject{Type: SubjectGroup, ID: id}, by); err != nil {
		return Group{}, err
	}
	err = update(ctx, s, GroupSubject(id), by, newGroup, func(*groupState) ([]schemas.Event, error) {
		return []schemas.Event{&schemas.GroupUpserted{ID: id, Description: req.Description, Roles: roles,
			DefaultAccess: defaults, Time: s.millis(), By: by}}, nil
	})
	if err != nil {
		return Group{}, err
	}
	return s.GetGroup(ctx, id)
}

// GetGroup returns group id.
func (s *Store) GetGroup(ctx context.Context, id string) (Group, error) {
	g, err := s.group(id)
	if err != nil {
		return Group{}, err
	}
	return g.view(), nil
}

func (g *groupState) view() Group {
	out := Group{ID: g.ID, Description: g.Description, Roles: slices.Clone(g.Roles), DefaultAccess: map[string][]Access{}}
	for _, d := range g.DefaultAccess {
		for _, a := range d.Access {
			out.DefaultAccess[d.TargetType] = append(out.DefaultAccess[d.TargetType], Access(a))
		}
	}
	return out
}

func (s *Store) group(id string) (*groupState, error) {
	var g groupState
	found, err := getValue(s.reader, groupKey(id), &g)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, groupNotFound(id)
	}
	return &g, nil
}

// ListGroups returns every group by id.
func (s *Store) ListGroups(ctx context.Context) ([]Group, error) {
	out := []Group{}
	err := scanValues(s.reader, groupKeyPrefix, func(v []byte) error {
		var g groupState
		if err := msgpackUnmarshal(v, &g); err != nil {
			return err
		}
		out = append(out, g.view())
		return nil
	})
	return out, err
}

// DeleteGroup deletes a group, takes its members out of it (so that a new
// group of the same name starts empty) and revokes the grants given to it.
// Each member is a change of its own: if one fails, the group is already
// gone and principals ignore memberships of groups that do not exist.
func (s *Store) DeleteGroup(ctx context.Context, id, by string) error {
	if err := checkID("group id", id); err != nil {
		return groupNotFound(id)
	}
	err := update(ctx, s, GroupSubject(id), by, newGroup, func(g *groupState) ([]schemas.Event, error) {
		if !g.exists() {
			return nil, groupNotFound(id)
		}
		return []schemas.Event{&schemas.GroupDeleted{ID: id, Time: s.millis(), By: by}}, nil
	})
	if err != nil {
		return err
	}
	members, err := s.memberIDs(id)
	if err != nil {
		return err
	}
	if err := s.setMembership(ctx, id, members, true, by); err != nil {
		return err
	}
	return s.RevokeAll(ctx, Subject{Type: SubjectGroup, ID: id}, "", by)
}

// startClean clears what a deleted user or group of sub's id left behind
// before the id is created again: its deletion appends the deletion, then
// revokes its grants and (a group) its members' memberships, each an
// append of its own, and one that failed half-way would hand a new user
// or group of the same id the old one's rights. Grants and memberships
// need their subject to exist, so an id that does not exist holds only
// leftovers. An existing one is left alone.
func (s *Store) startClean(ctx context.Context, sub Subject, by string) error {
	var err error
	switch sub.Type {
	case SubjectUser:
		_, err = s.GetUser(ctx, sub.ID)
	case SubjectGroup:
		_, err = s.group(sub.ID)
	}
	if !errors.Is(err, fault.ErrNotFound) {
		return err
	}
	if sub.Type == SubjectGroup {
		members, err := s.memberIDs(sub.ID)
		if err != nil {
			return err
		}
		if err := s.setMembership(ctx, sub.ID, members, true, by); err != nil {
			return err
		}
	}
	return s.RevokeAll(ctx, sub, "", by)
}

// ChangeMembers adds users or applications ("app:<id>") to a group (or,
// with remove, takes them out). The group and, when adding, every member
// must exist. Each member is a change of its own subject.
func (s *Store) ChangeMembers(ctx context.Context, groupID string, userIDs []string, remove bool, by string) error {
	if _, err := s.group(groupID); err != nil {
		return err
	}
	if !remove {
		for _, u := range userIDs {
			if _, err := s.GetUser(ctx, u); err != nil {
				return err
			}
		}
	}
	return s.setMembership(ctx, groupID, userIDs, remove, by)
}

// joined returns groups with groupID added, or removed; changed is false
// when that is already so.
func joined(groups []string, groupID string, remove bool) (out []string, changed bool) {
	if slices.Contains(groups, groupID) != remove {
		return groups, false
	}
	out = slices.DeleteFunc(slices.Clone(groups), func(g string) bool { return g == groupID })
	if !remove {
		out = append(out, groupID)
		slices.Sort(out)
	}
	return out, true
}

func (s *Store) setMembership(ctx context.Context, groupID string, userIDs []string, remove bool, by string) error {
	for _, uid := range userIDs {
		if appID, ok := strings.CutPrefix(uid, AppPrefix); ok {
			err := update(ctx, s, AppSubject(appID), by, newApp, func(a *appState) ([]schemas.Event, error) {
				if !a.exists() {
					if remove {
						return nil, nil
					}
					return nil, appNotFound(appID)
				}
				groups, changed := joined(a.Groups, groupID, remove)
				if !changed {
					return nil, nil
				}
				return []schemas.Event{&schemas.ApplicationGroupsSet{ID: appID, Groups: groups, Time: s.millis(), By: by}}, nil
			})
			if err != nil {
				return fmt.Errorf("application %s: %w", appID, err)
			}
			continue
		}
		err := update(ctx, s, UserSubject(uid), by, newUser, func(u *userState) ([]schemas.Event, error) {
			if !u.exists() {
				if remove {
					return nil, nil
				}
				return nil, userNotFound(uid)
			}
			groups, changed := joined(u.Groups, groupID, remove)
			if !changed {
				return nil, nil
			}
			return []schemas.Event{&schemas.UserGroupsSet{ID: uid, Groups: groups, Time: s.millis(), By: by}}, nil
		})
		if err != nil {
			return fmt.Errorf("user %s: %w", uid, err)
		}
	}
	return nil
}

// memberIDs lists the ids of a group's members.
func (s *Store) memberIDs(groupID string) ([]string, error) {
	var out []string
	prefix := string(memberKey(groupID, ""))
	err := s.reader.Scan([]byte(prefix), func(k, _ []byte) bool {
		out = append(out, string(k[len(prefix):]))
		return true
	})
	return out, err
}

// GroupMembers returns the users of a group.
func (s *Store) GroupMembers(ctx context.Context, groupID string) ([]User, error) {
	if _, err := s.group(groupID); err != nil {
		return nil, err
	}
	ids, err := s.memberIDs(groupID)
	if err != nil {
		return nil, err
	}
	out := make([]User, 0, len(ids))
	for _, id := range ids {
		u, err := s.GetUser(ctx, id)
		if errors.Is(err, fault.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, nil
}

// Principal returns the principal of a user or application id as of the
// read model: its roles plus, for users, the roles of every group it
// belongs to (stacking). Groups that no longer exist are ignored.
func (s *Store) Principal(ctx context.Context, id string) (Principal, error) {
	u, err := s.GetUser(ctx, id)
	if err != nil {
		return Principal{}, err
	}
	p := Principal{ID: u.ID, Roles: slices.Clone(u.Roles)}
	for _, gid := range u.Groups {
		g, err := s.group(gid)
		if errors.Is(err, fault.ErrNotFound) {
			continue
		}
		if err != nil {
			return Principal{}, err
		}
		p.Groups = append(p.Groups, gid)
		for _, r := range g.Roles {
			if !slices.Contains(p.Roles, r) {
				p.Roles = append(p.Roles, r)
			}
		}
	}
	slices.Sort(p.Roles)
	return p, nil
}

// parseAccesses reads access names (case-insensitive), once each, in
// canonical order.
func parseAccesses(names []string) ([]Access, error) {
	if len(names) == 0 {
		return nil, errors.New("access must name at least one of CREATE, READ, UPDATE, DELETE, EXECUTE")
	}
	var set []Access
	for _, n := range names {
		a, err := ParseAccess(n)
		if err != nil {
			return nil, err
		}
		set = append(set, a)
	}
	return canonical(set), nil
}

// canonical returns the distinct accesses of set in AllAccess order.
func canonical(set []Access) []Access {
	out := []Access{}
	for _, a := range AllAccess {
		if slices.Contains(set, a) {
			out = append(out, a)
		}
	}
	return out
}

func accessStrings(as []Access) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = string(a)
	}
	return out
}
