package api

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/flowvault/flowvault/auth"
	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/executor"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/internal/logkey"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// TaskQueue is what the task endpoints need from the executor: polling
// over the workers' queues, and queue statistics. Results go through
// Engine.Submit, which can follow what they set off in related workflows.
// *executor.Executor implements it.
type TaskQueue interface {
	Poll(ctx context.Context, req executor.PollRequest) ([]*conductor.Task, uint64, error)
	QueueSizes(ctx context.Context, taskTypes []string) (map[string]int64, error)
	AllQueues(ctx context.Context) (map[string]executor.QueueStats, error)
	PollData(taskType string) []executor.PollData
}

// TaskIndex finds the workflow a task belongs to.
type TaskIndex interface {
	TaskWorkflow(ctx context.Context, taskID string) (string, error)
}

var _ TaskQueue = (*executor.Executor)(nil)

// Limits of the poll endpoints. Larger counts and waits are lowered to
// them; smaller than the minimum is a bad request.
const (
	defaultPollWait = 100 * time.Millisecond
	maxPollWait     = 30 * time.Second
	maxPollCount    = 100
	maxWorkerID     = 256
	// maxLogBytes bounds one line of POST /api/tasks/{taskId}/log.
	maxLogBytes = 64 << 10
	// nextTaskMaxWait bounds update-v2's wait for a task it knows is being
	// dispatched.
	nextTaskMaxWait = 100 * time.Millisecond
)

// taskRoutes registers Conductor's /api/tasks surface
// (conductor-api.md §4.3).
func (s *Server) taskRoutes() {
	if s.deps.Tasks == nil || s.deps.Engine == nil || s.deps.Executions == nil || s.deps.TaskIndex == nil {
		return
	}
	s.route("GET /api/tasks/poll/batch/{taskType}", auth.Authenticated, s.batchPoll)
	// GET /api/tasks/poll/{taskType} and GET /api/tasks/{taskId}/log both
	// match /api/tasks/poll/log, which net/http refuses to register: one
	// pattern serves both.
	s.route("GET /api/tasks/{first}/{second}", auth.Authenticated, s.pollOrLogs)
	s.route("POST /api/tasks/update-v2", auth.Authenticated, s.updateTaskV2)
	s.route("POST /api/tasks", auth.Authenticated, s.updateTask)
	// POST /api/tasks/queue/requeue/{taskType} has the shape of the first
	// pattern below, and of the signal one for a type named "signal"; a
	// pattern of its own would conflict with the signal one (net/http
	// refuses to register it). Both hand it to requeuePending.
	s.route("POST /api/tasks/{workflowId}/{taskRefName}/{status}", auth.Authenticated, s.orRequeue(s.updateTaskByRef(false)))
	s.route("POST /api/tasks/{workflowId}/{taskRefName}/{status}/sync", auth.Authenticated, s.updateTaskByRef(true))
	// More specific than the two above, so they win for these paths.
	s.route("POST /api/tasks/{workflowId}/{status}/signal", auth.Authenticated, s.orRequeue(s.signal(false)))
	s.route("POST /api/tasks/{workflowId}/{status}/signal/sync", auth.Authenticated, s.signal(true))
	s.route("GET /api/tasks/{taskId}", auth.Authenticated, s.getTask)
	s.route("GET /api/tasks/externalstoragelocation", auth.Authenticated, s.notServed("external payload storage locations"))
	s.route("POST /api/tasks/{taskId}/log", auth.Authenticated, s.addTaskLog)
	// Queue statistics name task types and count tasks: for those who see
	// definitions, executions or queues anyway, and of those only the
	// types they may read (queueFilter).
	queues := auth.Rule{AnyPermission: []string{auth.PermMetadataView, auth.PermWorkflowSearch, auth.PermPollTasks}}
	s.route("GET /api/tasks/queue/sizes", queues, s.queueSizes)
	s.route("GET /api/tasks/queue/all", queues, s.allQueueSizes(false))
	s.route("GET /api/tasks/queue/all/verbose", queues, s.allQueueSizes(true))
	s.route("GET /api/tasks/queue/polldata", queues, s.pollData)
	s.route("GET /api/tasks/queue/polldata/all", queues, s.allPollData)
}

// pollParams reads the poll query: workerid, domain, count, timeout (ms).
func pollParams(r *http.Request, taskType string) (executor.PollRequest, error) {
	q := r.URL.Query()
	req := executor.PollRequest{TaskType: taskType, Domain: q.Get("domain"), WorkerID: q.Get("workerid"), Principal: principal(r),
		Count: 1, Wait: defaultPollWait}
	if len(req.WorkerID) > maxWorkerID {
		return req, fault.Invalid("workerid is longer than %d bytes", maxWorkerID)
	}
	if v := q.Get("count"); v != "" {
		n, err := atoi(v)
		if err != nil || n < 1 {
			return req, fault.Invalid("count=%q: want an integer of at least 1 (at most %d are returned)", v, maxPollCount)
		}
		req.Count = min(n, maxPollCount)
	}
	if v := q.Get("timeout"); v != "" {
		n, err := conductor.ParseInt(v, 64)
		if err != nil || n < 0 {
			return req, fault.Invalid("timeout=%q: want milliseconds, an integer of at least 0 (at most %d are waited)", v, maxPollWait.Milliseconds())
		}
		req.Wait = time.Duration(min(n, maxPollWait.Milliseconds())) * time.Millisecond
	}
	return req, nil
}

// poll takes tasks for the request and waits (briefly) until the
// executions model shows them taken.
func (s *Server) poll(r *http.Request, req executor.PollRequest) ([]*conductor.Task, error) {
	if err := s.mayPoll(r, req.TaskType, req.Domain); err != nil {
		return nil, err
	}
	req.StillMay = s.stillMayPoll(r, req.TaskType, req.Domain)
	tasks, seq, err := s.deps.Tasks.Poll(r.Context(), req)
	if err != nil {
		return nil, err
	}
	s.waitBriefly(r.Context(), seq)
	return tasks, nil
}

// workerReadWait bounds how long a worker's poll or result waits for the
// executions model to show it. The write is durable in the log already;
// the wait only makes a following read see it, and must not tie workers'
// pace to the read model's.
const workerReadWait = time.Second

// waitBriefly waits up to workerReadWait for the executions model to reach
// seq.
func (s *Server) waitBriefly(ctx context.Context, seq uint64) {
	ctx, cancel := context.WithTimeout(ctx, workerReadWait)
	defer cancel()
	if err := s.wait(ctx, seq); err != nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
		s.deps.Logger.Warn("executions model not caught up", logkey.Seq, seq, logkey.Err, err)
	}
}

// batchPoll answers a JSON array of IN_PROGRESS tasks, [] when none came
// within the timeout.
func (s *Server) batchPoll(w http.ResponseWriter, r *http.Request) {
	req, err := pollParams(r, r.PathValue("taskType"))
	var tasks []*conductor.Task
	if err == nil {
		tasks, err = s.poll(r, req)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, tasks)
}

func (s *Server) pollOrLogs(w http.ResponseWriter, r *http.Request) {
	switch first, second := r.PathValue("first"), r.PathValue("second"); {
	case first == "poll":
		s.pollOne(w, r, second)
	case second == "log":
		s.getTaskLogs(w, r, first)
	default:
		s.noEndpoint(w, r)
	}
}

// pollOne answers one task, or 204 when none came within the timeout.
func (s *Server) pollOne(w http.ResponseWriter, r *http.Request, taskType string) {
	req, err := pollParams(r, taskType)
	var tasks []*conductor.Task
	if err == nil {
		req.Count = 1
		tasks, err = s.poll(r, req)
	}
	switch {
	case err != nil:
		s.writeError(w, r, err)
	case len(tasks) == 0:
		writeNoContent(w)
	default:
		writeJSON(w, http.StatusOK, tasks[0])
	}
}

// decodeResult reads a TaskResult body, checks what the engine cannot
// check for a task that already finished, and says whose data it is
// (reporter).
func (s *Server) decodeResult(w http.ResponseWriter, r *http.Request) (conductor.TaskResult, string, error) {
	res, by, _, err := s.decodeResultTask(w, r)
	return res, by, err
}

// decodeResultTask is decodeResult, with the task as the executions model
// shows it: nil when nothing was checked.
func (s *Server) decodeResultTask(w http.ResponseWriter, r *http.Request) (conductor.TaskResult, string, *engine.Task, error) {
	var res conductor.TaskResult
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBodyBytes+1))
	switch {
	case err != nil:
		return res, "", nil, fault.Invalid("read body: %v", err)
	case len(body) > maxBodyBytes:
		// Refused, it would be sent again and again (the SDKs retry), and
		// the task run again into the same refusal after its response
		// timeout: it fails for good, as a result the log cannot hold does.
		if res, err = oversizedResult(io.MultiReader(bytes.NewReader(body), maxBytesReader(w, r.Body, maxOversizedResult-maxBodyBytes))); err != nil {
			return res, "", nil, err
		}
	default:
		if err := decodeBodyWith(conductor.UnmarshalNew, body, &res); err != nil {
			return res, "", nil, err
		}
	}
	if res.TaskID == "" {
		return res, "", nil, fault.Invalid("taskId is required")
	}
	if res.ExtendLease && res.Status == "" {
		// A heartbeat: Conductor reads extendLease before the status,
		// which a lease extension need not give.
		res.Status = conductor.TaskInProgress
	}
	if err := checkResultStatus(res.Status); err != nil {
		return res, "", nil, err
	}
	if len(res.WorkerID) > maxWorkerID {
		return res, "", nil, fault.Invalid("workerId is longer than %d bytes", maxWorkerID)
	}
	if s.deps.Insecure && res.WorkflowInstanceID != "" {
		return res, "", nil, nil // nothing to check: the engine finds the task
	}
	wf, t, err := s.task(r.Context(), res.TaskID)
	if err != nil {
		return res, "", nil, err
	}
	if res.WorkflowInstanceID != "" && res.WorkflowInstanceID != wf.ID {
		return res, "", nil, fault.NotFound("task %s not found in workflow %s", res.TaskID, res.WorkflowInstanceID)
	}
	res.WorkflowInstanceID = wf.ID
	by, err := s.reporter(r, wf, t)
	return res, by, t, err
}

// maxOversizedResult bounds the body of a result read only for its ids,
// because it is over maxBodyBytes: beyond it, the answer is 413.
const maxOversizedResult = 32 << 20

// oversizedResult reads the ids and the worker of a result whose body is
// over maxBodyBytes, skipping the rest, and returns it failed for good,
// without its output.
func oversizedResult(body io.Reader) (conductor.TaskResult, error) {
	res := conductor.TaskResult{Status: conductor.TaskFailedWithTerminalError,
		ReasonForIncompletion: fmt.Sprintf("the engine refused the result: its body is over %d bytes", maxBodyBytes)}
	dec := json.NewDecoder(body)
	refused := func(err error) error {
		if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
			return fmt.Errorf("request body over %d bytes: %w", maxOversizedResult, fault.ErrTooLarge)
		}
		return fault.Invalid("malformed JSON body: %v", err)
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return res, refused(cmp.Or(err, errors.New("not an object")))
	}
	for dec.More() {
		key, err := dec.Token()
		if err != nil {
			return res, refused(err)
		}
		var into *string
		switch key {
		case "taskId":
			into = &res.TaskID
		case "workflowInstanceId":
			into = &res.WorkflowInstanceID
		case "workerId":
			into = &res.WorkerID
		}
		if into != nil {
			if err := dec.Decode(into); err != nil {
				return res, refused(err)
			}
			continue
		}
		for depth := 0; ; {
			tok, err := dec.Token()
			if err != nil {
				return res, refused(err)
			}
			switch tok {
			case json.Delim('{'), json.Delim('['):
				depth++
			case json.Delim('}'), json.Delim(']'):
				depth--
			}
			if depth == 0 {
				break
			}
		}
	}
	return res, nil
}

func checkResultStatus(status string) error {
	switch status {
	case conductor.TaskInProgress, conductor.TaskCompleted, conductor.TaskFailed, conductor.TaskFailedWithTerminalError:
		return nil
	case "":
		return fault.Invalid("status is required: IN_PROGRESS, COMPLETED, FAILED or FAILED_WITH_TERMINAL_ERROR")
	}
	return fault.Invalid("status %q: want IN_PROGRESS, COMPLETED, FAILED or FAILED_WITH_TERMINAL_ERROR", status)
}

// report records a result, an operator's (by, see reporter) or a
// worker's, and waits until the executions model shows it (for a worker's
// result, briefly), and what it set off in related workflows: a child's
// last task ends the child, whose end moves its parent on, and Conductor
// makes that before the update answers (see waitRelated). A result for a
// task or workflow that already finished changes nothing and succeeds
// (Conductor ignores late updates).
func (s *Server) report(r *http.Request, trig engine.Result, byWorker bool) (executor.Outcome, error) {
	return s.reportPolling(r, trig, byWorker, nil)
}

// reportPolling is report with next, when set, the worker's poll for its
// next task, waiting from before the result is decided (executor.Meta's
// NextPoll): the caller ends Outcome.Next.
func (s *Server) reportPolling(r *http.Request, trig engine.Result, byWorker bool, next *executor.PollRequest) (executor.Outcome, error) {
	res, by := trig.Result, trig.By
	// Following costs a worker's result nothing unless its decision
	// reaches another workflow (executor.Related counts only those
	// effects), and whether it did is known only afterwards.
	out, err := s.deps.Engine.Submit(r.Context(), res.WorkflowInstanceID, trig,
		executor.Meta{Principal: principal(r), FollowRelated: true, NextPoll: next})
	if err != nil {
		return out, err
	}
	if byWorker {
		s.waitBriefly(r.Context(), out.Seq)
	} else if err := s.wait(r.Context(), out.Seq); err != nil {
		return out, err
	}
	switch {
	case by != "" || !byWorker:
		s.waitRelated(r, res.WorkflowInstanceID, out.Related)
	case endedWorkflow(out.State):
		s.waitRelatedBriefly(r.Context(), out.Related)
	}
	return out, nil
}

// endedWorkflow reports whether a worker's result ended its workflow:
// the one case in which it waits for related workflows. An end tells the
// parent, terminates the children and starts the failure workflow; a
// result that does not end its workflow reaches another only by starting
// a sub-workflow, which is the workflow's own progress, and waiting for
// it would cost a worker an append and a read-model catch-up on every
// task before a SUB_WORKFLOW.
func endedWorkflow(w *engine.Workflow) bool {
	return w != nil && w.Terminal()
}

// waitRelatedBriefly is waitRelated bounded by workerReadWait, for a
// worker's result: its pace must not follow that of other workflows'
// shards, and what it set off follows anyway.
func (s *Server) waitRelatedBriefly(ctx context.Context, rel *executor.Related) {
	ctx, cancel := context.WithTimeout(ctx, workerReadWait)
	defer cancel()
	seq, err := rel.Wait(ctx)
	if err == nil {
		err = s.wait(ctx, seq)
	}
	if err != nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
		s.deps.Logger.Warn("executions model not caught up with a result's related workflows", logkey.Seq, seq, logkey.Err, err)
	}
}

// updateTask is the legacy result endpoint (also the lease heartbeat with
// extendLease): it answers the task id as text.
func (s *Server) updateTask(w http.ResponseWriter, r *http.Request) {
	res, by, err := s.decodeResult(w, r)
	if err == nil {
		_, err = s.report(r, engine.Result{Result: res, By: by}, true)
	}
	if err != nil && !s.lateForRemoved(r, res, err) {
		s.writeError(w, r, err)
		return
	}
	writeText(w, http.StatusOK, res.TaskID)
}

// lateForRemoved reports whether res, refused with err, is a result for a
// task of a removed workflow that the caller may report on: a late one,
// which both update endpoints ignore with a success, as Conductor does a
// late update for a workflow that ended (conductor-api.md §4.3, §8 item
// 11).
// Removal takes the workflow's tasks off the task index, so the lookup
// answers not found; a 404 from update-v2 would make the JavaScript SDK's
// workers give up update-v2 for the life of their process, or retry a
// result that can never land and then report it lost. A result without
// workflowInstanceId (the SDKs always send it) cannot be traced to a
// removed workflow and stays not found.
func (s *Server) lateForRemoved(r *http.Request, res conductor.TaskResult, err error) bool {
	if !errors.Is(err, fault.ErrNotFound) || res.TaskID == "" || res.WorkflowInstanceID == "" {
		return false
	}
	// The engine still holds a removed workflow's state (its events stay
	// in the log until compaction has run).
	out, serr := s.deps.Engine.Submit(r.Context(), res.WorkflowInstanceID, nil, executor.Meta{})
	if serr != nil || out.State == nil || !out.State.Removed {
		return false
	}
	t := out.State.TaskByID(res.TaskID)
	if t == nil {
		return false
	}
	// Whoever may not report on the task keeps the answer a missing task
	// gets.
	if _, err := s.reporter(r, out.State, t); err != nil {
		return false
	}
	s.deps.Logger.Debug("result for a task of a removed workflow ignored", logkey.TaskID, res.TaskID, logkey.WorkflowID, res.WorkflowInstanceID)
	return true
}

// updateTaskV2 records a result, then hands the worker its next task of
// the same type and domain: one the result's decision (or another)
// scheduled while the worker's poll waited (see executor.AheadPoll), else
// one queued (see nextTaskWait), else 204.
func (s *Server) updateTaskV2(w http.ResponseWriter, r *http.Request) {
	res, by, known, err := s.decodeResultTask(w, r)
	var out executor.Outcome
	if err == nil {
		out, err = s.reportPolling(r, engine.Result{Result: res, By: by}, true, s.pollAhead(r, res, by, known))
	}
	var ahead *conductor.Task
	if out.Next != nil {
		var seq uint64
		var aheadErr error
		ahead, seq, aheadErr = out.Next.End(r.Context(), err == nil)
		if aheadErr != nil && r.Context().Err() == nil {
			// A refusal (the caller's rights went while it waited), not
			// its going away: the task went back either way.
			s.deps.Logger.Warn("update-v2: next task poll failed", logkey.Err, aheadErr)
		} else if ahead != nil {
			s.waitBriefly(r.Context(), seq)
		}
	}
	if err != nil && s.lateForRemoved(r, res, err) {
		writeNoContent(w) // no next task from a removed workflow's queue position
		return
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var t *engine.Task
	if out.State != nil {
		t = out.State.TaskByID(res.TaskID)
	}
	if ahead != nil {
		writeJSON(w, http.StatusOK, ahead)
		return
	}
	// A lease extension is no result: its worker still holds the task and
	// asked for no other (Conductor's update-v2 answers 204 to it).
	if t == nil || !t.IsWorkerTask() || res.ExtendLease {
		writeNoContent(w)
		return
	}
	next, err := s.poll(r, executor.PollRequest{TaskType: t.Name, Domain: t.Domain, WorkerID: res.WorkerID, Principal: principal(r), Count: 1,
		Wait: nextTaskWait(out.State, t)})
	if err != nil {
		// The result is recorded: answering an error would make the worker
		// send it again. It polls for its next task anyway.
		s.deps.Logger.Warn("update-v2: next task poll failed", logkey.TaskType, t.Name, logkey.Err, err)
	}
	if len(next) == 0 {
		writeNoContent(w)
		return
	}
	writeJSON(w, http.StatusOK, next[0])
}

// updateTaskByRef completes (or fails, or updates) the pending instance
// of a task by its reference name: a SCHEDULED task no worker polled, a
// WAIT task, an IN_PROGRESS one. As Conductor's, the result starts from
// the task: the body is output, as given, set over the task's (Conductor
// and Orkes merge it), and the task's reasonForIncompletion and
// callbackAfterSeconds stay (a task waiting for its callback waits again
// as long from now). It answers the task id as text, or with sync the
// workflow. A reference with no pending instance (it never ran, or its
// latest ended) answers 200 with no body, as Conductor's TaskService does,
// and with sync 404, as its TaskResource does.
func (s *Server) updateTaskByRef(sync bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		wfID, ref, status := r.PathValue("workflowId"), r.PathValue("taskRefName"), r.PathValue("status")
		workerID := r.URL.Query().Get("workerid")
		var output map[string]any
		err := checkResultStatus(status)
		if err == nil && len(workerID) > maxWorkerID {
			err = fault.Invalid("workerid is longer than %d bytes", maxWorkerID)
		}
		if err == nil {
			output, err = readOutput(w, r)
		}
		var wf *engine.Workflow
		var t *engine.Task
		var by string
		if err == nil {
			wf, t, by, err = s.updatableByRef(r, wfID, ref)
		}
		if err == nil && sync {
			// The answer is the whole workflow: a worker may report on its
			// task without being allowed to read the rest.
			_, err = s.executionHead(r, wfID, auth.Read)
		}
		pending := t != nil && t.Active() && !wf.Terminal()
		switch {
		case err != nil:
		case !pending && sync:
			err = fault.NotFound("found no running task %s of workflow %s to update", ref, wfID)
		case !pending:
			writeText(w, http.StatusOK, "")
			return
		}
		var out executor.Outcome
		if err == nil {
			out, err = s.report(r, engine.Result{Result: conductor.TaskResult{TaskID: t.ID, WorkflowInstanceID: wfID, Status: status,
				OutputData: output, WorkerID: workerID, ReasonForIncompletion: t.Reason, CallbackAfterSeconds: t.CallbackAfterSeconds},
				By: by, MergeOutput: true}, false)
		}
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		if sync {
			writeJSON(w, http.StatusOK, out.State.Conductor(true))
			return
		}
		writeText(w, http.StatusOK, t.ID)
	}
}

// updatableByRef returns the latest instance of task ref of workflow
// wfID, which the caller must be allowed to report on, with the workflow,
// and whose data a report is (reporter). It returns no task, and no
// error, when the workflow has none of that name and the caller may read
// it.
func (s *Server) updatableByRef(r *http.Request, wfID, ref string) (wf *engine.Workflow, t *engine.Task, by string, err error) {
	out, err := s.deps.Engine.Submit(r.Context(), wfID, nil, executor.Meta{})
	if err != nil {
		return nil, nil, "", err
	}
	// To a caller who may not see the workflow, every answer is the same:
	// it exists, or has such a task, tells something.
	hidden := fault.NotFound("workflow %s not found", wfID)
	switch t := latestByRef(out.State, ref); {
	case out.State == nil:
		return nil, nil, "", hidden
	case t == nil:
		if e := s.mayExecution(r, out.State.Name, out.State.CreatedBy, auth.Read); e != nil {
			return nil, nil, "", s.hidden(r, out.State, "", auth.Read, e, hidden)
		}
		return out.State, nil, "", nil
	default:
		if by, err = s.reporter(r, out.State, t); errors.Is(err, fault.ErrNotFound) {
			err = hidden
		}
		return out.State, t, by, err
	}
}

// pollAhead is the poll for its next task a worker's update-v2 registers
// before its result is decided, when it may poll the task's queue (known,
// the task as read, is nil when nothing was checked: no authentication
// asks); nil for an operator's result.
func (s *Server) pollAhead(r *http.Request, res conductor.TaskResult, by string, known *engine.Task) *executor.PollRequest {
	if by != "" || res.ExtendLease {
		return nil
	}
	req := &executor.PollRequest{WorkerID: res.WorkerID, Principal: principal(r), Count: 1}
	if known != nil {
		if !known.IsWorkerTask() || s.mayPoll(r, known.Name, known.Domain) != nil {
			return nil
		}
		req.StillMay = s.stillMayPoll(r, known.Name, known.Domain)
	} else if !s.deps.Insecure {
		return nil
	}
	return req
}

// nextTaskWait is how long update-v2 waits for a next task: not at all,
// unless the result just scheduled a task of the same queue in the same
// workflow, whose dispatch message is on its way.
func nextTaskWait(w *engine.Workflow, done *engine.Task) time.Duration {
	now := time.Now().UnixMilli()
	for _, t := range w.Tasks {
		if t.Status == conductor.TaskScheduled && t.Name == done.Name && t.Domain == done.Domain &&
			t.IsWorkerTask() && t.AvailableAt <= now {
			return nextTaskMaxWait
		}
	}
	return 0
}

func latestByRef(w *engine.Workflow, ref string) *engine.Task {
	if w == nil {
		return nil
	}
	return w.LatestByRef(ref)
}

// readTask reads a task the caller may see: as a worker of its queue, or a
// reader of its execution.
func (s *Server) readTask(r *http.Request, taskID string) (*engine.Workflow, *engine.Task, error) {
	wf, t, err := s.task(r.Context(), taskID)
	if err != nil || t.IsWorkerTask() && s.mayPoll(r, t.Name, t.Domain) == nil {
		return wf, t, err
	}
	if err := s.mayExecution(r, wf.Name, wf.CreatedBy, auth.Read); err != nil {
		return nil, nil, s.hidden(r, wf, taskID, auth.Read, err, fault.NotFound("task %s not found", taskID))
	}
	return wf, t, nil
}

// task reads a task and its workflow from the executions model: the
// workflow's head alone (Tasks nil) where the model reads one task
// (ExecutionTasks), so that a worker's result in a workflow of thousands of
// tasks reads one of them, not all.
func (s *Server) task(ctx context.Context, taskID string) (*engine.Workflow, *engine.Task, error) {
	wfID, err := s.deps.TaskIndex.TaskWorkflow(ctx, taskID)
	if err != nil {
		return nil, nil, err
	}
	if tasks, ok := s.deps.Executions.(ExecutionTasks); ok {
		return tasks.WorkflowTask(ctx, wfID, taskID)
	}
	return s.wholeTask(ctx, wfID, taskID)
}

// wholeTask reads task taskID and every task of its workflow wfID.
func (s *Server) wholeTask(ctx context.Context, wfID, taskID string) (*engine.Workflow, *engine.Task, error) {
	wf, err := s.deps.Executions.Workflow(ctx, wfID)
	if err != nil {
		return nil, nil, err
	}
	t := wf.TaskByID(taskID)
	if t == nil {
		return nil, nil, fault.NotFound("task %s not found", taskID)
	}
	return wf, t, nil
}

func (s *Server) getTask(w http.ResponseWriter, r *http.Request) {
	wf, t, err := s.readTask(r, r.PathValue("taskId"))
	if err == nil && wf.Tasks == nil && t.ViewReadsOtherTasks() {
		wf, t, err = s.wholeTask(r.Context(), wf.ID, t.ID)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, t.Conductor(wf))
}

// addTaskLog appends a line to a task's log. The SDKs send the line as a
// JSON string; a text/plain body is taken as it is.
func (s *Server) addTaskLog(w http.ResponseWriter, r *http.Request) {
	taskID := r.PathValue("taskId")
	body, err := readBody(w, r, maxLogBytes)
	var line string
	if err == nil {
		line, err = logLine(r, body)
	}
	var wf *engine.Workflow
	var t *engine.Task
	if err == nil {
		wf, t, err = s.task(r.Context(), taskID)
	}
	if err == nil {
		err = s.mayUpdateTask(r, wf, t)
	}
	// A line the task's log has no room for (engine.MaxTaskLogLines,
	// engine.MaxTaskLogBytes) is refused by the decider: 413.
	if err == nil {
		var out executor.Outcome
		out, err = s.deps.Engine.Submit(r.Context(), wf.ID, engine.AddLog{TaskID: taskID, Line: line}, executor.Meta{Principal: principal(r)})
		if err == nil {
			err = s.wait(r.Context(), out.Seq)
		}
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeNoContent(w)
}

func logLine(r *http.Request, body []byte) (string, error) {
	text := strings.TrimSpace(string(body))
	if text == "" {
		return "", fault.Invalid("the log line is empty")
	}
	if strings.HasPrefix(r.Header.Get("Content-Type"), "text/plain") {
		return string(body), nil
	}
	if text[0] != '"' {
		// Not a JSON string: the line as sent. Conductor reads the body
		// as a String whatever its content type, and conductor-go's
		// TaskClient.Log sends the raw line as application/json.
		return string(body), nil
	}
	var line string
	if err := json.Unmarshal(body, &line); err != nil {
		// Not one JSON string either ("quoted" then more, a Windows
		// path): the line as sent, as Conductor stores it.
		return string(body), nil
	}
	if line == "" {
		return "", fault.Invalid("the log line is empty")
	}
	return line, nil
}

// getTaskLogs answers the task's log lines, always as a JSON array.
func (s *Server) getTaskLogs(w http.ResponseWriter, r *http.Request, taskID string) {
	_, t, err := s.readTask(r, taskID)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	logs := make([]conductor.TaskExecLog, 0, len(t.Logs))
	for _, l := range t.Logs {
		l.TaskID = t.ID
		logs = append(logs, l)
	}
	writeJSON(w, http.StatusOK, logs)
}

// queueFilter returns the caller's filter over task types for queue
// statistics, nil when it sees every queue. A queue tells that its type
// exists, how much work waits and which workers poll it: it is shown to
// whoever may read the type's definition (READ on its TASK_DEF, which
// EXECUTE includes: a worker sees its own queues), as a listing of
// definitions is. Decisions are remembered per type for the one request.
func (s *Server) queueFilter(r *http.Request) func(taskType string) (bool, error) {
	if s.deps.Insecure || caller(r).IsAdmin() {
		return nil
	}
	known := map[string]bool{}
	return func(taskType string) (bool, error) {
		if ok, seen := known[taskType]; seen {
			return ok, nil
		}
		err := s.authorize(r, auth.Read, auth.Target{Type: auth.TargetTaskDef, ID: taskType})
		if err != nil && !errors.Is(err, fault.ErrForbidden) {
			return false, fmt.Errorf("queue %s: %w", taskType, err)
		}
		known[taskType] = err == nil
		return err == nil, nil
	}
}

// queueSizes answers {type: tasks waiting} for each taskType parameter
// the caller may see; the others are left out, as if not asked for.
func (s *Server) queueSizes(w http.ResponseWriter, r *http.Request) {
	types := listParam(r.URL.Query(), "taskType")
	if visible := s.queueFilter(r); visible != nil {
		var shown []string
		for _, typ := range types {
			ok, err := visible(typ)
			if err != nil {
				s.writeError(w, r, err)
				return
			}
			if ok {
				shown = append(shown, typ)
			}
		}
		types = shown
	}
	sizes, err := s.deps.Tasks.QueueSizes(r.Context(), types)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, sizes)
}

// listParam reads a query parameter Conductor binds to a List<String>
// (Spring's @RequestParam): repeated (?taskType=A&taskType=B), or a
// single value Spring splits at its commas and trims (?taskType=A, B).
// conductor-go's TaskClient.Size sends the one value it is given, so
// several types come as "A,B".
func listParam(q url.Values, key string) []string {
	vs := q[key]
	if len(vs) != 1 {
		return vs
	}
	parts := strings.Split(vs[0], ",")
	for i, p := range parts {
		parts[i] = strings.TrimSpace(p)
	}
	return parts
}

// allQueueSizes answers every queue's size, or, verbose, Conductor's
// queue → shard → {size, uacked} (one shard, "a").
func (s *Server) allQueueSizes(verbose bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		queues, err := s.deps.Tasks.AllQueues(r.Context())
		if err == nil {
			// A queue exists for every defined task type, as in Conductor,
			// not only for those with tasks since this engine started (the
			// dispatch stream lives in memory).
			var defs []*conductor.TaskDef
			if defs, err = s.deps.Metadata.ListTaskDefs(r.Context()); err == nil {
				for _, d := range defs {
					if _, ok := queues[d.Name]; !ok {
						queues[d.Name] = executor.QueueStats{TaskType: d.Name}
					}
				}
			}
		}
		if visible := s.queueFilter(r); err == nil && visible != nil {
			for name, q := range queues {
				var ok bool
				if ok, err = visible(q.TaskType); err != nil {
					break
				}
				if !ok {
					delete(queues, name)
				}
			}
		}
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		if verbose {
			out := make(map[string]map[string]map[string]int64, len(queues))
			for name, q := range queues {
				out[name] = map[string]map[string]int64{"a": {"size": q.Size, "uacked": q.Unacked}}
			}
			writeJSON(w, http.StatusOK, out)
			return
		}
		sizes := make(map[string]int64, len(queues))
		for name, q := range queues {
			sizes[name] = q.Size
		}
		writeJSON(w, http.StatusOK, sizes)
	}
}

// pollData answers the last HTTP poll of each worker of taskType, as this
// node saw them (executor.PollData); [] for a type the caller may not see.
func (s *Server) pollData(w http.ResponseWriter, r *http.Request) {
	typ := r.URL.Query().Get("taskType")
	if typ == "" {
		s.writeError(w, r, fault.Invalid("taskType is required"))
		return
	}
	s.writePollData(w, r, typ)
}

func (s *Server) allPollData(w http.ResponseWriter, r *http.Request) { s.writePollData(w, r, "") }

// writePollData answers the poll data of taskType ("": every type), of
// the types the caller may see.
func (s *Server) writePollData(w http.ResponseWriter, r *http.Request, taskType string) {
	data := s.deps.Tasks.PollData(taskType)
	if visible := s.queueFilter(r); visible != nil {
		shown := make([]executor.PollData, 0, len(data))
		for _, d := range data {
			ok, err := visible(d.QueueName)
			if err != nil {
				s.writeError(w, r, err)
				return
			}
			if ok {
				shown = append(shown, d)
			}
		}
		data = shown
	}
	writeJSON(w, http.StatusOK, data)
}

// orRequeue serves POST /api/tasks/queue/requeue/{taskType} where one of
// the by-reference update patterns matched it (see taskRoutes), and
// passes every other request to h.
func (s *Server) orRequeue(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("workflowId") != "queue" {
			h(w, r)
			return
		}
		switch {
		case r.PathValue("taskRefName") == "requeue":
			s.requeuePending(w, r, r.PathValue("status"))
		case strings.HasSuffix(r.Pattern, "/signal") && r.PathValue("status") == "requeue":
			s.requeuePending(w, r, "signal")
		default:
			h(w, r)
		}
	}
}

// requeuePending is Conductor's POST /api/tasks/queue/requeue/{taskType}:
// it announces again the tasks of the type that wait for a worker
// (SCHEDULED), in every domain, for a queue that lost its messages (a NATS
// server restarted without them, or dropped them for age). Each of their
// workflows is reconciled (engine.Reconcile): the hand-offs its state
// implies are performed again, as recovery does at every start, under
// message ids of their own (engine.Reconcile.Requeue): the dispatch
// stream's duplicate window would drop an announcement sent again within
// 10 minutes of the first. A task still queued may so be announced twice;
// its second take is answered "task gone". It answers, as Conductor does,
// the number of tasks found waiting, as text.
//
// It is for whoever may poll the type (it only fills its queues) in
// every domain, its queue without domain asked for them (a DOMAIN grant
// reaches one domain's queue), or operates every execution
// (WORKFLOW_MANAGEMENT).
func (s *Server) requeuePending(w http.ResponseWriter, r *http.Request, taskType string) {
	err := s.mayRequeue(r, taskType)
	var pending map[string]int
	if err == nil {
		pending, err = s.pendingTasks(r.Context(), taskType)
	}
	n := 0
	for wfID, count := range pending {
		_, serr := s.deps.Engine.Submit(r.Context(), wfID, engine.Reconcile{Requeue: true}, executor.Meta{Principal: principal(r)})
		switch {
		case serr == nil:
			n += count
		case errors.Is(serr, fault.ErrNotFound), errors.Is(serr, fault.ErrConflict):
			// Removed or ended since the search: nothing waits any more.
		default:
			err = fmt.Errorf("requeue %s: workflow %s: %w", taskType, wfID, serr)
		}
		if err != nil {
			break
		}
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeText(w, http.StatusOK, strconv.Itoa(n))
}

func (s *Server) mayRequeue(r *http.Request, taskType string) error {
	if taskType == "" {
		return fault.Invalid("task type is required")
	}
	if s.deps.Insecure || caller(r).HasPermission(auth.PermWorkflowManagement) {
		return nil
	}
	return s.mayPoll(r, taskType, "")
}

// pendingTasks counts the SCHEDULED tasks of taskType per workflow, from
// the search index, in one search: pages by offset stopped at a page
// shortened by a workflow removed meanwhile, and skipped the tasks that
// moved up over the tasks of a page before that left the search.
func (s *Server) pendingTasks(ctx context.Context, taskType string) (map[string]int, error) {
	if s.deps.Search == nil {
		return nil, fault.NotFound("requeue needs task search, which this server does not serve")
	}
	q := "taskType = " + quote(taskType) + " AND status = " + conductor.TaskScheduled
	ids, err := s.deps.Search.SearchTaskWorkflowIDs(ctx, searchRequest(q, "scheduledTime:ASC"))
	if err != nil {
		return nil, fmt.Errorf("requeue %s: find pending tasks: %w", taskType, err)
	}
	byWorkflow := map[string]int{}
	for _, id := range ids {
		byWorkflow[id]++
	}
	return byWorkflow, nil
}
