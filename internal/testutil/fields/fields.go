// Package fields fills structs for the tests of hand-written encoders.
package fields

import (
	"bytes"
	"reflect"
	"testing"

	"github.com/flowvault/flowvault/schemas"
)

// Fill sets exported field only of the struct v (every one when only
// is -1) to a value that omitempty keeps: the hand-written encoders' tests
// set every field, and each field alone, so that two fields cannot swap
// places unnoticed.
func Fill(v reflect.Value, only int) {
	for i := range v.NumField() {
		if !v.Type().Field(i).IsExported() || only >= 0 && i != only {
			continue
		}
		f := v.Field(i)
		switch f.Kind() {
		case reflect.String:
			f.SetString(v.Type().Field(i).Name)
		case reflect.Int, reflect.Int64:
			f.SetInt(1_700_000_000_000 + int64(i))
		case reflect.Uint64:
			f.SetUint(1<<40 + uint64(i))
		case reflect.Uint16:
			f.SetUint(300 + uint64(i))
		case reflect.Bool:
			f.SetBool(true)
		case reflect.Struct:
			Fill(f, -1)
		case reflect.Map:
			m := reflect.MakeMap(f.Type())
			m.SetMapIndex(reflect.ValueOf("k"), reflect.ValueOf("v").Convert(f.Type().Elem()))
			f.Set(m)
		case reflect.Slice:
			s := reflect.MakeSlice(f.Type(), 1, 1)
			switch e := s.Index(0); e.Kind() {
			case reflect.Uint8:
				e.SetUint(7)
			case reflect.Struct:
				Fill(e, -1)
			case reflect.String:
				e.SetString("s")
			case reflect.Slice:
				e.Set(reflect.ValueOf([]any{"x", int64(1)}))
			}
			f.Set(s)
		}
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
// methods, encodes the reflective way.
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
			t.Fatalf("%T #%d encodes to\n%x\nreflection gives\n%x", v, i, got, want)
		}
	}
}
