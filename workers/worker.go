package workers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"strconv"
	"sync"
	"time"

	jsonv2 "github.com/go-json-experiment/json"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"

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
	// reply.OK means the result is durable. reply.Next is always nil: the
	// task it may offer carries resolved input, and is the worker's to run,
	// not a callback's to see. A panic in it is logged (its type and
	// stack, never its value) and the worker goes on.
	OnResult func(res conductor.TaskResult, reply ResultReply)
	Logger   *slog.Logger
}

// Worker takes tasks of one type from NATS and runs a Handler on each. It
// needs only a NATS connection: see docs/worker-protocol.md for the protocol
// it speaks.
type Worker struct {
	cfg     WorkerConfig
	nc      *nats.Conn
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
	return &Worker{cfg: cfg, nc: nc, handler: h}, nil
}

// Run takes and executes tasks until ctx is done. Then it stops taking
// new tasks, ends the polls it has waiting at engines (for 2 s at most),
// lets running handlers finish and reports their results, and returns.
// Tasks it had not taken yet go to other workers. A result no engine
// answers is sent 30 times, over two minutes or more, before it
// is given up, so with no engine running a stop takes that long; closing
// the connection ends it within seconds. While the connection
// reconnects (a server restart), Run waits for it; once it is closed (it
// ran out of reconnection attempts, or was closed), Run lets running
// handlers finish and returns an error wrapping nats.ErrConnectionClosed:
// their results could not be sent, and their tasks go to other workers
// after their response timeouts.
func (w *Worker) Run(ctx context.Context) error {
	// Handlers and result reports outlive ctx: a graceful stop finishes them.
	work := context.WithoutCancel(ctx)
	errs := make(chan error, w.cfg.Concurrency)
	var slots sync.WaitGroup
	for range w.cfg.Concurrency {
		slots.Add(1)
		go func() {
			defer slots.Done()
			errs <- w.slot(ctx, work)
		}()
	}
	slots.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// slot is one of the worker's Concurrency: it waits at an engine for a
// task, runs it, and reports the result, waiting in the same request for
// its next task, until ctx is done. The answers to its waits come to an
// inbox of its own, one reply subject per wait, so that the late answer to
// a wait it gave up on is told apart.
func (w *Worker) slot(ctx, work context.Context) error {
	in, err := w.newSlotInbox()
	if err != nil {
		return err
	}
	defer in.close()
	backoff := 100 * time.Millisecond
	var next *conductor.Task
	// A task accepted is run, stopping or not: it is the worker's.
	for next != nil || ctx.Err() == nil {
		t := next
		if t == nil {
			if t, err = w.poll(ctx, in); err != nil && ctx.Err() == nil {
				if pe := (*Error)(nil); errors.As(err, &pe) && pe.Code == CodeForbidden {
					// Polling again will not help: the credentials need
					// their rights back, or new ones.
					w.cfg.Logger.Warn("this worker may no longer take tasks of its type: stopping", logkey.Err, err)
					return err
				}
				if w.nc.IsClosed() {
					// The connection gave up reconnecting (its MaxReconnects
					// ran out) or was closed: it never comes back, and a
					// slot polling it would look alive and take nothing.
					w.cfg.Logger.Error("the NATS connection is closed: stopping", logkey.Err, err)
					return fmt.Errorf("worker %s: %w", w.cfg.TaskType, nats.ErrConnectionClosed)
				}
				w.cfg.Logger.Debug("poll failed", logkey.Err, err)
				sleep(ctx, backoff)
				backoff = min(2*backoff, 5*time.Second)
				continue
			}
			backoff = 100 * time.Millisecond
			if t == nil {
				continue
			}
		}
		next = w.execute(ctx, work, in, t)
	}
	return nil
}

// slotInbox is where the answers to one slot's waits come.
type slotInbox struct {
	prefix string
	// A few answers at most wait here (the one awaited, late ones): a
	// small channel, where a synchronous subscription would hold a buffer
	// of 65,536 message pointers per slot for the collector to scan.
	answers chan *nats.Msg
	sub     *nats.Subscription
	n       int
}

func (w *Worker) newSlotInbox() (*slotInbox, error) {
	in := &slotInbox{prefix: w.nc.NewInbox(), answers: make(chan *nats.Msg, 16)}
	sub, err := w.nc.ChanSubscribe(in.prefix+".*", in.answers)
	if err != nil {
		return nil, fmt.Errorf("worker inbox: %w", err)
	}
	in.sub = sub
	return in, nil
}

func (in *slotInbox) close() { _ = in.sub.Unsubscribe() }

// reply returns a reply subject no earlier wait of the slot used.
func (in *slotInbox) reply() string {
	in.n++
	return in.prefix + "." + strconv.Itoa(in.n)
}

// poll asks an engine for a task and waits for the answer: a task offered
// (accepted here, the worker's from now on), none, or an error.
func (w *Worker) poll(ctx context.Context, in *slotInbox) (*conductor.Task, error) {
	id := nuid.Next()
	body, err := json.Marshal(PollRequest{WorkerID: w.cfg.WorkerID, Domain: w.cfg.Domain, WaitMs: w.cfg.PollWait.Milliseconds(), PollID: id})
	if err != nil {
		return nil, err
	}
	m, err := w.await(ctx, in, PollSubject(w.cfg.TaskType, w.cfg.Domain), body, id)
	if err != nil {
		return nil, err
	}
	var r PollReply
	if err := decodeAnswer(m.Data, &r); err != nil {
		answerOffer(m, false)
		return nil, fmt.Errorf("poll answer: %w", err)
	}
	return takeOffer(ctx, m, &r)
}

// await sends body to subject as a request that waits at an engine (a
// poll, or a result that waits for the next task) and returns its answer,
// which comes once, to a new reply subject of in. pollID names the wait:
// when ctx is done first, await ends it.
func (w *Worker) await(ctx context.Context, in *slotInbox, subject string, body []byte, pollID string) (*nats.Msg, error) {
	reply := in.reply()
	if err := w.nc.PublishRequest(subject, reply, body); err != nil {
		return nil, err
	}
	deadline := time.NewTimer(w.cfg.PollWait + w.cfg.RequestTimeout)
	defer deadline.Stop()
	stopping := ctx.Done()
	var endAgain <-chan time.Time
	ends := 0
	for {
		var m *nats.Msg
		select {
		case m = <-in.answers:
		case <-stopping:
			// The engine would offer a task to this wait until it ran
			// out, and one behind an account boundary cannot tell that
			// nobody listens any more: it would wait its offer timeout
			// before handing the task to another worker. Ending the wait
			// has the engine answer it now; an offer made before that is
			// refused (takeOffer). The end travels by core NATS and may
			// overtake the wait at the engine, so it is sent again until
			// the answer comes, for a while: an engine that does not
			// answer is gone or cannot.
			if w.nc.IsClosed() {
				return nil, ctx.Err()
			}
			stopping = nil
			ends++
			w.endPoll(pollID)
			tick := time.NewTicker(endPollAgain)
			defer tick.Stop()
			endAgain = tick.C
			continue
		case <-endAgain:
			if ends >= maxPollEnds || w.nc.IsClosed() {
				return nil, ctx.Err()
			}
			ends++
			w.endPoll(pollID)
			continue
		case <-deadline.C:
			return nil, context.DeadlineExceeded
		}
		if m.Subject != reply {
			// The answer to a wait given up on: its task goes to
			// someone else.
			answerOffer(m, false)
			continue
		}
		if len(m.Data) == 0 && m.Header.Get("Status") == "503" {
			return nil, nats.ErrNoResponders
		}
		return m, nil
	}
}

// takeOffer accepts the task r offers in m, unless the worker is stopping.
func takeOffer(ctx context.Context, m *nats.Msg, r *PollReply) (*conductor.Task, error) {
	switch {
	case r.Error != nil:
		return nil, r.Error
	case r.Task == nil:
		return nil, nil
	case ctx.Err() != nil:
		answerOffer(m, false) // stopping: not taking new tasks
		return nil, ctx.Err()
	}
	if !answerOffer(m, true) {
		return nil, errors.New("poll answer: a task without a reply subject to accept it on")
	}
	return r.Task, nil
}

// A stopping worker ends a poll not answered yet every endPollAgain, up
// to maxPollEnds times.
const (
	endPollAgain = 250 * time.Millisecond
	maxPollEnds  = 8
)

// endPoll asks the engines to end the poll id.
func (w *Worker) endPoll(id string) {
	body, _ := json.Marshal(PollEnd{PollID: id})
	if err := w.nc.Publish(PollEndSubject(w.cfg.TaskType), body); err != nil {
		w.cfg.Logger.Debug("poll end not sent", logkey.Err, err)
	}
}

// answerOffer accepts or refuses the task m offers; false if m is not an
// offer.
func answerOffer(m *nats.Msg, accept bool) bool {
	if m.Reply == "" {
		return false
	}
	answer := RefuseOffer
	if accept {
		answer = AcceptOffer
	}
	_ = m.Respond([]byte(answer))
	return true
}

// execute runs t and reports its result; it returns the next task, if the
// engine handed one over with the result's answer.
func (w *Worker) execute(ctx, work context.Context, in *slotInbox, t *conductor.Task) (next *conductor.Task) {
	hctx, cancel := context.WithCancel(work)
	if t.ResponseTimeoutSeconds > 0 {
		// Nearly every handler returns long before half its lease is
		// gone: only one that does not gets a goroutine to extend it.
		// The timer stops with the handler's context, before the result
		// (which may wait for the next task) is reported.
		every := leaseEvery(t)
		lease := time.AfterFunc(every, func() { w.extendLease(hctx, t, every) })
		cancelHandler := cancel
		cancel = func() { lease.Stop(); cancelHandler() }
	}
	defer cancel()
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
	return w.report(ctx, work, in, res, t.PollCount)
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

// onResult calls OnResult, recovering its panic: the result is recorded
// already, and a panic in the caller's callback would otherwise end the
// process with every slot's task. The log line leaves out the panic's
// value, which may hold the result's output.
func (w *Worker) onResult(res conductor.TaskResult, reply ResultReply) {
	defer func() {
		if p := recover(); p != nil {
			w.cfg.Logger.Error("OnResult panicked; the result was recorded, the worker goes on",
				logkey.TaskID, res.TaskID, logkey.Err, fmt.Sprintf("a panic of type %T", p), logkey.Stack, string(debug.Stack()))
		}
	}()
	w.cfg.OnResult(res, reply)
}

// leaseEvery is how often a running task's lease is extended: every half
// of its response timeout, so that an extension may take as long as the
// pause before it and still arrive in time.
func leaseEvery(t *conductor.Task) time.Duration {
	// A timeout past time.Duration's 292 years would wrap; a day is
	// often enough for any lease.
	return max(time.Duration(min(t.ResponseTimeoutSeconds, 24*3600))*time.Second/2, 100*time.Millisecond)
}

// extendLease keeps the task ours while the handler runs: now, and then
// every period until ctx is done.
func (w *Worker) extendLease(ctx context.Context, t *conductor.Task, every time.Duration) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	extension := ResultRequest{TaskResult: conductor.TaskResult{TaskID: t.TaskID, WorkflowInstanceID: t.WorkflowInstanceID,
		WorkerID: w.cfg.WorkerID, Status: conductor.TaskInProgress, ExtendLease: true}, Lease: t.PollCount}
	for {
		var reply ResultReply
		if err := w.request(ctx, ResultSubject(w.cfg.TaskType, w.cfg.Domain), extension, &reply); err != nil && ctx.Err() == nil {
			w.cfg.Logger.Warn("lease extension failed", logkey.TaskID, t.TaskID, logkey.Err, err)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// report sends a result until the engine records it: a result the engine
// acknowledged is durable, one it did not may be sent again safely (a
// duplicate is ignored). Unless the worker is stopping (ctx is done), the
// result waits at the engine for the slot's next task, which report
// returns.
func (w *Worker) report(ctx, work context.Context, in *slotInbox, res conductor.TaskResult, lease int) (next *conductor.Task) {
	backoff := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		reply, next, err := w.send(ctx, work, in, ResultRequest{TaskResult: res, Lease: lease})
		if err == nil && w.cfg.OnResult != nil {
			answered := reply
			answered.Next = nil
			w.onResult(res, answered)
		}
		if err == nil && reply.Error == nil {
			return next
		}
		if errors.Is(err, nats.ErrMaxPayload) || errors.Is(err, errNotJSON) {
			// The connection refuses to send a body over the server's
			// max_payload, and JSON has no NaN, channel or cycle: either
			// would fail every time, and the task would wait for its
			// response timeout, then run again to the same end. It fails
			// for good, as the engine fails a result too large for its
			// log, without its output. The log line leaves out why: a
			// MarshalJSON method's error is the handler's text, which only
			// the engine, which redacts, may keep.
			reason := fmt.Sprintf("the worker could not send the result: %v", err)
			if errors.Is(err, nats.ErrMaxPayload) {
				reason += fmt.Sprintf(" (the NATS server takes at most %d bytes)", w.nc.MaxPayload())
			}
			w.cfg.Logger.Error("result cannot be sent; reporting the task failed, its reason saying why", logkey.TaskID, res.TaskID)
			res = conductor.TaskResult{TaskID: res.TaskID, WorkflowInstanceID: res.WorkflowInstanceID, WorkerID: res.WorkerID,
				Status: conductor.TaskFailedWithTerminalError, ReasonForIncompletion: reason}
			continue
		}
		if err == nil && reply.Error.Code == CodeInvalid && res.Status != conductor.TaskFailed {
			// The engine keeps nothing of a refused result (a bad status,
			// say): the task would wait for its response timeout. It fails
			// instead, saying why, to be retried.
			w.cfg.Logger.Error("result rejected; reporting the task failed", logkey.TaskID, res.TaskID, logkey.Err, reply.Error)
			res = conductor.TaskResult{TaskID: res.TaskID, WorkflowInstanceID: res.WorkflowInstanceID, WorkerID: res.WorkerID,
				Status: conductor.TaskFailed, ReasonForIncompletion: "the engine refused the result: " + reply.Error.Message}
			continue
		}
		if err == nil && reply.Error.Code != CodeUnavailable && reply.Error.Code != CodeInternal {
			w.cfg.Logger.Error("result rejected", logkey.TaskID, res.TaskID, logkey.Err, reply.Error)
			return nil
		}
		w.cfg.Logger.Debug("result not recorded yet", logkey.TaskID, res.TaskID, "attempt", attempt, logkey.Err, errors.Join(err, replyErr(reply)))
		if attempt >= 30 || errors.Is(err, nats.ErrConnectionClosed) {
			w.cfg.Logger.Error("result not recorded, giving up", logkey.TaskID, res.TaskID, logkey.Err, err)
			return nil
		}
		if !sleep(work, backoff) {
			return nil
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// send sends one result request: while the worker runs (ctx is not done),
// one that waits for the slot's next task and returns it if the answer
// offers one; once it stops, a plain request.
func (w *Worker) send(ctx, work context.Context, in *slotInbox, req ResultRequest) (reply ResultReply, next *conductor.Task, err error) {
	if ctx.Err() != nil {
		err = w.request(work, ResultSubject(w.cfg.TaskType, w.cfg.Domain), req, &reply)
		return reply, nil, err
	}
	id := nuid.Next()
	req.Next = &PollRequest{Domain: w.cfg.Domain, WaitMs: w.cfg.PollWait.Milliseconds(), PollID: id}
	body, err := encode(req)
	if err != nil {
		return reply, nil, err
	}
	m, err := w.await(ctx, in, ResultSubject(w.cfg.TaskType, w.cfg.Domain), body, id)
	if err != nil {
		return reply, nil, err
	}
	if err := decodeAnswer(m.Data, &reply); err != nil {
		answerOffer(m, false)
		return reply, nil, fmt.Errorf("result answer: %w", err)
	}
	if reply.Next == nil {
		return reply, nil, nil // no task was waited for: the slot polls
	}
	next, err = takeOffer(ctx, m, reply.Next)
	if err != nil && ctx.Err() == nil {
		// The result is recorded all the same; the slot polls.
		w.cfg.Logger.Debug("no task with the result's answer", logkey.Err, err)
	}
	return reply, next, nil
}

func (w *Worker) request(ctx context.Context, subject string, req, reply any) error {
	body, err := encode(req)
	if err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, w.cfg.RequestTimeout)
	defer cancel()
	m, err := w.nc.RequestWithContext(rctx, subject, body)
	if err != nil {
		return err
	}
	return decodeAnswer(m.Data, reply)
}

// errNotJSON marks a request that cannot be written as JSON: a handler's
// output holding a NaN, an infinity, a channel or a cycle, or a value
// whose MarshalJSON method panics.
var errNotJSON = errors.New("cannot write it as JSON")

func encode(req any) (_ []byte, err error) {
	// encoding/json panics again with a MarshalJSON method's panic: the
	// handler's code, run outside run's recovery, which would end the
	// process and every slot's task with it.
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: panic: %v", errNotJSON, p)
		}
	}()
	body, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errNotJSON, err)
	}
	return body, nil
}

// decodeAnswer decodes an engine's answer with encoding/json/v2's decoder
// (github.com/go-json-experiment/json, from which Go's encoding/json/v2 is
// made; the standard library has it only under GOEXPERIMENT=jsonv2 in Go
// 1.26). Decoding the offered task was most of what a worker spends on a
// task besides its handler, and encoding/json took 4 times as long for
// it. What differs from encoding/json does not matter here: the engine
// writes names exactly as declared, each once, in valid UTF-8.
//
// Decoded, data is zeroed: an offered task's answer holds its resolved
// input, which v holds copies of.
func decodeAnswer(data []byte, v any) error {
	defer clear(data)
	return jsonv2.Unmarshal(data, v)
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
