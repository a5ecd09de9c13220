package eventlog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flowvault/flowvault/schemas"
)

// Record is one message of the log: the events of one decision.
type Record struct {
	Stream  string
	Subject string
	Seq     uint64
	Time    time.Time
	MsgID   string
	Events  []schemas.Envelope
	// Err is set, and Events empty, when the message is not a valid record
	// (a poison message). Readers decide whether to skip, park or stop.
	Err error
}

func newRecord(stream, subject string, seq uint64, ts time.Time, msgID string, data []byte) Record {
	r := Record{Stream: stream, Subject: subject, Seq: seq, Time: ts, MsgID: msgID}
	r.Events, r.Err = schemas.DecodeRecord(data)
	if r.Err != nil {
		r.Err = fmt.Errorf("record %s #%d: %w", subject, seq, r.Err)
	}
	return r
}

// directGetAPI is the subject prefix of direct gets, which every replica
// of a stream answers (AllowDirect).
const directGetAPI = "$JS.API.DIRECT.GET."

// readBatch is how many messages one direct-get request asks for.
const readBatch = 256

// readBatchBytes bounds the bytes of one direct-get batch (the server
// always sends at least one message). Without it the server stops only
// past its max_pending (64 MiB), the very limit at which it closes the
// connection as a slow consumer.
const readBatchBytes = 8 << 20

// readTimeout bounds the wait for one read request's answer (a batch's
// whole answer), whatever its caller's deadline: an answer lost with the
// server that would give it (see publishTimeout) never comes, and a
// caller with minutes to spare (an executor's effect) waited them out.
// A read of many batches asks each with its own bound.
const readTimeout = 10 * time.Second

// ReadSubject returns the records on subject with a sequence greater than
// after, in order. Poison messages are returned with Err set.
func (l *Log) ReadSubject(ctx context.Context, subject string, after uint64) ([]Record, error) {
	if l.closed.Load() {
		return nil, ErrClosed
	}
	s, err := streamOf("read", subject)
	if err != nil {
		return nil, err
	}
	next := after + 1
	var out []Record
	if after > 0 {
		// Usually the caller is up to date: the next record is asked for
		// alone, without the subscription a batch takes (17 µs to find
		// nothing, against 1.8 ms for a batch's request, behind a thousand
		// other subjects' records). On a cluster the leader is asked: a
		// follower's "nothing" would be trusted.
		look := l.nextRecord
		if l.leaderReads {
			look = l.leaderNext
		}
		first, found, err := look(ctx, s.Name, subject, next)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", subject, err)
		}
		if !found {
			return nil, nil
		}
		out, next = append(out, first), first.Seq+1
	}
	for {
		batch, more, err := l.directBatch(ctx, s.Name, directGetRequest{Seq: next, NextFor: subject, Batch: readBatch})
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", subject, err)
		}
		out = append(out, batch...)
		if len(batch) > 0 {
			next = batch[len(batch)-1].Seq + 1
			if more {
				continue
			}
		}
		if !l.leaderReads {
			return out, nil
		}
		// The replica that answered may not have applied the newest
		// acknowledged records yet: the leader has, and names the first
		// one missing. Reading on from it, by direct gets again, ends when
		// the leader has nothing past what was read.
		rec, found, err := l.leaderNext(ctx, s.Name, subject, next)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", subject, err)
		}
		if !found {
			return out, nil
		}
		out, next = append(out, rec), rec.Seq+1
	}
}

// FirstRecord returns the first record on subject (found false: none),
// with one direct get: what started an aggregate, without reading the
// rest of it.
func (l *Log) FirstRecord(ctx context.Context, subject string) (rec Record, found bool, err error) {
	if l.closed.Load() {
		return Record{}, false, ErrClosed
	}
	s, err := streamOf("read", subject)
	if err != nil {
		return Record{}, false, err
	}
	if rec, found, err = l.nextRecord(ctx, s.Name, subject, 1); err != nil {
		return Record{}, false, fmt.Errorf("read %s: %w", subject, err)
	}
	if found || !l.leaderReads {
		return rec, found, nil
	}
	// A follower's first record is the subject's first (it holds a prefix
	// of the stream), but its "none" may be a subject just begun.
	if rec, found, err = l.leaderNext(ctx, s.Name, subject, 1); err != nil {
		return Record{}, false, fmt.Errorf("read %s: %w", subject, err)
	}
	return rec, found, nil
}

type directGetRequest struct {
	Seq     uint64 `json:"seq,omitempty"`
	NextFor string `json:"next_by_subj,omitempty"`
	LastFor string `json:"last_by_subj,omitempty"`
	Batch   int    `json:"batch,omitempty"`
	// MaxBytes bounds the bytes of a batch (0: the server's max_pending).
	MaxBytes int `json:"max_bytes,omitempty"`
	// StartTime, when set, replaces Seq: the first message stored at or
	// after it.
	StartTime *time.Time `json:"start_time,omitempty"`
}

// directBatch fetches up to r.Batch messages matching r with one request.
// more reports whether the server has further matching messages.
func (l *Log) directBatch(ctx context.Context, stream string, r directGetRequest) (recs []Record, more bool, err error) {
	if r.Batch > 1 && r.MaxBytes == 0 {
		r.MaxBytes = readBatchBytes
	}
	req, _ := json.Marshal(r)
	// Through the log's reply subscription: a subscription of its own for
	// each read (nats.go's SubscribeSync) made and zeroed a channel of
	// 65,536 messages, half a megabyte, and cost the server a subscribe
	// and an unsubscribe. The answer is up to Batch messages and its end.
	inbox, answers, done := l.replies.Load().open(max(r.Batch, 1) + 1)
	defer done()
	if err := l.nc.PublishRequest(l.directAPI+stream, inbox, req); err != nil {
		return nil, false, err
	}
	ctx, cancel := context.WithTimeout(ctx, readTimeout)
	defer cancel()
	for {
		var m *nats.Msg
		select {
		case <-ctx.Done():
			return nil, false, ctx.Err()
		case answer, ok := <-answers:
			if !ok {
				return nil, false, nats.ErrConnectionClosed
			}
			m = answer
		}
		switch m.Header.Get("Status") {
		case "":
		case "404": // nothing at or after seq on this subject
			return recs, false, nil
		case "204": // end of batch
			if err := chained(m, recs); err != nil {
				return nil, false, fmt.Errorf("direct get %s: %w", stream, err)
			}
			pending, _ := strconv.ParseUint(m.Header.Get("Nats-Num-Pending"), 10, 64)
			return recs, pending > 0, nil
		case "408":
			return nil, false, fmt.Errorf("direct get %s: %s", stream, m.Header.Get("Description"))
		default:
			return nil, false, fmt.Errorf("direct get %s: status %s %s", stream, m.Header.Get("Status"), m.Header.Get("Description"))
		}
		if err := chained(m, recs); err != nil {
			return nil, false, fmt.Errorf("direct get %s: %w", stream, err)
		}
		rec, err := headerRecord(m)
		if err != nil {
			return nil, false, err
		}
		recs = append(recs, rec)
	}
}

// chained checks that m follows the last of recs in its batch: the server
// names, in each message of a batch and in its end, the sequence of the
// message before (0 before the first). A reply lost on the way (the
// connection dropped and came back mid-batch: the reply inbox is
// subscribed again and gets the rest) would otherwise leave a silent gap.
func chained(m *nats.Msg, recs []Record) error {
	v := m.Header.Get(jetstream.LastSequenceHeader)
	if v == "" {
		return nil
	}
	prev, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return fmt.Errorf("bad last sequence header %q", v)
	}
	var want uint64
	if len(recs) > 0 {
		want = recs[len(recs)-1].Seq
	}
	if prev != want {
		return fmt.Errorf("batch lost the replies between sequences %d and %d", want, prev)
	}
	return nil
}

func headerRecord(m *nats.Msg) (Record, error) {
	seq, err := strconv.ParseUint(m.Header.Get(jetstream.SequenceHeader), 10, 64)
	if err != nil {
		return Record{}, fmt.Errorf("direct get: bad sequence header: %w", err)
	}
	ts, _ := time.Parse(time.RFC3339Nano, m.Header.Get(jetstream.TimeStampHeaer))
	return newRecord(m.Header.Get(jetstream.StreamHeader), m.Header.Get(jetstream.SubjectHeader), seq, ts,
		m.Header.Get(jetstream.MsgIDHeader), m.Data), nil
}

// LastSeq returns the sequence of the last record on subject, or 0 if the
// subject is empty. It is the expectation for an append that must not lose
// a race.
func (l *Log) LastSeq(ctx context.Context, subject string) (uint64, error) {
	s, err := streamOf("last", subject)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, readTimeout)
	defer cancel()
	m, err := l.nc.RequestWithContext(ctx, l.directAPI+s.Name+"."+subject, nil)
	if err != nil {
		return 0, fmt.Errorf("last %s: %w", subject, err)
	}
	switch m.Header.Get("Status") {
	case "":
	case "404":
		return l.leaderLast(ctx, s.Name, subject, 0)
	default:
		return 0, fmt.Errorf("last %s: status %s %s", subject, m.Header.Get("Status"), m.Header.Get("Description"))
	}
	seq, err := strconv.ParseUint(m.Header.Get(jetstream.SequenceHeader), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("last %s: bad sequence header: %w", subject, err)
	}
	return l.leaderLast(ctx, s.Name, subject, seq)
}

// leaderLast confirms with the stream's leader that seq, a replica's
// answer, is the subject's last sequence, or returns the leader's. Asking
// for the record after seq carries no payload when there is none, where
// the leader's last record would come whole.
func (l *Log) leaderLast(ctx context.Context, stream, subject string, seq uint64) (uint64, error) {
	if !l.leaderReads {
		return seq, nil
	}
	_, found, err := l.leaderNext(ctx, stream, subject, seq+1)
	if err != nil {
		return 0, fmt.Errorf("last %s: %w", subject, err)
	}
	if !found {
		return seq, nil
	}
	last, _, err := l.leaderGet(ctx, stream, directGetRequest{LastFor: subject})
	if err != nil {
		return 0, fmt.Errorf("last %s: %w", subject, err)
	}
	return last.Seq, nil
}

// nextRecord returns the first record on subject at or after seq (found
// false: none), with one direct get of one message: a reader up to date
// gets a 404 and no payload. ReadSubject compared the subject's last
// sequence instead (LastSeq), whose answer carries the last record whole:
// a fork's, which holds every branch's task, a megabyte at a few thousand
// branches, fetched again by each child that read its parent.
func (l *Log) nextRecord(ctx context.Context, stream, subject string, seq uint64) (Record, bool, error) {
	return l.directOne(ctx, stream, directGetRequest{Seq: seq, NextFor: subject})
}

// recordAt returns the record at seq of stream (found false: none there).
// On a cluster the leader answers: a follower's "none" may be a record it
// has not applied yet.
func (l *Log) recordAt(ctx context.Context, stream string, seq uint64) (Record, bool, error) {
	if l.leaderReads {
		return l.leaderGet(ctx, stream, directGetRequest{Seq: seq})
	}
	return l.directOne(ctx, stream, directGetRequest{Seq: seq})
}

// directOne returns the one message r selects (found false: none), with
// one direct get.
func (l *Log) directOne(ctx context.Context, stream string, r directGetRequest) (Record, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, readTimeout)
	defer cancel()
	req, _ := json.Marshal(r)
	m, err := l.nc.RequestWithContext(ctx, l.directAPI+stream, req)
	if err != nil {
		return Record{}, false, err
	}
	switch m.Header.Get("Status") {
	case "":
	case "404":
		return Record{}, false, nil
	default:
		return Record{}, false, fmt.Errorf("direct get %s: status %s %s", stream, m.Header.Get("Status"), m.Header.Get("Description"))
	}
	rec, err := headerRecord(m)
	return rec, err == nil, err
}

// StreamLastSeq returns the last sequence stored in a stream (0 if empty).
func (l *Log) StreamLastSeq(ctx context.Context, stream string) (uint64, error) {
	st, err := l.streamState(ctx, stream)
	return st.LastSeq, err
}

// StreamCreated returns when a stream was made: a stream removed and
// made again (a server that came back without its store) is another.
func (l *Log) StreamCreated(ctx context.Context, stream string) (time.Time, error) {
	info, err := l.streamInfo(ctx, stream)
	if err != nil {
		return time.Time{}, err
	}
	return info.Created, nil
}

// StreamLastTime returns when the last message of a stream was stored
// (the zero time if it is empty).
func (l *Log) StreamLastTime(ctx context.Context, stream string) (time.Time, error) {
	st, err := l.streamState(ctx, stream)
	return st.LastTime, err
}

// ErrLogLost is an event stream that no longer holds every record it
// acknowledged.
var ErrLogLost = errors.New("the event log lost acknowledged records")

// CheckKept reports (ErrLogLost) an event stream that lacks records it
// acknowledged. Event streams keep every record forever, so their
// sequences run from 1 to the last without a gap; a store that lost part
// of a block (a power cut under relaxed fsync, a damaged disk, a file
// truncated) keeps counting where it was, and the lost sequences read as
// deleted. Streams of other kinds have nothing to check.
func (l *Log) CheckKept(ctx context.Context, stream string) error {
	if s, ok := streamNamed(stream); !ok || s.Kind != EventStream {
		return nil
	}
	st, err := l.streamState(ctx, stream)
	if err != nil {
		return err
	}
	return kept(stream, st, l.holes.has(stream))
}

// kept reports (ErrLogLost) an event stream whose state shows a gap. One
// whose first writes were refused on a full disk before any of its
// records was acknowledged (refused, holes.go) may begin after the
// sequences they took.
func kept(stream string, st jetstream.StreamState, refused bool) error {
	if st.LastSeq == 0 || st.FirstSeq == 1 && st.Msgs == st.LastSeq {
		return nil
	}
	if refused && st.Msgs == st.LastSeq+1-st.FirstSeq {
		return nil
	}
	return fmt.Errorf("stream %s holds %d of the %d records it acknowledged: "+
		"restore the data directory from a backup taken after the last acknowledged write: %w",
		stream, st.Msgs, st.LastSeq, ErrLogLost)
}

// streamNamed returns the stream of flowvault's called name.
func streamNamed(name string) (Stream, bool) {
	for _, s := range AllStreams {
		if s.Name == name {
			return s, true
		}
	}
	return Stream{}, false
}

func (l *Log) streamState(ctx context.Context, stream string) (jetstream.StreamState, error) {
	info, err := l.streamInfo(ctx, stream)
	if err != nil {
		return jetstream.StreamState{}, err
	}
	return info.State, nil
}

// leaderNext returns the first record on subject at or after seq (found
// false: none) as the stream's leader has it. STREAM.MSG.GET is answered
// by the leader alone, which stores a record before it acknowledges it:
// its answer holds every record acknowledged before the request, where a
// direct get may come from a follower that has not applied them yet
// (nats-server's direct get takes no sequence to wait for).
func (l *Log) leaderNext(ctx context.Context, stream, subject string, seq uint64) (Record, bool, error) {
	return l.leaderGet(ctx, stream, directGetRequest{Seq: seq, NextFor: subject})
}

// askLeader sends req to subject, again every leaderAskEvery until an
// answer comes (the first, to any of the requests) or ctx ends. The
// answers come through the log's reply subscription (replies), as its
// publishes' do: a subscription of its own for each request cost every
// read on a cluster a subscribe and an unsubscribe at the server.
func (l *Log) askLeader(ctx context.Context, subject string, req []byte) (*nats.Msg, error) {
	reply, answers, done := l.replies.Load().open(sendsRoom)
	defer done()
	next := time.NewTimer(leaderAskEvery)
	defer next.Stop()
	for {
		if err := l.nc.PublishRequest(subject, reply, req); err != nil {
			return nil, err
		}
		next.Reset(leaderAskEvery)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case m, ok := <-answers:
			switch {
			case !ok:
				return nil, nats.ErrConnectionClosed
			case noResponders(m):
				return nil, nats.ErrNoResponders
			}
			return m, nil
		case <-next.C:
		}
	}
}

// msgGetResponse is the answer of STREAM.MSG.GET.
type msgGetResponse struct {
	Message *struct {
		Subject string    `json:"subject"`
		Seq     uint64    `json:"seq"`
		Header  []byte    `json:"hdrs"`
		Data    []byte    `json:"data"`
		Time    time.Time `json:"time"`
	} `json:"message"`
	Error *struct {
		Code        int    `json:"code"`
		Description string `json:"description"`
	} `json:"error"`
}

// leaderGetAPI is the subject prefix of the gets only a stream's leader
// answers.
const leaderGetAPI = "$JS.API.STREAM.MSG.GET."

// leaderAskEvery is how long a get at a stream's leader waits for its
// answer before it is sent again. A leader that crashed takes the
// requests sent to it along, and its followers neither answer them nor,
// until their election timeout (4 to 9 s), know it is gone: a request
// sent then is never answered, while the leader elected meanwhile
// answers the same request at once. Waited for alone, it held a timer's
// tick or a schedule's fire for the whole readTimeout, seconds past the
// election. A get is a read: asked twice, it is answered twice.
const leaderAskEvery = time.Second

// leaderGet asks the stream's leader for the one message r selects.
func (l *Log) leaderGet(ctx context.Context, stream string, r directGetRequest) (Record, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, readTimeout)
	defer cancel()
	req, _ := json.Marshal(r)
	m, err := l.askLeader(ctx, l.leaderAPI+stream, req)
	if err != nil {
		return Record{}, false, fmt.Errorf("leader get %s: %w", stream, err)
	}
	var resp msgGetResponse
	if err := json.Unmarshal(m.Data, &resp); err != nil {
		return Record{}, false, fmt.Errorf("leader get %s: bad answer: %w", stream, err)
	}
	switch {
	case resp.Error != nil && resp.Error.Code == 404:
		return Record{}, false, nil
	case resp.Error != nil:
		return Record{}, false, fmt.Errorf("leader get %s: %d %s", stream, resp.Error.Code, resp.Error.Description)
	case resp.Message == nil:
		return Record{}, false, fmt.Errorf("leader get %s: an answer without a message", stream)
	}
	msg := resp.Message
	var msgID string
	if len(msg.Header) > 0 {
		h, err := nats.DecodeHeadersMsg(msg.Header)
		if err != nil {
			return Record{}, false, fmt.Errorf("leader get %s #%d: bad headers: %w", stream, msg.Seq, err)
		}
		msgID = h.Get(jetstream.MsgIDHeader)
	}
	return newRecord(stream, msg.Subject, msg.Seq, msg.Time, msgID, msg.Data), true, nil
}
