package engine_test

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
)

var update = flag.Bool("update", false, "rewrite the replay fixtures")

// scenarios drive a workflow through a recorded history. The fixtures hold
// the records the decider wrote the day they were recorded: a change to the
// decider or to event decoding that alters state or decisions fails here.
// Regenerate (-update) only after deciding the change is intended, and say
// so in the commit.
var scenarios = map[string]func(h *harness){
	"fork_switch_subworkflow": func(h *harness) {
		h.complete("a", map[string]any{"n": int64(1)})
		h.complete("a2", nil)
		h.complete("b", map[string]any{"v": "b"})
		h.advance(time.Second)
		h.complete("z", map[string]any{"final": true})
	},
	"retry_then_fail": func(h *harness) {
		h.take("a_ref")
		h.report("a_ref", conductor.TaskFailed, nil, "flaky")
		h.advance(time.Minute)
		h.decide(engine.Tick{})
		h.take("a_ref")
		h.complete("a_ref", map[string]any{"items": []any{int64(1), int64(2)}})
		h.report("b_ref", conductor.TaskFailedWithTerminalError, nil, "fatal")
	},
	"restart_and_rerun": func(h *harness) {
		h.complete("a_ref", nil)
		h.decide(engine.Terminate{Reason: "stop"})
		h.decide(engine.Restart{})
		h.complete("a_ref", nil)
		h.complete("b_ref", nil)
		h.complete("c_ref", map[string]any{"sum": int64(9)})
		h.decide(engine.Rerun{Request: conductor.RerunWorkflowRequest{ReRunFromTaskID: h.task("b_ref").ID}})
		h.complete("b_ref", nil)
		h.complete("c_ref", map[string]any{"sum": int64(10)})
	},
	"do_while_loop": func(h *harness) {
		h.take("a__1")
		h.complete("a__1", map[string]any{"v": "a1"})
		h.complete("b__1", map[string]any{"v": "b1", "more": true})
		h.advance(time.Second)
		h.system("loop", conductor.TaskInProgress, map[string]any{"seen": int64(1)}, "")
		h.complete("a__2", map[string]any{"v": "a2"})
		h.complete("b__2", map[string]any{"v": "b2", "more": false})
		h.system("loop", conductor.TaskCompleted, nil, "")
		h.complete("after", nil)
		h.decide(engine.Rerun{Request: conductor.RerunWorkflowRequest{ReRunFromTaskID: h.task("b__2").ID}})
		h.complete("b__2", map[string]any{"v": "b2'", "more": false})
		h.system("loop", conductor.TaskCompleted, nil, "")
		h.complete("after", map[string]any{"done": true})
	},
	"upgrade_and_jump": func(h *harness) {
		h.complete("a_ref", nil)
		h.take("b_ref")
		h.decide(engine.Upgrade{Def: parseDef(h.t, `{"name":"three","version":2,"tasks":[
		 {"name":"x","taskReferenceName":"x_ref"},{"name":"a","taskReferenceName":"a_ref"},
		 {"name":"b","taskReferenceName":"b_ref"},{"name":"c","taskReferenceName":"c_ref"},
		 {"name":"d","taskReferenceName":"d_ref","inputParameters":{"x":"${x_ref.output.given}"}}]}`),
			TaskOutput: map[string]map[string]any{"x_ref": {"given": true}}, DecidedFor: h.w.Principals()})
		h.decide(engine.Jump{Ref: "d_ref"})
		h.decide(engine.Jump{Ref: "a_ref", Input: map[string]any{"again": true}})
		h.complete("a_ref", nil)
		h.complete("b_ref", nil)
		h.complete("c_ref", nil)
		h.complete("d_ref", map[string]any{"done": true})
	},
	// The upgrade and the restart keep the input, onto versions masking
	// fields of it: they record those fields again (the guard seals them).
	"upgrade_restart_masked": func(h *harness) {
		h.complete("a_ref", nil)
		h.decide(engine.Upgrade{Def: parseDef(h.t, `{"name":"three","version":2,"maskedFields":["card"],"tasks":[
		 {"name":"a","taskReferenceName":"a_ref"},{"name":"b","taskReferenceName":"b_ref"},{"name":"c","taskReferenceName":"c_ref"}]}`),
			DecidedFor: h.w.Principals()})
		h.complete("b_ref", nil)
		h.complete("c_ref", nil)
		h.decide(engine.Restart{Def: parseDef(h.t, `{"name":"three","version":3,"maskedFields":["card","note"],"tasks":[
		 {"name":"a","taskReferenceName":"a_ref","inputParameters":{"n":"${workflow.input.n}"}}]}`), DecidedFor: h.w.Principals()})
		h.complete("a_ref", map[string]any{"done": true})
	},
}

var scenarioDefs = map[string]string{
	"fork_switch_subworkflow": forkJoin,
	"retry_then_fail":         threeSimple,
	"restart_and_rerun":       threeSimple,
	"do_while_loop":           loopDef,
	"upgrade_and_jump":        threeSimple,
	"upgrade_restart_masked":  threeSimple,
}

// scenarioInputs are the inputs scenarios start with other than {"n": 3}.
var scenarioInputs = map[string]map[string]any{
	"upgrade_restart_masked": {"n": int64(3), "card": "4111-1111", "note": "call first"},
}

func runScenario(t *testing.T, name string) *harness {
	input, ok := scenarioInputs[name]
	if !ok {
		input = map[string]any{"n": int64(3)}
	}
	h := newHarness(t, scenarioDefs[name], input, `{"name":"a","retryCount":2,"retryDelaySeconds":60}`)
	scenarios[name](h)
	return h
}

// envelopes are a scenario's decisions as the envelopes of log records,
// one record per decision.
func envelopes(t *testing.T, history [][]schemas.Event) [][]schemas.Envelope {
	out := make([][]schemas.Envelope, len(history))
	for i, evs := range history {
		envs := make([]schemas.Envelope, len(evs))
		for j, ev := range evs {
			env, err := schemas.Default.Encode(ev)
			if err != nil {
				t.Fatal(err)
			}
			env.ID = fmt.Sprintf("r%d/%d", i, j)
			envs[j] = env
		}
		out[i] = envs
	}
	return out
}

// encode frames a scenario's decisions as log records, each prefixed with
// its length.
func encode(t *testing.T, history [][]schemas.Event) []byte {
	var out bytes.Buffer
	for _, envs := range envelopes(t, history) {
		rec, err := schemas.EncodeRecord(envs)
		if err != nil {
			t.Fatal(err)
		}
		out.Write(binary.BigEndian.AppendUint32(nil, uint32(len(rec))))
		out.Write(rec)
	}
	return out.Bytes()
}

func decodeRecords(t *testing.T, b []byte) [][]schemas.Envelope {
	var out [][]schemas.Envelope
	for len(b) > 0 {
		n := binary.BigEndian.Uint32(b)
		envs, err := schemas.DecodeRecord(b[4 : 4+n])
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, envs)
		b = b[4+n:]
	}
	return out
}

// fold applies the events of recorded (see encode), calling each after
// every event, and returns the state.
func fold(t *testing.T, recorded []byte, each func(*engine.Workflow)) *engine.Workflow {
	t.Helper()
	var w *engine.Workflow
	for i, envs := range decodeRecords(t, recorded) {
		for _, env := range envs {
			ev, err := schemas.Default.Decode(env)
			if err != nil {
				t.Fatalf("record %d: %v", i, err)
			}
			if w, err = engine.Apply(w, ev); err != nil {
				t.Fatalf("record %d: %v", i, err)
			}
			if each != nil {
				each(w)
			}
		}
	}
	return w
}

func TestReplayFixtures(t *testing.T) {
	for name := range scenarios {
		t.Run(name, func(t *testing.T) {
			recPath := filepath.Join("testdata", "replay", name+".records")
			statePath := filepath.Join("testdata", "replay", name+".state.json")
			h := runScenario(t, name)
			state, _ := json.MarshalIndent(h.w.Conductor(true), "", "  ")
			if *update {
				if err := os.WriteFile(recPath, encode(t, h.history), 0o644); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(statePath, append(state, '\n'), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			recorded, err := os.ReadFile(recPath)
			if err != nil {
				t.Fatal(err)
			}
			wantState, err := os.ReadFile(statePath)
			if err != nil {
				t.Fatal(err)
			}

			// 1. Folding the recorded events reproduces the recorded state.
			w := fold(t, recorded, nil)
			folded, _ := json.MarshalIndent(w.Conductor(true), "", "  ")
			if string(folded)+"\n" != string(wantState) {
				t.Errorf("folded state differs from %s:\n%s", statePath, folded)
			}
			// 2. Deciding the same triggers again writes the same events.
			// (The records' framing is the schemas package's: the
			// fixtures keep the format they were written in.)
			if got, want := envelopes(t, h.history), decodeRecords(t, recorded); !reflect.DeepEqual(got, want) {
				t.Errorf("decisions differ from %s: %d records recorded, %d now", recPath, len(want), len(got))
				for i := range min(len(got), len(want)) {
					if !reflect.DeepEqual(got[i], want[i]) {
						t.Errorf("first difference, record %d:\n%+v\nrecorded\n%+v", i, got[i], want[i])
						break
					}
				}
			}
		})
	}
}

// Records an earlier version wrote still fold to the state their scenario
// reaches now: do_while_loop.v1 carried the loop's whole output in every
// event, where a loop now records what changed (TaskUpdated.MergeOutput);
// retry_then_fail.v1's end named no task as what ended the workflow
// (WorkflowStatusChanged.FailedTaskID), and names the one its ended state
// shows, which today's end names. Its failed task names are those it
// recorded (b_ref, the task that ended it, as ends named before they
// counted every failed task), where today's end records a_ref too, a's
// first instance having failed: an end shows what it recorded.
// upgrade_restart_masked.v1's upgrade and restart recorded the whole input
// they kept again, where they now record the fields they seal
// (WorkflowUpgraded.InputFields, WorkflowReset.InputFields).
func TestReplayEarlierRecords(t *testing.T) {
	for name, c := range map[string]struct {
		scenario   string
		failedRefs []string // as recorded, where they differ from today's
	}{
		"do_while_loop.v1":          {scenario: "do_while_loop"},
		"retry_then_fail.v1":        {scenario: "retry_then_fail", failedRefs: []string{"b_ref"}},
		"upgrade_restart_masked.v1": {scenario: "upgrade_restart_masked"},
	} {
		recorded, err := os.ReadFile(filepath.Join("testdata", "replay", name+".records"))
		if err != nil {
			t.Fatal(err)
		}
		wantState, err := os.ReadFile(filepath.Join("testdata", "replay", c.scenario+".state.json"))
		if err != nil {
			t.Fatal(err)
		}
		now, err := os.ReadFile(filepath.Join("testdata", "replay", c.scenario+".records"))
		if err != nil {
			t.Fatal(err)
		}
		w, today := fold(t, recorded, nil), fold(t, now, nil)
		if c.failedRefs != nil {
			if !reflect.DeepEqual(w.FailedTaskRefs, c.failedRefs) {
				t.Errorf("%s shows failed tasks %v, recorded %v", name, w.FailedTaskRefs, c.failedRefs)
			}
			w.FailedTaskRefs, w.FailedTaskNames = today.FailedTaskRefs, today.FailedTaskNames
		}
		folded, _ := json.MarshalIndent(w.Conductor(true), "", "  ")
		if string(folded)+"\n" != string(wantState) {
			t.Errorf("%s folds to a state other than %s's:\n%s", name, c.scenario, folded)
		}
		if got, want := w.FailedTaskID, today.FailedTaskID; got != want {
			t.Errorf("%s names task %q as what ended the workflow, %s %q", name, got, c.scenario, want)
		}
	}
}
