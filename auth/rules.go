package auth

import (
	"context"
	"fmt"

	"github.com/flowvault/flowvault/fault"
)

// Rule is what a route requires of its caller. Routes are declared as a
// table of (method and path pattern, Rule) and enforced in one place
// (Authorizer.Enforce), so adding an endpoint means adding a row.
//
// A request passes when the rule is Public; or when the caller's roles
// carry any of AnyPermission; or when it holds Access on the target of
// type TargetType whose id is the path wildcard TargetParam (with the
// Authorizer's grant, tag and creator rules); or when neither is set
// (any authenticated caller). SelfParam lets a caller through on its own
// record (the wildcard equals its principal id). With SubjectTypeParam,
// the wildcard naming the subject type SelfParam's id goes with, the
// record is its own only as a USER subject (an application's included,
// "app:<id>"): a group or role is nobody's own, whatever its id.
type Rule struct {
	Public           bool
	AnyPermission    []string
	Access           Access
	TargetType       string
	TargetParam      string
	SelfParam        string
	SubjectTypeParam string
}

// Admin is the rule of admin-only routes.
var Admin = Rule{AnyPermission: []string{PermAdmin}}

// Authenticated lets every authenticated caller through.
var Authenticated = Rule{}

// Enforce checks rule for p. pathValue returns a path wildcard's value
// (http.Request.PathValue).
func (a *Authorizer) Enforce(ctx context.Context, p Principal, rule Rule, pathValue func(string) string) error {
	if rule.Public || (len(rule.AnyPermission) == 0 && rule.Access == "" && rule.SelfParam == "") {
		return nil
	}
	if p.IsAdmin() {
		return nil
	}
	for _, perm := range rule.AnyPermission {
		if p.HasPermission(perm) {
			return nil
		}
	}
	if rule.SelfParam != "" && pathValue(rule.SelfParam) == p.ID && ownSubjectType(rule, pathValue) {
		return nil
	}
	if rule.Access != "" {
		res := Resource{Target: Target{Type: rule.TargetType, ID: pathValue(rule.TargetParam)}}
		return a.Authorize(ctx, p, rule.Access, res)
	}
	return fmt.Errorf("%s may not do this: it needs one of the permissions %v: %w", p.ID, rule.AnyPermission, fault.ErrForbidden)
}

// ownSubjectType reports whether the subject type of rule's path, if it
// has one, is one a caller may be: read as the handler reads it
// (NormalizeSubject), so that "user" counts and a group never does.
func ownSubjectType(rule Rule, pathValue func(string) string) bool {
	if rule.SubjectTypeParam == "" {
		return true
	}
	sub, err := NormalizeSubject(Subject{Type: pathValue(rule.SubjectTypeParam), ID: pathValue(rule.SelfParam)})
	return err == nil && sub.Type == SubjectUser
}

type principalKey struct{}

// WithPrincipal returns ctx carrying the authenticated principal.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalFrom returns the principal ctx carries.
func PrincipalFrom(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}
