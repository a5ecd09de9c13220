package scheduler

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/executor"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/internal/logkey"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// Starter starts workflows.
type Starter interface {
	StartWorkflow(ctx context.Context, req conductor.StartWorkflowRequest, o executor.StartOptions) (string, uint64, error)
	// State returns the workflow's state, nil if it does not exist.
	State(ctx context.Context, wfID string) (*engine.Workflow, error)
}

// StartCheck decides whether a schedule's owner may still start its
// workflow, by the rule the API applied when the schedule was saved
// (EXECUTE on the definition; CREATE on an inline definition's name). It
// returns what it decided on, which the fire's start holds to
// (executor.StartCheck): the name deleted and registered again by someone
// else since then would run theirs as the owner, or the inline definition
// as theirs. A refusal (fault.ErrForbidden) pauses the schedule with a
// "Security Error" reason; other errors leave it to the next scan.
type StartCheck func(ctx context.Context, owner string, req conductor.StartWorkflowRequest) (executor.Pin, error)

// Firer starts the workflows of due schedules.
type Firer struct {
	store    *Store
	starter  Starter
	check    StartCheck
	interval time.Duration
	// reconcileEvery is how often the firer sweeps the whole due index
	// for keys that zone rules or cron semantics changed since they were
	// written (see fixDue).
	reconcileEvery time.Duration
	// lookedFor holds, for each paused schedule's pending claim, when
	// finishStarted last looked for its workflow (Unix ms): a state read
	// on every scan (five a second) for as long as a pause lasts.
	lookedFor map[string]claimLook
}

// claimLook is when finishStarted looked for the workflow of a claim.
type claimLook struct{ at, when int64 }

// lookEvery bounds how often finishStarted looks for one claim's
// workflow: a start in flight on another engine lands within it.
const lookEvery = 10 * time.Second

// NewFirer returns a firer; check may be nil (every owner may start).
func NewFirer(store *Store, starter Starter, check StartCheck) *Firer {
	return &Firer{store: store, starter: starter, check: check, interval: 200 * time.Millisecond,
		reconcileEvery: 10 * time.Minute}
}

// Run fires due schedules until ctx is done. It sweeps the due index when
// it starts, since a new binary or tzdata comes with a restart, and then
// every reconcileEvery, since the system's tzdata can change under a
// running process.
func (f *Firer) Run(ctx context.Context) {
	t := time.NewTicker(f.interval)
	defer t.Stop()
	f.reconcile(ctx)
	swept := f.store.now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		f.scan(ctx)
		if now := f.store.now(); now.Sub(swept) >= f.reconcileEvery {
			f.reconcile(ctx)
			swept = now
		}
	}
}

// reconcile corrects the due index where it disagrees with the schedules.
func (f *Firer) reconcile(ctx context.Context) {
	if _, err := f.store.reconcileDue(); err != nil && ctx.Err() == nil {
		f.store.logger.Warn("schedule due index sweep failed", logkey.Err, err)
	}
}

func (f *Firer) scan(ctx context.Context) {
	now := f.store.now().UnixMilli()
	type dueEntry struct {
		token string
		at    int64 // 0: pending, not from the due index
	}
	var due []dueEntry
	err := f.store.reader.Scan([]byte(keyDue), func(key, _ []byte) bool {
		at, token, err := dueToken(key)
		if err != nil || at > now {
			return false
		}
		due = append(due, dueEntry{token, at})
		return true
	})
	if err == nil {
		err = f.store.reader.Scan([]byte(keyPending), func(key, _ []byte) bool {
			due = append(due, dueEntry{token: string(key[len(keyPending):])})
			return true
		})
	}
	if err != nil {
		if ctx.Err() == nil {
			f.store.logger.Warn("schedule scan failed", logkey.Err, err)
		}
		return
	}
	seen := map[string]bool{}
	var names []string
	pending := map[string]bool{}
	for _, d := range due {
		name, err := eventlog.Untoken(d.token)
		if err != nil {
			continue
		}
		if !seen[d.token] {
			seen[d.token] = true
			names = append(names, name)
		}
		if d.at == 0 {
			pending[name] = true
		}
	}
	if err := f.fire(ctx, now, names...); err != nil && ctx.Err() == nil {
		f.store.logger.Warn("schedule fire failed", logkey.Err, err)
	}
	// A claim no longer pending (resumed and started, or its schedule
	// deleted) is looked for no more: kept, its entry would stay for as
	// long as the process runs.
	for name := range f.lookedFor {
		if !pending[name] {
			delete(f.lookedFor, name)
		}
	}
	for _, d := range due {
		// A key the schedule's next fire time no longer puts here would
		// bring the schedule back at every scan, or never leave.
		if d.at == 0 {
			continue
		}
		if err := f.store.checkDue(d.token, d.at); err != nil && ctx.Err() == nil {
			name, _ := eventlog.Untoken(d.token)
			f.store.logger.Warn("schedule due index check failed", "schedule", name, logkey.Err, err)
		}
	}
}

// catchupPerScan is how many missed ticks a schedule that catches up
// claims and starts in one scan at most: an hour's outage of an
// every-second schedule is 3,600 ticks, which one a scan took 12 minutes
// to run; the bound keeps a scan short, so that the ticks of schedules
// that come due meanwhile wait for the next scan only.
const catchupPerScan = 100

// fire claims the due tick of each named schedule and starts its workflow;
// it also finishes a claim whose start a crash interrupted. Schedules that
// catch up take turns, a tick each a round, up to catchupPerScan rounds:
// one with an outage's backlog does not hold another's on-time tick behind
// a hundred of its own. An error stops that schedule for this scan only.
func (f *Firer) fire(ctx context.Context, now int64, names ...string) error {
	var errs []error
	for range catchupPerScan {
		more := names[:0:0]
		for _, name := range names {
			again, err := f.fireOne(ctx, name, now)
			if err != nil {
				errs = append(errs, fmt.Errorf("schedule %s: %w", name, err))
			} else if again {
				more = append(more, name)
			}
		}
		if len(more) == 0 {
			break
		}
		names = more
	}
	return errors.Join(errs...)
}

// fireOne claims and starts one tick, or finishes a pending claim, and
// reports whether another tick of the schedule is due by now.
func (f *Firer) fireOne(ctx context.Context, name string, now int64) (more bool, err error) {
	st, err := f.store.load(ctx, name)
	if err != nil || !exists(st) {
		return false, err
	}
	if st.Pending() {
		if st.Def.Paused {
			// A paused schedule starts nothing; resumed, it starts its
			// claim.
			return false, f.finishStarted(ctx, name, st)
		}
		// A claim whose workflow started before its outcome was recorded
		// (a crash, an answer lost) is that run, whatever the owner's
		// check says now: asked again, a right revoked, a definition
		// deleted or an inline definition's name moved since recorded
		// FAILED, and paused the schedule for, a run whose workflow runs.
		if found, err := f.recordStarted(ctx, name, st); err != nil || found {
			return found && missedAfter(st, st.LastFired, now), err
		}
		if err := f.start(ctx, name, st, st.LastFired, st.LastClaimed, st.Seq); err != nil {
			return false, err
		}
		return missedAfter(st, st.LastFired, now), nil
	}
	at := st.Due(now)
	if at == 0 {
		return false, nil
	}
	// A definition not found, or a start the owner may no longer make, is
	// claimed all the same: the claim's start asks again and records the
	// run FAILED saying why (pausing the schedule for the latter), so
	// that an executions search shows the tick that started nothing.
	if _, err := f.mayStart(ctx, st); err != nil && !errors.Is(err, fault.ErrNotFound) && !errors.Is(err, fault.ErrForbidden) {
		return false, err
	}
	seq, err := f.store.append(ctx, name, st.Seq, []schemas.Event{&schemas.ScheduleFired{
		ScheduledTime: at, WorkflowID: workflowID(name, at), Time: now}})
	if err != nil {
		return false, ignoreConflict(err) // another engine claimed it
	}
	if err := f.start(ctx, name, st, at, now, seq); err != nil {
		return false, err
	}
	return missedAfter(st, at, now), nil
}

// missedAfter reports whether a schedule that catches up has a tick after
// at that is due by now. The next fire of it folds the schedule again,
// so a pause, an edit or a security pause since stops the run of ticks.
func missedAfter(st *State, at, now int64) bool {
	if !st.Def.RunCatchupScheduleInstances {
		return false
	}
	next := NextAfter(&st.Def, at)
	return next != 0 && next <= now
}

// mayStart asks whether the schedule's owner may start its workflow, and
// returns what it decided on (StartCheck).
func (f *Firer) mayStart(ctx context.Context, st *State) (executor.Pin, error) {
	if f.check == nil || st.Def.StartWorkflowRequest == nil {
		return executor.Pin{}, nil
	}
	return f.check(ctx, st.Owner(), *st.Def.StartWorkflowRequest)
}

// securityPause pauses a schedule whose owner may no longer start its
// workflow, as Orkes's scheduler does.
func securityPause(refusal error, now int64) *schemas.SchedulePauseChanged {
	return &schemas.SchedulePauseChanged{Paused: true, Reason: securityReasonPrefix + ": " + refusal.Error(), Time: now, By: systemPrincipal}
}

// securityReasonPrefix starts the reason of the firer's security pauses,
// as Orkes's does; SetPaused keeps it for them.
const securityReasonPrefix = "Security Error"

// systemPrincipal is who the scheduler's own changes are recorded as.
const systemPrincipal = "flowvault"

// start starts the workflow of the fire time at, claimed at claimed. The
// owner's right is asked again: a claim may have waited (a crash, a
// start failing for a while) while the owner lost it.
func (f *Firer) start(ctx context.Context, name string, st *State, at, claimed int64, seq uint64) error {
	id := workflowID(name, at)
	req := *st.Def.StartWorkflowRequest
	var added []string
	req.Input, added = scheduledInput(req.Input, map[string]any{
		"_scheduledTime": at, "_executedTime": claimed, "_startedByScheduler": name, "_executionId": id})
	pin, err := f.mayStart(ctx, st)
	refused := errors.Is(err, fault.ErrForbidden)
	started := id
	if err == nil {
		started, _, err = f.starter.StartWorkflow(ctx, req, executor.StartOptions{WorkflowID: id,
			CreatedBy: st.Owner(), RequestID: id, Added: added, Pin: pin})
	}
	now := f.store.now().UnixMilli()
	outcome := &schemas.ScheduleExecuted{ScheduledTime: at, Time: now}
	switch {
	case err == nil:
		if started != id {
			// RETURN_EXISTING: the run is the workflow that holds the
			// request's idempotency key.
			outcome.WorkflowID = started
		}
	case errors.Is(err, executor.ErrKeyHeld):
		// FAIL or FAIL_ON_RUNNING: another workflow holds the request's
		// idempotency key. Refused for good, as below; it is a conflict
		// as well, which must not read as this claim's own start.
		outcome.Failed, outcome.Reason = true, "idempotencyStrategy "+cmp.Or(req.IdempotencyStrategy, conductor.IdempotencyFail)+
			": "+err.Error()
	case errors.Is(err, fault.ErrStale):
		// The inline definition's name was registered, or passed to
		// another owner, since the owner's check, and nothing started:
		// the claim, pending, is checked again on the next scan, on the
		// name as it is. Recorded FAILED, a tick whose owner registered
		// the name meanwhile would be lost where its check allows it,
		// and an earlier attempt's start that landed would read as
		// none.
		return err
	case errors.Is(err, fault.ErrConflict):
		// started by an earlier attempt at this claim, or by another
		// engine finishing it
	case errors.Is(err, fault.ErrNotFound), errors.Is(err, fault.ErrInvalid), errors.Is(err, fault.ErrForbidden),
		errors.Is(err, fault.ErrTooLarge), errors.Is(err, fault.ErrRateLimited):
		// Refused for good: tried again, the claim would stay pending,
		// and no later tick would fire. A run its owner's quota on
		// running workflows refuses (ErrRateLimited) is such a run: the
		// next tick tries again.
		outcome.Failed, outcome.Reason = true, err.Error()
	default:
		return err // transient: the pending claim is retried on the next scan
	}
	events := []schemas.Event{outcome}
	if refused {
		events = append(events, securityPause(err, now))
	}
	if err := f.recordOutcome(ctx, name, at, seq, events); err != nil {
		return err
	}
	if refused {
		// Nothing else tells an operator that a schedule stopped.
		f.store.logger.Warn("schedule paused: its owner may no longer start its workflow", "schedule", name,
			logkey.Principal, st.Owner(), logkey.Reason, outcome.Reason)
	}
	return nil
}

// finishStarted records the pending claim of a paused schedule as run
// when an earlier attempt started its workflow: a start whose answer was
// lost (its server gone) or that failed after it landed is finished by a
// later scan, which a pause stopped; the run read POLLED for as long as
// the pause lasted, though its workflow ran (make test's failover test
// paused the schedule so).
func (f *Firer) finishStarted(ctx context.Context, name string, st *State) error {
	now := f.store.now().UnixMilli()
	if l, ok := f.lookedFor[name]; ok && l.at == st.LastFired && now-l.when < lookEvery.Milliseconds() {
		return nil
	}
	if f.lookedFor == nil {
		f.lookedFor = map[string]claimLook{}
	}
	f.lookedFor[name] = claimLook{at: st.LastFired, when: now}
	found, err := f.recordStarted(ctx, name, st)
	if found {
		delete(f.lookedFor, name)
	}
	return err
}

// recordStarted records the pending claim of st as run when its workflow
// exists, an earlier attempt's start, and reports whether it does.
func (f *Firer) recordStarted(ctx context.Context, name string, st *State) (bool, error) {
	w, err := f.starter.State(ctx, workflowID(name, st.LastFired))
	if err != nil || w == nil {
		return false, err
	}
	return true, f.recordOutcome(ctx, name, st.LastFired, st.Seq,
		[]schemas.Event{&schemas.ScheduleExecuted{ScheduledTime: st.LastFired, Time: f.store.now().UnixMilli()}})
}

// recordOutcome appends the outcome of the claim of fire time at, made at
// sequence seq. A write that came between the claim and its outcome (a
// pause, an edit, tags) is no other outcome: the outcome goes after it.
// Left unrecorded, the run of a schedule paused as it fired read POLLED
// for as long as the pause lasted, though its workflow ran. Another
// engine's outcome of the claim ends it.
func (f *Firer) recordOutcome(ctx context.Context, name string, at int64, seq uint64, events []schemas.Event) error {
	for range outcomeAttempts {
		_, err := f.store.append(ctx, name, seq, events)
		if !errors.Is(err, eventlog.ErrConflict) {
			return ignoreConflict(err)
		}
		st, err := f.store.load(ctx, name)
		if err != nil || !exists(st) || !st.Pending() || st.LastFired != at {
			return err
		}
		seq = st.Seq
	}
	return nil // still contended: the claim, pending, is finished by a later scan
}

// outcomeAttempts bounds recordOutcome's appends on a schedule written
// to meanwhile.
const outcomeAttempts = 5

// scheduledInput is a schedule's input with what Orkes adds to each
// scheduled run's (the fire time, the claim time, the schedule and the
// execution record); a key the schedule's input sets keeps its value.
// It also returns the keys it added, which the definition's enforced
// inputSchema does not judge: its author cannot list them, and a schema
// allowing no other keys failed every run. A key the input set is the
// schedule's, judged as any start's.
func scheduledInput(input, added map[string]any) (map[string]any, []string) {
	out := make(map[string]any, len(input)+len(added))
	maps.Copy(out, added)
	maps.Copy(out, input)
	var keys []string
	for _, k := range slices.Sorted(maps.Keys(added)) {
		if _, set := input[k]; !set {
			keys = append(keys, k)
		}
	}
	return out, keys
}

func ignoreConflict(err error) error {
	if errors.Is(err, eventlog.ErrConflict) {
		return nil
	}
	if err != nil && strings.Contains(err.Error(), "context canceled") {
		return nil
	}
	return err
}
