package eventlog

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
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
// jetstream's PublishMsg but for how it reads the answer (see parsePubAck).
// A refusal is a *jetstream.APIError.
func (l *Log) request(ctx context.Context, msg *nats.Msg) (seq uint64, dup bool, err error) {
	resp, err := l.nc.RequestMsgWithContext(ctx, msg)
	// No responders is a stream without a leader for a moment (an
	// election): wait as jetstream's PublishMsg does.
	for r := 0; errors.Is(err, nats.ErrNoResponders) && r < jetstream.DefaultPubRetryAttempts; r++ {
		select {
		case <-ctx.Done():
		case <-time.After(jetstream.DefaultPubRetryWait):
		}
		resp, err = l.nc.RequestMsgWithContext(ctx, msg)
	}
	if errors.Is(err, nats.ErrNoResponders) {
		return 0, false, jetstream.ErrNoStreamResponse
	}
	if err != nil {
		return 0, false, err
	}
	ack, err := parsePubAck(resp.Data)
	if err != nil {
		return 0, false, err
	}
	if ack.Error != nil {
		return 0, false, fmt.Errorf("nats: %w", ack.Error)
	}
	if ack.Stream == "" {
		return 0, false, jetstream.ErrInvalidJSAck
	}
	return ack.Seq, ack.Duplicate, nil
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
