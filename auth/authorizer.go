package auth

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"

	"github.com/flowvault/flowvault/fault"
)

// GrantSource lists grants: on a target, and given to a subject. The auth
// Store implements it from its read model.
type GrantSource interface {
	GrantsOn(ctx context.Context, t Target) ([]Grant, error)
	GrantsTo(ctx context.Context, s Subject, targetType string) ([]Grant, error)
}

// TagSource returns the tags ("key:value") a target carries. The node
// registers one with Authorizer.Register for each kind of resource
// (definitions, secrets and environment values, schedules, applications),
// reading that kind's store.
type TagSource interface {
	TagsOf(ctx context.Context, t Target) ([]string, error)
}

// TagIndex is implemented by TagSources that can also list the targets
// carrying a tag; grant listings then show what a TAG grant covers.
type TagIndex interface {
	TargetsTagged(ctx context.Context, targetType, tag string) ([]Target, error)
}

// CreatorSource returns who created a target ("" when unknown); the
// creator has full access to it.
type CreatorSource interface {
	CreatorOf(ctx context.Context, t Target) (string, error)
}

// Describer returns a target's tags and creator in one read, which
// Authorizer prefers to a TagSource's and a CreatorSource's two: both then
// describe one state of the target (a name deleted and registered again
// between two reads would lend one life's tags to the other's creator),
// and a source that may have to ask the log for them (a workflow
// definition this engine's read model lacks) asks once.
type Describer interface {
	Describe(ctx context.Context, t Target) (tags []string, creator string, err error)
}

// GroupSource tells which groups a principal belongs to and what access
// a group gets on what its members create (Orkes's group defaultAccess).
// The auth Store implements it; an Authorizer whose GrantSource does not
// applies no default access.
type GroupSource interface {
	Principal(ctx context.Context, id string) (Principal, error)
	GetGroup(ctx context.Context, id string) (Group, error)
}

var (
	_ GrantSource = (*Store)(nil)
	_ GroupSource = (*Store)(nil)
)

// Authorizer is the one place access decisions are made: REST handlers,
// the CLI, secret resolution and task polling all ask it. It combines the
// principal's roles, the grants of the auth read model (to the principal,
// its groups and its roles; on the target, on each of its tags and, for a
// task in a domain's queue, on the domain) and the creator's rights.
type Authorizer struct {
	grants GrantSource

	mu         sync.RWMutex
	tags       map[string]TagSource
	creators   map[string]CreatorSource
	describers map[string]Describer
}

// NewAuthorizer returns an Authorizer over grants.
func NewAuthorizer(grants GrantSource) *Authorizer {
	return &Authorizer{grants: grants, tags: map[string]TagSource{}, creators: map[string]CreatorSource{},
		describers: map[string]Describer{}}
}

// Register makes src the TagSource and/or CreatorSource (whichever it
// implements) of targetType.
func (a *Authorizer) Register(targetType string, src any) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if ts, ok := src.(TagSource); ok {
		a.tags[targetType] = ts
	}
	if cs, ok := src.(CreatorSource); ok {
		a.creators[targetType] = cs
	}
	if d, ok := src.(Describer); ok {
		a.describers[targetType] = d
	}
}

func (a *Authorizer) sources(targetType string) (TagSource, CreatorSource) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.tags[targetType], a.creators[targetType]
}

// describe completes res with the tags and creator its sources know: its
// own Describer's, or those registered for its type.
func (a *Authorizer) describe(ctx context.Context, res Resource) (Resource, error) {
	d := res.Describer
	if d == nil {
		a.mu.RLock()
		d = a.describers[res.Target.Type]
		a.mu.RUnlock()
	}
	if d != nil {
		tags, creator, err := d.Describe(ctx, res.Target)
		if err != nil {
			return res, err
		}
		return described(res, tags, creator), nil
	}
	var tags []string
	var creator string
	ts, cs := a.sources(res.Target.Type)
	if ts != nil {
		var err error
		if tags, err = ts.TagsOf(ctx, res.Target); err != nil {
			return res, err
		}
	}
	if cs != nil && res.Creator == "" {
		var err error
		if creator, err = cs.CreatorOf(ctx, res.Target); err != nil {
			return res, err
		}
	}
	return described(res, tags, creator), nil
}

// described adds tags to res's own, and creator where res names none.
func described(res Resource, tags []string, creator string) Resource {
	for _, t := range tags {
		if !slices.Contains(res.Tags, t) {
			res.Tags = append(res.Tags, t)
		}
	}
	if res.Creator == "" {
		res.Creator = creator
	}
	return res
}

// grantsOn lists the grants on each of targets, in their order.
func (a *Authorizer) grantsOn(ctx context.Context, targets []Target) ([]Grant, error) {
	var grants []Grant
	for _, t := range targets {
		tg, err := a.grants.GrantsOn(ctx, t)
		if err != nil {
			return nil, err
		}
		grants = append(grants, tg...)
	}
	return grants, nil
}

// named are the targets whose grants cover res by its name alone: its
// target and the domain of its queue.
func (res Resource) named() []Target {
	if d, ok := res.domain(); ok {
		return []Target{res.Target, d}
	}
	return []Target{res.Target}
}

// tagged are the TAG targets of res's tags.
func (res Resource) tagged() []Target {
	out := make([]Target, 0, len(res.Tags))
	for _, tag := range res.Tags {
		out = append(out, Target{Type: TargetTag, ID: tag})
	}
	return out
}

// Check decides whether p may do access on res, as Decide does. It reads
// what each ground needs only once the grounds before it have not decided:
// nothing for the roles, then the grants on the target and its domain, and
// only then the tags and creator that res lacks, from the registered
// sources (for a definition this engine's read model lacks, a request to
// the log), with the grants on the tags and a group's default access
// (which comes after the creator, whose rights it extends). A failure to
// read what the decision depends on denies, with Decision.Err set; a
// source that would fail on a target the roles or a grant on its name
// already decide is not asked.
func (a *Authorizer) Check(ctx context.Context, p Principal, access Access, res Resource) Decision {
	if d, ok := decideByRole(p, access, res); ok {
		return d
	}
	named, err := a.grantsOn(ctx, res.named())
	if err != nil {
		return Decision{Reason: "cannot read grants", Err: err}
	}
	if d, ok := decideByName(p, access, res, named); ok {
		return d
	}
	res, err = a.describe(ctx, res)
	if err != nil {
		return Decision{Reason: "cannot read " + res.Target.String(), Err: err}
	}
	tagged, err := a.grantsOn(ctx, res.tagged())
	if err != nil {
		return Decision{Reason: "cannot read grants", Err: err}
	}
	defaults, err := a.defaultGrants(ctx, p, res)
	if err != nil {
		return Decision{Reason: "cannot read groups", Err: err}
	}
	return decideByDescription(p, access, res, append(defaults, tagged...))
}

// defaultGrants are the grants a group's defaultAccess implies on res: a
// group that both p and res's creator belong to gets its default access
// for res's type. They are computed at decision time, not stored, so a
// member who leaves the group takes the access away from what they created
// and a changed defaultAccess applies to everything at once. None are
// read for the creator, whose own rights decide before them.
func (a *Authorizer) defaultGrants(ctx context.Context, p Principal, res Resource) ([]Grant, error) {
	gs, ok := a.grants.(GroupSource)
	if !ok || res.Creator == "" || res.Creator == p.ID || len(p.Groups) == 0 || !slices.Contains(DefaultAccessTypes, res.Target.Type) {
		return nil, nil
	}
	creator, err := gs.Principal(ctx, res.Creator)
	if errors.Is(err, fault.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("creator %s: %w", res.Creator, err)
	}
	var out []Grant
	for _, gid := range p.Groups {
		if !slices.Contains(creator.Groups, gid) {
			continue
		}
		g, err := gs.GetGroup(ctx, gid)
		if errors.Is(err, fault.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("group %s: %w", gid, err)
		}
		if acc := g.DefaultAccess[res.Target.Type]; len(acc) > 0 {
			out = append(out, Grant{Subject: Subject{Type: SubjectGroup, ID: gid}, Target: res.Target, Access: acc})
		}
	}
	return out, nil
}

// Authorize is Check as an error: nil when allowed, a *ForbiddenError
// (wrapping fault.ErrForbidden) naming the principal, access and target
// when not, or fault.ErrUnavailable when the decision could not be made.
func (a *Authorizer) Authorize(ctx context.Context, p Principal, access Access, res Resource) error {
	d := a.Check(ctx, p, access, res)
	switch {
	case d.Err != nil:
		return fmt.Errorf("authorize %s: %v: %w", res.Target, d.Err, fault.ErrUnavailable)
	case !d.Allowed:
		return &ForbiddenError{Principal: p.ID, Access: access, Target: res.Target, Reason: d.Reason}
	}
	return nil
}

// CheckAll returns, for each access, whether p holds it on res
// (GET /api/users/{id}/checkPermissions).
func (a *Authorizer) CheckAll(ctx context.Context, p Principal, res Resource) (map[Access]bool, error) {
	out := make(map[Access]bool, len(AllAccess))
	for _, acc := range AllAccess {
		d := a.Check(ctx, p, acc, res)
		if d.Err != nil {
			return nil, fmt.Errorf("check %s: %v: %w", res.Target, d.Err, fault.ErrUnavailable)
		}
		out[acc] = d.Allowed
	}
	return out, nil
}

// ForbiddenError is a denied access. It names who, what and on which
// target, and never a value.
type ForbiddenError struct {
	Principal string
	Access    Access
	Target    Target
	Reason    string
}

func (e *ForbiddenError) Error() string {
	return fmt.Sprintf("%s may not %s %s (%s)", e.Principal, e.Access, e.Target, e.Reason)
}

// Unwrap makes errors.Is(err, fault.ErrForbidden) hold.
func (e *ForbiddenError) Unwrap() error { return fault.ErrForbidden }

// GrantedAccess is one entry of a permissions listing (Orkes's
// GrantedAccess): accesses on a target, and the tag whose grant gave them
// when they come from a TAG grant.
type GrantedAccess struct {
	Target Target   `json:"target"`
	Access []Access `json:"access"`
	Tag    string   `json:"tag,omitempty"`
}

// GrantedAccess lists what grants to subjects give: each grant's target
// with its accesses (merged per target), and for each TAG grant also every
// resource carrying the tag, recorded with its tag, as far as the
// registered TagIndexes know.
func (a *Authorizer) GrantedAccess(ctx context.Context, subjects []Subject) ([]GrantedAccess, error) {
	type key struct{ target, tag string }
	merged := map[key]*GrantedAccess{}
	add := func(t Target, tag string, acc []Access) {
		k := key{t.String(), tag}
		if merged[k] == nil {
			merged[k] = &GrantedAccess{Target: t, Tag: tag}
		}
		merged[k].Access = canonical(append(merged[k].Access, acc...))
	}
	for _, sub := range subjects {
		grants, err := a.grants.GrantsTo(ctx, sub, "")
		if err != nil {
			return nil, err
		}
		for _, g := range grants {
			add(g.Target, "", g.Access)
			if g.Target.Type != TargetTag {
				continue
			}
			tagged, err := a.tagged(ctx, g.Target.ID)
			if err != nil {
				return nil, err
			}
			for _, t := range tagged {
				add(t, g.Target.ID, g.Access)
			}
		}
	}
	out := make([]GrantedAccess, 0, len(merged))
	for _, g := range merged {
		out = append(out, *g)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Target != out[j].Target {
			return out[i].Target.String() < out[j].Target.String()
		}
		return out[i].Tag < out[j].Tag
	})
	return out, nil
}

// tagged lists the targets of every registered TagIndex that carry tag.
func (a *Authorizer) tagged(ctx context.Context, tag string) ([]Target, error) {
	a.mu.RLock()
	types := make([]string, 0, len(a.tags))
	for tt := range a.tags {
		types = append(types, tt)
	}
	a.mu.RUnlock()
	slices.Sort(types)
	var out []Target
	for _, tt := range types {
		ts, _ := a.sources(tt)
		idx, ok := ts.(TagIndex)
		if !ok {
			continue
		}
		ts2, err := idx.TargetsTagged(ctx, tt, tag)
		if err != nil {
			return nil, err
		}
		out = append(out, ts2...)
	}
	return out, nil
}

// PrincipalSubjects are the grant subjects a principal holds: itself, its
// groups and its roles.
func PrincipalSubjects(p Principal) []Subject {
	out := []Subject{{Type: SubjectUser, ID: p.ID}}
	for _, g := range p.Groups {
		out = append(out, Subject{Type: SubjectGroup, ID: g})
	}
	for _, r := range p.Roles {
		out = append(out, Subject{Type: SubjectRole, ID: r})
	}
	return out
}

// CanAssignRole reports whether p may give an application role: WORKER,
// METADATA_API and APPLICATION_CREATOR need only the right to update the
// application; every other role only an admin may hand out.
func CanAssignRole(p Principal, role string) error {
	switch role {
	case RoleWorker, RoleMetadataAPI, RoleApplicationCreator:
		return nil
	}
	if p.IsAdmin() {
		return nil
	}
	return fmt.Errorf("%s may not assign role %s: only an admin can: %w", p.ID, role, fault.ErrForbidden)
}
