package guard

import (
	"bytes"
	"context"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/masking"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// A parent that finds a value to be secret after its SUB_WORKFLOW handed
// it to a child tells the child (LookFor, carrying the value sealed under
// the parent's key, never in plain text); the child, told, marks where it
// holds the value (its input, its task's output, its own output), for
// shredding when it went into _secrets, keeps it sealed under its own key,
// and tells its own child in turn. Told again, it records nothing.
func TestChildToldOfALateValueMasksIt(t *testing.T) {
	ctx, keys := openKeys(t)
	const value = "late-child-value-4411"
	g := New(Config{Keys: keys})
	for _, tc := range []struct {
		block string
		shred bool
	}{{masking.KeySecrets, true}, {masking.KeyMasked, false}} {
		t.Run(tc.block, func(t *testing.T) {
			parentID, kidID := "parent-"+tc.block, "kid-"+tc.block
			look := tellChild(ctx, t, g, parentID, kidID, tc.block, value)

			kid := applyAll(t, nil,
				&schemas.WorkflowStarted{WorkflowID: kidID, Name: "k", Version: 1, ParentWorkflowID: parentID, Input: map[string]any{"v": value},
					Def: []byte(`{"name":"k","version":1,"tasks":[{"name":"e","taskReferenceName":"e"}]}`)},
				&schemas.TaskScheduled{TaskID: "e1", Ref: "e", Name: "e", Type: "SIMPLE", Status: "SCHEDULED", Input: map[string]any{"v": value}, Time: 1},
				&schemas.TaskUpdated{TaskID: "e1", Status: "COMPLETED", Output: map[string]any{"v": value, "n": 1}, Time: 2},
				&schemas.TaskScheduled{TaskID: "g1", Ref: "g", Name: "g", Type: conductor.TaskTypeSubWorkflow, Status: "IN_PROGRESS",
					Input: map[string]any{"v": value}, SubWorkflowID: "grand-" + tc.block, Time: 2},
				&schemas.WorkflowStatusChanged{Status: conductor.WorkflowCompleted, Output: map[string]any{"v": value}, Time: 3})
			found, err := g.FindValues(ctx, kid, engine.ValuesFound{From: look.From, SecretsKey: look.SecretsKey, Sealed: look.Sealed})
			if err != nil {
				t.Fatal(err)
			}
			vm := found.Masked
			if vm == nil {
				t.Fatal("the child found nothing")
			}
			want := []string{"input.v", "output.v", "task/e1/input.v", "task/e1/output.v", "task/g1/input.v"}
			if strings.Join(vm.Paths, " ") != strings.Join(want, " ") {
				t.Errorf("paths %v, want %v", vm.Paths, want)
			}
			if got := len(vm.Shred) > 0; got != tc.shred {
				t.Errorf("shred %v", vm.Shred)
			}
			if len(vm.Sealed) != 1 || vm.Sealed[0].Kind != tc.block || bytes.Contains(vm.Sealed[0].Sealed, []byte(value)) {
				t.Fatalf("sealed %+v", vm.Sealed)
			}
			dec, err := g.Protect(ctx, kid, engine.Decision{Events: []schemas.Event{vm}})
			if err != nil {
				t.Fatal(err)
			}
			kid = applyAll(t, kid, dec.Events...)
			if found.Key != nil {
				kid = applyAll(t, kid, found.Key)
			}
			view := kid.Conductor(true)
			for what, v := range map[string]any{"input": view.Input["v"], "output": view.Output["v"],
				"task input": view.Tasks[0].InputData["v"], "task output": view.Tasks[0].OutputData["v"]} {
				if v != masking.Mask {
					t.Errorf("the child's %s reads %v", what, v)
				}
			}
			if view.Tasks[0].OutputData["n"] != 1 {
				t.Errorf("the child's task output %v", view.Tasks[0].OutputData)
			}
			var toGrand bool
			for _, eff := range dec.Effects {
				toGrand = toGrand || eff.(engine.LookFor).WorkflowID == "grand-"+tc.block
			}
			if !toGrand {
				t.Errorf("the child did not tell its child: %+v", dec.Effects)
			}
			// A memo rebuilt from the child's state looks for the value.
			g2 := New(Config{Keys: keys})
			m := g2.memoFor(kidID)
			if err := g2.rebuild(ctx, kid, m); err != nil {
				t.Fatal(err)
			}
			if got := m.get().String("echo " + value); got != "echo ***" {
				t.Errorf("a rebuilt memo redacts to %q", got)
			}
			if again, err := g.FindValues(ctx, kid, engine.ValuesFound{From: look.From, SecretsKey: look.SecretsKey, Sealed: look.Sealed}); err != nil || again.Masked != nil {
				t.Errorf("told again, the child records %+v (%v)", again.Masked, err)
			}
			compacted := applyAll(t, kid, &schemas.WorkflowCompacted{Time: 9})
			kept := compacted.Input["v"] == value && compacted.Output["v"] == value && compacted.TaskByID("e1").Output["v"] == value
			if kept == tc.shred {
				t.Errorf("after compaction the child's state holds input %v, output %v, task output %v",
					compacted.Input, compacted.Output, compacted.TaskByID("e1").Output)
			}
		})
	}
}

// tellChild has parent parentID find value secret by passing it into a
// block (_secrets or _masked) after its SUB_WORKFLOW handed it to child
// kidID, and returns the message that tells the child (LookFor), checked
// to carry the value sealed, never in plain text.
func tellChild(ctx context.Context, t *testing.T, g *Guard, parentID, kidID, block, value string) engine.LookFor {
	t.Helper()
	parent := applyAll(t, nil,
		&schemas.WorkflowStarted{WorkflowID: parentID, Name: "p", Version: 1,
			Def: []byte(`{"name":"p","version":1,"tasks":[{"name":"a","taskReferenceName":"a"}]}`)},
		&schemas.TaskScheduled{TaskID: "a1", Ref: "a", Name: "a", Type: "SIMPLE", Status: "SCHEDULED", Time: 1},
		&schemas.TaskUpdated{TaskID: "a1", Status: "COMPLETED", Output: map[string]any{"tok": value}, Time: 2},
		&schemas.TaskScheduled{TaskID: "c1", Ref: "c", Name: "c", Type: conductor.TaskTypeSubWorkflow, Status: "IN_PROGRESS",
			Input: map[string]any{"v": value}, SubWorkflowID: kidID, Time: 3},
		&schemas.TaskScheduled{TaskID: "b1", Ref: "b", Name: "b", Type: "SIMPLE", Status: "SCHEDULED", Time: 3})
	dec, err := g.Protect(ctx, parent, engine.Decision{Events: []schemas.Event{
		&schemas.TaskUpdated{TaskID: "b1", Status: "COMPLETED", Output: map[string]any{block: map[string]any{"t": value}}, Time: 4}}})
	if err != nil {
		t.Fatal(err)
	}
	var look *engine.LookFor
	for _, eff := range dec.Effects {
		if l, ok := eff.(engine.LookFor); ok {
			look = &l
		}
	}
	if look == nil || look.WorkflowID != kidID || look.From != parentID || len(look.Sealed) == 0 {
		t.Fatalf("the parent's effects %+v tell the child nothing", dec.Effects)
	}
	for _, ref := range look.Sealed {
		if bytes.Contains(ref.Sealed, []byte(value)) || strings.Contains(ref.Name, value) {
			t.Fatalf("the message to the child holds the value: %+v", ref)
		}
	}
	return *look
}

// A child compacted with no secrets key (only for the purges of the
// cached outputs it masks) still masks a value its parent finds secret
// later, and awaits compaction again, whose purges take out the output of
// its cached task that holds the value: that masking decision is recorded
// after a compaction, and nothing but another would purge what it finds.
// A child whose compaction shredded data sealed under its secrets key,
// one compacted before workflow.secrets_sealed existed (which records no
// key) included, has no key to seal the value under: it records it
// shredded, sealed nowhere, and its fold replaces it with "***" for good.
// It stays compacted: a finding that reopened it would let its tasks'
// late log lines in, which nothing can redact of what it was given under
// the key, and a second compaction would find nothing left to shred and
// take the lines for good.
func TestCompactedChildWithoutKeyMasksALateValueAndIsCompactedAgain(t *testing.T) {
	ctx, keys := openKeys(t)
	const value, given = "late-value-for-a-compacted-child-5521", "given-to-a-worker-7730"
	g := New(Config{Keys: keys, Secrets: fakeSecrets{}, Authz: allowAll{}})
	for _, tc := range []struct {
		name string
		// block is where the child's second task is given a value.
		block string
		// recorded says whether workflow.secrets_sealed is folded.
		recorded bool
	}{
		{"no_key", masking.KeyMasked, false},
		{"secrets_key", masking.KeySecrets, true},
		{"secrets_key_recorded_nowhere", masking.KeySecrets, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			parentID, kidID := "parent-"+tc.name, "kid-"+tc.name
			look := tellChild(ctx, t, g, parentID, kidID, masking.KeyMasked, value)
			var kid *engine.Workflow
			for _, ev := range []schemas.Event{
				&schemas.WorkflowStarted{WorkflowID: kidID, Name: "k", Version: 1, ParentWorkflowID: parentID,
					Def: []byte(`{"name":"k","version":1,"tasks":[{"name":"e","taskReferenceName":"e","inputParameters":{"k":"x"},"cacheConfig":{"key":"${k}","ttlInSecond":600}},{"name":"f","taskReferenceName":"f"}]}`)},
				&schemas.TaskScheduled{TaskID: "e1", Ref: "e", Name: "e", Type: "SIMPLE", Status: "SCHEDULED", Input: map[string]any{"k": "x"}, Time: 1},
				&schemas.TaskUpdated{TaskID: "e1", Status: "COMPLETED", Output: map[string]any{"v": value}, Time: 2},
				&schemas.TaskScheduled{TaskID: "f1", Ref: "f", Name: "f", Type: "SIMPLE", Status: "SCHEDULED",
					Input: map[string]any{tc.block: map[string]any{"tok": given}}, Time: 2},
				&schemas.TaskStarted{TaskID: "f1", WorkerID: "w1", Time: 3},
				&schemas.WorkflowStatusChanged{Status: conductor.WorkflowTerminated, Reason: "stop", Time: 3},
				&schemas.WorkflowCompacted{Time: 4},
			} {
				dec, err := g.Protect(ctx, kid, engine.Decision{Events: []schemas.Event{ev}})
				if err != nil {
					t.Fatal(err)
				}
				for _, ev := range dec.Events {
					if _, sealed := ev.(*schemas.SecretsSealed); sealed && !tc.recorded {
						continue
					}
					kid = applyAll(t, kid, ev)
				}
			}
			if kid.SealsSecrets != tc.recorded {
				t.Fatalf("seals secrets %t, want %t", kid.SealsSecrets, tc.recorded)
			}
			found, err := g.FindValues(ctx, kid, engine.ValuesFound{From: look.From, SecretsKey: look.SecretsKey, Sealed: look.Sealed})
			if err != nil {
				t.Fatal(err)
			}
			if tc.block == masking.KeySecrets {
				want := &schemas.ValuesMasked{Paths: []string{"task/e1/output.v"}, Shred: []string{"task/e1/output.v"}}
				if !reflect.DeepEqual(found.Masked, want) || found.Key != nil {
					t.Fatalf("the child whose compaction shredded data under its key records %+v (key %+v), want %+v", found.Masked, found.Key, want)
				}
				dec, err := engine.Decide(engine.Input{State: kid, Trigger: found, Now: time.UnixMilli(5)})
				if err != nil {
					t.Fatal(err)
				}
				kid = applyAll(t, kid, dec.Events...)
				if got := kid.TaskByID("e1").Output["v"]; got != masking.Mask {
					t.Errorf("the child's task's output reads %v, want %q", got, masking.Mask)
				}
				// The child stays compacted, and its worker's late log
				// line is refused.
				other := New(Config{Keys: keys, Secrets: fakeSecrets{}, Authz: allowAll{}})
				dec, err = other.Protect(ctx, kid, engine.Decision{Events: []schemas.Event{&schemas.TaskLogged{TaskID: "f1", Lines: []string{"late: " + given}}}})
				if !kid.Compacted || !errors.Is(err, fault.ErrConflict) {
					var stored []string
					for _, ev := range dec.Events {
						if l, ok := ev.(*schemas.TaskLogged); ok {
							stored = l.Lines
						}
					}
					t.Errorf("after a finding recorded on it: compacted %t, a late log line stored as %q (%v); want it compacted and the line refused", kid.Compacted, stored, err)
				}
				return
			}
			if found.Masked == nil || !slices.Contains(found.Masked.Paths, "task/e1/output.v") {
				t.Fatalf("the compacted child records %+v, want its task's output masked", found.Masked)
			}
			dec, err := engine.Decide(engine.Input{State: kid, Trigger: found, Now: time.UnixMilli(5)})
			if err != nil {
				t.Fatal(err)
			}
			kid = applyAll(t, kid, dec.Events...)
			if kid.Compacted || !kid.AwaitsCompaction() {
				t.Fatalf("after the finding: compacted %t, awaits compaction %t; want it to await another", kid.Compacted, kid.AwaitsCompaction())
			}
			dec, err = engine.Decide(engine.Input{State: kid, Trigger: engine.Compact{}, Now: time.UnixMilli(6)})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.ContainsFunc(dec.Effects, func(eff engine.Effect) bool {
				u, ok := eff.(engine.UncacheOutput)
				return ok && u.Required
			}) {
				t.Errorf("the compaction's effects %+v purge nothing; want the purge of e's cached output, required", dec.Effects)
			}
		})
	}
}
