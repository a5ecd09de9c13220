package executor

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/internal/logkey"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/flowvault/flowvault/workers"
)

// HandOff prepares a task's input for whoever takes it: it opens sealed
// values and resolves deferred expressions (secrets, environment values)
// into a copy that lives only in the reply to the taker. It is called before
// the take is decided, so that what was resolved is recorded on the
// TaskStarted event and a reference that cannot be resolved fails the task
// in the same decision. Errors wrapping fault.ErrNotFound, ErrForbidden or
// ErrInvalid fail the task with the error's message (it must name what and
// for whom, never a value); any other error is returned to the taker, who
// tries again.
type HandOff interface {
	Prepare(ctx context.Context, w *engine.Workflow, t *engine.Task) (input map[string]any, resolved []schemas.ResolvedRef, err error)
}

// Protector rewrites a decision before its events are appended: it seals
// data under _secrets and _masked and redacts resolved secret values, in
// its events and in the data its effects carry to other workflows. before
// is the workflow's state before the decision (nil for a start). Its
// events are the decision's, one for one and in order (each perhaps
// rewritten), followed by any it adds. It returns the decision's events
// slice itself, not a copy, when it changes none of them: the decision's
// state then stands as it is. When it changes them it may return, as
// State, a state of its own that its events fold to from before (one it
// folded to look into them): the executor keeps that one instead of
// folding them again. The decision's State, returned as it is, says it
// did not.
type Protector interface {
	Protect(ctx context.Context, before *engine.Workflow, dec engine.Decision) (engine.Decision, error)
}

// RecordWatcher is a Protector told of the record each decision it
// protected was stored as (seq in the workflow's stream): a state folded
// to a later record holds records another engine decided, whose data the
// Protector has not seen.
type RecordWatcher interface {
	Recorded(wfID string, seq uint64)
}

// ValuesFinder prepares a ValuesFound trigger on w, the state it is
// decided on: it opens the values another workflow found to be secret
// late, looks for them in w and sets the trigger's record of where w holds
// them (with the values sealed under w's own key). Run again on every
// attempt, as a hand-off's preparation is: a lost conflict decides again
// on a newer state.
type ValuesFinder interface {
	FindValues(ctx context.Context, w *engine.Workflow, found engine.ValuesFound) (engine.ValuesFound, error)
}

// SetHandOff installs the hand-off preparation (before Start).
func (e *Executor) SetHandOff(h HandOff) { e.handOff = h }

// SetProtector installs the event protection (before Start).
func (e *Executor) SetProtector(p Protector) { e.protector = p }

// StartCheck reports (nil) whether every one of principals may start
// req, as the API requires of a caller: EXECUTE on its definition, CREATE
// on the name of an inline one. It decides for all of them on one state
// of the definition's name and returns what it decided on, which the
// start holds to (StartOptions.Pin): the registered definition, which the
// start runs, or the state of an inline definition's name, which the
// start refuses to run under once it moved. The name deleted and
// registered again by someone else meanwhile would otherwise run theirs,
// or the inline definition as theirs, under a decision made on the state
// before.
type StartCheck func(ctx context.Context, principals []string, req conductor.StartWorkflowRequest) (Pin, error)

// SetStartCheck installs the check of the workflows a workflow starts (a
// SUB_WORKFLOW's child, a START_WORKFLOW's), as its creator (before Start).
func (e *Executor) SetStartCheck(c StartCheck) { e.mayStart = c }

// ReadCheck reports (nil) whether principal may read the executions of
// workflow name that createdBy started, as the API requires of a caller
// of GET /api/workflow/{id}.
type ReadCheck func(ctx context.Context, principal, name, createdBy string) error

// SetReadCheck installs the check of whether a START_WORKFLOW whose
// idempotency key another workflow holds (RETURN_EXISTING) may be
// answered with that workflow, as its starter (before Start). Without
// it, every principal may read every workflow.
func (e *Executor) SetReadCheck(c ReadCheck) { e.mayRead = c }

// TakeCheck reports (nil) whether the holder of the NATS credentials
// taker (takerOf) may still take tasks of taskType from the queue of
// domain ("": the queue without domain): credentials are issued for a
// principal's rights at the time, and must not outlive them.
type TakeCheck func(ctx context.Context, taker, taskType, domain string) error

// SetTakeCheck installs the check of NATS polls and takes (before Start).
// Without it, the NATS server's permissions alone decide.
func (e *Executor) SetTakeCheck(c TakeCheck) { e.mayTake = c }

// SenderCheck reports (nil) whether the NATS credentials sender (takerOf)
// may still act at all: neither revoked nor expired. Producers' starts
// ask it; their principal's rights are asked when the start is handled.
type SenderCheck func(ctx context.Context, sender string) error

// SetSenderCheck installs the check of producers' start requests (before
// Start). Without it, the NATS server's revocation list alone decides,
// which closes a revoked producer's connection only once the gate has
// applied it.
func (e *Executor) SetSenderCheck(c SenderCheck) { e.maySend = c }

// PollOwner names whom the poll slots a taker (takerOf) holds count
// against: the principal its credentials were issued to, who may hold
// many. "" or the taker itself when it is not known.
type PollOwner func(taker string) string

// SetPollOwner installs who owns a taker's poll slots (before Start).
// Without it, each taker's credentials have a share of their own.
func (e *Executor) SetPollOwner(o PollOwner) { e.pollOwner = o }

// ownerOf is whose share of the poll slots taker's polls take.
func (e *Executor) ownerOf(taker string) string {
	if taker == "" || e.pollOwner == nil {
		return taker
	}
	return cmp.Or(e.pollOwner(taker), taker)
}

// takerMay asks the TakeCheck about the sender of m, a worker request for
// tasks of taskType in the queue of domain (the request's subject's).
// Requests from within the engines' account name no taker and need no
// check.
func (e *Executor) takerMay(ctx context.Context, m *nats.Msg, taskType, domain string) *workers.Error {
	taker := takerOf(m)
	if e.mayTake == nil || taker == "" {
		return nil
	}
	if err := e.mayTake(ctx, taker, taskType, domain); err != nil {
		return e.protocolError(err, "")
	}
	return nil
}

// Unrestricted reports whether principal may do anything (an admin):
// joining those a workflow runs as, it would change no decision.
type Unrestricted func(ctx context.Context, principal string) bool

// SetUnrestricted installs the check of who may do anything (before
// Start). Without it, every definition's author joins its workflows.
func (e *Executor) SetUnrestricted(u Unrestricted) { e.unrestricted = u }

// ErrHandOffFailed is returned to a taker whose task failed at hand-off.
var ErrHandOffFailed = errors.New("task failed at hand-off")

// requestTimeout bounds one worker request's processing.
const requestTimeout = 30 * time.Second

// serveWorkers answers take and result requests from workers on NATS, in
// the queue group every engine shares.
func (e *Executor) serveWorkers(ctx context.Context) error {
	nc := e.log.Conn()
	for prefix, handle := range map[string]func(context.Context, *nats.Msg, string, time.Time) any{
		workers.TakePrefix:   e.handleTake,
		workers.ResultPrefix: e.handleResult,
	} {
		sub, err := nc.QueueSubscribe(prefix+">", workers.EngineQueue, func(m *nats.Msg) {
			if !replyable(m.Reply) || (m.Reply == "" && prefix == workers.TakePrefix) {
				// The answer would be published where the requester
				// aimed it, with the engine's rights: into a stream, a
				// take's resolved input included. The embedded server's
				// workers cannot aim (see natsauth); a server of its own
				// may let them.
				e.cfg.Logger.Warn("worker request refused: its reply subject is not an inbox", logkey.Subject, m.Subject)
				return
			}
			arrived := time.Now()
			// Handlers block on an append; never hold the subscription's
			// delivery goroutine longer than it takes a worker slot.
			e.onSlotOf(e.workerSem, requestTimeout, func(rctx context.Context) {
				var reply any
				if prefix == workers.TakePrefix && time.Since(arrived) > e.cfg.StaleTake {
					reply = workers.TakeReply{Error: &workers.Error{Code: workers.CodeUnavailable,
						Message: "the take waited too long for the engine to be made: its worker may have given up"}}
				} else {
					reply = handle(rctx, m, prefix, arrived)
				}
				if _, apart := reply.(answeredApart); apart {
					return
				}
				body, _ := json.Marshal(reply)
				if m.Reply != "" {
					_ = m.Respond(body)
				}
				// A take's answer holds the task's resolved input: the
				// connection has copied it, this copy goes now.
				clear(body)
			})
		})
		if err != nil {
			return fmt.Errorf("subscribe %s: %w", prefix, err)
		}
		e.unsubscribeAtStop(sub)
	}
	return nil
}

// unsubscribeAtStop ends sub when the executor stops.
func (e *Executor) unsubscribeAtStop(sub *nats.Subscription) {
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		<-e.ctx.Done()
		_ = sub.Unsubscribe()
	}()
}

// NATS polls (docs/worker-protocol.md, "Waiting for a task"): a worker
// waits at an engine, which answers with a task it fetched from the
// queue or took for the worker in the decision that scheduled it. The task
// is the worker's from its take's record on, but the answer travels by
// core NATS, where a worker that stopped or died loses it: so the engine
// offers the task and hands it out again unless the worker accepts.
const (
	// maxNATSPolls bounds the NATS polls an engine holds at once.
	maxNATSPolls = 10000
	// maxNATSPollsPerOwner bounds those of one principal's worker
	// credentials (PollOwner), however many it was issued: one holder
	// cannot take every slot and lock out every other principal's
	// workers; ten must fill them all. A fleet under one principal still
	// waits with a thousand polls at each engine (a thousand worker
	// processes, each with one poll of its type waiting), and engines
	// sharing the queue group share its polls.
	maxNATSPollsPerOwner = maxNATSPolls / 10
	// maxPollWait bounds a NATS poll's wait.
	maxPollWait = 30 * time.Second
)

// servePolls answers NATS polls, in the queue group every engine shares.
// A poll waits long: it holds no worker slot, and polls beyond
// maxNATSPolls are answered "unavailable".
func (e *Executor) servePolls() error {
	sub, err := e.log.Conn().QueueSubscribe(workers.PollPrefix+">", workers.EngineQueue, func(m *nats.Msg) {
		if m.Reply == "" || !replyable(m.Reply) {
			e.cfg.Logger.Warn("worker request refused: its reply subject is not an inbox", logkey.Subject, m.Subject)
			return
		}
		e.handlePoll(m)
	})
	if err != nil {
		return fmt.Errorf("subscribe %s: %w", workers.PollPrefix, err)
	}
	e.unsubscribeAtStop(sub)
	// Every engine hears a poll's end: only the one that holds it knows.
	ends, err := e.log.Conn().Subscribe(workers.PollEndPrefix+">", func(m *nats.Msg) {
		var end workers.PollEnd
		taskType, err := eventlog.Untoken(strings.TrimPrefix(m.Subject, workers.PollEndPrefix))
		if err != nil || json.Unmarshal(m.Data, &end) != nil || end.PollID == "" {
			e.cfg.Logger.Warn("poll end ignored: not a poll end", logkey.Subject, m.Subject)
			return
		}
		e.natsPolls.end(taskType, end.PollID)
	})
	if err != nil {
		return fmt.Errorf("subscribe %s: %w", workers.PollEndPrefix, err)
	}
	e.unsubscribeAtStop(ends)
	return nil
}

// natsPolls are the NATS polls waiting at this engine: how many (slots,
// at most maxNATSPolls; perOwner of one principal's credentials), and
// those their workers may end early (workers.PollEnd), by poll id.
type natsPolls struct {
	slots    chan struct{}
	perOwner int
	mu       sync.Mutex
	polls    map[string]waitingPoll
	byOwner  map[string]int
}

// hold takes one of the poll slots for owner (Executor.ownerOf; "" for
// the engines' own account, which only the total bounds), if any is free.
func (p *natsPolls) hold(owner string) bool {
	if owner != "" {
		p.mu.Lock()
		if p.byOwner[owner] >= p.perOwner {
			p.mu.Unlock()
			return false
		}
		if p.byOwner == nil {
			p.byOwner = map[string]int{}
		}
		p.byOwner[owner]++
		p.mu.Unlock()
	}
	select {
	case p.slots <- struct{}{}:
		return true
	default:
		p.forgetOwner(owner)
		return false
	}
}

func (p *natsPolls) release(owner string) {
	<-p.slots
	p.forgetOwner(owner)
}

func (p *natsPolls) forgetOwner(owner string) {
	if owner == "" {
		return
	}
	p.mu.Lock()
	if p.byOwner[owner]--; p.byOwner[owner] <= 0 {
		delete(p.byOwner, owner)
	}
	p.mu.Unlock()
}

// errTooManyPolls answers a poll beyond maxNATSPolls, or beyond its
// principal's share.
var errTooManyPolls = &workers.Error{Code: workers.CodeUnavailable, Message: "too many polls wait at this engine"}

// errStopping answers a poll that comes as the engine stops: it would
// take a task that the engine could not hand back if the worker does not
// accept it.
var errStopping = &workers.Error{Code: workers.CodeUnavailable, Message: "the engine is stopping"}

type waitingPoll struct {
	taskType string
	end      context.CancelFunc
}

// add keeps the poll id of taskType until the returned func forgets it.
func (p *natsPolls) add(taskType, id string, end context.CancelFunc) (forget func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, dup := p.polls[id]; dup {
		// Not the worker's to end: the id was not unique.
		return func() {}
	}
	if p.polls == nil {
		p.polls = map[string]waitingPoll{}
	}
	p.polls[id] = waitingPoll{taskType, end}
	return func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		delete(p.polls, id)
	}
}

// end ends the poll id if it waits here for a task of taskType: a worker's
// credentials allow it to end only polls of its own types.
func (p *natsPolls) end(taskType, id string) {
	p.mu.Lock()
	w, ok := p.polls[id]
	p.mu.Unlock()
	if ok && w.taskType == taskType {
		w.end()
	}
}

func respond(m *nats.Msg, reply any) {
	body, _ := json.Marshal(reply)
	_ = m.Respond(body)
	clear(body) // it may hold a task's resolved input (see handle)
}

// handlePoll answers a poll request m: once, in a goroutine of its own,
// when a task is taken for it or its wait runs out.
func (e *Executor) handlePoll(m *nats.Msg) {
	var req workers.PollRequest
	// Read as a result's next is.
	if err := conductor.UnmarshalNew(m.Data, &req); err != nil {
		respond(m, workers.PollReply{Error: &workers.Error{Code: workers.CodeInvalid, Message: "poll request is not a JSON object: " + err.Error()}})
		return
	}
	taskType, domain, err := workers.ParseQueueSubject(workers.PollPrefix, m.Subject)
	if err != nil {
		respond(m, workers.PollReply{Error: &workers.Error{Code: workers.CodeInvalid, Message: err.Error()}})
		return
	}
	if req.Domain != "" && req.Domain != domain {
		// The subject is what the worker's credentials allow: a domain
		// named only in the body would reach queues they do not.
		respond(m, workers.PollReply{Error: &workers.Error{Code: workers.CodeInvalid,
			Message: fmt.Sprintf("poll domain %q: poll a domain's tasks on %s", req.Domain, workers.PollSubject(taskType, req.Domain))}})
		return
	}
	req.Domain = domain
	e.waitForTask(m, taskType, req, func(r workers.PollReply) any { return r })
}

// waitForTask holds the poll req for a task of taskType and answers m with
// what answer makes of the outcome: a plain poll's PollReply, or the
// ResultReply of a result that waits for its worker's next task. The wait
// runs in a goroutine of its own, on one of the poll slots; none free, it
// answers at once that the engine is busy.
func (e *Executor) waitForTask(m *nats.Msg, taskType string, req workers.PollRequest, answer func(workers.PollReply) any) {
	if !e.handOuts.open() {
		respond(m, answer(workers.PollReply{Error: errStopping}))
		return
	}
	owner := e.ownerOf(takerOf(m))
	if !e.natsPolls.hold(owner) {
		e.handOuts.end()
		respond(m, answer(workers.PollReply{Error: errTooManyPolls}))
		return
	}
	e.spawn(func() {
		defer e.handOuts.end()
		defer e.natsPolls.release(owner)
		wait := min(max(time.Duration(req.WaitMs)*time.Millisecond, 0), maxPollWait)
		ctx, cancel := context.WithTimeout(e.ctx, wait+requestTimeout)
		defer cancel()
		if req.PollID != "" {
			// Ended early, the poll is answered as if its wait ran out,
			// and a task taken for it meanwhile goes back (awaitTask).
			var end context.CancelFunc
			ctx, end = context.WithCancel(ctx)
			defer end()
			defer e.natsPolls.add(taskType, req.PollID, end)()
		}
		if refused := e.takerMay(ctx, m, taskType, req.Domain); refused != nil {
			respond(m, answer(workers.PollReply{Error: refused}))
			return
		}
		tasks, _, err := e.Poll(ctx, PollRequest{TaskType: taskType, Domain: req.Domain, WorkerID: req.WorkerID, Principal: takerOf(m),
			Count: 1, Wait: wait})
		switch {
		case err != nil:
			respond(m, answer(workers.PollReply{Error: e.protocolError(err, "")}))
		case len(tasks) == 0:
			respond(m, answer(workers.PollReply{}))
		default:
			// Asked again: the rights may have gone during the wait.
			if refused := e.takerMay(ctx, m, taskType, req.Domain); refused != nil {
				e.giveBack(tasks[0].WorkflowInstanceID, tasks[0].TaskID, tasks[0].PollCount, "its taker's rights went while it waited: handed out again")
				respond(m, answer(workers.PollReply{Error: refused}))
				return
			}
			e.offer(m, tasks[0], answer)
		}
	})
}

// offer hands t to the poll m, or gives it back if its worker does not
// accept it within the offer timeout. A worker accepts at once, so the
// timeout is for one that went away; one that accepted later than that may
// run the task a second time (its result is then ignored).
func (e *Executor) offer(m *nats.Msg, t *conductor.Task, answer func(workers.PollReply) any) {
	body, err := json.Marshal(answer(workers.PollReply{Task: t}))
	if err == nil {
		var ans *nats.Msg
		ans, err = e.log.Conn().Request(m.Reply, body, e.cfg.OfferTimeout)
		clear(body) // the task's resolved input, which the connection copied
		if err == nil {
			if accepts(ans.Data) {
				return
			}
			err = errors.New("refused")
		}
	}
	e.cfg.Logger.Debug("offer not accepted", logkey.TaskID, t.TaskID, logkey.Err, err)
	e.giveBack(t.WorkflowInstanceID, t.TaskID, t.PollCount, "its worker did not accept it: handed out again")
}

// accepts reports whether a worker's answer to an offer accepts the task.
// The Go SDK's answer is recognised without decoding it, which showed in
// profiles: one per task.
func accepts(answer []byte) bool {
	if string(answer) == workers.AcceptOffer {
		return true
	}
	var r workers.OfferReply
	return json.Unmarshal(answer, &r) == nil && r.Accept
}

// replyable reports whether an engine may answer on reply: none (a take
// needs one), an inbox, or a reply the server mapped across a service
// import.
func replyable(reply string) bool {
	return reply == "" || strings.HasPrefix(reply, "_INBOX") || strings.HasPrefix(reply, "_R_.")
}

// protocolError maps err to the worker protocol's error; an internal error
// is logged here, since the worker is only told "internal error".
func (e *Executor) protocolError(err error, taskID string) *workers.Error {
	switch {
	case errors.Is(err, engine.ErrTaskGone), errors.Is(err, ErrHandOffFailed):
		return &workers.Error{Code: workers.CodeGone, Message: err.Error()}
	case errors.Is(err, fault.ErrNotFound):
		return &workers.Error{Code: workers.CodeNotFound, Message: err.Error()}
	case errors.Is(err, fault.ErrInvalid), errors.Is(err, fault.ErrTooLarge):
		return &workers.Error{Code: workers.CodeInvalid, Message: err.Error()}
	case errors.Is(err, fault.ErrForbidden):
		return &workers.Error{Code: workers.CodeForbidden, Message: err.Error()}
	case errors.Is(err, fault.ErrUnavailable), errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return &workers.Error{Code: workers.CodeUnavailable, Message: err.Error()}
	}
	e.cfg.Logger.Error("worker request failed", logkey.TaskID, taskID, logkey.Err, err)
	return &workers.Error{Code: workers.CodeInternal, Message: "internal error"}
}

// takerOf is who sent worker request m as the NATS server vouches for it:
// "nats:" and the public key of the user whose credentials sent it, from
// the Nats-Request-Info header the server sets on a request that crosses
// from the workers' account (whose imports share the requester's details;
// the nats.credentials audit fact names who was issued that user). Empty
// for a request from within the engines' account. The server replaces a
// header of that name the sender set and appends its own: the last one is
// the server's.
func takerOf(m *nats.Msg) string {
	if m.Header == nil {
		return ""
	}
	infos := m.Header.Values(requestInfoHeader)
	if len(infos) == 0 {
		return ""
	}
	_, rest, ok := strings.Cut(infos[len(infos)-1], `"user":"`)
	if !ok {
		return ""
	}
	user, _, ok := strings.Cut(rest, `"`)
	if !ok || user == "" {
		return ""
	}
	return "nats:" + user
}

// requestInfoHeader is nats-server's ClientInfoHdr.
const requestInfoHeader = "Nats-Request-Info"

// handedOff is the task a take handed out, with its prepared input.
func handedOff(out Outcome) (*conductor.Task, error) {
	switch reply := out.Reply.(type) {
	case engine.HandOffFailed:
		// The reason as recorded, redacted like any record: the decision's
		// reply is what the hand-off said, before the protection.
		reason := reply.Reason
		if out.State != nil {
			if t := out.State.TaskByID(reply.TaskID); t != nil {
				reason = t.Reason
			}
		}
		return nil, fmt.Errorf("%w: %s", ErrHandOffFailed, reason)
	case *engine.Task:
		task := reply.HandOffView(out.State)
		if out.HandOffInput != nil {
			task.InputData = out.HandOffInput
		}
		return task, nil
	}
	return nil, fmt.Errorf("take answered %T", out.Reply)
}

// takeAnswerTrip is what a take's answer is allowed for its way back to the
// worker: a take recorded later than the worker's wait less this is
// handed out again.
const takeAnswerTrip = 100 * time.Millisecond

func (e *Executor) handleTake(ctx context.Context, m *nats.Msg, prefix string, arrived time.Time) any {
	var req workers.TakeRequest
	// Read as a result is: a waitMs of 10000.0 (Python's json.dumps of a
	// float) is the number, and what cannot be read is named, not
	// reported as missing ids.
	if err := conductor.UnmarshalNew(m.Data, &req); err != nil {
		return workers.TakeReply{Error: &workers.Error{Code: workers.CodeInvalid, Message: "take request is not a TakeRequest JSON object: " + err.Error()}}
	}
	if req.TaskID == "" || req.WorkflowInstanceID == "" {
		return workers.TakeReply{Error: &workers.Error{Code: workers.CodeInvalid, Message: "take request needs taskId and workflowInstanceId"}}
	}
	taskType, domain, err := workers.ParseQueueSubject(prefix, m.Subject)
	if err != nil {
		return workers.TakeReply{Error: &workers.Error{Code: workers.CodeInvalid, Message: err.Error()}}
	}
	wait := time.Duration(req.WaitMs) * time.Millisecond
	if wait > 0 && wait <= takeAnswerTrip {
		// Every take would be recorded too late, and handed back.
		return workers.TakeReply{Error: &workers.Error{Code: workers.CodeInvalid,
			Message: fmt.Sprintf("waitMs %d: a take is answered after more than %d ms", req.WaitMs, takeAnswerTrip.Milliseconds())}}
	}
	late := func() bool { return wait > 0 && time.Since(arrived) > wait-takeAnswerTrip }
	if late() {
		// Its worker gave up while it waited for a slot: not made.
		return workers.TakeReply{Error: &workers.Error{Code: workers.CodeUnavailable, Message: "the take came after its worker's wait"}}
	}
	if refused := e.takerMay(ctx, m, taskType, domain); refused != nil {
		return workers.TakeReply{Error: refused}
	}
	// The subject names the queue: a worker allowed on one queue cannot take
	// another queue's tasks, another domain's included.
	task, _, err := e.take(ctx, req.WorkflowInstanceID, req.TaskID,
		PollRequest{TaskType: taskType, Domain: domain, WorkerID: req.WorkerID, Principal: takerOf(m)})
	if err != nil {
		return workers.TakeReply{Error: e.protocolError(err, req.TaskID)}
	}
	if late() {
		e.giveBack(task.WorkflowInstanceID, task.TaskID, task.PollCount, "its worker stopped waiting for the take: handed out again")
		return workers.TakeReply{Error: &workers.Error{Code: workers.CodeUnavailable, Message: "the take was recorded after its worker's wait: handed out again"}}
	}
	return workers.TakeReply{Task: task}
}

// ReportResult records a task result: the executor side of both the NATS
// result request and Conductor's task update endpoints. taskType, when set,
// must be the task's name.
func (e *Executor) ReportResult(ctx context.Context, res conductor.TaskResult, taskType, principal string) (Outcome, error) {
	if res.TaskID == "" || res.WorkflowInstanceID == "" {
		return Outcome{}, fault.Invalid("task result needs taskId and workflowInstanceId")
	}
	return e.Submit(ctx, res.WorkflowInstanceID, engine.Result{Result: res, TaskType: taskType}, Meta{Principal: principal})
}

func (e *Executor) handleResult(ctx context.Context, m *nats.Msg, prefix string, _ time.Time) any {
	var req workers.ResultRequest
	if err := conductor.UnmarshalNew(m.Data, &req); err != nil {
		return workers.ResultReply{Error: &workers.Error{Code: workers.CodeInvalid, Message: "result is not a TaskResult JSON object: " + err.Error()}}
	}
	res := req.TaskResult
	if res.TaskID == "" || res.WorkflowInstanceID == "" {
		return workers.ResultReply{Error: &workers.Error{Code: workers.CodeInvalid, Message: "result needs taskId and workflowInstanceId"}}
	}
	taskType, domain, err := workers.ParseQueueSubject(prefix, m.Subject)
	if err != nil {
		return workers.ResultReply{Error: &workers.Error{Code: workers.CodeInvalid, Message: err.Error()}}
	}
	// A result is asked what a take asks (as an HTTP task update asks what
	// a poll asks): credentials outlive their principal's rights, and a
	// worker whose grant, role or application went must not complete
	// (or fail) the tasks others took, with output of its choosing.
	if refused := e.takerMay(ctx, m, taskType, domain); refused != nil {
		return workers.ResultReply{Error: refused}
	}
	// The credentials that sent it, where the server names them: the
	// body's workerId is whatever the worker chose to write.
	meta := Meta{Principal: cmp.Or(takerOf(m), res.WorkerID)}
	if res.ExtendLease {
		// Its worker keeps its task and asks for no other, as update-v2
		// with extendLease polls nothing: a next task would be held
		// unstarted while the first runs.
		req.Next = nil
	}
	if req.Next != nil && req.Next.Domain == "" {
		// Read as a poll's body is: without a domain, it waits for the
		// queue its subject names, a domain's included.
		req.Next.Domain = domain
	}
	if req.Next != nil && m.Reply != "" && req.Next.Domain == domain && e.handOuts.open() {
		// Its poll waits from before the result is decided, which takes
		// a task it schedules on the queue for it (see AheadPoll). As a
		// hand-out, it holds Stop back until its offer is settled.
		defer e.handOuts.end()
		meta.NextPoll = &PollRequest{WorkerID: cmp.Or(req.Next.WorkerID, res.WorkerID), Principal: takerOf(m), Count: 1}
	}
	out, err := e.Submit(ctx, res.WorkflowInstanceID, engine.Result{Result: res, TaskType: taskType, Domain: domain, Lease: req.Lease}, meta)
	if err != nil {
		return workers.ResultReply{Error: e.protocolError(err, res.TaskID)}
	}
	reply, _ := out.Reply.(engine.ResultReply)
	recorded := workers.ResultReply{OK: true, Ignored: reply.Ignored}
	answer := func(r workers.PollReply) any {
		recorded.Next = &r
		return recorded
	}
	if out.Next != nil {
		if t, _, _ := out.Next.End(ctx, true); t != nil {
			e.handOuts.begin()
			e.spawn(func() {
				defer e.handOuts.end()
				e.offer(m, t, answer)
			})
			return answeredApart{}
		}
	}
	if req.Next == nil || m.Reply == "" {
		return recorded
	}
	// The worker waits here for its next task, as a poll of the result's
	// queue: one request and one answer fewer per task than a poll after
	// the result. The answer says both.
	next := *req.Next
	if next.Domain != domain {
		// The worker's credentials reach the queue the result's subject
		// names, and say nothing of another.
		recorded.Next = &workers.PollReply{Error: &workers.Error{Code: workers.CodeInvalid,
			Message: fmt.Sprintf("a result waits for tasks of its own queue: poll %s", workers.PollSubject(taskType, next.Domain))}}
		return recorded
	}
	if next.WorkerID == "" {
		next.WorkerID = res.WorkerID
	}
	e.waitForTask(m, taskType, next, answer)
	return answeredApart{}
}

// answeredApart is what a worker request's handler returns when the
// request is (or will be) answered by other means than its return value.
type answeredApart struct{}

// producerStartPrefix is where engines store producers' start requests:
// fv.cmd.producer.<workflow>.<principal>, each with its message id under
// the principal's name (see storeProducerStart).
const producerStartPrefix = "fv.cmd.producer."

// serveProducerStarts takes producers' start requests
// (fv.cmd.start.<workflow>.<principal>, which no stream captures) and stores
// each in the commands stream, answering with the stream's
// acknowledgement, as if the producer had published into the stream. The
// stream's duplicate window keys on the message id alone: captured as
// published, a producer's request was dropped as a duplicate of another
// producer's that used the same id (both numbering their requests from 1,
// say, or one replaying ids it saw), and the second producer was told
// "duplicate", which JetStream clients take for success.
//
// An engine of a version before this one sets the stream's subjects back
// to fv.cmd.> at its start, which captures producers' requests as
// published again: while it runs beside this one (a rolling upgrade), a
// request the stream captured is left to it (see capturedByCommands), and
// this engine narrows the subjects again only once it takes the requests
// itself.
func (e *Executor) serveProducerStarts(ctx context.Context) error {
	changed, err := e.watchCommandsSubjects(ctx)
	if err != nil {
		return err
	}
	sub, err := e.log.Conn().QueueSubscribe(workers.StartCommandPrefix+"*.*", workers.EngineQueue, func(m *nats.Msg) {
		if !replyable(m.Reply) {
			e.cfg.Logger.Warn("start request refused: its reply subject is not an inbox", logkey.Subject, m.Subject)
			return
		}
		if e.capturedByCommands(m) {
			// Stored by the stream, which answers the producer: stored
			// again here, it would start a second workflow.
			return
		}
		// Storing blocks on the stream's acknowledgement: never hold the
		// subscription's delivery goroutine longer than it takes a slot.
		e.onSlotOf(e.workerSem, requestTimeout, func(ctx context.Context) {
			ack := e.storeProducerStart(ctx, m)
			if m.Reply != "" {
				_ = m.Respond(ack)
			}
		})
	})
	if err != nil {
		return fmt.Errorf("subscribe %s: %w", workers.StartCommandPrefix, err)
	}
	e.unsubscribeAtStop(sub)
	err = e.log.WhileForming(ctx, "commands stream not narrowed yet", func(ctx context.Context) error {
		return e.log.ApplySubjects(ctx, eventlog.Commands)
	}, logkey.Stream, eventlog.Commands.Name)
	if err != nil {
		return err
	}
	e.commandsSubjects.Store(&eventlog.Commands.Subjects)
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		e.refreshCommandsSubjects(changed)
	}()
	return nil
}

// storeProducerStart stores m, a producer's start request, in the commands
// stream and returns the stream's answer for the producer: a JetStream
// publish acknowledgement, or its error. The message id is stored under
// the principal's subject token (which holds no '.'), so that producers
// share no ids; handleStartCommand takes it off again.
func (e *Executor) storeProducerStart(ctx context.Context, m *nats.Msg) []byte {
	tokens := strings.Split(strings.TrimPrefix(m.Subject, workers.StartCommandPrefix), ".")
	out := &nats.Msg{Subject: producerStartPrefix + tokens[0] + "." + tokens[1], Data: m.Data}
	if id := m.Header.Get(jetstream.MsgIDHeader); id != "" {
		out.Header = nats.Header{jetstream.MsgIDHeader: []string{tokens[1] + "." + id}}
	}
	var seq uint64
	var duplicate bool
	// The sender check refuses before anything is stored.
	failed := "start request refused: "
	err := e.senderMay(ctx, m)
	if err == nil {
		// A failure but the stream's refusal may have stored the request
		// and lost its acknowledgement: published again under its message
		// id, it is the same start.
		failed = "start request not acknowledged: "
		seq, duplicate, err = e.log.Publish(ctx, out)
	}
	var ack any = jetstream.PubAck{Stream: eventlog.Commands.Name, Sequence: seq, Duplicate: duplicate}
	if err != nil {
		e.cfg.Logger.Warn("start request not stored", logkey.Subject, m.Subject, logkey.Err, err)
		var apiErr *jetstream.APIError
		if !errors.As(err, &apiErr) {
			status := http.StatusServiceUnavailable
			if errors.Is(err, fault.ErrForbidden) {
				status = http.StatusForbidden
			}
			apiErr = &jetstream.APIError{Code: status, Description: failed + err.Error()}
		}
		ack = struct {
			Error *jetstream.APIError `json:"error"`
		}{apiErr}
	}
	body, _ := json.Marshal(ack)
	return body
}

// senderMay asks the SenderCheck about the sender of m, a producer's start
// request; requests from within the engines' account name no sender.
func (e *Executor) senderMay(ctx context.Context, m *nats.Msg) error {
	if sender := takerOf(m); e.maySend != nil && sender != "" {
		return e.maySend(ctx, sender)
	}
	return nil
}

// consumeStartCommands starts workflows published on the commands stream.
// The workflow id derives from the message id (or the stream sequence), so a
// request published twice starts one workflow even after the stream's
// duplicate window.
func (e *Executor) consumeStartCommands() error {
	// Two consumers, each of one subject, as consumers made by earlier
	// versions are: the engines' requests and producers' stored by earlier
	// versions, which let the stream capture them as published
	// (fv.cmd.start.>); producers' as engines store them now.
	for durable, filter := range map[string]string{"fv-engine-start": workers.StartCommandPrefix + ">",
		"fv-engine-producer-start": producerStartPrefix + "*.*"} {
		// The handler outlives Start's context: it runs until Stop.
		sub, err := e.log.Subscribe(e.ctx, eventlog.ConsumerConfig{Stream: eventlog.Commands.Name, Durable: durable,
			// Unbounded redelivery: a command that cannot succeed is
			// rejected as poison (logged, terminated); any other failure
			// (the store unavailable) is tried again, with back-off, until
			// it passes, so that an outage strands no command.
			// Erased once handled: a start's input may hold what its
			// workflow seals, which the acknowledgement alone would leave
			// in the stream's files until their block goes.
			Filter: filter, AckWait: time.Minute, MaxDeliver: -1, Erase: true}, e.handleStartCommand)
		if err != nil {
			return err
		}
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			<-e.ctx.Done()
			sub.Stop()
		}()
	}
	return nil
}

func (e *Executor) handleStartCommand(ctx context.Context, d eventlog.Delivery) error {
	var req conductor.StartWorkflowRequest
	if err := conductor.Unmarshal(d.Data, &req); err != nil {
		e.cfg.Logger.Warn("start command is not a StartWorkflowRequest", logkey.Subject, d.Subject, logkey.Seq, d.StreamSeq, logkey.Err, err)
		return fmt.Errorf("%w: %v", eventlog.ErrPoison, err)
	}
	// fv.cmd.start.<workflow>: an engine's request, which names its
	// creator. fv.cmd.producer.<workflow>.<principal> (or, stored by an
	// earlier version, fv.cmd.start.<workflow>.<principal>): a producer's,
	// whose credentials allow publishing only under its own principal, so
	// the subject, not the body, says whom the workflow runs as.
	rest, stored := strings.CutPrefix(d.Subject, producerStartPrefix)
	if !stored {
		rest = strings.TrimPrefix(d.Subject, workers.StartCommandPrefix)
	}
	tokens := strings.Split(rest, ".")
	name, err := eventlog.Untoken(tokens[0])
	if err == nil && len(tokens) == 2 {
		req.CreatedBy, err = eventlog.Untoken(tokens[1])
	}
	if err != nil || len(tokens) > 2 || stored && len(tokens) != 2 {
		e.cfg.Logger.Error("start command on a malformed subject", logkey.Subject, d.Subject, logkey.Seq, d.StreamSeq)
		return fmt.Errorf("%w: subject %s", eventlog.ErrPoison, d.Subject)
	}
	if req.Name == "" && req.WorkflowDef == nil {
		req.Name = name
	}
	if len(tokens) == 2 && (req.Name != name || req.WorkflowDef != nil) {
		// A producer may start only the workflows its credentials name.
		e.cfg.Logger.Warn("start command names another workflow than its subject", logkey.Subject, d.Subject, logkey.Seq, d.StreamSeq)
		return fmt.Errorf("%w: request for %q on subject %s", eventlog.ErrPoison, req.Name, d.Subject)
	}
	msgID := ""
	if ids := d.Header[jetstream.MsgIDHeader]; len(ids) > 0 {
		msgID = ids[0]
	}
	if stored {
		msgID = strings.TrimPrefix(msgID, tokens[1]+".")
	}
	if msgID == "" {
		msgID = fmt.Sprintf("seq-%d", d.StreamSeq)
	}
	id := engine.DeriveID("start-command", msgID)
	if len(tokens) == 2 {
		// Producers choose their message ids: one cannot collide with,
		// or predict, another's workflows.
		id = engine.DeriveID("start-command", req.CreatedBy, msgID)
	}
	if req.IdempotencyKey != "" {
		// The key decides, as through the API: a request published
		// again under another message id (or none) is the same start.
		// The same message again is the start it made (RequestID), even
		// once its workflow ended and the key would start another.
		id = ""
	}
	var pin Pin
	if len(tokens) == 2 && e.mayStart != nil {
		// The producer's credentials were issued for its principal's
		// rights at the time: the start needs them still, as over HTTP,
		// and runs the definition they were decided on.
		pin, err = e.mayStart(ctx, []string{req.CreatedBy}, req)
	}
	if err == nil {
		_, _, err = e.StartWorkflow(ctx, req, StartOptions{WorkflowID: id, CreatedBy: req.CreatedBy, RequestID: msgID, Pin: pin})
	}
	switch {
	case err == nil, errors.Is(err, fault.ErrConflict):
		return nil // started now, or by an earlier delivery
	case errors.Is(err, fault.ErrNotFound), errors.Is(err, fault.ErrInvalid), errors.Is(err, fault.ErrTooLarge), errors.Is(err, fault.ErrForbidden),
		errors.Is(err, fault.ErrRateLimited):
		// Over the quota on running workflows (ErrRateLimited) too: a
		// command delivered again until its principal's workflows end
		// would cycle through the consumer every tenant's commands share,
		// a warning at each delivery, for as long as they run.
		// The producer's mistake, not the server's: a warning.
		e.cfg.Logger.Warn("start command rejected", logkey.Subject, d.Subject, logkey.Seq, d.StreamSeq, logkey.Err, err)
		return fmt.Errorf("%w: %v", eventlog.ErrPoison, err)
	}
	e.cfg.Logger.Warn("start command failed; it will be delivered again", logkey.Subject, d.Subject, logkey.Seq, d.StreamSeq,
		logkey.Err, err)
	return err
}
