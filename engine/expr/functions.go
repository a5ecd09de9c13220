package expr

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
)

// A path may end in one of Jayway's functions (PathFunctionFactory of
// json-path 2.9), with arguments: literals ('x', "x", 1, 2.5, true, null,
// a list of them) and paths, which Jayway reads from the root of the
// document whether they start with "$" or "@":
//
//	length() size()         elements of a list, keys of a map (else null,
//	                        a string's too)
//	min() max() sum()       over the numbers of the list and of the
//	avg() stddev()          arguments (lists among them flattened), as a
//	                        double; null when there are none
//	concat(args...)         the strings of the list, then each argument's
//	                        text (null ones skipped), as one string
//	append(args...)         a copy of the list with each argument added
//	                        (a list as one element); anything else as it is
//	keys()                  the keys of a map, sorted
//	first() last() index(n) an element of the list, n negative from the
//	                        end; null out of range or on anything else
//
// Each function's work is taken from the evaluation's steps: an element or
// argument it reads, and 32 bytes of the text concat builds.

// FuncDoc is a Doc told of each function a path applies, before it runs:
// its name, the value it is applied to and its arguments' values; and of
// each comparison a filter makes: its operator and the values it
// compares, from which the elements the filter keeps are computed. A
// caller learns so whether a result was computed from values it holds
// apart (sealed data, which the result would carry in another form).
type FuncDoc interface {
	Doc
	FuncOver(name string, model any, args []any)
	CompareOver(op string, l, r any)
}

// fnCall is the function a path ends in and its arguments.
type fnCall struct {
	name string
	args []fnArg
}

// fnArg is a literal or, when path is set, a path read from the root.
type fnArg struct {
	path *jsonPath
	lit  any
}

// pathFunc applies a function to the value the path selected (model) and
// the arguments' values; false where Jayway's fails.
type pathFunc func(model any, args []any, w *work) (any, bool)

// rootModel is the model of a function applied to "$" itself: the
// document's sources cannot be enumerated, so it is no list nor map.
type rootModel struct{}

var functions = map[string]struct {
	fn         pathFunc
	minA, maxA int // how many arguments it takes; -1 for any
}{
	"length": {size, 0, 0}, "size": {size, 0, 0},
	"min": {aggregate(func(ns []float64) float64 { return slices.Min(ns) }), 0, -1},
	"max": {aggregate(func(ns []float64) float64 { return slices.Max(ns) }), 0, -1},
	"sum": {aggregate(sum), 0, -1},
	"avg": {aggregate(func(ns []float64) float64 { return sum(ns) / float64(len(ns)) }), 0, -1},
	"stddev": {aggregate(func(ns []float64) float64 {
		n, s := float64(len(ns)), sum(ns)
		var sq float64
		for _, x := range ns {
			sq += x * x
		}
		// Jayway's formula, whose rounding makes the variance of equal
		// numbers (0.1, 0.1, 0.1) a little below zero: its square root
		// was NaN, which no JSON holds.
		return math.Sqrt(max(0, sq/n-s*s/n/n))
	}), 0, -1},
	"concat": {concat, 0, -1},
	"append": {appendFn, 0, -1},
	"keys":   {keys, 0, 0},
	"first":  {element(func([]any) (int, bool) { return 0, true }), 0, 0},
	"last":   {element(func([]any) (int, bool) { return -1, true }), 0, 0},
	"index": {element(func(args []any) (int, bool) {
		n, ok := toNumber(first(flatten(args)))
		if !ok {
			return 0, false
		}
		if !n.isInt {
			n.i = int64(n.f) // Java's intValue
		}
		return int(n.i), true
	}), 1, 1},
}

// call applies the function to model, reading its arguments first.
func (c *fnCall) call(model any, w *work) (any, bool) {
	args := make([]any, len(c.args))
	for i, a := range c.args {
		if a.path == nil {
			args[i] = a.lit
			continue
		}
		args[i] = w.readRoot(a.path)
	}
	// Every function may read each element of a list: they are charged
	// before it runs, and its arguments' elements by the function.
	if a, ok := model.([]any); w.spent() || ok && !w.take(len(a)) {
		return nil, false
	}
	if fd, ok := w.doc.(FuncDoc); ok {
		fd.FuncOver(c.name, model, args)
	}
	return functions[c.name].fn(model, args, w)
}

// size is Jayway's length() and size(): the length of an array or a map.
func size(v any, _ []any, _ *work) (any, bool) {
	switch x := v.(type) {
	case []any:
		return int64(len(x)), true
	case map[string]any:
		return int64(len(x)), true
	}
	return nil, true
}

// aggregate makes a numeric function of Jayway's: fn of the numbers an
// array and the arguments hold (other elements are skipped), as a float64
// as Jayway returns a Double; it fails where there are none.
func aggregate(fn func([]float64) float64) pathFunc {
	return func(v any, args []any, w *work) (any, bool) {
		a, _ := v.([]any)
		args = flatten(args)
		if !w.take(len(args)) {
			return nil, false
		}
		var ns []float64
		for _, e := range slices.Concat(a, args) {
			if n, ok := toNumber(e); ok {
				ns = append(ns, n.float())
			}
		}
		if len(ns) == 0 {
			return nil, false
		}
		// An overflow (sum() of 1e308 and 1e308) is no JSON number: the
		// value could be neither recorded nor served.
		if r := fn(ns); !math.IsInf(r, 0) && !math.IsNaN(r) {
			return r, true
		}
		return nil, true
	}
}

func sum(ns []float64) float64 {
	var s float64
	for _, x := range ns {
		s += x
	}
	return s
}

// concat is Jayway's: the strings of an array (numbers and the rest are
// skipped), then the text of each argument that is not null, a list or map
// as JSON. The text is bounded by what the evaluation's result may take.
func concat(v any, args []any, w *work) (any, bool) {
	a, _ := v.([]any)
	if !w.take(len(args)) {
		return nil, false
	}
	var b strings.Builder
	add := func(s string) bool {
		b.WriteString(s)
		if b.Len() > w.room {
			w.over = true
			return false
		}
		return w.text(s)
	}
	for _, e := range a {
		if s, ok := e.(string); ok && !add(s) {
			return nil, false
		}
	}
	for _, arg := range args {
		if arg == nil {
			continue
		}
		if m, ok := arg.(map[string]any); ok && len(m) > 0 || isList(arg) {
			// interpolate encodes it whole: check its size first.
			if !w.take(1) || !fitsText(arg, w.room-b.Len()) {
				w.over = true
				return nil, false
			}
		}
		if !add(interpolate(arg)) {
			return nil, false
		}
	}
	return b.String(), true
}

func isList(v any) bool { _, ok := v.([]any); return ok }

// fitsText reports whether v may encode in room bytes, before it is
// encoded whole.
func fitsText(v any, room int) bool { return (&evaluator{room: room}).measure(v) }

// appendFn is Jayway's append(): a copy of the array with each argument
// added (Jayway adds to the document's own array); what is not an array
// is returned as it is.
func appendFn(v any, args []any, w *work) (any, bool) {
	a, ok := v.([]any)
	if !ok {
		return v, true
	}
	if !w.take(len(args)) {
		return nil, false
	}
	return slices.Concat(a, args), true
}

// keys is Jayway's keys(): the keys of a map, sorted where Jayway keeps
// the document's order (which a Go map does not hold).
func keys(v any, _ []any, w *work) (any, bool) {
	m, ok := v.(map[string]any)
	if !ok {
		return nil, true
	}
	if !w.take(2 * len(m)) {
		return nil, false
	}
	out := make([]any, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, k)
	}
	return out, true
}

// element makes first(), last() and index(n): the element of an array at
// the index pos gives, negative from the end. Jayway fails on anything
// else, out of range, and where the index from the end is 0 (last() of a
// list of one): flowvault gives that element.
func element(pos func(args []any) (int, bool)) pathFunc {
	return func(v any, args []any, _ *work) (any, bool) {
		a, ok := v.([]any)
		if !ok {
			return nil, false
		}
		i, ok := pos(args)
		if i < 0 {
			i += len(a)
		}
		if !ok || i < 0 || i >= len(a) {
			return nil, false
		}
		return a[i], true
	}
}

// flatten is Jayway's Parameter.toList: the arguments, with the elements
// of a list argument in its place.
func flatten(args []any) []any {
	var out []any
	for _, a := range args {
		if l, ok := a.([]any); ok {
			out = append(out, l...)
			continue
		}
		out = append(out, a)
	}
	return out
}

func first(a []any) any {
	if len(a) == 0 {
		return nil
	}
	return a[0]
}

// compileCall parses the "name(args)" of a function at s[i:], which must
// end the path; depth counts the functions it is an argument of.
func compileCall(s string, i, depth int) (*fnCall, error) {
	open := strings.IndexByte(s[i:], '(')
	if open < 0 {
		return nil, fmt.Errorf("%w: expected \"(\" at offset %d", errPath, i)
	}
	name := s[i : i+open]
	spec, ok := functions[name]
	if !ok {
		return nil, fmt.Errorf("%w: unsupported function %q", errPath, name)
	}
	body, ok := strings.CutSuffix(s[i+open+1:], ")")
	if !ok {
		return nil, fmt.Errorf("%w: function %q must end the path", errPath, name)
	}
	if depth >= maxNesting {
		return nil, fmt.Errorf("%w: functions nested too deeply", errPath)
	}
	c := &fnCall{name: name}
	parts, err := splitArgs(body)
	if err != nil {
		return nil, err
	}
	for _, part := range parts {
		var a fnArg
		switch part[0] {
		case '$', '@':
			a.path, err = compilePathAt(part, part[0], depth+1)
		default:
			fp := &filterParser{s: part}
			var o operand
			if o, err = fp.operand(depth + 1); err == nil && o.path == nil && o.re == nil {
				if fp.skipSpace(); fp.i < len(part) {
					err = fmt.Errorf("%w: bad argument %q", errPath, part)
				}
			} else if err == nil {
				err = fmt.Errorf("%w: bad argument %q", errPath, part)
			}
			a.lit = o.lit
		}
		if err != nil {
			return nil, err
		}
		c.args = append(c.args, a)
	}
	if len(c.args) < spec.minA || spec.maxA >= 0 && len(c.args) > spec.maxA {
		return nil, fmt.Errorf("%w: %s() takes %d to %d arguments, not %d", errPath, name, spec.minA, spec.maxA, len(c.args))
	}
	return c, nil
}

// splitArgs splits a function's arguments at the commas outside quotes,
// brackets and parentheses, each trimmed; none for a blank body.
func splitArgs(body string) ([]string, error) {
	if strings.TrimSpace(body) == "" {
		return nil, nil
	}
	var parts []string
	depth, start := 0, 0
	for i := 0; i < len(body); i++ {
		switch body[i] {
		case '\'', '"':
			end, err := skipQuoted(body, i)
			if err != nil {
				return nil, err
			}
			i = end - 1
		case '(', '[':
			depth++
		case ')', ']':
			depth--
		case ',':
			if depth == 0 {
				parts = append(parts, strings.TrimSpace(body[start:i]))
				start = i + 1
			}
		}
	}
	parts = append(parts, strings.TrimSpace(body[start:]))
	for _, p := range parts {
		if p == "" {
			return nil, fmt.Errorf("%w: empty function argument", errPath)
		}
	}
	return parts, nil
}
