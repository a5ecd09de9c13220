package engine

import (
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"slices"

	"github.com/flowvault/flowvault/masking"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// Effect is something outside the workflow's own log that a decision
// requires. Executors perform effects after the decision is appended; each
// must be idempotent, because recovery performs them again (Effects).
type Effect interface{ effectName() string }

// Dispatch makes a scheduled worker task available to workers of its queue.
type Dispatch struct {
	WorkflowID string
	TaskID     string
	TaskType   string // the queue: the task name for SIMPLE tasks
	Domain     string
	// Attempt distinguishes hand-offs of the same task (callbacks), for
	// deduplication of the dispatch message.
	Attempt int64
	// Requeued, when set, is the time (Unix ms) of the explicit requeue
	// that asks for the hand-off again (Reconcile.Requeue): the message
	// must not be taken for the first one's duplicate, which the queue
	// lost. The time, not a random id, so that a retried effect of the
	// same requeue is still dropped as a duplicate.
	Requeued int64
	// Priority is the workflow's: engines hand out queued tasks of
	// priority 1 first, 99 last, then those of the default, 0.
	Priority int
}

// Withdraw takes back the announcement of a worker task that ended
// without a worker taking it (its workflow ended, it timed out or was
// canceled while SCHEDULED): its dispatch message would otherwise stay
// queued, counted in the queue's size, until a poll drained it or the
// stream's age limit. Best effort: a message left behind is answered
// gone to whoever pulls it, as before.
type Withdraw struct {
	WorkflowID string
	TaskID     string
	TaskType   string
	Domain     string
	Priority   int
	// Since is when the task became available (Dispatch.Attempt): its
	// announcement was published at or after it.
	Since int64
}

// RunSystem runs a system task (HTTP, INLINE, ...) in the engine.
type RunSystem struct {
	WorkflowID string
	TaskID     string
	TaskType   string
}

// StartWorkflow starts another workflow: a SUB_WORKFLOW's child (with the
// parent fields set), a failure workflow, or a START_WORKFLOW target.
type StartWorkflow struct {
	WorkflowID string
	Name       string
	Version    *int
	Def        json.RawMessage // inline definition, if any
	// DefFromData: Def was built from the workflow's data (an expression
	// gave it), not written in its definition.
	DefFromData bool
	Input       map[string]any
	// InputDeferred are the paths of Input still holding secret or
	// environment references: the executor resolves them (as CreatedBy) and
	// seals the values into the child's input.
	InputDeferred [][]any
	// Sealed are the sealed values of From that the texts at InputDeferred
	// read ("Bearer ${sealed:REF}"), by REF: the preparation of the
	// workflow opens them into the texts, and cannot look them up in From's
	// state.
	Sealed map[string]*masking.Sealed
	// From is the workflow that starts this one, whose sealed values Input
	// may hold: the parent, the failed workflow, the START_WORKFLOW's.
	From string
	// Failure marks a failure workflow: its definition's author chose it,
	// and it starts whatever the failed run's creator may start.
	Failure bool
	// ChosenBy is, for a failure workflow, who chose it: the failed run's
	// definition's author (who saved it last), else its creator: an
	// inline definition's author. (Its sender writes an inline one's
	// createdBy and updatedBy, and may name someone else, who is then
	// asked instead; the sender was asked when it started.) It starts
	// only while they may still start it.
	ChosenBy string
	// SecretsKey names the key that sealed the secrets among Input: the
	// starting workflow's (Workflow.SecretsKey).
	SecretsKey    string
	CorrelationID string
	Priority      int
	TaskToDomain  map[string]string
	CreatedBy     string
	// AlsoRunsAs are the principals besides CreatedBy the starting
	// workflow runs as: the started one runs as them too.
	AlsoRunsAs           []string
	ParentWorkflowID     string
	ParentWorkflowTaskID string
	// Depth is the started workflow's (schemas.WorkflowStarted): one more
	// than its starter's.
	Depth int
	// IdempotencyKey and IdempotencyStrategy are a SUB_WORKFLOW's
	// subWorkflowParam's (the key evaluated), or a START_WORKFLOW's
	// startWorkflow's: the workflow starts as a start request with them
	// does. With RETURN_EXISTING, a key another child of the same parent
	// holds makes the SUB_WORKFLOW task wait for that child instead
	// (ChildExisting); the START_WORKFLOW task completes with the
	// workflow holding the key, if its starter may read it.
	IdempotencyKey      string
	IdempotencyStrategy string
	// StartTaskID is the START_WORKFLOW task of From that waits for this
	// start: the executor reports to it that the workflow started
	// (COMPLETED) or could not (FAILED, with the reason).
	StartTaskID string
	// Refused, when set, is why the start may not happen (a definition
	// from the workflow's data that reaches for secrets, a chain of starts
	// past MaxDepth): the executor reports it as the start's failure.
	Refused string
}

// MaxDepth bounds a chain of workflows each started by the one before: a
// definition whose sub-workflow is itself, or that starts itself or names
// itself its failure workflow, would otherwise start workflows until the
// log is full. Conductor sets no bound.
const MaxDepth = 100

// startedBy is the depth of a workflow w starts, and why that start is
// refused if it is past MaxDepth.
func startedBy(w *Workflow) (depth int, refused string) {
	if w.Depth >= MaxDepth {
		return w.Depth + 1, fmt.Sprintf("workflow %s would start a workflow %d deep in a chain of workflows each started by the one before; the limit is %d",
			w.ID, w.Depth+1, MaxDepth)
	}
	return w.Depth + 1, ""
}

// NotifyParent tells a parent workflow that this child reached a terminal
// status.
type NotifyParent struct {
	ParentWorkflowID string
	Child            ChildFinished
}

// ReopenParent tells a parent workflow that this child runs again.
type ReopenParent struct {
	ParentWorkflowID string
	Child            ChildReopened
}

// TerminateWorkflow ends another workflow (the children of a terminated or
// failed parent).
type TerminateWorkflow struct {
	WorkflowID string
	Reason     string
	// ParentEnded is when the parent ended (see Terminate.UnlessResetAfter).
	ParentEnded int64
}

// CheckChild asks the executor to report a child's status if it is
// terminal: recovery for a NotifyParent lost in a crash.
type CheckChild struct {
	ParentWorkflowID string
	ChildID          string
}

// LookFor tells WorkflowID, a workflow From started (a child, a
// START_WORKFLOW's, its failure workflow), of values From found to be
// secret after the child got them (see ValuesFound): the child masks them
// where it holds them, and tells its own children.
type LookFor struct {
	WorkflowID string
	From       string
	SecretsKey string
	Sealed     []schemas.ResolvedRef
}

func (LookFor) effectName() string { return "look_for" }

// TellChildren returns the LookFor effects that tell each workflow w
// started, running or ended, of refs, the values w found to be secret
// late (schemas.ValuesMasked.Sealed): its SUB_WORKFLOW children, the
// workflows its START_WORKFLOW tasks started and its failure workflows,
// whose input may hold them as given. A failure workflow that never
// started (its definition missing) is not found, which telling ignores.
func TellChildren(w *Workflow, refs []schemas.ResolvedRef) []Effect {
	if w == nil || len(refs) == 0 {
		return nil
	}
	var out []Effect
	var told []string
	tell := func(id string) {
		if id == "" || id == w.ID || slices.Contains(told, id) {
			return
		}
		told = append(told, id)
		out = append(out, LookFor{WorkflowID: id, From: w.ID, SecretsKey: w.SecretsKey, Sealed: refs})
	}
	for _, t := range w.Tasks {
		switch t.Type {
		case conductor.TaskTypeSubWorkflow:
			tell(t.SubWorkflowID)
		case conductor.TaskTypeStartWorkflow:
			id, _ := t.Output["workflowId"].(string)
			tell(id)
		}
	}
	for _, id := range w.FailureWorkflows {
		tell(id)
	}
	if fw := failureWorkflowOf(w); fw != "" {
		// A state folded before FailureWorkflows was kept.
		tell(fw)
	}
	return out
}

// failureWorkflowOf is the id of the failure workflow w's end started,
// if it ended and started one: derived as the decision that ended it
// derived it. A definition that parses says whether it did (ends recorded
// before outputs named the start included), whatever the output, which
// outputParameters may fill, with that very id too. One that parses no
// more (an earlier version recorded it) leaves the end's output to say
// so, as the decision that ended it wrote it there.
func failureWorkflowOf(w *Workflow) string {
	if !w.Terminal() || w.Status == conductor.WorkflowCompleted || w.NoFailureWorkflow {
		return "" // without reading the definition
	}
	id := failureWorkflowID(w)
	def, err := w.Def()
	switch {
	case err != nil && w.Output[FailureWorkflowOutputKey] == id:
		return id
	case err != nil || !startsFailureWorkflow(def, w.Status, w.NoFailureWorkflow):
		return ""
	}
	return id
}

func (Dispatch) effectName() string          { return "dispatch" }
func (RunSystem) effectName() string         { return "run_system" }
func (Withdraw) effectName() string          { return "withdraw" }
func (StartWorkflow) effectName() string     { return "start_workflow" }
func (NotifyParent) effectName() string      { return "notify_parent" }
func (ReopenParent) effectName() string      { return "reopen_parent" }
func (TerminateWorkflow) effectName() string { return "terminate_workflow" }
func (CheckChild) effectName() string        { return "check_child" }

// EffectName names an effect for logs and metrics.
func EffectName(e Effect) string { return e.effectName() }

// Effects returns every effect the state implies at time now (Unix ms):
// recovery performs them after a crash may have lost some.
func Effects(w *Workflow, now int64) []Effect {
	var out []Effect
	for _, t := range w.Tasks {
		switch {
		case t.Status == conductor.TaskScheduled && t.AvailableAt <= now:
			out = append(out, handOff(w, t)...)
		case t.Type == conductor.TaskTypeSubWorkflow && t.Status == conductor.TaskInProgress && t.SubWorkflowID != "":
			// Its child may never have started (a crash after the append):
			// start it (a child that exists answers how it ended, if it
			// has), or at least ask.
			if p, err := w.planFor(); err == nil {
				if wt := p.config(t); wt != nil && wt.SubWorkflowParam != nil {
					out = append(out, childStart(w, wt, t))
					continue
				}
			}
			out = append(out, CheckChild{ParentWorkflowID: w.ID, ChildID: t.SubWorkflowID})
		case t.Type == conductor.TaskTypeSubWorkflow && t.Status == conductor.TaskCanceled && !t.Retried && t.SubWorkflowID != "" && !w.Terminal():
			// Canceled while its workflow runs on (a jump): its child may
			// have missed the end.
			out = append(out, cancelChild(w, t))
		case t.Type == conductor.TaskTypeStartWorkflow && (t.Status == conductor.TaskInProgress ||
			// completed when scheduled, by engines before the task waited
			// for its start: the start may never have happened
			t.Status == conductor.TaskCompleted && t.FirstStartTime == 0):
			if eff, ok := startWorkflowOf(w, t); ok {
				out = append(out, eff)
			}
		}
	}
	out = append(out, tellLate(w)...)
	// The purges of the decisions that found the outputs secret are not
	// recorded: one that failed, or whose engine stopped before it, left
	// the value in the cache in plain text.
	out = append(out, uncache(w, w.MaskedPaths, false)...)
	switch {
	case w.Terminal():
		out = append(out, terminalEffects(w)...)
	case w.ParentWorkflowID != "" && w.Epoch > 0:
		// Retried, restarted or rerun: the parent may have missed it.
		out = append(out, ReopenParent{ParentWorkflowID: w.ParentWorkflowID, Child: ChildReopened{ChildID: w.ID, RerunUpTo: w.RerunUpTo, RunsAs: w.AlsoRunsAs,
			ResetTime: w.ResetTime}})
	}
	return out
}

// tellLate tells w's children again of the values w found to be secret
// late: they may never have been told (w's engine stopped between the
// record and its LookFor). Told again, a child that masks them records
// nothing. A compacted workflow's _secrets ones are destroyed, its
// _masked ones are not, and are told still: its compaction may come a few
// seconds after the decision that found them, before that engine starts
// again (a workflow with no secrets key is compacted when it masks a
// cached output).
func tellLate(w *Workflow) []Effect {
	if w.Removed {
		return nil
	}
	var late []schemas.ResolvedRef
	for _, ref := range w.Resolved {
		if schemas.IsLateRef(ref.Name) && len(ref.Sealed) > 0 && (!w.Compacted || ref.Kind == masking.KeyMasked) {
			late = append(late, ref)
		}
	}
	return TellChildren(w, late)
}

// cancelChild ends the child of t, a SUB_WORKFLOW task canceled while its
// workflow runs on; a child an operator ran again since is left alone.
func cancelChild(w *Workflow, t *Task) TerminateWorkflow {
	return TerminateWorkflow{WorkflowID: t.SubWorkflowID, Reason: "parent workflow " + w.ID + ": task " + t.Ref + " " + t.Reason,
		ParentEnded: t.EndTime}
}

// handOff returns the effect that gets a scheduled task executed.
func handOff(w *Workflow, t *Task) []Effect {
	switch {
	case t.IsWorkerTask():
		return []Effect{Dispatch{WorkflowID: w.ID, TaskID: t.ID, TaskType: t.Name, Domain: t.Domain, Attempt: t.AvailableAt,
			Priority: w.Priority}}
	case runsInSystemWorker(t.Type):
		return []Effect{RunSystem{WorkflowID: w.ID, TaskID: t.ID, TaskType: t.Type}}
	}
	return nil
}

// HasTerminalEffects reports whether w ended with consequences besides
// telling its parent (whose own recovery asks a child it waits for): a
// failure workflow to start, children to terminate, children to tell of
// values found to be secret late (the decision that found them often ends
// the workflow). Recovery performs them again for workflows that ended
// shortly before the log's last record.
func HasTerminalEffects(w *Workflow) bool {
	if w == nil || !w.Terminal() {
		return false
	}
	for _, eff := range append(terminalEffects(w), tellLate(w)...) {
		if _, parent := eff.(NotifyParent); !parent {
			return true
		}
	}
	return false
}

// terminalEffects are the consequences of a workflow ending.
func terminalEffects(w *Workflow) []Effect {
	var out []Effect
	if w.ParentWorkflowID != "" {
		out = append(out, NotifyParent{ParentWorkflowID: w.ParentWorkflowID, Child: ChildFinished{
			ChildID: w.ID, Name: w.Name, Version: w.Version, Status: w.Status, Output: w.Output, Reason: w.Reason, RunsAs: w.AlsoRunsAs}})
	}
	if w.Status != conductor.WorkflowCompleted {
		for _, t := range w.Tasks {
			if t.Type == conductor.TaskTypeSubWorkflow && t.SubWorkflowID != "" && t.Status == conductor.TaskCanceled {
				out = append(out, TerminateWorkflow{WorkflowID: t.SubWorkflowID, Reason: "parent workflow " + w.ID + " " + w.Status,
					ParentEnded: w.EndTime})
			}
		}
		if fw := failureWorkflow(w); fw != nil {
			out = append(out, *fw)
		}
	}
	return out
}

// failureWorkflow is the failure workflow a failed, timed-out or terminated
// workflow starts, if its definition names one: with the failed run's
// correlationId and taskToDomain, as Conductor starts it, so that its
// tasks go to the queues of the domains the failed run's went to.
func failureWorkflow(w *Workflow) *StartWorkflow {
	def, err := w.Def()
	if err != nil || !startsFailureWorkflow(def, w.Status, w.NoFailureWorkflow) {
		return nil
	}
	input := copyMap(w.Input)
	input["workflowId"] = w.ID
	input["reason"] = w.Reason
	input["failureStatus"] = w.Status
	if w.FailedTaskID != "" {
		input["failureTaskId"] = w.FailedTaskID
	}
	if failed := failedWorkflowView(w); failed != nil {
		input["failedWorkflow"] = failed
	}
	depth, refused := startedBy(w)
	return &StartWorkflow{WorkflowID: failureWorkflowID(w), Name: def.FailureWorkflow, Version: def.FailureWorkflowVersion,
		Input: input, From: w.ID, Failure: true, ChosenBy: cmp.Or(def.UpdatedBy, def.CreatedBy, w.CreatedBy), SecretsKey: w.SecretsKey, CorrelationID: w.CorrelationID, CreatedBy: w.CreatedBy, AlsoRunsAs: w.AlsoRunsAs,
		TaskToDomain: maps.Clone(w.TaskToDomain), Depth: depth, Refused: refused}
}

// startsFailureWorkflow reports whether a workflow of def that ends with
// status starts def's failure workflow; refused: its end asked for none
// (a terminate with triggerFailureWorkflow=false).
func startsFailureWorkflow(def *conductor.WorkflowDef, status string, refused bool) bool {
	return def.FailureWorkflow != "" && status != conductor.WorkflowCompleted && !refused
}

// maxFailedWorkflowJSON bounds the failed workflow a failure workflow gets
// in its input (failedWorkflow): a larger one would make the start too
// large for the log, and the failure workflow would not run at all. It
// reads the workflow by its workflowId instead.
const maxFailedWorkflowJSON = 256 << 10

// failedWorkflowView is w as every read path shows it (masked), for its
// failure workflow's input, as Conductor passes it; nil past
// maxFailedWorkflowJSON.
func failedWorkflowView(w *Workflow) map[string]any {
	b, err := json.Marshal(w.Conductor(true))
	if err != nil || len(b) > maxFailedWorkflowJSON {
		return nil
	}
	var view map[string]any
	if err := conductor.Unmarshal(b, &view); err != nil {
		return nil
	}
	return view
}
