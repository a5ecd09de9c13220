package eventlog

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
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
}

// ErrFollowerLost is a follower that lost its consumer and could not
// make it again: it delivers nothing more. Its reader follows again from
// the last record it handled, under a consumer of a new name.
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
	// A follower that dies without Stop (its process killed) leaves its
	// consumer on an external server until this passes without a pull:
	// nats-server's default is 5 minutes, six consumers a restart.
	//
	// nats.go makes a lost consumer again under one name, attempt after
	// attempt, for as long as it takes. On a cluster, one made within
	// seconds of a server's death (an engine connected to that server
	// reconnects to another and makes all its consumers again at once)
	// may be put on the dead server, which the meta leader counts up for
	// about 2 s more: no attempt under that name is answered, then
	// "consumer is offline" once the server is known gone, and the read
	// model stood still until the server came back. One attempt, then
	// ErrFollowerLost: the reader follows again, under a new name.
	cfg := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy, InactiveThreshold: followerInactive,
		MaxResetAttempts: 1}
	if after > 0 {
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = after + 1
	}
	cons, err := l.js.OrderedConsumer(ctx, stream, cfg)
	if err != nil {
		return nil, fmt.Errorf("follow %s: %w", stream, err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessagesWithBytesLimit(2048, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("follow %s: %w", stream, err)
	}
	f := &Follower{l: l, stream: stream, cons: cons, it: it, next: make(chan delivered, 1), done: make(chan struct{})}
	go f.pump()
	return f, nil
}

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
// (up to 10 s later).
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
		info := f.cons.CachedInfo()
		if info == nil {
			return // none made yet
		}
		ctx, cancel := context.WithTimeout(context.Background(), followerDeleteTimeout)
		defer cancel()
		// Best effort: one left lapses after followerInactive.
		_ = f.l.js.DeleteConsumer(ctx, f.stream, info.Name)
	})
}

// followerDeleteTimeout bounds the deletion of a stopped follower's
// consumer: a stop must not wait on a server out of reach.
const followerDeleteTimeout = 2 * time.Second
