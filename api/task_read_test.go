package api_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/flowvault/flowvault/api"
	"github.com/flowvault/flowvault/auth"
	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/executor"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// taskModel is a read model of a few workflows that counts its reads of
// whole workflows (every task) and of one task with its workflow's head.
type taskModel struct {
	wfs map[string]*engine.Workflow

	mu           sync.Mutex
	whole, tasks int
}

func (m *taskModel) Workflow(_ context.Context, id string) (*engine.Workflow, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.whole++
	if w := m.wfs[id]; w != nil {
		return w, nil
	}
	return nil, fault.NotFound("workflow %s not found", id)
}

func (m *taskModel) WorkflowTask(_ context.Context, wfID, taskID string) (*engine.Workflow, *engine.Task, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.tasks++
	w := m.wfs[wfID]
	if w == nil {
		return nil, nil, fault.NotFound("workflow %s not found", wfID)
	}
	t := w.TaskByID(taskID)
	if t == nil {
		return nil, nil, fault.NotFound("task %s not found", taskID)
	}
	head := *w
	head.Tasks = nil
	return &head, t, nil
}

func (m *taskModel) TaskWorkflow(_ context.Context, taskID string) (string, error) {
	for id, w := range m.wfs {
		if w.TaskByID(taskID) != nil {
			return id, nil
		}
	}
	return "", fault.NotFound("task %s not found", taskID)
}

func (m *taskModel) reads() (whole, tasks int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	whole, tasks = m.whole, m.tasks
	m.whole, m.tasks = 0, 0
	return whole, tasks
}

// wholeOnly hides every read of a model but Workflow's: the read of every
// task a task's endpoints made.
type wholeOnly struct{ api.Executions }

// triggerEngine answers every submission with nothing done, and keeps the
// workflow it was for.
type triggerEngine struct {
	api.Engine
	mu  sync.Mutex
	ids []string
}

func (e *triggerEngine) Submit(_ context.Context, wfID string, _ engine.Trigger, _ executor.Meta) (executor.Outcome, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.ids = append(e.ids, wfID)
	return executor.Outcome{}, nil
}

// decideAll runs triggers from state w, each made from the state before.
func decideAll(t *testing.T, w *engine.Workflow, trigs ...func(w *engine.Workflow) engine.Trigger) *engine.Workflow {
	t.Helper()
	now := time.UnixMilli(1_800_000_000_000)
	for _, trig := range trigs {
		now = now.Add(time.Millisecond)
		d, err := engine.Decide(engine.Input{State: w, Trigger: trig(w), Now: now})
		if err != nil {
			t.Fatal(err)
		}
		w = d.State
	}
	return w
}

// A task read by id (GET /api/tasks/{taskId}, its log, a log line, a
// worker's result) reads the task and its workflow's head, not every task
// of the workflow, but for the views that show other tasks (a JOIN after a
// dynamic fork, the fork): it read the whole workflow, so that a worker's
// results in a dynamic fork of 2,000 branches each read 2,000 tasks. The
// answers are those of the read of the whole workflow, byte for byte,
// for a worker of the tasks' type, a reader of one of the workflows, an
// admin, a caller who may see none of them, masked alike, and for a task
// that is not there.
func TestTaskReadByIDReadsItsTask(t *testing.T) {
	t.Parallel()
	const def = `{"name":"%s","version":1,"maskedFields":["pw"],"tasks":[
	 {"name":"fork","taskReferenceName":"fork","type":"FORK_JOIN_DYNAMIC","dynamicForkTasksParam":"tasks","inputParameters":{"tasks":"${workflow.input.tasks}"}},
	 {"name":"join","taskReferenceName":"join","type":"JOIN"},
	 {"name":"loop","taskReferenceName":"loop","type":"DO_WHILE","items":"${workflow.input.items}",
	  "loopOver":[{"name":"step","taskReferenceName":"inner","inputParameters":{"pw":"${workflow.input.pw}","_masked":{"m":"x"}}}]}]}`
	wfs := map[string]*engine.Workflow{}
	for _, name := range []string{"readable", "other"} {
		var d conductor.WorkflowDef
		if err := conductor.Unmarshal(fmt.Appendf(nil, def, name), &d); err != nil {
			t.Fatal(err)
		}
		id := "wf-" + name
		branches := []any{
			map[string]any{"name": "step", "taskReferenceName": "b0", "inputParameters": map[string]any{"_secrets": map[string]any{"s": "v"}}},
			map[string]any{"name": "step", "taskReferenceName": "b1"},
		}
		result := func(ref string, output map[string]any) func(w *engine.Workflow) engine.Trigger {
			return func(w *engine.Workflow) engine.Trigger {
				return engine.Result{Result: conductor.TaskResult{TaskID: w.LatestByRef(ref).ID, WorkflowInstanceID: id,
					Status: conductor.TaskCompleted, OutputData: output}}
			}
		}
		w := decideAll(t, nil,
			func(*engine.Workflow) engine.Trigger {
				return engine.Start{WorkflowID: id, Def: &d, CreatedBy: "someone",
					Request: conductor.StartWorkflowRequest{Input: map[string]any{"pw": "hunter2", "tasks": branches, "items": []any{"x", "y"}}}}
			},
			result("b0", map[string]any{"_masked": "m", "v": 1}),
			func(w *engine.Workflow) engine.Trigger {
				return engine.AddLog{TaskID: w.LatestByRef("b1").ID, Line: "working"}
			},
			result("b1", nil),
			result("inner__1", map[string]any{"o": 1}))
		if w.LatestByRef("inner__2") == nil {
			t.Fatalf("%s: no second iteration: %s", name, w.Status)
		}
		wfs[id] = w
	}
	authz := auth.NewAuthorizer(&fixedGrants{grants: []auth.Grant{
		{Subject: auth.Subject{Type: auth.SubjectUser, ID: "reader"}, Target: auth.Target{Type: auth.TargetWorkflowDef, ID: "readable"}, Access: []auth.Access{auth.Read, auth.Execute}},
		{Subject: auth.Subject{Type: auth.SubjectUser, ID: "worker"}, Target: auth.Target{Type: auth.TargetTaskDef, ID: "step"}, Access: []auth.Access{auth.Execute}},
	}})
	tokens := tokenPrincipals{
		"admin":    {ID: "admin", Roles: []string{auth.RoleAdmin}},
		"reader":   {ID: "reader", Roles: []string{auth.RoleUser}},
		"worker":   {ID: "worker", Roles: []string{auth.RoleWorker}},
		"stranger": {ID: "stranger", Roles: []string{auth.RoleUser}},
	}
	serve := func(exec func(*taskModel) api.Executions) (*taskModel, *triggerEngine, string) {
		m, e := &taskModel{wfs: wfs}, &triggerEngine{}
		srv := httptest.NewServer(api.New(api.Deps{Logger: testutil.Logger(t), Engine: e, Tasks: struct{ api.TaskQueue }{},
			Executions: exec(m), TaskIndex: m, Authorizer: authz, Tokens: tokens}))
		t.Cleanup(srv.Close)
		return m, e, srv.URL
	}
	model, eng, base := serve(func(m *taskModel) api.Executions { return m })
	_, wholeEng, wholeBase := serve(func(m *taskModel) api.Executions { return wholeOnly{m} })

	type request struct{ method, path, body string }
	var reqs []request
	views := map[string]bool{} // view paths of tasks whose views show other tasks
	for _, w := range wfs {
		for _, task := range w.Tasks {
			view := "/api/tasks/" + task.ID
			views[view] = task.ViewReadsOtherTasks()
			reqs = append(reqs,
				request{"GET", view, ""},
				request{"GET", view + "/log", ""},
				request{"POST", view + "/log", `"a line"`},
				request{"POST", "/api/tasks", fmt.Sprintf(`{"taskId":%q,"workflowInstanceId":%q,"status":"IN_PROGRESS"}`, task.ID, w.ID)},
				request{"POST", "/api/tasks/update-v2", fmt.Sprintf(`{"taskId":%q,"status":"IN_PROGRESS","extendLease":true}`, task.ID)})
		}
	}
	reqs = append(reqs, request{"GET", "/api/tasks/missing", ""}, request{"GET", "/api/tasks/missing/log", ""},
		request{"POST", "/api/tasks/missing/log", `"a line"`})
	for token := range tokens {
		for _, rq := range reqs {
			got := client{t, base, token}.do(rq.method, rq.path, rq.body)
			whole, tasks := model.reads()
			want := client{t, wholeBase, token}.do(rq.method, rq.path, rq.body)
			if got.status != want.status || got.body != want.body {
				t.Errorf("%s: %s %s = %d %s; the whole workflow's read answers %d %s", token, rq.method, rq.path, got.status, got.body, want.status, want.body)
			}
			// The view of a JOIN or a dynamic fork shows other tasks:
			// the whole workflow, once the caller may see the task.
			wantWhole := 0
			if rq.method == "GET" && views[rq.path] && got.status == 200 {
				wantWhole = 1
			}
			if whole != wantWhole || tasks > 1 {
				t.Errorf("%s: %s %s read %d whole workflows and %d tasks; want %d whole workflows", token, rq.method, rq.path, whole, tasks, wantWhole)
			}
		}
	}
	if fmt.Sprint(eng.ids) != fmt.Sprint(wholeEng.ids) {
		t.Errorf("submitted to %v; the whole workflow's read to %v", eng.ids, wholeEng.ids)
	}
}
