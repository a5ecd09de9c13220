package metadata_test

import (
	"strings"
	"testing"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/metadata"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/secrets"
)

// A definition reading a secret by a name none can have is refused when
// registered or started inline, naming the field and the rule; one stored
// before the engine refused it still loads, as it ran: only registration
// and updates validate.
func TestImpossibleSecretNameRefusedAtRegistrationOnly(t *testing.T) {
	const def = `{"name":"old","version":1,"tasks":[{"name":"t","taskReferenceName":"t","inputParameters":{"auth":"Bearer ${workflow.secrets.api key}"}}]}`
	c := ctx(t)
	before := newNode(t, nil, metadata.Options{}) // as registration was
	if err := before.md.RegisterWorkflowDef(c, wf(t, def), false, ""); err != nil {
		t.Fatal(err)
	}
	before.caughtUp(t)
	n := newNode(t, before.log, metadata.Options{ValidateWorkflow: engine.ValidateWorkflowDef})
	n.caughtUp(t)
	got, err := n.md.LookupWorkflowDef(c, "old", nil)
	if err != nil || got.Name != "old" {
		t.Fatalf("stored definition: %v, %v", got, err)
	}
	const path = "tasks[0].inputParameters.auth"
	for name, err := range map[string]error{
		"register": n.md.RegisterWorkflowDef(c, wf(t, strings.Replace(def, `"version":1`, `"version":2`, 1)), false, ""),
		"bulk": func() error {
			_, err := n.md.PutWorkflowDefs(c, []*conductor.WorkflowDef{wf(t, def)}, true, "")
			return err
		}(),
		"inline":         n.md.CheckWorkflowDef(wf(t, def)),
		"set rate limit": n.md.SetWorkflowRateLimit(c, "old", nil, map[string]any{"rateLimitKey": "k", "concurrentExecLimit": 1}, ""),
	} {
		if got := paths(t, err); !strings.HasSuffix(got, path) {
			t.Errorf("%s: paths = %q, want %s", name, got, path)
		}
		if err != nil && !strings.Contains(err.Error(), secrets.NameRule) {
			t.Errorf("%s: %v does not state the rule", name, err)
		}
	}
}
