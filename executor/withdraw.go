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
// announcement from the stream, whichever engine published it, gone or
// not.
//
// Finding it. The engine that announced the task knows its messages'
// sequences (announced), and deletes them (each checked to be the task's:
// an external server that lost the in-memory stream numbers others' with
// the same sequences). Another engine, or one that restarted since,
// searches (once it restarted, the tasks it announced again are known
// again). A dispatch subject is a queue's, shared by all its tasks,
// and the stream indexes messages by subject and time, not by task. The
// announcement was published at or after the task became available
// (engine.Withdraw.Since), so the search reads the queue's subject from
// that time on (less withdrawSlack, for an engine's clock ahead of the
// server's), a batch of messages per request, until it meets the task;
// only if it does not, the messages before that time. Tasks are mostly
// announced in the order they become available: the search reads the few
// announced about as early, not the whole queue. It deletes the first it
// meets: a task announced twice (a requeue, a hand-off after an update
// from outside) at another engine keeps its other announcement.
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
	// maxAnnouncedKept bounds the announcements remembered by task (about
	// 100 bytes each): a task taken meanwhile is forgotten only as newer
	// ones push it out.
	maxAnnouncedKept = 100_000
)

// withdrawnKey names a task's hand-off: its id and attempt, as its
// announcement's message id begins.
func withdrawnKey(taskID string, attempt int64) string {
	return taskID + ":" + strconv.FormatInt(attempt, 10)
}

// recent maps keys to values, forgetting the oldest first: past max keys,
// and, by expire, those put longer ago than a limit. Its callers lock it.
type recent[V any] struct {
	m     map[string]recentEntry[V]
	order []recentKey // oldest first from head; keys deleted since stay, skipped
	head  int
	max   int
}

type recentEntry[V any] struct {
	v  V
	at time.Time
}

type recentKey struct {
	key string
	at  time.Time
}

func newRecent[V any](max int) recent[V] { return recent[V]{m: map[string]recentEntry[V]{}, max: max} }

func (r *recent[V]) get(key string) (V, bool) {
	e, ok := r.m[key]
	return e.v, ok
}

// put sets key's value; a key already held keeps its place and time.
func (r *recent[V]) put(key string, v V, at time.Time) {
	if e, ok := r.m[key]; ok {
		r.m[key] = recentEntry[V]{v, e.at}
		return
	}
	for len(r.m) >= r.max && r.head < len(r.order) {
		r.pop()
	}
	r.m[key] = recentEntry[V]{v, at}
	r.order = append(r.order, recentKey{key, at})
	// Keys deleted keep their places, which only the bound or expiry
	// pops: a map held under its bound by deletes (tasks withdrawn as
	// fast as they are announced) would grow the order by a key each put,
	// forever. Past twice the bound, the places of keys no longer held go.
	if len(r.order)-r.head > 2*r.max {
		r.compact()
	}
}

// compact drops the places of keys deleted, or put again since.
func (r *recent[V]) compact() {
	kept := make([]recentKey, 0, len(r.m))
	for _, k := range r.order[r.head:] {
		if e, ok := r.m[k.key]; ok && e.at.Equal(k.at) {
			kept = append(kept, k)
		}
	}
	r.order, r.head = kept, 0
}

func (r *recent[V]) delete(key string) { delete(r.m, key) }

// expire forgets the keys put before limit.
func (r *recent[V]) expire(limit time.Time) {
	for r.head < len(r.order) && r.order[r.head].at.Before(limit) {
		r.pop()
	}
}

// pop forgets the oldest place in the order, and its key if the key was
// put there and is still held (not deleted, nor deleted and put again).
func (r *recent[V]) pop() {
	k := r.order[r.head]
	r.order[r.head] = recentKey{}
	r.head++
	if e, ok := r.m[k.key]; ok && e.at.Equal(k.at) {
		delete(r.m, k.key)
	}
	// The spent front is let go once it is half the slice: each key is
	// copied at most once more, not once for each key put after it.
	if r.head > len(r.order)/2 {
		r.order = append(r.order[:0:0], r.order[r.head:]...)
		r.head = 0
	}
}

// withdrawals are the hand-offs withdrawn in the last withdrawnTTL.
type withdrawals struct {
	mu sync.Mutex
	at recent[struct{}]
}

func newWithdrawals() *withdrawals { return &withdrawals{at: newRecent[struct{}](maxWithdrawnKept)} }

func (w *withdrawals) add(key string, now time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.at.expire(now.Add(-withdrawnTTL))
	w.at.put(key, struct{}{}, now)
}

// has reports whether key was withdrawn.
func (w *withdrawals) has(key string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.at.m) == 0 {
		return false
	}
	_, ok := w.at.get(key)
	return ok
}

// announced are the stream sequences of the announcements this engine
// published lately, by task: the engine that announced a task withdraws
// it without a search, the common case (one engine; an engine that
// announced a backlog again at its start, each message at the old time
// of its task's availability, which a search from that time would read
// the whole queue to find), and withdraws every announcement of it (a
// requeue's, an earlier hand-off's).
type announced struct {
	mu   sync.Mutex
	seqs recent[[]uint64]
}

func newAnnounced() *announced { return &announced{seqs: newRecent[[]uint64](maxAnnouncedKept)} }

func (a *announced) add(taskID string, seq uint64, now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	seqs, _ := a.seqs.get(taskID)
	a.seqs.put(taskID, append(seqs, seq), now)
}

// take returns and forgets the sequences of taskID's announcements.
func (a *announced) take(taskID string) []uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	seqs, _ := a.seqs.get(taskID)
	a.seqs.delete(taskID)
	return seqs
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
	var errs []error
	if seqs := e.disp.announced.take(eff.TaskID); len(seqs) > 0 {
		for _, seq := range seqs {
			errs = append(errs, e.disp.deleteOwn(ctx, seq, eff.TaskID))
		}
	} else {
		subjects := []string{workers.DispatchSubject(eff.TaskType, eff.Domain)}
		if prioritized(eff.Priority) {
			subjects = append(subjects, laneSubject(eff.TaskType, eff.Domain, eff.Priority))
		}
		for _, subject := range subjects {
			errs = append(errs, e.disp.withdrawFrom(ctx, subject, eff))
		}
	}
	// Best effort, and not tried again: a message left behind is drained
	// by a poll, the idle sweep or the age limit.
	if err := errors.Join(errs...); err != nil {
		e.cfg.Logger.Debug("announcement of a task that ended unpolled not withdrawn", logkey.TaskID, eff.TaskID, logkey.Err, err)
	}
	return nil
}

// deleteOwn deletes the announcement of taskID at seq, if the message
// there is one: a server that lost the in-memory stream made it again,
// and its sequences now number other tasks' announcements.
func (d *dispatcher) deleteOwn(ctx context.Context, seq uint64, taskID string) error {
	stream, err := d.dispatchStream(ctx)
	if err != nil {
		return err
	}
	m, err := stream.GetMsg(ctx, seq)
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return nil // taken, or deleted already
	case err != nil:
		return fmt.Errorf("announcement %d: %w", seq, err)
	case !strings.HasPrefix(m.Header.Get(jetstream.MsgIDHeader), taskID+":"):
		return nil
	}
	return d.deleteAnnouncement(ctx, seq)
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
	// from 0: nothing from that time on (an engine's clock ahead of the
	// server's): the whole subject is searched.
	if err != nil || found || from == 1 {
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
	// The server answers nothing at all when it cannot count what is
	// pending: an effect's own deadline is minutes away.
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
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
