package executor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/internal/logkey"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/workers"
)

// Idle queues. Every (task type, domain) a task is dispatched to gets a
// durable consumer on FV_DISPATCH, and each costs the NATS server memory,
// goroutines and subscriptions; a start's taskToDomain names domains at
// will. Conductor's queues cost nothing once drained: here an engine
// deletes, at every sweep (every QueueIdle/2, at most maxSweepEvery
// apart), the queues' consumers (and priority lanes')
// idle for QueueIdle (nothing queued, nothing awaiting an
// acknowledgement, no pull waiting, nothing delivered or created since,
// no poll waiting at this engine), forgets them, and tells the other
// engines to forget them too. A queue idle so long that still holds
// announcements has those whose task is gone (their workflows were
// terminated before any worker polled, by an engine that died before it
// withdrew their announcements: withdraw.go) deleted from the stream, oldest
// first up to the first of a live task, as a poll would drain them: one
// holding only such is idle too. The next dispatch makes the consumer again;
// polls still make none.
//
// Deleting a consumer loses no announcement: a work-queue stream keeps a
// message until a consumer acknowledges it, and a consumer made again
// delivers every message of its subject from the stream's first. A
// dispatch that raced the deletion (it found the consumer known, in this
// engine's memory or another's, and published after the deletion) leaves
// a message that no consumer delivers: each sweep, after its deletions,
// makes again the consumer of every queue whose subject holds messages,
// so such a task waits at most one sweep (maxSweepEvery).

// queueGoneSubject is where an engine tells the others of a queue's
// consumer it deleted (core NATS, engines' account): the body is the
// consumer's name.
const queueGoneSubject = "fv.engines.queuegone"

// maxSweepEvery bounds the time between sweeps, and so how long a task
// whose dispatch raced its queue's deletion waits for a worker.
const maxSweepEvery = 30 * time.Second

// sweepQueuesLoop sweeps the idle queues every QueueIdle/2, at most
// maxSweepEvery apart.
func (e *Executor) sweepQueuesLoop(ctx context.Context) {
	interval := max(min(e.cfg.QueueIdle/2, maxSweepEvery), time.Millisecond)
	e.every(ctx, func() time.Duration { return interval }, "idle queues not swept", e.sweepQueues)
}

// every runs pass each interval until ctx ends, logging its failures as
// failed: the first of a run of them, then one every failureLogEvery with
// how many failed, and the pass that works again. A disk full or a
// server away fails every pass, and a pass each second logged a warning
// each second for as long as it lasted. The interval is read again after
// each pass, which may change it: the presence heartbeat follows its
// bucket's TTL.
func (e *Executor) every(ctx context.Context, interval func() time.Duration, failed string, pass func(context.Context) error) {
	d := interval()
	t := time.NewTicker(d)
	defer t.Stop()
	failures := 0
	var logged time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := pass(ctx)
		if next := interval(); next != d {
			d = next
			t.Reset(d)
		}
		switch {
		case ctx.Err() != nil:
		case err != nil:
			failures++
			if failures == 1 || time.Since(logged) >= failureLogEvery {
				e.cfg.Logger.Warn(failed, logkey.Err, err, logkey.Count, failures)
				logged = time.Now()
			}
		case failures > 0:
			e.cfg.Logger.Info("works again after failing: "+failed, logkey.Count, failures)
			failures = 0
		}
	}
}

// failureLogEvery is how often every logs a pass that keeps failing.
const failureLogEvery = time.Minute

// listenForGoneQueues forgets the queues other engines delete.
func (e *Executor) listenForGoneQueues() error {
	sub, err := e.log.Conn().Subscribe(queueGoneSubject, func(m *nats.Msg) {
		e.forgetDeleted(string(m.Data))
	})
	if err != nil {
		return fmt.Errorf("subscribe %s: %w", queueGoneSubject, err)
	}
	e.unsubscribeAtStop(sub)
	return nil
}

// forgetDeleted forgets the queue's or lane's consumer name, deleted.
func (e *Executor) forgetDeleted(name string) {
	if queue, p, ok := parseLaneConsumer(name); ok {
		e.lanes.remove(queue, p)
	}
	e.forgetConsumer(name)
}

// sweepQueues deletes the idle queues' consumers, then makes again those
// of queues that hold messages.
func (e *Executor) sweepQueues(ctx context.Context) error {
	stream, err := e.disp.dispatchStream(ctx)
	if err != nil {
		return err
	}
	exists := map[string]bool{}
	var idle []string
	var stale []*jetstream.ConsumerInfo
	lister := stream.ListConsumers(ctx)
	for ci := range lister.Info() {
		exists[ci.Name] = true
		switch e.queueIdle(ci) {
		case idleQueue:
			idle = append(idle, ci.Name)
		case staleQueue:
			stale = append(stale, ci)
		}
	}
	if err := lister.Err(); err != nil {
		return fmt.Errorf("list dispatch consumers: %w", err)
	}
	// A failure leaves a queue to the next sweep; the consumers of queues
	// that hold messages are made again all the same.
	var errs []error
	for _, ci := range stale {
		drained, err := e.drainGone(ctx, stream, ci)
		if err != nil {
			errs = append(errs, err)
		}
		if drained {
			idle = append(idle, ci.Name)
		}
	}
	for _, name := range idle {
		if err := stream.DeleteConsumer(ctx, name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			errs = append(errs, fmt.Errorf("delete idle queue %s: %w", name, err))
			continue
		}
		if e.queueDeleted != nil {
			e.queueDeleted(name)
		}
		delete(exists, name)
		e.forgetDeleted(name)
		// Best effort: an engine that misses it makes the consumer again
		// at its next sweep if it dispatches meanwhile.
		_ = e.log.Conn().Publish(queueGoneSubject, []byte(name))
		e.cfg.Logger.Debug("deleted an idle queue", logkey.Consumer, name)
	}
	return errors.Join(append(errs, e.remakeQueues(ctx, stream, exists))...)
}

type idleness int

const (
	busyQueue idleness = iota
	// idleQueue: nothing queued, and idle for QueueIdle.
	idleQueue
	// staleQueue: idle for QueueIdle, but announcements are queued
	// (waiting to be delivered, or delivered again), of tasks that may be
	// gone (a workflow terminated before any worker polled).
	staleQueue
)

// maxDrain bounds the announcements a sweep deletes from one stale queue.
const maxDrain = 256

// queueIdle tells whether a queue's consumer has been idle for QueueIdle,
// by the server's clock, and whether it holds announcements.
func (e *Executor) queueIdle(ci *jetstream.ConsumerInfo) idleness {
	queue := ci.Name
	if q, _, ok := parseLaneConsumer(ci.Name); ok {
		queue = q
	} else if !strings.HasPrefix(ci.Name, workers.ConsumerPrefix) {
		return busyQueue
	}
	if ci.NumWaiting > 0 || e.match.has(queue) {
		return busyQueue
	}
	last := ci.Created
	for _, t := range []*time.Time{ci.Delivered.Last, ci.AckFloor.Last} {
		if t != nil && t.After(last) {
			last = *t
		}
	}
	now := ci.TimeStamp
	if now.IsZero() {
		now = time.Now()
	}
	// Delivered so long ago, an announcement not acknowledged is no
	// worker's any more (the ack wait is far shorter): it waits to be
	// delivered again.
	switch {
	case now.Sub(last) < e.cfg.QueueIdle:
		return busyQueue
	case ci.NumPending == 0 && ci.NumAckPending == 0:
		return idleQueue
	}
	return staleQueue
}

// drainGone deletes from the stream, oldest first, the announcements of
// a stale queue whose task is gone, as a poll would acknowledge them,
// reading them from the stream without delivering them (a queue's size
// and its workers' pulls are left as they are). It stops at the first of
// a task still waiting for a worker: drained reports that none is left.
func (e *Executor) drainGone(ctx context.Context, stream jetstream.Stream, ci *jetstream.ConsumerInfo) (drained bool, err error) {
	subject := ci.Config.FilterSubject
	seq := ci.AckFloor.Stream + 1
	for range maxDrain {
		m, err := stream.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subject))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return true, nil
		}
		if err != nil {
			return false, fmt.Errorf("drain idle queue %s: %w", ci.Name, err)
		}
		if !e.announcesGone(ctx, m.Data) {
			return false, nil
		}
		if err := stream.DeleteMsg(ctx, m.Sequence); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
			return false, fmt.Errorf("drain idle queue %s: %w", ci.Name, err)
		}
		seq = m.Sequence + 1
	}
	return false, nil
}

// announcesGone reports whether a dispatch message's body announces a
// task no take would get: its workflow is gone or ended, or the task no
// longer waits for a worker.
func (e *Executor) announcesGone(ctx context.Context, body []byte) bool {
	var d workers.Dispatch
	if err := json.Unmarshal(body, &d); err != nil || d.TaskID == "" || d.WorkflowInstanceID == "" {
		return true
	}
	w, err := e.State(ctx, d.WorkflowInstanceID)
	if err != nil {
		return false
	}
	if w == nil || w.Terminal() {
		return true
	}
	t := w.TaskByID(d.TaskID)
	return t == nil || t.Status != conductor.TaskScheduled
}

// remakeQueues makes the consumer of every queue and lane whose subject
// holds messages and that has none (not in exists): a dispatch published
// it after its consumer's deletion.
func (e *Executor) remakeQueues(ctx context.Context, stream jetstream.Stream, exists map[string]bool) error {
	info, err := stream.Info(ctx, jetstream.WithSubjectFilter(">"))
	if err != nil {
		return fmt.Errorf("dispatch stream: %w", err)
	}
	for subject, n := range info.State.Subjects {
		if n == 0 {
			continue
		}
		name, lane, ok := consumerOfSubject(subject)
		if !ok || exists[name] {
			continue
		}
		// What this engine knows of it is stale.
		e.forgetConsumer(name)
		if _, err := e.disp.ensureConsumer(ctx, name, subject); err != nil {
			return err
		}
		if lane != 0 {
			queue, _, _ := parseLaneConsumer(name)
			e.lanes.add(queue, lane)
			_ = e.log.Conn().Publish(laneNoticeSubject, []byte(name))
		}
		e.cfg.Logger.Info("made again the consumer of a queue holding tasks", logkey.Consumer, name, logkey.Count, n)
	}
	return nil
}

// consumerOfSubject returns the consumer that delivers a dispatch subject
// (fv.task.<type>[.<domain>] or fv.taskp.<pp>.<type>[.<domain>]) and, for
// a lane's, its priority.
func consumerOfSubject(subject string) (name string, priority int, ok bool) {
	rest, isLane := strings.CutPrefix(subject, lanePrefix)
	if isLane {
		pp, after, found := strings.Cut(rest, ".")
		p, err := strconv.Atoi(pp)
		if !found || len(pp) != 2 || err != nil || !prioritized(p) {
			return "", 0, false
		}
		priority, rest = p, after
	} else if rest, ok = strings.CutPrefix(subject, workers.DispatchPrefix); !ok {
		return "", 0, false
	}
	toks := strings.Split(rest, ".")
	if len(toks) > 2 {
		return "", 0, false
	}
	typ, err := eventlog.Untoken(toks[0])
	if err != nil {
		return "", 0, false
	}
	var domain string
	if len(toks) == 2 {
		if domain, err = eventlog.Untoken(toks[1]); err != nil || domain == "" {
			return "", 0, false
		}
	}
	name = workers.ConsumerName(typ, domain)
	if isLane {
		name = laneConsumer(name, priority)
	}
	return name, priority, true
}
