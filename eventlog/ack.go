package eventlog

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// pubAck is the server's answer to a publish into a stream.
type pubAck struct {
	Error     *jetstream.APIError `json:"error"`
	Stream    string              `json:"stream"`
	Seq       uint64              `json:"seq"`
	Duplicate bool                `json:"duplicate"`
}

// request publishes msg and waits for the stream's acknowledgement, like
// jetstream's PublishMsg but for how it reads the answer (see parsePubAck),
// and for sending msg again, when it carries a Nats-Msg-Id, every
// resendEvery it goes unanswered (see resendEvery): the first answer to
// any of the sends is its answer. A refusal is a *jetstream.APIError.
func (l *Log) request(ctx context.Context, msg *nats.Msg) (seq uint64, dup bool, err error) {
	reply, answers, done := l.replies.Load().open(sendsRoom)
	defer done()
	// A copy: the caller's message is sent as it is again by a later
	// attempt, under another reply subject.
	m := &nats.Msg{Subject: l.publishPrefix + msg.Subject, Reply: reply, Header: msg.Header, Data: msg.Data}
	if err := l.nc.PublishMsg(m); err != nil {
		return 0, false, err
	}
	// Without an id a message goes again only once the server said nobody
	// took it: its sends are not told apart.
	again := l.resend && msg.Header.Get(jetstream.MsgIDHeader) != ""
	sent, nobody := 1, 0
	next := time.NewTimer(resendEvery)
	defer next.Stop()
	if !again {
		next.Stop()
	}
	for {
		select {
		case <-ctx.Done():
			return 0, false, ctx.Err()
		case resp, ok := <-answers:
			if !ok {
				return 0, false, nats.ErrConnectionClosed
			}
			if noResponders(resp) {
				// A stream without a leader for a moment (an election):
				// sent again shortly, as jetstream's PublishMsg does, to be
				// stored as soon as a leader is elected. Given up only when
				// no send may have reached a leader.
				nobody++
				if nobody == sent && nobody > jetstream.DefaultPubRetryAttempts {
					return 0, false, jetstream.ErrNoStreamResponse
				}
				if nobody == sent || again {
					next.Reset(jetstream.DefaultPubRetryWait)
				}
				continue
			}
			ack, err := parsePubAck(resp.Data)
			if err != nil {
				return 0, false, err
			}
			if ack.Error != nil {
				if sent > 1 && ack.Error.ErrorCode == jsErrCodeDuplicateInProcess {
					// A repeat of a send the leader is storing: the
					// first's acknowledgement comes here too.
					continue
				}
				return 0, false, fmt.Errorf("nats: %w", ack.Error)
			}
			if ack.Stream == "" {
				return 0, false, jetstream.ErrInvalidJSAck
			}
			return ack.Seq, ack.Duplicate, nil
		case <-next.C:
			// Not to a server reconnected to before its streams are known
			// to hold what the log acknowledged (checkedRequest), nor while
			// the connection is away: tried again shortly.
			if !l.verified() || l.nc.PublishMsg(m) != nil {
				next.Reset(jetstream.DefaultPubRetryWait)
				continue
			}
			sent++
			if again {
				next.Reset(resendEvery)
			}
		}
	}
}

// parsePubAck reads an acknowledgement. Every append waits for one, and
// decoding them with encoding/json took 2% of the engine's CPU: the shape
// of nearly all of them, {"stream":"S","seq":N}, is read by hand, and
// anything else (a refusal, a duplicate, a domain) by encoding/json.
func parsePubAck(b []byte) (pubAck, error) {
	if ack, ok := parsePlainAck(b); ok {
		return ack, nil
	}
	var ack pubAck
	if err := json.Unmarshal(b, &ack); err != nil {
		return pubAck{}, fmt.Errorf("%w: %v", jetstream.ErrInvalidJSAck, err)
	}
	return ack, nil
}

// parsePlainAck reads exactly {"stream":"S","seq":N}, as the server writes
// it, and reports whether b was that.
func parsePlainAck(b []byte) (pubAck, bool) {
	rest, ok := bytes.CutPrefix(b, []byte(`{"stream":"`))
	if !ok {
		return pubAck{}, false
	}
	end := bytes.IndexByte(rest, '"')
	if end <= 0 {
		return pubAck{}, false
	}
	stream := rest[:end]
	for _, c := range stream {
		// What JSON would unescape or replace goes to encoding/json
		// (stream names are printable ASCII anyway).
		if c < 0x20 || c >= 0x7f || c == '\\' {
			return pubAck{}, false
		}
	}
	digits, ok := bytes.CutPrefix(rest[end+1:], []byte(`,"seq":`))
	if !ok {
		return pubAck{}, false
	}
	digits, ok = bytes.CutSuffix(digits, []byte("}"))
	if !ok || len(digits) == 0 || digits[0] == '0' && len(digits) > 1 {
		return pubAck{}, false
	}
	seq, err := strconv.ParseUint(string(digits), 10, 64)
	if err != nil {
		return pubAck{}, false
	}
	return pubAck{Stream: string(stream), Seq: seq}, true
}
