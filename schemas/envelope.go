package schemas

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"
)

// ErrUnknownType is returned when an envelope names an event type or schema
// version that no registry entry can decode.
var ErrUnknownType = errors.New("unknown event type")

// ErrCorrupt is returned when bytes read from the log are not a valid record,
// envelope or event payload.
var ErrCorrupt = errors.New("corrupt event data")

// Envelope is the metadata every event carries, around its msgpack payload.
// The payload stays encoded until a reader asks the registry for it, so that
// projections can route on Type without decoding every event.
type Envelope struct {
	Type          string             `msgpack:"t"`
	Version       uint16             `msgpack:"v"`
	ID            string             `msgpack:"id"`
	Time          int64              `msgpack:"ts"` // Unix nanoseconds, set by the writer.
	CausationID   string             `msgpack:"ca,omitempty"`
	CorrelationID string             `msgpack:"co,omitempty"`
	Principal     string             `msgpack:"p,omitempty"`
	Data          msgpack.RawMessage `msgpack:"d"`
}

// recordFormatV1 is the first byte of every record written by this version.
// A reader that meets another value refuses the record instead of guessing.
const recordFormatV1 byte = 1

// EncodeRecord frames the envelopes of one decision as one log message.
func EncodeRecord(envs []Envelope) ([]byte, error) {
	var buf bytes.Buffer
	buf.Grow(recordSize(envs))
	buf.WriteByte(recordFormatV1)
	enc := msgpack.NewEncoder(&buf)
	if err := enc.Encode(envs); err != nil {
		return nil, fmt.Errorf("encode record: %w", err)
	}
	return buf.Bytes(), nil
}

// recordSize is a little over the encoded size of a record of envs, so
// that its buffer is allocated once: an envelope's eight fields take at
// most 14 bytes each besides their contents (key, type and length).
func recordSize(envs []Envelope) int {
	n := 1 + 5
	for _, e := range envs {
		n += 5 + 8*14 + len(e.Type) + len(e.ID) + len(e.CausationID) + len(e.CorrelationID) + len(e.Principal) + len(e.Data)
	}
	return n
}

// DecodeRecord is the inverse of EncodeRecord. It never panics: anything it
// cannot read is reported as ErrCorrupt.
func DecodeRecord(b []byte) ([]Envelope, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: empty record", ErrCorrupt)
	}
	if b[0] != recordFormatV1 {
		return nil, fmt.Errorf("%w: record format %d", ErrCorrupt, b[0])
	}
	if err := checkMsgpack(b[1:]); err != nil {
		return nil, err
	}
	var envs []Envelope
	if err := msgpack.Unmarshal(b[1:], &envs); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	if len(envs) == 0 {
		return nil, fmt.Errorf("%w: record holds no events", ErrCorrupt)
	}
	for i := range envs {
		if envs[i].Type == "" {
			return nil, fmt.Errorf("%w: event %d has no type", ErrCorrupt, i)
		}
	}
	return envs, nil
}
