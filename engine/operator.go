package engine

import (
	"bytes"
	"fmt"
	"slices"
	"strings"

	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/masking"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// Operator triggers of the workflow API beyond the lifecycle ones in
// triggers.go: skip a task, remove a workflow, reset callback delays,
// upgrade a workflow to another version, jump to a task.

// SkipTask marks a task of the definition that has not been scheduled yet as
// SKIPPED, with the given input and output. When the workflow reaches it,
// the decider passes over it to the task after it (Conductor's skip-task
// API). Only a RUNNING workflow's tasks can be skipped.
type SkipTask struct {
	Ref    string
	Input  map[string]any
	Output map[string]any
	// By is who asked: given input or output makes the workflow run as
	// them.
	By string
}

// Remove removes the workflow from the read models (Conductor's remove and
// terminate-remove). Archive keeps it readable as an archive and requires a
// terminal workflow; Terminate first ends a running or paused one with
// Reason. The workflow's events stay in the log.
type Remove struct {
	Archive   bool
	Terminate bool
	Reason    string
	By        string // as for Terminate
}

// ResetCallbacks makes worker tasks waiting out a callbackAfterSeconds
// delay available at once.
type ResetCallbacks struct{}

// Upgrade moves a running or paused workflow to Def, another version of
// its definition (Orkes's upgrade API). The tasks it holds stay as they
// are and must all be in Def; the tasks of Def before one the workflow
// already reached are SKIPPED, with TaskOutput[ref] as their output, and
// those after it run as Def says. Input, when not nil, replaces the
// workflow's input; a nil one keeps it, recorded again when Def masks a
// field of it held in plain text (keptInput).
type Upgrade struct {
	Def        *conductor.WorkflowDef
	Input      map[string]any
	TaskOutput map[string]map[string]any
	By         string // as for SkipTask
	// Author saved Def: the workflow runs as them too, if Def is not the
	// definition it ran.
	Author string
	// DecidedFor are the principals the caller asked EXECUTE on Def of
	// (Workflow.Principals as it read them), all of whom run Def from
	// then on. The upgrade is refused (fault.ErrStale) when the workflow
	// runs as someone else by now, who joined after the caller's read
	// (an operator's result, a variables update) and would run Def
	// unasked; asked again, the check asks them too. Required: nil is
	// no decision.
	DecidedFor []string
}

// Jump moves a running workflow to the task Ref of its definition's
// top-level list (Orkes's jump API): the tasks running are canceled, and
// Ref is scheduled, with Input when it is not empty and its configured
// inputParameters otherwise. A jump back to a task the workflow already
// ran drops that task's run and everything after it, as a rerun from it
// does, so that the tasks after it run again.
type Jump struct {
	Ref   string
	Input map[string]any
	By    string // as for SkipTask
}

func (SkipTask) triggerName() string       { return "skip_task" }
func (Remove) triggerName() string         { return "remove" }
func (ResetCallbacks) triggerName() string { return "reset_callbacks" }
func (Upgrade) triggerName() string        { return "upgrade" }
func (Jump) triggerName() string           { return "jump" }

// handleOperator decides the triggers of this file.
func (d *decision) handleOperator(t Trigger) error {
	switch t := t.(type) {
	case SkipTask:
		return d.skipTask(t)
	case Remove:
		return d.remove(t)
	case ResetCallbacks:
		return d.resetCallbacks()
	case Upgrade:
		return d.upgrade(t)
	case Jump:
		return d.jump(t)
	}
	return fault.Invalid("unknown trigger %T", t)
}

// applyOperator folds the events of this file; false for other events.
func applyOperator(w *Workflow, ev schemas.Event) (bool, error) {
	switch e := ev.(type) {
	case *schemas.WorkflowRemoved:
		w.Removed, w.Archived, w.UpdateTime = true, e.Archived, e.Time
	case *schemas.WorkflowUpgraded:
		keepCacheKeys(w, e.Def)
		w.DefJSON, w.plan, w.UpdateTime = e.Def, nil, e.Time
		if def, err := parseDef(e.Def); err == nil {
			w.Version = def.Version
		}
		w.Input = setInput(w.Input, e.SetInput, e.Input, e.InputFields)
	case *schemas.WorkflowJumped:
		if len(e.Dropped) > 0 {
			dropped := make(map[string]bool, len(e.Dropped))
			for _, id := range e.Dropped {
				dropped[id] = true
			}
			kept := w.Tasks[:0:0]
			for _, t := range w.Tasks {
				switch {
				case !dropped[t.ID]:
					kept = append(kept, t)
				case t.Active():
					return true, fmt.Errorf("workflow %s: a jump drops task %s, which is %s", w.ID, t.ID, t.Status)
				default:
					w.keepResolved([]*Task{t})
				}
			}
			w.Tasks = kept
		}
		w.UpdateTime = e.Time
	default:
		return false, nil
	}
	return true, nil
}

func (d *decision) upgrade(u Upgrade) error {
	if d.w.Terminal() {
		return fault.Conflict("workflow %s is %s: only a running or paused workflow can be upgraded", d.w.ID, d.w.Status)
	}
	if u.Def == nil || len(u.Def.Raw) == 0 {
		return fault.Invalid("upgrade of workflow %s: no definition", d.w.ID)
	}
	if u.Def.Name != d.w.Name {
		return fault.Invalid("name: workflow %s runs %s, not %s", d.w.ID, d.w.Name, u.Def.Name)
	}
	if err := d.decidedFor("upgrade", u.DecidedFor); err != nil {
		return err
	}
	next, err := plans.get(u.Def.Raw)
	if err != nil {
		return fault.Invalid("upgrade of workflow %s: %v", d.w.ID, err)
	}
	for _, t := range d.w.Tasks {
		if len(t.Config) > 0 {
			continue // a dynamic task carries its own configuration
		}
		wt := next.config(t)
		if wt == nil {
			return fault.Invalid("task %s of workflow %s is not in version %d of %s", baseRef(t.Ref), d.w.ID, u.Def.Version, u.Def.Name)
		}
		if t.Active() && wt.TaskType() != t.Type {
			return fault.Invalid("task %s of workflow %s runs as %s, version %d of %s makes it %s",
				t.Ref, d.w.ID, t.Type, u.Def.Version, u.Def.Name, wt.TaskType())
		}
	}
	if u.Input != nil || len(u.TaskOutput) > 0 {
		d.runAs(u.By)
	}
	if !bytes.Equal(u.Def.Raw, d.w.DefJSON) {
		d.runAs(u.By, u.Author)
	}
	upgraded := &schemas.WorkflowUpgraded{Def: u.Def.Raw, Input: u.Input, SetInput: u.Input != nil, Time: d.now}
	if u.Input == nil {
		upgraded.InputFields = d.keptInput(next)
	}
	d.emit(upgraded)
	d.plan = next
	d.skipPassed(next.def.Tasks, u.TaskOutput)
	return nil
}

// decidedFor refuses to move the workflow onto another definition
// (op, an upgrade or a restart onto the latest) decided for principals
// other than all it runs as: one who joined since the caller read them
// was never asked EXECUTE on it, and would run it. Principals only join,
// so one who is not among them is new; asked again, the caller's check
// asks them too (fault.ErrStale). A caller that decided for nobody
// (nil) has a bug, not a stale read.
func (d *decision) decidedFor(op string, principals []string) error {
	if principals == nil {
		return fmt.Errorf("%s of workflow %s onto a definition decided for nobody", op, d.w.ID)
	}
	for _, p := range d.w.Principals() {
		if !slices.Contains(principals, p) {
			return fault.Stale("workflow %s runs as someone more since its %s was checked: nothing changed; send the request again", d.w.ID, op)
		}
	}
	return nil
}

// keptInput returns the fields of the input the workflow keeps as it
// moves to p's definition (an upgrade, a restart onto the latest version)
// that are to be recorded again, when it holds in plain text a field the
// definition masks: each field the definition masks, or copies into a
// _secrets or _masked block, that is not sealed whole. Recorded, they are
// sealed as a start of the definition would seal them, where kept they
// stayed in plain text in the read models, through compaction, which
// views masked by it. They alone are recorded, not the input around
// them: the whole input took a record as large as the start's, which an
// input near the log's record limit could not have. The start's record
// keeps the input as given, which the version it ran did not mask.
// Otherwise nil: kept as it is.
func (d *decision) keptInput(p *plan) map[string]any {
	if !slices.ContainsFunc(p.def.MaskedFields, func(f string) bool { return unsealed(d.w.Input[f]) }) {
		return nil
	}
	secrets, masked := p.secrecy.Fields(d.w.Input)
	fields := map[string]any{}
	for _, f := range slices.Concat(p.def.MaskedFields, secrets, masked) {
		if v := d.w.Input[f]; unsealed(v) {
			fields[f] = v
		}
	}
	return fields
}

// unsealed reports whether v is data not sealed whole.
func unsealed(v any) bool {
	switch v.(type) {
	case nil, *masking.Sealed:
		return false
	}
	return true
}

// skipPassed records as SKIPPED the tasks of list that the workflow has
// passed without running them: those before the last one it reached.
// The branches of a fork and the cases of a SWITCH it reached are lists
// of their own; a loop's body is left to its next iteration.
func (d *decision) skipPassed(list []*conductor.WorkflowTask, outputs map[string]map[string]any) {
	last := -1
	for i, wt := range list {
		if wt != nil && d.latest(wt.TaskReferenceName) != nil {
			last = i
		}
	}
	for _, wt := range list[:last+1] {
		if wt == nil {
			continue
		}
		ref := wt.TaskReferenceName
		if d.latest(ref) == nil {
			d.emit(&schemas.TaskScheduled{TaskID: taskID(d.w), Ref: ref, Name: wt.Name, Type: wt.TaskType(),
				Status: conductor.TaskSkipped, Seq: d.nextSeq(), Output: outputs[ref], Time: d.now})
			continue
		}
		switch wt.TaskType() {
		case conductor.TaskTypeForkJoin:
			for _, branch := range wt.ForkTasks {
				d.skipPassed(branch, outputs)
			}
		case conductor.TaskTypeSwitch, conductor.TaskTypeDecision:
			for _, c := range sortedCases(wt.DecisionCases) {
				d.skipPassed(wt.DecisionCases[c], outputs)
			}
			d.skipPassed(wt.DefaultCase, outputs)
		}
	}
}

// runningNode is the node of ref in a RUNNING workflow's definition;
// operation ends the error for a workflow that is not running.
func (d *decision) runningNode(ref, operation string) (*node, error) {
	if d.w.Status != conductor.WorkflowRunning {
		return nil, fault.Conflict("workflow %s is %s: only a RUNNING workflow %s", d.w.ID, d.w.Status, operation)
	}
	n := d.plan.nodes[ref]
	if n == nil {
		return nil, fault.Invalid("task %s is not in the definition of workflow %s", ref, d.w.ID)
	}
	return n, nil
}

func (d *decision) jump(j Jump) error {
	n, err := d.runningNode(j.Ref, "can jump to a task")
	if err != nil {
		return err
	}
	if n.parent != nil {
		return fault.Invalid("task %s is inside %s: a workflow jumps only to a task of its top-level list", j.Ref, n.parent.wt.TaskReferenceName)
	}
	if typ := n.wt.TaskType(); typ == conductor.TaskTypeJoin || typ == conductor.TaskTypeExclusiveJoin {
		// It would wait for its fork's branches, which the jump cancels
		// or drops and nothing runs again: for good.
		return fault.Invalid("task %s is a %s: a jump to it would leave it waiting for good for the branches of its fork, which the jump does not run; jump to the fork, or to the task after the %s",
			j.Ref, typ, typ)
	}
	if len(j.Input) > 0 {
		d.runAs(j.By)
	}
	for _, t := range d.w.Tasks {
		if !t.Active() {
			continue
		}
		d.emit(&schemas.TaskUpdated{TaskID: t.ID, Status: conductor.TaskCanceled, KeepOutput: true,
			Reason: jumpedReason + j.Ref, Time: d.now})
		if t := d.w.task(t.ID); t.Type == conductor.TaskTypeSubWorkflow && t.SubWorkflowID != "" {
			d.effect(cancelChild(d.w, t))
		}
	}
	ev := &schemas.WorkflowJumped{Ref: j.Ref, Time: d.now}
	if prev := d.latest(j.Ref); prev != nil {
		for _, t := range d.w.Tasks {
			if at := d.topIndex(t); at >= n.idx || at < 0 && t.Seq >= prev.Seq {
				ev.Dropped = append(ev.Dropped, t.ID)
			}
		}
	}
	d.emit(ev)
	opts := scheduleOpts{}
	if len(j.Input) > 0 {
		opts.input = j.Input
	}
	d.schedule(n.wt, opts)
	return nil
}

// jumpedReason begins the reason of a task a jump canceled; jumpedOver
// reads it back.
const jumpedReason = "jumped to "

// jumpedOver reports whether t is a task a jump canceled that the workflow
// went on past: a jump back drops what it cancels (and a rerun or restart
// from before t drops t), so one still held was passed over by a jump
// forward. A retry or a rerun from a later task does not run it again,
// nor does its child's retry reopen it: nothing waits for it, as nothing
// waits for the tasks the jump passed over without running them. Orkes's
// retry runs the last failed task, not what a jump left behind.
func jumpedOver(t *Task) bool {
	return t.Status == conductor.TaskCanceled && strings.HasPrefix(t.Reason, jumpedReason)
}

// topIndex is the index in the definition's top-level list of the task
// that t is, or that t runs inside of; -1 if the definition does not say
// (a task a dynamic fork forked from data names its fork as parent).
func (d *decision) topIndex(t *Task) int {
	for range len(d.w.Tasks) {
		if n := d.plan.node(t.Ref); n != nil {
			for n.parent != nil {
				n = n.parent
			}
			return n.idx
		}
		if t = d.w.task(t.ParentTaskID); t == nil {
			return -1
		}
	}
	return -1
}

func (d *decision) skipTask(s SkipTask) error {
	n, err := d.runningNode(s.Ref, "can have tasks skipped")
	if err != nil {
		return err
	}
	for p := n.parent; p != nil; p = p.parent {
		if p.wt.TaskType() == conductor.TaskTypeDoWhile {
			return fault.Invalid("task %s is inside the DO_WHILE %s and cannot be skipped", s.Ref, p.wt.TaskReferenceName)
		}
	}
	switch typ := n.wt.TaskType(); typ {
	case conductor.TaskTypeForkJoin, conductor.TaskTypeForkJoinDynamic:
		// Skipped, its branches never run, and its JOIN, which the flow
		// reaches next, waited for them for good (as Conductor's does).
		return fault.Invalid("task %s is a %s and cannot be skipped: its JOIN would wait for branches that never run; skip the tasks of its branches instead",
			s.Ref, typ)
	case conductor.TaskTypeJoin, conductor.TaskTypeExclusiveJoin:
		// Skipped, the flow went on past it while its branches ran, and a
		// rerun or retry that reopened it left it waiting for good.
		return fault.Invalid("task %s is a %s and cannot be skipped: skip the tasks of its fork's branches instead", s.Ref, typ)
	}
	if d.latest(s.Ref) != nil {
		return fault.Conflict("task %s of workflow %s is already scheduled and cannot be skipped", s.Ref, d.w.ID)
	}
	if s.Input != nil || s.Output != nil {
		d.runAs(s.By)
	}
	d.emit(&schemas.TaskScheduled{TaskID: taskID(d.w), Ref: s.Ref, Name: n.wt.Name, Type: n.wt.TaskType(),
		Status: conductor.TaskSkipped, Seq: d.nextSeq(), Input: s.Input, Output: s.Output, Time: d.now})
	return nil
}

// skipPending reports a SKIPPED task the workflow has not reached yet: no
// task that succeeded leads to it. Its successors wait until one does, so
// that skipping a later task does not run the tasks after it early.
func (d *decision) skipPending(t *Task) bool {
	return t.Status == conductor.TaskSkipped && !d.reached(t, 0)
}

// reached reports whether a task that led on leads to t (through other
// reached SKIPPED tasks): one that succeeded, or a permissive one that
// failed, after which its branch goes on as well (left out, the SKIPPED
// task after it was never reached, and the JOIN waited for it for good).
func (d *decision) reached(t *Task, depth int) bool {
	if t.Status != conductor.TaskSkipped {
		return true
	}
	if depth > len(d.w.Tasks) {
		return false
	}
	for _, p := range d.w.Tasks {
		if p == t || p.Retried || !conductor.TaskSuccessful(p.Status) && !d.endedPermissive(p) {
			continue
		}
		for _, wt := range d.successors(p) {
			if iterRef(wt.TaskReferenceName, p.Iteration) == t.Ref && d.reached(p, depth+1) {
				return true
			}
		}
	}
	return false
}

func (d *decision) remove(r Remove) error {
	if r.Terminate && !d.w.Terminal() {
		if r.Reason != "" {
			d.runAs(r.By)
		}
		reason := r.Reason
		if d.plan == nil {
			reason, d.noFailureWorkflow = unreadReason(reason), true // endsUnread
		}
		d.finish(conductor.WorkflowTerminated, reason, nil)
	}
	if r.Archive && !d.w.Terminal() {
		return fault.Invalid("cannot archive workflow %s with status %s: only a terminal workflow can be archived", d.w.ID, d.w.Status)
	}
	d.emit(&schemas.WorkflowRemoved{Archived: r.Archive, Time: d.now})
	return nil
}

func (d *decision) resetCallbacks() error {
	if d.w.Terminal() {
		return fault.Conflict("workflow %s is %s", d.w.ID, d.w.Status)
	}
	for _, t := range d.w.Tasks {
		if t.Status != conductor.TaskScheduled || !t.IsWorkerTask() || t.CallbackAfterSeconds <= 0 || t.AvailableAt <= d.now {
			continue
		}
		d.emit(&schemas.TaskUpdated{TaskID: t.ID, Status: conductor.TaskScheduled, KeepOutput: true, AvailableAt: d.now, Time: d.now})
		if d.w.Status == conductor.WorkflowRunning {
			d.effect(handOff(d.w, d.w.task(t.ID))...)
		}
	}
	return nil
}
