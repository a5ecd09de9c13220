package api

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/flowvault/flowvault/auth"
	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// Synchronous execution: start a workflow, then block until it is
// terminal, a blocking task (WAIT, HUMAN) is reached, a named task
// finished, or time runs out.

const (
	defaultWaitSeconds = 10
	// maxWaitSeconds caps waitForSeconds.
	maxWaitSeconds = 600
	// recheckInterval bounds how long a wait relies on change
	// notifications alone.
	recheckInterval = time.Second
	// maxTreeDepth and maxTreeSize bound the sub-workflows a wait follows.
	maxTreeDepth = 8
	maxTreeSize  = 64
)

// executeParams are the query (or, for /execute/{name}, header) options
// of a synchronous execution.
type executeParams struct {
	requestID string
	refs      []string // waitUntilTaskRef, comma-separated; empty ignored
	wait      time.Duration
	strategy  string
}

func readExecuteParams(get func(string) string) (executeParams, error) {
	p := executeParams{requestID: get("requestId"), wait: defaultWaitSeconds * time.Second, strategy: conductor.ReturnTargetWorkflow}
	for _, ref := range strings.Split(get("waitUntilTaskRef"), ",") {
		if ref = strings.TrimSpace(ref); ref != "" {
			p.refs = append(p.refs, ref)
		}
	}
	if v := get("waitForSeconds"); v != "" {
		n, err := atoi(v)
		if err != nil || n < 0 {
			return p, fault.Invalid("waitForSeconds=%q: want a non-negative integer", v)
		}
		p.wait = time.Duration(min(n, maxWaitSeconds)) * time.Second
	}
	switch c := strings.ToUpper(get("consistency")); c {
	case "", "SYNCHRONOUS", "DURABLE", "REGION_DURABLE":
		// Every start is durable once it is answered.
	default:
		return p, fault.Invalid("consistency=%q: want SYNCHRONOUS, DURABLE or REGION_DURABLE", c)
	}
	if v := get("returnStrategy"); v != "" {
		switch v = strings.ToUpper(v); v {
		case conductor.ReturnTargetWorkflow, conductor.ReturnBlockingWorkflow, conductor.ReturnBlockingTask, conductor.ReturnBlockingTaskInput,
			conductor.ReturnBlockingTaskList, conductor.ReturnTargetWorkflowOutput:
			p.strategy = v
		default:
			return p, fault.Invalid("returnStrategy=%q: want TARGET_WORKFLOW, TARGET_WORKFLOW_OUTPUT, BLOCKING_WORKFLOW, BLOCKING_TASK, BLOCKING_TASK_INPUT or BLOCKING_TASK_LIST", v)
		}
	}
	if p.requestID == "" {
		p.requestID = uuid.NewString()
	}
	return p, nil
}

// executeWorkflow is POST /api/workflow/execute/{name}/{version}: the body
// is a StartWorkflowRequest, the answer a WorkflowRun.
func (s *Server) executeWorkflow(w http.ResponseWriter, r *http.Request) {
	p, err := readExecuteParams(r.URL.Query().Get)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	version, err := strconv.Atoi(r.PathValue("version"))
	if err != nil {
		s.writeError(w, r, fault.Invalid("version %q is not an integer", r.PathValue("version")))
		return
	}
	var req conductor.StartWorkflowRequest
	body, err := readBody(w, r, maxBodyBytes)
	if err == nil && len(strings.TrimSpace(string(body))) > 0 {
		err = decodeBody(body, &req)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	req.Name, req.Version = r.PathValue("name"), &version
	target, block, task, err := s.execute(r, req, p)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, s.visibleRun(r, target, block, task, p))
}

// executeByName is GET and POST /api/workflow/execute/{name} (Orkes): the
// POST body, or the GET query parameters, are the input; requestId,
// waitUntilTaskRef and waitForSeconds are headers; the answer is the
// workflow's output.
func (s *Server) executeByName(w http.ResponseWriter, r *http.Request) {
	p, err := readExecuteParams(r.Header.Get)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	req := conductor.StartWorkflowRequest{Name: r.PathValue("name"), Input: map[string]any{}}
	idempotencyHeaders(r, &req)
	if req.Version, err = versionParam(r); err != nil {
		s.writeError(w, r, err)
		return
	}
	if r.Method == http.MethodPost {
		if err := decodeJSON(w, r, maxBodyBytes, &req.Input); err != nil {
			s.writeError(w, r, err)
			return
		}
	} else {
		for k, v := range r.URL.Query() {
			if k != "version" && len(v) > 0 {
				req.Input[k] = v[0]
			}
		}
	}
	target, _, _, err := s.execute(r, req, p)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, target.Conductor(false).Output)
}

// execute starts the workflow and waits as p says. It returns the target
// workflow and, when a task stopped the wait, that task and its workflow.
func (s *Server) execute(r *http.Request, req conductor.StartWorkflowRequest, p executeParams) (target, block *engine.Workflow, task *engine.Task, err error) {
	if req.Priority < 0 || req.Priority > 99 {
		return nil, nil, nil, fault.Invalid("priority %d: want 0-99", req.Priority)
	}
	id, err := s.startAsCaller(r, req)
	if err != nil {
		return nil, nil, nil, err
	}
	return s.awaitBlocking(r.Context(), id, p.refs, p.wait)
}

// awaitBlocking waits until workflow id stops (see blocked) or timeout
// passes, and returns the state it last read. It waits on change
// notifications for the workflow and its sub-workflows, re-reading the
// read model only when one of them changed.
func (s *Server) awaitBlocking(ctx context.Context, id string, refs []string, timeout time.Duration) (*engine.Workflow, *engine.Workflow, *engine.Task, error) {
	deadline := time.Now().Add(timeout)
	var watched []string
	var changes <-chan struct{}
	stop := func() {}
	defer func() { stop() }()
	for {
		tree, unstarted, err := s.workflowTree(ctx, id)
		if err != nil {
			return nil, nil, nil, err
		}
		block, task, done := blocked(tree, refs)
		remaining := time.Until(deadline)
		if done || remaining <= 0 {
			return tree[0], block, task, nil
		}
		// A child's start changes nothing of its parent (the SUB_WORKFLOW
		// task names the child when it is scheduled): only a watch of the
		// child itself wakes the wait when it starts.
		ids := make([]string, 0, len(tree)+len(unstarted))
		for _, w := range tree {
			ids = append(ids, w.ID)
		}
		ids = append(ids, unstarted...)
		if s.deps.Changes != nil && !slices.Equal(ids, watched) {
			// Watch first, then read again: a change between the read
			// above and the watch is not missed.
			stop()
			changes, stop = s.deps.Changes.Watch(ids...)
			watched = ids
			continue
		}
		tick := min(remaining, recheckInterval)
		if s.deps.Changes == nil {
			tick = min(remaining, 50*time.Millisecond)
		}
		timer := time.NewTimer(tick)
		select {
		case <-changes:
		case <-timer.C:
		case <-s.stopping:
			deadline = time.Now() // read once more and answer
		case <-ctx.Done():
			timer.Stop()
			return nil, nil, nil, ctx.Err()
		}
		timer.Stop()
	}
}

// workflowTree reads a workflow and, recursively, the sub-workflows its
// SUB_WORKFLOW tasks started (within maxTreeDepth and maxTreeSize). It
// also returns the ids of the children those tasks name that it could not
// read: not started yet, or removed.
func (s *Server) workflowTree(ctx context.Context, id string) (tree []*engine.Workflow, unstarted []string, err error) {
	root, err := s.deps.Executions.Workflow(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	tree = []*engine.Workflow{root}
	depth := map[string]int{root.ID: 0}
	for i := 0; i < len(tree) && len(tree) < maxTreeSize; i++ {
		w := tree[i]
		if depth[w.ID] >= maxTreeDepth {
			continue
		}
		for _, t := range w.Tasks {
			if t.Type != conductor.TaskTypeSubWorkflow || t.SubWorkflowID == "" || t.Retried {
				continue
			}
			if _, seen := depth[t.SubWorkflowID]; seen {
				continue
			}
			child, err := s.deps.Executions.Workflow(ctx, t.SubWorkflowID)
			if err != nil {
				unstarted = append(unstarted, t.SubWorkflowID)
				continue
			}
			depth[child.ID] = depth[w.ID] + 1
			tree = append(tree, child)
		}
	}
	return tree, unstarted, nil
}

// blocked reports whether a synchronous execution stops waiting: the
// target (tree[0]) is terminal, a task named in refs has finished, a
// workflow of the tree that has not ended waits in a WAIT, HUMAN or
// WAIT_FOR_WEBHOOK task, or a pause holds the target (see held). It
// returns the task that stopped it, if one did, and its workflow.
func blocked(tree []*engine.Workflow, refs []string) (*engine.Workflow, *engine.Task, bool) {
	for _, w := range tree {
		for _, t := range w.Tasks {
			if len(refs) > 0 && conductor.TaskTerminal(t.Status) && !t.Retried && containsString(refs, t.Ref) {
				return w, t, true
			}
		}
	}
	if tree[0].Terminal() {
		return nil, nil, true
	}
	if w, t := waitingTask(tree); t != nil {
		return w, t, true
	}
	return nil, nil, held(tree, refs)
}

// held reports whether a pause holds the target where it is: it is
// PAUSED, or it runs only control tasks (JOIN, DO_WHILE) and SUB_WORKFLOW
// tasks whose children are held so. A paused workflow schedules nothing
// until an operator resumes it, so a wait that sat out waitForSeconds
// would answer the same state, later: Conductor waits it out and answers
// that state with signalTimeout set. A task named in refs that has not
// ended keeps the wait going: a paused workflow still takes its worker's
// result.
func held(tree []*engine.Workflow, refs []string) bool {
	byID := make(map[string]*engine.Workflow, len(tree))
	for _, w := range tree {
		byID[w.ID] = w
		for _, t := range w.Tasks {
			if len(refs) > 0 && t.Active() && !t.Retried && containsString(refs, t.Ref) {
				return false
			}
		}
	}
	return heldAt(tree[0], byID)
}

// passiveTypes are the tasks that move only when other tasks of their
// workflow do.
var passiveTypes = map[string]bool{conductor.TaskTypeJoin: true, conductor.TaskTypeExclusiveJoin: true, conductor.TaskTypeDoWhile: true}

func heldAt(w *engine.Workflow, byID map[string]*engine.Workflow) bool {
	if w.Terminal() {
		return false
	}
	paused := w.Status == conductor.WorkflowPaused
	children := false
	for _, t := range w.Tasks {
		switch {
		case !t.Active() || t.Retried:
		case t.Type == conductor.TaskTypeSubWorkflow:
			// A child not read (not started yet, or past the tree's
			// bounds) may still move.
			child := byID[t.SubWorkflowID]
			if child == nil || !heldAt(child, byID) {
				return false
			}
			children = true
		case paused || passiveTypes[t.Type]:
		default:
			return false
		}
	}
	return paused || children
}

// waitingTask returns the first task of a running workflow of the tree
// that waits for the outside world (WAIT, HUMAN, WAIT_FOR_WEBHOOK), and
// its workflow.
func waitingTask(tree []*engine.Workflow) (*engine.Workflow, *engine.Task) {
	for _, w := range tree {
		if w.Terminal() {
			continue
		}
		for _, t := range w.Tasks {
			if (t.Type == conductor.TaskTypeWait || conductor.AwaitsOutside(t.Type)) && t.Active() {
				return w, t
			}
		}
	}
	return nil, nil
}

// visibleRun renders a synchronous execution for the caller: a blocking
// task in a workflow the caller may not read (a sub-workflow of a
// definition it has no access to) answers as if none blocked. It is a
// conductor.WorkflowRun, or for TARGET_WORKFLOW_OUTPUT a
// conductor.OutputOnlyRun.
func (s *Server) visibleRun(r *http.Request, target, block *engine.Workflow, task *engine.Task, p executeParams) any {
	// Known before the task is hidden: a task hidden did stop the wait.
	unsettled := task == nil && !target.Terminal()
	if p.strategy == conductor.ReturnTargetWorkflowOutput {
		run := outputOnlyRun(target, p)
		run.SignalTimeout = unsettled
		return run
	}
	if block != nil && block.ID != target.ID && s.mayExecution(r, block.Name, block.CreatedBy, auth.Read) != nil {
		block, task = nil, nil
	}
	run := workflowRun(target, block, task, p)
	run.SignalTimeout = unsettled
	return run
}

// outputOnlyRun renders the target of a synchronous execution as
// TARGET_WORKFLOW_OUTPUT answers it, as Conductor's NotificationResult
// does whether a task blocks or not: its identity, input and output.
func outputOnlyRun(target *engine.Workflow, p executeParams) conductor.OutputOnlyRun {
	return conductor.OutputOnlyRun{SignalResponse: signalResponse(target, target, target.Conductor(false), p)}
}

// signalResponse is what every answer of a synchronous execution holds:
// workflow w's identity, and its input and output as view (w's masked
// view, as every view is) shows them, and target's state.
func signalResponse(target, w *engine.Workflow, view *conductor.Workflow, p executeParams) conductor.SignalResponse {
	return conductor.SignalResponse{ResponseType: p.strategy, TargetWorkflowID: target.ID, TargetWorkflowStatus: target.Status,
		RequestID: p.requestID, WorkflowID: w.ID, CorrelationID: w.CorrelationID, Input: view.Input, Output: view.Output}
}

// workflowRun renders the result of a synchronous execution per its
// return strategy, which is always the answer's responseType, as in
// Conductor's NotificationResult. Without a blocking task the workflow
// strategies answer the target workflow, and the task strategies the
// target's identity and state with no task: Conductor's server renders
// no TaskRun then (a null its reactive answer fails on), and its Java
// SDK reads a task strategy's answer without taskId (or, for the list,
// without tasks) as "nothing blocks". The task strategies answer
// Conductor's TaskRun: the task's input and output, its workerId as
// createdBy, its startTime as createTime, its workflow's priority and
// name; BLOCKING_TASK_LIST the task as every read of its workflow shows
// it, in tasks.
func workflowRun(target, block *engine.Workflow, task *engine.Task, p executeParams) conductor.WorkflowRun {
	taskStrategy := p.strategy == conductor.ReturnBlockingTask || p.strategy == conductor.ReturnBlockingTaskInput ||
		p.strategy == conductor.ReturnBlockingTaskList
	w := target
	if task != nil && p.strategy == conductor.ReturnBlockingWorkflow {
		w = block
	}
	view := w.Conductor(false) // masked as every view is
	targetView := view
	if w != target {
		targetView = target.Conductor(false)
	}
	run := conductor.WorkflowRun{SignalResponse: signalResponse(target, w, view, p), Status: w.Status, Variables: view.Variables,
		Priority: w.Priority, CreateTime: w.CreateTime, UpdateTime: w.UpdateTime, CreatedBy: w.CreatedBy,
		TargetWorkflowVariables: targetView.Variables}
	switch {
	case taskStrategy && task == nil:
		return run
	case p.strategy == conductor.ReturnBlockingTaskList:
		ct := block.TaskViews()(task)
		run.WorkflowID, run.CorrelationID, run.Status, run.Priority = block.ID, block.CorrelationID, task.Status, block.Priority
		run.Input, run.Output, run.Variables = nonNilMap(ct.InputData), nonNilMap(ct.OutputData), nil
		run.CreateTime, run.UpdateTime, run.CreatedBy = 0, 0, ""
		run.Tasks = []*conductor.Task{ct}
		return run
	case taskStrategy:
		ct := task.Conductor(block)
		run.WorkflowID, run.CorrelationID, run.Status = block.ID, block.CorrelationID, task.Status
		run.Input, run.Output, run.Variables = nonNilMap(ct.InputData), nonNilMap(ct.OutputData), nil
		run.TaskID, run.TaskType, run.TaskDefName, run.ReferenceTaskName = ct.TaskID, ct.TaskType, ct.TaskDefName, ct.ReferenceTaskName
		run.RetryCount, run.WorkflowType, run.Priority = &ct.RetryCount, ct.WorkflowType, ct.WorkflowPriority
		run.RetriedTaskID, run.ReasonForIncompletion = ct.RetriedTaskID, ct.ReasonForIncompletion
		run.CreatedBy, run.CreateTime, run.UpdateTime = ct.WorkerID, ct.StartTime, ct.UpdateTime
		return run
	case task != nil && p.strategy == conductor.ReturnBlockingWorkflow:
		run.BlockingTaskID, run.BlockingTaskReferenceName = task.ID, task.Ref
	}
	run.Tasks = []*conductor.Task{}
	taskView := w.TaskViews()
	for _, t := range w.Tasks {
		run.Tasks = append(run.Tasks, taskView(t))
	}
	return run
}
