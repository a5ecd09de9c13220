package api

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"testing"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/executor"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/projections/executions/query"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// pendingModel is a task search over the waiting tasks of one type, in
// scheduled order, that removes workflows when it is first searched: while
// the search reads (it counted their tasks, its page lists none of them),
// or once it answered (before the next page). Only task search is served.
type pendingModel struct {
	Searcher
	mu       sync.Mutex
	tasks    []pendingTask
	removed  map[string]bool
	remove   []string
	during   bool // remove while the first search reads, not after it
	searches int
}

type pendingTask struct{ wfID, taskID string }

func (m *pendingModel) hits() []pendingTask {
	return slices.DeleteFunc(slices.Clone(m.tasks), func(t pendingTask) bool { return m.removed[t.wfID] })
}

func (m *pendingModel) removeOnce() {
	if m.searches++; m.searches == 1 {
		for _, id := range m.remove {
			m.removed[id] = true
		}
	}
}

// SearchTasks answers as executions.Reader does: totalHits counts what the
// search found, and the page lists those of its tasks still there.
func (m *pendingModel) SearchTasks(_ context.Context, s query.Search) (int, []*conductor.Task, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	hits := m.hits()
	if m.during {
		m.removeOnce()
	}
	var page []*conductor.Task
	for _, t := range hits[min(s.Start, len(hits)):min(s.Start+s.Size, len(hits))] {
		if !m.removed[t.wfID] {
			page = append(page, &conductor.Task{TaskID: t.taskID, WorkflowInstanceID: t.wfID, Status: conductor.TaskScheduled})
		}
	}
	if !m.during {
		m.removeOnce()
	}
	return len(hits), page, nil
}

func (m *pendingModel) SearchTaskWorkflowIDs(context.Context, query.Search) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var ids []string
	for _, t := range m.hits() {
		ids = append(ids, t.wfID)
	}
	m.removeOnce()
	return ids, nil
}

// reconciler is an engine that records the workflows a requeue
// reconciles; a removed workflow is not found.
type reconciler struct {
	Engine
	m          *pendingModel
	mu         sync.Mutex
	reconciled []string
}

func (e *reconciler) Submit(_ context.Context, wfID string, trig engine.Trigger, _ executor.Meta) (executor.Outcome, error) {
	e.m.mu.Lock()
	removed := e.m.removed[wfID]
	e.m.mu.Unlock()
	if removed {
		return executor.Outcome{}, fault.NotFound("workflow %s not found", wfID)
	}
	if rc, ok := trig.(engine.Reconcile); !ok || !rc.Requeue {
		return executor.Outcome{}, fmt.Errorf("submitted %#v, want a requeue", trig)
	}
	e.mu.Lock()
	e.reconciled = append(e.reconciled, wfID)
	e.mu.Unlock()
	return executor.Outcome{}, nil
}

// A requeue reconciles every workflow whose tasks of the type wait, and
// counts their tasks, however many pages of search they fill, when
// workflows are removed while it searches: it paged by offset, and a page
// a removal shortened (its tasks counted, not listed) ended the search,
// and a removal between pages made it skip the tasks that moved up over
// them; the workflows after them were left without their announcements.
func TestRequeueFindsEveryPendingTaskWhileWorkflowsGo(t *testing.T) {
	t.Parallel()
	const workflows = maxSearchSize + 100
	var tasks []pendingTask
	var want []string
	for i := range workflows {
		id := fmt.Sprintf("wf-%05d", i)
		tasks = append(tasks, pendingTask{id, id + "-t"})
		if i >= 10 {
			want = append(want, id)
		}
	}
	last := want[len(want)-1]
	tasks = append(tasks, pendingTask{last, last + "-t2"}) // a workflow with two waiting
	wantCount := len(want) + 1
	for _, tc := range []struct {
		name   string
		during bool
	}{
		{"removed while a search reads", true},
		{"removed between searches", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m := &pendingModel{tasks: tasks, removed: map[string]bool{}, during: tc.during}
			for i := range 10 {
				m.remove = append(m.remove, tasks[i].wfID) // on the first page
			}
			e := &reconciler{m: m}
			s := &Server{deps: Deps{Search: m, Engine: e, Insecure: true, Logger: testutil.Logger(t)}}
			rec := httptest.NewRecorder()
			s.requeuePending(rec, httptest.NewRequest(http.MethodPost, "/api/tasks/queue/requeue/rq", nil), "rq")
			if rec.Code != http.StatusOK || rec.Body.String() != strconv.Itoa(wantCount) {
				t.Fatalf("requeue = %d %s, want 200 %d", rec.Code, rec.Body, wantCount)
			}
			slices.Sort(e.reconciled)
			if !slices.Equal(e.reconciled, want) {
				t.Fatalf("reconciled %d workflows, want the %d whose tasks wait", len(e.reconciled), len(want))
			}
		})
	}
}
