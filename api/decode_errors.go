package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"

	"github.com/flowvault/flowvault/fault"
	"github.com/flowvault/flowvault/schemas/conductor"
)

// kindError is a JSON value of a kind its place does not take, in JSON's
// terms: what the api's own decoders answer, where encoding/json's
// *json.UnmarshalTypeError names the Go type that decodes the place.
type kindError struct {
	want string // "an object"
	got  string // a JSON kind: "array", "number 1.5"
}

func (e *kindError) Error() string { return "must be " + e.want + ", not a JSON " + e.got }

// decodeError is the 400 of JSON that failed to decode into v: a
// request's what (its body, a query parameter). A value of the wrong kind
// is said in JSON's terms, with the path of the member it is in, never
// with the Go type that decodes it.
func decodeError(what string, err error, v any) error {
	if errors.Is(err, conductor.ErrNestedTooMuch) {
		return fault.Invalid("%v", err)
	}
	var ute *json.UnmarshalTypeError
	if errors.As(err, &ute) {
		want := conductor.JSONKind(ute.Type)
		if ute.Field != "" {
			ve := &fault.ValidationError{}
			ve.Add(jsonPath(reflect.TypeOf(v), ute.Field), "must be %s, not a JSON %s", want, ute.Value)
			return ve
		}
		if top := conductor.JSONKind(reflect.TypeOf(v)); top == "an array" && want != top {
			return fault.Invalid("%s: each item must be %s, not a JSON %s", what, want, ute.Value)
		}
		err = &kindError{want: want, got: ute.Value}
	}
	if ke := (*kindError)(nil); errors.As(err, &ke) {
		return fault.Invalid("%s: %v", what, ke)
	}
	return fault.Invalid("malformed JSON %s: %v", what, err)
}

// jsonKindOf is the kind of JSON value b, as a *json.UnmarshalTypeError
// names it.
func jsonKindOf(b []byte) string {
	switch b = bytes.TrimSpace(b); {
	case len(b) == 0:
		return "nothing"
	case b[0] == '{':
		return "object"
	case b[0] == '[':
		return "array"
	case b[0] == '"':
		return "string"
	case b[0] == 't' || b[0] == 'f':
		return "bool"
	case b[0] == 'n':
		return "null"
	}
	return "number"
}

// jsonPath is a *json.UnmarshalTypeError's Field in JSON's names: along
// the members of the objects it walks from t, encoding/json puts the Go
// name of an embedded struct ("StartWorkflowRequest.name" for a test
// request's name, "webhookConfig.name"), which no JSON holds, so a name
// that is no member of the object it is in is left out. Where the walk
// loses the type (a value decoded as untyped), the rest is kept.
func jsonPath(t reflect.Type, field string) string {
	var path []string
	for _, name := range strings.Split(field, ".") {
		t = valueType(t)
		if t == nil || t.Kind() != reflect.Struct {
			t = nil
			path = append(path, name)
			continue
		}
		f, ok := member(t, name)
		if !ok {
			continue
		}
		t = f.Type
		path = append(path, name)
	}
	return strings.Join(path, ".")
}

// valueType is the type of the JSON object or scalar a value of type t
// reads, through pointers, slices, arrays and maps.
func valueType(t reflect.Type) reflect.Type {
	for t != nil {
		switch t.Kind() {
		case reflect.Pointer, reflect.Slice, reflect.Array, reflect.Map:
			t = t.Elem()
		default:
			return t
		}
	}
	return nil
}

// member is the field of struct t that encoding/json decodes member name
// into: an embedded struct without a name of its own is none, its fields
// are.
func member(t reflect.Type, name string) (reflect.StructField, bool) {
	for _, f := range reflect.VisibleFields(t) {
		tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if tag == "-" || !f.IsExported() || (f.Anonymous && tag == "") {
			continue
		}
		if tag == "" {
			tag = f.Name
		}
		if strings.EqualFold(tag, name) {
			return f, true
		}
	}
	return reflect.StructField{}, false
}
