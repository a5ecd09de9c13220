package engine_test

import (
	"bytes"
	"reflect"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/masking"
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

// A workflow's failure workflows got its input as given, and are told of
// the values it found to be secret late as its children are, by the
// decision that finds them (TellChildren, which the guard's LookFor
// shares) and by recovery: found after its end (its starter told it), or
// by a later run (a retry), whose failed runs' failure workflows are gone
// from its output. Nobody is told of a failure workflow its end did not
// start, nor of one its outputParameters name.
func TestFailureWorkflowsAreToldOfLateValues(t *testing.T) {
	late := []schemas.ResolvedRef{{Kind: "_secrets", Name: "late/0", Sealed: []byte{1, 2, 3}}}
	const def = `{"name":"w","failureWorkflow":"fw","tasks":[{"name":"x","taskReferenceName":"x"}]}`
	fail := func(h *harness) string {
		h.report("x", conductor.TaskFailedWithTerminalError, nil, "refused")
		h.wantStatus(conductor.WorkflowFailed)
		fw, _ := h.w.Output[engine.FailureWorkflowOutputKey].(string)
		if fw == "" {
			t.Fatalf("no failure workflow: output %v", h.w.Output)
		}
		return fw
	}
	for _, tc := range []struct {
		name string
		def  string
		run  func(h *harness) (told []string)
	}{
		{"failed", def, func(h *harness) []string { return []string{fail(h)} }},
		{"failed, then retried", def, func(h *harness) []string {
			fw := fail(h)
			h.decide(engine.Retry{})
			h.wantStatus(conductor.WorkflowRunning)
			return []string{fw}
		}},
		{"failed twice", def, func(h *harness) []string {
			first := fail(h)
			h.decide(engine.Retry{})
			second := fail(h)
			if first == second {
				t.Fatalf("both runs started failure workflow %s", first)
			}
			return []string{first, second}
		}},
		{"failed, then terminated", def, func(h *harness) []string {
			fw := fail(h)
			h.decide(engine.Terminate{Reason: "stop"})
			h.wantStatus(conductor.WorkflowTerminated)
			return []string{fw}
		}},
		{"a state kept before the list", def, func(h *harness) []string {
			fw := fail(h)
			h.w = h.w.Clone()
			h.w.FailureWorkflows = nil
			return []string{fw}
		}},
		{"terminated without one", def, func(h *harness) []string {
			h.decide(engine.Terminate{Reason: "stop"})
			h.wantStatus(conductor.WorkflowTerminated)
			return nil
		}},
		{"completed, its output naming one", `{"name":"w","failureWorkflow":"fw","tasks":[{"name":"x","taskReferenceName":"x"}],
		  "outputParameters":{"conductor.failure_workflow":"someone-else"}}`, func(h *harness) []string {
			h.complete("x", nil)
			h.wantStatus(conductor.WorkflowCompleted)
			return nil
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, tc.def, map[string]any{"v": "late-value"})
			told := tc.run(h)
			h.decide(engine.ValuesFound{From: "starter", Masked: &schemas.ValuesMasked{Paths: []string{"input.v"}, Sealed: late}})
			var want []engine.LookFor
			for _, id := range told {
				want = append(want, engine.LookFor{WorkflowID: id, From: h.w.ID, SecretsKey: h.w.SecretsKey, Sealed: late})
			}
			if got := effectsOf[engine.LookFor](engine.Decision{Effects: engine.TellChildren(h.w, late)}); !reflect.DeepEqual(got, want) {
				t.Fatalf("told %+v, want %+v", got, want)
			}
			if h.w.Terminal() && engine.HasTerminalEffects(h.w) != (len(want) > 0) {
				t.Fatalf("on recovery's list of ended workflows: %v, want %v", !(len(want) > 0), len(want) > 0)
			}
			if got := effectsOf[engine.LookFor](h.decide(engine.Reconcile{})); !reflect.DeepEqual(got, want) {
				t.Fatalf("recovery tells %+v, want %+v", got, want)
			}
		})
	}
}

// Compaction empties the late refs sealed under the secrets key it
// destroys and keeps those under _masked's. A workflow with no secrets
// key is compacted when it masks a cached output, a few seconds after its
// end (which the decision that found the value often is), maybe before an
// engine that stopped between that record and its LookFor starts again:
// its recovery still tells the children of the _masked values, the only
// ones a compacted workflow holds, and keeps the workflow on the list of
// those whose end it performs again.
func TestRecoveryTellsTheChildrenOfLateValuesACompactionKeeps(t *testing.T) {
	t.Parallel()
	for _, kind := range []string{"_masked", "_secrets"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, `{"name":"w","tasks":[{"name":"kid","taskReferenceName":"kid","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"k"}}]}`, nil)
			kid := h.task("kid").SubWorkflowID
			late := []schemas.ResolvedRef{{Kind: kind, Name: "late/0", Sealed: []byte{1, 2, 3}}}
			h.decide(engine.ValuesFound{Masked: &schemas.ValuesMasked{Paths: []string{"task/" + h.task("kid").ID + "/input.v"}, Sealed: late}})
			h.decide(engine.ChildFinished{ChildID: kid, Name: "k", Version: 1, Status: conductor.WorkflowCompleted})
			h.decide(engine.Compact{})
			if !h.w.Compacted {
				t.Fatal("not compacted")
			}
			var want []engine.LookFor
			if kind == "_masked" {
				want = []engine.LookFor{{WorkflowID: kid, From: h.w.ID, SecretsKey: h.w.SecretsKey, Sealed: late}}
			}
			if listed := engine.HasTerminalEffects(h.w); listed != (want != nil) {
				t.Errorf("on recovery's list of ended workflows: %v, want %v", listed, want != nil)
			}
			if looks := effectsOf[engine.LookFor](h.decide(engine.Reconcile{})); !reflect.DeepEqual(looks, want) {
				t.Errorf("recovery tells %+v, want %+v", looks, want)
			}
		})
	}
}

// A workflow compacted before its starter found a value to be secret late
// has no key to seal the value under: the finding (FindValues records it
// shredded) replaces it with "***" at once, for good, wherever it holds
// it, as its compaction replaced its own _secrets data, and a restart
// hands "***" there. It stays compacted: reopened, it would take its
// tasks' late log lines. One compacted with no key, having shredded
// nothing, is reopened instead, and its next compaction replaces the
// value.
func TestACompactedWorkflowShredsLateValues(t *testing.T) {
	t.Parallel()
	const tok = "tok-value-Qm27xPz9"
	for _, tc := range []struct {
		name string
		seal func(h *harness) // what its compaction shreds, if anything
		// reopened: compacted with no key, it awaits compaction again.
		reopened bool
	}{
		{"its recorded key destroyed", func(h *harness) { h.w.SealsSecrets = true }, false},
		{"data shredded under the key named after it", func(h *harness) {
			h.w.Variables = map[string]any{"_secrets": &masking.Sealed{Kind: masking.KindSecrets, Purpose: "p", Ciphertext: []byte{1}}}
		}, false},
		{"compacted with no key", func(*harness) {}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, `{"name":"k","tasks":[{"name":"a","taskReferenceName":"a","inputParameters":{"tok":"${workflow.input.tok}","plain":"x"}}]}`,
				map[string]any{"tok": tok, "other": "y"})
			a := h.task("a").ID
			h.decide(engine.AddLog{TaskID: a, Line: "using " + tok})
			h.complete("a", map[string]any{"echo": "got " + tok, "n": 1})
			tc.seal(h)
			h.decide(engine.Compact{})
			if !h.w.Compacted || h.w.ShreddedNothing != tc.reopened {
				t.Fatalf("compacted %v, shredded nothing %v", h.w.Compacted, h.w.ShreddedNothing)
			}
			paths := []string{"input.tok", "output.echo", "task/" + a + "/input.tok", "task/" + a + "/output.echo"}
			h.decide(engine.ValuesFound{From: "parent", Masked: &schemas.ValuesMasked{Paths: paths, Shred: paths, Texts: []string{engine.LogPath(a, 0)}}})
			if h.w.Compacted == tc.reopened {
				t.Fatalf("compacted %v after the finding, want %v", h.w.Compacted, !tc.reopened)
			}
			if tc.reopened {
				h.decide(engine.Compact{})
			}
			if h.w.ShreddedNothing {
				t.Error("marked as having shredded nothing: it would take its tasks' late log lines")
			}
			enc, err := msgpack.Marshal(h.w)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(enc, []byte(tok)) {
				t.Error("the state holds the value in plain text")
			}
			task := h.w.TaskByID(a)
			if got := []any{h.w.Input["tok"], h.w.Output["echo"], task.Input["tok"], task.Output["echo"], task.Logs[0].Log}; !reflect.DeepEqual(got, []any{"***", "***", "***", "***", "***"}) {
				t.Errorf("input, output, task input, task output, log line = %v, want ***", got)
			}
			if h.w.Input["other"] != "y" || task.Input["plain"] != "x" || task.Output["n"] != 1 {
				t.Errorf("what does not hold the value changed: %v, %v, %v", h.w.Input, task.Input, task.Output)
			}
			h.decide(engine.Restart{})
			if got := h.task("a").Input["tok"]; got != masking.Mask {
				t.Errorf("a restart hands %v, want ***", got)
			}
		})
	}
}
