package conductor

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"strconv"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// Unmarshal decodes JSON into v like encoding/json, except that numbers in
// untyped values (map[string]any, []any, any) become int64 when they are
// integers and float64 otherwise, and that a member goes into a field only
// when it is named exactly as the field is (see exactNames). Conductor
// users pass ids and counters as JSON numbers; decoding them as float64
// would corrupt values above 2^53, and a number that is an integer must
// stay one through msgpack.
func Unmarshal(data []byte, v any) error {
	if err := decodeCoercing(data, v, true, MaxNestedBytes); err != nil {
		return err
	}
	normalizeValue(reflect.ValueOf(v))
	return nil
}

// UnmarshalNew is Unmarshal for v, a pointer to a zero value of a type
// that holds no definitions: a task result, which every task's worker
// sends. JSON that encoding/json/v2 reads exactly as Unmarshal would (its
// members named exactly as fields are, each once, in valid UTF-8, its
// scalars of the fields' types) is decoded by it, in less than half the
// time and allocations; anything else is decoded by Unmarshal, which
// keeps the last of duplicates and coerces.
func UnmarshalNew(data []byte, v any) error {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() || holdsSelfCoercing(rv.Type()) {
		return Unmarshal(data, v)
	}
	if jsonv2.Unmarshal(data, v, exactV2) == nil {
		return nil
	}
	rv.Elem().SetZero() // the failed decode may have filled some of it
	return Unmarshal(data, v)
}

// exactV2 has encoding/json/v2 refuse members it does not know, which
// Unmarshal reads for it (a member named in another case among them), and
// decode numbers in untyped values as Normalize converts them.
var exactV2 = jsonv2.JoinOptions(
	jsonv2.RejectUnknownMembers(true),
	jsonv2.WithUnmarshalers(jsonv2.UnmarshalFromFunc(func(dec *jsontext.Decoder, v *any) error {
		if dec.PeekKind() != '0' {
			return errors.ErrUnsupported // decoded as usual
		}
		n, err := dec.ReadValue()
		if err != nil {
			return err
		}
		*v = number(json.Number(n))
		return nil
	})),
)

// UnmarshalStored is Unmarshal for JSON the server accepted and stored
// itself (a workflow's definition snapshot, a registered definition): it is
// not bounded by MaxNestedBytes, which applies where definitions come in.
// A definition stored before the bound existed, or that the server's own
// fields pushed over it, must still be read: a workflow whose definition
// could not be decoded could not be terminated, nor its secrets shredded.
func UnmarshalStored(data []byte, v any) error {
	if err := decodeCoercing(data, v, true, 0); err != nil {
		return err
	}
	normalizeValue(reflect.ValueOf(v))
	return nil
}

// MaxNestedBytes bounds the bytes a body's definitions hold, each counted
// once for every definition or task that holds it (see decodeCoercing):
// eight times the largest body, so that a full body nests its data eight
// levels deep at most, and a flat one of any size is accepted.
const MaxNestedBytes = 64 << 20

// ErrNestedTooMuch is a body whose definitions nest too much data too deep
// to decode (MaxNestedBytes).
var ErrNestedTooMuch = errors.New("definition nests too much data too deep")

// decodeCoercing decodes data into v, numbers as json.Number; a body that
// fails only for a scalar of the wrong type is coerced (see coerce) and
// decoded again. whole: nothing may follow the value.
//
// A value that holds definitions is coerced first, all of it at once:
// each nested task coerces its own JSON when decoded alone, and decoding
// it again after its parent's coercion, level after level, cost time
// growing with the cube of the nesting (a SWITCH chain 120 deep with a
// mistyped scalar at every level took 21 s). Coerced at the top, every
// level below decodes well-typed JSON once.
//
// Each of those levels also reads and keeps its own JSON, so what a
// definition costs to decode is its bytes counted once for each level
// that holds them: bounded (ErrNestedTooMuch), since a 7 MB string under
// 120 nested tasks took 12 s and 1.8 GB.
//
// maxNested is that bound (0: none).
func decodeCoercing(data []byte, v any, whole bool, maxNested int) error {
	if t := reflect.TypeOf(v); holdsSelfCoercing(t) {
		fixed, changed, nested := coerceCounting(data, t)
		if maxNested > 0 && nested > maxNested {
			return fmt.Errorf("%w: its definitions hold %d bytes counted once for each level of tasks that holds them, at most %d: "+
				"keep large values out of deeply nested tasks (pass them as workflow input)", ErrNestedTooMuch, nested, maxNested)
		}
		if changed {
			data = fixed
		}
		return decodeNumbers(data, v, whole)
	}
	err := decodeNumbers(data, v, whole)
	if err == nil || !coercible(err) {
		return err
	}
	fixed, ok := coerce(data, reflect.TypeOf(v))
	if !ok {
		return err
	}
	if rv := reflect.ValueOf(v); rv.Kind() == reflect.Pointer && !rv.IsNil() {
		rv.Elem().SetZero() // the failed decode may have filled some of it
	}
	return decodeNumbers(fixed, v, whole)
}

// decodeNumbers decodes data into v, numbers as json.Number, each member
// into the field its name names exactly (see exactNames).
func decodeNumbers(data []byte, v any, whole bool) error {
	dec := json.NewDecoder(bytes.NewReader(exactNames(data, reflect.TypeOf(v))))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if !whole {
		return nil
	}
	// Not dec.More: it is false before a stray "]" or "}" as well as at
	// the end, so `[{...}]]` was accepted.
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("unexpected data after the JSON value")
	}
	return nil
}

// unmarshalExact is Unmarshal for the UnmarshalJSON methods of types that
// keep their raw JSON. encoding/json hands such a method the value's bytes
// and the method decodes them itself, so the caller's UseNumber does not
// reach it: without this, numbers in untyped fields (inputParameters,
// inputTemplate, ...) would become float64 however the outer value was
// decoded. It returns the JSON to keep: data, or data with its scalars
// coerced when coercion changed any (its own, or that of a value it holds
// that decoded itself), and whether it did.
func unmarshalExact(data []byte, v any) (json.RawMessage, bool, error) {
	err := decodeNumbers(data, v, false)
	if err != nil && !coercible(err) {
		return nil, false, err
	}
	if err == nil && !nestedCoerced(reflect.ValueOf(v)) {
		normalizeValue(reflect.ValueOf(v))
		return append(json.RawMessage(nil), data...), false, nil
	}
	fixed, ok := coerce(data, reflect.TypeOf(v))
	switch {
	case !ok && err != nil:
		return nil, false, err
	case !ok:
		// A value it holds coerced, yet nothing here reads as coerced:
		// keep the JSON as given rather than fail a good decode.
		normalizeValue(reflect.ValueOf(v))
		return append(json.RawMessage(nil), data...), false, nil
	}
	if err != nil {
		reflect.ValueOf(v).Elem().SetZero() // the failed decode may have filled some of it
		if err := decodeNumbers(fixed, v, false); err != nil {
			return nil, false, err
		}
	}
	normalizeValue(reflect.ValueOf(v))
	return fixed, true, nil
}

// Normalize converts json.Number values inside an untyped JSON value, as
// Unmarshal does.
func Normalize(v any) any {
	switch x := v.(type) {
	case json.Number:
		return number(x)
	case map[string]any:
		for k, e := range x {
			x[k] = Normalize(e)
		}
		return x
	case []any:
		for i, e := range x {
			x[i] = Normalize(e)
		}
		return x
	}
	return v
}

func number(n json.Number) any {
	if i, err := strconv.ParseInt(string(n), 10, 64); err == nil {
		return i
	}
	if f, err := strconv.ParseFloat(string(n), 64); err == nil && !math.IsInf(f, 0) {
		return f
	}
	return string(n)
}

var numberType = reflect.TypeOf(json.Number(""))

// normalizeValue converts the json.Numbers that v holds, as Normalize
// does. It stops at the values that decoded themselves with
// unmarshalExact, which normalized them already: walking into each of
// them again at every level of a nested definition cost time growing with
// the cube of its depth.
func normalizeValue(v reflect.Value) {
	if v.Kind() == reflect.Struct && reflect.PointerTo(v.Type()).Implements(selfCoercingType) {
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			normalizeValue(v.Elem())
		}
	case reflect.Interface:
		if v.IsNil() {
			return
		}
		e := v.Elem()
		if e.Type() == numberType || e.Kind() == reflect.Map || e.Kind() == reflect.Slice {
			if v.CanSet() {
				v.Set(reflect.ValueOf(Normalize(e.Interface())))
			} else {
				Normalize(e.Interface())
			}
		}
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			if v.Type().Field(i).IsExported() {
				normalizeValue(v.Field(i))
			}
		}
	case reflect.Map:
		if v.Type().Elem().Kind() == reflect.Interface {
			for _, k := range v.MapKeys() {
				e := v.MapIndex(k)
				if !e.IsNil() {
					v.SetMapIndex(k, reflect.ValueOf(Normalize(e.Interface())))
				}
			}
			return
		}
		for _, k := range v.MapKeys() {
			e := v.MapIndex(k)
			if e.Kind() == reflect.Slice || e.Kind() == reflect.Pointer || e.Kind() == reflect.Map {
				normalizeValue(e)
			} else if e.Kind() == reflect.Struct {
				c := reflect.New(e.Type()).Elem()
				c.Set(e)
				normalizeValue(c)
				v.SetMapIndex(k, c)
			}
		}
	case reflect.Slice, reflect.Array:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			return // bytes (json.RawMessage): no numbers to convert
		}
		for i := 0; i < v.Len(); i++ {
			normalizeValue(v.Index(i))
		}
	}
}
