package guard

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/masking"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// A decision that sealed has its events folded by Protect, to find where
// the workflow stored the sealed values: that state is handed back, and
// the executor keeps it instead of folding the same events again. It must
// be what the recorded events fold to from the state before (the
// executor's cache holds what the log holds), the events Protect adds
// after folding (values_masked, secrets_sealed) included. A decision that
// sealed nothing keeps the decision's own state, for the executor to fold.
func TestProtectHandsBackTheStateItFolded(t *testing.T) {
	ctx, keys := openKeys(t)
	g := New(Config{Keys: keys})
	var def conductor.WorkflowDef
	if err := conductor.Unmarshal([]byte(`{"name":"w","version":1,"tasks":[
 {"name":"a","taskReferenceName":"a","inputParameters":{"_secrets":{"token":"${workflow.input.token}"}}},
 {"name":"b","taskReferenceName":"b","inputParameters":{"prev":"${a.output.v}"}},
 {"name":"c","taskReferenceName":"c","inputParameters":{"prev":"${b.output.v}"}}]}`), &def); err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_700_000_000, 0)
	result := func(ref string, out map[string]any) func(w *engine.Workflow) engine.Trigger {
		return func(w *engine.Workflow) engine.Trigger {
			return engine.Result{Result: conductor.TaskResult{WorkflowInstanceID: w.ID, TaskID: w.LatestByRef(ref).ID,
				Status: conductor.TaskCompleted, OutputData: out}}
		}
	}
	var w *engine.Workflow
	for _, step := range []struct {
		name    string
		trigger func(w *engine.Workflow) engine.Trigger
		folded  bool
	}{
		{"start copying an input into _secrets", func(*engine.Workflow) engine.Trigger {
			return engine.Start{WorkflowID: "wf-state", Def: &def, CreatedBy: "user:t",
				Request: conductor.StartWorkflowRequest{Name: "w", Input: map[string]any{"token": "input-token-5c1e9a"}}}
		}, true},
		// The session stored in plain text, which b's result seals below.
		{"result echoing the input", result("a", map[string]any{"v": "session-77d2e0aa", "echo": "saw input-token-5c1e9a"}), false},
		{"result under _secrets", result("b", map[string]any{"v": 1, "_secrets": map[string]any{"session": "session-77d2e0aa"}}), true},
		{"plain result", result("c", map[string]any{"v": 2}), false},
	} {
		dec, err := engine.Decide(engine.Input{State: w, Trigger: step.trigger(w), Now: now})
		if err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		decided := dec.State
		if dec, err = g.Protect(ctx, w, dec); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		if handed := dec.State != decided; handed != step.folded {
			t.Fatalf("%s: state handed back %v, want %v", step.name, handed, step.folded)
		}
		var refolded *engine.Workflow
		if w != nil {
			refolded = w.Clone()
		}
		for _, ev := range dec.Events {
			if refolded, err = engine.Apply(refolded, ev); err != nil {
				t.Fatalf("%s: %v", step.name, err)
			}
		}
		if step.folded {
			got, err := schemas.MarshalSorted(dec.State)
			if err != nil {
				t.Fatal(err)
			}
			want, err := schemas.MarshalSorted(refolded)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("%s: the state handed back is not what its %d events fold to", step.name, len(dec.Events))
			}
		}
		w = refolded
	}
	if w.Status != conductor.WorkflowCompleted || !w.SealsSecrets || len(w.MaskedPaths) == 0 {
		t.Fatalf("workflow %s, seals secrets %v, masked paths %v", w.Status, w.SealsSecrets, w.MaskedPaths)
	}
}

// A worker that reports the same session in each IN_PROGRESS update gets
// the seal it had, so that the state keeps no seal per update (each
// replaced output's seals are kept, for redaction to find an echo of
// them): only a session it renewed adds one.
func TestASessionReportedAgainKeepsItsSeal(t *testing.T) {
	ctx, keys := openKeys(t)
	g := New(Config{Keys: keys})
	var def conductor.WorkflowDef
	if err := conductor.Unmarshal([]byte(`{"name":"w","version":1,"tasks":[{"name":"a","taskReferenceName":"a"}]}`), &def); err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_700_000_000, 0)
	report := func(status, session string) func(w *engine.Workflow) engine.Trigger {
		return func(w *engine.Workflow) engine.Trigger {
			return engine.Result{Result: conductor.TaskResult{WorkflowInstanceID: w.ID, TaskID: w.LatestByRef("a").ID,
				Status: status, OutputData: map[string]any{"_secrets": map[string]any{"session": session}}}}
		}
	}
	var w *engine.Workflow
	var seals [][]byte
	for i, trigger := range []func(w *engine.Workflow) engine.Trigger{
		func(*engine.Workflow) engine.Trigger {
			return engine.Start{WorkflowID: "wf-session", Def: &def, CreatedBy: "user:t", Request: conductor.StartWorkflowRequest{Name: "w"}}
		},
		report(conductor.TaskInProgress, "session-1-5d0c9e"),
		report(conductor.TaskInProgress, "session-1-5d0c9e"),
		report(conductor.TaskInProgress, "session-1-5d0c9e"),
		report(conductor.TaskInProgress, "session-2-a7f311"),
		report(conductor.TaskCompleted, "session-2-a7f311"),
	} {
		w = decideProtected(ctx, t, g, w, trigger(w), now)
		if i > 0 {
			sealed, _ := w.LatestByRef("a").Output["_secrets"].(map[string]any)["session"].(*masking.Sealed)
			if sealed == nil {
				t.Fatalf("step %d: the session is not sealed: %#v", i, w.LatestByRef("a").Output)
			}
			seals = append(seals, sealed.Ciphertext)
		}
	}
	for i, same := range []bool{true, true, false, true} {
		if bytes.Equal(seals[i], seals[i+1]) != same {
			t.Errorf("reports %d and %d: equal seals %v, want %v", i+1, i+2, !same, same)
		}
	}
	var kept [][]byte
	for _, ref := range w.LatestByRef("a").Resolved {
		if strings.HasPrefix(ref.Name, schemas.DroppedRefPrefix) {
			kept = append(kept, ref.Sealed)
		}
	}
	if len(kept) != 1 || !bytes.Equal(kept[0], seals[0]) {
		t.Fatalf("the task keeps %d replaced seals, want the first session's alone", len(kept))
	}
}

// A loop's keepLastN removes its old iterations' tasks. A value one of
// them held sealed (a session an attempt reported before it failed, which
// the loop's output, holding the last attempt's alone, has no copy of) is
// still looked for by a memo rebuilt from the state: a worker of a later
// iteration may echo it.
func TestATrimmedIterationsSealIsLookedFor(t *testing.T) {
	ctx, keys := openKeys(t)
	g := New(Config{Keys: keys})
	var def conductor.WorkflowDef
	if err := conductor.Unmarshal([]byte(`{"name":"w","version":1,"tasks":[{"name":"loop","taskReferenceName":"loop",
 "type":"DO_WHILE","items":[1,2,3],"inputParameters":{"keepLastN":1},"loopOver":[{"name":"a","taskReferenceName":"a",
 "taskDefinition":{"name":"a","retryCount":1,"retryLogic":"FIXED","retryDelaySeconds":0}}]}]}`), &def); err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_700_000_000, 0)
	current := func(w *engine.Workflow) string {
		for i := len(w.Tasks) - 1; i >= 0; i-- {
			if tk := w.Tasks[i]; tk.Ref != "loop" && tk.Active() {
				return tk.ID
			}
		}
		t.Fatalf("no task of the loop runs: %d tasks", len(w.Tasks))
		return ""
	}
	report := func(status string, out map[string]any) func(w *engine.Workflow) engine.Trigger {
		return func(w *engine.Workflow) engine.Trigger {
			return engine.Result{Result: conductor.TaskResult{WorkflowInstanceID: w.ID, TaskID: current(w), Status: status, OutputData: out}}
		}
	}
	const session = "session-1-5d0c9e77"
	var w *engine.Workflow
	for _, trigger := range []func(w *engine.Workflow) engine.Trigger{
		func(*engine.Workflow) engine.Trigger {
			return engine.Start{WorkflowID: "wf-trim", Def: &def, CreatedBy: "user:t", Request: conductor.StartWorkflowRequest{Name: "w"}}
		},
		report(conductor.TaskFailed, map[string]any{"_secrets": map[string]any{"session": session}}),
		report(conductor.TaskCompleted, map[string]any{"n": 1}),
		report(conductor.TaskCompleted, map[string]any{"n": 2}), // iteration 1's tasks go
	} {
		w = decideProtected(ctx, t, g, w, trigger(w), now)
	}
	if n := len(w.Tasks); n != 3 {
		t.Fatalf("%d tasks, want the loop and iterations 2 and 3's", n)
	}
	dec, err := New(Config{Keys: keys}).Protect(ctx, w, engine.Decision{Events: []schemas.Event{
		&schemas.TaskUpdated{TaskID: current(w), Status: conductor.TaskInProgress, Output: map[string]any{"echo": "still " + session}, Time: 6}}})
	if err != nil {
		t.Fatal(err)
	}
	if got := dec.Events[0].(*schemas.TaskUpdated).Output["echo"]; got != "still ***" {
		t.Fatalf("a trimmed iteration's session, memo rebuilt: %v", got)
	}
}

// decideProtected decides trig on w, protects the decision with g and
// returns the state it folds to, as the executor records it.
func decideProtected(ctx context.Context, t *testing.T, g *Guard, w *engine.Workflow, trig engine.Trigger, now time.Time) *engine.Workflow {
	t.Helper()
	dec, err := engine.Decide(engine.Input{State: w, Trigger: trig, Now: now})
	if err != nil {
		t.Fatalf("%T: %v", trig, err)
	}
	if dec, err = g.Protect(ctx, w, dec); err != nil {
		t.Fatalf("%T: %v", trig, err)
	}
	return applyAll(t, w, dec.Events...)
}
