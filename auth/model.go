// Package auth is flowvault's access control: who is asking (principals:
// applications with access keys, users, groups, roles), what they may do
// (grants of CREATE/READ/UPDATE/DELETE/EXECUTE on targets, including
// TAG:key:value targets that cover every resource carrying the tag), and
// the one Authorizer every entry point asks.
package auth

import (
	"fmt"
	"slices"
	"strings"
)

// Access is one kind of permission on a resource.
type Access string

// Accesses, in Orkes's names.
const (
	Create  Access = "CREATE"
	Read    Access = "READ"
	Update  Access = "UPDATE"
	Delete  Access = "DELETE"
	Execute Access = "EXECUTE"
)

// AllAccess is every access, in canonical order.
var AllAccess = []Access{Create, Read, Update, Delete, Execute}

// ParseAccess reads an access name (case-insensitive).
func ParseAccess(s string) (Access, error) {
	a := Access(strings.ToUpper(s))
	if !slices.Contains(AllAccess, a) {
		return "", fmt.Errorf("access %q: want one of CREATE, READ, UPDATE, DELETE, EXECUTE", s)
	}
	return a, nil
}

// implies reports whether holding have grants want: UPDATE, DELETE and
// EXECUTE each include READ (Orkes's rule); nothing else is implied.
func implies(have, want Access) bool {
	return have == want || (want == Read && (have == Update || have == Delete || have == Execute))
}

// Target types a grant can name.
const (
	TargetWorkflowDef      = "WORKFLOW_DEF"
	TargetTaskDef          = "TASK_DEF"
	TargetSecret           = "SECRET_NAME"
	TargetEnvVariable      = "ENV_VARIABLE"
	TargetWorkflowSchedule = "WORKFLOW_SCHEDULE"
	TargetApplication      = "APPLICATION"
	TargetTag              = "TAG"
	TargetDomain           = "DOMAIN"
	TargetWorkflow         = "WORKFLOW"
)

// TargetTypes are the target types grants accept.
var TargetTypes = []string{TargetWorkflowDef, TargetTaskDef, TargetSecret, TargetEnvVariable, TargetWorkflowSchedule,
	TargetApplication, TargetTag, TargetDomain, TargetWorkflow}

// Target is a resource, or (type TAG, id "key:value") every resource
// carrying a tag.
type Target struct {
	Type string `json:"type"`
	ID   string `json:"id"`
}

func (t Target) String() string { return t.Type + ":" + t.ID }

// Subject types a grant can be given to.
const (
	SubjectUser  = "USER"
	SubjectGroup = "GROUP"
	SubjectRole  = "ROLE"
)

// Subject is who a grant is given to. Applications are users with ids
// "app:<application id>".
type Subject struct {
	Type string `json:"type"`
	ID   string `json:"id"`
}

func (s Subject) String() string { return s.Type + ":" + s.ID }

// Grant gives a subject accesses on a target.
type Grant struct {
	Subject Subject  `json:"subject"`
	Target  Target   `json:"target"`
	Access  []Access `json:"access"`
}

// Principal is an authenticated caller.
type Principal struct {
	// ID is a user's id (email) or "app:<application id>".
	ID     string
	Roles  []string
	Groups []string
}

// IsApplication reports whether the principal is an application.
func (p Principal) IsApplication() bool { return strings.HasPrefix(p.ID, "app:") }

// Anonymous is the principal of requests when authentication is off
// (--insecure-dev); it is an admin.
var Anonymous = Principal{ID: "anonymous", Roles: []string{RoleAdmin}}

// Roles.
const (
	RoleAdmin              = "ADMIN"
	RoleUser               = "USER"
	RoleMetadataManager    = "METADATA_MANAGER"
	RoleWorkflowManager    = "WORKFLOW_MANAGER"
	RoleUserReadOnly       = "USER_READ_ONLY"
	RoleWorker             = "WORKER"
	RoleMetadataAPI        = "METADATA_API"
	RoleApplicationCreator = "APPLICATION_CREATOR"
	RoleUnrestrictedWorker = "UNRESTRICTED_WORKER"
	RoleApplicationManager = "APPLICATION_MANAGER"
)

// Roles lists the roles principals can hold.
var Roles = []string{RoleAdmin, RoleUser, RoleMetadataManager, RoleWorkflowManager, RoleUserReadOnly, RoleWorker,
	RoleMetadataAPI, RoleApplicationCreator, RoleUnrestrictedWorker, RoleApplicationManager}

// Permission names (orkes-secrets.md §5.1) that roles carry.
const (
	PermCreateSecret          = "CREATE_SECRET"
	PermCreateWorkflowDef     = "CREATE_WORKFLOW_DEF"
	PermCreateTaskDef         = "CREATE_TASK_DEF"
	PermCreateApplication     = "CREATE_APPLICATION"
	PermMetadataManagement    = "METADATA_MANAGEMENT"
	PermMetadataView          = "METADATA_VIEW"
	PermWorkflowManagement    = "WORKFLOW_MANAGEMENT"
	PermWorkflowSearch        = "WORKFLOW_SEARCH"
	PermScheduleManagement    = "SCHEDULE_MANAGEMENT"
	PermApplicationManagement = "APPLICATION_MANAGEMENT"
	PermUserManagement        = "USER_MANAGEMENT"
	PermAuthorization         = "AUTHORIZATION_MANAGEMENT"
	PermAdmin                 = "ADMIN_MANAGEMENT"
	PermPollAnyTask           = "POLL_ANY_TASK"
	PermPollTasks             = "POLL_TASKS"
)

// rolePermissions follows the role lists of Orkes's user and group APIs.
var rolePermissions = map[string][]string{
	RoleAdmin: {PermAdmin, PermMetadataManagement, PermMetadataView, PermWorkflowManagement, PermWorkflowSearch,
		PermScheduleManagement, PermApplicationManagement, PermUserManagement, PermAuthorization, PermCreateSecret,
		PermCreateWorkflowDef, PermCreateTaskDef, PermCreateApplication, PermPollAnyTask, PermPollTasks},
	RoleUser:            {PermCreateSecret, PermCreateWorkflowDef, PermCreateTaskDef, PermWorkflowSearch, PermCreateApplication},
	RoleMetadataManager: {PermCreateSecret, PermMetadataView, PermMetadataManagement, PermCreateWorkflowDef, PermCreateTaskDef},
	RoleWorkflowManager: {PermWorkflowManagement, PermWorkflowSearch, PermMetadataView},
	RoleUserReadOnly:    {PermMetadataView, PermWorkflowSearch},
	RoleWorker:          {PermPollTasks},
	// METADATA_API lets an application change the definitions it may
	// (created, or holds grants on): a gate, not a permission on all of
	// them, since any application's creator may assign it.
	RoleMetadataAPI:        {PermCreateWorkflowDef, PermCreateTaskDef},
	RoleApplicationCreator: {PermCreateApplication},
	RoleUnrestrictedWorker: {PermPollTasks, PermPollAnyTask},
	RoleApplicationManager: {PermApplicationManagement, PermCreateApplication},
}

// Permissions returns the permission names a principal's roles carry.
func (p Principal) Permissions() []string {
	var out []string
	for _, r := range p.Roles {
		for _, perm := range rolePermissions[r] {
			if !slices.Contains(out, perm) {
				out = append(out, perm)
			}
		}
	}
	slices.Sort(out)
	return out
}

// HasPermission reports whether one of the principal's roles carries perm.
func (p Principal) HasPermission(perm string) bool {
	for _, r := range p.Roles {
		if slices.Contains(rolePermissions[r], perm) {
			return true
		}
	}
	return false
}

// IsAdmin reports whether the principal holds the ADMIN role.
func (p Principal) IsAdmin() bool { return slices.Contains(p.Roles, RoleAdmin) }
