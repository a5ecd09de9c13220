package executor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/internal/logkey"
	"github.com/flowvault/flowvault/masking"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/workers"
)

// ChildPreparer prepares the input of a child workflow whose parent task's
// input holds secret references or sealed values: it resolves them as the
// parent's creator and seals the values for the child, so the child's
// stored input never holds them in plaintext.
type ChildPreparer interface {
	PrepareChild(ctx context.Context, eff engine.StartWorkflow) (map[string]any, []schemas.ResolvedRef, error)
}

// OutputOpener opens the values a workflow sealed under its own key in its
// output: a parent told of a child's end from the child's stored state
// (recovery) takes them, and its own decision seals them again.
type OutputOpener interface {
	OpenOutput(ctx context.Context, w *engine.Workflow) (map[string]any, error)
}

// SystemTask runs one system task type inside the engine. It receives the
// task as handed off (input resolved) and reports like a worker would.
type SystemTask interface {
	Execute(ctx context.Context, task *conductor.Task) conductor.TaskResult
}

// OutputDropper is a SystemTask whose run may also delete members of the
// task's output, which a conductor.TaskResult cannot say: a DO_WHILE's loop
// condition (engine.Result.DropOutput). The executor runs it by
// ExecuteDropping.
type OutputDropper interface {
	SystemTask
	ExecuteDropping(ctx context.Context, task *conductor.Task) (res conductor.TaskResult, drop []string)
}

// perform runs effects in the background, bounded by EffectConcurrency,
// a decision's effects started in order. It never waits for a slot itself:
// its caller is a shard, and what holds the slots may be waiting for that
// shard (a worker's take or result, a system task reporting, a child
// workflow starting). A shard that waited would wait forever once a
// decision had more effects than there are slots and its first tasks were
// being taken: a FORK_JOIN_DYNAMIC of 1,600 branches did.
// Each effect is idempotent; a failed one is logged and left to recovery.
// rel, when set, follows the effects that reach other workflows.
func (e *Executor) perform(effects []engine.Effect, rel *Related) {
	if len(effects) == 0 {
		return
	}
	if rel != nil {
		// Counted before this returns: the decision that set them off
		// may itself be a followed effect, done once its submit returns.
		n := 0
		for _, eff := range effects {
			if reachesOthers(eff) {
				n++
			}
		}
		if n == 0 {
			rel = nil
		} else {
			rel.add(n)
		}
	}
	e.effects.Add(1) // from a shard: Stop waits for the shards first
	e.spawn(func() {
		defer e.effects.Done()
		// System tasks last: their pool may be full for minutes, and the
		// decision's other effects need not wait for it.
		for _, eff := range effects {
			if _, system := eff.(engine.RunSystem); !system {
				e.launch(e.sem, eff, rel)
			}
		}
		for _, eff := range effects {
			if run, system := eff.(engine.RunSystem); system {
				sem := e.systemSem
				if callsOut(run.TaskType) {
					sem = e.callSem
				}
				e.launch(sem, eff, rel)
			}
		}
	})
}

// callsOut reports whether system tasks of type typ wait on other systems
// (an HTTP call may take minutes), and so run from a pool of their own.
func callsOut(typ string) bool {
	return typ == conductor.TaskTypeHTTP || typ == conductor.TaskTypeHTTPPoll
}

// launch waits for a slot of sem and runs eff in the background; rel, when
// set, follows it if it reaches another workflow.
func (e *Executor) launch(sem chan struct{}, eff engine.Effect, rel *Related) {
	if !reachesOthers(eff) {
		rel = nil
	}
	// Stop waits for a decision's effects, but for its system tasks,
	// which Drain waits for (an HTTP call may take minutes) and Stop
	// ends. The count goes up while perform's holds it above zero.
	_, system := eff.(engine.RunSystem)
	onSlot := e.onEffectSlot
	if system {
		onSlot = e.onSlotOf
	} else {
		e.effects.Add(1)
	}
	ran := onSlot(sem, 5*time.Minute, func(ctx context.Context) {
		if !system {
			defer e.effects.Done()
		}
		if rel != nil {
			defer rel.done()
			ctx = withRelated(ctx, rel)
		}
		// Effects are idempotent: a failure (a publish timing out under
		// load) is retried here rather than left to the next start's
		// recovery, which would leave a task undispatched until then.
		backoff := 100 * time.Millisecond
		for {
			err := e.performOne(ctx, eff)
			if err == nil || ctx.Err() != nil || e.ctx.Err() != nil {
				// Stopping, an effect that needs a decision is refused
				// for good: left to recovery, not retried.
				return
			}
			e.metrics.effects.WithLabelValues(engine.EffectName(eff)).Inc()
			e.cfg.Logger.Warn("effect failed, retrying", "effect", engine.EffectName(eff), logkey.Err, err)
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
				return
			}
			backoff = min(2*backoff, 5*time.Second)
		}
	})
	if !ran && !system {
		e.effects.Done()
	}
	if !ran && rel != nil {
		rel.done()
	}
}

// onEffectSlot is onSlotOf for a decision's effect: it waits for its slot,
// and runs, while Stop waits for the effects (effCtx), not only until the
// executor stops.
func (e *Executor) onEffectSlot(sem chan struct{}, timeout time.Duration, fn func(ctx context.Context)) bool {
	return e.onSlotWhile(e.effCtx, sem, timeout, fn)
}

// onSlot runs fn in the background once one of the EffectConcurrency
// slots is free, with a context that ends after timeout or at Stop. It
// waits for the slot: never call it from a shard (see perform). It
// reports whether fn runs: not once the executor stops.
func (e *Executor) onSlot(timeout time.Duration, fn func(ctx context.Context)) bool {
	return e.onSlotOf(e.sem, timeout, fn)
}

// onSlotOf is onSlot with the slots of sem.
func (e *Executor) onSlotOf(sem chan struct{}, timeout time.Duration, fn func(ctx context.Context)) bool {
	return e.onSlotWhile(e.ctx, sem, timeout, fn)
}

// onSlotWhile is onSlotOf until life ends.
func (e *Executor) onSlotWhile(life context.Context, sem chan struct{}, timeout time.Duration, fn func(ctx context.Context)) bool {
	select {
	case sem <- struct{}{}:
	case <-life.Done():
		return false
	}
	e.spawn(func() {
		defer func() { <-sem }()
		ctx, cancel := context.WithTimeout(life, timeout)
		defer cancel()
		fn(ctx)
	})
	return true
}

func (e *Executor) performOne(ctx context.Context, eff engine.Effect) error {
	switch eff := eff.(type) {
	case engine.Dispatch:
		if err := validQueue(eff.TaskType, eff.Domain); err != nil {
			// No worker could ever take it (a name or domain too long for
			// a queue): the task fails for good, saying why, rather than
			// wait for ever.
			return e.submitQuietly(ctx, eff.WorkflowID, engine.Result{Result: conductor.TaskResult{TaskID: eff.TaskID,
				WorkflowInstanceID: eff.WorkflowID, Status: conductor.TaskFailedWithTerminalError,
				ReasonForIncompletion: "no worker can take it: " + err.Error()}})
		}
		if err := e.disp.dispatch(ctx, eff); err != nil {
			return err
		}
		e.metrics.dispatches.Inc()
		return nil
	case engine.RunSystem:
		return e.runSystem(ctx, eff)
	case engine.StartWorkflow:
		return e.startWorkflowEffect(ctx, eff)
	case engine.NotifyParent:
		// Told from the child's recorded state, as recovery tells it: the
		// values the child sealed are opened for the parent to seal again
		// under its own key. The effect carries them sealed under the
		// child's, which none of the parent's hand-offs could open.
		child, err := e.State(ctx, eff.Child.ChildID)
		if err != nil || child == nil {
			return err
		}
		return e.reportChild(ctx, eff.ParentWorkflowID, child)
	case engine.ReopenParent:
		_, err := e.Submit(ctx, eff.ParentWorkflowID, eff.Child, Meta{})
		if errors.Is(err, fault.ErrConflict) {
			// The parent refused the news (a rerun it can no longer make
			// from the task that ran the child, a definition it cannot
			// read): the child runs again, and nothing waits for it.
			// Said, not retried, as the answer would not change. Ids
			// only: the refusal's text names the parent's task.
			e.cfg.Logger.Warn("parent refused the news of its sub-workflow run again",
				logkey.WorkflowID, eff.ParentWorkflowID, logkey.Child, eff.Child.ChildID)
			return nil
		}
		if errors.Is(err, fault.ErrNotFound) {
			return nil // the parent is gone
		}
		return err
	case engine.LookFor:
		return e.submitQuietly(ctx, eff.WorkflowID, engine.ValuesFound{From: eff.From, SecretsKey: eff.SecretsKey, Sealed: eff.Sealed})
	case engine.CheckChild:
		child, err := e.State(ctx, eff.ChildID)
		if err != nil || child == nil {
			return err
		}
		return e.reportChild(ctx, eff.ParentWorkflowID, child)
	case engine.TerminateWorkflow:
		return e.submitQuietly(ctx, eff.WorkflowID, engine.Terminate{Reason: eff.Reason, UnlessResetAfter: eff.ParentEnded})
	case engine.CacheOutput:
		return e.cacheOutput(ctx, eff)
	case engine.UncacheOutput:
		return e.outputs.drop(ctx, eff.Key)
	case engine.UncacheTasks:
		return e.outputs.dropTasks(ctx, eff.WorkflowID, eff.TaskIDs)
	case engine.Withdraw:
		return e.withdraw(ctx, eff)
	}
	return fmt.Errorf("unknown effect %T", eff)
}

// submitQuietly submits a trigger whose rejection (the target moved on)
// is expected and harmless.
func (e *Executor) submitQuietly(ctx context.Context, wfID string, trig engine.Trigger) error {
	_, err := e.Submit(ctx, wfID, trig, Meta{})
	if errors.Is(err, fault.ErrConflict) || errors.Is(err, fault.ErrNotFound) {
		return nil
	}
	return err
}

// runSystem claims a scheduled system task, runs it, and reports.
func (e *Executor) runSystem(ctx context.Context, eff engine.RunSystem) error {
	// Counted from before the take, for Drain to wait for.
	e.lifeMu.Lock()
	if e.draining {
		e.lifeMu.Unlock()
		return nil
	}
	e.systemRuns.Add(1)
	e.holding++
	e.lifeMu.Unlock()
	defer e.systemRuns.Done()
	held := true // until the log says otherwise
	defer func() {
		if !held {
			e.lifeMu.Lock()
			e.holding--
			e.lifeMu.Unlock()
		}
	}()
	out, err := e.Submit(ctx, eff.WorkflowID, engine.Take{TaskID: eff.TaskID, WorkerID: e.holder, System: true}, Meta{})
	if errors.Is(err, engine.ErrTaskGone) {
		held = false
		return nil // another engine has it, or it was canceled
	}
	if err != nil {
		return err
	}
	task, err := handedOff(out)
	if errors.Is(err, ErrHandOffFailed) {
		held = false
		return nil // the task failed in the take's decision
	}
	if err != nil {
		return err
	}
	res := conductor.TaskResult{Status: conductor.TaskFailedWithTerminalError,
		ReasonForIncompletion: "no system worker for task type " + eff.TaskType}
	var drop []string
	if impl := e.system[eff.TaskType]; impl != nil {
		// The run ends before the lease does, leaving the report time to
		// get through: a task whose lease expires is run again.
		runCtx, cancel := context.WithTimeout(ctx, systemRunTimeout)
		e.running.add(eff.WorkflowID, eff.TaskID, cancel)
		runCtx = WithWorkflowVersion(WithPrincipals(runCtx, out.State.Principals()), out.State.Version)
		if dropper, ok := impl.(OutputDropper); ok {
			res, drop = dropper.ExecuteDropping(runCtx, task)
		} else {
			res = impl.Execute(runCtx, task)
		}
		e.running.remove(eff.WorkflowID, eff.TaskID)
		cancel()
		e.metrics.system.WithLabelValues(eff.TaskType, res.Status).Inc()
	}
	res.TaskID, res.WorkflowInstanceID, res.WorkerID = eff.TaskID, eff.WorkflowID, e.holder
	// From here on nothing is retried through the effect: its take would
	// answer "task gone" (the task is ours, IN_PROGRESS) and the result
	// would be dropped, the task left to run again when its lease expires.
	held = !e.reportSystem(res, drop, task.PollCount)
	return nil
}

// runRegistry holds the system tasks this engine runs, by workflow: a
// decision that leaves one no longer active (its workflow ended, a fork's
// failure canceled it) ends its run, which would otherwise hold a slot (a
// script's, for its whole budget, while others' scripts wait) for nothing.
type runRegistry struct {
	// n counts the runs: every decision asks, and most engines run none.
	n    atomic.Int64
	mu   sync.Mutex
	runs map[string]map[string]context.CancelFunc // workflow → task → its run's cancel
}

func (r *runRegistry) add(wfID, taskID string, cancel context.CancelFunc) {
	r.n.Add(1)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.runs == nil {
		r.runs = map[string]map[string]context.CancelFunc{}
	}
	if r.runs[wfID] == nil {
		r.runs[wfID] = map[string]context.CancelFunc{}
	}
	r.runs[wfID][taskID] = cancel
}

func (r *runRegistry) remove(wfID, taskID string) {
	r.n.Add(-1)
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.runs[wfID], taskID)
	if len(r.runs[wfID]) == 0 {
		delete(r.runs, wfID)
	}
}

// endInactive ends the runs of w's tasks that w no longer has active.
func (r *runRegistry) endInactive(w *engine.Workflow) {
	if r.n.Load() == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for taskID, cancel := range r.runs[w.ID] {
		if t := w.TaskByID(taskID); t == nil || !t.Active() {
			cancel()
		}
	}
}

// A system task's run and the report of its result both fit in
// engine.SystemTaskLease, counted from the take: a result recorded after
// the lease expired would come after the task was run again.
const (
	systemRunTimeout    = engine.SystemTaskLease * 3 / 4
	systemReportTimeout = engine.SystemTaskLease / 8
)

// reportSystem records the result of a system task this engine ran, as
// the take numbered lease, with the members of the task's output its run
// deleted (OutputDropper). It has a context of its own, since the run may
// have used up the effect's, and it retries only the report, until
// systemReportTimeout: one that never gets through leaves the task to its
// lease. A result refused as invalid (a bad status) would be refused
// however often it is sent: the task fails instead, for good, saying why,
// as the executor fails a task whose result the log cannot hold. It
// reports whether the task is no longer this engine's: its result
// recorded (or ignored, late), or the task gone from its workflow.
func (e *Executor) reportSystem(res conductor.TaskResult, drop []string, lease int) bool {
	ctx, cancel := context.WithTimeout(e.ctx, systemReportTimeout)
	defer cancel()
	log := e.cfg.Logger.With(logkey.WorkflowID, res.WorkflowInstanceID, logkey.TaskID, res.TaskID)
	refused := false
	backoff := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		_, err := e.Submit(ctx, res.WorkflowInstanceID, engine.Result{Result: res, Lease: lease, DropOutput: drop}, Meta{})
		switch {
		case err == nil:
			return true
		case errors.Is(err, fault.ErrInvalid) && !refused:
			log.Warn("system task result refused; reporting the task failed", logkey.Status, res.Status, logkey.Err, err)
			res = conductor.TaskResult{TaskID: res.TaskID, WorkflowInstanceID: res.WorkflowInstanceID, WorkerID: res.WorkerID,
				Status: conductor.TaskFailedWithTerminalError, ReasonForIncompletion: "the engine refused the result: " + err.Error()}
			drop = nil
			refused = true
			continue
		case errors.Is(err, fault.ErrTooLarge), errors.Is(err, fault.ErrInvalid),
			errors.Is(err, fault.ErrNotFound), errors.Is(err, fault.ErrConflict), errors.Is(err, fault.ErrForbidden):
			// Refused again, or the workflow no longer has the task: no
			// retry will record it.
			log.Error("system task result not recorded", logkey.Status, res.Status, logkey.Err, err)
			return errors.Is(err, fault.ErrNotFound)
		}
		if ctx.Err() != nil {
			log.Error("system task result not recorded; the task runs again when its lease expires",
				"attempts", attempt, logkey.Err, err)
			return false
		}
		log.Warn("system task result not recorded yet, retrying", "attempt", attempt, logkey.Err, err)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// startWorkflowEffect starts a child, failure or START_WORKFLOW workflow.
// When the child exists already (a repeated effect), a finished child is
// reported to its parent: the parent may have missed the news.
func (e *Executor) startWorkflowEffect(ctx context.Context, eff engine.StartWorkflow) error {
	// Recovery starts children again: one that exists is reported on, not
	// checked or prepared again (which could fail it for a change since
	// it started).
	if done, err := e.reportExisting(ctx, eff); done || err != nil {
		return err
	}
	if eff.Refused != "" {
		return e.childFailed(ctx, eff, eff.Refused)
	}
	if ended, err := e.endedAncestor(ctx, eff.ParentWorkflowID); err != nil {
		return err
	} else if ended != nil {
		return e.childFailed(ctx, eff, fmt.Sprintf("workflow %s, which its parent runs under, is %s: nothing starts under it", ended.ID, ended.Status))
	}
	req := conductor.StartWorkflowRequest{Name: eff.Name, Version: eff.Version, Input: eff.Input,
		CorrelationID: eff.CorrelationID, Priority: eff.Priority, TaskToDomain: eff.TaskToDomain,
		IdempotencyKey: eff.IdempotencyKey, IdempotencyStrategy: eff.IdempotencyStrategy}
	if len(eff.Def) > 0 {
		var def conductor.WorkflowDef
		if err := conductor.Unmarshal(eff.Def, &def); err != nil {
			return e.childFailed(ctx, eff, fmt.Sprintf("inline sub workflow definition: %v", err))
		}
		req.WorkflowDef = &def
	}
	var pin Pin
	if e.mayStart != nil {
		// A sub-workflow or START_WORKFLOW starts only what every principal
		// its starter runs as may start through the API, decided on the
		// definition it runs. A failure workflow does not ask the failed
		// run's creator, for whom its definition's author chose it: it
		// asks the author, as saving the definition did, again now (one
		// who has lost EXECUTE on it, or no longer exists, starts
		// nothing).
		asked := append([]string{eff.CreatedBy}, eff.AlsoRunsAs...)
		if eff.Failure {
			asked = []string{eff.ChosenBy}
		}
		var err error
		if pin, err = e.mayStart(ctx, asked, req); errors.Is(err, fault.ErrForbidden) || errors.Is(err, fault.ErrNotFound) {
			return e.childFailed(ctx, eff, err.Error())
		} else if err != nil {
			return err
		}
	}
	var resolved []schemas.ResolvedRef
	if cp, ok := e.handOff.(ChildPreparer); ok && (len(eff.InputDeferred) > 0 || masking.HasSealed(eff.Input)) {
		input, refs, err := cp.PrepareChild(ctx, eff)
		switch {
		case err == nil:
			req.Input, resolved = input, refs
		case errors.Is(err, fault.ErrNotFound), errors.Is(err, fault.ErrForbidden), errors.Is(err, fault.ErrInvalid):
			return e.childFailed(ctx, eff, err.Error())
		default:
			return err
		}
	}
	id, _, err := e.StartWorkflow(ctx, req, StartOptions{WorkflowID: eff.WorkflowID, CreatedBy: eff.CreatedBy, AlsoRunsAs: eff.AlsoRunsAs,
		ParentWorkflowID: eff.ParentWorkflowID, ParentWorkflowTaskID: eff.ParentWorkflowTaskID, Depth: eff.Depth, Resolved: resolved,
		FromWorkflow: true, Pin: pin})
	switch {
	case err == nil && id != eff.WorkflowID:
		// RETURN_EXISTING answered with the workflow holding the key.
		return e.existingChild(ctx, eff, id)
	case errors.Is(err, ErrKeyHeld):
		// Another workflow holds the key (FAIL, FAIL_ON_RUNNING): the
		// task fails, as the start request is refused.
		return e.childFailed(ctx, eff, err.Error())
	case err == nil && eff.StartTaskID != "":
		return e.reportStart(ctx, eff, conductor.TaskCompleted, "")
	case err == nil && eff.ParentWorkflowID != "":
		return e.endIfOrphaned(ctx, eff)
	case err == nil:
		return nil
	case errors.Is(err, fault.ErrStale):
		// The inline definition's name moved since its check, and
		// nothing started: the effect, retried, checks the start again
		// on the name as it is, where failing the task would fail a
		// parent whose start its check allows (the name registered by
		// its own principal meanwhile), and read another engine's start
		// of the child that landed as none.
		return err
	case errors.Is(err, fault.ErrConflict): // started meanwhile
		_, err := e.reportExisting(ctx, eff)
		return err
	case errors.Is(err, fault.ErrNotFound), errors.Is(err, fault.ErrInvalid), errors.Is(err, fault.ErrForbidden),
		errors.Is(err, fault.ErrTooLarge), errors.Is(err, fault.ErrRateLimited):
		// Refused for good: retried, the effect would hold its slot, and
		// the parent wait, for ever. Over the quota on running workflows
		// (ErrRateLimited) the child fails too: its task is FAILED, which
		// the task's retries try again later, when the quota may have
		// room; retried here, a forking tree's refused children would
		// hold every effect slot until it had.
		return e.childFailed(ctx, eff, err.Error())
	}
	return fmt.Errorf("start workflow %s: %w", eff.Name, err)
}

// existingChild makes the task eff starts a child for wait for existing,
// the workflow holding the child's idempotency key, if the same parent
// started it (an earlier instance of the task, before a retry or a
// restart): it reports to that parent when it ends, and its output is the
// parent's to read. Any other workflow fails the task without being named:
// it would never report to this parent, and may be another's to read. A
// START_WORKFLOW task completes with existing instead (existingStarted).
func (e *Executor) existingChild(ctx context.Context, eff engine.StartWorkflow, existing string) error {
	if eff.StartTaskID != "" {
		return e.existingStarted(ctx, eff, existing)
	}
	if eff.ParentWorkflowID == "" {
		return nil
	}
	w, err := e.State(ctx, existing)
	if err != nil {
		return err
	}
	if w == nil || w.ParentWorkflowID != eff.ParentWorkflowID {
		return e.childFailed(ctx, eff, fmt.Sprintf("a workflow with idempotency key %q exists, which this workflow did not start: "+
			"RETURN_EXISTING waits only for a sub workflow of the same parent", eff.IdempotencyKey))
	}
	return e.submitQuietly(ctx, eff.ParentWorkflowID, engine.ChildExisting{ChildID: eff.WorkflowID, ExistingID: existing})
}

// existingStarted completes the START_WORKFLOW task eff starts a workflow
// for with existing, the workflow holding its idempotency key
// (RETURN_EXISTING), as a start request is answered with it: only if
// every principal the starter runs as may read it, since the task's output
// is shown to the starter's readers and the key is often a business id
// (an order number) that others can guess. Otherwise the task fails as
// under FAIL, without naming it (POST /api/workflow answers 409 so).
func (e *Executor) existingStarted(ctx context.Context, eff engine.StartWorkflow, existing string) error {
	w, err := e.State(ctx, existing)
	if err != nil {
		return err
	}
	held := fmt.Sprintf("a workflow with idempotency key %q exists", eff.IdempotencyKey)
	if w == nil {
		return e.childFailed(ctx, eff, held)
	}
	if e.mayRead != nil {
		for _, p := range append([]string{eff.CreatedBy}, eff.AlsoRunsAs...) {
			if err := e.mayRead(ctx, p, w.Name, w.CreatedBy); errors.Is(err, fault.ErrForbidden) || errors.Is(err, fault.ErrNotFound) {
				return e.childFailed(ctx, eff, held)
			} else if err != nil {
				return err
			}
		}
	}
	return e.reportStarted(ctx, eff, existing)
}

// endedAncestor returns the first workflow among parent and the workflows
// it runs under, up to the top of its tree, that ended while the one below
// it on the way was part of its tree (nil: none). A terminate of a tree's
// root ends its children one level at a time, while a workflow that forks
// copies of itself starts new ones as fast: refusing every start under an
// ended ancestor stops the tree growing at once. A workflow an operator
// ran again after its parent ended (which reopens the parent) is its own.
func (e *Executor) endedAncestor(ctx context.Context, parent string) (*engine.Workflow, error) {
	var below *engine.Workflow
	for range engine.MaxDepth + 1 {
		if parent == "" {
			return nil, nil
		}
		w, err := e.State(ctx, parent)
		if err != nil || w == nil {
			return nil, err
		}
		if w.Terminal() && (below == nil || max(below.StartTime, below.ResetTime) < w.EndTime) {
			return w, nil
		}
		below, parent = w, w.ParentWorkflowID
	}
	return nil, nil
}

// endIfOrphaned terminates the child eff started if its parent no longer
// waits for it. A parent that ended (or ran its task again) while the
// child was being started told a child that did not exist yet to
// terminate, which changed nothing, and the child would run on with
// nobody to report to. Read once the child exists, the parent either
// shows that it moved on, or moves on later and then finds the child.
func (e *Executor) endIfOrphaned(ctx context.Context, eff engine.StartWorkflow) error {
	parent, err := e.State(ctx, eff.ParentWorkflowID)
	if err != nil || parent == nil {
		return err
	}
	for _, t := range parent.Tasks {
		if t.SubWorkflowID == eff.WorkflowID && t.Active() && !parent.Terminal() {
			return nil
		}
	}
	return e.submitQuietly(ctx, eff.WorkflowID, engine.Terminate{
		Reason: "parent workflow " + parent.ID + " no longer waits for it", UnlessEnded: true})
}

// reportChild tells parent how child ended, if it has: the parent may have
// missed the news (a crash before it was sent, a child that ended again
// before the parent knew it ran again).
func (e *Executor) reportChild(ctx context.Context, parent string, child *engine.Workflow) error {
	if !child.Terminal() {
		return nil
	}
	output := child.Output
	if oo, ok := e.handOff.(OutputOpener); ok {
		var err error
		if output, err = oo.OpenOutput(ctx, child); err != nil {
			return fmt.Errorf("open output of workflow %s: %w", child.ID, err)
		}
	}
	return e.submitQuietly(ctx, parent, engine.ChildFinished{ChildID: child.ID, Name: child.Name, Version: child.Version, Status: child.Status,
		Output: output, Reason: child.Reason, RunsAs: child.AlsoRunsAs})
}

func (e *Executor) childFailed(ctx context.Context, eff engine.StartWorkflow, reason string) error {
	// A recovery start may race the first one, which may have started the
	// workflow since it was looked for: report on that instead. (The
	// window between this look and the report stays: a FAILED report for
	// a workflow that started in it needs the two starts to have got
	// different answers to the same checks.)
	if done, err := e.reportExisting(ctx, eff); done || err != nil {
		return err
	}
	if eff.StartTaskID != "" {
		return e.reportStart(ctx, eff, conductor.TaskFailed, "workflow "+eff.Name+" could not start: "+reason)
	}
	if eff.ParentWorkflowID == "" {
		// A failure workflow, with nobody to tell. Its start will not pass
		// on a retry (the definition is missing, invalid or not allowed:
		// a typo in failureWorkflow), and retrying would hold an effect
		// slot until the effect's timeout; enough of them stall every
		// dispatch. Names only: its input may hold the failed run's data.
		e.cfg.Logger.Warn("failure workflow could not start", "failure_workflow", eff.Name,
			logkey.WorkflowID, eff.From, logkey.Reason, reason)
		return nil
	}
	return e.submitQuietly(ctx, eff.ParentWorkflowID, engine.ChildFinished{ChildID: eff.WorkflowID,
		Status: conductor.WorkflowFailed, Reason: "sub workflow could not start: " + reason, NotStarted: true})
}

// reportExisting reports on the workflow eff starts, to its parent or its
// START_WORKFLOW task, if it exists (done).
func (e *Executor) reportExisting(ctx context.Context, eff engine.StartWorkflow) (done bool, err error) {
	if eff.ParentWorkflowID == "" && eff.StartTaskID == "" {
		return false, nil
	}
	child, err := e.State(ctx, eff.WorkflowID)
	switch {
	case err != nil:
		return false, err
	case child == nil:
		return false, nil
	case eff.StartTaskID != "":
		return true, e.reportStart(ctx, eff, conductor.TaskCompleted, "")
	default:
		return true, e.reportChild(ctx, eff.ParentWorkflowID, child)
	}
}

// reportStart tells the START_WORKFLOW task waiting for eff whether the
// workflow started.
func (e *Executor) reportStart(ctx context.Context, eff engine.StartWorkflow, status, reason string) error {
	if status == conductor.TaskCompleted {
		return e.reportStarted(ctx, eff, eff.WorkflowID)
	}
	return e.submitQuietly(ctx, eff.From, engine.Result{Result: conductor.TaskResult{TaskID: eff.StartTaskID, WorkflowInstanceID: eff.From,
		Status: status, ReasonForIncompletion: reason}})
}

// reportStarted completes the START_WORKFLOW task waiting for eff with
// the workflow started, or found by its idempotency key. Only a workflow
// that started is named: the id of one that did not would answer 404 to
// whoever reads it from the output.
func (e *Executor) reportStarted(ctx context.Context, eff engine.StartWorkflow, id string) error {
	return e.submitQuietly(ctx, eff.From, engine.Result{Result: conductor.TaskResult{TaskID: eff.StartTaskID, WorkflowInstanceID: eff.From,
		Status: conductor.TaskCompleted, OutputData: map[string]any{"workflowId": id}}})
}

// dispatcher announces scheduled worker tasks on the FV_DISPATCH stream and
// keeps the queue consumers workers pull from.
type dispatcher struct {
	log    *eventlog.Log
	logger *slog.Logger
	lanes  *lanes
	mu     sync.Mutex
	queues map[string]bool // consumers known to exist
	stream jetstream.Stream
	// made is closed, and replaced, each time this engine makes a queue's
	// consumer: feeders waiting for their queue to appear look again.
	made chan struct{}
	// withdrawn are the hand-offs of tasks that ended unpolled lately
	// (withdraw.go): one dispatched late is not announced.
	withdrawn *withdrawals
	// announced are the sequences of this engine's announcements by task,
	// which a withdrawal here deletes without a search.
	announced *announced
}

// dispatchAckWait is how long a worker may hold a dispatch message before
// taking the task; then the message goes to another worker.
const dispatchAckWait = 30 * time.Second

func newDispatcher(log *eventlog.Log, logger *slog.Logger, lanes *lanes) *dispatcher {
	return &dispatcher{log: log, logger: logger, lanes: lanes, queues: map[string]bool{}, made: make(chan struct{}),
		withdrawn: newWithdrawals(), announced: newAnnounced()}
}

func (d *dispatcher) stop() {}

// forget drops what the dispatcher knows of the stream and its consumers,
// which a NATS server that restarted may have lost.
func (d *dispatcher) forget() {
	d.mu.Lock()
	d.stream = nil
	clear(d.queues)
	d.mu.Unlock()
}

// resetStaleQueues deletes queue consumers that are ahead of the dispatch
// stream. The stream is in memory: when the NATS server restarts it comes
// back empty and numbers messages from 1 again, while a consumer can come
// back with the delivered position it had, and would silently skip every
// message below it — tasks re-dispatched by recovery among them. The
// consumers are recreated on the next dispatch; workers look them up again.
// The priority lanes it keeps are those in use.
func (d *dispatcher) resetStaleQueues(ctx context.Context) error {
	stream, err := d.dispatchStream(ctx)
	if err != nil {
		return err
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return fmt.Errorf("dispatch stream: %w", err)
	}
	last := info.State.LastSeq
	lister := stream.ListConsumers(ctx)
	var stale []string
	for ci := range lister.Info() {
		if ci.Delivered.Stream > last || ci.AckFloor.Stream > last {
			stale = append(stale, ci.Name)
		} else if queue, p, ok := parseLaneConsumer(ci.Name); ok {
			d.lanes.add(queue, p)
		}
	}
	if err := lister.Err(); err != nil {
		return fmt.Errorf("list dispatch consumers: %w", err)
	}
	for _, name := range stale {
		if err := stream.DeleteConsumer(ctx, name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return fmt.Errorf("delete stale consumer %s: %w", name, err)
		}
		d.logger.Info("deleted a queue consumer ahead of the dispatch stream", logkey.Consumer, name, logkey.Seq, last)
	}
	d.mu.Lock()
	clear(d.queues)
	d.mu.Unlock()
	return nil
}

// EnsureQueue creates the consumer for a task type's queue, so that workers
// can start pulling before the first task is dispatched.
func (d *dispatcher) ensureQueue(ctx context.Context, taskType, domain string) error {
	_, err := d.ensureConsumer(ctx, workers.ConsumerName(taskType, domain), workers.DispatchSubject(taskType, domain))
	return err
}

// ensureConsumer creates the FV_DISPATCH consumer name on filter unless
// this engine knows it exists; created reports that it did not.
func (d *dispatcher) ensureConsumer(ctx context.Context, name, filter string) (created bool, err error) {
	d.mu.Lock()
	known := d.queues[name]
	d.mu.Unlock()
	if known {
		return false, nil
	}
	_, err = d.log.EnsureConsumer(ctx, eventlog.ConsumerConfig{Stream: eventlog.Dispatch.Name, Durable: name,
		Filter: filter, AckWait: dispatchAckWait, MaxDeliver: -1})
	if err != nil {
		return false, err
	}
	d.mu.Lock()
	d.queues[name] = true
	close(d.made)
	d.made = make(chan struct{})
	d.mu.Unlock()
	return true, nil
}

// queueMade returns a channel closed once this engine next makes a
// queue's consumer.
func (d *dispatcher) queueMade() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.made
}

func (d *dispatcher) dispatch(ctx context.Context, eff engine.Dispatch) error {
	if d.checkWithdrawn(eff) {
		// The task ended unpolled before its announcement went out.
		return nil
	}
	if err := d.ensureQueue(ctx, eff.TaskType, eff.Domain); err != nil {
		return err
	}
	body, _ := json.Marshal(workers.Dispatch{TaskID: eff.TaskID, WorkflowInstanceID: eff.WorkflowID, TaskType: eff.TaskType, Domain: eff.Domain,
		Priority: eff.Priority})
	msg := &nats.Msg{Subject: workers.DispatchSubject(eff.TaskType, eff.Domain), Data: body, Header: nats.Header{}}
	// The same hand-off announced twice (recovery, a repeated tick) is
	// dropped by the stream's duplicate window.
	id := eff.TaskID + ":" + strconv.FormatInt(eff.Attempt, 10)
	if eff.Requeued != 0 {
		// An explicit requeue is for a message the queue lost: the
		// window still remembers the lost one's id.
		id += ":requeue:" + strconv.FormatInt(eff.Requeued, 10)
	}
	msg.Header.Set(jetstream.MsgIDHeader, id)
	seq, dup, err := d.log.Publish(ctx, msg)
	if err != nil {
		return fmt.Errorf("dispatch %s: %w", eff.TaskID, err)
	}
	d.logger.Debug("task dispatched", logkey.WorkflowID, eff.WorkflowID, logkey.TaskID, eff.TaskID, logkey.Seq, seq, "duplicate", dup)
	if d.withdrawnMeanwhile(ctx, eff, seq) {
		return nil
	}
	d.announced.add(eff.TaskID, seq, time.Now())
	if prioritized(eff.Priority) {
		// After the queue's message, which alone loses nothing if this
		// one is never written.
		return d.announceInLane(ctx, eff, body, id, seq)
	}
	return nil
}

type principalsKey struct{}

// WithPrincipals records on ctx whose authority a system task acts with:
// the principals its workflow runs as (engine.Workflow.Principals), every
// one of whom must be allowed what it does.
func WithPrincipals(ctx context.Context, principals []string) context.Context {
	return context.WithValue(ctx, principalsKey{}, principals)
}

// PrincipalsFrom returns the principals WithPrincipals recorded (none if
// none).
func PrincipalsFrom(ctx context.Context) []string {
	p, _ := ctx.Value(principalsKey{}).([]string)
	return p
}

type versionKey struct{}

// WithWorkflowVersion records on ctx the version of the definition a
// system task's workflow runs.
func WithWorkflowVersion(ctx context.Context, version int) context.Context {
	return context.WithValue(ctx, versionKey{}, version)
}

// WorkflowVersionFrom returns the version of the definition a system
// task's workflow runs (0 outside a system task's run): the task view
// Conductor defines has no field for it, and an EVENT publishes it.
func WorkflowVersionFrom(ctx context.Context) int {
	v, _ := ctx.Value(versionKey{}).(int)
	return v
}
