package engine_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/internal/lifecyclegen"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// FuzzLifecycle drives random definitions through random sequences of the
// triggers an executor delivers (workers' takes and results, late and
// duplicate ones among them, timers on a virtual clock, a child's end,
// operators' pause, resume, terminate, retry, restart, rerun, skip and
// jump),
// folding each decision as the executor does, and checks Conductor's rules
// after every step: see lifecycleRun.check.
func FuzzLifecycle(f *testing.F) {
	for _, seed := range [][]byte{
		{},
		{0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
		[]byte("simple tasks, answered"),
		[]byte{0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
		bytes.Repeat([]byte{3, 1, 0, 2}, 16),
		bytes.Repeat([]byte{1, 9, 4, 7, 0, 8, 2}, 12),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) { runLifecycle(t, data, lifecyclegen.Grammar{}) })
}

// FuzzLifecycleExclusiveJoin is FuzzLifecycle with an EXCLUSIVE_JOIN
// after each SWITCH whose cases end in tasks it can wait for. It is a
// target of its own so that FuzzLifecycle's corpus keeps meaning the
// definitions it was found with.
func FuzzLifecycleExclusiveJoin(f *testing.F) {
	for _, seed := range [][]byte{
		{},
		{10, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0},
		bytes.Repeat([]byte{11, 1, 0, 2, 3}, 12),
		bytes.Repeat([]byte{10, 9, 4, 7, 0, 8, 2, 25}, 10),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) { runLifecycle(t, data, lifecyclegen.Grammar{ExclusiveJoins: true}) })
}

// FuzzLifecycleJoinAcross is FuzzLifecycleExclusiveJoin with, now and
// then, an EXCLUSIVE_JOIN at the end of a fork's first branch on the last
// task of another: one it waits for without any task of its own branch
// leading to it.
func FuzzLifecycleJoinAcross(f *testing.F) {
	for _, seed := range [][]byte{
		{0, 8, 0xf, 4, 0, 9, 8, 2, 3, 0xd, 8, 0x12, 2, 7, 0xf, 0xe, 0xa, 1, 6, 0, 0xc, 4, 0, 6, 0xe, 0xe, 0x10, 0x13, 9, 0xb, 0xd, 0xa, 0,
			0xc, 0x12, 0xd, 2, 7, 0x12, 0x10, 7, 0xd, 1, 0xc, 8, 0x12, 0xb, 0x11, 0x10, 0x10, 0x11, 0xd, 5, 2, 0xb, 0x13, 0x10, 0x13, 9, 0xa, 8,
			0xe, 0xf, 2, 4, 0x10, 0xb, 0xe, 0x10, 0xf},
		{0, 8, 0xe, 0x13, 2, 0xc, 0xa, 0xb, 0xe, 9, 3, 6, 0xd, 7, 8, 7, 3, 1, 6, 0x10, 8, 5, 5, 0x12, 0, 7, 4},
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		runLifecycle(t, data, lifecyclegen.Grammar{ExclusiveJoins: true, JoinsAcross: true})
	})
}

// runLifecycle is one run of a lifecycle fuzz target.
func runLifecycle(t *testing.T, data []byte, gr lifecyclegen.Grammar) {
	src := lifecyclegen.NewSrc(data)
	js := lifecyclegen.Def(src, gr)
	parsed := parseDef(t, js)
	if err := engine.ValidateWorkflowDef(parsed); err != nil {
		t.Fatalf("the grammar made an invalid definition: %v\n%s", err, js)
	}
	r := &lifecycleRun{t: t, driver: lifecyclegen.NewDriver(src), def: js}
	r.h = &harness{t: t, now: epoch, taskDefs: map[string]*conductor.TaskDef{}}
	r.step(engine.Start{WorkflowID: "wf-1", Def: parsed, CreatedBy: "app:tester",
		Request: conductor.StartWorkflowRequest{Input: map[string]any{"c": []string{"a", "b", "z"}[src.N(3)]}}})
	for i := 0; i < 40 && !src.Done(); i++ {
		r.next()
	}
}

// lifecycleRun is one fuzzed workflow: the harness holds its state (and
// checks each decision's fold and its agreement with a decision that
// looks at every task), records the encoded events for replay, and
// counts each reference's instances since the last reset.
type lifecycleRun struct {
	t      *testing.T
	driver *lifecyclegen.Driver
	def    string
	h      *harness
	// log is every event so far as the log holds it (encoded envelopes).
	log []schemas.Envelope
	// scheduled counts the instances of each reference name scheduled
	// since the workflow's last reset.
	scheduled map[string]int
	trail     []string
}

func (r *lifecycleRun) fatalf(format string, args ...any) {
	r.t.Helper()
	var trail bytes.Buffer
	for _, s := range r.trail {
		fmt.Fprintf(&trail, "\n  %s", s)
	}
	r.t.Fatalf("%s\ndefinition: %s\ntriggers:%s\ntasks: %v", fmt.Sprintf(format, args...), r.def, trail.String(), r.tasks())
}

func (r *lifecycleRun) tasks() []string {
	if r.h.w == nil {
		return nil
	}
	var out []string
	for _, t := range r.h.w.Tasks {
		s := t.Ref + ":" + t.Status
		if t.Retried {
			s += "(retried)"
		}
		out = append(out, s)
	}
	return append(out, "workflow:"+r.h.w.Status)
}

// next picks a trigger an executor could deliver now, and decides it.
func (r *lifecycleRun) next() {
	mv := r.driver.Next(r.h.w, r.h.now)
	if mv.Trigger == nil {
		return
	}
	r.h.now = mv.Now
	if mv.Ignored != "" {
		r.stepWant(mv.Trigger, mv.Ignored)
		return
	}
	r.step(mv.Trigger)
}

// stepWant decides a report that must change nothing and be answered as
// ignored.
func (r *lifecycleRun) stepWant(trig engine.Trigger, what string) {
	r.t.Helper()
	d, err := r.step(trig)
	if err != nil {
		r.fatalf("%s: %v", what, err)
	}
	if len(d.Events) > 0 {
		r.fatalf("%s changed the workflow: %s", what, describe(d))
	}
	if _, ok := trig.(engine.Result); ok {
		if rep, ok := d.Reply.(engine.ResultReply); !ok || !rep.Ignored {
			r.fatalf("%s answered %+v, not as ignored", what, d.Reply)
		}
	}
}

// step decides trig on the current state, checks the decision and the
// state it leaves, and goes on with what the decision left due at once
// (engine.Pending), as the executor does.
func (r *lifecycleRun) step(trig engine.Trigger) (engine.Decision, error) {
	r.t.Helper()
	r.trail = append(r.trail, fmt.Sprintf("%s %s at +%s", engine.TriggerName(trig), brief(trig), r.h.now.Sub(epoch)))
	before := r.h.w
	var again engine.Decision
	var againErr error
	if before != nil {
		// Decided twice on the same input: the same events, byte for byte.
		again, againErr = engine.Decide(r.h.input(trig))
	}
	d, err := r.h.try(trig)
	var fault *engine.DeciderFault
	if errors.As(err, &fault) {
		r.fatalf("%s: %v\n%s", engine.TriggerName(trig), err, fault.Stack)
	}
	if before != nil {
		if (err == nil) != (againErr == nil) || err != nil && err.Error() != againErr.Error() {
			r.fatalf("%s: decided twice: %v, then %v", engine.TriggerName(trig), againErr, err)
		}
		if a, b := encodeEvents(r.t, again.Events), encodeEvents(r.t, d.Events); !bytes.Equal(a, b) {
			r.fatalf("%s: decided twice, different events:%s\nthen:%s", engine.TriggerName(trig), describe(again), describe(d))
		}
	}
	r.checkRefusal(before, trig, d, err)
	if before != nil && before.Terminal() && len(d.Events) > 0 {
		switch trig.(type) {
		case engine.Retry, engine.Restart, engine.Rerun, engine.Terminate:
		default:
			r.fatalf("%s changed a %s workflow: %s", engine.TriggerName(trig), before.Status, describe(d))
		}
	}
	if err != nil {
		if len(d.Events) > 0 {
			r.fatalf("%s refused (%v) with events", engine.TriggerName(trig), err)
		}
		return d, err
	}
	if _, ok := trig.(engine.Jump); ok && r.scheduled != nil {
		clear(r.scheduled) // a jump runs tasks anew, as a rerun does
	}
	r.record(d.Events)
	r.check(before, d)
	if engine.Pending(r.h.w) {
		r.step(engine.Tick{})
	}
	return d, nil
}

func brief(trig engine.Trigger) string {
	switch t := trig.(type) {
	case engine.Result:
		return fmt.Sprintf("%s %s lease %d", t.Result.TaskID, t.Result.Status, t.Lease)
	case engine.Take:
		return fmt.Sprintf("%s system %v", t.TaskID, t.System)
	case engine.ChildFinished:
		return t.ChildID + " " + t.Status
	case engine.Rerun:
		return t.Request.ReRunFromTaskID
	case engine.SkipTask:
		return t.Ref
	}
	return ""
}

func encodeEvents(t testing.TB, evs []schemas.Event) []byte {
	var out []byte
	for _, ev := range evs {
		b, err := schemas.MarshalSorted(ev)
		if err != nil {
			t.Fatalf("encode %s: %v", ev.EventType(), err)
		}
		out = append(out, ev.EventType()...)
		out = append(out, b...)
	}
	return out
}

// checkRefusal holds the operators' commands to Conductor's state
// machine (conductor-api.md §6.3, §6.5): refused, with fault.ErrConflict,
// exactly in the statuses it refuses them.
func (r *lifecycleRun) checkRefusal(before *engine.Workflow, trig engine.Trigger, d engine.Decision, err error) {
	r.t.Helper()
	if before == nil {
		return
	}
	name := engine.TriggerName(trig)
	refused := func(want bool) {
		r.t.Helper()
		switch {
		case want && !errors.Is(err, fault.ErrConflict):
			r.fatalf("%s of a %s workflow: %v, want a conflict", name, before.Status, err)
		case !want && err != nil:
			r.fatalf("%s of a %s workflow refused: %v", name, before.Status, err)
		}
	}
	switch trig.(type) {
	case engine.Pause:
		refused(before.Terminal())
	case engine.Resume:
		refused(before.Status != conductor.WorkflowPaused)
	case engine.Terminate:
		refused(before.Status == conductor.WorkflowCompleted)
		if before.Status == conductor.WorkflowTerminated && len(d.Events) > 0 {
			r.fatalf("terminate of a TERMINATED workflow changed it: %s", describe(d))
		}
	case engine.Retry, engine.Restart, engine.Rerun:
		if !before.Terminal() {
			refused(true)
		}
	}
}

// record appends events to the log as the event log stores them.
func (r *lifecycleRun) record(evs []schemas.Event) {
	r.t.Helper()
	for _, ev := range evs {
		env, err := schemas.Default.Encode(ev)
		if err != nil {
			r.fatalf("encode %s: %v", ev.EventType(), err)
		}
		r.log = append(r.log, env)
		if r.scheduled == nil {
			r.scheduled = map[string]int{}
		}
		switch e := ev.(type) {
		case *schemas.WorkflowReset:
			clear(r.scheduled)
		case *schemas.TaskScheduled:
			r.scheduled[e.Ref]++
		}
	}
}

// check holds the state a decision left to the invariants.
func (r *lifecycleRun) check(before *engine.Workflow, d engine.Decision) {
	r.t.Helper()
	w := r.h.w
	// Replay: the log folded from nothing is the state decided step by step.
	var replayed *engine.Workflow
	for _, env := range r.log {
		ev, err := schemas.Default.Decode(env)
		if err != nil {
			r.fatalf("decode %s: %v", env.Type, err)
		}
		if replayed, err = engine.Apply(replayed, ev); err != nil {
			r.fatalf("replay %s: %v", env.Type, err)
		}
	}
	if replayed != nil {
		a, _ := json.Marshal(replayed.Conductor(true))
		b, _ := json.Marshal(w.Conductor(true))
		if !bytes.Equal(a, b) {
			r.fatalf("replay differs from the state decided:\nreplay: %s\nstate:  %s", a, b)
		}
	}
	// One running instance of a reference name (per iteration: the name
	// carries it) at a time.
	running := map[string]string{}
	for _, t := range w.Tasks {
		if !t.Active() {
			continue
		}
		if other, ok := running[t.Ref]; ok {
			r.fatalf("%s runs twice: %s and %s", t.Ref, other, t.ID)
		}
		running[t.Ref] = t.ID
		if w.Terminal() {
			r.fatalf("workflow %s with task %s (%s) %s", w.Status, t.Ref, t.ID, t.Status)
		}
	}
	if w.Status == conductor.WorkflowPaused {
		for _, ev := range d.Events {
			if s, ok := ev.(*schemas.TaskScheduled); ok {
				r.fatalf("paused workflow scheduled %s: %s", s.Ref, describe(d))
			}
		}
	}
	// An EXCLUSIVE_JOIN completes empty only while none of the tasks it
	// joins runs: one that runs would end with an output it missed.
	for _, t := range w.Tasks {
		if t.Type != conductor.TaskTypeExclusiveJoin || t.Status != conductor.TaskCompleted || len(t.Output) > 0 {
			continue
		}
		if before == nil {
			break
		}
		if was := before.TaskByID(t.ID); was == nil || was.Status != conductor.TaskInProgress {
			continue
		}
		for _, refs := range []any{t.Input["joinOn"], t.Input["defaultExclusiveJoinTask"]} {
			list, _ := refs.([]any)
			for _, ref := range list {
				name := fmt.Sprint(ref)
				if t.Iteration > 0 {
					name += fmt.Sprintf("__%d", t.Iteration)
				}
				if j := w.LatestByRef(name); j != nil && j.Active() {
					r.fatalf("%s completed empty while %s, which it joins, is %s: %s", t.Ref, name, j.Status, describe(d))
				}
			}
		}
	}
	// retryCount bounds the instances of a task in a run of the workflow.
	for ref, n := range r.scheduled {
		t := w.LatestByRef(ref)
		if t == nil {
			continue
		}
		if n > t.Policy.RetryCount+1 {
			r.fatalf("%s scheduled %d times since the last reset, retryCount %d", ref, n, t.Policy.RetryCount)
		}
	}
	r.live()
}

// live drives a copy of the workflow to its end: every task answered with
// success, every timer fired when due, a pause resumed. A workflow that
// does not end within a bound of decisions is stuck.
func (r *lifecycleRun) live() {
	r.t.Helper()
	w, now := r.h.w, r.h.now
	var trail []string
	decide := func(trig engine.Trigger) {
		trail = append(trail, fmt.Sprintf("%s %s at +%s", engine.TriggerName(trig), brief(trig), now.Sub(epoch)))
		d, err := engine.Decide(engine.Input{State: w, Trigger: trig, Now: now})
		if err != nil {
			r.fatalf("liveness: %s: %v\nafter %v", engine.TriggerName(trig), err, trail)
		}
		w = d.State
		if engine.Pending(w) {
			d, err := engine.Decide(engine.Input{State: w, Trigger: engine.Tick{}, Now: now})
			if err != nil {
				r.fatalf("liveness: pending tick: %v", err)
			}
			w = d.State
		}
	}
	for range 300 {
		if w.Terminal() {
			return
		}
		if w.Status == conductor.WorkflowPaused {
			decide(engine.Resume{})
			continue
		}
		acted := false
		for _, t := range w.Tasks {
			if !t.Active() {
				continue
			}
			ok := true
			switch {
			case t.Status == conductor.TaskScheduled && t.AvailableAt > now.UnixMilli():
				ok = false // its timer
			case t.Type == conductor.TaskTypeSubWorkflow && t.SubWorkflowID != "":
				decide(engine.ChildFinished{ChildID: t.SubWorkflowID, Name: "kid", Version: 1, Status: conductor.WorkflowCompleted})
			case t.Type == conductor.TaskTypeDoWhile && t.Status == conductor.TaskScheduled:
				decide(engine.Take{TaskID: t.ID, WorkerID: "flowvault", System: true})
			case t.Type == conductor.TaskTypeDoWhile:
				ok = t.Status == conductor.TaskInProgress && loopDone(t)
				if ok {
					decide(engine.Result{Result: conductor.TaskResult{TaskID: t.ID, WorkflowInstanceID: w.ID, Status: conductor.TaskCompleted}})
				}
			case t.Type == conductor.TaskTypeHTTP && t.Status == conductor.TaskScheduled:
				decide(engine.Take{TaskID: t.ID, WorkerID: "flowvault", System: true})
			case t.Type == conductor.TaskTypeHTTP:
				decide(engine.Result{Result: conductor.TaskResult{TaskID: t.ID, WorkflowInstanceID: w.ID, Status: conductor.TaskCompleted, WorkerID: t.WorkerID},
					Lease: t.PollCount})
			case t.Type == conductor.TaskTypeWait:
				if t.AvailableAt > now.UnixMilli() && t.AvailableAt != engine.Never {
					ok = false // its timer
					break
				}
				decide(engine.Result{Result: conductor.TaskResult{TaskID: t.ID, WorkflowInstanceID: w.ID, Status: conductor.TaskCompleted}, By: "app:operator"})
			case t.IsWorkerTask() && t.Status == conductor.TaskScheduled:
				decide(engine.Take{TaskID: t.ID, WorkerID: "w1", TaskType: t.Name, Domain: t.Domain})
			case t.IsWorkerTask():
				decide(engine.Result{Result: conductor.TaskResult{TaskID: t.ID, WorkflowInstanceID: w.ID, Status: conductor.TaskCompleted, WorkerID: t.WorkerID},
					TaskType: t.Name, Domain: t.Domain, Lease: t.PollCount})
			default:
				ok = false
			}
			if ok {
				acted = true
				break
			}
		}
		if acted {
			continue
		}
		ds := engine.Deadlines(w)
		if len(ds) == 0 {
			r.fatalf("liveness: workflow %s stuck: no task to answer, no timer; tasks %v\nafter %v", w.Status, taskStates(w), trail)
		}
		if at := time.UnixMilli(ds[0]).UTC(); at.After(now) {
			now = at
		}
		decide(engine.Tick{})
	}
	r.fatalf("liveness: workflow still %s after 300 decisions; tasks %v\nafter %v", w.Status, taskStates(w), trail)
}

// loopDone reports whether a running DO_WHILE awaits its condition.
func loopDone(t *engine.Task) bool {
	n := fmt.Sprint(t.Output["iteration"])
	_, ok := t.Output[n]
	return ok
}

func taskStates(w *engine.Workflow) []string {
	var out []string
	for _, t := range w.Tasks {
		out = append(out, t.Ref+":"+t.Status)
	}
	return out
}
