package executor

import (
	"cmp"
	"container/heap"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/internal/logkey"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/workers"
)

// Conductor's HTTP polling (GET /api/tasks/poll/...) goes through the same
// JetStream queue consumers as NATS workers (docs/worker-protocol.md): a
// poll pulls dispatch messages from the queue's durable consumer, takes
// each announced task with the same Take trigger a NATS take request
// submits, and acknowledges the message. A task belongs to whoever takes it
// first, over either path; the other's take is answered ErrTaskGone.

// PollRequest is one HTTP poll for tasks.
type PollRequest struct {
	TaskType string
	Domain   string
	WorkerID string
	// Principal is who polled, as authenticated (the API's caller): a
	// take records it, so that the audit trail names who received the
	// secrets resolved into the task. Empty: the worker id, which is the
	// worker's own word.
	Principal string
	// Count is the most tasks to hand out (at least 1).
	Count int
	// Wait bounds how long to wait for the first task; 0 answers at once
	// with what is queued.
	Wait time.Duration
	// StillMay, when set, asks again, once the poll got its tasks,
	// whether its caller may still take them: rights revoked while it
	// waited take nothing (the tasks go back to be handed out again, and
	// Poll returns StillMay's error).
	StillMay func(ctx context.Context) error
}

// PollData is the last time a worker polled a queue over HTTP
// (Conductor's PollData model).
type PollData struct {
	QueueName    string `json:"queueName"`
	Domain       string `json:"domain,omitempty"`
	WorkerID     string `json:"workerId"`
	LastPollTime int64  `json:"lastPollTime"`
}

// maxConsumerName is JetStream's limit on consumer names.
const maxConsumerName = 255

// maxPollRecords bounds the poll data kept in memory; the oldest record is
// forgotten first.
const maxPollRecords = 10000

// takeTimeout bounds one take made for a poll. Takes do not stop when the
// poller goes away: a take abandoned half-way would leave its outcome
// unknown.
const takeTimeout = 30 * time.Second

type pollKey struct{ taskType, domain, workerID string }

// poller keeps the queue consumers HTTP polls pull from and the poll data.
type poller struct {
	mu        sync.Mutex
	consumers map[string]jetstream.Consumer
	polls     map[pollKey]*pollRecord
	// byAge orders polls by last poll, so that a new worker's poll on a
	// full record forgets the oldest without reading all of them: a
	// worker whose id changes, a pod named anew at each restart, makes
	// every poll of its a new record.
	byAge    pollHeap
	recorded uint64
	stop     chan struct{}
	stopOnce sync.Once
}

func newPoller() *poller {
	return &poller{consumers: map[string]jetstream.Consumer{}, polls: map[pollKey]*pollRecord{}, stop: make(chan struct{})}
}

func (p *poller) record(k pollKey, now int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.recorded++
	if r, ok := p.polls[k]; ok {
		r.at, r.order = now, p.recorded
		heap.Fix(&p.byAge, r.index)
		return
	}
	var r *pollRecord
	if len(p.polls) >= maxPollRecords {
		r = heap.Pop(&p.byAge).(*pollRecord)
		delete(p.polls, r.key)
	} else {
		r = new(pollRecord)
	}
	*r = pollRecord{key: k, at: now, order: p.recorded}
	heap.Push(&p.byAge, r)
	p.polls[k] = r
}

// pollRecord is a worker's last poll of a queue: at, in Unix
// milliseconds.
type pollRecord struct {
	key   pollKey
	at    int64
	order uint64 // when it was recorded, among polls of the same at
	index int    // in poller.byAge
}

// pollHeap is a heap of poll records, the oldest first: the earliest
// last poll, and of equal ones the first recorded.
type pollHeap []*pollRecord

func (h pollHeap) Len() int { return len(h) }

func (h pollHeap) Less(i, j int) bool {
	return cmp.Or(cmp.Compare(h[i].at, h[j].at), cmp.Compare(h[i].order, h[j].order)) < 0
}

func (h pollHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}

func (h *pollHeap) Push(x any) {
	r := x.(*pollRecord)
	r.index = len(*h)
	*h = append(*h, r)
}

func (h *pollHeap) Pop() any {
	old := *h
	r := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return r
}

// PollData lists the last HTTP poll of each worker on the queues of
// taskType (every queue when taskType is empty). It is kept in this
// process's memory only: it restarts empty, and each node knows the polls
// it served.
func (e *Executor) PollData(taskType string) []PollData {
	e.polls.mu.Lock()
	out := make([]PollData, 0)
	for k, r := range e.polls.polls {
		if taskType == "" || k.taskType == taskType {
			out = append(out, PollData{QueueName: k.taskType, Domain: k.domain, WorkerID: k.workerID, LastPollTime: r.at})
		}
	}
	e.polls.mu.Unlock()
	slices.SortFunc(out, func(a, b PollData) int {
		return cmpStrings(a.QueueName, b.QueueName, a.Domain, b.Domain, a.WorkerID, b.WorkerID)
	})
	return out
}

func cmpStrings(pairs ...string) int {
	for i := 0; i+1 < len(pairs); i += 2 {
		if c := strings.Compare(pairs[i], pairs[i+1]); c != 0 {
			return c
		}
	}
	return 0
}

// queueConsumer returns the queue's consumer, or errNoQueue when no
// dispatch has made it yet.
func (e *Executor) queueConsumer(ctx context.Context, taskType, domain string) (jetstream.Consumer, error) {
	name := workers.ConsumerName(taskType, domain)
	e.polls.mu.Lock()
	c := e.polls.consumers[name]
	e.polls.mu.Unlock()
	if c != nil {
		return c, nil
	}
	// A poll does not create the consumer, the first dispatch does: a
	// worker polling made-up task types would otherwise fill the server's
	// consumers, and then no queue could be made.
	c, err := e.consumer(ctx, name)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, errNoQueue
	}
	if err != nil {
		return nil, unavailable(fmt.Errorf("queue consumer %s: %w", name, err))
	}
	return c, nil
}

// errNoQueue says a queue has no consumer yet: no task of its type was
// ever dispatched, so none is queued.
var errNoQueue = errors.New("no task of this type was dispatched yet")

// forgetQueue drops a consumer that no longer exists (the NATS server
// restarted and lost the in-memory queue), so the next use recreates it.
func (e *Executor) forgetQueue(taskType, domain string) {
	e.forgetConsumer(workers.ConsumerName(taskType, domain))
}

func unavailable(err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return fmt.Errorf("%w: %v", fault.ErrUnavailable, err)
}

// A pull through a consumer handle this engine kept, of a consumer deleted
// since (a sweep elsewhere, idle: sweep.go), is answered "no responders":
// nothing listens on its subject any more.
func consumerGone(err error) bool {
	return errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrConsumerDeleted) ||
		errors.Is(err, jetstream.ErrNoHeartbeat) || errors.Is(err, jetstream.ErrStreamNotFound) ||
		errors.Is(err, nats.ErrNoResponders)
}

func validQueue(taskType, domain string) error {
	if taskType == "" {
		return fault.Invalid("task type is required")
	}
	if n := len(workers.ConsumerName(taskType, domain)); n > maxConsumerName {
		return fault.Invalid("task type and domain are too long (%d bytes as a queue name, at most %d)", n, maxConsumerName)
	}
	return nil
}

// Poll hands up to req.Count scheduled tasks of req.TaskType (in
// req.Domain) to req.WorkerID, waiting up to req.Wait for the first one.
// The tasks are IN_PROGRESS and carry their input as handed off. seq is
// the highest log sequence the takes appended (wait for it before reading
// the executions model).
func (e *Executor) Poll(ctx context.Context, req PollRequest) (tasks []*conductor.Task, seq uint64, err error) {
	if err := validQueue(req.TaskType, req.Domain); err != nil {
		return nil, 0, err
	}
	if req.Count < 1 {
		return nil, 0, fault.Invalid("count %d: want at least 1", req.Count)
	}
	e.polled(req)
	// Messages whose task is gone (its workflow ended or was removed, it
	// was taken through a priority lane's twin) answer nothing, and each
	// pull acknowledges them away: pull again until a task comes or the
	// queue is drained, when the pull waits as asked. Answering empty
	// instead, while tasks wait behind them, made every poll after a bulk
	// terminate return at once with nothing.
	// Messages put back for later (a task over its limits, one announced
	// by a clock ahead) end the pulls: they are not drained.
	drainUntil := time.Now().Add(min(staleDrain, max(req.Wait, minStaleDrain)))
	for {
		var pulled, gone int
		tasks, seq, pulled, gone, err = e.pollOnce(ctx, req)
		if len(tasks) > 0 || pulled == 0 || gone < pulled || err != nil || time.Now().After(drainUntil) {
			break
		}
	}
	if len(tasks) > 0 && ctx.Err() != nil {
		// Its caller went away while they were taken (a take goes on
		// without it): nobody gets the answer, as in awaitTask.
		e.giveBackAll(tasks, "its poll ended as it was taken: handed out again")
		return []*conductor.Task{}, 0, err
	}
	if len(tasks) > 0 && req.StillMay != nil {
		if refused := req.StillMay(ctx); refused != nil {
			e.giveBackAll(tasks, "its poller lost the right to take it while it polled: handed out again")
			return []*conductor.Task{}, 0, refused
		}
	}
	return nonNilTasks(tasks), seq, err
}

// giveBackAll hands out again tasks taken for a poller that will not get
// them.
func (e *Executor) giveBackAll(tasks []*conductor.Task, reason string) {
	for _, t := range tasks {
		e.giveBack(t.WorkflowInstanceID, t.TaskID, t.PollCount, reason)
	}
}

// polled notes req's poll: its queue's poll data, and the activity that
// keeps an idle queue's consumer.
func (e *Executor) polled(req PollRequest) {
	now := e.cfg.Now()
	e.polls.record(pollKey{req.TaskType, req.Domain, req.WorkerID}, now.UnixMilli())
	if consumer := e.activity.polled(req.TaskType, req.Domain, now); consumer != "" {
		// Best effort: an engine that misses it reads the consumer, or
		// hears of the next.
		_ = e.log.Conn().Publish(pollSeenSubject, []byte(consumer))
	}
}

// AheadPoll is a poll of one queue that waits at the engine while the
// result that frees its worker is recorded (update-v2 asks for the next
// task with a result). The decision that records the result takes the
// task it schedules on the queue, if any, for the poll in its own record,
// as for any poll waiting when a task is scheduled: its worker gets it
// without an announcement, a take of its own, or a race with the
// announcement's delivery, which a poll after the result waited out for a
// tenth of a second and lost on a loaded machine (it answered no task).
// Another decision may take a task for it first, or a queue's feeder
// hand it a queued one, as for any waiting poll.
type AheadPoll struct {
	e   *Executor
	w   *waiter
	req PollRequest
}

// pollAheadOf starts req's poll ahead of trig, a worker's result, on
// the queue of the task it reports in w (Outcome.Next; End ends it): none
// for a lease extension, whose worker keeps its task and asks for no
// other, or a task no worker takes. It starts no feeder of its own: the
// tasks queued before the result are a poll's after it (see Poll).
func (e *Executor) pollAheadOf(ctx context.Context, w *engine.Workflow, trig engine.Trigger, req PollRequest) *AheadPoll {
	res, ok := trig.(engine.Result)
	if !ok || w == nil || res.Result.ExtendLease {
		return nil
	}
	t := w.TaskByID(res.Result.TaskID)
	if t == nil || !t.IsWorkerTask() {
		return nil
	}
	req.TaskType, req.Domain = t.Name, t.Domain
	if validQueue(req.TaskType, req.Domain) != nil {
		return nil
	}
	e.polled(req)
	return &AheadPoll{e: e, req: req, w: e.match.waitAhead(ctx, workers.ConsumerName(req.TaskType, req.Domain), req.WorkerID, req.Principal)}
}

// End ends the poll and returns the task taken for it, if any (waiting for
// a take under way), with the sequence of the record that took it. With
// keep false, as for a result that was refused, a task taken for it is
// handed out again.
func (a *AheadPoll) End(ctx context.Context, keep bool) (*conductor.Task, uint64, error) {
	t := a.e.match.leave(a.w)
	if t == nil {
		return nil, 0, nil
	}
	if !keep || ctx.Err() != nil {
		a.e.giveBack(t.task.WorkflowInstanceID, t.task.TaskID, t.task.PollCount, "its poll ended as it was taken: handed out again")
		return nil, 0, ctx.Err()
	}
	if a.req.StillMay != nil {
		if refused := a.req.StillMay(ctx); refused != nil {
			a.e.giveBack(t.task.WorkflowInstanceID, t.task.TaskID, t.task.PollCount, "its poller lost the right to take it while it polled: handed out again")
			return nil, 0, refused
		}
	}
	return t.task, t.seq, nil
}

// staleDrain bounds the time one poll spends pulling messages whose tasks
// are gone (minStaleDrain for one that asks not to wait, its wait if
// shorter and longer than that): a backlog larger than that is left to
// the next polls.
const staleDrain = 2 * time.Second

// minStaleDrain is the drain of a poll that asks not to wait: a pull and
// a take past each gone message. A tenth of a second was two or three of
// them on a loaded machine, and a poll of a queue holding a task behind
// two poisoned lane messages answered that it held none
// (TestPriorityOrdersQueuedTasks/poisoned_lanes, under the whole e2e
// suite at -test.parallel 24).
const minStaleDrain = time.Second

// pollOnce is one pull of Poll; pulled counts the messages it pulled, and
// gone those whose task was gone (settled away, not put back).
func (e *Executor) pollOnce(ctx context.Context, req PollRequest) (tasks []*conductor.Task, seq uint64, pulled, gone int, err error) {
	msgs, taken, err := e.fetchDispatches(ctx, req)
	if err != nil {
		return nil, 0, 0, 0, err
	}
	if taken != nil {
		tasks, seq = append(tasks, taken.task), taken.seq
	}
	if len(msgs) == 0 {
		return tasks, seq, 0, 0, nil
	}
	if ctx.Err() != nil {
		// The poller went away: let another worker have the tasks now.
		for _, m := range msgs {
			_ = m.Nak()
		}
		return tasks, seq, len(msgs), 0, ctx.Err()
	}
	got := make([]*conductor.Task, len(msgs))
	seqs := make([]uint64, len(msgs))
	gones := make([]bool, len(msgs))
	var wg sync.WaitGroup
	for i, m := range msgs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i], seqs[i], gones[i] = e.takeDispatched(ctx, req, m)
		}()
	}
	wg.Wait()
	for i, t := range got {
		if t != nil {
			tasks = append(tasks, t)
			seq = max(seq, seqs[i])
		}
		if gones[i] {
			gone++
		}
	}
	return tasks, seq, len(msgs), gone, nil
}

func nonNilTasks(tasks []*conductor.Task) []*conductor.Task {
	if tasks == nil {
		return []*conductor.Task{}
	}
	return tasks
}

// takenTask is a task a decision took for a waiting poll, with the
// sequence of the record that took it.
type takenTask struct {
	task *conductor.Task
	seq  uint64
}

// fetchDispatches pulls up to req.Count dispatch messages queued now, or
// else waits up to req.Wait for a task taken for the poll (see match.go):
// one a decision scheduled while it waited, or one announced that the
// queue's feeder pulled for it; then it returns that task, and the
// messages queued behind it up to req.Count.
func (e *Executor) fetchDispatches(ctx context.Context, req PollRequest) ([]jetstream.Msg, *takenTask, error) {
	if req.Wait > 0 && e.match.fed(workers.ConsumerName(req.TaskType, req.Domain)) {
		// The queue's feeder pulls what is queued for the polls waiting
		// on it: this one waits with them, without a pull of its own.
		return e.withQueued(ctx, req, e.awaitTask(ctx, req))
	}
	for attempt := 0; ; attempt++ {
		msgs, err := e.pullQueued(ctx, req.TaskType, req.Domain, req.Count)
		if err != nil && consumerGone(err) {
			e.forgetQueue(req.TaskType, req.Domain)
			if attempt == 0 && len(msgs) == 0 {
				continue
			}
		}
		if err != nil && errors.Is(err, nats.ErrNoResponders) {
			// Looked up again, the consumer exists, yet nothing answers
			// its pulls: the NATS server lists a new consumer before it
			// listens for its pulls (nats-server's addConsumer, then
			// setLeader), and a dispatch is making the queue right now.
			// Nothing can be pulled from it yet: as from an empty queue,
			// which a waiting poll's feeder pulls again, not a 503.
			e.cfg.Logger.Debug("queue consumer not answering pulls yet", logkey.TaskType, req.TaskType, logkey.Err, err)
			err = nil
		}
		if err != nil && len(msgs) == 0 {
			return nil, nil, unavailable(fmt.Errorf("poll %s: %w", workers.ConsumerName(req.TaskType, req.Domain), err))
		}
		if len(msgs) > 0 || req.Wait <= 0 {
			return msgs, nil, nil
		}
		return e.withQueued(ctx, req, e.awaitTask(ctx, req))
	}
}

// withQueued returns taken and the messages queued behind it, up to
// req.Count in all. A failure to pull them costs only the extra tasks:
// the first is the poll's all the same.
func (e *Executor) withQueued(ctx context.Context, req PollRequest, taken *takenTask) ([]jetstream.Msg, *takenTask, error) {
	if taken == nil || req.Count < 2 {
		return nil, taken, nil
	}
	msgs, _ := e.pullQueued(ctx, req.TaskType, req.Domain, req.Count-1)
	return msgs, taken, nil
}

// awaitTask waits up to req.Wait for a task taken for the poll.
func (e *Executor) awaitTask(ctx context.Context, req PollRequest) *takenTask {
	queue := workers.ConsumerName(req.TaskType, req.Domain)
	w, feed := e.match.wait(ctx, queue, req.WorkerID, req.Principal)
	if feed {
		e.wg.Add(1)
		go e.feed(req.TaskType, req.Domain, queue)
	}
	timer := time.NewTimer(req.Wait)
	defer timer.Stop()
	var t *takenTask
	select {
	case t = <-w.got:
	case <-timer.C:
	case <-ctx.Done():
	case <-e.polls.stop:
	case <-e.ctx.Done():
	}
	if t == nil {
		// A decision or the feeder may be taking a task for the poll
		// right now: it is the poll's if its take is stored.
		t = e.match.leave(w)
	}
	if t != nil && ctx.Err() != nil {
		// Its client went away while the task was being taken for it.
		e.giveBack(t.task.WorkflowInstanceID, t.task.TaskID, t.task.PollCount, "its poll ended as it was taken: handed out again")
		return nil
	}
	return t
}

// maxFeed bounds the messages one pull of a feeder asks for.
const maxFeed = 256

// feed pulls the announcements of a queue for the polls waiting on it at
// this engine, as long as any wait: one pull at a time, for as many
// messages as polls wait, handed out as they arrive. A poll that pulled
// for itself would hold a pull request on the server for every poll
// waiting, more than a consumer lets wait (512) once a few workers of
// many slots wait on one queue.
func (e *Executor) feed(taskType, domain, queue string) {
	defer e.wg.Done()
	backoff := 100 * time.Millisecond
	for {
		n := e.match.feeding(queue, e.ctx.Err() != nil)
		if n == 0 {
			return
		}
		err := e.feedOnce(taskType, domain, queue, min(n, maxFeed))
		if err == nil {
			backoff = 100 * time.Millisecond
			continue
		}
		if consumerGone(err) {
			e.forgetQueue(taskType, domain)
		}
		e.cfg.Logger.Debug("queue pull for waiting polls failed", logkey.TaskType, taskType, logkey.Err, err)
		select {
		case <-time.After(backoff):
		case <-e.ctx.Done():
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// feedOnce pulls up to n messages, the queue's lanes first, else waiting
// up to pollSlice, and takes the task of each for a waiting poll. A
// message no poll waits for any more is offered again at once.
func (e *Executor) feedOnce(taskType, domain, queue string, n int) error {
	hand := func(m jetstream.Msg) {
		w := e.match.claim(queue)
		if w == nil {
			_ = m.Nak()
			return
		}
		e.spawn(func() {
			task, seq, _ := e.takeDispatched(e.ctx, PollRequest{TaskType: taskType, Domain: domain, WorkerID: w.workerID, Principal: w.principal}, m)
			if task == nil {
				e.match.release(w)
				return
			}
			e.match.deliver(w, &takenTask{task: task, seq: seq})
		})
	}
	prior, err := e.pullLanes(e.ctx, taskType, domain, n)
	for _, m := range prior {
		hand(m)
	}
	if len(prior) > 0 || err != nil {
		return err
	}
	made := e.disp.queueMade()
	cons, err := e.queueConsumer(e.ctx, taskType, domain)
	if errors.Is(err, errNoQueue) {
		// Look again once this engine makes a queue, or a pull's time
		// later for one another engine made.
		select {
		case <-made:
		case <-time.After(pollSlice):
		case <-e.ctx.Done():
		}
		return nil
	}
	if err != nil {
		return err
	}
	b, err := cons.Fetch(n, jetstream.FetchMaxWait(pollSlice))
	if err != nil {
		return err
	}
	for m := range b.Messages() {
		hand(m)
	}
	if err := b.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, jetstream.ErrNoMessages) {
		return err
	}
	return nil
}

// pollSlice is the longest single pull of a feeder: between pulls it
// notices that no poll waits any more, or that the engine is stopping.
const pollSlice = time.Second

// StopPolling ends long polls: polls waiting for tasks answer at once
// (with a task a decision is taking for them, if any), and later polls do
// not wait. Call it when
// the HTTP server starts shutting down, so that long polls do not hold up
// a graceful stop.
func (e *Executor) StopPolling() { e.polls.stopOnce.Do(func() { close(e.polls.stop) }) }

// fetchQueued pulls up to n messages queued now.
func fetchQueued(cons jetstream.Consumer, n int) ([]jetstream.Msg, error) {
	b, err := cons.FetchNoWait(n)
	if err != nil {
		return nil, err
	}
	var msgs []jetstream.Msg
	for m := range b.Messages() {
		msgs = append(msgs, m)
	}
	if err := b.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, jetstream.ErrNoMessages) {
		return msgs, err
	}
	return msgs, nil
}

// takeDispatched takes the task a dispatch message announces and settles
// the message: acknowledged once the take is answered (taken, gone or not
// this queue's: gone reports those not taken), offered again after a delay
// when the engine could not answer or the task must wait.
func (e *Executor) takeDispatched(ctx context.Context, req PollRequest, m jetstream.Msg) (task *conductor.Task, seq uint64, gone bool) {
	var d workers.Dispatch
	if err := json.Unmarshal(m.Data(), &d); err != nil || d.TaskID == "" || d.WorkflowInstanceID == "" {
		e.cfg.Logger.Error("malformed dispatch message", logkey.TaskType, req.TaskType, logkey.Err, err)
		_ = m.Term()
		return nil, 0, true
	}
	tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), takeTimeout)
	defer cancel()
	task, seq, err := e.take(tctx, d.WorkflowInstanceID, d.TaskID, req)
	var limited *LimitedError
	switch {
	case err == nil:
		e.settle(tctx, m, d)
		return task, seq, false
	case errors.Is(err, engine.ErrTaskGone), errors.Is(err, ErrHandOffFailed), errors.Is(err, fault.ErrNotFound), errors.Is(err, fault.ErrInvalid):
		e.cfg.Logger.Debug("dispatched task not taken", logkey.TaskID, d.TaskID, logkey.Err, err)
		e.settle(tctx, m, d)
		return nil, 0, true
	case errors.Is(err, engine.ErrTaskNotYet):
		_ = m.NakWithDelay(time.Second) // announced by an engine whose clock is ahead
	case errors.As(err, &limited):
		e.cfg.Logger.Debug("dispatched task not taken: limited", logkey.TaskID, d.TaskID, logkey.Err, err)
		_ = m.NakWithDelay(min(max(limited.Until.Sub(e.cfg.Now()), 10*time.Millisecond), maxLimitedDelay))
	default:
		e.cfg.Logger.Warn("take for poll failed", logkey.TaskID, d.TaskID, logkey.WorkflowID, d.WorkflowInstanceID, logkey.Err, err)
		_ = m.NakWithDelay(time.Second)
	}
	return nil, 0, false
}

// maxLimitedDelay bounds how long a rate-limited task's announcement
// waits to be offered again: the definition's limit may be raised
// meanwhile.
const maxLimitedDelay = 5 * time.Second

// settle acknowledges a dispatch message whose take was answered, and
// deletes the queue's twin of a lane's message (see lanes.go).
func (e *Executor) settle(ctx context.Context, m jetstream.Msg, d workers.Dispatch) {
	_ = m.Ack()
	if strings.HasPrefix(m.Subject(), lanePrefix) {
		e.disp.dropTwin(ctx, m, d)
	}
}

// take is TakeTask that also returns the appended sequence.
func (e *Executor) take(ctx context.Context, wfID, taskID string, req PollRequest) (*conductor.Task, uint64, error) {
	out, err := e.Submit(ctx, wfID, engine.Take{TaskID: taskID, WorkerID: req.WorkerID, TaskType: req.TaskType, Domain: req.Domain},
		Meta{Principal: cmp.Or(req.Principal, req.WorkerID)})
	if err != nil {
		return nil, 0, err
	}
	task, err := handedOff(out)
	if err != nil {
		return nil, 0, err
	}
	return task, out.Seq, nil
}

// QueueSizes returns, for each task type, the number of tasks waiting in
// its queue (without a domain) to be taken: dispatch messages not yet
// handed to a worker. A type nobody dispatched or polled has size 0.
func (e *Executor) QueueSizes(ctx context.Context, taskTypes []string) (map[string]int64, error) {
	out := make(map[string]int64, len(taskTypes))
	for _, typ := range taskTypes {
		if err := validQueue(typ, ""); err != nil {
			return nil, err
		}
		n, err := e.queueSize(ctx, workers.ConsumerName(typ, ""))
		if err != nil {
			return nil, err
		}
		out[typ] = n
	}
	return out, nil
}

func (e *Executor) queueSize(ctx context.Context, name string) (int64, error) {
	c, err := e.log.JetStream().Consumer(ctx, eventlog.Dispatch.Name, name)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, unavailable(fmt.Errorf("queue %s: %w", name, err))
	}
	return untaken(c.CachedInfo()), nil
}

// untaken counts a queue's announcements whose tasks no worker has taken:
// those not delivered yet, and those delivered and not acknowledged,
// which are being taken or wait to be offered again (a take refused by a
// limit of the task's definition, or unanswered: their NAK keeps them
// delivered), as Conductor counts its postponed messages in a queue's
// size.
func untaken(info *jetstream.ConsumerInfo) int64 {
	return int64(info.NumPending) + int64(info.NumAckPending)
}

// QueueStats counts a queue's announced tasks: those no worker has taken
// (Size), and of those the ones delivered and not yet acknowledged
// (Unacked: being taken, or refused and waiting to be offered again).
// TaskType and Domain name the queue, which callers filter on:
// the "domain:type" key alone is ambiguous when either contains a colon.
type QueueStats struct {
	Size, Unacked    int64
	TaskType, Domain string
}

// AllQueues returns the statistics of every queue, keyed as Conductor
// names queues: the task type, or "domain:type" for a domain's queue.
func (e *Executor) AllQueues(ctx context.Context) (map[string]QueueStats, error) {
	s, err := e.disp.dispatchStream(ctx)
	if err != nil {
		return nil, unavailable(err)
	}
	out := map[string]QueueStats{}
	lister := s.ListConsumers(ctx)
	for info := range lister.Info() {
		rest, ok := strings.CutPrefix(info.Name, workers.ConsumerPrefix)
		if !ok {
			continue
		}
		typTok, domTok, _ := strings.Cut(rest, "@")
		typ, err := eventlog.Untoken(typTok)
		if err != nil {
			continue
		}
		key, dom := typ, ""
		if domTok != "" {
			if dom, err = eventlog.Untoken(domTok); err != nil {
				continue
			}
			key = dom + ":" + typ
		}
		out[key] = QueueStats{Size: untaken(info), Unacked: int64(info.NumAckPending), TaskType: typ, Domain: dom}
	}
	if err := lister.Err(); err != nil {
		return nil, unavailable(err)
	}
	return out, nil
}
