package executor

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// cleanupDefinitions knows one stored definition, a failure workflow.
type cleanupDefinitions struct{ noDefinitions }

func (cleanupDefinitions) LookupWorkflowDef(_ context.Context, name string, _ *int) (*conductor.WorkflowDef, error) {
	if name != "cleanup" {
		return nil, fault.NotFound("workflow definition %s not found", name)
	}
	def := &conductor.WorkflowDef{}
	err := conductor.Unmarshal([]byte(`{"name":"cleanup","version":1,"tasks":[{"name":"cleanup_task","taskReferenceName":"c"}]}`), def)
	return def, err
}

// endedOnly lists the given workflows as ended with effects, and nothing
// as running or due.
type endedOnly []string

func (endedOnly) Due(context.Context, int64, Due, int) ([]Due, error)   { return nil, nil }
func (endedOnly) Running(context.Context, func(wfID string) bool) error { return nil }
func (endedOnly) ScheduledBefore(context.Context, int64, func(wfID string) bool) error {
	return nil
}
func (e endedOnly) EndedWithEffects(_ context.Context, _ int64, fn func(string) bool) error {
	for _, id := range e {
		if !fn(id) {
			break
		}
	}
	return nil
}

// An engine that dies right after a workflow's end is appended takes the
// end's effects along: recovery performs them again for workflows that
// ended shortly before the log's last record. Here the end (a terminate)
// is appended without its effects; the next engine starts the failure
// workflow.
func TestRecoveryPerformsTheEffectsOfAnEnd(t *testing.T) {
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, 30*time.Second)
	first := New(l, cleanupDefinitions{}, nothingScheduled{}, Config{Logger: testutil.Logger(t)})
	if err := first.Start(ctx); err != nil {
		t.Fatal(err)
	}
	const id = "wf-ends"
	startInline(ctx, t, first, id, `{"name":"ends","failureWorkflow":"cleanup","tasks":[{"name":"hold","taskReferenceName":"hold","type":"WAIT"}]}`)
	w, err := first.State(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	first.Stop()

	// The terminate's record, and nothing of what it implies.
	dec, err := engine.Decide(engine.Input{State: w, Trigger: engine.Terminate{Reason: "operator", TriggerFailureWorkflow: true}, Now: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	var failure string
	for _, eff := range dec.Effects {
		if s, ok := eff.(engine.StartWorkflow); ok && s.Failure {
			failure = s.WorkflowID
		}
	}
	if failure == "" {
		t.Fatalf("the terminate implies no failure workflow: %+v", dec.Effects)
	}
	envs, err := envelopes(dec.Events, &job{wfID: id, meta: Meta{RequestID: "terminate"}}, w.Seq, time.Now(), l.MaxRecordBytes())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(ctx, subject(id), envs, w.Seq); err != nil {
		t.Fatal(err)
	}

	second := New(l, cleanupDefinitions{}, endedOnly{id}, Config{Logger: testutil.Logger(t)})
	if err := second.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(second.Stop)
	testutil.Eventually(t, 20*time.Second, 50*time.Millisecond, func() error {
		fw, err := second.State(ctx, failure)
		if err != nil {
			return err
		}
		if fw == nil {
			return errors.New("the failure workflow has not started")
		}
		return nil
	})
}
