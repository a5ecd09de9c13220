package executor

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
)

const planted = "planted-value-6c1e"

// refusesQuoting fails every hand-off with a reason that quotes a value.
type refusesQuoting struct{}

func (refusesQuoting) Prepare(context.Context, *engine.Workflow, *engine.Task) (map[string]any, []schemas.ResolvedRef, error) {
	return nil, nil, fault.Invalid("input does not conform: got %s", planted)
}

// redactsReasons protects a decision by redacting the planted value from
// the reasons it records, as the guard redacts resolved values.
type redactsReasons struct{}

func (redactsReasons) Protect(_ context.Context, _ *engine.Workflow, dec engine.Decision) (engine.Decision, error) {
	events := slices.Clone(dec.Events)
	for i, ev := range events {
		if u, ok := ev.(*schemas.TaskUpdated); ok {
			c := *u
			c.Reason = strings.ReplaceAll(c.Reason, planted, "***")
			events[i] = &c
		}
	}
	dec.Events = events
	return dec, nil
}

// A taker whose hand-off failed is told the reason as recorded, protected,
// not as the hand-off said it: the answer goes to a worker and into logs.
func TestHandOffFailureAnswersTheRecordedReason(t *testing.T) {
	l := testutil.OpenLog(t, "")
	e := New(l, noDefinitions{}, nothingScheduled{}, Config{Logger: testutil.Logger(t)})
	e.SetHandOff(refusesQuoting{})
	e.SetProtector(redactsReasons{})
	ctx := testutil.Context(t, 30*time.Second)
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Stop)
	const id = "wf-handoff-reason"
	if _, _, err := e.StartWorkflow(ctx, conductor.StartWorkflowRequest{Name: "match_flow", WorkflowDef: mustDef(t, twoTasks)},
		StartOptions{WorkflowID: id, CreatedBy: "alice"}); err != nil {
		t.Fatal(err)
	}
	state, err := e.Submit(ctx, id, nil, Meta{})
	if err != nil || state.State == nil || len(state.State.Tasks) == 0 {
		t.Fatalf("state %+v, %v", state.State, err)
	}
	out, err := e.Submit(ctx, id, engine.Take{TaskID: state.State.Tasks[0].ID, WorkerID: "w1", TaskType: "match_task"}, Meta{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = handedOff(out)
	if !errors.Is(err, ErrHandOffFailed) || strings.Contains(err.Error(), planted) || !strings.Contains(err.Error(), "got ***") {
		t.Fatalf("the taker is told %v", err)
	}
}
