package schemas

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

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

// RecordFormat is a record's framing, its first byte. A reader that meets
// another value refuses the record instead of guessing; every format
// ever written stays readable.
type RecordFormat byte

const (
	// RecordFormat1 is a msgpack array of whole envelopes.
	RecordFormat1 RecordFormat = 1
	// RecordFormat2 holds the envelopes of one decision that share their
	// metadata, as the executor writes them: the id, time, causation,
	// correlation and principal once, then each event's type, version
	// and payload; the i-th event's id is the first's + "/i". The
	// metadata was most of a record's bytes, copied into every message,
	// stored and decoded by every reader of the stream.
	RecordFormat2 RecordFormat = 2
	// LatestRecordFormat is the newest format this version writes.
	LatestRecordFormat = RecordFormat2
)

// Valid reports whether this version can write f.
func (f RecordFormat) Valid() bool { return f >= RecordFormat1 && f <= LatestRecordFormat }

// EncodeRecord frames the envelopes of one decision as one log message, in
// the latest format they fit.
func EncodeRecord(envs []Envelope) ([]byte, error) { return LatestRecordFormat.Encode(envs) }

// Encode frames the envelopes of one decision as one log message, in the
// newest format up to f that they fit. A log shared with engines that read
// only older formats (a rolling upgrade) is written in the newest format
// they all read.
func (f RecordFormat) Encode(envs []Envelope) ([]byte, error) {
	if f >= RecordFormat2 && shared(envs) {
		return encodeShared(envs)
	}
	var buf bytes.Buffer
	buf.Grow(recordSize(envs))
	buf.WriteByte(byte(RecordFormat1))
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

// shared reports whether envs can be written as RecordFormat2: they
// share their metadata, and each payload is a msgpack value (format 1
// writes an empty one as nil).
func shared(envs []Envelope) bool {
	for i := range envs {
		e, first := &envs[i], &envs[0]
		if len(e.Data) == 0 || i > 0 && (e.Time != first.Time || e.CausationID != first.CausationID ||
			e.CorrelationID != first.CorrelationID || e.Principal != first.Principal || !isNthID(e.ID, first.ID, i)) {
			return false
		}
	}
	return len(envs) > 0
}

// EventID is the id of the i-th event of a record whose id is recordID:
// the first event's is the record's, the others' derive from it, which
// lets RecordFormat2 write it once.
func EventID(recordID string, i int) string {
	if i == 0 {
		return recordID
	}
	return recordID + "/" + strconv.Itoa(i)
}

// isNthID reports whether id is EventID(base, n) for n > 0, without
// building it: shared runs on every append.
func isNthID(id, base string, n int) bool {
	rest, ok := strings.CutPrefix(id, base)
	if !ok || len(rest) < 2 || rest[0] != '/' {
		return false
	}
	return rest[1:] == strconv.Itoa(n)
}

func encodeShared(envs []Envelope) ([]byte, error) {
	var buf bytes.Buffer
	buf.Grow(recordSize(envs))
	buf.WriteByte(byte(RecordFormat2))
	enc := msgpack.GetEncoder()
	defer msgpack.PutEncoder(enc)
	enc.Reset(&buf)
	first := &envs[0]
	err := errors.Join(enc.EncodeArrayLen(6), enc.EncodeString(first.ID), enc.EncodeInt(first.Time),
		enc.EncodeString(first.CausationID), enc.EncodeString(first.CorrelationID), enc.EncodeString(first.Principal),
		enc.EncodeArrayLen(len(envs)))
	if err != nil {
		return nil, fmt.Errorf("encode record: %w", err)
	}
	for i := range envs {
		e := &envs[i]
		if err := errors.Join(enc.EncodeArrayLen(3), enc.EncodeString(e.Type), enc.EncodeUint(uint64(e.Version)), enc.Encode(e.Data)); err != nil {
			return nil, fmt.Errorf("encode record: %w", err)
		}
	}
	return buf.Bytes(), nil
}

// DecodeRecord is the inverse of EncodeRecord. It never panics: anything it
// cannot read is reported as ErrCorrupt.
func DecodeRecord(b []byte) ([]Envelope, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: empty record", ErrCorrupt)
	}
	if f := RecordFormat(b[0]); !f.Valid() {
		return nil, fmt.Errorf("%w: record format %d", ErrCorrupt, b[0])
	}
	if err := checkMsgpack(b[1:]); err != nil {
		return nil, err
	}
	var envs []Envelope
	var err error
	if RecordFormat(b[0]) == RecordFormat2 {
		envs, err = decodeShared(b[1:])
	} else {
		err = msgpack.Unmarshal(b[1:], &envs)
	}
	if err != nil {
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

// decodeShared reads the envelopes of a RecordFormat2 record, b without
// its format byte, which checkMsgpack has passed.
func decodeShared(b []byte) ([]Envelope, error) {
	dec := msgpack.GetDecoder()
	defer msgpack.PutDecoder(dec)
	dec.Reset(bytes.NewReader(b))
	if n, err := dec.DecodeArrayLen(); err != nil || n != 6 {
		return nil, fmt.Errorf("record header of %d fields, want 6 (%v)", n, err)
	}
	var first Envelope
	var err error
	if first.ID, err = dec.DecodeString(); err != nil {
		return nil, err
	}
	if first.Time, err = dec.DecodeInt64(); err != nil {
		return nil, err
	}
	if first.CausationID, err = dec.DecodeString(); err != nil {
		return nil, err
	}
	if first.CorrelationID, err = dec.DecodeString(); err != nil {
		return nil, err
	}
	if first.Principal, err = dec.DecodeString(); err != nil {
		return nil, err
	}
	n, err := dec.DecodeArrayLen()
	if err != nil {
		return nil, err
	}
	// Grown as events decode: a count is only as good as the events
	// that follow it.
	envs := make([]Envelope, 0, min(max(n, 0), 16))
	for i := range max(n, 0) {
		if m, err := dec.DecodeArrayLen(); err != nil || m != 3 {
			return nil, fmt.Errorf("event %d of %d fields, want 3 (%v)", i, m, err)
		}
		envs = append(envs, first)
		e := &envs[i]
		e.ID = EventID(first.ID, i)
		if e.Type, err = dec.DecodeString(); err != nil {
			return nil, err
		}
		v, err := dec.DecodeUint64()
		if err != nil {
			return nil, err
		}
		if v > math.MaxUint16 {
			return nil, fmt.Errorf("event %d: version %d", i, v)
		}
		e.Version = uint16(v)
		if e.Data, err = dec.DecodeRaw(); err != nil {
			return nil, err
		}
	}
	return envs, nil
}
