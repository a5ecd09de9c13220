package conductor

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strconv"
	"strings"
)

// Conductor reads its JSON with Jackson, which coerces scalars by default:
// "2" is read into a number field, 2 into a string field, "true" into a
// boolean one. Clients rely on it (a version given as "2" from a form or a
// shell script), so a body that fails to decode only because of such a
// scalar is decoded again with the scalars its fields' types call for.
// The first decode stays the only one for every well-typed body.

// coercible reports whether err is a scalar of the wrong type that
// coercion may fix.
func coercible(err error) bool {
	var te *json.UnmarshalTypeError
	return errors.As(err, &te) && (te.Value == "string" || te.Value == "number" || strings.HasPrefix(te.Value, "number ") || te.Value == "bool")
}

// coerce returns data with the scalars a value of type t holds converted
// to what its fields' types read, and whether it changed anything.
func coerce(data []byte, t reflect.Type) ([]byte, bool) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var doc any
	if dec.Decode(&doc) != nil {
		return nil, false
	}
	out, changed := coerceValue(doc, t)
	if !changed {
		return nil, false
	}
	fixed, err := json.Marshal(out)
	if err != nil {
		return nil, false
	}
	return fixed, true
}

var unmarshalerType = reflect.TypeFor[json.Unmarshaler]()

func coerceValue(v any, t reflect.Type) (any, bool) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		// It decodes itself, coercing the same way (unmarshalExact).
		return v, false
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Float32, reflect.Float64:
		if s, ok := v.(string); ok {
			if _, err := strconv.ParseFloat(strings.TrimSpace(s), 64); err == nil {
				return json.Number(strings.TrimSpace(s)), true
			}
		}
	case reflect.Bool:
		if s, ok := v.(string); ok {
			switch strings.ToLower(strings.TrimSpace(s)) {
			case "true":
				return true, true
			case "false":
				return false, true
			}
		}
	case reflect.String:
		switch x := v.(type) {
		case json.Number:
			return string(x), true
		case bool:
			return strconv.FormatBool(x), true
		}
	case reflect.Slice, reflect.Array:
		a, ok := v.([]any)
		if !ok {
			return v, false
		}
		changed := false
		for i, e := range a {
			var c bool
			if a[i], c = coerceValue(e, t.Elem()); c {
				changed = true
			}
		}
		return a, changed
	case reflect.Map:
		m, ok := v.(map[string]any)
		if !ok {
			return v, false
		}
		changed := false
		for k, e := range m {
			if n, c := coerceValue(e, t.Elem()); c {
				m[k], changed = n, true
			}
		}
		return m, changed
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			return v, false
		}
		fields := jsonFields(t)
		changed := false
		for k, e := range m {
			f, ok := fields[k]
			if !ok {
				f, ok = fields[strings.ToLower(k)]
			}
			if !ok {
				continue
			}
			if n, c := coerceValue(e, f); c {
				m[k], changed = n, true
			}
		}
		return m, changed
	}
	return v, false
}

// jsonFields maps the JSON names of t's fields, as given and lower-cased
// (encoding/json matches keys without regard to case), to their types;
// embedded structs' fields are promoted.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	var add func(t reflect.Type)
	add = func(t reflect.Type) {
		for i := range t.NumField() {
			f := t.Field(i)
			tag := f.Tag.Get("json")
			if tag == "-" {
				continue
			}
			name, _, _ := strings.Cut(tag, ",")
			if f.Anonymous && name == "" {
				ft := f.Type
				if ft.Kind() == reflect.Pointer {
					ft = ft.Elem()
				}
				if ft.Kind() == reflect.Struct {
					add(ft)
					continue
				}
			}
			if !f.IsExported() {
				continue
			}
			if name == "" {
				name = f.Name
			}
			out[name] = f.Type
			if _, taken := out[strings.ToLower(name)]; !taken {
				out[strings.ToLower(name)] = f.Type
			}
		}
	}
	add(t)
	return out
}
