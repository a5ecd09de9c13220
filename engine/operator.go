package engine

import (
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// Operator triggers of the workflow API beyond the lifecycle ones in
// triggers.go: skip a task, remove a workflow, reset callback delays.

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

func (SkipTask) triggerName() string       { return "skip_task" }
func (Remove) triggerName() string         { return "remove" }
func (ResetCallbacks) triggerName() string { return "reset_callbacks" }

// handleOperator decides the triggers of this file.
func (d *decision) handleOperator(t Trigger) error {
	switch t := t.(type) {
	case SkipTask:
		return d.skipTask(t)
	case Remove:
		return d.remove(t)
	case ResetCallbacks:
		return d.resetCallbacks()
	}
	return fault.Invalid("unknown trigger %T", t)
}

// applyOperator folds the events of this file; false for other events.
func applyOperator(w *Workflow, ev schemas.Event) bool {
	switch e := ev.(type) {
	case *schemas.WorkflowRemoved:
		w.Removed, w.Archived, w.UpdateTime = true, e.Archived, e.Time
		return true
	}
	return false
}

func (d *decision) skipTask(s SkipTask) error {
	if d.w.Status != conductor.WorkflowRunning {
		return fault.Conflict("workflow %s is %s: only a RUNNING workflow's tasks can be skipped", d.w.ID, d.w.Status)
	}
	n := d.plan.nodes[s.Ref]
	if n == nil {
		return fault.Invalid("task %s is not in the definition of workflow %s", s.Ref, d.w.ID)
	}
	for p := n.parent; p != nil; p = p.parent {
		if p.wt.TaskType() == conductor.TaskTypeDoWhile {
			return fault.Invalid("task %s is inside the DO_WHILE %s and cannot be skipped", s.Ref, p.wt.TaskReferenceName)
		}
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

// reached reports whether a succeeded task leads to t (through other
// reached SKIPPED tasks).
func (d *decision) reached(t *Task, depth int) bool {
	if t.Status != conductor.TaskSkipped {
		return true
	}
	if depth > len(d.w.Tasks) {
		return false
	}
	for _, p := range d.w.Tasks {
		if p == t || p.Retried || !conductor.TaskSuccessful(p.Status) {
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
		d.finish(conductor.WorkflowTerminated, r.Reason, nil)
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
			d.effect(handOff(d.w, d.w.TaskByID(t.ID))...)
		}
	}
	return nil
}
