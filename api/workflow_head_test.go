package api

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/executor"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// headModel is a read model of one workflow that counts its reads of the
// whole workflow (every task) and of its head alone.
type headModel struct {
	wf           *engine.Workflow
	whole, heads int
}

func (m *headModel) Workflow(_ context.Context, id string) (*engine.Workflow, error) {
	if id != m.wf.ID {
		return nil, fault.NotFound("workflow %s not found", id)
	}
	m.whole++
	return m.wf, nil
}

func (m *headModel) WorkflowHead(_ context.Context, id string) (*engine.Workflow, error) {
	if id != m.wf.ID {
		return nil, fault.NotFound("workflow %s not found", id)
	}
	m.heads++
	head := *m.wf
	head.Tasks = nil
	return &head, nil
}

// The views of a workflow that show none of its tasks read its head
// alone: they read every task, so that a client polling a workflow's
// status until it ended read the whole workflow at each poll (13 ms of
// CPU a poll of a loop of 2,000 iterations against 2 at 500), the polls'
// reads growing with the square of the workflow's size. The views with
// tasks still read them.
func TestViewsWithoutTasksReadTheHead(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		path      string
		wantHeads int
		wantTasks bool
	}{
		{"/api/workflow/wf1?includeTasks=false", 1, false},
		{"/api/workflow/wf1/status", 1, false},
		{"/api/workflow/wf1/status?includeOutput=true&includeVariables=true", 1, false},
		{"/api/workflow/wf1", 0, true},
		{"/api/workflow/wf1?includeTasks=true", 0, true},
	} {
		t.Run(tc.path, func(t *testing.T) {
			t.Parallel()
			m := &headModel{wf: &engine.Workflow{ID: "wf1", Name: "w", Status: conductor.WorkflowRunning,
				Output: map[string]any{"o": "out"}, Variables: map[string]any{"v": "var"},
				Tasks: []*engine.Task{{ID: "t1", Ref: "a", Type: conductor.TaskTypeSimple, Status: conductor.TaskInProgress}}}}
			s := New(Deps{Engine: struct{ Engine }{}, Executions: m, Insecure: true, Logger: testutil.Logger(t)})
			rec := httptest.NewRecorder()
			s.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, tc.path, nil))
			if rec.Code != http.StatusOK {
				t.Fatalf("%d %s", rec.Code, rec.Body)
			}
			if m.heads != tc.wantHeads || m.whole != 1-tc.wantHeads {
				t.Errorf("read the head %d times and the whole workflow %d times; want the head %d times", m.heads, m.whole, tc.wantHeads)
			}
			if got := strings.Contains(rec.Body.String(), `"t1"`); got != tc.wantTasks {
				t.Errorf("the answer shows the task: %v; want %v: %s", got, tc.wantTasks, rec.Body)
			}
			if strings.Contains(tc.path, "includeOutput") && !strings.Contains(rec.Body.String(), `"out"`) || strings.Contains(tc.path, "includeVariables") && !strings.Contains(rec.Body.String(), `"var"`) {
				t.Errorf("the answer lacks the output or variables: %s", rec.Body)
			}
			if !strings.Contains(rec.Body.String(), `"RUNNING"`) {
				t.Errorf("the answer has no status: %s", rec.Body)
			}
		})
	}
}

// submitNothing answers every submission with nothing done.
type submitNothing struct{ Engine }

func (submitNothing) Submit(context.Context, string, engine.Trigger, executor.Meta) (executor.Outcome, error) {
	return executor.Outcome{}, nil
}

// The operations that check access and read the workflow's status or
// name alone read its head: a restart with the latest definition (which
// looks the definition up by the workflow's name) and verifyAndRepair
// (which answers whether the workflow still runs) read every task.
func TestOperationsOnTheHeadReadTheHead(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		path string
		code int
	}{
		{"/api/workflow/wf1/restart?useLatestDefinitions=true", http.StatusNotFound}, // no definitions served
		{"/api/admin/consistency/verifyAndRepair/wf1", http.StatusOK},
	} {
		t.Run(tc.path, func(t *testing.T) {
			t.Parallel()
			m := &headModel{wf: &engine.Workflow{ID: "wf1", Name: "w", Status: conductor.WorkflowRunning,
				Tasks: []*engine.Task{{ID: "t1", Ref: "a", Type: conductor.TaskTypeSimple, Status: conductor.TaskInProgress}}}}
			s := New(Deps{Engine: submitNothing{}, Executions: m, Insecure: true, Logger: testutil.Logger(t)})
			rec := httptest.NewRecorder()
			s.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, tc.path, nil))
			if rec.Code != tc.code {
				t.Fatalf("%d %s; want %d", rec.Code, rec.Body, tc.code)
			}
			if m.whole != 0 || m.heads == 0 {
				t.Errorf("read the whole workflow %d times and the head %d times; want the head alone", m.whole, m.heads)
			}
		})
	}
}
