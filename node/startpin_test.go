package node

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flowvault/flowvault/auth"
	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/events"
	"github.com/flowvault/flowvault/executor"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/metadata"
	"github.com/flowvault/flowvault/projections"
	"github.com/flowvault/flowvault/scheduler"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/secrets"
	"github.com/flowvault/flowvault/webhooks"
	"github.com/flowvault/flowvault/workers"
)

// pinned is a real log, definitions and executor where alice owns
// shared_flow (its task "alices_step"), and a change that the admin makes
// meanwhile: they delete it and register their own under the name (its
// task "admins_step"), which alice holds no right on.
type pinned struct {
	log   *eventlog.Log
	defs  *metadata.Store
	exec  *executor.Executor
	check func(ctx context.Context, principals []string, req conductor.StartWorkflowRequest) (*conductor.WorkflowDef, error)
	authz workflowAuthorizer
}

func newPinned(t *testing.T, ctx context.Context) *pinned {
	t.Helper()
	l := testutil.OpenLog(t, "")
	store := testutil.OpenStore(t)
	runner := testutil.RunProjection(t, l, store, metadata.Projection{},
		projections.RunnerConfig{Stream: eventlog.Metadata.Name, Poison: projections.Park})
	defs := metadata.New(l, store, runner, metadata.Options{Logger: testutil.Logger(t)})
	p := &pinned{log: l, defs: defs}
	if err := p.register(ctx, "alice", "alices_step"); err != nil {
		t.Fatal(err)
	}
	authz := auth.NewAuthorizer(fakeGrants{})
	authz.Register(auth.TargetWorkflowDef, definitionTargets{defs})
	p.authz = workflowAuthorizer{
		principals: fakePrincipals{
			"alice": {ID: "alice", Roles: []string{auth.RoleUser}},
			"admin": {ID: "admin", Roles: []string{auth.RoleAdmin}},
		},
		authz: authz,
	}
	p.check = startCheck(defs, p.authz)
	p.exec = executor.New(l, defs, nil, executor.Config{Logger: testutil.Logger(t)})
	if err := p.exec.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.exec.Stop)
	return p
}

func (p *pinned) register(ctx context.Context, by, ref string) error {
	var def conductor.WorkflowDef
	if err := conductor.Unmarshal([]byte(`{"name":"shared_flow","tasks":[{"name":"w","taskReferenceName":"`+ref+`","type":"WAIT"}]}`), &def); err != nil {
		return err
	}
	return p.defs.RegisterWorkflowDef(ctx, &def, true, by)
}

// takeOver is the admin's change.
func (p *pinned) takeOver(ctx context.Context) error {
	if err := p.defs.DeleteWorkflowDef(ctx, "shared_flow", 1, "admin"); err != nil {
		return err
	}
	return p.register(ctx, "admin", "admins_step")
}

// ranAlices fails t unless workflow id runs alice's definition as alice
// alone.
func (p *pinned) ranAlices(t *testing.T, ctx context.Context, id string) {
	t.Helper()
	wf, err := p.exec.State(ctx, id)
	if err != nil || wf == nil {
		t.Fatalf("workflow %q: %v, %v", id, wf, err)
	}
	def, err := wf.Def()
	if err != nil {
		t.Fatal(err)
	}
	if ref := def.Tasks[0].TaskReferenceName; ref != "alices_step" || len(wf.AlsoRunsAs) != 0 {
		t.Errorf("the start runs the definition of %s as %v, want alice's, as alice alone", ref, wf.Principals())
	}
}

// takingOver is the engine, which the admin's change reaches as the
// first start is asked of it, after its check.
type takingOver struct {
	*executor.Executor
	t      *testing.T
	change func(ctx context.Context) error
	once   sync.Once
	ids    chan string
}

func (s *takingOver) StartWorkflow(ctx context.Context, req conductor.StartWorkflowRequest, o executor.StartOptions) (string, uint64, error) {
	first := false
	s.once.Do(func() {
		first = true
		if err := s.change(ctx); err != nil {
			s.t.Error(err)
		}
	})
	id, seq, err := s.Executor.StartWorkflow(ctx, req, o)
	if first {
		s.ids <- id
	}
	return id, seq, err
}

// A schedule's fire runs the definition its owner's EXECUTE was decided
// on, where it looked the name up again after its check: alice's
// schedule ran the admin's definition, registered under the name between
// the check and the start, as alice.
func TestScheduleRunsTheDefinitionItsCheckDecidedOn(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, time.Minute)
	p := newPinned(t, ctx)
	ps := testutil.OpenStore(t)
	runner := testutil.RunProjection(t, p.log, ps, scheduler.Projection{}, projections.RunnerConfig{Stream: eventlog.Metadata.Name, Poison: projections.Halt})
	schedules := scheduler.New(p.log, ps, runner, testutil.Logger(t))
	if err := schedules.Save(ctx, &conductor.WorkflowSchedule{Name: "every_second", CronExpression: "* * * * * ?",
		StartWorkflowRequest: &conductor.StartWorkflowRequest{Name: "shared_flow"}}, "alice", nil); err != nil {
		t.Fatal(err)
	}
	starter := &takingOver{Executor: p.exec, t: t, change: p.takeOver, ids: make(chan string, 1)}
	check := func(ctx context.Context, owner string, req conductor.StartWorkflowRequest) (*conductor.WorkflowDef, error) {
		return p.check(ctx, []string{owner}, req)
	}
	firing, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		scheduler.NewFirer(schedules, starter, check).Run(firing)
	}()
	t.Cleanup(func() { stop(); <-done })
	select {
	case id := <-starter.ids:
		p.ranAlices(t, ctx, id)
	case <-ctx.Done():
		t.Fatal("the schedule never fired")
	}
}

// takingOverAfter is check, after which the admin's change lands as the
// first start of shared_flow is decided.
func (p *pinned) takingOverAfter(t *testing.T, check executor.StartCheck) executor.StartCheck {
	var once sync.Once
	return func(ctx context.Context, principals []string, req conductor.StartWorkflowRequest) (*conductor.WorkflowDef, error) {
		def, err := check(ctx, principals, req)
		if req.Name == "shared_flow" {
			once.Do(func() {
				if err := p.takeOver(ctx); err != nil {
					t.Error(err)
				}
			})
		}
		return def, err
	}
}

// A SUB_WORKFLOW runs the definition its starter's EXECUTE was decided
// on, where the executor looked the name up again after its check:
// alice's workflow started the admin's definition, registered under the
// name between the check and the start, as its child.
func TestSubWorkflowRunsTheDefinitionItsCheckDecidedOn(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, time.Minute)
	p := newPinned(t, ctx)
	p.exec.SetStartCheck(p.takingOverAfter(t, p.check))
	var parent conductor.WorkflowDef
	if err := conductor.Unmarshal([]byte(`{"name":"parent","tasks":[{"name":"s","taskReferenceName":"s","type":"SUB_WORKFLOW",
	  "subWorkflowParam":{"name":"shared_flow"}}]}`), &parent); err != nil {
		t.Fatal(err)
	}
	id, _, err := p.exec.StartWorkflow(ctx, conductor.StartWorkflowRequest{Name: "parent", WorkflowDef: &parent},
		executor.StartOptions{CreatedBy: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	for {
		wf, err := p.exec.State(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if len(wf.Tasks) > 0 && wf.Tasks[0].SubWorkflowID != "" {
			child, err := p.exec.State(ctx, wf.Tasks[0].SubWorkflowID)
			if err != nil {
				t.Fatal(err)
			}
			if child != nil {
				p.ranAlices(t, ctx, child.ID)
				return
			}
		}
		if len(wf.Tasks) > 0 && !wf.Tasks[0].Active() {
			t.Fatalf("the SUB_WORKFLOW ended %s (%s) without a child", wf.Tasks[0].Status, wf.Tasks[0].Reason)
		}
		select {
		case <-ctx.Done():
			t.Fatal("the SUB_WORKFLOW never started its child")
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// A producer's start command runs the definition its principal's EXECUTE
// was decided on, where the executor looked the name up again after its
// check: alice's command started the admin's definition, registered
// under the name between the check and the start, as alice.
func TestStartCommandRunsTheDefinitionItsCheckDecidedOn(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, time.Minute)
	p := newPinned(t, ctx)
	p.exec.SetStartCheck(p.takingOverAfter(t, p.check))
	m := &nats.Msg{Subject: workers.StartSubject("shared_flow", "alice"), Data: []byte(`{}`), Header: nats.Header{}}
	m.Header.Set(jetstream.MsgIDHeader, "m-1")
	if _, err := p.log.JetStream().PublishMsg(ctx, m); err != nil {
		t.Fatal(err)
	}
	id := engine.DeriveID("start-command", "alice", "m-1")
	testutil.Eventually(t, 30*time.Second, 10*time.Millisecond, func() error {
		if w, err := p.exec.State(ctx, id); err != nil || w == nil {
			return fmt.Errorf("workflow %s: %v, %v", id, w, err)
		}
		return nil
	})
	p.ranAlices(t, ctx, id)
}

// handlers are the event handlers a test's listener runs.
type handlers []*conductor.EventHandler

func (h handlers) EventHandlers(context.Context) ([]*conductor.EventHandler, error) { return h, nil }

// An event handler's start_workflow runs the definition its principal's
// EXECUTE was decided on, where the listener looked the name up again
// after its check: alice's handler started the admin's definition,
// registered under the name between the check and the start, as alice.
func TestEventHandlerRunsTheDefinitionItsCheckDecidedOn(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, time.Minute)
	p := newPinned(t, ctx)
	h := &conductor.EventHandler{Name: "on_order", Event: "nats:orders.new", Active: true, CreatedBy: "alice",
		Actions: []conductor.EventAction{{Action: conductor.ActionStartWorkflow, StartWorkflow: map[string]any{"name": "shared_flow"}}}}
	l := events.New(ctx, events.Config{Handlers: handlers{h}, Conn: p.log.Conn(), Engine: p.exec, Logger: testutil.Logger(t),
		Authz: eventAuthorizer{authz: p.authz, mayStart: p.takingOverAfter(t, p.check)}})
	if err := l.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	listening, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		l.Run(listening)
	}()
	t.Cleanup(func() { stop(); <-done })
	id := engine.DeriveID("event", h.Name, "e-1", "0")
	testutil.Eventually(t, 30*time.Second, 20*time.Millisecond, func() error {
		// Published again until the listener has subscribed: the same
		// message id starts one workflow.
		m := nats.NewMsg("orders.new")
		m.Data = []byte(`{}`)
		m.Header.Set(nats.MsgIdHdr, "e-1")
		if err := p.log.Conn().PublishMsg(m); err != nil {
			return err
		}
		if w, err := p.exec.State(ctx, id); err != nil || w == nil {
			return fmt.Errorf("workflow %s: %v, %v", id, w, err)
		}
		return nil
	})
	p.ranAlices(t, ctx, id)
}

// webhook is the one webhook a test's receiver knows.
type webhook struct{ c *conductor.WebhookConfig }

func (w webhook) Webhook(context.Context, string) (*conductor.WebhookConfig, error) { return w.c, nil }

// token is the verifier's secret of a test's webhook, which its owner
// may read.
type token struct{ webhookAuthorizer }

func (token) MayReadSecret(context.Context, string, string) error { return nil }

func (token) Revision(context.Context, string) (secrets.Revision, error) {
	return secrets.Revision{Exists: true}, nil
}

func (token) Read(context.Context, string, secrets.Revision) (secrets.Value, secrets.Served, error) {
	return secrets.Value("tok"), secrets.Served{}, nil
}

// A webhook's delivery runs the definition its owner's EXECUTE was
// decided on, where the receiver looked the name up again after its
// check: alice's webhook started the admin's definition, registered
// under the name between the check and the start, as alice.
func TestWebhookRunsTheDefinitionItsCheckDecidedOn(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, time.Minute)
	p := newPinned(t, ctx)
	authz := token{webhookAuthorizer{eventAuthorizer{authz: p.authz, mayStart: p.takingOverAfter(t, p.check)}}}
	r := &webhooks.Receiver{Engine: p.exec, Authz: authz, Secrets: authz,
		Store: webhook{&conductor.WebhookConfig{ID: "h", Verifier: "HEADER_BASED", Headers: map[string]string{"X-Token": "${workflow.secrets.tok}"},
			WorkflowsToStart: map[string]int{"shared_flow": 0}, CreatedBy: "alice"}}}
	out, err := r.Deliver(ctx, "h", http.Header{"X-Token": {"tok"}}, []byte(`{}`))
	if err != nil || len(out.Started) != 1 {
		t.Fatalf("Deliver = %+v, %v; want one workflow started", out, err)
	}
	p.ranAlices(t, ctx, out.Started[0])
}
