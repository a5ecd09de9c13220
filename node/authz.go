package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/flowvault/flowvault/api"
	"github.com/flowvault/flowvault/auth"
	"github.com/flowvault/flowvault/executor"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/metadata"
	"github.com/flowvault/flowvault/natsauth"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// principals returns a principal by id with its roles and groups.
type principals interface {
	Principal(ctx context.Context, id string) (auth.Principal, error)
}

// workflowAuthorizer answers the questions of secret resolution and
// UPDATE_SECRET, asked for the principal a workflow runs as (its
// createdBy), with the one Authorizer. The principal is read afresh on
// every question, so a revoked grant or role counts from the next
// resolution on.
type workflowAuthorizer struct {
	principals principals
	authz      *auth.Authorizer
	insecure   bool
}

func (a workflowAuthorizer) Authorize(ctx context.Context, id string, access auth.Access, t auth.Target) (string, error) {
	return a.authorizeOn(ctx, id, access, auth.Resource{Target: t})
}

// authorizeOn is Authorize of a resource the caller may describe itself.
func (a workflowAuthorizer) authorizeOn(ctx context.Context, id string, access auth.Access, res auth.Resource) (string, error) {
	if a.insecure {
		return "authentication off (--insecure-dev)", nil
	}
	p, err := a.principals.Principal(ctx, id)
	if errors.Is(err, fault.ErrNotFound) {
		return "", &auth.ForbiddenError{Principal: id, Access: access, Target: res.Target, Reason: "the principal no longer exists"}
	}
	if err != nil {
		return "", fmt.Errorf("authorize %s: %v: %w", res.Target, err, fault.ErrUnavailable)
	}
	return a.decide(ctx, p, access, res)
}

// decide asks the Authorizer whether p holds access on res.
func (a workflowAuthorizer) decide(ctx context.Context, p auth.Principal, access auth.Access, res auth.Resource) (string, error) {
	d := a.authz.Check(ctx, p, access, res)
	switch {
	case d.Err != nil:
		return "", fmt.Errorf("authorize %s: %v: %w", res.Target, d.Err, fault.ErrUnavailable)
	case !d.Allowed:
		return "", &auth.ForbiddenError{Principal: p.ID, Access: access, Target: res.Target, Reason: d.Reason}
	}
	return d.Reason, nil
}

// mayReadExecution asks of principal id what reading execution of
// workflow name that createdBy started asks of a caller.
func (a workflowAuthorizer) mayReadExecution(ctx context.Context, id, name, createdBy string) error {
	return a.mayExecution(ctx, id, name, createdBy, auth.Read)
}

// mayExecution asks of principal id what access to an execution of
// workflow name that createdBy started asks of a caller (api/authz.go
// mayExecution): being its creator, or access on auth.ExecutionResources.
func (a workflowAuthorizer) mayExecution(ctx context.Context, id, name, createdBy string, access auth.Access) error {
	if a.insecure || createdBy != "" && id == createdBy {
		return nil
	}
	workflow, definition := auth.ExecutionResources(name)
	p, err := a.principals.Principal(ctx, id)
	if errors.Is(err, fault.ErrNotFound) {
		return &auth.ForbiddenError{Principal: id, Access: access, Target: definition.Target, Reason: "the principal no longer exists"}
	}
	if err != nil {
		return fmt.Errorf("authorize %s: %v: %w", definition.Target, err, fault.ErrUnavailable)
	}
	if a.authz.Check(ctx, p, access, workflow).Allowed {
		return nil
	}
	_, err = a.decide(ctx, p, access, definition)
	return err
}

// issued reads what the read model knows of issued worker credentials;
// *natsauth.Ledger implements it.
type issued interface {
	Get(user string) (natsauth.Issued, error)
}

// workerMayTake asks of the principal that NATS worker credentials were
// issued to what polling over HTTP asks of a caller (api/authz.go
// mayPoll): the WORKER role and EXECUTE on the task type or, for a task
// in the queue of a domain, on the DOMAIN. It is asked at
// every poll and take, so that credentials outlive neither their
// principal nor its rights. Credentials the ledger does not know pass
// when unlisted says so (the node made them for itself, or an external
// server's operator issued them); others (issued by another engine a
// moment ago, or recorded in a record parked as poison) are answered
// unavailable, and the worker tries again. Revoked or expired
// credentials are refused here too: the server closes their connections
// only once the gate's sync has applied the revocation list, which may
// fail or come late (another engine's revocation), and a connection left
// open meanwhile would still take tasks and report results.
func (a workflowAuthorizer) workerMayTake(ctx context.Context, ledger issued, unlisted func(user string) bool, taker, taskType, domain string) error {
	c, listed, err := a.liveCredentials(ledger, unlisted, taker)
	if err != nil || !listed {
		return err
	}
	return a.holderMayTake(ctx, c.IssuedBy, taskType, domain)
}

// liveCredentials returns the ledger's entry of the NATS credentials
// sender (takerOf), refusing them once revoked or expired; listed is
// false, with no error, for credentials unlisted admits and for every
// sender of an insecure node.
func (a workflowAuthorizer) liveCredentials(ledger issued, unlisted func(user string) bool, sender string) (c natsauth.Issued, listed bool, err error) {
	user, ok := strings.CutPrefix(sender, "nats:")
	if !ok || a.insecure {
		return c, false, nil
	}
	c, err = ledger.Get(user)
	if errors.Is(err, fault.ErrNotFound) {
		if unlisted(user) {
			return c, false, nil
		}
		return c, false, fmt.Errorf("worker credentials %s are not known to this engine yet: %w", user, fault.ErrUnavailable)
	}
	if err != nil {
		return c, false, fmt.Errorf("worker credentials %s: %v: %w", user, err, fault.ErrUnavailable)
	}
	switch {
	case c.RevokedAt != 0:
		return c, false, fmt.Errorf("worker credentials %s were revoked: %w", user, fault.ErrForbidden)
	case c.Expired(time.Now()):
		return c, false, fmt.Errorf("worker credentials %s expired: %w", user, fault.ErrForbidden)
	}
	return c, true, nil
}

// holderMayTake asks whether principal, which worker credentials were
// issued to, may still take tasks of taskType in domain's queue: the
// WORKER role and EXECUTE on the type or the domain.
func (a workflowAuthorizer) holderMayTake(ctx context.Context, principal, taskType, domain string) error {
	target := auth.Target{Type: auth.TargetTaskDef, ID: taskType}
	p, err := a.principals.Principal(ctx, principal)
	switch {
	case errors.Is(err, fault.ErrNotFound):
		return &auth.ForbiddenError{Principal: principal, Access: auth.Execute, Target: target,
			Reason: "the principal these worker credentials were issued to no longer exists"}
	case err != nil:
		return fmt.Errorf("authorize %s: %v: %w", target, err, fault.ErrUnavailable)
	case !p.HasPermission(auth.PermPollTasks):
		return &auth.ForbiddenError{Principal: p.ID, Access: auth.Execute, Target: target,
			Reason: "the principal these worker credentials were issued to no longer has the WORKER role"}
	}
	_, err = a.decide(ctx, p, auth.Execute, auth.Resource{Target: target, Domain: domain})
	return err
}

// unrestricted reports whether principal id may do anything: an admin, or
// anyone with authentication off.
func (a workflowAuthorizer) unrestricted(ctx context.Context, id string) bool {
	if a.insecure {
		return true
	}
	p, err := a.principals.Principal(ctx, id)
	return err == nil && p.IsAdmin()
}

// secretTargets tells the Authorizer the tags and creators of secrets and
// environment values.
type secretTargets struct {
	secrets secretSource
	env     envSource
}

// secretSource is what secretTargets reads of the secrets. api.SecretStore
// serves it from a *secrets.Store.
type secretSource interface {
	Access(ctx context.Context, name string) (creator string, tags []conductor.Tag, err error)
	Snapshot(ctx context.Context) (api.SecretSnapshot, error)
}

// envSource is secretSource for the environment values. api.EnvStore
// serves it from a *secrets.Env.
type envSource interface {
	Access(ctx context.Context, name string) (creator string, tags []conductor.Tag, err error)
	Snapshot(ctx context.Context) (api.EnvSnapshot, error)
}

// accessSnapshot is what TargetsTagged reads in an api.SecretSnapshot or
// an api.EnvSnapshot.
type accessSnapshot interface {
	Names() ([]string, error)
	Access(name string) (creator string, tags []conductor.Tag, err error)
	Close() error
}

// Describe implements auth.Describer: a secret's or environment value's
// creator and tags come from one read of its record, one state of it.
func (s secretTargets) Describe(ctx context.Context, t auth.Target) (tags []string, creator string, err error) {
	switch t.Type {
	case auth.TargetSecret:
		return described(s.secrets.Access(ctx, t.ID))
	case auth.TargetEnvVariable:
		return described(s.env.Access(ctx, t.ID))
	}
	return nil, "", nil
}

// described is a Describer's answer from a read of a target's creator and
// tags: a target that does not exist, or whose name no store would hold,
// has none, which grants nothing.
func described(creator string, stored []conductor.Tag, err error) ([]string, string, error) {
	if errors.Is(err, fault.ErrNotFound) || errors.Is(err, fault.ErrInvalid) {
		return nil, "", nil
	}
	if err != nil {
		return nil, "", err
	}
	return auth.TagNames(stored), creator, nil
}

// TagsOf implements auth.TagSource, which the grant listings' TagIndex
// needs; access decisions ask Describe.
func (s secretTargets) TagsOf(ctx context.Context, t auth.Target) ([]string, error) {
	tags, _, err := s.Describe(ctx, t)
	return tags, err
}

// TargetsTagged lists the secrets or environment values that carry tag,
// so that a permissions listing shows what a TAG grant covers. The names
// and each one's tags are read in one snapshot: read live, a value
// removed and another created between the names' read and the tags'
// would be listed as neither, a state the values never had.
func (s secretTargets) TargetsTagged(ctx context.Context, targetType, tag string) (_ []auth.Target, err error) {
	var sn accessSnapshot
	if targetType == auth.TargetEnvVariable {
		sn, err = s.env.Snapshot(ctx)
	} else {
		sn, err = s.secrets.Snapshot(ctx)
	}
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, sn.Close()) }()
	all, err := sn.Names()
	if err != nil {
		return nil, err
	}
	var out []auth.Target
	for _, name := range all {
		_, tags, err := sn.Access(name)
		if err != nil {
			return nil, err
		}
		if slices.Contains(auth.TagNames(tags), tag) {
			out = append(out, auth.Target{Type: targetType, ID: name})
		}
	}
	return out, nil
}

// definitionTargets tells the Authorizer the tags and creators of
// workflow and task definitions. They are read from the log when the read
// model lacks the name (metadata DefAccess), as a start looks up its
// workflow's definition and the engine a task's: another engine may have
// registered it a moment ago.
type definitionTargets struct{ defs *metadata.Store }

// Describe implements auth.Describer: a definition's owner and tags come
// from one read (of the log, when the read model lacks the name).
func (d definitionTargets) Describe(ctx context.Context, t auth.Target) (tags []string, creator string, err error) {
	return described(d.defs.DefAccess(ctx, defKind(t.Type), t.ID))
}

// TagsOf implements auth.TagSource, which the grant listings' TagIndex
// needs; access decisions ask Describe.
func (d definitionTargets) TagsOf(ctx context.Context, t auth.Target) ([]string, error) {
	tags, _, err := d.Describe(ctx, t)
	return tags, err
}

// defKind is the kind of definition a WORKFLOW_DEF or TASK_DEF target
// names.
func defKind(targetType string) metadata.Kind {
	if targetType == auth.TargetTaskDef {
		return metadata.KindTask
	}
	return metadata.KindWorkflow
}

// TargetsTagged lists the workflow or task definitions that carry tag.
func (d definitionTargets) TargetsTagged(ctx context.Context, targetType, tag string) ([]auth.Target, error) {
	kind := defKind(targetType)
	sets, err := d.defs.ListTags(ctx)
	if err != nil {
		return nil, err
	}
	var out []auth.Target
	for _, set := range sets {
		if set.Kind == kind && slices.Contains(auth.TagNames(set.Tags), tag) {
			out = append(out, auth.Target{Type: targetType, ID: set.Name})
		}
	}
	return out, nil
}

// scheduleTargets tells the Authorizer the tags and owners of schedules.
type scheduleTargets struct{ schedules scheduleSource }

// scheduleSource is what scheduleTargets reads of the schedules; a
// *scheduler.Store serves it.
type scheduleSource interface {
	Access(ctx context.Context, name string) (creator string, tags []conductor.Tag, err error)
	List(ctx context.Context, workflowName string) ([]*conductor.WorkflowSchedule, error)
}

// Describe implements auth.Describer: a schedule's owner and tags come
// from one read of its record, one state of it.
func (s scheduleTargets) Describe(ctx context.Context, t auth.Target) (tags []string, creator string, err error) {
	return described(s.schedules.Access(ctx, t.ID))
}

// TagsOf implements auth.TagSource, which the grant listings' TagIndex
// needs; access decisions ask Describe.
func (s scheduleTargets) TagsOf(ctx context.Context, t auth.Target) ([]string, error) {
	tags, _, err := s.Describe(ctx, t)
	return tags, err
}

// TargetsTagged lists the schedules that carry tag.
func (s scheduleTargets) TargetsTagged(ctx context.Context, targetType, tag string) ([]auth.Target, error) {
	defs, err := s.schedules.List(ctx, "")
	if err != nil {
		return nil, err
	}
	return taggedTargets(defs, targetType, tag, func(def *conductor.WorkflowSchedule) (string, []conductor.Tag) {
		return def.Name, def.Tags
	}), nil
}

// taggedTargets lists as targets of targetType those of items (read by
// of) that carry tag.
func taggedTargets[T any](items []T, targetType, tag string, of func(T) (id string, tags []conductor.Tag)) []auth.Target {
	var out []auth.Target
	for _, item := range items {
		if id, tags := of(item); slices.Contains(auth.TagNames(tags), tag) {
			out = append(out, auth.Target{Type: targetType, ID: id})
		}
	}
	return out
}

// appTargets tells the Authorizer the tags and creators of applications.
type appTargets struct{ apps appSource }

// appSource is what appTargets reads of the applications; an *auth.Store
// serves it.
type appSource interface {
	GetApplication(ctx context.Context, id string) (auth.Application, error)
	ListApplications(ctx context.Context) ([]auth.Application, error)
}

// Describe implements auth.Describer: an application's creator and tags
// come from one read of its record, one state of it.
func (a appTargets) Describe(ctx context.Context, t auth.Target) (tags []string, creator string, err error) {
	app, err := a.apps.GetApplication(ctx, t.ID)
	return described(app.CreatedBy, app.Tags, err)
}

// TagsOf implements auth.TagSource, which the grant listings' TagIndex
// needs; access decisions ask Describe.
func (a appTargets) TagsOf(ctx context.Context, t auth.Target) ([]string, error) {
	tags, _, err := a.Describe(ctx, t)
	return tags, err
}

// TargetsTagged lists the applications that carry tag.
func (a appTargets) TargetsTagged(ctx context.Context, targetType, tag string) ([]auth.Target, error) {
	apps, err := a.apps.ListApplications(ctx)
	if err != nil {
		return nil, err
	}
	return taggedTargets(apps, targetType, tag, func(app auth.Application) (string, []conductor.Tag) {
		return app.ID, app.Tags
	}), nil
}

// mayHandTasks asks of an inline definition that owner starts without a
// request of theirs (a schedule's tick, an event handler's start) what the
// API asks of one started or saved through it (api.TaskHandOff).
func (a workflowAuthorizer) mayHandTasks(ctx context.Context, tasks api.TaskHandOff, owner string, def *conductor.WorkflowDef) error {
	if a.insecure || def == nil {
		return nil
	}
	p, err := a.principals.Principal(ctx, owner)
	if errors.Is(err, fault.ErrNotFound) {
		return &auth.ForbiddenError{Principal: owner, Access: auth.Create, Target: auth.Target{Type: auth.TargetWorkflowDef, ID: def.Name},
			Reason: "the principal no longer exists"}
	}
	if err != nil {
		return fmt.Errorf("hand tasks of %s: %v: %w", def.Name, err, fault.ErrUnavailable)
	}
	return tasks.MayHandTasks(ctx, p, def)
}

// startCheck returns what the API asks of a start (api/authz.go
// checkStart), asked of the starts a workflow, a schedule, an event
// handler, a webhook or a start command makes as their principals (a
// sub-workflow's creator and every principal its parent runs as). A start
// is decided for all of them on one state of the name, and the check
// returns what it decided on, which the start holds to (executor.Pin):
// the name deleted and registered again by someone else meanwhile runs
// neither the newcomer's definition on a decision made on the former
// owner's, nor an inline definition as the newcomer's. A start by name
// reads its definition with its owner and tags (metadata
// LookupStartable), which the start runs; an inline definition's name is
// read once for CREATE and UPDATE (api.InlineStartRequires), and the
// start refuses to run under it once it moved. A definition is looked for
// as the start's own lookup looks for it, in the read model and then in
// the log: another engine may have registered it a moment ago, and a
// schedule's fire whose check answers not found is recorded FAILED for
// good. A lookup that fails otherwise fails the check, unavailable: the
// fire is tried again.
func startCheck(defs *metadata.Store, authz workflowAuthorizer) executor.StartCheck {
	return func(ctx context.Context, principals []string, req conductor.StartWorkflowRequest) (executor.Pin, error) {
		if len(principals) == 0 {
			// A start decided for nobody would be allowed by no decision.
			return executor.Pin{}, fmt.Errorf("%w: start of %s: no principal to decide it for", fault.ErrForbidden, req.Name)
		}
		var pin executor.Pin
		var reqs []api.Required
		if req.WorkflowDef == nil {
			// Not found (naming the version, as the start's own lookup
			// does), rather than refused: a refusal would blame the
			// principal (and pause a schedule as a security error).
			st, err := defs.LookupStartable(ctx, req.Name, req.Version)
			if err = auth.LookupFault(req.Name, err); err != nil {
				return executor.Pin{}, err
			}
			byName, err := auth.StartRequires(req, nil)
			if err != nil {
				return executor.Pin{}, err
			}
			described := auth.Described{Tags: auth.TagNames(st.Tags), Creator: st.Owner}
			for _, q := range byName {
				reqs = append(reqs, api.Required{Access: q.Access, Resource: auth.Resource{Target: q.Target, Describer: described}})
			}
			pin.Def = st.Def
		} else {
			var err error
			if reqs, pin.Checked, err = api.InlineStartRequires(ctx, defs, req); err != nil {
				return executor.Pin{}, err
			}
		}
		for _, p := range principals {
			for _, q := range reqs {
				if _, err := authz.authorizeOn(ctx, p, q.Access, q.Resource); err != nil {
					return executor.Pin{}, err
				}
			}
		}
		return pin, nil
	}
}
