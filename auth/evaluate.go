package auth

import "slices"

// Resource is what a decision is about: a target, the tags it carries and
// who created it.
type Resource struct {
	Target  Target
	Tags    []string // "key:value"
	Creator string
}

// Decision is the outcome of an authorization check.
type Decision struct {
	Allowed bool
	// Reason says how access was granted (admin, creator, grant, role, tag
	// "key:value") or why not.
	Reason string
	// Tag is the tag whose grant allowed access, if any.
	Tag string
	// Err is set when the decision could not be made (a source failed to
	// answer); Allowed is then false.
	Err error
}

// createPermission is the role permission that lets its holder create any
// resource of a target type (a CREATE grant allows one name).
var createPermission = map[string]string{
	TargetSecret:           PermCreateSecret,
	TargetEnvVariable:      PermCreateSecret,
	TargetWorkflowDef:      PermCreateWorkflowDef,
	TargetTaskDef:          PermCreateTaskDef,
	TargetWorkflowSchedule: PermCreateWorkflowDef,
	TargetApplication:      PermCreateApplication,
}

// Decide evaluates grants for principal asking access on res. Access is the
// union of: the ADMIN role; CREATE through the role permission of the
// target type (CREATE_SECRET, ...); the creator's full rights on what it
// created; grants to the principal, to its groups, to its roles; and
// grants on any tag the resource carries. UPDATE, DELETE and EXECUTE
// include READ.
func Decide(p Principal, access Access, res Resource, grants []Grant) Decision {
	if p.IsAdmin() {
		return Decision{Allowed: true, Reason: "admin"}
	}
	if perm, ok := createPermission[res.Target.Type]; ok && access == Create && p.HasPermission(perm) {
		return Decision{Allowed: true, Reason: "role permission " + perm}
	}
	if res.Creator != "" && res.Creator == p.ID {
		return Decision{Allowed: true, Reason: "creator"}
	}
	holds := func(s Subject) bool {
		switch s.Type {
		case SubjectUser:
			return s.ID == p.ID
		case SubjectGroup:
			return slices.Contains(p.Groups, s.ID)
		case SubjectRole:
			return slices.Contains(p.Roles, s.ID)
		}
		return false
	}
	var tagDecision *Decision
	for _, g := range grants {
		if !holds(g.Subject) || !grantsAccess(g.Access, access) {
			continue
		}
		switch {
		case g.Target == res.Target:
			return Decision{Allowed: true, Reason: "grant to " + g.Subject.String()}
		case g.Target.Type == TargetTag && slices.Contains(res.Tags, g.Target.ID) && tagDecision == nil:
			tagDecision = &Decision{Allowed: true, Reason: "tag " + g.Target.ID + " granted to " + g.Subject.String(), Tag: g.Target.ID}
		}
	}
	if tagDecision != nil {
		return *tagDecision
	}
	return Decision{Reason: "no grant of " + string(access) + " on " + res.Target.String()}
}

func grantsAccess(have []Access, want Access) bool {
	for _, h := range have {
		if implies(h, want) {
			return true
		}
	}
	return false
}
