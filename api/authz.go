package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"

	"github.com/flowvault/flowvault/auth"
	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/executor"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/metadata"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// Access to executions and tasks. An execution belongs to its workflow
// definition: READ on the definition reads its executions, EXECUTE starts
// them and operates on them (terminate, retry, complete a WAIT task...).
// The principal that started an execution has full access to it, and
// WORKFLOW_MANAGEMENT (role WORKFLOW_MANAGER) to all of them; a role that
// manages definitions (METADATA_MANAGER) reaches none of them through
// the definitions (auth.Resource.Executions). A worker
// reaches a task through its type: the WORKER role (POLL_TASKS) and
// EXECUTE on the task definition, or, for a task in a domain's queue,
// EXECUTE on that DOMAIN, which covers every type in it.
//
// For a caller without READ, an execution or task reads as not found with
// the very answer a missing one gets: ids must not be probed for existence.

// mayExecution reports (nil) whether the caller may do access on an
// execution of workflow name started by createdBy.
func (s *Server) mayExecution(r *http.Request, name, createdBy string, access auth.Access) error {
	if s.deps.Insecure {
		return nil
	}
	p := caller(r)
	if createdBy != "" && p.ID == createdBy {
		return nil
	}
	workflow, definition := auth.ExecutionResources(name)
	if s.deps.Authorizer.Check(r.Context(), p, access, workflow).Allowed {
		return nil
	}
	return s.deps.Authorizer.Authorize(r.Context(), p, access, definition)
}

// execution reads execution id for access by the caller.
func (s *Server) execution(r *http.Request, id string, access auth.Access) (*engine.Workflow, error) {
	return s.readExecution(r, id, access, s.deps.Executions.Workflow)
}

// executionHead is execution without the workflow's tasks (Tasks nil),
// for a caller that shows or checks none of them: a polled status reads
// the same few keys at any size of workflow.
func (s *Server) executionHead(r *http.Request, id string, access auth.Access) (*engine.Workflow, error) {
	read := s.deps.Executions.Workflow
	if heads, ok := s.deps.Executions.(ExecutionHeads); ok {
		read = heads.WorkflowHead
	}
	return s.readExecution(r, id, access, read)
}

func (s *Server) readExecution(r *http.Request, id string, access auth.Access, read func(context.Context, string) (*engine.Workflow, error)) (*engine.Workflow, error) {
	wf, err := read(r.Context(), id)
	if err != nil {
		return nil, err
	}
	if err := s.checkExecution(r, wf, id, access); err != nil {
		return nil, err
	}
	return wf, nil
}

// checkExecution is readExecution's check of the caller's access to wf,
// workflow id, for a reader that read it otherwise.
func (s *Server) checkExecution(r *http.Request, wf *engine.Workflow, id string, access auth.Access) error {
	if err := s.mayExecution(r, wf.Name, wf.CreatedBy, access); err != nil {
		return s.hidden(r, wf, "", access, err, fault.NotFound("workflow %s not found", id))
	}
	return nil
}

// hidden is the answer to a refused access on wf (on its task taskID,
// when not ""): the refusal when the caller may see the execution,
// notFound when it may not. Either way the refusal is an audit fact: a
// 404 hides it from the caller, not from the trail, where it names the
// workflow and task, since the definition it names is every run's.
func (s *Server) hidden(r *http.Request, wf *engine.Workflow, taskID string, access auth.Access, refused, notFound error) error {
	if !errors.Is(refused, fault.ErrForbidden) {
		return refused
	}
	refused = &executionRefusal{error: refused, workflow: wf.ID, task: taskID}
	if access != auth.Read && s.mayExecution(r, wf.Name, wf.CreatedBy, auth.Read) == nil {
		return refused
	}
	s.recordDenied(r, refused)
	return notFound
}

// executionRefusal is a refusal of access to an execution, or to one of
// its tasks: its audit record names them (GET /api/audit?workflow=).
type executionRefusal struct {
	error
	workflow, task string
}

func (e *executionRefusal) Unwrap() error { return e.error }

// mayPoll reports (nil) whether the caller may take tasks of taskType
// from the queue of domain ("": the queue without domain): tasks carry
// their input, secrets resolved. EXECUTE on the type reaches every queue
// of it; EXECUTE on DOMAIN:<domain> every type's queue of that domain.
//
// A type without a definition (workflows may use unregistered SIMPLE
// tasks) has no tags, no creator and no group default access: only
// POLL_ANY_TASK (ADMIN, UNRESTRICTED_WORKER) or a grant of EXECUTE on
// TASK_DEF:<type> itself, or on the domain, which only an admin can make,
// reaches it. In particular the CREATE every USER holds on unused task
// names does not. The refusal says so, since "no grant" reads as a
// missing grant on a definition the caller cannot find.
func (s *Server) mayPoll(r *http.Request, taskType, domain string) error {
	if s.deps.Insecure {
		return nil
	}
	p := caller(r)
	target := auth.Target{Type: auth.TargetTaskDef, ID: taskType}
	if !p.HasPermission(auth.PermPollTasks) {
		return &auth.ForbiddenError{Principal: p.ID, Access: auth.Execute, Target: target, Reason: "polling needs the WORKER role"}
	}
	err := s.deps.Authorizer.Authorize(r.Context(), p, auth.Execute, auth.Resource{Target: target, Domain: domain})
	var fe *auth.ForbiddenError
	if errors.As(err, &fe) && s.unregisteredTaskType(r, taskType) {
		granted := target.String()
		if domain != "" {
			granted += " or " + auth.Target{Type: auth.TargetDomain, ID: domain}.String()
		}
		return &auth.ForbiddenError{Principal: p.ID, Access: auth.Execute, Target: target,
			Reason: "task type " + taskType + " has no definition: polling an unregistered type needs the ADMIN or " +
				auth.RoleUnrestrictedWorker + " role, or a grant of EXECUTE on " + granted}
	}
	return err
}

// stillMayPoll asks again, for a poll that waited, what the poll asked
// when it came (mayPoll), of its token as it is now: a key paused or
// deleted, an application deleted, a role or a grant revoked during the
// wait take nothing.
func (s *Server) stillMayPoll(r *http.Request, taskType, domain string) func(context.Context) error {
	if s.deps.Insecure || s.deps.Tokens == nil {
		return nil
	}
	return func(ctx context.Context) error {
		p, claims, err := s.deps.Tokens.Authenticate(ctx, r.Header.Get(AuthHeader))
		if err != nil {
			return err
		}
		return s.mayPoll(asCaller(ctx, r, p, claims), taskType, domain)
	}
}

// unregisteredTaskType reports whether taskType is known to have no task
// definition. It is asked only to word a refusal: a lookup that fails
// leaves the refusal as the Authorizer worded it.
func (s *Server) unregisteredTaskType(r *http.Request, taskType string) bool {
	if s.deps.Metadata == nil {
		return false
	}
	_, err := s.deps.Metadata.GetTaskDef(r.Context(), taskType)
	return errors.Is(err, fault.ErrNotFound)
}

// mayUpdateTask reports (nil) whether the caller may report on task t of
// wf: as a worker of its type, or as an operator of the execution.
func (s *Server) mayUpdateTask(r *http.Request, wf *engine.Workflow, t *engine.Task) error {
	_, err := s.reporter(r, wf, t)
	return err
}

// reporter is whose data a report on task t of wf is, if it may be made:
// "" for a worker of the task's queue (trusted with the task: it takes its
// values), else the caller, an operator of the execution, whose data the
// workflow then runs as too (engine.Result.By).
func (s *Server) reporter(r *http.Request, wf *engine.Workflow, t *engine.Task) (string, error) {
	// Only a task workers take has workers: a WAIT, HUMAN or released
	// HTTP task is reported on by operators of the execution.
	if t.IsWorkerTask() && s.mayPoll(r, t.Name, t.Domain) == nil {
		return "", nil
	}
	if err := s.mayExecution(r, wf.Name, wf.CreatedBy, auth.Execute); err != nil {
		return "", s.hidden(r, wf, t.ID, auth.Execute, err, fault.NotFound("task %s not found", t.ID))
	}
	return principal(r), nil
}

// mayStart reports (nil) whether the caller may start req (see
// auth.StartRequires), whether its workflow is registered or not.
func (s *Server) mayStart(r *http.Request, req conductor.StartWorkflowRequest) error {
	_, err := s.checkStart(r, req)
	if req.WorkflowDef == nil && errors.Is(err, fault.ErrNotFound) {
		return nil
	}
	return err
}

// checkStart reports (nil) whether the caller may start req, and returns
// the options that pin the start to what it decided on. A start by name
// runs the registered definition decided on (executor.Pin.Def): the owner
// and tags the decision reads are read with it (metadata.Startable), not
// a definition that someone else registered under the name meanwhile. A
// start by name of a workflow not registered fails, not found, once
// allowed. An inline definition's start is refused if its name's state
// moved since (executor.Pin.Checked). Without Definitions the start looks
// the name up.
func (s *Server) checkStart(r *http.Request, req conductor.StartWorkflowRequest) (executor.StartOptions, error) {
	if req.WorkflowDef != nil || s.deps.Definitions == nil {
		checked, err := s.mayStartInline(r, req)
		return executor.StartOptions{Pin: executor.Pin{Checked: checked}}, err
	}
	st, missing := s.deps.Definitions.LookupStartable(r.Context(), req.Name, req.Version)
	if missing = auth.LookupFault(req.Name, missing); missing != nil && !errors.Is(missing, fault.ErrNotFound) {
		return executor.StartOptions{}, missing
	}
	// A start that found no definition runs nothing, so there is nothing
	// to pin: the Authorizer reads the name's owner and tags itself. A
	// version the name does not hold says nothing of them, and its owner
	// is answered 404, not refused.
	var described auth.Describer
	if missing == nil {
		described = describedBy(st)
	}
	reqs, err := auth.StartRequires(req, nil)
	for i := 0; err == nil && i < len(reqs); i++ {
		err = s.authorizeOn(r, reqs[i].Access, auth.Resource{Target: reqs[i].Target, Describer: described})
	}
	if err != nil {
		return executor.StartOptions{}, err
	}
	return executor.StartOptions{Pin: executor.Pin{Def: st.Def}}, missing
}

// mayStartInline reports (nil) whether the caller may start req, which
// sends its definition inline (or, without Definitions, names it), and
// returns the state of the inline definition's name it decided on
// (InlineStartRequires).
func (s *Server) mayStartInline(r *http.Request, req conductor.StartWorkflowRequest) (*executor.NameState, error) {
	if req.WorkflowDef != nil {
		if err := s.mayHandTasksTo(r, req.WorkflowDef); err != nil {
			return nil, err
		}
	}
	if req.WorkflowDef == nil || s.deps.Definitions == nil {
		reqs, err := auth.StartRequires(req, nil)
		if err != nil {
			return nil, err
		}
		return nil, s.authorizeAll(r, reqs)
	}
	reqs, checked, err := InlineStartRequires(r.Context(), s.deps.Definitions, req)
	for i := 0; err == nil && i < len(reqs); i++ {
		err = s.authorizeOn(r, reqs[i].Access, reqs[i].Resource)
	}
	if err != nil {
		return nil, err
	}
	return checked, nil
}

// Required is access asked on a resource.
type Required struct {
	Access   auth.Access
	Resource auth.Resource
}

// InlineStartRequires is what a start of req's inline definition asks
// (auth.StartRequires), decided on one read of the name it runs under:
// CREATE of a name registered nowhere, UPDATE too of its owner's
// definition, on the owner and tags read with whether it is registered.
// It returns the state of the name read too, which the start holds to
// (executor.Pin.Checked): a name registered, or passed to another owner,
// since would have the execution as the newcomer's. The API and the
// node's starts (a schedule's, a SUB_WORKFLOW's, an event handler's) ask
// it alike.
func InlineStartRequires(ctx context.Context, defs DefinitionLookup, req conductor.StartWorkflowRequest) ([]Required, *executor.NameState, error) {
	checked := &executor.NameState{}
	var described auth.Described
	reqs, err := auth.StartRequires(req, func(name string) error {
		st, err := defs.LookupStartable(ctx, name, nil)
		if err == nil {
			*checked = executor.NameState{Registered: true, Owner: st.Owner}
			described = describedBy(st)
		}
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	out := make([]Required, len(reqs))
	for i, q := range reqs {
		out[i] = Required{Access: q.Access, Resource: auth.Resource{Target: q.Target}}
		if q.Target == (auth.Target{Type: auth.TargetWorkflowDef, ID: auth.InlineName(req)}) {
			out[i].Resource.Describer = described
		}
	}
	return out, checked, nil
}

// definitionToRun returns version *version of workflow definition name
// (the latest when nil) for wf to run from now on, a restart with
// useLatestDefinitions or an upgrade, once it is decided as a start by
// name of it is: EXECUTE on it, asked of the caller and of every
// principal wf runs as, all of whom it runs as then, on the owner and
// tags read with the definition in one state of its name
// (metadata.Startable). The trigger runs that very definition: a name
// deleted and registered again by someone else does not run the
// newcomer's on a decision made on the former owner's, nor is a
// definition someone else now owns under the name run by those who may
// not start it. Its tasks' hand-off was decided when it was registered,
// as for a start by name. The trigger carries wf.Principals() as those it
// was decided for: the engine refuses it when the workflow runs as
// someone more by then, whom wf, read from the read model, did not show.
func (s *Server) definitionToRun(r *http.Request, wf *engine.Workflow, name string, version *int) (*conductor.WorkflowDef, error) {
	if s.deps.Definitions == nil {
		return nil, fault.NotFound("workflow definition %s not found", name)
	}
	st, err := s.deps.Definitions.LookupStartable(r.Context(), name, version)
	if err != nil {
		return nil, auth.LookupFault(name, err)
	}
	res := auth.Resource{Target: auth.Target{Type: auth.TargetWorkflowDef, ID: name}, Describer: describedBy(st)}
	err = s.authorizeOn(r, auth.Execute, res)
	for _, id := range wf.Principals() {
		if err != nil {
			break
		}
		if id != "" && id != principal(r) {
			err = s.authorizeFor(r, id, auth.Execute, res)
		}
	}
	if errors.Is(err, fault.ErrForbidden) {
		// Its record in the trail names the workflow.
		err = &executionRefusal{error: err, workflow: wf.ID}
	}
	if err != nil {
		return nil, err
	}
	return st.Def, nil
}

// authorizeFor is authorizeOn asked of principal id rather than the
// caller: one a workflow the caller operates on runs as. A refusal's
// reason names id: the trail records the caller, who may hold the right.
func (s *Server) authorizeFor(r *http.Request, id string, access auth.Access, res auth.Resource) error {
	if s.deps.Insecure {
		return nil
	}
	if s.deps.Auth == nil {
		return fmt.Errorf("authorize %s for %s: no principals to read it in: %w", res.Target, id, fault.ErrUnavailable)
	}
	p, err := s.deps.Auth.Principal(r.Context(), id)
	switch {
	case errors.Is(err, fault.ErrNotFound):
		err = &auth.ForbiddenError{Principal: id, Access: access, Target: res.Target, Reason: "the principal no longer exists"}
	case err != nil:
		return fmt.Errorf("authorize %s for %s: %v: %w", res.Target, id, err, fault.ErrUnavailable)
	default:
		err = s.deps.Authorizer.Authorize(r.Context(), p, access, res)
	}
	if fe := (*auth.ForbiddenError)(nil); errors.As(err, &fe) {
		return &auth.ForbiddenError{Principal: id, Access: access, Target: res.Target, Reason: "the workflow runs as " + id + ": " + fe.Reason}
	}
	return err
}

// describedBy is the owner and tags of a startable definition's name, as
// an access decision on it reads them.
func describedBy(st metadata.Startable) auth.Described {
	return auth.Described{Tags: auth.TagNames(st.Tags), Creator: st.Owner}
}

// authorizeAll checks each requirement, in order.
func (s *Server) authorizeAll(r *http.Request, reqs []auth.Requirement) error {
	for _, q := range reqs {
		if err := s.authorize(r, q.Access, q.Target); err != nil {
			return err
		}
	}
	return nil
}

// visibleExecutions returns the caller's filter over executions by
// workflow name and creator, nil when it sees them all. Decisions are
// remembered per name for the one request.
func (s *Server) visibleExecutions(r *http.Request) func(name, createdBy string) bool {
	if s.deps.Insecure || caller(r).IsAdmin() {
		return nil
	}
	var mu sync.Mutex
	byName := map[string]bool{}
	id := caller(r).ID
	return func(name, createdBy string) bool {
		if createdBy != "" && createdBy == id {
			return true
		}
		mu.Lock()
		defer mu.Unlock()
		ok, known := byName[name]
		if !known {
			ok = s.mayExecution(r, name, "", auth.Read) == nil
			byName[name] = ok
		}
		return ok
	}
}

// readsAll reports whether every access decision allows the caller
// (authentication off, or an admin): a listing has nothing to check, nor
// to pin what it shows to, for it.
func (s *Server) readsAll(r *http.Request) bool {
	return s.deps.Insecure || caller(r).IsAdmin()
}

// may reports whether the caller holds access on t (for filtering lists).
func (s *Server) may(r *http.Request, access auth.Access, t auth.Target) bool {
	return s.authorize(r, access, t) == nil
}
