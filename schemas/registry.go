package schemas

import (
	"bytes"
	"fmt"
	"reflect"
	"sync"

	"github.com/vmihailenco/msgpack/v5"
)

// Event is implemented by every event payload type. The type name is part of
// the log's wire format: never rename one.
type Event interface {
	EventType() string
}

// Upcaster decodes the payload of an older schema version and returns the
// event in its current form.
type Upcaster func(data []byte) (Event, error)

// Registry maps event type names and versions to Go types. It is safe for
// concurrent use; registration normally happens in init functions.
type Registry struct {
	mu     sync.RWMutex
	byName map[string]*entry
}

type entry struct {
	current   uint16
	typ       reflect.Type // the struct type (not the pointer)
	upcasters map[uint16]Upcaster
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{byName: make(map[string]*entry)}
}

// Default is the registry that flowvault's own event types register with.
var Default = NewRegistry()

// Register declares proto's type as the current schema version of its event
// type. proto must be a pointer to a struct.
func (r *Registry) Register(proto Event, version uint16) {
	t := reflect.TypeOf(proto)
	if t.Kind() != reflect.Pointer || t.Elem().Kind() != reflect.Struct {
		panic(fmt.Sprintf("schemas: register %T: want a pointer to a struct", proto))
	}
	if version == 0 {
		panic(fmt.Sprintf("schemas: register %s: versions start at 1", proto.EventType()))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	name := proto.EventType()
	e := r.byName[name]
	if e == nil {
		e = &entry{upcasters: make(map[uint16]Upcaster)}
		r.byName[name] = e
	}
	if e.typ != nil {
		panic(fmt.Sprintf("schemas: event type %s registered twice", name))
	}
	e.current, e.typ = version, t.Elem()
}

// RegisterUpcaster makes payloads written as version of event type name
// readable. Upcasters must stay registered for as long as the log may hold
// such events, which for an audit log is forever.
func (r *Registry) RegisterUpcaster(name string, version uint16, up Upcaster) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.byName[name]
	if e == nil {
		e = &entry{upcasters: make(map[uint16]Upcaster)}
		r.byName[name] = e
	}
	e.upcasters[version] = up
}

// Encode builds the envelope for ev. The caller fills in the metadata that
// depends on its context (ID, time, causation, principal).
func (r *Registry) Encode(ev Event) (Envelope, error) {
	name := ev.EventType()
	r.mu.RLock()
	e := r.byName[name]
	r.mu.RUnlock()
	if e == nil || e.typ == nil {
		return Envelope{}, fmt.Errorf("encode %s: %w", name, ErrUnknownType)
	}
	data, err := MarshalSorted(ev)
	if err != nil {
		return Envelope{}, fmt.Errorf("encode %s: %w", name, err)
	}
	return Envelope{Type: name, Version: e.current, Data: data}, nil
}

// Decode returns the event carried by env in its current schema version,
// upcasting older versions. Unknown types and versions return ErrUnknownType;
// undecodable payloads return ErrCorrupt. Decode never panics.
func (r *Registry) Decode(env Envelope) (ev Event, err error) {
	r.mu.RLock()
	e := r.byName[env.Type]
	r.mu.RUnlock()
	if e == nil {
		return nil, fmt.Errorf("decode %s v%d: %w", env.Type, env.Version, ErrUnknownType)
	}
	if err := checkMsgpack(env.Data); err != nil {
		return nil, fmt.Errorf("decode %s v%d: %w", env.Type, env.Version, err)
	}
	defer func() {
		// A hostile or damaged payload must not take a projection down.
		if p := recover(); p != nil {
			ev, err = nil, fmt.Errorf("decode %s v%d: %w: %v", env.Type, env.Version, ErrCorrupt, p)
		}
	}()
	if env.Version == e.current && e.typ != nil {
		v := reflect.New(e.typ)
		if err := msgpack.Unmarshal(env.Data, v.Interface()); err != nil {
			return nil, fmt.Errorf("decode %s v%d: %w: %v", env.Type, env.Version, ErrCorrupt, err)
		}
		return v.Interface().(Event), nil
	}
	up := e.upcasters[env.Version]
	if up == nil {
		return nil, fmt.Errorf("decode %s v%d: %w", env.Type, env.Version, ErrUnknownType)
	}
	ev, err = up(env.Data)
	if err != nil {
		return nil, fmt.Errorf("decode %s v%d: %w: %v", env.Type, env.Version, ErrCorrupt, err)
	}
	return ev, nil
}

// MarshalSorted encodes v as msgpack with map keys in sorted order, so that
// a value always encodes to the same bytes: replay fixtures, deduplication
// and read-model rebuilds compare bytes.
func MarshalSorted(v any) ([]byte, error) {
	scratch := encodeBuffers.Get().(*[]byte)
	defer func() {
		if cap(*scratch) <= maxPooledBuffer {
			encodeBuffers.Put(scratch)
		}
	}()
	b, err := AppendSorted((*scratch)[:0], v)
	*scratch = b
	if err != nil {
		return nil, err
	}
	// One allocation of the final size: a buffer grown from empty for every
	// state and event allocated about twice that, the largest share of the
	// engine's garbage.
	return bytes.Clone(b), nil
}

// AppendSorted appends the MarshalSorted encoding of v to dst, for callers
// that copy the bytes on (a Pebble batch) and reuse dst.
func AppendSorted(dst []byte, v any) ([]byte, error) {
	buf := bytes.NewBuffer(dst)
	enc := msgpack.GetEncoder()
	defer msgpack.PutEncoder(enc)
	enc.Reset(buf)
	enc.SetSortMapKeys(true)
	if err := enc.Encode(v); err != nil {
		return dst, err
	}
	return buf.Bytes(), nil
}

// encodeBuffers are MarshalSorted's scratch buffers.
var encodeBuffers = sync.Pool{New: func() any { return new([]byte) }}

// maxPooledBuffer bounds the buffers kept for reuse, so that one large
// value does not pin its buffer.
const maxPooledBuffer = 64 << 10
