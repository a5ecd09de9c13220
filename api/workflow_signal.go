package api

import (
	"net/http"
	"strings"

	"github.com/flowvault/flowvault/auth"
	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/executor"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// Orkes's signal and state updates: a caller moves a running workflow on
// from the outside, then (for the synchronous forms) waits as a
// synchronous execution does and answers a WorkflowRun.

// signal is POST /api/tasks/{workflowId}/{status}/signal[/sync]: the body
// is the output of the task the workflow (or a sub-workflow of it) waits
// in, a WAIT, HUMAN or WAIT_FOR_WEBHOOK task, which gets status.
func (s *Server) signal(sync bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		wfID, status := r.PathValue("workflowId"), r.PathValue("status")
		p, err := readExecuteParams(r.URL.Query().Get)
		if err == nil {
			err = checkResultStatus(status)
		}
		var output map[string]any
		if err == nil {
			output, err = readOutput(w, r)
		}
		var block *engine.Workflow
		var task *engine.Task
		var by string
		if err == nil {
			block, task, by, err = s.signalled(r, wfID)
		}
		if err == nil {
			var out executor.Outcome
			out, err = s.report(r, engine.Result{Result: conductor.TaskResult{TaskID: task.ID, WorkflowInstanceID: block.ID, Status: status, OutputData: output}, By: by}, false)
			if reply, _ := out.Reply.(engine.ResultReply); err == nil && reply.Ignored {
				// Another signal (or update) ended the task since it was
				// looked up: this one changed nothing, and must not say
				// it did.
				err = fault.Conflict("task %s of workflow %s ended before this signal reached it; the signal changed nothing", task.Ref, block.ID)
			}
		}
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		if !sync {
			writeEmptyOK(w)
			return
		}
		s.answerRun(w, r, wfID, p)
	}
}

// signalled returns the task a signal of wfID completes, its workflow,
// and whose data the signal is (reporter).
func (s *Server) signalled(r *http.Request, wfID string) (*engine.Workflow, *engine.Task, string, error) {
	if _, err := s.executionHead(r, wfID, auth.Execute); err != nil {
		return nil, nil, "", err
	}
	tree, _, err := s.workflowTree(r.Context(), wfID)
	if err != nil {
		return nil, nil, "", err
	}
	block, task := waitingTask(tree)
	if task == nil {
		return nil, nil, "", fault.Conflict("workflow %s is %s and waits in no WAIT, HUMAN or WAIT_FOR_WEBHOOK task to signal", wfID, tree[0].Status)
	}
	by, err := s.reporter(r, block, task)
	if err != nil {
		return nil, nil, "", err
	}
	return block, task, by, nil
}

// workflowStateUpdate is the body of POST /api/workflow/{id}/state.
type workflowStateUpdate struct {
	TaskReferenceName string                `json:"taskReferenceName"`
	TaskResult        *conductor.TaskResult `json:"taskResult"`
	Variables         map[string]any        `json:"variables"`
}

// updateState is POST /api/workflow/{id}/state: it sets variables, reports
// a result for the latest instance of a task by its reference name, then
// waits (waitUntilTaskRef, waitForSeconds) as a synchronous execution does.
// Variables and result are one decision (engine.Result.Variables): an
// update refused for any part of it (a callbackAfterSeconds out of range,
// a DO_WHILE whose body runs, a record too large) changes nothing, and one
// for a task that has ended is refused (409, as a signal is) rather than
// answered 200 for a result the engine ignored.
func (s *Server) updateState(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	p, err := readExecuteParams(r.URL.Query().Get)
	var upd workflowStateUpdate
	if err == nil {
		err = decodeJSON(w, r, maxBodyBytes, &upd)
	}
	if err == nil && (upd.TaskResult == nil) != (upd.TaskReferenceName == "") {
		err = fault.Invalid("taskReferenceName and taskResult go together")
	}
	if err == nil && upd.TaskResult != nil {
		err = checkResultStatus(upd.TaskResult.Status)
	}
	if err == nil && upd.TaskResult != nil && len(upd.TaskResult.WorkerID) > maxWorkerID {
		// As every other result's: the id is stored with the task.
		err = fault.Invalid("workerId is longer than %d bytes", maxWorkerID)
	}
	// The answer is the workflow: whoever may only report on one of its
	// tasks (a worker) may not read it all. Checked before anything
	// changes, as is the right to set its variables, or (with neither
	// variables nor a result) to move it at all.
	if err == nil {
		_, err = s.executionHead(r, id, auth.Read)
	}
	if err == nil && (len(upd.Variables) > 0 || upd.TaskResult == nil) {
		_, err = s.executionHead(r, id, auth.Execute)
	}
	switch {
	case err != nil:
	case upd.TaskResult != nil:
		err = s.updateTaskState(r, id, upd)
	case len(upd.Variables) > 0:
		err = s.submit(r, id, engine.SetVariables{Variables: upd.Variables, By: principal(r)})
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.answerRun(w, r, id, p)
}

// updateTaskState reports upd's result, with its variables, on the latest
// instance of its task in workflow id.
func (s *Server) updateTaskState(r *http.Request, id string, upd workflowStateUpdate) error {
	_, t, by, err := s.updatableByRef(r, id, upd.TaskReferenceName)
	if err == nil && t == nil {
		err = fault.NotFound("workflow %s has no task with reference name %q", id, upd.TaskReferenceName)
	}
	if err != nil {
		return err
	}
	res := *upd.TaskResult
	res.TaskID, res.WorkflowInstanceID = t.ID, id
	trig := engine.Result{Result: res, By: by, Variables: upd.Variables}
	if len(upd.Variables) > 0 {
		// The variables are the caller's data, whoever the result's is
		// (a worker of the task reports as itself).
		trig.AlsoBy = []string{principal(r)}
	}
	out, err := s.report(r, trig, false)
	if reply, _ := out.Reply.(engine.ResultReply); err == nil && reply.Ignored {
		return ignoredUpdate(out.State, id, t)
	}
	return err
}

// ignoredUpdate is the refusal of a state update whose result the engine
// ignored, changing nothing (its variables neither): w is the workflow as
// the decision found it, t the task the update named.
func ignoredUpdate(w *engine.Workflow, id string, t *engine.Task) error {
	if w != nil {
		if now := w.TaskByID(t.ID); w.Terminal() {
			return fault.Conflict("workflow %s is %s: the update changed nothing", id, w.Status)
		} else if now != nil && !now.Active() {
			return fault.Conflict("task %s of workflow %s is %s: the update changed nothing", t.Ref, id, now.Status)
		}
	}
	return fault.Conflict("task %s of workflow %s took no such result (progress of a DO_WHILE is its condition's to report, a task's is its current worker's): the update changed nothing", t.Ref, id)
}

// answerRun waits for workflow id as p says and answers its WorkflowRun.
func (s *Server) answerRun(w http.ResponseWriter, r *http.Request, id string, p executeParams) {
	target, block, task, err := s.awaitBlocking(r.Context(), id, p.refs, p.wait)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, s.visibleRun(r, target, block, task, p))
}

// readOutput reads a body that is a task's output: a JSON object, or
// nothing.
func readOutput(w http.ResponseWriter, r *http.Request) (map[string]any, error) {
	body, err := readBody(w, r, maxBodyBytes)
	if err != nil {
		return nil, err
	}
	output := map[string]any{}
	if len(strings.TrimSpace(string(body))) > 0 {
		if err := decodeBody(body, &output); err != nil {
			return nil, err
		}
	}
	return output, nil
}
