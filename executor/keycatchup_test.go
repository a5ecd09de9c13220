package executor

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// keyedOps are the operations an idempotency key decides: a start with the
// key, and an operator's reopen of an ended workflow that has one.
var keyedOps = []struct {
	name     string
	strategy string         // a start with the key, under this strategy
	reopen   engine.Trigger // else: a reopen of a keyed workflow
}{
	{name: "FAIL_ON_RUNNING start", strategy: conductor.IdempotencyFailOnRunning},
	{name: "RETURN_EXISTING start", strategy: conductor.IdempotencyReturnExisting},
	{name: "restart", reopen: engine.Restart{}},
	{name: "retry", reopen: engine.Retry{}},
	{name: "rerun", reopen: engine.Rerun{}},
}

// startCatchingUp starts an executor reading sched that runs catchUp
// before the checks of an idempotency key.
func startCatchingUp(t *testing.T, sched Schedule, catchUp CatchUp) *Executor {
	t.Helper()
	e := New(testutil.OpenLog(t, ""), noDefinitions{}, sched, Config{Logger: testutil.Logger(t), KeyCatchUpWait: 50 * time.Millisecond})
	e.SetCatchUp(catchUp)
	if err := e.Start(testutil.Context(t, 30*time.Second)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Stop)
	return e
}

// keyedRequest starts a workflow that waits, with idempotency key "k"
// when key is set.
func keyedRequest(t *testing.T, key bool, strategy string) conductor.StartWorkflowRequest {
	def := mustDef(t, `{"name":"keyed","version":1,"tasks":[{"name":"hold","taskReferenceName":"hold","type":"WAIT"}]}`)
	req := conductor.StartWorkflowRequest{Name: def.Name, WorkflowDef: def, IdempotencyStrategy: strategy}
	if key {
		req.IdempotencyKey = "k"
	}
	return req
}

// endedWorkflow starts a workflow (keyed or not) on e and terminates it.
func endedWorkflow(ctx context.Context, t *testing.T, e *Executor, key bool) string {
	t.Helper()
	id, _, err := e.StartWorkflow(ctx, keyedRequest(t, key, conductor.IdempotencyFailOnRunning), StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Submit(ctx, id, engine.Terminate{Reason: "stopped by the test"}, Meta{}); err != nil {
		t.Fatal(err)
	}
	return id
}

// A keyed start and a reopen of a keyed workflow read the key's workflows
// only once the read model has caught up with the log: another engine's
// start or reopen of a workflow with the key, answered before, is in the
// log but not yet in the model, and shows only after the catch-up. The
// FAIL_ON_RUNNING start and the reopens are refused for it, and the
// RETURN_EXISTING start answers it.
func TestKeyChecksReadTheModelCaughtUp(t *testing.T) {
	for _, op := range keyedOps {
		t.Run(op.name, func(t *testing.T) {
			ctx := testutil.Context(t, 30*time.Second)
			read := keyRunners{holder: "last", status: conductor.WorkflowCompleted, found: true, running: map[string]string{}}
			var armed atomic.Bool
			e := startCatchingUp(t, read, func(context.Context) error {
				if armed.Load() {
					// The model applies what the log held: "other" runs.
					read.running["other"] = conductor.WorkflowRunning
				}
				return nil
			})
			if op.reopen == nil {
				armed.Store(true)
				id, _, err := e.StartWorkflow(ctx, keyedRequest(t, true, op.strategy), StartOptions{})
				switch op.strategy {
				case conductor.IdempotencyReturnExisting:
					if err != nil || id != "other" {
						t.Fatalf("start: %q, %v; want the workflow that runs with the key, other", id, err)
					}
				default:
					if !errors.Is(err, ErrKeyHeld) {
						t.Fatalf("start: %q, %v; want the key's refusal", id, err)
					}
				}
				return
			}
			id := endedWorkflow(ctx, t, e, true)
			armed.Store(true)
			_, err := e.Submit(ctx, id, op.reopen, Meta{})
			if !errors.Is(err, ErrKeyHeld) {
				t.Fatalf("%s: %v, want the key's refusal", op.name, err)
			}
			if w, err := e.State(ctx, id); err != nil || w == nil || w.Status != conductor.WorkflowTerminated {
				t.Fatalf("refused, the workflow is %v (%v), want it TERMINATED still", w, err)
			}
		})
	}
}

// A read model that does not catch up (rebuilding, far behind) refuses a
// keyed start and a reopen of a keyed workflow as unavailable (503),
// once the wait runs out, rather than decide them on what may be stale;
// nothing starts or runs again. A start without a key, or a reopen of a
// workflow without one, does not wait for it at all.
func TestKeyChecksUnavailableWhileTheModelIsBehind(t *testing.T) {
	for _, key := range []bool{true, false} {
		for _, op := range keyedOps {
			if !key && op.strategy == conductor.IdempotencyReturnExisting {
				continue // the same start as FAIL_ON_RUNNING without a key
			}
			name := op.name
			if !key {
				name += " without a key"
			}
			t.Run(name, func(t *testing.T) {
				ctx := testutil.Context(t, 30*time.Second)
				var behind atomic.Bool
				var waits atomic.Int32
				e := startCatchingUp(t, keyRunners{}, func(ctx context.Context) error {
					if !behind.Load() {
						return nil
					}
					waits.Add(1)
					<-ctx.Done()
					return ctx.Err()
				})
				var id string
				var err error
				if op.reopen == nil {
					behind.Store(true)
					id, _, err = e.StartWorkflow(ctx, keyedRequest(t, key, op.strategy), StartOptions{})
				} else {
					id = endedWorkflow(ctx, t, e, key)
					behind.Store(true)
					_, err = e.Submit(ctx, id, op.reopen, Meta{})
				}
				if !key {
					if err != nil || waits.Load() != 0 {
						t.Fatalf("%s: %v after %d waits for the read model, want it done without one", name, err, waits.Load())
					}
					return
				}
				if !errors.Is(err, fault.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("%s: %v, want unavailable", name, err)
				}
				if op.reopen == nil {
					if id != "" {
						t.Fatalf("refused, the start answers %q", id)
					}
					return
				}
				if w, err := e.State(ctx, id); err != nil || w == nil || w.Status != conductor.WorkflowTerminated {
					t.Fatalf("refused, the workflow is %v (%v), want it TERMINATED still", w, err)
				}
			})
		}
	}
}
