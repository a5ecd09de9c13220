package api

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/flowvault/flowvault/auth"
	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/executor"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/internal/logkey"
	"github.com/flowvault/flowvault/metadata"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// maxBodyBytes bounds request bodies of the workflow and task endpoints.
const maxBodyBytes = 8 << 20

// Engine is what the workflow endpoints need from the executor.
type Engine interface {
	StartWorkflow(ctx context.Context, req conductor.StartWorkflowRequest, o executor.StartOptions) (string, uint64, error)
	Submit(ctx context.Context, wfID string, trig engine.Trigger, meta executor.Meta) (executor.Outcome, error)
}

// Executions reads the executions read model.
type Executions interface {
	Workflow(ctx context.Context, id string) (*engine.Workflow, error)
}

// ExecutionHeads is an Executions that reads a workflow without its tasks
// (executions.Reader.WorkflowHead) in a few keys, where Workflow reads
// every task: what the views without tasks and the access checks read.
type ExecutionHeads interface {
	WorkflowHead(ctx context.Context, id string) (*engine.Workflow, error)
}

// ExecutionTasks is an Executions that reads one task of a workflow with
// the workflow's head (executions.Reader.WorkflowTask: Tasks nil) in a few
// keys, where Workflow reads every task: what a worker's result, a task's
// log and most views of one task read.
type ExecutionTasks interface {
	WorkflowTask(ctx context.Context, wfID, taskID string) (*engine.Workflow, *engine.Task, error)
}

// ExecutionTaskPages is an Executions that reads a page of a workflow's
// tasks (executions.Reader.WorkflowTaskPage): the workflow's head (Tasks
// nil), how many of its tasks have each status, how many match, and the
// count of those that match from start on, where Workflow reads every
// task of a loop of thousands of iterations to show 15 of them.
type ExecutionTaskPages interface {
	WorkflowTaskPage(ctx context.Context, id string, match func(status string) bool, start, count int) (
		head *engine.Workflow, summary map[string]int64, matched int, page []*engine.Task, err error)
}

// Waiter blocks until a read model has applied a log sequence.
type Waiter interface {
	WaitFor(ctx context.Context, seq uint64) error
}

// DefinitionLookup finds registered workflow definitions.
type DefinitionLookup interface {
	LookupWorkflowDef(ctx context.Context, name string, version *int) (*conductor.WorkflowDef, error)
	// LookupStartable finds one with what access to starting it is
	// decided on, in one state of its name.
	LookupStartable(ctx context.Context, name string, version *int) (metadata.Startable, error)
	// ListWorkflowDefs returns every version of every workflow: those an
	// event handler may start when an expression names its workflow.
	ListWorkflowDefs(ctx context.Context) ([]*conductor.WorkflowDef, error)
}

func (s *Server) routeWorkflows() {
	if s.deps.Engine == nil {
		return
	}
	s.route("POST /api/workflow", auth.Authenticated, s.startWorkflow)
	s.route("POST /api/workflow/{name}", auth.Authenticated, s.startWorkflowByName)
	s.route("GET /api/workflow/{id}", auth.Authenticated, s.getWorkflow)
	// Conductor's external payload storage (the SDKs' legacy
	// getExternalStorageLocation); the path read as a workflow id.
	s.route("GET /api/workflow/externalstoragelocation", auth.Authenticated, s.notServed("external payload storage locations"))
	s.route("DELETE /api/workflow/{id}", auth.Authenticated, s.lifecycle(terminateTrigger))
	// Conductor has both /{id}/status and /running/{name}, /{id}/restart
	// and /execute/{name}: overlapping patterns Go's mux refuses. One
	// handler per method routes the two-segment paths: by a literal first
	// segment, else by the second.
	s.route("GET /api/workflow/{a}/{b}", auth.Authenticated, s.pathPair(
		map[string]http.HandlerFunc{"execute": s.executeByName, "running": s.runningWorkflows},
		map[string]http.HandlerFunc{"status": s.getWorkflowStatus, "tasks": s.workflowTasks}))
	s.route("POST /api/workflow/{a}/{b}", auth.Authenticated, s.pathPair(
		map[string]http.HandlerFunc{"execute": s.executeByName},
		map[string]http.HandlerFunc{
			"restart":        s.lifecycle(s.restartTrigger),
			"retry":          s.retryWorkflow,
			"rerun":          s.rerunWorkflow,
			"variables":      s.updateVariables,
			"state":          s.updateState,
			"resetcallbacks": s.lifecycle(func(*http.Request) (engine.Trigger, error) { return engine.ResetCallbacks{}, nil }),
			"correlated":     s.correlatedByName,
			"upgrade":        s.upgradeWorkflow,
		}))
	s.route("PUT /api/workflow/{a}/{b}", auth.Authenticated, s.pathPair(
		map[string]http.HandlerFunc{"decide": s.decideWorkflow},
		map[string]http.HandlerFunc{
			"pause":  s.lifecycle(func(*http.Request) (engine.Trigger, error) { return engine.Pause{}, nil }),
			"resume": s.lifecycle(func(*http.Request) (engine.Trigger, error) { return engine.Resume{}, nil }),
		}))
	// Orkes's /{id}/jump/{ref} overlaps Conductor's /start/{name}/{version}
	// and /execute/{name}/{version}: one handler routes the three.
	s.route("POST /api/workflow/{a}/{b}/{c}", auth.Authenticated, func(w http.ResponseWriter, r *http.Request) {
		a, b, c := r.PathValue("a"), r.PathValue("b"), r.PathValue("c")
		switch {
		case a == "start" || a == "execute":
			r.SetPathValue("name", b)
			r.SetPathValue("version", c)
			if a == "start" {
				s.startWorkflowVersion(w, r)
			} else {
				s.executeWorkflow(w, r)
			}
		case b == "jump":
			r.SetPathValue("id", a)
			r.SetPathValue("ref", c)
			s.jumpToTask(w, r)
		default:
			s.noEndpoint(w, r)
		}
	})
	s.route("POST /api/workflow/test", auth.Authenticated, s.testWorkflow)
	s.route("PUT /api/workflow/{id}/skiptask/{ref}", auth.Authenticated, s.skipTask)
	s.route("DELETE /api/workflow/{id}/remove", auth.Authenticated, s.removeWorkflow)
	s.route("DELETE /api/workflow/{id}/terminate-remove", auth.Authenticated, s.terminateRemove)
	s.route("GET /api/workflow/{name}/correlated/{correlationId}", auth.Authenticated, s.correlated)
	s.route("POST /api/workflow/correlated/batch", auth.Authenticated, s.correlatedBatch)
	s.routeBulk()
	s.routeSearch()
}

// pathPair routes a pattern ending in /{a}/{b} that overlapping routes
// share (net/http refuses to register them apart): to byFirst[a] with
// {name} and {id} set to b, else to bySecond[b] with {id} and {name} set
// to a.
func (s *Server) pathPair(byFirst, bySecond map[string]http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		a, b := r.PathValue("a"), r.PathValue("b")
		if h, ok := byFirst[a]; ok {
			r.SetPathValue("name", b)
			r.SetPathValue("id", b)
			h(w, r)
			return
		}
		if h, ok := bySecond[b]; ok {
			r.SetPathValue("id", a)
			r.SetPathValue("name", a)
			h(w, r)
			return
		}
		s.noEndpoint(w, r)
	}
}

func (s *Server) startWorkflow(w http.ResponseWriter, r *http.Request) {
	var req conductor.StartWorkflowRequest
	if err := decodeJSON(w, r, maxBodyBytes, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	if req.Name == "" && req.WorkflowDef == nil {
		s.writeError(w, r, fault.Invalid("name is required"))
		return
	}
	s.start(w, r, req)
}

// idempotencyHeaders are how the by-name starts (whose body is the input)
// take an idempotency key and strategy, as Orkes's API does.
func idempotencyHeaders(r *http.Request, req *conductor.StartWorkflowRequest) {
	req.IdempotencyKey = r.Header.Get("X-Idempotency-key")
	req.IdempotencyStrategy = r.Header.Get("X-on-conflict")
}

func (s *Server) startWorkflowByName(w http.ResponseWriter, r *http.Request) {
	req := conductor.StartWorkflowRequest{Name: r.PathValue("name"), CorrelationID: r.URL.Query().Get("correlationId")}
	idempotencyHeaders(r, &req)
	body, err := readBody(w, r, maxBodyBytes)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if len(body) > 0 {
		if err := decodeBody(body, &req.Input); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	if req.Version, err = versionParam(r); err != nil {
		s.writeError(w, r, err)
		return
	}
	if p := r.URL.Query().Get("priority"); p != "" {
		n, err := atoi(p)
		if err != nil || n < 0 || n > 99 {
			s.writeError(w, r, fault.Invalid("priority %q: want an integer 0-99", p))
			return
		}
		req.Priority = n
	}
	s.start(w, r, req)
}

func (s *Server) start(w http.ResponseWriter, r *http.Request, req conductor.StartWorkflowRequest) {
	if req.Priority < 0 || req.Priority > 99 {
		s.writeError(w, r, fault.Invalid("priority %d: want 0-99", req.Priority))
		return
	}
	id, err := s.startAsCaller(r, req)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeText(w, http.StatusOK, id)
}

// startAsCaller starts req as the caller and waits until the start is
// readable. A start that found a workflow by its idempotency key answers
// with it only a caller who may read it: the key is often a business id
// (an order number) that others can guess.
func (s *Server) startAsCaller(r *http.Request, req conductor.StartWorkflowRequest) (string, error) {
	o, err := s.checkStart(r, req)
	if err != nil {
		return "", err
	}
	o.CreatedBy = principal(r)
	id, seq, err := s.deps.Engine.StartWorkflow(r.Context(), req, o)
	if err == nil {
		err = s.wait(r.Context(), seq)
	}
	if err != nil {
		return "", err
	}
	if req.IdempotencyKey != "" {
		if _, err := s.executionHead(r, id, auth.Read); err != nil {
			return "", fault.Conflict("a workflow with idempotency key %q exists", req.IdempotencyKey)
		}
	}
	return id, nil
}

// wait makes the caller's next read see its write.
func (s *Server) wait(ctx context.Context, seq uint64) error {
	if s.deps.ExecutionsWaiter == nil || seq == 0 {
		return nil
	}
	return s.deps.ExecutionsWaiter.WaitFor(ctx, seq)
}

func (s *Server) getWorkflow(w http.ResponseWriter, r *http.Request) {
	include, err := queryBool(r, "includeTasks", true)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	read := s.execution
	if !include {
		read = s.executionHead
	}
	wf, err := read(r, r.PathValue("id"), auth.Read)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, wf.Conductor(include))
}

func (s *Server) getWorkflowStatus(w http.ResponseWriter, r *http.Request) {
	output, err := queryBool(r, "includeOutput", false)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	vars, err := queryBool(r, "includeVariables", false)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	wf, err := s.executionHead(r, r.PathValue("id"), auth.Read)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	st := conductor.WorkflowStatus{WorkflowID: wf.ID, CorrelationID: wf.CorrelationID, Status: wf.Status}
	view := wf.Conductor(false) // masked as every view is
	if output {
		st.Output = nonNilMap(view.Output)
	}
	if vars {
		st.Variables = nonNilMap(view.Variables)
	}
	writeJSON(w, http.StatusOK, st)
}

// lifecycle runs an operator command against the workflow in the path and
// answers 204 once it is durable and visible.
func (s *Server) lifecycle(trigger func(*http.Request) (engine.Trigger, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		trig, err := trigger(r)
		if err == nil {
			err = s.submit(r, r.PathValue("id"), trig)
		}
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		writeNoContent(w)
	}
}

// submit runs an operator's trigger against execution id, which the caller
// must be allowed to EXECUTE, and returns once the caller's next read sees
// it: in the workflow, and in the workflows it reaches (see waitRelated).
func (s *Server) submit(r *http.Request, id string, trig engine.Trigger) error {
	if _, err := s.executionHead(r, id, auth.Execute); err != nil {
		return err
	}
	out, err := s.deps.Engine.Submit(r.Context(), id, trig, executor.Meta{Principal: principal(r), FollowRelated: true})
	if err != nil {
		return err
	}
	if err := s.wait(r.Context(), out.Seq); err != nil {
		return err
	}
	s.waitRelated(r, id, out.Related)
	return nil
}

// relatedWait bounds how long a write waits for its consequences in other
// workflows. Past it the write still answers: it is durable, and what it
// set off follows (effects are retried, and recovered after a crash).
const relatedWait = 10 * time.Second

// waitRelated waits, up to relatedWait, until what a write set off in
// other workflows is readable: a parent reopened by its child's retry,
// restart or rerun, or ended by its child's terminate; children
// terminated with their parent, or started by its retry or restart; a
// failure workflow started. Conductor makes those before it answers, and
// its callers read the parent next. A wait that runs out is logged, never
// the write's failure: the write has happened.
func (s *Server) waitRelated(r *http.Request, id string, rel *executor.Related) {
	if rel == nil {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), relatedWait)
	defer cancel()
	seq, err := rel.Wait(ctx)
	if err == nil {
		err = s.wait(ctx, seq)
	}
	if err != nil && r.Context().Err() == nil {
		s.deps.Logger.Warn("a write answers before its consequences in related workflows are readable",
			logkey.WorkflowID, id, logkey.Err, err)
	}
}

func (s *Server) restartTrigger(r *http.Request) (engine.Trigger, error) {
	latest, err := queryBool(r, "useLatestDefinitions", false)
	if err != nil || !latest {
		return engine.Restart{}, err
	}
	// Access first: the lookup's answer names the definition.
	wf, err := s.executionHead(r, r.PathValue("id"), auth.Execute)
	if err != nil {
		return nil, err
	}
	def, err := s.definitionToRun(r, wf, wf.Name, nil)
	if err != nil {
		return nil, err
	}
	return engine.Restart{Def: def, By: principal(r), DecidedFor: wf.Principals()}, nil
}

func (s *Server) rerunWorkflow(w http.ResponseWriter, r *http.Request) {
	var req conductor.RerunWorkflowRequest
	body, err := readBody(w, r, maxBodyBytes)
	if err == nil && len(body) > 0 {
		err = decodeBody(body, &req)
	}
	id := r.PathValue("id")
	trig := engine.Rerun{Request: req, By: principal(r)}
	target := id
	if err == nil && req.ReRunFromTaskID != "" {
		target, err = s.rerunTarget(r, id, req.ReRunFromTaskID)
		if target != id {
			trig.UpTo = id
		}
	}
	if err == nil {
		err = s.submit(r, target, trig)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeText(w, http.StatusOK, id)
}

// maxRerunDepth bounds the search of sub-workflows for a rerun's task or
// a retry's failed child.
const maxRerunDepth = 8

func (s *Server) retryWorkflow(w http.ResponseWriter, r *http.Request) {
	resume, err := queryBool(r, "resumeSubworkflowTasks", false)
	var ifParentRetried bool
	if err == nil {
		ifParentRetried, err = queryBool(r, "retryIfRetriedByParent", true)
	}
	id := r.PathValue("id")
	target := id
	if err == nil && resume {
		target, err = s.retryTarget(r, id)
	}
	// The executor reads the ancestors the retry is decided with; the
	// workflow asked is the one they are checked for.
	trig := engine.Retry{RefuseIfParentRetried: !ifParentRetried}
	if target != id {
		trig.UpTo = id
	}
	if err == nil {
		err = s.submit(r, target, trig)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeNoContent(w)
}

// retryTarget finds the workflow a retry of id with resumeSubworkflowTasks
// retries, as Conductor does: while the first failed task is a SUB_WORKFLOW
// whose child has failed tasks of its own, the child. Its retry reopens
// each ancestor up to id, whose SUB_WORKFLOW task waits for it again.
func (s *Server) retryTarget(r *http.Request, id string) (string, error) {
	wf, err := s.execution(r, id, auth.Execute)
	if err != nil || !wf.Terminal() {
		// One still running is not retried, nor its children (Conductor
		// checks the workflow asked first): its own retry refuses it.
		return id, err
	}
	for range maxRerunDepth {
		t := wf.FirstFailed()
		if t == nil || t.Type != conductor.TaskTypeSubWorkflow || t.SubWorkflowID == "" {
			break
		}
		child, err := s.deps.Executions.Workflow(r.Context(), t.SubWorkflowID)
		if errors.Is(err, fault.ErrNotFound) {
			break
		}
		if err != nil {
			return "", err
		}
		if child.FirstFailed() == nil {
			break
		}
		// A child the caller may not execute is not retried, nor replaced
		// by a new one behind the caller's back: refused. The answer does
		// not name the child, which the caller may not see; the trail
		// does, with the access missing on its definition.
		if err := s.mayExecution(r, child.Name, child.CreatedBy, auth.Execute); err != nil {
			if errors.Is(err, fault.ErrForbidden) {
				return "", &executionRefusal{error: uniformRefusal(err, "retry of workflow %s into its failed sub-workflow", id), workflow: child.ID}
			}
			return "", err
		}
		wf = child
	}
	return wf.ID, nil
}

// rerunTarget finds the workflow that holds the task a rerun of id starts
// from: id itself, or one of its sub-workflows at any depth, as Conductor
// searches them: the child of every instance of a SUB_WORKFLOW task, one
// retried since too. The workflow found reruns from the task, and each of
// its ancestors up to id from the SUB_WORKFLOW task instance that ran it,
// dropping the newer ones.
func (s *Server) rerunTarget(r *http.Request, id, taskID string) (string, error) {
	wf, err := s.execution(r, id, auth.Execute)
	if err != nil || !wf.Terminal() {
		// As for a retry: the rerun of the workflow asked refuses it, and
		// no child of it reruns behind a parent that would ignore it.
		return id, err
	}
	// refused is the refusal of the sub-workflow the caller may not
	// execute that holds the task, or holds the workflow that does (which
	// a rerun would rerun from its SUB_WORKFLOW task), once found there.
	var refused *executionRefusal
	// search looks for the task in w and its sub-workflows; above is the
	// refusal of w or of an ancestor, nil while the caller may execute
	// them. Below a refusal the task is looked for only to tell whether
	// the caller was refused it.
	var search func(w *engine.Workflow, depth int, above *executionRefusal) (string, error)
	search = func(w *engine.Workflow, depth int, above *executionRefusal) (string, error) {
		if w.TaskByID(taskID) != nil {
			if above != nil {
				if above.workflow == w.ID {
					above.task = taskID
				}
				refused = above
				return "", nil
			}
			return w.ID, nil
		}
		if depth == maxRerunDepth {
			return "", nil
		}
		for _, t := range w.Tasks {
			if t.Type != conductor.TaskTypeSubWorkflow || t.SubWorkflowID == "" {
				continue
			}
			child, err := s.deps.Executions.Workflow(r.Context(), t.SubWorkflowID)
			if errors.Is(err, fault.ErrNotFound) {
				continue
			}
			if err != nil {
				return "", err
			}
			below := above
			if below == nil {
				if err := s.mayExecution(r, child.Name, child.CreatedBy, auth.Execute); errors.Is(err, fault.ErrForbidden) {
					below = &executionRefusal{error: err, workflow: child.ID}
				} else if err != nil {
					return "", err
				}
			}
			if found, err := search(child, depth+1, below); found != "" || err != nil || refused != nil {
				return found, err
			}
		}
		return "", nil
	}
	found, err := search(wf, 0, nil)
	if err == nil && refused != nil {
		// The rerun answers as if the task were not there (the caller
		// may not see the child); the trail records whom it was refused.
		s.recordDenied(r, refused)
	}
	if err == nil && found == "" {
		found = id // the decision says the task is not there
	}
	return found, err
}

// versionParam reads the optional version query parameter.
func versionParam(r *http.Request) (*int, error) {
	v := r.URL.Query().Get("version")
	if v == "" {
		return nil, nil
	}
	n, err := atoi(v)
	if err != nil {
		return nil, fault.Invalid("version %q is not an integer", v)
	}
	return &n, nil
}

// terminateTrigger reads a terminate request: reason, and
// triggerFailureWorkflow (Orkes's; false by default, as an operator's
// terminate starts no failure workflow in Conductor).
func terminateTrigger(r *http.Request) (engine.Trigger, error) {
	trigger, err := queryBool(r, "triggerFailureWorkflow", false)
	if err != nil {
		return nil, err
	}
	return engine.Terminate{Reason: r.URL.Query().Get("reason"), By: principal(r), TriggerFailureWorkflow: trigger}, nil
}

func queryBool(r *http.Request, name string, def bool) (bool, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fault.Invalid("query parameter %s=%q: want true or false", name, v)
	}
	return b, nil
}

// nonNilMap is m, or an empty map for nil: a field asked for is answered.
func nonNilMap(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	return m
}
