package eventlog

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowvault/flowvault/internal/logkey"
)

// Group commit. With FsyncAlways the server syncs every message it
// stores, one after another, so a stream takes as many appends per second
// as the disk takes syncs. A JetStream atomic batch is stored with one sync
// for all its messages (nats-server 2.12+), but it costs far more than one
// sync: the server stages a file-backed batch in a store of its own, synced
// too, before it commits it. So appends go alone while few are waiting on
// the stream, and only once aloneLimit are in flight do the appends that
// arrive meanwhile gather into batches, sent once minBatch are waiting
// (fewer wait for their turn to go alone): a quiet log keeps the latency
// of a single sync, a busy one the throughput of batches, and a few
// dozen writers each waiting on its append (which never fill a batch)
// lose nothing to it.
//
// A batch is all or nothing. When the server refuses one — a stale
// expectation, a duplicate message id, a record too large — or its outcome
// is unknown, each of its appends is published alone, the way it would
// have been without group commit; that sorts out which failed and why, and
// a record the batch did store is recognised by its message id.
const (
	// aloneLimit is how many appends may be in flight alone before the
	// next ones are batched: about where waiting behind that many syncs
	// costs more than a batch.
	aloneLimit = 16
	// minBatch is the fewest appends a batch is sent with: a smaller one
	// costs more than its appends waiting for their turn to go alone.
	minBatch = 16
	// batchWriters is how many batches of one stream may be in flight:
	// while one is synced the next is sent.
	batchWriters = 2
	// maxBatchAppends stays well under the server's atomic batch limit
	// (1,000 messages by default).
	maxBatchAppends = 256
	// maxBatchBytes bounds the records of one batch (but for its last),
	// which the server stages before it commits them.
	maxBatchBytes = 16 << 20
	// batchTimeout bounds the wait for a batch's acknowledgement.
	batchTimeout = 5 * time.Second
)

// The headers of JetStream's atomic batch publish (ADR-50).
const (
	batchIDHeader     = "Nats-Batch-Id"
	batchSeqHeader    = "Nats-Batch-Sequence"
	batchCommitHeader = "Nats-Batch-Commit"
)

// committer gathers one stream's appends into atomic batches.
type committer struct {
	stream   string
	nc       *nats.Conn
	queue    chan *pendingAppend
	stop     chan struct{}
	alone    atomic.Int32  // appends handed back to go alone, not yet done
	placing  sync.Mutex    // held by the writer that places appends
	released chan struct{} // signalled when one of them is done
	logger   *slog.Logger
	sizes    prometheus.Observer
}

// pendingAppend is one append waiting for its batch. After done is closed,
// seq is its sequence if written is set; otherwise the append was not
// written as part of a batch, and its caller publishes it alone and then
// calls release.
type pendingAppend struct {
	msg     *nats.Msg
	seq     uint64
	written bool
	done    chan struct{}
}

func newCommitter(stream string, nc *nats.Conn, logger *slog.Logger, sizes prometheus.Observer) *committer {
	c := &committer{
		stream:   stream,
		nc:       nc,
		queue:    make(chan *pendingAppend, maxBatchAppends),
		stop:     make(chan struct{}),
		released: make(chan struct{}, 1),
		logger:   logger,
		sizes:    sizes,
	}
	for range batchWriters {
		go c.run()
	}
	return c
}

// close stops the writers; appends still queued are handed back to be
// published alone.
func (c *committer) close() { close(c.stop) }

// append queues msg and waits for its batch. written false means: publish
// msg alone, then call release.
func (c *committer) append(ctx context.Context, msg *nats.Msg) (seq uint64, written bool, release func(), err error) {
	p := &pendingAppend{msg: msg, done: make(chan struct{})}
	select {
	case c.queue <- p:
	case <-c.stop:
		return 0, false, func() {}, nil
	case <-ctx.Done():
		return 0, false, nil, ctx.Err()
	}
	select {
	case <-p.done:
		if p.written {
			return p.seq, true, nil, nil
		}
		return 0, false, c.release, nil
	case <-c.stop:
		// It may still be written by a batch in flight; publishing it
		// again is recognised by its message id.
		return 0, false, func() {}, nil
	case <-ctx.Done():
		// The batch may still be written (a retry finds it by message id);
		// if the append is handed back instead, nobody publishes it, and
		// its place among those going alone is given back.
		go func() {
			select {
			case <-p.done:
				if !p.written {
					c.release()
				}
			case <-c.stop:
			}
		}()
		return 0, false, nil, ctx.Err()
	}
}

// goAlone hands p back to its caller to publish alone.
func (c *committer) goAlone(p *pendingAppend) {
	c.alone.Add(1)
	close(p.done)
}

func (c *committer) release() {
	c.alone.Add(-1)
	select {
	case c.released <- struct{}{}:
	default:
	}
}

// run places appends and writes batches. One writer at a time places:
// the appends waiting for a batch are all in one hand, and the other
// writer gathers the next batch while this one's is written.
func (c *committer) run() {
	for {
		c.placing.Lock()
		var batch []*pendingAppend
		select {
		case <-c.stop:
			c.placing.Unlock()
			c.handBack()
			return
		case first := <-c.queue:
			batch = c.place(first)
		}
		c.placing.Unlock()
		if batch != nil {
			c.write(batch)
		}
	}
}

// place sends first alone while the stream is not busy, and otherwise in
// a batch with the appends that queue up behind it, once there are enough
// of them to be worth a batch; until then they wait for their turn to go
// alone, in order.
// It returns the batch to write, if any.
func (c *committer) place(first *pendingAppend) []*pendingAppend {
	waiting := []*pendingAppend{first}
	for {
		for len(waiting) > 0 && c.alone.Load() < aloneLimit {
			c.goAlone(waiting[0])
			waiting = waiting[1:]
		}
		if len(waiting) == 0 {
			return nil
		}
		if waiting = c.gather(waiting); len(waiting) >= minBatch {
			return waiting
		}
		select {
		case <-c.released:
		case p := <-c.queue:
			waiting = append(waiting, p)
		case <-c.stop:
			for _, p := range waiting {
				c.goAlone(p)
			}
			return nil
		}
	}
}

// handBack releases whatever is still queued at close.
func (c *committer) handBack() {
	for {
		select {
		case p := <-c.queue:
			c.goAlone(p)
		default:
			return
		}
	}
}

// gather adds to batch whatever is queued, within the batch limits.
func (c *committer) gather(batch []*pendingAppend) []*pendingAppend {
	size := 0
	for _, p := range batch {
		size += len(p.msg.Data)
	}
	for len(batch) < maxBatchAppends && size < maxBatchBytes {
		select {
		case p := <-c.queue:
			batch = append(batch, p)
			size += len(p.msg.Data)
		default:
			return batch
		}
	}
	return batch
}

// write publishes batch as one atomic batch and releases its appends; a
// batch the server refuses goes back to its callers.
func (c *committer) write(batch []*pendingAppend) {
	last, err := c.publish(batch)
	if err != nil {
		c.logger.Debug("batch refused; its appends go alone", logkey.Stream, c.stream, logkey.Count, len(batch), logkey.Err, err)
		for _, p := range batch {
			c.goAlone(p)
		}
		return
	}
	c.sizes.Observe(float64(len(batch)))
	// The server stores a batch's messages in order and lets nothing in
	// between, so their sequences are consecutive.
	first := last - uint64(len(batch)-1)
	for i, p := range batch {
		p.seq, p.written = first+uint64(i), true
		close(p.done)
	}
}

// batchAck is the server's answer to a batch's commit message.
type batchAck struct {
	Seq   uint64 `json:"seq"`
	Count int    `json:"count"`
	Error *struct {
		Code        int    `json:"err_code"`
		Description string `json:"description"`
	} `json:"error"`
}

// publish sends batch's messages, the last one committing, and returns the
// sequence of the last.
func (c *committer) publish(batch []*pendingAppend) (uint64, error) {
	id := nuid.Next()
	batched := func(i int) *nats.Msg {
		// The caller's message stays as it was, should it go alone.
		p := batch[i]
		m := &nats.Msg{Subject: p.msg.Subject, Data: p.msg.Data, Header: maps.Clone(p.msg.Header)}
		m.Header.Set(batchIDHeader, id)
		m.Header.Set(batchSeqHeader, strconv.Itoa(i+1))
		return m
	}
	for i := range len(batch) - 1 {
		if err := c.nc.PublishMsg(batched(i)); err != nil {
			return 0, err
		}
	}
	commit := batched(len(batch) - 1)
	commit.Header.Set(batchCommitHeader, "1")
	resp, err := c.nc.RequestMsg(commit, batchTimeout)
	if err != nil {
		return 0, err
	}
	var ack batchAck
	if err := json.Unmarshal(resp.Data, &ack); err != nil {
		return 0, fmt.Errorf("batch acknowledgement: %w", err)
	}
	if ack.Error != nil {
		return 0, fmt.Errorf("batch refused (%d): %s", ack.Error.Code, ack.Error.Description)
	}
	if ack.Count != len(batch) {
		return 0, fmt.Errorf("batch of %d acknowledged with count %d", len(batch), ack.Count)
	}
	return ack.Seq, nil
}
