package conductor

import (
	"bytes"
	"reflect"
	"sync"
)

// Jackson matches a member to a property by its exact name: {"NAME":"x"}
// names no property of a WorkflowDef, and Conductor ignores it. encoding/json
// matches names without regard to case (and the decoder has no option to
// stop it; encoding/json/v2 is still an experiment), so that "NAME" would
// set the name, and {"name":"a","Name":"b"} would register "b". Before a
// value is decoded, exactNames blanks the names of such members, so that
// the decoder finds no field for them and skips them, as it skips any
// member it does not know; the JSON the models keep (Raw) is the JSON as
// given, such members included.

var namesCache sync.Map // reflect.Type -> *names

// names is what exactNames reads in a value of a type: the members of a
// struct's object (fields), or the elements of a map's object or of a
// slice's or array's array (elem) that may hold one.
type names struct {
	fields *fieldTypes
	open   byte // '{' or '['
	elem   *names
}

// exactNames returns data with the names of the members that name a field
// of the structs a value of type t decodes into only in another case
// blanked (spaces, as many as the name's bytes: the decoder's error
// offsets stay true). A value of a type that decodes itself (selfCoercing)
// is left as it is: its UnmarshalJSON blanks its own, and keeps the JSON
// as given.
func exactNames(data []byte, t reflect.Type) []byte {
	n := namesOf(t)
	if n == nil {
		return data
	}
	r := renamer{coercer{data: data}}
	if r.value(n) != nil || !r.changed {
		return data
	}
	return append(r.out, data[r.last:]...)
}

// namesOf returns what exactNames reads in a value of type t: nil when it
// holds no object decoded into a struct by encoding/json itself.
func namesOf(t reflect.Type) *names {
	if n, ok := namesCache.Load(t); ok {
		return n.(*names)
	}
	var n *names
	switch et := target(t); {
	case et == nil || reflect.PointerTo(et).Implements(selfCoercingType):
	case et.Kind() == reflect.Struct:
		n = &names{fields: jsonFields(et), open: '{'}
	case et.Kind() == reflect.Map:
		if elem := namesOf(et.Elem()); elem != nil {
			n = &names{open: '{', elem: elem}
		}
	case et.Kind() == reflect.Slice || et.Kind() == reflect.Array:
		if elem := namesOf(et.Elem()); elem != nil {
			n = &names{open: '[', elem: elem}
		}
	}
	namesCache.Store(t, n)
	return n
}

// renamer is a coercer that blanks names instead of coercing scalars.
type renamer struct{ coercer }

// value reads the value at r.pos, of a type of which n says what to read.
func (r *renamer) value(n *names) error {
	if n == nil {
		return r.skip()
	}
	r.skipSpace()
	if r.pos >= len(r.data) {
		return errNotCoercible
	}
	switch {
	case r.data[r.pos] != n.open:
		return r.skip() // not what the type reads: the decoder says so
	case n.fields != nil:
		return r.object(n.fields)
	case n.open == '{':
		return r.members(func(int, int) error { return r.value(n.elem) })
	}
	return r.elements(func() error { return r.value(n.elem) })
}

func (r *renamer) object(fields *fieldTypes) error {
	fields.namesOnce.Do(func() {
		for _, f := range fields.exact {
			f.names = namesOf(f.t)
		}
	})
	return r.members(func(start, end int) error {
		f, otherCase, err := fields.field(r.data[start:end])
		switch {
		case err != nil:
			return err
		case otherCase:
			r.replace(start+1, end-1, bytes.Repeat([]byte{' '}, end-start-2))
		}
		if f == nil {
			return r.value(nil)
		}
		return r.value(f.names)
	})
}

// skip reads past the value at r.pos, whatever it holds, at the cost of a
// look at each of its bytes: an input, an output, any value of a type that
// holds no struct is most of what the engine decodes.
func (r *renamer) skip() error {
	r.skipSpace()
	depth := 0
	for r.pos < len(r.data) {
		switch r.data[r.pos] {
		case '"':
			end, err := r.stringEnd()
			if err != nil {
				return err
			}
			r.pos = end
			if depth == 0 {
				return nil
			}
			continue
		case '{', '[':
			depth++
		case '}', ']':
			if depth == 0 {
				return nil // a scalar's end, at its parent's
			}
			if depth--; depth == 0 {
				r.pos++
				return nil
			}
		case ',', ' ', '\t', '\n', '\r':
			if depth == 0 {
				return nil // a scalar's end
			}
		}
		r.pos++
	}
	if depth > 0 {
		return errNotCoercible
	}
	return nil
}
