package auth

import (
	"context"
	"errors"
	"slices"
	"strings"

	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/schemas"
)

// SubjectTypes are the subject types grants accept.
var SubjectTypes = []string{SubjectUser, SubjectGroup, SubjectRole}

// NormalizeSubject upper-cases the subject type (the Orkes docs send
// "user", the SDKs "USER") and checks it and the id.
func NormalizeSubject(s Subject) (Subject, error) {
	s.Type = strings.ToUpper(strings.TrimSpace(s.Type))
	if !slices.Contains(SubjectTypes, s.Type) {
		return s, fault.Invalid("subject type %q: want USER, GROUP or ROLE", s.Type)
	}
	if err := checkID("subject id", s.ID); err != nil {
		return s, err
	}
	if s.Type == SubjectRole {
		s.ID = strings.ToUpper(s.ID)
	}
	return s, nil
}

// NormalizeTarget upper-cases the target type and checks it and the id. A
// TAG target's id is "key:value".
func NormalizeTarget(t Target) (Target, error) {
	t.Type = strings.ToUpper(strings.TrimSpace(t.Type))
	if !slices.Contains(TargetTypes, t.Type) {
		return t, fault.Invalid("target type %q: want one of %s", t.Type, strings.Join(TargetTypes, ", "))
	}
	if err := checkID("target id", t.ID); err != nil {
		return t, err
	}
	if t.Type == TargetTag {
		if k, _, ok := strings.Cut(t.ID, ":"); !ok || k == "" {
			return t, fault.Invalid("tag target %q: want key:value", t.ID)
		}
	}
	return t, nil
}

// NormalizeGrant checks a grant request: subject, target and a non-empty
// access list, put in canonical order.
func NormalizeGrant(g Grant) (Grant, error) {
	var err error
	if g.Subject, err = NormalizeSubject(g.Subject); err != nil {
		return g, err
	}
	if g.Target, err = NormalizeTarget(g.Target); err != nil {
		return g, err
	}
	names := make([]string, len(g.Access))
	for i, a := range g.Access {
		names[i] = string(a)
	}
	if g.Access, err = parseAccesses(names); err != nil {
		return g, fault.Invalid("access: %v", err)
	}
	return g, nil
}

// checkSubjectExists refuses grants to nobody: an unknown user, application
// or group is not found (404), an unknown role is invalid (400).
func (s *Store) checkSubjectExists(ctx context.Context, sub Subject) error {
	switch sub.Type {
	case SubjectUser:
		_, err := s.GetUser(ctx, sub.ID)
		if appID, ok := strings.CutPrefix(sub.ID, AppPrefix); ok && errors.Is(err, fault.ErrNotFound) {
			// GetUser answers as Orkes's user API does ("User app:x not
			// found"); a grant's subject is most often an application
			// named by its name, where its id belongs.
			return fault.NotFound("Application %s not found: app:<id> takes the application's id (as its creation printed it), not its name", appID)
		}
		return err
	case SubjectGroup:
		_, err := s.group(sub.ID)
		return err
	case SubjectRole:
		if !slices.Contains(Roles, sub.ID) {
			return fault.Invalid("unknown role %q: want one of %s", sub.ID, strings.Join(Roles, ", "))
		}
	}
	return nil
}

func newGrants() grantState { return grantState{} }

// Grant adds g's accesses to what its subject holds on its target. The
// subject must exist; the target need not (grants may precede what they
// cover, as Orkes allows).
func (s *Store) Grant(ctx context.Context, g Grant, by string) error {
	g, err := NormalizeGrant(g)
	if err != nil {
		return err
	}
	if err := s.checkSubjectExists(ctx, g.Subject); err != nil {
		return err
	}
	return s.changeGrant(ctx, g.Subject, g.Target, by, func(cur []Access) []Access {
		return canonical(append(slices.Clone(cur), g.Access...))
	})
}

// Revoke removes g's accesses from what its subject holds on its target.
// Revoking what is not granted changes nothing and is not an error.
func (s *Store) Revoke(ctx context.Context, g Grant, by string) error {
	g, err := NormalizeGrant(g)
	if err != nil {
		return err
	}
	return s.changeGrant(ctx, g.Subject, g.Target, by, func(cur []Access) []Access {
		return slices.DeleteFunc(slices.Clone(cur), func(a Access) bool { return slices.Contains(g.Access, a) })
	})
}

// changeGrant appends the access set op computes for (sub, t), with what
// was granted and revoked, unless it is unchanged.
func (s *Store) changeGrant(ctx context.Context, sub Subject, t Target, by string, op func(cur []Access) []Access) error {
	return update(ctx, s, GrantSubject(t), by, newGrants, func(st grantState) ([]schemas.Event, error) {
		cur := st[sub]
		next := op(cur)
		if slices.Equal(cur, next) {
			return nil, nil
		}
		ev := &schemas.GrantSet{SubjectType: sub.Type, SubjectID: sub.ID, TargetType: t.Type, TargetID: t.ID,
			Access: accessStrings(next), Time: s.millis(), By: by}
		for _, a := range next {
			if !slices.Contains(cur, a) {
				ev.Granted = append(ev.Granted, string(a))
			}
		}
		for _, a := range cur {
			if !slices.Contains(next, a) {
				ev.Revoked = append(ev.Revoked, string(a))
			}
		}
		return []schemas.Event{ev}, nil
	})
}

// RevokeAll revokes every grant of a subject (on targets of targetType
// only, when it is set). Each target is a change of its own.
func (s *Store) RevokeAll(ctx context.Context, sub Subject, targetType string, by string) error {
	grants, err := s.GrantsTo(ctx, sub, targetType)
	if err != nil {
		return err
	}
	for _, g := range grants {
		if err := s.changeGrant(ctx, sub, g.Target, by, func([]Access) []Access { return nil }); err != nil {
			return err
		}
	}
	return nil
}

// GrantsOn returns every grant on target t, by subject.
func (s *Store) GrantsOn(ctx context.Context, t Target) ([]Grant, error) {
	if separated(t.Type, t.ID) {
		return []Grant{}, nil
	}
	prefix := string(joinKey(grantKeyPrefix, t.Type, t.ID, ""))
	return s.scanGrants(prefix, func(parts []string) Grant {
		return Grant{Subject: Subject{Type: parts[2], ID: parts[3]}, Target: t}
	})
}

// GrantsTo returns every grant given to subject sub (on targets of
// targetType only, when it is set), by target.
func (s *Store) GrantsTo(ctx context.Context, sub Subject, targetType string) ([]Grant, error) {
	if separated(sub.Type, sub.ID, targetType) {
		return []Grant{}, nil
	}
	parts := []string{sub.Type, sub.ID, ""}
	if targetType != "" {
		parts = []string{sub.Type, sub.ID, targetType, ""}
	}
	return s.scanGrants(string(joinKey(bySubjKeyPrefix, parts...)), func(p []string) Grant {
		return Grant{Subject: sub, Target: Target{Type: p[2], ID: p[3]}}
	})
}

// separated reports whether a part of a key to scan holds the keys'
// separator: the prefix would then reach into the next part, and the
// grants of "db" to groups read as grants on "db\x00GROUP" (a name a
// request's path or a polled task type may hold). No grant is stored
// under such a name.
func separated(parts ...string) bool {
	return slices.ContainsFunc(parts, func(p string) bool { return strings.ContainsRune(p, 0) })
}

func (s *Store) scanGrants(prefix string, grant func(parts []string) Grant) ([]Grant, error) {
	out := []Grant{}
	var derr error
	keyPrefix := prefix[:2]
	err := s.reader.Scan([]byte(prefix), func(k, v []byte) bool {
		parts, ok := splitKey(k, keyPrefix, 4)
		if !ok {
			return true
		}
		var acc []string
		if derr = msgpackUnmarshal(v, &acc); derr != nil {
			return false
		}
		g := grant(parts)
		for _, a := range acc {
			g.Access = append(g.Access, Access(a))
		}
		out = append(out, g)
		return true
	})
	if err == nil {
		err = derr
	}
	return out, err
}
