package eventlog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/flowvault/flowvault/internal/logkey"
)

// Follower delivers a stream's records in order, first those already stored
// and then new ones as they are appended. It keeps no state on the server
// that outlives it: a reader that must resume after a restart stores the last
// sequence it handled and follows again from there (projections store it in
// the same batch as their data).
type Follower struct {
	l      *Log
	stream string
	cons   jetstream.Consumer
	it     jetstream.MessagesContext
	// next carries what the iterator returns, read by pump: the
	// iterator does not return while it makes its consumer again (each
	// attempt waits up to 10 s for its answer, on a server that has not
	// got the stream, one that came back without its data), and Next
	// must return when the log is lost. It holds
	// one record: the iterator bounds the bytes fetched ahead, and a
	// catch-up is no slower for it (30,000 records in the same time).
	next     chan delivered
	done     chan struct{} // closed by Stop
	stopOnce sync.Once
	// cluster: the follower's consumer is clusterConsumer's, which makes
	// nothing again. A record whose consumer sequence is not the one after
	// the last (lost on its way, the consumer unacknowledged) loses the
	// follower.
	cluster bool
	cseq    uint64 // the consumer sequence of the last record delivered
}

// ErrFollowerLost is a follower that lost its consumer and could not
// make it again, or whose consumer could not be made: it delivers nothing
// more. Its reader follows again from the last record it handled, under a
// consumer of a new name.
var ErrFollowerLost = errors.New("follower lost its consumer")

type delivered struct {
	m   jetstream.Msg
	err error
}

// Follow starts delivering the records of stream with a sequence greater
// than after.
func (l *Log) Follow(ctx context.Context, stream string, after uint64) (*Follower, error) {
	if l.closed.Load() {
		return nil, ErrClosed
	}
	if err := l.Err(); err != nil {
		return nil, fmt.Errorf("follow %s: %w", stream, err)
	}
	opts := []jetstream.PullMessagesOpt{jetstream.PullMaxMessagesWithBytesLimit(2048, 16<<20)}
	var cons jetstream.Consumer
	var err error
	if l.cfg.Replicas > 1 {
		cons, err = l.clusterConsumer(ctx, stream, after)
		opts = append(opts, jetstream.PullHeartbeat(clusterHeartbeat), jetstream.WithMessagesErrOnMissingHeartbeat(true))
	} else {
		cons, err = l.orderedConsumer(ctx, stream, after)
	}
	if ctx.Err() == nil && (errors.Is(err, context.DeadlineExceeded) || clusterForming(err) || Unavailable(err)) {
		// Put on a server that died, no meta leader yet (a server that
		// knows it answers 10008 until one is elected), a server whose
		// JetStream is down (a full disk: it answers nothing) or the
		// connection away: again. On a single server too: its follower
		// is lost once nats.go's one attempt to make its consumer again
		// failed, and its reader follows again at once, which failed the
		// same way and stopped the read model for good.
		err = fmt.Errorf("%w: %w", ErrFollowerLost, err)
	}
	if err != nil {
		return nil, fmt.Errorf("follow %s: %w", stream, err)
	}
	it, err := cons.Messages(opts...)
	if err != nil {
		// Messages fails only on a connection draining (Close) or closed,
		// once the consumer is made (a cluster's by clusterConsumer, a
		// single server's by the ordered consumer's Messages itself):
		// with no follower to stop it, it stayed on the server until
		// followerInactive. A connection draining its subscriptions still
		// has requests answered; a closed one leaves it to lapse.
		if derr := l.deleteFollowerConsumer(stream, cons); derr != nil {
			l.logger.Warn("consumer of a follower that failed to start left to lapse", logkey.Stream, stream, logkey.Err, derr)
		}
		return nil, fmt.Errorf("follow %s: %w", stream, err)
	}
	f := &Follower{l: l, stream: stream, cons: cons, it: it, next: make(chan delivered, 1), done: make(chan struct{}),
		cluster: l.cfg.Replicas > 1}
	go f.pump()
	return f, nil
}

// orderedConsumer makes the consumer of a follower of a single server:
// nats.go's ordered consumer, which makes itself again, from the record
// after the last it delivered, when it meets a gap, misses heartbeats or
// reconnects. A follower that dies without Stop (its process killed)
// leaves it on an external server until followerInactive passes without a
// pull (nats-server's default is 5 minutes, six consumers a restart).
// Made again under one name, attempt after attempt, for as long as that
// takes: one attempt, then ErrFollowerLost, and the reader follows again
// under a new name.
func (l *Log) orderedConsumer(ctx context.Context, stream string, after uint64) (jetstream.Consumer, error) {
	cfg := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy, InactiveThreshold: followerInactive,
		MaxResetAttempts: 1}
	if after > 0 {
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = after + 1
	}
	return l.js.OrderedConsumer(ctx, stream, cfg)
}

// clusterConsumer makes the consumer of a follower on a cluster: what
// nats.go's ordered consumer makes (R1, in memory, unacknowledged), made
// by the follower itself, which is lost (ErrFollowerLost) at the first
// gap or the first clusterHeartbeat gone missing twice, and followed
// again by its reader under another. The consumer lives on whichever
// server the meta leader put it, and goes with that server. The ordered
// consumer noticed it gone by two missed 5 s heartbeats (it leaves aside
// the "409 Server Shutdown" a server sends as it goes), then made it
// again with 10 s for an answer: within about 2 s of a server's death the
// meta leader may still put a consumer on it, which never answers. A read
// model, and every write of its engine waiting for it, stood still 10 to
// 14 s after a server shut down or died.
func (l *Log) clusterConsumer(ctx context.Context, stream string, after uint64) (jetstream.Consumer, error) {
	cfg := jetstream.ConsumerConfig{Name: "fv_follow_" + nuid.Next(), DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy: jetstream.AckNonePolicy, InactiveThreshold: followerInactive, Replicas: 1, MemoryStorage: true}
	if after > 0 {
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = after + 1
	}
	if err := l.awaitMetaLeader(ctx); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, clusterCreateTimeout)
	defer cancel()
	return l.js.CreateConsumer(ctx, stream, cfg)
}

// awaitMetaLeader returns once the cluster's meta leader, which makes
// every consumer, answers, or after metaLeaderWait with the last "no meta
// leader" answer (10008) or the deadline. A consumer's making sent while
// there is none (after the meta leader died, until the others elect
// another, 4.7-8.2 s after a kill) is never answered: its follower was
// lost after clusterCreateTimeout, and its reader waited 1 s, 2 s, 4 s
// before the next, seconds after the election. Account info is answered
// by the meta leader alone, asked again every leaderAskEvery (askLeader):
// it is a read, asked twice, it is answered twice.
func (l *Log) awaitMetaLeader(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, metaLeaderWait)
	defer cancel()
	var leaderless error
	for {
		m, err := l.askLeader(ctx, l.metaAPI, nil)
		if err != nil {
			if leaderless != nil && ctx.Err() != nil {
				return fmt.Errorf("no meta leader: %w", leaderless)
			}
			return fmt.Errorf("no meta leader: %w", err)
		}
		var resp struct {
			Error *jetstream.APIError `json:"error"`
		}
		if err := json.Unmarshal(m.Data, &resp); err != nil {
			return fmt.Errorf("meta leader: bad answer: %w", err)
		}
		if resp.Error == nil || !clusterForming(resp.Error) {
			return nil
		}
		leaderless = resp.Error
		select {
		case <-ctx.Done():
			return fmt.Errorf("no meta leader: %w", leaderless)
		case <-time.After(leaderAskEvery):
		}
	}
}

// accountInfoAPI is the subject of account info requests.
const accountInfoAPI = "$JS.API.INFO"

// metaLeaderWait bounds how long a cluster's follower waits for a meta
// leader before it is lost (and its reader follows again, after a
// wait): longer than an election takes after a kill.
const metaLeaderWait = 10 * time.Second

// clusterHeartbeat is how often the server holding a cluster follower's
// consumer says it is there when it has nothing to deliver; two missed,
// the follower is lost. clusterCreateTimeout bounds the making of its
// consumer, which may be put on a server that died a moment ago.
const (
	clusterHeartbeat     = time.Second
	clusterCreateTimeout = 3 * time.Second
)

// pump reads the iterator until it fails or the follower stops.
func (f *Follower) pump() {
	for {
		m, err := f.it.Next()
		select {
		case f.next <- delivered{m, err}:
		case <-f.done:
			return
		}
		if err != nil {
			return
		}
	}
}

// Next blocks until the next record is available or ctx is done. pending is
// the number of records in the stream after this one at the time it was
// delivered: 0 means the follower has caught up. Once the log is lost
// (Log.Lost) it returns Log.Err.
func (f *Follower) Next(ctx context.Context) (rec Record, pending uint64, err error) {
	var d delivered
	select {
	case d = <-f.next:
	case <-ctx.Done():
		return Record{}, 0, ctx.Err()
	case <-f.l.lost.lost:
		return Record{}, 0, fmt.Errorf("follow %s: %w", f.stream, f.l.Err())
	case <-f.done:
		return Record{}, 0, ErrClosed
	}
	m, err := d.m, d.err
	if err != nil {
		if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
			return Record{}, 0, ErrClosed
		}
		return Record{}, 0, fmt.Errorf("follow %s: %w: %w", f.stream, ErrFollowerLost, err)
	}
	// A record delivered after a reconnection waits for the check that
	// the server still holds what the log knew: it may be a record of a
	// stream made again, reusing a sequence this follower is past.
	if err := f.l.intact(ctx, false); err != nil {
		if ctx.Err() != nil {
			return Record{}, 0, ctx.Err()
		}
		return Record{}, 0, fmt.Errorf("follow %s: %w", f.stream, err)
	}
	md, err := m.Metadata()
	if err != nil {
		return Record{}, 0, fmt.Errorf("follow %s: %w", f.stream, err)
	}
	if f.cluster {
		if md.Sequence.Consumer != f.cseq+1 {
			return Record{}, 0, fmt.Errorf("follow %s: %w: record %d delivered as %d after %d", f.stream, ErrFollowerLost,
				md.Sequence.Stream, md.Sequence.Consumer, f.cseq)
		}
		f.cseq = md.Sequence.Consumer
	}
	msgID := m.Headers().Get(jetstream.MsgIDHeader)
	f.l.saw(f.stream, md.Sequence.Stream, msgID)
	rec = newRecord(f.stream, m.Subject(), md.Sequence.Stream, md.Timestamp, msgID, m.Data())
	return rec, md.NumPending, nil
}

// followerInactive is how long a follower's consumer outlives its last
// pull. Its iterator always has a pull waiting: only a follower gone
// without Stop lets it lapse.
const followerInactive = time.Minute

// Stop ends delivery and deletes the server-side consumer (the ordered
// consumer's own Stop leaves it to lapse). After the log was lost it does
// not wait for that: the iterator may be making its consumer again on a
// server without the stream, and does not stop before its next attempt
// (up to 10 s later). A cluster's follower that was lost waits for it
// all the same, followerDeleteTimeout when its consumer's server died:
// its reader, following again, would otherwise make the next consumer
// while the meta leader still takes that server for live (about 2 s after
// a kill), and a consumer put there is never made (clusterCreateTimeout
// and a wait more: 6 s behind in 2 of 8 runs where 4 s was every run's).
func (f *Follower) Stop() {
	f.stopOnce.Do(func() {
		close(f.done)
		if f.l.Err() != nil {
			go f.it.Stop()
			return
		}
		f.it.Stop()
		if f.l.closed.Load() {
			return
		}
		// Best effort: one left lapses after followerInactive. A lost
		// cluster follower's consumer often went with its server.
		_ = f.l.deleteFollowerConsumer(f.stream, f.cons)
	})
}

// deleteFollowerConsumer deletes the consumer cons made on the server, if
// it made one, within followerDeleteTimeout.
func (l *Log) deleteFollowerConsumer(stream string, cons jetstream.Consumer) error {
	info := cons.CachedInfo()
	if info == nil {
		return nil // none made yet
	}
	ctx, cancel := context.WithTimeout(context.Background(), followerDeleteTimeout)
	defer cancel()
	if err := l.js.DeleteConsumer(ctx, stream, info.Name); err != nil {
		return fmt.Errorf("delete consumer %s: %w", info.Name, err)
	}
	return nil
}

// followerDeleteTimeout bounds the deletion of the consumer of a follower
// stopped or failing to start: neither must wait on a server out of reach.
const followerDeleteTimeout = 2 * time.Second
