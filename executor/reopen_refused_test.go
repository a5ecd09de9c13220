package executor

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/internal/logkey"
	"github.com/flowvault/flowvault/internal/testutil"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// A parent that refuses the news of its child run again, for a rerun
// asked of it through the child (the task that ran the child no longer in
// its definition, upgraded since it failed), is told once, not retried,
// and the refusal is logged, naming the two workflows alone: the child
// runs again and nothing waits for it. It was dropped without a word.
func TestRefusedChildNewsIsLogged(t *testing.T) {
	t.Parallel()
	l := testutil.OpenLog(t, "")
	ctx := testutil.Context(t, 30*time.Second)
	logger, logs := testutil.CapturingLogger()
	e := New(l, noDefinitions{}, nothingScheduled{}, Config{Logger: logger})
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Stop)
	const parent = "wf-refusing-parent"
	startInline(ctx, t, e, parent, `{"name":"refusing","version":1,"tasks":[{"name":"sub","taskReferenceName":"sub","type":"SUB_WORKFLOW",
	  "subWorkflowParam":{"name":"kid","workflowDefinition":{"name":"kid","version":1,"tasks":[{"name":"gate","taskReferenceName":"gate","type":"WAIT"}]}}}]}`)
	w, err := e.State(ctx, parent)
	if err != nil {
		t.Fatal(err)
	}
	child := w.LatestByRef("sub").SubWorkflowID
	if _, err := e.Submit(ctx, parent, engine.ChildFinished{ChildID: child, Status: conductor.WorkflowFailed, Reason: "down"}, Meta{}); err != nil {
		t.Fatal(err)
	}
	if w, err = e.State(ctx, parent); err != nil || w.Status != conductor.WorkflowFailed {
		t.Fatalf("the parent is %v (%v), want FAILED by its child", w, err)
	}
	now := time.Now()
	envs, err := envelopes([]schemas.Event{&schemas.WorkflowUpgraded{Time: now.UnixMilli(),
		Def: []byte(`{"name":"refusing","version":2,"tasks":[{"name":"gate","taskReferenceName":"gate","type":"WAIT"}]}`)}},
		&job{wfID: parent, meta: Meta{RequestID: "upgrade"}}, w.Seq, now, l.MaxRecordBytes())
	if err == nil {
		_, err = l.Append(ctx, subject(parent), envs, w.Seq)
	}
	if err != nil {
		t.Fatal(err)
	}

	news := engine.ReopenParent{ParentWorkflowID: parent,
		Child: engine.ChildReopened{ChildID: child, RerunUpTo: parent, ResetTime: now.Add(time.Minute).UnixMilli()}}
	if err := e.performOne(ctx, news); err != nil {
		t.Fatalf("the refused news answered %v, want nil: it is not retried", err)
	}
	var refused []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if strings.Contains(fmt.Sprint(rec["msg"]), "refused the news of its sub-workflow") {
			delete(rec, "time")
			refused = append(refused, rec)
		}
	}
	want := map[string]any{"level": "WARN", "msg": "parent refused the news of its sub-workflow run again",
		logkey.WorkflowID: parent, logkey.Child: child}
	if len(refused) != 1 || !reflect.DeepEqual(refused[0], want) {
		t.Fatalf("logged %v, want one line %v: the two workflows' ids alone", refused, want)
	}
	if w, err := e.State(ctx, parent); err != nil || w.Status != conductor.WorkflowFailed {
		t.Errorf("the parent is %v (%v), want FAILED as it was", w, err)
	}
}
