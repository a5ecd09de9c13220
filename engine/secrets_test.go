package engine_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/engine/expr"
	"github.com/flowvault/flowvault/masking"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/vmihailenco/msgpack/v5"
)

// Every read view masks _secrets, _masked, maskedFields and values found to
// be secret, while the hand-off view keeps the data for the taker.
func TestRenderMasks(t *testing.T) {
	def := `{"name":"m","maskedFields":["card"],"tasks":[{"name":"t","taskReferenceName":"t","inputParameters":{"_secrets":{"p":"${workflow.input.pass}"},"plain":"x"}}]}`
	h := newHarness(t, def, map[string]any{"card": "4111-1111", "pass": "hunter22", "note": "ok"})
	h.decide(engine.SetVariables{Variables: map[string]any{"_secrets": "s3cr3t"}})
	h.complete("t", map[string]any{"_masked": map[string]any{"ssn": "123"}, "visible": "v"})
	h.w.MaskedPaths = []string{"input.pass"} // what a ValuesMasked event records
	view, _ := json.Marshal(h.w.Conductor(true))
	for _, plain := range []string{"4111-1111", "hunter22", "123", "s3cr3t"} {
		if strings.Contains(string(view), plain) {
			t.Errorf("the read view shows %q: %s", plain, view)
		}
	}
	for _, want := range []string{`"card":"***"`, `"pass":"***"`, `"note":"ok"`, `"_masked":"***"`, `"visible":"v"`, `"plain":"x"`} {
		if !strings.Contains(string(view), want) {
			t.Errorf("the read view lacks %s: %s", want, view)
		}
	}
	task := h.w.Tasks[0]
	if got := task.HandOffView(h.w).InputData["_secrets"].(map[string]any)["p"]; got != "hunter22" {
		t.Fatalf("hand-off view lost the data: %v", got)
	}
}

// A hand-off that cannot be prepared fails the task for good, and the
// resolutions of a successful one are recorded without values.
func TestHandOffOutcome(t *testing.T) {
	h := newHarness(t, threeSimple, nil)
	id := h.task("a_ref").ID
	d := h.decide(engine.Take{TaskID: id, WorkerID: "w", HandOff: &engine.HandOff{Error: "secret db not found or not readable by app:x"}})
	if _, ok := d.Reply.(engine.HandOffFailed); !ok {
		t.Fatalf("reply %T", d.Reply)
	}
	h.wantTask("a_ref", conductor.TaskFailedWithTerminalError)
	h.wantStatus(conductor.WorkflowFailed)

	ok := newHarness(t, threeSimple, nil)
	refs := []schemas.ResolvedRef{{Kind: "secret", Name: "db", Version: 3, Principal: "app:tester"}}
	d = ok.decide(engine.Take{TaskID: ok.task("a_ref").ID, HandOff: &engine.HandOff{Resolved: refs}})
	started := d.Events[0].(*schemas.TaskStarted)
	if len(started.Resolved) != 1 || started.Resolved[0].Name != "db" || started.Resolved[0].Version != 3 {
		t.Fatalf("TaskStarted = %+v", started)
	}
}

// Compaction destroys what was sealed with the secrets key and keeps what
// was sealed with the masked key.
func TestCompactionShreds(t *testing.T) {
	h := newHarness(t, threeSimple, nil)
	h.complete("a_ref", map[string]any{
		"_secrets": map[string]any{"token": &masking.Sealed{Kind: masking.KindSecrets, Purpose: "p", Ciphertext: []byte{1}}},
		"_masked":  map[string]any{"keep": &masking.Sealed{Kind: masking.KindMasked, Purpose: "q", Ciphertext: []byte{2}}},
	})
	h.decide(engine.Terminate{})
	w, err := engine.Apply(h.w.Clone(), &schemas.WorkflowCompacted{Time: 1})
	if err != nil {
		t.Fatal(err)
	}
	out := w.TaskByID(h.task("a_ref").ID).Output
	if out["_secrets"].(map[string]any)["token"] != masking.Mask {
		t.Fatal("a secrets-kind value survived compaction")
	}
	if _, ok := out["_masked"].(map[string]any)["keep"].(*masking.Sealed); !ok {
		t.Fatal("a masked-kind value did not survive compaction")
	}
	if !w.Compacted {
		t.Fatal("not marked compacted")
	}
}

// Compaction leaves no value sealed under the secrets key wherever a
// workflow can hold one: a value sealed in a _secrets block is copied
// whole by references into any task's input, a child's input, a loop's
// iterations, the workflow's output and variables, under any key and at
// any depth, and a task that holds one need have no _secrets key nor
// resolved references. Each row puts one such value somewhere in a state
// of many tasks that hold none, and looks for its ciphertext in the
// encoding of the compacted state, folded from the state as the executor
// holds it and as the executions read model stores it: a fold that looks
// only where it expects seals misses one. A value sealed under the masked
// key, which compaction keeps, shows the search finds what is there.
func TestCompactionShredsEverySeal(t *testing.T) {
	t.Parallel()
	type place func(w *engine.Workflow, v any)
	nested := func(v any) map[string]any {
		return map[string]any{"plain": "x", "deep": map[string]any{"list": []any{1, map[string]any{"v": v}, "y"}}}
	}
	for _, tc := range []struct {
		name string
		put  place
	}{
		{"workflow input", func(w *engine.Workflow, v any) { w.Input["session"] = v }},
		{"workflow input nested", func(w *engine.Workflow, v any) { w.Input["deep"] = nested(v) }},
		{"workflow output", func(w *engine.Workflow, v any) { w.Output["out"] = []any{v} }},
		{"variables", func(w *engine.Workflow, v any) { w.Variables = map[string]any{"_secrets": map[string]any{"k": v}} }},
		{"variables under a plain key", func(w *engine.Workflow, v any) { w.Variables = nested(v) }},
		{"first task's input", func(w *engine.Workflow, v any) { w.Tasks[0].Input["copied"] = v }},
		{"a middle task's input, no _secrets key, no refs", func(w *engine.Workflow, v any) { w.Tasks[7].Input["copied"] = nested(v) }},
		{"a middle task's output, no _secrets key", func(w *engine.Workflow, v any) { w.Tasks[5].Output["v"] = v }},
		{"last task's output under _secrets", func(w *engine.Workflow, v any) {
			w.Tasks[len(w.Tasks)-1].Output["_secrets"] = map[string]any{"session": v}
		}},
		{"a task's output in a list of lists", func(w *engine.Workflow, v any) { w.Tasks[3].Output["rows"] = []any{[]any{"a", v}} }},
		{"a sub-workflow's input", func(w *engine.Workflow, v any) {
			w.Tasks[4].Type, w.Tasks[4].SubWorkflowID = "SUB_WORKFLOW", "kid-1"
			w.Tasks[4].Input["workflowInput"] = nested(v)
		}},
		{"a loop's iteration output", func(w *engine.Workflow, v any) {
			w.Tasks[6].Type = "DO_WHILE"
			w.Tasks[6].Output = map[string]any{"iteration": int64(2), "1": map[string]any{"t1": map[string]any{"_secrets": map[string]any{"s": v}}}}
		}},
		{"a task scheduled with output", func(w *engine.Workflow, v any) {
			w.Tasks[2].Type, w.Tasks[2].Output = "INLINE", map[string]any{"result": map[string]any{"v": v}}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			secret := []byte("ciphertext-of-a-secret-9Qx2")
			kept := []byte("ciphertext-of-masked-data-7Lm4")
			ref := []byte("sealed-resolved-value-3Vw8")
			w := &engine.Workflow{ID: "wf-1", Name: "many", Status: conductor.WorkflowCompleted, SealsSecrets: true,
				Input: map[string]any{"i": 1}, Output: map[string]any{"v": 10}, Variables: map[string]any{},
				Resolved: []schemas.ResolvedRef{{Kind: "secret", Name: "gone", Sealed: ref}}}
			for i := range 10 {
				w.Tasks = append(w.Tasks, &engine.Task{ID: fmt.Sprintf("t%d", i), Ref: fmt.Sprintf("t%d", i), Type: "SIMPLE",
					Status: conductor.TaskCompleted, Input: map[string]any{"prev": i}, Output: map[string]any{"v": i + 1}})
			}
			w.Tasks[8].Resolved = []schemas.ResolvedRef{{Kind: "secret", Name: "user", Sealed: ref}}
			w.Tasks[9].Output["_masked"] = map[string]any{"m": &masking.Sealed{Kind: masking.KindMasked, Purpose: "wf/wf-1/m", Ciphertext: kept}}
			tc.put(w, &masking.Sealed{Kind: masking.KindSecrets, Purpose: "wf/wf-1/s", Ciphertext: secret})
			before, err := msgpack.Marshal(w)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Contains(before, secret) || !bytes.Contains(before, ref) {
				t.Fatal("the state does not hold the seals it was given")
			}
			var stored engine.Workflow
			if err := msgpack.Unmarshal(before, &stored); err != nil {
				t.Fatal(err)
			}
			for _, fold := range []struct {
				name string
				w    *engine.Workflow
			}{{"executor's", w.Clone()}, {"read model's", &stored}} {
				after, err := engine.ApplyRecord(fold.w, []schemas.Event{&schemas.WorkflowCompacted{Time: 1}})
				if err != nil {
					t.Fatal(err)
				}
				enc, err := msgpack.Marshal(after)
				if err != nil {
					t.Fatal(err)
				}
				if bytes.Contains(enc, secret) || bytes.Contains(enc, ref) {
					t.Errorf("the %s fold left a value sealed under the destroyed key", fold.name)
				}
				if !bytes.Contains(enc, kept) {
					t.Errorf("the %s fold dropped a value sealed under the masked key", fold.name)
				}
				if !after.Compacted || after.Holds(masking.KindSecrets) {
					t.Errorf("the %s fold: compacted %v, holds a secrets-kind seal %v", fold.name, after.Compacted, after.Holds(masking.KindSecrets))
				}
			}
			if again, _ := msgpack.Marshal(w); !bytes.Contains(again, secret) || !bytes.Contains(again, ref) {
				t.Error("the fold shredded the state it folded into, which other states share")
			}
		})
	}
}

// A value found to be secret after a dynamic fork's task was configured
// with it is kept in the task's configuration, whose views mask it; when
// it went into a _secrets block (marked for shredding), compaction
// replaces it there with "***" for good, as in the task's input, and a
// retry after it configures the task again with "***". One that went into
// _masked stays.
func TestCompactionShredsAForkedTasksConfiguration(t *testing.T) {
	const pw = "pw-value-Zx81mQ4r"
	const def = `{"name":"f","tasks":[{"name":"df","taskReferenceName":"df","type":"FORK_JOIN_DYNAMIC","dynamicForkTasksParam":"tasks",
	  "inputParameters":{"tasks":[{"name":"b","taskReferenceName":"d1","inputParameters":{"p":"${workflow.input.pw}","plain":"x"}}]}},
	  {"name":"dj","taskReferenceName":"dj","type":"JOIN"}]}`
	configured := func(d1 string) []string { return []string{"input.pw", "task/" + d1 + engine.ConfigInputField + ".p"} }
	for _, tc := range []struct {
		name         string
		paths, shred func(d1 string) []string
		want         any // d1's configured p after compaction
	}{
		{"went into _secrets", configured, configured, masking.Mask},
		{"went into _masked", configured, func(string) []string { return nil }, pw},
		{"another value went into _secrets", func(string) []string { return []string{"input.other"} },
			func(string) []string { return []string{"input.other"} }, pw},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, def, map[string]any{"pw": pw, "other": "other-value-Kd93"})
			h.report("d1", conductor.TaskFailedWithTerminalError, nil, "no")
			h.wantStatus(conductor.WorkflowFailed)
			d1 := h.task("d1")
			w, err := engine.Apply(h.w.Clone(), &schemas.ValuesMasked{Paths: tc.paths(d1.ID), Shred: tc.shred(d1.ID)})
			if err == nil {
				w, err = engine.Apply(w, &schemas.WorkflowCompacted{Time: 1})
			}
			if err != nil {
				t.Fatal(err)
			}
			var cfg conductor.WorkflowTask
			after := w.TaskByID(d1.ID)
			if err := conductor.Unmarshal(after.Config, &cfg); err != nil {
				t.Fatal(err)
			}
			if cfg.InputParameters["p"] != tc.want || cfg.InputParameters["plain"] != "x" || cfg.Name != "b" || cfg.TaskReferenceName != "d1" {
				t.Fatalf("d1's configuration after compaction: %s", after.Config)
			}
			if (tc.want == masking.Mask) != (after != d1) {
				t.Fatalf("d1 replaced by a copy: %v (the read model writes the tasks replaced)", after != d1)
			}
			if !bytes.Contains(d1.Config, []byte(pw)) {
				t.Fatal("compaction changed the state before it")
			}
			h.w = w
			h.decide(engine.Retry{})
			if retried := h.wantTask("d1", conductor.TaskScheduled); bytes.Contains(retried.Config, []byte(pw)) != (tc.want == pw) {
				t.Fatalf("the retry after compaction configured d1 with %s", retried.Config)
			}
		})
	}
}

// What MaskedPaths name of a dynamic fork's task's configuration (see
// engine.ConfigField) reads "***" in its views, its workflowTask and its
// fork's forkedTaskDefs, wherever it sits: a top-level key of its
// inputParameters, a string at a JSON pointer (a description, an inline
// taskDefinition's template, a field Conductor's model does not know,
// whose name holds "/" and "~", or is one of its fields' in another case:
// InputParameters, NAME), or the whole configuration, of which only its
// name, reference name and type, named exactly so, are left. Marked for shredding, compaction replaces it so in the state,
// and a retry after it is configured so. The rest is kept as given, and a
// path naming the task's name leaves it.
func TestMaskedPathsOfAForkedTasksConfiguration(t *testing.T) {
	const pw = "pw-value-Zx81mQ4r"
	const def = `{"name":"f","tasks":[{"name":"df","taskReferenceName":"df","type":"FORK_JOIN_DYNAMIC","dynamicForkTasksParam":"tasks",
	  "inputParameters":{"tasks":[{"name":"b","taskReferenceName":"d1","description":"${workflow.input.pw}",
	    "inputParameters":{"p":"${workflow.input.pw}","plain":"x"},"InputParameters":{"q":"${workflow.input.pw}"},"NAME":"${workflow.input.pw}",
	    "taskDefinition":{"name":"b","inputTemplate":{"t":"${workflow.input.pw}","u":"kept"}},
	    "notes":{"a/b~c":["x","${workflow.input.pw}"]}}]}},
	  {"name":"dj","taskReferenceName":"dj","type":"JOIN"}]}`
	each := func(d1 string) []string {
		return []string{engine.ConfigPath(d1, "description"), engine.ConfigPath(d1, "taskDefinition", "inputTemplate", "t"),
			engine.ConfigPath(d1, "notes", "a/b~c", "1"), engine.ConfigPath(d1, "name"), engine.ConfigPath(d1, "NAME"),
			"task/" + d1 + engine.ConfigInputField + ".p", engine.ConfigPath(d1, "InputParameters", "q")}
	}
	whole := func(d1 string) []string { return []string{engine.ConfigPath(d1)} }
	kept := func(t *testing.T, cfg map[string]any) {
		t.Helper()
		in, _ := cfg["inputParameters"].(map[string]any)
		td, _ := cfg["taskDefinition"].(map[string]any)
		tmpl, _ := td["inputTemplate"].(map[string]any)
		notes, _ := cfg["notes"].(map[string]any)
		if cfg["name"] != "b" || cfg["taskReferenceName"] != "d1" || in["plain"] != "x" || tmpl["u"] != "kept" ||
			fmt.Sprint(notes["a/b~c"]) != "[x ***]" {
			t.Errorf("configuration lost what it keeps: %v", cfg)
		}
	}
	for _, tc := range []struct {
		name          string
		paths, shred  func(d1 string) []string
		check         func(t *testing.T, cfg map[string]any) // the view's configuration
		compactedHold bool                                   // the value is in the state after compaction
	}{
		{"each place", each, each, kept, false},
		{"each place, went into _masked", each, func(string) []string { return nil }, kept, true},
		{"whole", whole, whole, func(t *testing.T, cfg map[string]any) {
			t.Helper()
			if cfg["name"] != "b" || cfg["taskReferenceName"] != "d1" || cfg["description"] != nil || cfg["notes"] != nil || cfg["taskDefinition"] != nil ||
				cfg["NAME"] != nil || cfg["InputParameters"] != nil {
				t.Errorf("whole configuration masked as %v, want its names alone", cfg)
			}
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, def, map[string]any{"pw": pw})
			h.report("d1", conductor.TaskFailedWithTerminalError, nil, "no")
			h.wantStatus(conductor.WorkflowFailed)
			d1 := h.task("d1")
			w, err := engine.Apply(h.w.Clone(), &schemas.ValuesMasked{Paths: tc.paths(d1.ID), Shred: tc.shred(d1.ID)})
			if err != nil {
				t.Fatal(err)
			}
			own, _ := json.Marshal(w.TaskByID(d1.ID).Conductor(w).WorkflowTask)
			defs, _ := json.Marshal(w.LatestByRef("df").Conductor(w).InputData["forkedTaskDefs"])
			for _, view := range [][]byte{own, []byte(strings.TrimSuffix(strings.TrimPrefix(string(defs), "["), "]"))} {
				var cfg map[string]any
				if err := json.Unmarshal(view, &cfg); err != nil {
					t.Fatalf("%s: %v", view, err)
				}
				if bytes.Contains(view, []byte(pw)) {
					t.Errorf("a view shows the value: %s", view)
				}
				tc.check(t, cfg)
			}
			if w, err = engine.Apply(w, &schemas.WorkflowCompacted{Time: 1}); err != nil {
				t.Fatal(err)
			}
			after := w.TaskByID(d1.ID)
			if bytes.Contains(after.Config, []byte(pw)) != tc.compactedHold {
				t.Fatalf("d1's configuration after compaction: %s", after.Config)
			}
			if !tc.compactedHold {
				var cfg map[string]any
				if err := json.Unmarshal(after.Config, &cfg); err != nil {
					t.Fatal(err)
				}
				tc.check(t, cfg)
			}
			if !bytes.Contains(d1.Config, []byte(pw)) {
				t.Fatal("compaction changed the state before it")
			}
			h.w = w
			h.decide(engine.Retry{})
			if retried := h.wantTask("d1", conductor.TaskScheduled); bytes.Contains(retried.Config, []byte(pw)) != tc.compactedHold {
				t.Fatalf("the retry after compaction configured d1 with %s", retried.Config)
			}
		})
	}
}

// A workflow is Unsealed until an event brings it a sealed value, and
// stays unsealed no more once one came, even after compaction replaced it:
// Holds, and the hand-off, skip looking only when nothing was ever sealed.
func TestUnsealedUntilSealed(t *testing.T) {
	h := newHarness(t, threeSimple, map[string]any{"plain": "x"})
	if !h.w.Unsealed {
		t.Fatal("a workflow started without sealed data is not Unsealed")
	}
	h.complete("a_ref", map[string]any{"ok": true})
	if !h.w.Unsealed || h.w.Holds(masking.KindSecrets) {
		t.Fatalf("after a plain output: Unsealed %v", h.w.Unsealed)
	}
	h.complete("b_ref", map[string]any{"_secrets": map[string]any{"token": &masking.Sealed{Kind: masking.KindSecrets, Purpose: "p", Ciphertext: []byte{1}}}})
	if h.w.Unsealed || !h.w.Holds(masking.KindSecrets) {
		t.Fatalf("after a sealed output: Unsealed %v, Holds %v", h.w.Unsealed, h.w.Holds(masking.KindSecrets))
	}
	h.decide(engine.Terminate{})
	w, err := engine.Apply(h.w.Clone(), &schemas.WorkflowCompacted{Time: 1})
	if err != nil {
		t.Fatal(err)
	}
	if w.Unsealed {
		t.Fatal("compaction made the workflow Unsealed again")
	}

	sealedStart := &schemas.WorkflowStarted{WorkflowID: "s", Name: "n", Version: 1,
		Input: map[string]any{"card": &masking.Sealed{Kind: masking.KindMasked, Purpose: "p", Ciphertext: []byte{1}}}}
	if w, err := engine.Apply(nil, sealedStart); err != nil || w.Unsealed {
		t.Fatalf("a start with a sealed input: Unsealed %v, err %v", w != nil && w.Unsealed, err)
	}
}

// A sealed value embedded in text is not interpolated (as its mask): the
// text becomes a deferred read of the value, which FindSealed finds until
// compaction destroys it. A whole-string reference carries the value.
func TestEmbeddedSealedValue(t *testing.T) {
	def := `{"name":"e","tasks":[{"name":"a","taskReferenceName":"a_ref"},
	  {"name":"b","taskReferenceName":"b_ref","inputParameters":{"auth":"Bearer ${a_ref.output._secrets.token}!","whole":"${a_ref.output._secrets.token}",
	    "plain":"id ${a_ref.output.id}"}}]}`
	h := newHarness(t, def, nil)
	a := h.task("a_ref")
	sealed := &masking.Sealed{Kind: masking.KindSecrets, Purpose: "wf/wf-1/task/" + a.ID + "/output._secrets.token", Ciphertext: []byte{1}}
	h.complete("a_ref", map[string]any{"id": "x1", "_secrets": map[string]any{"token": sealed}})
	b := h.wantTask("b_ref", conductor.TaskScheduled)
	ref := "task/" + a.ID + "/output._secrets.token"
	if b.Input["auth"] != "Bearer ${sealed:"+ref+"}!" || b.Input["whole"] != sealed || b.Input["plain"] != "id x1" {
		t.Fatalf("input %#v", b.Input)
	}
	if len(b.Deferred) != 1 || fmt.Sprint(b.Deferred[0]) != "[auth]" {
		t.Fatalf("deferred %v", b.Deferred)
	}
	if got := engine.FindSealed(h.w, ref); got != sealed {
		t.Fatalf("FindSealed = %v", got)
	}
	if engine.FindSealed(h.w, "task/"+a.ID+"/output._secrets.other") != nil || engine.FindSealed(h.w, "task/nope/output._secrets.token") != nil {
		t.Fatal("FindSealed found what is not there")
	}
	h.decide(engine.Terminate{})
	w, err := engine.Apply(h.w.Clone(), &schemas.WorkflowCompacted{Time: 1})
	if err != nil {
		t.Fatal(err)
	}
	if engine.FindSealed(w, ref) != nil {
		t.Fatal("FindSealed found a value compaction destroyed")
	}
}

// A task taken again and again (its worker calls back) names each value
// resolved into it once, not once per take: it would grow, with its
// sealed copies, for as long as the worker calls back.
func TestResolvedOncePerValue(t *testing.T) {
	h := newHarness(t, `{"name":"cb","tasks":[{"name":"poller","taskReferenceName":"p"}]}`, nil)
	ref := schemas.ResolvedRef{Kind: "secret", Name: "token", Version: 1, Principal: "app:tester", GrantedBy: "creator", Sealed: []byte("ciphertext")}
	newer := ref
	newer.Version = 2
	for i := range 10 {
		resolved := []schemas.ResolvedRef{ref}
		if i >= 5 {
			resolved = []schemas.ResolvedRef{newer} // the secret was rotated
		}
		task := h.task("p")
		h.decide(engine.Take{TaskID: task.ID, WorkerID: "w1", HandOff: &engine.HandOff{Resolved: resolved}})
		h.decide(engine.Result{Result: conductor.TaskResult{TaskID: task.ID, WorkflowInstanceID: h.w.ID, WorkerID: "w1",
			Status: conductor.TaskInProgress, CallbackAfterSeconds: 1}})
		h.advance(2 * time.Second)
	}
	if got := h.task("p").Resolved; len(got) != 2 || got[0].Version != 1 || got[1].Version != 2 {
		t.Fatalf("the task names %d resolved values (%+v), want each version once", len(got), got)
	}
}

// A task's name, type and reference name are written in plain text (a
// queue is named after the type), so a DYNAMIC task or a dynamic fork may
// not take them from _secrets or _masked data: in the decision that
// receives the data it is still plain, and would be written as given.
func TestNamesFromSealedData(t *testing.T) {
	const value = "dyn-name-from-secrets-7c6b"
	tests := []struct {
		name, task string
		output     map[string]any
	}{
		{"DYNAMIC name", `{"name":"d","taskReferenceName":"d","type":"DYNAMIC","dynamicTaskNameParam":"tn","inputParameters":{"tn":"${a.output._secrets.n}"}}`,
			map[string]any{"_secrets": map[string]any{"n": value}}},
		{"DYNAMIC name embedding it", `{"name":"d","taskReferenceName":"d","type":"DYNAMIC","dynamicTaskNameParam":"tn","inputParameters":{"tn":"run_${a.output._masked.n}"}}`,
			map[string]any{"_masked": map[string]any{"n": value}}},
		{"forked task's name", `{"name":"d","taskReferenceName":"d","type":"FORK_JOIN_DYNAMIC","dynamicForkTasksParam":"ts","inputParameters":{"ts":[{"name":"${a.output._secrets.n}","taskReferenceName":"f"}]}},{"name":"j","taskReferenceName":"j","type":"JOIN"}`,
			map[string]any{"_secrets": map[string]any{"n": value}}},
		{"forked task's reference name", `{"name":"d","taskReferenceName":"d","type":"FORK_JOIN_DYNAMIC","dynamicForkTasksParam":"ts","inputParameters":{"ts":"${a.output._secrets.ts}"}},{"name":"j","taskReferenceName":"j","type":"JOIN"}`,
			map[string]any{"_secrets": map[string]any{"ts": []any{map[string]any{"name": "w", "taskReferenceName": value}}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, `{"name":"w","tasks":[{"name":"a","taskReferenceName":"a"},`+tt.task+`]}`, nil)
			d := h.complete("a", tt.output)
			failed := h.wantTask("d", conductor.TaskFailedWithTerminalError)
			if !strings.Contains(failed.Reason, "_secrets or _masked data") {
				t.Errorf("reason %q, want it to say the name comes from sealed data", failed.Reason)
			}
			for _, ev := range d.Events {
				if ts, ok := ev.(*schemas.TaskScheduled); ok && (strings.Contains(ts.Name+ts.Type+ts.Ref+ts.Reason, value) || bytes.Contains(ts.Config, []byte(value))) {
					t.Errorf("task %s scheduled as %s (%s): its name holds the sealed value", ts.Ref, ts.Name, ts.Type)
				}
			}
		})
	}
	// A name that only looks like a short _secrets value is a name.
	h := newHarness(t, `{"name":"w","tasks":[{"name":"a","taskReferenceName":"a"},
	  {"name":"d","taskReferenceName":"d","type":"DYNAMIC","dynamicTaskNameParam":"tn","inputParameters":{"tn":"send_${a.output.kind}"}}]}`, nil)
	h.complete("a", map[string]any{"kind": "mail", "_secrets": map[string]any{"flag": "mail"}})
	if got := h.wantTask("d", conductor.TaskScheduled); got.Name != "send_mail" {
		t.Fatalf("DYNAMIC scheduled %s, want send_mail", got.Name)
	}
}

// BenchmarkApplyCompacted is the fold of a compaction record into a
// finished workflow's state. "bench" is one workflow of fvbench's secrets
// workload: three tasks, one whose output holds a sealed session, one
// whose resolutions were sealed. "long" is 100 tasks in a row, the one in
// the middle so. The executor and the executions read model each pay it
// once a workflow.
//
//	go test ./engine -run '^$' -bench Compact -benchmem
func BenchmarkApplyCompacted(b *testing.B) {
	sealed := func(p string) *masking.Sealed {
		return &masking.Sealed{Kind: masking.KindSecrets, Purpose: p, Ciphertext: make([]byte, 48)}
	}
	refs := []schemas.ResolvedRef{
		{Kind: "secret", Name: "bench_user", Version: 1, Sealed: []byte("sealed-user")},
		{Kind: "secret", Name: "bench_password", Version: 1, Sealed: []byte("sealed-password")}}
	for _, tc := range []struct {
		name   string
		tasks  int
		secret int // the task handed the secrets, whose output holds one sealed
	}{{"bench", 3, 1}, {"long", 100, 50}} {
		b.Run(tc.name, func(b *testing.B) {
			var def strings.Builder
			def.WriteString(`{"name":"row","version":1,"tasks":[`)
			for i := range tc.tasks {
				if i > 0 {
					def.WriteString(",")
				}
				in := `"i":"${workflow.input.i}"`
				if i > 0 {
					in = fmt.Sprintf(`"prev":"${t%d.output.v}"`, i-1)
				}
				if i == tc.secret {
					in += `,"user":"${workflow.secrets.bench_user}","password":"${workflow.secrets.bench_password}"`
				}
				fmt.Fprintf(&def, `{"name":"t","taskReferenceName":"t%d","inputParameters":{%s}}`, i, in)
			}
			def.WriteString("]}")
			h := newHarness(b, def.String(), map[string]any{"i": 1})
			for i := range tc.tasks {
				ref := fmt.Sprintf("t%d", i)
				out := map[string]any{"v": i}
				if i == tc.secret {
					h.decide(engine.Take{TaskID: h.task(ref).ID, HandOff: &engine.HandOff{Resolved: refs}})
					out["_secrets"] = map[string]any{"session": sealed("session")}
				}
				h.complete(ref, out)
			}
			if h.w.Status != conductor.WorkflowCompleted {
				b.Fatalf("workflow %s", h.w.Status)
			}
			for b.Loop() {
				w, err := engine.Apply(h.w.Clone(), &schemas.WorkflowCompacted{Time: 1})
				if err != nil || !w.Compacted {
					b.Fatal(w.Compacted, err)
				}
			}
		})
	}
}

// A workflow started with text made of a sealed value of its starter (a
// SUB_WORKFLOW's input, a START_WORKFLOW's startWorkflow.input) is handed
// the sealed value with the deferred read of it: its preparation opens it
// into the text, and cannot find it in the starter's state. So is a
// workflow started again from the stored state (recovery).
func TestStartedWorkflowGetsTheSealedValuesItsTextReads(t *testing.T) {
	in := `{"auth":"Bearer ${a_ref.output._secrets.token}","mixed":"${workflow.secrets.k}:${a_ref.output._secrets.token}","n":"${a_ref.output.id}"}`
	for _, tc := range []struct{ name, task string }{
		{"SUB_WORKFLOW", `{"name":"s","taskReferenceName":"s_ref","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"kid"},"inputParameters":` + in + `}`},
		{"START_WORKFLOW", `{"name":"s","taskReferenceName":"s_ref","type":"START_WORKFLOW","inputParameters":{"startWorkflow":{"name":"kid","input":` + in + `}}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, `{"name":"e","tasks":[{"name":"a","taskReferenceName":"a_ref"},`+tc.task+`]}`, nil)
			a := h.task("a_ref")
			ref := "task/" + a.ID + "/output._secrets.token"
			sealed := &masking.Sealed{Kind: masking.KindSecrets, Purpose: "wf/wf-1/" + ref, Ciphertext: []byte{1}}
			started := func(effs []engine.Effect) engine.StartWorkflow {
				t.Helper()
				for _, e := range effs {
					if sw, ok := e.(engine.StartWorkflow); ok {
						return sw
					}
				}
				t.Fatalf("no start among %v", effs)
				return engine.StartWorkflow{}
			}
			sw := started(h.complete("a_ref", map[string]any{"id": "x1", "_secrets": map[string]any{"token": sealed}}).Effects)
			if sw.Input["auth"] != "Bearer ${sealed:"+ref+"}" || sw.Input["n"] != "x1" {
				t.Fatalf("input %#v", sw.Input)
			}
			if len(sw.Sealed) != 1 || sw.Sealed[ref] != sealed {
				t.Fatalf("handed %v, want %s", sw.Sealed, ref)
			}
			if again := started(engine.Effects(h.w, h.now.UnixMilli())); len(again.Sealed) != 1 || again.Sealed[ref] != sealed {
				t.Fatalf("started again, handed %v", again.Sealed)
			}
		})
	}
}

// mapResolver resolves the deferred expressions it names.
type mapResolver map[string]any

func (r mapResolver) Resolve(body string) (any, error) {
	if v, ok := r[body]; ok {
		return v, nil
	}
	return nil, fmt.Errorf("no %s", body)
}

// The secret and environment references (and reads of sealed data in
// text) that a definition writes into a FORK_JOIN_DYNAMIC's inputs for its
// tasks, by reference name or as forkTaskInputs, are handed to each task
// resolved, as any task's: its input keeps them with their paths, under
// the key they are given as ({"input": element}), one its own
// inputParameters also set and "__index" aside. They used to reach the
// task as their text, "$${" and all. A rerun from the fork, of the state
// read back from the log (its paths' list indices decoded as int8), forks
// them alike.
func TestForkedInputsKeepTheirReferences(t *testing.T) {
	const token = "token-value-Qm27xL"
	for _, tc := range []struct {
		name, fork string
		want       map[string]string // by reference name: the input handed off, as JSON
	}{
		{"by reference name", `"dynamicForkTasksParam":"tasks","dynamicForkTasksInputParamName":"ins","inputParameters":{
		   "tasks":[{"name":"w","taskReferenceName":"d1","inputParameters":{"own":"o","s":"mine"}},{"name":"w","taskReferenceName":"d2"}],
		   "ins":{"d1":{"s":"${workflow.secrets.tok}","l":["a","at ${workflow.env.region} $${x}"],"auth":"Bearer ${a.output._secrets.token}"},
		     "d2":{"p":"${workflow.input.p}","e":{"r":"${workflow.env.region}"}}}}`,
			map[string]string{
				"d1": `{"auth":"Bearer ` + token + `","l":["a","at eu-west-1 ${x}"],"own":"o","s":"tok-value"}`,
				"d2": `{"e":{"r":"eu-west-1"},"p":"plain $${y}"}`,
			}},
		{"forkTaskInputs", `"inputParameters":{"forkTaskName":"w","forkTaskInputs":[
		   {"s":"${workflow.secrets.tok}","__index":"${workflow.env.region}"},"${workflow.env.region}",["x","${workflow.secrets.tok}"],
		   {"input":"${workflow.input.p}","auth":"Bearer ${a.output._secrets.token}"}]}`,
			map[string]string{
				"_w_0": `{"__index":0,"s":"tok-value"}`,
				"_w_1": `{"__index":1,"input":"eu-west-1"}`,
				"_w_2": `{"__index":2,"input":["x","tok-value"]}`,
				"_w_3": `{"__index":3,"auth":"Bearer ` + token + `","input":"plain $${y}"}`,
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			def := `{"name":"f","tasks":[{"name":"a","taskReferenceName":"a"},
			  {"name":"fork","taskReferenceName":"fork","type":"FORK_JOIN_DYNAMIC",` + tc.fork + `},
			  {"name":"join","taskReferenceName":"join","type":"JOIN"}]}`
			h := newHarness(t, def, map[string]any{"p": "plain $${y}"})
			a := h.task("a")
			sealed := &masking.Sealed{Kind: masking.KindSecrets, Purpose: "wf/wf-1/task/" + a.ID + "/output._secrets.token", Ciphertext: []byte{1}}
			h.complete("a", map[string]any{"_secrets": map[string]any{"token": sealed}})
			r := mapResolver{"workflow.secrets.tok": "tok-value", "workflow.env.region": "eu-west-1",
				"sealed:task/" + a.ID + "/output._secrets.token": token}
			handed := func(when string) {
				t.Helper()
				for ref, want := range tc.want {
					task := h.wantTask(ref, conductor.TaskScheduled)
					paths := make([]expr.Path, len(task.Deferred))
					for i, p := range task.Deferred {
						paths[i] = p
					}
					in, err := expr.ResolveDeferred(task.Input, paths, r)
					if err != nil {
						t.Fatalf("%s: %s: %v", when, ref, err)
					}
					if got, _ := json.Marshal(in); string(got) != want {
						t.Errorf("%s: %s is handed %s, want %s", when, ref, got, want)
					}
				}
			}
			handed("forked")
			h.decide(engine.Terminate{})
			stored, err := schemas.MarshalSorted(h.w)
			if err != nil {
				t.Fatal(err)
			}
			var back engine.Workflow
			if err := msgpack.Unmarshal(stored, &back); err != nil {
				t.Fatal(err)
			}
			h.w = &back
			h.decide(engine.Rerun{Request: conductor.RerunWorkflowRequest{ReRunFromTaskID: h.task("fork").ID}})
			handed("rerun from the fork, read back")
		})
	}
}
