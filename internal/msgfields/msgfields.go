// Package msgfields writes structs as msgpack maps by hand, byte for byte
// as the reflective encoder writes them: the map of the fields in
// declaration order, each under its tag, the omitempty ones only when set,
// int64 and uint64 in their fixed-size form (flowvault never asks for
// compact integers).
//
// The reflective encoder spends most of its time deciding, field by field,
// what omitempty leaves out. The types the engine encodes on every decision
// and every record (states, events, envelopes, summaries) write themselves
// with a Writer, and each has a test that holds it to the reflective
// encoding with every field set and with each field alone.
package msgfields

import "github.com/vmihailenco/msgpack/v5"

// Writer writes one struct's fields, keeping the first error.
type Writer struct {
	e   *msgpack.Encoder
	err error
}

// New returns a writer to e.
func New(e *msgpack.Encoder) Writer { return Writer{e: e} }

// Err is the first error the writer met.
func (w *Writer) Err() error { return w.err }

// MapLen writes the map header: always fields, plus one for each set
// optional field.
func (w *Writer) MapLen(always int, optional ...bool) {
	n := always
	for _, set := range optional {
		if set {
			n++
		}
	}
	w.err = w.e.EncodeMapLen(n)
}

// Key writes a field's name.
func (w *Writer) Key(name string) {
	if w.err == nil {
		w.err = w.e.EncodeString(name)
	}
}

// Str writes a string field.
func (w *Writer) Str(name, v string, omitEmpty bool) {
	if omitEmpty && v == "" {
		return
	}
	if w.Key(name); w.err == nil {
		w.err = w.e.EncodeString(v)
	}
}

// Int writes an int field.
func (w *Writer) Int(name string, v int, omitEmpty bool) {
	if omitEmpty && v == 0 {
		return
	}
	if w.Key(name); w.err == nil {
		w.err = w.e.EncodeInt(int64(v))
	}
}

// Int64 writes an int64 field.
func (w *Writer) Int64(name string, v int64, omitEmpty bool) {
	if omitEmpty && v == 0 {
		return
	}
	if w.Key(name); w.err == nil {
		w.err = w.e.EncodeInt64(v)
	}
}

// Uint64 writes a uint64 field.
func (w *Writer) Uint64(name string, v uint64, omitEmpty bool) {
	if omitEmpty && v == 0 {
		return
	}
	if w.Key(name); w.err == nil {
		w.err = w.e.EncodeUint64(v)
	}
}

// Uint16 writes a uint16 field.
func (w *Writer) Uint16(name string, v uint16) {
	if w.Key(name); w.err == nil {
		w.err = w.e.EncodeUint16(v)
	}
}

// Raw writes a field of already encoded msgpack, nil as nil.
func (w *Writer) Raw(name string, v msgpack.RawMessage) {
	if w.Key(name); w.err != nil {
		return
	}
	if v == nil {
		w.err = w.e.EncodeNil()
	} else {
		w.err = v.EncodeMsgpack(w.e)
	}
}

// Bool writes an omitempty bool field.
func (w *Writer) Bool(name string, v bool) {
	if !v {
		return
	}
	if w.Key(name); w.err == nil {
		w.err = w.e.EncodeBool(v)
	}
}

// Bytes writes a []byte field.
func (w *Writer) Bytes(name string, v []byte, omitEmpty bool) {
	if omitEmpty && len(v) == 0 {
		return
	}
	if w.Key(name); w.err == nil {
		w.err = w.e.EncodeBytes(v)
	}
}

// Value writes any other field the reflective way, unless omit.
func (w *Writer) Value(name string, v any, omit bool) {
	if omit {
		return
	}
	if w.Key(name); w.err == nil {
		w.err = w.e.Encode(v)
	}
}

// Field writes a field whose value fn writes.
func (w *Writer) Field(name string, fn func(*msgpack.Encoder) error) {
	if w.Key(name); w.err == nil {
		w.err = fn(w.e)
	}
}
