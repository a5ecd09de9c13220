package api

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/flowvault/flowvault/auth"
	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/executor"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// Operator endpoints of /api/workflow beyond start and the lifecycle:
// skip, remove, variables, decide, task lists, correlation lookups.

// submitState runs a trigger, waits until the read model shows it, and
// answers with the workflow's JSON.
func (s *Server) submitState(w http.ResponseWriter, r *http.Request, id string, trig engine.Trigger) {
	if _, err := s.executionHead(r, id, auth.Execute); err != nil {
		s.writeError(w, r, err)
		return
	}
	out, err := s.deps.Engine.Submit(r.Context(), id, trig, executor.Meta{Principal: principal(r)})
	if err == nil {
		err = s.wait(r.Context(), out.Seq)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, out.State.Conductor(true))
}

// skipTask takes the SkipTaskRequest from the body (the SDKs) or from the
// query (Conductor OSS binds it there): taskInput and taskOutput as JSON
// objects, or taskInput.key=value / taskOutput[key]=value pairs.
func (s *Server) skipTask(w http.ResponseWriter, r *http.Request) {
	var req conductor.SkipTaskRequest
	body, err := readBody(w, r, maxBodyBytes)
	if err == nil && len(strings.TrimSpace(string(body))) > 0 {
		err = decodeBody(body, &req)
	}
	if err == nil {
		err = skipFromQuery(r, &req)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	trig := engine.SkipTask{Ref: r.PathValue("ref"), Input: req.TaskInput, Output: req.TaskOutput, By: principal(r)}
	if err := s.submit(r, r.PathValue("id"), trig); err != nil {
		s.writeError(w, r, err)
		return
	}
	writeNoContent(w)
}

// upgradeWorkflow moves a running workflow to another version of its
// definition (Orkes's upgrade API).
func (s *Server) upgradeWorkflow(w http.ResponseWriter, r *http.Request) {
	var req conductor.UpgradeWorkflowRequest
	err := decodeJSON(w, r, maxBodyBytes, &req)
	if err == nil && req.Name == "" {
		err = fault.Invalid("name is required")
	}
	var trig engine.Upgrade
	if err == nil {
		trig, err = s.upgradeTrigger(r, req)
	}
	if err == nil {
		err = s.submit(r, r.PathValue("id"), trig)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (s *Server) upgradeTrigger(r *http.Request, req conductor.UpgradeWorkflowRequest) (engine.Upgrade, error) {
	// Access first: the lookup's answer names the definition.
	wf, err := s.executionHead(r, r.PathValue("id"), auth.Execute)
	if err != nil {
		return engine.Upgrade{}, err
	}
	def, err := s.definitionToRun(r, wf, req.Name, req.Version)
	if err != nil {
		return engine.Upgrade{}, err
	}
	return engine.Upgrade{Def: def, Input: req.WorkflowInput, TaskOutput: req.TaskOutput, By: principal(r),
		DecidedFor: wf.Principals()}, nil
}

// jumpToTask moves a running workflow to a task of its definition's
// top-level list (Orkes's jump API); the body, if not empty, is the
// task's input.
func (s *Server) jumpToTask(w http.ResponseWriter, r *http.Request) {
	var input map[string]any
	body, err := readBody(w, r, maxBodyBytes)
	if err == nil && len(strings.TrimSpace(string(body))) > 0 {
		err = decodeBody(body, &input)
	}
	if err == nil {
		err = s.submit(r, r.PathValue("id"), engine.Jump{Ref: r.PathValue("ref"), Input: input, By: principal(r)})
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusOK)
}

func skipFromQuery(r *http.Request, req *conductor.SkipTaskRequest) error {
	for name, vals := range r.URL.Query() {
		for _, field := range []struct {
			name string
			m    *map[string]any
		}{{"taskInput", &req.TaskInput}, {"taskOutput", &req.TaskOutput}} {
			key, ok := strings.CutPrefix(name, field.name)
			if !ok || len(vals) == 0 {
				continue
			}
			if *field.m == nil {
				*field.m = map[string]any{}
			}
			if key == "" {
				var m map[string]any
				if err := conductor.Unmarshal([]byte(vals[0]), &m); err != nil {
					return decodeError("query parameter "+name, err, &m)
				}
				for k, v := range m {
					(*field.m)[k] = v
				}
				continue
			}
			key = strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(key, "."), "["), "]")
			(*field.m)[key] = vals[0]
		}
	}
	return nil
}

// submitRemove runs a removal against execution id. Removing an
// execution destroys it (with archiveWorkflow=false, for good), which
// Orkes's model keeps apart from operating on it: DELETE is an access of
// its own, which EXECUTE does not include (orkes-secrets.md §5.5: only
// READ is implied). A removal operates on the execution and destroys it,
// so it needs both EXECUTE and DELETE on it, each held as mayExecution
// decides: as its creator, on the execution (WORKFLOW_MANAGEMENT, a
// WORKFLOW grant) or on its definition. Asking for both keeps DELETE on
// definitions alone (METADATA_MANAGER's, on every one) from reaching
// executions it may not operate on. DELETE is checked here, EXECUTE by
// submit, which runs it as any operator's trigger.
func (s *Server) submitRemove(r *http.Request, id string, trig engine.Remove) error {
	if _, err := s.executionHead(r, id, auth.Delete); err != nil {
		return err
	}
	return s.submit(r, id, trig)
}

func (s *Server) removeWorkflow(w http.ResponseWriter, r *http.Request) {
	archive, err := queryBool(r, "archiveWorkflow", true)
	if err == nil {
		err = s.submitRemove(r, r.PathValue("id"), engine.Remove{Archive: archive})
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeNoContent(w)
}

// terminateRemove terminates the workflow if it is still running, then
// removes it (archived unless archiveWorkflow=false), in one decision.
func (s *Server) terminateRemove(w http.ResponseWriter, r *http.Request) {
	archive, err := queryBool(r, "archiveWorkflow", true)
	if err == nil {
		err = s.submitRemove(r, r.PathValue("id"), engine.Remove{Archive: archive, Terminate: true, Reason: r.URL.Query().Get("reason"), By: principal(r)})
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeNoContent(w)
}

func (s *Server) updateVariables(w http.ResponseWriter, r *http.Request) {
	var vars map[string]any
	if err := decodeJSON(w, r, maxBodyBytes, &vars); err != nil {
		s.writeError(w, r, err)
		return
	}
	if vars == nil {
		s.writeError(w, r, fault.Invalid("variables must be a JSON object"))
		return
	}
	s.submitState(w, r, r.PathValue("id"), engine.SetVariables{Variables: vars, By: principal(r)})
}

// decideWorkflow re-evaluates a workflow: passed deadlines are acted on
// and the hand-offs its state implies are performed again.
func (s *Server) decideWorkflow(w http.ResponseWriter, r *http.Request) {
	if err := s.redecide(r, r.PathValue("id"), false); err != nil {
		s.writeError(w, r, err)
		return
	}
	writeNoContent(w)
}

// workflowTasks lists a workflow's tasks, a page at a time:
// ?start=0&count=15&status=COMPLETED&status=FAILED.
func (s *Server) workflowTasks(w http.ResponseWriter, r *http.Request) {
	start, err := intParam(r, "start", 0, 0, 1<<31-1)
	var count int
	if err == nil {
		count, err = intParam(r, "count", 15, 0, maxSearchSize)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var statuses []string
	for _, v := range r.URL.Query()["status"] {
		statuses = append(statuses, strings.Split(v, ",")...)
	}
	match := func(status string) bool { return len(statuses) == 0 || containsFold(statuses, status) }
	res, err := s.taskPage(r, r.PathValue("id"), match, start, count)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// taskPageResult is the answer to GET /api/workflow/{id}/tasks.
type taskPageResult struct {
	TotalHits int64             `json:"totalHits"`
	Results   []*conductor.Task `json:"results"`
	Summary   map[string]int64  `json:"summary"`
}

// taskPage reads the page of workflow id's tasks that match, from start
// on: the page's tasks alone where the model reads them so
// (ExecutionTaskPages), else, or when a task of the page shows others in
// its view (a JOIN after a dynamic fork, the fork), every task.
func (s *Server) taskPage(r *http.Request, id string, match func(string) bool, start, count int) (*taskPageResult, error) {
	if pages, ok := s.deps.Executions.(ExecutionTaskPages); ok {
		head, summary, matched, tasks, err := pages.WorkflowTaskPage(r.Context(), id, match, start, count)
		if err != nil {
			return nil, err
		}
		if err := s.checkExecution(r, head, id, auth.Read); err != nil {
			return nil, err
		}
		if !slices.ContainsFunc(tasks, (*engine.Task).ViewReadsOtherTasks) {
			res := &taskPageResult{TotalHits: int64(matched), Results: []*conductor.Task{}, Summary: summary}
			view := head.TaskViews()
			for _, t := range tasks {
				res.Results = append(res.Results, view(t))
			}
			return res, nil
		}
	}
	wf, err := s.execution(r, id, auth.Read)
	if err != nil {
		return nil, err
	}
	summary := map[string]int64{}
	var matched []*engine.Task
	for _, t := range wf.Tasks {
		summary[t.Status]++
		if match(t.Status) {
			matched = append(matched, t)
		}
	}
	res := &taskPageResult{TotalHits: int64(len(matched)), Results: []*conductor.Task{}, Summary: summary}
	view := wf.TaskViews()
	for i := start; i < len(matched) && i < start+count; i++ {
		res.Results = append(res.Results, view(matched[i]))
	}
	return res, nil
}

func containsFold(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(strings.TrimSpace(x), s) {
			return true
		}
	}
	return false
}

// runningWorkflows lists the ids of the running (and paused) workflows of
// a name: ?version=1 (Conductor's default), optionally started within
// [startTime, endTime] (epoch ms).
func (s *Server) runningWorkflows(w http.ResponseWriter, r *http.Request) {
	if s.deps.Search == nil {
		s.writeError(w, r, fault.NotFound("search is not available"))
		return
	}
	version, err := intParam(r, "version", 1, 0, 1<<31-1)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	q := "workflowType = " + quote(r.PathValue("name")) + " AND status IN (RUNNING, PAUSED) AND version = " + strconv.Itoa(version)
	for _, p := range []struct{ param, op string }{{"startTime", ">="}, {"endTime", "<="}} {
		if v := r.URL.Query().Get(p.param); v != "" {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				s.writeError(w, r, fault.Invalid("query parameter %s=%q: want epoch milliseconds", p.param, v))
				return
			}
			q += " AND startTime " + p.op + " " + v
		}
	}
	req := searchRequest(q, "startTime:ASC")
	req.Visible = s.visibleExecutions(r)
	ids, err := s.deps.Search.SearchWorkflowIDs(r.Context(), req)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if ids == nil {
		ids = []string{}
	}
	writeJSON(w, http.StatusOK, ids)
}

// quote makes s one query value.
func quote(s string) string {
	return `"` + strings.ReplaceAll(strings.ReplaceAll(s, `\`, `\\`), `"`, `\"`) + `"`
}

// startWorkflowVersion is POST /api/workflow/start/{name}/{version}: the
// body is the input, correlationId and priority are query parameters.
func (s *Server) startWorkflowVersion(w http.ResponseWriter, r *http.Request) {
	version, err := strconv.Atoi(r.PathValue("version"))
	if err != nil {
		s.writeError(w, r, fault.Invalid("version %q is not an integer", r.PathValue("version")))
		return
	}
	q := r.URL.Query()
	q.Set("version", strconv.Itoa(version))
	r.URL.RawQuery = q.Encode()
	s.startWorkflowByName(w, r)
}

// correlatedOptions reads includeClosed and includeTasks.
func correlatedOptions(r *http.Request) (closed, tasks bool, err error) {
	if closed, err = queryBool(r, "includeClosed", false); err == nil {
		tasks, err = queryBool(r, "includeTasks", false)
	}
	return closed, tasks, err
}

// correlatedWorkflows returns the workflows with a correlation id, of the
// given names (any name when names is empty).
func (s *Server) correlatedWorkflows(ctx context.Context, cid string, names []string, visible func(name, createdBy string) bool, closed, tasks bool) ([]*conductor.Workflow, error) {
	if s.deps.Search == nil {
		return nil, fault.NotFound("search is not available")
	}
	keep := func(name, createdBy, status string) bool {
		return (len(names) == 0 || containsString(names, name)) && (closed || !conductor.WorkflowTerminal(status)) &&
			(visible == nil || visible(name, createdBy))
	}
	ws, err := s.deps.Search.Correlated(ctx, cid, keep)
	if err != nil {
		return nil, err
	}
	out := []*conductor.Workflow{}
	for _, wf := range ws {
		// Again on the state read: it may be newer than its summary.
		if keep(wf.Name, wf.CreatedBy, wf.Status) {
			out = append(out, wf.Conductor(tasks))
		}
	}
	return out, nil
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// correlated is GET /api/workflow/{name}/correlated/{correlationId}.
func (s *Server) correlated(w http.ResponseWriter, r *http.Request) {
	closed, tasks, err := correlatedOptions(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out, err := s.correlatedWorkflows(r.Context(), r.PathValue("correlationId"), []string{r.PathValue("name")}, s.visibleExecutions(r), closed, tasks)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// correlatedByName is POST /api/workflow/{name}/correlated with a list of
// correlation ids.
func (s *Server) correlatedByName(w http.ResponseWriter, r *http.Request) {
	var cids []string
	err := decodeJSON(w, r, maxBodyBytes, &cids)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeCorrelated(w, r, cids, []string{r.PathValue("name")})
}

// correlatedBatch is POST /api/workflow/correlated/batch with a
// CorrelationIdsSearchRequest.
func (s *Server) correlatedBatch(w http.ResponseWriter, r *http.Request) {
	var req conductor.CorrelationIdsSearchRequest
	if err := decodeJSON(w, r, maxBodyBytes, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	if req.CorrelationIDs == nil {
		s.writeError(w, r, fault.Invalid("correlationIds is required"))
		return
	}
	s.writeCorrelated(w, r, req.CorrelationIDs, req.WorkflowNames)
}

func (s *Server) writeCorrelated(w http.ResponseWriter, r *http.Request, cids, names []string) {
	closed, tasks, err := correlatedOptions(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if len(cids) > maxBulk {
		s.writeError(w, r, fault.Invalid("%d correlation ids: at most %d at once", len(cids), maxBulk))
		return
	}
	out := make(map[string][]*conductor.Workflow, len(cids))
	visible := s.visibleExecutions(r)
	for _, cid := range cids {
		if _, done := out[cid]; done {
			continue // listed twice: one answer
		}
		if out[cid], err = s.correlatedWorkflows(r.Context(), cid, names, visible, closed, tasks); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// maxBulk bounds the ids of one bulk or batch request (Conductor's limit).
const maxBulk = 1000

func (s *Server) routeBulk() {
	bulk := func(trigger func(*http.Request) (engine.Trigger, error)) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) { s.bulk(w, r, trigger) }
	}
	s.route("PUT /api/workflow/bulk/pause", auth.Authenticated, bulk(func(*http.Request) (engine.Trigger, error) { return engine.Pause{}, nil }))
	s.route("PUT /api/workflow/bulk/resume", auth.Authenticated, bulk(func(*http.Request) (engine.Trigger, error) { return engine.Resume{}, nil }))
	s.route("POST /api/workflow/bulk/terminate", auth.Authenticated, bulk(terminateTrigger))
	s.route("POST /api/workflow/bulk/restart", auth.Authenticated, func(w http.ResponseWriter, r *http.Request) {
		if _, err := queryBool(r, "useLatestDefinitions", false); err != nil {
			s.writeError(w, r, err)
			return
		}
		s.bulk(w, r, s.restartTrigger)
	})
	s.route("POST /api/workflow/bulk/retry", auth.Authenticated, bulk(func(*http.Request) (engine.Trigger, error) { return engine.Retry{}, nil }))
	s.route("POST /api/workflow/bulk/delete", auth.Authenticated, bulk(func(*http.Request) (engine.Trigger, error) { return engine.Remove{}, nil }))
}

// bulk runs one trigger against each workflow id of the body and reports
// each outcome in a BulkResponse; each refusal is in the audit trail.
func (s *Server) bulk(w http.ResponseWriter, r *http.Request, trigger func(*http.Request) (engine.Trigger, error)) {
	var ids []string
	if err := decodeJSON(w, r, maxBodyBytes, &ids); err != nil {
		s.writeError(w, r, err)
		return
	}
	if len(ids) == 0 {
		// Conductor's @NotEmpty on the list, null and [] alike.
		s.writeError(w, r, fault.Invalid("WorkflowIds list cannot be null."))
		return
	}
	if len(ids) > maxBulk {
		s.writeError(w, r, fault.Invalid("%d workflow ids: at most %d at once", len(ids), maxBulk))
		return
	}
	res := conductor.NewBulkResponse()
	for _, id := range ids {
		r.SetPathValue("id", id)
		trig, err := trigger(r)
		if rm, ok := trig.(engine.Remove); ok && err == nil {
			err = s.submitRemove(r, id, rm)
		} else if err == nil {
			err = s.submit(r, id, trig)
		}
		if err != nil {
			if statusOf(err) == http.StatusForbidden {
				// Answered in the body, not by writeError, it is still a
				// refusal the trail records, as that of one workflow's
				// operation (a 404 was recorded where it was hidden).
				s.recordDenied(r, err)
			}
			res.BulkErrorResults[id] = errorMessage(err)
			continue
		}
		res.BulkSuccessfulResults = append(res.BulkSuccessfulResults, id)
	}
	writeJSON(w, http.StatusOK, res)
}

// intParam reads an integer query parameter within [lo, hi].
func intParam(r *http.Request, name string, def, lo, hi int) (int, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := atoi(v)
	if err != nil || n < lo || n > hi {
		if len(v) > 32 {
			v = v[:32] + "…" // the request's: it may be a page of text
		}
		return 0, fault.Invalid("query parameter %s=%q: want an integer from %d to %d", name, v, lo, hi)
	}
	return n, nil
}
