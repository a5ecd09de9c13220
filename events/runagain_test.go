package events

import (
	"context"
	"testing"
	"time"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/executor"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// waitingDefinitions stores every name as a workflow that waits.
type waitingDefinitions struct{}

func (waitingDefinitions) LookupWorkflowDef(_ context.Context, name string, _ *int) (*conductor.WorkflowDef, error) {
	def := &conductor.WorkflowDef{}
	err := conductor.Unmarshal([]byte(`{"name":"`+name+`","version":1,"tasks":[{"name":"w","taskReferenceName":"w","type":"WAIT"}]}`), def)
	return def, err
}

func (waitingDefinitions) LookupTaskDef(context.Context, string) (*conductor.TaskDef, bool, error) {
	return nil, false, nil
}

func (waitingDefinitions) CheckWorkflowDef(def *conductor.WorkflowDef) error {
	return engine.ValidateWorkflowDef(def)
}

func (waitingDefinitions) WorkflowOwner(context.Context, string) (string, error) { return "", nil }

// noDeadlines has no deadlines and no running workflows to recover.
type noDeadlines struct{}

func (noDeadlines) Due(context.Context, int64, executor.Due, int) ([]executor.Due, error) {
	return nil, nil
}
func (noDeadlines) Running(context.Context, func(string) bool) error { return nil }
func (noDeadlines) ScheduledBefore(context.Context, int64, func(string) bool) error {
	return nil
}

// startWaiting returns an executor on a log of its own, which runs the
// workflow id of the definition name (waitingDefinitions': it waits in
// w), started by app:shop.
func startWaiting(t *testing.T, name, id string) (*eventlog.Log, *executor.Executor) {
	t.Helper()
	ctx := testutil.Context(t, 30*time.Second)
	l := testutil.OpenLog(t, "")
	e := executor.New(l, waitingDefinitions{}, noDeadlines{}, executor.Config{Logger: testutil.Logger(t)})
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Stop)
	if _, _, err := e.StartWorkflow(ctx, conductor.StartWorkflowRequest{Name: name},
		executor.StartOptions{WorkflowID: id, CreatedBy: "app:shop"}); err != nil {
		t.Fatal(err)
	}
	return l, e
}

// An EVENT run again with the same task id (its engine died before its
// result was recorded; the lease expired) publishes its event again,
// under the same message id: a start_workflow handler starts no second
// workflow for it. A retry of the task (a new id) is another event, and
// starts another.
func TestEventPublishedAgainStartsOneWorkflow(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, 30*time.Second)
	l, e := startWaiting(t, "publisher", "wf-pub")
	h := &conductor.EventHandler{Name: "on_order", Event: "nats:orders.created", CreatedBy: "app:admin", Active: true,
		Actions: []conductor.EventAction{{Action: conductor.ActionStartWorkflow, StartWorkflow: map[string]any{"name": "fulfil"}}}}
	lis := listening(h, Config{Engine: e})
	const event = `{"workflowInstanceId":"wf-pub","workflowType":"publisher","order":7}`
	for _, step := range []struct {
		msgID string // the EVENT task's id
		want  int    // workflows then, the publisher's included
	}{
		{"task-1", 2},
		{"task-1", 2}, // run again
		{"task-2", 3}, // a retry
	} {
		deliver(lis, "orders.created", event, step.msgID)
		if n := testutil.WorkflowsInLog(t, l); n != step.want {
			t.Fatalf("after the event of %s: %d workflows, want %d", step.msgID, n, step.want)
		}
	}
	id := engine.DeriveID("event", h.Name, "task-1", "0")
	if w, err := e.State(ctx, id); err != nil || w == nil || w.Name != "fulfil" {
		t.Fatalf("the workflow the first event started, %s: %v", id, err)
	}
}
