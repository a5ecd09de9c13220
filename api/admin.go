package api

import (
	"net/http"
	"strconv"

	"github.com/flowvault/flowvault/auth"
	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// Conductor's /api/admin operations and /api/version. What Conductor's
// admin API does to its queues and decider (pending task lists, a sweep,
// a consistency repair) is done here from the log: a task waits where its
// workflow's state says, and a hand-off lost with a queue is made again
// from that state.

func (s *Server) adminRoutes() {
	s.route("GET /api/version", auth.Authenticated, s.version)
	if s.deps.Engine == nil {
		return
	}
	s.route("POST /api/admin/sweep/requeue/{id}", auth.Admin, s.requeueSweep)
	s.route("POST /api/admin/consistency/verifyAndRepair/{id}", auth.Admin, s.verifyAndRepair)
	if s.deps.Search != nil {
		s.route("GET /api/admin/task/{taskType}", auth.Admin, s.pendingOfType)
	}
}

func (s *Server) version(w http.ResponseWriter, _ *http.Request) {
	writeText(w, http.StatusOK, s.deps.Version)
}

// redecide acts on the workflow's passed deadlines, then performs again the
// hand-offs its state implies. With requeue, a task's announcement is
// sent again even within the dispatch stream's duplicate window of the
// first, so one lost from a queue is announced again at once (a task
// still queued may be announced twice; its second take finds it gone).
func (s *Server) redecide(r *http.Request, id string, requeue bool) error {
	if err := s.submit(r, id, engine.Tick{}); err != nil {
		return err
	}
	return s.submit(r, id, engine.Reconcile{Requeue: requeue})
}

// requeueSweep is Conductor's sweep of one workflow: a decision now. It
// answers as Conductor does, "true.<workflowId>".
func (s *Server) requeueSweep(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := s.redecide(r, id, false); err != nil {
		s.writeError(w, r, err)
		return
	}
	writeText(w, http.StatusOK, "true."+id)
}

// verifyAndRepair announces again every task of the workflow that waits
// for a worker, and answers whether there was anything to repair: "true"
// for a workflow still running, "false" for one that ended.
func (s *Server) verifyAndRepair(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	err := s.redecide(r, id, true)
	var wf *engine.Workflow
	if err == nil {
		wf, err = s.executionHead(r, id, auth.Read)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeText(w, http.StatusOK, strconv.FormatBool(!wf.Terminal()))
}

// pendingOfType lists the tasks of a type not yet ended (SCHEDULED or
// IN_PROGRESS), oldest first: ?start=0&count=100.
func (s *Server) pendingOfType(w http.ResponseWriter, r *http.Request) {
	start, err := intParam(r, "start", 0, 0, 1<<31-1)
	count := 0
	if err == nil {
		count, err = intParam(r, "count", 100, 0, maxSearchSize)
	}
	taskType := r.PathValue("taskType")
	if err == nil && taskType == "" {
		err = fault.Invalid("task type is required")
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	req := searchRequest("taskType = "+quote(taskType)+" AND status IN ("+conductor.TaskScheduled+", "+conductor.TaskInProgress+")", "scheduledTime:ASC")
	req.Start, req.Size = start, count
	_, tasks, err := s.deps.Search.SearchTasks(r.Context(), req)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if tasks == nil {
		tasks = []*conductor.Task{}
	}
	writeJSON(w, http.StatusOK, tasks)
}
