package scheduler

import (
	"context"
	"errors"
	"maps"
	"strings"
	"time"

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
}

// StartCheck decides whether a schedule's owner may still start its
// workflow, by the rule the API applied when the schedule was saved
// (EXECUTE on the definition; CREATE on an inline definition's name). A
// refusal (fault.ErrForbidden) pauses the schedule with a "Security Error"
// reason; other errors leave it to the next scan.
type StartCheck func(ctx context.Context, owner string, req conductor.StartWorkflowRequest) error

// Firer starts the workflows of due schedules.
type Firer struct {
	store    *Store
	starter  Starter
	check    StartCheck
	interval time.Duration
}

// NewFirer returns a firer; check may be nil (every owner may start).
func NewFirer(store *Store, starter Starter, check StartCheck) *Firer {
	return &Firer{store: store, starter: starter, check: check, interval: 200 * time.Millisecond}
}

// Run fires due schedules until ctx is done.
func (f *Firer) Run(ctx context.Context) {
	t := time.NewTicker(f.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		f.scan(ctx)
	}
}

func (f *Firer) scan(ctx context.Context) {
	now := f.store.now().UnixMilli()
	var due []string
	err := f.store.reader.Scan([]byte(keyDue), func(key, _ []byte) bool {
		at, token, err := dueToken(key)
		if err != nil || at > now {
			return false
		}
		due = append(due, token)
		return true
	})
	if err == nil {
		err = f.store.reader.Scan([]byte(keyPending), func(key, _ []byte) bool {
			due = append(due, string(key[len(keyPending):]))
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
	for _, token := range due {
		if seen[token] {
			continue
		}
		seen[token] = true
		name, err := eventlog.Untoken(token)
		if err != nil {
			continue
		}
		if err := f.fire(ctx, name, now); err != nil && ctx.Err() == nil {
			f.store.logger.Warn("schedule fire failed", "schedule", name, logkey.Err, err)
		}
	}
}

// fire claims the schedule's due time, if any, and starts its workflow; it
// also finishes a claim whose start a crash interrupted.
func (f *Firer) fire(ctx context.Context, name string, now int64) error {
	st, err := f.store.load(ctx, name)
	if err != nil || !exists(st) {
		return err
	}
	if st.Pending() {
		return f.start(ctx, name, st, st.LastFired, st.LastClaimed, st.Seq)
	}
	at := st.Due(now)
	if at == 0 {
		return nil
	}
	if err := f.mayStart(ctx, st); err != nil {
		if !errors.Is(err, fault.ErrForbidden) {
			return err
		}
		_, err := f.store.append(ctx, name, st.Seq, []schemas.Event{securityPause(err, now)})
		return ignoreConflict(err)
	}
	seq, err := f.store.append(ctx, name, st.Seq, []schemas.Event{&schemas.ScheduleFired{
		ScheduledTime: at, WorkflowID: workflowID(name, at), Time: now}})
	if err != nil {
		return ignoreConflict(err) // another engine claimed it
	}
	return f.start(ctx, name, st, at, now, seq)
}

// mayStart asks whether the schedule's owner may start its workflow.
func (f *Firer) mayStart(ctx context.Context, st *State) error {
	if f.check == nil || st.Def.StartWorkflowRequest == nil {
		return nil
	}
	return f.check(ctx, st.Owner(), *st.Def.StartWorkflowRequest)
}

// securityPause pauses a schedule whose owner may no longer start its
// workflow, as Orkes's scheduler does.
func securityPause(refusal error, now int64) *schemas.SchedulePauseChanged {
	return &schemas.SchedulePauseChanged{Paused: true, Reason: "Security Error: " + refusal.Error(), Time: now, By: systemPrincipal}
}

// systemPrincipal is who the scheduler's own changes are recorded as.
const systemPrincipal = "flowvault"

// start starts the workflow of the fire time at, claimed at claimed. The
// owner's right is asked again: a claim may have waited (a crash, a
// start failing for a while) while the owner lost it.
func (f *Firer) start(ctx context.Context, name string, st *State, at, claimed int64, seq uint64) error {
	id := workflowID(name, at)
	req := *st.Def.StartWorkflowRequest
	req.Input = scheduledInput(req.Input, map[string]any{
		"_scheduledTime": at, "_executedTime": claimed, "_startedByScheduler": name, "_executionId": id})
	err := f.mayStart(ctx, st)
	refused := errors.Is(err, fault.ErrForbidden)
	if err == nil {
		_, _, err = f.starter.StartWorkflow(ctx, req, executor.StartOptions{WorkflowID: id,
			CreatedBy: st.Owner(), RequestID: id})
	}
	now := f.store.now().UnixMilli()
	outcome := &schemas.ScheduleExecuted{ScheduledTime: at, Time: now}
	switch {
	case err == nil, errors.Is(err, fault.ErrConflict):
		// started now, or by an earlier attempt
	case errors.Is(err, fault.ErrNotFound), errors.Is(err, fault.ErrInvalid), errors.Is(err, fault.ErrForbidden):
		outcome.Failed, outcome.Reason = true, err.Error()
	default:
		return err // transient: the pending claim is retried on the next scan
	}
	events := []schemas.Event{outcome}
	if refused {
		events = append(events, securityPause(err, now))
	}
	_, err = f.store.append(ctx, name, seq, events)
	return ignoreConflict(err)
}

// scheduledInput is a schedule's input with what Orkes adds to each
// scheduled run's (the fire time, the claim time, the schedule and the
// execution record); a key the schedule's input sets keeps its value.
func scheduledInput(input, added map[string]any) map[string]any {
	out := make(map[string]any, len(input)+len(added))
	maps.Copy(out, added)
	maps.Copy(out, input)
	return out
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
