package node

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/flowvault/flowvault/api"
	"github.com/flowvault/flowvault/auth"
	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/metadata"
	"github.com/flowvault/flowvault/natsauth"
	"github.com/flowvault/flowvault/schemas/conductor"
)

type fakeLedger map[string]natsauth.Issued

func (l fakeLedger) Get(user string) (natsauth.Issued, error) {
	if c, ok := l[user]; ok {
		return c, nil
	}
	return natsauth.Issued{}, fault.NotFound("worker credentials %s not found", user)
}

type fakePrincipals map[string]auth.Principal

func (f fakePrincipals) Principal(_ context.Context, id string) (auth.Principal, error) {
	if p, ok := f[id]; ok {
		return p, nil
	}
	return auth.Principal{}, fault.NotFound("principal %s not found", id)
}

type fakeGrants []auth.Grant

func (f fakeGrants) GrantsOn(_ context.Context, t auth.Target) ([]auth.Grant, error) {
	var out []auth.Grant
	for _, g := range f {
		if g.Target == t {
			out = append(out, g)
		}
	}
	return out, nil
}

func (f fakeGrants) GrantsTo(context.Context, auth.Subject, string) ([]auth.Grant, error) {
	return nil, errors.New("not asked")
}

// NATS worker credentials take, in the queue of a domain, what their
// principal's DOMAIN grant covers, as an HTTP poll of that domain does:
// every type of that domain's queue, never the queue without domain nor
// another domain's.
func TestWorkerMayTakeInDomain(t *testing.T) {
	worker := func(id string) auth.Principal { return auth.Principal{ID: id, Roles: []string{auth.RoleWorker}} }
	a := workflowAuthorizer{
		principals: fakePrincipals{"app:eu": worker("app:eu"), "app:group": {ID: "app:group", Roles: []string{auth.RoleWorker},
			Groups: []string{"eu-workers"}}, "app:norole": {ID: "app:norole"}},
		authz: auth.NewAuthorizer(fakeGrants{
			{Subject: auth.Subject{Type: auth.SubjectUser, ID: "app:eu"}, Target: auth.Target{Type: auth.TargetDomain, ID: "eu"},
				Access: []auth.Access{auth.Execute}},
			{Subject: auth.Subject{Type: auth.SubjectGroup, ID: "eu-workers"}, Target: auth.Target{Type: auth.TargetDomain, ID: "eu"},
				Access: []auth.Access{auth.Execute}},
			{Subject: auth.Subject{Type: auth.SubjectUser, ID: "app:norole"}, Target: auth.Target{Type: auth.TargetDomain, ID: "eu"},
				Access: []auth.Access{auth.Execute}},
		}),
	}
	ledger := fakeLedger{"UEU": {User: "UEU", IssuedBy: "app:eu"}, "UGROUP": {User: "UGROUP", IssuedBy: "app:group"},
		"UNOROLE": {User: "UNOROLE", IssuedBy: "app:norole"}}
	unlisted := func(string) bool { return false }
	tests := []struct {
		name           string
		user, taskType string
		domain         string
		want           error // nil, or the fault it wraps
	}{
		{"a type in the domain", "UEU", "resize", "eu", nil},
		{"another type in the domain", "UEU", "thumbnail", "eu", nil},
		{"the queue without domain", "UEU", "resize", "", fault.ErrForbidden},
		{"another domain", "UEU", "resize", "us", fault.ErrForbidden},
		{"the grant of the principal's group", "UGROUP", "resize", "eu", nil},
		{"the grant without the WORKER role", "UNOROLE", "resize", "eu", fault.ErrForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := a.workerMayTake(context.Background(), ledger, unlisted, "nats:"+tt.user, tt.taskType, tt.domain)
			if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("got %v, want %v", err, tt.want)
			}
		})
	}
}

// Credentials the ledger has revoked or past their expiry are refused
// whatever their principal may do: the server is told of neither at once
// (TestRevokedCredentialsLeftConnectedTakeNothing).
func TestWorkerMayTakeRefusesRevokedAndExpired(t *testing.T) {
	const principal = "app:w"
	a := workflowAuthorizer{
		principals: fakePrincipals{principal: {ID: principal, Roles: []string{auth.RoleWorker}}},
		authz: auth.NewAuthorizer(fakeGrants{{Subject: auth.Subject{Type: auth.SubjectUser, ID: principal},
			Target: auth.Target{Type: auth.TargetTaskDef, ID: "resize"}, Access: []auth.Access{auth.Execute}}}),
	}
	hour := time.Now().Add(time.Hour).UnixMilli()
	tests := []struct {
		name string
		c    natsauth.Issued
		want error // nil, or the fault it wraps
	}{
		{"valid", natsauth.Issued{Expires: hour}, nil},
		{"without expiry", natsauth.Issued{}, nil},
		{"revoked", natsauth.Issued{Expires: hour, RevokedAt: time.Now().UnixMilli(), RevokedBy: principal}, fault.ErrForbidden},
		{"expired", natsauth.Issued{Expires: time.Now().Add(-time.Second).UnixMilli()}, fault.ErrForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.c.User, tt.c.IssuedBy, tt.c.IssuedAt = "UW", principal, 1
			err := a.workerMayTake(context.Background(), fakeLedger{"UW": tt.c}, func(string) bool { return false }, "nats:UW", "resize", "")
			if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("got %v, want %v", err, tt.want)
			}
		})
	}
}

// Event handlers and webhooks reach a workflow by the rule the API reads
// and operates executions by (auth.ExecutionResources): a role that
// manages or views every definition (METADATA_MANAGER) reads none of the
// data their runs carry, so a webhook whose owner holds only that role
// is not answered with the workflow its idempotency key finds.
func TestEventAuthorizerAsksOfExecutions(t *testing.T) {
	withRole := func(id, role string) auth.Principal { return auth.Principal{ID: id, Roles: []string{role}} }
	a := webhookAuthorizer{eventAuthorizer{authz: workflowAuthorizer{
		principals: fakePrincipals{
			"app:meta":     withRole("app:meta", auth.RoleMetadataManager),
			"app:readonly": withRole("app:readonly", auth.RoleUserReadOnly),
			"app:ops":      withRole("app:ops", auth.RoleWorkflowManager),
			"app:reader":   {ID: "app:reader"},
			"app:starter":  {ID: "app:starter"},
		},
		authz: auth.NewAuthorizer(fakeGrants{
			{Subject: auth.Subject{Type: auth.SubjectUser, ID: "app:reader"}, Target: auth.Target{Type: auth.TargetWorkflowDef, ID: "payout"},
				Access: []auth.Access{auth.Read}},
		}),
	}}}
	wf := &engine.Workflow{ID: "wf-1", Name: "payout", CreatedBy: "app:starter"}
	tests := []struct {
		principal     string
		read, execute error // nil, or the fault each wraps
	}{
		{"app:meta", fault.ErrForbidden, fault.ErrForbidden},
		{"app:readonly", nil, fault.ErrForbidden},
		{"app:ops", nil, nil},
		{"app:reader", nil, fault.ErrForbidden},
		{"app:starter", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.principal, func(t *testing.T) {
			ctx := context.Background()
			if err := a.MayRead(ctx, tt.principal, wf); tt.read == nil && err != nil || tt.read != nil && !errors.Is(err, tt.read) {
				t.Errorf("MayRead: got %v, want %v", err, tt.read)
			}
			if err := a.MayExecute(ctx, tt.principal, wf); tt.execute == nil && err != nil || tt.execute != nil && !errors.Is(err, tt.execute) {
				t.Errorf("MayExecute: got %v, want %v", err, tt.execute)
			}
		})
	}
}

// A worker's poll of its task type (EXECUTE on TASK_DEF:<type>) and an
// update of the definition are decided on the creator and tags of a task
// definition another engine registered before this engine's read model
// applied it, read from the log as the engine's lookup of a task's
// definition reads it: its creator's workers, and those a TAG grant
// covers, are not refused meanwhile. The log's state is the name's
// latest, so a name deleted and registered again by someone else answers
// with its new creator only, none of its former tags.
func TestTaskAccessDecidesOnADefinitionAheadOfTheReadModel(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, 30*time.Second)
	l := testutil.OpenLog(t, "")
	other := metadata.New(l, testutil.OpenStore(t), nil, metadata.Options{Logger: testutil.Logger(t)})
	pay := []conductor.Tag{{Key: "team", Value: "pay"}}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	register := func(name, by string) {
		t.Helper()
		var def conductor.TaskDef
		must(conductor.Unmarshal([]byte(`{"name":"`+name+`"}`), &def))
		must(other.RegisterTaskDefs(ctx, []*conductor.TaskDef{&def}, by))
	}
	register("owned", "alice")
	register("tagged", "carol")
	must(other.AddTags(ctx, metadata.KindTask, "tagged", pay, "carol"))
	register("moved", "alice")
	must(other.AddTags(ctx, metadata.KindTask, "moved", pay, "alice"))
	must(other.DeleteTaskDef(ctx, "moved", "alice"))
	register("moved", "carol")

	// This engine's read model has applied nothing: its projection never
	// runs.
	lagging := metadata.New(l, testutil.OpenStore(t), nil, metadata.Options{Logger: testutil.Logger(t)})
	authz := auth.NewAuthorizer(fakeGrants{{Subject: auth.Subject{Type: auth.SubjectUser, ID: "bob"},
		Target: auth.Target{Type: auth.TargetTag, ID: "team:pay"}, Access: []auth.Access{auth.Execute}}})
	authz.Register(auth.TargetTaskDef, definitionTargets{lagging})
	for _, tt := range []struct {
		name, principal, taskType string
		access                    auth.Access
		allowed                   bool
	}{
		{"its creator's poll", "alice", "owned", auth.Execute, true},
		{"its creator's update", "alice", "owned", auth.Update, true},
		{"a poll through a tag grant", "bob", "tagged", auth.Execute, true},
		{"neither creator nor granted", "bob", "owned", auth.Execute, false},
		{"the new creator of a name registered again", "carol", "moved", auth.Update, true},
		{"the creator of the name before it was deleted", "alice", "moved", auth.Execute, false},
		{"a tag grant on the name before it was deleted", "bob", "moved", auth.Execute, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := auth.Principal{ID: tt.principal, Roles: []string{auth.RoleUser, auth.RoleWorker}}
			err := authz.Authorize(ctx, p, tt.access, auth.Resource{Target: auth.Target{Type: auth.TargetTaskDef, ID: tt.taskType}})
			if tt.allowed && err != nil || !tt.allowed && !errors.Is(err, fault.ErrForbidden) {
				t.Fatalf("%s %s TASK_DEF:%s = %v, want allowed %v", tt.principal, tt.access, tt.taskType, err, tt.allowed)
			}
		})
	}
}

// The hand-off check of a schedule's tick or an event handler's start
// (api.TaskHandOff) finds a task definition another principal registered
// through another engine before this engine's read model applied it, as
// a decision on the type finds its creator: the workflow would hand its
// tasks of that name, input and resolved secrets included, to the
// workers of a principal its owner may not read the definition of.
func TestHandTasksDecidesOnATaskDefinitionAheadOfTheReadModel(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, 30*time.Second)
	l := testutil.OpenLog(t, "")
	other := metadata.New(l, testutil.OpenStore(t), nil, metadata.Options{Logger: testutil.Logger(t)})
	for _, td := range []struct{ name, by string }{{"charge", "mallory"}, {"mine", "alice"}} {
		var def conductor.TaskDef
		if err := conductor.Unmarshal([]byte(`{"name":"`+td.name+`"}`), &def); err != nil {
			t.Fatal(err)
		}
		if err := other.RegisterTaskDefs(ctx, []*conductor.TaskDef{&def}, td.by); err != nil {
			t.Fatal(err)
		}
	}
	// This engine's read model has applied nothing: its projection never
	// runs.
	lagging := metadata.New(l, testutil.OpenStore(t), nil, metadata.Options{Logger: testutil.Logger(t)})
	user := func(id string) auth.Principal { return auth.Principal{ID: id, Roles: []string{auth.RoleUser}} }
	principals := fakePrincipals{"alice": user("alice"), "mallory": user("mallory")}
	authz := auth.NewAuthorizer(fakeGrants{})
	authz.Register(auth.TargetTaskDef, definitionTargets{lagging})
	a := workflowAuthorizer{principals: principals, authz: authz}
	tasks := api.TaskHandOff{TaskDefs: lagging, Principals: principals, Authorizer: authz}
	for _, tt := range []struct {
		name, task string
		forbidden  bool
	}{
		{"another principal's", "charge", true},
		{"its owner's", "mine", false},
		{"registered nowhere", "free", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var def conductor.WorkflowDef
			if err := conductor.Unmarshal([]byte(`{"name":"pay","tasks":[{"name":"`+tt.task+`","taskReferenceName":"t","type":"SIMPLE"}]}`), &def); err != nil {
				t.Fatal(err)
			}
			err := a.mayHandTasks(ctx, tasks, "alice", &def)
			if tt.forbidden != errors.Is(err, fault.ErrForbidden) || (!tt.forbidden && err != nil) {
				t.Fatalf("alice handing %s tasks = %v, want forbidden %v", tt.task, err, tt.forbidden)
			}
		})
	}
}

// BenchmarkHolderMayTakeUnregistered measures the take decision of a
// worker on a task type without a definition, the read model caught up
// with the log (a definition lookup then costs a LastSeq request): allowed
// by the WORKER's grant on the type, by its DOMAIN grant, or by the
// UNRESTRICTED_WORKER role, none of which depends on the definition's
// creator or tags.
func BenchmarkHolderMayTakeUnregistered(b *testing.B) {
	l := testutil.OpenLog(b, "")
	defs := metadata.New(l, testutil.OpenStore(b), nil, metadata.Options{Logger: testutil.Logger(b)})
	authz := auth.NewAuthorizer(fakeGrants{
		{Subject: auth.Subject{Type: auth.SubjectUser, ID: "app:typed"}, Target: auth.Target{Type: auth.TargetTaskDef, ID: "resize"},
			Access: []auth.Access{auth.Execute}},
		{Subject: auth.Subject{Type: auth.SubjectUser, ID: "app:eu"}, Target: auth.Target{Type: auth.TargetDomain, ID: "eu"},
			Access: []auth.Access{auth.Execute}},
	})
	authz.Register(auth.TargetTaskDef, definitionTargets{defs})
	a := workflowAuthorizer{
		principals: fakePrincipals{
			"app:typed": {ID: "app:typed", Roles: []string{auth.RoleWorker}},
			"app:eu":    {ID: "app:eu", Roles: []string{auth.RoleWorker}},
			"app:any":   {ID: "app:any", Roles: []string{auth.RoleUnrestrictedWorker}},
		},
		authz: authz,
	}
	ctx := testutil.Context(b, time.Minute)
	for _, bc := range []struct{ name, principal, domain string }{
		{"grant_on_the_type", "app:typed", ""},
		{"domain_grant", "app:eu", "eu"},
		{"unrestricted_worker", "app:any", ""},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				if err := a.holderMayTake(ctx, bc.principal, "resize", bc.domain); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
