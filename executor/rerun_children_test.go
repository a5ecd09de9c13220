package executor

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// A SUB_WORKFLOW's, START_WORKFLOW's or failure workflow's start
// performed again, as the engine that recovers a task (or an end) whose
// first engine died after the start performs it (the same effect, read
// from the recorded state), starts no second workflow: the workflow's id
// is derived from the task's (the end's), and the start finds the first
// and reports on it. A second would run the child's work twice. Each
// starts cleanup (cleanupDefinitions), whose task waits for a worker.
func TestChildStartRunAgainStartsOne(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, def string
		// recorded is the id of the workflow started, as the parent
		// records it ("" until it does).
		recorded func(w *engine.Workflow) string
		status   string // the parent's, after the start ran again
	}{
		{"SUB_WORKFLOW", `{"name":"p_sub","version":1,"tasks":[{"name":"child","taskReferenceName":"child","type":"SUB_WORKFLOW",
		  "subWorkflowParam":{"name":"cleanup","version":1}}]}`,
			func(w *engine.Workflow) string { return w.LatestByRef("child").SubWorkflowID }, conductor.WorkflowRunning},
		{"START_WORKFLOW", `{"name":"p_start","version":1,"tasks":[{"name":"child","taskReferenceName":"child","type":"START_WORKFLOW",
		  "inputParameters":{"startWorkflow":{"name":"cleanup","version":1}}},{"name":"hold","taskReferenceName":"hold","type":"WAIT"}]}`,
			func(w *engine.Workflow) string {
				if t := w.LatestByRef("child"); t.Status == conductor.TaskCompleted {
					id, _ := t.Output["workflowId"].(string)
					return id
				}
				return ""
			}, conductor.WorkflowRunning},
		{"failure workflow", `{"name":"p_fail","version":1,"failureWorkflow":"cleanup","tasks":[{"name":"end","taskReferenceName":"end",
		  "type":"TERMINATE","inputParameters":{"terminationStatus":"FAILED","terminationReason":"broken"}}]}`,
			func(w *engine.Workflow) string {
				if len(w.FailureWorkflows) == 0 {
					return ""
				}
				return w.FailureWorkflows[0]
			}, conductor.WorkflowFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l := testutil.OpenLog(t, "")
			ctx := testutil.Context(t, 60*time.Second)
			e := New(l, cleanupDefinitions{}, nothingScheduled{}, Config{Logger: testutil.Logger(t)})
			// The first start waits here until the test has read the
			// parent's state with the start still to come.
			release := make(chan struct{})
			e.SetStartCheck(func(ctx context.Context, _ []string, req conductor.StartWorkflowRequest) (Pin, error) {
				if req.Name == "cleanup" {
					select {
					case <-release:
					case <-ctx.Done():
						return Pin{}, ctx.Err()
					}
				}
				return Pin{}, nil
			})
			if err := e.Start(ctx); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(e.Stop)
			startInline(ctx, t, e, "parent", tc.def)
			w, err := e.State(ctx, "parent")
			if err != nil {
				t.Fatal(err)
			}
			var again []engine.StartWorkflow
			for _, eff := range engine.Effects(w, time.Now().UnixMilli()) {
				if s, ok := eff.(engine.StartWorkflow); ok {
					again = append(again, s)
				}
			}
			if len(again) != 1 {
				t.Fatalf("the parent's state implies %d starts, want 1", len(again))
			}
			close(release)
			id := again[0].WorkflowID
			testutil.Eventually(t, 20*time.Second, 10*time.Millisecond, func() error {
				c, err := e.State(ctx, id)
				if err != nil || c == nil {
					return fmt.Errorf("workflow %s not started yet: %v", id, err)
				}
				return nil
			})
			for range 2 {
				if err := e.startWorkflowEffect(ctx, again[0]); err != nil {
					t.Fatal(err)
				}
			}
			if n := testutil.WorkflowsInLog(t, l); n != 2 {
				t.Errorf("the log holds %d workflows, want 2: the parent and the one it started", n)
			}
			testutil.Eventually(t, 20*time.Second, 10*time.Millisecond, func() error {
				w, err := e.State(ctx, "parent")
				if err != nil {
					return err
				}
				if got := tc.recorded(w); got != id || w.Status != tc.status {
					return fmt.Errorf("the parent (%s) records workflow %q, want %s (%s)", w.Status, got, id, tc.status)
				}
				return nil
			})
		})
	}
}

// The retry, restart or rerun of a sub-workflow its parent jumped past
// (the jump terminated it) is refused: the parent went on past the
// SUB_WORKFLOW task and ignores the child's news, so the child would run
// for nothing. The executor reads the ancestors the decision needs, so a
// caller that passes none (the API, a bulk operation) is refused too; a
// rerun asked of the parent from the child's task runs the parent again
// from that task, as a rerun from the task itself does.
func TestJumpedChildIsNotRunAgain(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, 60*time.Second)
	e := startExecutor(t, testutil.OpenLog(t, ""), nothingScheduled{}, Config{})
	startInline(ctx, t, e, "parent", `{"name":"p_jump","version":1,"tasks":[{"name":"child","taskReferenceName":"child","type":"SUB_WORKFLOW",
	  "subWorkflowParam":{"name":"kid","workflowDefinition":{"name":"kid","version":1,"tasks":[{"name":"kid_task","taskReferenceName":"c"}]}}},
	  {"name":"after","taskReferenceName":"after"}]}`)
	state := func(id string) *engine.Workflow {
		t.Helper()
		w, err := e.State(ctx, id)
		if err != nil || w == nil {
			t.Fatalf("workflow %s: %v", id, err)
		}
		return w
	}
	// The child starts as an effect of the parent's start: wait for it.
	var kid string
	for kid == "" || state(kid).Status != conductor.WorkflowRunning {
		if ctx.Err() != nil {
			t.Fatal("the child did not start")
		}
		time.Sleep(10 * time.Millisecond)
		if c := state("parent").LatestByRef("child"); c != nil {
			kid = c.SubWorkflowID
		}
	}
	out, err := e.Submit(ctx, "parent", engine.Jump{Ref: "after"}, Meta{FollowRelated: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := out.Related.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if got := state(kid).Status; got != conductor.WorkflowTerminated {
		t.Fatalf("the jumped child is %s, want TERMINATED", got)
	}
	for _, trig := range []engine.Trigger{
		engine.Retry{},
		engine.Restart{},
		engine.Rerun{Request: conductor.RerunWorkflowRequest{ReRunFromTaskID: state(kid).LatestByRef("c").ID}},
		engine.Rerun{},
	} {
		if _, err := e.Submit(ctx, kid, trig, Meta{}); !errors.Is(err, fault.ErrConflict) {
			t.Errorf("%s of the jumped child: %v, want refused", engine.TriggerName(trig), err)
		}
	}
	if got := state(kid).Status; got != conductor.WorkflowTerminated {
		t.Fatalf("the jumped child is %s after the refusals, want TERMINATED", got)
	}

	// Asked of the parent, once it has failed, from the child's task: the
	// child reruns, and the parent from its SUB_WORKFLOW task.
	after := state("parent").LatestByRef("after")
	if _, err := e.Submit(ctx, "parent", engine.Result{Result: conductor.TaskResult{WorkflowInstanceID: "parent", TaskID: after.ID,
		Status: conductor.TaskFailedWithTerminalError, ReasonForIncompletion: "down"}}, Meta{}); err != nil {
		t.Fatal(err)
	}
	out, err = e.Submit(ctx, kid, engine.Rerun{Request: conductor.RerunWorkflowRequest{ReRunFromTaskID: state(kid).LatestByRef("c").ID}, UpTo: "parent"},
		Meta{FollowRelated: true})
	if err != nil {
		t.Fatalf("rerun of the parent through its jumped child: %v", err)
	}
	if _, err := out.Related.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	p := state("parent")
	if c := p.LatestByRef("child"); p.Status != conductor.WorkflowRunning || c.Status != conductor.TaskInProgress || c.SubWorkflowID != kid {
		t.Fatalf("the parent is %s, its task %s waiting for %s; want RUNNING, IN_PROGRESS, %s", p.Status, c.Status, c.SubWorkflowID, kid)
	}
}
