package api

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// treeModel is an executions read model of a few workflows, and the
// watches of its changes: a change wakes the watches of the workflow it
// changed, as the projection's do.
type treeModel struct {
	mu        sync.Mutex
	workflows map[string]*engine.Workflow
	watches   []treeWatch
	watched   chan []string // each Watch's ids
}

type treeWatch struct {
	ids []string
	c   chan struct{}
}

func (m *treeModel) Workflow(_ context.Context, id string) (*engine.Workflow, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if w, ok := m.workflows[id]; ok {
		return w, nil
	}
	return nil, fault.NotFound("workflow %s not found", id)
}

func (m *treeModel) Watch(ids ...string) (<-chan struct{}, func()) {
	c := make(chan struct{}, 1)
	m.mu.Lock()
	m.watches = append(m.watches, treeWatch{ids: ids, c: c})
	m.mu.Unlock()
	m.watched <- slices.Clone(ids)
	return c, func() {}
}

// commit stores w and wakes the watches of its id only.
func (m *treeModel) commit(w *engine.Workflow) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.workflows[w.ID] = w
	for _, wt := range m.watches {
		if slices.Contains(wt.ids, w.ID) {
			select {
			case wt.c <- struct{}{}:
			default:
			}
		}
	}
}

// A synchronous execution whose workflow waits for a child that has not
// started yet watches the child too: the child's start changes nothing of
// its parent, whose SUB_WORKFLOW task named the child when it was
// scheduled, so a wait that watched the parent alone slept until its next
// recheck (a second) before it saw the child's WAIT, on every execution
// into a sub-workflow.
func TestExecuteWatchesTheChildItWaitsFor(t *testing.T) {
	t.Parallel()
	parent := &engine.Workflow{ID: "parent", Status: conductor.WorkflowRunning, Tasks: []*engine.Task{
		{ID: "sub", Ref: "sub", Type: conductor.TaskTypeSubWorkflow, Status: conductor.TaskInProgress, SubWorkflowID: "child"},
	}}
	m := &treeModel{workflows: map[string]*engine.Workflow{parent.ID: parent}, watched: make(chan []string, 16)}
	s := &Server{deps: Deps{Executions: m, Changes: m}, stopping: make(chan struct{})}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type answer struct {
		block *engine.Workflow
		task  *engine.Task
		err   error
	}
	answers := make(chan answer, 1)
	go func() {
		_, block, task, err := s.awaitBlocking(ctx, parent.ID, nil, maxWaitSeconds*time.Second)
		answers <- answer{block, task, err}
	}()

	if ids := <-m.watched; !slices.Contains(ids, "child") {
		t.Fatalf("the wait watches %v: not the child its SUB_WORKFLOW task waits for", ids)
	}
	m.commit(&engine.Workflow{ID: "child", Status: conductor.WorkflowRunning, Tasks: []*engine.Task{
		{ID: "gate", Ref: "gate", Type: conductor.TaskTypeWait, Status: conductor.TaskInProgress},
	}})
	a := <-answers
	if a.err != nil || a.block == nil || a.block.ID != "child" || a.task == nil || a.task.Ref != "gate" {
		t.Fatalf("answered block %v, task %v, err %v; want the child's WAIT", a.block, a.task, a.err)
	}
}
