package secrets

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
)

// Redacted is the text every secret-bearing type prints as.
const Redacted = "***"

// redacted makes the type that embeds it print as "***" in every form a
// careless caller may use: fmt verbs (%v, %+v, %#v, %s, %q, %x), JSON and
// slog. Embedding it in a struct promotes the methods, so a forgotten
// slog.Any("key", k) or fmt.Sprintf("%+v", k) cannot leak key material.
type redacted struct{}

func (redacted) String() string                 { return Redacted }
func (redacted) GoString() string               { return Redacted }
func (redacted) Format(f fmt.State, _ rune)     { _, _ = f.Write([]byte(Redacted)) }
func (redacted) MarshalJSON() ([]byte, error)   { return []byte(`"` + Redacted + `"`), nil }
func (redacted) MarshalText() ([]byte, error)   { return []byte(Redacted), nil }
func (redacted) LogValue() slog.Value           { return slog.StringValue(Redacted) }
func (redacted) MarshalBinary() ([]byte, error) { return nil, errRedactedBinary }

var errRedactedBinary = fmt.Errorf("secret material has no binary encoding")

// Value is a secret value in memory: the bytes of a decrypted secret, or of
// a master key's text. It prints as "***" everywhere (fmt, JSON, slog), so
// it can only leave the process through Bytes. Callers that are done with a
// value should Wipe it.
type Value []byte

// Bytes returns the value itself (not a copy).
func (v Value) Bytes() []byte { return v }

// Len is the value's length in bytes.
func (v Value) Len() int { return len(v) }

// Wipe overwrites the value with zeros.
func (v Value) Wipe() { clear(v) }

func (Value) String() string               { return Redacted }
func (Value) GoString() string             { return Redacted }
func (Value) Format(f fmt.State, _ rune)   { _, _ = f.Write([]byte(Redacted)) }
func (Value) MarshalJSON() ([]byte, error) { return []byte(`"` + Redacted + `"`), nil }
func (Value) MarshalText() ([]byte, error) { return []byte(Redacted), nil }
func (Value) LogValue() slog.Value         { return slog.StringValue(Redacted) }

var (
	_ fmt.Stringer   = Value(nil)
	_ fmt.GoStringer = Value(nil)
	_ fmt.Formatter  = Value(nil)
	_ slog.LogValuer = Value(nil)
)

// ReadValue reads r to its end, as io.ReadAll does, for a value to be
// wiped once used: io.ReadAll reads into chunks it then copies into the
// slice it returns, so a wiped result left a whole copy of the value in
// the heap, unwiped, until the memory was reused. ReadValue wipes every
// buffer it outgrows, and the one it read into when it fails (it returns
// nil then), whole: a reader that refuses what is over a limit
// (http.MaxBytesReader) has written a byte more than it counts. The slice
// it returns is the one copy.
func ReadValue(r io.Reader) (Value, error) {
	b := make([]byte, 0, 512)
	for {
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if errors.Is(err, io.EOF) {
			return b, nil
		}
		if err != nil {
			wipe(b[:cap(b)])
			return nil, err
		}
		if len(b) == cap(b) {
			grown := make([]byte, len(b), 2*cap(b))
			copy(grown, b)
			wipe(b)
			b = grown
		}
	}
}

// wipe zeroes key material.
func wipe(b []byte) { clear(b) }
