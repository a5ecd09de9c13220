package node

import (
	"errors"
	"testing"
	"time"

	"github.com/flowvault/flowvault/auth"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/metadata"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// The start check of a schedule's fire, an event handler's start or a
// sub-workflow finds a definition another engine registered before this
// engine's read model applied it, as the start's own lookup and the API's
// check do: the firer records a fire whose check answers not found
// FAILED for good, though its start would have found the definition.
func TestStartCheckFindsADefinitionAheadOfTheReadModel(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, 30*time.Second)
	l := testutil.OpenLog(t, "")
	other := metadata.New(l, testutil.OpenStore(t), nil, metadata.Options{Logger: testutil.Logger(t)})
	var def conductor.WorkflowDef
	if err := conductor.Unmarshal([]byte(`{"name":"held","tasks":[{"name":"h","taskReferenceName":"h","type":"WAIT"}]}`), &def); err != nil {
		t.Fatal(err)
	}
	if err := other.RegisterWorkflowDef(ctx, &def, true, "alice"); err != nil {
		t.Fatal(err)
	}
	// This engine's read model has applied nothing: its projection never
	// runs.
	lagging := metadata.New(l, testutil.OpenStore(t), nil, metadata.Options{Logger: testutil.Logger(t)})
	check := startCheck(lagging, workflowAuthorizer{insecure: true})
	for _, tt := range []struct {
		name     string
		req      conductor.StartWorkflowRequest
		notFound bool
	}{
		{"registered by another engine", conductor.StartWorkflowRequest{Name: "held"}, false},
		{"registered nowhere", conductor.StartWorkflowRequest{Name: "nowhere"}, true},
		{"inline", conductor.StartWorkflowRequest{Name: "nowhere", WorkflowDef: &def}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := check(ctx, []string{"alice"}, tt.req)
			if tt.notFound != errors.Is(err, fault.ErrNotFound) || (!tt.notFound && err != nil) {
				t.Fatalf("start check = %v, want not found %v", err, tt.notFound)
			}
		})
	}
}

// In secure mode the start check decides on the owner and tags of a
// definition another engine registered before this engine's read model
// applied it, read from the log as its existence is: its owner's schedule
// or event handler, or a sub-workflow, is not refused at its first start
// (and a schedule paused as a security error). The log's state is the
// name's latest, so a name deleted and registered again by someone else
// lends nothing of its first owner's rights.
func TestStartCheckDecidesOnADefinitionAheadOfTheReadModel(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, 30*time.Second)
	l := testutil.OpenLog(t, "")
	other := metadata.New(l, testutil.OpenStore(t), nil, metadata.Options{Logger: testutil.Logger(t)})
	register := func(name, by string) {
		t.Helper()
		var def conductor.WorkflowDef
		if err := conductor.Unmarshal([]byte(`{"name":"`+name+`","version":1,"tasks":[{"name":"h","taskReferenceName":"h","type":"WAIT"}]}`), &def); err != nil {
			t.Fatal(err)
		}
		if err := other.RegisterWorkflowDef(ctx, &def, true, by); err != nil {
			t.Fatal(err)
		}
	}
	register("owned", "alice")
	register("tagged", "carol")
	if err := other.AddTags(ctx, metadata.KindWorkflow, "tagged", []conductor.Tag{{Key: "team", Value: "pay"}}, "carol"); err != nil {
		t.Fatal(err)
	}
	register("moved", "alice")
	if err := other.DeleteWorkflowDef(ctx, "moved", 1, "alice"); err != nil {
		t.Fatal(err)
	}
	register("moved", "carol")

	// This engine's read model has applied nothing: its projection never
	// runs.
	lagging := metadata.New(l, testutil.OpenStore(t), nil, metadata.Options{Logger: testutil.Logger(t)})
	user := func(id string) auth.Principal { return auth.Principal{ID: id, Roles: []string{auth.RoleUser}} }
	authz := auth.NewAuthorizer(fakeGrants{{Subject: auth.Subject{Type: auth.SubjectUser, ID: "bob"},
		Target: auth.Target{Type: auth.TargetTag, ID: "team:pay"}, Access: []auth.Access{auth.Execute}}})
	authz.Register(auth.TargetWorkflowDef, definitionTargets{lagging})
	check := startCheck(lagging, workflowAuthorizer{
		principals: fakePrincipals{"alice": user("alice"), "bob": user("bob")},
		authz:      authz,
	})
	for _, tt := range []struct {
		name, principal, workflow string
		forbidden                 bool
	}{
		{"its owner", "alice", "owned", false},
		{"through a tag grant", "bob", "tagged", false},
		{"neither owner nor granted", "bob", "owned", true},
		{"owner of the name before it was deleted", "alice", "moved", true},
		{"no principal at all", "", "owned", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var principals []string
			if tt.principal != "" {
				principals = []string{tt.principal}
			}
			_, err := check(ctx, principals, conductor.StartWorkflowRequest{Name: tt.workflow})
			if tt.forbidden != errors.Is(err, fault.ErrForbidden) || (!tt.forbidden && err != nil) {
				t.Fatalf("start check = %v, want forbidden %v", err, tt.forbidden)
			}
		})
	}
}

// A start check that cannot look a definition up (this engine's read
// model lacks it and the log does not answer) fails, as unavailable,
// rather than deciding as if the name were registered nowhere: a
// schedule's fire would be recorded FAILED for good ("not found"), and a
// definition sent inline under a name someone else registered would be
// asked CREATE alone, not UPDATE of what holds the name, and run under
// it (its readers, its idempotency keys).
func TestStartCheckFailsWhenItCannotLookUp(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t, 30*time.Second)
	ns := testutil.StartNATS(t, t.TempDir(), 0)
	other := metadata.New(testutil.OpenExternalLog(t, ns), testutil.OpenStore(t), nil, metadata.Options{Logger: testutil.Logger(t)})
	var def conductor.WorkflowDef
	if err := conductor.Unmarshal([]byte(`{"name":"held","tasks":[{"name":"h","taskReferenceName":"h","type":"WAIT"}]}`), &def); err != nil {
		t.Fatal(err)
	}
	if err := other.RegisterWorkflowDef(ctx, &def, true, "alice"); err != nil {
		t.Fatal(err)
	}
	// This engine's read model has applied nothing, and its connection
	// to the log is gone.
	gone := testutil.OpenExternalLog(t, ns)
	lagging := metadata.New(gone, testutil.OpenStore(t), nil, metadata.Options{Logger: testutil.Logger(t)})
	gone.Close()
	authz := auth.NewAuthorizer(fakeGrants{})
	authz.Register(auth.TargetWorkflowDef, definitionTargets{lagging})
	check := startCheck(lagging, workflowAuthorizer{
		principals: fakePrincipals{"bob": {ID: "bob", Roles: []string{auth.RoleUser}}},
		authz:      authz,
	})
	for _, tt := range []struct {
		name string
		req  conductor.StartWorkflowRequest
	}{
		{"by name", conductor.StartWorkflowRequest{Name: "held"}},
		{"inline under the name", conductor.StartWorkflowRequest{Name: "held", WorkflowDef: &def}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := check(ctx, []string{"bob"}, tt.req); !errors.Is(err, fault.ErrUnavailable) || errors.Is(err, fault.ErrNotFound) {
				t.Fatalf("start check = %v, want unavailable", err)
			}
		})
	}
}
