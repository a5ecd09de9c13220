package executor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/internal/logkey"
	"github.com/flowvault/flowvault/workers"
)

// Priority lanes. Orkes hands a queued task of a workflow started with
// priority 1 to 99 to a worker ahead of every task of a lower priority
// (1 first, 99 last), and those of the default, 0, after all of them. A
// JetStream consumer delivers in stream order only, so each priority in
// use gets a lane of its own: a consumer on FV_DISPATCH that only engines
// pull, ahead of the queue's consumer, when a poll waits at them (the Go
// SDK's, Conductor's HTTP poll).
//
// The queue's consumer still announces every task: a worker that pulls it
// itself (docs/worker-protocol.md, "Taking a task") must see prioritized
// tasks too, if not in priority order. So a prioritized task is announced
// twice, on the queue's subject and then on its lane's, and the lane's
// message names its twin's stream sequence: the engine that takes the task
// from the lane deletes the twin, so that no worker pulls it for nothing
// and the queue's size stays right. The stream's work-queue retention
// forbids two consumers one subject, hence two messages.
//
// Engines learn of a lane when they dispatch to it, from the consumers
// that exist when they start, and from the notice an engine publishes
// when it first uses one; until then an engine hands out the queue in the
// consumer's order, which loses nothing. A lane stays known until a sweep
// deletes its consumer, idle (sweep.go): a pull of the queue costs a
// request more per priority in use, none when workflows keep the default.

const (
	// lanePrefix starts a lane's subject: fv.taskp.<pp>.<type>[.<domain>].
	lanePrefix = "fv.taskp."
	// laneConsumerPrefix starts a lane's consumer: fvp<pp>_<type>[@<domain>],
	// the name of the queue's consumer with the priority in its prefix.
	laneConsumerPrefix = "fvp"
	// laneNoticeSubject is where an engine tells the others of a lane it
	// created (core NATS, engines' account): the body is the lane's
	// consumer name.
	laneNoticeSubject = "fv.engines.lane"
	// twinHeader is the header of a lane's message that holds the stream
	// sequence of the queue's message announcing the same task.
	twinHeader = "Fv-Twin-Seq"
)

// prioritized reports whether tasks of a workflow of priority p go through
// a lane: 0 is the default, below every lane.
func prioritized(p int) bool { return p >= 1 && p <= 99 }

func laneSubject(taskType, domain string, priority int) string {
	return fmt.Sprintf("%s%02d.%s", lanePrefix, priority, strings.TrimPrefix(workers.DispatchSubject(taskType, domain), workers.DispatchPrefix))
}

func laneConsumer(queue string, priority int) string {
	return fmt.Sprintf("%s%02d_%s", laneConsumerPrefix, priority, strings.TrimPrefix(queue, workers.ConsumerPrefix))
}

// parseLaneConsumer returns the queue (its consumer's name) and priority
// of a lane's consumer name.
func parseLaneConsumer(name string) (queue string, priority int, ok bool) {
	rest, ok := strings.CutPrefix(name, laneConsumerPrefix)
	if !ok || len(rest) < 4 || rest[2] != '_' {
		return "", 0, false
	}
	p, err := strconv.Atoi(rest[:2])
	if err != nil || !prioritized(p) {
		return "", 0, false
	}
	return workers.ConsumerPrefix + rest[3:], p, true
}

// lanes are the priorities in use per queue, as this engine knows them.
type lanes struct {
	mu      sync.Mutex
	byQueue map[string][]int // ascending: the order they are pulled in
}

func newLanes() *lanes { return &lanes{byQueue: map[string][]int{}} }

// add records a lane.
func (l *lanes) add(queue string, priority int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ps := l.byQueue[queue]
	if i, found := slices.BinarySearch(ps, priority); !found {
		l.byQueue[queue] = slices.Insert(slices.Clip(ps), i, priority)
	}
}

func (l *lanes) remove(queue string, priority int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ps := l.byQueue[queue]
	if i, found := slices.BinarySearch(ps, priority); found {
		if len(ps) == 1 {
			delete(l.byQueue, queue)
			return
		}
		l.byQueue[queue] = slices.Delete(slices.Clone(ps), i, i+1)
	}
}

// of returns queue's lanes in the order to pull them. The slice is never
// changed in place: callers may keep it.
func (l *lanes) of(queue string) []int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.byQueue[queue]
}

// listenForLanes records the lanes other engines announce.
func (e *Executor) listenForLanes() error {
	sub, err := e.log.Conn().Subscribe(laneNoticeSubject, func(m *nats.Msg) {
		if queue, p, ok := parseLaneConsumer(string(m.Data)); ok {
			e.lanes.add(queue, p)
		}
	})
	if err != nil {
		return fmt.Errorf("subscribe %s: %w", laneNoticeSubject, err)
	}
	e.unsubscribeAtStop(sub)
	return nil
}

// ensureLane creates the consumer of queue's lane for priority, and tells
// the other engines the first time this engine uses it.
func (d *dispatcher) ensureLane(ctx context.Context, taskType, domain string, priority int) error {
	queue := workers.ConsumerName(taskType, domain)
	name := laneConsumer(queue, priority)
	created, err := d.ensureConsumer(ctx, name, laneSubject(taskType, domain, priority))
	if err != nil || !created {
		return err
	}
	d.lanes.add(queue, priority)
	// Best effort: an engine that misses it learns of the lane when it
	// restarts, and hands the queue out in order meanwhile.
	_ = d.log.Conn().Publish(laneNoticeSubject, []byte(name))
	return nil
}

// announceInLane publishes a prioritized task's second announcement, on
// its lane, naming the queue's message (twin) it repeats.
func (d *dispatcher) announceInLane(ctx context.Context, eff engine.Dispatch, body []byte, id string, twin uint64) error {
	if err := d.ensureLane(ctx, eff.TaskType, eff.Domain, eff.Priority); err != nil {
		return err
	}
	msg := &nats.Msg{Subject: laneSubject(eff.TaskType, eff.Domain, eff.Priority), Data: body, Header: nats.Header{}}
	msg.Header.Set(jetstream.MsgIDHeader, id+":lane")
	msg.Header.Set(twinHeader, strconv.FormatUint(twin, 10))
	seq, _, err := d.log.Publish(ctx, msg)
	if err != nil {
		return fmt.Errorf("announce in lane %02d: %w", eff.Priority, err)
	}
	d.announced.add(eff.TaskID, seq, time.Now())
	return nil
}

// dropTwin deletes the queue's announcement of task d, taken (or found
// gone) through its lane's message m. A twin already pulled and
// acknowledged is gone from the stream: nothing to do. The twin is
// deleted only if it announces the same task: a lane's message names its
// twin by sequence, and one published by anyone but an engine must not
// make an engine delete another task's announcement.
func (d *dispatcher) dropTwin(ctx context.Context, m jetstream.Msg, task workers.Dispatch) {
	seq, err := strconv.ParseUint(m.Headers().Get(twinHeader), 10, 64)
	if err != nil || seq == 0 {
		return
	}
	stream, err := d.dispatchStream(ctx)
	if err != nil {
		d.logger.Debug("queue announcement of a task taken from its lane not deleted", logkey.Seq, seq, logkey.Err, err)
		return
	}
	twin, err := stream.GetMsg(ctx, seq)
	if err == nil {
		var announced workers.Dispatch
		if json.Unmarshal(twin.Data, &announced) != nil || twin.Subject != workers.DispatchSubject(task.TaskType, task.Domain) ||
			announced.TaskID != task.TaskID || announced.WorkflowInstanceID != task.WorkflowInstanceID {
			d.logger.Warn("a lane's message names another task's announcement as its twin: left alone",
				logkey.TaskID, task.TaskID, logkey.Subject, m.Subject(), logkey.Seq, seq)
			return
		}
		err = stream.DeleteMsg(ctx, seq)
	}
	if err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		d.logger.Debug("queue announcement of a task taken from its lane not deleted", logkey.Seq, seq, logkey.Err, err)
	}
}

func (d *dispatcher) dispatchStream(ctx context.Context) (jetstream.Stream, error) {
	d.mu.Lock()
	s := d.stream
	d.mu.Unlock()
	if s != nil {
		return s, nil
	}
	s, err := d.log.JetStream().Stream(ctx, eventlog.Dispatch.Name)
	if err != nil {
		return nil, fmt.Errorf("dispatch stream: %w", err)
	}
	d.mu.Lock()
	d.stream = s
	d.mu.Unlock()
	return s, nil
}

// pullQueued pulls up to n messages queued now for the queue of taskType
// in domain: from its lanes first, highest priority first, then from the
// queue's consumer.
func (e *Executor) pullQueued(ctx context.Context, taskType, domain string, n int) ([]jetstream.Msg, error) {
	msgs, err := e.pullLanes(ctx, taskType, domain, n)
	if len(msgs) == n || err != nil {
		return msgs, err
	}
	cons, err := e.queueConsumer(ctx, taskType, domain)
	if errors.Is(err, errNoQueue) {
		return msgs, nil
	}
	if err != nil {
		return msgs, err
	}
	more, err := fetchQueued(cons, n-len(msgs))
	return append(msgs, more...), err
}

// pullLanes pulls up to n messages queued now in the queue's lanes,
// highest priority first. A lane whose consumer is gone (the NATS server
// restarted and lost it) is forgotten until a dispatch uses it again.
func (e *Executor) pullLanes(ctx context.Context, taskType, domain string, n int) ([]jetstream.Msg, error) {
	queue := workers.ConsumerName(taskType, domain)
	var msgs []jetstream.Msg
	for _, p := range e.lanes.of(queue) {
		name := laneConsumer(queue, p)
		cons, err := e.consumer(ctx, name)
		if err == nil {
			var got []jetstream.Msg
			got, err = fetchQueued(cons, n-len(msgs))
			msgs = append(msgs, got...)
		}
		if err != nil && consumerGone(err) {
			e.lanes.remove(queue, p)
			e.forgetConsumer(name)
			continue
		}
		if err != nil {
			return msgs, unavailable(fmt.Errorf("lane %s: %w", name, err))
		}
		if len(msgs) == n {
			break
		}
	}
	return msgs, nil
}

// consumer returns the FV_DISPATCH consumer name, which must exist.
func (e *Executor) consumer(ctx context.Context, name string) (jetstream.Consumer, error) {
	e.polls.mu.Lock()
	c := e.polls.consumers[name]
	e.polls.mu.Unlock()
	if c != nil {
		return c, nil
	}
	// A request whose answer was lost (the server restarted under it)
	// would hold a poll for the whole of its wait.
	lctx, cancel := context.WithTimeout(ctx, consumerLookupTimeout)
	defer cancel()
	c, err := e.log.JetStream().Consumer(lctx, eventlog.Dispatch.Name, name)
	if err != nil {
		return nil, err
	}
	e.polls.mu.Lock()
	e.polls.consumers[name] = c
	e.polls.mu.Unlock()
	return c, nil
}

// consumerLookupTimeout bounds the lookup of a queue's consumer.
const consumerLookupTimeout = 5 * time.Second

func (e *Executor) forgetConsumer(name string) {
	e.polls.mu.Lock()
	delete(e.polls.consumers, name)
	e.polls.mu.Unlock()
	e.disp.mu.Lock()
	delete(e.disp.queues, name)
	e.disp.mu.Unlock()
}
