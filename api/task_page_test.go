package api_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"

	"github.com/flowvault/flowvault/api"
	"github.com/flowvault/flowvault/auth"
	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/projections/executions/query"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// pageModel is a read model of a few workflows that counts its reads of
// whole workflows, of heads and of pages of tasks, and serves the task
// searches of search-by-tasks: every task of its workflows, then one of a
// workflow it does not hold (removed since indexed).
type pageModel struct {
	*taskModel // Workflow, counted
	order      []string

	mu                     sync.Mutex
	heads, pages, searches int
	pageViewsOthers        bool
	api.Searcher           // not called but for the methods below
}

func (m *pageModel) WorkflowHead(_ context.Context, id string) (*engine.Workflow, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.heads++
	w := m.wfs[id]
	if w == nil {
		return nil, fault.NotFound("workflow %s not found", id)
	}
	head := *w
	head.Tasks = nil
	return &head, nil
}

func (m *pageModel) WorkflowTaskPage(_ context.Context, id string, match func(string) bool, start, count int) (*engine.Workflow, map[string]int64, int, []*engine.Task, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.pages++
	w := m.wfs[id]
	if w == nil {
		return nil, nil, 0, nil, fault.NotFound("workflow %s not found", id)
	}
	summary := map[string]int64{}
	var matched, page []*engine.Task
	for _, t := range w.Tasks {
		summary[t.Status]++
		if match(t.Status) {
			matched = append(matched, t)
		}
	}
	for i := start; i < len(matched) && i-start < count; i++ {
		page = append(page, matched[i])
	}
	m.pageViewsOthers = slices.ContainsFunc(page, (*engine.Task).ViewReadsOtherTasks)
	head := *w
	head.Tasks = nil
	return &head, summary, len(matched), page, nil
}

// found is every task of the model's workflows that s may see, then one
// of a workflow gone, and the page s asks of them.
func (m *pageModel) found(s query.Search) (int, []*conductor.Task) {
	var all []*conductor.Task
	for _, id := range m.order {
		w := m.wfs[id]
		if s.Visible != nil && !s.Visible(w.Name, w.CreatedBy) {
			continue
		}
		view := w.TaskViews()
		for _, t := range w.Tasks {
			all = append(all, view(t))
		}
	}
	all = append(all, &conductor.Task{TaskID: "gone-task", WorkflowInstanceID: "gone"})
	var page []*conductor.Task
	for i := s.Start; i < len(all) && i-s.Start < s.Size; i++ {
		page = append(page, all[i])
	}
	return len(all), page
}

func (m *pageModel) SearchTasks(_ context.Context, s query.Search) (int, []*conductor.Task, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.searches++
	total, page := m.found(s)
	return total, page, nil
}

func (m *pageModel) SearchTaskPage(_ context.Context, s query.Search) (int, []string, error) {
	total, page := m.found(s)
	ids := make([]string, len(page))
	for i, t := range page {
		ids[i] = t.WorkflowInstanceID
	}
	return total, ids, nil
}

func (m *pageModel) reads() (whole, heads, pages, searches int, viewsOthers bool) {
	whole, _ = m.taskModel.reads()
	m.mu.Lock()
	defer m.mu.Unlock()
	heads, pages, searches, viewsOthers = m.heads, m.pages, m.searches, m.pageViewsOthers
	m.heads, m.pages, m.searches, m.pageViewsOthers = 0, 0, 0, false
	return whole, heads, pages, searches, viewsOthers
}

// wholeSearch hides every method of a Searcher but those of the
// interface: the searches that rendered each task.
type wholeSearch struct{ api.Searcher }

// pageWorkflows decides two workflows of many tasks: a dynamic fork of 30
// branches (one with _secrets in its input, one whose output holds
// _masked), a JOIN, and a loop of 40 iterations whose step masks a field
// of its input and fails, then is retried, at every fifth.
func pageWorkflows(t *testing.T) (map[string]*engine.Workflow, []string) {
	const def = `{"name":"%s","version":1,"maskedFields":["pw"],"tasks":[
	 {"name":"fork","taskReferenceName":"fork","type":"FORK_JOIN_DYNAMIC","dynamicForkTasksParam":"tasks","inputParameters":{"tasks":"${workflow.input.tasks}"}},
	 {"name":"join","taskReferenceName":"join","type":"JOIN"},
	 {"name":"loop","taskReferenceName":"loop","type":"DO_WHILE","items":"${workflow.input.items}",
	  "loopOver":[{"name":"step","taskReferenceName":"inner","retryCount":3,"inputParameters":{"pw":"${workflow.input.pw}","_masked":{"m":"x"}}}]}]}`
	wfs := map[string]*engine.Workflow{}
	var order []string
	for _, name := range []string{"readable", "other"} {
		var d conductor.WorkflowDef
		if err := conductor.Unmarshal(fmt.Appendf(nil, def, name), &d); err != nil {
			t.Fatal(err)
		}
		id := "wf-" + name
		var branches []any
		for i := range 30 {
			b := map[string]any{"name": "step", "taskReferenceName": fmt.Sprintf("b%d", i)}
			if i == 0 {
				b["inputParameters"] = map[string]any{"_secrets": map[string]any{"s": "v"}}
			}
			branches = append(branches, b)
		}
		report := func(ref, status string, output map[string]any) func(w *engine.Workflow) engine.Trigger {
			return func(w *engine.Workflow) engine.Trigger {
				return engine.Result{Result: conductor.TaskResult{TaskID: w.LatestByRef(ref).ID, WorkflowInstanceID: id,
					Status: status, OutputData: output}}
			}
		}
		trigs := []func(*engine.Workflow) engine.Trigger{func(*engine.Workflow) engine.Trigger {
			return engine.Start{WorkflowID: id, Def: &d, CreatedBy: "someone",
				Request: conductor.StartWorkflowRequest{Input: map[string]any{"pw": "hunter2", "tasks": branches, "items": make([]any, 40)}}}
		}}
		for i := range 30 {
			trigs = append(trigs, report(fmt.Sprintf("b%d", i), conductor.TaskCompleted, map[string]any{"_masked": "m", "v": i}))
		}
		for i := 1; i < 40; i++ {
			ref := fmt.Sprintf("inner__%d", i)
			if i%5 == 0 {
				trigs = append(trigs, report(ref, conductor.TaskFailed, nil), func(*engine.Workflow) engine.Trigger { return engine.Tick{} })
			}
			trigs = append(trigs, report(ref, conductor.TaskCompleted, map[string]any{"o": i}))
		}
		w := decideAll(t, nil, trigs...)
		failed := slices.ContainsFunc(w.Tasks, func(t *engine.Task) bool { return t.Status == conductor.TaskFailed })
		if w.LatestByRef("inner__39") == nil || !failed || len(w.Tasks) < 70 {
			t.Fatalf("%s: %d tasks (failed: %v), %s", name, len(w.Tasks), failed, w.Status)
		}
		wfs[id] = w
		order = append(order, id)
	}
	return wfs, order
}

var pageTokens = tokenPrincipals{
	"admin":    {ID: "admin", Roles: []string{auth.RoleAdmin}},
	"reader":   {ID: "reader", Roles: []string{auth.RoleUser}},
	"stranger": {ID: "stranger", Roles: []string{auth.RoleUser}},
}

func pageAuthorizer() *auth.Authorizer {
	return auth.NewAuthorizer(&fixedGrants{grants: []auth.Grant{
		{Subject: auth.Subject{Type: auth.SubjectUser, ID: "reader"}, Target: auth.Target{Type: auth.TargetWorkflowDef, ID: "readable"}, Access: []auth.Access{auth.Read}},
	}})
}

// A page of a workflow's tasks (GET /api/workflow/{id}/tasks) reads the
// page's tasks with the workflow's head, not every task, but for a page
// that shows a JOIN or a dynamic fork, whose views show other tasks: it
// read the whole workflow, so that 15 tasks of a loop of thousands of
// iterations decoded thousands. The answers are those of the whole
// workflow's read, byte for byte, to an admin, a reader and a stranger,
// for every filter by status and edge of the paging, and for a workflow
// that is not there.
func TestWorkflowTaskPagesReadThePage(t *testing.T) {
	t.Parallel()
	wfs, order := pageWorkflows(t)
	serve := func(exec func(*pageModel) api.Executions) (*pageModel, string) {
		m := &pageModel{taskModel: &taskModel{wfs: wfs}, order: order}
		srv := httptest.NewServer(api.New(api.Deps{Logger: testutil.Logger(t), Engine: &triggerEngine{}, Tasks: struct{ api.TaskQueue }{},
			Executions: exec(m), Authorizer: pageAuthorizer(), Tokens: pageTokens}))
		t.Cleanup(srv.Close)
		return m, srv.URL
	}
	model, base := serve(func(m *pageModel) api.Executions { return m })
	_, wholeBase := serve(func(m *pageModel) api.Executions { return struct{ api.Executions }{m} })
	n := len(wfs["wf-readable"].Tasks)
	for token := range pageTokens {
		for _, id := range []string{"wf-readable", "wf-other", "missing"} {
			for _, q := range []string{"", "?start=0&count=15", "?count=0", "?start=3&count=4", fmt.Sprintf("?start=%d", n-2), fmt.Sprintf("?start=%d", n),
				"?start=100000&count=5", "?count=5000", "?status=COMPLETED&start=30&count=20", "?status=completed,%20in_progress&count=100",
				"?status=FAILED&status=SCHEDULED", "?status=NOPE", "?status=IN_PROGRESS&start=1&count=1", "?start=-1", "?count=5001", "?count=x"} {
				path := "/api/workflow/" + id + "/tasks" + q
				got := client{t, base, token}.do("GET", path, "")
				whole, _, pages, _, viewsOthers := model.reads()
				want := client{t, wholeBase, token}.do("GET", path, "")
				if got.status != want.status || got.body != want.body {
					t.Errorf("%s: GET %s = %d %.500s; the whole workflow's read answers %d %.500s", token, path, got.status, got.body, want.status, want.body)
				}
				// A page that shows a JOIN or a fork reads the whole
				// workflow, once the caller may see it.
				wantWhole := 0
				if viewsOthers && got.status == 200 {
					wantWhole = 1
				}
				if whole != wantWhole || pages > 1 {
					t.Errorf("%s: GET %s read %d whole workflows and %d pages; want %d whole", token, path, whole, pages, wantWhole)
				}
			}
		}
	}
}

// A search of workflows by their tasks (/api/workflow/search-by-tasks)
// reads the heads of the workflows it lists as summaries, and no task's
// view: it rendered every task of the page, then read every task of each
// workflow, which a summary does not show. Its -v2, which shows the
// tasks, reads the whole workflows. The answers are those of the searches
// that did, byte for byte, to an admin, a reader and a stranger, at every
// page (one past a workflow that is gone).
func TestSearchByTasksReadsWhatItShows(t *testing.T) {
	t.Parallel()
	wfs, order := pageWorkflows(t)
	serve := func(m *pageModel, exec api.Executions, search api.Searcher) string {
		srv := httptest.NewServer(api.New(api.Deps{Logger: testutil.Logger(t), Engine: &triggerEngine{}, Tasks: struct{ api.TaskQueue }{},
			Executions: exec, Search: search, Authorizer: pageAuthorizer(), Tokens: pageTokens}))
		t.Cleanup(srv.Close)
		return srv.URL
	}
	model := &pageModel{taskModel: &taskModel{wfs: wfs}, order: order}
	base := serve(model, model, model)
	wholeModel := &pageModel{taskModel: &taskModel{wfs: wfs}, order: order}
	wholeBase := serve(wholeModel, struct{ api.Executions }{wholeModel}, wholeSearch{wholeModel})
	n := len(wfs["wf-readable"].Tasks) + len(wfs["wf-other"].Tasks)
	for token := range pageTokens {
		for _, v2 := range []bool{false, true} {
			for _, q := range []string{"", "?size=1", fmt.Sprintf("?start=%d&size=3", n/2-1), fmt.Sprintf("?start=%d&size=10", n-1),
				fmt.Sprintf("?start=%d", n), "?size=0", "?size=5000", "?start=-1"} {
				path := "/api/workflow/search-by-tasks" + map[bool]string{true: "-v2"}[v2] + q
				got := client{t, base, token}.do("GET", path, "")
				whole, _, _, searches, _ := model.reads()
				want := client{t, wholeBase, token}.do("GET", path, "")
				wantWhole, _, _, _, _ := wholeModel.reads()
				if got.status != want.status || got.body != want.body {
					t.Errorf("%s: GET %s = %d %.500s; the searches that read every task answer %d %.500s", token, path, got.status, got.body, want.status, want.body)
				}
				if searches != 0 {
					t.Errorf("%s: GET %s rendered the tasks of %d searches", token, path, searches)
				}
				if (!v2 && whole != 0) || (v2 && whole != wantWhole) {
					t.Errorf("%s: GET %s read %d whole workflows (every task); the old read %d", token, path, whole, wantWhole)
				}
			}
		}
	}
}
