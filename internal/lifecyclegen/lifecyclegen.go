// Package lifecyclegen turns a fuzzer's bytes into a workflow definition
// and the triggers an executor could deliver to it, one at a time: the
// engine's lifecycle fuzzers and the read models' fuzzers drive the same
// lifecycles, and a corpus entry means the same run to each.
package lifecyclegen

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// The executor registers the system task types it implements, HTTP
// among them; the grammar's HTTP tasks are run as such by whatever
// drives them (each fuzzer registered it itself).
func init() { engine.RegisterSystemWorkerType(conductor.TaskTypeHTTP) }

// Jumps lets the fuzzers jump (Orkes's jump API): the switch to turn
// them off while a finding of theirs is open.
const Jumps = true

// Src hands out the fuzzer's bytes; past their end, zeros.
type Src struct {
	b []byte
	i int
}

// NewSrc returns a source of data's bytes.
func NewSrc(data []byte) *Src { return &Src{b: data} }

// Byte returns the next byte.
func (s *Src) Byte() byte {
	if s.i >= len(s.b) {
		return 0
	}
	s.i++
	return s.b[s.i-1]
}

// N returns a number in [0, k).
func (s *Src) N(k int) int { return int(s.Byte()) % k }

// Done reports whether every byte was handed out.
func (s *Src) Done() bool { return s.i >= len(s.b) }

// Grammar turns on the definition grammar's optional parts.
type Grammar struct {
	ExclusiveJoins bool
	// JoinsAcross ends a fork's first branch, now and then, in an
	// EXCLUSIVE_JOIN on the last task of another branch: a task it can
	// only wait for, none leading to it.
	JoinsAcross bool
}

// defGen builds a definition from a small grammar: SIMPLE tasks with
// retries, optional and timeouts, FORK_JOIN + JOIN, SWITCH, DO_WHILE,
// WAIT, SUB_WORKFLOW, TERMINATE and SET_VARIABLE.
type defGen struct {
	src  *Src
	gr   Grammar
	refs int
}

// Def returns a definition (JSON, named "fz") from src's next bytes.
func Def(src *Src, gr Grammar) string {
	g := &defGen{src: src, gr: gr}
	def := map[string]any{"name": "fz", "version": 1, "schemaVersion": 2, "tasks": g.list(0, false, 1+src.N(4))}
	if src.N(4) == 0 {
		def["timeoutSeconds"] = 30 + src.N(600)
		def["timeoutPolicy"] = []string{"TIME_OUT_WF", "ALERT_ONLY"}[src.N(2)]
	}
	if src.N(4) == 0 {
		def["outputParameters"] = map[string]any{"v": "${workflow.variables.v}"}
	}
	js, err := json.Marshal(def)
	if err != nil {
		panic(err)
	}
	return string(js)
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
	kind := g.src.N(18)
	if kind >= 16 {
		ref := g.ref("http")
		return []any{map[string]any{"name": ref, "taskReferenceName": ref, "type": "HTTP", "optional": g.src.N(4) == 0,
			"inputParameters": map[string]any{"http_request": map[string]any{"uri": "http://example.invalid/x", "method": "GET"}}}}
	}
	if depth >= 2 && kind >= 8 {
		kind %= 8 // no deeper nesting
	}
	switch kind {
	case 8, 9: // FORK_JOIN + JOIN
		fork, join := g.ref("fork"), g.ref("join")
		var branches [][]any
		for range 2 + g.src.N(2) {
			branches = append(branches, g.list(depth+1, inLoop, 1+g.src.N(2)))
		}
		lastOf := func(b []any) string { return b[len(b)-1].(map[string]any)["taskReferenceName"].(string) }
		if g.gr.JoinsAcross && g.src.N(2) == 0 {
			ref := g.ref("xjoin")
			on := lastOf(branches[1+g.src.N(len(branches)-1)])
			branches[0] = append(branches[0], map[string]any{"name": ref, "taskReferenceName": ref, "type": "EXCLUSIVE_JOIN", "joinOn": []string{on}})
		}
		var last []string
		for _, b := range branches {
			last = append(last, lastOf(b))
		}
		return []any{
			map[string]any{"name": fork, "taskReferenceName": fork, "type": "FORK_JOIN", "forkTasks": branches},
			map[string]any{"name": join, "taskReferenceName": join, "type": "JOIN", "joinOn": last},
		}
	case 10, 11: // SWITCH
		ref := g.ref("switch")
		param := []string{"${workflow.input.c}", "${workflow.variables.v}"}[g.src.N(2)]
		cases := map[string]any{"a": g.list(depth+1, inLoop, 1+g.src.N(2))}
		if g.src.N(2) == 0 {
			cases["b"] = g.list(depth+1, inLoop, g.src.N(2))
		}
		sw := map[string]any{"name": ref, "taskReferenceName": ref, "type": "SWITCH", "evaluatorType": "value-param",
			"expression": "c", "inputParameters": map[string]any{"c": param}, "decisionCases": cases,
			"defaultCase": g.list(depth+1, inLoop, g.src.N(2))}
		if !g.gr.ExclusiveJoins {
			return []any{sw}
		}
		return append([]any{sw}, g.exclusiveJoin(cases, sw["defaultCase"].([]any))...)
	case 12: // DO_WHILE
		if inLoop {
			return g.simple()
		}
		ref := g.ref("loop")
		t := map[string]any{"name": ref, "taskReferenceName": ref, "type": "DO_WHILE", "loopOver": g.list(depth+1, true, 1+g.src.N(2))}
		if g.src.N(3) == 0 {
			t["inputParameters"] = map[string]any{"keepLastN": 1 + g.src.N(2)}
		}
		if g.src.N(2) == 0 {
			t["items"] = []any{1, 2, 3}[:1+g.src.N(3)]
		} else {
			t["loopCondition"] = fmt.Sprintf("$.%s['iteration'] < 3", ref)
		}
		return []any{t}
	case 13: // WAIT
		ref := g.ref("wait")
		in := map[string]any{}
		if g.src.N(2) == 0 {
			in["duration"] = fmt.Sprintf("%ds", 1+g.src.N(120))
		}
		return []any{map[string]any{"name": ref, "taskReferenceName": ref, "type": "WAIT", "inputParameters": in}}
	case 14: // SUB_WORKFLOW
		ref := g.ref("sub")
		t := map[string]any{"name": ref, "taskReferenceName": ref, "type": "SUB_WORKFLOW",
			"subWorkflowParam": map[string]any{"name": "kid", "version": 1}, "optional": g.src.N(4) == 0}
		if n := g.src.N(3); n > 0 {
			t["retryCount"] = n - 1
		}
		return []any{t}
	case 15: // TERMINATE or SET_VARIABLE
		if g.src.N(3) == 0 {
			ref := g.ref("end")
			return []any{map[string]any{"name": ref, "taskReferenceName": ref, "type": "TERMINATE", "inputParameters": map[string]any{
				"terminationStatus": []string{"COMPLETED", "FAILED", "TERMINATED"}[g.src.N(3)], "terminationReason": "ended by " + ref}}}
		}
		ref := g.ref("set")
		return []any{map[string]any{"name": ref, "taskReferenceName": ref, "type": "SET_VARIABLE",
			"inputParameters": map[string]any{"v": []string{"a", "b"}[g.src.N(2)]}}}
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
	t := map[string]any{"name": ref, "taskReferenceName": ref, "type": "SIMPLE", "optional": g.src.N(5) == 0, "permissive": g.src.N(6) == 0}
	if g.src.N(4) == 0 {
		t["startDelay"] = 1 + g.src.N(5)
	}
	td := map[string]any{"name": ref, "retryCount": g.src.N(3),
		"retryLogic": []string{"FIXED", "EXPONENTIAL_BACKOFF", "LINEAR_BACKOFF"}[g.src.N(3)], "retryDelaySeconds": g.src.N(3)}
	if g.src.N(3) == 0 {
		td["timeoutSeconds"] = 10 + g.src.N(60)
		td["timeoutPolicy"] = []string{"RETRY", "TIME_OUT_WF", "ALERT_ONLY"}[g.src.N(3)]
		if g.src.N(2) == 0 {
			td["responseTimeoutSeconds"] = 1 + g.src.N(9)
		}
	}
	if g.src.N(4) == 0 {
		td["pollTimeoutSeconds"] = 1 + g.src.N(60)
	}
	if g.src.N(6) == 0 {
		td["totalTimeoutSeconds"] = 20 + g.src.N(100)
	}
	t["taskDefinition"] = td
	if g.src.N(4) == 0 {
		t["retryCount"] = g.src.N(3) // the workflow task's override
	}
	return []any{t}
}

// Move is a trigger an executor could deliver, and the virtual clock's
// time at which it is decided.
type Move struct {
	// Trigger is nil when the bytes chose a trigger the state has no
	// use for (a jump in a workflow without tasks, say).
	Trigger engine.Trigger
	Now     time.Time
	// Ignored, when set, says why the trigger must change nothing: a late
	// or repeated report. A Result among them must be answered as ignored.
	Ignored string
}

// Driver picks triggers for one workflow from a source's bytes.
type Driver struct {
	src *Src
	// last is the last result handed out.
	last *engine.Result
	// Runs, when set, reports whether a child workflow runs for real: its
	// end reaches its parent from its own lifecycle, and the driver makes
	// up no news of it.
	Runs func(childID string) bool
}

// NewDriver returns a driver that picks with src's bytes.
func NewDriver(src *Src) *Driver { return &Driver{src: src} }

// Next picks a trigger an executor could deliver to w at now: workers'
// takes and results, late and duplicate ones among them, timers on a
// virtual clock, a child's end, operators' pause, resume, terminate,
// retry, restart, rerun, skip and jump.
func (d *Driver) Next(w *engine.Workflow, now time.Time) Move {
	mv := d.next(w, now)
	if res, ok := mv.Trigger.(engine.Result); ok {
		d.last = &res
	}
	return mv
}

func (d *Driver) next(w *engine.Workflow, now time.Time) Move {
	src := d.src
	move := func(trig engine.Trigger) Move { return Move{Trigger: trig, Now: now} }
	switch op := src.N(27); {
	case op == 25:
		if def, err := w.Def(); err == nil && len(def.Tasks) > 0 && Jumps {
			return move(engine.Jump{Ref: def.Tasks[src.N(len(def.Tasks))].TaskReferenceName})
		}
	case op == 26:
		if t := d.pick(w, func(t *engine.Task) bool {
			return t.Type == conductor.TaskTypeHTTP && t.Status == conductor.TaskInProgress
		}); t != nil {
			return move(engine.Reclaim{TaskID: t.ID, Holder: t.WorkerID})
		}
	case op < 7:
		return d.answer(w, now)
	case op == 7: // a late or duplicate report, or one about an earlier take
		return d.late(w, now)
	case op == 8 || op == 9: // time passes, a timer fires (early, on time or late)
		switch src.N(4) {
		case 0:
		case 1:
			now = now.Add(time.Duration(src.N(10)) * time.Second)
		case 2:
			now = now.Add(time.Duration(src.N(200)) * time.Second)
		case 3:
			if ds := engine.Deadlines(w); len(ds) > 0 {
				at := time.UnixMilli(ds[src.N(len(ds))] + int64(src.N(3)) - 1).UTC()
				if at.After(now) {
					now = at
				}
			}
		}
		return move(engine.Tick{})
	case op == 10:
		return move(engine.Pause{})
	case op == 11:
		return move(engine.Resume{})
	case op == 12:
		return move(engine.Terminate{Reason: "operator"})
	case op == 13:
		return move(engine.Retry{})
	case op == 14:
		return move(engine.Restart{})
	case op == 15:
		req := conductor.RerunWorkflowRequest{}
		if len(w.Tasks) > 0 && src.N(3) > 0 {
			req.ReRunFromTaskID = w.Tasks[src.N(len(w.Tasks))].ID
		}
		return move(engine.Rerun{Request: req})
	case op == 16:
		refs := DefinitionRefs(w)
		if len(refs) > 0 {
			return move(engine.SkipTask{Ref: refs[src.N(len(refs))], Output: map[string]any{"skipped": true}})
		}
	case op == 18 && d.last != nil: // the last result again, as a worker that missed its answer sends it
		if t := w.TaskByID(d.last.Result.TaskID); t != nil && !t.Active() {
			return Move{Trigger: *d.last, Now: now, Ignored: "a result sent again"}
		}
		return move(*d.last)
	case op == 19: // recovery's pass changes nothing
		return Move{Trigger: engine.Reconcile{}, Now: now, Ignored: "a reconcile"}
	case op == 20:
		return move(engine.ResetCallbacks{})
	case op == 21: // a worker's take that never reached it goes back (the executor's hand-back names the take)
		if t := d.pick(w, func(t *engine.Task) bool {
			return t.Status == conductor.TaskInProgress && t.IsWorkerTask() && t.PollCount > 0
		}); t != nil {
			return move(engine.Result{Result: conductor.TaskResult{TaskID: t.ID, WorkflowInstanceID: w.ID, Status: conductor.TaskInProgress},
				HandBack: true, Lease: t.PollCount})
		}
	case op == 22:
		return move(engine.SetVariables{Variables: map[string]any{"v": []string{"a", "b"}[src.N(2)]}, By: "app:operator"})
	case op == 23: // the engine that ran a loop's condition died
		if t := d.pick(w, func(t *engine.Task) bool { return t.Type == conductor.TaskTypeDoWhile }); t != nil {
			return move(engine.Reclaim{TaskID: t.ID, Holder: t.WorkerID})
		}
	case op == 17: // a take of any task: one not waiting for a worker is refused
		if len(w.Tasks) > 0 {
			t := w.Tasks[src.N(len(w.Tasks))]
			return move(engine.Take{TaskID: t.ID, WorkerID: "w9", System: src.N(2) == 0})
		}
	default:
		return d.answer(w, now)
	}
	return Move{Now: now}
}

// pick returns one of w's tasks that match, or nil.
func (d *Driver) pick(w *engine.Workflow, match func(*engine.Task) bool) *engine.Task {
	var ts []*engine.Task
	for _, t := range w.Tasks {
		if match(t) {
			ts = append(ts, t)
		}
	}
	if len(ts) == 0 {
		return nil
	}
	return ts[d.src.N(len(ts))]
}

// DefinitionRefs are the reference names of w's definition.
func DefinitionRefs(w *engine.Workflow) []string {
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
func (d *Driver) answer(w *engine.Workflow, now time.Time) Move {
	src := d.src
	move := func(trig engine.Trigger) Move { return Move{Trigger: trig, Now: now} }
	var open []*engine.Task
	for _, t := range w.Tasks {
		if t.Active() {
			open = append(open, t)
		}
	}
	if len(open) == 0 {
		return move(engine.Tick{})
	}
	t := open[src.N(len(open))]
	switch {
	case t.Type == conductor.TaskTypeSubWorkflow && t.SubWorkflowID != "" && d.Runs != nil && d.Runs(t.SubWorkflowID):
		return move(engine.Tick{})
	case t.Type == conductor.TaskTypeSubWorkflow && t.SubWorkflowID != "":
		status := []string{conductor.WorkflowCompleted, conductor.WorkflowCompleted, conductor.WorkflowFailed,
			conductor.WorkflowTerminated, conductor.WorkflowTimedOut}[src.N(5)]
		return move(engine.ChildFinished{ChildID: t.SubWorkflowID, Name: "kid", Version: 1, Status: status,
			Output: map[string]any{"kid": src.N(4)}})
	case t.Type == conductor.TaskTypeDoWhile && t.Status == conductor.TaskScheduled:
		return move(engine.Take{TaskID: t.ID, WorkerID: "flowvault", System: true})
	case t.Type == conductor.TaskTypeDoWhile:
		status := []string{conductor.TaskInProgress, conductor.TaskInProgress, conductor.TaskCompleted, conductor.TaskFailed}[src.N(4)]
		return move(engine.Result{Result: conductor.TaskResult{TaskID: t.ID, WorkflowInstanceID: w.ID, Status: status, WorkerID: "flowvault"}})
	case t.Type == conductor.TaskTypeHTTP && t.Status == conductor.TaskScheduled:
		return move(engine.Take{TaskID: t.ID, WorkerID: "flowvault", System: true})
	case t.Type == conductor.TaskTypeHTTP:
		status := []string{conductor.TaskCompleted, conductor.TaskFailed, conductor.TaskInProgress}[src.N(3)]
		return move(engine.Result{Result: conductor.TaskResult{TaskID: t.ID, WorkflowInstanceID: w.ID, Status: status, WorkerID: t.WorkerID,
			CallbackAfterSeconds: int64(src.N(3)), OutputData: d.garbage()}, Lease: t.PollCount})
	case t.Type == conductor.TaskTypeWait:
		return move(engine.Result{Result: conductor.TaskResult{TaskID: t.ID, WorkflowInstanceID: w.ID, Status: conductor.TaskCompleted,
			OutputData: map[string]any{"signal": src.N(3)}}, By: "app:operator"})
	case t.IsWorkerTask() && t.Status == conductor.TaskScheduled && src.N(8) > 0:
		return move(engine.Take{TaskID: t.ID, WorkerID: fmt.Sprintf("w%d", src.N(3)), TaskType: t.Name, Domain: t.Domain})
	case t.IsWorkerTask():
		res := conductor.TaskResult{TaskID: t.ID, WorkflowInstanceID: w.ID, WorkerID: t.WorkerID, OutputData: d.garbage()}
		switch src.N(6) {
		case 0, 1, 2:
			res.Status = conductor.TaskCompleted
		case 3:
			res.Status, res.ReasonForIncompletion = conductor.TaskFailed, "flaky"
		case 4:
			res.Status, res.ReasonForIncompletion = conductor.TaskFailedWithTerminalError, "fatal"
		case 5:
			res.Status, res.CallbackAfterSeconds = conductor.TaskInProgress, int64(src.N(4))
		}
		lease := 0
		if src.N(2) == 0 {
			lease = t.PollCount
		}
		return move(engine.Result{Result: res, TaskType: t.Name, Domain: t.Domain, Lease: lease})
	}
	return move(engine.Tick{})
}

// garbage is a worker's output: nothing, a value, or odd shapes.
func (d *Driver) garbage() map[string]any {
	switch d.src.N(5) {
	case 0:
		return nil
	case 1:
		return map[string]any{}
	case 2:
		return map[string]any{"v": int64(d.src.N(100)), "s": "x"}
	case 3:
		return map[string]any{"nested": map[string]any{"list": []any{nil, true, 1.5, "${workflow.input.c}"}}, "": "empty key"}
	}
	return map[string]any{"iteration": "not a number", "subWorkflowId": "forged", "selectedCase": 7}
}

// late reports on a task that has ended, or on an earlier take of one
// that runs: nothing may change.
func (d *Driver) late(w *engine.Workflow, now time.Time) Move {
	src := d.src
	if len(w.Tasks) == 0 {
		return Move{Now: now}
	}
	t := w.Tasks[src.N(len(w.Tasks))]
	res := conductor.TaskResult{TaskID: t.ID, WorkflowInstanceID: w.ID, Status: []string{conductor.TaskCompleted,
		conductor.TaskFailed, conductor.TaskInProgress}[src.N(3)], OutputData: d.garbage()}
	switch {
	case t.Type == conductor.TaskTypeSubWorkflow && t.SubWorkflowID != "" && !t.Active():
		return Move{Trigger: engine.ChildFinished{ChildID: t.SubWorkflowID, Status: conductor.WorkflowCompleted}, Now: now,
			Ignored: "news of a child whose task has ended"}
	case !t.Active() || w.Terminal():
		return Move{Trigger: engine.Result{Result: res}, Now: now, Ignored: "a result for a task that has ended"}
	case t.IsWorkerTask() && t.PollCount > 1:
		return Move{Trigger: engine.Result{Result: res, Lease: t.PollCount - 1}, Now: now, Ignored: "a result about an earlier take"}
	}
	return Move{Now: now}
}
