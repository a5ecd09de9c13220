package engine

import (
	"encoding/json"
	"strings"

	"github.com/flowvault/flowvault/masking"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// Conductor renders the workflow as Conductor's Workflow JSON model, as
// every read path shows it: _secrets and _masked values, the definition's
// maskedFields and values found to be secret read as "***" (sealed values
// render as "***" themselves). This is the one rendering every view goes
// through, so masking cannot be forgotten by a new one.
func (w *Workflow) Conductor(includeTasks bool) *conductor.Workflow {
	var fields []string
	def, defErr := w.Def()
	if defErr == nil {
		fields = def.MaskedFields
	}
	out := &conductor.Workflow{
		WorkflowID: w.ID, WorkflowName: w.Name, WorkflowVersion: w.Version, Status: w.Status,
		Input:  w.maskPaths("input", masking.Fields(nonNil(w.Input), fields)),
		Output: w.maskPaths("output", masking.Fields(nonNil(w.Output), fields)), Variables: w.maskPaths("variables", masking.KeysMap(nonNil(w.Variables))),
		CorrelationID: w.CorrelationID, Priority: w.Priority, TaskToDomain: w.TaskToDomain,
		ReasonForIncompletion: w.Reason, FailedReferenceTaskNames: nonNilStrings(w.FailedTaskRefs),
		FailedTaskNames: nonNilStrings(w.FailedTaskNames), ParentWorkflowID: w.ParentWorkflowID,
		ParentWorkflowTaskID: w.ParentWorkflowTaskID, LastRetriedTime: max(w.LastRetriedTime, w.ResumeTime),
		StartTime: w.StartTime, EndTime: w.EndTime, CreateTime: w.CreateTime, UpdateTime: w.UpdateTime,
		CreatedBy: w.CreatedBy, IdempotencyKey: w.IdempotencyKey, Event: w.Event, WorkflowDefinition: conductor.WorkflowDefJSON(w.DefJSON),
		RateLimitKey: w.RateLimitKey, RateLimited: w.Queued,
		Tasks: []*conductor.Task{}, History: []any{},
	}
	if out.TaskToDomain == nil {
		out.TaskToDomain = map[string]string{}
	}
	if defErr != nil && len(w.DefJSON) > 0 {
		// A recorded definition that does not parse may not be JSON
		// either, and would fail the whole answer: the operator who
		// reads why the workflow does not move is told that instead.
		out.WorkflowDefinition = nil
		if !w.Terminal() && out.ReasonForIncompletion == "" {
			out.ReasonForIncompletion = unreadableDef
		}
	}
	if includeTasks {
		view := w.TaskViews()
		for _, t := range w.Tasks {
			out.Tasks = append(out.Tasks, view(t))
		}
	}
	return out
}

// TaskViews returns a function that renders tasks of w as Task.Conductor
// does, for a reader that renders many of them (an execution's tasks, a
// task search's freeText): what a fork's or a JOIN's view shows of other
// tasks is found in one pass over w's tasks, made at the first view that
// needs it, where Task.Conductor passes over them for each fork and JOIN,
// which in a loop of dynamic forks made a view of every task quadratic.
// It only reads w, which must not change while the function is used.
func (w *Workflow) TaskViews() func(*Task) *conductor.Task {
	var forks map[string]*Task
	var defs func(fork *Task) []any
	find := func() {
		if forks != nil {
			return
		}
		forks = map[string]*Task{}
		ids := map[string]bool{}
		for _, t := range w.Tasks {
			if t.Type == conductor.TaskTypeForkJoinDynamic {
				forks[t.Ref] = t
				ids[t.ID] = true
			}
		}
		defs = w.forkedTaskDefs(ids)
	}
	rel := related{
		fork:   func(ref string) *Task { find(); return forks[ref] },
		forked: func(fork *Task) []any { find(); return defs(fork) },
	}
	return func(t *Task) *conductor.Task { return t.conductor(w, rel) }
}

// related finds what a task's view shows of other tasks: fork the latest
// FORK_JOIN_DYNAMIC task of a reference name (see joinInput), forked the
// forkedTaskDefs of a FORK_JOIN_DYNAMIC task.
type related struct {
	fork   func(ref string) *Task
	forked func(fork *Task) []any
}

// Conductor renders the task as Conductor's Task JSON model, masked as
// every read path shows it.
func (t *Task) Conductor(w *Workflow) *conductor.Task {
	return t.conductor(w, related{
		fork:   w.LatestByRef,
		forked: func(fork *Task) []any { return w.forkedTaskDefs(map[string]bool{fork.ID: true})(fork) },
	})
}

// ViewReadsOtherTasks reports whether t's view (Conductor) shows what
// other tasks of its workflow hold: a JOIN's joinOn after a dynamic fork
// (the fork's forkedTasks), a FORK_JOIN_DYNAMIC's forkedTaskDefs (its
// branches'). Every other task's view reads only the task and what w holds
// besides its tasks, so that a reader of one task may render it with its
// workflow's head.
func (t *Task) ViewReadsOtherTasks() bool {
	return t.Type == conductor.TaskTypeJoin || t.Type == conductor.TaskTypeForkJoinDynamic
}

func (t *Task) conductor(w *Workflow, rel related) *conductor.Task {
	out := t.HandOffView(w)
	out.WorkflowTask = w.maskConfig(t, out.WorkflowTask)
	if in := w.joinInput(t, rel.fork); in != nil {
		for k, v := range out.InputData {
			if _, ok := in[k]; !ok {
				in[k] = v
			}
		}
		out.InputData = in
	}
	out.InputData = w.maskPaths("task/"+t.ID+"/input", masking.KeysMap(out.InputData))
	out.OutputData = w.maskPaths("task/"+t.ID+"/output", masking.KeysMap(out.OutputData))
	// A dynamic fork names what it forked in its input too, as Conductor's
	// mapper records it and clients written for Conductor read it (its UI
	// draws the forked tasks from forkedTaskDefs). The log keeps the
	// names in the output alone (expressions read
	// ${fork.output.forkedTasks}); the input's list is the output's as
	// shown, masked, and forkedTaskDefs each forked task's workflowTask
	// as its own view shows it.
	if forked, ok := out.OutputData["forkedTasks"]; ok && t.Type == conductor.TaskTypeForkJoinDynamic {
		in := make(map[string]any, len(out.InputData)+2)
		for k, v := range out.InputData {
			in[k] = v
		}
		in["forkedTasks"] = forked
		in["forkedTaskDefs"] = nonNilAny(rel.forked(t))
		out.InputData = in
	}
	return out
}

// forkedTaskDefs returns a function that gives, for each FORK_JOIN_DYNAMIC
// task whose id forks holds, the configurations (workflowTask) of the
// tasks it forked, in the order it forked them: Conductor's
// forkedTaskDefs. A forked task's retries and reruns keep its
// parentTaskID, and the latest instance's is taken. The forked tasks are
// found in one pass, now; a fork's configurations are rendered when asked
// for, a reader of one task's view asking for few of them.
func (w *Workflow) forkedTaskDefs(forks map[string]bool) func(fork *Task) []any {
	none := func(*Task) []any { return nil }
	if len(forks) == 0 {
		return none
	}
	p, err := w.planFor()
	if err != nil {
		return none
	}
	type branch struct {
		order []string
		last  map[string]*Task
	}
	byFork := map[string]*branch{}
	for _, t := range w.Tasks {
		if t.ParentTaskID == "" || !forks[t.ParentTaskID] {
			continue
		}
		b := byFork[t.ParentTaskID]
		if b == nil {
			b = &branch{last: map[string]*Task{}}
			byFork[t.ParentTaskID] = b
		}
		if _, seen := b.last[t.Ref]; !seen {
			b.order = append(b.order, t.Ref)
		}
		b.last[t.Ref] = t
	}
	return func(fork *Task) []any {
		b := byFork[fork.ID]
		if b == nil {
			return nil
		}
		defs := make([]any, 0, len(b.order))
		for _, ref := range b.order {
			if wt := w.maskConfig(b.last[ref], workflowTaskJSON(p, b.last[ref])); wt != nil {
				defs = append(defs, wt)
			}
		}
		return defs
	}
}

// workflowTaskJSON is the task's workflowTask as its view shows it.
func workflowTaskJSON(p *plan, t *Task) conductor.WorkflowTaskJSON {
	wt := p.config(t)
	if wt == nil {
		return nil
	}
	b, err := json.Marshal(wt)
	if err != nil {
		return nil
	}
	return b
}

func nonNilAny(s []any) []any {
	if s == nil {
		return []any{}
	}
	return s
}

// ShownType is the task's taskType and taskDefName as every view and
// expression (${fork.taskType}) shows them: Conductor's (Task.taskType is
// a worker task's name; a FORK_JOIN or FORK_JOIN_DYNAMIC runs as a task of
// type and name FORK, and a JOIN or an EXCLUSIVE_JOIN is named after its
// type, as Conductor's mappers make them). The state keeps the
// definition's type and name.
func (t *Task) ShownType() (taskType, taskDefName string) {
	switch t.Type {
	case conductor.TaskTypeForkJoin, conductor.TaskTypeForkJoinDynamic:
		return conductor.TaskTypeFork, conductor.TaskTypeFork
	case conductor.TaskTypeJoin, conductor.TaskTypeExclusiveJoin:
		return t.Type, t.Type
	}
	return taskTypeOf(t), t.Name
}

// HandOffView renders the task for whoever runs it: nothing is masked, and
// sealed values are still sealed (the executor's hand-off opens them and
// resolves deferred expressions in this copy). Never show it to a reader.
func (t *Task) HandOffView(w *Workflow) *conductor.Task {
	out := &conductor.Task{
		TaskID: t.ID, ReferenceTaskName: t.Ref, Status: t.Status,
		InputData: nonNil(t.Input), OutputData: nonNil(t.Output), WorkflowInstanceID: w.ID, WorkflowType: w.Name,
		CorrelationID: w.CorrelationID, RetryCount: t.RetryCount, Retried: t.Retried, RetriedTaskID: t.RetriedTaskID,
		Seq: t.Seq, PollCount: t.PollCount, ScheduledTime: t.ScheduledTime, StartTime: t.StartTime, EndTime: t.EndTime,
		UpdateTime: t.UpdateTime, FirstStartTime: t.FirstStartTime, CallbackAfterSeconds: t.CallbackAfterSeconds, CallbackFromWorker: true,
		ResponseTimeoutSeconds: t.Policy.ResponseTimeoutSeconds, RateLimitPerFrequency: t.Policy.RateLimitPerFrequency,
		RateLimitFrequencyInSeconds: t.Policy.RateLimitFrequencyInSeconds, WorkerID: t.WorkerID, ReasonForIncompletion: t.ShownReason(),
		Domain: t.Domain, Executed: conductor.TaskTerminal(t.Status), Iteration: t.Iteration, SubWorkflowID: t.SubWorkflowID,
		ParentTaskID: t.ParentTaskID, WorkflowPriority: w.Priority, TaskDefinition: conductor.TaskDefJSON(t.TaskDef),
	}
	out.TaskType, out.TaskDefName = t.ShownType()
	if t.Type == conductor.TaskTypeDoWhile {
		out.Iteration = loopIteration(t)
	}
	out.LoopOverTask = t.Iteration > 0
	switch {
	case t.Type == conductor.TaskTypeWait:
		waitView(t, out)
	case t.StartDelay > 0:
		out.StartDelayInSeconds = t.StartDelay / 1000
	}
	if t.StartTime > 0 && t.ScheduledTime > 0 {
		out.QueueWaitTime = t.StartTime - t.ScheduledTime
	}
	if p, err := w.planFor(); err == nil {
		out.WorkflowTask = workflowTaskJSON(p, t)
	}
	return out
}

// ShownReason is the task's reasonForIncompletion as Conductor shows one
// given in a task result (a worker's, or an update of a WAIT, a HUMAN or a
// WAIT_FOR_WEBHOOK task from outside): cut to conductor.MaxResultReason,
// as its TaskResult cuts it. The state keeps it whole, and the cut is made
// here, on what the state holds: a cut in the stored text could leave the
// first part of a value that is redacted or masked only once whole (the
// guard's pass over a decision, a value sealed later that the reason
// quoted), which nothing would recognise afterwards. Another system
// task's reason is the engine's, which Conductor does not cut either.
func (t *Task) ShownReason() string {
	if t.IsWorkerTask() || t.Type == conductor.TaskTypeWait || conductor.AwaitsOutside(t.Type) {
		return conductor.CutReason(t.Reason)
	}
	return t.Reason
}

// waitView shows when a WAIT with a duration or an until wakes as
// Conductor's Wait does: waitTimeout the time (Unix ms), and
// callbackAfterSeconds the seconds from its start to then, unless an
// update set its own. A WAIT for an update alone (AvailableAt 0) or too long
// to have a time (Never) shows neither.
func waitView(t *Task, out *conductor.Task) {
	if t.AvailableAt <= 0 || t.AvailableAt == Never {
		return
	}
	out.WaitTimeout = t.AvailableAt
	if out.CallbackAfterSeconds == 0 && t.AvailableAt > t.ScheduledTime {
		out.CallbackAfterSeconds = (t.AvailableAt - t.ScheduledTime + 999) / 1000
	}
}

// maskPaths masks the top-level keys of m that MaskedPaths names under
// prefix ("input", "task/<id>/output"). prefix itself names the whole of
// m, one of whose keys holds a value (see schemas.ValuesMasked): no key is
// shown.
func (w *Workflow) maskPaths(prefix string, m map[string]any) map[string]any {
	for _, p := range w.MaskedPaths {
		if p == prefix && m != nil {
			return map[string]any{}
		}
		if key, ok := strings.CutPrefix(p, prefix+"."); ok {
			if _, present := m[key]; present {
				m[key] = masking.Mask
			}
		}
	}
	return m
}

func nonNil(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	return m
}

func nonNilStrings(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
