package api

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/flowvault/flowvault/auth"
	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/metadata"
	"github.com/flowvault/flowvault/projections/executions/query"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// maxMetadataBody bounds a metadata request body. Definitions of a few
// hundred tasks stay well under it, and it leaves room below the event
// log's record limit (8 MiB).
const maxMetadataBody = 4 << 20

// Metadata is what the /api/metadata handlers need: the definition store.
// *metadata.Store implements it; see there for the contract of each method.
//
// Every write is checked and applied on one revision of its definition
// name: the handler reads Revision, checks the caller's access (which
// reads the same read model, so a state at least as new), and writes with
// metadata.At. A name created, deleted, re-created or re-tagged by someone
// else in between answers 409 instead of a write with access its writer
// was never checked for. A read of one definition is checked so too, and
// reads at the revision (the *At methods): it shows no definition but the
// one checked. A listing reads every name it lists in one Snapshot, taken
// for the whole listing, and decides its caller's access to each on the
// state it reads there: it, too, shows no definition but the one checked.
type Metadata interface {
	Revision(ctx context.Context, kind metadata.Kind, name string) (metadata.Revision, error)
	Snapshot(ctx context.Context) (*metadata.Snapshot, error)

	RegisterWorkflowDef(ctx context.Context, def *conductor.WorkflowDef, overwrite bool, principal string, opts ...metadata.WriteOption) error
	PutWorkflowDefs(ctx context.Context, defs []*conductor.WorkflowDef, overwrite bool, principal string, opts ...metadata.WriteOption) (*conductor.BulkResponse, error)
	GetWorkflowDefAt(ctx context.Context, name string, version *int, rev metadata.Revision) (*conductor.WorkflowDef, error)
	FindWorkflowDefsAt(ctx context.Context, f metadata.WorkflowFilter, rev metadata.Revision) ([]*conductor.WorkflowDef, error)
	DeleteWorkflowDef(ctx context.Context, name string, version int, principal string, opts ...metadata.WriteOption) error
	SetWorkflowRateLimit(ctx context.Context, name string, version *int, cfg map[string]any, principal string, opts ...metadata.WriteOption) error

	RegisterTaskDefs(ctx context.Context, defs []*conductor.TaskDef, principal string, opts ...metadata.WriteOption) error
	UpdateTaskDef(ctx context.Context, def *conductor.TaskDef, principal string, opts ...metadata.WriteOption) error
	GetTaskDef(ctx context.Context, name string) (*conductor.TaskDef, error)
	TaskDefForAccess(ctx context.Context, name string) (*conductor.TaskDef, error)
	GetTaskDefAt(ctx context.Context, name string, rev metadata.Revision) (*conductor.TaskDef, error)
	ListTaskDefs(ctx context.Context) ([]*conductor.TaskDef, error)
	FindTaskDefsAt(ctx context.Context, name string, f metadata.TagFilter, rev metadata.Revision) ([]*conductor.TaskDef, error)
	DeleteTaskDef(ctx context.Context, name string, principal string, opts ...metadata.WriteOption) error
	TaskUses(ctx context.Context, name string) ([]metadata.TaskUse, error)
	Starters(ctx context.Context, name string) ([]metadata.Starter, error)

	GetTagsAt(ctx context.Context, kind metadata.Kind, name string, rev metadata.Revision) ([]conductor.Tag, error)
	AddTags(ctx context.Context, kind metadata.Kind, name string, tags []conductor.Tag, principal string, opts ...metadata.WriteOption) error
	SetTags(ctx context.Context, kind metadata.Kind, name string, tags []conductor.Tag, principal string, opts ...metadata.WriteOption) error
	DeleteTags(ctx context.Context, kind metadata.Kind, name string, tags []conductor.Tag, principal string, opts ...metadata.WriteOption) error
}

var _ Metadata = (*metadata.Store)(nil)

// metadataRoutes registers Conductor's /api/metadata surface
// (conductor-api.md §4.1).
// Registering a name needs CREATE on it (role permission
// CREATE_WORKFLOW_DEF / CREATE_TASK_DEF, or a grant), a new version or an
// update of an existing one UPDATE; listings show what the caller may READ.
// A new task definition must not take over the tasks that other
// principals' workflows hand to workers under its name (see
// mayClaimTaskName).
// Reads of one definition and writes check access in their handler, not
// in the route's rule: on the revision they then read or write (see
// Metadata).
func (s *Server) metadataRoutes() {
	s.route("POST /api/metadata/workflow", auth.Authenticated, s.registerWorkflowDef)
	s.route("PUT /api/metadata/workflow", auth.Authenticated, s.putWorkflowDefs)
	s.route("GET /api/metadata/workflow", auth.Authenticated, s.listWorkflowDefs)
	s.route("GET /api/metadata/workflow/{name}", auth.Authenticated, s.getWorkflowDef)
	// Conductor OSS's summaries, which Conductor's UI lists definitions
	// with; as routes of their own they shadow definitions of these names
	// in GET /{name}, as in Conductor.
	s.route("GET /api/metadata/workflow/names-and-versions", auth.Authenticated, s.workflowNamesAndVersions)
	s.route("GET /api/metadata/workflow/latest-versions", auth.Authenticated, s.latestWorkflowDefs)
	s.route("DELETE /api/metadata/workflow/{name}/{version}", auth.Authenticated, s.deleteWorkflowDef)
	// Orkes's workflow rate limit, the definition's rateLimitConfig: the
	// reference spells the path rateLimit, the JavaScript SDK rate-limit.
	// Without these routes a DELETE would read either as a version.
	for _, path := range []string{"/api/metadata/workflow/{name}/rateLimit", "/api/metadata/workflow/{name}/rate-limit"} {
		s.route("GET "+path, auth.Authenticated, s.getWorkflowRateLimit)
		s.route("PUT "+path, auth.Authenticated, s.setWorkflowRateLimit)
		s.route("POST "+path, auth.Authenticated, s.setWorkflowRateLimit)
		s.route("DELETE "+path, auth.Authenticated, s.setWorkflowRateLimit)
	}

	s.route("POST /api/metadata/taskdefs", auth.Authenticated, s.registerTaskDefs)
	s.route("PUT /api/metadata/taskdefs", auth.Authenticated, s.updateTaskDef)
	s.route("GET /api/metadata/taskdefs", auth.Authenticated, s.listTaskDefs)
	s.route("GET /api/metadata/taskdefs/{name}", auth.Authenticated, s.getTaskDef)
	s.route("DELETE /api/metadata/taskdefs/{name}", auth.Authenticated, s.deleteTaskDef)
	s.route("GET /api/metadata/tags", auth.Authenticated, s.listTags)

	for _, k := range []struct {
		prefix string
		kind   metadata.Kind
	}{
		{"/api/metadata/workflow/{name}/tags", metadata.KindWorkflow},
		{"/api/metadata/task/{name}/tags", metadata.KindTask},
	} {
		s.route("GET "+k.prefix, auth.Authenticated, s.getTags(k.kind))
		s.route("POST "+k.prefix, auth.Authenticated, s.changeTags(k.kind, s.deps.Metadata.AddTags))
		s.route("PUT "+k.prefix, auth.Authenticated, s.changeTags(k.kind, s.deps.Metadata.SetTags))
		s.route("DELETE "+k.prefix, auth.Authenticated, s.changeTags(k.kind, s.deps.Metadata.DeleteTags))
	}
}

// mayWriteWorkflowDef checks CREATE on a new workflow name, UPDATE on a
// registered one, and EXECUTE on the failureWorkflow it names: that one
// starts, unasked, whenever a run fails. It returns the revision of the
// name the check was made on, for the write to pin (see Metadata).
func (s *Server) mayWriteWorkflowDef(r *http.Request, def *conductor.WorkflowDef) (metadata.Revision, error) {
	rev, err := s.mayChangeDef(r, metadata.KindWorkflow, def.Name, createOrUpdate)
	if err != nil {
		return rev, err
	}
	if !rev.Exists {
		if err := s.mayClaimWorkflowName(r, def.Name); err != nil {
			return rev, err
		}
	}
	if err := s.mayHandTasksTo(r, def); err != nil {
		return rev, err
	}
	return rev, s.authorizeAll(r, auth.FailureWorkflowRequires(def))
}

// mayClaimWorkflowName refuses to create the definition of a workflow
// name that executions other principals started carry: of an inline
// definition, or of a definition since deleted. An execution belongs to
// its workflow's name, and the creator of the name's definition reads and
// operates every execution of it, input and output included. Nor may it
// create a name that another principal's definition starts by that name
// (mayClaimStartedName). Admins and holders of METADATA_MANAGEMENT may
// create any name; so may whoever started every execution of it and wrote
// every definition naming it.
func (s *Server) mayClaimWorkflowName(r *http.Request, name string) error {
	p := caller(r)
	if s.deps.Insecure || p.IsAdmin() || p.HasPermission(auth.PermMetadataManagement) ||
		len(name) > metadata.MaxNameLen { // refused by validation, saying why
		return nil
	}
	if err := s.mayClaimStartedName(r, p, name); err != nil || s.deps.Search == nil {
		return err
	}
	q := "workflowType = " + queryString(name)
	n, _, err := s.deps.Search.SearchWorkflows(r.Context(), query.Search{Query: q, Size: 0, Visible: func(_, createdBy string) bool {
		return createdBy != p.ID
	}})
	if err != nil {
		return fmt.Errorf("executions of %s: %w", name, err)
	}
	if n == 0 {
		return nil
	}
	return &auth.ForbiddenError{Principal: p.ID, Access: auth.Create, Target: auth.Target{Type: auth.TargetWorkflowDef, ID: name},
		Reason: "executions that other principals started carry that name, and its definition's creator would read and operate them: " +
			"an admin or a holder of " + auth.PermMetadataManagement + " may create it"}
}

// mayClaimStartedName refuses p the name of a workflow that a definition
// another principal wrote starts by that name: its failureWorkflow, or a
// SUB_WORKFLOW's or START_WORKFLOW's. The named workflow would start as
// the new definition, with the data those runs hand it (_secrets opened
// for its tasks), which the new definition's creator reads. The refusal
// does not name that definition, which p may not be allowed to read.
func (s *Server) mayClaimStartedName(r *http.Request, p auth.Principal, name string) error {
	starters, err := s.deps.Metadata.Starters(r.Context(), name)
	if err != nil {
		return err
	}
	for _, st := range starters {
		if st.CreatedBy != p.ID || st.UpdatedBy != p.ID {
			return &auth.ForbiddenError{Principal: p.ID, Access: auth.Create, Target: auth.Target{Type: auth.TargetWorkflowDef, ID: name},
				Reason: "a definition another principal wrote starts a workflow by that name (its failureWorkflow, a SUB_WORKFLOW or a " +
					"START_WORKFLOW), which would start as this definition with that definition's data: " +
					"an admin or a holder of " + auth.PermMetadataManagement + " may create it"}
		}
	}
	// An event handler's start_workflow and an incoming webhook name
	// workflows as a definition does: events and deliveries would reach
	// this definition, readable as its creator.
	var saved []string
	if s.deps.EventHandlers != nil {
		handlers, err := s.deps.EventHandlers.EventHandlers(r.Context())
		if err != nil {
			return fmt.Errorf("event handlers starting %s: %w", name, err)
		}
		for _, h := range handlers {
			if (h.CreatedBy != p.ID || h.UpdatedBy != p.ID) && slices.Contains(metadata.HandlerStartedNames(h), name) {
				saved = append(saved, "an event handler")
				break
			}
		}
	}
	if s.deps.Webhooks != nil {
		hooks, err := s.deps.Webhooks.Webhooks(r.Context())
		if err != nil {
			return fmt.Errorf("webhooks starting %s: %w", name, err)
		}
		for _, c := range hooks {
			if (c.CreatedBy != p.ID || c.UpdatedBy != p.ID) && slices.Contains(metadata.WebhookStartedNames(c), name) {
				saved = append(saved, "an incoming webhook")
				break
			}
		}
	}
	if len(saved) > 0 {
		return &auth.ForbiddenError{Principal: p.ID, Access: auth.Create, Target: auth.Target{Type: auth.TargetWorkflowDef, ID: name},
			Reason: strings.Join(saved, " and ") + " another principal saved starts a workflow by that name, or completes its " +
				"WAIT_FOR_WEBHOOK tasks, with the data of its events or deliveries, which this definition's creator would read: " +
				"an admin or a holder of " + auth.PermMetadataManagement + " may create it"}
	}
	return nil
}

// mayHandTasksTo asks TaskHandOff.MayHandTasks for the caller of r.
func (s *Server) mayHandTasksTo(r *http.Request, def *conductor.WorkflowDef) error {
	if s.deps.Insecure {
		return nil
	}
	return TaskHandOff{TaskDefs: s.deps.Metadata, Principals: s.deps.Auth, Authorizer: s.deps.Authorizer}.MayHandTasks(r.Context(), caller(r), def)
}

// TaskHandOff is what MayHandTasks reads.
type TaskHandOff struct {
	// TaskDefs reads a task definition as a decision on its type does:
	// one another engine registered a moment ago is read from the log.
	TaskDefs interface {
		TaskDefForAccess(ctx context.Context, name string) (*conductor.TaskDef, error)
	}
	// Principals tells the task definitions' creators (nil: none is
	// taken for one who may share).
	Principals interface {
		Principal(ctx context.Context, id string) (auth.Principal, error)
	}
	Authorizer *auth.Authorizer
}

// MayHandTasks refuses a workflow definition that p would start or save
// when it hands tasks to workers under the name of a task definition
// another principal created, which p may not read: that principal may
// take those tasks, input included, secrets resolved (see
// mayClaimTaskName, the same taking from the other side: a name claimed
// before the workflow used it). So does a system task under such a name
// whose definition has an inputTemplate, which adds to the task's input.
// A definition created by an admin or a holder of METADATA_MANAGEMENT is
// shared; so is any p may READ, knowing whose it is. The node asks it of
// the starts no request asks for (a schedule's tick, an event handler's
// start_workflow): a task definition created between two ticks would
// otherwise take every later tick's tasks.
func (h TaskHandOff) MayHandTasks(ctx context.Context, p auth.Principal, def *conductor.WorkflowDef) error {
	if def == nil || p.IsAdmin() || p.HasPermission(auth.PermMetadataManagement) {
		return nil
	}
	for _, n := range metadata.TaskNames(def) {
		td, err := h.TaskDefs.TaskDefForAccess(ctx, n.Name)
		if errors.Is(err, fault.ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		if td.CreatedBy == "" || td.CreatedBy == p.ID {
			continue
		}
		// A system task is not handed out, but its definition's
		// inputTemplate adds to its input: an HTTP task's request.
		if !slices.ContainsFunc(n.Types, workerType) && len(td.InputTemplate) == 0 {
			continue
		}
		if h.Principals != nil {
			owner, err := h.Principals.Principal(ctx, td.CreatedBy)
			if err == nil && (owner.IsAdmin() || owner.HasPermission(auth.PermMetadataManagement)) {
				continue
			}
		}
		target := auth.Target{Type: auth.TargetTaskDef, ID: n.Name}
		switch err := h.Authorizer.Authorize(ctx, p, auth.Read, auth.Resource{Target: target}); {
		case err == nil:
			continue
		case !errors.Is(err, fault.ErrForbidden):
			return err
		}
		return &auth.ForbiddenError{Principal: p.ID, Access: auth.Read, Target: target,
			Reason: "another principal created that task definition, and would take this workflow's " + n.Name +
				" tasks, their input and resolved secrets included, or add to their input: READ on it is needed to hand them tasks"}
	}
	return nil
}

// mayWriteTaskDef checks CREATE on a new task name, UPDATE on a
// registered one, and returns the revision the check was made on. A new
// name must also be free for the caller to take (mayClaimTaskName).
func (s *Server) mayWriteTaskDef(r *http.Request, name string) (metadata.Revision, error) {
	rev, err := s.mayChangeDef(r, metadata.KindTask, name, createOrUpdate)
	if err != nil || rev.Exists {
		return rev, err
	}
	return rev, s.mayClaimTaskName(r, name)
}

// mayClaimTaskName refuses to create the task definition of a name that
// other principals' workflows use without a definition.
//
// Workflows may run tasks that have no task definition. Workers take
// tasks by name, and the creator of a task definition may take the tasks
// of its name (EXECUTE on TASK_DEF:<name>), input included, secrets
// resolved; and a definition's inputTemplate adds to the input of every
// task of its name, a system task's too (an HTTP task's request).
// Creating the definition of a name that someone else's workflow uses
// would hand its creator that workflow's tasks. So a new name is refused,
// 403, when a workflow definition that the caller neither created (that
// version) nor may UPDATE has a task of that name; or when tasks of that name,
// of executions the caller neither started nor may UPDATE the definition
// of, are waiting for a worker or held by one (the executions of inline
// definitions, of deleted versions, and dynamically named tasks, which no
// stored definition shows). A caller who may UPDATE a workflow could
// route its tasks anywhere anyway.
//
// Admins and holders of METADATA_MANAGEMENT (role METADATA_MANAGER), who
// may change every definition, may create any name: that is how a shared
// name gets its definition. The refusal names the workflow definitions
// the caller may read and counts the others.
func (s *Server) mayClaimTaskName(r *http.Request, name string) error {
	p := caller(r)
	if s.deps.Insecure || p.IsAdmin() || p.HasPermission(auth.PermMetadataManagement) {
		return nil
	}
	uses, err := s.deps.Metadata.TaskUses(r.Context(), name)
	if err != nil {
		return err
	}
	foreign := foreignWorkflows{s: s, r: r, known: map[string]bool{}}
	var conflicts []string
	mine := map[string]bool{} // workflows with a version the caller created that uses name
	for _, u := range uses {
		if u.CreatedBy == p.ID {
			mine[u.Workflow] = true
			continue
		}
		if slices.Contains(conflicts, u.Workflow) {
			continue
		}
		theirs, err := foreign.is(u.Workflow)
		if err != nil {
			return err
		}
		if theirs {
			conflicts = append(conflicts, u.Workflow)
		}
	}
	running, err := s.foreignActiveTasks(r, name, mine, &foreign)
	if err != nil {
		return err
	}
	if len(conflicts) == 0 && !running {
		return nil
	}
	return s.takeoverRefusal(r, name, conflicts, running)
}

// workerType reports whether the engine hands tasks of type typ to workers
// (under the task's name) rather than deciding or running them itself.
func workerType(typ string) bool { return (&engine.Task{Type: typ}).IsWorkerTask() }

// foreignWorkflows decides, once per workflow name, whether the caller
// may not UPDATE a workflow definition: whether its tasks are someone
// else's to route.
type foreignWorkflows struct {
	s *Server
	r *http.Request

	mu    sync.Mutex
	known map[string]bool
}

func (f *foreignWorkflows) is(workflow string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if v, ok := f.known[workflow]; ok {
		return v, nil
	}
	err := f.s.authorize(f.r, auth.Update, auth.Target{Type: auth.TargetWorkflowDef, ID: workflow})
	switch {
	case err == nil:
		f.known[workflow] = false
	case errors.Is(err, fault.ErrForbidden):
		f.known[workflow] = true
	default:
		return false, err
	}
	return f.known[workflow], nil
}

// foreignActiveTasks reports whether worker tasks named name are waiting
// for a worker, or held by one, in executions that the caller did not
// start, of workflows it neither may UPDATE nor created a version of that
// uses name (mine). Without the executions read model it reports none.
func (s *Server) foreignActiveTasks(r *http.Request, name string, mine map[string]bool, foreign *foreignWorkflows) (bool, error) {
	if s.deps.Search == nil || name == "" {
		return false, nil
	}
	// taskType is the name for tasks workers take, the type for others.
	q := fmt.Sprintf("taskDefName = %s AND taskType = %s AND status IN (%s, %s)",
		queryString(name), queryString(name), conductor.TaskScheduled, conductor.TaskInProgress)
	id := caller(r).ID
	var ferr error
	n, _, err := s.deps.Search.SearchTasks(r.Context(), query.Search{Query: q, Size: 0, Visible: func(workflow, createdBy string) bool {
		if ferr != nil || (createdBy != "" && createdBy == id) || mine[workflow] {
			return false
		}
		theirs, err := foreign.is(workflow)
		if err != nil {
			ferr = err
		}
		return theirs
	}})
	if err == nil {
		err = ferr
	}
	if err != nil {
		return false, fmt.Errorf("tasks named %s in progress: %w", name, err)
	}
	return n > 0, nil
}

// queryString quotes s as a string literal of the search syntax.
func queryString(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// takeoverRefusal is the 403 for creating task definition name, which the
// workflow definitions conflicts (and, when running, tasks in progress of
// others' executions) use. The caller reads the names of the workflow
// definitions it may read; the audit trail records them all.
func (s *Server) takeoverRefusal(r *http.Request, name string, conflicts []string, running bool) error {
	var readable []string
	for _, w := range conflicts {
		if s.may(r, auth.Read, auth.Target{Type: auth.TargetWorkflowDef, ID: w}) {
			readable = append(readable, w)
		}
	}
	slices.Sort(readable)
	slices.Sort(conflicts)
	why := func(shown []string) string {
		var parts []string
		if len(conflicts) > 0 {
			list := strings.Join(shown, ", ")
			if hidden := len(conflicts) - len(shown); hidden > 0 {
				if list != "" {
					list += " and "
				}
				list += fmt.Sprintf("%d you may not read", hidden)
			}
			parts = append(parts, fmt.Sprintf("task %s has no definition and is a task of workflow definitions of other principals that you may not update (%s)", name, list))
		}
		if running {
			parts = append(parts, fmt.Sprintf("tasks named %s of workflows other principals started are waiting for a worker or held by one", name))
		}
		return strings.Join(parts, "; ") + "; the creator of its definition could poll those tasks and receive their input, secrets resolved, or add to their input: " +
			"ask an admin or a holder of " + auth.PermMetadataManagement + " (role " + auth.RoleMetadataManager + ") to create it, " +
			"or for UPDATE on those workflow definitions"
	}
	p := caller(r)
	target := auth.Target{Type: auth.TargetTaskDef, ID: name}
	audited := &auth.ForbiddenError{Principal: p.ID, Access: auth.Create, Target: target, Reason: why(conflicts)}
	if len(readable) == len(conflicts) {
		return audited
	}
	shown := &auth.ForbiddenError{Principal: p.ID, Access: auth.Create, Target: target, Reason: why(readable)}
	return &refusal{msg: shown.Error(), cause: audited}
}

// createOrUpdate is the access a registration needs on a name: CREATE
// while it is free, UPDATE once it is taken.
func createOrUpdate(rev metadata.Revision) auth.Access {
	if rev.Exists {
		return auth.Update
	}
	return auth.Create
}

// mayChangeDef reads definition name's revision and then checks the
// access it needs on it. The order matters: the check reads a state at
// least as new as the revision, so a write pinned to the revision either
// applies to the state that was checked or conflicts.
func (s *Server) mayChangeDef(r *http.Request, kind metadata.Kind, name string, access func(metadata.Revision) auth.Access) (metadata.Revision, error) {
	rev, err := s.deps.Metadata.Revision(r.Context(), kind, name)
	if err != nil {
		return rev, err
	}
	target := auth.Target{Type: defTarget(kind), ID: name}
	err = s.authorize(r, access(rev), target)
	if rev.Exists && access(metadata.Revision{}) == auth.Create { // a registration
		err = s.asIfFree(r, target, err)
	}
	return rev, err
}

// asIfFree answers refused, the refusal to register target over what
// holds its name, as the registration of a free name would be answered
// when that would be refused too and the caller may not read target: a
// caller who may not read what holds a name learns from the refusal no
// more than of a free one. The trail records the refusal as it was.
func (s *Server) asIfFree(r *http.Request, target auth.Target, refused error) error {
	if !errors.Is(refused, fault.ErrForbidden) || s.may(r, auth.Read, target) {
		return refused
	}
	if asFree := s.authorize(r, auth.Create, target); asFree != nil {
		return &refusal{msg: asFree.Error(), cause: refused}
	}
	return refused
}

// staleAttempts bounds how many times a definition write is checked and
// tried (retryStale).
const staleAttempts = 16

// retryStale runs write, which checks access on a definition's current
// state and writes pinned to it (metadata.At), again while it is refused
// because the definition changed in between (fault.ErrStale): each try
// checks access on the state it writes to, so concurrent upserts of one
// definition (SDK task handlers registering theirs as several workers
// start) succeed, the last one written winning, as they do in Conductor.
// Tries are bounded, a jittered pause growing between them; the last
// refusal is answered 409, retryable.
func retryStale(ctx context.Context, write func() error) error {
	for attempt := 1; ; attempt++ {
		err := write()
		if !errors.Is(err, fault.ErrStale) || attempt == staleAttempts || !staleBackoff(ctx, attempt) {
			return err
		}
	}
}

// staleBackoff pauses before try attempt+1 of a stale write: a random
// time up to 2 ms doubled per try (at most 128 ms), so that writers that
// collided do not collide again. False when ctx ended first.
func staleBackoff(ctx context.Context, attempt int) bool {
	t := time.NewTimer(time.Duration(rand.Int64N(int64(2*time.Millisecond) << min(attempt, 6))))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// always is an access whatever the revision.
func always(a auth.Access) func(metadata.Revision) auth.Access {
	return func(metadata.Revision) auth.Access { return a }
}

// defTarget is the access-control target type of a definition kind.
func defTarget(kind metadata.Kind) string {
	if kind == metadata.KindTask {
		return auth.TargetTaskDef
	}
	return auth.TargetWorkflowDef
}

// mayWrite checks CREATE or UPDATE on name, by the outcome of looking it up.
func (s *Server) mayWrite(r *http.Request, targetType, name string, lookup error) error {
	switch {
	case errors.Is(lookup, fault.ErrNotFound):
		return s.authorize(r, auth.Create, auth.Target{Type: targetType, ID: name})
	case lookup != nil && !errors.Is(lookup, fault.ErrInvalid):
		return lookup
	}
	target := auth.Target{Type: targetType, ID: name}
	return s.asIfFree(r, target, s.authorize(r, auth.Update, target))
}

// versionFlags reads a registration's overwrite (def when absent) and
// Orkes's newVersion, the latter as the write option it is.
func versionFlags(r *http.Request, def bool) (overwrite bool, opts []metadata.WriteOption, err error) {
	overwrite, err = queryBool(r, "overwrite", def)
	if err != nil {
		return false, nil, err
	}
	newVersion, err := queryBool(r, "newVersion", false)
	if newVersion {
		opts = append(opts, metadata.NewVersion())
	}
	return overwrite, opts, err
}

func (s *Server) registerWorkflowDef(w http.ResponseWriter, r *http.Request) {
	overwrite, opts, err := versionFlags(r, false)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var def conductor.WorkflowDef
	if err := decodeJSON(w, r, maxMetadataBody, &def); err != nil {
		s.writeError(w, r, err)
		return
	}
	err = retryStale(r.Context(), func() error {
		rev, err := s.mayWriteWorkflowDef(r, &def)
		if err != nil {
			return err
		}
		return s.deps.Metadata.RegisterWorkflowDef(r.Context(), &def, overwrite, principal(r), append(opts, metadata.At(rev))...)
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeNoContent(w)
}

func (s *Server) putWorkflowDefs(w http.ResponseWriter, r *http.Request) {
	overwrite, opts, err := versionFlags(r, true)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var defs []*conductor.WorkflowDef
	if err := decodeJSON(w, r, maxMetadataBody, &defs); err != nil {
		s.writeError(w, r, err)
		return
	}
	// A bulk may hold several versions of one workflow: each is checked
	// (its failureWorkflow too), and the name's first revision pins them
	// all. A later check of the name read a state at least as new, so any
	// change between the checks makes the writes conflict. The
	// definitions refused so are checked and written again, as a single
	// registration is (retryStale); what still fails is reported.
	resp := conductor.NewBulkResponse()
	todo := defs
	for attempt := 1; ; attempt++ {
		revs := map[string]metadata.Revision{}
		checked := todo[:0:0]
		for _, d := range todo {
			if d == nil {
				checked = append(checked, d) // the store reports it
				continue
			}
			rev, err := s.mayWriteWorkflowDef(r, d)
			switch {
			case err != nil && attempt == 1:
				s.writeError(w, r, err)
				return
			case err != nil:
				// Checked again on the state that changed: a refusal
				// now is this definition's outcome alone, for others of
				// the bulk may be written already.
				if statusOf(err) == http.StatusForbidden {
					s.recordDenied(r, err)
				}
				resp.BulkErrorResults[d.Name] = errorMessage(err)
				continue
			}
			checked = append(checked, d)
			if _, seen := revs[d.Name]; !seen {
				revs[d.Name] = rev
			}
		}
		if todo = checked; len(todo) == 0 && attempt > 1 {
			break // every one refused on its new state (the store refuses an empty bulk)
		}
		var stale []*conductor.WorkflowDef
		part, err := s.deps.Metadata.PutWorkflowDefs(r.Context(), todo, overwrite, principal(r), append(opts,
			metadata.At(slices.Collect(maps.Values(revs))...), metadata.OnStale(func(i int) { stale = append(stale, todo[i]) }))...)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		resp.BulkSuccessfulResults = append(resp.BulkSuccessfulResults, part.BulkSuccessfulResults...)
		maps.Copy(resp.BulkErrorResults, part.BulkErrorResults)
		if len(stale) == 0 || attempt == staleAttempts || !staleBackoff(r.Context(), attempt) {
			break
		}
		for _, d := range stale {
			delete(resp.BulkErrorResults, d.Name) // reported again if it fails again
		}
		todo = stale
	}
	writeJSON(w, http.StatusOK, resp)
}

// listWorkflowDefs answers the workflow definitions the caller may read,
// with Orkes's parameters: name and tagKey/tagValue select (see
// metadata.WorkflowFilter), short leaves tasks out, metadata adds tags,
// access asks for more than READ (listAccess).
func (s *Server) listWorkflowDefs(w http.ResponseWriter, r *http.Request) {
	f := metadata.WorkflowFilter{Name: r.URL.Query().Get("name")}
	var err error
	if f.TagFilter, err = tagFilter(r); err == nil {
		f.Short, err = queryBool(r, "short", false)
	}
	names := func(snap *metadata.Snapshot) ([]string, error) {
		if f.Name != "" {
			return []string{f.Name}, nil
		}
		return snap.DefNames(metadata.KindWorkflow, f.TagFilter)
	}
	writeReadable(s, w, r, metadata.KindWorkflow, err, names, func(name string, rev metadata.Revision) ([]*conductor.WorkflowDef, error) {
		one := f
		one.Name = name
		return s.deps.Metadata.FindWorkflowDefsAt(r.Context(), one, rev)
	}, func(d *conductor.WorkflowDef) (json.RawMessage, error) { return listed(d.Raw, f.Tags, d.Tags) })
}

// tagFilter reads the parameters Orkes's definition lists share: tagKey,
// tagValue and metadata (see metadata.TagFilter).
func tagFilter(r *http.Request) (metadata.TagFilter, error) {
	q := r.URL.Query()
	f := metadata.TagFilter{TagKey: q.Get("tagKey"), TagValue: q.Get("tagValue")}
	var err error
	f.Tags, err = queryBool(r, "metadata", false)
	return f, err
}

// listed is a definition of a listing for writeReadable: its registered
// JSON, with tags when the listing asked for them.
func listed(raw json.RawMessage, asked bool, tags []conductor.Tag) (json.RawMessage, error) {
	if !asked {
		return raw, nil
	}
	return withTags(raw, tags)
}

// workflowDefSummary is Conductor's WorkflowDefSummary.
type workflowDefSummary struct {
	Name       string `json:"name"`
	Version    int    `json:"version"`
	CreateTime int64  `json:"createTime,omitempty"`
}

// workflowNamesAndVersions answers each workflow name the caller may read
// with its versions, in order, as Conductor's names-and-versions does.
func (s *Server) workflowNamesAndVersions(w http.ResponseWriter, r *http.Request) {
	snap, done, err := s.listingSnapshot(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	defer done()
	names, err := snap.DefNames(metadata.KindWorkflow, metadata.TagFilter{})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := map[string][]workflowDefSummary{}
	for _, name := range names {
		defs, err := readableDef(s, r, snap, metadata.KindWorkflow, name, []auth.Access{auth.Read}, func(rev metadata.Revision) ([]*conductor.WorkflowDef, error) {
			return s.deps.Metadata.FindWorkflowDefsAt(r.Context(), metadata.WorkflowFilter{Name: name, Short: true}, rev)
		})
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		for _, d := range defs {
			out[d.Name] = append(out[d.Name], workflowDefSummary{Name: d.Name, Version: d.Version, CreateTime: d.CreateTime})
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// latestWorkflowDefs answers the latest version of each workflow the
// caller may read, the one GET /{name} without a version returns.
func (s *Server) latestWorkflowDefs(w http.ResponseWriter, r *http.Request) {
	names := func(snap *metadata.Snapshot) ([]string, error) {
		return snap.DefNames(metadata.KindWorkflow, metadata.TagFilter{})
	}
	writeReadable(s, w, r, metadata.KindWorkflow, nil, names, func(name string, rev metadata.Revision) ([]*conductor.WorkflowDef, error) {
		d, err := s.deps.Metadata.GetWorkflowDefAt(r.Context(), name, nil, rev)
		return []*conductor.WorkflowDef{d}, err
	}, func(d *conductor.WorkflowDef) (json.RawMessage, error) { return d.Raw, nil })
}

// getWorkflowDef answers the definition the caller's READ was checked on
// (see Metadata), as its tags and its rateLimitConfig are answered.
func (s *Server) getWorkflowDef(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	rev, err := s.mayChangeDef(r, metadata.KindWorkflow, name, always(auth.Read))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var version *int
	if q := r.URL.Query().Get("version"); q != "" {
		v, err := atoi(q)
		if err != nil {
			s.writeError(w, r, fault.Invalid("version %q is not an integer", q))
			return
		}
		version = &v
	}
	def, err := s.deps.Metadata.GetWorkflowDefAt(r.Context(), name, version, rev)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeDef(w, r, metadata.KindWorkflow, rev, def.Raw, def)
}

// writeDef answers a definition, read at rev, as GET returns it (defJSON)
// and, asked ?metadata=true as Orkes is, with its tags at rev in "tags":
// conductor-go's GetTagsForWorkflowDef and GetTagsForTaskDef read them
// there, and call no /tags endpoint.
func (s *Server) writeDef(w http.ResponseWriter, r *http.Request, kind metadata.Kind, rev metadata.Revision, raw json.RawMessage, def any) {
	b, err := defJSON(raw, def)
	if err == nil && r.URL.Query().Get("metadata") == "true" {
		var tags []conductor.Tag
		if tags, err = s.deps.Metadata.GetTagsAt(r.Context(), kind, r.PathValue("name"), rev); err == nil {
			b, err = withTags(b, tags)
		}
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeRawJSON(w, http.StatusOK, b)
}

// withTags returns the JSON object def with "tags" set to tags, its other
// members as they are (in order, as stored): a stored definition holds no
// "tags" of its own, registration moves them apart.
func withTags(def []byte, tags []conductor.Tag) ([]byte, error) {
	if tags == nil {
		tags = []conductor.Tag{}
	}
	tb, err := json.Marshal(tags)
	if err != nil {
		return nil, err
	}
	body := bytes.TrimSpace(def)
	if len(body) < 2 || body[0] != '{' || body[len(body)-1] != '}' {
		return nil, fmt.Errorf("definition is not a JSON object")
	}
	out := append([]byte(`{"tags":`), tb...)
	if rest := bytes.TrimSpace(body[1:]); rest[0] != '}' {
		out = append(out, ',')
	}
	return append(out, body[1:]...), nil
}

func (s *Server) deleteWorkflowDef(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	v := r.PathValue("version")
	err := retryStale(r.Context(), func() error {
		rev, err := s.mayChangeDef(r, metadata.KindWorkflow, name, always(auth.Delete))
		if err != nil {
			return err
		}
		version, err := strconv.Atoi(v)
		if err != nil {
			return fault.Invalid("version %q is not an integer", v)
		}
		return s.deps.Metadata.DeleteWorkflowDef(r.Context(), name, version, principal(r), metadata.At(rev))
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeNoContent(w)
}

// getWorkflowRateLimit answers the definition's rateLimitConfig, 404 when
// it holds none: the JavaScript SDK reads a 404 as "no limit set". The
// SDKs name no version: the latest's config is the one the lines of the
// name's workflows follow.
func (s *Server) getWorkflowRateLimit(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	rev, err := s.mayChangeDef(r, metadata.KindWorkflow, name, always(auth.Read))
	var version *int
	if err == nil {
		version, err = versionParam(r)
	}
	var def *conductor.WorkflowDef
	if err == nil {
		def, err = s.deps.Metadata.GetWorkflowDefAt(r.Context(), name, version, rev)
	}
	if err == nil && def.RateLimitConfig == nil {
		err = fault.NotFound("workflow %s has no rateLimitConfig", name)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, def.RateLimitConfig)
}

// setWorkflowRateLimit sets (PUT, POST) or removes (DELETE) the
// definition's rateLimitConfig: a change of the definition, which needs
// UPDATE on it, checked on the revision the change is written to, as a
// tag's is. The body is Orkes's RateLimitConfig, {rateLimitKey,
// concurrentExecLimit}; the JavaScript SDK's type also spells the limit
// concurrentExecutionLimit. Nothing else of it is kept.
func (s *Server) setWorkflowRateLimit(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	version, err := versionParam(r)
	var cfg map[string]any
	if err == nil && r.Method != http.MethodDelete {
		cfg, err = readRateLimitConfig(w, r)
	}
	if err == nil {
		err = retryStale(r.Context(), func() error {
			rev, err := s.mayChangeDef(r, metadata.KindWorkflow, name, always(auth.Update))
			if err != nil {
				return err
			}
			return s.deps.Metadata.SetWorkflowRateLimit(r.Context(), name, version, cfg, principal(r), metadata.At(rev))
		})
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeNoContent(w)
}

// readRateLimitConfig reads a rate limit request's body as the
// rateLimitConfig a definition holds.
func readRateLimitConfig(w http.ResponseWriter, r *http.Request) (map[string]any, error) {
	var body map[string]any
	if err := decodeJSON(w, r, maxMetadataBody, &body); err != nil {
		return nil, err
	}
	limit, ok := body["concurrentExecLimit"]
	if !ok {
		limit, ok = body["concurrentExecutionLimit"]
	}
	if !ok || limit == nil {
		ve := &fault.ValidationError{}
		ve.Add("concurrentExecLimit", "must be set")
		return nil, ve
	}
	cfg := map[string]any{"concurrentExecLimit": limit}
	if key, ok := body["rateLimitKey"]; ok && key != nil {
		cfg["rateLimitKey"] = key
	}
	return cfg, nil
}

func (s *Server) registerTaskDefs(w http.ResponseWriter, r *http.Request) {
	var defs []*conductor.TaskDef
	if err := decodeJSON(w, r, maxMetadataBody, &defs); err != nil {
		s.writeError(w, r, err)
		return
	}
	// The store writes the definitions one at a time. One that went stale
	// is checked again on its new state with those after it, not the
	// ones already written; a refusal after some were written names them,
	// since Conductor's answer has no room for a partial success.
	written := 0 // defs[:written] are registered
	err := retryStale(r.Context(), func() error {
		todo := defs[written:]
		revs := map[string]metadata.Revision{} // one per name, as for workflows
		for _, d := range todo {
			if d == nil {
				continue // the store reports it
			}
			if _, seen := revs[d.Name]; seen {
				continue
			}
			rev, err := s.mayWriteTaskDef(r, d.Name)
			if err != nil {
				return err
			}
			revs[d.Name] = rev
		}
		from := written
		return s.deps.Metadata.RegisterTaskDefs(r.Context(), todo, principal(r), metadata.At(slices.Collect(maps.Values(revs))...),
			metadata.OnWritten(func(i int) { written = from + i + 1 }))
	})
	if err != nil && written > 0 {
		var names []string
		for _, d := range defs[:min(written, 10)] {
			names = append(names, d.Name)
		}
		if written > len(names) {
			names = append(names, fmt.Sprintf("and %d more", written-len(names)))
		}
		err = fmt.Errorf("%w (registered before it: %s)", err, strings.Join(names, ", "))
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeNoContent(w)
}

func (s *Server) updateTaskDef(w http.ResponseWriter, r *http.Request) {
	var def conductor.TaskDef
	if err := decodeJSON(w, r, maxMetadataBody, &def); err != nil {
		s.writeError(w, r, err)
		return
	}
	err := retryStale(r.Context(), func() error {
		rev, err := s.mayWriteTaskDef(r, def.Name)
		if err != nil {
			return err
		}
		return s.deps.Metadata.UpdateTaskDef(r.Context(), &def, principal(r), metadata.At(rev))
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeNoContent(w)
}

// listTaskDefs answers the task definitions the caller may read, with
// Orkes's tagKey/tagValue, metadata and access as the workflow list reads
// them (Orkes has no name or short here).
func (s *Server) listTaskDefs(w http.ResponseWriter, r *http.Request) {
	f, err := tagFilter(r)
	names := func(snap *metadata.Snapshot) ([]string, error) { return snap.DefNames(metadata.KindTask, f) }
	writeReadable(s, w, r, metadata.KindTask, err, names, func(name string, rev metadata.Revision) ([]*conductor.TaskDef, error) {
		return s.deps.Metadata.FindTaskDefsAt(r.Context(), name, f, rev)
	}, func(d *conductor.TaskDef) (json.RawMessage, error) { return listed(d.Raw, f.Tags, d.Tags) })
}

// getTaskDef answers the definition the caller's READ was checked on
// (see Metadata).
func (s *Server) getTaskDef(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	rev, err := s.mayChangeDef(r, metadata.KindTask, name, always(auth.Read))
	var def *conductor.TaskDef
	if err == nil {
		def, err = s.deps.Metadata.GetTaskDefAt(r.Context(), name, rev)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeDef(w, r, metadata.KindTask, rev, def.Raw, def)
}

func (s *Server) deleteTaskDef(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	err := retryStale(r.Context(), func() error {
		rev, err := s.mayChangeDef(r, metadata.KindTask, name, always(auth.Delete))
		if err != nil {
			return err
		}
		return s.deps.Metadata.DeleteTaskDef(r.Context(), name, principal(r), metadata.At(rev))
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeNoContent(w)
}

// getTags answers the tags of the definition the caller's READ was
// checked on (see Metadata).
func (s *Server) getTags(kind metadata.Kind) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		rev, err := s.mayChangeDef(r, kind, name, always(auth.Read))
		var tags []conductor.Tag
		if err == nil {
			tags, err = s.deps.Metadata.GetTagsAt(r.Context(), kind, name, rev)
		}
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, tags)
	}
}

type tagsFunc func(ctx context.Context, kind metadata.Kind, name string, tags []conductor.Tag, principal string, opts ...metadata.WriteOption) error

// changeTags handles POST (add), PUT (replace) and DELETE (remove) of
// tags, which need UPDATE on the definition. The SDKs send one Tag to POST
// and DELETE and an array to PUT; each accepts either form.
func (s *Server) changeTags(kind metadata.Kind, change tagsFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		// Checked on this revision, applied to it alone: a tag may grant
		// access, and must not land on a definition re-created by someone
		// else, nor on one whose tags no longer grant this caller UPDATE.
		// Checked again on the new state when it changed (retryStale).
		name := r.PathValue("name")
		var tags tagList
		read := false
		err := retryStale(r.Context(), func() error {
			rev, err := s.mayChangeDef(r, kind, name, always(auth.Update))
			if err != nil {
				return err
			}
			if !read {
				if err := decodeJSON(w, r, maxMetadataBody, &tags); err != nil {
					return err
				}
				read = true
			}
			return change(r.Context(), kind, name, tags, principal(r), metadata.At(rev))
		})
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		writeNoContent(w)
	}
}

// listTags answers every tag of the definitions the caller may read,
// each once, sorted (Orkes's GET /api/metadata/tags, a set of Tag).
//
// The tag sets are read in the listing's snapshot, where a name has tags
// only while it has a definition, and each is shown as read there once
// the caller's access to its name is decided on that state: nothing is
// read again per name.
func (s *Server) listTags(w http.ResponseWriter, r *http.Request) {
	snap, done, err := s.listingSnapshot(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	defer done()
	sets, err := snap.ListTags()
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	seen := map[conductor.Tag]bool{}
	out := []conductor.Tag{}
	for _, set := range sets {
		if !s.mayListDef(r, snap, set.Kind, set.Name, []auth.Access{auth.Read}) {
			continue
		}
		for _, t := range set.Tags {
			if !seen[t] {
				seen[t] = true
				out = append(out, t)
			}
		}
	}
	slices.SortFunc(out, func(a, b conductor.Tag) int {
		return cmp.Or(cmp.Compare(a.Key, b.Key), cmp.Compare(a.Value, b.Value))
	})
	writeJSON(w, http.StatusOK, out)
}

// tagList decodes a Tag object or an array of tags, its scalars coerced as
// every body's are ({"key":5} is the key "5").
type tagList []conductor.Tag

func (l *tagList) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if kind := jsonKindOf(b); kind != "object" && kind != "array" {
		return &kindError{want: "a tag or an array of tags", got: kind}
	}
	if b[0] == '{' {
		var t conductor.Tag
		if err := conductor.Unmarshal(b, &t); err != nil {
			return err
		}
		*l = tagList{t}
		return nil
	}
	var ts []conductor.Tag
	if err := conductor.Unmarshal(b, &ts); err != nil {
		return err
	}
	*l = ts
	return nil
}

// writeReadable answers a listing of the definitions of kind that names
// lists in the listing's snapshot with those on which the caller holds
// what listAccess asks, each as it was registered (registered: its JSON
// as listed), read through read in the snapshot (readableDef). err is
// the request's, when it cannot be answered.
func writeReadable[D any](s *Server, w http.ResponseWriter, r *http.Request, kind metadata.Kind, err error, names func(*metadata.Snapshot) ([]string, error),
	read func(name string, rev metadata.Revision) ([]D, error), registered func(D) (json.RawMessage, error)) {
	var actions []auth.Access
	if err == nil {
		actions, err = listAccess(r)
	}
	var snap *metadata.Snapshot
	done := func() {}
	if err == nil {
		snap, done, err = s.listingSnapshot(r)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	defer done()
	list, err := names(snap)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	raws := make([]json.RawMessage, 0, len(list))
	for _, name := range list {
		defs, err := readableDef(s, r, snap, kind, name, actions, func(rev metadata.Revision) ([]D, error) { return read(name, rev) })
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		for _, d := range defs {
			b, err := registered(d)
			var raw []byte
			if err == nil {
				raw, err = defJSON(b, d)
			}
			if err != nil {
				s.writeError(w, r, err)
				return
			}
			raws = append(raws, raw)
		}
	}
	writeRawArray(w, raws)
}

// readableDef is what a listing shows of definition name, read through
// read in the listing's snapshot, and nothing when the caller may not
// (mayListDef) or the snapshot holds no such definition: a listing shows
// no definition, nor tags, but the ones checked, as a GET of one does.
func readableDef[D any](s *Server, r *http.Request, snap *metadata.Snapshot, kind metadata.Kind, name string, actions []auth.Access, read func(metadata.Revision) ([]D, error)) ([]D, error) {
	if !s.mayListDef(r, snap, kind, name, actions) {
		return nil, nil
	}
	defs, err := read(snap.Unpinned(kind, name))
	if errors.Is(err, fault.ErrNotFound) {
		return nil, nil
	}
	return defs, err
}

// mayListDef reports whether the caller holds every one of actions on
// definition name as the listing's snapshot holds it: its tags and owner
// are read there (snapshotDescriber), in the state the listing shows, so
// a definition deleted and registered again, or re-tagged, by someone
// else while the listing is checked is neither checked on one state and
// shown in another nor left out of both. Refused for any reason, the
// definition is left out. A caller who may read every definition,
// whatever it holds, is not checked.
func (s *Server) mayListDef(r *http.Request, snap *metadata.Snapshot, kind metadata.Kind, name string, actions []auth.Access) bool {
	if s.readsAll(r) {
		return true
	}
	return s.mayAll(r, actions, auth.Resource{Target: auth.Target{Type: defTarget(kind), ID: name}, Describer: snapshotDescriber{snap}})
}

// snapshotDescriber tells the Authorizer the tags and owner of a
// definition as a listing's snapshot holds them (auth.Resource's
// Describer), where the node's source reads the live read model, or the
// log. A name the snapshot holds no definition under has neither.
type snapshotDescriber struct{ snap *metadata.Snapshot }

func (d snapshotDescriber) Describe(_ context.Context, t auth.Target) (tags []string, creator string, err error) {
	kind := metadata.KindWorkflow
	if t.Type == auth.TargetTaskDef {
		kind = metadata.KindTask
	}
	owner, stored, err := d.snap.DefAccess(kind, t.ID)
	if errors.Is(err, fault.ErrNotFound) {
		return nil, "", nil
	}
	if err != nil {
		return nil, "", err
	}
	return auth.TagNames(stored), owner, nil
}

// listingSnapshot is the snapshot of the read model a listing reads in:
// its names, each name's definitions and tags, and what its caller's
// access to each is decided on, one state of every name, taken once for
// the listing. done releases it.
func (s *Server) listingSnapshot(r *http.Request) (snap *metadata.Snapshot, done func(), err error) {
	if snap, err = s.deps.Metadata.Snapshot(r.Context()); err != nil {
		return nil, nil, err
	}
	return snap, func() { s.release(metadata.ProjectionName, snap) }, nil
}

// defJSON is a definition as GET returns it: the stored JSON, which keeps
// fields flowvault does not model, or the struct's encoding without one,
// with Conductor's defaults for the fields it lacks, as Conductor answers.
func defJSON(raw json.RawMessage, def any) ([]byte, error) {
	if len(raw) == 0 {
		b, err := json.Marshal(def)
		if err != nil {
			return nil, err
		}
		raw = b
	}
	switch def.(type) {
	case *conductor.WorkflowDef:
		return conductor.WorkflowDefWithDefaults(raw), nil
	case *conductor.TaskDef:
		return conductor.TaskDefWithDefaults(raw), nil
	}
	return raw, nil
}
