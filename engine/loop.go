package engine

import (
	"fmt"
	"reflect"
	"slices"
	"strconv"

	"github.com/flowvault/flowvault/engine/expr"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// DO_WHILE
//
// A DO_WHILE task runs its loopOver tasks iteration after iteration; their
// reference names carry the iteration ("ref__1", "ref__2", ...) and their
// Task.Iteration says which. The decider runs the whole loop except the
// loopCondition: that is JavaScript, user code, which the decider must not
// run (it does no I/O and must stay deterministic and cheap). Evaluating
// the condition is a system task step, and the DO_WHILE task's own status
// and output say where the loop is:
//
//  1. Body running: IN_PROGRESS, output {"iteration": n, ...} without an
//     entry "n". Each round of progress, advanceLoop schedules the first
//     loopOver task of iteration n if there is none yet, and otherwise
//     looks for the iteration's end: a successful task of the iteration
//     after which the flow leaves the loop body (plan.after reports
//     endLoop for this loop), and no task of the iteration still active.
//  2. At the end of iteration n the decider records the iteration's
//     outputs in the loop's output under "n" ({childRef: output}; older
//     entries are dropped past inputParameters.keepLastN). Without a
//     loopCondition (an `items` loop) it decides at once (step 4).
//     Otherwise the loop task goes back to SCHEDULED, which hands it to the
//     DO_WHILE system worker (RunSystem; Effects and Tick hand it off again
//     after a crash, as any scheduled system task).
//  3. The system worker takes the task (Take); the decision that hands it
//     over puts in the reply, as the task's input, the document the
//     condition reads as `$` (loopConditionInput): the loop's
//     inputParameters evaluated now, `$[loopRef]` = the loop's output and
//     `$[childRef]` = each task output of iteration n (conductor-api.md
//     §6.1). The document is a function of the state at the Take, so the
//     decision stays pure and replayable; it is not stored. While the
//     condition runs the task is IN_PROGRESS with the entry "n" present;
//     the system task lease applies (if the engine running it dies, Tick
//     hands it off again).
//  4. The worker reports a verdict (loopVerdict): IN_PROGRESS means run
//     another iteration (output iteration n+1, back to step 1), COMPLETED
//     means the loop is done and its successors run, FAILED* fails the
//     loop. An `items` loop also ends when the items are used up.
//
// With `items` (a list, or an expression yielding one, in the task
// configuration as OSS Conductor has it) the loop runs once per item; the
// output carries the current "loopItem" and zero-based "loopIndex"
// (${loop.output.loopItem} in the body), and the condition, if any, also
// sees them as $.item and $.index. An empty list completes the loop at
// once with iteration 0.
//
// Retry reopens a failed or canceled loop where it stopped; rerun from a
// task inside the loop reopens the loop at that task's iteration. Nested
// DO_WHILE loops are not supported (as in Conductor); validation rejects
// them.

// loopIteration returns the iteration a DO_WHILE task is at.
func loopIteration(t *Task) int { return intOf(t.Output["iteration"]) }

// loopRecorded reports whether the current iteration of a DO_WHILE task has
// ended and its outputs are recorded: the loop awaits its condition.
func loopRecorded(t *Task) bool {
	_, ok := t.Output[strconv.Itoa(loopIteration(t))]
	return ok
}

func iterRef(ref string, iteration int) string {
	if iteration > 0 {
		return ref + "__" + strconv.Itoa(iteration)
	}
	return ref
}

func intOf(v any) int {
	switch x := v.(type) {
	case int64:
		return int(x)
	case int:
		return x
	case float64:
		return int(x)
	case uint64:
		return int(x)
	case int32:
		return int(x)
	case string:
		n, _ := strconv.Atoi(x)
		return n
	}
	return 0
}

// loopItems evaluates the `items` of a DO_WHILE configuration. ok is false
// when the loop has none.
func (d *decision) loopItems(wt *conductor.WorkflowTask, taskID string) (items []any, ok bool, err error) {
	spec, ok := d.plan.items[wt.TaskReferenceName]
	if !ok {
		return nil, false, nil
	}
	v, _, err := expr.Evaluate(spec, &workflowDoc{w: d.w, taskID: taskID})
	if err != nil {
		return nil, true, fmt.Errorf("items: %v", err)
	}
	switch x := v.(type) {
	case nil:
		return nil, true, nil
	case []any:
		return x, true, nil
	}
	return nil, true, fmt.Errorf("items resolved to %s, want a list", jsonType(v))
}

// iterationOutput is a loop's output at the start of iteration n.
func iterationOutput(prev map[string]any, n int, items []any, hasItems bool) map[string]any {
	out := copyMap(prev)
	out["iteration"] = int64(n)
	if hasItems && n >= 1 && n <= len(items) {
		out["loopItem"], out["loopIndex"] = items[n-1], int64(n-1)
	}
	return out
}

// prepareLoop sets up a DO_WHILE task being scheduled: iteration 1 (its
// first task is scheduled by advanceLoop), or done at once for an empty
// items list.
func (d *decision) prepareLoop(wt *conductor.WorkflowTask, ev *schemas.TaskScheduled) error {
	if len(wt.LoopOver) == 0 {
		return fmt.Errorf("DO_WHILE %s has no loopOver tasks", ev.Ref)
	}
	if wt.LoopCondition != "" && !runsInSystemWorker(conductor.TaskTypeDoWhile) {
		return fmt.Errorf("DO_WHILE %s: no system worker evaluates loop conditions", ev.Ref)
	}
	items, hasItems, err := d.loopItems(wt, ev.TaskID)
	if err != nil {
		return fmt.Errorf("DO_WHILE %s: %v", ev.Ref, err)
	}
	if hasItems && len(items) == 0 {
		ev.Status, ev.Output = conductor.TaskCompleted, map[string]any{"iteration": int64(0)}
		return nil
	}
	ev.Status, ev.Output = conductor.TaskInProgress, iterationOutput(nil, 1, items, hasItems)
	return nil
}

// advanceLoop moves a DO_WHILE whose body is running: it starts the
// iteration, or ends it (steps 1 and 2 above). It reports whether it
// changed anything.
func (d *decision) advanceLoop(loop *Task) bool {
	wt := d.plan.config(loop)
	ln := d.plan.node(loop.Ref)
	if wt == nil || ln == nil || len(wt.LoopOver) == 0 {
		return false
	}
	n := loopIteration(loop)
	first := wt.LoopOver[0]
	if d.latest(iterRef(first.TaskReferenceName, n)) == nil {
		d.schedule(first, scheduleOpts{iteration: n})
		return true
	}
	ended := false
	for _, t := range d.w.Tasks {
		if t.Iteration != n || !d.inLoop(t, ln) {
			continue
		}
		if t.Active() {
			return false
		}
		if !t.Retried && conductor.TaskSuccessful(t.Status) && d.endsLoop(t, ln) {
			ended = true
		}
	}
	if !ended {
		return false
	}
	out := copyMap(loop.Output)
	out[strconv.Itoa(n)] = d.iterationRecord(ln, n)
	keepLastN(out, loop.Input, n)
	if wt.LoopCondition == "" {
		d.nextIteration(loop, wt, out, true)
		return true
	}
	d.updateLoop(loop, conductor.TaskScheduled, out)
	d.effect(handOff(d.w, d.w.TaskByID(loop.ID))...)
	return true
}

// nextIteration starts iteration n+1 of a loop whose iteration n ended
// (more: the condition says so, or there is none), or completes the loop
// when the condition is false or the items are used up.
func (d *decision) nextIteration(loop *Task, wt *conductor.WorkflowTask, out map[string]any, more bool) {
	n := loopIteration(loop)
	items, hasItems, err := d.loopItems(wt, loop.ID)
	if err != nil {
		d.emit(&schemas.TaskUpdated{TaskID: loop.ID, Status: conductor.TaskFailedWithTerminalError, Output: out,
			Reason: fmt.Sprintf("DO_WHILE %s: %v", loop.Ref, err), Time: d.now})
		d.failed(d.w.TaskByID(loop.ID))
		return
	}
	if wt.LoopCondition == "" {
		more = hasItems // no condition: one pass, or one per item
	}
	if !more || (hasItems && n >= len(items)) {
		d.updateLoop(loop, conductor.TaskCompleted, out)
		return
	}
	d.updateLoop(loop, conductor.TaskInProgress, iterationOutput(out, n+1, items, hasItems))
}

// updateLoop changes the loop's status and its output to out, recording
// only the keys that change: an iteration adds one entry to an output
// that holds every iteration's, and an event that carried it whole made a
// loop of n iterations append O(n²) bytes to the log.
func (d *decision) updateLoop(loop *Task, status string, out map[string]any) {
	cur := d.w.TaskByID(loop.ID).Output // as this decision left it
	set := map[string]any{}
	for k, v := range out {
		if old, ok := cur[k]; !ok || !SameValue(old, v) && !reflect.DeepEqual(old, v) {
			set[k] = v
		}
	}
	var drop []string
	for k := range cur {
		if _, ok := out[k]; !ok {
			drop = append(drop, k)
		}
	}
	slices.Sort(drop) // a decision is the same every time
	d.emit(&schemas.TaskUpdated{TaskID: loop.ID, Status: status, Output: set, MergeOutput: true, DropOutput: drop, Time: d.now})
}

// loopVerdict applies the system worker's report on a loop condition (step
// 4 above). Keys the condition added to $[loopRef] join the loop's output;
// those the decider owns (iteration, the iteration entries) stay.
func (d *decision) loopVerdict(loop *Task, r conductor.TaskResult) error {
	out := copyMap(loop.Output)
	for k, v := range r.OutputData {
		if !conductor.DoWhileOwnedKey(k) {
			out[k] = v
		}
	}
	wt := d.plan.config(loop)
	if wt == nil {
		return fault.Invalid("DO_WHILE %s is not in the workflow's definition", loop.Ref)
	}
	switch r.Status {
	case conductor.TaskInProgress:
		d.nextIteration(loop, wt, out, true)
	case conductor.TaskCompleted:
		d.emit(&schemas.TaskUpdated{TaskID: loop.ID, Status: conductor.TaskCompleted, Output: out, WorkerID: r.WorkerID, Time: d.now})
	case conductor.TaskFailed, conductor.TaskFailedWithTerminalError:
		reason := r.ReasonForIncompletion
		if reason == "" {
			reason = "DO_WHILE " + loop.Ref + ": loopCondition failed"
		}
		d.emit(&schemas.TaskUpdated{TaskID: loop.ID, Status: r.Status, Output: out, Reason: reason, WorkerID: r.WorkerID, Time: d.now})
		d.failed(d.w.TaskByID(loop.ID))
	default:
		return invalidStatus(r.Status)
	}
	return nil
}

// LoopConditionInput is the document the condition of loop, a DO_WHILE
// task of w, reads as `$`, and the paths in it of the expressions left for
// the hand-off to resolve (secret and environment references): the
// hand-off of a condition opens and resolves it as it does a task's input.
func LoopConditionInput(w *Workflow, loop *Task) (map[string]any, [][]any) {
	p, err := w.planFor()
	if err != nil {
		return copyMap(loop.Input), loop.Deferred
	}
	d := &decision{w: w, plan: p}
	return d.loopConditionDoc(loop)
}

// loopConditionInput is the document a loop condition reads as `$` (step 3
// above).
func (d *decision) loopConditionInput(loop *Task) map[string]any {
	in, _ := d.loopConditionDoc(loop)
	return in
}

func (d *decision) loopConditionDoc(loop *Task) (map[string]any, [][]any) {
	in, deferred := copyMap(loop.Input), loop.Deferred
	if wt := d.plan.config(loop); wt != nil {
		// Conductor evaluates the inputParameters again for each check.
		if fresh, paths, err := d.evaluate(wt.InputParameters, loop.ID); err == nil {
			in, deferred = fresh, paths
		}
	}
	in[loop.Ref] = copyMap(loop.Output)
	data := map[string]bool{loop.Ref: true} // keys holding outputs: data, never expressions
	if rec, ok := loop.Output[strconv.Itoa(loopIteration(loop))].(map[string]any); ok {
		for ref, out := range rec {
			in[ref], data[ref] = out, true
		}
	}
	if idx, ok := loop.Output["loopIndex"]; ok {
		if _, taken := in["item"]; !taken {
			in["item"], data["item"] = loop.Output["loopItem"], true
		}
		if _, taken := in["index"]; !taken {
			in["index"] = idx
		}
	}
	// An input parameter an output replaced is not resolved: the output
	// is a worker's data, which must never be read as a secret reference.
	kept := deferred[:0:0]
	for _, p := range deferred {
		if len(p) == 0 {
			continue
		}
		if k, ok := p[0].(string); !ok || !data[k] {
			kept = append(kept, p)
		}
	}
	return in, kept
}

// iterationRecord maps each task of iteration n of the loop (by reference
// name without the suffix) to its output.
func (d *decision) iterationRecord(ln *node, n int) map[string]any {
	rec := map[string]any{}
	for _, t := range d.w.Tasks {
		if t.Iteration == n && !t.Retried && conductor.TaskTerminal(t.Status) && d.inLoop(t, ln) {
			rec[baseRef(t.Ref)] = nonNil(t.Output)
		}
	}
	return rec
}

// keepLastN drops the iteration entries older than the last
// inputParameters.keepLastN.
func keepLastN(out, input map[string]any, n int) {
	keep := intOf(input["keepLastN"])
	if keep < 1 {
		return
	}
	for k := range out {
		if i, err := strconv.Atoi(k); err == nil && i <= n-keep {
			delete(out, k)
		}
	}
}

// reopenLoop puts a loop back to the start of iteration k (rerun from a task
// of that iteration): the entries of iteration k and later are dropped.
func (d *decision) reopenLoop(loop *Task, k int) {
	out := copyMap(loop.Output)
	for key := range out {
		if i, err := strconv.Atoi(key); err == nil && i >= k {
			delete(out, key)
		}
	}
	var items []any
	hasItems := false
	if wt := d.plan.config(loop); wt != nil {
		items, hasItems, _ = d.loopItems(wt, loop.ID)
	}
	d.emit(&schemas.TaskUpdated{TaskID: loop.ID, Status: conductor.TaskInProgress,
		Output: iterationOutput(out, k, items, hasItems), Time: d.now})
}

// placeOf returns the plan node that places task t: its own, or for a task
// spawned by a dynamic fork, the fork's.
func (d *decision) placeOf(t *Task) *node {
	if n := d.plan.node(t.Ref); n != nil {
		return n
	}
	if t.ParentTaskID != "" {
		if p := d.w.TaskByID(t.ParentTaskID); p != nil {
			return d.plan.node(p.Ref)
		}
	}
	return nil
}

// inLoop reports whether task t belongs to the body of the loop placed at
// ln.
func (d *decision) inLoop(t *Task, ln *node) bool {
	for n := d.placeOf(t); n != nil; n = n.parent {
		if n.parent == ln {
			return true
		}
	}
	return false
}

// loopOf returns the loop whose body task t belongs to, or nil.
func (d *decision) loopOf(t *Task) *node {
	for n := d.placeOf(t); n != nil; n = n.parent {
		if n.parent != nil && n.parent.wt.TaskType() == conductor.TaskTypeDoWhile {
			return n.parent
		}
	}
	return nil
}

// endsLoop reports whether the flow leaves the body of the loop at ln once
// t succeeded: nothing follows t inside the body.
func (d *decision) endsLoop(t *Task, ln *node) bool {
	switch t.Type {
	case conductor.TaskTypeSwitch, conductor.TaskTypeDecision:
		if wt := d.plan.config(t); wt != nil && len(selectedBranch(t, wt)) > 0 {
			return false
		}
	case conductor.TaskTypeForkJoin, conductor.TaskTypeForkJoinDynamic:
		return false
	}
	if d.plan.node(t.Ref) == nil {
		return false // spawned by a dynamic fork: its JOIN continues
	}
	_, why, c := d.plan.after(t.Ref)
	return why == endLoop && c == ln
}

// selectedBranch is the branch a finished SWITCH or DECISION chose. A case
// with no tasks takes the default case, as in Conductor.
func selectedBranch(t *Task, wt *conductor.WorkflowTask) []*conductor.WorkflowTask {
	selected, _ := t.Output["selectedCase"].(string)
	if branch := wt.DecisionCases[selected]; len(branch) > 0 {
		return branch
	}
	return wt.DefaultCase
}

func jsonType(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case map[string]any:
		return "an object"
	case []any:
		return "a list"
	}
	return "a number"
}
