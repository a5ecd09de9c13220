package engine

import (
	"maps"
	"reflect"
	"slices"

	"github.com/flowvault/flowvault/masking"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// Workflow is the state of one workflow instance: the fold of its events.
// Maps held by a Workflow are never modified in place (Apply replaces them),
// so a shallow Clone is a safe snapshot.
type Workflow struct {
	ID            string            `msgpack:"id"`
	Name          string            `msgpack:"name"`
	Version       int               `msgpack:"ver"`
	DefJSON       []byte            `msgpack:"def"`
	Status        string            `msgpack:"st"`
	Input         map[string]any    `msgpack:"in"`
	Output        map[string]any    `msgpack:"out"`
	Variables     map[string]any    `msgpack:"vars"`
	CorrelationID string            `msgpack:"corr,omitempty"`
	Priority      int               `msgpack:"prio,omitempty"`
	TaskToDomain  map[string]string `msgpack:"t2d,omitempty"`
	CreatedBy     string            `msgpack:"by,omitempty"`
	// AlsoRunsAs are the principals besides CreatedBy the workflow runs as
	// (see schemas.WorkflowRunAs).
	AlsoRunsAs           []string `msgpack:"alsoAs,omitempty"`
	ParentWorkflowID     string   `msgpack:"pwf,omitempty"`
	ParentWorkflowTaskID string   `msgpack:"ptask,omitempty"`
	Depth                int      `msgpack:"depth,omitempty"` // see schemas.WorkflowStarted
	IdempotencyKey       string   `msgpack:"idem,omitempty"`
	Reason               string   `msgpack:"why,omitempty"`
	FailedTaskRefs       []string `msgpack:"frefs,omitempty"`
	FailedTaskNames      []string `msgpack:"fnames,omitempty"`
	// FailedTaskID is the task its end named as what ended it (see
	// schemas.WorkflowStatusChanged), for its failure workflow; a retry
	// keeps it (schemas.WorkflowReset.KeepsFailedTask). An end recorded
	// before ends named their task names the one its ended state shows
	// (schemas.WorkflowStatusChanged.NoFailedTask).
	FailedTaskID    string `msgpack:"ftid,omitempty"`
	CreateTime      int64  `msgpack:"ct"`
	StartTime       int64  `msgpack:"stt"`
	EndTime         int64  `msgpack:"et,omitempty"`
	UpdateTime      int64  `msgpack:"ut"`
	LastRetriedTime int64  `msgpack:"lrt,omitempty"`
	// NoFailureWorkflow: the workflow ended without starting its
	// failureWorkflow (see schemas.WorkflowStatusChanged).
	NoFailureWorkflow bool `msgpack:"nofw,omitempty"`
	// FailureWorkflows are the failure workflows its ends started, of
	// this run and the runs before a restart, rerun or retry: each got
	// the input as given, and is told of values found to be secret later
	// as a child is (see TellChildren). A retry clears the output that
	// named the last one.
	FailureWorkflows []string `msgpack:"fws,omitempty"`
	// ResetTime is when the last restart, retry or rerun happened.
	ResetTime int64 `msgpack:"rst,omitempty"`
	// ResumeTime is when the last resume that restarted the workflow's
	// timeoutSeconds happened (schemas.WorkflowStatusChanged's
	// RestartsTimeout). Not LastRetriedTime, which Conductor's resume
	// sets: a SUB_WORKFLOW task's timeout counts from that (timeoutStart),
	// and a resume gives a task no time again.
	ResumeTime int64   `msgpack:"rsm,omitempty"`
	Tasks      []*Task `msgpack:"tasks"`
	// Counter numbers every task instance ever created, across restarts, so
	// that derived task ids never repeat.
	Counter int `msgpack:"ctr"`
	// Epoch counts resets (restart, rerun, retry); ids derived for child and
	// failure workflows include it.
	Epoch int `msgpack:"epoch,omitempty"`
	// RerunUpTo is the last reset's RerunUpTo (see schemas.WorkflowReset).
	RerunUpTo string `msgpack:"upTo,omitempty"`
	// Removed is set by the remove API; Archived when it kept an archive.
	// No trigger applies to a removed workflow.
	Removed  bool `msgpack:"rm,omitempty"`
	Archived bool `msgpack:"arch,omitempty"`
	// SealsSecrets is set once data was sealed under the workflow's secrets
	// key (schemas.SecretsSealed); it stays set across restarts, except
	// those of a compacted workflow, whose next seal takes a new key.
	// Compacted is set once the key was destroyed (a workflow with no key
	// that masks a cached output is compacted too, for its purges, and a
	// value found secret there since unsets it when the compaction
	// shredded nothing: see schemas.ValuesMasked in Apply).
	SealsSecrets bool `msgpack:"sealsSecrets,omitempty"`
	Compacted    bool `msgpack:"compacted,omitempty"`
	// ShreddedNothing is set with Compacted when the compaction took
	// nothing out of the state (a workflow with no key, compacted for its
	// purges): redaction still looks for every value it looked for
	// before, so a task's late log line can be taken. A compaction of
	// data sealed under a key recorded by no workflow.secrets_sealed
	// (written before it existed) shreds it, and leaves it unset.
	ShreddedNothing bool `msgpack:"shreddedNothing,omitempty"`
	// SecretsKey is the id of the secrets key, as SecretsSealed recorded
	// it; empty for a key named after the workflow.
	SecretsKey string `msgpack:"secretsKey,omitempty"`
	// MaskedPaths read as "***" in every view (see schemas.ValuesMasked).
	MaskedPaths []string `msgpack:"masked,omitempty"`
	// Unsealed is set while no event folded into the workflow carried a
	// sealed value (see masking.Sealed): its data holds none, and a reader
	// that would look for one through all of it (a DO_WHILE's condition
	// reads every iteration's output) need not. It stays unset once a
	// sealed value came, whatever becomes of it. A state stored before the
	// field existed reads false: look.
	Unsealed bool `msgpack:"unsealed,omitempty"`
	// Resolved names what the tasks a restart, rerun or jump dropped had
	// resolved at their hand-offs, and what was resolved into the input
	// of a child at its start, and the values found to be secret later
	// (schemas.ValuesMasked.Sealed): a worker of the old run may still
	// echo a value, a child's task a secret its input holds in text, the
	// output copy an input kept as given, and redaction looks for those
	// values in what the workflow holds later (guard rebuilds its memo
	// from these and the tasks').
	Resolved []schemas.ResolvedRef `msgpack:"res,omitempty"`
	// Event is the event whose handler started the workflow (see
	// schemas.WorkflowStarted); restarts, retries and reruns keep it.
	Event string `msgpack:"event,omitempty"`
	// RateLimited, RateLimitKey and Queued are the start's (see
	// schemas.WorkflowStarted); Queued is cleared by WorkflowAdmitted and
	// by a reset.
	RateLimited  bool   `msgpack:"rl,omitempty"`
	RateLimitKey string `msgpack:"rlk,omitempty"`
	Queued       bool   `msgpack:"queued,omitempty"`
	// Seq is the log sequence of the last record folded into this state.
	Seq uint64 `msgpack:"seq"`

	plan *plan // parsed definition, built lazily
	// sweep is what the last decision's rounds knew of Tasks, for the next
	// decision to start from; Apply keeps it only across events that leave
	// the tasks it settled as they were (see followSweep). Its open list is
	// never changed in place: states that share it by Clone stay apart.
	sweep sweep
	// refs finds tasks by reference name, while this state owns it (see
	// refIndex).
	refs *refIndex
	// joins counts what the JOINs wait for, while this state owns it (see
	// joinTally).
	joins *joinTally
}

// Task is one task instance of a workflow.
type Task struct {
	ID         string         `msgpack:"id"`
	Ref        string         `msgpack:"ref"`
	Name       string         `msgpack:"name"`
	Type       string         `msgpack:"type"`
	Status     string         `msgpack:"st"`
	Seq        int            `msgpack:"seq"`
	Input      map[string]any `msgpack:"in"`
	Deferred   [][]any        `msgpack:"dfr,omitempty"`
	Output     map[string]any `msgpack:"out"`
	RetryCount int            `msgpack:"retry,omitempty"`
	Retried    bool           `msgpack:"retried,omitempty"`
	// Held: it failed while its workflow was paused, and the failure waits
	// for resume (see decision.failed).
	Held          bool   `msgpack:"held,omitempty"`
	RetriedTaskID string `msgpack:"rtid,omitempty"`
	PollCount     int    `msgpack:"polls,omitempty"`
	// LeaseExpiries counts the system worker leases that ran out on it.
	LeaseExpiries        int                     `msgpack:"expiries,omitempty"`
	Iteration            int                     `msgpack:"iter,omitempty"`
	Domain               string                  `msgpack:"dom,omitempty"`
	WorkerID             string                  `msgpack:"worker,omitempty"`
	Reason               string                  `msgpack:"why,omitempty"`
	CallbackAfterSeconds int64                   `msgpack:"cb,omitempty"`
	ScheduledTime        int64                   `msgpack:"sched"`
	FirstScheduled       int64                   `msgpack:"first,omitempty"`
	AvailableAt          int64                   `msgpack:"avail,omitempty"`
	StartTime            int64                   `msgpack:"start,omitempty"`
	FirstStartTime       int64                   `msgpack:"fstart,omitempty"`
	EndTime              int64                   `msgpack:"end,omitempty"`
	UpdateTime           int64                   `msgpack:"upd"`
	Policy               schemas.TaskPolicy      `msgpack:"pol"`
	Config               []byte                  `msgpack:"cfg,omitempty"`
	TaskDef              []byte                  `msgpack:"tdef,omitempty"`
	SubWorkflowID        string                  `msgpack:"sub,omitempty"`
	ParentTaskID         string                  `msgpack:"parent,omitempty"`
	Logs                 []conductor.TaskExecLog `msgpack:"logs,omitempty"`
	// StartDelay is how long (ms) it waited, as scheduled, before it could
	// be handed out (its startDelay, a retry's delay): its
	// startDelayInSeconds, which its timeoutSeconds counts past, as
	// Conductor's does. A callback since changes AvailableAt, not this.
	StartDelay int64 `msgpack:"delay,omitempty"`
	// Resolved names what was resolved into this task's input at its
	// hand-offs (never a value): redaction knows what to look for. A
	// DO_WHILE also names here what the tasks of its iterations removed
	// past keepLastN had resolved.
	Resolved []schemas.ResolvedRef `msgpack:"res,omitempty"`
	// Case and CaseDefault are the branch a finished SWITCH or DECISION
	// took (see schemas.TaskScheduled); neither is set in states from
	// before they were recorded, whose branch is read from the output.
	Case        string `msgpack:"case,omitempty"`
	CaseDefault bool   `msgpack:"cdef,omitempty"`
	// Forked are the tasks a FORK_JOIN_DYNAMIC forked (see
	// schemas.TaskScheduled); unset in states from before they were
	// recorded, whose list is read from the output.
	Forked []string `msgpack:"fork,omitempty"`
	// SealedReads are schemas.TaskScheduled's: the references to the
	// workflow's sealed data that texts Input holds sealed whole read.
	SealedReads []string `msgpack:"srd,omitempty"`
	// CacheKeys are the cacheConfig keys (as configured, ${…} and all)
	// of the definitions it completed under that an upgrade since gave it
	// another one or none: its output was cached, or served from the
	// cache, under one of them (see Uncache).
	CacheKeys []string `msgpack:"ckeys,omitempty"`
	// KeysKept: it had completed when an upgrade replaced its workflow's
	// definition by one that does not parse, which kept its key of then
	// in CacheKeys, if it had one: every key its output was cached, or
	// served, under is known without the definition, and uncache purges
	// it by key alone, not by a read of every cache entry (UncacheTasks).
	KeysKept bool `msgpack:"kkept,omitempty"`
}

// Terminal reports whether the workflow has finished.
func (w *Workflow) Terminal() bool { return conductor.WorkflowTerminal(w.Status) }

// Clone returns a copy Apply can change without touching w: it has its own
// task list, and shares the tasks and maps, which Apply replaces, never
// changes.
func (w *Workflow) Clone() *Workflow {
	c := *w
	if w.refs != nil && w.refs.owner == w {
		c.refs.owner = &c // the copy is the one that changes next
	} else {
		c.refs = nil
	}
	if w.joins != nil && w.joins.owner == w {
		c.joins.owner = &c
	} else {
		c.joins = nil
	}
	// Room for the one task most decisions that schedule schedule (the
	// next in a row, a retry): appended past the copy's end, it copied
	// the list a second time, into a larger one.
	c.Tasks = make([]*Task, len(w.Tasks), len(w.Tasks)+1)
	copy(c.Tasks, w.Tasks)
	c.FailedTaskRefs = slices.Clone(w.FailedTaskRefs)
	c.FailedTaskNames = slices.Clone(w.FailedTaskNames)
	return &c
}

// AwaitsCompaction reports whether the workflow ended (or was removed)
// holding data sealed under a secrets key that is not destroyed yet, or
// masking a cached output: the compaction, which is tried again until it
// is recorded, is what purges it for good (UncacheOutput.Required), and a
// workflow that found the output secret by _masked alone has no key.
func (w *Workflow) AwaitsCompaction() bool {
	if !w.Terminal() && !w.Removed || w.Compacted {
		return false
	}
	// Holds finds data sealed under the secrets key in a workflow that
	// ended before workflow.secrets_sealed existed, so that its key is
	// destroyed all the same.
	return w.SealsSecrets || w.Holds(masking.KindSecrets) || len(uncache(w, w.MaskedPaths, true)) > 0
}

// Holds reports whether the workflow's data holds values sealed under its
// key of kind (see masking.Sealed), the references that keep what a task
// it dropped held sealed (see keepResolved) included: a workflow from
// before workflow.secrets_sealed whose rerun dropped the task that held
// its _secrets data still needs the key named after it, as redaction
// opens them.
func (w *Workflow) Holds(kind byte) bool {
	if w.Unsealed {
		return false
	}
	if masking.Holds(w.Input, kind) || masking.Holds(w.Output, kind) || masking.Holds(w.Variables, kind) || holdsRefs(w.Resolved, kind) {
		return true
	}
	for _, t := range w.Tasks {
		if masking.Holds(t.Input, kind) || masking.Holds(t.Output, kind) || holdsRefs(t.Resolved, kind) {
			return true
		}
	}
	return false
}

// holdsRefs reports whether refs hold a value sealed under the key of
// kind: a _masked one's under that kind's, any other's under the secrets
// key (as compaction shreds them, see shredRefs).
func holdsRefs(refs []schemas.ResolvedRef, kind byte) bool {
	return slices.ContainsFunc(refs, func(r schemas.ResolvedRef) bool {
		return len(r.Sealed) > 0 && (r.Kind == masking.KeyMasked) == (kind == masking.KindMasked)
	})
}

// TaskByID returns the task with the given id, or nil. It only reads w,
// which may be shared (the executor's cached state is read by many), so
// it scans the list; Apply and the decider, which own the state they
// change, look through its index (see task), as does the goroutine that
// decides on w (TaskByIDDeciding).
func (w *Workflow) TaskByID(id string) *Task {
	if i := w.scanIndex(id); i >= 0 {
		return w.Tasks[i]
	}
	return nil
}

// TaskByIDDeciding is TaskByID for the goroutine that decides on w, and
// only for it: through w's index while w owns one (the state a decision
// left owns the index it built, until the next decision's Clone takes it
// over), else by a scan. A lookup brings the index up to date, writing
// its maps, so that no other goroutine may make one on the same state;
// the executor's shard looks up the task of a take or a result on the
// state it is about to decide on, where a scan met a branch in the middle
// of a fork after half the list.
func (w *Workflow) TaskByIDDeciding(id string) *Task { return w.task(id) }

// task is TaskByID for the state a decision or Apply changes.
func (w *Workflow) task(id string) *Task {
	if i := w.taskIndex(id); i >= 0 {
		return w.Tasks[i]
	}
	return nil
}

// taskIndex returns the index of the task with the given id, or -1, for
// the state a decision or Apply changes: through the state's index if it
// owns one (a decision over more than scanBelow tasks built it, or the
// read model asked for one, see OwnIndex; Apply does not build one for
// a state that has none, which would pay for all of it to find one
// task). A result or a take for a branch in the middle of a fork of
// thousands was found by a scan of half the list, in the decision and
// again in Apply.
func (w *Workflow) taskIndex(id string) int {
	if x := w.refs; x != nil && x.owner == w && len(w.Tasks) > scanBelow {
		if i, ok := w.indexed().byID[id]; ok {
			return i
		}
		return -1
	}
	return w.scanIndex(id)
}

// scanIndex is taskIndex by a scan. It looks from both ends of the list at
// once: the tasks asked for are the newest (a result, a take) or a
// container scheduled before them (the DO_WHILE whose iterations follow
// it), and a scan from one end made folding or deciding a long loop
// O(n²).
func (w *Workflow) scanIndex(id string) int {
	for i, j := 0, len(w.Tasks)-1; i <= j; i, j = i+1, j-1 {
		if w.Tasks[j].ID == id {
			return j
		}
		if w.Tasks[i].ID == id {
			return i
		}
	}
	return -1
}

// LatestByRef returns the newest instance (highest seq) of the task with
// reference name ref, or nil.
func (w *Workflow) LatestByRef(ref string) *Task {
	for i := len(w.Tasks) - 1; i >= 0; i-- {
		if w.Tasks[i].Ref == ref {
			return w.Tasks[i]
		}
	}
	return nil
}

// Principals are who the workflow runs as: its creator, then those who
// joined (schemas.WorkflowRunAs). A secret resolves, and a child starts,
// only where every one of them may.
func (w *Workflow) Principals() []string {
	return append([]string{w.CreatedBy}, w.AlsoRunsAs...)
}

// FirstFailed returns the first task that ended unsuccessfully and was not
// retried since, or nil: where a retry with resumeSubworkflowTasks looks
// for the failed child to retry instead. A task the workflow went on past
// (a jump canceled it, or its loop gave up on its iteration) is not one: a
// retry leaves it ended, and its child's retry would not reopen it.
func (w *Workflow) FirstFailed() *Task {
	d := &decision{w: w}
	d.plan, _ = w.planFor() // nil for a definition that does not parse: no loop to look into
	for _, t := range w.Tasks {
		if !t.Retried && unsuccessful(t.Status) && !jumpedOver(t) && (d.plan == nil || !d.abandoned(t)) {
			return t
		}
	}
	return nil
}

// Active reports whether the task may still change on its own.
func (t *Task) Active() bool { return !conductor.TaskTerminal(t.Status) }

// IsWorkerTask reports whether the task is handed to workers (over NATS or
// HTTP polling) rather than decided by the engine or run by a system worker.
func (t *Task) IsWorkerTask() bool { return !isSystemType(t.Type) }

// SameMap reports whether a and b are one map (both nil included), not
// equal ones. Apply replaces a map it changes and never changes one in
// place, so a state's map that is the same as before holds the same values.
func SameMap(a, b map[string]any) bool {
	return reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer()
}

// SameValue reports whether a and b are one value: the same map (see
// SameMap), pointer or slice, or equal values of a comparable type. Apply
// copies a changed map shallowly, so a value that is the same as before is
// one the change left alone, without comparing what it holds.
func SameValue(a, b any) bool {
	if m, ok := a.(map[string]any); ok {
		n, ok := b.(map[string]any)
		return ok && SameMap(m, n)
	}
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	switch {
	case !va.IsValid() || !vb.IsValid():
		return va.IsValid() == vb.IsValid()
	case va.Type() != vb.Type():
		return false
	}
	switch va.Kind() {
	case reflect.Map, reflect.Pointer:
		return va.UnsafePointer() == vb.UnsafePointer()
	case reflect.Slice:
		return va.UnsafePointer() == vb.UnsafePointer() && va.Len() == vb.Len()
	}
	return va.Comparable() && va.Equal(vb)
}

func copyMap(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	return maps.Clone(m)
}
