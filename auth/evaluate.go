package auth

import (
	"context"
	"slices"

	"github.com/flowvault/flowvault/schemas/conductor"
)

// Resource is what a decision is about: a target, the tags it carries and
// who created it.
type Resource struct {
	Target  Target
	Tags    []string // "key:value"
	Creator string
	// Domain is the task domain whose queue a task of a TASK_DEF target is
	// polled, taken or reported on in ("" for the queue without domain,
	// and for every question that is not about a queue): a DOMAIN grant
	// of EXECUTE on it covers the task, whatever its type.
	Domain string
	// Executions asks about the executions of the WORKFLOW_DEF target, not
	// the definition: the role permissions that manage or view definitions
	// (METADATA_MANAGEMENT, METADATA_VIEW: role METADATA_MANAGER) do not
	// reach the data the definition's runs carry. Reading every execution
	// takes METADATA_VIEW with WORKFLOW_SEARCH (role USER_READ_ONLY);
	// operating on them, WORKFLOW_MANAGEMENT, asked on the WORKFLOW
	// target. Grants on the definition and its tags, and its creator's
	// rights, reach its executions.
	Executions bool
	// Describer, when set, describes the target in place of the sources
	// registered for its type: a caller that reads the target in one
	// state of its store (a listing, in a snapshot) has access decided
	// on the state it reads, not on whatever the store holds by the time
	// the decision reads it.
	Describer Describer
}

// Described is a target's tags ("key:value") and creator as its caller
// read them, for a Resource's Describer: the decision is made on the
// state the caller read and acts on.
type Described struct {
	Tags    []string
	Creator string
}

func (d Described) Describe(context.Context, Target) (tags []string, creator string, err error) {
	return d.Tags, d.Creator, nil
}

// TagNames are tags as a Resource carries them and a TAG target names
// one, "key:value": the form every TagSource answers in.
func TagNames(tags []conductor.Tag) []string {
	out := make([]string, len(tags))
	for i, t := range tags {
		out[i] = t.Key + ":" + t.Value
	}
	return out
}

// ExecutionResources are what an access to an execution of workflow name
// asks, besides being the execution's creator, in the order it is asked:
// a grant on the WORKFLOW, then the executions of its WORKFLOW_DEF (whose
// refusal is the one to report). Every reader of executions asks these,
// so that a workflow's task (a START_WORKFLOW answered with an existing
// workflow) reads by the rule the API does.
func ExecutionResources(name string) (workflow, definition Resource) {
	return Resource{Target: Target{Type: TargetWorkflow, ID: name}},
		Resource{Target: Target{Type: TargetWorkflowDef, ID: name}, Executions: true}
}

// domain is the DOMAIN target whose grants cover res, if any.
func (res Resource) domain() (Target, bool) {
	if res.Target.Type != TargetTaskDef || res.Domain == "" {
		return Target{}, false
	}
	return Target{Type: TargetDomain, ID: res.Domain}, true
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

// roleAccess lists, per target type, what a role permission gives on
// every resource of that type. Grants add to it; they never take away.
var roleAccess = map[string][]struct {
	perm   string
	access []Access
}{
	TargetSecret:      {{PermCreateSecret, []Access{Create}}},
	TargetEnvVariable: {{PermCreateSecret, []Access{Create}}},
	TargetWorkflowDef: {
		{PermCreateWorkflowDef, []Access{Create}},
		{PermMetadataManagement, []Access{Create, Read, Update, Delete}},
		{PermMetadataView, []Access{Read}},
		{PermWorkflowManagement, []Access{Read, Execute}},
	},
	TargetTaskDef: {
		{PermCreateTaskDef, []Access{Create}},
		{PermMetadataManagement, []Access{Create, Read, Update, Delete}},
		{PermMetadataView, []Access{Read}},
		{PermPollAnyTask, []Access{Execute}},
	},
	TargetWorkflowSchedule: {
		{PermCreateWorkflowDef, []Access{Create}},
		{PermScheduleManagement, []Access{Create, Read, Update, Delete, Execute}},
	},
	TargetWorkflow:    {{PermWorkflowManagement, []Access{Read, Update, Delete, Execute}}},
	TargetApplication: {{PermCreateApplication, []Access{Create}}, {PermApplicationManagement, []Access{Create, Read, Update, Delete}}},
}

// Decide evaluates grants for principal asking access on res. Access is the
// union of: the ADMIN role; what the principal's role permissions give on
// the target type (CREATE_SECRET creates secrets, METADATA_MANAGEMENT
// manages every definition, ...); the creator's full rights on what it
// created; grants to the principal, to its groups, to its roles; and
// grants on any tag the resource carries. UPDATE, DELETE and EXECUTE
// include READ. An application updates or deletes definitions only with
// the METADATA_API role (or another role managing metadata), even ones it
// created or holds grants on; their executions it removes as a user does.
//
// The Decision names the first of these grounds that allows, in this
// order: the ADMIN role, a role permission, a grant on the target, for a
// task in a domain's queue a grant on the DOMAIN, the creator, a grant on
// a tag res carries. The grounds that need no more than the target's name
// come first, so that Authorizer.Check reads a target's tags and creator,
// which may cost a request to the log, only when the decision depends on
// them.
func Decide(p Principal, access Access, res Resource, grants []Grant) Decision {
	if d, ok := decideByRole(p, access, res); ok {
		return d
	}
	if d, ok := decideByName(p, access, res, grants); ok {
		return d
	}
	return decideByDescription(p, access, res, grants)
}

// decideByRole decides what the principal's roles decide alone: the ADMIN
// role and the role permissions allow, and an application without
// METADATA_API is refused a change of a definition.
func decideByRole(p Principal, access Access, res Resource) (Decision, bool) {
	if p.IsAdmin() {
		return Decision{Allowed: true, Reason: "admin"}, true
	}
	if p.IsApplication() && (access == Update || access == Delete) && isMetadata(res.Target.Type) && !res.Executions &&
		!slices.Contains(p.Roles, RoleMetadataAPI) && !p.HasPermission(PermMetadataManagement) {
		return Decision{Reason: "an application needs the " + RoleMetadataAPI + " role to " + string(access) + " " + res.Target.String()}, true
	}
	switch {
	case res.Executions:
		if access == Read && p.HasPermission(PermMetadataView) && p.HasPermission(PermWorkflowSearch) {
			return Decision{Allowed: true, Reason: "role permissions " + PermMetadataView + " and " + PermWorkflowSearch}, true
		}
	default:
		for _, ra := range roleAccess[res.Target.Type] {
			if p.HasPermission(ra.perm) && grantsAccess(ra.access, access) {
				return Decision{Allowed: true, Reason: "role permission " + ra.perm}, true
			}
		}
	}
	return Decision{}, false
}

// decideByName allows what a grant p holds on res's target gives, or for
// a task in a domain's queue a grant of EXECUTE on the DOMAIN.
func decideByName(p Principal, access Access, res Resource, grants []Grant) (Decision, bool) {
	domain, inDomain := res.domain()
	var byDomain *Decision // a grant on the target comes first
	for _, g := range grants {
		if !holds(p, g.Subject) || !grantsAccess(g.Access, access) {
			continue
		}
		switch {
		case g.Target == res.Target:
			return Decision{Allowed: true, Reason: "grant to " + g.Subject.String()}, true
		case byDomain == nil && inDomain && access == Execute && g.Target == domain:
			byDomain = &Decision{Allowed: true, Reason: "domain " + domain.ID + " granted to " + g.Subject.String()}
		}
	}
	if byDomain != nil {
		return *byDomain, true
	}
	return Decision{}, false
}

// decideByDescription decides on what needs res's creator and tags: the
// creator's rights, then grants on the target (in Authorizer.Check, those
// of a group's default access, which derive from the creator), then
// grants on the tags; else the refusal.
func decideByDescription(p Principal, access Access, res Resource, grants []Grant) Decision {
	if res.Creator != "" && res.Creator == p.ID {
		return Decision{Allowed: true, Reason: "creator"}
	}
	if d, ok := decideByName(p, access, res, grants); ok {
		return d
	}
	for _, g := range grants {
		if g.Target.Type == TargetTag && slices.Contains(res.Tags, g.Target.ID) && holds(p, g.Subject) && grantsAccess(g.Access, access) {
			return Decision{Allowed: true, Reason: "tag " + g.Target.ID + " granted to " + g.Subject.String(), Tag: g.Target.ID}
		}
	}
	if domain, ok := res.domain(); ok && access == Execute {
		return Decision{Reason: "no grant of " + string(access) + " on " + res.Target.String() + " or " + domain.String()}
	}
	return Decision{Reason: "no grant of " + string(access) + " on " + res.Target.String()}
}

// holds reports whether grants to s are p's: to p itself, its groups or
// its roles.
func holds(p Principal, s Subject) bool {
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

// isMetadata reports whether targets of this type are definitions, which
// applications change only with METADATA_API, whatever their grants (Orkes).
func isMetadata(targetType string) bool {
	return targetType == TargetWorkflowDef || targetType == TargetTaskDef
}

func grantsAccess(have []Access, want Access) bool {
	for _, h := range have {
		if implies(h, want) {
			return true
		}
	}
	return false
}
