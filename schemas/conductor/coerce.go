package conductor

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"
)

// Conductor reads its JSON with Jackson, which coerces scalars by default:
// "2" is read into a number field, 2 into a string field, "true" into a
// boolean one, and (ACCEPT_FLOAT_AS_INT) 2.0 or 1e2 into an integer one.
// Clients rely on it (a version given as "2" from a form or a shell
// script, a Python worker's 3600/2 sent as 1800.0), so a body that fails
// to decode only because of such a scalar is decoded again with the
// scalars its fields' types call for. The first decode stays the only one
// for every well-typed body.
//
// A definition keeps the JSON it was decoded from (Raw) and serves it: it
// keeps the coerced JSON, as Jackson writes back what it read, so that a
// client reading it (a worker's SDK decoding a poll's workflowTask into
// typed fields) gets the types Conductor's would.

// coercible reports whether err is a scalar of the wrong type that
// coercion may fix.
func coercible(err error) bool {
	var te *json.UnmarshalTypeError
	return errors.As(err, &te) && (te.Value == "string" || te.Value == "number" || strings.HasPrefix(te.Value, "number ") || te.Value == "bool")
}

// selfCoercing is implemented by the types that decode themselves with
// unmarshalExact and keep their raw JSON: coerce reads into them as into
// any struct, and coerced reports whether their own decoding coerced
// anything (so that the value that holds them rewrites its raw JSON too).
type selfCoercing interface {
	coerced() bool
}

var (
	unmarshalerType  = reflect.TypeFor[json.Unmarshaler]()
	selfCoercingType = reflect.TypeFor[selfCoercing]()
	holdsSelfCache   sync.Map // reflect.Type -> bool
	jsonFieldsCache  sync.Map // reflect.Type -> *fieldTypes
	errNotCoercible  = errors.New("not coercible")
	coercedTrue      = []byte("true")
	coercedFalse     = []byte("false")
)

// coerce returns data with the scalars that a value of type t holds
// converted to what its fields' types read, and whether it changed
// anything. Only those scalars change: everything else, members t does not
// know, their order and spacing included, is kept byte for byte.
func coerce(data []byte, t reflect.Type) ([]byte, bool) {
	out, changed, _ := coerceCounting(data, t)
	return out, changed
}

// coerceCounting is coerce that also returns how many bytes of data the
// values of self-decoding types (selfCoercing) hold, nested ones counted
// again with each that holds them: what decoding data makes them read
// and copy, each level on its own.
func coerceCounting(data []byte, t reflect.Type) (out []byte, changed bool, selfBytes int) {
	c := coercer{data: data}
	if c.value(t) != nil || !c.changed {
		return nil, false, c.selfBytes
	}
	return append(c.out, data[c.last:]...), true, c.selfBytes
}

// coercer walks JSON text along a Go type, rewriting the scalars to
// coerce. It reads text the decoder has already found well-formed; any
// surprise stops it (errNotCoercible) and the decoder's error stands.
type coercer struct {
	data    []byte
	pos     int
	out     []byte // data[:last] with the replacements made
	last    int
	changed bool
	// selfBytes sums the lengths of the self-decoding values walked.
	selfBytes int
}

func (c *coercer) replace(start, end int, with []byte) {
	c.out = append(c.out, c.data[c.last:start]...)
	c.out = append(c.out, with...)
	c.last, c.changed = end, true
}

func (c *coercer) skipSpace() {
	for c.pos < len(c.data) {
		switch c.data[c.pos] {
		case ' ', '\t', '\n', '\r':
			c.pos++
		default:
			return
		}
	}
}

// target is what a value of type t is read as: nil for a value that is
// kept as it is (untyped, or decoded by a method of its own).
func target(t reflect.Type) reflect.Type {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil || t.Kind() == reflect.Interface {
		return nil
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) && !reflect.PointerTo(t).Implements(selfCoercingType) {
		return nil
	}
	return t
}

// value reads the value at c.pos into t, rewriting what t coerces.
func (c *coercer) value(t reflect.Type) error {
	t = target(t)
	c.skipSpace()
	if c.pos >= len(c.data) {
		return errNotCoercible
	}
	switch b := c.data[c.pos]; {
	case b == '{':
		return c.object(t)
	case b == '[':
		return c.array(t)
	case b == '"':
		start := c.pos
		end, err := c.stringEnd()
		if err != nil {
			return err
		}
		c.pos = end
		if t == nil || !isScalarKind(t.Kind()) || t.Kind() == reflect.String {
			return nil
		}
		var s string
		if json.Unmarshal(c.data[start:end], &s) != nil {
			return errNotCoercible
		}
		if with := fromString(strings.TrimSpace(s), t.Kind()); with != nil {
			c.replace(start, end, with)
		}
		return nil
	case b == '-' || b >= '0' && b <= '9':
		start := c.pos
		for c.pos < len(c.data) && strings.IndexByte("+-0123456789.eE", c.data[c.pos]) >= 0 {
			c.pos++
		}
		lit := string(c.data[start:c.pos])
		switch {
		case t == nil:
		case t.Kind() == reflect.String:
			c.replace(start, c.pos, []byte(`"`+lit+`"`))
		case isIntKind(t.Kind()):
			if n, ok := wholeNumber(lit); ok && n != lit {
				c.replace(start, c.pos, []byte(n))
			}
		}
		return nil
	default:
		for _, lit := range [][]byte{coercedTrue, coercedFalse, []byte("null")} {
			if len(c.data)-c.pos >= len(lit) && string(c.data[c.pos:c.pos+len(lit)]) == string(lit) {
				start := c.pos
				c.pos += len(lit)
				if t != nil && t.Kind() == reflect.String && lit[0] != 'n' {
					c.replace(start, c.pos, []byte(`"`+string(lit)+`"`))
				}
				return nil
			}
		}
		return errNotCoercible
	}
}

func (c *coercer) object(t reflect.Type) error {
	if t != nil && reflect.PointerTo(t).Implements(selfCoercingType) {
		start := c.pos
		defer func() { c.selfBytes += c.pos - start }()
	}
	var fields *fieldTypes
	var elem reflect.Type
	switch {
	case t == nil:
	case t.Kind() == reflect.Struct:
		fields = jsonFields(t)
	case t.Kind() == reflect.Map:
		elem = t.Elem()
	}
	// A member named in another case than its field is one Jackson does
	// not know: its value is kept as given.
	return c.members(func(start, end int) error {
		if fields == nil {
			return c.value(elem)
		}
		f, _, err := fields.field(c.data[start:end])
		switch {
		case err != nil:
			return err
		case f == nil:
			return c.value(nil)
		}
		return c.value(f.t)
	})
}

// members reads the members of the object at c.pos, handing value the
// bounds of each one's key, quotes included, to read the value that
// follows it.
func (c *coercer) members(value func(start, end int) error) error {
	c.pos++ // {
	c.skipSpace()
	if c.pos < len(c.data) && c.data[c.pos] == '}' {
		c.pos++
		return nil
	}
	for {
		c.skipSpace()
		if c.pos >= len(c.data) || c.data[c.pos] != '"' {
			return errNotCoercible
		}
		start := c.pos
		end, err := c.stringEnd()
		if err != nil {
			return err
		}
		c.pos = end
		c.skipSpace()
		if c.pos >= len(c.data) || c.data[c.pos] != ':' {
			return errNotCoercible
		}
		c.pos++
		if err := value(start, end); err != nil {
			return err
		}
		if ended, err := c.separator('}'); ended || err != nil {
			return err
		}
	}
}

func (c *coercer) array(t reflect.Type) error {
	var elem reflect.Type
	if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
		elem = t.Elem()
	}
	return c.elements(func() error { return c.value(elem) })
}

// elements reads the elements of the array at c.pos, each with value.
func (c *coercer) elements(value func() error) error {
	c.pos++ // [
	c.skipSpace()
	if c.pos < len(c.data) && c.data[c.pos] == ']' {
		c.pos++
		return nil
	}
	for {
		if err := value(); err != nil {
			return err
		}
		if ended, err := c.separator(']'); ended || err != nil {
			return err
		}
	}
}

// separator reads past the ',' after a member or element, or past the
// closing byte of its object or array (ended).
func (c *coercer) separator(closing byte) (ended bool, err error) {
	c.skipSpace()
	if c.pos >= len(c.data) {
		return false, errNotCoercible
	}
	switch c.data[c.pos] {
	case ',':
		c.pos++
		return false, nil
	case closing:
		c.pos++
		return true, nil
	}
	return false, errNotCoercible
}

// stringEnd returns the index just past the string that starts at c.pos.
func (c *coercer) stringEnd() (int, error) {
	for i := c.pos + 1; i < len(c.data); i++ {
		switch c.data[i] {
		case '\\':
			i++
		case '"':
			return i + 1, nil
		}
	}
	return 0, errNotCoercible
}

func isIntKind(k reflect.Kind) bool {
	switch k {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return true
	}
	return false
}

func isScalarKind(k reflect.Kind) bool {
	return isIntKind(k) || k == reflect.Float32 || k == reflect.Float64 || k == reflect.Bool || k == reflect.String
}

// fromString is the JSON a string s becomes in a field of kind k: a number
// for a number field, true or false for a boolean one; nil when s is not
// one.
func fromString(s string, k reflect.Kind) []byte {
	if k == reflect.Bool {
		switch strings.ToLower(s) {
		case "true":
			return coercedTrue
		case "false":
			return coercedFalse
		}
		return nil
	}
	if !isNumber(s) {
		return nil
	}
	if isIntKind(k) {
		if n, ok := wholeNumber(s); ok {
			return []byte(n)
		}
	}
	return []byte(s)
}

// isNumber reports whether s is a JSON number.
func isNumber(s string) bool {
	return s != "" && (s[0] == '-' || s[0] >= '0' && s[0] <= '9') && json.Valid([]byte(s))
}

// wholeNumber returns the JSON number lit written as an integer when its
// value is one (2.0 is 2, 1e2 is 100, -0.0 is 0); false when it has a
// fraction, or is too large for any integer field (the decoder then
// refuses it as it is). It is exact: it reads the digits, not a float64.
func wholeNumber(lit string) (string, bool) {
	neg := strings.HasPrefix(lit, "-")
	mant, exp, hasExp := strings.Cut(strings.ToLower(strings.TrimPrefix(lit, "-")), "e")
	intPart, frac, _ := strings.Cut(mant, ".")
	digits := strings.TrimLeft(intPart+frac, "0")
	if digits == "" {
		return "0", true
	}
	// The value is 0.digits × 10^point.
	point := len(intPart) - (len(intPart+frac) - len(digits))
	if hasExp {
		e, err := strconv.Atoi(exp)
		if err != nil || e > 40 || e < -40 {
			return "", false
		}
		point += e
	}
	if point <= 0 || strings.TrimRight(digits[min(point, len(digits)):], "0") != "" {
		return "", false
	}
	if point > 20 { // past any int64 or uint64
		return "", false
	}
	n := digits[:min(point, len(digits))] + strings.Repeat("0", max(point-len(digits), 0))
	if neg {
		n = "-" + n
	}
	return n, true
}

// fieldTypes maps the JSON names of a struct's fields to their types.
type fieldTypes struct {
	exact map[string]*jsonField
	// folded holds the names by foldName: what encoding/json matches to a
	// field when no field's name is the key exactly.
	folded map[string]bool
	// namesOnce sets each field's names, when exactNames first reads the
	// struct: set with the fields, a struct that holds itself would be
	// read without end.
	namesOnce sync.Once
}

// jsonField is a struct's field as its JSON member is read.
type jsonField struct {
	t     reflect.Type
	names *names // what exactNames reads in it (see fieldTypes.namesOnce)
}

// field returns the field the JSON string key (its quotes included) names
// exactly, or, when it names none, whether it names one in another case
// (otherCase: "NAME", "taſkId"), which encoding/json would decode into
// that field and Jackson takes for a property it does not know.
func (f *fieldTypes) field(key []byte) (jf *jsonField, otherCase bool, err error) {
	text := key[1 : len(key)-1]
	if bytes.IndexByte(text, '\\') < 0 && utf8.Valid(text) {
		if jf, ok := f.exact[string(text)]; ok {
			return jf, false, nil
		}
		return nil, f.folded[foldName(string(text))], nil
	}
	var s string
	if json.Unmarshal(key, &s) != nil {
		return nil, false, errNotCoercible
	}
	if jf, ok := f.exact[s]; ok {
		return jf, false, nil
	}
	return nil, f.folded[foldName(s)], nil
}

// foldName folds a JSON key as encoding/json does when no field's name is
// the key exactly: ASCII letters to upper case, any other rune to the
// upper case of its lower case ("defaultCaſe" is "DEFAULTCASE").
func foldName(key string) string {
	var b strings.Builder
	b.Grow(len(key))
	for _, r := range key {
		if r < utf8.RuneSelf {
			if 'a' <= r && r <= 'z' {
				r -= 'a' - 'A'
			}
			b.WriteRune(r)
			continue
		}
		b.WriteRune(unicode.ToUpper(unicode.ToLower(r)))
	}
	return b.String()
}

// jsonFields maps the JSON names of t's fields to their types; embedded
// structs' fields are promoted.
func jsonFields(t reflect.Type) *fieldTypes {
	if m, ok := jsonFieldsCache.Load(t); ok {
		return m.(*fieldTypes)
	}
	out := &fieldTypes{exact: map[string]*jsonField{}, folded: map[string]bool{}}
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
			out.exact[name] = &jsonField{t: f.Type}
			out.folded[foldName(name)] = true
		}
	}
	add(t)
	jsonFieldsCache.Store(t, out)
	return out
}

// nestedCoerced reports whether a value that v holds decoded itself with
// coercion (see selfCoercing). v is the value just decoded, not itself
// one that reports.
func nestedCoerced(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			return false
		}
		if v.Type().Implements(selfCoercingType) {
			return v.Interface().(selfCoercing).coerced()
		}
		return nestedCoerced(v.Elem())
	case reflect.Struct:
		if reflect.PointerTo(v.Type()).Implements(selfCoercingType) {
			c := reflect.New(v.Type())
			c.Elem().Set(v)
			return c.Interface().(selfCoercing).coerced()
		}
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() && holdsSelfCoercing(v.Field(i).Type()) && nestedCoerced(v.Field(i)) {
				return true
			}
		}
	case reflect.Slice, reflect.Array:
		if !holdsSelfCoercing(v.Type()) {
			return false
		}
		for i := range v.Len() {
			if nestedCoerced(v.Index(i)) {
				return true
			}
		}
	case reflect.Map:
		if !holdsSelfCoercing(v.Type()) {
			return false
		}
		for it := v.MapRange(); it.Next(); {
			if nestedCoerced(it.Value()) {
				return true
			}
		}
	}
	return false
}

// holdsSelfCoercing reports whether a value of type t may hold a
// selfCoercing value.
func holdsSelfCoercing(t reflect.Type) bool {
	if b, ok := holdsSelfCache.Load(t); ok {
		return b.(bool)
	}
	found := holdsSelf(t, map[reflect.Type]bool{})
	holdsSelfCache.Store(t, found)
	return found
}

func holdsSelf(t reflect.Type, seen map[reflect.Type]bool) bool {
	if seen[t] {
		return false // a recursive type: its other members decide
	}
	seen[t] = true
	if t.Implements(selfCoercingType) || reflect.PointerTo(t).Implements(selfCoercingType) {
		return true
	}
	switch t.Kind() {
	case reflect.Pointer, reflect.Slice, reflect.Array, reflect.Map:
		return holdsSelf(t.Elem(), seen)
	case reflect.Struct:
		for i := range t.NumField() {
			if t.Field(i).IsExported() && holdsSelf(t.Field(i).Type, seen) {
				return true
			}
		}
	}
	return false
}

// ParseInt reads a query parameter's integer as a body's integer field is
// read: 2 or a whole number written 2.0 or 1e2.
func ParseInt(s string, bitSize int) (int64, error) {
	n, err := strconv.ParseInt(s, 10, bitSize)
	if err == nil || !isNumber(s) {
		return n, err
	}
	if whole, ok := wholeNumber(s); ok {
		return strconv.ParseInt(whole, 10, bitSize)
	}
	return n, err
}

// JSONKind says what JSON value decodes into t, for an error that
// names a field of the wrong type (a *json.UnmarshalTypeError's).
func JSONKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		// A whole number written 2.0 or 1e2 is read as one; this is a
		// fraction, or out of the field's range.
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Bool:
		return "true or false"
	case reflect.String:
		return "a string"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Map, reflect.Struct:
		return "an object"
	case reflect.Pointer:
		return JSONKind(t.Elem())
	}
	return t.String()
}
