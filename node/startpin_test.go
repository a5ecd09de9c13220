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
	check executor.StartCheck
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
	if err := p.register(ctx, "shared_flow", "alice", "alices_step"); err != nil {
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

func (p *pinned) register(ctx context.Context, name, by, ref string) error {
	def, err := waiting(name, ref)
	if err != nil {
		return err
	}
	return p.defs.RegisterWorkflowDef(ctx, def, true, by)
}

// waiting is a definition of workflow name whose one task, a WAIT, is
// referenced as ref.
func waiting(name, ref string) (*conductor.WorkflowDef, error) {
	var def conductor.WorkflowDef
	err := conductor.Unmarshal([]byte(`{"name":"`+name+`","tasks":[{"name":"w","taskReferenceName":"`+ref+`","type":"WAIT"}]}`), &def)
	return &def, err
}

// takeOver is the admin's change.
func (p *pinned) takeOver(ctx context.Context) error {
	if err := p.defs.DeleteWorkflowDef(ctx, "shared_flow", 1, "admin"); err != nil {
		return err
	}
	return p.register(ctx, "shared_flow", "admin", "admins_step")
}

// ranAlices fails t unless workflow id runs alice's definition as alice
// alone.
func (p *pinned) ranAlices(t *testing.T, ctx context.Context, id string) {
	t.Helper()
	p.ranAsAlice(t, ctx, id, "alices_step")
}

// ranAsAlice fails t unless workflow id runs the definition whose task is
// referenced as ref, as alice alone.
func (p *pinned) ranAsAlice(t *testing.T, ctx context.Context, id, ref string) {
	t.Helper()
	wf, err := p.exec.State(ctx, id)
	if err != nil || wf == nil {
		t.Fatalf("workflow %q: %v, %v", id, wf, err)
	}
	def, err := wf.Def()
	if err != nil {
		t.Fatal(err)
	}
	if got := def.Tasks[0].TaskReferenceName; got != ref || len(wf.AlsoRunsAs) != 0 {
		t.Errorf("the start runs the definition of %s as %v, want the one of %s, as alice alone", got, wf.Principals(), ref)
	}
}

// takingOver is the engine, which the admin's change reaches as the
// first start is asked of it, after its check.
type takingOver struct {
	*executor.Executor
	t      *testing.T
	change func(ctx context.Context) error
	once   sync.Once
	first  chan answer
}

// answer is how the engine answered a start: the workflow id it asked
// for, and the one it answered.
type answer struct {
	asked, id string
	err       error
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
		s.first <- answer{asked: o.WorkflowID, id: id, err: err}
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
	a, _ := p.firstFire(t, ctx, &conductor.StartWorkflowRequest{Name: "shared_flow"}, p.takeOver)
	p.ranAlices(t, ctx, a.id)
}

// firstFire saves alice's schedule of req, firing every second, and
// answers how the engine answered its first start, which change reaches
// after its check. It returns the schedules too, which fire until t ends.
func (p *pinned) firstFire(t *testing.T, ctx context.Context, req *conductor.StartWorkflowRequest, change func(context.Context) error) (answer, *scheduler.Store) {
	t.Helper()
	ps := testutil.OpenStore(t)
	runner := testutil.RunProjection(t, p.log, ps, scheduler.Projection{}, projections.RunnerConfig{Stream: eventlog.Metadata.Name, Poison: projections.Halt})
	schedules := scheduler.New(p.log, ps, runner, testutil.Logger(t))
	if err := schedules.Save(ctx, &conductor.WorkflowSchedule{Name: "every_second", CronExpression: "* * * * * ?",
		StartWorkflowRequest: req}, "alice", nil); err != nil {
		t.Fatal(err)
	}
	starter := &takingOver{Executor: p.exec, t: t, change: change, first: make(chan answer, 1)}
	check := func(ctx context.Context, owner string, req conductor.StartWorkflowRequest) (executor.Pin, error) {
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
	case a := <-starter.first:
		return a, schedules
	case <-ctx.Done():
		t.Fatal("the schedule never fired")
	}
	return answer{}, nil
}

// takingOverAfter is check, after which the admin's change lands as the
// first start of shared_flow is decided.
func (p *pinned) takingOverAfter(t *testing.T, check executor.StartCheck) executor.StartCheck {
	return changingAfter(t, check, "shared_flow", p.takeOver)
}

// changingAfter is check, after which change lands as the first start
// under workflow name (its inline definition's, or the one it names) is
// decided.
func changingAfter(t *testing.T, check executor.StartCheck, name string, change func(ctx context.Context) error) executor.StartCheck {
	var once sync.Once
	return func(ctx context.Context, principals []string, req conductor.StartWorkflowRequest) (executor.Pin, error) {
		pin, err := check(ctx, principals, req)
		if auth.InlineName(req) == name {
			once.Do(func() {
				if err := change(ctx); err != nil {
					t.Error(err)
				}
			})
		}
		return pin, err
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

// listen runs a listener of cfg until t ends.
func listen(t *testing.T, ctx context.Context, cfg events.Config) {
	t.Helper()
	l := events.New(ctx, cfg)
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
}

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
	listen(t, ctx, events.Config{Handlers: handlers{h}, Conn: p.log.Conn(), Engine: p.exec, Logger: testutil.Logger(t),
		Authz: eventAuthorizer{authz: p.authz, mayStart: p.takingOverAfter(t, p.check)}})
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
