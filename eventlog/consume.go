package eventlog

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/flowvault/flowvault/internal/logkey"
)

// ConsumerConfig describes a durable consumer shared by every process that
// subscribes with the same Durable name: each message goes to one of them.
type ConsumerConfig struct {
	Stream  string
	Durable string
	// Filter narrows the consumer to a subject (wildcards allowed).
	Filter string
	// AckWait is how long a delivery may stay unacknowledged before the
	// server hands the message to another subscriber.
	AckWait time.Duration
	// MaxDeliver bounds redeliveries of one message (-1: unbounded).
	MaxDeliver int
	// Erase overwrites each message in the stream's store once it is
	// handled (acknowledged or rejected as poison), before it is
	// acknowledged: a work queue's acknowledged message is only marked
	// deleted, its bytes left in its block's file until every message of
	// the block is gone, and what a message carries (a start's input, which
	// the workflow may seal) must not stay on disk in plaintext.
	Erase bool
}

// Delivery is one message handed to a durable subscriber.
type Delivery struct {
	Subject      string
	Data         []byte
	Header       map[string][]string
	StreamSeq    uint64
	NumDelivered uint64
	msg          jetstream.Msg
}

// InProgress tells the server the message is still being worked on,
// restarting its AckWait.
func (d Delivery) InProgress() error { return d.msg.InProgress() }

// Handler processes one delivery. Returning nil acknowledges the message;
// an error asks for redelivery after a delay; ErrPoison discards the message
// for good (the handler has logged or parked it).
type Handler func(context.Context, Delivery) error

// ErrPoison marks a message that can never be processed. Wrap it to say why.
var ErrPoison = errors.New("poison message")

// Subscription is a running durable subscriber.
type Subscription struct {
	cc jetstream.ConsumeContext
}

// Stop stops fetching; messages already fetched but not handled are
// redelivered to another subscriber after AckWait.
func (s *Subscription) Stop() { s.cc.Stop() }

// EnsureConsumer creates or updates a durable consumer. It is idempotent.
// On a cluster it first waits for the meta leader, which makes every
// consumer, to answer (awaitMetaLeader): during an election a server
// answered the making with "JetStream system temporarily unavailable"
// (10008), or left it unanswered when sent before it knew its meta leader
// gone. The server's answer is waited for at most consumerTimeout,
// whatever ctx allows.
func (l *Log) EnsureConsumer(ctx context.Context, cfg ConsumerConfig) (jetstream.Consumer, error) {
	if l.cfg.Replicas > 1 {
		if err := l.awaitMetaLeader(ctx); err != nil {
			return nil, fmt.Errorf("consumer %s/%s: %w", cfg.Stream, cfg.Durable, err)
		}
	}
	// An answer lost with the server that would give it never comes (see
	// publishTimeout); a creation tried again is a no-op.
	ctx, cancel := context.WithTimeout(ctx, consumerTimeout)
	defer cancel()
	cc := jetstream.ConsumerConfig{
		Durable:       cfg.Durable,
		FilterSubject: cfg.Filter,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       cfg.AckWait,
		MaxDeliver:    cfg.MaxDeliver,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}
	cons, err := l.js.CreateOrUpdateConsumer(ctx, cfg.Stream, cc)
	if err != nil {
		return nil, fmt.Errorf("consumer %s/%s: %w", cfg.Stream, cfg.Durable, err)
	}
	return cons, nil
}

// DeletedAlready reports whether a message deletion failed because the
// message is gone: another process erased it first. The server answers
// with a generic deletion failure (JSStreamMsgDeleteFailedF) whose text
// the client keeps only as a string.
func DeletedAlready(err error) bool {
	return errors.Is(err, jetstream.ErrMsgNotFound) ||
		errors.Is(err, jetstream.ErrMsgDeleteUnsuccessful) && strings.Contains(err.Error(), "no message found")
}

// consumerTimeout bounds the wait for the answer to a consumer's creation,
// which on a cluster the meta leader proposes and the stream's leader
// applies: longer than an append's.
const consumerTimeout = 10 * time.Second

// Subscribe runs handle for messages of a durable consumer until the
// Subscription is stopped. Handlers run one at a time per subscription.
func (l *Log) Subscribe(ctx context.Context, cfg ConsumerConfig, handle Handler) (*Subscription, error) {
	var cons jetstream.Consumer
	ensure := func(ctx context.Context) (err error) {
		cons, err = l.EnsureConsumer(ctx, cfg)
		return err
	}
	var err error
	if l.cfg.Replicas > 1 {
		// A cluster without a meta leader for longer than one attempt
		// waits, until ctx ends: an engine started while its cluster had
		// lost a majority, or during an election, failed its start.
		err = l.whileForming(ctx, "consumer not made yet", ensure, logkey.Stream, cfg.Stream, logkey.Consumer, cfg.Durable)
	} else {
		err = ensure(ctx)
	}
	if err != nil {
		return nil, err
	}
	var stream jetstream.Stream
	if cfg.Erase {
		if stream, err = l.js.Stream(ctx, cfg.Stream); err != nil {
			return nil, fmt.Errorf("subscribe %s/%s: %w", cfg.Stream, cfg.Durable, err)
		}
	}
	erase := func(seq uint64) {
		if stream == nil {
			return
		}
		ctx, cancel := context.WithTimeout(ctx, publishTimeout)
		defer cancel()
		if err := stream.SecureDeleteMsg(ctx, seq); err != nil && !DeletedAlready(err) {
			l.logger.Warn("handled message not erased from its stream", logkey.Stream, cfg.Stream, logkey.Seq, seq, logkey.Err, err)
		}
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		md, err := m.Metadata()
		if err != nil {
			_ = m.Term()
			return
		}
		d := Delivery{Subject: m.Subject(), Data: m.Data(), Header: m.Headers(),
			StreamSeq: md.Sequence.Stream, NumDelivered: md.NumDelivered, msg: m}
		switch err := handle(ctx, d); {
		case err == nil:
			erase(d.StreamSeq)
			_ = m.Ack()
		case errors.Is(err, ErrPoison):
			erase(d.StreamSeq)
			_ = m.Term()
		default:
			delay := time.Duration(min(md.NumDelivered, 10)) * 200 * time.Millisecond
			_ = m.NakWithDelay(delay)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("subscribe %s/%s: %w", cfg.Stream, cfg.Durable, err)
	}
	return &Subscription{cc: cc}, nil
}
