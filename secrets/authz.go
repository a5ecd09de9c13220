package secrets

import (
	"context"
	"fmt"

	"github.com/flowvault/flowvault/fault"
)

// Action is what a principal wants to do to a resource (Orkes access
// types).
type Action string

// Actions.
const (
	ActionCreate Action = "CREATE"
	ActionRead   Action = "READ"
	ActionUpdate Action = "UPDATE"
	ActionDelete Action = "DELETE"
)

// ResourceType is an Orkes authorization target type.
type ResourceType string

// Resource types of this package.
const (
	ResourceSecret ResourceType = "SECRET_NAME"
	ResourceEnv    ResourceType = "ENV_VARIABLE"
)

// AllResources as a Resource ID means every resource of the type: listing
// everything, clearing caches.
const AllResources = "*"

// Resource is the target of an action.
type Resource struct {
	Type ResourceType
	ID   string
}

func (r Resource) String() string { return string(r.Type) + ":" + r.ID }

// Anonymous is the principal of a request that carries no identity: every
// request until authentication exists.
const Anonymous = ""

// Authorizer decides whether principal may do action to resource. A
// refusal wraps fault.ErrForbidden (403). The access-control work replaces
// DefaultAuthorizer with the real policy (grants, groups, roles, tags)
// behind this one method; secret resolution at hand-off calls it too, with
// the workflow's principal and ActionRead.
type Authorizer interface {
	Authorize(ctx context.Context, principal string, action Action, resource Resource) error
}

// OwnerFunc returns who created resource; found is false when it does not
// exist.
type OwnerFunc func(ctx context.Context, resource Resource) (owner string, found bool, err error)

// DefaultAuthorizer is the policy until access control lands. Admins may
// do anything; any principal may create; a resource's creator may read,
// update and delete it. The anonymous principal counts as an admin: today
// no request is authenticated, so today every request is allowed.
type DefaultAuthorizer struct {
	// Owner finds a resource's creator; nil means no one owns anything.
	Owner OwnerFunc
	// IsAdmin reports whether a principal is an admin; nil means none is.
	IsAdmin func(principal string) bool
}

var _ Authorizer = DefaultAuthorizer{}

// Authorize implements Authorizer.
func (a DefaultAuthorizer) Authorize(ctx context.Context, principal string, action Action, r Resource) error {
	if principal == Anonymous || (a.IsAdmin != nil && a.IsAdmin(principal)) || action == ActionCreate {
		return nil
	}
	if r.ID != AllResources && a.Owner != nil {
		owner, found, err := a.Owner(ctx, r)
		if err != nil {
			return err
		}
		if found && owner == principal {
			return nil
		}
	}
	return fmt.Errorf("%s may not %s %s: %w", principal, action, r, fault.ErrForbidden)
}

// Owners is the OwnerFunc of secrets in s and environment values in e
// (either may be nil).
func Owners(s *Store, e *Env) OwnerFunc {
	return func(ctx context.Context, r Resource) (string, bool, error) {
		switch {
		case r.Type == ResourceSecret && s != nil:
			return s.Owner(ctx, r.ID)
		case r.Type == ResourceEnv && e != nil:
			return e.Owner(ctx, r.ID)
		}
		return "", false, nil
	}
}
