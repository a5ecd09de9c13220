package schemas

import (
	"bytes"
	"strings"
)

// Workflow events live on the subject fv.wf.<workflowId>. A workflow's state
// is the fold of these events (engine.Apply); the decider emits them
// (engine.Decide). Times are Unix milliseconds, as in Conductor's JSON.

// WorkflowStarted is the first event of every workflow.
type WorkflowStarted struct {
	WorkflowID           string            `msgpack:"id"`
	Name                 string            `msgpack:"name"`
	Version              int               `msgpack:"ver"`
	Def                  []byte            `msgpack:"def"` // the definition's JSON, as run
	Input                map[string]any    `msgpack:"in,omitempty"`
	Variables            map[string]any    `msgpack:"vars,omitempty"`
	CorrelationID        string            `msgpack:"corr,omitempty"`
	Priority             int               `msgpack:"prio,omitempty"`
	TaskToDomain         map[string]string `msgpack:"t2d,omitempty"`
	CreatedBy            string            `msgpack:"by,omitempty"`
	ParentWorkflowID     string            `msgpack:"pwf,omitempty"`
	ParentWorkflowTaskID string            `msgpack:"ptask,omitempty"`
	// Depth counts the workflows that started this one, each by the next
	// (a sub-workflow, START_WORKFLOW or failure workflow of one): 0 for a
	// start by a client, a schedule or an event.
	Depth          int    `msgpack:"depth,omitempty"`
	IdempotencyKey string `msgpack:"idem,omitempty"`
	Time           int64  `msgpack:"ts"`
	// Resolved lists what was resolved into the input of a child workflow
	// (its parent's SUB_WORKFLOW input): sealed in Input, named here.
	Resolved []ResolvedRef `msgpack:"res,omitempty"`
	// Event is the event of the handler whose start_workflow action
	// started the workflow (nats:orders.placed), Conductor's
	// Workflow.event; empty for every other start, and in records written
	// before the field existed.
	Event string `msgpack:"event,omitempty"`
	// RateLimited: the definition's rateLimitConfig limits the workflow,
	// under RateLimitKey (its rateLimitKey evaluated; empty for a config
	// without one). Queued: its place was not free at the start, and its
	// first tasks wait for a WorkflowAdmitted.
	RateLimited  bool   `msgpack:"rl,omitempty"`
	RateLimitKey string `msgpack:"rlk,omitempty"`
	Queued       bool   `msgpack:"queued,omitempty"`
}

func (*WorkflowStarted) EventType() string { return "workflow.started" }

// WorkflowAdmitted records that a workflow queued by its definition's
// rateLimitConfig got its place: its first tasks are scheduled with it.
type WorkflowAdmitted struct {
	Time int64 `msgpack:"ts"`
}

func (*WorkflowAdmitted) EventType() string { return "workflow.admitted" }

// TaskPolicy is the retry and timeout configuration a task runs under: its
// task definition's effective values when it was scheduled, so that retries
// and timeouts replay identically even if the definition changes later.
type TaskPolicy struct {
	RetryCount             int    `msgpack:"rc,omitempty"`
	RetryLogic             string `msgpack:"rl,omitempty"`
	RetryDelaySeconds      int64  `msgpack:"rd,omitempty"`
	BackoffScaleFactor     int64  `msgpack:"bs,omitempty"`
	MaxRetryDelaySeconds   int64  `msgpack:"mrd,omitempty"`
	BackoffJitterMs        int64  `msgpack:"jit,omitempty"`
	TimeoutSeconds         int64  `msgpack:"to,omitempty"`
	TotalTimeoutSeconds    int64  `msgpack:"tto,omitempty"`
	TimeoutPolicy          string `msgpack:"tp,omitempty"`
	ResponseTimeoutSeconds int64  `msgpack:"rto,omitempty"`
	PollTimeoutSeconds     int64  `msgpack:"pto,omitempty"`
	// Shown in the Task JSON; the limit itself is the definition's when
	// the task is taken.
	RateLimitPerFrequency       int `msgpack:"rlp,omitempty"`
	RateLimitFrequencyInSeconds int `msgpack:"rlf,omitempty"`
}

// TaskScheduled adds a task instance to the workflow.
type TaskScheduled struct {
	TaskID string         `msgpack:"id"`
	Ref    string         `msgpack:"ref"`  // taskReferenceName (with __n inside loops)
	Name   string         `msgpack:"name"` // the task (definition) name
	Type   string         `msgpack:"type"` // the configured task type
	Status string         `msgpack:"st"`   // SCHEDULED, or IN_PROGRESS for tasks that start at once
	Seq    int            `msgpack:"seq"`
	Input  map[string]any `msgpack:"in,omitempty"`
	// Deferred lists the paths in Input of strings holding expressions that
	// are resolved only at hand-off (secrets, environment).
	Deferred [][]any `msgpack:"dfr,omitempty"`
	// SealedReads are the references to the workflow's sealed data
	// (${sealed:REF}) that the deferred texts of Input inside a _secrets or
	// _masked block read. The record holds such a text sealed whole: a
	// child started from the stored state (recovery, a rerun) is handed
	// the values they name (engine.StartWorkflow.Sealed) by these, as the
	// text can no longer be read for them. References, never values.
	SealedReads   []string   `msgpack:"srd,omitempty"`
	RetryCount    int        `msgpack:"retry,omitempty"`
	RetriedTaskID string     `msgpack:"retried,omitempty"`
	Iteration     int        `msgpack:"iter,omitempty"`
	Domain        string     `msgpack:"dom,omitempty"`
	AvailableAt   int64      `msgpack:"avail,omitempty"` // not handed out before this time
	Policy        TaskPolicy `msgpack:"pol"`
	// Config is the task's configuration JSON when it is not in the workflow
	// definition (dynamic tasks).
	Config        []byte         `msgpack:"cfg,omitempty"`
	TaskDef       []byte         `msgpack:"tdef,omitempty"` // registered definition JSON, for display
	SubWorkflowID string         `msgpack:"sub,omitempty"`
	ParentTaskID  string         `msgpack:"parent,omitempty"`
	Output        map[string]any `msgpack:"out,omitempty"` // tasks decided at once carry their output
	// Case and CaseDefault record the branch a SWITCH or DECISION decided
	// at once took: its decisionCases key, or its default case. They are
	// apart from Output, which redaction may change: a case value equal to
	// a secret the workflow resolved reads "***" there.
	Case        string `msgpack:"case,omitempty"`
	CaseDefault bool   `msgpack:"cdef,omitempty"`
	// Forked are the reference names of the tasks a FORK_JOIN_DYNAMIC
	// forks, which its JOIN waits for; apart from Output for the same
	// reason as Case.
	Forked         []string `msgpack:"fork,omitempty"`
	Reason         string   `msgpack:"why,omitempty"`
	FirstScheduled int64    `msgpack:"first,omitempty"` // first attempt's schedule time (total timeout)
	Time           int64    `msgpack:"ts"`
}

func (*TaskScheduled) EventType() string { return "workflow.task_scheduled" }

// TaskStarted records that a worker took the task.
type TaskStarted struct {
	TaskID   string `msgpack:"id"`
	WorkerID string `msgpack:"worker,omitempty"`
	Time     int64  `msgpack:"ts"`
	// Resolved lists what was resolved into the copy of the task's input
	// handed to the taker: the audit record of a resolution, never a value.
	Resolved []ResolvedRef `msgpack:"res,omitempty"`
}

// ResolvedRef names one value resolved at a hand-off.
type ResolvedRef struct {
	// Kind is "secret" or "env"; on a child's start also "_secrets" or
	// "_masked", a value of its starter's sealed data of that kind opened
	// into its input text, Name the starter's reference to it (REF of
	// ${sealed:REF}), Sealed the value under the child's key of the kind.
	Kind      string `msgpack:"k"`
	Name      string `msgpack:"n"`
	Version   int    `msgpack:"v,omitempty"`
	Principal string `msgpack:"p,omitempty"` // whose permission allowed it
	GrantedBy string `msgpack:"g,omitempty"` // how: "creator", "grant to USER:x", "tag k:v granted to ..."
	// Refused is set when the value could not be resolved ("forbidden:
	// …", "not found"): the task failed at this reference. It is the audit
	// record of the attempt; the task's state keeps only resolved refs.
	Refused string `msgpack:"x,omitempty"`
	// Sealed is the secret's value as resolved, sealed under the
	// workflow's secrets key: what redaction looks for after a restart,
	// when the secret may have been overwritten (and its old value's key
	// destroyed) since. Compaction destroys it with the key (a "_masked"
	// one's survives, as _masked data does).
	Sealed []byte `msgpack:"s,omitempty"`
}

// SameRef reports whether a and b record the same resolution, sealed
// copies aside (two seals of one value differ). Dropped values are told
// apart by their seals: one path may have held several (a session a
// worker renewed).
func SameRef(a, b ResolvedRef) bool {
	return a.Kind == b.Kind && a.Name == b.Name && a.Version == b.Version && a.Principal == b.Principal &&
		a.GrantedBy == b.GrantedBy && a.Refused == b.Refused &&
		(!strings.HasPrefix(a.Name, DroppedRefPrefix) || bytes.Equal(a.Sealed, b.Sealed))
}

func (*TaskStarted) EventType() string { return "workflow.task_started" }

// TaskUpdated changes a task's status and output.
type TaskUpdated struct {
	TaskID string         `msgpack:"id"`
	Status string         `msgpack:"st"`
	Output map[string]any `msgpack:"out,omitempty"`
	// KeepOutput leaves the task's output as it is (status-only changes).
	KeepOutput bool `msgpack:"keep,omitempty"`
	// MergeOutput sets Output's keys over the task's output, keeping its
	// other keys, and DropOutput removes keys from it: a DO_WHILE's output
	// gains an entry per iteration, and an event that carried it whole made
	// a loop of n iterations append O(n²) bytes.
	MergeOutput          bool     `msgpack:"merge,omitempty"`
	DropOutput           []string `msgpack:"drop,omitempty"`
	Reason               string   `msgpack:"why,omitempty"`
	WorkerID             string   `msgpack:"worker,omitempty"`
	CallbackAfterSeconds int64    `msgpack:"cb,omitempty"`
	AvailableAt          int64    `msgpack:"avail,omitempty"`
	LeaseExtended        bool     `msgpack:"lease,omitempty"`
	// Released: the engine running a system task let go of it (HTTP with
	// asyncComplete): it waits IN_PROGRESS for an update from outside.
	Released bool `msgpack:"rel,omitempty"`
	// LeaseExpired: the engine running a system task did not report
	// within its lease (it stopped, or crashed running it).
	LeaseExpired  bool   `msgpack:"expired,omitempty"`
	SubWorkflowID string `msgpack:"sub,omitempty"`
	// Case and CaseDefault: the branch a SWITCH or DECISION whose case a
	// system worker evaluated took (see TaskScheduled).
	Case        string `msgpack:"case,omitempty"`
	CaseDefault bool   `msgpack:"cdef,omitempty"`
	// ClearsFailed: the SUB_WORKFLOW task of a workflow still running
	// waits again for its child, retried, rerun or restarted, or still
	// waits for a child below which one was (its status unchanged), and
	// the workflow's failed task (WorkflowStatusChanged.FailedTaskID) and
	// failed task names clear, as Conductor's updateAndPushParents clears
	// every ancestor's whatever its status. A parent that had ended
	// records a WorkflowReset, which clears them.
	ClearsFailed bool  `msgpack:"clrf,omitempty"`
	Time         int64 `msgpack:"ts"`
}

func (*TaskUpdated) EventType() string { return "workflow.task_updated" }

// TaskLogged appends log lines to a task.
type TaskLogged struct {
	TaskID string   `msgpack:"id"`
	Lines  []string `msgpack:"lines"`
	Times  []int64  `msgpack:"times"`
}

func (*TaskLogged) EventType() string { return "workflow.task_logged" }

// VariablesUpdated merges values into the workflow's variables.
type VariablesUpdated struct {
	Variables map[string]any `msgpack:"vars"`
	Time      int64          `msgpack:"ts"`
}

func (*VariablesUpdated) EventType() string { return "workflow.variables_updated" }

// WorkflowStatusChanged moves the workflow to a new status: COMPLETED,
// FAILED, TIMED_OUT, TERMINATED, PAUSED, or RUNNING (resume).
//
// An end's FailedTaskRefs and FailedTaskNames are the workflow's
// failedReferenceTaskNames and failedTaskNames from then on, whatever the
// end: those it held (a retry or a restart keeps them) and every task
// FAILED or FAILED_WITH_TERMINAL_ERROR, as Conductor's. Ends recorded
// before named only the tasks not retried FAILED, FAILED_WITH_TERMINAL_ERROR
// or TIMED_OUT of a FAILED or TIMED_OUT end, the one that ended it first,
// and fold as recorded.
type WorkflowStatusChanged struct {
	Status          string         `msgpack:"st"`
	Reason          string         `msgpack:"why,omitempty"`
	Output          map[string]any `msgpack:"out,omitempty"`
	FailedTaskRefs  []string       `msgpack:"frefs,omitempty"`
	FailedTaskNames []string       `msgpack:"fnames,omitempty"`
	// FailedTaskID is the task this end names as what ended the workflow
	// (Conductor's failedTaskId, its failure workflow's failureTaskId):
	// the task whose failure, timeout or cancellation ended it, or the
	// TERMINATE task; none for its own timeout or a terminate request.
	FailedTaskID string `msgpack:"ftid,omitempty"`
	// NoFailedTask: this end, no completion, names no task (FailedTaskID
	// is empty on purpose). One with neither was recorded before ends
	// named their task, and names the task its ended state shows, as
	// those engines did (the TERMINATE task that ended it, else the first
	// failed task).
	NoFailedTask bool `msgpack:"noftid,omitempty"`
	// NoFailureWorkflow: this end does not start the definition's
	// failureWorkflow (a terminate without triggerFailureWorkflow).
	NoFailureWorkflow bool `msgpack:"nofw,omitempty"`
	// RestartsTimeout: this resume gives the workflow its whole
	// timeoutSeconds again, as Conductor's resume does (it sets
	// lastRetriedTime). Resumes recorded without it (before it was
	// recorded) did not, and fold as they did.
	RestartsTimeout bool  `msgpack:"rto,omitempty"`
	Time            int64 `msgpack:"ts"`
}

func (*WorkflowStatusChanged) EventType() string { return "workflow.status_changed" }

// WorkflowReset starts a terminal workflow over. Restart and rerun-from-start
// remove every task; rerun-from-task keeps the tasks before FromTaskSeq;
// retry keeps every task (the decider schedules copies of the failed ones).
type WorkflowReset struct {
	Kind          string         `msgpack:"kind"` // restart | rerun | retry
	Def           []byte         `msgpack:"def,omitempty"`
	Input         map[string]any `msgpack:"in,omitempty"`
	SetInput      bool           `msgpack:"setin,omitempty"`
	CorrelationID string         `msgpack:"corr,omitempty"`
	KeepBeforeSeq int            `msgpack:"keep,omitempty"` // rerun from task: keep tasks with seq below
	// InputFields, when not SetInput, replace those fields of the input
	// the workflow keeps: those Def seals that it held in plain text,
	// recorded again for the guard to seal them, without the rest of the
	// input, which a record cannot always hold again (one near the log's
	// record limit). Records from before them carry the whole input again
	// (SetInput), which folds the same.
	InputFields map[string]any `msgpack:"infields,omitempty"`
	// RerunUpTo is the ancestor a rerun through this child was asked of
	// (engine.Rerun.UpTo), for recovery to tell the parent again.
	RerunUpTo string `msgpack:"upTo,omitempty"`
	// KeepsFailedTask: this retry keeps the task the end named as what
	// ended the workflow, for its next end to name while none is named,
	// and the failed task names (WorkflowStatusChanged.FailedTaskRefs),
	// as Conductor's retry leaves failedTaskId and them set. Other
	// resets, and a parent run again because its child was (Conductor's
	// updateAndPushParents clears the parent's), clear the task; a
	// restart keeps the names (Conductor's does), the others clear them.
	KeepsFailedTask bool  `msgpack:"kftid,omitempty"`
	Time            int64 `msgpack:"ts"`
}

func (*WorkflowReset) EventType() string { return "workflow.reset" }

// WorkflowRunAs records that a principal joins those the workflow runs as:
// one who gave it data of their own (a rerun's input, variables, a skipped
// task's input or output, an operator's task result), or one a child it
// took news from runs as. From here on a secret resolves, and a child
// starts, only where every one of them may: nobody steers another's
// secrets with data of their own, and nobody's data borrows the rights of
// whoever touched the workflow after.
type WorkflowRunAs struct {
	Principal string `msgpack:"p"`
	Time      int64  `msgpack:"ts"`
}

func (*WorkflowRunAs) EventType() string { return "workflow.run_as" }

// WorkflowCompacted records that an ended workflow's secrets key was
// destroyed: every value sealed under it is gone for good, and reads as
// "***" from then on.
type WorkflowCompacted struct {
	Time int64 `msgpack:"ts"`
}

func (*WorkflowCompacted) EventType() string { return "workflow.compacted" }

// ValuesMasked marks places in the workflow that read as "***": data that
// turned out to be secret after it was written (a workflow input later
// passed into a _secrets block). Paths are "input.<key>", "output.<key>",
// "variables.<key>", "task/<task id>/<input|output>.<key>", the same
// without ".<key>" for the whole of it when a top-level key's name holds
// the value (a path never spells one), or, in the
// configuration of a task configured at run time,
// "task/<task id>/workflowTask" followed by ".inputParameters.<key>", a
// JSON pointer, or nothing (see engine.ConfigField).
type ValuesMasked struct {
	Paths []string `msgpack:"paths"`
	// Shred are those of Paths whose values went into a _secrets block:
	// compaction replaces them with "***", as it destroys the block's.
	// (A value that went into _masked stays, as _masked data does.)
	Shred []string `msgpack:"shred,omitempty"`
	// Texts are the paths of reasons and log lines found to hold a value
	// ("reason", "task/<id>/reason", "task/<id>/log/<n>"): each reads
	// "***" from then on, in the state itself, since no expression needs
	// it as written (engine.ReasonPath, engine.LogPath).
	Texts []string `msgpack:"texts,omitempty"`
	// Sealed holds each value found where Paths mark it, sealed under the
	// workflow's key of the block it went into (Kind "_secrets" or
	// "_masked", Name "late/<n>"): the state keeps it with Workflow's
	// Resolved, so that redaction, rebuilt from the state, still looks
	// for it once what sealed it is gone (a task a jump, rerun or restart
	// dropped) and the places Paths mark still hold it as given.
	// Compaction destroys a "_secrets" one with the key.
	Sealed []ResolvedRef `msgpack:"sealed,omitempty"`
}

func (*ValuesMasked) EventType() string { return "workflow.values_masked" }

// LateRefPrefix starts the names of ValuesMasked.Sealed's values ("late/<n>")
// among a workflow's resolved references.
const LateRefPrefix = "late/"

// IsLateRef reports whether a resolved reference's name is one of
// ValuesMasked.Sealed's.
func IsLateRef(name string) bool { return strings.HasPrefix(name, LateRefPrefix) }

// DroppedRefPrefix names, followed by the purpose it was sealed under, a
// value a task held sealed (Kind "_secrets" or "_masked") when a restart,
// rerun or jump dropped the task, kept among its workflow's resolved
// references (see DroppedRef).
const DroppedRefPrefix = "dropped/"

// DroppedRef is the reference that keeps a value a dropped task held
// sealed under purpose, with kind's block name.
func DroppedRef(kind, purpose string, sealed []byte) ResolvedRef {
	return ResolvedRef{Kind: kind, Name: DroppedRefPrefix + purpose, Sealed: sealed}
}

// OnlyCompaction reports whether events are one decision's compaction and
// nothing else: they carry no data, and apply to a workflow whose state a
// read model no longer keeps.
func OnlyCompaction(events []Event) bool {
	for _, ev := range events {
		if _, ok := ev.(*WorkflowCompacted); !ok {
			return false
		}
	}
	return len(events) > 0
}

// SecretsSealed records that the workflow holds data sealed under its
// secrets key, the key compaction destroys once the workflow has ended, and
// names that key. Workflows without it have nothing to compact.
type SecretsSealed struct {
	// Key is the data key's id. Empty in records written before keys were
	// pooled: the workflow's key is then named after it.
	Key string `msgpack:"key,omitempty"`
}

func (*SecretsSealed) EventType() string { return "workflow.secrets_sealed" }

// Reset kinds.
const (
	ResetRestart = "restart"
	ResetRerun   = "rerun"
	ResetRetry   = "retry"
)

func init() {
	for _, e := range []Event{&WorkflowStarted{}, &TaskScheduled{}, &TaskStarted{}, &TaskUpdated{}, &TaskLogged{},
		&VariablesUpdated{}, &WorkflowStatusChanged{}, &WorkflowReset{}, &WorkflowCompacted{}, &ValuesMasked{}, &SecretsSealed{},
		&WorkflowRunAs{}, &WorkflowAdmitted{}} {
		Default.Register(e, 1)
	}
}
