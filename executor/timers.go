package executor

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/internal/logkey"
)

// Due is a workflow deadline that has passed.
type Due struct {
	WorkflowID string
	At         int64 // Unix ms
}

// Schedule is the part of the executions read model the executor needs:
// passed deadlines, and the workflows still running (for recovery).
type Schedule interface {
	// Due lists up to limit deadlines at or before now, oldest first,
	// after the deadline after (the zero Due: from the first).
	Due(ctx context.Context, now int64, after Due, limit int) ([]Due, error)
	Running(ctx context.Context, fn func(wfID string) bool) error
	// ScheduledBefore lists the workflows of the tasks still SCHEDULED
	// that were scheduled at or before before (Unix ms), a workflow once
	// for each such task.
	ScheduledBefore(ctx context.Context, before int64, fn func(wfID string) bool) error
}

// timerLoop ticks every workflow whose deadline has passed. A deadline that
// a tick handled without changing the workflow (a delayed hand-off, an
// alert-only timeout) stays in the index until the workflow changes; fired
// remembers it so that it is not ticked again and again.
func (e *Executor) timerLoop(ctx context.Context) {
	t := time.NewTicker(e.cfg.TimerInterval)
	defer t.Stop()
	fired := map[Due]bool{}
	var mu sync.Mutex
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		due, err := e.dueNow(ctx)
		if err != nil {
			if ctx.Err() == nil {
				e.cfg.Logger.Warn("timer scan failed", logkey.Err, err)
			}
			continue
		}
		seen := make(map[Due]bool, len(due))
		for _, d := range due {
			seen[d] = true
			mu.Lock()
			done := fired[d]
			fired[d] = true
			mu.Unlock()
			if done {
				continue
			}
			e.metrics.ticks.Inc()
			e.onSlot(time.Minute, func(ctx context.Context) {
				if _, err := e.Submit(ctx, d.WorkflowID, engine.Tick{}, Meta{}); err != nil && !expected(err) {
					e.cfg.Logger.Warn("tick failed", logkey.WorkflowID, d.WorkflowID, logkey.Err, err)
					mu.Lock()
					delete(fired, d) // try again on the next scan
					mu.Unlock()
				}
			})
		}
		mu.Lock()
		for d := range fired {
			if !seen[d] {
				delete(fired, d)
			}
		}
		mu.Unlock()
	}
}

// dueNow lists every passed deadline, page by page: deadlines a tick
// handled without changing the workflow stay in the index (a delayed
// hand-off still waiting for a worker), and however many there are, they
// must not hide the ones after them.
func (e *Executor) dueNow(ctx context.Context) ([]Due, error) {
	const page = 10000
	now := e.cfg.Now().UnixMilli()
	var all []Due
	var after Due
	for {
		due, err := e.sched.Due(ctx, now, after, page)
		if err != nil {
			return nil, err
		}
		all = append(all, due...)
		if len(due) < page {
			return all, nil
		}
		after = due[len(due)-1]
	}
}

func expected(err error) bool {
	return errors.Is(err, fault.ErrNotFound) || errors.Is(err, fault.ErrConflict) || errors.Is(err, context.Canceled)
}

// reconcile performs, in the background, the effects wfID's state
// implies, as recovery does for every running workflow, followed by rel
// when set. It does not wait for room on the effect pool: a shard calls it.
func (e *Executor) reconcile(wfID string, rel *Related) {
	if rel != nil {
		rel.add(1)
	}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		ran := e.onSlot(time.Minute, func(ctx context.Context) {
			if rel != nil {
				defer rel.done()
				ctx = withRelated(ctx, rel)
			}
			e.reconcileNow(ctx, wfID, engine.Reconcile{})
		})
		if !ran && rel != nil {
			rel.done()
		}
	}()
}

func (e *Executor) reconcileNow(ctx context.Context, wfID string, trig engine.Reconcile) {
	if _, err := e.Submit(ctx, wfID, trig, Meta{}); err != nil && !expected(err) && ctx.Err() == nil {
		e.cfg.Logger.Warn("reconcile failed", logkey.WorkflowID, wfID, logkey.Err, err)
	}
}

// redispatchLoop announces again, every RedispatchInterval, the tasks whose
// dispatch message the stream dropped for age since the last pass: tasks
// no worker took for DispatchAge (their workers were down) would
// otherwise wait for the next start of an engine.
func (e *Executor) redispatchLoop(ctx context.Context) {
	t := time.NewTicker(e.cfg.RedispatchInterval)
	defer t.Stop()
	trig := engine.Reconcile{DispatchAge: e.cfg.DispatchAge.Milliseconds(), Interval: e.cfg.RedispatchInterval.Milliseconds()}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			e.recover(ctx, trig)
		}
	}
}

// recover submits trig to every running workflow: with a plain Reconcile,
// it performs the effects each state implies (dispatch messages lost with
// a restarted NATS server, children not started and parents not notified
// because the process died after an append). The periodic pass, with
// DispatchAge set, submits it only to the workflows with a task that may
// have lost its message to age: one scheduled at least DispatchAge ago
// (a task is announced at or after its scheduling), not to every
// running workflow, most of which wait for something else.
func (e *Executor) recover(ctx context.Context, trig engine.Reconcile) {
	var ids []string
	seen := map[string]bool{}
	add := func(id string) bool {
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
		return true
	}
	var err error
	if trig.DispatchAge > 0 {
		err = e.sched.ScheduledBefore(ctx, e.cfg.Now().UnixMilli()-trig.DispatchAge, add)
	} else {
		err = e.sched.Running(ctx, add)
	}
	if err != nil {
		e.cfg.Logger.Warn("recovery scan failed", logkey.Err, err)
		return
	}
	if lister, ok := e.sched.(endedLister); ok && trig.DispatchAge == 0 {
		ended, err := e.endedBeforeLastRecord(ctx, lister)
		if err != nil {
			e.cfg.Logger.Warn("recovery scan of ended workflows failed", logkey.Err, err)
		}
		ids = append(ids, ended...)
	}
	for _, id := range ids {
		e.onSlot(time.Minute, func(ctx context.Context) { e.reconcileNow(ctx, id, trig) })
	}
	level := slog.LevelInfo
	if trig.DispatchAge > 0 {
		level = slog.LevelDebug // every RedispatchInterval
	}
	e.cfg.Logger.Log(ctx, level, "recovery scheduled", logkey.Count, len(ids))
}

// endedLister lists workflows that ended with effects besides their
// parent's news (a failure workflow to start, children to terminate): an
// engine that died right after such an end took them along.
type endedLister interface {
	EndedWithEffects(ctx context.Context, since int64, fn func(wfID string) bool) error
}

// endedLookback is how long before the log's last record a workflow may
// have ended and still have its end's effects in flight: they follow the
// append within moments.
const endedLookback = 10 * time.Minute

// endedBeforeLastRecord lists the workflows that ended with effects within
// endedLookback of the workflow stream's last record: those a crash may
// have left undone, however long ago the crash was. Performing them again
// is harmless (a failure workflow's id is derived, a terminated child
// stays terminated).
func (e *Executor) endedBeforeLastRecord(ctx context.Context, lister endedLister) ([]string, error) {
	last, err := e.log.StreamLastTime(ctx, eventlog.Workflows.Name)
	if err != nil || last.IsZero() {
		return nil, err
	}
	var ids []string
	err = lister.EndedWithEffects(ctx, last.Add(-endedLookback).UnixMilli(), func(id string) bool {
		ids = append(ids, id)
		return true
	})
	return ids, err
}
