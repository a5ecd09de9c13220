package engine_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
)

var epoch = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)

// The executor registers the system task types it implements; HTTP is one.
func init() { engine.RegisterSystemWorkerType(conductor.TaskTypeHTTP) }

// harness drives one workflow through the decider, folding every decision
// into its state like the executor does.
type harness struct {
	t        testing.TB
	w        *engine.Workflow
	now      time.Time
	taskDefs map[string]*conductor.TaskDef
	// active holds the "type/domain" queues whose workers polled lately.
	active map[string]bool
	// cached is the tasks' output cache: what CacheOutput effects stored.
	cached map[string]engine.CacheOutput
	// checkOutput is Input.CheckOutput (nil: not checked).
	checkOutput func(def *conductor.WorkflowDef, output map[string]any) error
	last        engine.Decision
	history     [][]schemas.Event
}

func parseDef(t testing.TB, js string) *conductor.WorkflowDef {
	t.Helper()
	var def conductor.WorkflowDef
	if err := conductor.Unmarshal([]byte(js), &def); err != nil {
		t.Fatalf("definition: %v", err)
	}
	return &def
}

// newHarnessStart starts a harness's workflow with start as it is.
func newHarnessStart(t testing.TB, start engine.Start) *harness {
	t.Helper()
	h := &harness{t: t, now: epoch, taskDefs: map[string]*conductor.TaskDef{}}
	h.decide(start)
	return h
}

func newHarness(t testing.TB, defJSON string, input map[string]any, taskDefs ...string) *harness {
	t.Helper()
	h := &harness{t: t, now: epoch, taskDefs: map[string]*conductor.TaskDef{}}
	for _, js := range taskDefs {
		var td conductor.TaskDef
		if err := conductor.Unmarshal([]byte(js), &td); err != nil {
			t.Fatal(err)
		}
		h.taskDefs[td.Name] = &td
	}
	h.decide(engine.Start{WorkflowID: "wf-1", Def: parseDef(t, defJSON), CreatedBy: "app:tester",
		Request: conductor.StartWorkflowRequest{Input: input, CorrelationID: "corr-1"}})
	return h
}

func (h *harness) input(trig engine.Trigger) engine.Input {
	return engine.Input{State: h.w, Trigger: trig, Now: h.now, TaskDef: func(n string) *conductor.TaskDef { return h.taskDefs[n] },
		ActiveDomain: func(taskType, domain string) bool { return h.active[taskType+"/"+domain] },
		CachedOutput: func(key string) (map[string]any, bool) {
			c, ok := h.cached[key]
			return c.Output, ok && c.ExpiresAt > h.now.UnixMilli()
		},
		CheckOutput: h.checkOutput}
}

// decide runs a trigger that must succeed.
func (h *harness) decide(trig engine.Trigger) engine.Decision {
	h.t.Helper()
	d, err := h.try(trig)
	if err != nil {
		h.t.Fatalf("%T: %v", trig, err)
	}
	return d
}

// try runs a trigger and folds its events.
func (h *harness) try(trig engine.Trigger) (engine.Decision, error) {
	h.t.Helper()
	before := h.w
	d, err := engine.Decide(h.input(trig))
	if err != nil {
		return d, err
	}
	if before != nil {
		// A decision starts from what the one before it knew of the
		// tasks: it must decide what one that looks at every task, and
		// indexes them anew, does.
		in := h.input(trig)
		in.State = engine.Forgetful(before)
		full, err := engine.Decide(in)
		if err != nil {
			h.t.Fatalf("%T: decided with what the state kept of its tasks, failed without it: %v", trig, err)
		}
		if !reflect.DeepEqual(full.Events, d.Events) || !reflect.DeepEqual(full.Effects, d.Effects) {
			h.t.Fatalf("%T: what the state kept of its tasks changed the decision:\nwith it:    %s\nwithout it: %s", trig, describe(d), describe(full))
		}
		if got, want := engine.Pending(d.State), engine.Pending(engine.Forgetful(d.State)); got != want {
			h.t.Fatalf("%T: Pending %v with what the state kept of its tasks, %v without", trig, got, want)
		}
	}
	if before != nil && len(d.Events) > 0 && before == d.State {
		h.t.Fatal("Decide returned its input state after emitting events")
	}
	// Folding the events from the input state must give the decision's state.
	var w *engine.Workflow
	if h.w != nil {
		w = h.w.Clone()
	}
	for _, ev := range d.Events {
		if w, err = engine.Apply(w, ev); err != nil {
			h.t.Fatalf("apply %s: %v", ev.EventType(), err)
		}
	}
	if len(d.Events) > 0 {
		got, _ := json.Marshal(w.Conductor(true))
		want, _ := json.Marshal(d.State.Conductor(true))
		if string(got) != string(want) {
			h.t.Fatalf("fold of events differs from the decision's state:\nfold:     %s\ndecision: %s", got, want)
		}
		// The decision's state, as the executor keeps it: it carries the
		// decision's sweep, which a fold does not advance, and its index.
		h.w = d.State
		h.history = append(h.history, d.Events)
		if _, err := engine.JoinCountsAgree(h.w); err != nil {
			h.t.Fatalf("%T: %v", trig, err)
		}
		if err := engine.SweepAgrees(h.w); err != nil {
			h.t.Fatalf("%T: %v", trig, err)
		}
	}
	for _, eff := range d.Effects {
		// A task the decision ended is handed to nobody.
		var handed string
		switch e := eff.(type) {
		case engine.Dispatch:
			handed = e.TaskID
		case engine.RunSystem:
			handed = e.TaskID
		}
		if t := d.State.TaskByID(handed); handed != "" && t != nil && conductor.TaskTerminal(t.Status) {
			h.t.Fatalf("%T: hands out task %s (%s), %s: %s", trig, t.Ref, handed, t.Status, describe(d))
		}
		if c, ok := eff.(engine.CacheOutput); ok {
			if h.cached == nil {
				h.cached = map[string]engine.CacheOutput{}
			}
			h.cached[c.Key] = c
		}
	}
	h.last = d
	return d, nil
}

// describe renders a decision's events and effects for a failure message.
func describe(d engine.Decision) string {
	var b strings.Builder
	for _, ev := range d.Events {
		js, _ := json.Marshal(ev)
		fmt.Fprintf(&b, "\n  %s %s", ev.EventType(), js)
	}
	for _, eff := range d.Effects {
		fmt.Fprintf(&b, "\n  effect %T %+v", eff, eff)
	}
	return b.String()
}

func (h *harness) advance(d time.Duration) { h.now = h.now.Add(d) }

// task returns the newest instance of ref.
// storedAs replaces task ref in the state with a copy that edit changes:
// the state as a replay of stored (protected) events would give it.
func (h *harness) storedAs(ref string, edit func(*engine.Task)) {
	h.t.Helper()
	for i, t := range h.w.Tasks {
		if t.Ref == ref {
			c := *t
			edit(&c)
			h.w.Tasks[i] = &c
			return
		}
	}
	h.t.Fatalf("no task %s; have %v", ref, h.refs())
}

func (h *harness) task(ref string) *engine.Task {
	h.t.Helper()
	t := h.w.LatestByRef(ref)
	if t == nil {
		h.t.Fatalf("no task %s; have %v", ref, h.refs())
	}
	return t
}

func (h *harness) refs() []string {
	var out []string
	for _, t := range h.w.Tasks {
		out = append(out, t.Ref+":"+t.Status)
	}
	return out
}

func (h *harness) report(ref, status string, output map[string]any, reason string) engine.Decision {
	h.t.Helper()
	t := h.task(ref)
	return h.decide(engine.Result{Result: conductor.TaskResult{TaskID: t.ID, WorkflowInstanceID: h.w.ID,
		Status: status, OutputData: output, ReasonForIncompletion: reason}})
}

func (h *harness) complete(ref string, output map[string]any) engine.Decision {
	h.t.Helper()
	return h.report(ref, conductor.TaskCompleted, output, "")
}

func (h *harness) take(ref string) *engine.Task {
	h.t.Helper()
	d := h.decide(engine.Take{TaskID: h.task(ref).ID, WorkerID: "w1"})
	return d.Reply.(*engine.Task)
}

func (h *harness) wantStatus(want string) {
	h.t.Helper()
	if h.w.Status != want {
		h.t.Fatalf("workflow status = %s (%s), want %s; tasks %v", h.w.Status, h.w.Reason, want, h.refs())
	}
}

func (h *harness) wantTask(ref, status string) *engine.Task {
	h.t.Helper()
	t := h.task(ref)
	if t.Status != status {
		h.t.Fatalf("task %s status = %s (%s), want %s; tasks %v", ref, t.Status, t.Reason, status, h.refs())
	}
	return t
}

func (h *harness) wantRefs(want ...string) {
	h.t.Helper()
	var got []string
	for _, t := range h.w.Tasks {
		got = append(got, t.Ref)
	}
	if !reflect.DeepEqual(got, want) {
		h.t.Fatalf("task refs = %v, want %v", got, want)
	}
}

func effectsOf[T engine.Effect](d engine.Decision) []T {
	var out []T
	for _, e := range d.Effects {
		if x, ok := e.(T); ok {
			out = append(out, x)
		}
	}
	return out
}

func wantErr(t testing.TB, err, kind error) {
	t.Helper()
	if !errors.Is(err, kind) {
		t.Fatalf("err = %v, want %v", err, kind)
	}
}

func errorsIs(err, target error) bool { return errors.Is(err, target) }
