package executor

import (
	"context"
	"fmt"
	"sync"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/fault"
)

// RunningCounter is the part of the executions read model the quota on
// running workflows reads.
type RunningCounter interface {
	// RunningOf returns how many workflows principal created are not
	// terminal (RUNNING, PAUSED), and the log sequence up to which the
	// count holds every record.
	RunningOf(ctx context.Context, principal string) (count int, asOf uint64, err error)
}

// quota bounds the workflows one principal has running: a definition
// that forks two sub-workflows of itself grows a tree of 2^depth
// workflows, which would fill the log, the read models and the engine
// for every other tenant.
//
// The read model lags the log, so the count it gives misses the starts
// appended since its checkpoint. The quota adds those of this engine's
// starts, and of those checked and not yet appended: an engine alone
// never lets a principal past the limit. What other engines started and
// this engine's read model has not folded yet it cannot see.
type quota struct {
	max     int
	counter RunningCounter
	mu      sync.Mutex
	// unseen counts, by principal, the starts admitted that the read
	// model did not hold when last asked: checked, or appended after its
	// checkpoint (those listed in landed from head on).
	unseen map[string]int
	landed []landedStart
	head   int
}

type landedStart struct {
	seq       uint64
	principal string
}

func newQuota(max int, counter RunningCounter) *quota {
	if max <= 0 || counter == nil {
		return nil
	}
	return &quota{max: max, counter: counter, unseen: map[string]int{}}
}

// admit reserves a place for one more running workflow of principal, or
// refuses it with fault.ErrRateLimited. The caller releases the place
// with the sequence its start was appended at, 0 when nothing was.
func (q *quota) admit(ctx context.Context, principal string) (release func(seq uint64), err error) {
	count, asOf, err := q.counter.RunningOf(ctx, principal)
	if err != nil {
		return nil, fmt.Errorf("running workflows of %s: %w", principal, err)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	q.seen(asOf)
	if n := count + q.unseen[principal]; n >= q.max {
		return nil, fault.RateLimited("principal %s has %d workflows running; the limit is %d (--max-running-workflows)",
			principalName(principal), n, q.max)
	}
	q.unseen[principal]++
	return func(seq uint64) {
		q.mu.Lock()
		defer q.mu.Unlock()
		if seq == 0 {
			q.forget(principal)
			return
		}
		q.landed = append(q.landed, landedStart{seq, principal})
	}, nil
}

// seen forgets the starts the read model holds, those appended at or
// before asOf. Appends land about in sequence order: one that landed
// before a later sequence's is forgotten only with it, which counts it
// a moment longer than it needs.
func (q *quota) seen(asOf uint64) {
	for q.head < len(q.landed) && q.landed[q.head].seq <= asOf {
		q.forget(q.landed[q.head].principal)
		q.landed[q.head] = landedStart{}
		q.head++
	}
	if q.head == len(q.landed) || q.head > len(q.landed)/2 {
		q.landed = append(q.landed[:0], q.landed[q.head:]...)
		q.head = 0
	}
}

func (q *quota) forget(principal string) {
	if q.unseen[principal]--; q.unseen[principal] <= 0 {
		delete(q.unseen, principal)
	}
}

// principalName is how a refusal names a principal: an empty one is the
// anonymous caller of a server without authentication.
func principalName(principal string) string {
	if principal == "" {
		return "(anonymous)"
	}
	return principal
}

// startsRunning reports whether trig, decided on w, makes a workflow
// run that did not: a start, or an operator's restart, retry or rerun
// of an ended one. A parent reopened by its child's retry is not asked:
// refused, the child would run on with nobody to report to.
func startsRunning(trig engine.Trigger, w, after *engine.Workflow) bool {
	switch trig.(type) {
	case engine.Start, engine.Restart, engine.Retry, engine.Rerun:
		return (w == nil || w.Terminal()) && after != nil && !after.Terminal()
	}
	return false
}

// reopens: trig makes an ended workflow run again at an operator's word.
func reopens(trig engine.Trigger) bool {
	switch trig.(type) {
	case engine.Restart, engine.Retry, engine.Rerun:
		return true
	}
	return false
}
