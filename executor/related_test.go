package executor

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// treeDef is a workflow whose SUB_WORKFLOW "sub" runs an inline child,
// which runs an inline grandchild named leaf, which waits.
func treeDef(leaf string) string {
	grandchild := fmt.Sprintf(`{"name":%q,"tasks":[{"name":"hold","taskReferenceName":"hold","type":"WAIT"}]}`, leaf)
	child := `{"name":"tree_child","tasks":[{"name":"sub","taskReferenceName":"sub","type":"SUB_WORKFLOW",
	  "subWorkflowParam":{"name":` + fmt.Sprintf("%q", leaf) + `,"workflowDefinition":` + grandchild + `}}]}`
	return `{"name":"tree_top","tasks":[{"name":"sub","taskReferenceName":"sub","type":"SUB_WORKFLOW",
	  "subWorkflowParam":{"name":"tree_child","workflowDefinition":` + child + `}}]}`
}

// childOf waits until workflow id's task "sub" names a child that has
// started, and returns the child's id.
func childOf(ctx context.Context, t *testing.T, e *Executor, id string) string {
	t.Helper()
	var child string
	testutil.Eventually(t, 20*time.Second, 10*time.Millisecond, func() error {
		w, err := e.State(ctx, id)
		if err != nil {
			return err
		}
		if sub := w.LatestByRef("sub"); sub != nil && sub.SubWorkflowID != "" {
			if c, err := e.State(ctx, sub.SubWorkflowID); err == nil && c != nil {
				child = sub.SubWorkflowID
				return nil
			}
		}
		return fmt.Errorf("workflow %s has no started child yet", id)
	})
	return child
}

// readAt returns the state of wfID folded from the log up to seq: what a
// read model that reached seq shows.
func readAt(ctx context.Context, t *testing.T, l *eventlog.Log, wfID string, seq uint64) *engine.Workflow {
	t.Helper()
	recs, err := l.ReadSubject(ctx, subject(wfID), 0)
	if err != nil {
		t.Fatal(err)
	}
	var upTo []eventlog.Record
	for _, r := range recs {
		if r.Seq <= seq {
			upTo = append(upTo, r)
		}
	}
	w, err := Fold(nil, upTo)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// Related follows a terminate down the tree: its sequence covers the
// child's terminate and the grandchild's, which that one set off.
func TestRelatedFollowsTerminateDownTheTree(t *testing.T) {
	l := testutil.OpenLog(t, "")
	e := startExecutor(t, l, nothingScheduled{}, Config{})
	ctx := testutil.Context(t, 30*time.Second)
	const top = "wf-related-top"
	startInline(ctx, t, e, top, treeDef("tree_leaf"))
	child := childOf(ctx, t, e, top)
	grandchild := childOf(ctx, t, e, child)

	out, err := e.Submit(ctx, top, engine.Terminate{Reason: "operator"}, Meta{FollowRelated: true})
	if err != nil {
		t.Fatal(err)
	}
	seq, err := out.Related.Wait(ctx)
	if err != nil {
		t.Fatalf("waiting for the terminate's consequences: %v", err)
	}
	for _, id := range []string{child, grandchild} {
		if w := readAt(ctx, t, l, id, seq); w.Status != conductor.WorkflowTerminated {
			t.Errorf("workflow %s is %s at the terminate's related sequence %d, want TERMINATED", id, w.Status, seq)
		}
	}
}

// A child a followed effect starts is a consequence; what it goes on to do
// is not: a restart's Related does not wait for the grandchild that the
// restarted child starts in turn (held here for good, by the start check).
func TestRelatedDoesNotFollowAStartedChildsProgress(t *testing.T) {
	l := testutil.OpenLog(t, "")
	e := New(l, noDefinitions{}, nothingScheduled{}, Config{Logger: testutil.Logger(t)})
	e.SetStartCheck(func(ctx context.Context, _ []string, req conductor.StartWorkflowRequest) (Pin, error) {
		if req.Name == "held_leaf" {
			<-ctx.Done()
			return Pin{}, ctx.Err()
		}
		return Pin{}, nil
	})
	ctx := testutil.Context(t, 30*time.Second)
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Stop)
	const top = "wf-related-restart"
	startInline(ctx, t, e, top, treeDef("held_leaf"))
	first := childOf(ctx, t, e, top)
	if _, err := e.Submit(ctx, top, engine.Terminate{Reason: "operator"}, Meta{}); err != nil {
		t.Fatal(err)
	}

	out, err := e.Submit(ctx, top, engine.Restart{}, Meta{FollowRelated: true})
	if err != nil {
		t.Fatal(err)
	}
	// The deadline only keeps a broken Related from hanging the test: one
	// that followed the new child's progress would wait for the held start.
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	seq, err := out.Related.Wait(wctx)
	if err != nil {
		t.Fatalf("the restart's Related waits for its new child's own progress: %v", err)
	}
	next := readAt(ctx, t, l, top, seq).LatestByRef("sub").SubWorkflowID
	if next == "" || next == first {
		t.Fatalf("the restarted workflow waits for %q; its first child was %s", next, first)
	}
	if w := readAt(ctx, t, l, next, seq); w == nil || w.Status != conductor.WorkflowRunning {
		t.Fatalf("the new child %s is not started at the restart's related sequence %d", next, seq)
	}
}
