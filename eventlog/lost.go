package eventlog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flowvault/flowvault/internal/logkey"
)

// A server that comes back without its data.
//
// An external NATS server that restarts without its store (a fresh
// volume, a store that lost its tail under its sync interval) answers as
// before: the log would make its streams again on reconnection, appends
// would take sequences the lost records had, and a follower resuming
// after its last record would skip the new ones that reuse them. At
// start that is refused (CheckKept, and a read model ahead of its log);
// while the log runs, each reconnection is checked the same way before
// anything goes on: every event stream must be the one the log knew
// (created at the same time), hold at least every sequence this process
// saw acknowledged or delivered, and hold them without a gap. One that
// does not stops the log for good: it makes no stream again, its appends
// and followers fail with ErrLogLost, and Lost is closed for its owner
// to stop the process.

// knownStream is what the log knows of one of its event streams.
type knownStream struct {
	created time.Time // when the server made it; fixed for its life

	mu    sync.Mutex
	seq   uint64 // highest sequence acknowledged or delivered here
	msgID string // the message id of the record at seq
}

// lostState is the log's record of its checks after reconnections.
type lostState struct {
	known map[string]*knownStream // event streams, filled by Open

	mu       sync.Mutex
	verified uint64        // reconnections (nats.Conn's count) checked
	moved    chan struct{} // closed and replaced when verified moves
	err      error         // why the log stopped, once lost is closed
	lost     chan struct{}
}

func newLostState() lostState {
	return lostState{known: map[string]*knownStream{}, moved: make(chan struct{}), lost: make(chan struct{})}
}

// Lost is closed when the log found, after a reconnection, that its
// server no longer holds records this process saw acknowledged: Err
// says which stream and what was lost. The log refuses to go on; its
// owner should stop.
func (l *Log) Lost() <-chan struct{} { return l.lost.lost }

// Err is why the log stopped (ErrLogLost), nil while it runs.
func (l *Log) Err() error {
	l.lost.mu.Lock()
	defer l.lost.mu.Unlock()
	return l.lost.err
}

// knowStreams records the event streams as the log finds them at Open.
func (l *Log) knowStreams(ctx context.Context) error {
	for _, s := range AllStreams {
		if s.Kind != EventStream {
			continue
		}
		info, err := l.streamInfo(ctx, s.Name)
		if err != nil {
			return err
		}
		k := &knownStream{created: info.Created}
		if last := info.State.LastSeq; last > 0 {
			rec, found, err := l.recordAt(ctx, s.Name, last)
			switch {
			case err != nil:
				return fmt.Errorf("stream %s: %w", s.Name, err)
			case found: // else lost: CheckKept tells
				k.seq, k.msgID = last, rec.MsgID
			}
		}
		l.lost.known[s.Name] = k
	}
	return nil
}

// saw notes that the record msgID was acknowledged or delivered at seq of
// stream.
func (l *Log) saw(stream string, seq uint64, msgID string) {
	k := l.lost.known[stream]
	if k == nil {
		return
	}
	k.mu.Lock()
	if seq > k.seq {
		k.seq, k.msgID = seq, msgID
	}
	k.mu.Unlock()
}

// checkStreams reports (ErrLogLost) an event stream that is not the one
// the log knew, or lacks records it saw: the last record it saw must be
// where it was (others may have appended after it meanwhile, from a
// lower sequence, on a server that lost records). Other errors are the
// server's not answering yet.
func (l *Log) checkStreams(ctx context.Context) error {
	for _, s := range AllStreams {
		k := l.lost.known[s.Name]
		if k == nil {
			continue
		}
		k.mu.Lock()
		seen, msgID := k.seq, k.msgID
		k.mu.Unlock()
		info, err := l.streamInfo(ctx, s.Name)
		switch {
		case errors.Is(err, jetstream.ErrStreamNotFound):
			return fmt.Errorf("stream %s is gone from the NATS server, which had acknowledged records up to sequence %d: "+
				"the server came back without its data: %w", s.Name, seen, ErrLogLost)
		case err != nil:
			return err
		case !info.Created.Equal(k.created):
			return fmt.Errorf("stream %s on the NATS server was made again (created %s, the log knew it created %s), "+
				"holding %d records where it had acknowledged records up to sequence %d: the server came back without its data: %w",
				s.Name, info.Created.UTC().Format(time.RFC3339Nano), k.created.UTC().Format(time.RFC3339Nano), info.State.Msgs, seen, ErrLogLost)
		case info.State.LastSeq < seen:
			return fmt.Errorf("stream %s ends at sequence %d, but had acknowledged records up to %d: "+
				"the NATS server came back without its last records: %w", s.Name, info.State.LastSeq, seen, ErrLogLost)
		}
		if err := kept(s.Name, info.State, l.holes.has(s.Name)); err != nil {
			return err
		}
		if seen == 0 {
			continue
		}
		// On a cluster the leader is asked: the server reconnected to may
		// be a follower that has not applied the last record yet, which
		// is not a lost one.
		rec, found, err := l.recordAt(ctx, s.Name, seen)
		switch {
		case err != nil:
			return fmt.Errorf("stream %s: %w", s.Name, err)
		case !found:
			return fmt.Errorf("stream %s no longer holds the record it acknowledged at sequence %d: "+
				"the NATS server came back without its last records: %w", s.Name, seen, ErrLogLost)
		case rec.MsgID != msgID:
			return fmt.Errorf("stream %s holds another record at sequence %d than the one it acknowledged there (id %q, not %q): "+
				"the NATS server came back without its last records, and took others in their place: %w",
				s.Name, seen, rec.MsgID, msgID, ErrLogLost)
		}
	}
	return nil
}

// fail stops the log for good with err (ErrLogLost).
func (l *Log) fail(err error) {
	l.lost.mu.Lock()
	if l.lost.err != nil {
		l.lost.mu.Unlock()
		return
	}
	l.lost.err = err
	close(l.lost.lost)
	l.lost.mu.Unlock()
	l.logger.Error("the event log's NATS server came back without records it had acknowledged: "+
		"the log refuses to go on (appends fail, read models stop)", logkey.Err, err)
}

// setVerified records that the streams were found intact after the
// connection's reconnections up to n.
func (l *Log) setVerified(n uint64) {
	l.lost.mu.Lock()
	if n > l.lost.verified {
		l.lost.verified = n
		close(l.lost.moved)
		l.lost.moved = make(chan struct{})
	}
	l.lost.mu.Unlock()
}

// reconnections is how often the connection has reconnected (or tried
// to): nats.go counts one before it reads anything on a new connection.
// A restart of the embedded server's store (recover.go) counts as one:
// its streams are checked the same way.
func (l *Log) reconnections() uint64 { return l.nc.Stats().Reconnects + l.storeRestarts.Load() }

// verified reports whether the streams were found intact since the last
// reconnection, without waiting for a check under way.
func (l *Log) verified() bool {
	l.lost.mu.Lock()
	defer l.lost.mu.Unlock()
	return l.lost.err == nil && l.reconnections() <= l.lost.verified
}

// intact returns nil once the streams have been checked since the last
// reconnection, waiting for the check while it is under way, and
// ErrLogLost when the check found the server without its data. With
// failFast (an append) it does not wait while the connection is away,
// since what the caller sends fails anyway, nor longer than checkWait.
func (l *Log) intact(ctx context.Context, failFast bool) error {
	var timeout <-chan time.Time
	for {
		l.lost.mu.Lock()
		err, verified, moved := l.lost.err, l.lost.verified, l.lost.moved
		l.lost.mu.Unlock()
		if err != nil {
			return err
		}
		if l.reconnections() <= verified || failFast && !l.nc.IsConnected() {
			return nil
		}
		if failFast && timeout == nil {
			t := time.NewTimer(checkWait)
			defer t.Stop()
			timeout = t.C
		}
		select {
		case <-moved:
		case <-l.lost.lost:
		case <-l.done:
			return ErrClosed
		case <-ctx.Done():
			return ctx.Err()
		case <-timeout:
			// Unavailable: the caller may try again.
			return fmt.Errorf("the streams are not checked yet after a reconnection: %w", nats.ErrConnectionReconnecting)
		}
	}
}

// checkWait bounds how long an append waits for the streams to be
// checked after a reconnection.
const checkWait = 5 * time.Second

// streamInfoAPI is the subject prefix of stream info requests.
const streamInfoAPI = "$JS.API.STREAM.INFO."

// streamInfo asks the stream's leader for its info, again every
// leaderAskEvery until answered (askLeader), within readTimeout: a
// request sent while a leader that crashed is still taken for the leader
// is answered by nobody, and the streams' check after a reconnection
// waited for it its whole 5 s, twice, where the leader was elected within
// 7 s; appends waited for that check meanwhile (intact). An info is a
// read: asked twice, it is answered twice.
func (l *Log) streamInfo(ctx context.Context, stream string) (*jetstream.StreamInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, readTimeout)
	defer cancel()
	m, err := l.askLeader(ctx, l.infoAPI+stream, nil)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", stream, err)
	}
	var resp struct {
		*jetstream.StreamInfo
		Error *jetstream.APIError `json:"error"`
	}
	if err := json.Unmarshal(m.Data, &resp); err != nil {
		return nil, fmt.Errorf("stream %s: bad info: %w", stream, err)
	}
	switch {
	case resp.Error != nil && resp.Error.ErrorCode == jetstream.JSErrCodeStreamNotFound:
		return nil, fmt.Errorf("stream %s: %w", stream, jetstream.ErrStreamNotFound)
	case resp.Error != nil:
		return nil, fmt.Errorf("stream %s: %w", stream, resp.Error)
	case resp.StreamInfo == nil:
		return nil, fmt.Errorf("stream %s: %w", stream, jetstream.ErrInvalidJetStreamResponse)
	}
	return resp.StreamInfo, nil
}
