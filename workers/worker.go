package workers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/internal/logkey"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// Handler executes one task. Returning an error fails the task (FAILED,
// retried per its definition); wrap ErrTerminal to fail it for good
// (FAILED_WITH_TERMINAL_ERROR).
type Handler func(ctx context.Context, t *conductor.Task) (Output, error)

// Output is a handler's successful result.
type Output struct {
	Data map[string]any
	// InProgress asks to be called back after CallbackAfterSeconds instead
	// of completing (a long-running task that polls something).
	InProgress           bool
	CallbackAfterSeconds int64
	Logs                 []string
}

// ErrTerminal marks a failure that must not be retried.
var ErrTerminal = errors.New("terminal failure")

// WorkerConfig configures a Worker.
type WorkerConfig struct {
	TaskType string
	Domain   string
	// Concurrency bounds tasks executed at once (default 1).
	Concurrency int
	// WorkerID identifies the worker in task records (default: hostname).
	WorkerID string
	// PollWait bounds one long poll for new tasks.
	PollWait time.Duration
	// RequestTimeout bounds one take or result request to the engine.
	RequestTimeout time.Duration
	// OnResult, if set, is called after each result the engine answered:
	// reply.OK means the result is durable.
	OnResult func(res conductor.TaskResult, reply ResultReply)
	Logger   *slog.Logger
}

// Worker takes tasks of one type from NATS and runs a Handler on each. It
// needs only a NATS connection: see docs/worker-protocol.md for the protocol
// it speaks.
type Worker struct {
	cfg     WorkerConfig
	nc      *nats.Conn
	js      jetstream.JetStream
	handler Handler
}

// NewWorker returns a worker; Run starts it. nc is a connection made with
// credentials for cfg.TaskType (Connect, or ConnectOptions with your own
// options); NewWorker refuses a connection whose flowvault credentials
// allow replies only under an inbox prefix it does not use.
func NewWorker(nc *nats.Conn, cfg WorkerConfig, h Handler) (*Worker, error) {
	if cfg.TaskType == "" {
		return nil, errors.New("worker: task type is required")
	}
	if err := checkInbox(nc); err != nil {
		return nil, err
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 1
	}
	if cfg.WorkerID == "" {
		cfg.WorkerID, _ = os.Hostname()
	}
	if cfg.PollWait <= 0 {
		cfg.PollWait = 5 * time.Second
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cfg.Logger = cfg.Logger.With(logkey.Component, "worker", logkey.TaskType, cfg.TaskType)
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	return &Worker{cfg: cfg, nc: nc, js: js, handler: h}, nil
}

// Run takes and executes tasks until ctx is done. Then it stops taking
// new tasks, lets running handlers finish and reports their results, and
// returns. Tasks it had not taken yet go to other workers.
func (w *Worker) Run(ctx context.Context) error {
	cons, err := w.consumer(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	slots := make(chan struct{}, w.cfg.Concurrency)
	var running sync.WaitGroup
	defer running.Wait()
	// Handlers and result reports outlive ctx: a graceful stop finishes them.
	work := context.WithoutCancel(ctx)
	for ctx.Err() == nil {
		free := 0
		select {
		case slots <- struct{}{}:
			free = 1
		case <-ctx.Done():
			return nil
		}
		for free < w.cfg.Concurrency {
			select {
			case slots <- struct{}{}:
				free++
				continue
			default:
			}
			break
		}
		fctx, cancelFetch := context.WithTimeout(ctx, w.cfg.PollWait)
		batch, err := cons.Fetch(free, jetstream.FetchContext(fctx))
		if err != nil {
			cancelFetch()
			for ; free > 0; free-- {
				<-slots
			}
			if ctx.Err() != nil {
				return nil
			}
			if consumerGone(err) {
				// The server restarted and the in-memory queue is being
				// rebuilt by the engine: find the consumer again.
				if cons, err = w.consumer(ctx); err != nil {
					return nil
				}
				continue
			}
			w.cfg.Logger.Warn("fetch failed", logkey.Err, err)
			sleep(ctx, time.Second)
			continue
		}
		got := 0
		for m := range batch.Messages() {
			got++
			running.Add(1)
			go func() {
				defer func() { <-slots; running.Done() }()
				w.handle(work, m)
			}()
		}
		cancelFetch()
		for ; got < free; got++ {
			<-slots
		}
		if err := batch.Error(); err != nil && consumerGone(err) && ctx.Err() == nil {
			if cons, err = w.consumer(ctx); err != nil {
				return nil
			}
		}
	}
	return nil
}

// consumerGone reports errors after which the queue's consumer must be
// looked up again: the server restarted and the engine is rebuilding the
// in-memory queue.
func consumerGone(err error) bool {
	return errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrConsumerDeleted) ||
		errors.Is(err, jetstream.ErrNoHeartbeat) || errors.Is(err, jetstream.ErrStreamNotFound)
}

// consumer waits for the queue's durable consumer, which the engine creates
// when it first dispatches a task of the type. It returns only with the
// consumer or when ctx is done: other failures (the server restarting, the
// connection reconnecting) are retried, since a worker that gave up here
// would leave its type's tasks waiting for good.
func (w *Worker) consumer(ctx context.Context) (jetstream.Consumer, error) {
	name := ConsumerName(w.cfg.TaskType, w.cfg.Domain)
	wait := 200 * time.Millisecond
	for {
		cons, err := w.js.Consumer(ctx, eventlog.Dispatch.Name, name)
		if err == nil {
			return cons, nil
		}
		if !errors.Is(err, jetstream.ErrConsumerNotFound) && ctx.Err() == nil {
			w.cfg.Logger.Warn("queue consumer lookup failed, retrying", "consumer", name, logkey.Err, err)
			wait = min(2*wait, 5*time.Second)
		}
		if !sleep(ctx, wait) {
			return nil, ctx.Err()
		}
	}
}

func (w *Worker) handle(ctx context.Context, m jetstream.Msg) {
	var d Dispatch
	if err := json.Unmarshal(m.Data(), &d); err != nil || d.TaskID == "" {
		w.cfg.Logger.Error("malformed dispatch message", logkey.Err, err)
		_ = m.Term()
		return
	}
	var reply TakeReply
	err := w.request(ctx, TakeSubject(w.cfg.TaskType), TakeRequest{TaskID: d.TaskID, WorkflowInstanceID: d.WorkflowInstanceID, WorkerID: w.cfg.WorkerID}, &reply)
	switch {
	case err != nil:
		w.cfg.Logger.Debug("take request failed", logkey.TaskID, d.TaskID, logkey.Err, err)
		_ = m.NakWithDelay(time.Second) // the engine did not answer: retry later
		return
	case reply.Error != nil && (reply.Error.Code == CodeUnavailable || reply.Error.Code == CodeInternal):
		// Not an answer about the task: dropping the announcement would
		// strand a task that is still waiting for a worker.
		w.cfg.Logger.Warn("take failed, offered again later", logkey.TaskID, d.TaskID, logkey.Err, reply.Error)
		_ = m.NakWithDelay(time.Second)
		return
	case reply.Error != nil:
		w.cfg.Logger.Debug("dispatched task not taken", logkey.TaskID, d.TaskID, logkey.Err, reply.Error)
		_ = m.Ack() // gone or not ours: drop the announcement
		return
	}
	// The log now records this worker as the task's owner.
	_ = m.Ack()
	w.execute(ctx, reply.Task)
}

func (w *Worker) execute(ctx context.Context, t *conductor.Task) {
	hctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if t.ResponseTimeoutSeconds > 0 {
		go w.extendLease(hctx, t)
	}
	out, err := w.run(hctx, t)
	res := conductor.TaskResult{TaskID: t.TaskID, WorkflowInstanceID: t.WorkflowInstanceID, WorkerID: w.cfg.WorkerID}
	now := time.Now().UnixMilli()
	switch {
	case errors.Is(err, ErrTerminal):
		res.Status, res.ReasonForIncompletion = conductor.TaskFailedWithTerminalError, err.Error()
	case err != nil:
		res.Status, res.ReasonForIncompletion = conductor.TaskFailed, err.Error()
	case out.InProgress:
		res.Status, res.OutputData, res.CallbackAfterSeconds = conductor.TaskInProgress, out.Data, out.CallbackAfterSeconds
	default:
		res.Status, res.OutputData = conductor.TaskCompleted, out.Data
	}
	for _, l := range out.Logs {
		res.Logs = append(res.Logs, conductor.TaskExecLog{Log: l, TaskID: t.TaskID, CreatedTime: now})
	}
	cancel()
	w.report(ctx, res, t.PollCount)
}

// run calls the handler, turning a panic into a task failure.
func (w *Worker) run(ctx context.Context, t *conductor.Task) (out Output, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("worker panic: %v", p)
		}
	}()
	return w.handler(ctx, t)
}

// extendLease keeps the task ours while the handler runs.
func (w *Worker) extendLease(ctx context.Context, t *conductor.Task) {
	every := time.Duration(t.ResponseTimeoutSeconds) * time.Second * 8 / 10
	tick := time.NewTicker(max(every, 100*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			var reply ResultReply
			err := w.request(ctx, ResultSubject(w.cfg.TaskType), ResultRequest{TaskResult: conductor.TaskResult{TaskID: t.TaskID,
				WorkflowInstanceID: t.WorkflowInstanceID, WorkerID: w.cfg.WorkerID, Status: conductor.TaskInProgress, ExtendLease: true},
				Lease: t.PollCount}, &reply)
			if err != nil && ctx.Err() == nil {
				w.cfg.Logger.Warn("lease extension failed", logkey.TaskID, t.TaskID, logkey.Err, err)
			}
		}
	}
}

// report sends a result until the engine records it: a result the engine
// acknowledged is durable, one it did not may be sent again safely (a
// duplicate is ignored).
func (w *Worker) report(ctx context.Context, res conductor.TaskResult, lease int) {
	backoff := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		var reply ResultReply
		err := w.request(ctx, ResultSubject(w.cfg.TaskType), ResultRequest{TaskResult: res, Lease: lease}, &reply)
		if err == nil && w.cfg.OnResult != nil {
			w.cfg.OnResult(res, reply)
		}
		if err == nil && reply.Error == nil {
			return
		}
		if err == nil && reply.Error.Code == CodeInvalid && res.Status != conductor.TaskFailed {
			// The engine keeps nothing of a refused result (too large an
			// output, a bad status): the task would wait for its response
			// timeout. It fails instead, saying why, to be retried.
			w.cfg.Logger.Error("result rejected; reporting the task failed", logkey.TaskID, res.TaskID, logkey.Err, reply.Error)
			res = conductor.TaskResult{TaskID: res.TaskID, WorkflowInstanceID: res.WorkflowInstanceID, WorkerID: res.WorkerID,
				Status: conductor.TaskFailed, ReasonForIncompletion: "the engine refused the result: " + reply.Error.Message}
			continue
		}
		if err == nil && reply.Error.Code != CodeUnavailable && reply.Error.Code != CodeInternal {
			w.cfg.Logger.Error("result rejected", logkey.TaskID, res.TaskID, logkey.Err, reply.Error)
			return
		}
		w.cfg.Logger.Debug("result not recorded yet", logkey.TaskID, res.TaskID, "attempt", attempt, logkey.Err, errors.Join(err, replyErr(reply)))
		if attempt >= 30 || errors.Is(err, nats.ErrConnectionClosed) {
			w.cfg.Logger.Error("result not recorded, giving up", logkey.TaskID, res.TaskID, logkey.Err, err)
			return
		}
		if !sleep(ctx, backoff) {
			return
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

func (w *Worker) request(ctx context.Context, subject string, req, reply any) error {
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, w.cfg.RequestTimeout)
	defer cancel()
	m, err := w.nc.RequestWithContext(rctx, subject, body)
	if err != nil {
		return err
	}
	return json.Unmarshal(m.Data, reply)
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func replyErr(r ResultReply) error {
	if r.Error == nil {
		return nil
	}
	return r.Error
}
