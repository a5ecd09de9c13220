package eventlog

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// Follower delivers a stream's records in order, first those already stored
// and then new ones as they are appended. It keeps no state on the server
// that outlives it: a reader that must resume after a restart stores the last
// sequence it handled and follows again from there (projections store it in
// the same batch as their data).
type Follower struct {
	stream string
	it     jetstream.MessagesContext
}

// Follow starts delivering the records of stream with a sequence greater
// than after.
func (l *Log) Follow(ctx context.Context, stream string, after uint64) (*Follower, error) {
	if l.closed.Load() {
		return nil, ErrClosed
	}
	cfg := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy}
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
	return &Follower{stream: stream, it: it}, nil
}

// Next blocks until the next record is available or ctx is done. pending is
// the number of records in the stream after this one at the time it was
// delivered: 0 means the follower has caught up.
func (f *Follower) Next(ctx context.Context) (rec Record, pending uint64, err error) {
	m, err := f.it.Next(jetstream.NextContext(ctx))
	if err != nil {
		if ctx.Err() != nil {
			return Record{}, 0, ctx.Err()
		}
		if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
			return Record{}, 0, ErrClosed
		}
		return Record{}, 0, fmt.Errorf("follow %s: %w", f.stream, err)
	}
	md, err := m.Metadata()
	if err != nil {
		return Record{}, 0, fmt.Errorf("follow %s: %w", f.stream, err)
	}
	rec = newRecord(f.stream, m.Subject(), md.Sequence.Stream, md.Timestamp, m.Headers().Get(jetstream.MsgIDHeader), m.Data())
	return rec, md.NumPending, nil
}

// Stop ends delivery and releases the server-side consumer.
func (f *Follower) Stop() { f.it.Stop() }
