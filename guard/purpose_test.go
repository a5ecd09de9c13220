package guard

import (
	"bytes"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/engine/expr"
	"github.com/flowvault/flowvault/masking"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/vmihailenco/msgpack/v5"
)

// A sealed value's purpose is stored in plain text beside its ciphertext,
// in the log's record for good and in the read models: a map key on its
// path that holds a value the workflow resolved or sealed (a worker's
// output keyed by its secret, a copy of a sealed value under a key that
// spells it) is named there as the stored key is, "***", numbered when
// two keys read so. The refs made from purposes (a copy embedded in text,
// "${sealed:REF}", and the sealed values a child is handed by them) spell
// no value either, and every value still opens.
func TestPurposesDoNotSpellAKeysValue(t *testing.T) {
	ctx, keys := openKeys(t)
	// resolved and other are values resolved for the workflow; fresh is
	// sealed for the first time in the decision.
	const resolved, other, fresh = "resolved-key-Vq83nZ", "resolved-other-Hj27tP", "fresh-sealed-Wm41cX"
	spelled := []string{resolved, other, fresh}
	upd := func(out map[string]any) schemas.Event {
		return &schemas.TaskUpdated{TaskID: "t1", Status: "COMPLETED", Output: out, Time: 3}
	}
	next := func(typ string, in map[string]any, deferred ...[]any) schemas.Event {
		return &schemas.TaskScheduled{TaskID: "t2", Ref: "t2", Name: "t2", Type: typ, Status: "SCHEDULED", Input: in, Deferred: deferred, Time: 4}
	}
	for _, tc := range []struct {
		name    string
		earlier []schemas.Event // a decision before (sealing what a copy copies)
		events  []schemas.Event
		start   map[string]any // a child's input the decision starts with
		opens   map[string]any // the leaves t1's output opens to, by value
	}{
		{name: "a _secrets key equal to its resolved value", events: []schemas.Event{upd(map[string]any{"_secrets": map[string]any{resolved: resolved}})},
			opens: map[string]any{resolved: true}},
		{name: "a _masked key equal to a resolved value", events: []schemas.Event{upd(map[string]any{"_masked": map[string]any{other: "masked-plain-data"}})},
			opens: map[string]any{"masked-plain-data": true}},
		{name: "a key holding a resolved value within text", events: []schemas.Event{upd(map[string]any{"_secrets": map[string]any{"k " + resolved: "plain-leaf-data"}})},
			opens: map[string]any{"plain-leaf-data": true}},
		{name: "a key equal to a value the same block seals", events: []schemas.Event{upd(map[string]any{"_secrets": map[string]any{fresh: "plain-leaf-data", "tok": fresh}})},
			opens: map[string]any{"plain-leaf-data": true, fresh: true}},
		{name: "a key equal to a value a later event seals", events: []schemas.Event{
			upd(map[string]any{"_secrets": map[string]any{fresh: "plain-leaf-data"}}),
			next("SIMPLE", map[string]any{"_secrets": map[string]any{"t": fresh}})},
			opens: map[string]any{"plain-leaf-data": true}},
		{name: "a plain key above the block", events: []schemas.Event{upd(map[string]any{resolved: map[string]any{"_secrets": map[string]any{"a": "plain-leaf-data"}}})},
			opens: map[string]any{"plain-leaf-data": true}},
		// Stored as "***" and "***#2", each under its purpose's name.
		{name: "two keys that read the same", events: []schemas.Event{upd(map[string]any{"_secrets": map[string]any{resolved: "leaf-data-one", other: "leaf-data-two"}})},
			opens: map[string]any{"leaf-data-one": true, "leaf-data-two": true}},
		{name: "a copy of a sealed value under a key equal to it",
			earlier: []schemas.Event{upd(map[string]any{"_secrets": map[string]any{"tok": fresh}})},
			events:  []schemas.Event{next("SIMPLE", map[string]any{"all": map[string]any{fresh: fresh, resolved: "Bearer " + fresh}})}},
		{name: "a copy in text of a value sealed under a key spelling another",
			events: []schemas.Event{upd(map[string]any{"_secrets": map[string]any{resolved: fresh}}),
				next("WAIT", map[string]any{"auth": "Bearer " + fresh})},
			opens: map[string]any{fresh: true}},
		{name: "a copy in text of a sealed value under a key spelling another",
			events: []schemas.Event{upd(map[string]any{"_secrets": map[string]any{"tok": fresh}}),
				next("WAIT", map[string]any{"in": map[string]any{resolved: "Bearer " + fresh}})},
			opens: map[string]any{fresh: true}},
		{name: "a child's input text reading a value sealed under a key spelling another",
			events: []schemas.Event{upd(map[string]any{"_secrets": map[string]any{resolved: fresh}})},
			start:  map[string]any{"auth": "Bearer " + fresh},
			opens:  map[string]any{fresh: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const id = "wf-purpose"
			g := New(Config{Keys: keys})
			w := applyAll(t, nil,
				&schemas.WorkflowStarted{WorkflowID: id, Name: "w", Version: 1,
					Def: []byte(`{"name":"w","version":1,"tasks":[{"name":"t","taskReferenceName":"t"}]}`)},
				&schemas.TaskScheduled{TaskID: "t1", Ref: "t1", Name: "t", Type: "SIMPLE", Status: "SCHEDULED", Time: 1},
				&schemas.TaskStarted{TaskID: "t1", Time: 2})
			g.memoFor(id).add([]byte(resolved)) // as a hand-off resolving them does
			g.memoFor(id).add([]byte(other))
			if tc.earlier != nil {
				w = protectAndFold(ctx, t, g, w, tc.earlier...)
			}
			var effects []engine.Effect
			if tc.start != nil {
				effects = append(effects, engine.StartWorkflow{WorkflowID: "kid", Name: "child", From: id, ParentWorkflowID: id,
					Input: tc.start, InputDeferred: [][]any{}})
			}
			dec, err := g.Protect(ctx, w, engine.Decision{Events: tc.events, Effects: effects})
			if err != nil {
				t.Fatal(err)
			}
			var purposes []string
			for _, ev := range dec.Events {
				b, err := msgpack.Marshal(ev)
				if err != nil {
					t.Fatal(err)
				}
				for _, v := range spelled {
					if bytes.Contains(b, []byte(v)) {
						t.Errorf("%T holds %s: %q", ev, v, b)
					}
				}
			}
			w = applyAll(t, w, dec.Events...)
			for where, data := range map[string]map[string]any{"task/t1/output": w.TaskByID("t1").Output, "task/t2/input": taskInput(w, "t2")} {
				sealedPaths(data, nil, func(p expr.Path, _ byte) {
					s, _ := getPath(data, p)
					purposes = append(purposes, s.(*masking.Sealed).Purpose)
					// The purpose names the keys as the stored data does.
					stored := "wf/" + id + "/" + where
					for _, step := range p {
						if k, ok := step.(string); ok {
							stored += "." + k
						} else {
							stored += fmt.Sprintf("[%d]", step)
						}
					}
					if s.(*masking.Sealed).Purpose != stored {
						t.Errorf("the value stored at %s is sealed under %s", stored, s.(*masking.Sealed).Purpose)
					}
				})
			}
			seen := map[string]bool{}
			for _, p := range purposes {
				if seen[p] {
					t.Errorf("two values sealed under purpose %s", p)
				}
				seen[p] = true
			}
			if len(purposes) == 0 {
				t.Fatal("nothing sealed")
			}
			// Every value opens, where it is stored.
			opened, err := masking.Open(w.TaskByID("t1").Output, g.opener(ctx, w))
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]any{}
			eachLeaf(opened, func(v any) {
				if s, ok := v.(string); ok && s != masking.Mask && !strings.HasPrefix(s, "***") {
					got[s] = true
				}
			}, false)
			for v := range tc.opens {
				if got[v] == nil {
					t.Errorf("t1's output opens to %v, want %s among its values", opened, v)
				}
			}
			if in := taskInput(w, "t2"); in != nil {
				if _, err := masking.Open(in, g.opener(ctx, w)); err != nil {
					t.Errorf("t2's input does not open: %v", err)
				}
				for _, d := range w.TaskByID("t2").Deferred {
					if _, ok := getPath(in, expr.Path(d)); !ok {
						t.Errorf("t2's input %v has nothing at its deferred path %v", in, d)
					}
					for _, ref := range expr.SealedRefs(in, expr.Path(d)) {
						if engine.FindSealed(w, ref) == nil {
							t.Errorf("t2's input reads %s, which the workflow does not hold", ref)
						}
					}
				}
			}
			for _, eff := range dec.Effects {
				start, ok := eff.(engine.StartWorkflow)
				if !ok {
					continue
				}
				b, _ := msgpack.Marshal(start.Input)
				for ref, s := range start.Sealed {
					b = append(append(b, ref...), s.Purpose...)
				}
				if len(start.Sealed) == 0 {
					t.Error("the child is handed no sealed value")
				}
				for _, v := range spelled {
					if bytes.Contains(b, []byte(v)) {
						t.Errorf("the child's start holds %s: %q", v, b)
					}
				}
			}
		})
	}
}

// taskInput is the input of task id of w, nil when w has no such task.
func taskInput(w *engine.Workflow, id string) map[string]any {
	if t := w.TaskByID(id); t != nil {
		return t.Input
	}
	return nil
}

// A child started by the decision that seals a block keyed by a value its
// parent resolved or sealed (a worker's output {"_secrets": {"<token>":
// …}} that the child's input copies; the decision computed the input from
// its state before sealing) gets the key as the parent stores it, "***"
// ("***#2" for another such key of the object), as a child started by a
// later decision, which copies the stored output, does: the child's start
// record keeps its input as prepared, and its values' purposes named the
// key too. Each value still opens under its key, the parent's and the
// child's keys naming the same value; a text the child reads by reference
// under such a key is still read.
func TestChildStartDoesNotSpellAKeysValue(t *testing.T) {
	ctx, keys := openKeys(t)
	const resolved, other, fresh = "kid-resolved-Tn52wQ", "kid-other-Yb37cM", "kid-fresh-Ks90dR"
	spelled := []string{resolved, other, fresh}
	block := func(kind string, kv ...string) map[string]any {
		m := map[string]any{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return map[string]any{kind: m}
	}
	for _, tc := range []struct {
		name  string
		out   map[string]any // t1's output, which the decision takes in
		start map[string]any // the child's input as the decision computed it
		// opens is the child's input opened; nil: t1's output opened, as
		// the parent stores it.
		opens map[string]any
	}{
		{name: "a _secrets key equal to a resolved value, its value sealed by the decision",
			out: block("_secrets", resolved, "x"), start: block("_secrets", resolved, "x")},
		{name: "a _masked key equal to a resolved value",
			out: block("_masked", resolved, "masked-leaf-data"), start: block("_masked", resolved, "masked-leaf-data")},
		{name: "a key equal to a value the same block seals",
			out: block("_secrets", fresh, "leaf-data", "tok", fresh), start: block("_secrets", fresh, "leaf-data", "tok", fresh)},
		{name: "two keys that read the same",
			out: block("_secrets", resolved, "leaf-one", other, "leaf-two"), start: block("_secrets", resolved, "leaf-one", other, "leaf-two")},
		{name: "a block the decision does not seal",
			start: block("_secrets", resolved, "kid-own-leaf"), opens: block("_secrets", "***", "kid-own-leaf")},
		{name: "a key above the block",
			start: map[string]any{resolved: block("_secrets", "a", "kid-own-leaf")},
			opens: map[string]any{"***": block("_secrets", "a", "kid-own-leaf")}},
		{name: "text reading a value sealed by the decision, under a key spelling another",
			out: block("_secrets", "tok", fresh), start: block("_secrets", resolved, "Bearer "+fresh),
			opens: block("_secrets", "***", "Bearer "+fresh)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := New(Config{Keys: keys, Authz: allowAll{}, Secrets: fakeSecrets{}})
			parentID, childID := "wf-kidkeys", "kid-kidkeys"
			w := parentOfSrc(ctx, t, g, parentID)
			w = applyAll(t, w, &schemas.TaskStarted{TaskID: "t1", Time: 2})
			g.memoFor(parentID).add([]byte(resolved)) // as a hand-off resolving them does
			g.memoFor(parentID).add([]byte(other))
			var events []schemas.Event
			if tc.out != nil {
				events = append(events, &schemas.TaskUpdated{TaskID: "t1", Status: conductor.TaskCompleted, Output: tc.out, Time: 3})
			}
			eff := engine.StartWorkflow{WorkflowID: childID, Name: "kid", From: parentID, ParentWorkflowID: parentID, CreatedBy: "admin",
				Input: tc.start, InputDeferred: [][]any{}}
			dec, err := g.Protect(ctx, w, engine.Decision{Events: events, Effects: []engine.Effect{eff}})
			if err != nil {
				t.Fatal(err)
			}
			w = applyAll(t, w, dec.Events...)
			eff = dec.Effects[0].(engine.StartWorkflow)
			in, refs, err := g.PrepareChild(ctx, eff)
			if err != nil {
				t.Fatal(err)
			}
			// The child's start, as its log records it.
			started, err := g.Protect(ctx, nil, engine.Decision{Events: []schemas.Event{
				&schemas.WorkflowStarted{WorkflowID: childID, Name: "kid", Version: 1, Input: in, Resolved: refs, CreatedBy: "admin",
					ParentWorkflowID: parentID, Def: []byte(`{"name":"kid","version":1,"tasks":[]}`), Time: 1}}})
			if err != nil {
				t.Fatal(err)
			}
			b, err := msgpack.Marshal([]any{eff.Input, eff.InputDeferred, started.Events})
			if err != nil {
				t.Fatal(err)
			}
			for ref, s := range eff.Sealed {
				b = append(append(b, ref...), s.Purpose...)
			}
			for _, v := range spelled {
				if bytes.Contains(b, []byte(v)) {
					t.Errorf("the child's start holds %s: %q", v, b)
				}
			}
			child := applyAll(t, nil, started.Events...)
			sealed := 0
			sealedPaths(child.Input, nil, func(expr.Path, byte) { sealed++ })
			if sealed == 0 {
				t.Fatalf("the child's input %v holds nothing sealed", child.Input)
			}
			opened, err := masking.Open(child.Input, g.opener(ctx, child))
			if err != nil {
				t.Fatal(err)
			}
			want := tc.opens
			if want == nil {
				o, err := masking.Open(w.TaskByID("t1").Output, g.opener(ctx, w))
				if err != nil {
					t.Fatal(err)
				}
				want = o.(map[string]any)
			}
			if !reflect.DeepEqual(opened, want) {
				t.Errorf("the child's input opens to %v, want %v", opened, want)
			}
		})
	}
}
