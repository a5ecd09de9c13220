package expr

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/flowvault/flowvault/fault"
)

// Doc is what expressions read: "workflow" and every task reference name are
// top-level sources. Lookup returns the JSON-like value of a source
// (map[string]any), or false if there is no such source.
type Doc interface {
	Lookup(name string) (any, bool)
}

// MapDoc is a Doc over a plain map (tests, simple callers).
type MapDoc map[string]any

// Lookup returns d[name].
func (d MapDoc) Lookup(name string) (any, bool) {
	v, ok := d[name]
	return v, ok
}

// PayloadDoc is a Doc over one JSON object that may be read whole: an
// event's payload, whose expressions name its members (${orderId}) and,
// as Conductor's JSONPath reads them, the object itself (${$}, ${$..sku}).
// A workflow's document is not one: its sources cannot be enumerated.
type PayloadDoc map[string]any

// Lookup returns d[name].
func (d PayloadDoc) Lookup(name string) (any, bool) {
	v, ok := d[name]
	return v, ok
}

// root returns the object.
func (d PayloadDoc) root() any { return map[string]any(d) }

// wholeDoc is a Doc that paths from "$" read as one value (PayloadDoc).
type wholeDoc interface {
	Doc
	root() any
}

// Evaluate resolves every ${...} in tmpl (recursively through maps and
// slices, never in map keys) against doc and returns a new value; tmpl is not
// modified, and every map and slice of the result is a fresh copy that the
// caller may keep.
//
// Expressions in the deferred namespaces ("workflow.secrets." and
// "workflow.env.") are not resolved: they stay in place as literal text
// "${workflow.secrets.NAME...}" (after resolving any nested expressions inside
// them, so ${workflow.secrets.${workflow.input.n}} becomes
// ${workflow.secrets.db} when workflow.input.n == "db"), and the path of every
// string that still contains one is returned in deferred, in template order.
// Such strings are in the deferred encoding (see ResolveDeferred), in which
// data substituted around the expression can never become an expression.
//
// Evaluate returns an error (a PathError wrapping ErrSyntax) for syntax
// errors such as an unterminated "${", and one wrapping ErrTooLarge for a
// result over DefaultLimit bytes (see EvaluateWithin); a path that resolves
// to nothing yields nil, as Conductor does.
func Evaluate(tmpl any, doc Doc) (value any, deferred []Path, err error) {
	return EvaluateWithin(tmpl, doc, DefaultLimit)
}

// EvaluateWithin is Evaluate with a result of at most limit bytes: see
// Budget. A limit of zero or less means DefaultLimit.
func EvaluateWithin(tmpl any, doc Doc, limit int) (value any, deferred []Path, err error) {
	return NewBudget(limit).Evaluate(tmpl, doc)
}

// EvaluateShared is Evaluate for a caller that only reads the result: a
// string that is exactly one expression yields the value it names as the
// document holds it, not a copy, and the result may share maps and slices
// with the document. Reading one element of a long list (a DO_WHILE's
// items, at every iteration) copied the whole list each time.
//
// A value shared counts against the limit as a copy would: encoded, it is
// as large. Only a template that is one expression and nothing else is not
// counted: its result is a value of the document itself, no larger than
// the document, and measuring it would cost what copying it did.
func EvaluateShared(tmpl any, doc Doc) (value any, deferred []Path, err error) {
	return NewBudget(DefaultLimit).EvaluateShared(tmpl, doc)
}

// A Budget bounds what evaluations build together, in bytes of the JSON
// their results encode to, counted while each is built: a template that
// copies a value into many places (a hundred thousand keys of
// "${workflow.input}", one string repeating it), or many templates that
// each copy it, stop as soon as they pass the limit, with a PathError
// naming the field reached that wraps ErrTooLarge, before more is built.
// The count is a lower bound of the encoding (strings without their
// escapes, at least a byte a number), so results that fit are never
// refused. Each evaluation that succeeds takes what it counted from the
// budget; one that fails takes nothing. A Budget is not safe for
// concurrent use.
//
// A Budget bounds the work of its evaluations too, to MaxSteps together:
// see MaxSteps and ErrTooCostly.
type Budget struct {
	limit, left int
	work        *work
}

// NewBudget returns a budget of limit bytes (DefaultLimit for zero or
// less).
func NewBudget(limit int) *Budget { return newBudget(limit, MaxSteps) }

func newBudget(limit, steps int) *Budget {
	if limit <= 0 {
		limit = DefaultLimit
	}
	return &Budget{limit: limit, left: limit, work: newWork(steps)}
}

// Aside is a budget of what is left of b, whose evaluations b does not
// count: for a value evaluated to be read, not kept. Their steps are b's:
// reading costs as much as keeping.
func (b *Budget) Aside() *Budget { return &Budget{limit: b.limit, left: b.left, work: b.work} }

// Left is what the budget has not given yet.
func (b *Budget) Left() int { return b.left }

// Steps is what the evaluations of b and its Asides have taken of
// MaxSteps, for a caller that can stop between evaluations and go on
// later (a loop run by the decider alone).
func (b *Budget) Steps() int {
	if b.work == nil {
		return 0
	}
	return b.work.limit - b.work.left
}

// Evaluate is the package's Evaluate within what is left of b.
func (b *Budget) Evaluate(tmpl any, doc Doc) (value any, deferred []Path, err error) {
	return b.evaluate(tmpl, doc, false)
}

// EvaluateShared is the package's EvaluateShared within what is left of b.
func (b *Budget) EvaluateShared(tmpl any, doc Doc) (value any, deferred []Path, err error) {
	return b.evaluate(tmpl, doc, true)
}

func (b *Budget) evaluate(tmpl any, doc Doc, shared bool) (any, []Path, error) {
	if b.work == nil {
		b.work = newWork(MaxSteps) // a Budget{}
	}
	e := &evaluator{doc: doc, shared: shared, limit: b.limit, left: b.left, room: b.left, pathRoom: b.left,
		work: b.work, stepsBefore: b.work.limit - b.work.left}
	v, err := e.value(tmpl)
	if err != nil {
		return nil, nil, err
	}
	b.left = e.room
	return v, e.deferred, nil
}

// DefaultLimit bounds what Evaluate and EvaluateShared build: 64 MiB, the
// largest record the event log can be configured to hold
// (eventlog.Config.MaxRecordBytes), so nothing larger could ever be
// stored or handed to a worker. The engine passes its log's own limit.
const DefaultLimit = 64 << 20

// ErrTooLarge is wrapped by the error of an evaluation whose result passes
// its limit. It wraps fault.ErrTooLarge.
var ErrTooLarge = fmt.Errorf("expression result %w", fault.ErrTooLarge)

// ValidateTemplate walks tmpl and returns one error per invalid string, each
// naming its path relative to the template root (e.g.
// `http_request.headers.Authorization` or `items[2]`), in key order.
func ValidateTemplate(tmpl any) []PathError {
	var errs []PathError
	eachString(tmpl, func(s string, p Path) {
		if err := Validate(s); err != nil {
			errs = append(errs, PathError{Path: p.String(), Err: err})
		}
	})
	return errs
}

// eachString calls fn with every string of tmpl and its path, in key
// order.
func eachString(tmpl any, fn func(s string, p Path)) {
	var walk func(v any, p Path)
	walk = func(v any, p Path) {
		switch x := v.(type) {
		case string:
			fn(x, p)
		case map[string]any:
			for _, k := range slices.Sorted(maps.Keys(x)) {
				walk(x[k], append(p, k))
			}
		case []any:
			for i, e := range x {
				walk(e, append(p, i))
			}
		}
	}
	walk(tmpl, nil)
}

type evaluator struct {
	doc      Doc
	path     Path // of the value being evaluated; reused as a stack
	deferred []Path
	shared   bool // see EvaluateShared
	limit    int  // bytes the results of a Budget may take as JSON
	left     int  // bytes of limit left when this evaluation began
	room     int  // bytes of limit not yet taken
	pathRoom int  // bytes of limit the nested expressions' paths have not taken
	over     bool // those paths passed the limit
	// work counts the steps of the Budget's evaluations; stepsBefore is
	// what those before this one took.
	work        *work
	stepsBefore int
}

// spend takes n bytes of the result from the room left, and reports
// whether they fit.
func (e *evaluator) spend(n int) bool {
	e.room -= n
	return e.room >= 0
}

// tooLarge is the error of a result that passed the limit, for the caller
// to wrap in a PathError.
func (e *evaluator) tooLarge() error {
	if before := e.limit - e.left; before > 0 {
		return fmt.Errorf("%w: with the %d bytes evaluated before it, the value evaluated up to this field passes %d bytes of JSON, the most they may take",
			ErrTooLarge, before, e.limit)
	}
	return fmt.Errorf("%w: the value evaluated up to this field passes %d bytes of JSON, the most it may take", ErrTooLarge, e.limit)
}

// overAt is tooLarge at the current path.
func (e *evaluator) overAt() error { return PathError{Path: e.path.String(), Err: e.tooLarge()} }

// value evaluates one node of the template. Map keys are visited in sorted
// order so that deferred paths and the reported error are deterministic.
func (e *evaluator) value(v any) (any, error) {
	switch x := v.(type) {
	case string:
		out, deferred, err := e.str(x)
		if err != nil {
			return nil, PathError{Path: e.path.String(), Err: err}
		}
		if s, ok := out.(string); ok && !e.spend(len(s)+2) {
			return nil, e.overAt()
		}
		if deferred {
			e.deferred = append(e.deferred, append(Path{}, e.path...))
		}
		return out, nil
	case map[string]any:
		if x == nil {
			return x, nil
		}
		if !e.spend(1) { // "{" and "}" less a comma not written
			return nil, e.overAt()
		}
		out := make(map[string]any, len(x))
		for _, k := range slices.Sorted(maps.Keys(x)) {
			e.path = append(e.path, k)
			if !e.spend(len(k) + 4) { // "k": and a comma
				err := e.overAt()
				e.path = e.path[:len(e.path)-1]
				return nil, err
			}
			v, err := e.value(x[k])
			e.path = e.path[:len(e.path)-1]
			if err != nil {
				return nil, err
			}
			out[k] = v
		}
		return out, nil
	case []any:
		if x == nil {
			return x, nil
		}
		if !e.spend(1 + len(x)) { // "[", "]" and the commas
			return nil, e.overAt()
		}
		out := make([]any, len(x))
		for i, elem := range x {
			e.path = append(e.path, i)
			v, err := e.value(elem)
			e.path = e.path[:len(e.path)-1]
			if err != nil {
				return nil, err
			}
			out[i] = v
		}
		return out, nil
	}
	if !e.spend(scalarSize(v)) {
		return nil, e.overAt()
	}
	return v, nil
}

// str evaluates one template string and reports whether the result still
// holds a deferred expression. A string that is exactly one expression yields
// the raw value; otherwise the values are interpolated.
func (e *evaluator) str(s string) (any, bool, error) {
	if !hasExpr(s) {
		return s, false, nil
	}
	nodes, err := parse(s)
	if err != nil {
		return nil, false, err
	}
	if len(nodes) == 1 && nodes[0].expr {
		r := e.expr(nodes[0].body)
		if e.work.spent() {
			return nil, false, e.work.tooCostly(s, e.stepsBefore)
		}
		if e.over {
			return nil, false, e.tooLarge()
		}
		if !r.deferred {
			var (
				v  any = r.value
				ok bool
			)
			switch {
			case e.shared && len(e.path) == 0:
				return v, false, nil // the document's own value: see EvaluateShared
			case e.shared:
				ok = e.measure(v)
			default:
				v, ok = e.copy(v)
			}
			if !ok {
				return nil, false, e.tooLarge()
			}
			if s, isStr := v.(string); isStr {
				e.room += len(s) + 2 // counted again by value, as any string
			}
			return v, false, nil
		}
		var w deferredWriter
		w.expr(r.body)
		return w.String(), true, nil
	}
	results := make([]result, len(nodes))
	anyDeferred := false
	sd, _ := e.doc.(SealedDoc)
	for i, n := range nodes {
		if n.expr {
			results[i] = e.expr(n.body)
			if sd != nil && !results[i].deferred {
				if ref, ok := sd.SealedRef(results[i].value); ok && !strings.ContainsAny(ref, "{}") {
					// A sealed value embedded in text: the text is made
					// at hand-off, where the value is opened (a
					// whole-string expression carries the value itself).
					results[i] = result{deferred: true, body: SealedPrefix + ref}
				}
			}
			anyDeferred = anyDeferred || results[i].deferred
		}
	}
	if e.work.spent() {
		return nil, false, e.work.tooCostly(s, e.stepsBefore)
	}
	if e.over {
		return nil, false, e.tooLarge()
	}
	// The text is checked against the room left as it grows: a string
	// repeating a large value is refused before it is whole.
	if !anyDeferred {
		var b strings.Builder
		for i, n := range nodes {
			if n.expr {
				if !e.fits(results[i].value, e.room-b.Len()) {
					return nil, false, e.tooLarge()
				}
				b.WriteString(interpolate(results[i].value))
			} else {
				b.WriteString(n.text)
			}
			if b.Len() > e.room {
				return nil, false, e.tooLarge()
			}
		}
		return b.String(), false, nil
	}
	var w deferredWriter
	for i, n := range nodes {
		switch {
		case !n.expr:
			w.literal(n.text)
		case results[i].deferred:
			w.expr(results[i].body)
		case !e.fits(results[i].value, e.room-w.b.Len()):
			return nil, false, e.tooLarge()
		default:
			w.literal(interpolate(results[i].value))
		}
		if w.b.Len() > e.room {
			return nil, false, e.tooLarge()
		}
	}
	return w.String(), true, nil
}

// result is the outcome of one expression: a value (not copied), or the body
// of a deferred expression.
type result struct {
	value    any
	body     string
	deferred bool
}

// SealedDoc is a Doc whose values may be sealed (encrypted until a task's
// hand-off). An embedded expression that reads one is written as a
// deferred expression "${sealed:REF}" instead of the sealed value's mask,
// for the hand-off to find the value by REF and open it.
type SealedDoc interface {
	Doc
	// SealedRef returns the reference of v when it is a sealed value.
	SealedRef(v any) (string, bool)
}

// SealedPrefix starts the body of a deferred read of sealed data.
const SealedPrefix = "sealed:"

// expr evaluates one expression body. Nested expressions are resolved first
// and interpolated into the path; a blank path yields "" as in OSS.
func (e *evaluator) expr(body []node) result {
	text, ok := e.bodyText(body)
	switch {
	case !ok && namesDeferred(body):
		// A secret or environment value named by another (its name is
		// not known before the hand-off, which resolves one level):
		// deferred without a name, which the hand-off refuses. Never a
		// null.
		return result{deferred: true, body: deferredNamespace(body)}
	case !ok:
		return result{}
	}
	text = strings.TrimSpace(text)
	switch {
	case text == "":
		return result{value: ""}
	case namesDeferred(body):
		if !isDeferred(text) || strings.ContainsAny(text, "{}") {
			// Braces would let the body end the expression early when
			// ResolveDeferred scans it; no secret or env name has them.
			// Deferred without a name, which the hand-off refuses as it
			// refuses a name that is not there: never a null.
			return result{deferred: true, body: deferredNamespace(body)}
		}
		return result{deferred: true, body: text}
	}
	return result{value: e.lookup(text)}
}

// bodyText resolves the nested expressions of a body into its path text. A
// deferred expression cannot be nested inside another: its value is not
// known yet, so the enclosing expression is unresolvable (false).
func (e *evaluator) bodyText(body []node) (string, bool) {
	if len(body) == 1 && !body[0].expr {
		return body[0].text, true
	}
	var b strings.Builder
	for _, n := range body {
		if !n.expr {
			b.WriteString(n.text)
			continue
		}
		r := e.expr(n.body)
		if r.deferred || e.over || e.work.spent() {
			return "", false
		}
		if !e.fits(r.value, e.pathRoom-b.Len()) {
			e.over = true
			return "", false
		}
		b.WriteString(interpolate(r.value))
		if b.Len() > e.pathRoom {
			e.over = true
			return "", false
		}
	}
	// Not part of the result, but built all the same: the paths made of
	// values are bounded together as the result is.
	e.pathRoom -= b.Len()
	return b.String(), true
}

// lookup reads SOURCE.PATH from the document: the JSONPath "$." + text, in
// which the first member names the source. There is deliberately no fallback
// to process environment variables or system properties (OSS's bare
// ${NAME}): an unknown source is nil.
func (e *evaluator) lookup(text string) any {
	if text[0] != '$' {
		text = "$." + text
	}
	jp, err := compilePath(text, '$')
	if err != nil {
		return nil
	}
	// The path is compiled at every evaluation, and its patterns'
	// compiling is work as matching them is.
	if n := jp.patternInsts(); n > 0 && !e.work.take(n*compileStepsPerInst) {
		return nil
	}
	e.work.doc, e.work.room, e.work.over = e.doc, e.room, false
	v, _ := e.work.readRootOK(jp)
	if e.work.over {
		e.over = true
	}
	return v
}

// readRoot reads a path rooted at the document w.doc ('$' or '@', as
// Jayway reads function arguments), nil where it cannot.
func (w *work) readRoot(jp *jsonPath) any {
	v, _ := w.readRootOK(jp)
	return v
}

// readRootOK is readRoot reporting whether the path matched.
func (w *work) readRootOK(jp *jsonPath) (any, bool) {
	if w.doc == nil {
		return nil, false
	}
	if d, ok := w.doc.(wholeDoc); ok {
		var out []any
		jp.walk(d.root(), 0, &out, w)
		return jp.result(out, w), len(out) > 0
	}
	if len(jp.steps) == 0 {
		if jp.fn == nil {
			return nil, false // the sources cannot be enumerated
		}
		v, ok := jp.fn.call(rootModel{}, w)
		if _, root := v.(rootModel); root {
			// append() gives back what is not a list as it is: the
			// model is no value a template may hold.
			return nil, false
		}
		return v, ok
	}
	first := jp.steps[0]
	if first.kind != stepMember || len(first.names) != 1 {
		return nil, false // the sources cannot be enumerated
	}
	var out []any
	if src, ok := w.doc.Lookup(first.names[0]); ok {
		jp.walk(src, 1, &out, w)
	}
	return jp.result(out, w), len(out) > 0
}

// scalarSize is at least the bytes v takes as JSON: a string without its
// escapes, a number or a value that encodes itself at least one byte.
func scalarSize(v any) int {
	switch x := v.(type) {
	case nil:
		return 4
	case string:
		return len(x) + 2
	case bool:
		if x {
			return 4
		}
		return 5
	case json.Number:
		return len(x)
	}
	return 1
}

// copy is deepCopy counting what the copy takes as JSON against the room
// left; false as soon as it passes the limit, with the copy unfinished.
func (e *evaluator) copy(v any) (any, bool) {
	switch x := v.(type) {
	case map[string]any:
		if x == nil {
			return x, e.spend(4)
		}
		if !e.spend(1) {
			return nil, false
		}
		m := make(map[string]any, len(x))
		for k, elem := range x {
			if !e.spend(len(k) + 4) {
				return nil, false
			}
			c, ok := e.copy(elem)
			if !ok {
				return nil, false
			}
			m[k] = c
		}
		return m, true
	case []any:
		if x == nil {
			return x, e.spend(4)
		}
		if !e.spend(1 + len(x)) {
			return nil, false
		}
		s := make([]any, len(x))
		for i, elem := range x {
			c, ok := e.copy(elem)
			if !ok {
				return nil, false
			}
			s[i] = c
		}
		return s, true
	}
	return v, e.spend(scalarSize(v))
}

// fits reports whether a map or list to be interpolated into text may fit
// in room bytes, before it is encoded whole: a deep scan
// (${workflow.input..*}) lists every subtree of a value, and its text
// repeats the deepest ones as many times as they are deep. It takes
// nothing from the evaluation's room: the text is counted as it is
// written.
func (e *evaluator) fits(v any, room int) bool {
	switch v.(type) {
	case map[string]any, []any:
		saved := e.room
		e.room = room
		ok := e.measure(v)
		e.room = saved
		return ok
	}
	return true
}

// measure is copy without the copy, for a value shared.
func (e *evaluator) measure(v any) bool {
	switch x := v.(type) {
	case map[string]any:
		if !e.spend(1) {
			return false
		}
		for k, elem := range x {
			if !e.spend(len(k)+4) || !e.measure(elem) {
				return false
			}
		}
		return true
	case []any:
		if !e.spend(1 + len(x)) {
			return false
		}
		for _, elem := range x {
			if !e.measure(elem) {
				return false
			}
		}
		return true
	}
	return e.spend(scalarSize(v))
}
