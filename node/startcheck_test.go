package node

import (
	"errors"
	"testing"
	"time"

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
			err := check(ctx, "alice", tt.req)
			if tt.notFound != errors.Is(err, fault.ErrNotFound) || (!tt.notFound && err != nil) {
				t.Fatalf("start check = %v, want not found %v", err, tt.notFound)
			}
		})
	}
}
