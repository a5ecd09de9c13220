package events

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	dto "github.com/prometheus/client_model/go"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/executor"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// openSeen opens the bucket of the log l's server over a connection of
// its own, as each engine does.
func openSeen(t *testing.T, l *eventlog.Log) *Seen {
	t.Helper()
	nc, err := l.ConnectInProcess()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	var s *Seen
	js, err := jetstream.New(nc)
	if err == nil {
		s, err = OpenSeen(testutil.Context(t, 30*time.Second), js, 1, nil, testutil.Logger(t))
	}
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// variablesUpdates counts the variables updates in workflow id's records.
func variablesUpdates(t *testing.T, l *eventlog.Log, id string) int {
	t.Helper()
	recs, err := l.ReadSubject(testutil.Context(t, 30*time.Second), "fv.wf."+eventlog.Token(id), 0)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, r := range recs {
		for _, env := range r.Events {
			if env.Type == (&schemas.VariablesUpdated{}).EventType() {
				n++
			}
		}
	}
	return n
}

// runsOf reads the runs counter of action and outcome.
func runsOf(t *testing.T, l *Listener, action, outcome string) float64 {
	t.Helper()
	var m dto.Metric
	if err := l.runs.WithLabelValues(action, outcome).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// An EVENT task run again (its engine died before its result was
// recorded; another published its event again minutes later, under the
// same message id) runs no action of a handler again, on whichever engine
// receives it: a complete_task by reference name completed the task of
// that name a rerun had scheduled since, and an update_workflow_variables
// set them again. Another message id is another event, and runs them.
func TestEventPublishedAgainRunsNoActionAgain(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name         string
		first, again string // the message ids of the two events
		twoEngines   bool   // the second received by another engine
		ranAgain     bool
	}{
		{name: "the same message id", first: "task-1", again: "task-1"},
		{name: "the same message id, on another engine", first: "task-1", again: "task-1", twoEngines: true},
		{name: "a message id of characters keys refuse", first: "task 1.*>/é", again: "task 1.*>/é"},
		{name: "two message ids", first: "task-1", again: "task-2", ranAgain: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := testutil.Context(t, 30*time.Second)
			l, e := startWaiting(t, "waiter", "wf-1")
			h := paidHandler("on paid.*")
			first := listening(h, Config{Engine: e, Seen: openSeen(t, l)})
			second := first
			if tt.twoEngines {
				second = listening(h, Config{Engine: e, Seen: openSeen(t, l)})
			}

			deliver(first, "payments.done", paidEvent, tt.first)
			w, err := e.State(ctx, "wf-1")
			if err != nil {
				t.Fatal(err)
			}
			if w.Status != conductor.WorkflowCompleted || variablesUpdates(t, l, "wf-1") != 1 {
				t.Fatalf("after the first event: workflow %s, %d variables updates; want COMPLETED, 1",
					w.Status, variablesUpdates(t, l, "wf-1"))
			}
			// A rerun schedules w again: the first event's task is not it.
			if _, err := e.Submit(ctx, "wf-1", engine.Rerun{}, executor.Meta{}); err != nil {
				t.Fatal(err)
			}
			if w, err = e.State(ctx, "wf-1"); err != nil {
				t.Fatal(err)
			}
			rerun := w.LatestByRef("w")
			if rerun == nil || rerun.Status != conductor.TaskInProgress {
				t.Fatalf("after the rerun, w is %+v; want it in progress", rerun)
			}

			deliver(second, "payments.done", paidEvent, tt.again)
			if w, err = e.State(ctx, "wf-1"); err != nil {
				t.Fatal(err)
			}
			wantStatus, wantUpdates := conductor.TaskInProgress, 1
			if tt.ranAgain {
				wantStatus, wantUpdates = conductor.TaskCompleted, 2
			}
			if got := w.TaskByID(rerun.ID).Status; got != wantStatus {
				t.Errorf("the rerun's w is %s after the second event, want %s", got, wantStatus)
			}
			if got := variablesUpdates(t, l, "wf-1"); got != wantUpdates {
				t.Errorf("%d variables updates, want %d", got, wantUpdates)
			}
			wantDuplicates := 1.0
			if tt.ranAgain {
				wantDuplicates = 0
			}
			for _, a := range h.Actions {
				if got := runsOf(t, second, a.Action, outcomeDuplicate); got != wantDuplicates {
					t.Fatalf("%s counted %v duplicates, want %v", a.Action, got, wantDuplicates)
				}
			}
		})
	}
}

// flakyEngine fails each start with the errors in fail, in turn, then
// starts.
type flakyEngine struct {
	noDecisions
	fail   []error
	starts int
}

func (e *flakyEngine) StartWorkflow(_ context.Context, _ conductor.StartWorkflowRequest, o executor.StartOptions) (string, uint64, error) {
	e.starts++
	if len(e.fail) > 0 {
		err := e.fail[0]
		e.fail = e.fail[1:]
		return "", 0, err
	}
	return o.WorkflowID, 1, nil
}

func (e *flakyEngine) Submit(context.Context, string, engine.Trigger, executor.Meta) (executor.Outcome, error) {
	return executor.Outcome{}, fault.NotFound("no workflow")
}

// An action that failed for a reason that may pass (the engine was
// unavailable, its time ran out, a failure of no known kind) runs again
// when its event is published again, as Conductor retries it; one that
// failed for good (not found, refused) does not, as one that ran does
// not. An event without a message id (published by hand) runs every time.
func TestActionRunsAgainAfterATransientFailure(t *testing.T) {
	t.Parallel()
	l := testutil.OpenLog(t, "")
	for _, tt := range []struct {
		name   string
		msgID  string
		fail   error
		starts int // after three deliveries
	}{
		{"unavailable", "m-1", fmt.Errorf("start: %w", fault.ErrUnavailable), 2},
		{"timed out", "m-1", fmt.Errorf("start: %w", context.DeadlineExceeded), 2},
		{"of no known kind", "m-1", fmt.Errorf("start: the disk burned"), 2},
		{"not found", "m-1", fault.NotFound("workflow definition not found"), 1},
		{"forbidden", "m-1", fmt.Errorf("start: %w", fault.ErrForbidden), 1},
		{"ran", "m-1", nil, 1},
		{"no message id", "", nil, 3},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			eng := &flakyEngine{}
			if tt.fail != nil {
				eng.fail = []error{tt.fail}
			}
			// A handler of its own: the rows share the bucket.
			h := &conductor.EventHandler{Name: "h " + tt.name, Event: "nats:orders.new", CreatedBy: "app:admin", Active: true,
				Actions: []conductor.EventAction{{Action: conductor.ActionStartWorkflow, StartWorkflow: map[string]any{"name": "target"}}}}
			lis := listening(h, Config{Engine: eng, Seen: openSeen(t, l)})
			for range 3 {
				deliver(lis, "orders.new", `{}`, tt.msgID)
			}
			if eng.starts != tt.starts {
				t.Fatalf("%d starts asked, want %d", eng.starts, tt.starts)
			}
		})
	}
}

// Keys differ for every handler, message id and action, however the names
// split between them, and hold only what keys take: a hash, a dot, the
// action's position.
func TestSeenKeys(t *testing.T) {
	t.Parallel()
	keys := map[string]string{}
	for _, k := range []struct {
		handler, msgID string
		i              int
	}{
		{"ab", "c", 0}, {"a", "bc", 0}, {"abc", "", 0}, {"", "abc", 0},
		{"ab", "c", 1}, {"1:a", "b", 0}, {"h", "m.*> é", 0},
	} {
		key := seenKey(k.handler, k.msgID, k.i)
		what := fmt.Sprintf("%q, %q, %d", k.handler, k.msgID, k.i)
		if other, ok := keys[key]; ok {
			t.Fatalf("%s and %s share the key %s", what, other, key)
		}
		keys[key] = what
		for _, c := range key {
			if !strings.ContainsRune("0123456789abcdef.", c) {
				t.Fatalf("the key %q of %s holds %q", key, what, c)
			}
		}
	}
}

// A claim is held by one engine at a time: new, an action whose run
// failed in a way that may pass, or one whose engine claimed it more than
// ClaimLease ago (then it is the taker's from the takeover on); an action
// that ran, and a claim an engine of the version before wrote (an empty
// value: ran or runs), are not run again.
func TestClaimStates(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, 30*time.Second)
	l := testutil.OpenLog(t, "")
	now, later := openSeen(t, l), openSeen(t, l)
	later.now = func() time.Time { return time.Now().Add(ClaimLease) }
	want := func(s *Seen, key string, found claimed, resumed bool) claim {
		t.Helper()
		c, got, err := s.claim(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if got != found || c.resumed != resumed {
			t.Fatalf("claim of %s: %v (resumed %v), want %v (resumed %v)", key, got, c.resumed, found, resumed)
		}
		return c
	}
	c := want(now, "a", claimHeld, false)
	want(now, "a", claimElsewhere, false)
	taken := want(later, "a", claimHeld, true)
	// Taken over now: the lease counts from the takeover.
	want(now, "a", claimElsewhere, false)
	if err := now.end(ctx, c, claimDone); err == nil {
		t.Fatal("the engine the claim was taken from ended it")
	}
	if err := later.end(ctx, taken, claimRetry); err != nil {
		t.Fatal(err)
	}
	c = want(now, "a", claimHeld, true)
	if err := now.end(ctx, c, claimDone); err != nil {
		t.Fatal(err)
	}
	want(later, "a", claimRan, false)

	if _, err := now.kv.Create(ctx, "b", nil); err != nil {
		t.Fatal(err)
	}
	want(later, "b", claimRan, false)
}
