package events

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/executor"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// haltingEngine runs its action number at (counted from 0, over every
// action's decision it is asked for) through halt, which is given the
// decision's submit: the fault a test injects there.
type haltingEngine struct {
	Engine
	at   int
	halt func(submit func() (executor.Outcome, error)) (executor.Outcome, error)
	n    int
}

func (e *haltingEngine) Submit(ctx context.Context, wfID string, trig engine.Trigger, meta executor.Meta) (executor.Outcome, error) {
	submit := func() (executor.Outcome, error) { return e.Engine.Submit(ctx, wfID, trig, meta) }
	if trig == nil {
		return submit()
	}
	n := e.n
	e.n++
	if n != e.at {
		return submit()
	}
	return e.halt(submit)
}

// dies ends the goroutine of an engine's action, before its decision or
// once it landed: nothing after it runs, the claim's end included, as in
// an engine whose process died there.
func dies(landed bool) func(func() (executor.Outcome, error)) (executor.Outcome, error) {
	return func(submit func() (executor.Outcome, error)) (executor.Outcome, error) {
		if landed {
			submit()
		}
		runtime.Goexit()
		return executor.Outcome{}, nil
	}
}

// timesOut submits the decision and answers that the time ran out, as an
// append whose answer was lost.
func timesOut(submit func() (executor.Outcome, error)) (executor.Outcome, error) {
	submit()
	return executor.Outcome{}, fmt.Errorf("append: %w", context.DeadlineExceeded)
}

// deliverAway delivers the event as deliver does, on a goroutine of its
// own (which the engine's death ends), and returns once it ended.
func deliverAway(l *Listener, subject, payload, msgID string) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		deliver(l, subject, payload, msgID)
	}()
	<-done
}

// paidHandler, of the name given, updates wf's variables, then completes
// its task w.
func paidHandler(name string) *conductor.EventHandler {
	return &conductor.EventHandler{Name: name, Event: "nats:payments.done", CreatedBy: "app:shop", Active: true,
		Actions: []conductor.EventAction{
			{Action: conductor.ActionUpdateWorkflowVariables,
				UpdateWorkflowVariables: map[string]any{"workflowId": "${wf}", "variables": map[string]any{"paid": "${amount}"}}},
			{Action: conductor.ActionCompleteTask,
				CompleteTask: map[string]any{"workflowId": "${wf}", "taskRefName": "w"}},
		}}
}

const paidEvent = `{"wf": "wf-1", "amount": 150}`

// An engine that dies while it runs an event's action (after its claim,
// before the claim's end) left the action claimed for good: the event
// published again (an EVENT task run again once its lease ran out,
// minutes later) ran nothing of it, and the action was lost. A copy past
// ClaimLease, on another engine sharing the log, takes the claim over and
// finishes what the dead engine left: the action it died in, unless its
// decision landed before it died (then that action on the state now
// would act on what came since: w of a rerun), and the ones after. A copy
// within the lease runs nothing: the claiming engine may be running it.
func TestDeadEnginesActionIsTakenOver(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name   string
		at     int // the action the first engine halts in
		halt   func(func() (executor.Outcome, error)) (executor.Outcome, error)
		rerun  bool // a rerun between the two copies
		within bool // the second copy within the lease
		// then
		wCompleted bool // the w of the second copy's time
		updates    int  // variables updates
	}{
		{name: "dies before its first action lands", at: 0, halt: dies(false), wCompleted: true, updates: 1},
		{name: "dies once its first action landed", at: 0, halt: dies(true), wCompleted: true, updates: 1},
		{name: "dies once its second action landed, a rerun since", at: 1, halt: dies(true), rerun: true, updates: 1},
		{name: "a copy within the lease", at: 0, halt: dies(false), within: true},
		// A failure that may pass lets the next copy run the action at
		// once, but not again when it landed all the same.
		{name: "times out once its second action landed, a rerun since", at: 1, halt: timesOut, rerun: true, within: true, updates: 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := testutil.Context(t, 30*time.Second)
			l, e := startWaiting(t, "waiter", "wf-1")
			h := paidHandler("on paid")
			dying := listening(h, Config{Engine: &haltingEngine{Engine: e, at: tt.at, halt: tt.halt}, Seen: openSeen(t, l)})
			seen := openSeen(t, l)
			if !tt.within {
				seen.now = func() time.Time { return time.Now().Add(ClaimLease) }
			}
			other := listening(h, Config{Engine: e, Seen: seen})

			deliverAway(dying, "payments.done", paidEvent, "task-1")
			if tt.rerun {
				if _, err := e.Submit(ctx, "wf-1", engine.Rerun{}, executor.Meta{}); err != nil {
					t.Fatal(err)
				}
			}
			w, err := e.State(ctx, "wf-1")
			if err != nil {
				t.Fatal(err)
			}
			waiting := w.LatestByRef("w")
			if waiting == nil || waiting.Status != conductor.TaskInProgress {
				t.Fatalf("before the second copy, w is %+v; want it in progress", waiting)
			}

			deliver(other, "payments.done", paidEvent, "task-1")
			if w, err = e.State(ctx, "wf-1"); err != nil {
				t.Fatal(err)
			}
			want := conductor.TaskInProgress
			if tt.wCompleted {
				want = conductor.TaskCompleted
			}
			if got := w.TaskByID(waiting.ID).Status; got != want {
				t.Errorf("after the second copy, w is %s, want %s", got, want)
			}
			if got := variablesUpdates(t, l, "wf-1"); got != tt.updates {
				t.Errorf("%d variables updates, want %d", got, tt.updates)
			}

			// The copies after run nothing: every action ran, or (within
			// the lease) is still the dead engine's.
			before := variablesUpdates(t, l, "wf-1")
			deliver(other, "payments.done", paidEvent, "task-1")
			if w, err = e.State(ctx, "wf-1"); err != nil {
				t.Fatal(err)
			}
			if got := w.TaskByID(waiting.ID).Status; got != want {
				t.Errorf("after a third copy, w is %s, want %s", got, want)
			}
			if got := variablesUpdates(t, l, "wf-1"); got != before {
				t.Errorf("a third copy updated the variables: %d updates, were %d", got, before)
			}
		})
	}
}

// Two copies of an event at two engines at once ran the actions each
// found unclaimed: while one ran the first, the other claimed and ran the
// second, so the task a handler completes after updating the variables
// was completed first, and the workflow went on without them. A copy
// that finds an action running on another engine leaves it and the ones
// after it to that engine, which runs them in order.
func TestCopiesAtOnceRunTheActionsInOrder(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, 30*time.Second)
	l, e := startWaiting(t, "waiter", "wf-1")
	h := paidHandler("on paid")
	// The first engine's first action waits, inside its claim, until the
	// other engine's copy is handled.
	reached, handled := make(chan struct{}), make(chan struct{})
	first := listening(h, Config{Seen: openSeen(t, l), Engine: &haltingEngine{Engine: e, at: 0,
		halt: func(submit func() (executor.Outcome, error)) (executor.Outcome, error) {
			close(reached)
			<-handled
			return submit()
		}}})
	second := listening(h, Config{Engine: e, Seen: openSeen(t, l)})
	done := make(chan struct{})
	go func() {
		defer close(done)
		deliver(first, "payments.done", paidEvent, "task-1")
	}()
	<-reached
	deliver(second, "payments.done", paidEvent, "task-1")
	w, err := e.State(ctx, "wf-1")
	if err != nil {
		t.Fatal(err)
	}
	if got := w.LatestByRef("w").Status; got != conductor.TaskInProgress {
		t.Errorf("while the first copy updates the variables, the second completed w (%s)", got)
	}
	close(handled)
	<-done
	if w, err = e.State(ctx, "wf-1"); err != nil {
		t.Fatal(err)
	}
	if got := w.LatestByRef("w").Status; got != conductor.TaskCompleted {
		t.Errorf("after both copies, w is %s, want COMPLETED", got)
	}
	if got := variablesUpdates(t, l, "wf-1"); got != 1 {
		t.Errorf("%d variables updates, want 1", got)
	}
	for _, a := range h.Actions {
		if got := runsOf(t, second, a.Action, outcomeDuplicate); got != 1 {
			t.Errorf("the second copy counted %v duplicates of %s, want 1", got, a.Action)
		}
	}
}
