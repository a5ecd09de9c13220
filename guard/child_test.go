package guard

import (
	"context"
	"errors"
	"strconv"
	"testing"

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
			w := protectAndFold(ctx, t, g, nil,
				&schemas.WorkflowStarted{WorkflowID: parentID, Name: "w", Version: 1, CreatedBy: "admin",
					Def: []byte(`{"name":"w","version":1,"tasks":[{"name":"src","taskReferenceName":"src"}]}`)},
				&schemas.TaskScheduled{TaskID: "t1", Ref: "src", Name: "src", Type: "SIMPLE", Status: conductor.TaskScheduled, Time: 1})
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
