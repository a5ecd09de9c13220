package engine_test

import (
	"fmt"
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

// A workflow whose stored definition does not parse (one an earlier
// version read, or a damaged record) is still compacted, its _secrets
// shredded, and still removed: neither asks anything of the definition.
// It masks a value its starter finds to be secret late, running or
// ended (see TestMaskedWithoutItsDefinition), and ended, it is reconciled
// (recovery), where both were refused for the definition and it showed
// the value. What needs it, a restart, or a pause or recovery of one
// still running, is a conflict (terminating it: see
// TestTerminatedWithoutItsDefinition).
func TestDecidedWithoutItsDefinition(t *testing.T) {
	t.Parallel()
	input := func() map[string]any {
		return map[string]any{"_secrets": map[string]any{"pw": &masking.Sealed{Kind: masking.KindSecrets, Purpose: "p", Ciphertext: []byte{1}}},
			"v": "found secret late"}
	}
	fold := func(t *testing.T, def string, ended bool, more ...schemas.Event) *engine.Workflow {
		t.Helper()
		evs := []schemas.Event{
			&schemas.WorkflowStarted{WorkflowID: "wf-unparsed", Name: "w", Version: 1, Def: []byte(def), Input: input(), Time: 1},
			&schemas.SecretsSealed{Key: "key-1"},
		}
		if ended {
			evs = append(evs, &schemas.WorkflowStatusChanged{Status: conductor.WorkflowTerminated, Reason: "stop", Time: 2})
		}
		w, err := engine.ApplyRecord(nil, append(evs, more...))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Def(); err == nil {
			t.Fatalf("definition %s parses", def)
		}
		return w
	}
	for _, def := range []string{`{"name":"w","tasks":[{"name":"a",`, `{"name":"w","tasks":"none"}`} {
		for name, tc := range map[string]struct {
			ended, removed, compacted bool
			trigger                   engine.Trigger
			want                      string // the event decided, if any
			err                       error  // the kind of error, if one
			needsDef                  bool   // a conflict, for the definition
		}{
			"compact an ended one":          {ended: true, trigger: engine.Compact{}, want: "workflow.compacted"},
			"compact a removed running one": {removed: true, trigger: engine.Compact{}, want: "workflow.compacted"},
			"compact a compacted one":       {ended: true, compacted: true, trigger: engine.Compact{}},
			"compact a running one":         {trigger: engine.Compact{}, err: fault.ErrConflict},
			"remove an ended one":           {ended: true, trigger: engine.Remove{}, want: "workflow.removed"},
			"archive an ended one":          {ended: true, trigger: engine.Remove{Archive: true}, want: "workflow.removed"},
			"terminate-remove an ended one": {ended: true, trigger: engine.Remove{Terminate: true}, want: "workflow.removed"},
			"remove a running one":          {trigger: engine.Remove{}, want: "workflow.removed"},
			"remove a removed one":          {removed: true, trigger: engine.Remove{}, err: fault.ErrNotFound},
			"archive a running one":         {trigger: engine.Remove{Archive: true}, err: fault.ErrInvalid},
			"mask in an ended one":          {ended: true, trigger: engine.ValuesFound{From: "parent", Masked: &schemas.ValuesMasked{Paths: []string{"input.v"}}}, want: "workflow.values_masked"},
			"mask in a running one":         {trigger: engine.ValuesFound{From: "parent", Masked: &schemas.ValuesMasked{Paths: []string{"input.v"}}}, want: "workflow.values_masked"},
			"reconcile an ended one":        {ended: true, trigger: engine.Reconcile{}},
			"reconcile a running one":       {trigger: engine.Reconcile{}, needsDef: true},
			"pause a running one":           {trigger: engine.Pause{}, needsDef: true},
			"restart an ended one":          {ended: true, trigger: engine.Restart{}, needsDef: true},
		} {
			t.Run(def+"/"+name, func(t *testing.T) {
				t.Parallel()
				var more []schemas.Event
				if tc.removed {
					more = append(more, &schemas.WorkflowRemoved{Time: 2})
				}
				if tc.compacted {
					more = append(more, &schemas.WorkflowCompacted{Time: 3})
				}
				w := fold(t, def, tc.ended, more...)
				dec, err := engine.Decide(engine.Input{State: w, Trigger: tc.trigger, Now: time.UnixMilli(10)})
				switch {
				case tc.err != nil:
					wantErr(t, err, tc.err)
					return
				case tc.needsDef:
					// A client is told so, in words that quote none of it,
					// and the executor that it is stuck.
					wantErr(t, err, fault.ErrConflict)
					wantErr(t, err, engine.ErrUnreadableDef)
					if msg := err.Error(); !strings.Contains(msg, "recorded definition cannot be read") || strings.Contains(msg, "tasks") {
						t.Fatalf("err = %q, want one that says the definition cannot be read, and quotes none of it", msg)
					}
					return
				case err != nil:
					t.Fatal(err)
				}
				var got []string
				for _, ev := range dec.Events {
					got = append(got, ev.EventType())
				}
				switch {
				case tc.want == "":
					if len(got) != 0 {
						t.Fatalf("decided %v", got)
					}
				case len(got) != 1 || got[0] != tc.want:
					t.Fatalf("decided %v, want %s", got, tc.want)
				case tc.want == "workflow.compacted":
					if pw := dec.State.Input["_secrets"].(map[string]any)["pw"]; !dec.State.Compacted || pw != masking.Mask {
						t.Errorf("compacted %v, _secrets.pw %v", dec.State.Compacted, pw)
					}
				case tc.want == "workflow.values_masked":
					if v := dec.State.Conductor(true).Input["v"]; v != masking.Mask {
						t.Errorf("its view's input.v %v, want %s", v, masking.Mask)
					}
				case !dec.State.Removed:
					t.Error("not removed")
				}
			})
		}
	}
}

// A running workflow whose definition does not parse (an earlier version
// recorded it) masks the values its starter finds to be secret late, in
// its input, its tasks, its variables and its children's inputs, and
// records the key its preparation sealed them under, from its state alone:
// it does not move otherwise (a task the earlier version completed
// schedules nothing), and it still finds its child to tell. The news was
// refused as a conflict for the definition, and the value stayed in plain
// text in every view until the workflow was terminated.
func TestMaskedWithoutItsDefinition(t *testing.T) {
	t.Parallel()
	const (
		def = `{"name":"w","tasks":[
		 {"name":"a","taskReferenceName":"a","inputParameters":{"v":"${workflow.input.v}"}},
		 {"name":"sv","taskReferenceName":"sv","type":"SET_VARIABLE","inputParameters":{"v":"${a.output.v}"}},
		 {"name":"child","taskReferenceName":"child","type":"SUB_WORKFLOW","inputParameters":{"v":"${a.output.v}"},"subWorkflowParam":{"name":"kid","version":1}},
		 {"name":"b","taskReferenceName":"b"}]}`
		late = "found-secret-late-Qz81"
	)
	task := func(ref string) func(*conductor.Workflow) *conductor.Task {
		return func(wf *conductor.Workflow) *conductor.Task {
			for _, t := range wf.Tasks {
				if t.ReferenceTaskName == ref {
					return t
				}
			}
			return &conductor.Task{}
		}
	}
	a, child := task("a"), task("child")
	for name, tc := range map[string]struct {
		paths func(h *harness) []string
		read  func(*conductor.Workflow) any // where the value was
		key   bool                          // its preparation took a secrets key
		ended string                        // a task the earlier version completed
	}{
		"its input": {paths: func(*harness) []string { return []string{"input.v"} },
			read: func(wf *conductor.Workflow) any { return wf.Input["v"] }},
		"a task's input and output": {paths: func(h *harness) []string {
			return []string{"task/" + h.task("a").ID + "/input.v", "task/" + h.task("a").ID + "/output.v"}
		}, read: func(wf *conductor.Workflow) any { return []any{a(wf).InputData["v"], a(wf).OutputData["v"]} }},
		"its variables": {paths: func(*harness) []string { return []string{"variables.v"} },
			read: func(wf *conductor.Workflow) any { return wf.Variables["v"] }},
		"its child's input": {paths: func(h *harness) []string { return []string{"task/" + h.task("child").ID + "/input.v"} },
			read: func(wf *conductor.Workflow) any { return child(wf).InputData["v"] }},
		"under a key it takes": {key: true, paths: func(*harness) []string { return []string{"input.v"} },
			read: func(wf *conductor.Workflow) any { return wf.Input["v"] }},
		"after a task completed unprogressed": {ended: "child", paths: func(*harness) []string { return []string{"input.v"} },
			read: func(wf *conductor.Workflow) any { return wf.Input["v"] }},
	} {
		for _, bad := range []string{`{"name":"w","tasks":[{"name":"a",`, `{"name":"w","tasks":"none"}`} {
			t.Run(name+"/"+bad, func(t *testing.T) {
				t.Parallel()
				h := newHarness(t, def, map[string]any{"v": late})
				h.take("a")
				h.complete("a", map[string]any{"v": late})
				evs := []schemas.Event{&schemas.WorkflowUpgraded{Def: []byte(bad), Time: 5}}
				if tc.ended != "" {
					evs = append(evs, &schemas.TaskUpdated{TaskID: h.task(tc.ended).ID, Status: conductor.TaskCompleted, Time: 5})
				}
				w, err := engine.ApplyRecord(h.w, evs)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := w.Def(); err == nil {
					t.Fatalf("definition %s parses", bad)
				}
				h.w = w
				before := h.refs()
				if got := fmt.Sprint(tc.read(w.Conductor(true))); !strings.Contains(got, late) {
					t.Fatalf("before: it reads %q where the value was: the row tests nothing", got)
				}
				refs := []schemas.ResolvedRef{{Kind: masking.KeySecrets, Name: schemas.LateRefPrefix + "0", Sealed: []byte{1, 2, 3}}}
				found := engine.ValuesFound{From: "parent", Masked: &schemas.ValuesMasked{Paths: tc.paths(h), Sealed: refs}}
				want := []string{"workflow.values_masked"}
				if tc.key {
					found.Key = &schemas.SecretsSealed{Key: "key-taken"}
					want = append(want, "workflow.secrets_sealed")
				}
				dec, err := h.try(found)
				if err != nil {
					t.Fatalf("err = %v, want the values masked", err)
				}
				var got []string
				for _, ev := range dec.Events {
					got = append(got, ev.EventType())
				}
				if !slices.Equal(got, want) || len(dec.Effects) != 0 {
					t.Fatalf("decided %v and %d effects, want %v alone: %s", got, len(dec.Effects), want, describe(dec))
				}
				if v := tc.read(dec.State.Conductor(true)); strings.Contains(fmt.Sprint(v), late) {
					t.Errorf("it reads %v where the value was", v)
				}
				if tc.key && (!dec.State.SealsSecrets || dec.State.SecretsKey != "key-taken") {
					t.Errorf("seals secrets %v under %q, want under the key taken", dec.State.SealsSecrets, dec.State.SecretsKey)
				}
				// Nothing moved: what needs the definition waits for a
				// terminate.
				if after := h.refs(); dec.State.Status != conductor.WorkflowRunning || !slices.Equal(after, before) {
					t.Errorf("%s with tasks %v, want RUNNING with tasks %v", dec.State.Status, after, before)
				}
				// guard's lookFor tells its child from the state it leaves.
				kid := h.task("child").SubWorkflowID
				if told := effectsOf[engine.LookFor](engine.Decision{Effects: engine.TellChildren(dec.State, refs)}); len(told) != 1 || told[0].WorkflowID != kid {
					t.Errorf("told %+v, want its child %s", told, kid)
				}
			})
		}
	}
}

// A running workflow whose definition does not parse is terminated, by a
// terminate as by a terminate-remove, a parent's clean-up too, from its
// state alone: its tasks canceled, its child terminated and its parent
// told, its output empty (its outputParameters cannot be read) and its
// failure workflow not started, which its reason says. The terminate was
// refused as a conflict, and the workflow stayed running for good.
func TestTerminatedWithoutItsDefinition(t *testing.T) {
	t.Parallel()
	const def = `{"name":"w","failureWorkflow":"cleanup","outputParameters":{"x":"${a.output.x}"},"tasks":[
	 {"name":"fork","taskReferenceName":"fork","type":"FORK_JOIN","forkTasks":[
	  [{"name":"a","taskReferenceName":"a"}],
	  [{"name":"child","taskReferenceName":"child","type":"SUB_WORKFLOW","subWorkflowParam":{"name":"kid","version":1}}]]},
	 {"name":"join","taskReferenceName":"join","type":"JOIN","joinOn":["a","child"]}]}`
	for name, tc := range map[string]struct {
		trigger    engine.Trigger
		wantReason string
		removed    bool
	}{
		"terminate": {trigger: engine.Terminate{Reason: "stop", By: "user:op", TriggerFailureWorkflow: true},
			wantReason: "stop (its recorded definition cannot be read: its output is empty, and its failure workflow, if it names one, was not started)"},
		"terminate without a reason": {trigger: engine.Terminate{},
			wantReason: "its recorded definition cannot be read: its output is empty, and its failure workflow, if it names one, was not started"},
		"terminate-remove": {trigger: engine.Remove{Terminate: true, Reason: "gone", By: "user:op"}, removed: true,
			wantReason: "gone (its recorded definition cannot be read: its output is empty, and its failure workflow, if it names one, was not started)"},
		"a parent's clean-up": {trigger: engine.Terminate{Reason: "parent workflow p TERMINATED", UnlessEnded: true},
			wantReason: "parent workflow p TERMINATED (its recorded definition cannot be read: its output is empty, and its failure workflow, if it names one, was not started)"},
	} {
		for _, bad := range []string{`{"name":"w","tasks":[{"name":"a",`, `{"name":"w","tasks":"none"}`} {
			t.Run(name+"/"+bad, func(t *testing.T) {
				t.Parallel()
				h := newHarnessStart(t, engine.Start{WorkflowID: "wf-1", Def: parseDef(t, def), CreatedBy: "app:tester",
					ParentWorkflowID: "parent-1", ParentWorkflowTaskID: "pt-1", Request: conductor.StartWorkflowRequest{}})
				h.take("a")
				h.complete("a", map[string]any{"x": "from a"})
				kid := h.task("child").SubWorkflowID
				w, err := engine.ApplyRecord(h.w, []schemas.Event{&schemas.WorkflowUpgraded{Def: []byte(bad), Time: 5}})
				if err != nil {
					t.Fatal(err)
				}
				if _, err := w.Def(); err == nil {
					t.Fatalf("definition %s parses", bad)
				}
				h.w = w
				dec := h.decide(tc.trigger)

				got := dec.State
				if got.Status != conductor.WorkflowTerminated || got.Reason != tc.wantReason || got.Removed != tc.removed {
					t.Fatalf("%s %q removed=%v, want TERMINATED %q removed=%v", got.Status, got.Reason, got.Removed, tc.wantReason, tc.removed)
				}
				if len(got.Output) != 0 || !got.NoFailureWorkflow {
					t.Errorf("output %v, no failure workflow %v: want {} and true", got.Output, got.NoFailureWorkflow)
				}
				for _, task := range got.Tasks {
					if task.Active() {
						t.Errorf("task %s is still %s", task.Ref, task.Status)
					}
				}
				if s := effectsOf[engine.StartWorkflow](dec); len(s) != 0 {
					t.Errorf("started %+v", s)
				}
				if k := effectsOf[engine.TerminateWorkflow](dec); len(k) != 1 || k[0].WorkflowID != kid {
					t.Errorf("terminated %+v, want its child %s", k, kid)
				}
				if p := effectsOf[engine.NotifyParent](dec); len(p) != 1 || p[0].Child.Status != conductor.WorkflowTerminated {
					t.Errorf("told its parent %+v", p)
				}
				// Recovery performs what the end implies, no failure
				// workflow among it.
				for _, eff := range engine.Effects(got, 10) {
					if _, ok := eff.(engine.StartWorkflow); ok {
						t.Errorf("recovery starts %+v", eff)
					}
				}
			})
		}
	}
}

// A FAILED or TIMED_OUT workflow whose definition does not parse, asked
// to be terminated with triggerFailureWorkflow, is refused as a conflict
// that says why when its end started no failure workflow: it became
// TERMINATED, started none and kept the reason it ended with, and
// nothing told the caller. Without the flag, or once its end started
// one, it is terminated as an ended workflow whose definition parses: its
// reason kept, and no failure workflow started again.
func TestTerminateOfAnEndedOneWithoutItsDefinition(t *testing.T) {
	t.Parallel()
	const bad = `{"name":"w","tasks":[{"name":"a",`
	for name, tc := range map[string]struct {
		status  string
		started bool // its end started its failure workflow
		asked   bool // triggerFailureWorkflow
		refused bool
	}{
		"failed, none started, asked":    {status: conductor.WorkflowFailed, asked: true, refused: true},
		"timed out, none started, asked": {status: conductor.WorkflowTimedOut, asked: true, refused: true},
		"failed, none started":           {status: conductor.WorkflowFailed},
		"failed, one started, asked":     {status: conductor.WorkflowFailed, started: true, asked: true},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			def := `{"name":"w","tasks":[{"name":"a","taskReferenceName":"a"}]}`
			if tc.started {
				def = `{"name":"w","failureWorkflow":"cleanup","tasks":[{"name":"a","taskReferenceName":"a"}]}`
			}
			w, err := engine.ApplyRecord(nil, []schemas.Event{
				&schemas.WorkflowStarted{WorkflowID: "wf-ended", Name: "w", Version: 1, Def: []byte(def), Time: 1},
				&schemas.WorkflowStatusChanged{Status: tc.status, Reason: "it failed", Time: 2},
				&schemas.WorkflowUpgraded{Def: []byte(bad), Time: 3},
			})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := w.Def(); err == nil || len(w.FailureWorkflows) > 0 != tc.started {
				t.Fatalf("definition %s parses, or its end started %v", bad, w.FailureWorkflows)
			}
			dec, err := engine.Decide(engine.Input{State: w, Trigger: engine.Terminate{Reason: "stop", By: "user:op", TriggerFailureWorkflow: tc.asked},
				Now: time.UnixMilli(10)})
			if tc.refused {
				wantErr(t, err, fault.ErrConflict)
				// Ended, it is not stuck: nothing for an operator.
				if errorsIs(err, engine.ErrUnreadableDef) {
					t.Errorf("err = %v, want no ErrUnreadableDef", err)
				}
				if msg := err.Error(); !strings.Contains(msg, "cannot be read") || !strings.Contains(msg, "without triggerFailureWorkflow") || strings.Contains(msg, "tasks") {
					t.Fatalf("err = %q, want one that says the failure workflow cannot be started, and quotes none of the definition", msg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := dec.State; got.Status != conductor.WorkflowTerminated || got.Reason != "it failed" {
				t.Errorf("%s %q, want TERMINATED with the reason it ended with", got.Status, got.Reason)
			}
			if s := effectsOf[engine.StartWorkflow](dec); len(s) != 0 {
				t.Errorf("started %+v", s)
			}
		})
	}
}

// cachingFork is a dynamic fork and its JOIN, which run the task fetch,
// configured by the workflow's input (cachingForkInput) to cache its
// output: a task that carries its own configuration.
const cachingFork = `
	 {"name":"dyn","taskReferenceName":"dyn","type":"FORK_JOIN_DYNAMIC","dynamicForkTasksParam":"tasks",
	  "dynamicForkTasksInputParamName":"inputs","inputParameters":{"tasks":"${workflow.input.tasks}","inputs":"${workflow.input.inputs}"}},
	 {"name":"join","taskReferenceName":"join","type":"JOIN"}`

func cachingForkInput() map[string]any {
	return map[string]any{
		"tasks":  []any{map[string]any{"name": "fetch", "taskReferenceName": "fetch", "cacheConfig": map[string]any{"key": "${url}", "ttlInSecond": 60}}},
		"inputs": map[string]any{"fetch": map[string]any{"url": "https://a"}},
	}
}

// A workflow whose definition does not parse still has the outputs it
// masks purged from the cache, by its compaction as by recovery, for the
// tasks that carry their own configuration: those a dynamic fork decided
// at run time. The purge looked each task up in the definition and,
// failing to parse it, purged nothing: the output stayed in the cache, in
// plain text, until its time to live.
func TestUncacheWithoutItsDefinition(t *testing.T) {
	t.Parallel()
	const def = `{"name":"cached","tasks":[` + cachingFork + `,
	 {"name":"hold","taskReferenceName":"hold","type":"WAIT"}]}`
	input := cachingForkInput()
	for _, bad := range []string{`{"name":"cached","tasks":[{"name":"a",`, `{"name":"cached","tasks":"none"}`} {
		for name, compact := range map[string]bool{"compaction": true, "recovery": false} {
			t.Run(bad+"/"+name, func(t *testing.T) {
				t.Parallel()
				h := newHarness(t, def, input)
				h.complete("fetch", map[string]any{"token": "found-secret-later"})
				stored := effectsOf[engine.CacheOutput](h.last)
				if len(stored) != 1 {
					t.Fatalf("cache effects %+v", stored)
				}
				h.decide(engine.ValuesFound{From: "parent", Masked: &schemas.ValuesMasked{Paths: []string{"task/" + h.task("fetch").ID + "/output.token"}}})
				evs := []schemas.Event{&schemas.WorkflowUpgraded{Def: []byte(bad), Time: 5}}
				if compact {
					evs = append(evs, &schemas.WorkflowStatusChanged{Status: conductor.WorkflowTerminated, Reason: "stop", Time: 5})
				}
				w, err := engine.ApplyRecord(h.w, evs)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := w.Def(); err == nil {
					t.Fatalf("definition %s parses", bad)
				}
				effs := engine.Effects(w, 10)
				if compact {
					dec, err := engine.Decide(engine.Input{State: w, Trigger: engine.Compact{}, Now: time.UnixMilli(10)})
					if err != nil {
						t.Fatal(err)
					}
					effs = dec.Effects
				}
				want := engine.UncacheOutput{Key: stored[0].Key, Required: compact}
				if got := effectsOf[engine.UncacheOutput](engine.Decision{Effects: effs}); !slices.Contains(got, want) {
					t.Fatalf("uncache effects %+v, none %+v", got, want)
				}
			})
		}
	}
}

// The outputs a workflow whose definition does not parse masks, of the
// tasks its definition configures, cannot be keyed without it (their
// cacheConfig is there), and those of the tasks that carry their own
// configuration are purged by key as any other. A task that had completed
// when an upgrade replaced the definition by one that does not parse has
// its key of then kept (Task.CacheKeys), and is purged by that key alone:
// its compaction read every entry of the cache for it, a scan of the
// bucket (33 µs an entry). One completed under the definition that does
// not parse (recorded by an earlier version, which read it) is found by
// that scan (UncacheTasks), by the task each entry names.
func TestUncacheByTaskWithoutItsDefinition(t *testing.T) {
	t.Parallel()
	const def = `{"name":"cached","tasks":[` + cachingFork + `,
	 {"name":"fetch_def","taskReferenceName":"fetch_def","inputParameters":{"url":"https://b"},"cacheConfig":{"key":"${url}","ttlInSecond":60}},
	 {"name":"plain","taskReferenceName":"plain"},
	 {"name":"hold","taskReferenceName":"hold","type":"WAIT"}]}`
	input := cachingForkInput()
	for _, bad := range []string{`{"name":"cached","tasks":[{"name":"a",`, `{"name":"cached","tasks":"none"}`} {
		for name, completedUnder := range map[string]bool{"completed before the upgrade": false, "one completed under it": true} {
			t.Run(bad+"/"+name, func(t *testing.T) {
				t.Parallel()
				h := newHarness(t, def, input)
				h.complete("fetch", map[string]any{"token": "found-secret-later"})
				dynamic := effectsOf[engine.CacheOutput](h.last)
				h.complete("fetch_def", map[string]any{"token": "found-secret-later"})
				configured := effectsOf[engine.CacheOutput](h.last)
				h.complete("plain", map[string]any{"token": "found-secret-later"})
				if len(dynamic) != 1 || len(configured) != 1 || len(effectsOf[engine.CacheOutput](h.last)) != 0 {
					t.Fatalf("cache effects %+v, %+v", dynamic, configured)
				}
				var paths []string
				for _, ref := range []string{"fetch", "fetch_def", "plain"} {
					paths = append(paths, "task/"+h.task(ref).ID+"/output.token")
				}
				h.decide(engine.ValuesFound{From: "parent", Masked: &schemas.ValuesMasked{Paths: paths}})
				evs := []schemas.Event{&schemas.WorkflowUpgraded{Def: []byte(bad), Time: 5}}
				hold := h.task("hold").ID
				if completedUnder {
					evs = append(evs, &schemas.TaskUpdated{TaskID: hold, Status: conductor.TaskCompleted, Output: map[string]any{"token": "found-secret-later"}, Time: 5},
						&schemas.ValuesMasked{Paths: []string{"task/" + hold + "/output.token"}})
				}
				evs = append(evs, &schemas.WorkflowStatusChanged{Status: conductor.WorkflowTerminated, Reason: "stop", Time: 5})
				w, err := engine.ApplyRecord(h.w, evs)
				if err != nil {
					t.Fatal(err)
				}
				dec, err := engine.Decide(engine.Input{State: w, Trigger: engine.Compact{}, Now: time.UnixMilli(10)})
				if err != nil {
					t.Fatal(err)
				}
				byTask := effectsOf[engine.UncacheTasks](dec)
				switch want := (engine.UncacheTasks{WorkflowID: w.ID, TaskIDs: []string{hold}, Required: true}); {
				case !completedUnder && len(byTask) != 0:
					t.Errorf("purges by task %+v, want none: the upgrade kept the keys of the tasks completed before it", byTask)
				case completedUnder && (len(byTask) != 1 || !reflect.DeepEqual(byTask[0], want)):
					t.Errorf("purges by task %+v, want %+v", byTask, want)
				}
				// The upgrade onto the definition that does not parse kept
				// fetch_def's key of then (Task.CacheKeys); plain had
				// none.
				byKey := effectsOf[engine.UncacheOutput](dec)
				for _, key := range []string{dynamic[0].Key, configured[0].Key} {
					if !slices.Contains(byKey, engine.UncacheOutput{Key: key, Required: true}) {
						t.Errorf("purges by key %+v, want %s's among them", byKey, key)
					}
				}
				if len(byKey) != 2 {
					t.Errorf("purges by key %+v, want the dynamic fork's task's and fetch_def's kept key", byKey)
				}
			})
		}
	}
}

// A FAILED workflow whose definition, recorded by an earlier version,
// does not parse now, and whose end started its failure workflow, is
// terminated with triggerFailureWorkflow as one whose definition parses
// is: TERMINATED, the reason it ended with kept, none started again. It
// was refused (409, "cannot be started"): the start was looked for in
// FailureWorkflows alone, which the fold filled from the definition, so no
// state folded since the definition stopped parsing held it; the end's
// output names it, as every such end's does, and the fold reads it there
// (TestFailureWorkflowOfOneEndedUnderAnEarlierVersionIsTold). An output
// naming another workflow there (its outputParameters') is no such start.
// A state the read model stored before the fold read the output (the
// executor starts its decisions from it) holds no start: the end's output
// names it still.
func TestTerminateOfOneEndedUnderAnEarlierVersion(t *testing.T) {
	t.Parallel()
	ended := func(t *testing.T, def string, output map[string]any) *engine.Workflow {
		t.Helper()
		w, err := engine.ApplyRecord(nil, []schemas.Event{
			&schemas.WorkflowStarted{WorkflowID: "wf-ended", Name: "w", Version: 1, Def: []byte(def), Time: 1},
			&schemas.WorkflowStatusChanged{Status: conductor.WorkflowFailed, Reason: "it failed", Output: output, Time: 2},
		})
		if err != nil {
			t.Fatal(err)
		}
		return w
	}
	// The failure workflow its end started, as a fold that reads the
	// definition finds it.
	started := ended(t, `{"name":"w","failureWorkflow":"cleanup","tasks":[{"name":"a","taskReferenceName":"a"}]}`, nil).FailureWorkflows
	if len(started) != 1 {
		t.Fatalf("failure workflows %v, want the one its end started", started)
	}
	for name, tc := range map[string]struct {
		named   string // the failure workflow its output names
		stored  bool   // a state stored before the fold read the output
		refused bool
	}{
		"its output names the one its end started":                         {named: started[0]},
		"its output names another":                                         {named: "wf-other", refused: true},
		"stored before the fold read it, its output names the one started": {named: started[0], stored: true},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			w := ended(t, `{"name":"w","failureWorkflow":"cleanup","tasks":[{"name":"a",`, map[string]any{engine.FailureWorkflowOutputKey: tc.named})
			if _, err := w.Def(); err == nil {
				t.Fatal("its definition parses")
			}
			if tc.stored {
				w = w.Clone()
				w.FailureWorkflows = nil
			}
			dec, err := engine.Decide(engine.Input{State: w, Trigger: engine.Terminate{Reason: "stop", By: "user:op", TriggerFailureWorkflow: true},
				Now: time.UnixMilli(10)})
			if tc.refused {
				wantErr(t, err, fault.ErrConflict)
				return
			}
			if err != nil {
				t.Fatalf("err = %v, want it terminated: its end started failure workflow %s", err, tc.named)
			}
			if got := dec.State; got.Status != conductor.WorkflowTerminated || got.Reason != "it failed" || got.Output[engine.FailureWorkflowOutputKey] != tc.named {
				t.Errorf("%s %q, output %v, want TERMINATED with the reason and output it ended with", got.Status, got.Reason, got.Output)
			}
			if s := effectsOf[engine.StartWorkflow](dec); len(s) != 0 {
				t.Errorf("started %+v", s)
			}
		})
	}
}

// A workflow ended under a definition that parses no more (one an earlier
// version recorded) tells the failure workflow its end started of values
// found to be secret late, as one whose definition parses does, now and
// in recovery: the fold reads the start from the end's output, which
// names the id the ending decision derived. The fold read it from the
// definition alone, found none, and the failure workflow kept the values
// in its input (the failed workflow's, as given) in plain text. An output
// naming another id (outputParameters'), or that of a COMPLETED end or of
// an end that started none, names no start.
func TestFailureWorkflowOfOneEndedUnderAnEarlierVersionIsTold(t *testing.T) {
	t.Parallel()
	const (
		parses = `{"name":"w","failureWorkflow":"cleanup","tasks":[{"name":"a","taskReferenceName":"a"}]}`
		bad    = `{"name":"w","failureWorkflow":"cleanup","tasks":[{"name":"a",`
	)
	late := []schemas.ResolvedRef{{Kind: masking.KeySecrets, Name: schemas.LateRefPrefix + "0", Sealed: []byte{1, 2, 3}}}
	fold := func(t *testing.T, def string, end *schemas.WorkflowStatusChanged) *engine.Workflow {
		t.Helper()
		w, err := engine.ApplyRecord(nil, []schemas.Event{
			&schemas.WorkflowStarted{WorkflowID: "wf-ended", Name: "w", Version: 1, Def: []byte(def), Input: map[string]any{"v": "late"}, Time: 1},
			&schemas.ValuesMasked{Paths: []string{"input.v"}, Sealed: late},
			end,
		})
		if err != nil {
			t.Fatal(err)
		}
		return w
	}
	// The failure workflow its end started, as a fold of the definition
	// that parses finds it.
	started := fold(t, parses, &schemas.WorkflowStatusChanged{Status: conductor.WorkflowFailed, Time: 2}).FailureWorkflows
	if len(started) != 1 {
		t.Fatalf("failure workflows %v, want the one its end started", started)
	}
	for name, tc := range map[string]struct {
		end *schemas.WorkflowStatusChanged
		// kept: a state folded before FailureWorkflows was kept
		kept bool
		told []string
	}{
		"failed, its output naming the one its end started": {told: started,
			end: &schemas.WorkflowStatusChanged{Status: conductor.WorkflowFailed, Output: map[string]any{engine.FailureWorkflowOutputKey: started[0]}}},
		"timed out, its output naming the one its end started": {told: started,
			end: &schemas.WorkflowStatusChanged{Status: conductor.WorkflowTimedOut, Output: map[string]any{engine.FailureWorkflowOutputKey: started[0]}}},
		"a state kept before the list, its output naming the one its end started": {kept: true, told: started,
			end: &schemas.WorkflowStatusChanged{Status: conductor.WorkflowFailed, Output: map[string]any{engine.FailureWorkflowOutputKey: started[0]}}},
		"failed, its output naming another": {
			end: &schemas.WorkflowStatusChanged{Status: conductor.WorkflowFailed, Output: map[string]any{engine.FailureWorkflowOutputKey: "wf-other"}}},
		"failed, its output naming none": {
			end: &schemas.WorkflowStatusChanged{Status: conductor.WorkflowFailed}},
		"completed, its output naming the id": {
			end: &schemas.WorkflowStatusChanged{Status: conductor.WorkflowCompleted, Output: map[string]any{engine.FailureWorkflowOutputKey: started[0]}}},
		"failed without starting one, its output naming the id": {
			end: &schemas.WorkflowStatusChanged{Status: conductor.WorkflowFailed, NoFailureWorkflow: true, Output: map[string]any{engine.FailureWorkflowOutputKey: started[0]}}},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			end := *tc.end
			end.Time = 2
			w := fold(t, bad, &end)
			if _, err := w.Def(); err == nil {
				t.Fatal("its definition parses")
			}
			if tc.kept {
				w = w.Clone()
				w.FailureWorkflows = nil
			} else if !slices.Equal(w.FailureWorkflows, tc.told) {
				t.Errorf("failure workflows %v, want %v", w.FailureWorkflows, tc.told)
			}
			var want []engine.LookFor
			for _, id := range tc.told {
				want = append(want, engine.LookFor{WorkflowID: id, From: w.ID, Sealed: late})
			}
			if got := effectsOf[engine.LookFor](engine.Decision{Effects: engine.TellChildren(w, late)}); !reflect.DeepEqual(got, want) {
				t.Errorf("told %+v, want %+v", got, want)
			}
			if got := effectsOf[engine.LookFor](engine.Decision{Effects: engine.Effects(w, 10)}); !reflect.DeepEqual(got, want) {
				t.Errorf("recovery tells %+v, want %+v", got, want)
			}
		})
	}
}

// A workflow whose definition parses and names no failure workflow has
// started none, whatever its end's output names: outputParameters may
// name there the very id a start would have (here from its input), and
// the fold took it for a start, so that its late values were told to a
// workflow that does not exist (or one given that id), now and at every
// recovery. The output is read only for a definition that parses no more.
func TestFailureWorkflowOfADefinitionNamingNoneIsNotReadFromTheOutput(t *testing.T) {
	t.Parallel()
	id := engine.DeriveID("wf-1", "failure", "0")
	h := newHarness(t, `{"name":"w","version":1,"tasks":[{"name":"a","taskReferenceName":"a"}],
		"outputParameters":{"`+engine.FailureWorkflowOutputKey+`":"${workflow.input.f}"}}`, map[string]any{"f": id})
	dec := h.decide(engine.Terminate{Reason: "stop", By: "user:op", TriggerFailureWorkflow: true})
	if h.w.Status != conductor.WorkflowTerminated || h.w.Output[engine.FailureWorkflowOutputKey] != id || len(effectsOf[engine.StartWorkflow](dec)) != 0 {
		t.Fatalf("%s, output %v, started %v; want TERMINATED, its output naming %s, none started", h.w.Status, h.w.Output, effectsOf[engine.StartWorkflow](dec), id)
	}
	if len(h.w.FailureWorkflows) != 0 {
		t.Errorf("failure workflows %v, want none", h.w.FailureWorkflows)
	}
	late := []schemas.ResolvedRef{{Kind: masking.KeySecrets, Name: schemas.LateRefPrefix + "0", Sealed: []byte{1, 2, 3}}}
	if told := effectsOf[engine.LookFor](engine.Decision{Effects: engine.TellChildren(h.w, late)}); len(told) != 0 {
		t.Errorf("told %+v, want none", told)
	}
}
