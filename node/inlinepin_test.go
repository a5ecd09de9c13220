package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/events"
	"github.com/flowvault/flowvault/executor"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/projections/executions/query"
	"github.com/flowvault/flowvault/scheduler"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// nameMove is a change to the name of alice's inline definition (flow,
// its task referenced as "inline_step") that lands between the check of
// its start and the start, and whether the start is refused.
type nameMove struct {
	name    string
	flow    string
	change  func(p *pinned, ctx context.Context) error
	refused bool
}

// on is the move's change on p.
func (mv nameMove) on(p *pinned) func(ctx context.Context) error {
	return func(ctx context.Context) error { return mv.change(p, ctx) }
}

// nameMoves: the name registered by someone else, or passed to another
// owner, would have the execution as theirs, decided on CREATE alone of
// a name registered nowhere, or UPDATE of alice's own definition; alice
// changing her own definition moves nothing that was decided on.
var nameMoves = []nameMove{
	{"registered by someone else", "fresh_flow", func(p *pinned, ctx context.Context) error {
		return p.register(ctx, "fresh_flow", "admin", "admins_step")
	}, true},
	{"passed to another owner", "shared_flow", (*pinned).takeOver, true},
	{"changed by its owner", "shared_flow", func(p *pinned, ctx context.Context) error {
		return p.register(ctx, "shared_flow", "alice", "alices_next_step")
	}, false},
}

// eachMove runs test, in parallel, for each of nameMoves on a pinned of
// its own.
func eachMove(t *testing.T, test func(t *testing.T, ctx context.Context, p *pinned, mv nameMove)) {
	for _, mv := range nameMoves {
		t.Run(mv.name, func(t *testing.T) {
			t.Parallel()
			ctx := testutil.Context(t, time.Minute)
			test(t, ctx, newPinned(t, ctx), mv)
		})
	}
}

// inline is alice's definition of flow, sent inline.
func inline(t *testing.T, flow string) *conductor.WorkflowDef {
	t.Helper()
	def, err := waiting(flow, "inline_step")
	if err != nil {
		t.Fatal(err)
	}
	return def
}

// mayNotUpdate is what alice's check of a start under a name moved to
// the admin says, checked again after the refusal.
const mayNotUpdate = "alice may not UPDATE"

// ownRegistration is alice registering the name of her inline
// fresh_flow herself (its task "alices_fresh_step"), which her check,
// asked again, allows: CREATE, and UPDATE of her own definition.
func (p *pinned) ownRegistration(ctx context.Context) error {
	return p.register(ctx, "fresh_flow", "alice", "alices_fresh_step")
}

// A schedule's inline definition starts under its name as the owner's
// check saw it: registered by the admin, or passed to them, between the
// check and the start, the start is refused, and the run, checked again,
// is recorded FAILED as alice's start refused, where the workflow ran
// under the admin's name (theirs to read, their idempotency keys') on a
// decision that asked alice CREATE alone, or UPDATE of her own
// definition.
func TestScheduleRefusesAnInlineStartWhoseNameMovedSinceItsCheck(t *testing.T) {
	t.Parallel()
	eachMove(t, func(t *testing.T, ctx context.Context, p *pinned, mv nameMove) {
		req := &conductor.StartWorkflowRequest{Name: mv.flow, WorkflowDef: inline(t, mv.flow)}
		a, schedules := p.firstFire(t, ctx, req, mv.on(p))
		if !p.refusedIfMoved(t, ctx, a, mv.refused) {
			return
		}
		// A conflict alone reads to the firer as its claim's start
		// landed already: the run would show started, and nothing ran.
		run := recordedRun(t, ctx, schedules, a.asked)
		if run.State != "FAILED" || !strings.Contains(run.Reason, mayNotUpdate) {
			t.Fatalf("the run is %s (%q), want FAILED saying %s", run.State, run.Reason, mayNotUpdate)
		}
		if wf, err := p.exec.State(ctx, a.asked); err != nil || wf != nil {
			t.Fatalf("workflow %s = %v, %v; want none", a.asked, wf, err)
		}
	})
}

// A schedule's start refused because its inline definition's name moved
// since its check is checked again on the name as it is, and starts
// where that allows it: alice registering her fresh_flow herself as it
// fires does not lose the run, where it was recorded FAILED saying the
// name moved.
func TestScheduleChecksAgainAnInlineStartWhoseNameMovedSinceItsCheck(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, time.Minute)
	p := newPinned(t, ctx)
	req := &conductor.StartWorkflowRequest{Name: "fresh_flow", WorkflowDef: inline(t, "fresh_flow")}
	a, schedules := p.firstFire(t, ctx, req, p.ownRegistration)
	if !errors.Is(a.err, fault.ErrStale) {
		t.Fatalf("start = %q, %v; want it refused, stale", a.id, a.err)
	}
	if run := recordedRun(t, ctx, schedules, a.asked); run.State != "EXECUTED" {
		t.Fatalf("the run is %s (%q), want EXECUTED", run.State, run.Reason)
	}
	p.ranAsAlice(t, ctx, a.asked, "inline_step")
}

// recordedRun waits until the run of schedules that starts workflow id
// is recorded, and returns it.
func recordedRun(t *testing.T, ctx context.Context, schedules *scheduler.Store, id string) conductor.ScheduleExecution {
	t.Helper()
	var run conductor.ScheduleExecution
	testutil.Eventually(t, 30*time.Second, 10*time.Millisecond, func() error {
		runs, _, err := schedules.Executions(ctx, query.Search{Size: 100}, nil)
		if err != nil {
			return err
		}
		for _, run = range runs {
			if run.ExecutionID == id && run.State != "POLLED" {
				return nil
			}
		}
		return fmt.Errorf("the run of %s is not recorded yet", id)
	})
	return run
}

// A SUB_WORKFLOW's inline definition (subWorkflowDef) starts under its
// name as the check of its starter's principals saw it: registered by the
// admin, or passed to them, between the check and the start, the start
// is refused, and the task, checked again, fails as alice's start
// refused, where the child ran under the admin's name on a decision that
// asked alice CREATE alone, or UPDATE of her own definition.
func TestSubWorkflowRefusesAnInlineStartWhoseNameMovedSinceItsCheck(t *testing.T) {
	t.Parallel()
	eachMove(t, func(t *testing.T, ctx context.Context, p *pinned, mv nameMove) {
		status, reason, child := p.subWorkflowOf(t, ctx, mv.flow, mv.on(p))
		switch {
		case !mv.refused && child == nil:
			t.Fatalf("the SUB_WORKFLOW ended %s (%q) without a child, want it started", status, reason)
		case !mv.refused:
			p.ranAsAlice(t, ctx, child.ID, "inline_step")
		case child != nil:
			t.Fatalf("the child started, running %v as %v; want the SUB_WORKFLOW refused", child.Name, child.Principals())
		case status != conductor.TaskFailed || !strings.Contains(reason, mayNotUpdate):
			t.Fatalf("the SUB_WORKFLOW is %s (%q), want FAILED saying %s", status, reason, mayNotUpdate)
		}
	})
}

// A SUB_WORKFLOW's start refused because its inline definition's name
// moved since its check is checked again on the name as it is, and
// starts where that allows it: alice registering her fresh_flow herself
// as her workflow starts it does not fail the task, where it failed
// saying the name moved.
func TestSubWorkflowChecksAgainAnInlineStartWhoseNameMovedSinceItsCheck(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, time.Minute)
	p := newPinned(t, ctx)
	status, reason, child := p.subWorkflowOf(t, ctx, "fresh_flow", p.ownRegistration)
	if child == nil {
		t.Fatalf("the SUB_WORKFLOW ended %s (%q) without a child, want it started", status, reason)
	}
	p.ranAsAlice(t, ctx, child.ID, "inline_step")
}

// subWorkflowOf starts alice's workflow whose one task is a SUB_WORKFLOW
// of her inline definition of flow, where change lands between the
// check of the child's start and the start, and returns the task's
// status and reason once its child started or it ended, and the child
// (nil: none started).
func (p *pinned) subWorkflowOf(t *testing.T, ctx context.Context, flow string, change func(context.Context) error) (status, reason string, child *engine.Workflow) {
	t.Helper()
	p.exec.SetStartCheck(changingAfter(t, p.check, flow, change))
	var parent conductor.WorkflowDef
	if err := conductor.Unmarshal([]byte(`{"name":"parent","tasks":[{"name":"s","taskReferenceName":"s","type":"SUB_WORKFLOW",
	  "subWorkflowParam":{"name":"`+flow+`","workflowDefinition":`+string(inline(t, flow).Raw)+`}}]}`), &parent); err != nil {
		t.Fatal(err)
	}
	id, _, err := p.exec.StartWorkflow(ctx, conductor.StartWorkflowRequest{Name: "parent", WorkflowDef: &parent},
		executor.StartOptions{CreatedBy: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	var childID string
	testutil.Eventually(t, 30*time.Second, 10*time.Millisecond, func() error {
		wf, err := p.exec.State(ctx, id)
		if err != nil {
			return err
		}
		if len(wf.Tasks) == 0 {
			return fmt.Errorf("workflow %s has no task yet", id)
		}
		task := wf.Tasks[0]
		status, reason, childID = task.Status, task.Reason, task.SubWorkflowID
		if !task.Active() {
			return nil
		}
		if childID != "" {
			if w, err := p.exec.State(ctx, childID); err != nil || w != nil {
				return err
			}
		}
		return fmt.Errorf("the SUB_WORKFLOW is %s, its child not started", status)
	})
	if childID != "" {
		if child, err = p.exec.State(ctx, childID); err != nil {
			t.Fatal(err)
		}
	}
	return status, reason, child
}

// counted is check, counting the starts it is asked to decide.
func counted(check executor.StartCheck, asked *atomic.Int32) executor.StartCheck {
	return func(ctx context.Context, principals []string, req conductor.StartWorkflowRequest) (executor.Pin, error) {
		asked.Add(1)
		return check(ctx, principals, req)
	}
}

// An event handler's start_workflow of an inline definition starts under
// its name as the check of its principals saw it: registered by the
// admin, or passed to them, between the check and the start, the start
// is refused, and the action, checked again at once, is refused as
// alice's start refused, where the workflow ran under the admin's name
// on a decision that asked alice CREATE alone, or UPDATE of her own
// definition.
func TestEventHandlerRefusesAnInlineStartWhoseNameMovedSinceItsCheck(t *testing.T) {
	t.Parallel()
	eachMove(t, func(t *testing.T, ctx context.Context, p *pinned, mv nameMove) {
		h := inlineHandler(t, mv.flow)
		starter := &takingOver{Executor: p.exec, t: t, change: mv.on(p), first: make(chan answer, 1)}
		// What ran on an event: an action done is not run again.
		seen, err := events.OpenSeen(ctx, p.log.JetStream(), 1, p.log, testutil.Logger(t))
		if err != nil {
			t.Fatal(err)
		}
		var asked atomic.Int32
		listen(t, ctx, events.Config{Handlers: handlers{h}, Conn: p.log.Conn(), Engine: starter, Logger: testutil.Logger(t),
			Authz: eventAuthorizer{authz: p.authz, mayStart: counted(p.check, &asked)}, Seen: seen})
		publish := func() error { return p.publishOrder("e-1") }
		var a answer
		testutil.Eventually(t, 30*time.Second, 20*time.Millisecond, func() error {
			// Published again until the listener has subscribed: the
			// same message id starts one workflow.
			select {
			case a = <-starter.first:
				return nil
			default:
			}
			if err := publish(); err != nil {
				return err
			}
			return errors.New("the action has not started its workflow yet")
		})
		if !p.refusedIfMoved(t, ctx, a, mv.refused) {
			return
		}
		// Read as its own start landed already, the action would be
		// done without asking again: it is checked again at once, on
		// the name as it is, which refuses it.
		testutil.Eventually(t, 30*time.Second, 10*time.Millisecond, func() error {
			if n := asked.Load(); n < 2 {
				return fmt.Errorf("the start was checked %d times, want again after the refusal", n)
			}
			return nil
		})
		if wf, err := p.exec.State(ctx, a.asked); err != nil || wf != nil {
			t.Fatalf("workflow %s = %v, %v; want none", a.asked, wf, err)
		}
	})
}

// An event handler's start_workflow refused because its inline
// definition's name moved since its check is checked again at once, and
// starts where that allows it: alice registering her fresh_flow herself
// as the event arrives does not lose the action, where it waited for the
// same event to be published again, which nothing but its publisher
// does.
func TestEventHandlerChecksAgainAnInlineStartWhoseNameMovedSinceItsCheck(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, time.Minute)
	p := newPinned(t, ctx)
	starter := &takingOver{Executor: p.exec, t: t, change: p.ownRegistration, first: make(chan answer, 1)}
	listen(t, ctx, events.Config{Handlers: handlers{inlineHandler(t, "fresh_flow")}, Conn: p.log.Conn(), Engine: starter,
		Logger: testutil.Logger(t), Authz: eventAuthorizer{authz: p.authz, mayStart: p.check}})
	var a answer
	sent := 0
	testutil.Eventually(t, 30*time.Second, 20*time.Millisecond, func() error {
		// An event of its own each time, until the listener has
		// subscribed: the first one's action alone meets the move, and
		// none is published again.
		select {
		case a = <-starter.first:
			return nil
		default:
		}
		sent++
		if err := p.publishOrder(fmt.Sprintf("e-%d", sent)); err != nil {
			return err
		}
		return errors.New("the action has not started its workflow yet")
	})
	if !errors.Is(a.err, fault.ErrStale) {
		t.Fatalf("start = %q, %v; want it refused, stale", a.id, a.err)
	}
	testutil.Eventually(t, 30*time.Second, 10*time.Millisecond, func() error {
		wf, err := p.exec.State(ctx, a.asked)
		if err == nil && wf == nil {
			err = fmt.Errorf("workflow %s has not started", a.asked)
		}
		return err
	})
	p.ranAsAlice(t, ctx, a.asked, "inline_step")
}

// inlineHandler is alice's handler of orders.new whose action starts her
// inline definition of flow.
func inlineHandler(t *testing.T, flow string) *conductor.EventHandler {
	t.Helper()
	var def map[string]any
	if err := json.Unmarshal(inline(t, flow).Raw, &def); err != nil {
		t.Fatal(err)
	}
	return &conductor.EventHandler{Name: "on_order", Event: "nats:orders.new", Active: true, CreatedBy: "alice",
		Actions: []conductor.EventAction{{Action: conductor.ActionStartWorkflow, StartWorkflow: map[string]any{"name": flow, "workflowDef": def}}}}
}

// publishOrder publishes an event to orders.new under message id msgID.
func (p *pinned) publishOrder(msgID string) error {
	m := nats.NewMsg("orders.new")
	m.Data = []byte(`{}`)
	m.Header.Set(nats.MsgIdHdr, msgID)
	return p.log.Conn().PublishMsg(m)
}

// refusedIfMoved fails t unless the start answered a is refused, stale,
// with no workflow started, where refused says it is, or else runs alice's
// inline definition as alice alone; it reports whether it was refused.
func (p *pinned) refusedIfMoved(t *testing.T, ctx context.Context, a answer, refused bool) bool {
	t.Helper()
	if !refused {
		if a.err != nil {
			t.Fatalf("start = %v, want it started", a.err)
		}
		p.ranAsAlice(t, ctx, a.id, "inline_step")
		return false
	}
	if !errors.Is(a.err, fault.ErrStale) {
		t.Fatalf("start = %q, %v; want it refused, stale", a.id, a.err)
	}
	if wf, err := p.exec.State(ctx, a.asked); err != nil || wf != nil {
		t.Fatalf("workflow %s = %v, %v; want none", a.asked, wf, err)
	}
	return true
}
