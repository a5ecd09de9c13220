package expr

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Text is the text v contributes to a string with an embedded expression
// ("id ${x}"): what Conductor's Objects.toString gives, maps and lists as
// compact JSON. It is also the case a SWITCH or DECISION takes for v
// (Conductor's "" + value): a double is Java's, so {"x": 2.0} takes the
// case "2.0" as in Conductor, and the engine's value-param cases and the
// system worker's agree.
func Text(v any) string { return interpolate(v) }

// interpolate returns the text a value contributes to a string with an
// embedded expression. It follows OSS, which uses Java's Objects.toString:
// strings as they are, null as "null", booleans as "true"/"false", integers
// in decimal and doubles as Java's Double.toString prints them ("2.5", "3.0",
// "1.0E7"). Maps and lists are the one deliberate difference: Java prints
// them as "{a=1, b=2}", which nothing can parse, so flowvault writes compact
// JSON with sorted keys.
func interpolate(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case string:
		return x
	case bool:
		return strconv.FormatBool(x)
	case float64:
		return formatDouble(x, 64)
	case float32:
		return formatDouble(float64(x), 32)
	case uint64:
		return strconv.FormatUint(x, 10)
	case json.Number:
		return string(x)
	}
	if n, ok := toNumber(v); ok {
		return strconv.FormatInt(n.i, 10)
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return fmt.Sprint(v)
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// formatDouble formats f as Java's Double.toString (or Float.toString for
// bits == 32) does: plain decimal with at least one fractional digit for
// magnitudes in [1e-3, 1e7), computerized scientific notation otherwise.
func formatDouble(f float64, bits int) string {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	case f == 0 && math.Signbit(f):
		return "-0.0"
	case f == 0:
		return "0.0"
	}
	if a := math.Abs(f); a >= 1e-3 && a < 1e7 {
		s := strconv.FormatFloat(f, 'f', -1, bits)
		if !strings.Contains(s, ".") {
			s += ".0"
		}
		return s
	}
	mant, exp, _ := strings.Cut(strconv.FormatFloat(f, 'e', -1, bits), "e")
	if !strings.Contains(mant, ".") {
		mant += ".0"
	}
	sign := ""
	if exp[0] == '-' {
		sign = "-"
	}
	return mant + "E" + sign + strings.TrimLeft(exp[1:], "0")
}

// number is a JSON number of any Go numeric type. Integers stay exact so that
// large ids compare correctly.
type number struct {
	i     int64
	f     float64
	isInt bool
}

func toNumber(v any) (number, bool) {
	switch x := v.(type) {
	case int:
		return number{i: int64(x), isInt: true}, true
	case int8:
		return number{i: int64(x), isInt: true}, true
	case int16:
		return number{i: int64(x), isInt: true}, true
	case int32:
		return number{i: int64(x), isInt: true}, true
	case int64:
		return number{i: x, isInt: true}, true
	case uint:
		return toNumber(uint64(x))
	case uint8:
		return number{i: int64(x), isInt: true}, true
	case uint16:
		return number{i: int64(x), isInt: true}, true
	case uint32:
		return number{i: int64(x), isInt: true}, true
	case uint64:
		if x <= math.MaxInt64 {
			return number{i: int64(x), isInt: true}, true
		}
		return number{f: float64(x)}, true
	case float32:
		return number{f: float64(x)}, true
	case float64:
		return number{f: x}, true
	}
	return number{}, false
}

func (n number) float() float64 {
	if n.isInt {
		return float64(n.i)
	}
	return n.f
}

// cmp orders two numbers; NaN is unordered.
func (n number) cmp(o number) (int, bool) {
	if n.isInt && o.isInt {
		return cmp.Compare(n.i, o.i), true
	}
	a, b := n.float(), o.float()
	if math.IsNaN(a) || math.IsNaN(b) {
		return 0, false
	}
	return cmp.Compare(a, b), true
}

// deepCopy copies the maps and lists of a JSON value so that the caller may
// keep or modify the result without touching the template or the document.
// Other types are immutable in practice and are shared.
func deepCopy(v any) any {
	switch x := v.(type) {
	case map[string]any:
		if x == nil {
			return x
		}
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = deepCopy(e)
		}
		return m
	case []any:
		if x == nil {
			return x
		}
		s := make([]any, len(x))
		for i, e := range x {
			s[i] = deepCopy(e)
		}
		return s
	}
	return v
}
