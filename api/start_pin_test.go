package api_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/flowvault/flowvault/api"
	"github.com/flowvault/flowvault/auth"
	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/executor"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/metadata"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// startingMeanwhile is the engine, which reaches beforeStart as a start
// is asked of it.
type startingMeanwhile struct {
	*executor.Executor
	changes *meanwhile
}

func (s startingMeanwhile) StartWorkflow(ctx context.Context, req conductor.StartWorkflowRequest, o executor.StartOptions) (string, uint64, error) {
	s.changes.reached(beforeStart)
	return s.Executor.StartWorkflow(ctx, req, o)
}

// startingServer is an API as the user (user-token) reaches it, over a
// real executor of l and md, whose start reaches the returned changes'
// beforeStart.
func startingServer(t *testing.T, ctx context.Context, l *eventlog.Log, md *metadata.Store) (*executor.Executor, *httptest.Server, *meanwhile) {
	t.Helper()
	e := executor.New(l, md, nil, executor.Config{Logger: testutil.Logger(t)})
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Stop)
	changes := &meanwhile{}
	authz := auth.NewAuthorizer(&fixedGrants{})
	authz.Register(auth.TargetWorkflowDef, definitionSource{md})
	srv := httptest.NewServer(api.New(api.Deps{
		Logger:      testutil.Logger(t),
		Engine:      startingMeanwhile{Executor: e, changes: changes},
		Metadata:    md,
		Definitions: md,
		Authorizer:  authz,
		Tokens:      tokenPrincipals{"user-token": {ID: pinUser, Roles: []string{auth.RoleUser}}},
	}))
	t.Cleanup(srv.Close)
	return e, srv, changes
}

// sharedFlow is a definition of shared_flow whose one task is named ref.
func sharedFlow(ref string) string {
	return `{"name":"shared_flow","tasks":[{"name":"w","taskReferenceName":"` + ref + `","type":"WAIT"}]}`
}

// registerShared registers sharedFlow(ref) as by.
func registerShared(ctx context.Context, md *metadata.Store, by, ref string) error {
	var def conductor.WorkflowDef
	if err := conductor.Unmarshal([]byte(sharedFlow(ref)), &def); err != nil {
		return err
	}
	return md.RegisterWorkflowDef(ctx, &def, true, by)
}

// A start by name runs the definition its access was decided on. The
// user owns shared_flow and starts it; as the decision is made, the
// admin deletes it and registers another under the name, which the user
// holds no right on. The start runs the user's definition, as one made a
// moment earlier would have, where it looked the name up again and ran
// the admin's under a decision made on the user's (with the admin as its
// author, whose secrets it may resolve).
func TestStartRunsTheDefinitionItsAccessWasDecidedOn(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, time.Minute)
	l, md := openMetadata(t)
	register := func(by, ref string) error { return registerShared(ctx, md, by, ref) }
	if err := register(pinUser, "users_step"); err != nil {
		t.Fatal(err)
	}
	e, srv, changes := startingServer(t, ctx, l, md)

	changes.arm(beforeStart, func() {
		if err := md.DeleteWorkflowDef(ctx, "shared_flow", 1, pinAdmin); err != nil {
			t.Error(err)
		}
		if err := register(pinAdmin, "admins_step"); err != nil {
			t.Error(err)
		}
	})
	got := client{t, srv.URL, "user-token"}.do("POST", "/api/workflow/shared_flow", "{}")
	if !changes.fired() {
		t.Fatalf("start = %d %s before the change was made", got.status, got.body)
	}
	if got.status != http.StatusOK {
		t.Fatalf("start = %d %s, want 200", got.status, got.body)
	}
	wf, err := e.State(ctx, got.body)
	if err != nil {
		t.Fatal(err)
	}
	def, err := wf.Def()
	if err != nil {
		t.Fatal(err)
	}
	if ref := def.Tasks[0].TaskReferenceName; ref != "users_step" || len(wf.AlsoRunsAs) != 0 {
		t.Errorf("the start runs the definition of %s as %v, want the user's, as the user alone", ref, wf.Principals())
	}
}

// A start of an inline definition is refused (409) when its name was
// registered, or passed to another owner, between its check and its
// start: the execution is the name's (its owner's readers read it, its
// idempotency keys are the name's), and the check asked CREATE alone of
// a name registered nowhere, or UPDATE of the owner's definition it saw.
// It ran under the admin's name, where the user holds no right. A name
// its owner changes meanwhile is still theirs: that start goes ahead.
func TestInlineStartRefusedWhenItsNameMovedSinceItsCheck(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		registered bool   // by the user, before the start
		by         string // who registers shared_flow meanwhile
		want       int
	}{
		{name: "registered meanwhile", by: pinAdmin, want: http.StatusConflict},
		{name: "taken over meanwhile", registered: true, by: pinAdmin, want: http.StatusConflict},
		{name: "updated by its owner meanwhile", registered: true, by: pinUser, want: http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := testutil.Context(t, time.Minute)
			l, md := openMetadata(t)
			if tc.registered {
				if err := registerShared(ctx, md, pinUser, "users_step"); err != nil {
					t.Fatal(err)
				}
			}
			e, srv, changes := startingServer(t, ctx, l, md)
			changes.arm(beforeStart, func() {
				if tc.registered && tc.by != pinUser {
					if err := md.DeleteWorkflowDef(ctx, "shared_flow", 1, pinAdmin); err != nil {
						t.Error(err)
					}
				}
				if err := registerShared(ctx, md, tc.by, "registered_step"); err != nil {
					t.Error(err)
				}
			})
			got := client{t, srv.URL, "user-token"}.do("POST", "/api/workflow",
				`{"name":"shared_flow","workflowDef":`+sharedFlow("inline_step")+`}`)
			if !changes.fired() {
				t.Fatalf("start = %d %s before the change was made", got.status, got.body)
			}
			if got.status != tc.want {
				t.Fatalf("start = %d %s, want %d", got.status, got.body, tc.want)
			}
			if tc.want != http.StatusOK {
				return
			}
			wf, err := e.State(ctx, got.body)
			if err != nil {
				t.Fatal(err)
			}
			if def, err := wf.Def(); err != nil || def.Tasks[0].TaskReferenceName != "inline_step" {
				t.Errorf("the start runs %v (%v), want the inline definition", def, err)
			}
		})
	}
}

// An inline definition without a name runs under the request's, and is
// decided there: the user's, sent under the admin's shared_flow, is
// refused as one naming shared_flow is (UPDATE on the admin's), where it
// was asked CREATE of "" and ran under the admin's name.
func TestNamelessInlineStartIsDecidedUnderTheNameItRunsUnder(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, time.Minute)
	l, md := openMetadata(t)
	if err := registerShared(ctx, md, pinAdmin, "admins_step"); err != nil {
		t.Fatal(err)
	}
	_, srv, _ := startingServer(t, ctx, l, md)
	got := client{t, srv.URL, "user-token"}.do("POST", "/api/workflow",
		`{"name":"shared_flow","workflowDef":{"tasks":[{"name":"w","taskReferenceName":"inline_step","type":"WAIT"}]}}`)
	if got.status != http.StatusForbidden {
		t.Fatalf("start = %d %s, want 403", got.status, got.body)
	}
}

// A start by name of a version its name does not hold is decided on the
// name's owner and tags, and answers its owner 404, as Conductor does,
// where it was decided as if the name were registered nowhere: its owner,
// who holds no grant on it, was refused (403) a start of their own
// workflow.
func TestStartOfAMissingVersionIsDecidedOnItsName(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, time.Minute)
	l, md := openMetadata(t)
	if err := registerShared(ctx, md, pinUser, "users_step"); err != nil {
		t.Fatal(err)
	}
	_, srv, _ := startingServer(t, ctx, l, md)
	for _, version := range []string{"0", "2"} {
		got := client{t, srv.URL, "user-token"}.do("POST", "/api/workflow/shared_flow?version="+version, "{}")
		if got.status != http.StatusNotFound {
			t.Errorf("start of version %s = %d %s, want 404", version, got.status, got.body)
		}
	}
}
