package engine

import (
	"fmt"
	"maps"
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
//     outputs in the loop's output under "n" ({childRef: output}). Past
//     inputParameters.keepLastN, the entries of older iterations are
//     dropped and their tasks removed from the workflow
//     (schemas.TasksRemoved), as Conductor removes them. Without a
//     loopCondition (an `items` loop) it decides at once (step 4).
//     Otherwise the loop task goes back to SCHEDULED, which hands it to the
//     DO_WHILE system worker (RunSystem; Effects and Tick hand it off again
//     after a crash, as any scheduled system task).
//  3. The system worker takes the task (Take); the decision that hands it
//     over puts in the reply, as the task's input, the document the
//     condition reads as `$` (loopConditionInput): the loop's
//     inputParameters evaluated now, `$[loopRef]` = the loop's output and
//     `$[childRef]` = each task output of iteration n (conductor-api.md
//     §6.1), or of the newest iteration kept that ran it (earlierOutputs).
//     The document is a function of the state at the Take, so the
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
// A loop whose body the decider runs alone (SET_VARIABLE, say) runs an
// iteration every round or two of one decision. A decision that ran
// yieldAfter rounds, or whose expressions took half of expr.MaxSteps,
// starts no new iteration: the loop waits at step 1 with no task of its
// iteration yet, which Deadlines reports due at once and Pending reports;
// the next decision (a Tick) goes on. The steps are the decision's, and
// each iteration reads its items again: a loop over 20,000 items taken by
// ${x[*].id} spent them all within 250 iterations and failed.
//
// The loop's status and output are the decider's: a report on the loop
// from anyone but its condition's system worker (an operator's task
// update) may end it, as a condition would, but not while its body runs
// (loopResult).
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
	// The list is only read, and the item an iteration takes joins the
	// loop's output shared with the data it came from: a workflow's
	// values are never changed in place (Apply replaces what it changes).
	v, _, err := d.budget().Aside().EvaluateShared(spec, &workflowDoc{w: d.w, taskID: taskID, d: d})
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
		if d.rounds >= yieldAfter || d.budget().Steps() > expr.MaxSteps/2 {
			return false // the next decision starts it (see yieldAfter)
		}
		d.schedule(first, scheduleOpts{iteration: n})
		return true
	}
	body := d.iterationTasks(loop, ln, n)
	ended := false
	for _, t := range body {
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
	change := loopChange{set: map[string]any{strconv.Itoa(n): iterationRecord(body)}}
	d.keepLastN(loop, ln, n, &change)
	if wt.LoopCondition == "" {
		d.nextIteration(loop, wt, change, true)
		return true
	}
	d.updateLoop(loop, conductor.TaskScheduled, change)
	d.effect(handOff(d.w, d.w.task(loop.ID))...)
	return true
}

// loopChange is a change to a loop's output: keys set and keys dropped.
// A loop's output holds an entry per iteration: building it whole for
// every iteration, to find what changed, made a loop of n iterations
// O(n²).
type loopChange struct {
	set  map[string]any
	drop []string
}

// startIteration sets the keys of the output of a loop starting iteration
// n (see iterationOutput).
func (c *loopChange) startIteration(n int, items []any, hasItems bool) {
	c.set["iteration"] = int64(n)
	if hasItems && n >= 1 && n <= len(items) {
		c.set["loopItem"], c.set["loopIndex"] = items[n-1], int64(n-1)
	}
}

// apply returns out with the change made.
func (c loopChange) apply(out map[string]any) map[string]any {
	out = copyMap(out)
	maps.Copy(out, c.set)
	for _, k := range c.drop {
		delete(out, k)
	}
	return out
}

// nextIteration starts iteration n+1 of a loop whose iteration n ended
// (more: the condition says so, or there is none), or completes the loop
// when the condition is false or the items are used up. change is what
// the end of iteration n changes in the loop's output.
func (d *decision) nextIteration(loop *Task, wt *conductor.WorkflowTask, change loopChange, more bool) {
	n := loopIteration(loop)
	items, hasItems, err := d.loopItems(wt, loop.ID)
	if err != nil {
		d.emit(&schemas.TaskUpdated{TaskID: loop.ID, Status: conductor.TaskFailedWithTerminalError,
			Output: change.apply(d.w.task(loop.ID).Output), Reason: fmt.Sprintf("DO_WHILE %s: %v", loop.Ref, err), Time: d.now})
		d.failed(d.w.task(loop.ID))
		return
	}
	if wt.LoopCondition == "" {
		more = hasItems // no condition: one pass, or one per item
	}
	if !more || (hasItems && n >= len(items)) {
		d.updateLoop(loop, conductor.TaskCompleted, change)
		return
	}
	change.startIteration(n+1, items, hasItems)
	d.updateLoop(loop, conductor.TaskInProgress, change)
}

// updateLoop changes the loop's status and its output, recording only the
// keys that change: an iteration adds one entry to an output that holds
// every iteration's, and an event that carried it whole made a loop of n
// iterations append O(n²) bytes to the log.
func (d *decision) updateLoop(loop *Task, status string, change loopChange) {
	cur := d.w.task(loop.ID).Output // as this decision left it
	set := map[string]any{}
	for k, v := range change.set {
		if old, ok := cur[k]; !ok || !SameValue(old, v) && !reflect.DeepEqual(old, v) {
			set[k] = v
		}
	}
	var drop []string
	for _, k := range change.drop {
		if _, ok := cur[k]; ok {
			drop = append(drop, k)
		}
	}
	slices.Sort(drop) // a decision is the same every time
	d.emit(&schemas.TaskUpdated{TaskID: loop.ID, Status: status, Output: set, MergeOutput: true, DropOutput: drop, Time: d.now})
}

// loopVerdict applies the system worker's report on a loop condition (step
// 4 above). Keys the condition set in $[loopRef] join the loop's output,
// and those it deleted (drop) leave it; those the decider owns
// (iteration, the iteration entries) stay.
func (d *decision) loopVerdict(loop *Task, r conductor.TaskResult, drop []string) error {
	wt := d.plan.config(loop)
	if wt == nil {
		return fault.Invalid("DO_WHILE %s is not in the workflow's definition", loop.Ref)
	}
	if r.Status == conductor.TaskInProgress {
		d.nextIteration(loop, wt, reportedKeys(r, drop), true)
		return nil
	}
	return d.endLoop(loop, r, drop)
}

// reportedKeys is what a report on a loop changes in its output: the keys
// it sets and those it drops, all but those the decider owns.
func reportedKeys(r conductor.TaskResult, drop []string) loopChange {
	c := loopChange{set: map[string]any{}}
	for k, v := range r.OutputData {
		if !conductor.DoWhileOwnedKey(k) {
			c.set[k] = v
		}
	}
	for _, k := range drop {
		if !conductor.DoWhileOwnedKey(k) {
			c.drop = append(c.drop, k)
		}
	}
	return c
}

// endLoop completes or fails a loop as a report says: its condition's, or
// an operator's task update (loopResult), which drops nothing. Its output
// keeps what the decider owns, the iterations' records among them.
func (d *decision) endLoop(loop *Task, r conductor.TaskResult, drop []string) error {
	out := reportedKeys(r, drop).apply(loop.Output)
	switch r.Status {
	case conductor.TaskCompleted:
		d.emit(&schemas.TaskUpdated{TaskID: loop.ID, Status: conductor.TaskCompleted, Output: out, WorkerID: r.WorkerID, Time: d.now})
	case conductor.TaskFailed, conductor.TaskFailedWithTerminalError:
		reason := r.ReasonForIncompletion
		if reason == "" {
			reason = "DO_WHILE " + loop.Ref + ": loopCondition failed"
		}
		d.emit(&schemas.TaskUpdated{TaskID: loop.ID, Status: r.Status, Output: out, Reason: reason, WorkerID: r.WorkerID, Time: d.now})
		d.failed(d.w.task(loop.ID))
	default:
		return invalidStatus(r.Status)
	}
	return nil
}

// loopResult applies a report on a DO_WHILE. Its condition's report (the
// system worker's, while the condition runs) moves the loop on. Anyone
// else's is an operator's task update, which in Conductor sets the status
// of any task: it may end the loop (COMPLETED or FAILED, as a condition
// would), but not while an iteration's body runs. Conductor takes that
// update too, and leaves the body running for a loop that has ended, its
// output replaced by the update's (the iterations' records gone): here it
// is refused, saying why. Progress (IN_PROGRESS) is the condition's to
// report: from anyone else it is ignored (see loopIgnores). Variables, the
// result's (Result.Variables), are set only with a report that is taken.
func (d *decision) loopResult(loop *Task, r conductor.TaskResult, drop []string, by string, vars map[string]any) error {
	if conditionReport(loop, by) {
		d.reply = ResultReply{}
		d.resultVariables(vars)
		return d.loopVerdict(loop, r, drop)
	}
	switch r.Status {
	case conductor.TaskCompleted, conductor.TaskFailed, conductor.TaskFailedWithTerminalError:
	default:
		return invalidStatus(r.Status)
	}
	if t := d.runningBody(loop); t != nil {
		return fault.Conflict("task %s is the DO_WHILE %s, whose iteration %d runs (its task %s is %s): a loop ends when its body and condition say so; update the tasks of its body instead, or terminate the workflow",
			loop.ID, loop.Ref, loopIteration(loop), t.Ref, t.Status)
	}
	d.reply = ResultReply{}
	d.resultVariables(vars)
	return d.endLoop(loop, r, nil)
}

// conditionReport reports whether a report by by on loop is its
// condition's: the system worker's (no operator), while the condition
// runs.
func conditionReport(loop *Task, by string) bool {
	return loop.Status == conductor.TaskInProgress && loopRecorded(loop) && by == ""
}

// abandonIteration cancels what still runs of the iteration of loop, a
// DO_WHILE that timed out, when its workflow goes on past it (the loop is
// optional or permissive). Left running, its body went on after the loop
// had ended: each task that ended scheduled the next of the iteration,
// whose outputs no loop recorded and whose failure still failed the
// workflow, and the workflow could not complete before them. Conductor
// leaves them so (its decider schedules a loopOver task's successor
// whatever the loop's status); a loop's end while its body runs is what
// loopResult refuses an operator for. A workflow that ends cancels them
// itself (finish), and its retry runs them again with the loop.
func (d *decision) abandonIteration(loop *Task) {
	ln := d.plan.node(loop.Ref)
	if ln == nil || d.w.Status != conductor.WorkflowRunning || !conductor.TaskTerminal(loop.Status) {
		return
	}
	for _, t := range d.iterationTasks(loop, ln, loopIteration(loop)) {
		if !t.Active() {
			continue
		}
		d.emit(&schemas.TaskUpdated{TaskID: t.ID, Status: conductor.TaskCanceled, KeepOutput: true,
			Reason: "DO_WHILE " + loop.Ref + " timed out", Time: d.now})
		if t := d.w.task(t.ID); t.Type == conductor.TaskTypeSubWorkflow && t.SubWorkflowID != "" {
			d.effect(cancelChild(d.w, t))
		}
	}
}

// abandoned reports whether t is a task of an iteration its loop gave up
// on (abandonIteration): unsuccessful, in a loop that ended successfully
// (an optional loop that timed out is COMPLETED_WITH_ERRORS). A retry or
// a rerun past it does not run it again, nor does its child's retry
// reopen it: no loop waits for it, and the workflow went on past the loop.
func (d *decision) abandoned(t *Task) bool {
	if t.Iteration == 0 || !unsuccessful(t.Status) {
		return false
	}
	ln := d.loopOf(t)
	if ln == nil {
		return false
	}
	loop := d.latest(ln.wt.TaskReferenceName)
	return loop != nil && conductor.TaskSuccessful(loop.Status)
}

// loopIgnores reports whether a report on loop changes nothing: progress
// from anyone but its condition. Ignored before anything of the report is
// recorded (its logs, its sender), as a late result is: an updateState
// that carries it is refused as having changed nothing.
func loopIgnores(loop *Task, r conductor.TaskResult, by string) bool {
	return loop.Type == conductor.TaskTypeDoWhile && r.Status == conductor.TaskInProgress && !conditionReport(loop, by)
}

// runningBody returns a task of the loop's current iteration that has not
// ended, or nil.
func (d *decision) runningBody(loop *Task) *Task {
	ln := d.plan.node(loop.Ref)
	if ln == nil || loop.Status != conductor.TaskInProgress || loopRecorded(loop) {
		return nil
	}
	for _, t := range d.iterationTasks(loop, ln, loopIteration(loop)) {
		if t.Active() {
			return t
		}
	}
	return nil
}

// Pending reports whether w's last decision left work for the next one: a
// running DO_WHILE waiting to start its next iteration, which a decision
// leaves once it ran yieldAfter rounds. Deadlines has it due at once; any
// decision (a Tick) goes on with it.
func Pending(w *Workflow) bool {
	if w.Status != conductor.WorkflowRunning {
		return false
	}
	// A running loop is never settled nor quiet: the tasks the sweep
	// settled or counts quiet need no look (the executor asks after every
	// decision, and a walk over every branch of a fork of thousands was
	// one per result).
	// The sweep is read, not brought up to date: w may be shared.
	s, ts := w.sweep, w.Tasks
	if !s.fits(ts) {
		s = sweep{}
	}
	for _, i := range s.open {
		if w.awaitsIteration(ts[i]) {
			return true
		}
	}
	for _, t := range ts[s.next:] {
		if w.awaitsIteration(t) {
			return true
		}
	}
	return false
}

// awaitsIteration reports whether t is a DO_WHILE whose current iteration
// has not started: no task of it is scheduled (see yieldAfter).
func (w *Workflow) awaitsIteration(t *Task) bool {
	if t.Type != conductor.TaskTypeDoWhile || t.Status != conductor.TaskInProgress || loopRecorded(t) {
		return false
	}
	p, err := w.planFor()
	if err != nil {
		return false
	}
	wt := p.config(t)
	if wt == nil || len(wt.LoopOver) == 0 {
		return false
	}
	return w.LatestByRef(iterRef(wt.LoopOver[0].TaskReferenceName, loopIteration(t))) == nil
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
		if fresh, paths, err := d.evaluateAside(wt.InputParameters, loop.ID); err == nil {
			in, deferred = fresh, paths
		}
	}
	in[loop.Ref] = copyMap(loop.Output)
	data := map[string]bool{loop.Ref: true} // keys holding outputs: data, never expressions
	n := loopIteration(loop)
	if rec, ok := loop.Output[strconv.Itoa(n)].(map[string]any); ok {
		for ref, out := range rec {
			in[ref], data[ref] = out, true
		}
	}
	if wt := d.plan.config(loop); wt != nil {
		earlierOutputs(loop, wt, n, in, data)
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

// earlierOutputs adds to a condition's document the tasks of the loop's
// body that iteration n did not run (a SWITCH's branch not taken), each as
// the newest iteration that ran it left it: Conductor gives the condition
// every task of the body by its reference name, the newest of each, so
// that a condition reading such a task ($.poll.status) goes on where it
// threw a TypeError and failed the loop. The iterations' records hold
// them; those keepLastN dropped are gone, as Conductor removes their
// tasks. The look back stops once every task of the body is found.
func earlierOutputs(loop *Task, wt *conductor.WorkflowTask, n int, in map[string]any, data map[string]bool) {
	missing := map[string]bool{}
	walk(wt.LoopOver, "", func(_ string, c *conductor.WorkflowTask) {
		if !data[c.TaskReferenceName] {
			missing[c.TaskReferenceName] = true
		}
	})
	for k := n - 1; k >= 1 && len(missing) > 0; k-- {
		rec, ok := loop.Output[strconv.Itoa(k)].(map[string]any)
		if !ok {
			break // keepLastN dropped this one and those before it
		}
		for ref := range missing {
			if out, ok := rec[ref]; ok {
				in[ref], data[ref] = out, true
				delete(missing, ref)
			}
		}
	}
}

// iterationTasks returns the tasks of iteration n of the loop placed at
// ln, in list order. Every task of an iteration comes after the loop task
// and after the tasks of the iterations before it (an iteration starts
// once the one before ended; a retry or a rerun appends): the scan goes
// back from the end of the list to the iteration before, not over every
// iteration, which made a loop of n iterations O(n²).
func (d *decision) iterationTasks(loop *Task, ln *node, n int) []*Task {
	var out []*Task
	for i := len(d.w.Tasks) - 1; i >= 0; i-- {
		t := d.w.Tasks[i]
		if t.ID == loop.ID {
			break
		}
		if t.Iteration > n || !d.inLoop(t, ln) {
			continue
		}
		if t.Iteration < n {
			break
		}
		out = append(out, t)
	}
	slices.Reverse(out)
	return out
}

// iterationRecord maps each task of an iteration (by reference name without
// the suffix) to its output.
func iterationRecord(body []*Task) map[string]any {
	rec := map[string]any{}
	for _, t := range body {
		if !t.Retried && conductor.TaskTerminal(t.Status) {
			rec[baseRef(t.Ref)] = nonNil(t.Output)
		}
	}
	return rec
}

// keepLastN drops, as iteration n of the loop ends, what its iterations
// older than the last inputParameters.keepLastN left: their entries in the
// loop's output, and their tasks, which Conductor removes from the
// workflow (the tasks go at the end of the round, see removeTrimmed).
func (d *decision) keepLastN(loop *Task, ln *node, n int, change *loopChange) {
	keep := intOf(loop.Input["keepLastN"])
	if keep < 1 || n <= keep {
		return
	}
	// The output holds at most keepLastN entries (and the condition's
	// keys) when this runs: it is trimmed at every iteration's end.
	for k := range loop.Output {
		if i, err := strconv.Atoi(k); err == nil && i <= n-keep {
			change.drop = append(change.drop, k)
		}
	}
	// The oldest iterations follow the loop task; the scan stops at the
	// first task of an iteration kept.
	var ids []string
	for i := d.w.taskIndex(loop.ID) + 1; i > 0 && i < len(d.w.Tasks); i++ {
		t := d.w.Tasks[i]
		if t.Iteration == 0 || !d.inLoop(t, ln) {
			continue
		}
		if t.Iteration > n-keep {
			break
		}
		if !t.Active() {
			ids = append(ids, t.ID)
		}
	}
	if len(ids) > 0 {
		d.trimmed = append(d.trimmed, trimmed{loop: loop.ID, ids: ids})
	}
}

// trimmed are the tasks of a loop's iterations past keepLastN.
type trimmed struct {
	loop string
	ids  []string
}

// removeTrimmed removes the tasks keepLastN trimmed this round. It waits
// for the round's end: a round's passes go over the task list by index.
func (d *decision) removeTrimmed() {
	for _, tr := range d.trimmed {
		d.emit(&schemas.TasksRemoved{TaskIDs: tr.ids, Loop: tr.loop, Time: d.now})
	}
	if len(d.trimmed) > 0 {
		d.trimmed, d.w.sweep = nil, sweep{}
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
		if p := d.w.task(t.ParentTaskID); p != nil {
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
	selected := t.Case
	if selected == "" && !t.CaseDefault {
		selected, _ = t.Output["selectedCase"].(string) // recorded before Case was
	}
	if branch := wt.DecisionCases[selected]; len(branch) > 0 {
		return branch
	}
	return wt.DefaultCase
}

// caseOf records the case a SWITCH or DECISION selected: the
// decisionCases key it names, or the default case.
func caseOf(wt *conductor.WorkflowTask, selected string) (key string, isDefault bool) {
	if _, ok := wt.DecisionCases[selected]; ok {
		return selected, false
	}
	return "", true
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
