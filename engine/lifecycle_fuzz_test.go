package engine_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/fault"
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
	f.Fuzz(func(t *testing.T, data []byte) { runLifecycle(t, data, grammar{}) })
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
	f.Fuzz(func(t *testing.T, data []byte) { runLifecycle(t, data, grammar{exclusiveJoins: true}) })
}

// grammar turns on the definition grammar's optional parts.
type grammar struct {
	exclusiveJoins bool
}

// runLifecycle is one run of a lifecycle fuzz target.
func runLifecycle(t *testing.T, data []byte, gr grammar) {
	src := &fuzzSrc{b: data}
	_, js := genDef(src, gr)
	parsed := parseDef(t, js)
	if err := engine.ValidateWorkflowDef(parsed); err != nil {
		t.Fatalf("the grammar made an invalid definition: %v\n%s", err, js)
	}
	r := &lifecycleRun{t: t, src: src, def: js}
	r.h = &harness{t: t, now: epoch, taskDefs: map[string]*conductor.TaskDef{}}
	r.step(engine.Start{WorkflowID: "wf-1", Def: parsed, CreatedBy: "app:tester",
		Request: conductor.StartWorkflowRequest{Input: map[string]any{"c": []string{"a", "b", "z"}[src.n(3)]}}})
	for i := 0; i < 40 && !src.done(); i++ {
		r.next()
	}
}

// fuzzJumps lets the fuzzer jump (Orkes's jump API): the switch to turn
// them off while a finding of theirs is open.
const fuzzJumps = true

// fuzzSrc hands out the fuzzer's bytes; past their end, zeros.
type fuzzSrc struct {
	b []byte
	i int
}

func (s *fuzzSrc) byte() byte {
	if s.i >= len(s.b) {
		return 0
	}
	s.i++
	return s.b[s.i-1]
}

// n returns a number in [0, k).
func (s *fuzzSrc) n(k int) int { return int(s.byte()) % k }

func (s *fuzzSrc) done() bool { return s.i >= len(s.b) }

// defGen builds a definition from a small grammar: SIMPLE tasks with
// retries, optional and timeouts, FORK_JOIN + JOIN, SWITCH, DO_WHILE,
// WAIT, SUB_WORKFLOW, TERMINATE and SET_VARIABLE.
type defGen struct {
	src  *fuzzSrc
	gr   grammar
	refs int
}

func genDef(src *fuzzSrc, gr grammar) (*defGen, string) {
	g := &defGen{src: src, gr: gr}
	def := map[string]any{"name": "fz", "version": 1, "schemaVersion": 2, "tasks": g.list(0, false, 1+src.n(4))}
	if src.n(4) == 0 {
		def["timeoutSeconds"] = 30 + src.n(600)
		def["timeoutPolicy"] = []string{"TIME_OUT_WF", "ALERT_ONLY"}[src.n(2)]
	}
	if src.n(4) == 0 {
		def["outputParameters"] = map[string]any{"v": "${workflow.variables.v}"}
	}
	js, err := json.Marshal(def)
	if err != nil {
		panic(err)
	}
	return g, string(js)
}

func (g *defGen) ref(kind string) string {
	g.refs++
	return fmt.Sprintf("%s%d", kind, g.refs)
}

func (g *defGen) list(depth int, inLoop bool, n int) []any {
	out := []any{}
	for range n {
		out = append(out, g.task(depth, inLoop)...)
	}
	return out
}

// task returns one task configuration, or a fork and its JOIN.
func (g *defGen) task(depth int, inLoop bool) []any {
	kind := g.src.n(18)
	if kind >= 16 {
		ref := g.ref("http")
		return []any{map[string]any{"name": ref, "taskReferenceName": ref, "type": "HTTP", "optional": g.src.n(4) == 0,
			"inputParameters": map[string]any{"http_request": map[string]any{"uri": "http://example.invalid/x", "method": "GET"}}}}
	}
	if depth >= 2 && kind >= 8 {
		kind %= 8 // no deeper nesting
	}
	switch kind {
	case 8, 9: // FORK_JOIN + JOIN
		fork, join := g.ref("fork"), g.ref("join")
		var branches []any
		var last []string
		for range 2 + g.src.n(2) {
			b := g.list(depth+1, inLoop, 1+g.src.n(2))
			branches = append(branches, b)
			last = append(last, b[len(b)-1].(map[string]any)["taskReferenceName"].(string))
		}
		return []any{
			map[string]any{"name": fork, "taskReferenceName": fork, "type": "FORK_JOIN", "forkTasks": branches},
			map[string]any{"name": join, "taskReferenceName": join, "type": "JOIN", "joinOn": last},
		}
	case 10, 11: // SWITCH
		ref := g.ref("switch")
		param := []string{"${workflow.input.c}", "${workflow.variables.v}"}[g.src.n(2)]
		cases := map[string]any{"a": g.list(depth+1, inLoop, 1+g.src.n(2))}
		if g.src.n(2) == 0 {
			cases["b"] = g.list(depth+1, inLoop, g.src.n(2))
		}
		sw := map[string]any{"name": ref, "taskReferenceName": ref, "type": "SWITCH", "evaluatorType": "value-param",
			"expression": "c", "inputParameters": map[string]any{"c": param}, "decisionCases": cases,
			"defaultCase": g.list(depth+1, inLoop, g.src.n(2))}
		if !g.gr.exclusiveJoins {
			return []any{sw}
		}
		return append([]any{sw}, g.exclusiveJoin(cases, sw["defaultCase"].([]any))...)
	case 12: // DO_WHILE
		if inLoop {
			return g.simple()
		}
		ref := g.ref("loop")
		t := map[string]any{"name": ref, "taskReferenceName": ref, "type": "DO_WHILE", "loopOver": g.list(depth+1, true, 1+g.src.n(2))}
		if g.src.n(3) == 0 {
			t["inputParameters"] = map[string]any{"keepLastN": 1 + g.src.n(2)}
		}
		if g.src.n(2) == 0 {
			t["items"] = []any{1, 2, 3}[:1+g.src.n(3)]
		} else {
			t["loopCondition"] = fmt.Sprintf("$.%s['iteration'] < 3", ref)
		}
		return []any{t}
	case 13: // WAIT
		ref := g.ref("wait")
		in := map[string]any{}
		if g.src.n(2) == 0 {
			in["duration"] = fmt.Sprintf("%ds", 1+g.src.n(120))
		}
		return []any{map[string]any{"name": ref, "taskReferenceName": ref, "type": "WAIT", "inputParameters": in}}
	case 14: // SUB_WORKFLOW
		ref := g.ref("sub")
		t := map[string]any{"name": ref, "taskReferenceName": ref, "type": "SUB_WORKFLOW",
			"subWorkflowParam": map[string]any{"name": "kid", "version": 1}, "optional": g.src.n(4) == 0}
		if n := g.src.n(3); n > 0 {
			t["retryCount"] = n - 1
		}
		return []any{t}
	case 15: // TERMINATE or SET_VARIABLE
		if g.src.n(3) == 0 {
			ref := g.ref("end")
			return []any{map[string]any{"name": ref, "taskReferenceName": ref, "type": "TERMINATE", "inputParameters": map[string]any{
				"terminationStatus": []string{"COMPLETED", "FAILED", "TERMINATED"}[g.src.n(3)], "terminationReason": "ended by " + ref}}}
		}
		ref := g.ref("set")
		return []any{map[string]any{"name": ref, "taskReferenceName": ref, "type": "SET_VARIABLE",
			"inputParameters": map[string]any{"v": []string{"a", "b"}[g.src.n(2)]}}}
	}
	return g.simple()
}

// exclusiveJoin returns an EXCLUSIVE_JOIN on the last task of each of a
// SWITCH's cases (its default case's as defaultExclusiveJoinTask), or
// nothing when no case ends in a task.
func (g *defGen) exclusiveJoin(cases map[string]any, dflt []any) []any {
	last := func(list []any) []string {
		if len(list) == 0 {
			return nil
		}
		return []string{list[len(list)-1].(map[string]any)["taskReferenceName"].(string)}
	}
	var on []string
	for _, k := range slices.Sorted(maps.Keys(cases)) {
		on = append(on, last(cases[k].([]any))...)
	}
	dfltOn := last(dflt)
	if len(on)+len(dfltOn) == 0 {
		return nil
	}
	ref := g.ref("xjoin")
	t := map[string]any{"name": ref, "taskReferenceName": ref, "type": "EXCLUSIVE_JOIN", "joinOn": on}
	if len(dfltOn) > 0 {
		t["defaultExclusiveJoinTask"] = dfltOn
	}
	return []any{t}
}

func (g *defGen) simple() []any {
	ref := g.ref("s")
	t := map[string]any{"name": ref, "taskReferenceName": ref, "type": "SIMPLE", "optional": g.src.n(5) == 0, "permissive": g.src.n(6) == 0}
	if g.src.n(4) == 0 {
		t["startDelay"] = 1 + g.src.n(5)
	}
	td := map[string]any{"name": ref, "retryCount": g.src.n(3),
		"retryLogic": []string{"FIXED", "EXPONENTIAL_BACKOFF", "LINEAR_BACKOFF"}[g.src.n(3)], "retryDelaySeconds": g.src.n(3)}
	if g.src.n(3) == 0 {
		td["timeoutSeconds"] = 10 + g.src.n(60)
		td["timeoutPolicy"] = []string{"RETRY", "TIME_OUT_WF", "ALERT_ONLY"}[g.src.n(3)]
		if g.src.n(2) == 0 {
			td["responseTimeoutSeconds"] = 1 + g.src.n(9)
		}
	}
	if g.src.n(4) == 0 {
		td["pollTimeoutSeconds"] = 1 + g.src.n(60)
	}
	if g.src.n(6) == 0 {
		td["totalTimeoutSeconds"] = 20 + g.src.n(100)
	}
	t["taskDefinition"] = td
	if g.src.n(4) == 0 {
		t["retryCount"] = g.src.n(3) // the workflow task's override
	}
	return []any{t}
}

// lifecycleRun is one fuzzed workflow: the harness holds its state (and
// checks each decision's fold and its agreement with a decision that
// looks at every task), records the encoded events for replay, and
// counts each reference's instances since the last reset.
type lifecycleRun struct {
	t   *testing.T
	src *fuzzSrc
	def string
	h   *harness
	// log is every event so far as the log holds it (encoded envelopes).
	log []schemas.Envelope
	// scheduled counts the instances of each reference name scheduled
	// since the workflow's last reset.
	scheduled map[string]int
	trail     []string
	// lastResult is the last result decided.
	lastResult *engine.Result
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
	w, src := r.h.w, r.src
	switch op := src.n(27); {
	case op == 25:
		if def, err := w.Def(); err == nil && len(def.Tasks) > 0 && fuzzJumps {
			r.step(engine.Jump{Ref: def.Tasks[src.n(len(def.Tasks))].TaskReferenceName})
		}
	case op == 26:
		if t := r.pick(func(t *engine.Task) bool {
			return t.Type == conductor.TaskTypeHTTP && t.Status == conductor.TaskInProgress
		}); t != nil {
			r.step(engine.Reclaim{TaskID: t.ID, Holder: t.WorkerID})
		}
	case op < 7:
		r.answer()
	case op == 7: // a late or duplicate report, or one about an earlier take
		r.late()
	case op == 8 || op == 9: // time passes, a timer fires (early, on time or late)
		switch src.n(4) {
		case 0:
		case 1:
			r.h.advance(time.Duration(src.n(10)) * time.Second)
		case 2:
			r.h.advance(time.Duration(src.n(200)) * time.Second)
		case 3:
			if ds := engine.Deadlines(w); len(ds) > 0 {
				at := time.UnixMilli(ds[src.n(len(ds))] + int64(src.n(3)) - 1).UTC()
				if at.After(r.h.now) {
					r.h.now = at
				}
			}
		}
		r.step(engine.Tick{})
	case op == 10:
		r.step(engine.Pause{})
	case op == 11:
		r.step(engine.Resume{})
	case op == 12:
		r.step(engine.Terminate{Reason: "operator"})
	case op == 13:
		r.step(engine.Retry{})
	case op == 14:
		r.step(engine.Restart{})
	case op == 15:
		req := conductor.RerunWorkflowRequest{}
		if len(w.Tasks) > 0 && src.n(3) > 0 {
			req.ReRunFromTaskID = w.Tasks[src.n(len(w.Tasks))].ID
		}
		r.step(engine.Rerun{Request: req})
	case op == 16:
		refs := definitionRefs(w)
		if len(refs) > 0 {
			r.step(engine.SkipTask{Ref: refs[src.n(len(refs))], Output: map[string]any{"skipped": true}})
		}
	case op == 18 && r.lastResult != nil: // the last result again, as a worker that missed its answer sends it
		if t := w.TaskByID(r.lastResult.Result.TaskID); t != nil && !t.Active() {
			r.stepWant(*r.lastResult, "a result sent again")
		} else {
			r.step(*r.lastResult)
		}
	case op == 19: // recovery's pass changes nothing
		r.stepWant(engine.Reconcile{}, "a reconcile")
	case op == 20:
		r.step(engine.ResetCallbacks{})
	case op == 21: // a worker's take that never reached it goes back (the executor's hand-back names the take)
		if t := r.pick(func(t *engine.Task) bool {
			return t.Status == conductor.TaskInProgress && t.IsWorkerTask() && t.PollCount > 0
		}); t != nil {
			r.step(engine.Result{Result: conductor.TaskResult{TaskID: t.ID, WorkflowInstanceID: w.ID, Status: conductor.TaskInProgress},
				HandBack: true, Lease: t.PollCount})
		}
	case op == 22:
		r.step(engine.SetVariables{Variables: map[string]any{"v": []string{"a", "b"}[src.n(2)]}, By: "app:operator"})
	case op == 23: // the engine that ran a loop's condition died
		if t := r.pick(func(t *engine.Task) bool { return t.Type == conductor.TaskTypeDoWhile }); t != nil {
			r.step(engine.Reclaim{TaskID: t.ID, Holder: t.WorkerID})
		}
	case op == 17: // a take of any task: one not waiting for a worker is refused
		if len(w.Tasks) > 0 {
			t := w.Tasks[src.n(len(w.Tasks))]
			r.step(engine.Take{TaskID: t.ID, WorkerID: "w9", System: src.n(2) == 0})
		}
	default:
		r.answer()
	}
}

// pick returns one of the workflow's tasks that match, or nil.
func (r *lifecycleRun) pick(match func(*engine.Task) bool) *engine.Task {
	var ts []*engine.Task
	for _, t := range r.h.w.Tasks {
		if match(t) {
			ts = append(ts, t)
		}
	}
	if len(ts) == 0 {
		return nil
	}
	return ts[r.src.n(len(ts))]
}

// definitionRefs are the reference names of w's definition.
func definitionRefs(w *engine.Workflow) []string {
	def, err := w.Def()
	if err != nil {
		return nil
	}
	var out []string
	var walk func([]*conductor.WorkflowTask)
	walk = func(ts []*conductor.WorkflowTask) {
		for _, t := range ts {
			out = append(out, t.TaskReferenceName)
			for _, b := range t.ForkTasks {
				walk(b)
			}
			for _, k := range slices.Sorted(maps.Keys(t.DecisionCases)) {
				walk(t.DecisionCases[k])
			}
			walk(t.DefaultCase)
			walk(t.LoopOver)
		}
	}
	walk(def.Tasks)
	return out
}

// answer reports on one task that waits for someone: a worker's take or
// result, a loop condition's verdict, a WAIT's completion, a child's end.
func (r *lifecycleRun) answer() {
	w, src := r.h.w, r.src
	var open []*engine.Task
	for _, t := range w.Tasks {
		if t.Active() {
			open = append(open, t)
		}
	}
	if len(open) == 0 {
		r.step(engine.Tick{})
		return
	}
	t := open[src.n(len(open))]
	switch {
	case t.Type == conductor.TaskTypeSubWorkflow && t.SubWorkflowID != "":
		status := []string{conductor.WorkflowCompleted, conductor.WorkflowCompleted, conductor.WorkflowFailed,
			conductor.WorkflowTerminated, conductor.WorkflowTimedOut}[src.n(5)]
		r.step(engine.ChildFinished{ChildID: t.SubWorkflowID, Name: "kid", Version: 1, Status: status,
			Output: map[string]any{"kid": src.n(4)}})
	case t.Type == conductor.TaskTypeDoWhile && t.Status == conductor.TaskScheduled:
		r.step(engine.Take{TaskID: t.ID, WorkerID: "flowvault", System: true})
	case t.Type == conductor.TaskTypeDoWhile:
		status := []string{conductor.TaskInProgress, conductor.TaskInProgress, conductor.TaskCompleted, conductor.TaskFailed}[src.n(4)]
		r.step(engine.Result{Result: conductor.TaskResult{TaskID: t.ID, WorkflowInstanceID: w.ID, Status: status, WorkerID: "flowvault"}})
	case t.Type == conductor.TaskTypeHTTP && t.Status == conductor.TaskScheduled:
		r.step(engine.Take{TaskID: t.ID, WorkerID: "flowvault", System: true})
	case t.Type == conductor.TaskTypeHTTP:
		status := []string{conductor.TaskCompleted, conductor.TaskFailed, conductor.TaskInProgress}[src.n(3)]
		r.step(engine.Result{Result: conductor.TaskResult{TaskID: t.ID, WorkflowInstanceID: w.ID, Status: status, WorkerID: t.WorkerID,
			CallbackAfterSeconds: int64(src.n(3)), OutputData: r.garbage()}, Lease: t.PollCount})
	case t.Type == conductor.TaskTypeWait:
		r.step(engine.Result{Result: conductor.TaskResult{TaskID: t.ID, WorkflowInstanceID: w.ID, Status: conductor.TaskCompleted,
			OutputData: map[string]any{"signal": src.n(3)}}, By: "app:operator"})
	case t.IsWorkerTask() && t.Status == conductor.TaskScheduled && src.n(8) > 0:
		r.step(engine.Take{TaskID: t.ID, WorkerID: fmt.Sprintf("w%d", src.n(3)), TaskType: t.Name, Domain: t.Domain})
	case t.IsWorkerTask():
		res := conductor.TaskResult{TaskID: t.ID, WorkflowInstanceID: w.ID, WorkerID: t.WorkerID, OutputData: r.garbage()}
		switch src.n(6) {
		case 0, 1, 2:
			res.Status = conductor.TaskCompleted
		case 3:
			res.Status, res.ReasonForIncompletion = conductor.TaskFailed, "flaky"
		case 4:
			res.Status, res.ReasonForIncompletion = conductor.TaskFailedWithTerminalError, "fatal"
		case 5:
			res.Status, res.CallbackAfterSeconds = conductor.TaskInProgress, int64(src.n(4))
		}
		lease := 0
		if src.n(2) == 0 {
			lease = t.PollCount
		}
		r.step(engine.Result{Result: res, TaskType: t.Name, Domain: t.Domain, Lease: lease})
	default:
		r.step(engine.Tick{})
	}
}

// garbage is a worker's output: nothing, a value, or odd shapes.
func (r *lifecycleRun) garbage() map[string]any {
	switch r.src.n(5) {
	case 0:
		return nil
	case 1:
		return map[string]any{}
	case 2:
		return map[string]any{"v": int64(r.src.n(100)), "s": "x"}
	case 3:
		return map[string]any{"nested": map[string]any{"list": []any{nil, true, 1.5, "${workflow.input.c}"}}, "": "empty key"}
	}
	return map[string]any{"iteration": "not a number", "subWorkflowId": "forged", "selectedCase": 7}
}

// late reports on a task that has ended, or on an earlier take of one
// that runs: nothing may change.
func (r *lifecycleRun) late() {
	w, src := r.h.w, r.src
	if len(w.Tasks) == 0 {
		return
	}
	t := w.Tasks[src.n(len(w.Tasks))]
	res := conductor.TaskResult{TaskID: t.ID, WorkflowInstanceID: w.ID, Status: []string{conductor.TaskCompleted,
		conductor.TaskFailed, conductor.TaskInProgress}[src.n(3)], OutputData: r.garbage()}
	switch {
	case t.Type == conductor.TaskTypeSubWorkflow && t.SubWorkflowID != "" && !t.Active():
		r.stepWant(engine.ChildFinished{ChildID: t.SubWorkflowID, Status: conductor.WorkflowCompleted}, "news of a child whose task has ended")
	case !t.Active() || w.Terminal():
		r.stepWant(engine.Result{Result: res}, "a result for a task that has ended")
	case t.IsWorkerTask() && t.PollCount > 1:
		r.stepWant(engine.Result{Result: res, Lease: t.PollCount - 1}, "a result about an earlier take")
	}
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
	if res, ok := trig.(engine.Result); ok {
		r.lastResult = &res
	}
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
