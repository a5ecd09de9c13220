package api_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/flowvault/flowvault/api"
	"github.com/flowvault/flowvault/auth"
	"github.com/flowvault/flowvault/executor"
	"github.com/flowvault/flowvault/internal/testutil"
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
	register := func(by, ref string) error {
		var def conductor.WorkflowDef
		if err := conductor.Unmarshal([]byte(`{"name":"shared_flow","tasks":[{"name":"w","taskReferenceName":"`+ref+`","type":"WAIT"}]}`), &def); err != nil {
			return err
		}
		return md.RegisterWorkflowDef(ctx, &def, true, by)
	}
	if err := register(pinUser, "users_step"); err != nil {
		t.Fatal(err)
	}
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
		Definitions: md,
		Authorizer:  authz,
		Tokens:      tokenPrincipals{"user-token": {ID: pinUser, Roles: []string{auth.RoleUser}}},
	}))
	t.Cleanup(srv.Close)

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
