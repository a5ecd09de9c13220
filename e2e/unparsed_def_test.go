package e2e_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/masking"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/secrets"
)

// A workflow whose definition snapshot no longer parses (a record an
// earlier version read, or a damaged one) is compacted like any other once
// it ended: its secrets key destroyed, its _secrets read as ***; and it
// is removed as any other. The compactor's decision asked the definition
// first, failed at every pass, and the key stayed.
func TestCompactedWhateverItsDefinition(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := compactingEnv(t, 100*time.Millisecond)
	const secret = "unparsed-secret-Vb72kQ"
	e.register(`{"name":"unparsed","version":1,"tasks":[{"name":"hold","taskReferenceName":"hold","type":"WAIT"}]}`)
	id := e.start("unparsed", map[string]any{"_secrets": map[string]any{"pw": secret}})
	hold := taskByRef(e.waitStatus(id, conductor.WorkflowRunning), "hold")
	keyID := e.secretsKey(id)

	// The definition replaced by one that does not parse, and the
	// workflow ended, in one record: what an earlier version could have
	// recorded.
	now, subject := time.Now().UnixMilli(), "fv.wf."+eventlog.Token(id)
	rec := testutil.Record(t, subject, 0,
		&schemas.WorkflowUpgraded{Def: []byte(`{"name":"unparsed","version":2,"tasks":"none"}`), Time: now},
		&schemas.TaskUpdated{TaskID: hold.TaskID, Status: conductor.TaskCanceled, KeepOutput: true, Time: now},
		&schemas.WorkflowStatusChanged{Status: conductor.WorkflowTerminated, Reason: "ended by an earlier version", NoFailedTask: true, Time: now})
	for i := range rec.Events {
		rec.Events[i].ID, rec.Events[i].Time = fmt.Sprintf("%s-unparsed-%d", id, i), time.Now().UnixNano()
	}
	recs := e.records(id)
	if _, err := e.node.Log().Append(ctx, subject, rec.Events, recs[len(recs)-1].Seq); err != nil {
		t.Fatal(err)
	}

	e.waitCompacted(id)
	e.node.Keys().ClearCache()
	if _, err := e.node.Keys().DataKey(ctx, keyID); !errors.Is(err, secrets.ErrKeyDestroyed) {
		t.Fatalf("the compacted workflow's key %s is still readable: %v", keyID, err)
	}
	testutil.Eventually(t, 10*time.Second, 50*time.Millisecond, func() error {
		if wf := e.workflow(id); wf.Status != conductor.WorkflowTerminated || wf.Input["_secrets"] != masking.Mask {
			return fmt.Errorf("the read model shows it %s, its input %v", wf.Status, wf.Input)
		}
		return nil
	})
	if raw := e.rawLog(id); strings.Contains(raw, secret) {
		t.Error("the log holds the secret in plain text")
	}
	e.must(http.StatusNoContent, "DELETE", "/api/workflow/"+id+"/remove?archiveWorkflow=true", nil)
}
