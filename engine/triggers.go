package engine

import (
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// Trigger is what a decision reacts to.
type Trigger interface{ triggerName() string }

// Start creates a workflow. Def is the definition to run (registered or
// inline); Request carries the rest of Conductor's StartWorkflowRequest.
type Start struct {
	WorkflowID string
	Def        *conductor.WorkflowDef
	Request    conductor.StartWorkflowRequest
	CreatedBy  string
	// AlsoRunsAs are principals besides CreatedBy the workflow runs as
	// from its start: a child's, those its parent runs as.
	AlsoRunsAs           []string
	ParentWorkflowID     string
	ParentWorkflowTaskID string
	Depth                int // see schemas.WorkflowStarted
	// Resolved names values resolved into Request.Input at a hand-off.
	Resolved []schemas.ResolvedRef
	// Event is the event of the handler that starts the workflow, if one
	// does (schemas.WorkflowStarted).
	Event string
	// RateLimit is the limit of Def's rateLimitConfig on this start (see
	// RateLimitOf), nil without one; Queued, that its place was not free:
	// the workflow starts without tasks, until Admit.
	RateLimit *RateLimit
	Queued    bool
}

// Admit schedules the first tasks of a workflow its definition's
// rateLimitConfig queued, once the executor gave it a place. On a
// workflow that is not queued it changes nothing.
type Admit struct{}

// Take hands a scheduled task to whoever runs it: a worker, or with System
// an engine's system worker. TaskType, when set, names the queue the take
// came from with Domain: they must be the task's name and domain, since a
// worker may take only tasks of the queues its credentials reach.
type Take struct {
	TaskID   string
	WorkerID string
	TaskType string
	Domain   string
	System   bool
	// HandOff is what preparing the task's input for the taker found: the
	// values resolved into it (recorded on the TaskStarted event), or why it
	// could not be prepared (the task then fails for good).
	HandOff *HandOff
}

// HandOff describes the preparation of a task's input at hand-off.
type HandOff struct {
	Resolved []schemas.ResolvedRef
	// Error, when set, fails the task terminally with this reason. It names
	// what could not be resolved and for whom, never a value.
	Error string
}

// HandOffFailed is the reply to a Take whose hand-off failed: task TaskID
// was taken and failed in the same decision, for Reason.
type HandOffFailed struct{ TaskID, Reason string }

// Result is a worker's (or an operator's) report on a task. TaskType, when
// set, names the queue the result came from with Domain, as for Take.
type Result struct {
	Result   conductor.TaskResult
	TaskType string
	Domain   string
	// By is an operator who reported, not a worker of the task's type:
	// the result is data of their own (see schemas.WorkflowRunAs). AlsoBy
	// are others whose data it is too (an event handler's action carries
	// the publishing workflow's and the handler's).
	By     string
	AlsoBy []string
	// Lease, when set, is the task's PollCount at the take the result is
	// about: a result about an earlier take is ignored (see
	// workers.ResultRequest).
	Lease int
	// HandBack marks the engine's own IN_PROGRESS result for a take that
	// never reached its taker (a worker that did not accept an offer, a
	// take stored after its taker was told it failed): the task goes back
	// to be handed out again at once, a system task too. A loop's take is
	// left to its lease.
	HandBack bool
	// MergeOutput sets the result's output over the task's, keeping its
	// other keys, as Conductor's update by reference name does (it starts
	// from the task's output): an operator's IN_PROGRESS then COMPLETED, or
	// the completion of an HTTP task with asyncComplete, keeps what was
	// there. A worker's result replaces the output, as in Conductor.
	MergeOutput bool
	// Variables, when set, are merged into the workflow's variables by
	// the decision that records the result, before it (Orkes's
	// updateState): one record, so that a result refused or ignored sets
	// none of them. Their sender, whose data they are, is By or among
	// AlsoBy.
	Variables map[string]any
	// DropOutput are members of $[loopRef] a DO_WHILE's loop condition
	// deleted (system.LoopCondition), which leave the loop's output with
	// its report, as Conductor's condition, which changes the loop's
	// output map in place, removes them. Those the decider owns
	// (conductor.DoWhileOwnedKey) stay. Other tasks take no deletions.
	DropOutput []string
}

// Tick acts on every deadline that has passed: timeouts, WAIT tasks, delayed
// hand-offs, and the next iteration of a loop a decision left for the next
// one (Pending).
type Tick struct{}

// Reclaim takes back at once a system task that an engine's earlier
// process (incarnation) held when it died, as the task's lease would 5
// minutes on (SystemTaskLease): only the engine itself knows that its
// earlier process is gone, the lease being a function of state. Holder is
// the take's WorkerID as the engine read it; a task no longer held under
// it (reported, released, taken again since) is ErrTaskGone.
type Reclaim struct {
	TaskID string
	Holder string
}

// Reconcile changes nothing (but for going on with work a decision left for
// the next, see Pending); its decision lists the effects the current state
// implies, for recovery after a crash. With DispatchAge set (ms) it
// lists only the dispatches the dispatch stream dropped for age since the
// previous such pass, Interval (ms) ago: tasks announced a whole number of
// DispatchAge ago, less Interval. A message sent again expires in its
// turn, and is sent again a DispatchAge later.
//
// Requeue marks an explicit requeue (POST /api/tasks/queue/requeue): its
// dispatches are sent again even within the dispatch stream's duplicate
// window of the first (see Dispatch.Requeued). Recovery and the periodic
// pass leave it unset: a task still queued must not be announced twice.
type Reconcile struct {
	DispatchAge, Interval int64
	Requeue               bool
}

// expired reports whether a dispatch announced at attempt has expired
// since the pass Interval before now.
func (r Reconcile) expired(attempt, now int64) bool {
	age := now - attempt
	k := age / r.DispatchAge
	return k >= 1 && age-k*r.DispatchAge < r.Interval
}

// Pause stops scheduling new tasks.
type Pause struct{}

// Resume continues a paused workflow.
type Resume struct{}

// Terminate ends a running or paused workflow. By, who asked, joins those
// it runs as when they give a reason: its failure workflow and its
// parent read it.
type Terminate struct {
	Reason string
	By     string
	AlsoBy []string // as for Result
	// TriggerFailureWorkflow starts the definition's failureWorkflow, as
	// a failure would; by default a terminate does not (Conductor's and
	// Orkes's default), nor does a parent's clean-up of its children.
	TriggerFailureWorkflow bool
	// UnlessResetAfter, when set, is when the parent whose clean-up this
	// is ended. A child restarted, retried or rerun since runs on its own
	// (an operator's doing: its parent no longer waits for it) and is left
	// alone, however late recovery performs the clean-up again.
	UnlessResetAfter int64
	// UnlessEnded leaves a workflow that has ended as it ended
	// (fault.ErrConflict): the clean-up of a child started for a parent
	// that no longer waits for it, which may have ended, and told the
	// parent, before the parent was looked at. Terminated, a FAILED child
	// would read TERMINATED to whoever asks later: a retried parent task
	// waiting for it under RETURN_EXISTING was canceled, its parent
	// TERMINATED.
	UnlessEnded bool
}

// Restart runs a terminal workflow again from the start. Def, when set, is
// the latest definition to use instead of the one the workflow ran; the
// input the workflow keeps is recorded again when Def masks a field of it
// held in plain text (keptInput), as by an Upgrade.
type Restart struct {
	Def *conductor.WorkflowDef
	// By is who asked: a restart on a definition other than the one the
	// workflow ran (useLatestDefinitions) runs as them too, as a rerun
	// with new data does, and as Author, who saved that definition.
	By     string
	Author string
	// DecidedFor are the principals Def was decided for, required with
	// Def: see Upgrade.DecidedFor. A restart onto the definition the
	// workflow ran decides nothing and takes none.
	DecidedFor []string
	// Ancestors are the workflow's as the caller read them: a restart
	// that would run for nothing is refused (see Retry.Ancestors).
	Ancestors []*Workflow
}

// Retry reschedules the failed tasks of a terminal workflow. A failed
// SUB_WORKFLOW task is retried with a new child workflow. (Conductor's
// resumeSubworkflowTasks retries the failed child instead: the child's
// retry reopens its parent, see ChildReopened.)
//
// A sub-workflow whose parent has moved on from it (the task's retryCount
// or the parent's retry runs a new child in its place, the parent's rerun
// or restart drops the task) may still be retried: it runs on its own,
// and its parent ignores it (ChildReopened, a later ChildFinished), but
// for a parent that had ended by the task's newer instance, which waits
// for it again (see ChildReopened).
type Retry struct {
	// RefuseIfParentRetried is Orkes's retryIfRetriedByParent=false: the
	// retry of such a sub-workflow is refused (fault.ErrConflict) instead:
	// of the workflow asked (UpTo when set), whose parent it is about.
	RefuseIfParentRetried bool
	// UpTo, when set, is the ancestor the retry was asked of: with
	// resumeSubworkflowTasks the API retries its failed descendant
	// instead, whose retry reopens each workflow up to it.
	UpTo string
	// Ancestors are the workflow's parent, its parent's parent and so on,
	// as the caller read them (the engine decides for one workflow at a
	// time); without them, nothing is refused. A retry is always refused
	// when a workflow it would run again, this one or an ancestor its
	// reopening reaches (see childReopened), is the child of a
	// SUB_WORKFLOW task its parent went on past (a jump passed over it,
	// or its DO_WHILE gave up on its iteration): that parent ignores the
	// child's news, so the work would run for nothing.
	Ancestors []*Workflow
}

// Rerun runs a terminal workflow again from the start or from a task.
type Rerun struct {
	Request conductor.RerunWorkflowRequest
	// UpTo, when set, is the ancestor the rerun was asked of: the task is
	// in this descendant of it (Conductor searches sub-workflows). Each
	// workflow up to it reruns from the SUB_WORKFLOW task that ran the
	// child, which waits for the same child again: the instance that ran
	// it, retried since or not (see ChildReopened).
	UpTo string
	// By is who asked: a rerun with new input runs as them.
	By string
	// Ancestors are the workflow's as the caller read them: a rerun that
	// would run for nothing is refused (see Retry.Ancestors), checked from
	// the workflow asked (UpTo when set) up; those below it rerun from
	// their SUB_WORKFLOW tasks, passed over or not.
	Ancestors []*Workflow
}

// ChildFinished reports that a SUB_WORKFLOW task's child reached a terminal
// status (Status is the child's workflow status), or could not be started
// (Status FAILED with a Reason).
type ChildFinished struct {
	ChildID string
	// Name and Version are the child's definition's, which a failed
	// task's reason names.
	Name    string
	Version int
	Status  string
	Output  map[string]any
	Reason  string
	// RunsAs are the principals the child runs as besides its creator
	// (Workflow.AlsoRunsAs): the parent runs as them too.
	RunsAs []string
	// NotStarted is set when the child could not start: the task's output
	// names no workflow, which would not be there to read.
	NotStarted bool
}

// ChildExisting reports that the start of a SUB_WORKFLOW task's child
// (ChildID, the id the task gave it) found ExistingID holding its
// idempotency key, with RETURN_EXISTING: the task waits for that workflow
// instead, as a start request with the key is answered with it. The
// executor sends it only for a workflow the same parent started (an
// earlier instance of the task, before a retry or a restart), which
// reports to the parent when it ends.
type ChildExisting struct {
	ChildID    string
	ExistingID string
}

// ChildReopened reports that a SUB_WORKFLOW task's child runs again: an
// operator retried, restarted or reran it. The parent's task waits for the
// child again and, if the parent ended because of it, the parent resumes,
// as Conductor's retry of a child does. The child of an instance the task
// retried since, run again after the parent ended by the newer instance,
// makes it resume too, a new instance waiting for that child; while the
// parent runs, such a child runs on its own. A child still running (or
// paused) one of whose own children ran again reports it too: a parent
// whose task still waits for it clears its failed task names and tells
// its own parent, as Conductor's walk up the chain does.
type ChildReopened struct {
	ChildID string
	// RerunUpTo: the child was rerun for a rerun asked of this ancestor
	// (see Rerun.UpTo); the parent reruns from the instance of its task
	// that ran the child, retried since or not.
	RerunUpTo string
	// RunsAs are the child's, as for ChildFinished.
	RunsAs []string
	// ResetTime is when the child was reset (Workflow.ResetTime), or,
	// passed on by a child not reset itself, its descendant. A parent
	// that has ended since ignores the news: recovery sends it again
	// while the child runs, and the parent acted on it, or ignored it,
	// before that end.
	ResetTime int64
}

// Compact records that a terminal workflow's secrets key is being
// destroyed (see schemas.WorkflowCompacted). It is refused unless the
// workflow is terminal or removed (nothing runs a removed workflow), and
// changes nothing if it is compacted already.
type Compact struct{}

func (Compact) triggerName() string { return "compact" }

// ValuesFound tells a workflow that the workflow that started it (From, a
// SUB_WORKFLOW's parent, or further up, a START_WORKFLOW's starter, the
// workflow whose failure workflow it is) found values to be secret after
// handing them over (schemas.ValuesMasked.Sealed): its own records, views
// and read models hold them as given. Sealed are From's records of the
// values, sealed under From's keys (SecretsKey its secrets key), never in
// plain text. The executor's preparation (executor.ValuesFinder) looks for
// them in the workflow and sets Masked, and Key when it took a secrets
// key to seal them under: the decision records them as they are.
type ValuesFound struct {
	From       string
	SecretsKey string
	Sealed     []schemas.ResolvedRef
	Masked     *schemas.ValuesMasked
	Key        *schemas.SecretsSealed
}

func (ValuesFound) triggerName() string { return "values_found" }

// SetVariables merges values into the workflow's variables; By, who asked,
// is who the workflow runs as from then on.
type SetVariables struct {
	Variables map[string]any
	By        string
	AlsoBy    []string // as for Result
}

// Fail ends a running or paused workflow FAILED, with Reason and no
// output, and starts its failure workflow: what an executor records
// instead of a decision the log refuses for what it holds (a task's input
// built from a large output), which would be refused again however often
// it was tried. An ended workflow is left as it is.
type Fail struct{ Reason string }

// AddLog appends a log line to a task.
type AddLog struct {
	TaskID string
	Line   string
}

func (Start) triggerName() string         { return "start" }
func (Admit) triggerName() string         { return "admit" }
func (Take) triggerName() string          { return "take" }
func (Result) triggerName() string        { return "result" }
func (Tick) triggerName() string          { return "tick" }
func (Reclaim) triggerName() string       { return "reclaim" }
func (Reconcile) triggerName() string     { return "reconcile" }
func (Pause) triggerName() string         { return "pause" }
func (Resume) triggerName() string        { return "resume" }
func (Terminate) triggerName() string     { return "terminate" }
func (Restart) triggerName() string       { return "restart" }
func (Retry) triggerName() string         { return "retry" }
func (Rerun) triggerName() string         { return "rerun" }
func (ChildFinished) triggerName() string { return "child_finished" }
func (ChildReopened) triggerName() string { return "child_reopened" }
func (ChildExisting) triggerName() string { return "child_existing" }
func (SetVariables) triggerName() string  { return "set_variables" }
func (AddLog) triggerName() string        { return "add_log" }
func (Fail) triggerName() string          { return "fail" }

// TriggerName names a trigger for logs and metrics.
func TriggerName(t Trigger) string { return t.triggerName() }
