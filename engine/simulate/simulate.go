// Package simulate runs a workflow through the real decider in memory,
// without workers, the log or any effect, answering each task with a
// mocked result: Conductor's POST /api/workflow/test.
//
// What runs and what is mocked:
//
//   - Tasks the decider completes itself run for real: SWITCH (value-param),
//     FORK_JOIN and JOIN, SET_VARIABLE, TERMINATE, NOOP, and whatever other
//     types the decider decides without a worker.
//   - Operators (Options.Operators: INLINE, JSON_JQ_TRANSFORM, a script
//     SWITCH, a DO_WHILE's condition) run for real too, as Conductor's test
//     runs them, unless a mock for the task is given. Their input is as
//     scheduled: secret and environment references are not resolved.
//   - Worker tasks (SIMPLE and the like) and other system-worker tasks
//     (HTTP, and the other types an executor runs) are never executed: each attempt
//     takes the next mock of taskRefToMockOutput[ref] (the reference name,
//     or the name without a DO_WHILE __n suffix), in order, so a FAILED
//     mock followed by a COMPLETED one exercises a retry. Retry and callback
//     delays pass on a virtual clock. A task without a mock left completes
//     with an empty output.
//   - WAIT and HUMAN tasks complete at once, with their mock if one is given.
//   - A SUB_WORKFLOW task with a mock takes it; otherwise its child is
//     simulated (with subWorkflowTestRequest[ref] if given: its mocks, and
//     its definition if it names one) and the child's end becomes the task's.
//   - Nothing is appended, dispatched or started: failure workflows and
//     START_WORKFLOW targets are not run.
//   - Nothing is sealed either: Options.Hide is handed the values a run
//     would seal, for the view of the simulation to show as "***"
//     wherever they went.
package simulate

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/masking"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// Definitions finds registered workflow definitions.
type Definitions interface {
	LookupWorkflowDef(ctx context.Context, name string, version *int) (*conductor.WorkflowDef, error)
}

// Operator runs a system task type in memory (executor.SystemTask).
type Operator interface {
	Execute(ctx context.Context, task *conductor.Task) conductor.TaskResult
}

// dropper is an Operator whose run may also delete members of the task's
// output (executor.OutputDropper): a loop condition.
type dropper interface {
	ExecuteDropping(ctx context.Context, task *conductor.Task) (res conductor.TaskResult, drop []string)
}

// Options configure Run.
type Options struct {
	Defs Definitions
	// Operators run the system task types they name for real.
	Operators map[string]Operator
	// TaskDef returns a registered task definition, or nil.
	TaskDef   func(name string) *conductor.TaskDef
	CreatedBy string
	// Now is the virtual clock's start.
	Now time.Time
	// Hide, when set, is handed each value a run of the workflow (or of
	// a simulated sub-workflow) would seal: every leaf under a _secrets
	// or _masked key of its input, its tasks' inputs and outputs and its
	// output, and the input fields its definition masks or copies into
	// such a block; a string as its text, anything else as its JSON. A
	// run's views show those as "***" wherever they went (redaction), and
	// the simulation's must too: it copies them as they are into
	// variables, outputs and other tasks' inputs.
	Hide func(plain []byte)
}

const (
	// maxSteps bounds the decisions of one simulation (sub-workflows
	// included), so that a definition that never ends cannot hang it.
	maxSteps = 10000
	// maxDepth bounds sub-workflow nesting.
	maxDepth = 8
)

// WorkerID is the worker id simulated tasks are taken by.
const WorkerID = "workflow-test"

// Run simulates req and returns the workflow's state when it ended, or
// when nothing more could happen without a real worker or clock. An
// unknown definition is fault.ErrNotFound, an invalid one or a malformed
// mock fault.ErrInvalid.
func Run(ctx context.Context, req conductor.WorkflowTestRequest, o Options) (*engine.Workflow, error) {
	def, err := definition(ctx, o, req.StartWorkflowRequest)
	if err != nil {
		return nil, err
	}
	s := &sim{ctx: ctx, o: o, now: o.Now, steps: new(int)}
	if s.now.IsZero() {
		s.now = time.Now()
	}
	return s.run(def, req, uuid.NewString(), "", "", 0)
}

// definition returns the inline definition or the registered one.
func definition(ctx context.Context, o Options, req conductor.StartWorkflowRequest) (*conductor.WorkflowDef, error) {
	defs := o.Defs
	if def := req.WorkflowDef; def != nil {
		if def.Name == "" {
			def.Name = req.Name
		}
		var templates engine.TaskTemplates
		if o.TaskDef != nil {
			templates = func(name string) map[string]any {
				if td := o.TaskDef(name); td != nil {
					return td.InputTemplate
				}
				return nil
			}
		}
		if err := engine.ValidateWorkflowDefWith(def, templates); err != nil {
			return nil, err
		}
		if len(def.Raw) == 0 {
			return nil, fault.Invalid("workflow definition %s has no JSON", def.Name)
		}
		return def, nil
	}
	if req.Name == "" {
		return nil, fault.Invalid("name or workflowDef is required")
	}
	if defs == nil {
		return nil, fault.NotFound("workflow definition %s not found", req.Name)
	}
	return defs.LookupWorkflowDef(ctx, req.Name, req.Version)
}

// sim is one workflow's simulation; children get their own.
type sim struct {
	ctx   context.Context
	o     Options
	now   time.Time
	steps *int // shared with children
	mocks map[string][]conductor.TaskMock
	subs  map[string]conductor.WorkflowTestRequest
	depth int
	// starts are the child starts the decisions asked for, by child id.
	starts map[string]engine.StartWorkflow
	// stuck are SUB_WORKFLOW tasks whose child could not finish.
	stuck map[string]bool
}

func (s *sim) run(def *conductor.WorkflowDef, req conductor.WorkflowTestRequest, id, parentID, parentTaskID string, depth int) (*engine.Workflow, error) {
	w, err := s.simulate(def, req, id, parentID, parentTaskID, depth)
	if err != nil {
		return nil, err
	}
	if err := s.hide(w); err != nil {
		return nil, err
	}
	return w, nil
}

func (s *sim) simulate(def *conductor.WorkflowDef, req conductor.WorkflowTestRequest, id, parentID, parentTaskID string, depth int) (*engine.Workflow, error) {
	s.mocks, s.subs, s.depth = req.TaskRefToMockOutput, req.SubWorkflowTestRequest, depth
	s.starts, s.stuck = map[string]engine.StartWorkflow{}, map[string]bool{}
	start := engine.Start{WorkflowID: id, Def: def, Request: req.StartWorkflowRequest, CreatedBy: s.o.CreatedBy,
		ParentWorkflowID: parentID, ParentWorkflowTaskID: parentTaskID}
	w, err := s.decide(nil, start)
	if err != nil {
		return nil, err
	}
	for !w.Terminal() && w.Status != conductor.WorkflowPaused {
		if err := s.ctx.Err(); err != nil {
			return nil, err
		}
		if *s.steps >= maxSteps {
			return w, nil
		}
		next, acted, err := s.step(w)
		if err != nil {
			return nil, err
		}
		w = next
		if acted {
			continue
		}
		if engine.Pending(w) {
			// A long loop's decision stopped between iterations: the
			// next decision goes on, as the executor's tick does.
			if w, err = s.decide(w, engine.Tick{}); err != nil {
				return nil, err
			}
			continue
		}
		// Nothing to answer: let the virtual clock run to the next deadline
		// (a retry or callback delay, a timeout).
		at := int64(0)
		for _, d := range engine.Deadlines(w) {
			if d > s.now.UnixMilli() {
				at = d
				break
			}
		}
		if at == 0 {
			return w, nil
		}
		s.now = time.UnixMilli(at)
		if w, err = s.decide(w, engine.Tick{}); err != nil {
			return nil, err
		}
	}
	return w, nil
}

// step answers the first task that waits for an answer.
func (s *sim) step(w *engine.Workflow) (*engine.Workflow, bool, error) {
	now := s.now.UnixMilli()
	for _, t := range w.Tasks {
		switch {
		case t.Status == conductor.TaskScheduled && t.AvailableAt <= now:
			next, err := s.execute(w, t)
			return next, true, err
		case t.Status == conductor.TaskInProgress && (t.Type == conductor.TaskTypeWait || t.Type == conductor.TaskTypeHuman):
			next, err := s.report(w, t)
			return next, true, err
		case t.Status == conductor.TaskInProgress && t.Type == conductor.TaskTypeStartWorkflow:
			// The target is not run: its start is taken to succeed.
			if _, ok := s.peek(t.Ref); ok {
				next, err := s.report(w, t)
				return next, true, err
			}
			next, err := s.decide(w, engine.Result{Result: conductor.TaskResult{TaskID: t.ID, WorkflowInstanceID: w.ID,
				Status: conductor.TaskCompleted, OutputData: t.Output}})
			return next, true, err
		case t.Status == conductor.TaskInProgress && t.Type == conductor.TaskTypeSubWorkflow && !s.stuck[t.ID]:
			if _, ok := s.peek(t.Ref); ok {
				next, err := s.report(w, t)
				return next, true, err
			}
			next, err := s.child(w, t)
			return next, true, err
		}
	}
	return w, false, nil
}

// execute takes a scheduled task and reports its mocked result.
func (s *sim) execute(w *engine.Workflow, t *engine.Task) (*engine.Workflow, error) {
	if m, ok := s.peek(t.Ref); ok && m.QueueWaitTime > 0 {
		s.now = s.now.Add(time.Duration(m.QueueWaitTime) * time.Millisecond)
	}
	op, operated := s.o.Operators[t.Type]
	if _, mocked := s.peek(t.Ref); mocked || t.IsWorkerTask() {
		operated = false
	}
	d, err := s.decision(w, engine.Take{TaskID: t.ID, WorkerID: WorkerID, System: !t.IsWorkerTask()})
	if err != nil {
		return nil, err
	}
	taken, ok := d.Reply.(*engine.Task)
	if !operated || !ok {
		return s.report(d.State, d.State.TaskByID(t.ID))
	}
	var res conductor.TaskResult
	var drop []string
	if dr, ok := op.(dropper); ok {
		res, drop = dr.ExecuteDropping(s.ctx, taken.HandOffView(d.State))
	} else {
		res = op.Execute(s.ctx, taken.HandOffView(d.State))
	}
	res.TaskID, res.WorkflowInstanceID, res.WorkerID = t.ID, d.State.ID, WorkerID
	return s.decide(d.State, engine.Result{Result: res, DropOutput: drop})
}

// report answers a task with its next mock, or completes it.
func (s *sim) report(w *engine.Workflow, t *engine.Task) (*engine.Workflow, error) {
	res := conductor.TaskResult{TaskID: t.ID, WorkflowInstanceID: w.ID, Status: conductor.TaskCompleted,
		OutputData: map[string]any{}, WorkerID: WorkerID}
	if m, ok := s.take(t.Ref); ok {
		if m.Status != "" {
			res.Status = m.Status
		}
		if m.Output != nil {
			res.OutputData = m.Output
		}
		if m.ExecutionTime > 0 {
			s.now = s.now.Add(time.Duration(m.ExecutionTime) * time.Millisecond)
		}
	}
	switch res.Status {
	case conductor.TaskCompleted, conductor.TaskInProgress:
	case conductor.TaskFailed, conductor.TaskFailedWithTerminalError:
		res.ReasonForIncompletion = "mocked " + res.Status
	default:
		return nil, fault.Invalid("mock for task %s: status %q, want COMPLETED, FAILED, FAILED_WITH_TERMINAL_ERROR or IN_PROGRESS", t.Ref, res.Status)
	}
	return s.decide(w, engine.Result{Result: res})
}

// child simulates the child workflow of a SUB_WORKFLOW task and reports
// how it ended.
func (s *sim) child(w *engine.Workflow, t *engine.Task) (*engine.Workflow, error) {
	start, ok := s.starts[t.SubWorkflowID]
	if !ok || s.depth+1 >= maxDepth {
		reason := "sub workflow nesting deeper than " + fmt.Sprint(maxDepth)
		if !ok {
			reason = "sub workflow not started"
		}
		return s.decide(w, engine.ChildFinished{ChildID: t.SubWorkflowID, Status: conductor.WorkflowFailed, Reason: reason, NotStarted: true})
	}
	req := s.subs[t.Ref]
	sreq := req.StartWorkflowRequest
	if sreq.WorkflowDef == nil && sreq.Name == "" {
		sreq.Name, sreq.Version = start.Name, start.Version
		if len(start.Def) > 0 {
			var def conductor.WorkflowDef
			if err := conductor.Unmarshal(start.Def, &def); err != nil {
				return nil, fault.Invalid("sub workflow %s: %v", t.Ref, err)
			}
			sreq.WorkflowDef = &def
		}
	}
	def, err := definition(s.ctx, s.o, sreq)
	if err != nil {
		return nil, fmt.Errorf("sub workflow %s: %w", t.Ref, err)
	}
	req.StartWorkflowRequest = sreq
	req.Input, req.CorrelationID, req.Priority, req.TaskToDomain = start.Input, start.CorrelationID, start.Priority, start.TaskToDomain
	cs := &sim{ctx: s.ctx, o: s.o, now: s.now, steps: s.steps}
	c, err := cs.run(def, req, start.WorkflowID, w.ID, t.ID, s.depth+1)
	if err != nil {
		return nil, err
	}
	s.now = cs.now
	if !c.Terminal() {
		s.stuck[t.ID] = true
		return w, nil
	}
	return s.decide(w, engine.ChildFinished{ChildID: c.ID, Name: c.Name, Version: c.Version, Status: c.Status, Output: c.Output, Reason: c.Reason})
}

// hide hands Options.Hide what a run of w would have sealed (see there).
// w holds it all when it ends: its tasks' inputs and outputs, retried
// ones included.
func (s *sim) hide(w *engine.Workflow) error {
	if s.o.Hide == nil {
		return nil
	}
	found := func(plain []byte) {
		var text string
		if json.Unmarshal(plain, &text) == nil {
			plain = []byte(text)
		}
		s.o.Hide(plain)
	}
	var fields []string
	if def, err := w.Def(); err == nil {
		fields = def.MaskedFields
	}
	secrecy, err := engine.SecretInput(w.DefJSON)
	if err != nil {
		return fmt.Errorf("simulate %s: %w", w.Name, err)
	}
	secrets, masked := secrecy.Fields(w.Input)
	_, err = masking.SealInput(masking.DrySealer{}, nil, "", w.Input, fields, secrets, masked, found)
	if err == nil {
		_, err = masking.SealFields(masking.DrySealer{}, nil, "", w.Output, fields, found)
	}
	for _, t := range w.Tasks {
		for _, m := range []map[string]any{t.Input, t.Output} {
			if err == nil {
				_, err = masking.SealKeys(masking.DrySealer{}, nil, "", m, found)
			}
		}
	}
	if err != nil {
		return fmt.Errorf("simulate %s: %w", w.Name, err)
	}
	return nil
}

func (s *sim) decide(w *engine.Workflow, trig engine.Trigger) (*engine.Workflow, error) {
	d, err := s.decision(w, trig)
	return d.State, err
}

func (s *sim) decision(w *engine.Workflow, trig engine.Trigger) (engine.Decision, error) {
	*s.steps++
	d, err := engine.Decide(engine.Input{State: w, Trigger: trig, Now: s.now, TaskDef: s.o.TaskDef})
	if err != nil {
		return engine.Decision{}, err
	}
	for _, e := range d.Effects {
		if sw, ok := e.(engine.StartWorkflow); ok && sw.ParentWorkflowID != "" {
			s.starts[sw.WorkflowID] = sw
		}
	}
	return d, nil
}

// peek returns the next mock of a task without using it up.
func (s *sim) peek(ref string) (conductor.TaskMock, bool) {
	key := s.mockKey(ref)
	if len(s.mocks[key]) == 0 {
		return conductor.TaskMock{}, false
	}
	return s.mocks[key][0], true
}

// take uses up the next mock of a task.
func (s *sim) take(ref string) (conductor.TaskMock, bool) {
	m, ok := s.peek(ref)
	if ok {
		key := s.mockKey(ref)
		s.mocks[key] = s.mocks[key][1:]
	}
	return m, ok
}

// mockKey is the key of ref's mocks: the reference name, or the name
// without its loop iteration suffix.
func (s *sim) mockKey(ref string) string {
	if _, ok := s.mocks[ref]; ok {
		return ref
	}
	if i := strings.LastIndex(ref, "__"); i > 0 {
		return ref[:i]
	}
	return ref
}
