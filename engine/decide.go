package engine

import (
	"errors"
	"fmt"
	"maps"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/flowvault/flowvault/engine/expr"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// ErrTaskGone is returned for a Take of a task that is no longer waiting for
// a worker: another worker took it, it was canceled, or it finished.
var ErrTaskGone = errors.New("task is no longer available")

// DeciderFault is a decision that panicked: a defect of the decider, which
// the workflow's next trigger meets again until it is fixed.
type DeciderFault struct {
	// Panic says what failed: a runtime error's text, the decider's own
	// message, or only the type of any other value, which could hold the
	// workflow's data.
	Panic string
	// Stack is the panicking goroutine's stack (functions and lines).
	Stack []byte
}

func newDeciderFault(p any) *DeciderFault {
	f := &DeciderFault{Stack: debug.Stack()}
	switch v := p.(type) {
	case runtime.Error:
		f.Panic = v.Error()
	case string:
		if strings.HasPrefix(v, "engine: ") {
			f.Panic = v
			break
		}
		f.Panic = "a panic of type string"
	default:
		f.Panic = fmt.Sprintf("a panic of type %T", p)
	}
	return f
}

func (f *DeciderFault) Error() string { return "the decider failed: " + f.Panic }

// ErrTaskNotYet is returned for a Take of a task still waiting out a delay
// (a retry's, a callback's) by this engine's clock. The engine that
// announced it may have a clock a little ahead: the take is to be tried
// again, not given up.
var ErrTaskNotYet = fmt.Errorf("task is not available yet: %w", fault.ErrUnavailable)

// Input is everything a decision depends on.
type Input struct {
	// State is the workflow's current state; nil only for Start.
	State   *Workflow
	Trigger Trigger
	Now     time.Time
	// TaskDef returns the registered definition of a task name, or nil.
	TaskDef func(name string) *conductor.TaskDef
	// ActiveDomain reports whether workers of taskType polled domain's
	// queue lately; it chooses among a taskToDomain entry's fallbacks
	// (nil: none has, and the last one is taken).
	ActiveDomain func(taskType, domain string) bool
	// CachedOutput returns the output cached under key, if it has not
	// expired (see CacheOutput); nil: nothing is cached.
	CachedOutput func(key string) (map[string]any, bool)
	// CheckOutput holds the output of a workflow whose definition
	// enforces its outputSchema to it when the workflow would complete:
	// nil when it conforms; a fault.ErrInvalid error saying why not, with
	// which the workflow fails instead; any other error when it cannot
	// tell, which fails the decision (to be tried again). Nil: not
	// checked.
	CheckOutput func(def *conductor.WorkflowDef, output map[string]any) error
	// MaxRecordBytes is the most one record of the workflow's log holds
	// (0: DefaultMaxRecordBytes), and so the most one decision's events
	// may. It bounds what the decision's evaluations of parameters (tasks'
	// inputs, the workflow's output, a loop's items) build together: a
	// template that copies its input a hundred thousand times, or a
	// thousand branches that each copy it, fail the task that passes the
	// bound instead of building gigabytes that no record could hold.
	MaxRecordBytes int
}

// DefaultMaxRecordBytes is MaxRecordBytes when Input leaves it out: the
// event log's default bound of a record, 8 MiB.
const DefaultMaxRecordBytes = 8 << 20

// Decision is the outcome of Decide.
type Decision struct {
	// Events to append, in order, as one record.
	Events []schemas.Event
	// Effects to perform once the events are appended.
	Effects []Effect
	// State after the events (the input state when there are none).
	State *Workflow
	// Reply is the trigger's answer: the task handed out for Take, a
	// ResultReply for Result.
	Reply any
}

// ResultReply answers a Result trigger.
type ResultReply struct {
	// Ignored is true when the task or workflow had already finished: the
	// report is late or a duplicate, and changed nothing.
	Ignored bool
}

// maxCascade bounds the rounds of scheduling one decision may run, so that a
// definition that loops on itself fails instead of hanging the engine.
const maxCascade = 10000

// yieldAfter is the rounds after which a decision starts no new loop
// iteration: a DO_WHILE of tasks the decider completes itself runs an
// iteration every round or two, and a loop over more items than
// maxCascade allows failed, in one decision whose record grew with it.
// The loop waits for its next iteration, due at once (Deadlines, Pending),
// and the next decision (the executor's Tick) goes on.
const yieldAfter = 1000

// decision is one Decide call's working state.
type decision struct {
	in      Input
	w       *Workflow
	plan    *plan
	now     int64
	events  []schemas.Event
	effects []Effect
	reply   any
	// rounds counts progress's rounds of scheduling (see yieldAfter).
	rounds int
	// unjoined are the EXCLUSIVE_JOINs of this round none of whose tasks
	// ran, with nothing running that leads to one: they complete empty
	// only after a round that schedules nothing, as a task that ended in
	// it may have a successor that leads to one (evaluateExclusiveJoin).
	unjoined []*Task
	// trimmed are the tasks of loop iterations past keepLastN, removed at
	// the end of the round that trimmed them (removeTrimmed).
	trimmed []trimmed
	// fresh are the output maps this decision's events made (see fresh).
	fresh fresh
	// noFailureWorkflow: the end this decision makes starts no failure
	// workflow (an operator's terminate).
	noFailureWorkflow bool
	// endedBy is the task whose failure, timeout or cancellation ends the
	// workflow in this decision, or the TERMINATE task that does, if one
	// does: finish names it first among the failed tasks, and as the
	// end's FailedTaskID (Conductor's failedTaskId, which only the
	// TerminateWorkflowException of such a task sets).
	endedBy string
	// masked are the strings under _secrets and _masked keys, and in
	// maskedFields fields of the input, of the first maskedRead events
	// (see unsealedText).
	masked     []string
	maskedRead int
	// maskedCases are the case texts of the values under _secrets and
	// _masked keys, and in maskedFields fields of the input, of the first
	// casesRead events (see sealedCase).
	maskedCases []string
	casesRead   int
	// evaluations is what the decision's evaluations may still build (see
	// Input.MaxRecordBytes); zero until the first.
	evaluations expr.Budget
	// holding makes what ends the workflow from a task just scheduled
	// wait in ends, by task id, until what is scheduled with it is (see
	// hold).
	holding bool
	ends    []string
	// failure fails the decision, to be tried again: a check that could
	// not tell, met where no error is returned (a TERMINATE's output).
	failure error
}

// budget is what the decision's evaluations share.
func (d *decision) budget() *expr.Budget {
	if d.evaluations == (expr.Budget{}) {
		limit := d.in.MaxRecordBytes
		if limit <= 0 {
			limit = DefaultMaxRecordBytes
		}
		d.evaluations = *expr.NewBudget(limit)
	}
	return &d.evaluations
}

// Decide computes what happens to a workflow when trigger arrives. It does
// not change in.State. Errors wrap fault kinds: ErrNotFound (no such task),
// ErrConflict (the trigger does not apply in the workflow's status),
// ErrInvalid (a malformed trigger), or are ErrTaskGone, or a *DeciderFault.
func Decide(in Input) (dec Decision, err error) {
	// A fault of the decider's own fails this decision, not the process:
	// every engine that took the workflow up after a restart would fail on
	// it again, and with it every other workflow it runs.
	defer func() {
		if p := recover(); p != nil {
			dec, err = Decision{}, newDeciderFault(p)
		}
	}()
	return decide(in)
}

func decide(in Input) (Decision, error) {
	if in.TaskDef == nil {
		in.TaskDef = func(string) *conductor.TaskDef { return nil }
	}
	d := &decision{in: in, now: in.Now.UnixMilli()}
	var err error
	if s, ok := in.Trigger.(Start); ok {
		if in.State != nil {
			return Decision{}, fault.Conflict("workflow %s already exists", in.State.ID)
		}
		err = d.start(s)
	} else {
		if in.State == nil {
			return Decision{}, fault.NotFound("workflow not found")
		}
		if _, compact := in.Trigger.(Compact); in.State.Removed && !compact {
			// A removed workflow's events stay in the log: its secrets key
			// must still be destroyed.
			return Decision{}, fault.NotFound("workflow %s was removed", in.State.ID)
		}
		d.w = in.State.Clone()
		if !stateOnly(in.Trigger, d.w) {
			if d.plan, err = d.w.planFor(); err != nil && !endsUnread(in.Trigger) && !masksUnread(in.Trigger) {
				return Decision{}, unreadableError{id: in.State.ID}
			}
		}
		err = d.handle(in.Trigger)
	}
	if err != nil {
		return Decision{}, err
	}
	if err := d.progress(); err != nil {
		return Decision{}, err
	}
	if d.failure != nil {
		return Decision{}, d.failure
	}
	d.effects = slices.DeleteFunc(d.effects, d.handsOutEnded)
	state := d.w
	if len(d.events) == 0 {
		// Nothing changed: the state stays the caller's, and so does the
		// index the working copy took over (its tasks are the same).
		state = in.State
		if x := d.w.refs; x != nil && x.owner == d.w && in.State.refs == x {
			x.owner = in.State
		}
		if x := d.w.joins; x != nil && x.owner == d.w && in.State.joins == x {
			x.owner = in.State
		}
	}
	return Decision{Events: d.events, Effects: d.effects, State: state, Reply: d.reply}, nil
}

// unreadableDef says why a workflow whose recorded definition does not
// parse is refused what needs it, quoting none of it: the parser's text
// may, and the definition's values may be data.
const unreadableDef = "its recorded definition cannot be read (an earlier version's record, or a damaged one): it can only be terminated or removed"

// ErrUnreadableDef is the error of a decision that needs the workflow's
// recorded definition, which does not parse: the workflow is stuck until
// it is terminated or removed, which its caller may want an operator to
// know. It is a conflict, since nothing the caller sends changes it:
// errors.Is(err, fault.ErrConflict) holds.
var ErrUnreadableDef = errors.New(unreadableDef)

type unreadableError struct{ id string }

func (e unreadableError) Error() string   { return "workflow " + e.id + ": " + unreadableDef }
func (e unreadableError) Unwrap() []error { return []error{fault.ErrConflict, ErrUnreadableDef} }

// stateOnly reports whether t is decided on w's state alone, without its
// definition: a workflow whose stored definition does not parse (one an
// earlier version read, or a damaged record) must still have its secrets
// key destroyed, and may still be removed. Once it ended it must still
// mask the values its starter finds to be secret late, and tell its own
// children (its failure workflow among them), and recovery still performs
// what its end implies: neither reads the definition of an ended one.
// Terminating one that has not ended, or telling it of values, reads its
// definition when it parses (endsUnread, masksUnread).
func stateOnly(t Trigger, w *Workflow) bool {
	switch t := t.(type) {
	case Compact:
		return true
	case Remove:
		return !t.Terminate || w.Terminal()
	case ValuesFound, Reconcile:
		return w.Terminal()
	}
	return false
}

// endsUnread reports whether t, which ends a running workflow by its
// definition (finish), may end one whose definition does not parse
// without it: its tasks are canceled, its children terminated and its
// parent told from its state alone; what only the definition holds, its
// outputParameters and failureWorkflow, is done without (unreadReason).
func endsUnread(t Trigger) bool {
	switch t := t.(type) {
	case Terminate:
		return true
	case Remove:
		return t.Terminate
	}
	return false
}

// masksUnread reports whether t, decided on a running workflow's
// definition when it parses, is decided without it when it does not: a
// ValuesFound records the masking its preparation found in the state
// (and the key it sealed under), which reads no definition, and the
// workflow still tells its own children (guard's lookFor, TellChildren).
// Only the progress a decision makes after it needs the definition, and
// one that does not parse has none to make (progress).
func masksUnread(t Trigger) bool {
	_, ok := t.(ValuesFound)
	return ok
}

// unreadReason is the reason a workflow whose definition does not parse
// ends with when asked to end with reason: it says what was not done.
func unreadReason(reason string) string {
	const unread = "its recorded definition cannot be read: its output is empty, and its failure workflow, if it names one, was not started"
	if reason == "" {
		return unread
	}
	return reason + " (" + unread + ")"
}

// emit records an event and folds it into the working state.
func (d *decision) emit(ev schemas.Event) {
	if d.fresh == nil {
		d.fresh = fresh{}
	}
	announced := d.announcedUpdate(ev)
	w, err := apply(d.w, ev, d.fresh)
	if err != nil {
		// The decider only emits events that fit the state it holds.
		panic(fmt.Sprintf("engine: emitted %s does not apply: %v", ev.EventType(), err))
	}
	d.w = w
	d.events = append(d.events, ev)
	if announced != nil {
		if t := d.w.task(announced.ID); t == nil || t.Status != conductor.TaskScheduled {
			d.effect(Withdraw{WorkflowID: d.w.ID, TaskID: announced.ID, TaskType: announced.Name, Domain: announced.Domain,
				Priority: d.w.Priority, Since: announced.AvailableAt})
		}
	}
}

// announcedUpdate returns the task ev updates if it is a worker task
// waiting for a worker, announced (available since before now): if the
// update ends its wait other than by a take (a take is TaskStarted), its
// announcement is withdrawn.
func (d *decision) announcedUpdate(ev schemas.Event) *Task {
	u, ok := ev.(*schemas.TaskUpdated)
	if !ok || u.Status == conductor.TaskScheduled {
		return nil
	}
	t := d.w.task(u.TaskID)
	if t == nil || t.Status != conductor.TaskScheduled || t.AvailableAt > d.now || !t.IsWorkerTask() {
		return nil
	}
	return t
}

func (d *decision) effect(e ...Effect) { d.effects = append(d.effects, e...) }

// handsOutEnded reports whether eff hands out a task the decision went on
// to end: a fork's tasks scheduled with the one that ends the workflow as
// it starts (a TERMINATE, a task refused as scheduled), canceled in the
// same decision. A worker offered one could only have its take refused.
func (d *decision) handsOutEnded(eff Effect) bool {
	var id string
	switch e := eff.(type) {
	case Dispatch:
		id = e.TaskID
	case RunSystem:
		id = e.TaskID
	default:
		return false
	}
	t := d.w.task(id)
	return t != nil && conductor.TaskTerminal(t.Status)
}

// runAs makes the workflow run as p too from here on, unless it does
// already (or p is nobody: a trigger of the engine's own).
func (d *decision) runAs(p ...string) {
	for _, p := range p {
		if p != "" && !slices.Contains(d.w.Principals(), p) {
			d.emit(&schemas.WorkflowRunAs{Principal: p, Time: d.now})
		}
	}
}

func (d *decision) handle(t Trigger) error {
	if d.w.Queued {
		switch t.(type) {
		case Jump, SkipTask, Upgrade:
			// Each would run tasks of a workflow that has no place yet.
			return fault.Conflict("workflow %s is queued by its definition's rateLimitConfig: it has no task yet", d.w.ID)
		}
	}
	switch t := t.(type) {
	case Take:
		return d.take(t)
	case Result:
		if t.HandBack {
			return d.handBack(t.Result, t.Lease)
		}
		return d.result(t, t.Result)
	case Tick:
		d.tick()
	case Reclaim:
		return d.reclaim(t)
	case Reconcile:
		for _, eff := range Effects(d.w, d.now) {
			dis, ok := eff.(Dispatch)
			if ok && t.Requeue {
				dis.Requeued = d.now
				eff = dis
			}
			if t.DispatchAge == 0 || ok && t.expired(dis.Attempt, d.now) {
				d.effect(eff)
			}
		}
	case Admit:
		d.admit()
	case Pause:
		return d.pause()
	case Resume:
		return d.resume()
	case Terminate:
		return d.terminate(t)
	case Restart:
		return d.restart(t)
	case Retry:
		return d.retry(t)
	case Rerun:
		return d.rerun(t)
	case ChildFinished:
		d.childFinished(t)
	case ChildReopened:
		return d.childReopened(t)
	case ChildExisting:
		d.childExisting(t)
	case ValuesFound:
		// Recorded on an ended workflow too: its views and read models
		// still show what it holds.
		if t.Masked != nil {
			d.emit(t.Masked)
			if t.Key != nil {
				d.emit(t.Key)
			}
		}
	case Compact:
		switch {
		case !d.w.Terminal() && !d.w.Removed:
			return fault.Conflict("workflow %s is %s: only a terminal or removed workflow is compacted", d.w.ID, d.w.Status)
		case !d.w.Compacted:
			// The compactor tries it again until it is recorded, and
			// never after: the purges of the cached outputs w masks are
			// performed before it is appended, or it is not
			// (UncacheOutput.Required). Keyed on the inputs before it
			// shreds them.
			d.effect(uncache(d.w, d.w.MaskedPaths, true)...)
			d.emit(&schemas.WorkflowCompacted{Time: d.now})
		}
	case SetVariables:
		if d.w.Terminal() {
			return fault.Conflict("workflow %s is %s", d.w.ID, d.w.Status)
		}
		if err := d.callersVariablesFit(t.Variables); err != nil {
			return err
		}
		d.runAs(append([]string{t.By}, t.AlsoBy...)...)
		d.emit(&schemas.VariablesUpdated{Variables: t.Variables, Time: d.now})
	case Fail:
		if !d.w.Terminal() {
			d.finish(conductor.WorkflowFailed, t.Reason, map[string]any{})
		}
	case AddLog:
		task := d.w.task(t.TaskID)
		if task == nil {
			return fault.NotFound("task %s not found in workflow %s", t.TaskID, d.w.ID)
		}
		// Refused rather than dropped: the sender asked for nothing else,
		// and learns why.
		if lines, bytes := LogRoom(task); lines < 1 || len(t.Line) > bytes {
			return ErrLogFull(t.TaskID)
		}
		d.emit(&schemas.TaskLogged{TaskID: t.TaskID, Lines: []string{t.Line}, Times: []int64{d.now}})
	default:
		return d.handleOperator(t)
	}
	return nil
}

// StartInput is the input a workflow of def starts with: input, each key
// of def's inputTemplate that it lacks or gives as null filled in, as
// Conductor's getWorkflowInput fills it (Java's putIfAbsent replaces a
// null). Conductor skips an empty input; flowvault fills that too.
func StartInput(def *conductor.WorkflowDef, input map[string]any) map[string]any {
	out := copyMap(input)
	for k, v := range def.InputTemplate {
		if given, ok := out[k]; !ok || given == nil {
			out[k] = v
		}
	}
	return out
}

func (d *decision) start(s Start) error {
	if s.Def == nil {
		return fault.Invalid("start %s: no workflow definition", s.WorkflowID)
	}
	raw := s.Def.Raw
	if len(raw) == 0 {
		return fault.Invalid("start %s: definition has no JSON", s.WorkflowID)
	}
	input := StartInput(s.Def, s.Request.Input)
	version := s.Def.Version
	if version == 0 {
		version = 1
	}
	// The plan every later decision of the workflow reads, parsed from
	// the JSON it records: the definition's other instances share it, and
	// building it (reading the definition for what it seals) cost as much
	// as the rest of a start.
	p, err := plans.get(raw)
	if err != nil {
		return fault.Invalid("start %s: %v", s.WorkflowID, err)
	}
	d.plan = p
	d.emit(&schemas.WorkflowStarted{
		WorkflowID: s.WorkflowID, Name: s.Def.Name, Version: version, Def: raw, Input: input,
		Variables: copyMap(s.Def.Variables), CorrelationID: s.Request.CorrelationID, Priority: s.Request.Priority,
		TaskToDomain: s.Request.TaskToDomain, CreatedBy: s.CreatedBy, ParentWorkflowID: s.ParentWorkflowID,
		ParentWorkflowTaskID: s.ParentWorkflowTaskID, Depth: s.Depth, IdempotencyKey: s.Request.IdempotencyKey, Time: d.now,
		Resolved: s.Resolved, Event: s.Event,
		RateLimited: s.RateLimit != nil, RateLimitKey: s.RateLimit.key(), Queued: s.RateLimit != nil && s.Queued,
	})
	d.w.plan = d.plan
	d.runAs(s.AlsoRunsAs...)
	if len(p.def.Tasks) == 0 || d.w.Queued {
		return nil
	}
	d.schedule(p.def.Tasks[0], scheduleOpts{})
	return nil
}

func (d *decision) take(t Take) error {
	task := d.w.task(t.TaskID)
	if task == nil {
		return fault.NotFound("task %s not found in workflow %s", t.TaskID, d.w.ID)
	}
	if t.TaskType != "" && !inQueue(task, t.TaskType, t.Domain) {
		return fault.NotFound("task %s is not a task of queue %s", t.TaskID, queueName(t.TaskType, t.Domain))
	}
	if d.w.Terminal() || task.Status != conductor.TaskScheduled || task.IsWorkerTask() == t.System {
		return ErrTaskGone
	}
	if task.AvailableAt > d.now {
		return ErrTaskNotYet
	}
	started := &schemas.TaskStarted{TaskID: task.ID, WorkerID: t.WorkerID, Time: d.now}
	if t.HandOff != nil {
		started.Resolved = t.HandOff.Resolved
	}
	d.emit(started)
	if t.HandOff != nil && t.HandOff.Error != "" {
		d.emit(&schemas.TaskUpdated{TaskID: task.ID, Status: conductor.TaskFailedWithTerminalError,
			Reason: t.HandOff.Error, Time: d.now})
		d.failed(d.w.task(task.ID))
		d.reply = HandOffFailed{TaskID: task.ID, Reason: t.HandOff.Error}
		return nil
	}
	taken := *d.w.task(t.TaskID)
	if taken.Type == conductor.TaskTypeDoWhile {
		// The system worker evaluates the loop condition over this
		// document (loop.go).
		taken.Input = d.loopConditionInput(&taken)
	}
	d.reply = &taken
	return nil
}

// handBack puts a task whose take numbered lease never reached its taker
// back to be handed out again now. A result or progress of that take
// recorded first makes it late, and ignored.
func (d *decision) handBack(r conductor.TaskResult, lease int) error {
	t := d.w.task(r.TaskID)
	if t == nil {
		return fault.NotFound("task %s not found in workflow %s", r.TaskID, d.w.ID)
	}
	if d.w.Terminal() || t.Status != conductor.TaskInProgress || lease < 1 || t.PollCount != lease || t.Type == conductor.TaskTypeDoWhile {
		d.reply = ResultReply{Ignored: true}
		return nil
	}
	d.reply = ResultReply{}
	d.emit(&schemas.TaskUpdated{TaskID: t.ID, Status: conductor.TaskScheduled, KeepOutput: true, Reason: r.ReasonForIncompletion,
		AvailableAt: d.now, Time: d.now})
	d.effect(handOff(d.w, d.w.task(t.ID))...)
	return nil
}

// inQueue reports whether t is a task of the queue of taskType in domain
// ("" for none).
func inQueue(t *Task, taskType, domain string) bool {
	return t.Name == taskType && t.Domain == domain
}

// queueName is a queue's name as Conductor gives it: the task type, or
// "domain:type".
func queueName(taskType, domain string) string {
	if domain == "" {
		return taskType
	}
	return domain + ":" + taskType
}

// MaxCallbackAfterSeconds bounds a result's callbackAfterSeconds: a year.
// A larger one would overflow the time the task is due, which would wrap
// round into the past and hand the task out again at once.
const MaxCallbackAfterSeconds = 365 * 24 * 3600

func (d *decision) result(trig Result, r conductor.TaskResult) error {
	by, lease := trig.By, trig.Lease
	if r.CallbackAfterSeconds < 0 || r.CallbackAfterSeconds > MaxCallbackAfterSeconds {
		return fault.Invalid("callbackAfterSeconds %d: want 0 to %d (a year)", r.CallbackAfterSeconds, MaxCallbackAfterSeconds)
	}
	t := d.w.task(r.TaskID)
	if t == nil {
		return fault.NotFound("task %s not found in workflow %s", r.TaskID, d.w.ID)
	}
	// A worker reports on its own queue's tasks only: not on another
	// domain's, nor on a WAIT or a system task that happens to share its
	// name.
	if trig.TaskType != "" && (!inQueue(t, trig.TaskType, trig.Domain) || !t.IsWorkerTask()) {
		return fault.NotFound("task %s is not a task of queue %s", r.TaskID, queueName(trig.TaskType, trig.Domain))
	}
	if d.w.Terminal() || !t.Active() {
		// Late or repeated: its logs too (a worker re-sends a result
		// whose answer it did not get).
		d.reply = ResultReply{Ignored: true}
		return nil
	}
	if lease > 0 && lease != t.PollCount {
		// About an earlier take: its worker put the task back, and it was
		// taken again (by a worker that may share its id).
		d.reply = ResultReply{Ignored: true}
		return nil
	}
	if loopIgnores(t, r, by) {
		d.reply = ResultReply{Ignored: true}
		return nil
	}
	if err := d.callersVariablesFit(trig.Variables); err != nil {
		return err
	}
	if r.Status == conductor.TaskInProgress && r.WorkerID != "" && t.WorkerID != "" && r.WorkerID != t.WorkerID {
		// Progress from a worker that no longer holds the task (its
		// callback put the task back in the queue, another took it): it
		// must not hand the task out again under its new holder.
		d.reply = ResultReply{Ignored: true}
		return nil
	}
	d.runAs(append([]string{by}, trig.AlsoBy...)...)
	// Capped here, not only by the API: NATS workers' results do not pass
	// it, and results in flight together all pass its check.
	if logs := CapLogs(t.ID, r.Logs, t); len(logs) > 0 {
		lines, times := make([]string, len(logs)), make([]int64, len(logs))
		for i, l := range logs {
			lines[i], times[i] = l.Log, l.CreatedTime
			if times[i] == 0 {
				times[i] = d.now
			}
		}
		d.emit(&schemas.TaskLogged{TaskID: t.ID, Lines: lines, Times: times})
	}
	if t.Type == conductor.TaskTypeDoWhile {
		return d.loopResult(t, r, trig.DropOutput, by, trig.Variables)
	}
	d.reply = ResultReply{}
	d.resultVariables(trig.Variables)
	up := &schemas.TaskUpdated{TaskID: t.ID, Status: r.Status, Output: r.OutputData, MergeOutput: trig.MergeOutput,
		Reason: r.ReasonForIncompletion, WorkerID: r.WorkerID, CallbackAfterSeconds: r.CallbackAfterSeconds, Time: d.now}
	switch r.Status {
	case conductor.TaskInProgress:
		switch {
		case r.ExtendLease:
			up.LeaseExtended, up.KeepOutput = true, r.OutputData == nil
		case leased(t) && lease > 0 && r.CallbackAfterSeconds > 0:
			// Its system worker asks to run it again later (HTTP_POLL
			// between polls): back to the queue, handed off again after
			// the callback delay, as a worker task is.
			up.Status = conductor.TaskScheduled
			up.AvailableAt = afterSeconds(d.now, r.CallbackAfterSeconds)
		case leased(t):
			// A system task done with its part (HTTP with asyncComplete):
			// no engine holds it any more; an update from outside ends it.
			up.Released, up.WorkerID = true, ""
		case runsInSystemWorker(t.Type):
			// Progress from outside on a released one: naming a worker must
			// not make it held again (its lease would run the call again).
			up.WorkerID = ""
		case t.IsWorkerTask():
			// Back to the queue, handed out again after the callback delay.
			up.Status = conductor.TaskScheduled
			up.AvailableAt = afterSeconds(d.now, r.CallbackAfterSeconds)
		}
		d.emit(up)
		if t := d.w.task(r.TaskID); t.Status == conductor.TaskScheduled && t.AvailableAt <= d.now {
			d.effect(handOff(d.w, t)...)
		}
	case conductor.TaskCompleted:
		if t.Type == conductor.TaskTypeSwitch || t.Type == conductor.TaskTypeDecision {
			// A case a system worker evaluated (a script).
			if wt := d.plan.config(t); wt != nil {
				selected, _ := r.OutputData["selectedCase"].(string)
				up.Case, up.CaseDefault = caseOf(wt, selected)
				if caseFromSecret(t, wt) {
					up.Output = maskCaseOutput(up.Output)
				}
			}
		}
		if t.Type == conductor.TaskTypeSetVariable {
			if err := d.variablesFit(r.OutputData); err != nil {
				up.Status, up.Reason = conductor.TaskFailedWithTerminalError, fmt.Sprintf("SET_VARIABLE %s: %v", t.Ref, err)
				d.emit(up)
				d.failed(d.w.task(t.ID))
				return nil
			}
		}
		d.emit(up)
		cached := r.OutputData
		if trig.MergeOutput {
			cached = maps.Clone(d.w.task(t.ID).Output)
		}
		d.cache(t, cached)
		if t.Type == conductor.TaskTypeSetVariable && len(r.OutputData) > 0 {
			// A SET_VARIABLE whose values were resolved at hand-off.
			d.emit(&schemas.VariablesUpdated{Variables: r.OutputData, Time: d.now})
		}
	case conductor.TaskFailed, conductor.TaskFailedWithTerminalError:
		if up.Reason == "" {
			up.Reason = "task " + t.Ref + " failed"
		}
		d.emit(up)
		d.failed(d.w.task(t.ID))
	default:
		return invalidStatus(r.Status)
	}
	return nil
}

// callersVariablesFit refuses variables a caller sends (a variables
// update, a result's) that would take the workflow's over
// MaxVariablesBytes: taken, they would fail every later SET_VARIABLE of
// the workflow, however small; refused, the caller may send less.
func (d *decision) callersVariablesFit(vars map[string]any) error {
	if len(vars) == 0 {
		return nil
	}
	if err := d.variablesFit(vars); err != nil {
		return fmt.Errorf("workflow %s: %v: %w", d.w.ID, err, fault.ErrTooLarge)
	}
	return nil
}

// resultVariables sets the variables a result carries (Result.Variables),
// once the result is known to be recorded: before the task's update, so
// that what the update sets off (the next task's input, the workflow's
// output) reads them.
func (d *decision) resultVariables(vars map[string]any) {
	if len(vars) > 0 {
		d.emit(&schemas.VariablesUpdated{Variables: vars, Time: d.now})
	}
}

func invalidStatus(s string) error {
	return fault.Invalid("task status %q: want IN_PROGRESS, COMPLETED, FAILED or FAILED_WITH_TERMINAL_ERROR", s)
}

func (d *decision) pause() error {
	switch {
	case d.w.Terminal():
		return fault.Conflict("workflow %s is %s and cannot be paused", d.w.ID, d.w.Status)
	case d.w.Status == conductor.WorkflowPaused:
		return nil
	}
	d.emit(&schemas.WorkflowStatusChanged{Status: conductor.WorkflowPaused, Time: d.now})
	return nil
}

func (d *decision) resume() error {
	if d.w.Status != conductor.WorkflowPaused {
		return fault.Conflict("workflow %s is %s, not PAUSED", d.w.ID, d.w.Status)
	}
	d.emit(&schemas.WorkflowStatusChanged{Status: conductor.WorkflowRunning, RestartsTimeout: true, Time: d.now})
	// Hand out what was scheduled before the pause.
	d.effect(Effects(d.w, d.now)...)
	d.scheduleAdmitted()
	// Then act on the failures the pause held back (see failed), not on
	// older ones a rerun kept.
	for i := 0; i < len(d.w.Tasks) && !d.w.Terminal(); i++ {
		if t := d.w.Tasks[i]; t.Held && !t.Retried && unsuccessful(t.Status) {
			d.failed(t)
		}
	}
	return nil
}

// startedFailureWorkflow reports whether the end of w, which ended,
// started its failure workflow. A state a read model stored before the
// fold read the start from the end's output (the executor starts its
// decisions from it) holds none in FailureWorkflows: failureWorkflowOf
// reads the output again, as TellChildren does.
func startedFailureWorkflow(w *Workflow) bool {
	id := failureWorkflowID(w)
	return slices.Contains(w.FailureWorkflows, id) || failureWorkflowOf(w) == id
}

// unsuccessful reports a task status that ended the task without success:
// FAILED, FAILED_WITH_TERMINAL_ERROR, TIMED_OUT or CANCELED.
func unsuccessful(s string) bool { return conductor.TaskTerminal(s) && !conductor.TaskSuccessful(s) }

func (d *decision) terminate(t Terminate) error {
	switch d.w.Status {
	case conductor.WorkflowCompleted:
		return fault.Conflict("workflow %s is COMPLETED and cannot be terminated", d.w.ID)
	case conductor.WorkflowTerminated:
		return nil
	}
	if t.UnlessEnded && d.w.Terminal() {
		return fault.Conflict("workflow %s is %s: it ended before its clean-up", d.w.ID, d.w.Status)
	}
	if t.UnlessResetAfter > 0 && d.w.ResetTime > t.UnlessResetAfter {
		return fault.Conflict("workflow %s was reset after the parent that terminates it ended", d.w.ID)
	}
	if t.TriggerFailureWorkflow && d.plan == nil && d.w.Terminal() && !startedFailureWorkflow(d.w) {
		// A failure workflow asked of an ended workflow whose definition
		// does not parse cannot be started, and the reason it ended with,
		// which it keeps, cannot say so as a running one's does
		// (unreadReason): the caller is told instead. Its end started
		// none; whether the definition names one cannot be read. Once its
		// end started one, the request asks what it asks of a definition
		// that parses, where that start stands and none is made again.
		return fault.Conflict("workflow %s is %s and its recorded definition cannot be read: the failure workflow it may name cannot be started; terminate it without triggerFailureWorkflow",
			d.w.ID, d.w.Status)
	}
	reason := t.Reason
	switch {
	case d.w.Terminal():
		// An ended workflow keeps the reason it ended with: a new one
		// would reach its failure workflow and parent (their starts and
		// news may still be on their way) without its giver joining, and
		// joining for good over a clean-up would refuse the owner's retry.
		reason = d.w.Reason
	case reason != "":
		d.runAs(append([]string{t.By}, t.AlsoBy...)...) // the failure workflow and the parent read it
	}
	// A FAILED or TIMED_OUT workflow becomes TERMINATED, as in Conductor.
	// Its failure workflow, if it started one, is not started again: the
	// start's id is derived from the workflow's. A definition that does
	// not parse names none to start.
	asked := t.TriggerFailureWorkflow && d.plan != nil
	d.noFailureWorkflow = !asked
	switch {
	case d.w.Terminal():
		// Its failure decided the failure workflow (its start may still
		// be on its way, for recovery to perform): that stands.
		d.noFailureWorkflow = d.w.NoFailureWorkflow && !asked
	case d.plan == nil:
		reason = unreadReason(reason)
	}
	d.finish(conductor.WorkflowTerminated, reason, nil)
	return nil
}
