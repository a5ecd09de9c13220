package guard

import (
	"context"
	"errors"
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
