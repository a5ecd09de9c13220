package executor

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/flowvault/flowvault/engine"
	"github.com/flowvault/flowvault/eventlog"
	"github.com/flowvault/flowvault/internal/logkey"
	"github.com/flowvault/flowvault/schemas"
	"github.com/flowvault/flowvault/schemas/conductor"
	"github.com/nats-io/nats.go"
)

// An append that fails with a timeout or a lost connection may have been
// stored all the same: JetStream may have written the record and lost
// only the answer, or a batch that held it may still be written after its
// writer stopped waiting. These find out from the log.

// landedTimeout bounds the read that looks for a record whose append
// failed, while the request that made it still waits.
const landedTimeout = 5 * time.Second

// putBackWindow is how long a take told it failed is watched for its
// record, which a batch in flight may store after its writer gave up
// (eventlog retries a publish for about as long).
const putBackWindow = time.Minute

// ambiguous reports an append error that leaves open whether the record
// was stored. A conflict or a record too large or too deep stores nothing,
// nor does a publish while the connection is away (it is never sent), nor
// one the server refused as out of storage; but an append that went
// unanswered before its stream's store failed may have been stored
// (eventlog.ErrStoreFailed, an ErrNoStorage too).
func ambiguous(err error) bool {
	if errors.Is(err, eventlog.ErrStoreFailed) {
		return true
	}
	return !errors.Is(err, eventlog.ErrConflict) && !errors.Is(err, eventlog.ErrTooLarge) && !errors.Is(err, eventlog.ErrTooDeep) &&
		!errors.Is(err, eventlog.ErrInvalidSubject) && !errors.Is(err, eventlog.ErrClosed) &&
		!errors.Is(err, nats.ErrReconnectBufExceeded) && !errors.Is(err, nats.ErrConnectionClosed) && !errors.Is(err, eventlog.ErrNoStorage)
}

// ownRecord reports whether the first of recs, the records after the
// sequence an append expected, is the one that append made: a record is
// stored only directly after the subject sequence it expects.
func ownRecord(recs []eventlog.Record, recordID string) bool {
	return len(recs) > 0 && recs[0].MsgID == recordID
}

// stamp tells this engine's record apart from another engine's decision
// on the same request (a start command both engines took): the two share
// the record's id, which names the request, but not the time of the
// decision, in nanoseconds. Only this engine's record holds the takes it
// made for its own waiting polls.
type stamp struct {
	id   string
	time int64
}

func stampOf(envs []schemas.Envelope) stamp { return stamp{id: envs[0].ID, time: envs[0].Time} }

// made reports whether the first of recs, the records after the sequence
// an append expected, is the one that append made.
func (s stamp) made(recs []eventlog.Record) bool {
	return ownRecord(recs, s.id) && len(recs[0].Events) > 0 && recs[0].Events[0].Time == s.time
}

// storedMade reports whether the record after sequence after on wfID's
// subject is the one s stamps.
func (e *Executor) storedMade(ctx context.Context, wfID string, after uint64, s stamp) bool {
	ctx, cancel := context.WithTimeout(ctx, landedTimeout)
	defer cancel()
	recs, err := e.log.ReadSubject(ctx, subject(wfID), after)
	return err == nil && s.made(recs)
}

// landed looks for the record recordID appended after sequence after on
// wfID's subject, and returns its sequence if it is there.
func (e *Executor) landed(ctx context.Context, wfID string, after uint64, recordID string) (uint64, bool) {
	ctx, cancel := context.WithTimeout(ctx, landedTimeout)
	defer cancel()
	recs, err := e.log.ReadSubject(ctx, subject(wfID), after)
	if err != nil || !ownRecord(recs, recordID) {
		return 0, false
	}
	return recs[0].Seq, true
}

// putBack puts a worker task back in its queue if its take, whose taker
// was told it failed, was stored after all: the record recordID after
// sequence expected, which made the take numbered lease. Nobody holds the
// task then, yet every take of it, its taker's retry included, is
// answered "gone" until its lease expires, which for a task without a
// response timeout is never. Put back, it is dispatched again at once.
// A take the taker did get after all is not disturbed: its result or
// progress, recorded first, makes the put-back late and ignored; after a
// put-back recorded first its result still counts (the task waits
// SCHEDULED, its lease unchanged) until another take makes that lease an
// earlier one.
func (e *Executor) putBack(wfID string, expected uint64, made stamp, taskID string, lease int) {
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		e.onSlot(putBackWindow, func(ctx context.Context) {
			if !e.awaitRecord(ctx, wfID, expected, made) {
				return
			}
			e.handBack(ctx, wfID, taskID, lease, "its take was recorded after its worker was told it failed: handed out again")
		})
	}()
}

// giveBack puts a task taken for a worker that never got it (it did not
// accept the offer) back in its queue, in the background. It is counted
// among the hand-outs from its call: one whose caller is counted too is
// decided before Stop cancels the executor, which would refuse it.
func (e *Executor) giveBack(wfID, taskID string, lease int, reason string) {
	e.handOuts.begin()
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		ran := e.onSlot(putBackWindow, func(ctx context.Context) {
			defer e.handOuts.end()
			e.handBack(ctx, wfID, taskID, lease, reason)
		})
		if !ran {
			e.handOuts.end()
			e.cfg.Logger.Error("a task its taker does not have was not handed back: the engine stopped; it waits for its lease",
				logkey.WorkflowID, wfID, logkey.TaskID, taskID, logkey.Reason, reason)
		}
	}()
}

// handOuts counts the hand-outs to NATS workers under way (polls waiting,
// offers, the hand-backs of offers not accepted), which Stop lets end
// before it cancels the executor: a hand-back is a decision, which a
// stopped executor refuses, and a task taken for a worker that never got
// it stayed IN_PROGRESS for its response timeout. Once stopping, no new
// hand-out opens (open).
type handOuts struct {
	mu       sync.Mutex
	n        int
	stopping bool
	idle     chan struct{} // closed once n is 0 while stopping
}

// begin counts a hand-out that its caller's count covers, or that may
// come too late (see giveBack).
func (h *handOuts) begin() {
	h.mu.Lock()
	h.n++
	h.mu.Unlock()
}

// open counts a new hand-out unless the executor is stopping: one counted
// before Stop began holds it back.
func (h *handOuts) open() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stopping {
		return false
	}
	h.n++
	return true
}

func (h *handOuts) end() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.n--; h.n == 0 && h.idle != nil {
		close(h.idle)
		h.idle = nil
	}
}

// stop opens no more hand-outs and returns a channel closed once those
// under way have ended.
func (h *handOuts) stop() <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.stopping = true
	done := make(chan struct{})
	if h.n == 0 {
		close(done)
		return done
	}
	if h.idle == nil {
		h.idle = make(chan struct{})
	}
	return h.idle
}

// handBack ends the take numbered lease of a task, whose taker does not
// have it, so that it is dispatched again at once. A result or progress of
// that take recorded first makes this late and ignored.
func (e *Executor) handBack(ctx context.Context, wfID, taskID string, lease int, reason string) {
	log := e.cfg.Logger.With(logkey.WorkflowID, wfID, logkey.TaskID, taskID)
	res := conductor.TaskResult{TaskID: taskID, WorkflowInstanceID: wfID, Status: conductor.TaskInProgress, ReasonForIncompletion: reason}
	out, err := e.Submit(ctx, wfID, engine.Result{Result: res, Lease: lease, HandBack: true}, Meta{})
	if err != nil {
		log.Error("a task its taker does not have could not be handed back; it waits for its lease", logkey.Reason, reason, logkey.Err, err)
		return
	}
	if reply, _ := out.Reply.(engine.ResultReply); !reply.Ignored {
		log.Warn("a task its taker does not have was handed out again", logkey.Reason, reason)
	}
}

// awaitRecord waits until the first record after sequence after on wfID's
// subject is stored, and reports whether it is the one made stamps. Once
// another record holds that place, made's append, which expected after,
// can never be stored; one of another engine's decisions on the same
// request holds takes of that engine's, which are not this one's to hand
// back. It gives up (false) when ctx ends.
func (e *Executor) awaitRecord(ctx context.Context, wfID string, after uint64, made stamp) bool {
	backoff := 50 * time.Millisecond
	for {
		recs, err := e.log.ReadSubject(ctx, subject(wfID), after)
		if err == nil && len(recs) > 0 {
			return made.made(recs)
		}
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return false
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// Decided reports whether workflow wfID's log holds a decision of the
// request requestID (Meta.RequestID), made on any engine: a caller that
// takes a request over from an engine that died submitting it learns
// whether that submit landed. It reads the workflow's whole log: for the
// rare caller that needs it, not for a request's every run.
func (e *Executor) Decided(ctx context.Context, wfID, requestID string) (bool, error) {
	recs, err := e.log.ReadSubject(ctx, subject(wfID), 0)
	if err != nil {
		return false, fmt.Errorf("records of workflow %s: %w", wfID, err)
	}
	for _, r := range recs {
		for _, env := range r.Events {
			if env.CausationID == requestID {
				return true, nil
			}
		}
	}
	return false, nil
}
