package executor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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

// Withdrawn announcements. A worker task that ends while SCHEDULED (its
// workflow terminated or timed out, its poll timeout passed, a sibling
// failed the workflow) leaves its announcement on FV_DISPATCH: no poll
// wants it, and until one drains it, or the stream's age limit (24 h)
// ends it, it costs the server memory and counts in the queue's size.
// The decision that ends such a task asks for its withdrawal
// (engine.Withdraw), and the engine that performs it deletes the
// announcement from the stream, found there rather than in any engine's
// memory: the engine that published it may be another, or gone.
//
// Finding it. A dispatch subject is a queue's, shared by all its tasks,
// and the stream indexes messages by subject and time, not by task. The
// announcement was published at or after the task became available
// (engine.Withdraw.Since), so the search reads the queue's subject from
// that time on (less withdrawSlack, for an engine's clock ahead of the
// server's), a batch of messages per request, until it meets the task;
// only if it does not, the messages before that time. Tasks are mostly
// announced in the order they become available: the search reads the few
// announced about as early, not the whole queue.
//
// Races. The announcement may not be published yet: the decision that
// scheduled the task performs its dispatch in the background, as this one
// its withdrawal. So the withdrawal is remembered (withdrawnTTL), here and,
// through a core NATS notice, at the other engines, before the search: a
// dispatch that finds its task withdrawn publishes nothing, and one that
// learns of it only after publishing deletes its own message. A poll that
// pulls the announcement before its deletion gets the task's take
// answered gone, as before; one that pulls after it does not see it; the
// deletion of a message a worker holds ends its ack wait, which the
// server counts as delivered.
//
// A decision whose effects are lost (a crash right after the append)
// withdraws nothing: recovery does not ask again. Its announcements are
// drained by the sweep of idle queues, by a poll, or by the age limit, as
// before.

const (
	// withdrawnSubject is where an engine tells the others of an
	// announcement it withdraws (core NATS, engines' account): the body is
	// withdrawnKey's.
	withdrawnSubject = "fv.engines.withdrawn"
	// withdrawnTTL is how long an engine remembers a withdrawal, for
	// dispatches performed late: longer than an effect waits for a slot.
	withdrawnTTL = 10 * time.Minute
	// withdrawSlack is how far before the task became available its
	// announcement's time may be, by an external server's clock. The
	// embedded server's is the engine's: none.
	withdrawSlack = 2 * time.Second
	// firstWithdrawBatch is how many messages a search's first request
	// reads, doubling with each next up to withdrawBatch: the task is
	// mostly among the first few announced from its time on, and a
	// terminated backlog asks once for each of its tasks.
	firstWithdrawBatch = 8
	withdrawBatch      = 256
	// maxWithdrawnKept bounds the withdrawals remembered.
	maxWithdrawnKept = 100_000
)

// withdrawnKey names a task's hand-off: its id and attempt, as its
// announcement's message id begins.
func withdrawnKey(taskID string, attempt int64) string {
	return taskID + ":" + strconv.FormatInt(attempt, 10)
}

// withdrawals are the hand-offs withdrawn in the last withdrawnTTL.
type withdrawals struct {
	mu    sync.Mutex
	at    map[string]time.Time
	order []string // oldest first, for expiry
}

func newWithdrawals() *withdrawals { return &withdrawals{at: map[string]time.Time{}} }

func (w *withdrawals) add(key string, now time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.expire(now)
	if _, ok := w.at[key]; ok {
		return
	}
	if len(w.order) >= maxWithdrawnKept {
		delete(w.at, w.order[0])
		w.order = w.order[1:]
	}
	w.at[key] = now
	w.order = append(w.order, key)
}

// has reports whether key was withdrawn. An empty set answers without
// taking the lock's cost beyond the lock itself: the dispatch path asks.
func (w *withdrawals) has(key string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.at) == 0 {
		return false
	}
	_, ok := w.at[key]
	return ok
}

func (w *withdrawals) expire(now time.Time) {
	n := 0
	for n < len(w.order) && now.Sub(w.at[w.order[n]]) > withdrawnTTL {
		delete(w.at, w.order[n])
		n++
	}
	if n > 0 {
		w.order = append(w.order[:0:0], w.order[n:]...)
	}
}

// listenForWithdrawals records the withdrawals other engines make.
func (e *Executor) listenForWithdrawals() error {
	sub, err := e.log.Conn().Subscribe(withdrawnSubject, func(m *nats.Msg) {
		e.disp.withdrawn.add(string(m.Data), time.Now())
	})
	if err != nil {
		return fmt.Errorf("subscribe %s: %w", withdrawnSubject, err)
	}
	e.unsubscribeAtStop(sub)
	return nil
}

// withdraw deletes the announcements of a task that ended unpolled: on its
// queue's subject and, for a prioritized task, on its lane's.
func (e *Executor) withdraw(ctx context.Context, eff engine.Withdraw) error {
	key := withdrawnKey(eff.TaskID, eff.Since)
	e.disp.withdrawn.add(key, time.Now())
	// Best effort: an engine that misses it and dispatches the task late
	// leaves an announcement whose take is answered gone.
	_ = e.log.Conn().Publish(withdrawnSubject, []byte(key))
	subjects := []string{workers.DispatchSubject(eff.TaskType, eff.Domain)}
	if prioritized(eff.Priority) {
		subjects = append(subjects, laneSubject(eff.TaskType, eff.Domain, eff.Priority))
	}
	var errs []error
	for _, subject := range subjects {
		if err := e.disp.withdrawFrom(ctx, subject, eff); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// withdrawFrom deletes eff's task's announcement on subject, if the stream
// holds one: searched from the time the task became available, then, if
// not found, before it.
func (d *dispatcher) withdrawFrom(ctx context.Context, subject string, eff engine.Withdraw) error {
	since := time.UnixMilli(eff.Since)
	if d.log.EmbeddedServer() == nil {
		since = since.Add(-withdrawSlack)
	}
	found, from, err := d.searchAnnouncement(ctx, subject, eff, directGet{StartTime: &since}, 0)
	if err != nil || found || from <= 1 {
		return err
	}
	_, _, err = d.searchAnnouncement(ctx, subject, eff, directGet{Seq: 1}, from)
	return err
}

// directGet is a JetStream direct get request: a batch of messages of a
// subject, from a sequence or a time.
type directGet struct {
	Seq       uint64     `json:"seq,omitempty"`
	NextFor   string     `json:"next_by_subj,omitempty"`
	Batch     int        `json:"batch,omitempty"`
	StartTime *time.Time `json:"start_time,omitempty"`
}

// searchAnnouncement reads subject's messages from where req starts, a
// batch at a time, up to the sequence before (0: the end), and deletes the
// first that announces eff's task. first is the sequence of the first
// message read (0 if none).
func (d *dispatcher) searchAnnouncement(ctx context.Context, subject string, eff engine.Withdraw, req directGet, before uint64) (found bool, first uint64, err error) {
	req.NextFor, req.Batch = subject, firstWithdrawBatch
	idPrefix := eff.TaskID + ":"
	for {
		var last uint64
		n, past := 0, false
		err := d.directBatch(ctx, req, func(seq uint64, msgID string) bool {
			if before > 0 && seq >= before {
				past = true
				return false
			}
			if first == 0 {
				first = seq
			}
			last, n = seq, n+1
			// Task ids are unique: the message id, taskID:attempt[...],
			// names the task without decoding the body.
			found = strings.HasPrefix(msgID, idPrefix)
			return !found
		})
		if err != nil {
			return false, first, fmt.Errorf("withdraw task %s from %s: %w", eff.TaskID, subject, err)
		}
		if found {
			return true, first, d.deleteAnnouncement(ctx, last)
		}
		if past || n < req.Batch {
			return false, first, nil
		}
		req.Seq, req.StartTime, req.Batch = last+1, nil, min(2*req.Batch, withdrawBatch)
	}
}

func (d *dispatcher) deleteAnnouncement(ctx context.Context, seq uint64) error {
	stream, err := d.dispatchStream(ctx)
	if err != nil {
		return err
	}
	if err := stream.DeleteMsg(ctx, seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return fmt.Errorf("delete announcement %d: %w", seq, err)
	}
	return nil
}

// directBatch sends a batched direct get and calls fn with each message
// of the answer (its sequence and message id), in order, until fn returns
// false or the batch ends.
func (d *dispatcher) directBatch(ctx context.Context, req directGet, fn func(seq uint64, msgID string) bool) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
	}
	nc := d.log.Conn()
	inbox := nc.NewInbox()
	// Room for a whole batch and its end: a synchronous subscription's
	// channel, sized for 65,536 messages, cost more than the search.
	answers := make(chan *nats.Msg, req.Batch+1)
	sub, err := nc.ChanSubscribe(inbox, answers)
	if err != nil {
		return err
	}
	defer func() { _ = sub.Unsubscribe() }()
	body, _ := json.Marshal(req)
	if err := nc.PublishRequest("$JS.API.DIRECT.GET."+eventlog.Dispatch.Name, inbox, body); err != nil {
		return err
	}
	for {
		var m *nats.Msg
		select {
		case m = <-answers:
		case <-ctx.Done():
			return ctx.Err()
		}
		switch status := m.Header.Get("Status"); status {
		case "":
		case "204", "404": // the end of the batch; no message at all
			return nil
		default:
			return fmt.Errorf("direct get: %s %s", status, m.Header.Get("Description"))
		}
		seq, err := strconv.ParseUint(m.Header.Get(jetstream.SequenceHeader), 10, 64)
		if err != nil {
			return errors.New("direct get: a message without its sequence")
		}
		if !fn(seq, m.Header.Get(jetstream.MsgIDHeader)) {
			return nil
		}
	}
}

// checkWithdrawn reports whether the hand-off of eff was withdrawn before
// its dispatch.
func (d *dispatcher) checkWithdrawn(eff engine.Dispatch) bool {
	return d.withdrawn.has(withdrawnKey(eff.TaskID, eff.Attempt))
}

// withdrawnMeanwhile deletes the announcement at seq (and its lane's
// twin, published after) of a hand-off withdrawn while it was published.
func (d *dispatcher) withdrawnMeanwhile(ctx context.Context, eff engine.Dispatch, seq uint64) bool {
	if !d.checkWithdrawn(eff) {
		return false
	}
	if err := d.deleteAnnouncement(ctx, seq); err != nil {
		d.logger.Debug("announcement of a withdrawn task not deleted", logkey.TaskID, eff.TaskID, logkey.Seq, seq, logkey.Err, err)
	}
	return true
}
