package guard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/masking"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// A child's output, as its log holds it, has its _secrets sealed under the
// child's key, which its parent cannot open: a parent told of the child's
// end from that state (recovery) takes it opened, and seals it again.
// Once the child's key is destroyed, its values read "***".
func TestOpenOutput(t *testing.T) {
	ctx, keys := openKeys(t)
	g := New(Config{Keys: keys})
	ended := func(id string) *engine.Workflow {
		w, err := engine.Apply(nil, &schemas.WorkflowStarted{WorkflowID: id, Name: "kid", Version: 1,
			Def: []byte(`{"name":"kid","version":1,"tasks":[],"maskedFields":["password"]}`), ParentWorkflowID: "parent", Time: 1})
		if err != nil {
			t.Fatal(err)
		}
		dec, err := g.Protect(ctx, w, engine.Decision{Events: []schemas.Event{&schemas.WorkflowStatusChanged{
			Status: conductor.WorkflowCompleted, Time: 2,
			Output: map[string]any{"_secrets": map[string]any{"token": "child-token-7f3a"}, "plain": "kept", "password": "child-output-pw-424242"}}}})
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range dec.Events {
			if w, err = engine.Apply(w, ev); err != nil {
				t.Fatal(err)
			}
		}
		if !masking.HasSealed(w.Output) {
			t.Fatalf("the child's output was not sealed: %v", w.Output)
		}
		return w
	}
	token := func(out map[string]any) any { return out["_secrets"].(map[string]any)["token"] }

	child := ended("kid-1")
	out, err := g.OpenOutput(ctx, child)
	// A maskedFields value reads "***": the parent seals only _secrets
	// and _masked, and would store it in plaintext.
	if err != nil || token(out) != "child-token-7f3a" || out["plain"] != "kept" || out["password"] != masking.Mask {
		t.Fatalf("opened output %v, %v", out, err)
	}
	if !masking.HasSealed(child.Output) {
		t.Fatal("opening changed the child's state")
	}

	// A value sealed by another workflow is not the child's to open.
	other := ended("kid-2")
	child.Output = other.Output
	if _, err := g.OpenOutput(ctx, child); !errors.Is(err, errForeign) {
		t.Fatalf("another workflow's sealed value: %v", err)
	}

	shredded := ended("kid-3")
	if err := keys.DestroyKey(context.Background(), secretsKeyOf(shredded)); err != nil {
		t.Fatal(err)
	}
	if out, err := New(Config{Keys: keys}).OpenOutput(ctx, shredded); err != nil || token(out) != masking.Mask {
		t.Fatalf("output after the key's destruction %v, %v", out, err)
	}
}

// A number resolved into a child's input is looked for in what the child
// writes, as its strings are: a task of the child may echo it.
func TestChildInputNumbersRedacted(t *testing.T) {
	ctx, keys := openKeys(t)
	g := New(Config{Keys: keys, Authz: allowAll{}, Secrets: fakeSecrets{"acct": `{"user":"svc-account","pin":918273645501}`}})
	in, _, err := g.PrepareChild(ctx, engine.StartWorkflow{WorkflowID: "kid", From: "parent", CreatedBy: "admin",
		Input: map[string]any{"pin": "${workflow.secrets.acct.pin}"}, InputDeferred: [][]any{{"pin"}}})
	if err != nil || !masking.HasSealed(in) {
		t.Fatalf("child input %v, %v", in, err)
	}
	r := g.memoFor("kid").get()
	if got := r.Map(map[string]any{"echo": "pin 918273645501", "copy": int64(918273645501)}); got["echo"] != "pin ***" || got["copy"] != masking.Mask {
		t.Fatalf("the child's output redacted to %v", got)
	}
}

// Text a parent gives its child that embeds a value the parent sealed
// ("Bearer ${src.output._secrets.token}") reaches the child with the
// value, sealed whole under the child's key, whether the decision that
// starts the child sealed the value (its effect holds the text plain) or
// an earlier one did (the text reads the value by reference, handed over
// with the start). The child's redaction looks for the value alone too,
// and for a secret resolved into text (no key of its input holds either
// whole): a task of the child may echo it.
func TestChildGetsTextMadeOfSealedData(t *testing.T) {
	ctx, keys := openKeys(t)
	const token, plain = "child-text-token-7Kq2", "child-text-secret-4Rw9"
	for _, tc := range []struct {
		name  string
		later bool
	}{{"sealed by the starting decision", false}, {"sealed by an earlier decision", true}} {
		t.Run(tc.name, func(t *testing.T) {
			g := New(Config{Keys: keys, Authz: allowAll{}, Secrets: fakeSecrets{"plain": plain}})
			parentID, childID := "wf-ct-"+strconv.FormatBool(tc.later), "kid-ct-"+strconv.FormatBool(tc.later)
			w := parentOfSrc(ctx, t, g, parentID)
			done := &schemas.TaskUpdated{TaskID: "t1", Status: conductor.TaskCompleted, Time: 2,
				Output: map[string]any{"_secrets": map[string]any{"token": token}}}
			eff := engine.StartWorkflow{WorkflowID: childID, Name: "kid", From: parentID, ParentWorkflowID: parentID, CreatedBy: "admin",
				Input:         map[string]any{"auth": "Bearer " + token, "mixed": "${workflow.secrets.plain}:" + token},
				InputDeferred: [][]any{{"mixed"}}}
			dec := engine.Decision{Events: []schemas.Event{done}, Effects: []engine.Effect{eff}}
			if tc.later {
				w = protectAndFold(ctx, t, g, w, done)
				// As the engine builds it from the stored state.
				ref := "task/t1/output._secrets.token"
				eff.Input = map[string]any{"auth": "Bearer ${sealed:" + ref + "}", "mixed": "${workflow.secrets.plain}:${sealed:" + ref + "}"}
				eff.InputDeferred = [][]any{{"auth"}, {"mixed"}}
				eff.Sealed = map[string]*masking.Sealed{ref: engine.FindSealed(w, ref)}
				eff.SecretsKey = w.SecretsKey
				dec = engine.Decision{Effects: []engine.Effect{eff}}
			}
			protected, err := g.Protect(ctx, w, dec)
			if err != nil {
				t.Fatal(err)
			}
			eff = protected.Effects[0].(engine.StartWorkflow)
			in, _, err := g.PrepareChild(ctx, eff)
			if err != nil {
				t.Fatal(err)
			}
			opened, err := masking.Open(in, g.opener(ctx, &engine.Workflow{ID: childID}))
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]any{"auth": "Bearer " + token, "mixed": plain + ":" + token}
			for k, v := range want {
				if _, sealed := in[k].(*masking.Sealed); !sealed {
					t.Errorf("the child's input %s = %v, want it sealed", k, in[k])
				}
				if got := opened.(map[string]any)[k]; got != v {
					t.Errorf("the child's input %s opens as %v, want %v", k, got, v)
				}
			}
			for _, v := range []string{token, plain} {
				if got := g.memoFor(childID).get().String("echo " + v); got != "echo ***" {
					t.Errorf("the child's echo of %s alone is redacted to %q", v, got)
				}
			}
		})
	}
}

// A child's input text made of its parent's sealed data ("Bearer
// ${src.output._secrets.token}") is sealed whole; a task of the child that
// echoes the value alone has it redacted also once the child's memo is
// rebuilt from its state (another engine, a restart), which knows the
// value only as its start records it: sealed under the child's key of the
// value's kind, never in plain text. Text made of _masked data alone is
// sealed as _masked, and what the child knows of it outlives the child's
// compaction; a _secrets value goes with the child's secrets key.
func TestRebuiltChildLooksForItsParentsSealedDataInText(t *testing.T) {
	ctx, keys := openKeys(t)
	const token, note, plain = "parent-token-Vb82kQ", "parent-masked-Lp37sZ", "child-text-secret-Ew51"
	for _, tc := range []struct {
		name  string
		later bool
	}{{"sealed by the starting decision", false}, {"sealed by an earlier decision", true}} {
		t.Run(tc.name, func(t *testing.T) {
			src := fakeSecrets{"plain": plain}
			g := New(Config{Keys: keys, Authz: allowAll{}, Secrets: src})
			parentID, childID := "wf-rc-"+strconv.FormatBool(tc.later), "kid-rc-"+strconv.FormatBool(tc.later)
			w := parentOfSrc(ctx, t, g, parentID)
			done := &schemas.TaskUpdated{TaskID: "t1", Status: conductor.TaskCompleted, Time: 2,
				Output: map[string]any{"_secrets": map[string]any{"token": token}, "_masked": map[string]any{"note": note}}}
			eff := engine.StartWorkflow{WorkflowID: childID, Name: "kid", From: parentID, ParentWorkflowID: parentID, CreatedBy: "admin",
				Input:         map[string]any{"auth": "Bearer " + token, "note": "note " + note, "both": token + "/" + note, "mixed": "${workflow.secrets.plain}/" + note},
				InputDeferred: [][]any{{"mixed"}}}
			dec := engine.Decision{Events: []schemas.Event{done}, Effects: []engine.Effect{eff}}
			if tc.later {
				w = protectAndFold(ctx, t, g, w, done)
				tok, msk := "${sealed:task/t1/output._secrets.token}", "${sealed:task/t1/output._masked.note}"
				eff.Input = map[string]any{"auth": "Bearer " + tok, "note": "note " + msk, "both": tok + "/" + msk, "mixed": "${workflow.secrets.plain}/" + msk}
				eff.InputDeferred = [][]any{{"auth"}, {"note"}, {"both"}, {"mixed"}}
				eff.Sealed = map[string]*masking.Sealed{}
				for _, ref := range []string{"task/t1/output._secrets.token", "task/t1/output._masked.note"} {
					eff.Sealed[ref] = engine.FindSealed(w, ref)
				}
				eff.SecretsKey = w.SecretsKey
				dec = engine.Decision{Effects: []engine.Effect{eff}}
			}
			protected, err := g.Protect(ctx, w, dec)
			if err != nil {
				t.Fatal(err)
			}
			in, refs, err := g.PrepareChild(ctx, protected.Effects[0].(engine.StartWorkflow))
			if err != nil {
				t.Fatal(err)
			}
			for k, want := range map[string]byte{"auth": masking.KindSecrets, "note": masking.KindMasked, "both": masking.KindSecrets, "mixed": masking.KindSecrets} {
				if s, _ := in[k].(*masking.Sealed); s == nil || s.Kind != want {
					t.Errorf("the child's input %s is %#v, want it sealed as %c", k, in[k], want)
				}
			}
			start := &schemas.WorkflowStarted{WorkflowID: childID, Name: "kid", Version: 1, Input: in, Resolved: refs, CreatedBy: "admin",
				ParentWorkflowID: parentID,
				Def:              []byte(`{"name":"kid","version":1,"tasks":[{"name":"w","taskReferenceName":"w","type":"SIMPLE"}]}`), Time: 1}
			if js, _ := json.Marshal(start); strings.Contains(string(js), token) || strings.Contains(string(js), note) {
				t.Fatalf("the child's start holds a value in plain text: %s", js)
			}
			sched := &schemas.TaskScheduled{TaskID: "c1", Ref: "w", Name: "w", Type: "SIMPLE", Status: "SCHEDULED",
				Input: map[string]any{"auth": "${workflow.input.auth}"}, Time: 1}
			child := protectAndFold(ctx, t, g, nil, start, sched)
			echo := func(g *Guard, child *engine.Workflow, v string) any {
				t.Helper()
				dec, err := g.Protect(ctx, child, engine.Decision{Events: []schemas.Event{
					&schemas.TaskUpdated{TaskID: "c1", Status: "COMPLETED", Output: map[string]any{"echo": "used " + v}, Time: 2}}})
				if err != nil {
					t.Fatal(err)
				}
				return dec.Events[0].(*schemas.TaskUpdated).Output["echo"]
			}
			for what, g := range map[string]*Guard{"the preparing engine": g, "another engine": New(Config{Keys: keys, Authz: allowAll{}, Secrets: src})} {
				for _, v := range []string{token, note, plain} {
					if got := echo(g, child, v); got != "used ***" {
						t.Errorf("%s: the child's echo of %s is stored as %q", what, v, got)
					}
				}
			}

			compacted, err := engine.Apply(child, &schemas.WorkflowCompacted{Time: 3})
			if err != nil {
				t.Fatal(err)
			}
			if err := keys.DestroyKey(ctx, secretsKeyOf(compacted)); err != nil {
				t.Fatal(err)
			}
			for _, ref := range compacted.Resolved {
				if kept := len(ref.Sealed) > 0; kept != (ref.Kind == masking.KeyMasked) {
					t.Errorf("after compaction the child's start's %s %s keeps its sealed value: %v", ref.Kind, ref.Name, kept)
				}
			}
			if got := echo(New(Config{Keys: keys, Authz: allowAll{}, Secrets: src}), compacted, note); got != "used ***" {
				t.Errorf("after compaction another engine stores the child's echo of the _masked value as %q", got)
			}
			opened, err := masking.Open(compacted.Input, g.opener(ctx, compacted))
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]any{"auth": masking.Mask, "note": "note " + note, "both": masking.Mask, "mixed": masking.Mask}
			for k, v := range want {
				if got := opened.(map[string]any)[k]; got != v {
					t.Errorf("after compaction the child's input %s opens as %v, want %v", k, got, v)
				}
			}
		})
	}
}

// Text made of a parent's sealed data inside a block the parent seals
// ("_secrets": {"auth": "Bearer ${src.output._secrets.token}"}) is stored
// sealed whole, where it no longer shows what it reads: a child started
// from the parent's stored state (recovery after a crash between the
// parent's record and the child's start, a rerun from the task) gets the
// text with the value, as the child the deciding engine starts does, not
// "Bearer ***". The parent's records name the value it reads, never hold
// it.
func TestChildStartedFromTheStoredStateGetsTextInASealedBlock(t *testing.T) {
	ctx, keys := openKeys(t)
	const token = "stored-state-token-Qm27xV"
	for _, tc := range []struct {
		name, task string
		rerun      bool
	}{
		{"SUB_WORKFLOW", `{"name":"sub","taskReferenceName":"sub","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"kid"},
  "inputParameters":{"_secrets":{"auth":"Bearer ${src.output._secrets.token}"}}}`, true},
		{"START_WORKFLOW", `{"name":"sub","taskReferenceName":"sub","type":"START_WORKFLOW",
  "inputParameters":{"startWorkflow":{"name":"kid","input":{"_masked":{"auth":"Bearer ${src.output._secrets.token}"}}}}}`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := New(Config{Keys: keys, Authz: allowAll{}})
			var def conductor.WorkflowDef
			if err := conductor.Unmarshal([]byte(`{"name":"w","version":1,"tasks":[{"name":"src","taskReferenceName":"src"},
 {"name":"mid","taskReferenceName":"mid"},`+tc.task+`]}`), &def); err != nil {
				t.Fatal(err)
			}
			now := time.Unix(1_700_000_000, 0)
			var w *engine.Workflow
			var records []schemas.Event
			step := func(tr engine.Trigger) engine.Decision {
				t.Helper()
				dec, err := engine.Decide(engine.Input{State: w, Trigger: tr, Now: now})
				if err != nil {
					t.Fatal(err)
				}
				if dec, err = g.Protect(ctx, w, dec); err != nil {
					t.Fatal(err)
				}
				var next *engine.Workflow
				if w != nil {
					next = w.Clone()
				}
				for _, ev := range dec.Events {
					if next, err = engine.Apply(next, ev); err != nil {
						t.Fatal(err)
					}
				}
				w, records = next, append(records, dec.Events...)
				return dec
			}
			result := func(ref string, out map[string]any) engine.Trigger {
				return engine.Result{Result: conductor.TaskResult{WorkflowInstanceID: w.ID, TaskID: w.LatestByRef(ref).ID,
					Status: conductor.TaskCompleted, OutputData: out}}
			}
			// The child's input as its start writes it, opened.
			child := func(effs []engine.Effect) map[string]any {
				t.Helper()
				for _, eff := range effs {
					if s, ok := eff.(engine.StartWorkflow); ok && !s.Failure {
						in, _, err := g.PrepareChild(ctx, s)
						if err != nil {
							t.Fatal(err)
						}
						opened, err := masking.Open(in, g.opener(ctx, &engine.Workflow{ID: s.WorkflowID}))
						if err != nil {
							t.Fatal(err)
						}
						return opened.(map[string]any)
					}
				}
				t.Fatalf("no child starts: %+v", effs)
				return nil
			}
			auth := func(in map[string]any) any {
				if tc.name == "START_WORKFLOW" {
					block, _ := in[masking.KeyMasked].(map[string]any)
					return block["auth"]
				}
				block, _ := in[masking.KeySecrets].(map[string]any)
				return block["auth"]
			}
			check := func(how string, effs []engine.Effect) {
				t.Helper()
				if got := auth(child(effs)); got != "Bearer "+token {
					t.Errorf("%s: the child's auth is %v, want %q", how, got, "Bearer "+token)
				}
			}
			step(engine.Start{WorkflowID: "wf-stored-" + strings.ToLower(tc.name), Def: &def, CreatedBy: "admin",
				Request: conductor.StartWorkflowRequest{Name: "w"}})
			step(result("src", map[string]any{"_secrets": map[string]any{"token": token}}))
			// Scheduled by a later decision, the text reads the sealed
			// token by reference, and its block is sealed whole.
			check("started by the deciding engine", step(result("mid", nil)).Effects)
			check("started from the stored state", engine.Effects(w, now.UnixMilli()))
			if tc.rerun {
				subID := w.LatestByRef("sub").ID
				step(engine.ChildFinished{ChildID: w.LatestByRef("sub").SubWorkflowID, Name: "kid", Version: 1,
					Status: conductor.WorkflowFailed, Reason: "kid failed"})
				check("rerun from the task", step(engine.Rerun{Request: conductor.RerunWorkflowRequest{
					ReRunFromWorkflowID: w.ID, ReRunFromTaskID: subID}}).Effects)
				check("rerun, started from the stored state", engine.Effects(w, now.UnixMilli()))
			}
			for _, ev := range records {
				js, err := schemas.MarshalSorted(ev)
				if err != nil {
					t.Fatal(err)
				}
				if strings.Contains(string(js), token) {
					t.Errorf("the parent's %s record holds the token: %s", ev.EventType(), js)
				}
			}
		})
	}
}

// parentOfSrc is workflow id, protected by g, with task t1 (src)
// scheduled, whose output the tests' children read.
func parentOfSrc(ctx context.Context, t *testing.T, g *Guard, id string) *engine.Workflow {
	t.Helper()
	return protectAndFold(ctx, t, g, nil,
		&schemas.WorkflowStarted{WorkflowID: id, Name: "w", Version: 1, CreatedBy: "admin",
			Def: []byte(`{"name":"w","version":1,"tasks":[{"name":"src","taskReferenceName":"src"}]}`)},
		&schemas.TaskScheduled{TaskID: "t1", Ref: "src", Name: "src", Type: "SIMPLE", Status: conductor.TaskScheduled, Time: 1})
}

// A child started from its starter's stored state (recovery, a rerun)
// gets the paths of its input's references as the log decodes them, a
// list index as the smallest integer type that holds it: a reference in
// a list still resolves, and its value is sealed under the child's key
// where it sits. The resolution failed ("no deferred string here"), and
// the sealing, looking the path up by int alone, would have left the
// value in plain text in the child's input.
func TestChildInputReferenceInAList(t *testing.T) {
	ctx, keys := openKeys(t)
	const secret = "child-list-secret-Jm4q"
	for _, step := range []any{1, int8(1), uint8(1), int64(1)} {
		t.Run(fmt.Sprintf("%T", step), func(t *testing.T) {
			g := New(Config{Keys: keys, Authz: allowAll{}, Secrets: fakeSecrets{"tok": secret}})
			childID := fmt.Sprintf("kid-list-%T", step)
			in, _, err := g.PrepareChild(ctx, engine.StartWorkflow{WorkflowID: childID, From: "parent", CreatedBy: "admin",
				Input:         map[string]any{"args": []any{"--token", "${workflow.secrets.tok}"}},
				InputDeferred: [][]any{{"args", step}}})
			if err != nil {
				t.Fatal(err)
			}
			args, _ := in["args"].([]any)
			if len(args) != 2 || args[0] != "--token" {
				t.Fatalf("child input %v", in)
			}
			if _, sealed := args[1].(*masking.Sealed); !sealed {
				t.Fatalf("args[1] is %#v, want it sealed under the child's key", args[1])
			}
			opened, err := masking.Open(in, g.opener(ctx, &engine.Workflow{ID: childID}))
			if err != nil {
				t.Fatal(err)
			}
			if got := opened.(map[string]any)["args"].([]any)[1]; got != secret {
				t.Fatalf("args[1] opens to %v", got)
			}
		})
	}
}

// A child's start records the key its input was sealed under, the one
// named after the child: the read model then knows the child held it
// (KeyHolder), and the compactor's sweep erases it once the child was
// removed and compacted. Recorded without it, the key of a removed
// child that an engine compacted and died before erasing stayed.
func TestChildStartRecordsItsKey(t *testing.T) {
	ctx, keys := openKeys(t)
	g := New(Config{Keys: keys, Authz: allowAll{}, Secrets: fakeSecrets{"tok": "child-key-secret-Qx71"}})
	const childID = "kid-records-key"
	in, refs, err := g.PrepareChild(ctx, engine.StartWorkflow{WorkflowID: childID, From: "parent", CreatedBy: "admin",
		Input: map[string]any{"token": "${workflow.secrets.tok}"}, InputDeferred: [][]any{{"token"}}})
	if err != nil {
		t.Fatal(err)
	}
	w := protectAndFold(ctx, t, g, nil, &schemas.WorkflowStarted{WorkflowID: childID, Name: "kid", Version: 1, CreatedBy: "admin",
		Def: []byte(`{"name":"kid","version":1,"tasks":[{"name":"t","taskReferenceName":"t"}]}`), Input: in, Resolved: refs})
	if !w.SealsSecrets || w.SecretsKey != keyID(childID, masking.KindSecrets) {
		t.Fatalf("the child's start recorded key %q (sealing %v), want %s", w.SecretsKey, w.SealsSecrets, keyID(childID, masking.KindSecrets))
	}
	opened, err := masking.Open(w.Input, g.opener(ctx, w))
	if err != nil || opened.(map[string]any)["token"] != "child-key-secret-Qx71" {
		t.Fatalf("the child's input opens as %v, %v", opened, err)
	}
}
