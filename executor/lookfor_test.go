package executor

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas"
)

// toldOfLateValues protects nothing, and reports each workflow told of
// values another found to be secret late (FindValues), by id.
type toldOfLateValues chan string

func (toldOfLateValues) Protect(_ context.Context, _ *engine.Workflow, dec engine.Decision) (engine.Decision, error) {
	return dec, nil
}

func (c toldOfLateValues) FindValues(_ context.Context, w *engine.Workflow, found engine.ValuesFound) (engine.ValuesFound, error) {
	if found.From != "" {
		c <- w.ID + " from " + found.From
	}
	return found, nil
}

// A parent whose record of values found to be secret late was appended
// without its children being told (its engine stopped before the LookFor
// effect; here the protector that adds it is not the guard) tells its
// SUB_WORKFLOW child in recovery's reconcile.
func TestLostLookForIsRecovered(t *testing.T) {
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, 30*time.Second)
	told := make(toldOfLateValues, 10)
	e := New(l, noDefinitions{}, nothingScheduled{}, Config{Logger: testutil.Logger(t)})
	e.SetProtector(told)
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Stop)
	const parent = "wf-late-parent"
	startInline(ctx, t, e, parent, `{"name":"parent","version":1,"tasks":[{"name":"sub","taskReferenceName":"sub","type":"SUB_WORKFLOW",
	  "subWorkflowParam":{"name":"kid","workflowDefinition":{"name":"kid","version":1,
	    "tasks":[{"name":"gate","taskReferenceName":"gate","type":"WAIT"}]}}}]}`)
	var child string
	testutil.Eventually(t, 20*time.Second, 10*time.Millisecond, func() error {
		p, err := e.State(ctx, parent)
		if err != nil {
			return err
		}
		child = p.LatestByRef("sub").SubWorkflowID
		if w, err := e.State(ctx, child); err != nil || w == nil {
			return fmt.Errorf("the child has not started: %v", err)
		}
		return nil
	})
	late := []schemas.ResolvedRef{{Kind: "_secrets", Name: schemas.LateRefPrefix + "0", Sealed: []byte{1, 2, 3}}}
	if _, err := e.Submit(ctx, parent, engine.ValuesFound{Masked: &schemas.ValuesMasked{Paths: []string{"input.v"}, Sealed: late}}, Meta{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Submit(ctx, parent, engine.Reconcile{}, Meta{}); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-told:
		if want := child + " from " + parent; got != want {
			t.Fatalf("told %q, want %q", got, want)
		}
	case <-ctx.Done():
		t.Fatal("the child was not told")
	}
}
