package e2e_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/flowvault/flowvault/internal/nodetest"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/masking"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/secrets"
)

// Two engines on one log: B records a task's _secrets output and hands it
// to the next task, so it holds the workflow's secrets key in memory; A
// compacts the workflow (B's compaction delay never comes) and destroys
// the key. B must let go of it too: kept, it opened the ciphertext the log
// still holds, the compacted value in plain text.
func TestCompactionOnAnotherEngineShredsTheKey(t *testing.T) {
	t.Parallel()
	ea := compactingEnv(t, time.Second)
	a := ea.node
	cfgB := nodetest.JoinConfig(t, a, filepath.Join(t.TempDir(), "data"))
	cfgB.CompactionDelay = time.Hour
	b, baseB := nodetest.StartConfig(t, cfgB)
	eb := &env{t: t, node: b, base: baseB}
	const value = "shred-me-on-every-engine"
	ea.register(`{"name":"shred_engines","tasks":[
	  {"name":"se_produce","taskReferenceName":"produce"},
	  {"name":"se_consume","taskReferenceName":"consume","inputParameters":{"s":"${produce.output._secrets.v}"}}]}`)
	id := ea.start("shred_engines", nil)
	eb.completeTask(eb.takeOne("se_produce"), map[string]any{"_secrets": map[string]any{"v": value}})
	consume := eb.takeOne("se_consume")
	if consume.InputData["s"] != value {
		t.Fatalf("engine B handed the consumer %d characters, want the produced value", len(consume.InputData["s"].(string)))
	}
	eb.completeTask(consume, nil)
	ea.waitStatus(id, conductor.WorkflowCompleted)
	ea.waitCompacted(id)
	key := ea.secretsKey(id)
	sealed := sealedOutput(t, ea, id)
	ctx := context.Background()
	testutil.Eventually(t, 20*time.Second, 50*time.Millisecond, func() error {
		if _, err := a.Keys().DataKey(ctx, key); !errors.Is(err, secrets.ErrKeyDestroyed) {
			return errors.New("engine A has not erased the key yet")
		}
		return nil
	})
	testutil.Eventually(t, 20*time.Second, 50*time.Millisecond, func() error {
		dk, err := b.Keys().DataKey(ctx, key)
		if errors.Is(err, secrets.ErrKeyDestroyed) {
			return nil
		}
		if err != nil {
			return err
		}
		plain, err := dk.Open(secrets.Purpose("workflow", id, sealed.Purpose), sealed.Ciphertext)
		return fmt.Errorf("engine B still holds the destroyed key: the log's ciphertext opens (%v), to the compacted value: %t",
			err, string(plain) == `"`+value+`"`)
	})
	// A rerun on B hands the consumer "***".
	eb.must(http.StatusOK, "POST", "/api/workflow/"+id+"/rerun", conductor.RerunWorkflowRequest{ReRunFromTaskID: consume.TaskID})
	if again := eb.takeOne("se_consume"); again.InputData["s"] != masking.Mask {
		t.Fatalf("the rerun on engine B handed the consumer %v, want %q", again.InputData["s"], masking.Mask)
	}
}

// sealedOutput returns the _secrets value the log recorded of workflow
// id's first task output.
func sealedOutput(t *testing.T, e *env, id string) *masking.Sealed {
	t.Helper()
	for _, ev := range e.events(id) {
		u, ok := ev.(*schemas.TaskUpdated)
		if !ok {
			continue
		}
		if s, ok := u.Output["_secrets"].(map[string]any); ok {
			if v, ok := s["v"].(*masking.Sealed); ok {
				return v
			}
		}
	}
	t.Fatalf("workflow %s: no sealed output in the log", id)
	return nil
}
