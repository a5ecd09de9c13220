package executor

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// concurrentExecLimit (L): at most L of a definition's tasks IN_PROGRESS
// at once. Each limited definition keeps the takes that hold its places
// in one entry of the limits bucket (see limits.go). A take is admitted
// when its task holds a place already (taken again after a hand-back) or
// one is free. A task's end does not give its place back: when none is
// free, the holders are checked against the log, and those whose task is
// no longer running leave. So no crash, lost message or engine that
// stopped can keep a place taken, and nothing but the log decides. A
// holder whose task is not IN_PROGRESS yet keeps its place for takeGrace
// after its admission: its take may still be on its way to the log.

// holder is a take that holds one of its task type's places.
type holder struct {
	Task     string `json:"t"`
	Workflow string `json:"w"`
	At       int64  `json:"at"` // admitted (Unix ms)
}

const (
	// takeGrace is how long a holder whose task does not show IN_PROGRESS
	// keeps its place: a take is recorded within takeTimeout or not at all.
	takeGrace = takeTimeout
	// recheckEvery bounds how often an engine checks one task type's
	// holders against the log: each check reads the holders' workflows.
	recheckEvery = 250 * time.Millisecond
	// fullRetry is when a take refused for want of a place is tried
	// again: no message tells the engines that a task ended.
	fullRetry = time.Second
)

// holdCheck reports whether holder h's task still holds its place: the
// task is IN_PROGRESS, or h is too recent for its take to show.
type holdCheck func(ctx context.Context, h holder, now time.Time) (bool, error)

// admitRunning gives h a place among taskType's limit running tasks.
func (l *limits) admitRunning(ctx context.Context, taskType string, limit int, h holder, now time.Time, still holdCheck) error {
	return l.cas(ctx, limitKey("c.", taskType), "concurrency limit of "+taskType, func(old []byte) ([]byte, error) {
		var holders []holder
		if len(old) > 0 && json.Unmarshal(old, &holders) != nil {
			holders = nil // only engines write it: what they cannot read holds no place
		}
		if slices.ContainsFunc(holders, func(o holder) bool { return o.Task == h.Task && o.Workflow == h.Workflow }) {
			return nil, nil
		}
		if len(holders) >= limit {
			var err error
			if holders, err = l.recheck(ctx, taskType, holders, now, still); err != nil {
				return nil, err
			}
			if len(holders) >= limit {
				return nil, &LimitedError{TaskType: taskType, Limit: "concurrentExecLimit", Until: now.Add(fullRetry)}
			}
		}
		return json.Marshal(append(holders, h))
	})
}

// recheck returns the holders that still hold their place, or all of them
// when this engine checked taskType's a moment ago.
func (l *limits) recheck(ctx context.Context, taskType string, holders []holder, now time.Time, still holdCheck) ([]holder, error) {
	l.mu.Lock()
	recent := now.Sub(l.checked[taskType]) < recheckEvery
	if !recent {
		l.checked[taskType] = now
	}
	l.mu.Unlock()
	if recent {
		return holders, nil
	}
	kept := make([]holder, 0, len(holders))
	for _, h := range holders {
		ok, err := still(ctx, h, now)
		if err != nil {
			return nil, fmt.Errorf("%w: concurrency limit of %s: %v", fault.ErrUnavailable, taskType, err)
		}
		if ok {
			kept = append(kept, h)
		}
	}
	return kept, nil
}

// stillHolds reads h's workflow as the log has it now.
func (e *Executor) stillHolds(ctx context.Context, h holder, now time.Time) (bool, error) {
	recent := now.UnixMilli()-h.At < takeGrace.Milliseconds()
	w, err := e.current(ctx, h.Workflow)
	if err != nil {
		return false, err
	}
	if w != nil && w.Removed {
		// Removed without being terminated, its tasks read as they were,
		// and no record of it will end them: a take of it is refused too.
		return false, nil
	}
	var t *engine.Task
	if w != nil {
		t = w.TaskByID(h.Task)
	}
	switch {
	case t == nil:
		return recent, nil // not recorded yet, or gone (a restart removes tasks)
	case t.Status == conductor.TaskInProgress:
		return true, nil
	case t.Status == conductor.TaskScheduled:
		return recent, nil // its take not recorded yet, or handed back
	}
	return false, nil
}

// current folds workflow wfID up to the log's last record, starting from
// the read model's copy, without the shards' caches (a shard may be the
// caller). nil: no such workflow.
func (e *Executor) current(ctx context.Context, wfID string) (*engine.Workflow, error) {
	var w *engine.Workflow
	if e.cfg.Snapshots != nil {
		if snap, err := e.cfg.Snapshots.Workflow(ctx, wfID); err == nil && snap != nil {
			w = snap.Clone()
		}
	}
	recs, err := e.log.ReadSubject(ctx, subject(wfID), seqOf(w))
	if err != nil {
		return nil, fmt.Errorf("load workflow %s: %w", wfID, err)
	}
	return Fold(w, recs)
}
