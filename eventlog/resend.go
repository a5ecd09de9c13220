package eventlog

import (
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
)

// resendEvery is how long a publish waits for its acknowledgement before
// it is sent again, under the same reply subject and Nats-Msg-Id. A
// publish sent to a stream leader that crashed goes with it, and the
// followers neither answer it nor, until their election timeout (4 to
// 9 s), know the leader is gone; waited for alone, its answer held an
// append for the whole publishTimeout, and a worker's result sent in
// time lost to a response timeout decided after the election. Sent again,
// the leader elected meanwhile stores it, or, when the first was stored
// after all, answers "duplicate" with the first's sequence: a clustered
// stream's leader looks the message id up before it checks an expected
// last sequence (nats-server 2.15's checkMsgHeadersPreClusteredProposal),
// and one whose first is still being stored answers "in process" while
// the first's acknowledgement is on its way to the same reply subject. A
// single server checks the expectation first: a repeat of an append it
// stored answers "wrong last sequence", which Append resolves by the
// message id (findMsgID).
const resendEvery = time.Second

// replies routes the answers to the log's publishes: one subscription
// under one inbox, each publish a token of its own. nats.go's requests
// pick a new reply subject for every request, where a publish sent again
// must keep its first one, whose answer may still come.
type replies struct {
	prefix string
	sub    *nats.Subscription
	next   atomic.Uint64

	mu      sync.Mutex
	waiting map[string]chan *nats.Msg
	closed  bool
}

func newReplies(nc *nats.Conn) (*replies, error) {
	r := &replies{prefix: nc.NewInbox() + ".", waiting: map[string]chan *nats.Msg{}}
	sub, err := nc.Subscribe(r.prefix+"*", r.deliver)
	if err != nil {
		return nil, err
	}
	r.sub = sub
	return r, nil
}

// deliver hands an answer to its publish. One for a publish no longer
// waiting (answered already, or given up) is dropped.
func (r *replies) deliver(m *nats.Msg) {
	token := m.Subject[len(r.prefix):]
	// Under the lock: close closes the channels.
	r.mu.Lock()
	defer r.mu.Unlock()
	select {
	case r.waiting[token] <- m: // a nil channel (nobody waiting) never takes it
	default: // more answers than sends: the publish took one already
	}
}

// sendsRoom is the room for the answers to a request sent again until it
// is answered: a send's answer, and late ones to the sends before it.
const sendsRoom = 8

// open returns a reply subject of its own and where its answers come,
// until done is called; answers is closed if the connection closes. It
// holds room answers: more are dropped, so room must be every answer
// the request may get.
func (r *replies) open(room int) (subject string, answers <-chan *nats.Msg, done func()) {
	token := strconv.FormatUint(r.next.Add(1), 36)
	ch := make(chan *nats.Msg, room)
	r.mu.Lock()
	if r.closed {
		close(ch)
	} else {
		r.waiting[token] = ch
	}
	r.mu.Unlock()
	return r.prefix + token, ch, func() {
		r.mu.Lock()
		delete(r.waiting, token)
		r.mu.Unlock()
	}
}

// close releases the publishes waiting: their connection closed, and
// their answers will not come.
func (r *replies) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	r.closed = true
	for token, ch := range r.waiting {
		close(ch)
		delete(r.waiting, token)
	}
}

// noResponders reports the server's answer that nobody listens on the
// subject: a stream without a leader for a moment.
func noResponders(m *nats.Msg) bool {
	return len(m.Data) == 0 && m.Header.Get("Status") == "503"
}
