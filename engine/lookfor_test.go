package engine_test

import (
	"reflect"
	"testing"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// A workflow that found values to be secret late (its ValuesMasked's
// sealed refs, kept in its state) tells its SUB_WORKFLOW children of them
// again in recovery, running or ended: an engine that stopped between the
// record and its LookFor left a child that was never told. The periodic
// pass for lost dispatches, a workflow without such values and a compacted
// one (its _secrets refs are destroyed) tell nobody. A workflow that
// ended (often in the decision that found the value) is on the list of
// those whose end recovery performs again.
func TestRecoveryTellsTheChildrenOfLateValues(t *testing.T) {
	late := []schemas.ResolvedRef{{Kind: "_secrets", Name: "late/0", Sealed: []byte{1, 2, 3}}}
	for _, tc := range []struct {
		name  string
		found bool // the workflow found the value
		trig  engine.Reconcile
		end   bool
		told  bool
	}{
		{"recovery", true, engine.Reconcile{}, false, true},
		{"recovery of an ended workflow", true, engine.Reconcile{}, true, true},
		{"the periodic pass", true, engine.Reconcile{DispatchAge: 1, Interval: 1}, false, false},
		{"nothing found", false, engine.Reconcile{}, false, false},
		{"nothing found, ended", false, engine.Reconcile{}, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, `{"name":"w","tasks":[{"name":"kid","taskReferenceName":"kid","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"k"}}]}`, nil)
			kid := h.task("kid").SubWorkflowID
			if tc.found {
				h.decide(engine.ValuesFound{Masked: &schemas.ValuesMasked{Paths: []string{"task/" + h.task("kid").ID + "/input.v"}, Sealed: late}})
			}
			if tc.end {
				h.decide(engine.ChildFinished{ChildID: kid, Name: "k", Version: 1, Status: conductor.WorkflowCompleted})
				h.wantStatus(conductor.WorkflowCompleted)
				// Recovery reads ended workflows only from the list of
				// those whose end has effects.
				if engine.HasTerminalEffects(h.w) != tc.found {
					t.Fatalf("on recovery's list of ended workflows: %v, want %v", !tc.found, tc.found)
				}
			}
			looks := effectsOf[engine.LookFor](h.decide(tc.trig))
			want := []engine.LookFor{{WorkflowID: kid, From: h.w.ID, SecretsKey: h.w.SecretsKey, Sealed: late}}
			if !tc.told {
				want = nil
			}
			if !reflect.DeepEqual(looks, want) {
				t.Fatalf("effects %+v, want %+v", looks, want)
			}
			if tc.found {
				compacted := h.w.Clone()
				compacted.Compacted = true
				if got := effectsOf[engine.LookFor](engine.Decision{Effects: engine.Effects(compacted, h.now.UnixMilli())}); len(got) > 0 {
					t.Fatalf("a compacted workflow tells %+v", got)
				}
			}
		})
	}
}
