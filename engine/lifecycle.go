package engine

import (
	"bytes"
	"cmp"
	"fmt"
	"slices"

	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
)

func (d *decision) requireTerminal(op string) error {
	if !d.w.Terminal() {
		return fault.Conflict("workflow %s is %s: only a terminal workflow can be %s", d.w.ID, d.w.Status, op)
	}
	return nil
}

// startOver resets the workflow and schedules its first task.
func (d *decision) startOver(reset *schemas.WorkflowReset) {
	d.emit(reset)
	plan, err := d.w.planFor()
	if err != nil {
		d.finish(conductor.WorkflowFailed, err.Error(), map[string]any{})
		return
	}
	d.plan = plan
	if len(plan.def.Tasks) > 0 {
		d.schedule(plan.def.Tasks[0], scheduleOpts{})
	}
}

func (d *decision) restart(r Restart) error {
	if err := d.requireTerminal("restarted"); err != nil {
		return err
	}
	if err := d.refuseUnwaited(r.Ancestors, d.w.ID, "restart", false); err != nil {
		return err
	}
	def := d.plan.def
	if r.Def != nil {
		def = r.Def // useLatestDefinitions: the definition it will run
		if err := d.decidedFor("restart", r.DecidedFor); err != nil {
			return err
		}
	}
	if d.w.Status == conductor.WorkflowCompleted && !def.IsRestartable() {
		return fault.NotFound("workflow %s is COMPLETED and its definition is not restartable", d.w.ID)
	}
	reset := &schemas.WorkflowReset{Kind: schemas.ResetRestart, Time: d.now}
	if r.Def != nil {
		reset.Def = r.Def.Raw
		if !bytes.Equal(r.Def.Raw, d.plan.def.Raw) {
			d.runAs(r.By, r.Author)
		}
		// One that does not parse runs nothing: startOver fails the
		// workflow at once.
		if p, err := plans.get(r.Def.Raw); err == nil {
			reset.InputFields = d.keptInput(p)
		}
	}
	d.startOver(reset)
	d.reopened("", d.w.ResetTime)
	return nil
}

func (d *decision) rerun(r Rerun) error {
	if err := d.requireTerminal("rerun"); err != nil {
		return err
	}
	// Checked from the workflow asked up, not from this descendant of it
	// holding the task: a rerun asked of an ancestor reruns each workflow
	// up to it from the SUB_WORKFLOW task that ran the child, as a rerun
	// from that task would, jumped over or not (a rerun from the task a
	// jump passed over runs it again, as any rerun does).
	if err := d.refuseUnwaited(r.Ancestors, cmp.Or(r.UpTo, d.w.ID), "rerun", true); err != nil {
		return err
	}
	if r.UpTo != "" && r.UpTo != d.w.ID && (r.Request.WorkflowInput != nil || r.Request.CorrelationID != "") {
		// They are the input and correlation id of the workflow asked
		// (Conductor's), not of this descendant holding the task; the
		// ancestors rerun through it take nothing but the child's news.
		return fault.Invalid("task %s is in sub-workflow %s of workflow %s: a rerun from it takes no workflowInput or correlationId (rerun %s itself, or the task without them)",
			r.Request.ReRunFromTaskID, d.w.ID, r.UpTo, r.UpTo)
	}
	// A correlation id is data too: expressions and children read it.
	if r.Request.WorkflowInput != nil || r.Request.TaskInput != nil || r.Request.CorrelationID != "" {
		d.runAs(r.By)
	}
	return d.rerunFrom(r.Request, "", r.UpTo)
}

// rerunFrom reruns a terminal workflow, from the start or from a task;
// child is the child a SUB_WORKFLOW task rerun from waits for again.
func (d *decision) rerunFrom(r conductor.RerunWorkflowRequest, child, upTo string) error {
	reset := &schemas.WorkflowReset{Kind: schemas.ResetRerun, CorrelationID: r.CorrelationID, Time: d.now}
	if upTo != d.w.ID {
		reset.RerunUpTo = upTo
	}
	if r.WorkflowInput != nil {
		reset.Input, reset.SetInput = r.WorkflowInput, true
	}
	if r.ReRunFromTaskID == "" {
		d.startOver(reset)
		d.reopened("", d.w.ResetTime)
		return nil
	}
	from := d.w.task(r.ReRunFromTaskID)
	if from == nil {
		return fault.NotFound("task %s not found in workflow %s", r.ReRunFromTaskID, d.w.ID)
	}
	if err := d.canRerunFrom(from, r.TaskInput != nil); err != nil {
		return err
	}
	wt := d.plan.config(from)
	reset.KeepBeforeSeq = from.Seq
	// A kept input keeps its secret references; a given one is data, handed
	// over as it is.
	input, deferred, sealedReads := from.Input, from.Deferred, from.SealedReads
	if r.TaskInput != nil {
		input, deferred, sealedReads = r.TaskInput, nil, nil
	}
	ln := d.loopOf(from)
	// The reset makes the failures a pause held back plain ones: failKept
	// acts on them as resume would have.
	var heldBack []string
	for _, t := range d.w.Tasks {
		if t.Held && t.Seq < from.Seq {
			heldBack = append(heldBack, t.ID)
		}
	}
	d.emit(reset)
	if ln != nil {
		// The loop the task belongs to (kept: it was scheduled before its
		// body) runs again from the task's iteration.
		if loop := d.latest(ln.wt.TaskReferenceName); loop != nil {
			d.reopenLoop(loop, from.Iteration)
		}
	}
	// What runs again is scheduled together, as by a retry.
	held := d.hold()
	// The task runs again under a new id, so that a late report from its
	// previous run cannot be taken for the new one. Due at once, as
	// Conductor's rerun queues the task it resets with the
	// callbackAfterSeconds it holds, which the take cleared: its startDelay
	// was waited out when it first ran.
	d.schedule(wt, scheduleOpts{iteration: from.Iteration, input: input, deferred: deferred, sealedReads: sealedReads, parentTaskID: from.ParentTaskID, child: child,
		rerunOf: from, availableAt: d.now})
	if from.ParentTaskID != "" {
		d.respawnForked(d.w.task(from.ParentTaskID))
	}
	// Work the workflow's end interrupted in other branches runs again:
	// left canceled, it would fail the JOIN waiting for it. So does a
	// task whose retry the rerun removed (scheduled after the task rerun
	// from): marked retried, with nothing newer of it, it was acted on by
	// nobody, and the JOIN waited for good for the branch past it, or
	// failed by it.
	for i := 0; i < len(d.w.Tasks) && d.w.Tasks[i].Seq < from.Seq; i++ {
		t := d.w.Tasks[i]
		dropped := t.Retried && d.latest(t.Ref) == t
		if (t.Status == conductor.TaskCanceled && !t.Retried || dropped) && t.Type != conductor.TaskTypeJoin && !d.passedOver(t) {
			d.retryTask(t)
		}
	}
	d.reopenJoins()
	d.release(held)
	d.failKept(from.Seq, heldBack)
	d.reopened(upTo, d.w.ResetTime)
	return nil
}

// canRerunFrom refuses a rerun from task from that could not run it
// again; withInput: the rerun gives the task an input of its own.
func (d *decision) canRerunFrom(from *Task, withInput bool) error {
	if d.plan.config(from) == nil {
		return fault.Invalid("task %s is not in the workflow's definition", from.ID)
	}
	if err := d.canRespawnForked(d.w.task(from.ParentTaskID)); err != nil {
		return err
	}
	if withInput {
		return nil
	}
	return d.canRespawnForked(from)
}

// failKept acts again on the failures a rerun from the task numbered seq
// kept that nothing else acts on: a task of another branch that failed
// before the task its JOIN joins (a JOIN or EXCLUSIVE_JOIN that joins it,
// scheduled or still to come, fails by it itself, and a dynamic fork's
// JOIN joins every task it forked). Left as they were, the JOIN waited
// for good for the branch's later task, never scheduled. Conductor's
// decider finds such a task failed and not yet executed and handles it
// as a failure: retried if it has retries left (a failure a pause held
// back), else the workflow fails again. A joined task whose failure a
// pause held back (heldBack: their ids) is acted on too, as resume would
// have: the JOIN, which waits out a failure held back, failed by it once
// the reset made it a plain one, where its retry was due or, optional,
// it passed.
func (d *decision) failKept(seq int, heldBack []string) {
	joined := map[string]bool{}
	for _, n := range d.plan.nodes {
		if typ := n.wt.TaskType(); typ == conductor.TaskTypeJoin || typ == conductor.TaskTypeExclusiveJoin {
			for _, ref := range n.wt.JoinOn {
				joined[ref] = true
			}
		}
	}
	for i := 0; i < len(d.w.Tasks) && d.w.Status == conductor.WorkflowRunning; i++ {
		t := d.w.Tasks[i]
		if t.Seq >= seq || t.Retried || !unsuccessful(t.Status) || t.Status == conductor.TaskCanceled || t.ParentTaskID != "" ||
			t.Type == conductor.TaskTypeJoin || t.Type == conductor.TaskTypeExclusiveJoin || d.passedOver(t) {
			continue
		}
		if wt := d.plan.config(t); wt == nil || joined[wt.TaskReferenceName] && !slices.Contains(heldBack, t.ID) {
			continue
		}
		d.failed(t)
	}
}

// reopenJoins makes a JOIN the rerun kept wait again when a task it joins
// is gone (the rerun removed it) or did not succeed: the JOIN was
// scheduled with its fork, before the tasks of the branches' later steps,
// so a rerun from one of those keeps it ended. So does a JOIN a jump
// canceled, once a branch it joins runs again: left canceled, the
// workflow ended past the rerun task's branch, what followed the JOIN not
// run again. The branches the jump passed over it does not wait for
// (passedOverBranch).
func (d *decision) reopenJoins() {
	for _, t := range d.w.Tasks {
		if t.Type != conductor.TaskTypeJoin || t.Retried || !conductor.TaskTerminal(t.Status) || d.abandoned(t) {
			continue
		}
		refs, ok := d.joinRefs(t)
		if !ok {
			continue
		}
		for _, ref := range refs {
			if d.passedOverBranch(ref, t.Iteration) {
				continue
			}
			if j := d.latest(iterRef(ref, t.Iteration)); j == nil || !conductor.TaskSuccessful(j.Status) {
				d.emit(&schemas.TaskUpdated{TaskID: t.ID, Status: conductor.TaskInProgress, Time: d.now})
				break
			}
		}
	}
}

func (d *decision) retry(r Retry) error {
	if err := d.requireTerminal("retried"); err != nil {
		return err
	}
	asked := cmp.Or(r.UpTo, d.w.ID)
	if err := d.refuseUnwaited(r.Ancestors, asked, "retry", false); err != nil {
		return err
	}
	if w, parent := lineageOf(d.w, r.Ancestors, asked); r.RefuseIfParentRetried && parentMovedOn(parent, w) {
		return fault.Conflict("workflow %s is a sub-workflow its parent %s no longer waits for (the parent was retried, rerun or restarted since, with a new child), and retryIfRetriedByParent is false",
			w.ID, w.ParentWorkflowID)
	}
	if len(d.w.Tasks) == 0 {
		return fault.Conflict("workflow %s has no tasks to retry", d.w.ID)
	}
	retry := d.retriable()
	if !slices.ContainsFunc(retry, retryable) && d.w.Status != conductor.WorkflowTimedOut {
		return fault.Conflict("workflow %s has no retryable tasks", d.w.ID)
	}
	if t := d.terminatedBy(); t != nil {
		// What its end canceled in other branches would run again, and
		// the workflow on past the TERMINATE: Conductor's decider ends it
		// again at once, by the TERMINATE it finds.
		return fault.Conflict("workflow %s was ended by TERMINATE task %s (%s): a retry would end it again; rerun it from a task before that one, or restart it",
			d.w.ID, t.Ref, t.ID)
	}
	d.emit(&schemas.WorkflowReset{Kind: schemas.ResetRetry, KeepsFailedTask: true, Time: d.now})
	// The tasks run again together: one failed as it is scheduled (a
	// dynamic fork's task refused again) ends the workflow once they all
	// are, and its end cancels them; ended at once, it left those after
	// it scheduled in an ended workflow.
	held := d.hold()
	for _, t := range retry {
		d.retryTask(t)
	}
	d.release(held)
	d.reopened("", d.w.ResetTime)
	return nil
}

// terminatedBy returns the TERMINATE task that ended the workflow, if one
// did.
func (d *decision) terminatedBy() *Task {
	for _, t := range d.w.Tasks {
		if t.Type == conductor.TaskTypeTerminate && t.Status == conductor.TaskCompleted && !t.Retried {
			return t
		}
	}
	return nil
}

// parentMovedOn reports whether parent, child's parent workflow, no longer
// waits for child: the SUB_WORKFLOW task that ran it was retried (a new
// instance runs a new child) or is gone (a rerun or restart removed it).
// It looks the task up as childReopened does, by the child it waits for:
// a parent that reopened its task for the same child (a retry with
// resumeSubworkflowTasks), or reran through it (a new instance of the task
// for the same child), still waits for it.
func parentMovedOn(parent, child *Workflow) bool {
	if parent == nil || child == nil || child.ParentWorkflowID == "" || parent.ID != child.ParentWorkflowID {
		return false
	}
	t := parent.taskRunning(child.ID)
	return t == nil || t.Retried
}

// taskRunning returns the latest SUB_WORKFLOW task that ran child, or nil:
// the one that waits for its news.
func (w *Workflow) taskRunning(child string) *Task {
	var t *Task
	for _, x := range w.Tasks {
		if x.SubWorkflowID == child {
			t = x
		}
	}
	return t
}

// lineageOf returns the workflow id among w and its ancestors (parent
// first, as Retry.Ancestors) and its parent, each nil when not read.
func lineageOf(w *Workflow, ancestors []*Workflow, id string) (*Workflow, *Workflow) {
	line := append([]*Workflow{w}, ancestors...)
	for i, x := range line {
		if x == nil {
			break
		}
		if x.ID == id {
			if i+1 < len(line) {
				return x, line[i+1]
			}
			return x, nil
		}
	}
	return nil, nil
}

// refuseUnwaited refuses the retry, restart or rerun (op) of the workflow
// asked, decided for this one (itself or a descendant of it), when a
// workflow it would run again is the child of a SUB_WORKFLOW task its
// parent went on past (passedOver: a jump passed over it, or its DO_WHILE
// gave up on its iteration): that parent ignores the child's news
// (childReopened), so the child, and what runs again below it, would run
// for nothing, their output read by nobody. The workflows run again are
// this one and each ancestor its news reopens, as childReopened decides
// with the ancestors as read; a rerun reruns each up to the workflow
// asked (rerun), whose own parent is the first checked. Refused rather
// than run on its own as the child of a parent that moved on with a new
// one is: that parent's retry replaced the child, while the parent went on
// past this one with its work undone, and the way to have it done is the
// parent's rerun from that task.
func (d *decision) refuseUnwaited(ancestors []*Workflow, asked, op string, rerun bool) error {
	child := d.w
	news := ChildReopened{ChildID: child.ID, ResetTime: d.now}
	if rerun && asked != child.ID {
		news.RerunUpTo = asked
	}
	reached := asked == child.ID // the walk has reached the workflow asked
	for _, p := range ancestors {
		if p == nil || p.ID != child.ParentWorkflowID {
			return nil
		}
		pd := &decision{w: p, now: d.now}
		pd.plan, _ = p.planFor() // nil: not a definition it can act on, it ignores the news
		if t := p.taskRunning(child.ID); t != nil && news.RerunUpTo == "" && (jumpedOver(t) || pd.plan != nil && pd.abandoned(t)) {
			by := d.w.ID
			if reached {
				by = asked
			}
			return passedOverRefusal(pd, t, child.ID, by, op)
		}
		if pd.plan == nil {
			return nil
		}
		t := pd.reopens(news)
		if t == nil {
			return nil
		}
		if news.RerunUpTo != "" {
			// p reruns from the task that ran the child (childReopened),
			// which must be able to: refused there, the child would run
			// again under a parent that stays ended.
			if err := pd.canRerunFrom(t, false); err != nil {
				return fmt.Errorf("workflow %s would rerun from task %s (%s), which ran sub-workflow %s: %w", p.ID, t.Ref, t.ID, child.ID, err)
			}
		}
		if p.ID == asked {
			news.RerunUpTo, reached = "", true
		}
		child = p
		news.ChildID = p.ID
	}
	return nil
}

// passedOverRefusal is the refusal of the op of workflow by that would run
// child again, the child of p's task t that p went on past.
func passedOverRefusal(p *decision, t *Task, child, by, op string) error {
	how := "a jump passed over"
	if !jumpedOver(t) {
		loop := "loop"
		if ln := p.loopOf(t); ln != nil {
			loop = ln.wt.TaskReferenceName
		}
		how = fmt.Sprintf("its DO_WHILE %s gave up on in iteration %d", loop, t.Iteration)
	}
	if child == by {
		return fault.Conflict("workflow %s is the sub-workflow of task %s (%s) of workflow %s, which %s (%s): the parent went on past it and would not wait for a %s of it; rerun %s from that task instead",
			child, t.Ref, t.ID, p.w.ID, how, t.Reason, op, p.w.ID)
	}
	return fault.Conflict("workflow %s is the sub-workflow of task %s (%s) of workflow %s, which %s (%s): the parent went on past it and would not wait for it, run again by a %s of workflow %s below it; rerun %s from that task instead",
		child, t.Ref, t.ID, p.w.ID, how, t.Reason, op, by, p.w.ID)
}

// retriable returns the tasks a retry runs again: the failed, timed-out
// and canceled ones not retried already, but for those the workflow went
// on past (passedOver).
func (d *decision) retriable() []*Task {
	var out []*Task
	for _, t := range d.w.Tasks {
		if !t.Retried && unsuccessful(t.Status) && !d.passedOver(t) {
			out = append(out, t)
		}
	}
	return out
}

// passedOver reports whether t, unsuccessful, is work the workflow went on
// past without it: an iteration its loop gave up on (abandoned) or a task
// a jump canceled (jumpedOver). Nothing waits for it: a retry, a rerun
// from a later task and its child's retry leave it ended.
func (d *decision) passedOver(t *Task) bool {
	return jumpedOver(t) || d.abandoned(t)
}

// retryable reports whether t, unsuccessful, makes its workflow one to
// retry. A JOIN or loop canceled by the workflow's end is reopened with
// the rest but does not count, as in Conductor: a workflow a TERMINATE
// ended from inside a fork or a loop has nothing to retry, and a retry
// would run on past it.
func retryable(t *Task) bool {
	switch t.Type {
	case conductor.TaskTypeJoin, conductor.TaskTypeExclusiveJoin, conductor.TaskTypeDoWhile:
		return t.Status != conductor.TaskCanceled
	}
	return true
}

// retryTask runs a task of a retried workflow again.
func (d *decision) retryTask(t *Task) {
	switch t.Type {
	case conductor.TaskTypeJoin, conductor.TaskTypeExclusiveJoin:
		d.emit(&schemas.TaskUpdated{TaskID: t.ID, Status: conductor.TaskInProgress, KeepOutput: true, Time: d.now})
		return
	case conductor.TaskTypeDoWhile:
		// A loop resumes where it stopped: its body, or the evaluation
		// of its condition.
		status := conductor.TaskInProgress
		if loopRecorded(t) {
			status = conductor.TaskScheduled
		}
		d.emit(&schemas.TaskUpdated{TaskID: t.ID, Status: status, KeepOutput: true, Time: d.now})
		if status == conductor.TaskScheduled {
			d.effect(handOff(d.w, d.w.task(t.ID))...)
		}
		return
	}
	wt := d.plan.config(t)
	if wt == nil {
		return
	}
	// Due at once: its startDelay was waited out when it first ran, and
	// Conductor's retry queues the copy with no callbackAfterSeconds.
	d.schedule(wt, scheduleOpts{iteration: t.Iteration, retryOf: t, parentTaskID: t.ParentTaskID, availableAt: d.now})
}

// reopened tells the parent, if any, that this workflow runs again, or
// still runs (or is paused) with a child run again; upTo is the ancestor
// a rerun through this workflow was asked of, reset when the run again
// happened: the parent ignores news from before its own end.
func (d *decision) reopened(upTo string, reset int64) {
	if d.w.ParentWorkflowID == "" || d.w.Terminal() {
		// Ended again at once (a dynamic fork's task refused again): its
		// end tells the parent, which a reopening after it would leave
		// waiting for a child that has ended.
		return
	}
	c := ChildReopened{ChildID: d.w.ID, RunsAs: d.w.AlsoRunsAs, ResetTime: reset}
	if upTo != d.w.ID {
		c.RerunUpTo = upTo
	}
	d.effect(ReopenParent{ParentWorkflowID: d.w.ParentWorkflowID, Child: c})
}

// childReopened makes the SUB_WORKFLOW task whose child runs again wait
// for it (reopens): the task the child's failure failed goes back
// IN_PROGRESS, and a parent that ended because of it runs again, its
// other failed work retried as by a retry; a rerun asked of an ancestor
// that went through the child reruns from that task. The child of an
// instance retried since is waited for by a new instance of the task
// (see replacedBy).
func (d *decision) childReopened(c ChildReopened) error {
	t := d.reopens(c)
	if t == nil {
		d.reopenedThrough(c)
		return nil
	}
	if c.RerunUpTo != "" {
		// The rerun below checked this on the state it was given
		// (refuseUnwaited), but this one may have changed since (a
		// compaction that shreds a value of a dynamic fork's input found
		// secret meanwhile), and recovery tells it again later. Refused
		// before anything is recorded: it runs as no one more for a rerun
		// it does not make. A conflict, as the news of a child is one
		// its parent does not take.
		if err := d.canRerunFrom(t, false); err != nil {
			return fault.Conflict("workflow %s does not rerun from task %s (%s) for its sub-workflow %s run again: %v",
				d.w.ID, t.Ref, t.ID, c.ChildID, err)
		}
		d.runAs(c.RunsAs...)
		return d.rerunFrom(conductor.RerunWorkflowRequest{ReRunFromTaskID: t.ID}, c.ChildID, c.RerunUpTo)
	}
	d.runAs(c.RunsAs...)
	// Keeps no failed task nor failed task names: Conductor clears the
	// parents' of a workflow run again (updateAndPushParents), running
	// ones' too (a permissive task's child, a retry's names kept).
	var others []*Task
	ended := d.w.Terminal()
	if ended {
		others = d.retriable()
		d.emit(&schemas.WorkflowReset{Kind: schemas.ResetRetry, Time: d.now})
	}
	waits := t.SubWorkflowID == c.ChildID
	if waits {
		d.emit(&schemas.TaskUpdated{TaskID: t.ID, Status: conductor.TaskInProgress, KeepOutput: true, ClearsFailed: !ended, Time: d.now})
	} else {
		// Under a new id, as a retry runs it, so that the newest instance
		// is the one waiting; its schedule asks for the child.
		d.schedule(d.plan.config(t), scheduleOpts{iteration: t.Iteration, retryOf: t, parentTaskID: t.ParentTaskID, child: c.ChildID})
	}
	for _, o := range others {
		if o.ID != t.ID {
			d.retryTask(o)
		}
	}
	if waits {
		// The child may have ended again before this: ask.
		d.effect(CheckChild{ParentWorkflowID: d.w.ID, ChildID: c.ChildID})
	}
	// Not reset itself (it ran on past the task, or was paused), it
	// passes on the child's time: its own last reset may be older than
	// its parent's end.
	d.reopened("", max(d.w.ResetTime, c.ResetTime))
	return nil
}

// reopenedThrough acts on news of a child running again (c) that the
// SUB_WORKFLOW task waiting for it needs no reopening for: the child
// never ended (it ran on past its own failed task, or was paused holding
// the failure back) and passes on the news of a descendant run again.
// Conductor's updateAndPushParents walks every ancestor up to an optional
// SUB_WORKFLOW task, whatever its status, clearing its failedTaskId and
// failed task names: such a workflow clears them too (those of an end
// before its retry), and tells its own parent. Conductor sets each one
// RUNNING too: a paused one stays paused, not resumed behind its
// operator's back.
func (d *decision) reopenedThrough(c ChildReopened) {
	t := d.w.taskRunning(c.ChildID)
	if c.RerunUpTo != "" || d.w.Terminal() || t == nil || t.Retried || !t.Active() {
		return
	}
	if wt := d.plan.config(t); wt == nil || wt.Optional {
		return
	}
	if d.w.FailedTaskID != "" || len(d.w.FailedTaskRefs) > 0 || len(d.w.FailedTaskNames) > 0 {
		d.emit(&schemas.TaskUpdated{TaskID: t.ID, Status: t.Status, KeepOutput: true, Reason: t.Reason,
			CallbackAfterSeconds: t.CallbackAfterSeconds, ClearsFailed: true, Time: d.now})
	}
	d.reopened("", max(d.w.ResetTime, c.ResetTime))
}

// reopens returns the SUB_WORKFLOW task that news of its child running
// again (c) makes wait again (childReopened), nil when it changes nothing:
// the task that ran the child (its latest instance, not retried since, or
// the one that replaced it, see replacedBy), ended unsuccessfully and not
// optional, of a parent the child's failure ended or holds up. Anything
// else is news the parent has already acted on. refuseUnwaited asks it
// too, so that a refusal follows what the parents would do.
func (d *decision) reopens(c ChildReopened) *Task {
	if d.w.Terminal() && c.ResetTime <= d.w.EndTime {
		// News of a run from before the workflow's end, which recovery
		// sends again while the child runs: the workflow acted on it and
		// ended since (its task, waiting again, timed out, or another
		// task failed), or ignored it while it ran, or its own end
		// canceled the task. Acted on again, one run of the child by an
		// operator would run the workflow again at every recovery. A run
		// since that end is an operator's explicit doing, which reopens
		// it, as Conductor's does.
		return nil
	}
	t := d.w.taskRunning(c.ChildID)
	if t != nil && t.Retried {
		t = d.replacedBy(t, c)
	}
	if t == nil || t.Active() {
		return nil
	}
	if c.RerunUpTo != "" {
		// A rerun asked of an ancestor went through the child: the
		// parent reruns from the task that ran it.
		if !d.w.Terminal() {
			return nil
		}
		return t
	}
	if d.w.Status == conductor.WorkflowCompleted || !unsuccessful(t.Status) {
		return nil
	}
	if d.terminatedBy() != nil {
		// As a retry of the parent is refused: it would run on past its
		// TERMINATE.
		return nil
	}
	if wt := d.plan.config(t); wt == nil || wt.Optional || d.passedOver(t) {
		return nil // an optional task's failure did not stop the parent, nor did the end of what it went on past
	}
	return t
}

// replacedBy returns the instance of old's task that news of old's child
// running again (c) makes the workflow act on, old having been replaced
// by a newer one (its retryCount, or the workflow's retry, ran a new
// child), else nil: the child runs on its own. For the child's own retry,
// restart or rerun it is the newest instance, which a new instance
// waiting for that child retries (see reopens for the rest), for a rerun
// through the child old itself (below). While the workflow runs it waits
// for the newer instance's child: Conductor's updateAndPushParents reopens
// old beside the newer instance, two instances of one task in progress,
// old's end ignored by its decider but holding the workflow's completion
// back, and its child terminated by the workflow's failure. Once the
// workflow has ended, a child run again since is an operator's choice of
// it over the newer one: Conductor runs the workflow again, and its
// decider, which ignores old, ends it again at once by the newer
// instance, terminating the child just run again and starting the
// failure workflow a second time. (News from before the end, which the
// running workflow ignored, reopens has dropped already.) A rerun
// through the child reruns from old itself, as Conductor's rerunWF looks
// for the task in the child of every instance and reruns from the one
// that ran it: the rerun drops every task after old, the newer instances
// among them, so one instance of the task waits.
func (d *decision) replacedBy(old *Task, c ChildReopened) *Task {
	if !d.w.Terminal() {
		return nil
	}
	if c.RerunUpTo != "" {
		return old
	}
	return d.latest(old.Ref)
}

// childExisting makes the SUB_WORKFLOW task whose child was not started,
// its idempotency key held by another child of this workflow, wait for
// that one; it may have ended already, so it is asked at once.
func (d *decision) childExisting(c ChildExisting) {
	var t *Task
	for _, x := range d.w.Tasks {
		if x.SubWorkflowID == c.ChildID && x.Active() {
			t = x
		}
	}
	if t == nil || d.w.Terminal() || c.ExistingID == "" || c.ExistingID == c.ChildID {
		return // late or duplicate news
	}
	d.emit(&schemas.TaskUpdated{TaskID: t.ID, Status: conductor.TaskInProgress, Output: childOutput(c.ExistingID), MergeOutput: true,
		SubWorkflowID: c.ExistingID, Time: d.now})
	d.effect(CheckChild{ParentWorkflowID: d.w.ID, ChildID: c.ExistingID})
}

// childFinished completes or fails the SUB_WORKFLOW tasks waiting for
// child: one, unless others wait for it as the workflow holding their
// idempotency key (ChildExisting).
func (d *decision) childFinished(c ChildFinished) {
	var waiting []string
	for _, x := range d.w.Tasks {
		if x.SubWorkflowID == c.ChildID && x.Active() {
			waiting = append(waiting, x.ID)
		}
	}
	if len(waiting) == 0 || d.w.Terminal() {
		return // late or duplicate news
	}
	d.runAs(c.RunsAs...)
	for _, id := range waiting {
		// A failure may have ended the workflow, which canceled the rest.
		if t := d.w.task(id); t.Active() && !d.w.Terminal() {
			d.childTaskFinished(t, c)
		}
	}
}

func (d *decision) childTaskFinished(t *Task, c ChildFinished) {
	output := copyMap(c.Output)
	if !c.NotStarted {
		output["subWorkflowId"] = c.ChildID
	}
	if c.Status == conductor.WorkflowCompleted {
		d.emit(&schemas.TaskUpdated{TaskID: t.ID, Status: conductor.TaskCompleted, Output: output, Time: d.now})
		return
	}
	reason := c.Reason
	if !c.NotStarted {
		// Conductor's SubWorkflow task names the child (its
		// toShortString): the parent's reason, which is the task's, says
		// which workflow to look into.
		if reason == "" {
			reason = c.Status
		}
		reason = fmt.Sprintf("Sub workflow %s.%d/%s failure reason: %s", c.Name, c.Version, c.ChildID, reason)
	}
	// As Conductor's SubWorkflow task: a terminated child cancels it (not
	// retried; the parent ends TERMINATED), one timed out times it out.
	status := conductor.TaskFailed
	switch c.Status {
	case conductor.WorkflowTimedOut:
		status = conductor.TaskTimedOut
	case conductor.WorkflowTerminated:
		status = conductor.TaskCanceled
	}
	d.emit(&schemas.TaskUpdated{TaskID: t.ID, Status: status, Output: output, Reason: reason, Time: d.now})
	d.failed(d.w.task(t.ID))
}
