package engine

import (
	"cmp"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"slices"
	"strings"

	"github.com/flowvault/flowvault/engine/expr"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// progress schedules whatever the current state makes due: successors of
// finished tasks, joins whose branches are done, and the workflow's own end.
func (d *decision) progress() error {
	if d.w == nil || d.w.Removed || d.w.Queued || d.plan == nil {
		// A queued workflow has no task yet, and is not done for it. One
		// decided without its definition, which does not parse, is only
		// ended or told of values (endsUnread, masksUnread): what it
		// schedules next is the definition's to say.
		return nil
	}
	for d.rounds = 0; ; d.rounds++ {
		if d.w.Status != conductor.WorkflowRunning {
			return nil
		}
		if d.rounds >= maxCascade {
			d.finish(conductor.WorkflowFailed, fmt.Sprintf("more than %d scheduling rounds in one decision: the definition loops", maxCascade), nil)
			return nil
		}
		changed := d.step()
		d.removeTrimmed()
		if d.failure != nil {
			return d.failure
		}
		if !changed {
			break
		}
	}
	if d.w.Status == conductor.WorkflowRunning && d.done() {
		return d.complete()
	}
	return nil
}

// sweep is what a decision's rounds know of the task list: the tasks a
// round need not look at again. A task is settled once it ended and, if it
// succeeded, every task that follows it is scheduled: within a decision
// such a task does not change again (only a reset, handled before the
// rounds, or a removal, after which the sweep starts over, touches ended
// tasks). Looking at every task in every round made a decision that runs
// many rounds (a loop of decided tasks over many items) O(n²), and
// looking at every task in each decision's first round made a workflow of
// n tasks O(n²): the sweep stays with the state the decision leaves, for
// the next one, as long as the events folded into it since touch no task
// it settled (followSweep).
//
// A task that runs (not ended) asks nothing of a round but a JOIN, a
// DO_WHILE or an EXCLUSIVE_JOIN, which look at other tasks: the others
// are quiet, left out of open and only counted, until an event changes
// them (followSweep puts one back in open). Keeping every running branch
// of a fork of thousands open made each decision, and Pending after it,
// walk all of them.
type sweep struct {
	open   []int  // indices below next of the tasks not settled, but the quiet ones
	quiet  int    // the tasks below next, not in open, that have not ended
	next   int    // the tasks from here on were not looked at
	lastID string // the id of the task at next-1 then
}

// quiet reports whether a round leaves t as it is whatever the other
// tasks do: it runs, and is not a task that waits on others.
func quiet(t *Task) bool {
	if !t.Active() {
		return false
	}
	switch t.Type {
	case conductor.TaskTypeJoin, conductor.TaskTypeExclusiveJoin, conductor.TaskTypeDoWhile:
		return false
	}
	return true
}

// touchedBy returns the id of the task ev changes in place (none for an
// event that appends a task alone or changes no task), and whether the
// sweep may follow ev at all.
func touchedBy(ev schemas.Event) (string, bool) {
	switch e := ev.(type) {
	case *schemas.TaskScheduled:
		return e.RetriedTaskID, true // marked Retried
	case *schemas.TaskStarted:
		return e.TaskID, true
	case *schemas.TaskUpdated:
		return e.TaskID, true
	case *schemas.TaskLogged, *schemas.VariablesUpdated, *schemas.ValuesMasked, *schemas.SecretsSealed, *schemas.WorkflowRunAs:
		return "", true
	}
	return "", false
}

// quietTouch returns the index of the task ev changes if the sweep of w
// counts it quiet, or -1: Apply asks before it applies ev, since the
// task's status after says nothing of whether it was settled.
func (w *Workflow) quietTouch(ev schemas.Event) int {
	s := &w.sweep
	if s.quiet == 0 {
		return -1
	}
	id, _ := touchedBy(ev)
	if id == "" {
		return -1
	}
	if i := w.taskIndex(id); i >= 0 && i < s.next && quiet(w.Tasks[i]) && !slices.Contains(s.open, i) {
		return i
	}
	return -1
}

// followSweep keeps the sweep of w across ev only if ev leaves the tasks
// it settled as they were: it appends a task, changes an open or a quiet
// one (wasQuiet, from quietTouch: its index, or -1), which is then open,
// or touches no task at all. Whatever else happens (a task settled
// changes, a reset, a removal, a pause or resume, the end), the next
// decision looks at every task again, as every decision once did.
func (w *Workflow) followSweep(ev schemas.Event, wasQuiet int) {
	s := &w.sweep
	if s.next == 0 {
		return
	}
	touched, ok := touchedBy(ev)
	if !ok {
		*s = sweep{}
		return
	}
	if touched == "" {
		return
	}
	i := w.taskIndex(touched)
	if i < 0 || i >= s.next || slices.Contains(s.open, i) {
		return
	}
	if i != wasQuiet {
		*s = sweep{}
		return
	}
	// A new list: states that share the old one by Clone stay apart.
	at, _ := slices.BinarySearch(s.open, i)
	s.open, s.quiet = slices.Insert(slices.Clip(s.open), at, i), s.quiet-1
}

// fits reports whether s was made over ts as it is, or a list that ts
// only adds to: one cut or replaced since makes its indices wrong.
func (s sweep) fits(ts []*Task) bool {
	return s.next <= len(ts) && (s.next == 0 || ts[s.next-1].ID == s.lastID)
}

// candidates are the indices, ascending, of the tasks a round looks at:
// the open ones and those not looked at yet.
func (s *sweep) candidates(ts []*Task) []int {
	if !s.fits(ts) {
		*s = sweep{} // the list was cut: look at everything again
	}
	out := slices.Clip(s.open)
	for i := s.next; i < len(ts); i++ {
		out = append(out, i)
	}
	return out
}

// step runs one round and reports whether it changed anything. Its three
// passes go over the tasks in list order, as they always did: the order
// of what they schedule is the order of the log's records.
func (d *decision) step() bool {
	changed := false
	d.unjoined = d.unjoined[:0]
	cand := d.w.sweep.candidates(d.w.Tasks)
	quiet0 := d.w.sweep.quiet
	for _, i := range cand {
		if d.w.Status != conductor.WorkflowRunning {
			return changed
		}
		t := d.w.Tasks[i]
		if t.Status != conductor.TaskInProgress {
			continue
		}
		switch t.Type {
		case conductor.TaskTypeJoin:
			changed = d.evaluateJoin(t) || changed
		case conductor.TaskTypeExclusiveJoin:
			changed = d.evaluateExclusiveJoin(t) || changed
		}
	}
	// The candidates past the sweep, then every task scheduled meanwhile
	// (by index: scheduling appends to d.w.Tasks).
	var open []int
	nquiet := quiet0 // left out of cand, and counted again below
	visit := func(i int) bool {
		t := d.w.Tasks[i]
		waits := !t.Retried && conductor.TaskSuccessful(t.Status) && d.skipPending(t)
		succeeded := !t.Retried && conductor.TaskSuccessful(t.Status) && !waits
		if succeeded || d.endedPermissive(t) {
			// A fork's branches and its JOIN are scheduled together.
			held := d.hold()
			next := d.successors
			if !succeeded {
				next = d.followers // a fork or a SWITCH that failed chose no branch
			}
			for _, wt := range next(t) {
				if d.w.Status != conductor.WorkflowRunning {
					break
				}
				if d.scheduledAfter(wt.TaskReferenceName, t) {
					continue
				}
				d.schedule(wt, scheduleOpts{iteration: t.Iteration})
				changed = true
			}
			d.release(held)
			if d.w.Status != conductor.WorkflowRunning {
				return false
			}
		}
		switch t := d.w.Tasks[i]; {
		case quiet(t):
			nquiet++
		case waits || t.Active():
			open = append(open, i)
		}
		return true
	}
	next := d.w.sweep.next
	for _, i := range cand {
		if i >= next {
			break
		}
		if !visit(i) {
			return changed
		}
	}
	for i := next; i < len(d.w.Tasks); i++ {
		if !visit(i) {
			return changed
		}
	}
	n := len(d.w.Tasks)
	if d.w.sweep.quiet != quiet0 {
		// An event of this round changed a quiet task, which cand left
		// out (or one reset the sweep): the next round looks at every
		// task.
		d.w.sweep = sweep{}
	} else {
		d.w.sweep = sweep{open: open, quiet: nquiet, next: n}
		if n > 0 {
			d.w.sweep.lastID = d.w.Tasks[n-1].ID
		}
	}
	// Loops last: an iteration has ended only once the successors of its
	// finished tasks are scheduled. A running loop is open; what this
	// pass schedules (an iteration's first task) is never a loop, but it
	// is looked at all the same, as every task was.
	loops := func(i int) bool {
		if d.w.Status != conductor.WorkflowRunning {
			return false
		}
		t := d.w.Tasks[i]
		if t.Type == conductor.TaskTypeDoWhile && t.Status == conductor.TaskInProgress && !loopRecorded(t) {
			changed = d.advanceLoop(t) || changed
		}
		return true
	}
	for _, i := range open {
		if !loops(i) {
			return changed
		}
	}
	for i := n; i < len(d.w.Tasks); i++ {
		if !loops(i) {
			return changed
		}
	}
	if !changed {
		for _, ej := range d.unjoined {
			d.emit(&schemas.TaskUpdated{TaskID: ej.ID, Status: conductor.TaskCompleted, Output: map[string]any{}, Time: d.now})
			changed = true
		}
	}
	return changed
}

// successors are the task configurations that follow t once t succeeded.
// Only a SWITCH or a fork needs its own configuration for that: the
// others are followed by what follows their place in the definition. (A
// dynamic task's configuration is its own copy, decoded on each call:
// asking for it of every finished task made a decision over a dynamic
// fork of n tasks decode n of them.)
func (d *decision) successors(t *Task) []*conductor.WorkflowTask {
	switch {
	case (t.Type == conductor.TaskTypeSwitch || t.Type == conductor.TaskTypeDecision) && t.Status != conductor.TaskSkipped:
		// A skipped SWITCH chose no case: what follows it runs next, as in
		// Conductor.
		wt := d.plan.config(t)
		if wt == nil {
			return nil
		}
		if branch := selectedBranch(t, wt); len(branch) > 0 {
			return branch[:1]
		}
	case t.Type == conductor.TaskTypeForkJoin && t.Status != conductor.TaskSkipped:
		// A skipped fork forks nothing: what follows it runs next.
		wt := d.plan.config(t)
		if wt == nil {
			return nil
		}
		var out []*conductor.WorkflowTask
		for _, b := range wt.ForkTasks {
			if len(b) > 0 {
				out = append(out, b[0])
			}
		}
		if next, why, _ := d.plan.after(t.Ref); why == endNone {
			out = append(out, next)
		}
		return out
	}
	return d.followers(t)
}

// followers are the task configurations that follow t's place in the
// definition.
func (d *decision) followers(t *Task) []*conductor.WorkflowTask {
	if next, why, _ := d.plan.after(t.Ref); why == endNone {
		return []*conductor.WorkflowTask{next}
	}
	return nil
}

// scheduledAfter reports whether the successor ref of pred has an instance
// already. Restart and rerun remove the instances they supersede, so any
// instance that exists counts; inside a loop the iteration suffix keeps
// iterations apart.
func (d *decision) scheduledAfter(ref string, pred *Task) bool {
	return d.latest(iterRef(ref, pred.Iteration)) != nil
}

// evaluateJoin completes a JOIN whose joinOn tasks have all succeeded: the
// tasks the definition names, or after a FORK_JOIN_DYNAMIC those it forked.
// Inside a loop, the tasks of the JOIN's own iteration, and its output
// names them with the iteration's suffix. A joinOn task that
// ended unsuccessfully for good (its failure did not end the workflow: a
// rerun kept it) fails the JOIN, as Conductor's Join does, rather than
// leave it waiting for what will never come.
func (d *decision) evaluateJoin(join *Task) bool {
	refs, ok := d.joinRefs(join)
	if !ok {
		return false
	}
	waits, passed := d.joinWaits(join, refs)
	if waits {
		return false
	}
	if len(passed) > 0 {
		refs = slices.DeleteFunc(slices.Clone(refs), func(ref string) bool { return passed[ref] })
	}
	// Looked at whole only once its counts say it may go on: its output
	// is built once, when they have all succeeded.
	waiting, permissive := false, false
	for _, ref := range refs {
		t := d.latest(iterRef(ref, join.Iteration))
		switch {
		case t != nil && d.endedPermissive(t):
			// Conductor's Join waits for every task it joins before it
			// fails for a permissive one.
			permissive = true
		case t != nil && unsuccessful(t.Status) && !t.Held:
			// The first task of joinOn that failed gives its reason, as
			// Conductor's Join does: clients read the failed task's own
			// words there, and the workflow's reason is the JOIN's.
			d.emit(&schemas.TaskUpdated{TaskID: join.ID, Status: conductor.TaskFailed, KeepOutput: true,
				Reason: failureReason(t), Time: d.now})
			d.failed(d.w.task(join.ID))
			return true
		case t == nil || !conductor.TaskSuccessful(t.Status) || d.skipPending(t):
			waiting = true
		}
	}
	if waiting {
		return false
	}
	if permissive {
		for _, ref := range refs {
			if t := d.latest(iterRef(ref, join.Iteration)); d.endedPermissive(t) {
				d.emit(&schemas.TaskUpdated{TaskID: join.ID, Status: conductor.TaskFailed, KeepOutput: true,
					Reason: failureReason(t), Time: d.now})
				d.failed(d.w.task(join.ID))
				return true
			}
		}
	}
	out := make(map[string]any, len(refs))
	var withErrors []string
	for _, ref := range refs {
		// Keyed by the joined task's reference name as it ran: inside a
		// loop, with its iteration ("p__2"), as Conductor's Join does.
		ref = iterRef(ref, join.Iteration)
		t := d.latest(ref)
		out[ref] = t.Output
		if t.Status == conductor.TaskCompletedWithErrors && d.optional(t) {
			withErrors = append(withErrors, t.Name+"/"+t.ID)
		}
	}
	// An optional task that failed makes the JOIN COMPLETED_WITH_ERRORS, as
	// Conductor's Join does (its reason naming each such task): the JOIN's
	// status tells what joined, without reading each branch. A JOIN that
	// joins such a JOIN is COMPLETED: it is not optional itself.
	if len(withErrors) > 0 {
		d.emit(&schemas.TaskUpdated{TaskID: join.ID, Status: conductor.TaskCompletedWithErrors, Output: out,
			Reason: strings.Join(withErrors, " ") + " completed with errors", Time: d.now})
		return true
	}
	d.emit(&schemas.TaskUpdated{TaskID: join.ID, Status: conductor.TaskCompleted, Output: out, Time: d.now})
	return true
}

// failureReason is what a task that failed says of its failure: its
// reason, else its reference name and status.
func failureReason(t *Task) string {
	if t.Reason != "" {
		return t.Reason
	}
	return fmt.Sprintf("task %s %s", t.Ref, t.Status)
}

// optional reports whether t's configuration marks it optional.
func (d *decision) optional(t *Task) bool {
	wt := d.plan.config(t)
	return wt != nil && wt.Optional
}

// permissive reports whether t's configuration marks it permissive and
// not optional (optional wins, as in Conductor), outside a DO_WHILE: a
// loop's iteration ends only with its last task's success, so a failure
// in its body ends the workflow as any task's does.
func (d *decision) permissive(t *Task) bool {
	if t.Iteration > 0 {
		return false
	}
	wt := d.plan.config(t)
	return wt != nil && wt.Permissive && !wt.Optional
}

// endedPermissive reports whether t is a permissive task that ended
// unsuccessfully for good: its workflow went on past it.
func (d *decision) endedPermissive(t *Task) bool {
	return t != nil && !t.Retried && unsuccessful(t.Status) && !t.Held && d.permissive(t)
}

// joinRefs are the tasks a JOIN waits for (see evaluateJoin).
func (d *decision) joinRefs(join *Task) ([]string, bool) {
	wt := d.plan.config(join)
	if wt == nil {
		return nil, false
	}
	if refs, dynamic := d.dynamicJoinRefs(join); dynamic {
		return refs, true
	}
	return wt.JoinOn, true
}

// passedOverBranch reports whether a jump passed over the fork branch of
// ref, a task a JOIN of the given iteration waits for: ref, or a task on
// the way to it in its branch (in a SWITCH's case too), was canceled by
// the jump and kept by a rerun from another branch, and nothing runs the
// branch on. The JOIN waits for the tasks of the branches that are live,
// and does not fail by one the jump canceled: nothing waits for what a
// jump passed over (jumpedOver). Left waiting, it waited for good.
func (d *decision) passedOverBranch(ref string, iteration int) bool {
	if d.jumped(ref, iteration) {
		return true
	}
	for n := d.plan.node(ref); n != nil; {
		for _, wt := range n.list[:n.idx] {
			if d.jumpedWithin(wt, iteration) {
				return true
			}
		}
		if n = n.parent; n == nil || n.wt.TaskType() == conductor.TaskTypeForkJoin {
			return false
		}
		if d.jumped(n.wt.TaskReferenceName, iteration) {
			return true
		}
	}
	return false
}

// jumped reports whether the newest instance of ref is one a jump passed
// over.
func (d *decision) jumped(ref string, iteration int) bool {
	t := d.latest(iterRef(ref, iteration))
	return t != nil && jumpedOver(t)
}

// jumpedWithin reports whether the task of wt, or one in the case a SWITCH
// took, is one a jump passed over.
func (d *decision) jumpedWithin(wt *conductor.WorkflowTask, iteration int) bool {
	if d.jumped(wt.TaskReferenceName, iteration) {
		return true
	}
	if typ := wt.TaskType(); typ != conductor.TaskTypeSwitch && typ != conductor.TaskTypeDecision {
		return false
	}
	for _, c := range sortedCases(wt.DecisionCases) {
		if slices.ContainsFunc(wt.DecisionCases[c], func(x *conductor.WorkflowTask) bool { return d.jumpedWithin(x, iteration) }) {
			return true
		}
	}
	return slices.ContainsFunc(wt.DefaultCase, func(x *conductor.WorkflowTask) bool { return d.jumpedWithin(x, iteration) })
}

// done reports whether nothing is left to run.
func (d *decision) done() bool {
	// Past the rounds the sweep has looked at every task: one that runs
	// is open or quiet, and a row of thousands of ended tasks needs no
	// walk.
	if s, ts := d.w.sweep, d.w.Tasks; s.next == len(ts) && s.fits(ts) {
		if s.quiet > 0 {
			return false
		}
		for _, i := range s.open {
			if ts[i].Active() {
				return false
			}
		}
		return true
	}
	for _, t := range d.w.Tasks {
		if t.Active() {
			return false
		}
	}
	return true
}

// complete ends a workflow whose tasks are all done: COMPLETED, or
// FAILED when its definition enforces an outputSchema its output does not
// conform to.
func (d *decision) complete() error {
	for _, t := range d.w.Tasks {
		// Conductor's decider fails a workflow whose permissive task
		// failed for good once it has nothing left to run.
		if d.endedPermissive(t) {
			d.endedBy = t.ID
			d.finish(conductor.WorkflowFailed, failureReason(t), nil)
			return nil
		}
	}
	output, err := d.workflowOutput()
	if errors.Is(err, expr.ErrTooLarge) || errors.Is(err, expr.ErrTooCostly) {
		d.finish(conductor.WorkflowFailed, fmt.Sprintf("outputParameters of workflow %s: %v", d.w.Name, err), map[string]any{})
		return nil
	}
	switch refusal, err := d.outputRefusal(output); {
	case err != nil:
		return err
	case refusal != "":
		d.finish(conductor.WorkflowFailed, refusal, output)
		return nil
	}
	d.finish(conductor.WorkflowCompleted, "", output)
	return nil
}

// outputRefusal holds output, with which the workflow would complete, to
// the outputSchema its definition enforces: "" when it conforms (or none
// is enforced), else the reason the workflow fails instead. An error is a
// check that could not tell, which fails the decision.
func (d *decision) outputRefusal(output map[string]any) (string, error) {
	def := d.plan.def
	if d.in.CheckOutput == nil || !def.EnforceSchema || def.OutputSchema == nil {
		return "", nil
	}
	switch err := d.in.CheckOutput(def, output); {
	case errors.Is(err, fault.ErrInvalid):
		return fmt.Sprintf("output of workflow %s %v", d.w.Name, err), nil
	case err != nil:
		return "", fmt.Errorf("check output of workflow %s: %w", d.w.ID, err)
	}
	return "", nil
}

// canceledBy is the reason of a task its workflow's end canceled.
func canceledBy(status string) string { return "workflow " + status }

// finish moves the workflow to a terminal status: cancels what is still
// running, computes the output (unless given), and lists the consequences.
// FailureWorkflowOutputKey names, in the output of a workflow that started
// its failure workflow, that workflow's id.
const FailureWorkflowOutputKey = "conductor.failure_workflow"

func (d *decision) finish(status, reason string, output map[string]any) {
	for _, t := range d.w.Tasks {
		if t.Active() {
			d.emit(&schemas.TaskUpdated{TaskID: t.ID, Status: conductor.TaskCanceled, KeepOutput: true,
				Reason: canceledBy(status), Time: d.now})
		}
	}
	if output == nil {
		output, _ = d.workflowOutput() // {} when its parameters fail
	}
	if d.plan != nil && startsFailureWorkflow(d.plan.def, status, d.noFailureWorkflow) {
		// As Conductor links a failed workflow to its failure workflow.
		output = maps.Clone(output)
		output[FailureWorkflowOutputKey] = failureWorkflowID(d.w)
	}
	ev := &schemas.WorkflowStatusChanged{Status: status, Reason: reason, Output: output, NoFailureWorkflow: d.noFailureWorkflow, Time: d.now}
	if status != conductor.WorkflowCompleted {
		// Conductor's terminate names the task only while none is named:
		// a terminate request of an ended workflow keeps the one its end
		// named, and the next end of a retried one the one the end before
		// the retry named (its retry leaves failedTaskId set).
		ev.FailedTaskID = cmp.Or(d.w.FailedTaskID, d.endedBy)
		ev.NoFailedTask = ev.FailedTaskID == ""
	}
	ev.FailedTaskRefs, ev.FailedTaskNames = failedNames(d.w)
	d.emit(ev)
	d.effect(terminalEffects(d.w)...)
}

// failedNames are the failedReferenceTaskNames and failedTaskNames an end
// of w records, as Conductor's terminate and completeWorkflow add them
// whatever the end (COMPLETED too): those it holds from its ends before a
// retry or a restart, which keep them, and the ref and taskDefName of
// each task FAILED or FAILED_WITH_TERMINAL_ERROR, an instance retried
// since among them; not one TIMED_OUT. Conductor's are sets (HashSets,
// in no order): these keep the order each was first added in, the
// earlier ends' first, then in the order of the workflow's tasks.
func failedNames(w *Workflow) (refs, names []string) {
	refs, names = slices.Clone(w.FailedTaskRefs), slices.Clone(w.FailedTaskNames)
	seenRef, seenName := setOf(refs), setOf(names)
	for _, t := range w.Tasks {
		if t.Status != conductor.TaskFailed && t.Status != conductor.TaskFailedWithTerminalError {
			continue
		}
		if !seenRef[t.Ref] {
			seenRef[t.Ref] = true
			refs = append(refs, t.Ref)
		}
		if _, name := t.ShownType(); !seenName[name] {
			seenName[name] = true
			names = append(names, name)
		}
	}
	return refs, names
}

func setOf(ss []string) map[string]bool {
	set := make(map[string]bool, len(ss))
	for _, s := range ss {
		set[s] = true
	}
	return set
}

// workflowOutput evaluates outputParameters, or takes the output of the
// last task in the list, as Conductor's decider does (the last one
// scheduled: in a workflow ending in a DO_WHILE, the loop's last task).
// Parameters that fail to evaluate yield {} and their error (one wrapping
// expr.ErrTooLarge for an output over the bound of a record,
// expr.ErrTooCostly for expressions over the decision's steps).
func (d *decision) workflowOutput() (map[string]any, error) {
	if d.plan == nil {
		// A terminate of a workflow whose definition does not parse
		// (endsUnread): its outputParameters, if any, cannot be read,
		// and the last task's output may be what they would leave out.
		// An ended one keeps what it ended with.
		if d.w.Terminal() {
			return copyMap(d.w.Output), nil
		}
		return map[string]any{}, nil
	}
	if len(d.plan.def.OutputParameters) > 0 {
		out, _, err := d.evaluate(d.plan.def.OutputParameters, "")
		if err == nil {
			return out, nil
		}
		return map[string]any{}, err
	}
	if n := len(d.w.Tasks); n > 0 {
		return copyMap(d.w.Tasks[n-1].Output), nil
	}
	return map[string]any{}, nil
}

// failed handles a task that just failed: retry it, let an optional task
// pass, or fail the workflow.
func (d *decision) failed(t *Task) {
	if d.w.Status == conductor.WorkflowPaused {
		// Conductor's decider does nothing for a paused workflow: the
		// retry (or the workflow's end) waits for resume, which acts on
		// the failed tasks not retried.
		return
	}
	// Conductor never retries its built-in control tasks (a loop is
	// reopened by a workflow retry instead).
	if conductor.TaskRetriable(t.Status) && t.RetryCount < t.Policy.RetryCount && !d.totalTimeoutPassed(t) && !builtIn[t.Type] {
		wt := d.plan.config(t)
		if wt != nil {
			d.schedule(wt, scheduleOpts{iteration: t.Iteration, retryOf: t, availableAt: afterSeconds(afterMs(d.now, jitter(t.ID, t.Policy.BackoffJitterMs)), retryDelay(t)), parentTaskID: t.ParentTaskID})
			return
		}
	}
	if d.optional(t) {
		d.emit(&schemas.TaskUpdated{TaskID: t.ID, Status: conductor.TaskCompletedWithErrors, KeepOutput: true, Reason: t.Reason, Time: d.now})
		return
	}
	if d.permissive(t) {
		// Conductor's permissive task: the workflow goes on past it, and
		// fails once nothing is left to run (complete).
		if t.Held {
			// A failure the pause held back is recorded again, as an
			// optional task's is, so that it counts as any other.
			d.emit(&schemas.TaskUpdated{TaskID: t.ID, Status: t.Status, KeepOutput: true, Reason: t.Reason, Time: d.now})
		}
		return
	}
	reason := failureReason(t)
	// Conductor ends the workflow TIMED_OUT when the task that exhausted its
	// retries timed out, whatever its policy, and TERMINATED when it was
	// canceled (a terminated sub-workflow) (DeciderService.retry).
	status := conductor.WorkflowFailed
	switch t.Status {
	case conductor.TaskTimedOut:
		status = conductor.WorkflowTimedOut
	case conductor.TaskCanceled:
		status = conductor.WorkflowTerminated
	}
	d.endedBy = t.ID
	d.finish(status, reason, nil)
}

// builtIn are Conductor's built-in task types (TaskType.isBuiltIn): a
// failure of one is never retried.
var builtIn = map[string]bool{
	conductor.TaskTypeDecision: true, conductor.TaskTypeSwitch: true, conductor.TaskTypeForkJoin: true,
	conductor.TaskTypeForkJoinDynamic: true, conductor.TaskTypeJoin: true, conductor.TaskTypeExclusiveJoin: true,
	conductor.TaskTypeDoWhile: true,
}

func (d *decision) totalTimeoutPassed(t *Task) bool {
	return t.Policy.TotalTimeoutSeconds > 0 && d.now >= afterSeconds(t.FirstScheduled, t.Policy.TotalTimeoutSeconds)
}

// retryDelay is the wait before retry number t.RetryCount+1, in seconds,
// per the task's retry logic, at most maxDelaySeconds: a delay that
// overflows waits as long as it can, as in Conductor, rather than
// wrapping to none.
func retryDelay(t *Task) int64 {
	p := t.Policy
	base := min(max(p.RetryDelaySeconds, 0), maxDelaySeconds)
	delay := base
	switch p.RetryLogic {
	case conductor.RetryExponentialBackoff:
		delay = min(base<<min(t.RetryCount, 31), maxDelaySeconds) // base < 2^31: no overflow
	case conductor.RetryLinearBackoff:
		factor := min(max(p.BackoffScaleFactor, 1), maxDelaySeconds) * int64(t.RetryCount+1)
		if base > 0 && factor > maxDelaySeconds/base {
			delay = maxDelaySeconds
		} else {
			delay = base * factor
		}
	}
	if p.MaxRetryDelaySeconds > 0 {
		delay = min(delay, p.MaxRetryDelaySeconds)
	}
	return delay
}

// jitter derives a deterministic jitter in [0, maxMs) from a task id.
func jitter(id string, maxMs int64) int64 {
	if maxMs <= 0 {
		return 0
	}
	h := fnv.New64a()
	h.Write([]byte(id))
	return int64(h.Sum64() % uint64(maxMs))
}
