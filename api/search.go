package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/flowvault/flowvault/auth"
	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/projections/executions/query"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// Searcher serves workflow and task search, correlation lookups and the
// running lists. *executions.Reader implements it; queries and sorts use
// Conductor's syntax (package query), and malformed ones are
// fault.ErrInvalid.
type Searcher interface {
	SearchWorkflows(ctx context.Context, s query.Search) (int, []*engine.Workflow, error)
	SearchWorkflowIDs(ctx context.Context, s query.Search) ([]string, error)
	SearchTasks(ctx context.Context, s query.Search) (int, []*conductor.Task, error)
	// SearchTaskWorkflowIDs returns the workflow id of each task that
	// matches, all of them in one search.
	SearchTaskWorkflowIDs(ctx context.Context, s query.Search) ([]string, error)
	// Correlated returns the workflows with a correlation id, removed and
	// archived ones excluded.
	Correlated(ctx context.Context, correlationID string, keep func(name, createdBy, status string) bool) ([]*engine.Workflow, error)
}

// Changes tells when workflows change in the executions read model. The
// channel receives after each commit that changed one of ids; stop ends
// the watch.
type Changes interface {
	Watch(ids ...string) (c <-chan struct{}, stop func())
}

// maxSearchSize is the largest page a search returns (Conductor's
// default limit).
const maxSearchSize = 5000

func (s *Server) routeSearch() {
	if s.deps.Search == nil {
		return
	}
	s.route("GET /api/workflow/search", auth.Authenticated, s.searchWorkflows(false, s.deps.Search.SearchWorkflows))
	s.route("GET /api/workflow/search-v2", auth.Authenticated, s.searchWorkflows(true, s.deps.Search.SearchWorkflows))
	s.route("GET /api/tasks/search", auth.Authenticated, s.searchTasks(false))
	s.route("GET /api/tasks/search-v2", auth.Authenticated, s.searchTasks(true))
	if s.deps.Executions != nil {
		// Without these the paths read as workflow ids: "workflow
		// search-by-tasks not found".
		s.route("GET /api/workflow/search-by-tasks", auth.Authenticated, s.searchWorkflows(false, s.workflowsByTasks(false)))
		s.route("GET /api/workflow/search-by-tasks-v2", auth.Authenticated, s.searchWorkflows(true, s.workflowsByTasks(true)))
	}
}

// searchParams reads start, size, sort, freeText and query. Negative
// paging, or a page over maxSearchSize, is invalid; a start past the end
// gives an empty page.
func searchParams(r *http.Request) (query.Search, error) {
	start, err := intParam(r, "start", 0, 0, 1<<31-1)
	if err != nil {
		return query.Search{}, err
	}
	size, err := intParam(r, "size", 100, 0, maxSearchSize)
	if err != nil {
		return query.Search{}, err
	}
	q := r.URL.Query()
	return query.Search{Query: q.Get("query"), FreeText: q.Get("freeText"), Sort: q["sort"], Start: start, Size: size}, nil
}

func searchRequest(q, sort string) query.Search {
	return query.Search{Query: q, Sort: []string{sort}, Size: maxSearchSize}
}

// searchWorkflows answers with WorkflowSummary results, or with full
// Workflow objects (tasks included) for search-v2, of the workflows
// search finds.
func (s *Server) searchWorkflows(full bool, search func(context.Context, query.Search) (int, []*engine.Workflow, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		req, err := searchParams(r)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		req.Visible = s.visibleExecutions(r)
		total, ws, err := search(r.Context(), req)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		if full {
			res := conductor.SearchResult[*conductor.Workflow]{TotalHits: int64(total), Results: []*conductor.Workflow{}}
			for _, wf := range ws {
				res.Results = append(res.Results, wf.Conductor(true))
			}
			writeJSON(w, http.StatusOK, res)
			return
		}
		res := conductor.SearchResult[conductor.WorkflowSummary]{TotalHits: int64(total), Results: []conductor.WorkflowSummary{}}
		for _, wf := range ws {
			res.Results = append(res.Results, workflowSummary(wf))
		}
		writeJSON(w, http.StatusOK, res)
	}
}

// TaskPages is a Searcher that finds the workflows of a page of tasks
// without rendering the tasks (executions.Reader.SearchTaskPage): the
// workflow id of each task of the page, as SearchTasks would list it.
type TaskPages interface {
	SearchTaskPage(ctx context.Context, s query.Search) (int, []string, error)
}

// workflowsByTasks is Conductor's search-by-tasks: the query pages
// through tasks, and each task found stands for its workflow, once, in the
// order of the tasks. As in Conductor, the total counts tasks, less the
// tasks of the page that added no workflow (a second task of one, or one
// whose workflow is gone). The summaries (not full) show no task: they
// read the workflows' heads where the model reads them apart.
func (s *Server) workflowsByTasks(full bool) func(context.Context, query.Search) (int, []*engine.Workflow, error) {
	return func(ctx context.Context, req query.Search) (int, []*engine.Workflow, error) {
		total, ids, err := s.taskPageWorkflows(ctx, req)
		if err != nil {
			return 0, nil, err
		}
		read := s.deps.Executions.Workflow
		if heads, ok := s.deps.Executions.(ExecutionHeads); ok && !full {
			read = heads.WorkflowHead
		}
		var ws []*engine.Workflow
		seen := map[string]bool{}
		for _, id := range ids {
			if seen[id] {
				continue
			}
			seen[id] = true
			wf, err := read(ctx, id)
			if errors.Is(err, fault.ErrNotFound) {
				continue // removed since the task was indexed
			}
			if err != nil {
				return 0, nil, fmt.Errorf("search by tasks: workflow %s: %w", id, err)
			}
			if req.Visible != nil && !req.Visible(wf.Name, wf.CreatedBy) {
				continue
			}
			ws = append(ws, wf)
		}
		return total - (len(ids) - len(ws)), ws, nil
	}
}

// taskPageWorkflows returns the number of tasks req finds and the
// workflow id of each task of its page.
func (s *Server) taskPageWorkflows(ctx context.Context, req query.Search) (int, []string, error) {
	if pages, ok := s.deps.Search.(TaskPages); ok {
		return pages.SearchTaskPage(ctx, req)
	}
	total, tasks, err := s.deps.Search.SearchTasks(ctx, req)
	if err != nil {
		return 0, nil, err
	}
	ids := make([]string, len(tasks))
	for i, t := range tasks {
		ids[i] = t.WorkflowInstanceID
	}
	return total, ids, nil
}

// searchTasks answers with TaskSummary results, or full Task objects for
// search-v2.
func (s *Server) searchTasks(full bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		req, err := searchParams(r)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		req.Visible = s.visibleExecutions(r)
		total, tasks, err := s.deps.Search.SearchTasks(r.Context(), req)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		if full {
			if tasks == nil {
				tasks = []*conductor.Task{}
			}
			writeJSON(w, http.StatusOK, conductor.SearchResult[*conductor.Task]{TotalHits: int64(total), Results: tasks})
			return
		}
		res := conductor.SearchResult[conductor.TaskSummary]{TotalHits: int64(total), Results: []conductor.TaskSummary{}}
		for _, t := range tasks {
			res.Results = append(res.Results, taskSummary(t))
		}
		writeJSON(w, http.StatusOK, res)
	}
}

// workflowSummary renders a workflow for search results. Every workflow
// summary is built here, so that masking applies to all of them at once.
func workflowSummary(w *engine.Workflow) conductor.WorkflowSummary {
	view := w.Conductor(false) // masked like every other view
	in, out := jsonString(view.Input), jsonString(view.Output)
	s := conductor.WorkflowSummary{
		WorkflowType: w.Name, Version: w.Version, WorkflowID: w.ID, CorrelationID: w.CorrelationID,
		StartTime: isoTime(w.StartTime), UpdateTime: isoTime(w.UpdateTime), EndTime: isoTime(w.EndTime),
		Status: w.Status, Input: in, Output: out, ReasonForIncompletion: w.Reason,
		FailedReferenceTaskNames: strings.Join(w.FailedTaskRefs, ","), FailedTaskNames: w.FailedTaskNames,
		Priority: w.Priority, TaskToDomain: w.TaskToDomain, CreatedBy: w.CreatedBy, IdempotencyKey: w.IdempotencyKey,
		Event: w.Event, InputSize: int64(len(in)), OutputSize: int64(len(out)),
	}
	if s.FailedTaskNames == nil {
		s.FailedTaskNames = []string{}
	}
	if w.EndTime > 0 {
		s.ExecutionTime = w.EndTime - w.StartTime
	}
	return s
}

// taskSummary renders a task for search results; every task summary is
// built here.
func taskSummary(t *conductor.Task) conductor.TaskSummary {
	s := conductor.TaskSummary{
		TaskID: t.TaskID, TaskType: t.TaskType, TaskDefName: t.TaskDefName, TaskReferenceName: t.ReferenceTaskName,
		WorkflowID: t.WorkflowInstanceID, WorkflowType: t.WorkflowType, CorrelationID: t.CorrelationID, Status: t.Status,
		ScheduledTime: taskTime(t.ScheduledTime), StartTime: taskTime(t.StartTime), UpdateTime: taskTime(t.UpdateTime),
		EndTime: taskTime(t.EndTime), Input: jsonString(t.InputData), Output: jsonString(t.OutputData),
		ReasonForIncompletion: t.ReasonForIncompletion, QueueWaitTime: t.QueueWaitTime,
		WorkflowPriority: t.WorkflowPriority, Domain: t.Domain,
	}
	if t.EndTime > 0 && t.StartTime > 0 {
		s.ExecutionTime = t.EndTime - t.StartTime
	}
	return s
}

// isoTime formats Unix ms as Conductor's WorkflowSummary does; "" for
// none, which it leaves out.
func isoTime(ms int64) string {
	if ms <= 0 {
		return ""
	}
	return taskTime(ms)
}

// taskTime formats Unix ms as Conductor's TaskSummary does: every time,
// set or not, so that a time the task has not set (startTime before it is
// taken, endTime while it runs) is the epoch, 1970-01-01T00:00:00.000Z,
// as Conductor's task index holds and a task search compares it.
func taskTime(ms int64) string {
	return time.UnixMilli(ms).UTC().Format("2006-01-02T15:04:05.000Z")
}

func jsonString(m map[string]any) string {
	if m == nil {
		m = map[string]any{}
	}
	b, err := json.Marshal(m)
	if err != nil {
		return "{}"
	}
	return string(b)
}
