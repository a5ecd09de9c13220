// Package fields fills structs for the tests of hand-written encoders.
package fields

import (
	"bytes"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/flowvault/flowvault/schemas"
)

// Fill sets exported field only of the struct v (every one when only
// is -1) to a value that omitempty keeps and that decodes back as it was,
// and so on down: the fields of nested structs, what pointers point to,
// one entry of each map, slice and array. The hand-written encoders' tests
// set every field, and each field alone, so that a field an encoder does
// not write, or two fields in each other's place, fail. Each field's
// value differs from its neighbours'. A field of a kind Fill cannot set
// panics: left zero, omitempty drops it from both encodings and from
// the decoded value alike, and a test of it proves nothing.
func Fill(v reflect.Value, only int) {
	for i := range v.NumField() {
		sf := v.Type().Field(i)
		if !sf.IsExported() || sf.Tag.Get("msgpack") == "-" || only >= 0 && i != only {
			continue
		}
		fill(v.Field(i), v.Type().Name()+"."+sf.Name, sf.Name, i)
	}
}

// fill sets f, at path, to a non-zero value made of name and i.
func fill(f reflect.Value, path, name string, i int) {
	switch f.Kind() {
	case reflect.String:
		f.SetString(name)
	case reflect.Int, reflect.Int64:
		f.SetInt(1_700_000_000_000 + int64(i))
	case reflect.Int32:
		f.SetInt(1_000_000 + int64(i))
	case reflect.Int16:
		f.SetInt(300 + int64(i))
	case reflect.Int8:
		f.SetInt(1 + int64(i%100))
	case reflect.Uint, reflect.Uint64:
		f.SetUint(1<<40 + uint64(i))
	case reflect.Uint32:
		f.SetUint(1<<20 + uint64(i))
	case reflect.Uint16:
		f.SetUint(300 + uint64(i))
	case reflect.Uint8:
		// A positive fixint: a msgpack.RawMessage of it is a valid value.
		f.SetUint(1 + uint64(i%127))
	case reflect.Float32, reflect.Float64:
		f.SetFloat(0.5 + float64(i))
	case reflect.Bool:
		f.SetBool(true)
	case reflect.Interface:
		if f.NumMethod() > 0 {
			panic(fmt.Sprintf("fields: cannot fill %s of interface type %s", path, f.Type()))
		}
		// A string decodes into an interface as itself, where a number
		// comes back as the smallest integer type that holds it.
		f.Set(reflect.ValueOf(name))
	case reflect.Pointer:
		p := reflect.New(f.Type().Elem())
		fill(p.Elem(), path, name, i)
		f.Set(p)
	case reflect.Struct:
		if f.NumField() > 0 && !slices.ContainsFunc(reflect.VisibleFields(f.Type()), reflect.StructField.IsExported) {
			panic(fmt.Sprintf("fields: cannot fill %s of type %s, which has no exported field", path, f.Type()))
		}
		for j := range f.NumField() {
			sf := f.Type().Field(j)
			if sf.IsExported() && sf.Tag.Get("msgpack") != "-" {
				fill(f.Field(j), path+"."+sf.Name, sf.Name, j)
			}
		}
	case reflect.Map:
		k := reflect.New(f.Type().Key()).Elem()
		fill(k, path+"[key]", "k", i)
		e := reflect.New(f.Type().Elem()).Elem()
		fill(e, path+"[]", "v", i)
		m := reflect.MakeMap(f.Type())
		m.SetMapIndex(k, e)
		f.Set(m)
	case reflect.Slice:
		s := reflect.MakeSlice(f.Type(), 1, 1)
		fill(s.Index(0), path+"[]", name, i)
		f.Set(s)
	case reflect.Array:
		for j := range f.Len() {
			fill(f.Index(j), path+"[]", name, i+j)
		}
	default:
		panic(fmt.Sprintf("fields: cannot fill %s of kind %s", path, f.Kind()))
	}
}

// Variants returns a zero T, a T with every field set, and for each field
// a T with that field alone set.
func Variants[T any]() []*T {
	full := new(T)
	Fill(reflect.ValueOf(full).Elem(), -1)
	out := []*T{new(T), full}
	for i := range reflect.TypeFor[T]().NumField() {
		v := new(T)
		Fill(reflect.ValueOf(v).Elem(), i)
		out = append(out, v)
	}
	return out
}

// MatchesReflection fails t unless every variant of T (see Variants)
// encodes by hand (schemas.MarshalSorted) exactly as R, T without its
// methods, encodes the reflective way, and decodes back to itself: a
// failure names the fields that differ.
func MatchesReflection[T, R any](t testing.TB) {
	t.Helper()
	for i, v := range Variants[T]() {
		got, err := schemas.MarshalSorted(v)
		if err != nil {
			t.Fatal(err)
		}
		want, err := schemas.MarshalSorted(reflect.ValueOf(v).Convert(reflect.TypeFor[*R]()).Interface())
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%T #%d: the hand-written encoding differs from the reflective one: %s\nencodes to\n%x\nreflection gives\n%x",
				v, i, KeyDiff(reflect.TypeFor[T](), got, want), got, want)
		}
		if d := RoundTrip(t, v); d != "" {
			t.Fatalf("%T #%d does not survive its encoding: %s", v, i, d)
		}
	}
}

// RoundTrip encodes v as the engine does (schemas.MarshalSorted: its own
// encoder, if it has one), decodes the bytes into a new T the reflective
// way, as every reader does, and returns Diff's description of what
// differs.
func RoundTrip[T any](t testing.TB, v *T) string {
	t.Helper()
	b, err := schemas.MarshalSorted(v)
	if err != nil {
		t.Fatalf("encode %T: %v", v, err)
	}
	back := new(T)
	if err := msgpack.Unmarshal(b, back); err != nil {
		t.Fatalf("decode %T: %v", v, err)
	}
	return Diff(v, back)
}

// KeyDiff names the keys, and typ's fields under them, that got, an
// encoding of a typ, has and want has not, or has otherwise, and the
// other way round.
func KeyDiff(typ reflect.Type, got, want []byte) string {
	var g, w map[string]msgpack.RawMessage
	if msgpack.Unmarshal(got, &g) != nil || msgpack.Unmarshal(want, &w) != nil {
		return "(not maps)"
	}
	field := func(key string) string {
		for i := range typ.NumField() {
			if tag, _, _ := strings.Cut(typ.Field(i).Tag.Get("msgpack"), ","); tag == key {
				return typ.Name() + "." + typ.Field(i).Name
			}
		}
		return "?"
	}
	var out []string
	for k, v := range w {
		switch gv, ok := g[k]; {
		case !ok:
			out = append(out, fmt.Sprintf("%s (%q) not written", field(k), k))
		case !bytes.Equal(gv, v):
			out = append(out, fmt.Sprintf("%s (%q) written otherwise", field(k), k))
		}
	}
	for k := range g {
		if _, ok := w[k]; !ok {
			out = append(out, fmt.Sprintf("%q written, which %s has no field for", k, typ.Name()))
		}
	}
	if len(out) == 0 {
		return "same keys and values, in another order"
	}
	slices.Sort(out)
	return strings.Join(out, "; ")
}

// Diff describes the first exported field (down through nested structs,
// pointers, maps and slices) in which got differs from want, or returns
// "" when none does. Unexported fields, which no encoding carries, and
// fields tagged msgpack:"-" are not compared.
func Diff(want, got any) string {
	a, b := reflect.ValueOf(want), reflect.ValueOf(got)
	if a.Type() != b.Type() {
		return fmt.Sprintf("%s, want %s", b.Type(), a.Type())
	}
	return diff(strings.TrimPrefix(a.Type().String(), "*"), a, b)
}

func diff(path string, a, b reflect.Value) string {
	if a.IsValid() != b.IsValid() || a.IsValid() && a.Type() != b.Type() {
		return fmt.Sprintf("%s: %s read back, %s written", path, describe(b), describe(a))
	}
	if !a.IsValid() {
		return ""
	}
	switch a.Kind() {
	case reflect.Pointer, reflect.Interface:
		if a.IsNil() || b.IsNil() {
			if a.IsNil() != b.IsNil() {
				return fmt.Sprintf("%s: %s read back, %s written", path, describe(b), describe(a))
			}
			return ""
		}
		return diff(path, a.Elem(), b.Elem())
	case reflect.Struct:
		for i := range a.NumField() {
			sf := a.Type().Field(i)
			if !sf.IsExported() || sf.Tag.Get("msgpack") == "-" {
				continue
			}
			if d := diff(path+"."+sf.Name, a.Field(i), b.Field(i)); d != "" {
				return d
			}
		}
		return ""
	case reflect.Slice, reflect.Array:
		if a.Kind() == reflect.Slice && a.IsNil() != b.IsNil() || a.Len() != b.Len() {
			return fmt.Sprintf("%s: %s read back, %s written", path, describe(b), describe(a))
		}
		for i := range a.Len() {
			if d := diff(fmt.Sprintf("%s[%d]", path, i), a.Index(i), b.Index(i)); d != "" {
				return d
			}
		}
		return ""
	case reflect.Map:
		if a.IsNil() != b.IsNil() || a.Len() != b.Len() {
			return fmt.Sprintf("%s: %s read back, %s written", path, describe(b), describe(a))
		}
		for _, k := range a.MapKeys() {
			if d := diff(fmt.Sprintf("%s[%v]", path, k), a.MapIndex(k), b.MapIndex(k)); d != "" {
				return d
			}
		}
		return ""
	default:
		if !reflect.DeepEqual(a.Interface(), b.Interface()) {
			return fmt.Sprintf("%s: %s read back, %s written", path, describe(b), describe(a))
		}
		return ""
	}
}

// describe shows a value in a difference.
func describe(v reflect.Value) string {
	switch {
	case !v.IsValid():
		return "nothing"
	case (v.Kind() == reflect.Slice || v.Kind() == reflect.Map) && v.IsNil():
		return "nil"
	case v.Kind() == reflect.Slice || v.Kind() == reflect.Map:
		return fmt.Sprintf("%d entries", v.Len())
	case v.Kind() == reflect.Pointer && v.IsNil():
		return "nil"
	case v.Kind() == reflect.Pointer:
		return "&" + describe(v.Elem())
	case v.CanInterface():
		return fmt.Sprintf("%v (%s)", v.Interface(), v.Type())
	}
	return v.Type().String()
}
