package executor

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/internal/logkey"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/workers"
)

// Matching a task with a poll that waits for it. A task announced on the
// dispatch stream reaches its worker through an announcement, its delivery
// and acknowledgement, a take request, and a record of its own: the take,
// which makes the worker the task's owner. A worker already waiting at
// this engine (a long poll, over HTTP or NATS) needs none of that: the
// decision that schedules the task takes it for the waiting worker in its
// own record, and the poll answers with the task once that record is
// stored. It is the same take: the worker owns the task across engines
// and crashes, reads show it IN_PROGRESS, its response timeout runs, and
// what its hand-off resolved is recorded before the value leaves. On a disk
// that syncs each record, it is one sync in three fewer per task.
//
// A task no poll waits for, or whose hand-off fails, is announced as
// before, and a poll waits for an announcement too: from another engine,
// or sent again by recovery.

type waiterState int

const (
	waiting waiterState = iota
	// claimed: a decision is taking a task for the waiter.
	claimed
	// leaving: claimed, and its poll stopped waiting; the claim's outcome
	// still goes to got.
	leaving
	gone
)

// waiter is a poll waiting for a task of its queue.
type waiter struct {
	queue    string
	workerID string
	// principal is who polled, as authenticated (PollRequest.Principal).
	principal string
	// ctx is the poll's: a poll whose client went away is not matched.
	ctx   context.Context
	got   chan *takenTask // a claim's outcome: the task, or nil
	state waiterState     // guarded by matcher.mu
	ahead bool            // an AheadPoll's
}

// matcher keeps the polls waiting at this engine, by queue, oldest first.
type matcher struct {
	mu     sync.Mutex
	queues map[string][]*waiter
	n      int // waiters in queues
	// aheads are the waiters in queues that are polls ahead of a result
	// (AheadPoll), which count wants left out.
	aheads int
	// feeders are the queues whose feeder runs (see Executor.feed).
	feeders map[string]bool
}

func newMatcher() *matcher {
	return &matcher{queues: map[string][]*waiter{}, feeders: map[string]bool{}}
}

// has reports whether a poll waits on queue.
func (m *matcher) has(queue string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.queues[queue]) > 0
}

// count returns the number of polls waiting, but for those ahead of a
// result (see AheadPoll), which wait only while the result is decided.
func (m *matcher) count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.n - m.aheads
}

// waiting reports whether any poll waits.
func (m *matcher) waiting() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.n > 0
}

// wait adds a waiter on queue for workerID. feed reports that the queue
// has no feeder: the caller starts one.
func (m *matcher) wait(ctx context.Context, queue, workerID, principal string) (w *waiter, feed bool) {
	w = newWaiter(ctx, queue, workerID, principal)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.push(w)
	if !m.feeders[queue] {
		m.feeders[queue] = true
		feed = true
	}
	return w, feed
}

// waitAhead adds a waiter on queue for workerID that starts no feeder
// (see AheadPoll): decisions, and a feeder other polls started, serve it.
func (m *matcher) waitAhead(ctx context.Context, queue, workerID, principal string) *waiter {
	w := newWaiter(ctx, queue, workerID, principal)
	w.ahead = true
	m.mu.Lock()
	defer m.mu.Unlock()
	m.push(w)
	return w
}

func newWaiter(ctx context.Context, queue, workerID, principal string) *waiter {
	return &waiter{queue: queue, workerID: workerID, principal: principal, ctx: ctx, got: make(chan *takenTask, 1)}
}

// push adds w, last, to its queue's waiters; m.mu is held.
func (m *matcher) push(w *waiter) {
	m.queues[w.queue] = append(m.queues[w.queue], w)
	m.counted(w, 1)
}

// counted counts w in (1) or out (-1) of the waiters in queues; m.mu is
// held.
func (m *matcher) counted(w *waiter, by int) {
	m.n += by
	if w.ahead {
		m.aheads += by
	}
}

// fed reports whether queue's feeder runs.
func (m *matcher) fed(queue string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.feeders[queue]
}

// feeding returns the number of waiters on queue, for its feeder; at 0, or
// with stop, the feeder is done and the next waiter starts another.
func (m *matcher) feeding(queue string, stop bool) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := len(m.queues[queue])
	if n == 0 || stop {
		delete(m.feeders, queue)
		return 0
	}
	return n
}

// claim takes the oldest live waiter off queue, or returns nil.
func (m *matcher) claim(queue string) *waiter {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.n == 0 {
		return nil
	}
	ws := m.queues[queue]
	for len(ws) > 0 {
		w := ws[0]
		ws[0] = nil
		ws = ws[1:]
		m.counted(w, -1)
		if w.ctx.Err() == nil {
			w.state = claimed
			m.store(queue, ws)
			return w
		}
		w.state = gone
	}
	m.store(queue, ws)
	return nil
}

func (m *matcher) store(queue string, ws []*waiter) {
	if len(ws) == 0 {
		delete(m.queues, queue)
		return
	}
	m.queues[queue] = ws
}

// release ends a claim that took nothing: the waiter waits again, first in
// its queue, or hears nil if its poll has stopped waiting.
func (m *matcher) release(w *waiter) {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch w.state {
	case claimed:
		w.state = waiting
		m.queues[w.queue] = append([]*waiter{w}, m.queues[w.queue]...)
		m.counted(w, 1)
	case leaving:
		w.state = gone
		w.got <- nil
	}
}

// deliver ends a claim with the task taken for the waiter.
func (m *matcher) deliver(w *waiter, t *takenTask) {
	m.mu.Lock()
	defer m.mu.Unlock()
	w.state = gone
	w.got <- t // never blocks: a waiter hears one outcome
}

// leave removes a waiter whose poll stops waiting, and returns the task a
// claim took for it, if any, waiting for the outcome of a claim under way.
func (m *matcher) leave(w *waiter) *takenTask {
	m.mu.Lock()
	switch w.state {
	case waiting:
		ws := m.queues[w.queue]
		for i, x := range ws {
			if x == w {
				ws = append(ws[:i], ws[i+1:]...)
				m.counted(w, -1)
				break
			}
		}
		m.store(w.queue, ws)
		w.state = gone
		m.mu.Unlock()
		return nil
	case claimed:
		w.state = leaving
		m.mu.Unlock()
		return <-w.got
	}
	m.mu.Unlock()
	select {
	case t := <-w.got:
		return t
	default:
		return nil
	}
}

// matched is a task a decision took for a waiter.
type matched struct {
	w     *waiter
	task  *engine.Task   // the take's reply: the task as taken
	input map[string]any // its input as handed off, nil when nothing was prepared
	// first and events place the take's events among the decision's.
	first, events int
}

// takeForWaiters takes, within dec, the worker tasks dec announces that a
// poll waits for, in place of their announcements. A task whose take
// cannot be decided, or whose hand-off fails, is announced as before: the
// take that fails it is left to the dispatch path.
func (e *Executor) takeForWaiters(ctx context.Context, dec engine.Decision, now time.Time) (engine.Decision, []matched) {
	var out []matched
	effects := make([]engine.Effect, 0, len(dec.Effects))
	for _, eff := range dec.Effects {
		d, ok := eff.(engine.Dispatch)
		if !ok || !takeable(dec.State, d.TaskID, now) {
			if !ok || !slices.ContainsFunc(out, func(m matched) bool { return m.task.ID == d.TaskID }) {
				effects = append(effects, eff)
			} // else announced twice by the decision, and taken
			continue
		}
		w := e.match.claim(workers.ConsumerName(d.TaskType, d.Domain))
		if w == nil {
			effects = append(effects, eff)
			continue
		}
		trig := engine.Take{TaskID: d.TaskID, WorkerID: w.workerID, TaskType: d.TaskType, Domain: d.Domain}
		if _, err := e.admitTake(ctx, dec.State, trig, now); err != nil {
			// Rate limited (or the limit could not be read): the
			// announcement waits in the queue for the window to move.
			e.match.release(w)
			effects = append(effects, eff)
			continue
		}
		take, input, td, ok := e.decideTake(ctx, dec.State, trig, now)
		if !ok {
			e.match.release(w)
			effects = append(effects, eff)
			continue
		}
		effects = append(effects, td.Effects...)
		first := len(dec.Events)
		events := make([]schemas.Event, 0, len(dec.Events)+len(td.Events))
		dec.Events = append(append(events, dec.Events...), td.Events...)
		dec.State = td.State
		out = append(out, matched{w: w, task: take, input: input, first: first, events: len(td.Events)})
	}
	dec.Effects = effects
	return dec, out
}

// takeProtected is takeForWaiters on a decision the protector has
// protected, whose takes it protects in turn: the takes are decided, and
// their inputs prepared, on the state as it is stored, as a take from the
// queue prepares its input. Prepared from the decision's state before
// protection, a waiting poll got what protection then rewrote: a worker's
// echo of a secret, or an encoded form of a value the decision sealed,
// copied into the next task's input, in plain text where the queue's
// taker got "***". When the takes cannot be protected, the tasks are
// announced as the decision had them.
func (e *Executor) takeProtected(ctx context.Context, dec engine.Decision, now time.Time) (engine.Decision, []matched) {
	protected := dec.State
	n := len(dec.Events)
	taken, ms := e.takeForWaiters(ctx, dec, now)
	if len(ms) == 0 {
		return taken, nil
	}
	takes, err := e.protect(ctx, protected, engine.Decision{Events: taken.Events[n:], State: taken.State})
	if err != nil {
		e.cfg.Logger.Warn("protecting takes for waiting polls failed; announcing their tasks", logkey.WorkflowID, protected.ID, logkey.Err, err)
		e.unmatch(ms)
		return dec, nil
	}
	// Protection keeps the takes' events in place: ms still finds them.
	taken.Events = append(taken.Events[:n:n], takes.Events...)
	taken.State = takes.State
	return taken, ms
}

// takeable reports whether taskID waits for a worker in state now. A
// decision may announce a task twice (announcements are idempotent): the
// second finds it taken.
func takeable(state *engine.Workflow, taskID string, now time.Time) bool {
	t := state.TaskByIDDeciding(taskID)
	return t != nil && t.Status == conductor.TaskScheduled && t.AvailableAt <= now.UnixMilli()
}

// decideTake decides take on state, the decision's outcome: ok only for a
// take that hands the task out.
func (e *Executor) decideTake(ctx context.Context, state *engine.Workflow, take engine.Take, now time.Time) (*engine.Task, map[string]any, engine.Decision, bool) {
	var trig engine.Trigger = take
	var input map[string]any
	if e.handOff != nil {
		var err error
		if trig, input, err = e.prepareHandOff(ctx, state, take); err != nil {
			return nil, nil, engine.Decision{}, false
		}
		if h := trig.(engine.Take).HandOff; h == nil || h.Error != "" {
			return nil, nil, engine.Decision{}, false
		}
	}
	td, err := engine.Decide(engine.Input{State: state, Trigger: trig, Now: now, TaskDef: e.taskDefFunc(ctx), MaxRecordBytes: e.log.MaxRecordBytes()})
	if errors.Is(err, engine.ErrUnreadableDef) {
		// Told of as a refusal in a shard is (stuckUnreadable): refused
		// here, the take is dropped quietly and its task announced.
		e.stuckUnreadable(state.ID, engine.TriggerName(take))
	}
	if err != nil {
		return nil, nil, engine.Decision{}, false
	}
	taken, ok := td.Reply.(*engine.Task)
	return taken, input, td, ok
}

// takenBy marks the envelopes of the takes in envs as their workers': a
// take's record names its taker. Protection keeps the decision's events
// in place (see Protector), so the takes are where they were merged.
func takenBy(envs []schemas.Envelope, ms []matched) {
	for _, m := range ms {
		for k := m.first; k < m.first+m.events; k++ {
			envs[k].Principal = cmp.Or(m.w.principal, m.w.workerID)
		}
	}
}

// handOver gives each waiter the task taken for it, as stored in state by
// the record at seq.
func (e *Executor) handOver(ms []matched, state *engine.Workflow, seq uint64) {
	for _, m := range ms {
		task := m.task.HandOffView(state)
		if m.input != nil {
			task.InputData = m.input
		}
		e.metrics.matched.Inc()
		e.match.deliver(m.w, &takenTask{task: task, seq: seq})
	}
}

// handOverStored is handOver after a duplicate append whose stored record
// is this engine's own decision, whose answer was lost (see stamp): a task
// the stored state shows taken by the waiter's worker, at the take's
// lease, is the waiter's; the others' waiters are returned, to wait again.
func (e *Executor) handOverStored(ms []matched, state *engine.Workflow) (left []matched) {
	for _, m := range ms {
		t := state.TaskByID(m.task.ID)
		if t == nil || t.Status != conductor.TaskInProgress || t.WorkerID != m.w.workerID || t.PollCount != m.task.PollCount {
			left = append(left, m)
			continue
		}
		e.handOver([]matched{{w: m.w, task: t, input: m.input}}, state, seqOf(state))
	}
	return left
}

// unmatch ends claims whose takes were not stored: their waiters wait
// again.
func (e *Executor) unmatch(ms []matched) {
	for _, m := range ms {
		e.match.release(m.w)
	}
}
